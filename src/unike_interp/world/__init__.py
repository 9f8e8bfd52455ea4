"""Training and loading the SynthWorld UMM (tokenizer, Qwen2 LM, PixArt generators, verifier)."""

from .build import BuildConfig, build_world
from .store import default_world_dir, load_world

__all__ = ["BuildConfig", "build_world", "default_world_dir", "load_world"]
