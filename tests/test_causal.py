"""The causal analyses: interventions on the conditioning, tracing, the knowledge source."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unike_interp.interp.interventions import (
    InterventionConfig,
    case_interventions,
    run_interventions,
    split_along,
    summarize_interventions,
    value_direction,
    value_slots,
    verdict_of,
    wilson,
)
from unike_interp.interp.knowledge_source import outcome_table
from unike_interp.interp.tracing import capture_layers, patch_layers, position_groups


# --------------------------------------------------------------------------- pure functions


def test_value_direction_is_the_mean_difference_over_the_slots_that_differ():
    r_old = np.zeros((4, 3), np.float32)
    r_new = r_old.copy()
    r_new[2] = [1, 2, 3]
    r_new[3] = [3, 0, 1]
    d, how = value_direction(r_old, r_new)
    assert how == "differing_slots"
    np.testing.assert_allclose(d, [2, 1, 2])
    d, how = value_direction(r_old, r_new[:3])  # slot counts differ: the slot means
    assert how == "pooled"
    np.testing.assert_allclose(d, [1 / 3, 2 / 3, 1])
    assert value_direction(r_old, r_old)[1] == "identical"
    assert list(value_slots(r_old, r_new, 1)) == [2] and list(value_slots(r_old, r_new, 2)) == [2, 3]


def test_split_along_gives_the_component_along_d_and_the_rest():
    delta = np.array([[3.0, 4.0], [1.0, -2.0]])
    aligned, orth = split_along(delta, np.array([2.0, 0.0]))
    np.testing.assert_allclose(aligned, [[3, 0], [1, 0]])
    np.testing.assert_allclose(orth, [[0, 4], [0, -2]])
    aligned, orth = split_along(delta, np.zeros(2))
    assert not aligned.any() and np.array_equal(orth, delta)


def test_case_interventions_builds_every_conditioning():
    c0 = np.zeros((3, 2), np.float32)
    c1 = np.array([[0, 0], [1, 1], [2, 0]], np.float32)
    pos = np.array([4, 5, 6])
    r_old = np.zeros((4, 2), np.float32)
    r_new = r_old.copy()
    r_new[1:] = [5.0, 0.0]  # the value word at slot 1; later slots differ too (causal LM)
    cfg = InterventionConfig()
    out, info = case_interventions({"cond.tensor": c0, "_lm_positions": pos}, {"cond.tensor": c1},
                                   {"cond.tensor": r_old, "_lm_positions": np.arange(4)},
                                   {"cond.tensor": r_new, "_lm_positions": np.arange(4)}, cfg, subject_span=(5, 6))
    assert set(out) == set(cfg.names())
    np.testing.assert_allclose(out["gain:4"][0], 4 * c1)
    np.testing.assert_allclose(out["aligned:2"][0], [[0, 0], [2, 0], [4, 0]])
    np.testing.assert_allclose(out["orthogonal:1"][0], [[0, 0], [0, 1], [0, 0]])
    # the subject's slots (LM positions 5 and 6) replaced by the value's one slot
    np.testing.assert_allclose(out["reference"][0], [[0, 0], [5, 0]])
    np.testing.assert_allclose(out["caption"][0], r_new)
    assert info["reference_from"] == "subject_slots" and info["d_from"] == "differing_slots"
    assert info["aligned_share"] == pytest.approx((1 + 4) / (2 + 4))
    # no slot is read from the subject (learned queries): the reference is the spelled-out prompt whole
    out, info = case_interventions({"cond.tensor": c0, "_lm_positions": pos}, {"cond.tensor": c1},
                                   {"cond.tensor": r_old[:3], "_lm_positions": pos},
                                   {"cond.tensor": r_new[:3], "_lm_positions": pos}, cfg, subject_span=(1, 2))
    assert info["reference_from"] == "caption"
    np.testing.assert_allclose(out["reference"][0], r_new[:3])


def _outcomes(shows: dict[str, bool | None]) -> dict:
    cfg = InterventionConfig()
    base = {n: {"verdict": False, "predicted": "red"} for n in cfg.names()}  # "red": the old value
    base.update({n: {"verdict": v, "predicted": {True: "blue", False: "red", None: None}[v]} for n, v in shows.items()})
    return base


@pytest.mark.parametrize("shows, verdict, min_gain", [
    ({"gain:1": True}, "transferred", 1.0),
    ({"gain:4": True, "gain:8": True}, "too_weak", 4.0),
    ({"aligned:8": True}, "misaligned", float("inf")),
    ({"reference": False}, "generator_bound", float("inf")),
    ({"reference": True}, "unexplained", float("inf")),
    ({"gain:1": None}, "undetermined", float("nan")),
    ({"gain:2": None}, "undetermined", float("nan")),
    ({"reference": None}, "undetermined", float("inf")),
])
def test_verdict_ladder(shows, verdict, min_gain):
    v = verdict_of(_outcomes(shows), InterventionConfig(), old="red")
    assert v["verdict"] == verdict, v
    assert v["min_gain"] == min_gain or (np.isnan(min_gain) and np.isnan(v["min_gain"]))
    if verdict == "misaligned":
        assert v["min_aligned_gain"] == 8.0


def test_a_flip_that_a_random_push_of_the_same_size_also_gives_is_chance():
    """gain 4 shows the new value, but a random push that size breaks the image too (it no longer shows
    the old value): that flip is not evidence; gain 8, whose control is intact, is."""
    oc = _outcomes({"gain:4": True, "gain:8": True, "random:4": None})
    oc["random:4"] = {"verdict": False, "predicted": "green"}
    v = verdict_of(oc, InterventionConfig(), old="red")
    assert v["verdict"] == "too_weak" and v["min_gain"] == 8.0 and v["chance_flips"] == ["gain:4"]
    oc["random:8"] = {"verdict": True, "predicted": "blue"}
    oc["reference"] = {"verdict": True, "predicted": "blue"}
    v = verdict_of(oc, InterventionConfig(), old="red")
    assert v["verdict"] == "unexplained" and v["chance_flips"] == ["gain:4", "gain:8"]
    # a judge that names no value cannot check the control: the flip stands, marked uncontrolled
    oc["random:4"] = {"verdict": False, "predicted": None}
    v = verdict_of(oc, InterventionConfig(), old="red")
    assert v["verdict"] == "too_weak" and v["min_gain"] == 4.0 and v["controlled"] is False


def test_intervention_config_is_checked():
    with pytest.raises(ValueError, match="must contain 0 and 1"):
        InterventionConfig(gains=(1, 2))
    with pytest.raises(ValueError, match="increasing"):
        InterventionConfig(component_gains=(4, 2))
    with pytest.raises(ValueError, match="chunk"):
        InterventionConfig(chunk=0)


def test_wilson_interval_matches_hand_values():
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson(0, 0) == (None, None)


def test_position_groups_name_each_token_by_its_role():
    g = position_groups(6, (2, 5), [0, 1, 2, 3, 4, 5])
    assert g == {"first": [0], "before": [1], "subject_first": [2], "subject_mid": [3, 4], "subject_last": [5]}
    g = position_groups(4, (1, 1), list(range(4, 12)))
    assert g == {"first": [0], "subject_last": [1], "after": [2, 3], "queries": list(range(4, 12))}


# --------------------------------------------------------------------------- with a fake generator


class _Store:
    """Duck-typed ActivationStore: per case the direct prompt before/after and the references."""

    def __init__(self, cases):
        self.cases = cases

    def iter_cases(self):
        return iter((c, {}) for c in self.cases)

    def read(self, cid, state, kind):
        return self.cases[cid][(state, kind)]


class _Adapter:
    """Draws an image whose every pixel is 255 when the conditioning's first channel sums past 1."""

    tokenizer = None
    name = "fake"

    def __init__(self):
        self.calls = 0

    def generate_from_conditioning(self, cond, *, seed=0, steps=None, guidance=None, batch_size=64):
        self.calls += 1
        on = (cond.hidden[..., 0] * cond.mask).sum(-1) > 1.0
        return np.where(on[:, None, None, None].numpy(), 255, 0).astype(np.uint8).repeat(2, 1).repeat(2, 2).repeat(3, 3)


class _Judge:
    def judge_batch(self, images, cases, stages, targets):
        return [SimpleNamespace(verdict=bool(im.mean() > 127), predicted="blue" if im.mean() > 127 else "red",
                                error=None) for im in images]

    def value_probability(self, images, cases, stages, targets):
        return np.array([im.mean() / 255 for im in images])


def _case(delta0: float, delta1: float):
    """Two slots; the edit adds ``delta0`` to channel 0 and ``delta1`` to channel 1; the value
    direction is channel 0."""
    pre = {"cond.tensor": np.zeros((2, 2), np.float32), "_lm_positions": np.array([0, 1]), "_subject_last": np.asarray(-1)}
    post = {"cond.tensor": np.array([[0, 0], [delta0, delta1]], np.float32), "_lm_positions": np.array([0, 1])}
    r_old = {"cond.tensor": np.zeros((2, 2), np.float32), "_lm_positions": np.array([0, 1])}
    r_new = {"cond.tensor": np.array([[0, 0], [2.0, 0]], np.float32), "_lm_positions": np.array([0, 1])}
    return {("pre", "direct"): pre, ("post", "direct"): post, ("pre", "ref_old"): r_old, ("pre", "ref_new"): r_new}


def _records(ids):
    return {c: SimpleNamespace(subject="x", category="color",
                               stage_1=SimpleNamespace(image_prompt="a x", gt="red", gt_target="blue"))
            for c in ids}


def test_run_interventions_sorts_cases_and_resumes_from_its_cache(tmp_path, monkeypatch):
    import unike_interp.interp.interventions as iv

    monkeypatch.setattr(iv, "recorded_subject_span", lambda *a: None)
    monkeypatch.setattr(iv, "_n_tokens", lambda *a: 1)
    cases = {"ok": _case(2.0, 0.0), "weak": _case(0.3, 0.0), "mis": _case(-0.2, 5.0)}
    store, records = _Store(cases), _records(cases)
    cfg = InterventionConfig(chunk=2)
    cache = tmp_path / "iv.jsonl"
    res = run_interventions(_Adapter(), store, records, _Judge(), seed=0, config=cfg, cache=cache, progress=False,
                            echo=lambda s: None)
    got = {c: r["verdict"] for c, r in res.per_case.items()}
    # "mis": its change points away from the value (-0.2 along it), so no gain of it shows the value, and
    # neither does its aligned part (negative); the named value does: unexplained
    assert got == {"ok": "transferred", "weak": "too_weak", "mis": "unexplained"}
    assert res.per_case["weak"]["min_gain"] == 4.0
    assert res.images == 3 * len(cfg.names())
    # resume: a torn last line is drawn again, the finished cases are not
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    adapter = _Adapter()
    res2 = run_interventions(adapter, store, records, _Judge(), seed=0, config=cfg, cache=cache, progress=False,
                             echo=lambda s: None)
    assert res2.images == len(cfg.names()) and adapter.calls == 1
    assert {c: r["verdict"] for c, r in res2.per_case.items()} == got
    # another configuration is not read from the cache
    res3 = run_interventions(_Adapter(), store, records, _Judge(), seed=1, config=cfg, cache=cache, progress=False,
                             echo=lambda s: None)
    assert res3.images == 3 * len(cfg.names())
    entries = {c: SimpleNamespace(split="image-seen", category="color",
                                  succeeded=lambda s, i, c=c: c == "ok") for c in cases}
    summ = summarize_interventions(res.per_case, entries, cfg)
    assert summ["n_failed"] == 2 and summ["bench_agreement"] == 1.0
    row = summ["verdicts"]["all"]["all"]
    assert row["too_weak"]["count"] == 1 and row["unexplained"]["count"] == 1 and row["transferred"]["count"] == 0
    assert summ["random_control"]["n"] == 2 and summ["random_control"]["edit_any_gain"]["count"] == 1
    assert summ["gain_curve"]["gain:1"]["shows_new"] == pytest.approx(1 / 3)
    assert summ["gain_curve"]["gain:4"]["net"] == pytest.approx(2 / 3)
    json.dumps(summ)  # JSON-ready


def test_a_failed_generation_is_counted_not_dropped(monkeypatch):
    import unike_interp.interp.interventions as iv

    monkeypatch.setattr(iv, "recorded_subject_span", lambda *a: None)
    monkeypatch.setattr(iv, "_n_tokens", lambda *a: 1)

    class Broken(_Adapter):
        def generate_from_conditioning(self, cond, **kw):
            raise RuntimeError("out of memory")

    res = run_interventions(Broken(), _Store({"a": _case(1, 0)}), _records(["a"]), _Judge(), seed=0,
                            progress=False, echo=lambda s: None)
    r = res.per_case["a"]
    assert r["verdict"] == "undetermined"
    assert all("generation failed: RuntimeError: out of memory" in o["error"] for o in r["outcomes"].values())


def test_outcome_table_counts_which_value_each_image_shows():
    def entry(split, pre_pred, post_pred):
        return SimpleNamespace(split=split, stages={"stage_1": {
            "pre": {"vqa_gt": {"verdict": pre_pred == "red", "predicted": pre_pred}},
            "direct": {"vqa": None if post_pred is None else {"verdict": post_pred == "blue", "predicted": post_pred}}}})

    entries = {"a": entry("image-seen", "red", "red"), "b": entry("image-seen", "red", "blue"),
               "c": entry("text-only", "blue", "blue"), "d": entry("text-only", "green", None)}
    records = _records(entries)
    t = outcome_table(entries, records, list(entries))
    assert t["all"]["n"] == 4
    assert t["image-seen"]["post"]["new"]["count"] == 1 and t["image-seen"]["post"]["old"]["count"] == 1
    assert t["text-only"]["pre"]["new"]["count"] == 1 and t["text-only"]["pre"]["other"]["count"] == 1
    assert t["text-only"]["post"]["no_verdict"]["count"] == 1
    assert t["all"]["net_transfer"] == pytest.approx(2 / 4 - 1 / 4)


# --------------------------------------------------------------------------- on the shipped world


def test_generate_from_conditioning_draws_what_generate_images_draws(adapter):
    prompts = [r.stage_1.image_prompt for r in adapter.records()[:2]]
    want = adapter.generate_images(prompts, seed=3, steps=4)
    got = adapter.generate_from_conditioning(adapter.conditioning(prompts), seed=3, steps=4)
    np.testing.assert_array_equal(got, want)


def test_patching_every_position_with_the_captured_states_restores_the_conditioning(adapter):
    prompt = "a " + adapter.records()[0].subject
    with capture_layers(adapter) as states:
        want = adapter.conditioning([prompt]).hidden
    assert len(states) == adapter.num_layers
    n = states[0].shape[1]
    w = adapter.lm.get_submodule(adapter.paths.mlp_down.format(0)).weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w.add_(torch.randn_like(w))  # another model
        changed = adapter.conditioning([prompt]).hidden
        with patch_layers(adapter, [(adapter.num_layers - 1, list(range(n)), states[-1][0])]):
            restored = adapter.conditioning([prompt]).hidden
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert not torch.equal(changed, want)
    torch.testing.assert_close(restored, want)
    assert torch.equal(adapter.lm.get_submodule(adapter.paths.mlp_down.format(0)).weight, saved)
