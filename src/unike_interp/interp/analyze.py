"""Explain a benchmark run: record both pathways before and after each edit, compute the gap statistics.

:func:`analyze_run` reads a run folder written by :func:`unike_interp.bench.pipeline.run_bench`,
replays each evaluation point's stored weight delta and records both pathways for four prompts of
every case's stage 1 (:mod:`~unike_interp.interp.replay`) into ``activations.h5``, then computes
every statistic of :mod:`~unike_interp.interp.statistics` per case, the value probes, and the ROC
AUC of each statistic for predicting the case's VQA success (stage 1, direct and reasoning),
joined from the ledger (:mod:`~unike_interp.interp.summary`). Written: ``stats.json`` (summary +
per case) and the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..bench.run_folder import RunFolder
from .replay import record_run
from .summary import run_statistics, write_stats


def analyze_run(run_dir: str | Path, out: str | Path | None = None, *, device=None, reoptimize: bool = False,
                progress: bool = True, echo: Callable[[str], None] = print, figures: bool = True, adapter=None) -> dict:
    """Record, compute statistics and AUCs, write ``stats.json`` (and the figures); return the summary.

    ``out``: default ``<run>/analysis``. ``reoptimize``: run the editor again instead of replaying
    the stored deltas (for runs that stored none).
    """
    run = Path(run_dir)
    out = Path(out) if out else RunFolder(run).analysis_dir
    rec = record_run(run, out, device=device, reoptimize=reoptimize, adapter=adapter, progress=progress, echo=echo)
    cfg = rec.spec
    stats = run_statistics(rec.adapter, rec.store, rec.entries, seed=cfg.seed)
    summary = stats["summary"] = {"run": str(run), "model": cfg.model, "editor": cfg.editor, "protocol": cfg.protocol,
                                  "hdf5": str(rec.store.path), "edits": rec.edits,
                                  "record_seconds": round(rec.seconds, 2), **stats["summary"]}
    write_stats(RunFolder.analysis_file(out, "stats"), stats)
    if figures:
        from .plots import render_all

        summary["figures"] = render_all(out, run)
    return summary


def format_aucs(summary: dict, top: int = 25) -> str:
    """The ``top`` statistics by distance of their AUC (VQA direct) from 0.5, with the reasoning AUC beside it."""
    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    rows = sorted(summary["aucs"]["vqa_direct"].items(), key=lambda kv: -abs((kv[1]["auc"] or 0.5) - 0.5))
    lines = [f"{'statistic':<44}{'AUC (VQA direct)':>18}{'AUC (VQA reasoning)':>21}"]
    for name, d in rows[:top]:
        r = summary["aucs"]["vqa_reasoning"].get(name, {})
        lines.append(f"{name:<44}{fmt(d['auc']):>18}{fmt(r.get('auc')):>21}")
    return "\n".join(lines)
