"""Modality gap: Eff., VQA Direct and VQA Reasoning (overall, stage 1, 95% CIs); repeat --run to compare models/editors.

Usage: python analyses/fig_modality_gap.py --run DIR [--run DIR2 ...] [--analysis DIR] [--out figures/]
Writes <out>/modality_gap.png and <out>/modality_gap.pdf
(see unike_interp.interp.plots.fig_modality_gap).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure_main, make_figure  # noqa: E402

NAME = "modality_gap"


def fig_modality_gap(runs, out="figures", analysis=None) -> list[str]:
    """Render the figure for ``runs`` (a run folder or a list) into ``out``; return the paths written."""
    return make_figure(NAME, runs, out, analysis)


if __name__ == "__main__":
    sys.exit(figure_main(NAME, __doc__, several=True))
