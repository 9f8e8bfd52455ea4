"""ROC AUC of each statistic for VQA direct / reasoning success (top 20 by |AUC - 0.5|).

Usage: python analyses/fig_auc_table.py --run DIR [--analysis DIR] [--out figures/]
Writes <out>/auc_table.png and <out>/auc_table.pdf
(see unike_interp.interp.plots.fig_auc_table).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_main, make_figure  # noqa: E402

NAME = "auc_table"


def fig_auc_table(runs, out="figures", analysis=None) -> list[str]:
    """Render the figure for ``runs`` (a run folder or a list) into ``out``; return the paths written."""
    return make_figure(NAME, runs, out, analysis)


if __name__ == "__main__":
    sys.exit(figure_main(NAME, __doc__))
