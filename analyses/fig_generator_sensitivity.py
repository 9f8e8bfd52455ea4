"""Relative change of each generator block's output (mean +- s.e.m.), all cases and by VQA direct outcome.

Usage: python analyses/fig_generator_sensitivity.py --run DIR [--analysis DIR] [--out figures/]
Writes <out>/generator_sensitivity.png and <out>/generator_sensitivity.pdf
(see unike_interp.interp.plots.fig_generator_sensitivity).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_main, make_figure  # noqa: E402

NAME = "generator_sensitivity"


def fig_generator_sensitivity(runs, out="figures", analysis=None) -> list[str]:
    """Render the figure for ``runs`` (a run folder or a list) into ``out``; return the paths written."""
    return make_figure(NAME, runs, out, analysis)


if __name__ == "__main__":
    sys.exit(figure_main(NAME, __doc__))
