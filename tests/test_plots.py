"""Figures from synthetic stats.json / table.json: every figure of the registry is written (PNG + PDF),
a figure whose data is absent is skipped with its reason, and analyses/figures.py works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unike_interp.interp import plots, plots_causal, statistics

REPO = Path(__file__).resolve().parents[1]
ALL = [f.name for f in statistics.FIGURES]


def _rate(k, n):
    return {"rate": round(k / n, 4), "k": k, "n": n, "ci": [max(0.0, k / n - 0.2), min(1.0, k / n + 0.2)]}


def _table(model: str, editor: str, n: int = 6) -> dict:
    row = {"source": "all", "n_cases": n, "n": n, "eff": _rate(n, n), "reason": _rate(n - 1, n),
           "vqa_direct": _rate(2, n), "vqa_reasoning": _rate(4, n), "pre_vqa": _rate(n, n)}
    return {"model": model, "editor": editor, "protocol": "batch", "n_cases": n,
            "main": {"color": {**row, "source": "attribute"}, "overall": row},
            "stages": {"stage_1": row}, "locality": {}}


def _stats(model: str, editor: str, *, bottleneck: bool, n: int = 6, layers: int = 3, blocks: int = 3) -> dict:
    rng = np.random.default_rng(0)
    cases = [f"sw-{i:04d}-{'color' if i % 2 else 'shape'}" for i in range(n)]
    per_case = {}
    for c in cases:
        d = {"edit_strength": float(rng.normal(0.5, 0.4)), "alignment": float(rng.uniform(-1, 1)),
             "projection_cos": float(rng.uniform(-1, 1)), "cond_drift": float(rng.uniform(0, 1)),
             "probe_reads_new": float(rng.integers(0, 2))}
        for i in range(layers):
            for pos in ("subject", "prompt"):
                d[f"text_drift_rel.resid.{i}.{pos}"] = float(rng.uniform(0, 2))
                d[f"text_drift_cos.resid.{i}.{pos}"] = float(rng.uniform(0, 1))
                d[f"text_drift_rel.mlp.{i}.{pos}"] = float(rng.uniform(0, 2))
        for j in range(blocks):
            d[f"generator_sensitivity.block.{j}"] = float(rng.uniform(0, 0.5))
        for k in ("norm_edit", "norm_reasoning", "norm_edit_on_reasoning", "ratio_reasoning",
                  "strength_edit", "strength_reasoning", "strength_edit_on_reasoning", "strength_total",
                  "cos_edit_reasoning"):
            d[f"reasoning.{k}"] = float(rng.normal(1, 0.5))
        if bottleneck:
            d["bottleneck_energy"] = float(rng.uniform(0, 1))
            d["bottleneck_gain_relative"] = float(rng.uniform(0, 1))
        per_case[c] = d
    per_case[cases[0]]["reasoning.strength_total"] = None  # a null (nan) value must not break anything
    success = {"vqa_direct": {c: i < 2 for i, c in enumerate(cases)},
               "vqa_reasoning": {c: i < 4 for i, c in enumerate(cases)}}
    names = sorted({k for v in per_case.values() for k in v})
    aucs = {}
    for key, s in success.items():
        aucs[key] = {}
        for nm in names:
            a = float(rng.uniform(0.1, 0.9))
            aucs[key][nm] = {"auc": a, "ci_low": a - 0.1, "ci_high": a + 0.1, "refused": None,
                             "direction": "higher->success", "n": n, "n_success": sum(s.values()),
                             "n_fail": n - sum(s.values()), "n_dropped": 0}
    aucs["vqa_reasoning"]["cond_drift"].update(auc=None, ci_low=None, ci_high=None,  # refused -> drawn as such
                                               refused="fewer than 10 failures (2)")
    shift = {"n": 3, "reads_new": 0.0, "reads_old": 1.0, "reads_other": 0.0, "p_new": 0.1, "p_old": 0.8}
    # color as probe_run writes it (validated probes beside the generator); shape as older stats.json did
    probes = {"color": {"cv_accuracy": 0.95, "chance": 0.2, "validated": True,
                        "generator": {"image-seen": 1.0, "text-only": 0.3, "all": 0.85},
                        "best_by_model": {"linear": {"cv_accuracy": 0.95, "reader": "subject"},
                                          "mlp": {"cv_accuracy": 0.9, "reader": "slots"}},
                        "pre": shift, "post": {**shift, "reads_new": 0.67, "reads_old": 0.33}},
              "shape": {"cv_accuracy": 0.4, "chance": 0.25},
              "size": {"skipped": "one class only"}}
    summary = {"model": model, "editor": editor, "n_cases": n, "aucs": aucs,
               "means": {nm: {"all": 0.0, "vqa_direct_success": 0.0, "vqa_direct_fail": 0.0} for nm in names},
               "probes": probes}
    return {"summary": summary, "per_case": per_case, "success": success, **_causal(cases, success, rng, layers)}


def _causal(cases, success, rng, layers) -> dict:
    """The interventions / tracing / knowledge_source entries, built by the functions analyze uses."""
    from types import SimpleNamespace

    from unike_interp.interp.interventions import InterventionConfig, summarize_interventions, verdict_of
    from unike_interp.interp.knowledge_source import outcome_table, summarize_swaps
    from unike_interp.interp.tracing import TraceCase, summarize_traces

    cfg = InterventionConfig()
    per_case, entries, records, swaps, traced = {}, {}, {}, {}, {}
    for i, c in enumerate(cases):
        oc = {n: {"verdict": bool(rng.random() < 0.3), "p_new": float(rng.random())} for n in cfg.names()}
        oc["gain:1"]["verdict"] = success["vqa_direct"][c]
        per_case[c] = {**verdict_of(oc, cfg), "outcomes": oc}
        ok = success["vqa_direct"][c]
        entries[c] = SimpleNamespace(split="image-seen" if i % 3 else "text-only", category=c.rsplit("-", 1)[1],
                                     succeeded=lambda s, im, ok=ok: ok,
                                     stages={"stage_1": {"pre": {"vqa_gt": {"verdict": True, "predicted": "red"}},
                                                         "direct": {"vqa": {"verdict": ok,
                                                                            "predicted": "blue" if ok else "red"}}}})
        records[c] = SimpleNamespace(stage_1=SimpleNamespace(gt="red", gt_target="blue"))
        swaps[c] = {"donor": "y", "single_token": False, "lm_from_donor": {"follows": ["lm", "name", "other"][i % 3]},
                    "name_from_donor": {"follows": ["name", "lm", "other"][i % 3]}}
        groups = {"first": [0], "subject_first": [1], "subject_last": [2]}
        traced[c] = TraceCase(c, groups, 0.0, 0.8, {d: np.where(np.isin(np.arange(7), [0, 2, 4]), rng.random((layers, 7)),
                                                                  np.nan) for d in ("restore", "inject")})
    iv = summarize_interventions(per_case, entries, cfg)
    return {"interventions": {"summary": iv, "per_case": per_case},
            "tracing": summarize_traces(traced, num_layers=layers, edit_layers=[0]),
            "knowledge_source": {"outcomes": outcome_table(entries, records, cases),
                                 "swap": summarize_swaps(swaps, entries)}}


def _write_run(root: Path, model: str, editor: str, *, bottleneck: bool) -> Path:
    run = root / f"{model}_{editor}"
    (run / "analysis").mkdir(parents=True)
    (run / "table.json").write_text(json.dumps(_table(model, editor)))
    (run / "analysis" / "stats.json").write_text(json.dumps(_stats(model, editor, bottleneck=bottleneck)))
    return run


@pytest.fixture()
def runs(tmp_path):
    return (_write_run(tmp_path, "toy-bottleneck", "memit", bottleneck=True),
            _write_run(tmp_path, "toy-direct", "rome", bottleneck=False))


def _assert_files(folder: Path, names):
    for name in names:
        for ext in ("png", "pdf"):
            p = folder / f"{name}.{ext}"
            assert p.is_file() and p.stat().st_size > 0, p


def test_render_all_with_bottleneck(runs):
    run = runs[0]
    written = plots.render_all(run / "analysis", run, strict=True, echo=None)
    _assert_files(run / "analysis" / "figures", ALL)
    assert len(written) == 2 * len(ALL)
    index = json.loads((run / "analysis" / "figures" / "index.json").read_text())
    assert index["skipped"] == {}


def test_render_all_skips_bottleneck_without_connector(runs):
    run = runs[1]
    written = plots.render_all(run / "analysis", run, strict=True, echo=None)
    rest = [n for n in ALL if n != "bottleneck_retention"]
    _assert_files(run / "analysis" / "figures", rest)
    assert not (run / "analysis" / "figures" / "bottleneck_retention.png").exists()
    assert len(written) == 2 * len(rest)
    skipped = json.loads((run / "analysis" / "figures" / "index.json").read_text())["skipped"]
    assert list(skipped) == ["bottleneck_retention"]
    assert "bottleneck_energy" in skipped["bottleneck_retention"]
    stats, table = plots.load_run(run)
    with pytest.raises(plots.FigureSkipped, match="bottleneck"):
        plots.fig_bottleneck_retention(stats, table)


def test_missing_files_skip_not_fail(tmp_path):
    res = plots.render(None, None, tmp_path / "f", strict=True)
    assert res.written == [] and set(res.skipped) == set(ALL)
    assert all(res.skipped.values())


def test_modality_gap_compares_tables(runs, tmp_path):
    tables = [(r.name, plots.load_run(r)[1]) for r in runs]
    fig = plots.fig_modality_gap(None, None, tables=tables)
    assert len(fig.axes[0].patches) == 3 * len(tables)
    paths = plots.save(fig, tmp_path, "gap")
    assert [Path(p).name for p in paths] == ["gap.png", "gap.pdf"]


def test_every_registry_figure_has_a_plot():
    assert set(plots.PLOTS) == set(statistics.FIGURES)


def _figures_cli(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "analyses/figures.py", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return r


def test_cli_modality_gap(runs, tmp_path):
    out = tmp_path / "figs"
    _figures_cli(str(runs[0]), str(runs[1]), "--figure", "modality_gap", "--out", str(out))
    _assert_files(out, ["modality_gap"])
    assert sorted(p.name for p in out.iterdir()) == ["modality_gap.pdf", "modality_gap.png"]


def test_cli_compares_runs_in_one_plot(runs, tmp_path):
    """The verdicts and the knowledge source of several runs go into one plot each, like the modality gap."""
    out = tmp_path / "cmp"
    _figures_cli(str(runs[0]), str(runs[1]), "--figure", "intervention_verdicts", "--figure", "knowledge_source",
                 "--figure", "causal_tracing", "--out", str(out))
    names = sorted(p.stem for p in out.iterdir() if p.suffix == ".png")
    assert names == ["causal_tracing__toy-bottleneck_memit", "causal_tracing__toy-direct_rome",
                     "intervention_verdicts", "knowledge_source"]
    stats = [(r.name, json.loads((r / "analysis" / "stats.json").read_text())) for r in runs]
    fig = plots_causal.fig_intervention_verdicts(None, None, runs=stats)
    # per run: all failed cases, then one bar per split; each bar's verdict shares sum to 1
    n_bars = sum(1 + len(s["interventions"]["summary"]["verdicts"]["split"]) for _, s in stats)
    heights = np.zeros(n_bars)
    for patch in fig.axes[0].patches:
        heights[int(round(patch.get_x() + patch.get_width() / 2))] += patch.get_height()
    np.testing.assert_allclose(heights, 1.0)


def test_cli_every_figure_and_list(runs, tmp_path):
    out = tmp_path / "figs"
    _figures_cli(str(runs[0]), "--out", str(out))
    _assert_files(out, ALL)
    listed = _figures_cli("--list").stdout.splitlines()
    assert [line.split()[0] for line in listed] == ALL


def test_auc_table_figure_bars_and_refusals(tmp_path):
    """Bars with whiskers where AUCs are reported; a message panel where every AUC is refused."""
    stats = _stats("toy-direct", "memit", bottleneck=False)
    fig = plots.fig_auc_table(stats, None)
    assert len(fig.axes) == 2 and "success" in fig.axes[0].get_title()
    assert len(fig.axes[0].patches) >= 20  # one bar per shown statistic
    for row in stats["summary"]["aucs"]["vqa_reasoning"].values():
        row.update(auc=None, ci_low=None, ci_high=None, refused="fewer than 10 successes (4)")
    fig = plots.fig_auc_table(stats, None)
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert any("fewer than 10 successes (4)" in t for t in texts) and not fig.axes[1].patches
    plots.save(fig, tmp_path, "auc_table")
    assert (tmp_path / "auc_table.png").exists()
