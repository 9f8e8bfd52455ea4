"""Edit protocols and text metrics: hand-computed metric arithmetic, and each protocol end to end
on the shipped SynthWorld LM (small case counts)."""

import json

import numpy as np
import pytest

from unike_interp.bench.edit_run import EditProtocol, run_edits, select_cases
from unike_interp.bench.text_metrics import ClozeSet, LocalityProbes, locality_scores, summarize_clozes
from unike_interp.cli import main
from unike_interp.editing import make_editor
from unike_interp.editing.stats import StatsCache

FAST = {"stats_samples": 3000, "n_prefixes": 2}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return StatsCache(tmp_path_factory.mktemp("stats"))


def test_summarize_by_hand():
    cs = ClozeSet()
    for case, stage in [("a", "stage_1"), ("a", "stage_2"), ("b", "stage_1"), ("b", "stage_2"), ("c", "stage_1")]:
        cs.add("p", "old", "new", case, stage)
    scores = {"top1_new": np.array([1, 0, 1, 1, 0], bool), "top1_old": np.array([0, 1, 0, 0, 1], bool),
              "p_new_gt_old": np.array([1, 0, 1, 1, 1], bool), "full_new": np.array([1, 0, 0, 1, 0], bool)}
    s = summarize_clozes(cs, scores)
    assert s["efficacy"] == round(2 / 3, 4)
    assert s["efficacy_full"] == round(1 / 3, 4)
    assert s["efficacy_p_new_gt_old"] == 1.0
    assert s["generalization"] == 0.5
    assert s["all_stages"] == 0.6
    assert s["per_stage"] == {"stage_1": round(2 / 3, 4), "stage_2": 0.5}
    assert s["old_answer_top1"] == round(1 / 3, 4)


def test_locality_by_hand():
    class Stub:
        def first_token_id(self, w):
            return {"red": 1, "blue": 2, "big": 3}[w]

    probes = LocalityProbes(prompts=list("abcde"), kind=["neighbour", "other", "other", "same_subject", "neighbour"],
                            gt=["red", "blue", "big", "red", "blue"], pre=np.array([1, 2, 3, 1, 9]))
    post = np.array([1, 5, 3, 7, 9])
    out = locality_scores(Stub(), probes, post)
    # unedited probes a, b, c, e: unchanged a, c, e -> 3/4; the same-subject probe d changed
    assert out["unchanged"] == 0.75 and out["n"] == 4
    assert out["unchanged_neighbour"] == 1.0 and out["n_neighbour"] == 2
    assert out["unchanged_other"] == 0.5
    assert out["unchanged_same_subject"] == 0.0
    assert out["accuracy_pre"] == 0.75 and out["accuracy_post"] == 0.5


def test_protocol_validation():
    with pytest.raises(ValueError, match="protocol must be one of"):
        EditProtocol("parallel")
    assert EditProtocol("single", batch_size=8).batch_size == 1
    with pytest.raises(ValueError, match="batch_size"):
        EditProtocol("batch", batch_size=0)


def test_select_cases_is_seeded(adapter):
    recs = adapter.world.records
    a, b = select_cases(recs, 5, seed=0), select_cases(recs, 5, seed=0)
    assert [r.case_id for r in a] == [r.case_id for r in b]
    assert [r.case_id for r in a] != [r.case_id for r in select_cases(recs, 5, seed=1)]


@pytest.mark.parametrize("editor,protocol", [("rome", EditProtocol("single")),
                                             ("memit", EditProtocol("batch", 3)),
                                             ("alphaedit", EditProtocol("sequential", 2, eval_each_batch=True))])
def test_protocols_end_to_end(adapter, cache, editor, protocol):
    import torch

    before = {k: v.clone() for k, v in adapter.lm.state_dict().items()}
    recs = adapter.world.records
    cases = select_cases(recs, 4)
    ed = make_editor(editor, FAST, family=adapter.family, stats_cache=cache)
    out = run_edits(adapter, ed, recs, cases, protocol, max_locality=40, progress=False, full=False)
    assert out["protocol"]["kind"] == protocol.kind and out["n_cases"] == 4
    assert out["efficacy"]["pre"] == 0.0 and out["guard_failures"] == 0
    assert 0.0 <= out["locality"]["post"] <= 1.0 and out["locality"]["pre"] == 1.0
    assert out["seconds_per_edit"] > 0 and out["peak_memory_mb"] > 0
    if protocol.kind == "sequential":
        assert [p["edits"] for p in out["per_batch"]] == [2, 4]
    for k, v in adapter.lm.state_dict().items():
        assert torch.equal(v, before[k]), k
    json.dumps(out)  # serialisable


def test_guard_failures_are_counted_not_dropped(adapter, cache):
    recs = adapter.world.records
    cases = select_cases(recs, 2)
    ed = make_editor("rome", {**FAST, "max_rel_update": 1e-9}, family=adapter.family, stats_cache=cache)
    out = run_edits(adapter, ed, recs, cases, EditProtocol("single"), max_locality=10, progress=False, full=False)
    assert out["guard_failures"] == 2 and len(out["failures"]) == 2
    assert out["efficacy"]["post"] == out["efficacy"]["pre"] == 0.0  # evaluated unedited, still counted
    assert "layer 0" in out["failures"][0]["error"]


def test_cli_edit_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNIKE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "h.toml").write_text("stats_samples = 3000\nn_prefixes = 2\n")
    rc = main(["edit", "--editor", "memit", "--protocol", "batch", "--cases", "3", "--hparams", str(tmp_path / "h.toml"),
               "--max-locality", "20", "--no-progress", "--out", str(tmp_path / "run"), "--save-deltas", "--json"])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    for key in ("efficacy", "generalization", "locality"):
        assert set(result[key]) >= {"pre", "post"}
    assert result["protocol"] == {"kind": "batch", "batch_size": 3, "eval_each_batch": False}
    assert {"seconds_per_edit", "peak_memory_mb"} <= set(result)
    assert any("efficacy (top-1, stage_1)" in line for line in out)
    saved = json.loads((tmp_path / "run" / "edit_result.json").read_text())
    assert saved["n_cases"] == 3 and saved["deltas"] == ["deltas/edit_0000.safetensors"]
    from unike_interp.editing import WeightDelta

    d = WeightDelta.load(tmp_path / "run" / saved["deltas"][0])
    assert d.manifest["editor"] == "memit" and len(d.manifest["cases"]) == 3


def test_cli_edit_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["edit", "--editor", "nope", "--no-progress"]) == 2
    assert "unknown editor 'nope'" in capsys.readouterr().err
    assert main(["edit", "--set", "v_stepz=3", "--no-progress"]) == 2
    assert "v_stepz" in capsys.readouterr().err
    (tmp_path / "h.yaml").write_text("layers: [0, 9]\n")
    assert main(["edit", "--editor", "memit", "--hparams", str(tmp_path / "h.yaml"), "--cases", "1", "--no-progress"]) == 2
    assert "layers [9] do not exist" in capsys.readouterr().err
