"""Value probes per category: CV accuracy vs chance; reads_new / reads_old before vs after the edit.

Usage: python analyses/fig_probe_accuracy.py --run DIR [--analysis DIR] [--out figures/]
Writes <out>/probe_accuracy.png and <out>/probe_accuracy.pdf
(see unike_interp.interp.plots.fig_probe_accuracy).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_main, make_figure  # noqa: E402

NAME = "probe_accuracy"


def fig_probe_accuracy(runs, out="figures", analysis=None) -> list[str]:
    """Render the figure for ``runs`` (a run folder or a list) into ``out``; return the paths written."""
    return make_figure(NAME, runs, out, analysis)


if __name__ == "__main__":
    sys.exit(figure_main(NAME, __doc__))
