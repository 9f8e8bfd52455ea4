"""Shared plumbing of the figure scripts: arguments, loading a run, file names.

Every ``fig_<name>.py`` script is a thin wrapper around :func:`make_figure` with one figure of
:data:`unike_interp.interp.plots.FIGURES`; ``all.py`` imports every script and calls its function.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    from unike_interp.interp import plots
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from unike_interp.interp import plots

SCRIPTS = (  # one per figure, in the order all.py runs them
    "fig_modality_gap", "fig_drift_by_layer", "fig_edit_strength_by_success", "fig_alignment_by_success",
    "fig_bottleneck_retention", "fig_generator_sensitivity", "fig_reasoning_decomposition",
    "fig_probe_accuracy", "fig_auc_table",
)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "run"


def _label(stats: dict | None, table: dict | None, run: Path) -> str:
    s = (stats or {}).get("summary", {})
    t = table or {}
    model, editor = s.get("model") or t.get("model"), s.get("editor") or t.get("editor")
    return f"{model} × {editor}" if model and editor else run.name


def make_figure(name: str, runs, out: str | Path = "figures", analysis: str | Path | None = None,
                echo=print) -> list[str]:
    """Render figure ``name`` for ``runs`` (one run folder or several) into ``out``; return the paths written.

    ``modality_gap`` puts every run in one plot; any other figure is drawn per run, named
    ``<name>.png/.pdf`` for one run and ``<name>__<run folder>.png/.pdf`` for several. A figure whose
    data is absent is skipped (its reason echoed) and writes nothing.
    """
    runs = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not runs:
        raise ValueError("no run folder given")
    if analysis is not None and len(runs) > 1:
        raise ValueError("--analysis names one run's analysis folder: give a single --run with it")
    loaded = [(r, *plots.load_run(r, analysis)) for r in runs]
    for r, stats, table in loaded:
        if stats is None and table is None:
            raise FileNotFoundError(f"{r}: neither table.json nor analysis/stats.json")
    try:
        if name == "modality_gap":
            if len(loaded) == 1:
                _, stats, table = loaded[0]
                return plots.render_figure(name, stats, table, out)
            labels = [_label(s, t, r) for r, s, t in loaded]
            labels = [lab if labels.count(lab) == 1 else f"{lab} ({r.name})" for lab, (r, _, _) in zip(labels, loaded)]
            tables = [(lab, t) for lab, (_, _, t) in zip(labels, loaded) if t]
            return plots.render_figure(name, None, None, out, tables=tables)
    except plots.FigureSkipped as e:
        echo(f"[{name}] skipped: {e}")
        return []
    written = []
    for r, stats, table in loaded:
        file_name = name if len(loaded) == 1 else f"{name}__{_slug(r.resolve().name)}"
        try:
            written += plots.render_figure(name, stats, table, out, file_name=file_name)
        except plots.FigureSkipped as e:
            echo(f"[{name}] skipped for {r}: {e}")
    return written


def parser(doc: str | None, *, several: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--run", required=True, action="append" if several else "store", metavar="DIR",
                   help="benchmark run folder (table.json; analysis in DIR/analysis)"
                        + ("; repeat to compare runs" if several else ""))
    p.add_argument("--analysis", default=None, metavar="DIR",
                   help="analysis folder holding stats.json (default: <run>/analysis; one --run only)")
    p.add_argument("--out", default="figures", metavar="DIR", help="output folder (default: figures/)")
    return p


def figure_main(name: str, doc: str | None, argv=None, *, several: bool = False) -> int:
    """Command line of one figure script: ``--run DIR [--analysis DIR] [--out figures/]``."""
    args = parser(doc, several=several).parse_args(argv)
    try:
        written = make_figure(name, args.run, args.out, args.analysis)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in written:
        print(p)
    return 0
