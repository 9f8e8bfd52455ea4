"""Interpretability statistics and value probes against hand-computed values."""

import math
from pathlib import Path

import numpy as np
import pytest

from unike_interp.interp.probes import (
    ValueProbe, fit_value_probes, group_folds, probe_all_categories, probe_shift,
)
from unike_interp.interp.stats import (
    alignment, auc_table, bottleneck_retention, cosine, drift, generator_sensitivity, masked_mean,
    projection, reasoning_decomposition,
)

S2 = math.sqrt(2.0)
nan = float("nan")


# ----------------------------------------------------------------------------- geometry


def test_cosine_basic_and_zero():
    out = cosine([[1, 0], [1, 1], [0, 0], [2, 0]], [[0, 3], [2, 2], [1, 0], [-1, 0]])
    np.testing.assert_allclose(out, [0.0, 1.0, nan, -1.0], equal_nan=True)


def test_drift_hand_values():
    pre = np.array([[3.0, 4.0], [3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    post = np.array([[0.0, 0.0], [6.0, 8.0], [0.0, 1.0], [1.0, 0.0]])
    d = drift(pre, post)
    np.testing.assert_allclose(d["l2"], [5.0, 5.0, S2, 1.0])
    np.testing.assert_allclose(d["relative"], [1.0, 1.0, S2, nan], equal_nan=True)
    # zero post (row 0) and zero pre (row 3) have no direction -> nan
    np.testing.assert_allclose(d["cosine_distance"], [nan, 0.0, 1.0, nan], equal_nan=True, atol=1e-12)


def test_drift_keeps_leading_shape_and_accepts_torch():
    torch = pytest.importorskip("torch")
    pre = torch.ones(2, 3, 4)
    post = pre * 2
    d = drift(pre, post)
    assert d["l2"].shape == (2, 3)
    np.testing.assert_allclose(d["l2"], 2.0)
    np.testing.assert_allclose(d["relative"], 1.0)
    d16 = drift(pre.to(torch.bfloat16), post.to(torch.bfloat16))
    np.testing.assert_allclose(d16["relative"], 1.0)


def test_alignment_direct_and_through_connector():
    np.testing.assert_allclose(alignment([1.0, 0.0], [3.0, 0.0]), 1.0)
    w = np.array([[0.0, 1.0], [1.0, 0.0]])  # swaps coordinates
    np.testing.assert_allclose(alignment([1.0, 0.0], [0.0, 5.0], connector_weight=w), 1.0)
    np.testing.assert_allclose(alignment([1.0, 0.0], [5.0, 0.0], connector_weight=w), 0.0, atol=1e-12)
    # connector that reads two concatenated layers of size 2: W (C=2, H'=4)
    w_cat = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    dt = np.array([[1.0, 5.0, 1.0, 0.0], [0.0, 0.0, 0.0, 2.0]])  # W dt = [2,0], [0,2]
    np.testing.assert_allclose(alignment(dt, [[1.0, 0.0], [1.0, 0.0]], w_cat), [1.0, 0.0], atol=1e-12)


def test_alignment_dimension_errors():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        alignment(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="concatenated"):
        alignment(np.zeros(2), np.zeros(2), connector_weight=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        alignment(np.zeros(4), np.zeros(3), connector_weight=np.zeros((2, 4)))


def test_projection_hand_values():
    p = projection([1.0, 1.0], [2.0, 0.0])
    assert p["length"] == pytest.approx(1.0)
    assert p["strength"] == pytest.approx(0.5)
    assert p["cos"] == pytest.approx(1 / S2)
    assert p["orthogonal"] == pytest.approx(1.0)
    # batch: the full spelled-out change, the wrong way, and a zero direction
    p = projection([[2.0, 0.0], [-1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(p["strength"], [1.0, -0.5, nan], equal_nan=True)
    np.testing.assert_allclose(p["length"], [2.0, -1.0, nan], equal_nan=True)
    np.testing.assert_allclose(p["orthogonal"], [0.0, 0.0, nan], equal_nan=True)
    np.testing.assert_allclose(p["cos"], [1.0, -1.0, nan], equal_nan=True)


def test_bottleneck_retention_known_svd():
    w = np.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # S = [3, 1], top right-singular e1 then e2
    delta = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    r = bottleneck_retention(delta, w)
    np.testing.assert_allclose(r["singular_values"], [3.0, 1.0])
    assert r["k"] == 2
    np.testing.assert_allclose(r["energy_topk"], [1.0, 0.0, 1.0, 0.5, nan], equal_nan=True, atol=1e-12)
    np.testing.assert_allclose(r["gain"], [3.0, 0.0, math.sqrt(5.0), 3 / S2, nan], equal_nan=True, atol=1e-12)
    np.testing.assert_allclose(r["gain_relative"], [1.0, 0.0, math.sqrt(5.0) / 3, 1 / S2, nan],
                               equal_nan=True, atol=1e-12)
    r1 = bottleneck_retention(delta, w, k=1)
    np.testing.assert_allclose(r1["energy_topk"], [1.0, 0.0, 0.5, 0.5, nan], equal_nan=True, atol=1e-12)
    with pytest.raises(ValueError, match="k must be"):
        bottleneck_retention(delta, w, k=3)
    with pytest.raises(ValueError, match="last dimension 3"):
        bottleneck_retention(np.zeros(2), w)


def test_generator_sensitivity():
    pre1 = np.array([[[3.0, 4.0]], [[1.0, 0.0]], [[0.0, 0.0]]])  # (B=3, T=1, D=2)
    post1 = np.array([[[3.0, 4.0]], [[1.0, 1.0]], [[1.0, 0.0]]])
    pre2 = np.ones((3, 2, 2))  # |pre|_F = sqrt(4) = 2 per example
    post2 = 2 * pre2  # |post - pre|_F = 2
    s = generator_sensitivity([pre1, pre2], [post1, post2])
    assert s.shape == (2, 3)
    np.testing.assert_allclose(s, [[0.0, 1.0, nan], [1.0, 1.0, 1.0]], equal_nan=True)
    # stacked (n_blocks, B, T, D) input gives the same
    s2 = generator_sensitivity(np.stack([pre2, pre2]), np.stack([post2, pre2]))
    np.testing.assert_allclose(s2, [[1.0] * 3, [0.0] * 3])
    with pytest.raises(ValueError, match="pre shape"):
        generator_sensitivity([pre1], [pre2])


def test_reasoning_decomposition():
    out = reasoning_decomposition(
        c_pre_direct=[0.0, 0.0], c_post_direct=[2.0, 0.0], c_pre_reason=[0.0, 1.0], c_post_reason=[2.0, 1.0],
        d=[4.0, 0.0],
    )
    # edit = [2,0], reasoning = [0,1], edit_on_reasoning = [2,0], total = [2,1]
    expected = {"norm_edit": 2.0, "norm_reasoning": 1.0, "norm_edit_on_reasoning": 2.0, "ratio_reasoning": 0.5,
                "ratio_edit_on_reasoning": 1.0, "cos_edit_reasoning": 0.0, "cos_edit_edit_on_reasoning": 1.0,
                "cos_reasoning_edit_on_reasoning": 0.0, "strength_edit": 0.5, "strength_reasoning": 0.0,
                "strength_edit_on_reasoning": 0.5, "strength_total": 0.5}
    assert {k: out[k] for k in expected} == pytest.approx(expected)
    no_d = reasoning_decomposition([0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 1.0])
    assert "strength_edit" not in no_d
    assert math.isnan(no_d["ratio_reasoning"])  # zero edit


def test_masked_mean():
    x = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 5.0], [7.0, 7.0], [9.0, 9.0]]])
    m = np.array([[1, 1, 0], [0, 0, 0]])
    out = masked_mean(x, m)
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, [[2.0, 3.0], [nan, nan]], equal_nan=True)
    with pytest.raises(ValueError, match="mask"):
        masked_mean(x, np.ones((2, 2)))


def test_auc_table():
    y = np.array([False, False, True, True])
    t = auc_table({"up": [1.0, 2.0, 3.0, 4.0], "down": [4.0, 3.0, 2.0, 1.0]}, y, min_class=1)
    assert t["up"]["auc"] == pytest.approx(1.0) and t["up"]["direction"] == "higher->success"
    assert t["down"]["auc"] == pytest.approx(0.0) and t["down"]["direction"] == "lower->success"
    assert (t["up"]["n"], t["up"]["n_success"], t["up"]["n_fail"]) == (4, 2, 2)
    assert t["up"]["refused"] is None and t["up"]["ci_low"] == t["up"]["ci_high"] == pytest.approx(1.0)

    one = auc_table({"s": [1.0, 2.0, 3.0]}, [True, True, True], min_class=1)["s"]
    assert one["auc"] is None and one["direction"] is None and one["n_fail"] == 0
    assert one["ci_low"] is None and one["refused"] == "fewer than 1 failures (0)"

    t = auc_table({"s": [1.0, nan, 3.0, 4.0, nan]}, [False, True, True, True, False], min_class=1)["s"]
    assert t["auc"] == pytest.approx(1.0)
    assert (t["n"], t["n_success"], t["n_fail"], t["n_dropped"]) == (3, 2, 1, 2)

    # dropping nans can leave a single class
    t = auc_table({"s": [nan, 2.0, 3.0]}, [False, True, True], min_class=1)["s"]
    assert t["auc"] is None and t["n"] == 2

    with pytest.raises(ValueError, match="shape"):
        auc_table({"s": [1.0, 2.0]}, [True, False, True])
    with pytest.raises(ValueError, match="min_class"):
        auc_table({"s": [1.0, 2.0]}, [True, False], min_class=0)


def test_auc_hand_value_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    # successes 3, 5, 2; failures 1, 2, 4: pairs above = (3>1,3>2) + (5>1,5>2,5>4) + (2>1) = 6, one tie (2, 2)
    v, y = [3.0, 5.0, 2.0, 1.0, 2.0, 4.0], [True, True, True, False, False, False]
    t = auc_table({"s": v}, y, min_class=3)["s"]
    assert t["auc"] == pytest.approx((6 + 0.5) / 9) == pytest.approx(roc_auc_score(y, v))
    rng = np.random.default_rng(3)
    v, y = rng.integers(0, 6, 40).astype(float), rng.random(40) < 0.5  # many ties
    assert auc_table({"s": v}, y, min_class=1)["s"]["auc"] == pytest.approx(roc_auc_score(y, v))


def test_auc_refused_below_min_class():
    rng = np.random.default_rng(0)
    for n_s, refused in ((9, "fewer than 10 successes (9)"), (10, None)):
        y = np.arange(40) < n_s
        t = auc_table({"s": rng.standard_normal(40) + y}, y)["s"]
        assert t["refused"] == refused and (t["auc"] is None) == (refused is not None)
        assert (t["n_success"], t["n_fail"]) == (n_s, 40 - n_s)
    fail = np.arange(40) >= 31  # 9 failures
    t = auc_table({"s": rng.standard_normal(40)}, ~fail)["s"]
    assert t["refused"] == "fewer than 10 failures (9)"
    t = auc_table({"s": [1.0] * 5}, [True] * 2 + [False] * 3)["s"]
    assert t["refused"] == "fewer than 10 successes (2) and fewer than 10 failures (3)"


def test_auc_interval_contains_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    widths = []
    for n in (30, 300):
        y = np.arange(n) < n // 2
        v = rng.standard_normal(n) + 0.8 * y
        t = auc_table({"s": v}, y, seed=0)["s"]
        assert t["ci_low"] <= t["auc"] <= t["ci_high"] and 0.5 < t["auc"]
        widths.append(t["ci_high"] - t["ci_low"])
    assert widths[1] < 0.6 * widths[0]  # ~ 1/sqrt(10) in theory
    again = auc_table({"s": v}, y, seed=0)["s"]
    assert (again["ci_low"], again["ci_high"]) == (t["ci_low"], t["ci_high"])  # seeded


def test_auc_bootstrap_vectorised_equals_naive_loop():
    """The U-statistic over draw counts equals sklearn on each resample drawn the documented way."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    y = rng.random(25) < 0.45
    v = np.round(rng.standard_normal(25) + y, 1)  # rounded: ties inside resamples
    v[3] = nan
    n_boot, seed = 200, 7
    t = auc_table({"s": v}, y, n_boot=n_boot, seed=seed, min_class=5)["s"]
    keep = np.isfinite(v)
    pos, neg = v[keep & y], v[keep & ~y]
    draw = np.random.default_rng(seed)
    idx_s = draw.integers(0, len(pos), size=(n_boot, len(pos)))
    idx_f = draw.integers(0, len(neg), size=(n_boot, len(neg)))
    boot = [roc_auc_score([True] * len(pos) + [False] * len(neg), np.r_[pos[i], neg[j]])
            for i, j in zip(idx_s, idx_f)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert (t["ci_low"], t["ci_high"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert t["auc"] == pytest.approx(roc_auc_score(y[keep], v[keep]))


def test_auc_table_is_fast():
    import time

    rng = np.random.default_rng(0)
    y = rng.random(100) < 0.3
    cols = {f"s{i}": rng.standard_normal(100) for i in range(300)}
    t0 = time.perf_counter()
    t = auc_table(cols, y)
    assert time.perf_counter() - t0 < 5.0 and all(r["ci_low"] is not None for r in t.values())


# ----------------------------------------------------------------------------- probes


def _synthetic(seed=0, n_subjects=30, rows_per_subject=4, dim=8, values=("red", "green", "blue")):
    """Each subject has one value; its rows = value mean + subject offset + noise."""
    rng = np.random.default_rng(seed)
    means = {v: 3.0 * rng.standard_normal(dim) for v in values}
    X, labels, groups = [], [], []
    for s in range(n_subjects):
        v = values[s % len(values)]
        offset = 0.5 * rng.standard_normal(dim)
        for _ in range(rows_per_subject):
            X.append(means[v] + offset + 0.5 * rng.standard_normal(dim))
            labels.append(v)
            groups.append(f"subj{s}")
    return np.array(X), np.array(labels), np.array(groups), means


def test_value_probe_reads_linear_value_and_groups_subjects():
    X, y, g, _ = _synthetic()
    probe = fit_value_probes(X, y, g, folds=5, seed=0)
    assert isinstance(probe, ValueProbe)
    assert len(probe.cv_accuracy) == 5
    assert probe.chance == pytest.approx(1 / 3)
    assert probe.cv_mean > 0.9 > probe.chance + 0.5
    assert sorted(probe.classes) == ["blue", "green", "red"]
    # no subject appears in both a training and a test fold; every row is tested exactly once
    tested = np.concatenate([te for _, te in probe.splits])
    assert sorted(tested) == list(range(len(y)))
    for tr, te in probe.splits:
        assert not set(g[tr]) & set(g[te])
    assert probe.predict(X).shape == (len(y),)
    assert probe.predict_proba(X).shape == (len(y), 3)
    # folds are capped by the number of subjects
    assert len(group_folds(["a", "a", "b", "c"], folds=5)) == 3


def test_probe_shift_reads_new_value():
    X, y, g, means = _synthetic()
    probe = fit_value_probes(X, y, g)
    rng = np.random.default_rng(1)
    order = ["red", "green", "blue"]
    new = np.array([order[(order.index(v) + 1) % 3] for v in y])
    X_post = np.array([means[v] for v in new]) + 0.3 * rng.standard_normal(X.shape)
    sh = probe_shift(probe, X_post, new, y)
    assert sh["n"] == len(y)
    assert sh["reads_new"] > 0.95 and sh["reads_old"] < 0.05
    assert sh["reads_new"] + sh["reads_old"] + sh["reads_other"] == pytest.approx(1.0)
    assert sh["p_new"] > 0.8 > sh["p_old"]
    # unchanged conditioning still reads old; an unseen new value can never be read
    sh0 = probe_shift(probe, X, "purple", y)
    assert sh0["reads_old"] > 0.95 and sh0["reads_new"] == 0.0 and sh0["p_new"] == 0.0
    assert sh0["n_new_unseen"] == len(y)


def test_probe_errors_and_all_categories():
    X, y, g, _ = _synthetic(n_subjects=12, rows_per_subject=2)
    with pytest.raises(ValueError, match="2 distinct values"):
        fit_value_probes(X, np.full(len(y), "red"), g)
    with pytest.raises(ValueError, match="2 subjects"):
        fit_value_probes(X, y, np.full(len(y), "one"))
    with pytest.raises(ValueError, match="nan"):
        fit_value_probes(np.where(np.arange(X.size).reshape(X.shape) == 0, nan, X), y, g)

    cats = np.array(["color"] * len(y) + ["shape"] * 4)
    feats = np.vstack([X, X[:4]])
    vals = np.concatenate([y, ["round"] * 4])  # shape: one value only -> cannot be probed
    subs = np.concatenate([g, ["a", "a", "b", "b"]])
    res = probe_all_categories(feats, cats, vals, subs, folds=3)
    assert isinstance(res["color"], ValueProbe) and res["color"].category == "color"
    assert len(res["color"].cv_accuracy) == 3
    assert isinstance(res["shape"], str) and "distinct values" in res["shape"]


# ----------------------------------------------------------------------------- the registry


def _recorded_run(path, n_cases=6, H=4, C=6, S=3):
    """A store of ``n_cases`` synthetic cases with every kind of site (text, connector, conditioning,
    generator), a linear connector over ``[h_L ; h_{L-1}]``, and a reasoning prompt for every other
    case. The conditioning of a case is constant over its positions: ``c_pre(ref_new) = c_pre(direct)
    + 2 e_0`` and ``c_post(direct) = c_pre(direct) + [2 s, 1, 0, ...]``, so its edit strength is ``s``."""
    from types import SimpleNamespace

    from unike_interp.bench.entries import CaseEntry
    from unike_interp.interp.recorder import Recording
    from unike_interp.interp.store import ActivationStore
    from unike_interp.models.base import ConnectorWeights
    from unike_interp.models.sites import Site

    rng = np.random.default_rng(0)
    sites = [Site(f"text.{n}", "text", n, positions="tokens") for n in ("mlp.0", "resid.0", "resid.1")] + [
        Site("cond.connector_in", "conditioning", "proj", read="input:0"),
        Site("cond.tensor", "conditioning", "dit", read="input:1"),
        Site("gen.block.0", "generator", "b0"), Site("gen.block.1", "generator", "b1")]
    shapes = {"text": (2, H), "conditioning": (S, 2 * H), "generator": (5, C)}

    def recording(cond):
        values = {s.name: rng.standard_normal(shapes[s.pathway])[None] for s in sites}
        values["cond.tensor"] = np.tile(cond, (1, S, 1))
        return Recording(["p"], values, np.ones((1, S)), np.arange(S)[None], np.array([[0, 1]]))

    store = ActivationStore.open(path, {"model": "synthetic", "editor": "none", "seed": 0})
    strengths, entries = {}, {}
    for i in range(n_cases):
        cid = f"case-{i}"
        strengths[cid] = s = float(rng.normal())
        base = rng.standard_normal(C)
        e0 = np.eye(C)[0]
        pre = {"direct": base, "ref_old": base, "ref_new": base + 2 * e0}
        post = {"direct": base + 2 * s * e0 + np.eye(C)[1], "ref_old": base, "ref_new": base}
        if i % 2:
            pre["reasoning"], post["reasoning"] = base + 1.0, base + 2.0
        data = {state: {k: (recording(v), sites) for k, v in kinds.items()} for state, kinds in
                (("pre", pre), ("post", post))}
        store.write_case(cid, {"category": "color", "old": "red", "new": "blue"}, data)
        stage = {"direct": {"vqa": {"verdict": i < 3}}, "reasoning_image": {"vqa": {"verdict": i % 3 == 0}}}
        entries[cid] = CaseEntry(case_id=cid, subject="s", category="color", source="attribute", split=None, batch=0,
                                 guard_error=None, stages={"stage_1": stage})
    weight = rng.standard_normal((C, 2 * H)).astype(np.float32)
    adapter = SimpleNamespace(name="synthetic", num_layers=2, subject_values=lambda: None,
                              connector_weights=lambda: ConnectorWeights(weight, slice(0, H)))
    return adapter, store, entries, strengths


def test_registry_drives_the_statistics_and_the_figures(tmp_path):
    """Every statistic a recorded case yields belongs to exactly one registry entry, every entry that is
    computed per case yields some, and every figure of the registry draws from the stats written."""
    from unike_interp.interp import plots
    from unike_interp.interp.statistics import EDIT_STRENGTH, FIGURES, REASONING, STATISTICS, case_statistics
    from unike_interp.interp.summary import run_statistics

    adapter, store, entries, strengths = _recorded_run(tmp_path / "activations.h5")
    per_case = {cid: case_statistics(adapter, store, cid) for cid in strengths}
    names = {n for stats in per_case.values() for n in stats}
    owners = {n: [s for s in STATISTICS if s.match(n) is not None] for n in names}
    assert all(len(o) == 1 for o in owners.values()), {n: [s.name for s in o] for n, o in owners.items()}
    assert {o[0] for o in owners.values()} == {s for s in STATISTICS if s.compute is not None}
    for cid, s in strengths.items():
        assert per_case[cid][EDIT_STRENGTH.name] == pytest.approx(s)
        # constant slots: the subject slot (LM position 0) and all slots give the same strength
        assert per_case[cid]["edit_strength.subject"] == pytest.approx(s) == per_case[cid]["edit_strength.slots"]
        assert per_case[cid]["value_direction.aligned"] == 1.0 and per_case[cid]["value_direction.slots"] == 3
        assert (REASONING.format("strength_total") in per_case[cid]) == (int(cid.split("-")[1]) % 2 == 1)

    stats = run_statistics(adapter, store, entries, seed=0)
    assert stats["summary"]["probes"]["skipped"] and set(stats["per_case"]) == set(strengths)
    assert set(stats["summary"]["aucs"]["vqa_direct"]) == names
    res = plots.render(stats, None, tmp_path / "figures", strict=True)
    # no table.json; no value table; the causal analyses are analyze_run's, not run_statistics'
    assert set(res.skipped) == {"modality_gap", "probe_accuracy", "intervention_verdicts", "intervention_gain",
                                "causal_tracing", "knowledge_source"}
    assert {Path(p).name for p in res.written} == {f"{f.name}.{ext}" for f in FIGURES for ext in ("png", "pdf")
                                                   if f.name not in res.skipped}


# ----------------------------------------------------------------------------- position-aligned readers


def _acts(cond, positions, subject_last):
    return {"cond.tensor": np.asarray(cond, dtype=float), "_lm_positions": np.asarray(positions),
            "_subject_last": np.asarray(subject_last)}


def _aligned_case(subject_last=6, post_positions=(5, 6, 7), ref_new=((1, 0), (2, 1), (1, 3))):
    """Refs (3 slots, C = 2) differ at slots 1 and 2 by [2, 0] and [0, 2] -> d_a = [1, 1] (pooled d =
    [2/3, 2/3]). Direct prompt at LM positions 5, 6, 7, subject slot 1 (position 6); ΔC = [[0, 0], [2, 0],
    [0, 1]] against C_pre = [[1, 0], [0, 2], [3, 0]]."""
    from unike_interp.interp.statistics import CaseActivations

    old = _acts([[1, 0], [0, 1], [1, 1]], [0, 1, 2], -1)
    new = _acts(ref_new, np.arange(len(ref_new)), -1)
    pre = {"direct": _acts([[1, 0], [0, 2], [3, 0]], [5, 6, 7], subject_last), "ref_old": old, "ref_new": new}
    post = {"direct": _acts([[1, 0], [2, 2], [3, 1]], post_positions, subject_last), "ref_old": old, "ref_new": new}
    return CaseActivations(pre, post, None, 2)


def _all_stats(case):
    from unike_interp.interp.statistics import STATISTICS

    return {n: v for st in STATISTICS if st.applies(case) for n, v in st.evaluate(case).items()}


def test_value_direction_aligned_and_pooled():
    from unike_interp.interp.stats import value_direction

    vd = value_direction([[1, 0], [2, 1], [1, 3]], [[1, 0], [0, 1], [1, 1]])
    np.testing.assert_allclose(vd["d"], [1.0, 1.0])
    assert vd["aligned"] and vd["slots"] == 2
    vd = value_direction([[1, 0], [2, 1]], [[1, 0], [0, 1], [1, 1]])  # slot counts differ -> pooled
    np.testing.assert_allclose(vd["d"], [1.5 - 2 / 3, 0.5 - 2 / 3])
    assert not vd["aligned"] and vd["slots"] == 0
    vd = value_direction([[1, 0], [0, 1]], [[1, 0], [0, 1 + 1e-7]])  # float noise is no difference
    assert vd["slots"] == 0 and not np.any(vd["d"])


def test_position_aligned_statistics_hand_values():
    got = _all_stats(_aligned_case())
    want = {
        # pooled, unchanged: Δc = [2/3, 1/3], c_pre = [4/3, 2/3], d = [2/3, 2/3]
        "cond_drift": 0.5, "projection_cos": 3 / math.sqrt(10), "edit_strength": 0.75,
        # subject slot: Δ = [2, 0], c_pre = [0, 2], d_a = [1, 1]
        "cond_drift.subject": 1.0, "projection_cos.subject": 1 / S2, "edit_strength.subject": 1.0,
        # all slots: |ΔC|_F = sqrt(5), |C_pre|_F = sqrt(14), sum_s <ΔC_s, d_a> = 3, S = 3, |d_a|^2 = 2
        "cond_drift.slots": math.sqrt(5 / 14), "projection_cos.slots": 3 / math.sqrt(5 * 3 * 2),
        "edit_strength.slots": 3 / (3 * 2),
        "value_direction.aligned": 1.0, "value_direction.slots": 2.0,
    }
    assert {n: got[n] for n in want} == pytest.approx(want)
    assert set(got) == set(want)


def test_subject_reader_absent_without_a_subject_slot():
    for case in (_aligned_case(subject_last=-1),  # the prompt lacks the subject
                 _aligned_case(subject_last=2)):  # no slot reads the subject (learned queries after the prompt)
        got = _all_stats(case)
        assert not any(n.endswith(".subject") for n in got)
        assert got["edit_strength.slots"] == pytest.approx(0.5)
    # post at other LM positions: no slot-by-slot comparison, the subject slot still matches
    got = _all_stats(_aligned_case(post_positions=(4, 6, 7)))
    assert "cond_drift.slots" not in got and got["cond_drift.subject"] == pytest.approx(1.0)
    # refs of different lengths: pooled d_a, recorded
    got = _all_stats(_aligned_case(ref_new=((1, 0), (2, 1))))
    assert got["value_direction.aligned"] == 0.0 and "value_direction.slots" not in got
    d = np.array([1.5 - 2 / 3, 0.5 - 2 / 3])
    assert got["edit_strength.subject"] == pytest.approx(np.dot([2, 0], d) / np.dot(d, d))


def test_format_aucs_reports_intervals_and_refusals_once():
    from unike_interp.interp.analyze import format_aucs

    def row(auc, reason=None):
        return {"auc": auc, "ci_low": None if auc is None else auc - 0.1, "ci_high": None if auc is None else auc + 0.1,
                "refused": reason, "n_success": 12, "n_fail": 88}

    why = "fewer than 10 successes (5)"
    summary = {"aucs": {"vqa_direct": {"a": row(0.55), "b": row(0.2), "c": row(None, why), "d": row(None, why)},
                        "vqa_reasoning": {"a": row(None, why), "b": row(0.7), "c": row(0.9), "d": row(None, why)}}}
    lines = format_aucs(summary).splitlines()
    assert [ln.split()[0] for ln in lines[1:4]] == ["b", "a", "c"]  # direct |auc - .5| first, then reasoning-only
    assert "0.200 [0.10, 0.30] 12/88" in lines[1] and "refused" in lines[2]
    assert sum(why in ln for ln in lines) == 2  # once per outcome
    assert lines[-2] == f"refused for VQA direct, 2 statistic(s): {why}: c, d"
