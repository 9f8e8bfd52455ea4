"""Regenerate the study's figures from one or more benchmark run folders.

Usage: python analyses/figures.py RUN_DIR [RUN_DIR ...] [--figure NAME ...] [--analysis DIR] [--out figures/]
       python analyses/figures.py --list

The figures are those of ``unike_interp.interp.statistics.FIGURES`` (default: all, in that order),
drawn by ``unike_interp.interp.plots``. ``modality_gap``, ``intervention_verdicts`` and
``knowledge_source`` put every run into one plot; any other
figure is drawn per run, ``<name>.png``/``.pdf`` for one run and ``<name>__<run folder>.png``/``.pdf``
for several. A figure whose data is absent is skipped with its reason and writes nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    from unike_interp.interp import plots, statistics
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from unike_interp.interp import plots, statistics

# The figures that compare runs in a single plot (and what each is given); every other one is drawn per run.
COMPARES_RUNS = {statistics.FIG_MODALITY_GAP: "tables", statistics.FIG_VERDICTS: "runs",
                 statistics.FIG_KNOWLEDGE: "runs"}


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "run"


def _label(stats: dict | None, table: dict | None, run: Path) -> str:
    s = (stats or {}).get("summary", {})
    t = table or {}
    model, editor = s.get("model") or t.get("model"), s.get("editor") or t.get("editor")
    return f"{model} × {editor}" if model and editor else run.name


def load_runs(runs, analysis: str | Path | None = None) -> list[tuple[Path, dict | None, dict | None]]:
    """``(run, stats, table)`` of each run folder; ``analysis`` overrides the one run's analysis folder."""
    runs = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not runs:
        raise ValueError("no run folder given")
    if analysis is not None and len(runs) > 1:
        raise ValueError("--analysis names one run's analysis folder: give a single RUN_DIR with it")
    loaded = [(r, *plots.load_run(r, analysis)) for r in runs]
    for r, stats, table in loaded:
        if stats is None and table is None:
            raise FileNotFoundError(f"{r}: neither table.json nor analysis/stats.json")
    return loaded


def draw(fig: statistics.Figure, loaded, out: str | Path = "figures", echo=print) -> list[str]:
    """Render ``fig`` for the loaded runs (see :func:`load_runs`) into ``out``; return the paths written."""
    if fig in COMPARES_RUNS and len(loaded) > 1:
        labels = [_label(s, t, r) for r, s, t in loaded]
        labels = [lab if labels.count(lab) == 1 else f"{lab} ({r.name})" for lab, (r, _, _) in zip(labels, loaded)]
        given = {"tables": [(lab, t) for lab, (_, _, t) in zip(labels, loaded) if t],
                 "runs": [(lab, s) for lab, (_, s, _) in zip(labels, loaded) if s]}[COMPARES_RUNS[fig]]
        try:
            return plots.render_figure(fig.name, None, None, out, **{COMPARES_RUNS[fig]: given})
        except plots.FigureSkipped as e:
            echo(f"[{fig.name}] skipped: {e}")
            return []
    written = []
    for r, stats, table in loaded:
        file_name = fig.name if len(loaded) == 1 else f"{fig.name}__{_slug(r.resolve().name)}"
        try:
            written += plots.render_figure(fig.name, stats, table, out, file_name=file_name)
        except plots.FigureSkipped as e:
            echo(f"[{fig.name}] skipped for {r}: {e}")
    return written


def list_figures() -> str:
    """One line per figure: name, the file it reads, title, and the statistics it shows."""
    lines = []
    for f in statistics.FIGURES:
        shows = ", ".join(s.name for s in statistics.shown_in(f))
        lines.append(f"{f.name:<26}{f.reads:<12}{f.title}" + (f"  [{shows}]" if shows else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    names = [f.name for f in statistics.FIGURES]
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("runs", nargs="*", metavar="RUN_DIR",
                   help="benchmark run folder (table.json; analysis in RUN_DIR/analysis); several to compare")
    p.add_argument("--figure", action="append", choices=names, metavar="NAME",
                   help=f"a figure to draw (repeatable; default all): {', '.join(names)}")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--analysis", default=None, metavar="DIR",
                   help="analysis folder holding stats.json (default: RUN_DIR/analysis; one RUN_DIR only)")
    p.add_argument("--out", default="figures", metavar="DIR", help="output folder (default: figures/)")
    args = p.parse_args(argv)
    if args.list:
        print(list_figures())
        return 0
    if not args.runs:
        p.error("give at least one RUN_DIR (or --list)")
    try:
        loaded = load_runs(args.runs, args.analysis)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    written = []
    for name in args.figure or names:
        written += draw(statistics.figure(name), loaded, args.out)
    for path in written:
        print(path)
    print(f"[figures] {len(written)} files in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
