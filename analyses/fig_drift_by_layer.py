"""Text-side drift per layer: mean relative drift and cosine distance of resid.0..L-1, subject vs prompt token.

Usage: python analyses/fig_drift_by_layer.py --run DIR [--analysis DIR] [--out figures/]
Writes <out>/drift_by_layer.png and <out>/drift_by_layer.pdf
(see unike_interp.interp.plots.fig_drift_by_layer).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_main, make_figure  # noqa: E402

NAME = "drift_by_layer"


def fig_drift_by_layer(runs, out="figures", analysis=None) -> list[str]:
    """Render the figure for ``runs`` (a run folder or a list) into ``out``; return the paths written."""
    return make_figure(NAME, runs, out, analysis)


if __name__ == "__main__":
    sys.exit(figure_main(NAME, __doc__))
