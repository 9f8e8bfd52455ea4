"""What every figure module shares: the skip signal and the title line."""

from __future__ import annotations

from matplotlib.figure import Figure


class FigureSkipped(Exception):
    """The figure's data is absent from these results (the message says what is missing)."""


def model_editor(stats: dict | None, table: dict | None) -> tuple[str, str]:
    """``(model, editor)`` of a run, from its ``stats.json`` or ``table.json``."""
    s = (stats or {}).get("summary", {})
    t = table or {}
    return str(s.get("model") or t.get("model") or "?"), str(s.get("editor") or t.get("editor") or "?")


def title(fig: Figure, what: str, stats: dict | None, table: dict | None, n: int | None = None) -> None:
    """``what`` over ``model × editor (n = N cases)`` as the figure's title."""
    model, editor = model_editor(stats, table)
    if n is None:
        n = (stats or {}).get("summary", {}).get("n_cases")
    tail = f"  (n = {n} cases)" if n is not None else ""
    fig.suptitle(f"{what}\n{model} × {editor}{tail}", fontsize=11)
