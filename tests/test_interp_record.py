"""Recording sites with nnsight: values against the adapter's own numerics, site errors, edits as
weight deltas vs activation interventions, the HDF5 store, and `unike analyze` on a small run."""

import json

import h5py
import numpy as np
import pytest

from unike_interp.editing import make_editor, requests_from_records
from unike_interp.editing.stats import StatsCache
from unike_interp.interp.recorder import Recorder
from unike_interp.interp.store import ActivationStore
from unike_interp.models import load_model
from unike_interp.models.sites import Site, SiteError
from unike_interp.conditioning import position_ids_from_mask

FAST = {"stats_samples": 3000, "n_prefixes": 2}


@pytest.fixture(scope="module")
def bottleneck():
    return load_model("toy-bottleneck")


def test_sites_match_the_models_numerics(bottleneck):
    a = bottleneck
    names = [s.name for s in a.sites()]
    assert names[:2] == ["text.mlp.0", "text.resid.0"] and "cond.connector_in" in names
    assert sum(n.startswith("text.resid.") for n in names) == a.num_layers  # from the config
    recs = a.world.records[:3]
    prompts = [r.stage_1.image_prompt for r in recs] + ["a small red striped matte circle"]
    subjects = [r.subject for r in recs] + [recs[0].subject]
    rec = Recorder(a).record(prompts, subjects)
    enc = a.tokenizer(prompts, return_tensors="pt", padding=True)
    hs = a.lm(**enc, position_ids=position_ids_from_mask(enc["attention_mask"]), output_hidden_states=True).hidden_states
    T = enc["input_ids"].shape[1]
    for i in range(a.num_layers - 1):  # the last entry of hidden_states is after the final norm
        np.testing.assert_allclose(rec.values[f"text.resid.{i}"][:, 1], hs[i + 1][:, T - 1].detach().numpy(), atol=1e-5)
    cond = a.conditioning(prompts)
    np.testing.assert_array_equal(rec.values["cond.tensor"], cond.hidden.numpy())
    np.testing.assert_array_equal(rec.values["cond.connector_out"], rec.values["cond.tensor"])
    np.testing.assert_array_equal(rec.cond_lm_positions, cond.lm_positions.numpy())
    assert rec.values["gen.block.0"].shape == (4, 64, 128)
    # the caption does not name the subject: no subject position, NaN row, never a wrong token
    assert rec.token_positions[3, 0] == -1 and np.isnan(rec.values["text.resid.0"][3, 0]).all()
    assert (rec.token_positions[:3, 0] >= 0).all() and (rec.token_positions[:, 1] == T - 1).all()


def test_site_errors(bottleneck):
    a = bottleneck
    with pytest.raises(KeyError, match="no site"):
        Recorder(a, [Site("text.nope", "text", "lm.model.layers.0")])

    class Twice(type(a)):
        def conditioning_sites(self):
            return [Site("cond.tensor", "conditioning", "dit", read="input:1", calls=2)]

    b = object.__new__(Twice)
    b.__dict__.update(a.__dict__)
    with pytest.raises(SiteError, match="ran 1 time"):
        Recorder(b).record(["a zib"])

    class Missing(type(a)):
        def conditioning_sites(self):
            return [Site("cond.x", "conditioning", "encoder.nothing")]

    c = object.__new__(Missing)
    c.__dict__.update(a.__dict__)
    with pytest.raises(SiteError, match="does not have"):
        Recorder(c).record(["a zib"])


def test_weight_edit_equals_intervention_and_restores(tmp_path):
    a = load_model("toy-direct")
    ed = make_editor("rome", FAST, family=a.family, stats_cache=StatsCache(tmp_path))
    r = Recorder(a)
    recs = a.world.records[:2]
    prompts, subj = [x.stage_1.image_prompt for x in recs], [x.subject for x in recs]
    pre = r.record(prompts, subj)
    res = ed.edit(a, requests_from_records(recs[:1]))
    weight = r.record(prompts, subj)
    res.remove()
    after = r.record(prompts, subj)
    inter = r.record(prompts, subj, delta=res.delta)
    for k in pre.values:
        np.testing.assert_array_equal(after.values[k], pre.values[k])  # no copy, bit-exact restore
        np.testing.assert_allclose(inter.values[k], weight.values[k], atol=1e-4)
    assert np.nanmax(np.abs(weight.values["cond.tensor"] - pre.values["cond.tensor"])) > 1e-2


def test_store_resume_drops_incomplete(tmp_path):
    a = load_model("toy-direct")
    r = Recorder(a)
    rec = r.record(["a zib", "a small red zib"], ["zib", "zib"])
    path = tmp_path / "acts.h5"
    store = ActivationStore.open(path, {"model": "toy-direct", "editor": "rome", "seed": 0})
    data = {"pre": {"direct": (rec.row(0), r.sites)}, "post": {"direct": (rec.row(1), r.sites)}}
    store.write_case("c1", {"category": "color"}, data)
    with h5py.File(path, "a") as f:  # a case interrupted mid-write
        f["cases"].create_group("c2").attrs["case_id"] = "c2"
    store = ActivationStore.open(path, {"model": "toy-direct", "editor": "rome", "seed": 0})
    assert store.complete_cases() == {"c1"}
    got = store.read("c1", "pre", "direct")
    np.testing.assert_array_equal(got["text.resid.0"], rec.values["text.resid.0"][0])
    assert got["cond.tensor"].shape[0] == int(rec.cond_mask[0].sum())
    with h5py.File(path, "r") as f:
        ds = f["cases/c1/pre/direct/text/text.resid.0"]
        assert ds.compression == "gzip" and ds.chunks is not None
        assert f.attrs["model"] == "toy-direct"
    with pytest.raises(ValueError, match="editor"):
        ActivationStore.open(path, {"model": "toy-direct", "editor": "memit", "seed": 0})


def test_analyze_a_small_run(tmp_path, capsys, monkeypatch):
    from unike_interp.cli import main

    monkeypatch.setenv("UNIKE_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["bench", str(run), "--model", "toy-bottleneck", "--editor", "rome", "--protocol", "batch",
                 "--cases", "4", "--set", "stats_samples=3000", "--set", "n_prefixes=2", "--image-locality", "0",
                 "--text-locality", "4", "--bootstrap", "50", "-q"]) == 0
    out = capsys.readouterr().out.strip().splitlines()  # -q: only where the results are
    assert len(out) == 1 and out[0].startswith(f"run folder: {run}")
    args = ["analyze", str(run), "--no-progress", "--json", "--trace-cases", "1",
            "--no-figures"]  # the figures of a run: tests/test_plots.py
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    # the probes' phase says what it did and how long each part took
    probe_line = next(x for x in lines if x.startswith("[analyze] value probes:"))
    assert "fitted over" in probe_line and "the generator's accuracy" in probe_line and "fits" in probe_line
    assert summary["n_cases"] == 4 and (run / "analysis" / "activations.h5").exists()
    stats = json.loads((run / "analysis" / "stats.json").read_text())
    case = next(iter(stats["per_case"].values()))
    for key in ("edit_strength", "projection_cos", "alignment", "cond_drift", "bottleneck_energy",
                "generator_sensitivity.block.0", "text_drift_rel.resid.0.subject"):
        assert key in case, key
    assert set(summary["aucs"]) == {"vqa_direct", "vqa_reasoning"} and "edit_strength" in summary["aucs"]["vqa_direct"]
    assert stats["tracing"]["n_cases"] == 1 and len(stats["interventions"]["per_case"]) == 4
    # resume: everything recorded, nothing re-recorded
    with h5py.File(run / "analysis" / "activations.h5", "r") as f:
        n = len(f["cases"])
    assert main(args + ["--no-interventions", "--no-probes"]) == 0
    assert "[analyze] value probes: skipped (not run (--no-probes))" in capsys.readouterr().out
    with h5py.File(run / "analysis" / "activations.h5", "r") as f:
        assert len(f["cases"]) == n == 4
    again = json.loads((run / "analysis" / "stats.json").read_text())
    assert again["summary"]["probes"] == {"skipped": "not run (--no-probes)"}
    assert "probe_p_new" not in next(iter(again["per_case"].values()))
    # --out: the analysis elsewhere; the run folder's own analysis is left as it was
    elsewhere = tmp_path / "recordings"
    assert main(["analyze", str(run), "--no-interventions", "--no-probes", "--no-figures", "--out", str(elsewhere),
                 "--no-progress"]) == 0
    assert (elsewhere / "activations.h5").exists() and (elsewhere / "stats.json").exists()
    assert json.loads((run / "analysis" / "stats.json").read_text()) == again
