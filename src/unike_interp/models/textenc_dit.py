"""Adapter for a causal LM used as the text encoder of a diffusers DiT pipeline.

One class, :class:`TextEncDiTAdapter`, and a declarative preset table (:data:`PRESETS`) that
says, per pipeline, what its ``encode_prompt`` does: which hidden state of the text encoder it
reads, how it wraps the prompt, how it pads, and how the transformer receives the result.

The causal LM (``adapter.lm``) answers text and is edited; its decoder ``adapter.lm.model`` is the
very module object the pipeline holds as ``text_encoder``, so a weight edit of the LM reaches
text and images alike (no copy).

``lumina2`` (``Lumina2Pipeline``, checked against diffusers 0.42.1
``pipelines/lumina2/pipeline_lumina2.py``):

* the prompt is wrapped as ``pipe.system_prompt + " <Prompt Start> " + prompt``; the negative
  prompt of classifier-free guidance (``""`` by default) is encoded as it is, *without* the
  system prompt;
* tokenised with ``padding="max_length"``, ``max_length=256``, ``truncation=True`` on the
  *right* (the pipeline sets ``tokenizer.padding_side = "right"`` in its constructor);
* the text encoder (``Gemma2Model``) runs on ``(input_ids, attention_mask=mask,
  output_hidden_states=True)`` with default position ids, and the pipeline keeps
  ``hidden_states[-2]``: the output of the second-to-last decoder layer (in transformers 5.24 the
  last entry is the final-norm output, the one before it the layer ``L-2`` output). The last
  decoder layer therefore never reaches the image;
* the transformer is called as ``transformer(hidden_states=latents, timestep=1 - sigma,
  encoder_hidden_states=embeds, encoder_attention_mask=mask)``; positional index 2 is the
  conditioning, 3 its mask. It reads the first ``mask.sum()`` caption tokens (right padding
  assumed), refines them (``context_refiner``) after a projection
  (``time_caption_embed.caption_embedder``: RMSNorm + Linear) and joins them with the image
  tokens in the joint blocks ``layers``.

Two tokenizer instances are loaded from the same files: ``adapter.tokenizer`` (left padding, as
the text side of the toolkit expects) and ``adapter.pipe.tokenizer`` (right padding, as the
pipeline expects).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..world.conditioning import Conditioning
from .base import ModulePaths, UMMAdapter


@dataclass(frozen=True)
class TextEncPreset:
    """What one diffusers pipeline does with its LM text encoder (declarative)."""

    name: str
    pipeline: str                 # diffusers pipeline class
    lm_class: str                 # transformers causal-LM class loaded from ``text_encoder/``
    family: str                   # editing hyperparameter family (``editing.hparams.FAMILY_DEFAULTS``)
    hidden_index: int             # index into the text encoder's ``hidden_states`` the pipeline keeps
    template: str                 # prompt wrapping; ``{system}`` is ``getattr(pipe, system_attr)``
    system_attr: str | None       # pipeline attribute holding the system prompt
    max_sequence_length: int      # the pipeline's default ``max_sequence_length``
    padding_side: str             # how the pipeline pads (its tokenizer's side)
    cond_arg: int                 # positional index of the conditioning in ``transformer.forward``
    mask_arg: int                 # positional index of its mask
    connector: str | None         # projection of the conditioning inside the transformer
    refiner: str | None           # caption-only blocks (a ModuleList path in the transformer)
    blocks: str                   # the generator's main blocks (a ModuleList path in the transformer)
    default_steps: int            # the pipeline's ``__call__`` defaults
    default_guidance: float
    description: str = ""
    paths: ModulePaths = ModulePaths()


PRESETS: dict[str, TextEncPreset] = {
    "lumina2": TextEncPreset(
        name="lumina2",
        pipeline="Lumina2Pipeline",
        lm_class="Gemma2ForCausalLM",
        family="llama",
        hidden_index=-2,
        template="{system} <Prompt Start> {prompt}",
        system_attr="system_prompt",
        max_sequence_length=256,
        padding_side="right",
        cond_arg=2,
        mask_arg=3,
        connector="time_caption_embed.caption_embedder",
        refiner="context_refiner",
        blocks="layers",
        default_steps=30,
        default_guidance=4.0,
        description="Lumina-Image 2.0 (Lumina2Pipeline): Gemma-2 text encoder, hidden_states[-2] of the "
                    "system-prompted caption condition a flow DiT",
    ),
}

#: Where the DiT is read in the trace module: flow time ``sigma`` on seeded noise (``x = sigma * eps``,
#: clean latent 0); Lumina's transformer takes ``timestep = 1 - sigma`` (0 = noise, 1 = image).
TRACE_SIGMA = 0.5


def _import(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(module), name)


class TextEncDiTAdapter(UMMAdapter):
    """A diffusers DiT pipeline whose text encoder is the decoder of a causal LM.

    Build with :func:`load_textenc_dit`. ``pipe`` is the diffusers pipeline (its ``text_encoder``
    is ``lm.model``); ``preset`` a :class:`TextEncPreset`. ``pipeline_kwargs`` are passed to every
    pipeline call (e.g. ``{"cfg_trunc_ratio": 0.25}``); empty by default, i.e. the pipeline's own
    ``__call__`` defaults.
    """

    world = None
    verifier = None

    def __init__(self, name: str, lm, tokenizer, pipe, preset: TextEncPreset, *, device: torch.device,
                 dtype: torch.dtype):
        super().__init__(lm, tokenizer, device=device, dtype=dtype)
        if pipe.text_encoder is not lm.model:
            raise ValueError("the pipeline's text_encoder must be the LM's decoder (lm.model) itself")
        self.name = name
        self.pipe = pipe
        self.preset = preset
        self.paths = preset.paths
        self.family = preset.family
        self.generator = pipe.transformer
        self.pipeline_kwargs: dict = {}
        self._trace_module = None

    # --- the pipeline's text side, mirrored -------------------------------------------------
    @property
    def system_prompt(self) -> str:
        attr = self.preset.system_attr
        return getattr(self.pipe, attr) if attr else ""

    def prompt_prefix(self) -> str:
        """The text before the user's prompt in what the pipeline encodes."""
        return self.preset.template.split("{prompt}")[0].format(system=self.system_prompt)

    def pipeline_text(self, prompt: str) -> str:
        return self.preset.template.format(system=self.system_prompt, prompt=prompt)

    def pipeline_tokens(self, prompts: Sequence[str], *, offsets: bool = False):
        """The pipeline's tokenisation of ``prompts`` (wrapped, padded, truncated as it does)."""
        tok = self.pipe.tokenizer
        if tok.padding_side != self.preset.padding_side:
            raise RuntimeError(f"the pipeline tokenizer pads on the {tok.padding_side}, "
                               f"{self.preset.name} on the {self.preset.padding_side}")
        return tok([self.pipeline_text(p) for p in prompts], padding="max_length",
                   max_length=self.preset.max_sequence_length, truncation=True, return_tensors="pt",
                   return_offsets_mapping=offsets)

    @torch.no_grad()
    def conditioning(self, prompts: Sequence[str]) -> Conditioning:
        """What the pipeline hands the transformer for ``prompts`` (its ``encoder_hidden_states``
        and ``encoder_attention_mask``). ``lm_positions[b, j] = j`` on real tokens (the
        system prompt included; conditioning slot ``j`` is LM input position ``j``), -1 on padding."""
        enc = self.pipeline_tokens(prompts)
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        te = self.pipe.text_encoder
        out = te(ids, attention_mask=mask, output_hidden_states=True)
        hidden = out.hidden_states[self.preset.hidden_index].to(dtype=te.dtype, device=self.device)
        pos = torch.arange(ids.shape[1], device=self.device).expand_as(ids).masked_fill(mask == 0, -1)
        return Conditioning(hidden, mask, pos)

    # --- images ------------------------------------------------------------------------------
    @property
    def sample_steps(self) -> int:
        return self.preset.default_steps

    @property
    def guidance(self) -> float:
        return self.preset.default_guidance

    @torch.no_grad()
    def generate_images(
        self,
        prompts: Sequence[str],
        *,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        batch_size: int = 64,
    ) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 images through the pipeline (its default size).

        Every image gets its own ``torch.Generator("cpu").manual_seed(seed)`` (a list of
        generators per pipeline call), so every image starts from the same noise, drawn on the
        CPU whatever the device: image ``i`` depends only on ``prompts[i]`` and ``seed``. Prompts
        are batched ``batch_size`` at a time; captions are padded to the fixed
        ``max_sequence_length``, but the joint sequence of the transformer is as long as the
        batch's longest caption, so a batched image may differ from the same prompt drawn alone
        by float rounding; ``batch_size=1`` is exact. (On the tiny model, batched and one-by-one
        images were identical for every seed tried.)
        """
        prompts = list(prompts)
        steps = steps or self.sample_steps
        guidance = self.guidance if guidance is None else guidance
        out = []
        for i in range(0, len(prompts), max(1, batch_size)):
            chunk = prompts[i:i + batch_size]
            gens = [torch.Generator("cpu").manual_seed(seed) for _ in chunk]
            imgs = self.pipe(chunk, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                             output_type="np", max_sequence_length=self.preset.max_sequence_length,
                             **self.pipeline_kwargs).images
            out.append((np.asarray(imgs) * 255).round().clip(0, 255).astype(np.uint8))
        if out:
            return np.concatenate(out)
        size = self.pipe.default_sample_size * self.pipe.vae_scale_factor
        return np.zeros((0, size, size, 3), np.uint8)

    # --- interpretability -------------------------------------------------------------------
    @property
    def connector(self) -> str | None:
        """Module path (inside :attr:`generator`) of the projection of the conditioning."""
        return self.preset.connector

    @property
    def refiner_blocks(self) -> list[str]:
        """Caption-only blocks of the transformer (inside :attr:`generator`)."""
        if not self.preset.refiner:
            return []
        return [f"{self.preset.refiner}.{i}" for i in range(len(self.generator.get_submodule(self.preset.refiner)))]

    @property
    def generator_blocks(self) -> list[str]:
        return [f"{self.preset.blocks}.{i}" for i in range(len(self.generator.get_submodule(self.preset.blocks)))]

    def conditioning_sites(self) -> list:
        """The tensor the transformer receives (``input:{cond_arg}``), its projection, the caption
        refiner blocks (all ``(B, S, C)`` over the conditioning slots), then every generator
        block's output, at a fixed seeded noise and timestep."""
        from .sites import Site

        out = [Site("cond.tensor", "conditioning", "transformer", read=f"input:{self.preset.cond_arg}")]
        if self.connector:
            out.append(Site("cond.connector_out", "conditioning", f"transformer.{self.connector}"))
        out += [Site(f"cond.refiner.{i}", "conditioning", f"transformer.{b}") for i, b in enumerate(self.refiner_blocks)]
        out += [Site(f"gen.block.{i}", "generator", f"transformer.{b}") for i, b in enumerate(self.generator_blocks)]
        return out

    def trace_module(self) -> torch.nn.Module:
        if self._trace_module is None:
            self._trace_module = _TextEncDiTPath(self.lm, self.generator, self.preset)
        return self._trace_module

    def trace_inputs(self, prompts: Sequence[str], *, seed: int = 0) -> tuple[tuple, dict]:
        """Inputs of :meth:`trace_module` for ``prompts``.

        The pipeline pads on the right to ``max_sequence_length``; the recorder reads the
        prompt's last token at column ``T - 1`` of a left-padded batch. So the language model
        runs once on an *end-aligned* layout: row ``b`` is the pipeline's row shifted right by
        ``s_b = N - n_b`` (``n_b`` real tokens, ``N`` the longest), pads before and after,
        position ids ``j - s_b`` and attention on the real tokens only -- the pipeline's
        attention pattern and positions, so the hidden states equal the pipeline's up to float
        rounding, padding slots included. The conditioning is gathered back into the pipeline's
        layout. ``extra`` holds the first ``N`` columns (the left-padded prompt, system prompt
        included) with offsets relative to the user's prompt (system-prompt tokens get
        ``(0, 0)``), so ``T - 1`` is every row's last token.
        """
        enc = self.pipeline_tokens(prompts, offsets=True)
        ids_p, mask_p, off_p = enc["input_ids"], enc["attention_mask"], enc["offset_mapping"]
        B, S = ids_p.shape
        n = mask_p.sum(1)
        N, m = int(n.max()), int(n.min())
        L = N + S - m
        pad = self.pipe.tokenizer.pad_token_id
        ids = torch.full((B, L), pad, dtype=ids_p.dtype)
        mask = torch.zeros((B, L), dtype=mask_p.dtype)
        offsets = torch.zeros((B, L, 2), dtype=off_p.dtype)
        shift = N - n
        plen = len(self.prompt_prefix())
        for b in range(B):
            s = int(shift[b])
            ids[b, s:s + S] = ids_p[b]
            mask[b, s:s + S] = mask_p[b]
            o = off_p[b] - plen
            o[:, 0] = o[:, 0].clamp(min=0)
            o[o[:, 1] <= 0] = 0
            offsets[b, s:s + S] = o * mask_p[b, :, None]
        pos = (torch.arange(L)[None, :] - shift[:, None]).clamp(min=0)
        index = shift[:, None] + torch.arange(S)[None, :]
        cond_pos = index.masked_fill(mask_p == 0, -1)
        size = self.generator.config.sample_size
        latent = torch.randn((1, self.generator.config.in_channels, size, size),
                             generator=torch.Generator("cpu").manual_seed(seed))
        x = (TRACE_SIGMA * latent).expand(B, -1, -1, -1).contiguous()
        t = torch.full((B,), 1.0 - TRACE_SIGMA)
        dev = self.device
        args = (ids.to(dev), mask.to(dev), pos.to(dev), index.to(dev), mask_p.to(dev), cond_pos.to(dev),
                x.to(dev), t.to(dev))
        extra = {"input_ids": ids[:, :N].to(dev), "attention_mask": mask[:, :N].to(dev),
                 "offset_mapping": offsets[:, :N]}
        return args, extra


class _TextEncDiTPath(torch.nn.Module):
    """prompt ids -> LM decoder -> the pipeline's conditioning -> one transformer call.

    Holds references (not copies) to the adapter's LM (as ``lm``) and transformer, so an applied
    weight delta is what gets traced. The transformer is called with positional arguments so that
    its conditioning is ``input:{cond_arg}`` for the recorder. Returns ``(sample, Conditioning)``.
    """

    def __init__(self, lm, transformer, preset: TextEncPreset):
        super().__init__()
        self.lm = lm
        self.transformer = transformer
        self.hidden_index = preset.hidden_index
        if (preset.cond_arg, preset.mask_arg) != (2, 3):
            raise NotImplementedError(f"{preset.name}: the trace module calls transformer(x, t, cond, mask)")

    def forward(self, input_ids, attention_mask, position_ids, cond_index, cond_mask, cond_positions, x, t):
        base = self.lm.model
        out = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   output_hidden_states=True)
        h = out.hidden_states[self.hidden_index]
        hidden = torch.gather(h, 1, cond_index[..., None].expand(-1, -1, h.shape[-1])).to(base.dtype)
        cond = Conditioning(hidden, cond_mask, cond_positions)
        sample = self.transformer(x.to(hidden.dtype), t.to(hidden.dtype), hidden, cond_mask, None, False)[0]
        return sample, cond


# --- loading ---------------------------------------------------------------------------------

def load_textenc_dit(
    path: str | Path,
    preset: str = "lumina2",
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    name: str | None = None,
) -> TextEncDiTAdapter:
    """Load a pipeline folder (diffusers layout: ``model_index.json``, ``text_encoder/``,
    ``tokenizer/``, ``transformer/``, ``vae/``, ``scheduler/``) from a local path, offline.

    The LM is ``preset.lm_class`` loaded from ``text_encoder/`` (a saved base model loads into the
    causal LM; its head is tied to the embeddings, as in Gemma); the pipeline gets ``lm.model``
    as its text encoder and a second tokenizer instance (right padding).
    """
    from transformers import AutoTokenizer

    if preset not in PRESETS:
        raise KeyError(f"unknown text-encoder preset {preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    path = Path(path)
    if not (path / "model_index.json").exists():
        raise FileNotFoundError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
    index = json.loads((path / "model_index.json").read_text())
    if index.get("_class_name") not in (None, p.pipeline):
        raise ValueError(f"{path} holds a {index.get('_class_name')}, preset {preset!r} expects {p.pipeline}")
    device = torch.device(device)
    lm_cls = _import("transformers", p.lm_class)
    lm = lm_cls.from_pretrained(str(path / "text_encoder"), dtype=dtype, local_files_only=True)
    lm.to(device).eval()
    tok = AutoTokenizer.from_pretrained(str(path / "tokenizer"), local_files_only=True)
    tok.padding_side = "left"
    pipe_tok = AutoTokenizer.from_pretrained(str(path / "tokenizer"), local_files_only=True)
    pipe_tok.padding_side = p.padding_side
    if not (tok.is_fast and pipe_tok.is_fast):
        raise ValueError(f"{path}/tokenizer: a fast tokenizer is needed (offset mappings)")
    pipe_cls = _import("diffusers", p.pipeline)
    pipe = pipe_cls.from_pretrained(str(path), text_encoder=lm.model, tokenizer=pipe_tok, dtype=dtype,
                                    local_files_only=True)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    for mod in (pipe.transformer, pipe.vae):
        mod.eval()
    return TextEncDiTAdapter(name or f"{preset}:{path}", lm, tok, pipe, p, device=device, dtype=dtype)


# --- tiny random models (tests) -----------------------------------------------------------------

def build_tiny_lumina2(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random Lumina2 pipeline saved to ``out_dir`` (safetensors), in seconds on a CPU.

    Gemma-2 text encoder (hidden 64, 4 layers, the SynthWorld byte-level BPE tokenizer with its
    1000 tokens and pad/bos/eos), a Lumina2 transformer (hidden 32, 2 joint blocks, 1 refiner
    block each side, patch 2, ``sample_size`` 4) and a 4-level AutoencoderKL (8x): the pipeline's
    default image is ``4 * 8 = 32`` pixels square. ``text_encoder/`` holds a ``Gemma2Model``, as
    the real checkpoint does.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = Path(__file__).resolve().parents[1] / "assets" / "synthworld" / "tokenizer"
    tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    torch.manual_seed(seed)
    cfg = Gemma2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=512, sliding_window=512,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    lm = Gemma2ForCausalLM(cfg).eval()
    transformer = Lumina2Transformer2DModel(
        sample_size=4, patch_size=2, in_channels=4, hidden_size=32, num_layers=2, num_refiner_layers=1,
        num_attention_heads=2, num_kv_heads=1, multiple_of=16, axes_dim_rope=(4, 6, 6), axes_lens=(300, 16, 16),
        cap_feat_dim=cfg.hidden_size,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=1.0, shift_factor=0.0,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=6.0)
    pipe = Lumina2Pipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=lm.model, tokenizer=tok)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out
