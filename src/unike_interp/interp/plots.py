"""Figures of the study, from a run's ``table.json`` and its analysis ``stats.json``.

The figures, their names and titles, and the statistics each shows are declared in
:mod:`unike_interp.interp.statistics` (:data:`~unike_interp.interp.statistics.FIGURES`); this
module draws them: one function per figure, ``fig_<name>(stats, table, ...) -> Figure``
(``stats``: the dict written by :func:`unike_interp.interp.analyze.analyze_run`; ``table``: the
dict written by :func:`unike_interp.bench.aggregate.build_table`; either may be ``None`` where the
figure does not need it), bound to its registry entry in :data:`PLOTS`. A figure whose data is
absent raises :class:`FigureSkipped` with the reason (e.g. the bottleneck retention of a model
without a connector). :func:`save` writes ``name.png`` (150 dpi) and ``name.pdf``;
:func:`render_all` renders every figure of a run into ``<analysis_dir>/figures/`` and lists the
skipped ones (with their reasons) in ``index.json``.

Error bars on means are the standard error over cases (``std / sqrt(n)``, ``ddof=1``); the
modality gap uses the table's 95% case-bootstrap intervals.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import statistics as R  # noqa: E402  (the registry of figures and statistics)
from .figure_common import FigureSkipped  # noqa: E402
from .figure_common import model_editor as _model_editor  # noqa: E402,F401
from .figure_common import title as _title  # noqa: E402

__all__ = [
    "FigureSkipped", "PLOTS", "RenderResult", "save", "load_run", "render", "render_all", "render_figure",
    "fig_modality_gap", "fig_drift_by_layer", "fig_edit_strength_by_success", "fig_alignment_by_success",
    "fig_bottleneck_retention", "fig_generator_sensitivity", "fig_reasoning_decomposition",
    "fig_probe_accuracy", "fig_auc_table",
]

SUCCESS_LABELS = {"vqa_direct": "VQA Direct", "vqa_reasoning": "VQA Reasoning"}
GAP_METRICS = (("eff", "Eff."), ("vqa_direct", "VQA Direct"), ("vqa_reasoning", "VQA Reasoning"))
C_FAIL, C_OK = "#d55e00", "#009e73"
C_SUBJECT, C_PROMPT = "#0072b2", "#e69f00"


# --------------------------------------------------------------------------- helpers


def _per_case(stats: dict | None) -> dict[str, dict[str, float]]:
    return (stats or {}).get("per_case") or {}


def _values(stats: dict | None, name: str, cases: Iterable[str] | None = None) -> np.ndarray:
    """One statistic over cases (``nan`` where a case lacks it or it is ``null``)."""
    pc = _per_case(stats)
    cases = list(pc) if cases is None else list(cases)
    out = []
    for c in cases:
        v = pc.get(c, {}).get(name)
        out.append(np.nan if v is None else float(v))
    return np.asarray(out, dtype=float)


def _has_stat(stats: dict | None, name: str) -> bool:
    return bool(np.isfinite(_values(stats, name)).any())


def _mean_sem(v: np.ndarray) -> tuple[float, float, int]:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, 0
    sem = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return float(np.mean(v)), sem, int(v.size)


def _stat_names(stats: dict | None) -> list[str]:
    return sorted({k for v in _per_case(stats).values() for k in v})


def _success(stats: dict | None, key: str = "vqa_direct") -> dict[str, bool]:
    return ((stats or {}).get("success") or {}).get(key) or {}


def _require_stats(stats: dict | None) -> dict:
    if not stats or not _per_case(stats):
        raise FigureSkipped("no per-case statistics (stats.json absent or empty)")
    return stats


# --------------------------------------------------------------------------- figures


def fig_modality_gap(stats: dict | None, table: dict | None,
                     tables: Sequence[tuple[str, dict]] | None = None, *, row: str = "overall") -> Figure:
    """Eff., VQA Direct and VQA Reasoning (stage 1, ``row`` of the main table) with 95% CIs.

    ``tables``: several ``(label, table)`` to compare models/editors in one plot; default the one
    ``table`` (labelled ``model × editor``).
    """
    if tables is None:
        if not table:
            raise FigureSkipped("no table.json")
        model, editor = _model_editor(stats, table)
        tables = [(f"{model} × {editor}", table)]
    tables = [(lab, t) for lab, t in tables if t and row in (t.get("main") or {})]
    if not tables:
        raise FigureSkipped(f"no '{row}' row in the table(s)")
    n_t, n_m = len(tables), len(GAP_METRICS)
    width = 0.8 / n_t
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * n_m + 0.9 * n_t * n_m), 4.6), constrained_layout=True)
    colors = plt.get_cmap("tab10").colors
    x = np.arange(n_m)
    for i, (label, t) in enumerate(tables):
        r = t["main"][row]
        rates, lo, hi, ann = [], [], [], []
        for key, _ in GAP_METRICS:
            m = r.get(key) or {}
            rv = m.get("rate")
            rv = np.nan if rv is None else 100 * float(rv)
            ci = m.get("ci")
            rates.append(rv)
            lo.append(rv - 100 * ci[0] if ci and np.isfinite(rv) else 0.0)
            hi.append(100 * ci[1] - rv if ci and np.isfinite(rv) else 0.0)
            ann.append(f"{m.get('k', '?')}/{m.get('n', '?')}")
        pos = x - 0.4 + width * (i + 0.5)
        n_cases = r.get("n_cases")
        bars = ax.bar(pos, np.nan_to_num(rates), width * 0.92, color=colors[i % len(colors)],
                      label=f"{label} (n={n_cases})" if n_cases is not None else label,
                      yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], capsize=4, error_kw={"elinewidth": 1.2})
        for b, a, rv in zip(bars, ann, rates):
            ax.text(b.get_x() + b.get_width() / 2, 1.5, a if np.isfinite(rv) else "n/a", ha="center",
                    va="bottom", fontsize=8, color="white" if np.isfinite(rv) and rv > 12 else "black")
    ax.set_xticks(x, [lab for _, lab in GAP_METRICS])
    ax.set_ylabel("success rate (%)  [95% case-bootstrap CI]")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if n_t > 1:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(n_t, 3), frameon=False)
        fig.suptitle(f"{R.FIG_MODALITY_GAP.title}, {row}", fontsize=11)
    else:
        n = tables[0][1]["main"][row].get("n_cases")
        _title(fig, f"{R.FIG_MODALITY_GAP.title}, {row}", None, tables[0][1], n)
    return fig


def _layer_keys(stats: dict, stat: R.Statistic, site: str) -> dict[int, dict[str, str]]:
    """layer -> {row: statistic name} of ``stat`` (a text-drift family) at ``site``.<layer>."""
    out: dict[int, dict[str, str]] = {}
    for n in _stat_names(stats):
        parts = stat.match(n)
        if parts and parts["pos"] in R.TEXT_ROWS and (m := re.fullmatch(rf"{site}\.(\d+)", parts["site"])):
            out.setdefault(int(m.group(1)), {})[parts["pos"]] = n
    return dict(sorted(out.items()))


def fig_drift_by_layer(stats: dict, table: dict | None = None, *, site: str = "resid") -> Figure:
    """Mean relative drift and cosine distance of each text layer (``site``.0..L-1), subject vs prompt token."""
    stats = _require_stats(stats)
    panels = [(k, lab) for k, lab in ((R.TEXT_DRIFT_REL, "relative drift  |Δh| / |h|"),
                                      (R.TEXT_DRIFT_COS, "cosine distance  1 − cos(h, h′)"))
              if _layer_keys(stats, k, site)]
    if not panels:
        raise FigureSkipped(f"no {R.TEXT_DRIFT_REL.name} / {R.TEXT_DRIFT_COS.name} statistics with site {site}.<layer>")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), constrained_layout=True, squeeze=False)
    for ax, (kind, ylabel) in zip(axes[0], panels):
        keys = _layer_keys(stats, kind, site)
        layers = list(keys)
        for pos, color, off in zip(R.TEXT_ROWS, (C_SUBJECT, C_PROMPT), (-0.06, 0.06)):
            ms = [_mean_sem(_values(stats, keys[i][pos])) if pos in keys[i] else (np.nan, np.nan, 0) for i in layers]
            n = max((m[2] for m in ms), default=0)
            ax.errorbar(np.asarray(layers) + off, [m[0] for m in ms], yerr=[m[1] for m in ms], marker="o",
                        capsize=3, color=color, label=f"{pos} last token (n={n})")
        ax.set_xticks(layers)
        ax.set_xlabel(f"text layer ({site}.i)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    _title(fig, R.FIG_DRIFT_BY_LAYER.title, stats, table)
    return fig


def _split_panel(ax, stats: dict, name: str, success_key: str, refs: Sequence[float], ylabel: str) -> None:
    """Box + strip of ``name`` over cases, split by the case's ``success_key`` outcome."""
    import pandas as pd
    import seaborn as sns

    succ = _success(stats, success_key)
    pc = _per_case(stats)
    cases = [c for c in pc if c in succ] if succ else list(pc)
    v = _values(stats, name, cases)
    ok = np.isfinite(v)
    lab_f, lab_s = "fail", "success"
    groups = [lab_s if succ.get(c) else lab_f for c in cases]
    n_f = sum(1 for g, o in zip(groups, ok) if o and g == lab_f)
    n_s = sum(1 for g, o in zip(groups, ok) if o and g == lab_s)
    names = {lab_f: f"{SUCCESS_LABELS.get(success_key, success_key)} fail\n(n={n_f})",
             lab_s: f"{SUCCESS_LABELS.get(success_key, success_key)} success\n(n={n_s})"}
    df = pd.DataFrame({"group": [names[g] for g, o in zip(groups, ok) if o], "value": v[ok]})
    order = [names[lab_f], names[lab_s]]
    palette = {names[lab_f]: C_FAIL, names[lab_s]: C_OK}
    for r in refs:
        ax.axhline(r, ls="--", lw=1, color="grey", zorder=0)
    if len(df):
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's deprecated ``vert``
            warnings.filterwarnings("ignore", message=".*vert.*", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*vert.*", category=PendingDeprecationWarning)
            sns.boxplot(data=df, x="group", y="value", hue="group", order=order, hue_order=order, palette=palette,
                        ax=ax, width=0.5, showfliers=False, boxprops={"alpha": 0.35}, legend=False)
        sns.stripplot(data=df, x="group", y="value", hue="group", order=order, hue_order=order, palette=palette,
                      ax=ax, size=5, jitter=0.15, edgecolor="black", linewidth=0.5, legend=False)
    else:
        ax.set_xticks([0, 1], order)
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", color="grey")
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def fig_edit_strength_by_success(stats: dict, table: dict | None = None, *, success_key: str = "vqa_direct") -> Figure:
    """Edit strength ``<Δc, d>/|d|²`` per case, split by VQA direct success (1.0 = spelling the new value out)."""
    stats = _require_stats(stats)
    if not _has_stat(stats, R.EDIT_STRENGTH.name):
        raise FigureSkipped(f"no {R.EDIT_STRENGTH.name} statistic")
    fig, ax = plt.subplots(figsize=(5.0, 4.4), constrained_layout=True)
    _split_panel(ax, stats, R.EDIT_STRENGTH.name, success_key, (0.0, 1.0),
                 "edit strength  ⟨Δc, d⟩ / |d|²\n(1 = as far as spelling out the new value)")
    _title(fig, R.FIG_EDIT_STRENGTH.title, stats, table)
    return fig


def fig_alignment_by_success(stats: dict, table: dict | None = None, *, success_key: str = "vqa_direct") -> Figure:
    """Alignment (text Δ vs conditioning Δ) and projection cosine (Δc vs attribute direction) by VQA success."""
    stats = _require_stats(stats)
    panels = [(s.name, lab) for s, lab in ((R.ALIGNMENT, "alignment  cos(Δh_L, Δc)"),
                                           (R.PROJECTION_COS, "projection cos(Δc, d)")) if _has_stat(stats, s.name)]
    if not panels:
        raise FigureSkipped(f"no {R.ALIGNMENT.name} / {R.PROJECTION_COS.name} statistics")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.4), constrained_layout=True, squeeze=False)
    for ax, (n, lab) in zip(axes[0], panels):
        _split_panel(ax, stats, n, success_key, (0.0,), lab)
        ax.set_ylim(-1.05, 1.05)
    _title(fig, R.FIG_ALIGNMENT.title, stats, table)
    return fig


def fig_bottleneck_retention(stats: dict, table: dict | None = None, *, success_key: str = "vqa_direct") -> Figure:
    """Share of Δ(connector input) the connector can pass on (energy) and its gain relative to the top one."""
    stats = _require_stats(stats)
    panels = [(s.name, lab) for s, lab in ((R.BOTTLENECK_ENERGY, "energy retained  |V_kᵀΔ|² / |Δ|²"),
                                           (R.BOTTLENECK_GAIN, "relative gain  |WΔ| / (|Δ| s₁)"))
              if _has_stat(stats, s.name)]
    if not panels:
        model, _ = _model_editor(stats, table)
        raise FigureSkipped(f"no {R.BOTTLENECK_ENERGY.name} / {R.BOTTLENECK_GAIN.name} statistics "
                            f"(model {model} has no linear connector)")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.4), constrained_layout=True, squeeze=False)
    for ax, (n, lab) in zip(axes[0], panels):
        _split_panel(ax, stats, n, success_key, (0.0, 1.0), lab)
        ax.set_ylim(-0.05, 1.05)
    _title(fig, R.FIG_BOTTLENECK.title, stats, table)
    return fig


def fig_generator_sensitivity(stats: dict, table: dict | None = None) -> Figure:
    """Mean relative change of each generator block's output (± s.e.m.), all cases and by VQA direct outcome."""
    stats = _require_stats(stats)
    blocks = []  # (block kind, index, statistic name)
    for n in _stat_names(stats):
        parts = R.GENERATOR_SENSITIVITY.match(n)
        if parts and (m := re.fullmatch(r"(.+?)\.(\d+)", parts["block"])):
            blocks.append((m.group(1), int(m.group(2)), n))
    blocks.sort(key=lambda t: (t[0], t[1]))
    if not blocks:
        raise FigureSkipped(f"no {R.GENERATOR_SENSITIVITY.name} statistics")
    succ = _success(stats, "vqa_direct")
    pc = _per_case(stats)
    fig, ax = plt.subplots(figsize=(max(5.5, 0.7 * len(blocks) + 2.5), 4.4), constrained_layout=True)
    x = np.arange(len(blocks))
    ms = [_mean_sem(_values(stats, n)) for _, _, n in blocks]
    ax.bar(x, [m[0] for m in ms], 0.6, yerr=[m[1] for m in ms], capsize=4, color="#999999", alpha=0.6,
           label=f"all cases (n={max(m[2] for m in ms)})")
    for ok, color, off, lab in ((False, C_FAIL, -0.12, "VQA Direct fail"), (True, C_OK, 0.12, "VQA Direct success")):
        cs = [c for c in pc if bool(succ.get(c)) is ok] if succ else []
        if not cs:
            continue
        mm = [_mean_sem(_values(stats, n, cs)) for _, _, n in blocks]
        ax.errorbar(x + off, [m[0] for m in mm], yerr=[m[1] for m in mm], fmt="o", capsize=3, color=color,
                    label=f"{lab} (n={len(cs)})")
    ax.set_xticks(x, [f"{kind}.{i}" for kind, i, _ in blocks], rotation=0 if len(blocks) < 9 else 45)
    ax.set_xlabel("generator block")
    ax.set_ylabel("relative change  |Δy| / |y|")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, frameon=False)
    _title(fig, R.FIG_GENERATOR.title, stats, table)
    return fig


def _bar_means(ax, stats: dict, names: Sequence[tuple[str, str]], color: str) -> int:
    ms = [_mean_sem(_values(stats, n)) for n, _ in names]
    x = np.arange(len(names))
    ax.bar(x, [m[0] for m in ms], 0.6, yerr=[m[1] for m in ms], capsize=4, color=color, alpha=0.8)
    pc = _per_case(stats)
    for i, (n, _) in enumerate(names):  # the cases themselves
        v = _values(stats, n, pc)
        v = v[np.isfinite(v)]
        ax.scatter(np.full(v.size, i) + np.linspace(-0.12, 0.12, v.size) if v.size > 1 else np.full(v.size, i),
                   v, s=12, color="black", alpha=0.6, zorder=3)
    ax.set_xticks(x, [lab for _, lab in names])
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return max((m[2] for m in ms), default=0)


def fig_reasoning_decomposition(stats: dict, table: dict | None = None) -> Figure:
    """Norms of the edit / reasoning / edit-on-reasoning shifts and their strengths along the attribute."""
    stats = _require_stats(stats)
    norms = [(R.REASONING.format(k), lab) for k, lab in (
        ("norm_edit", "edit\n(direct)"), ("norm_reasoning", "reasoning"),
        ("norm_edit_on_reasoning", "edit on\nreasoning"))]
    strengths = [(R.REASONING.format(k), lab) for k, lab in (
        ("strength_edit", "edit\n(direct)"), ("strength_reasoning", "reasoning"),
        ("strength_edit_on_reasoning", "edit on\nreasoning"), ("strength_total", "total\n(edit+reasoning)"))]
    norms = [p for p in norms if _has_stat(stats, p[0])]
    strengths = [p for p in strengths if _has_stat(stats, p[0])]
    if not norms and not strengths:
        raise FigureSkipped(f"no {R.REASONING.name} statistics (no reasoning prompt recorded)")
    panels = [p for p in ((norms, "shift norm  |Δc|", "#56b4e9", ()),
                          (strengths, "strength  ⟨v, d⟩ / |d|²", "#cc79a7", (0.0, 1.0))) if p[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 + 1.2 * sum(len(p[0]) for p in panels), 4.4),
                             constrained_layout=True, squeeze=False,
                             gridspec_kw={"width_ratios": [len(p[0]) for p in panels]})
    n = 0
    for ax, (names, ylabel, color, refs) in zip(axes[0], panels):
        for r in refs:
            ax.axhline(r, ls="--", lw=1, color="grey", zorder=0)
        n = max(n, _bar_means(ax, stats, names, color))
        ax.set_ylabel(ylabel)
    _title(fig, R.FIG_REASONING.title, stats, table, n)
    return fig


def fig_probe_accuracy(stats: dict, table: dict | None = None) -> Figure:
    """Per category: how often the best probe (best reader and template set; linear and MLP) reads a
    held-out subject's value from the conditioning, beside how often the generator draws it (image-seen
    and text-only subjects), chance marked, a tick over validated categories; then, where cases were
    read, the share read as the new / old value before and after the edit."""
    summary = (stats or {}).get("summary") or {}
    probes = summary.get("probes")
    if not probes:
        raise FigureSkipped("no probes in stats.json")
    if isinstance(probes.get("skipped"), str):
        raise FigureSkipped(f"probes skipped: {probes['skipped']}")
    cats = sorted(c for c, p in probes.items() if isinstance(p, dict))
    trained = [c for c in cats if probes[c].get("cv_accuracy") is not None]
    if not trained:
        raise FigureSkipped("no probe was trained: " + "; ".join(f"{c}: {probes[c].get('skipped')}" for c in cats))

    def probe_acc(c: str, model: str):
        best = (probes[c].get("best_by_model") or {}).get(model)
        if best is not None:
            return best.get("cv_accuracy")
        # a stats.json from before the MLP probes: its one linear probe
        return probes[c].get("cv_accuracy") if model == "linear" else None

    gen = {c: probes[c].get("generator") or {} for c in cats}
    bars = [("probe, linear", "#0072b2", lambda c: probe_acc(c, "linear")),
            ("probe, small MLP", "#56b4e9", lambda c: probe_acc(c, "mlp")),
            ("generator, image-seen subjects", "#009e73", lambda c: gen[c].get("image-seen")),
            ("generator, text-only subjects", "#cc79a7", lambda c: gen[c].get("text-only"))]
    bars = [b for b in bars if any(b[2](c) is not None for c in cats)]
    shifted = [c for c in trained if probes[c].get("pre") and probes[c].get("post")]
    ncol = 2 if shifted else 1
    width = 1.1 * len(cats) + 3.0 + (0.9 * len(shifted) + 2.5 if shifted else 0)
    ratios = [max(len(cats), 1)] + ([max(len(shifted), 2)] if shifted else [])
    fig, axes = plt.subplots(1, ncol, figsize=(width, 5.0), constrained_layout=True, squeeze=False,
                             gridspec_kw={"width_ratios": ratios})
    ax = axes[0][0]
    x = np.arange(len(cats))
    w = 0.8 / len(bars)
    for j, (label, color, get) in enumerate(bars):
        vals = [get(c) for c in cats]
        ax.bar(x - 0.4 + w * (j + 0.5), [np.nan if v is None else 100 * v for v in vals], w * 0.92, color=color,
               label=label)
    for i, c in enumerate(cats):
        ch = probes[c].get("chance")
        if ch is not None:
            ax.hlines(100 * ch, i - 0.42, i + 0.42, colors="black", linestyles="--", lw=1.2,
                      label="chance (always the commonest value)" if i == 0 else None)
        if probes[c].get("cv_accuracy") is None:
            ax.text(i, 2, "no probe", rotation=90, ha="center", va="bottom", fontsize=8, color="grey")
        elif probes[c].get("validated"):
            ax.text(i, 101, "✓", ha="center", va="bottom", fontsize=11, color=C_OK)
    ax.set_xticks(x, cats, rotation=45, ha="right")
    ax.set_xlim(-0.6, len(cats) - 0.4)
    ax.set_ylabel("values read or drawn correctly (%)")
    ax.set_ylim(0, 125)  # headroom for the ticks and the legend
    ax.set_yticks(np.arange(0, 101, 20))
    ax.set_title("probes scored on subjects they never saw (grouped CV); ✓ = a probe reads at least as well as\n"
                 "the generator draws image-seen subjects (or >= 90%)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=7, frameon=False, loc="upper left", ncol=3)
    if shifted:
        ax = axes[0][1]
        x = np.arange(len(shifted))
        w = 0.2
        spec = (("pre", "reads_new", "#9ad0b9", "new value, before the edit"),
                ("post", "reads_new", C_OK, "new value, after"),
                ("pre", "reads_old", "#f2b48c", "old value, before"), ("post", "reads_old", C_FAIL, "old value, after"))
        for j, (state, key, color, lab) in enumerate(spec):
            vals = [probes[c][state].get(key) for c in shifted]
            ax.bar(x - 1.5 * w + j * w, [np.nan if v is None else 100 * v for v in vals], w * 0.95, color=color,
                   label=lab)
        ax.set_xticks(x, [f"{c}\n(n={probes[c]['post'].get('n', '?')})" for c in shifted], rotation=0)
        ax.set_ylabel("edited cases the probe reads as (%)")
        ax.set_ylim(0, 130)  # headroom for the legend
        ax.set_yticks(np.arange(0, 101, 20))
        ax.set_title("the probe used, on the edited cases' direct prompt", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(fontsize=7, frameon=False, loc="upper right", ncol=2)
    _title(fig, R.FIG_PROBES.title, stats, table)
    return fig


def fig_auc_table(stats: dict, table: dict | None = None, *, top: int = 20) -> Figure:
    """ROC AUC of each statistic for VQA direct / reasoning success with its 95% bootstrap interval.

    One panel per outcome: horizontal bars from 0.5 to the AUC, whiskers the interval, the ``top``
    statistics furthest from 0.5 (over the outcomes) as rows; a refused AUC (too few cases of one
    outcome, :func:`~unike_interp.interp.stats.auc_table`) is written as "refused", and a panel whose
    every AUC is refused shows the reason instead of bars.
    """
    aucs = ((stats or {}).get("summary") or {}).get("aucs") or {}
    keys = [k for k in ("vqa_direct", "vqa_reasoning") if aucs.get(k)] + \
        [k for k in aucs if k not in ("vqa_direct", "vqa_reasoning") and aucs.get(k)]
    if not keys:
        raise FigureSkipped("no AUCs in stats.json")

    def entry(k, n) -> dict:
        return aucs[k].get(n) or {}

    def auc(k, n) -> float:
        a = entry(k, n).get("auc")
        return np.nan if a is None else float(a)

    names = sorted({n for k in keys for n in aucs[k]})
    reported = [n for n in names if np.isfinite([auc(k, n) for k in keys]).any()]
    score = {n: np.nanmax([abs(auc(k, n) - 0.5) for k in keys]) for n in reported}
    shown = sorted(reported, key=lambda n: (-score[n], n))[:top]
    rows = max(len(shown), 3)
    width = 0.06 * max((len(n) for n in shown), default=20)
    fig, axes = plt.subplots(1, len(keys), figsize=(1.5 + width + 3.6 * len(keys), 1.9 + 0.3 * rows),
                             constrained_layout=True, squeeze=False, sharey=True)
    y = np.arange(len(shown))
    for j, (ax, k) in enumerate(zip(axes[0], keys)):
        ents = [v for v in aucs[k].values() if isinstance(v, dict)]
        most = max(ents, key=lambda r: r.get("n") or 0) if ents else {}
        ax.set_title(f"{SUCCESS_LABELS.get(k, k)}: {most.get('n_success', '?')} success / "
                     f"{most.get('n_fail', '?')} fail", fontsize=9)
        ax.axvline(0.5, ls="--", lw=1, color="grey", zorder=0)
        ax.set_xlim(0, 1)
        ax.set_xlabel("AUC  (0.5 = uninformative; > 0.5: higher → success)", fontsize=8)
        every_refused = not any(e.get("auc") is not None for e in ents)
        if every_refused:
            why = sorted({e.get("refused") or "undefined" for e in ents})
            ax.text(0.5, 0.5, "no AUC reported:\n" + "\n".join(why) + "\n(every statistic refused)",
                    transform=ax.transAxes, ha="center", va="center", fontsize=10, color="#aa0000",
                    bbox={"boxstyle": "round", "facecolor": "#fff3f3", "edgecolor": "#aa0000"})
        for i, n in enumerate([] if every_refused else shown):
            e, a = entry(k, n), auc(k, n)
            if not np.isfinite(a):
                ax.text(0.5, i, "refused" if e.get("refused") else "n/a", ha="center", va="center", fontsize=7,
                        color="grey")
                continue
            lo, hi = e.get("ci_low"), e.get("ci_high")
            err = None if lo is None or hi is None else [[max(a - lo, 0.0)], [max(hi - a, 0.0)]]
            ax.barh(i, a - 0.5, left=0.5, height=0.6, color=C_OK if a >= 0.5 else C_FAIL, alpha=0.75,
                    xerr=err, error_kw={"elinewidth": 1.1, "capsize": 3})
            label = f"{a:.2f}" + ("" if err is None else f" [{lo:.2f}, {hi:.2f}]")
            ax.text(0.02 if a >= 0.5 else 0.98, i, label, ha="left" if a >= 0.5 else "right", va="center",
                    fontsize=7)  # on the side away from the bar and its whiskers
        if j == 0:
            ax.set_yticks(y, shown, fontsize=8)
        ax.set_ylim(len(shown) - 0.5 if shown else 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    what = (f"top {len(shown)} of {len(names)} by |AUC − 0.5|" if len(reported) > len(shown)
            else f"{len(shown)} of {len(names)} reported")
    _title(fig, f"{R.FIG_AUC_TABLE.title} with 95% bootstrap CI ({what})", stats, table)
    return fig


#: The function drawing each figure of the registry.
PLOTS: dict[R.Figure, Callable[..., Figure]] = {
    R.FIG_MODALITY_GAP: fig_modality_gap,
    R.FIG_DRIFT_BY_LAYER: fig_drift_by_layer,
    R.FIG_EDIT_STRENGTH: fig_edit_strength_by_success,
    R.FIG_ALIGNMENT: fig_alignment_by_success,
    R.FIG_BOTTLENECK: fig_bottleneck_retention,
    R.FIG_GENERATOR: fig_generator_sensitivity,
    R.FIG_REASONING: fig_reasoning_decomposition,
    R.FIG_PROBES: fig_probe_accuracy,
    R.FIG_AUC_TABLE: fig_auc_table,
}
from .plots_causal import CAUSAL_PLOTS  # noqa: E402  (it draws with this module's helpers)

PLOTS.update(CAUSAL_PLOTS)


# --------------------------------------------------------------------------- files


def save(fig: Figure, out_dir: str | Path, name: str) -> list[str]:
    """Write ``out_dir/name.png`` (150 dpi) and ``out_dir/name.pdf``; close ``fig``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for ext, kw in (("png", {"dpi": 150}), ("pdf", {})):
            p = out / f"{name}.{ext}"
            fig.savefig(p, bbox_inches="tight", **kw)
            paths.append(str(p))
    finally:
        plt.close(fig)
    return paths


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_run(run_dir: str | Path | None, analysis_dir: str | Path | None = None) -> tuple[dict | None, dict | None]:
    """``(stats, table)`` of a run: ``<analysis_dir or run_dir/analysis>/stats.json``, ``<run_dir>/table.json``
    (``None`` for a file that is absent)."""
    from ..bench.run_folder import RunFolder

    run = RunFolder(run_dir) if run_dir is not None else None
    ana = Path(analysis_dir) if analysis_dir is not None else (run.analysis_dir if run is not None else None)
    stats = _read_json(RunFolder.analysis_file(ana, "stats")) if ana is not None else None
    table = _read_json(run.table_path("json")) if run is not None else None
    return stats, table


def render_figure(name: str, stats: dict | None, table: dict | None, out_dir: str | Path,
                  *, file_name: str | None = None, **kw) -> list[str]:
    """Render and save the registry's figure ``name``; raises :class:`FigureSkipped` when its data is absent."""
    fig = PLOTS[R.figure(name)](stats, table, **kw)
    return save(fig, out_dir, file_name or name)


@dataclass
class RenderResult:
    written: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # figure -> reason


def render(stats: dict | None, table: dict | None, out_dir: str | Path, *, names: Iterable[str] | None = None,
           strict: bool = False, echo: Callable[[str], None] | None = None) -> RenderResult:
    """Every figure (or ``names``) into ``out_dir``; absent data -> skipped with its reason.

    A figure that fails otherwise is also listed as skipped (``error: ...``) unless ``strict``.
    Writes ``out_dir/index.json`` (``written``, ``skipped``, and the ``titles`` of the written figures,
    which the run's ``report.html`` shows as captions).
    """
    res = RenderResult()
    out = Path(out_dir)
    for name in (names or [f.name for f in R.FIGURES]):
        try:
            res.written += render_figure(name, stats, table, out)
        except FigureSkipped as e:
            res.skipped[name] = str(e)
        except Exception as e:  # a plotting bug must not lose the analysis
            if strict:
                raise
            res.skipped[name] = f"error: {type(e).__name__}: {e}"
        finally:
            plt.close("all")
        if echo and name in res.skipped:
            echo(f"[figures] skipped {name}: {res.skipped[name]}")
    out.mkdir(parents=True, exist_ok=True)
    titles = {f.name: f.title for f in R.FIGURES}
    written = [Path(p).name for p in res.written]
    (out / "index.json").write_text(json.dumps({"written": written, "skipped": res.skipped,
                                                "titles": {n: titles[n] for n in titles if f"{n}.png" in written}},
                                               indent=1) + "\n", encoding="utf-8")
    return res


def render_all(analysis_dir: str | Path, run_dir: str | Path | None = None, *, strict: bool = False,
               echo: Callable[[str], None] | None = print) -> list[str]:
    """Load ``<analysis_dir>/stats.json`` and ``<run_dir>/table.json`` (run_dir default: analysis_dir's
    parent), render every figure into ``<analysis_dir>/figures/``; return the written paths.

    Skipped figures and their reasons are echoed and listed in ``figures/index.json``.
    """
    ana = Path(analysis_dir)
    run = Path(run_dir) if run_dir is not None else ana.parent
    from ..bench.run_folder import RunFolder

    stats, table = load_run(run, ana)
    fig_dir = RunFolder.analysis_file(ana, "figures")
    res = render(stats, table, fig_dir, strict=strict, echo=echo)
    if echo:
        echo(f"[figures] wrote {len(res.written) // 2} figures into {fig_dir}"
             + (f"; skipped {len(res.skipped)}" if res.skipped else ""))
    return res.written
