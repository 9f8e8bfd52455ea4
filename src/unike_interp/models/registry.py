"""Model names -> adapters. ``load_model("toy-direct", device=..., dtype=...)``.

One table, :data:`FAMILIES`, says per family what :func:`load_model`, :func:`known_models` and
:func:`model_requirements` need to know: its name (``toy-direct``) or prefix (``janus`` of
``"janus:<path>"``), a one-line description, what loading takes, the probes for its packages, its
loader and the options of ``load_model`` that loader accepts.

Real pipelines load from a local folder (or a repository already in the Hugging Face cache) as
``"<preset>:<path>"`` (e.g. ``"lumina2:/models/Lumina-Image-2.0"``), one entry per
:data:`~unike_interp.models.textenc_dit.PRESETS`; Janus / Janus-Pro (``JanusForConditionalGeneration``)
folders as ``"janus:<path>"``; OmniGen2 checkpoints as ``"omnigen2:<path>"`` (its code, the
``omnigen2`` package, installed from git); BLIP3o checkpoints as ``"blip3o:<path>"`` (stock parts only);
Ovis-U1 checkpoints as ``"ovis_u1:<path>"`` (their own code, with ``trust_remote_code`` only).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .blip3o import BLIP3O_REPO, CHECKPOINT_LAYOUT as BLIP3O_LAYOUT, load_blip3o
from .janus import load_janus
from .omnigen2 import CHECKPOINT_LAYOUT, OMNIGEN2_REPO, load_omnigen2
from .ovis_u1 import load_ovis_u1
from .synthworld import VARIANTS as SYNTHWORLD_VARIANTS
from .synthworld import load_synthworld
from .textenc_dit import PRESETS, load_textenc_dit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """A package the family needs: ``module`` importable and, if ``name`` is set, declaring it
    (lazy modules list their names without importing them)."""

    module: str
    name: str | None = None

    @property
    def label(self) -> str:
        return f"{self.module}.{self.name}" if self.name else f"{self.module} (package)"

    def present(self) -> bool:
        if self.name is None:
            try:
                return importlib.util.find_spec(self.module) is not None
            except (ImportError, ValueError):
                return False
        return self.name in _declared_names(self.module)


@functools.cache
def _declared_names(module: str) -> frozenset[str]:
    """What ``module`` declares; read once (``dir`` of transformers' lazy module takes ~0.1 s)."""
    try:
        return frozenset(dir(importlib.import_module(module)))
    except Exception:  # a package that fails while importing its own dependencies is absent too
        return frozenset()


@dataclass(frozen=True)
class Family:
    """One entry of :data:`FAMILIES`.

    ``name``: the model name, or with ``folder`` set the prefix of ``"<name>:<path>"``; ``folder``
    what the path names (for the error when it is missing); ``load(name=, device=, dtype=, [path=,]
    **options)`` the loader, called with the options in ``options`` only; ``refusal`` the error's
    text when another option is given (``world_dir`` has its own).
    """

    name: str
    description: str
    needs: tuple[str, ...]
    load: Callable
    options: frozenset[str] = frozenset()
    refusal: str = ""
    probes: tuple[Probe, ...] = ()
    folder: str | None = None

    @property
    def key(self) -> str:
        """The name as :func:`known_models` lists it (``janus:<path>``)."""
        return f"{self.name}:<path>" if self.folder else self.name


_SYNTHWORLD = {
    "toy-direct": "SynthWorld UMM: LM last hidden states over the prompt condition a PixArt DiT (OmniGen2-like)",
    "toy-queries": "SynthWorld UMM: learned query tokens run through the LM condition the DiT (BLIP3o-like)",
    "toy-bottleneck": "SynthWorld UMM: last two LM layers, concatenated, through a frozen narrow projection (Ovis-U1-like)",
}


def _synthworld_family(variant: str) -> Family:
    return Family(
        variant, _SYNTHWORLD[variant],
        needs=("nothing beyond this package: the SynthWorld build ships in its assets (another build: --world DIR)",),
        load=load_synthworld, options=frozenset({"world_dir"}),
        refusal="pipeline_kwargs and device_map apply to real models only")


def _textenc_family(key: str, preset) -> Family:
    """A text-encoder preset, described from its own fields (a new preset appears as it is added)."""
    return Family(
        key, f"{preset.description} (a local {preset.pipeline} folder)",
        needs=(f"a local {preset.pipeline} folder (diffusers layout: model_index.json, text_encoder/, tokenizer/ "
               "with a fast tokenizer, transformer/, vae/, scheduler/)",
               f"diffusers with {preset.pipeline}", f"transformers with {preset.lm_class}"),
        load=functools.partial(load_textenc_dit, preset=key), options=frozenset({"pipeline_kwargs", "device_map"}),
        probes=(Probe("diffusers", preset.pipeline), Probe("transformers", preset.lm_class)),
        folder="pipeline folder")


FAMILIES: tuple[Family, ...] = (
    *(_synthworld_family(v) for v in SYNTHWORLD_VARIANTS),
    *(_textenc_family(key, preset) for key, preset in PRESETS.items()),
    Family(
        "janus",
        "Janus / Janus-Pro (JanusForConditionalGeneration): final-norm states at the image-token positions feed "
        "the generation head, VQ decoder (a local transformers folder)",
        needs=("a local JanusForConditionalGeneration folder (transformers save_pretrained: config.json, weights, "
               "generation_config.json, processor with a fast tokenizer and chat template)",
               "transformers with JanusForConditionalGeneration and JanusProcessor"),
        load=load_janus, options=frozenset({"device_map"}),
        refusal="Janus is not a diffusers pipeline; pipeline_kwargs do not apply",
        probes=(Probe("transformers", "JanusForConditionalGeneration"), Probe("transformers", "JanusProcessor")),
        folder="model folder"),
    Family(
        "omnigen2",
        "OmniGen2: final hidden states of its Qwen2.5-VL (the edited LM) over the chat-templated instruction "
        "condition a flow DiT (a local OmniGen2 checkpoint folder; code from its git repository)",
        needs=(f"OmniGen2's code importable as the omnigen2 package (not on PyPI: git clone {OMNIGEN2_REPO}, "
               "then PYTHONPATH or pip install -e; plus what its requirements.txt lists)",
               f"a local OmniGen2 checkpoint folder ({', '.join(CHECKPOINT_LAYOUT)})",
               "transformers with Qwen2_5_VLForConditionalGeneration"),
        load=load_omnigen2, options=frozenset({"pipeline_kwargs"}),
        refusal="device_map is not supported for OmniGen2 yet (its pipeline loads as one piece)",
        probes=(Probe("omnigen2"), Probe("transformers", "Qwen2_5_VLForConditionalGeneration")),
        folder="checkpoint folder"),
    Family(
        "blip3o",
        "BLIP3o: learned latent queries appended to the prompt in its Qwen2.5-VL (the edited LM); their final "
        "states condition a DiT over CLIP features, decoded by an SDXL-style UNet (a local BLIP3o checkpoint folder; "
        "stock transformers + diffusers parts)",
        needs=(f"a local BLIP3o checkpoint folder ({', '.join(BLIP3O_LAYOUT)}), e.g. BLIP3o-Model-4B; "
               f"no code from {BLIP3O_REPO} is needed",
               "transformers with Qwen2_5_VLForConditionalGeneration",
               "diffusers with LuminaNextDiT2DModel, UNet2DConditionModel and AutoencoderKL"),
        load=load_blip3o, options=frozenset({"pipeline_kwargs"}),
        refusal="device_map is not supported for BLIP3o yet (it loads as one piece)",
        probes=(Probe("transformers", "Qwen2_5_VLForConditionalGeneration"),
                Probe("diffusers", "LuminaNextDiT2DModel"), Probe("diffusers", "UNet2DConditionModel")),
        folder="checkpoint folder"),
    Family(
        "ovis_u1",
        "Ovis-U1: the last two hidden layers of its LM, concatenated, enter its generator's text input (a local "
        "Ovis-U1 checkpoint folder whose own model code runs: --trust-remote-code)",
        needs=("a local Ovis-U1 checkpoint folder (config.json, its model code *.py, weights, tokenizer), e.g. "
               "Ovis-U1-3B",
               "--trust-remote-code (Python: trust_remote_code=True): its model code runs from the folder",
               "what that code imports (see its requirements; not checked here)"),
        load=load_ovis_u1, options=frozenset({"pipeline_kwargs", "trust_remote_code"}),
        refusal="device_map is not supported for Ovis-U1 yet (it loads as one piece)",
        probes=(Probe("transformers", "AutoModelForCausalLM"),),
        folder="checkpoint folder"),
)


def known_models() -> dict[str, str]:
    """Every model name ``load_model`` accepts, with a one-line description."""
    return {f.key: f.description for f in FAMILIES}


def model_requirements(check: bool = True) -> dict[str, dict]:
    """Every name of :func:`known_models`: ``{"description", "needs": [...], "missing": [...] | None}``.

    ``needs`` says what loading takes (packages, a local folder and its layout); ``missing`` lists
    the needed packages or classes absent from this environment (``[]``: none; the folder itself is
    checked only at load time; None when ``check`` is False).
    """
    return {f.key: {"description": f.description, "needs": list(f.needs),
                    "missing": [p.label for p in f.probes if not p.present()] if check else None}
            for f in FAMILIES}


def _family(name: str) -> tuple[Family | None, str]:
    """The family of ``name`` and the path after its ``:`` (``""`` for a model without one)."""
    prefix, sep, path = name.partition(":")
    for f in FAMILIES:
        if (f.folder is None and f.name == name) or (f.folder and sep and f.name == prefix):
            return f, path
    return None, ""


def load_model(
    name: str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float32,
    world_dir: str | Path | None = None,
    pipeline_kwargs: dict | None = None,
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
):
    """The adapter for model ``name`` on ``device`` in ``dtype``.

    ``world_dir``: another SynthWorld build (``toy-*`` only). ``pipeline_kwargs``: passed to every
    call of a diffusers pipeline (``<preset>:<path>``; e.g. image size). ``device_map``: accelerate's
    placement of a real model's language model (e.g. ``"auto"``) when it does not fit one device.
    ``trust_remote_code``: run the model code shipped in a checkpoint folder (Ovis-U1 only; off by default).
    ``device`` and ``dtype`` take the CLI's names too (``"auto"``, ``"cuda:1"``; ``"bfloat16"``, ``"bf16"``).
    The model is loaded for inference: every module in eval mode, no parameter requiring a gradient
    (an editor that needs one turns it on for its own step and back off).
    """
    from ..devices import resolve_device, resolve_dtype

    device, dtype = resolve_device(device), resolve_dtype(dtype)
    options = {"world_dir": world_dir, "pipeline_kwargs": pipeline_kwargs, "device_map": device_map,
               "trust_remote_code": trust_remote_code or None}
    given = {k for k, v in options.items() if v is not None and v != {}}
    family, path = _family(name)
    if "world_dir" in given and (family is None or "world_dir" not in family.options):
        raise ValueError(f"{name}: world_dir applies to the SynthWorld models only")
    if family is None:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(known_models())}")
    if "trust_remote_code" in given and "trust_remote_code" not in family.options:
        raise ValueError(f"{name}: trust_remote_code applies to Ovis-U1 only; this family runs no code from its folder")
    if family.folder and not path:
        raise KeyError(f"model {name!r}: give the {family.folder} as {family.key}")
    if given - family.options:
        raise ValueError(f"{name}: {family.refusal}")
    where = {"path": path} if family.folder else {}
    chosen = {k: options[k] for k in family.options}
    if "trust_remote_code" in chosen:
        chosen["trust_remote_code"] = bool(trust_remote_code)
    t0 = time.perf_counter()
    adapter = for_inference(family.load(name=name, device=device, dtype=dtype, **where, **chosen))
    log.info("loaded %s on %s in %s: %.1f s", name, device, dtype, time.perf_counter() - t0)
    return adapter


def for_inference(adapter):
    """Every torch module the adapter holds (directly, or as a pipeline's component) in eval mode with
    ``requires_grad=False``: a hidden state saved from it carries no autograd graph."""
    seen: set[int] = set()
    for value in vars(adapter).values():
        modules = [value] if isinstance(value, torch.nn.Module) else [
            c for c in (getattr(value, "components", None) or {}).values() if isinstance(c, torch.nn.Module)]
        for m in modules:
            if id(m) not in seen:
                seen.add(id(m))
                m.eval()
                m.requires_grad_(False)
    return adapter


def format_requirements(models: dict[str, dict]) -> str:
    """``unike models``: each name, its description, what it needs and what is missing here."""
    width = max(len(k) for k in models)
    lines = []
    for name, info in models.items():
        lines.append(f"{name:<{width}}  {info['description']}")
        lines += [f"{'':<{width}}    needs: {need}" for need in info["needs"]]
        missing = info["missing"]
        lines.append(f"{'':<{width}}    here:  " + (f"missing {', '.join(missing)}" if missing else "nothing missing"))
    return "\n".join(lines)
