"""Knowledge editors (ROME, MEMIT, PMET, AlphaEdit, FT) over any adapter, with cached key
statistics, weight deltas that restore bit for bit, and the edit protocols."""

from .base import EditGuardError, Editor, EditResult
from .delta import AppliedDelta, WeightDelta
from .hparams import EditHParams, hparams_class, load_hparams, make_hparams
from .registry import EDITORS, make_editor
from .requests import EditRequest, requests_from_records

__all__ = [
    "EDITORS", "EditGuardError", "Editor", "EditResult", "make_editor", "AppliedDelta", "WeightDelta",
    "EditHParams", "hparams_class", "load_hparams", "make_hparams", "EditRequest", "requests_from_records",
]
