"""Figures of the causal analyses (:mod:`~unike_interp.interp.interventions`,
:mod:`~unike_interp.interp.tracing`, :mod:`~unike_interp.interp.knowledge_source`), drawn from the
``interventions``, ``tracing`` and ``knowledge_source`` entries of ``stats.json``. Registered in
:data:`unike_interp.interp.plots.PLOTS` like every other figure. Intervals are Wilson 95%.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from . import statistics as R
from .figure_common import FigureSkipped
from .tracing import min_cases
from .figure_common import title as _title

VERDICT_COLORS = {"transferred": "#009e73", "too_weak": "#56b4e9", "misaligned": "#e69f00",
                  "generator_bound": "#d55e00", "unexplained": "#999999", "undetermined": "#ffffff"}
VERDICT_LABELS = {"transferred": "transferred (gain 1 shows it)", "too_weak": "too weak (a larger gain shows it; an equal random push does not)",
                  "misaligned": "misaligned (only its aligned part shows it)",
                  "generator_bound": "generator-bound (even the named value does not)",
                  "unexplained": "unexplained (named value does; edit never)", "undetermined": "undetermined (judge error)"}


def _section(stats: dict | None, key: str) -> dict:
    if not stats or key not in stats:
        raise FigureSkipped(f"no {key} in stats.json (run `unike analyze` without --no-interventions)")
    sec = stats[key]
    if "skipped" in sec:
        raise FigureSkipped(f"{key} skipped: {sec['skipped']}")
    return sec


def _errbar(ax, x, share, ci, **kw):
    lo = [max(0.0, s - c[0]) if s is not None and c[0] is not None else 0 for s, c in zip(share, ci)]
    hi = [max(0.0, c[1] - s) if s is not None and c[1] is not None else 0 for s, c in zip(share, ci)]
    ax.errorbar(x, [np.nan if s is None else s for s in share], yerr=[lo, hi], capsize=3, **kw)


def _stacked_verdicts(bars: list[tuple[str, dict]], rotation: int) -> tuple[Figure, object]:
    """One stacked bar per ``(label, verdict row)``: the share of each failed-case verdict."""
    from .interventions import FAILED_VERDICTS

    fig, ax = plt.subplots(figsize=(max(6.0, 0.66 * len(bars) + 3), 4.4))
    x = np.arange(len(bars))
    bottom = np.zeros(len(bars))
    for v in FAILED_VERDICTS:
        share = np.array([(g[v]["share"] or 0.0) if g["n"] else 0.0 for _, g in bars])
        ax.bar(x, share, bottom=bottom, color=VERDICT_COLORS[v], edgecolor="black", linewidth=0.4,
               label=VERDICT_LABELS[v])
        bottom += share
    ax.set_xticks(x, [f"{lab}\n(n={g['n']})" for lab, g in bars], rotation=rotation, ha="right", fontsize=7)
    ax.set_ylabel("share of the cases whose image failed")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig, ax


def fig_intervention_verdicts(stats: dict, table: dict | None = None, runs=None) -> Figure:
    """Stacked bars: the verdict of each case whose VQA Direct failed, overall, per split, per category.
    ``runs``: several ``(label, stats)`` in one plot (per run: all failed cases and per split)."""
    if runs is not None:
        bars = []
        for label, st in runs:
            if "summary" in ((st or {}).get("interventions") or {}):
                v = st["interventions"]["summary"]["verdicts"]
                bars += [(f"{label}: all", v["all"]["all"])] + [(f"{label}: {k}", r) for k, r in sorted(v["split"].items())]
        if not bars:
            raise FigureSkipped("no run has interventions in its stats.json")
        fig, _ = _stacked_verdicts(bars, rotation=60)
        fig.suptitle(R.FIG_VERDICTS.title + " — per model × editor", fontsize=11)
        fig.tight_layout()
        return fig
    summ = _section(stats, "interventions")["summary"]
    if not summ["n_failed"]:
        raise FigureSkipped("no case failed VQA Direct: there is nothing to explain")
    v = summ["verdicts"]
    bars = [("all", v["all"]["all"])] + list(v["split"].items()) + list(v["category"].items())
    fig, ax = _stacked_verdicts(bars, rotation=45)
    ax.axvline(0.5, color="black", lw=0.8)
    ax.axvline(0.5 + len(v["split"]), color="black", lw=0.8, ls=":")
    _title(fig, R.FIG_VERDICTS.title + ": " + f"{summ['n_failed']} failed of {summ['n_cases']} cases", stats, table)
    fig.tight_layout()
    return fig


def fig_intervention_gain(stats: dict, table: dict | None = None) -> Figure:
    """The share of images showing the new value against the gain applied to the edit's change,
    its component along the value direction and the rest; the named-value reference beside it."""
    summ = _section(stats, "interventions")["summary"]
    curve = summ["gain_curve"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    ax = axes[0]
    for part, color, label in (("gain", "black", "the edit's change  c_pre + a·Δc"),
                               ("aligned", "#e69f00", "its component along the value direction"),
                               ("orthogonal", "#56b4e9", "the rest (orthogonal to it)"),
                               ("random", "#cc79a7", "control: a random push of the same size")):
        names = [n for n in curve if n.startswith(part + ":")]
        gains = [float(n.split(":")[1]) for n in names]
        xs = [max(g, 0.5) for g in gains]  # gain 0 drawn at 0.5 on the log axis
        _errbar(ax, xs, [curve[n]["shows_new"] for n in names], [curve[n]["ci"] for n in names], color=color,
                marker="o", label=label)
    base = curve.get("gain:0", {}).get("shows_new")
    if base is not None:
        ax.axhline(base, color="grey", ls="--", lw=1, label=f"unedited image ({100 * base:.0f}%)")
    ax.set_xscale("log", base=2)
    ax.set_xticks([0.5, 1, 2, 4, 8, 16], ["0", "1", "2", "4", "8", "16"])
    ax.set_xlabel("gain a  (1 = the edit as made; 0 = unedited)")
    ax.set_ylabel("share of images showing the new value")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax = axes[1]
    refs = [n for n in ("reference", "caption") if n in curve]
    _errbar(ax, np.arange(len(refs)), [curve[n]["shows_new"] for n in refs], [curve[n]["ci"] for n in refs],
            fmt="o", color="#d55e00")
    ax.set_xticks(np.arange(len(refs)), ["value named\nwhere the name was", "value spelled out\n(whole caption)"][:len(refs)],
                  fontsize=7)
    ax.set_xlim(-0.5, len(refs) - 0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("references", fontsize=9)
    _title(fig, R.FIG_GAIN.title + ": " + f"{summ['n_cases']} cases; bands: Wilson 95%", stats, table)
    fig.tight_layout()
    return fig


def fig_causal_tracing(stats: dict, table: dict | None = None) -> Figure:
    """Heatmaps (layer x position group) of the tracing effect, restore and inject, edited layers marked."""
    tr = _section(stats, "tracing")
    if not tr.get("n_cases"):
        raise FigureSkipped("no case was traced (--trace-cases 0)")
    groups = tr["groups"]
    min_n = min_cases(tr["n_cases"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(tr["layers"]) + 2.6))
    for ax, d, title in ((axes[0], "restore", "restore the unedited state in the edited model\n"
                                              "p(new) edited − p(new) patched: how much the image moves back"),
                         (axes[1], "inject", "inject the edited state into the unedited model\n"
                                             "p(new) patched − p(new) unedited: how much it carries alone")):
        m = np.array(tr[d]["mean_effect"], dtype=float)
        m[np.array(tr[d]["n"]) < min_n] = np.nan  # a token group few prompts have: too few cases to show
        keep = np.isfinite(m).any(axis=0)
        if not keep.any():
            ax.axis("off")
            ax.text(0.5, 0.5, f"no cell from {min_n} or more traced cases", ha="center", va="center")
            continue
        lim = max(0.05, float(np.nanmax(np.abs(m))))
        im = ax.imshow(m[:, keep], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", origin="lower")
        ax.set_xticks(np.arange(keep.sum()), [g.replace("_", " ") for g, k in zip(groups, keep) if k], rotation=30,
                      ha="right", fontsize=8)
        ax.set_yticks(np.arange(len(tr["layers"])),
                      [f"{i} (edited)" if i in tr["edit_layers"] else str(i) for i in tr["layers"]], fontsize=8)
        ax.set_xlabel("token position in the image prompt")
        ax.set_ylabel("language-model layer")
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, label="change in p(image shows new value)")
    _title(fig, R.FIG_TRACING.title + ": " + f"{tr['n_cases']} cases; p(new) unedited {tr['p_new_pre']:.2f}, "
           f"edited {tr['p_new_post']:.2f}; cells of fewer than {min_n} cases left out", stats, table)
    fig.tight_layout()
    return fig


def _runs_knowledge(runs) -> Figure:
    """Several runs: net transfer and the subject-state swap per run and split."""
    rows = [(label, st["knowledge_source"]) for label, st in runs if (st or {}).get("knowledge_source")]
    if not rows:
        raise FigureSkipped("no run has knowledge_source in its stats.json")
    splits = ["image-seen", "text-only"]
    fig, axes = plt.subplots(1, 2, figsize=(max(10.0, 1.4 * len(rows) + 4), 4.4))
    x = np.arange(len(rows))
    width = 0.38
    for j, split in enumerate(splits):
        net = [(ks["outcomes"].get(split) or {}).get("net_transfer") for _, ks in rows]
        post = [((ks["outcomes"].get(split) or {}).get("post") or {}).get("new", {}).get("share") for _, ks in rows]
        axes[0].bar(x + (j - 0.5) * width, [0 if v is None else v for v in net], width,
                    color=["#0072b2", "#e69f00"][j], label=f"{split}: net transfer")
        axes[0].scatter(x + (j - 0.5) * width, [np.nan if v is None else v for v in post], color="black", marker="_",
                        s=120, zorder=3, label="raw VQA Direct" if j == 0 else None)
        for key, hatch in (("lm", None), ("name", "//")):
            share = [((ks.get("swap") or {}).get(split) or {}).get("lm_from_donor", {}).get(key, {}).get("share")
                     for _, ks in rows]
            off = (j - 0.5) * width + (-0.25 if key == "lm" else 0.0) * width
            axes[1].bar(x + off + (0.125 if key == "name" else 0.125) * width, [0 if v is None else v for v in share],
                        width / 2, color=["#0072b2", "#e69f00"][j], hatch=hatch, edgecolor="black", linewidth=0.4,
                        label=f"{split}: follows {'LM subject state' if key == 'lm' else 'name tokens'}")
    for ax in axes:
        ax.set_xticks(x, [lab for lab, _ in rows], rotation=30, ha="right", fontsize=8)
    axes[0].axhline(0, color="black", lw=0.6)
    axes[0].set_ylabel("share of images (after − before, new value)")
    axes[0].set_title("net transfer per split (bars) and raw VQA Direct (marks)", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel("share of images")
    axes[1].set_title("subject-state swap: which the image follows", fontsize=9)
    axes[1].legend(fontsize=6)
    fig.suptitle(R.FIG_KNOWLEDGE.title + " — per model × editor", fontsize=11)
    fig.tight_layout()
    return fig


def fig_knowledge_source(stats: dict, table: dict | None = None, runs=None) -> Figure:
    """Which value the image shows before/after the edit per split, and the subject-state swap.
    ``runs``: several ``(label, stats)`` in one plot (net transfer and swap per run and split)."""
    if runs is not None:
        return _runs_knowledge(runs)
    ks = (stats or {}).get("knowledge_source")
    if not ks or "outcomes" not in ks:
        raise FigureSkipped("no knowledge_source in stats.json")
    splits = [s for s in ks["outcomes"] if s != "all"] or ["all"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    colors = {"new": "#009e73", "old": "#0072b2", "other": "#cccccc", "no_verdict": "#ffffff"}
    labels, x = [], 0
    for s in splits:
        row = ks["outcomes"][s]
        for state in ("pre", "post"):
            bottom = 0.0
            for o in ("new", "old", "other", "no_verdict"):
                v = row[state][o]["share"] or 0.0
                ax.bar(x, v, bottom=bottom, color=colors[o], edgecolor="black", linewidth=0.4,
                       label=o.replace("_", " ") + " value" if x == 0 else None)
                bottom += v
            labels.append(f"{s}\n{'before' if state == 'pre' else 'after'} (n={row['n']})")
            x += 1
        nt = row["net_transfer"]
        ax.text(x - 1, 1.02, f"net {100 * nt:+.0f}" if nt is not None else "", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=7)
    ax.set_ylabel("share of stage-1 images")
    ax.set_ylim(0, 1.25)
    ax.set_title("which value the image shows (net = after − before, new value, points)", fontsize=8)
    ax.legend(fontsize=7, loc="upper center", ncol=4)
    ax = axes[1]
    swap = ks.get("swap")
    if swap:
        width = 0.38
        for j, (key, lab) in enumerate((("lm", "LM's last-subject-token states"), ("name", "the name's earlier tokens"))):
            share = [swap[s]["lm_from_donor"][key]["share"] for s in splits]
            ci = [swap[s]["lm_from_donor"][key]["ci"] for s in splits]
            xs = np.arange(len(splits)) + (j - 0.5) * width
            ax.bar(xs, [v or 0 for v in share], width, color=["#009e73", "#0072b2"][j], label=f"image follows {lab}")
            _errbar(ax, xs, share, ci, fmt="none", ecolor="black")
        ax.set_xticks(np.arange(len(splits)), [f"{s}\n(n={swap[s]['n']})" for s in splits], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share of images")
        ax.set_title("swap: another subject's LM states at the name's last token", fontsize=8)
        ax.legend(fontsize=7)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "subject-state swap not run", ha="center")
    _title(fig, R.FIG_KNOWLEDGE.title + ": " + "image-seen vs text-only subjects", stats, table)
    fig.tight_layout()
    return fig


CAUSAL_PLOTS = {R.FIG_VERDICTS: fig_intervention_verdicts, R.FIG_GAIN: fig_intervention_gain,
                R.FIG_TRACING: fig_causal_tracing, R.FIG_KNOWLEDGE: fig_knowledge_source}
