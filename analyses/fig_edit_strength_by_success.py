"""Edit strength <dc, d>/|d|^2 per case, split by VQA direct success (dashed at 0 and 1).

Usage: python analyses/fig_edit_strength_by_success.py --run DIR [--analysis DIR] [--out figures/]
Writes <out>/edit_strength_by_success.png and <out>/edit_strength_by_success.pdf
(see unike_interp.interp.plots.fig_edit_strength_by_success).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_main, make_figure  # noqa: E402

NAME = "edit_strength_by_success"


def fig_edit_strength_by_success(runs, out="figures", analysis=None) -> list[str]:
    """Render the figure for ``runs`` (a run folder or a list) into ``out``; return the paths written."""
    return make_figure(NAME, runs, out, analysis)


if __name__ == "__main__":
    sys.exit(figure_main(NAME, __doc__))
