"""Model names -> adapters. ``load_model("toy-direct", device=..., dtype=...)``.

Real pipelines load from a local folder as ``"<preset>:<path>"`` (e.g. ``"lumina2:/models/Lumina-Image-2.0"``),
``preset`` one of :data:`~unike_interp.models.textenc_dit.PRESETS`, and Janus / Janus-Pro
(``JanusForConditionalGeneration``) folders as ``"janus:<path>"``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .synthworld import VARIANTS as SYNTHWORLD_VARIANTS

_DESCRIPTIONS = {
    "toy-direct": "SynthWorld UMM: LM last hidden states over the prompt condition a PixArt DiT (OmniGen2-like)",
    "toy-queries": "SynthWorld UMM: learned query tokens run through the LM condition the DiT (BLIP3o-like)",
    "toy-bottleneck": "SynthWorld UMM: last two LM layers, concatenated, through a frozen narrow projection (Ovis-U1-like)",
}


def _textenc_presets() -> dict:
    from .textenc_dit import PRESETS

    return PRESETS


def known_models() -> dict[str, str]:
    """Every model name ``load_model`` accepts, with a one-line description."""
    out = dict(_DESCRIPTIONS)
    for key, preset in _textenc_presets().items():
        out[f"{key}:<path>"] = f"{preset.description} (a local {preset.pipeline} folder)"
    out["janus:<path>"] = ("Janus / Janus-Pro (JanusForConditionalGeneration): final-norm states at the image-token "
                           "positions feed the generation head, VQ decoder (a local transformers folder)")
    return out


def load_model(
    name: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    world_dir: str | Path | None = None,
):
    """The adapter for model ``name`` on ``device`` in ``dtype``."""
    if name in SYNTHWORLD_VARIANTS:
        from .synthworld import load_synthworld

        return load_synthworld(name, world_dir=world_dir, device=device, dtype=dtype)
    preset, sep, path = name.partition(":")
    if sep and preset in _textenc_presets():
        from .textenc_dit import load_textenc_dit

        if not path:
            raise KeyError(f"model {name!r}: give the pipeline folder as {preset}:<path>")
        return load_textenc_dit(path, preset, device=device, dtype=dtype, name=name)
    if sep and preset == "janus":
        from .janus import load_janus

        if not path:
            raise KeyError(f"model {name!r}: give the model folder as janus:<path>")
        return load_janus(path, device=device, dtype=dtype, name=name)
    raise KeyError(f"unknown model {name!r}; known: {', '.join(known_models())}")
