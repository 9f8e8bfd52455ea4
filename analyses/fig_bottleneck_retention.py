"""Connector bottleneck retention (energy, relative gain) per case; skipped for a model without a connector.

Usage: python analyses/fig_bottleneck_retention.py --run DIR [--analysis DIR] [--out figures/]
Writes <out>/bottleneck_retention.png and <out>/bottleneck_retention.pdf
(see unike_interp.interp.plots.fig_bottleneck_retention).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_main, make_figure  # noqa: E402

NAME = "bottleneck_retention"


def fig_bottleneck_retention(runs, out="figures", analysis=None) -> list[str]:
    """Render the figure for ``runs`` (a run folder or a list) into ``out``; return the paths written."""
    return make_figure(NAME, runs, out, analysis)


if __name__ == "__main__":
    sys.exit(figure_main(NAME, __doc__))
