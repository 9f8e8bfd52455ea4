"""Model adapters: one class per model family, declaring its pathways (see base.UMMAdapter)."""

from .base import ModulePaths, UMMAdapter, default_edit_layers
from .registry import known_models, load_model

__all__ = ["ModulePaths", "UMMAdapter", "default_edit_layers", "known_models", "load_model"]
