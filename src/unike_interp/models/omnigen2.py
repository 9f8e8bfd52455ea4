"""Adapter for OmniGen2 (VectorSpaceLab/OmniGen2): a Qwen2.5-VL "mllm" whose final hidden states
condition a Lumina-style flow DiT (``OmniGen2Transformer2DModel``).

OmniGen2 is not on PyPI. Its code (package ``omnigen2``) comes from its git repository; where it
is not importable, :func:`load_omnigen2` raises :class:`OmniGen2ImportError` naming the import that
failed, the original error, how to install the code and what checkpoint folder it needs.

**What was verified, and how.** Read (not run) against OmniGen2's sources as stored in a code
index: ``omnigen2/pipelines/omnigen2/pipeline_omnigen2.py`` of VectorSpaceLab/OmniGen2 at commits
``10fc7b8e29c9e7b563ec4c47d5f3233937dc21a2`` and ``a90b8cb593c90c2593dc00090b597dc0615b71e7``
(identical text path; the later one adds TeaCache/TaylorSeer and LoRA loading),
``models/transformers/repo.py`` (a90b8cb), ``models/transformers/block_lumina2.py`` and
``inference.py`` (10fc7b8). The upstream ``transformer_omnigen2.py`` and the scheduler were not in
the index; they were read from a fork (wtrekell/OmniGen2 at ``4665c28d5d0ce1431a46639da94c00cb2eb0fdc4``).
The adapter contract suite has also run on OmniGen2's own ``OmniGen2Pipeline``,
``OmniGen2Transformer2DModel`` and scheduler at VectorSpaceLab/OmniGen2 ``0f72fa9`` (tiny random
weights, :mod:`unike_interp.testing.omnigen2_official`; the tests marked ``omnigen2_official``,
skipped where the code is not importable), with transformers 5.x and diffusers 0.42; loading a
published checkpoint folder has not. The default tests run the adapter on a tiny random Qwen2.5-VL
(transformers' own class) with a small stand-in pipeline and transformer
(:mod:`unike_interp.testing.omnigen2_standin`), which reproduce the interface described below and
its argument handling, not OmniGen2's numerics.

What the pipeline does (``OmniGen2Pipeline``, text-to-image, no input images):

* **instruction**: ``_apply_chat_template(prompt)`` =
  ``processor.tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM_PROMPT},
  {"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=False)``
  (:data:`SYSTEM_PROMPT`); the negative prompt of classifier-free guidance (``""`` by default) is
  wrapped the same way and encoded separately;
* **tokens**: ``processor.tokenizer(instructions, padding="longest",
  max_length=max_sequence_length, truncation=True)``; ``__call__`` passes
  ``max_sequence_length=None`` unless told otherwise (``inference.py`` passes 1024);
* **hidden state**: ``mllm(input_ids, attention_mask=mask, output_hidden_states=True)
  .hidden_states[-1]`` -- the final-norm output of the Qwen2.5-VL text decoder (in transformers
  5.24 the last entry of ``hidden_states`` is ``last_hidden_state``, checked on a tiny model), cast
  to ``mllm.dtype``. Every decoder layer therefore reaches the image;
* **transformer call**: ``transformer(latents, timestep, prompt_embeds, freqs_cis,
  prompt_attention_mask, ref_image_hidden_states=...)`` -- the conditioning is positional
  argument 2, its mask argument 4, ``freqs_cis = OmniGen2RotaryPosEmbed.get_freqs_cis(
  config.axes_dim_rope, config.axes_lens, theta=10000)``. Inside, ``time_caption_embed``
  projects the caption (``caption_embedder`` = RMSNorm + Linear), ``context_refiner`` blocks refine
  it, and the joint blocks ``layers`` take ``text[:mask.sum()]`` followed by the image tokens:
  the transformer assumes **right padding** (``OmniGen2RotaryPosEmbed.forward`` gives positions
  ``0..n-1`` to the first ``mask.sum()`` caption slots). The adapter therefore sets the pipeline
  tokenizer's ``padding_side = "right"`` (a no-op for one prompt at a time, which never pads);
* **input images**: ``prepare_image`` wraps ``input_images`` in a list for one prompt and iterates
  it for more, so text-to-image passes ``None`` for one prompt and ``[None] * B`` for ``B > 1``
  (:func:`text_to_image_inputs`; the default ``None`` raises ``TypeError`` on two prompts);
* **sampling**: timesteps ``t`` from 0 (noise) to 1 (image), Euler steps ``x += (t' - t) * v``;
  defaults ``num_inference_steps=28``, ``text_guidance_scale=4.0``, 1024 x 1024 pixels;
  ``generator`` may be a list (one per image, diffusers ``randn_tensor``).

**Adapter.** ``adapter.lm`` is the pipeline's ``mllm`` itself (``Qwen2_5_VLForConditionalGeneration``):
it answers text and is edited, and every module path lives inside it -- ``model.language_model.
layers.{}`` in transformers >= 4.52, ``model.layers.{}`` before (detected from the model). The
conditioning is what the pipeline's own ``encode_prompt`` returns (it is called, not re-implemented),
checked against the adapter's tokenisation, which gives the LM position of every slot.
``adapter.tokenizer`` is a copy of the pipeline tokenizer that pads on the left (the toolkit's
text side); the pipeline keeps its own instance (right padding).
"""

from __future__ import annotations

import copy
import importlib
import inspect
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..conditioning import Conditioning
from .base import ModulePaths, UMMAdapter
from .sites import TraceOutput

OMNIGEN2_REPO = "https://github.com/VectorSpaceLab/OmniGen2"

#: The system message of ``OmniGen2Pipeline._apply_chat_template`` (text-to-image).
SYSTEM_PROMPT = "You are a helpful assistant that generates high-quality images based on user instructions."

#: Sub-folders of an OmniGen2 checkpoint (the pipeline's registered modules) and its index file.
CHECKPOINT_LAYOUT = ("model_index.json", "mllm", "processor", "transformer", "vae", "scheduler")

#: What must import: (module, attribute).
REQUIRED_IMPORTS = (
    ("omnigen2.pipelines.omnigen2.pipeline_omnigen2", "OmniGen2Pipeline"),
    ("omnigen2.models.transformers.transformer_omnigen2", "OmniGen2Transformer2DModel"),
    ("omnigen2.models.transformers.repo", "OmniGen2RotaryPosEmbed"),
)

#: Where the DiT is read in the trace module: flow time ``sigma`` on seeded noise (``x = sigma * eps``,
#: clean latent 0); OmniGen2's transformer takes ``timestep = 1 - sigma`` (0 = noise, 1 = image).
TRACE_SIGMA = 0.5

#: ``OmniGen2Pipeline.__call__`` arguments the adapter sets itself, and where each comes from.
ADAPTER_ARGUMENTS = {
    "prompt": "is the benchmark's prompt", "num_inference_steps": "is set by --sample-steps (RunSpec.sample_steps)",
    "text_guidance_scale": "is set by --guidance (RunSpec.guidance)", "generator": "is seeded per image by the adapter",
    "output_type": "is 'np' (the adapter returns uint8 arrays)",
    "input_images": "is text-to-image only (None for one prompt, [None] * B for more)",
}

_SENTINEL = "\u2063PROMPT\u2063"


class OmniGen2ImportError(ImportError):
    """OmniGen2's code (the ``omnigen2`` package of VectorSpaceLab/OmniGen2) cannot be imported."""


def install_hint() -> str:
    """How to make OmniGen2 loadable: its code, and the checkpoint folder it reads."""
    return (
        "OmniGen2 is not on PyPI; install its code from the git repository:\n"
        f"    git clone {OMNIGEN2_REPO} /path/to/OmniGen2\n"
        "    pip install -r /path/to/OmniGen2/requirements.txt   # what its code imports (einops, diffusers, ...;\n"
        "                                                        # check its pins against this environment)\n"
        "    export PYTHONPATH=/path/to/OmniGen2:$PYTHONPATH      # or `pip install -e /path/to/OmniGen2` if the\n"
        "                                                        # checkout has packaging metadata\n"
        "so that `import omnigen2.pipelines.omnigen2.pipeline_omnigen2` works. It also needs a local OmniGen2 "
        "checkpoint folder (e.g. a download of the Hugging Face repository OmniGen2/OmniGen2) holding "
        "model_index.json, mllm/ (Qwen2_5_VLForConditionalGeneration), processor/ (Qwen2.5-VL processor with a fast "
        "tokenizer), transformer/ (OmniGen2Transformer2DModel), vae/ (AutoencoderKL) and scheduler/; "
        "load it as --model omnigen2:/path/to/folder."
    )


def import_omnigen2() -> dict:
    """``{"pipeline": OmniGen2Pipeline, "transformer": OmniGen2Transformer2DModel, "rotary": OmniGen2RotaryPosEmbed}``.

    Raises :class:`OmniGen2ImportError` naming the module whose import failed and the original
    error (a missing package, or an error raised while OmniGen2's modules import their own
    dependencies), with :func:`install_hint`.
    """
    out = {}
    for (module, attr), key in zip(REQUIRED_IMPORTS, ("pipeline", "transformer", "rotary")):
        try:
            mod = importlib.import_module(module)
        except Exception as e:  # ImportError, or whatever OmniGen2's module-level code raised
            raise OmniGen2ImportError(
                f"cannot load OmniGen2: `import {module}` failed with {type(e).__name__}: {e}\n{install_hint()}"
            ) from e
        if not hasattr(mod, attr):
            raise OmniGen2ImportError(
                f"cannot load OmniGen2: module {module} ({getattr(mod, '__file__', '?')}) has no {attr}; this "
                f"revision of OmniGen2 is not the one this adapter was written for.\n{install_hint()}")
        out[key] = getattr(mod, attr)
    return out


def text_to_image_inputs(batch_size: int) -> list | None:
    """The ``input_images`` of a text-to-image call on ``batch_size`` prompts: ``None`` for one
    prompt, ``[None] * batch_size`` for more.

    ``OmniGen2Pipeline.prepare_image`` wraps ``input_images`` in a list only when the batch holds
    one prompt and otherwise iterates it, one entry (an image list or ``None``) per prompt; its
    default ``None`` therefore fails on two or more prompts (``TypeError: 'NoneType' object is not
    iterable``), and ``[None]`` fails on one (it is read as one prompt's list holding a ``None``
    image).
    """
    return None if batch_size == 1 else [None] * batch_size


def build_instruction(tokenizer, prompt: str, system_prompt: str = SYSTEM_PROMPT) -> str:
    """The instruction text OmniGen2 encodes for ``prompt`` (``OmniGen2Pipeline._apply_chat_template``)."""
    msgs = [{"role": "system", "content": system_prompt}, {"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)


def text_decoder_prefix(mllm) -> str:
    """Dotted path of the text decoder inside a Qwen2.5-VL model: ``model.language_model``
    (transformers >= 4.52) or ``model`` (earlier, where ``Qwen2_5_VLModel`` was the decoder)."""
    inner = getattr(mllm, "model", None)
    lang = getattr(inner, "language_model", None)
    if lang is not None and hasattr(lang, "layers"):
        return "model.language_model"
    if inner is not None and hasattr(inner, "layers"):
        return "model"
    raise ValueError(f"{type(mllm).__name__}: no text decoder at model.language_model or model "
                     "(a Qwen2_5_VLForConditionalGeneration is expected)")


def decoder_paths(prefix: str) -> ModulePaths:
    """:class:`ModulePaths` of a Llama-like decoder at ``prefix`` (``lm_head`` on the top model)."""
    p = prefix
    return ModulePaths(layers=f"{p}.layers", layer=f"{p}.layers.{{}}", mlp=f"{p}.layers.{{}}.mlp",
                       mlp_down=f"{p}.layers.{{}}.mlp.down_proj", mlp_up=f"{p}.layers.{{}}.mlp.up_proj",
                       attn=f"{p}.layers.{{}}.self_attn", final_norm=f"{p}.norm", embed=f"{p}.embed_tokens",
                       lm_head="lm_head")


def end_aligned(ids: torch.Tensor, mask: torch.Tensor, offsets: torch.Tensor | None, pad_id: int):
    """Right-padded rows ``(B, S)`` -> one layout whose real tokens all end at column ``N - 1``.

    Row ``b`` (``n_b`` real tokens, ``N`` the longest) is shifted right by ``s_b = N - n_b``, pads
    before and after, position ids ``j - s_b`` (clamped at 0). Returns ``(ids, mask, positions,
    offsets, index)`` of width ``L = N + S - min n_b``; ``index[b, j] = s_b + j`` maps the
    right-padded slot ``j`` to its column.
    """
    B, S = ids.shape
    n = mask.sum(1)
    N, m = int(n.max()), int(n.min())
    L = N + S - m
    shift = N - n
    out_ids = torch.full((B, L), pad_id, dtype=ids.dtype)
    out_mask = torch.zeros((B, L), dtype=mask.dtype)
    out_off = torch.zeros((B, L, 2), dtype=torch.long) if offsets is not None else None
    for b in range(B):
        s = int(shift[b])
        out_ids[b, s:s + S] = ids[b]
        out_mask[b, s:s + S] = mask[b]
        if offsets is not None:
            out_off[b, s:s + S] = offsets[b] * mask[b, :, None]
    pos = (torch.arange(L)[None, :] - shift[:, None]).clamp(min=0)
    index = shift[:, None] + torch.arange(S)[None, :]
    return out_ids, out_mask, pos, out_off, index


class OmniGen2Adapter(UMMAdapter):
    """OmniGen2 (see the module docstring). Build with :func:`load_omnigen2`.

    ``pipe``: the ``OmniGen2Pipeline`` (``mllm``, ``processor``, ``transformer``, ``vae``,
    ``scheduler``); ``freqs_cis_fn``: ``OmniGen2RotaryPosEmbed.get_freqs_cis`` (for the trace
    module; imported from ``omnigen2`` when not given). ``pipeline_kwargs`` go to every pipeline
    call (e.g. ``{"negative_prompt": ..., "height": 512, "width": 512}``); empty by default, i.e. the
    pipeline's own ``__call__`` defaults; the arguments the adapter sets itself
    (:data:`ADAPTER_ARGUMENTS`) are refused. Their ``max_sequence_length`` (None: the pipeline's
    default) is used for the conditioning too. ``trace_latent_size`` is the latent
    side of the trace module's single transformer call (32: 256 x 256 pixels with the 8x VAE; the
    pipeline's default 128 would store ~16x larger generator activations).
    """

    family = "llama"
    world = None
    verifier = None
    #: ``OmniGen2Pipeline.__call__`` defaults.
    sample_steps = 28
    guidance = 4.0
    trace_latent_size = 32

    def __init__(self, name: str, pipe, *, device: torch.device, dtype: torch.dtype,
                 freqs_cis_fn: Callable | None = None, pipeline_kwargs: dict | None = None):
        ptok = pipe.processor.tokenizer
        if not getattr(ptok, "is_fast", False):
            raise ValueError("OmniGen2: a fast tokenizer is needed (offset mappings)")
        ptok.padding_side = "right"  # what OmniGen2's transformer assumes (see the module docstring)
        tok = copy.deepcopy(ptok)
        tok.padding_side = "left"
        super().__init__(pipe.mllm, tok, device=device, dtype=dtype)
        self.name = name
        self.pipe = pipe
        self.generator = pipe.transformer
        self.text_prefix = text_decoder_prefix(pipe.mllm)
        self.paths = decoder_paths(self.text_prefix)
        taken = sorted(set(pipeline_kwargs or {}) & set(ADAPTER_ARGUMENTS))
        if taken:
            raise ValueError("OmniGen2 pipeline_kwargs: " + "; ".join(f"{k} {ADAPTER_ARGUMENTS[k]}" for k in taken))
        self.pipeline_kwargs: dict = dict(pipeline_kwargs or {})
        self._freqs_cis_fn = freqs_cis_fn
        self._trace_module = None

    @property
    def max_sequence_length(self) -> int | None:
        """``pipeline_kwargs["max_sequence_length"]``: the caption length of the pipeline calls and of
        :meth:`conditioning` alike (None, the pipeline's default: the tokenizer's own limit)."""
        return self.pipeline_kwargs.get("max_sequence_length")

    # --- the pipeline's text side ---------------------------------------------------------------
    def instruction(self, prompt: str) -> str:
        """The text the pipeline encodes for ``prompt`` (its own ``_apply_chat_template`` where it has one)."""
        fn = getattr(self.pipe, "_apply_chat_template", None)
        if fn is not None:
            return fn(prompt)
        return build_instruction(self.pipe.processor.tokenizer, prompt)

    def prompt_prefix(self) -> str:
        """The instruction text before the user's prompt (system message and chat markup)."""
        pre, sep, _ = self.instruction(_SENTINEL).partition(_SENTINEL)
        if not sep:
            raise RuntimeError("OmniGen2's chat template dropped the prompt; cannot locate it")
        return pre

    def pipeline_tokens(self, prompts: Sequence[str], *, offsets: bool = False):
        """The pipeline's tokenisation of ``prompts`` (instruction, ``padding="longest"``, right side)."""
        tok = self.pipe.processor.tokenizer
        if tok.padding_side != "right":
            raise RuntimeError(f"the pipeline tokenizer pads on the {tok.padding_side}; OmniGen2's transformer "
                               "reads the first mask.sum() caption slots (right padding)")
        return tok([self.instruction(p) for p in prompts], padding="longest", max_length=self.max_sequence_length,
                   truncation=True, return_tensors="pt", return_offsets_mapping=offsets)

    @torch.no_grad()
    def conditioning(self, prompts: Sequence[str]) -> Conditioning:
        return self._conditioning(prompts)

    def _conditioning(self, prompts: Sequence[str]) -> Conditioning:
        """What the pipeline hands the transformer for ``prompts``: its own ``encode_prompt``
        (conditional branch) -- ``hidden_states[-1]`` of the mllm over the right-padded
        instructions, and their mask. ``lm_positions[b, j] = j`` on real tokens (the system
        message included; slot ``j`` is mllm input position ``j``), -1 on padding."""
        prompts = list(prompts)
        if not prompts:
            z = torch.zeros((0, 0), dtype=torch.long, device=self.device)
            return Conditioning(torch.zeros((0, 0, self.hidden_size), dtype=self.lm.dtype, device=self.device), z, z)
        hidden, mask, _, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.device,
                                                     max_sequence_length=self.max_sequence_length)
        enc = self.pipeline_tokens(prompts)
        if tuple(mask.shape) != tuple(enc["attention_mask"].shape) or not torch.equal(
                mask.cpu().long(), enc["attention_mask"].long()):
            raise RuntimeError("OmniGen2's encode_prompt tokenised the prompts differently from the adapter "
                               f"(mask {tuple(mask.shape)} vs {tuple(enc['attention_mask'].shape)}); this revision "
                               "of OmniGen2 is not supported")
        mask = mask.to(self.device)
        pos = torch.arange(mask.shape[1], device=self.device).expand_as(mask).masked_fill(mask == 0, -1)
        return Conditioning(hidden, mask, pos)

    def differentiable_conditioning(self, prompts: Sequence[str]) -> Conditioning:
        """:meth:`conditioning` under autograd (the pipeline's ``encode_prompt`` runs the mllm
        forward; a revision that disables gradients inside it is reported by the editor)."""
        with torch.enable_grad():
            return self._conditioning(prompts)

    # --- images ------------------------------------------------------------------------------
    def image_hw(self) -> tuple[int, int]:
        kw = self.pipeline_kwargs
        size = getattr(self.pipe, "default_sample_size", 128) * getattr(self.pipe, "vae_scale_factor", 8)
        return int(kw.get("height") or size), int(kw.get("width") or size)

    @torch.no_grad()
    def _generate_batch(self, prompts: list[str], *, seed: int, steps: int, guidance: float) -> np.ndarray:
        """One call of ``OmniGen2Pipeline.__call__``; ``guidance`` is its ``text_guidance_scale``.

        Every image gets its own ``torch.Generator("cpu").manual_seed(seed)`` (a list of generators
        per call: diffusers' ``randn_tensor`` draws row ``i`` with generator ``i`` on the CPU), so
        image ``i`` depends only on ``prompts[i]`` and ``seed``, up to the float rounding of a batch
        (captions are padded to the batch's longest; ``batch_size=1`` is exact).
        """
        gens = [torch.Generator("cpu").manual_seed(int(seed)) for _ in prompts]
        kw = {"max_sequence_length": self.max_sequence_length, **self.pipeline_kwargs,
              "input_images": text_to_image_inputs(len(prompts))}
        imgs = self.pipe(prompt=prompts, num_inference_steps=steps, text_guidance_scale=guidance, generator=gens,
                         output_type="np", **kw).images
        return (np.asarray(imgs) * 255).round().clip(0, 255).astype(np.uint8)

    # --- interpretability -------------------------------------------------------------------
    @property
    def connector(self) -> str:
        """The caption projection inside :attr:`generator` (RMSNorm + Linear)."""
        return "time_caption_embed.caption_embedder"

    @property
    def refiner_blocks(self) -> list[str]:
        return [f"context_refiner.{i}" for i in range(len(self.generator.context_refiner))]

    @property
    def generator_blocks(self) -> list[str]:
        """The joint (caption + image) blocks ``layers.{i}`` inside :attr:`generator`."""
        return [f"layers.{i}" for i in range(len(self.generator.layers))]

    def conditioning_sites(self) -> list:
        """The tensor the transformer receives (``input:2``), its projection, the caption refiner
        blocks (all ``(B, S, C)`` over the caption slots), then every joint block's output, at a
        fixed seeded noise and timestep."""
        from .sites import Site

        out = [Site("cond.tensor", "conditioning", "transformer", read="input:2"),
               Site("cond.connector_out", "conditioning", f"transformer.{self.connector}")]
        out += [Site(f"cond.refiner.{i}", "conditioning", f"transformer.{b}")
                for i, b in enumerate(self.refiner_blocks)]
        out += [Site(f"gen.block.{i}", "generator", f"transformer.{b}") for i, b in enumerate(self.generator_blocks)]
        return out

    def _freqs_cis(self):
        fn = self._freqs_cis_fn
        if fn is None:
            fn = import_omnigen2()["rotary"].get_freqs_cis
        cfg = self.generator.config
        return fn(cfg.axes_dim_rope, cfg.axes_lens, theta=10000)

    def trace_module(self) -> torch.nn.Module:
        if self._trace_module is None:
            self._trace_module = _OmniGen2Path(self.lm, self.text_prefix, self.generator, self._freqs_cis())
        return self._trace_module

    def trace_inputs(self, prompts: Sequence[str], *, seed: int = 0) -> tuple[tuple, dict]:
        """Inputs of :meth:`trace_module` for ``prompts``.

        The pipeline pads on the right; the recorder reads the prompt's last token at column
        ``T - 1`` of a left-padded batch. So the text decoder runs once on an end-aligned layout
        (:func:`end_aligned`: the pipeline's rows shifted right, position ids ``0..n-1`` on the
        real tokens as in the pipeline, attention on real tokens only), and the conditioning is
        gathered back into the pipeline's layout. ``extra`` holds the first ``N`` columns (system
        message included) with offsets relative to the user's prompt (tokens before it get
        ``(0, 0)``), so ``T - 1`` is every row's last instruction token. The transformer runs once
        at ``t = 1 - TRACE_SIGMA`` on ``TRACE_SIGMA * eps``, ``eps`` drawn with
        ``torch.Generator("cpu").manual_seed(seed)`` at latent side :attr:`trace_latent_size`.
        """
        enc = self.pipeline_tokens(prompts, offsets=True)
        ids_p, mask_p, off_p = enc["input_ids"], enc["attention_mask"], enc["offset_mapping"]
        plen = len(self.prompt_prefix())
        off = off_p - plen
        off[..., 0] = off[..., 0].clamp(min=0)
        off[off[..., 1] <= 0] = 0
        pad = self.pipe.processor.tokenizer.pad_token_id
        ids, mask, pos, offsets, index = end_aligned(ids_p, mask_p, off, pad)
        N = int(mask_p.sum(1).max())
        B = ids.shape[0]
        cond_pos = index.masked_fill(mask_p == 0, -1)
        size = self.trace_latent_size
        latent = torch.randn((1, self.generator.config.in_channels, size, size),
                             generator=torch.Generator("cpu").manual_seed(int(seed)))
        x = (TRACE_SIGMA * latent).expand(B, -1, -1, -1).contiguous()
        t = torch.full((B,), 1.0 - TRACE_SIGMA)
        dev = self.device
        args = (ids.to(dev), mask.to(dev), pos.to(dev), index.to(dev), mask_p.to(dev), cond_pos.to(dev),
                x.to(dev), t.to(dev))
        extra = {"input_ids": ids[:, :N].to(dev), "attention_mask": mask[:, :N].to(dev),
                 "offset_mapping": offsets[:, :N]}
        return args, extra


class _OmniGen2Path(torch.nn.Module):
    """prompt ids -> the mllm's text decoder -> final-norm states (the pipeline's ``hidden_states[-1]``)
    -> one transformer call.

    Holds references (not copies) to the adapter's LM (``lm``, the whole Qwen2.5-VL model, so
    recording sites are ``lm.<text prefix>.layers.{i}``) and the transformer. The transformer is
    called positionally as the pipeline calls it, ``(x, t, cond, freqs_cis, mask)``, plus
    ``ref_image_hidden_states=[None] * B`` where its forward takes that argument (text-to-image).
    Returns a :class:`TraceOutput` of the transformer's sample and the conditioning.
    """

    def __init__(self, lm, text_prefix: str, transformer, freqs_cis):
        super().__init__()
        self.lm = lm
        self.transformer = transformer
        self.text_prefix = text_prefix
        self.freqs_cis = freqs_cis
        self.ref_kw = "ref_image_hidden_states" in inspect.signature(transformer.forward).parameters

    def forward(self, input_ids, attention_mask, position_ids, cond_index, cond_mask, cond_positions, x,
                t) -> TraceOutput:
        text = self.lm.get_submodule(self.text_prefix)
        h = text(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                 use_cache=False).last_hidden_state
        hidden = torch.gather(h, 1, cond_index[..., None].expand(-1, -1, h.shape[-1])).to(self.lm.dtype)
        cond = Conditioning(hidden, cond_mask, cond_positions)
        kw = {"ref_image_hidden_states": [None] * x.shape[0]} if self.ref_kw else {}
        sample = self.transformer(x.to(hidden.dtype), t.to(hidden.dtype), hidden, self.freqs_cis, cond_mask, **kw)
        if isinstance(sample, (tuple, list)):
            sample = sample[0]
        return TraceOutput(sample, cond)


# --- loading ---------------------------------------------------------------------------------

def load_omnigen2(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  name: str | None = None, pipeline_kwargs: dict | None = None) -> OmniGen2Adapter:
    """Load an OmniGen2 checkpoint folder offline, as OmniGen2's ``inference.py`` does:
    ``OmniGen2Pipeline.from_pretrained(path, torch_dtype=dtype)``, then the transformer again with
    ``OmniGen2Transformer2DModel.from_pretrained(path, subfolder="transformer")``. Unlike
    ``inference.py`` it never passes ``trust_remote_code``: the installed ``omnigen2`` package
    supplies every class, and no code is run from the checkpoint folder. ``path`` may also be a
    repository id already in the Hugging Face cache.

    Raises :class:`OmniGen2ImportError` (an ``ImportError``) where OmniGen2's code does not import,
    ``FileNotFoundError`` where the folder lacks part of :data:`CHECKPOINT_LAYOUT`.
    ``pipeline_kwargs``: see :class:`OmniGen2Adapter` (checked before anything loads).
    """
    taken = sorted(set(pipeline_kwargs or {}) & set(ADAPTER_ARGUMENTS))
    if taken:
        raise ValueError("OmniGen2 pipeline_kwargs: " + "; ".join(f"{k} {ADAPTER_ARGUMENTS[k]}" for k in taken))
    from .hub import resolve_model_folder

    og = import_omnigen2()
    path = resolve_model_folder(path, marker="model_index.json") if not Path(path).is_dir() else Path(path)
    missing = [p for p in CHECKPOINT_LAYOUT if not (path / p).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not an OmniGen2 checkpoint folder: missing {', '.join(missing)} "
                                f"(expected {', '.join(CHECKPOINT_LAYOUT)})")
    device = torch.device(device)
    pipe = og["pipeline"].from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
    pipe.transformer = og["transformer"].from_pretrained(str(path), subfolder="transformer", torch_dtype=dtype,
                                                         local_files_only=True)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    for mod in (pipe.mllm, pipe.transformer, pipe.vae):
        mod.eval()
    return OmniGen2Adapter(name or f"omnigen2:{path}", pipe, device=device, dtype=dtype,
                           freqs_cis_fn=og["rotary"].get_freqs_cis, pipeline_kwargs=pipeline_kwargs)
