"""Alignment cos(dh_L, dc) and projection cos(dc, d) per case, split by VQA direct success.

Usage: python analyses/fig_alignment_by_success.py --run DIR [--analysis DIR] [--out figures/]
Writes <out>/alignment_by_success.png and <out>/alignment_by_success.pdf
(see unike_interp.interp.plots.fig_alignment_by_success).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_main, make_figure  # noqa: E402

NAME = "alignment_by_success"


def fig_alignment_by_success(runs, out="figures", analysis=None) -> list[str]:
    """Render the figure for ``runs`` (a run folder or a list) into ``out``; return the paths written."""
    return make_figure(NAME, runs, out, analysis)


if __name__ == "__main__":
    sys.exit(figure_main(NAME, __doc__))
