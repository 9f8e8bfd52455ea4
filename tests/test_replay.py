"""Stored edits: the benchmark stores each evaluation point's weight delta, and `unike analyze`
replays it -- no editor, no key statistics -- recording exactly the model that was judged."""

import json

import numpy as np
import pytest

from unike_interp.bench import pipeline
from unike_interp.bench.pipeline import run_bench
from unike_interp.bench.run_folder import DeltaHashError, RunFolder
from unike_interp.bench.spec import RunSpec
from unike_interp.editing import make_editor
from unike_interp.editing.stats import StatsCache
from unike_interp.interp.analyze import analyze_run
from unike_interp.interp.interventions import FAILED_VERDICTS
from unike_interp.interp.recorder import Recorder
from unike_interp.bench.entries import CaseEntry
from unike_interp.interp.replay import NoStoredDeltasError, _record_chunked, case_prompts
from unike_interp.interp.store import ActivationStore
from unike_interp.judges import VerifierJudge

FAST = {"stats_samples": 3000, "n_prefixes": 2}


def _forbid_editing(monkeypatch):
    """Any editor construction, edit or key statistic fails the test."""
    import unike_interp.bench.assemble as assemble
    import unike_interp.editing.base as base
    import unike_interp.editing.stats as stats

    def boom(*a, **k):
        raise AssertionError("analyze built an editor or computed key statistics on a run with stored deltas")

    for mod, name in ((assemble, "build_editor"), (base.Editor, "edit"), (base.Editor, "prepare"),
                      (stats, "layer_second_moment"), (stats, "second_moment"), (stats, "layer_second_moments"),
                      (stats, "second_moments")):
        if hasattr(mod, name):
            monkeypatch.setattr(mod, name, boom)


def test_analyze_replays_the_judged_model_without_an_editor(adapter, tmp_path, monkeypatch):
    # the judged model: record every case's direct prompt at the moment the edited model is judged
    judged = ActivationStore.open(tmp_path / "judged.h5", {"model": adapter.name})
    original = pipeline.measure_post

    def spy(m, cases):
        out = original(m, cases)  # the judged images are made; the model is still the judged one
        entries = {c.case_id: CaseEntry(c.case_id, c.subject, c.category, c.source, None, 0, None,
                                        {"stage_1": {"reasoning": out[(c.case_id, "stage_1")]["reasoning"]}})
                   for c in cases}
        flat = [(c, kind, p) for c in cases for kind, p in case_prompts(m.adapter, c, entries[c.case_id]).items()]
        rec = Recorder(m.adapter, seed=0)
        rows = _record_chunked(rec, [p for _, _, p in flat], [c.subject for c, _, _ in flat])
        for (c, kind, _), row in zip(flat, rows):
            if kind == "direct":
                judged.write_case(c.case_id, {"subject": c.subject}, {"post": {"direct": (row, rec.sites)}})
        return out

    monkeypatch.setattr(pipeline, "measure_post", spy)
    spec = RunSpec(editor="memit", protocol="batch", batch_size=2, cases=4, image_locality_probes=0,
                   text_locality_probes=4, bootstrap=20, hparams=FAST, sample_steps=6)
    run = tmp_path / "run"
    editor = make_editor("memit", FAST, family=adapter.family, stats_cache=StatsCache(tmp_path / "cache"))
    run_bench(spec, run, adapter=adapter, editor=editor, judge=VerifierJudge(adapter.verifier), progress=False,
              echo=lambda s: None)
    folder = RunFolder(run)
    points = folder.point_entries()
    assert sorted(points) == [0, 1] and all(p.delta is not None for p in points.values())
    for p in points.values():
        assert (run / (p.delta.path + ".safetensors")).exists() and len(p.delta.sha256) == 64

    _forbid_editing(monkeypatch)
    summary = analyze_run(run, adapter=adapter, progress=False, echo=lambda s: None, figures=False, trace_cases=2,
                          probes=False)
    assert summary["edits"] == "stored" and summary["n_cases"] == 4
    # the causal analyses: the gain-1 redraw from the recorded conditioning is the judged image's verdict,
    # every failed case has a verdict, two cases traced at the edited layers
    stats = json.loads((run / "analysis" / "stats.json").read_text())
    iv = stats["interventions"]["summary"]
    assert iv["bench_agreement"] == 1.0 and iv["n_cases"] == 4
    assert sum(iv["verdicts"]["all"]["all"][v]["count"] for v in FAILED_VERDICTS) == iv["n_failed"]
    assert stats["tracing"]["n_cases"] == 2 and stats["tracing"]["edit_layers"] == sorted(
        {int(m.split(".")[2]) for m in folder.load_delta(points[0].delta).modules})
    assert set(stats["knowledge_source"]) >= {"outcomes", "swap"}
    store = ActivationStore.open(run / "analysis" / "activations.h5")
    for cid, attrs in store.iter_cases():
        assert attrs["edit_hash"] == points[int(attrs["batch"])].delta.sha256
        got, want = store.read(cid, "post", "direct"), judged.read(cid, "post", "direct")
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{cid} {name}")
        pre = store.read(cid, "pre", "direct")
        assert any(not np.array_equal(pre[n], got[n]) for n in got if n.startswith("text."))  # the edit is there

    # the same run as data: DataFrames joined on case id, activations as a labelled array
    from unike_interp.results import activations, load_run, recorded_sites

    res = load_run(run)
    entries = folder.case_entries()
    assert len(res.cases) == sum(len(e.stages) for e in entries.values()) and len(res.points) == 2
    for cid, e in entries.items():
        row = res.cases[(res.cases.case_id == cid) & (res.cases.stage == "stage_1")].iloc[0]
        assert row.direct_success == e.succeeded("stage_1", "direct")
        assert row.reasoning_success == e.succeeded("stage_1", "reasoning_image")
        assert (row.old, row.new) == (e.stages["stage_1"]["pre"]["vqa_gt"]["target"],
                                      e.stages["stage_1"]["pre"]["vqa_target"]["target"])
    joined = res.joined.set_index("case_id")
    assert len(joined) == 4
    for cid, vals in stats["per_case"].items():
        assert joined.loc[cid, "edit_strength"] == pytest.approx(vals["edit_strength"], nan_ok=True)
    overall = res.table[(res.table.table == "main") & (res.table.row == "overall") & (res.table.metric == "vqa_direct")]
    assert overall.n.iloc[0] == 4 and overall.k.iloc[0] == sum(e.succeeded("stage_1", "direct") for e in entries.values())
    da = activations(run, "cond.tensor")
    assert da.dims == ("case", "state", "position", "channel") and da.sizes["case"] == 4
    cid = str(da.case.values[0])
    want = store.read(cid, "post", "direct")["cond.tensor"]
    np.testing.assert_array_equal(da.sel(case=cid, state="post").values[:want.shape[0], :want.shape[1]], want)
    assert str(da.prompt_kind.values) == "direct" and da.name == "cond.tensor"
    every = activations(run, "cond.tensor", kind=None)  # every prompt kind: one more named dimension
    assert every.dims == ("case", "state", "prompt_kind", "position", "channel")
    assert list(every.prompt_kind.values)[:1] == ["direct"] and "ref_new" in every.prompt_kind.values
    want = store.read(cid, "pre", "ref_new")["cond.tensor"]
    np.testing.assert_array_equal(every.sel(case=cid, state="pre", prompt_kind="ref_new").values[:want.shape[0],
                                                                                                 :want.shape[1]], want)
    assert "cond.tensor" in recorded_sites(run) and all(not n.startswith("_") for n in recorded_sites(run))
    with pytest.raises(KeyError, match="no site 'nope'"):
        activations(run, "nope")

    # a stored delta that is not the judged one is refused, naming the file
    ref = points[0].delta
    tampered = folder.load_delta(ref)
    name = next(iter(tampered.deltas))
    tampered.deltas[name] = tampered.deltas[name] * 1.001
    tampered.save(run / ref.path)
    with pytest.raises(DeltaHashError, match="point_0000"):
        analyze_run(run, tmp_path / "again", adapter=adapter, progress=False, echo=lambda s: None, figures=False,
                    probes=False)


def test_a_run_without_stored_deltas_needs_reoptimize(adapter, tmp_path):
    spec = RunSpec(editor="rome", protocol="single", cases=1, image_locality_probes=0, text_locality_probes=2,
                   bootstrap=10, hparams=FAST, store_deltas=False)
    run = tmp_path / "run"
    editor = make_editor("rome", FAST, family=adapter.family, stats_cache=StatsCache(tmp_path / "cache"))
    run_bench(spec, run, adapter=adapter, editor=editor, judge=VerifierJudge(adapter.verifier), progress=False,
              echo=lambda s: None)
    assert not (run / "deltas").exists()
    assert all(p.delta is None for p in RunFolder(run).point_entries().values())
    with pytest.raises(NoStoredDeltasError, match="--reoptimize"):
        analyze_run(run, adapter=adapter, progress=False, echo=lambda s: None, figures=False, probes=False)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["store_deltas"] is False
