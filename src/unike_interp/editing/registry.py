"""Editors by name: one table, read by :func:`make_editor` (and by ``--editor``'s help)."""

from __future__ import annotations

from .alphaedit import AlphaEdit
from .base import Editor
from .ft import FT
from .hparams import EditHParams, make_hparams
from .memit import MEMIT
from .pmet import PMET
from .rome import ROME

EDITORS: dict[str, type[Editor]] = {cls.name: cls for cls in (ROME, MEMIT, PMET, AlphaEdit, FT)}


def make_editor(name: str, hparams: EditHParams | dict | None = None, *, family: str | None = None, **kwargs) -> Editor:
    """An editor by name (``rome``, ``memit``, ``pmet``, ``alphaedit``, ``ft``) with family defaults."""
    key = name.lower()
    if key not in EDITORS:
        raise KeyError(f"unknown editor {name!r}; known: {', '.join(sorted(EDITORS))}")
    if hparams is None or isinstance(hparams, dict):
        hparams = make_hparams(key, family, hparams)
    return EDITORS[key](hparams, **kwargs)
