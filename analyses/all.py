"""Regenerate every figure of the study from one or more run folders.

Usage: python analyses/all.py --run DIR [--run DIR2 ...] [--analysis DIR] [--out figures/]

Calls each ``analyses/fig_*.py`` script's function: the modality gap compares every run in one
plot; the other figures are drawn per run (``<name>.png`` for one run, ``<name>__<run folder>.png``
for several). Figures whose data is absent are skipped with their reason.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SCRIPTS, parser  # noqa: E402


def all_figures(runs, out="figures", analysis=None) -> list[str]:
    """Every script's figure for ``runs`` into ``out``; return the paths written."""
    written = []
    for script in SCRIPTS:
        fn = getattr(importlib.import_module(script), script)
        written += fn(runs, out, analysis)
    return written


def main(argv=None) -> int:
    args = parser(__doc__, several=True).parse_args(argv)
    try:
        written = all_figures(args.run, args.out, args.analysis)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in written:
        print(p)
    print(f"[all] {len(written)} files in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
