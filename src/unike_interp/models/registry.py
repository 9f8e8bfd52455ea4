"""Model names -> adapters. ``load_model("toy-direct", device=..., dtype=...)``.

Real pipelines load from a local folder as ``"<preset>:<path>"`` (e.g. ``"lumina2:/models/Lumina-Image-2.0"``),
``preset`` one of :data:`~unike_interp.models.textenc_dit.PRESETS`, Janus / Janus-Pro
(``JanusForConditionalGeneration``) folders as ``"janus:<path>"`` and OmniGen2 checkpoints as
``"omnigen2:<path>"`` (its code, the ``omnigen2`` package, installed from git).

:func:`known_models` maps each name to a one-line description; :func:`model_requirements` adds
what each needs (packages, a local folder) and whether those packages are present here.
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


_JANUS = ("Janus / Janus-Pro (JanusForConditionalGeneration): final-norm states at the image-token positions feed "
          "the generation head, VQ decoder (a local transformers folder)")
_OMNIGEN2 = ("OmniGen2: final hidden states of its Qwen2.5-VL (the edited LM) over the chat-templated instruction "
             "condition a flow DiT (a local OmniGen2 checkpoint folder; code from its git repository)")


def known_models() -> dict[str, str]:
    """Every model name ``load_model`` accepts, with a one-line description."""
    out = dict(_DESCRIPTIONS)
    for key, preset in _textenc_presets().items():
        out[f"{key}:<path>"] = f"{preset.description} (a local {preset.pipeline} folder)"
    out["janus:<path>"] = _JANUS
    out["omnigen2:<path>"] = _OMNIGEN2
    return out


def _declared(module: str, name: str) -> bool:
    """Whether ``module`` imports and declares ``name`` (lazy modules list names without importing them)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except Exception:
        return False
    return name in dir(mod)


def _found(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def model_requirements(check: bool = True) -> dict[str, dict]:
    """Every name of :func:`known_models`: ``{"description", "needs": [...], "missing": [...] | None}``.

    ``needs`` says what loading takes (packages, a local folder and its layout); ``missing`` lists
    the needed packages or classes absent from this environment (``[]``: none; the folder itself is
    checked only at load time; None when ``check`` is False). Text-encoder presets are described
    from their own fields (``pipeline``, ``lm_class``, ``description``), so a new preset appears here
    as it is added.
    """
    def entry(description, needs, probes):
        missing = [what for what, ok in probes if not ok()] if check else None
        return {"description": description, "needs": needs, "missing": missing}

    out = {}
    for name, description in _DESCRIPTIONS.items():
        out[name] = entry(description, ["nothing beyond this package: the SynthWorld build ships in its assets "
                                        "(another build: --world DIR)"], [])
    for key, preset in _textenc_presets().items():
        needs = [f"a local {preset.pipeline} folder (diffusers layout: model_index.json, text_encoder/, tokenizer/ "
                 "with a fast tokenizer, transformer/, vae/, scheduler/)",
                 f"diffusers with {preset.pipeline}", f"transformers with {preset.lm_class}"]
        probes = [(f"diffusers.{preset.pipeline}", lambda p=preset: _declared("diffusers", p.pipeline)),
                  (f"transformers.{preset.lm_class}", lambda p=preset: _declared("transformers", p.lm_class))]
        out[f"{key}:<path>"] = entry(f"{preset.description} (a local {preset.pipeline} folder)", needs, probes)
    out["janus:<path>"] = entry(
        _JANUS,
        ["a local JanusForConditionalGeneration folder (transformers save_pretrained: config.json, weights, "
         "generation_config.json, processor with a fast tokenizer and chat template)",
         "transformers with JanusForConditionalGeneration and JanusProcessor"],
        [(f"transformers.{c}", lambda c=c: _declared("transformers", c))
         for c in ("JanusForConditionalGeneration", "JanusProcessor")])
    from .omnigen2 import CHECKPOINT_LAYOUT, OMNIGEN2_REPO

    out["omnigen2:<path>"] = entry(
        _OMNIGEN2,
        [f"OmniGen2's code importable as the omnigen2 package (not on PyPI: git clone {OMNIGEN2_REPO}, "
         "then PYTHONPATH or pip install -e; plus what its requirements.txt lists)",
         f"a local OmniGen2 checkpoint folder ({', '.join(CHECKPOINT_LAYOUT)})",
         "transformers with Qwen2_5_VLForConditionalGeneration"],
        [("omnigen2 (package)", lambda: _found("omnigen2")),
         ("transformers.Qwen2_5_VLForConditionalGeneration",
          lambda: _declared("transformers", "Qwen2_5_VLForConditionalGeneration"))])
    return out


def load_model(
    name: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    world_dir: str | Path | None = None,
    pipeline_kwargs: dict | None = None,
    device_map: str | dict | None = None,
):
    """The adapter for model ``name`` on ``device`` in ``dtype``.

    ``world_dir``: another SynthWorld build (``toy-*`` only). ``pipeline_kwargs``: passed to every
    call of a diffusers pipeline (``<preset>:<path>``; e.g. image size). ``device_map``: accelerate's
    placement of a real model's language model (e.g. ``"auto"``) when it does not fit one device.
    """
    if name in SYNTHWORLD_VARIANTS:
        from .synthworld import load_synthworld

        if pipeline_kwargs or device_map is not None:
            raise ValueError(f"{name}: pipeline_kwargs and device_map apply to real models only")
        return load_synthworld(name, world_dir=world_dir, device=device, dtype=dtype)
    if world_dir is not None:
        raise ValueError(f"{name}: world_dir applies to the SynthWorld models only")
    preset, sep, path = name.partition(":")
    if sep and preset in _textenc_presets():
        from .textenc_dit import load_textenc_dit

        if not path:
            raise KeyError(f"model {name!r}: give the pipeline folder as {preset}:<path>")
        return load_textenc_dit(path, preset, device=device, dtype=dtype, name=name, pipeline_kwargs=pipeline_kwargs,
                                device_map=device_map)
    if sep and preset == "janus":
        from .janus import load_janus

        if not path:
            raise KeyError(f"model {name!r}: give the model folder as janus:<path>")
        if pipeline_kwargs:
            raise ValueError(f"{name}: Janus is not a diffusers pipeline; pipeline_kwargs do not apply")
        return load_janus(path, device=device, dtype=dtype, name=name, device_map=device_map)
    if sep and preset == "omnigen2":
        from .omnigen2 import load_omnigen2

        if not path:
            raise KeyError(f"model {name!r}: give the checkpoint folder as omnigen2:<path>")
        if pipeline_kwargs or device_map is not None:
            raise ValueError(f"{name}: pipeline_kwargs and device_map are not supported for OmniGen2 yet")
        return load_omnigen2(path, device=device, dtype=dtype, name=name)
    raise KeyError(f"unknown model {name!r}; known: {', '.join(known_models())}")
