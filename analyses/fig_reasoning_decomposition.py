"""Reasoning decomposition: norms of the edit / reasoning / edit-on-reasoning shifts and their strengths.

Usage: python analyses/fig_reasoning_decomposition.py --run DIR [--analysis DIR] [--out figures/]
Writes <out>/reasoning_decomposition.png and <out>/reasoning_decomposition.pdf
(see unike_interp.interp.plots.fig_reasoning_decomposition).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_main, make_figure  # noqa: E402

NAME = "reasoning_decomposition"


def fig_reasoning_decomposition(runs, out="figures", analysis=None) -> list[str]:
    """Render the figure for ``runs`` (a run folder or a list) into ``out``; return the paths written."""
    return make_figure(NAME, runs, out, analysis)


if __name__ == "__main__":
    sys.exit(figure_main(NAME, __doc__))
