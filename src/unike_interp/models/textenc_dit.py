"""Adapter for a causal LM used as the text encoder of a diffusers DiT pipeline.

One class, :class:`TextEncDiTAdapter`, and a declarative preset table (:data:`PRESETS`) that
says, per pipeline, what its ``encode_prompt`` does: how it wraps and tokenises the prompt, which
hidden state of the text encoder it reads, which token positions it keeps, and how the
transformer receives the result. What cannot be a table entry -- the token selection and the
transformer's call signature -- is one short function per family (``_layout_*``, ``_call_*``).

The causal LM (``adapter.lm``) answers text and is edited; the pipeline's ``text_encoder`` is
``adapter.lm.model`` (Gemma-2 decoder: Lumina2, Sana) or ``adapter.lm`` itself (Qwen2.5-VL:
Qwen-Image), the very module objects (no copy), so a weight edit reaches text and images alike.

Checked against diffusers 0.42.1 (``pipelines/{lumina2,sana,qwenimage,ovis_image}``) and transformers 5.24:

``lumina2`` (``Lumina2Pipeline``): ``pipe.system_prompt + " <Prompt Start> " + prompt``, padded to
  ``max_length=256`` on the right; ``hidden_states[-2]`` of the ``Gemma2Model`` (the output of
  the second-to-last decoder layer: the last layer never reaches the image), every position
  kept with its mask; the negative prompt (``""``) is encoded without the system prompt. The
  transformer is called as ``(latents, timestep=1 - sigma, encoder_hidden_states, mask)``; it
  projects the caption (``time_caption_embed.caption_embedder``), refines it
  (``context_refiner``) and joins it with the image tokens (``layers``).

``sana`` (``SanaPipeline``): the prompt is lower-cased and stripped (``_text_preprocessing``),
  prefixed by the complex human instruction (``"\\n".join(chi) + prompt``; the default list is
  read from the pipeline's ``__call__`` signature), padded on the right to ``len(chi tokens) +
  300 - 2``; the post-norm last hidden state of the ``Gemma2Model`` (``output[0]``); then the
  token selection ``[0] + [-299 .. -1]`` keeps BOS and the last 299 columns, i.e. (almost) drops
  the instruction. The negative prompt is encoded without the instruction. The transformer gets
  ``(latents, encoder_hidden_states, timestep=1000 sigma * timestep_scale, encoder_attention_mask)``
  and projects the caption (``caption_projection``, then ``caption_norm``) before its cross-attention
  blocks (``transformer_blocks``).

``qwenimage`` (``QwenImagePipeline``): ``pipe.prompt_template_encode.format(prompt)`` (a chat
  template: system turn, user turn, assistant header), padded to the batch's longest;
  ``hidden_states[-1]`` (post-norm) of ``Qwen2_5_VLForConditionalGeneration``; per row the real
  tokens only, the first ``pipe.prompt_template_encode_start_idx`` dropped (the offset is read
  from the pipeline, not written here), right-padded with zeros, mask 1 on kept tokens; at most
  ``max_sequence_length`` (512) slots. The trailing template tokens (``<|im_end|>`` and the
  assistant header) stay in the conditioning. Guidance is "true CFG" (``true_cfg_scale``) against
  a negative prompt (``" "``, as the model card does). The transformer gets packed latents
  ``(B, h/2 * w/2, 4 C)`` and ``(latents, encoder_hidden_states, encoder_hidden_states_mask,
  timestep=sigma, img_shapes)``; the caption passes ``txt_norm`` and ``txt_in``; each of its
  ``transformer_blocks`` returns ``(text stream, image stream)``.

``ovisimage`` (``OvisImagePipeline``, Ovis-Image; an Ovis-family model, *not* Ovis-U1): the user
  message ``pipe.system_prompt + prompt`` through the tokenizer's chat template (generation prompt,
  ``enable_thinking=False``), padded to ``max_length = 256 + user_prompt_begin_id`` (28) without
  special tokens; ``last_hidden_state`` of the ``Qwen3Model``, multiplied by the mask, the first 28
  columns dropped (whatever the tokenizer put there): 256 slots, padding zeroed, no mask for the
  transformer. Guidance is true CFG against ``negative_prompt=""`` (the pipeline's default). The
  transformer gets packed latents and ``(latents, encoder_hidden_states, timestep=sigma, img_ids,
  txt_ids)``; the caption passes ``context_embedder_norm`` and ``context_embedder``; each double-stream
  block of ``transformer_blocks`` returns ``(text stream, image stream)``.

Two tokenizer instances are loaded from the same files: ``adapter.tokenizer`` (left padding, as
the text side of the toolkit expects) and ``adapter.pipe.tokenizer`` (as the pipeline pads).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..conditioning import Conditioning
from .base import ModulePaths, UMMAdapter
from .sites import TraceOutput

#: Where the DiT is read in the trace module: flow time ``sigma`` on seeded noise (``x = sigma * eps``,
#: clean latent 0), converted to each transformer's own timestep convention by its ``_call_*``.
TRACE_SIGMA = 0.5


@dataclass
class EncodeLayout:
    """What a pipeline's text encoder receives for a batch, and which columns reach the transformer.

    ``input_ids``, ``attention_mask`` ``(B, M)``: exactly the pipeline's tokens;
    ``offsets`` ``(B, M, 2)``: character offsets relative to the user's prompt (``(0, 0)`` outside it);
    ``slots`` ``(B, S)``: the column of the encoder output that conditioning slot ``j`` is read from,
    ``-1`` where the pipeline pads with zeros; ``slot_mask`` ``(B, S)``: the mask the transformer gets;
    ``prompt_last`` ``(B,)``: the column of the user's prompt's last token.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    offsets: torch.Tensor
    slots: torch.Tensor
    slot_mask: torch.Tensor
    prompt_last: torch.Tensor


def _relative_offsets(offsets: torch.Tensor, mask: torch.Tensor, starts: Sequence[int], lengths: Sequence[int]):
    """Offsets relative to each row's prompt span ``[start, start + length)``; ``(0, 0)`` outside it.
    Returns ``(offsets, prompt_last)``; a row whose prompt has no token left raises ``ValueError``."""
    out = torch.zeros_like(offsets)
    last = torch.zeros(offsets.shape[0], dtype=torch.long)
    for b, (s, n) in enumerate(zip(starts, lengths)):
        rel = offsets[b] - s
        inside = (rel[:, 1] > 0) & (rel[:, 0] < n) & mask[b].bool()
        if not inside.any():
            raise ValueError(f"prompt {b}: none of its tokens survives the pipeline's truncation")
        rel[:, 0] = rel[:, 0].clamp(min=0)
        rel[:, 1] = rel[:, 1].clamp(max=n)
        out[b] = rel * inside[:, None]
        last[b] = int(inside.nonzero().max())
    return out, last


def _tokenize(tok, texts, **kw):
    enc = tok(list(texts), return_tensors="pt", return_offsets_mapping=True, **kw)
    return enc["input_ids"], enc["attention_mask"], enc["offset_mapping"]


def _prefix_lumina2(pipe) -> str:
    return f"{pipe.system_prompt} <Prompt Start> "


def _prefix_qwenimage(pipe) -> str:
    return pipe.prompt_template_encode.split("{}")[0]


def _layout_lumina2(adapter, prompts: Sequence[str]) -> EncodeLayout:
    pre = _prefix_lumina2(adapter.pipe)
    S = adapter.max_sequence_length
    ids, mask, off = _tokenize(adapter.pipe.tokenizer, [pre + p for p in prompts], padding="max_length",
                               max_length=S, truncation=True)
    off, last = _relative_offsets(off, mask, [len(pre)] * len(prompts), [len(p) for p in prompts])
    slots = torch.arange(S).expand(len(prompts), S).clone()
    return EncodeLayout(ids, mask, off, slots, mask.clone(), last)


def _sana_instruction(pipe) -> str:
    default = inspect.signature(type(pipe).__call__).parameters["complex_human_instruction"].default
    return "\n".join(default) if default else ""


def _layout_sana(adapter, prompts: Sequence[str]) -> EncodeLayout:
    pipe = adapter.pipe
    text = pipe._text_preprocessing(list(prompts), clean_caption=False)  # lower().strip(), as the pipeline
    chi = _sana_instruction(pipe)
    S = adapter.max_sequence_length
    M = len(pipe.tokenizer.encode(chi)) + S - 2 if chi else S
    ids, mask, off = _tokenize(pipe.tokenizer, [chi + t for t in text], padding="max_length", max_length=M,
                               truncation=True, add_special_tokens=True)
    starts = [len(chi)] * len(prompts)
    off, last = _relative_offsets(off, mask, starts, [len(t) for t in text])
    select = torch.tensor([0] + list(range(M - S + 1, M)))
    slots = select.expand(len(prompts), S).clone()
    return EncodeLayout(ids, mask, off, slots, mask[:, select].clone(), last)


def _layout_qwenimage(adapter, prompts: Sequence[str]) -> EncodeLayout:
    pipe = adapter.pipe
    template, drop = pipe.prompt_template_encode, int(pipe.prompt_template_encode_start_idx)
    pre = _prefix_qwenimage(pipe)
    ids, mask, off = _tokenize(pipe.tokenizer, [template.format(p) for p in prompts],
                               max_length=pipe.tokenizer_max_length + drop, padding=True, truncation=True)
    off, last = _relative_offsets(off, mask, [len(pre)] * len(prompts), [len(p) for p in prompts])
    kept = [mask[b].nonzero().flatten()[drop:] for b in range(len(prompts))]
    S = min(max(len(k) for k in kept), adapter.max_sequence_length)  # encode_prompt: embeds[:, :max_len]
    slots = torch.full((len(prompts), S), -1, dtype=torch.long)
    for b, k in enumerate(kept):
        slots[b, : min(len(k), S)] = k[:S]
    return EncodeLayout(ids, mask, off, slots, (slots >= 0).long(), last)


def _prefix_ovisimage(pipe) -> str:
    return pipe._get_messages(["\u2063"])[0].partition("\u2063")[0]


def _layout_ovisimage(adapter, prompts: Sequence[str]) -> EncodeLayout:
    """``OvisImagePipeline._get_ovis_prompt_embeds``: the chat-templated message padded to
    ``max_sequence_length + user_prompt_begin_id`` tokens (no special tokens added), the first
    ``user_prompt_begin_id`` columns dropped whatever they hold, padded columns zeroed (no mask
    reaches the transformer: every slot is attended; ``slot_mask`` marks the non-zero ones)."""
    pipe = adapter.pipe
    drop, S = int(pipe.user_prompt_begin_id), adapter.max_sequence_length
    pre = _prefix_ovisimage(pipe)
    ids, mask, off = _tokenize(pipe.tokenizer, pipe._get_messages(list(prompts)), padding="max_length",
                               max_length=S + drop, truncation=True, add_special_tokens=False)
    off, last = _relative_offsets(off, mask, [len(pre)] * len(prompts), [len(p) for p in prompts])
    valid = mask[:, drop:].bool()
    slots = torch.arange(drop, ids.shape[1]).expand(len(prompts), -1).masked_fill(~valid, -1)
    return EncodeLayout(ids, mask, off, slots, valid.long(), last)


def _gather_slots(h: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """``h[b, slots[b, j]]`` ``(B, S, C)`` from encoder states ``h`` ``(B, M, C)``; zeros where the
    slot is ``-1`` (a pipeline that pads its conditioning with zeros, Qwen-Image)."""
    out = torch.gather(h, 1, slots.clamp(min=0)[..., None].expand(-1, -1, h.shape[-1]))
    return out * (slots >= 0)[..., None].to(out.dtype)


def _call_lumina2(transformer, x, sigma, hidden, mask, hw):
    t = torch.full((x.shape[0],), 1.0 - sigma, dtype=hidden.dtype, device=x.device)
    return transformer(x, t, hidden, mask, return_dict=False)[0]


def _call_sana(transformer, x, sigma, hidden, mask, hw):
    scale = float(getattr(transformer.config, "timestep_scale", 1.0))
    t = torch.full((x.shape[0],), 1000.0 * sigma * scale, dtype=hidden.dtype, device=x.device)
    return transformer(x, hidden, t, None, mask, return_dict=False)[0]


def _call_qwenimage(transformer, x, sigma, hidden, mask, hw):
    B, C, H, W = x.shape  # pack 2x2 latent patches, as QwenImagePipeline._pack_latents
    packed = x.view(B, C, H // 2, 2, W // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, (H // 2) * (W // 2), C * 4)
    t = torch.full((B,), sigma, dtype=hidden.dtype, device=x.device)
    return transformer(packed, hidden, mask, t, [[(1, H // 2, W // 2)]] * B, return_dict=False)[0]


def _call_ovisimage(transformer, x, sigma, hidden, mask, hw):
    B, C, H, W = x.shape  # OvisImagePipeline._pack_latents, _prepare_latent_image_ids, text ids [0, j, j]
    packed = x.view(B, C, H // 2, 2, W // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, (H // 2) * (W // 2), C * 4)
    img_ids = torch.zeros(H // 2, W // 2, 3)
    img_ids[..., 1] += torch.arange(H // 2)[:, None]
    img_ids[..., 2] += torch.arange(W // 2)[None, :]
    txt_ids = torch.zeros(hidden.shape[1], 3)
    txt_ids[:, 1] = txt_ids[:, 2] = torch.arange(hidden.shape[1])
    t = torch.full((B,), sigma, dtype=hidden.dtype, device=x.device)
    dev, dt = x.device, hidden.dtype
    return transformer(packed, hidden, t, img_ids.reshape(-1, 3).to(dev, dt), txt_ids.to(dev, dt),
                       return_dict=False)[0]


@dataclass(frozen=True)
class TextEncPreset:
    """What one diffusers pipeline does with its LM text encoder (declarative)."""

    name: str
    pipeline: str                 # diffusers pipeline class
    lm_class: str                 # transformers class loaded from ``text_encoder/`` (answers text)
    encoder: str                  # the pipeline's text_encoder: "decoder" (``lm.model``) or "lm" (``lm``)
    family: str                   # editing hyperparameter family (``editing.hparams.FAMILY_DEFAULTS``)
    hidden_index: int             # index into the text encoder's ``hidden_states`` the pipeline keeps
    max_sequence_length: int      # the pipeline's ``__call__`` default
    layout: Callable              # ``(adapter, prompts) -> EncodeLayout``: the pipeline's encode_prompt
    call: Callable                # ``(transformer, x, sigma, hidden, mask, hw) -> sample``, positional
    prefix: Callable              # ``pipe -> str``: the text the pipeline puts before the user's prompt
    cond_arg: int                 # positional index of the conditioning in that call
    mask_arg: int | None          # positional index of its mask (None: the transformer takes none)
    connector: str | None         # projection of the conditioning inside the transformer
    refiner: str | None           # caption-only blocks (a ModuleList path in the transformer)
    blocks: str                   # the generator's main blocks (a ModuleList path in the transformer)
    block_output: int | None      # which element of a block's output tuple is the image stream
    packed: bool                  # latents packed 2x2 (Qwen-Image) -> latent side a multiple of 2
    default_steps: int            # the pipeline's ``__call__`` defaults
    default_guidance: float
    guidance_arg: str = "guidance_scale"
    negative_prompt: str | None = None
    embeds_mask_kwarg: str | None = "prompt_attention_mask"  # the pipeline's keyword for ``prompt_embeds``' mask
    embeds_full_width: bool = False  # the pipeline pads captions to max_sequence_length (its negative ones too)
    description: str = ""
    paths: ModulePaths = field(default_factory=ModulePaths)


_QWEN_PATHS = ModulePaths(
    layers="model.language_model.layers", layer="model.language_model.layers.{}",
    mlp="model.language_model.layers.{}.mlp", mlp_down="model.language_model.layers.{}.mlp.down_proj",
    mlp_up="model.language_model.layers.{}.mlp.up_proj", attn="model.language_model.layers.{}.self_attn",
    final_norm="model.language_model.norm", embed="model.language_model.embed_tokens", lm_head="lm_head",
)

PRESETS: dict[str, TextEncPreset] = {
    "lumina2": TextEncPreset(
        name="lumina2", pipeline="Lumina2Pipeline", lm_class="Gemma2ForCausalLM", encoder="decoder",
        family="llama", hidden_index=-2, max_sequence_length=256, layout=_layout_lumina2, call=_call_lumina2,
        prefix=_prefix_lumina2,
        cond_arg=2, mask_arg=3, connector="time_caption_embed.caption_embedder", refiner="context_refiner",
        blocks="layers", block_output=None, packed=False, default_steps=30, default_guidance=4.0,
        description="Lumina-Image 2.0 (Lumina2Pipeline): Gemma-2 text encoder, hidden_states[-2] of the "
                    "system-prompted caption condition a flow DiT",
    ),
    "sana": TextEncPreset(
        name="sana", pipeline="SanaPipeline", lm_class="Gemma2ForCausalLM", encoder="decoder",
        family="llama", hidden_index=-1, max_sequence_length=300, layout=_layout_sana, call=_call_sana,
        prefix=_sana_instruction,
        cond_arg=1, mask_arg=4, connector="caption_projection", refiner=None, embeds_full_width=True,
        blocks="transformer_blocks", block_output=None, packed=False, default_steps=20, default_guidance=4.5,
        description="Sana (SanaPipeline): Gemma-2 text encoder, post-norm last hidden state, BOS + the last "
                    "299 tokens (the instruction dropped), linear DiT with cross-attention",
    ),
    "qwenimage": TextEncPreset(
        name="qwenimage", pipeline="QwenImagePipeline", lm_class="Qwen2_5_VLForConditionalGeneration",
        encoder="lm", family="llama", hidden_index=-1, max_sequence_length=512, layout=_layout_qwenimage,
        call=_call_qwenimage, prefix=_prefix_qwenimage, cond_arg=1, mask_arg=2, connector="txt_in", refiner=None,
        blocks="transformer_blocks", block_output=1, packed=True, default_steps=50, default_guidance=4.0,
        guidance_arg="true_cfg_scale", negative_prompt=" ", paths=_QWEN_PATHS, embeds_mask_kwarg="prompt_embeds_mask",
        description="Qwen-Image (QwenImagePipeline): Qwen2.5-VL text encoder, post-norm last hidden state "
                    "of the chat-templated prompt, template start dropped, MMDiT",
    ),
    "ovisimage": TextEncPreset(
        name="ovisimage", pipeline="OvisImagePipeline", lm_class="Qwen3ForCausalLM", encoder="decoder",
        family="llama", hidden_index=-1, max_sequence_length=256, layout=_layout_ovisimage, call=_call_ovisimage,
        prefix=_prefix_ovisimage, cond_arg=1, mask_arg=None, connector="context_embedder", refiner=None,
        blocks="transformer_blocks", block_output=1, packed=True, default_steps=50, default_guidance=5.0,
        embeds_mask_kwarg=None, embeds_full_width=True,
        description="Ovis-Image (OvisImagePipeline; an Ovis-family model, not Ovis-U1): Qwen3 text encoder, "
                    "post-norm last hidden state of the chat-templated, instruction-prefixed prompt, first 28 "
                    "columns dropped, padding zeroed, Flux-like MMDiT",
    ),
}


def _import(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(module), name)


class TextEncDiTAdapter(UMMAdapter):
    """A diffusers DiT pipeline whose text encoder is (the decoder of) a causal LM.

    Build with :func:`load_textenc_dit`. ``pipe`` is the diffusers pipeline (its ``text_encoder``
    is ``lm.model`` or ``lm``, per preset); ``preset`` a :class:`TextEncPreset`.
    ``pipeline_kwargs`` are passed to every pipeline call (e.g. ``{"height": 512, "width": 512}``
    or ``{"use_resolution_binning": False}``); empty by default, i.e. the pipeline's own defaults.
    A ``height``/``width`` given there also sets the latent size of the trace module.
    """

    world = None
    verifier = None

    def __init__(self, name: str, lm, tokenizer, pipe, preset: TextEncPreset, *, device: torch.device,
                 dtype: torch.dtype, pipeline_kwargs: dict | None = None):
        super().__init__(lm, tokenizer, device=device, dtype=dtype)
        want = lm.model if preset.encoder == "decoder" else lm
        if pipe.text_encoder is not want:
            raise ValueError(f"{preset.name}: the pipeline's text_encoder must be the LM's "
                             f"{'decoder (lm.model)' if preset.encoder == 'decoder' else 'model (lm)'} itself")
        self.name = name
        self.pipe = pipe
        self.preset = preset
        self.paths = preset.paths
        self.family = preset.family
        self.generator = pipe.transformer
        self.pipeline_kwargs: dict = dict(pipeline_kwargs or {})
        self._trace_module = None

    # --- the pipeline's text side, mirrored -------------------------------------------------
    @property
    def max_sequence_length(self) -> int:
        return int(self.pipeline_kwargs.get("max_sequence_length", self.preset.max_sequence_length))

    def prompt_prefix(self) -> str:
        """The text before the user's prompt in what the pipeline encodes (system prompt, instruction
        or chat-template head)."""
        return self.preset.prefix(self.pipe)

    def layout(self, prompts: Sequence[str]) -> EncodeLayout:
        """The pipeline's tokens for ``prompts`` and the columns that reach the transformer."""
        return self.preset.layout(self, list(prompts))

    def pipeline_tokens(self, prompts: Sequence[str]) -> dict:
        """``{"input_ids", "attention_mask"}`` as the pipeline's text encoder receives them."""
        lay = self.layout(prompts)
        return {"input_ids": lay.input_ids, "attention_mask": lay.attention_mask}

    @torch.no_grad()
    def _encode(self, lay: EncodeLayout) -> Conditioning:
        return self._encode_grad(lay)

    def differentiable_conditioning(self, prompts: Sequence[str]) -> Conditioning:
        with torch.enable_grad():
            return self._encode_grad(self.layout(prompts))

    def _encode_grad(self, lay: EncodeLayout) -> Conditioning:
        ids, mask = lay.input_ids.to(self.device), lay.attention_mask.to(self.device)
        te = self.pipe.text_encoder
        h = te(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[self.preset.hidden_index]
        slots = lay.slots.to(self.device)
        hidden = _gather_slots(h, slots)
        smask = lay.slot_mask.to(self.device)
        return Conditioning(hidden.to(te.dtype), smask, slots.masked_fill(smask == 0, -1))

    def conditioning(self, prompts: Sequence[str]) -> Conditioning:
        """What the pipeline hands the transformer for ``prompts`` (its ``encoder_hidden_states``
        and their mask); ``lm_positions[b, j]`` is the text-encoder column slot ``j`` is read
        from (template tokens included), -1 on padding."""
        return self._encode(self.layout(prompts))

    # --- images ------------------------------------------------------------------------------
    @property
    def sample_steps(self) -> int:
        return self.preset.default_steps

    @property
    def guidance(self) -> float:
        return self.preset.default_guidance

    def image_hw(self) -> tuple[int, int]:
        """The pipeline's image size: ``pipeline_kwargs`` height/width, else its default."""
        pipe = self.pipe
        sig = inspect.signature(type(pipe).__call__).parameters
        side = getattr(pipe, "default_sample_size", None) or self.generator.config.sample_size
        out = []
        for k in ("height", "width"):  # Sana: 1024 in its signature; others: sample size x VAE factor
            default = sig[k].default if k in sig and sig[k].default is not None else int(side) * int(pipe.vae_scale_factor)
            out.append(int(self.pipeline_kwargs.get(k, default)))
        return out[0], out[1]

    @torch.no_grad()
    def _generate_batch(self, prompts: list[str], *, seed: int, steps: int, guidance: float) -> np.ndarray:
        """One pipeline call.

        Every image gets its own ``torch.Generator("cpu").manual_seed(seed)`` (a list of
        generators per pipeline call), so every image starts from the same noise, drawn on the
        CPU whatever the device: image ``i`` depends only on ``prompts[i]`` and ``seed``, up to the
        float rounding of a batch whose captions differ in length (``batch_size=1`` is exact).
        Guidance goes where the pipeline takes it (``guidance_scale``; Qwen-Image:
        ``true_cfg_scale`` against the preset's negative prompt).
        """
        kw = {self.preset.guidance_arg: guidance, "max_sequence_length": self.max_sequence_length}
        if self.preset.negative_prompt is not None and guidance > 1:
            kw["negative_prompt"] = self.preset.negative_prompt
        kw.update(self.pipeline_kwargs)
        gens = [torch.Generator("cpu").manual_seed(seed) for _ in prompts]
        imgs = self.pipe(prompts, num_inference_steps=steps, generator=gens, output_type="np", **kw).images
        return (np.asarray(imgs) * 255).round().clip(0, 255).astype(np.uint8)

    @torch.no_grad()
    def generate_from_conditioning(self, cond: Conditioning, *, seed: int = 0, steps: int | None = None,
                                   guidance: float | None = None, batch_size: int = 64) -> np.ndarray:
        """The pipeline called with ``prompt_embeds`` (and their mask) in place of a prompt: the
        conditioning the transformer receives is ``cond`` (each row's slots moved to the front, as
        the pipeline pads captions on the right); the negative prompt and the noise as in
        :meth:`_generate_batch`."""
        steps = steps or self.sample_steps
        guidance = self.guidance if guidance is None else guidance
        out = []
        for i in range(0, cond.hidden.shape[0], batch_size):
            hidden, mask = _front_align(cond.hidden[i:i + batch_size], cond.mask[i:i + batch_size],
                                        self.max_sequence_length if self.preset.embeds_full_width else None)
            n = hidden.shape[0]
            kw = {self.preset.guidance_arg: guidance, "max_sequence_length": self.max_sequence_length}
            if self.preset.negative_prompt is not None and guidance > 1:
                kw["negative_prompt"] = [self.preset.negative_prompt] * n
            kw.update(self.pipeline_kwargs)
            kw["prompt_embeds"] = hidden.to(self.device, self.pipe.text_encoder.dtype)
            if self.preset.embeds_mask_kwarg:  # a pipeline without one zeroes the padded slots (as _front_align)
                kw[self.preset.embeds_mask_kwarg] = mask.to(self.device)
            gens = [torch.Generator("cpu").manual_seed(seed) for _ in range(n)]
            imgs = self.pipe(prompt=None, num_inference_steps=steps, generator=gens, output_type="np", **kw).images
            out.append((np.asarray(imgs) * 255).round().clip(0, 255).astype(np.uint8))
        return np.concatenate(out) if out else np.zeros((0, *self.image_hw(), 3), np.uint8)

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
        block's image stream, at a fixed seeded noise and timestep."""
        from .sites import Site

        p = self.preset
        gen_read = "output" if p.block_output is None else f"output:{p.block_output}"
        out = [Site("cond.tensor", "conditioning", "transformer", read=f"input:{p.cond_arg}")]
        if self.connector:
            out.append(Site("cond.connector_out", "conditioning", f"transformer.{self.connector}"))
        out += [Site(f"cond.refiner.{i}", "conditioning", f"transformer.{b}") for i, b in enumerate(self.refiner_blocks)]
        out += [Site(f"gen.block.{i}", "generator", f"transformer.{b}", read=gen_read)
                for i, b in enumerate(self.generator_blocks)]
        return out

    def trace_module(self) -> torch.nn.Module:
        if self._trace_module is None:
            self._trace_module = _TextEncDiTPath(self.lm, self.generator, self.preset)
        return self._trace_module

    def _latent_hw(self) -> tuple[int, int]:
        h, w = self.image_hw()
        f = int(self.pipe.vae_scale_factor)
        if self.preset.packed:  # QwenImagePipeline.prepare_latents: 2 * (size // (f * 2))
            return 2 * (h // (f * 2)), 2 * (w // (f * 2))
        return h // f, w // f

    def trace_inputs(self, prompts: Sequence[str], *, seed: int = 0) -> tuple[tuple, dict]:
        """Inputs of :meth:`trace_module` for ``prompts``.

        The recorder reads the prompt's last token at column ``T - 1`` of its batch; a pipeline
        pads on the right and may put template tokens after the prompt. So the language model
        runs once on a *prompt-end-aligned* layout: row ``b`` is the pipeline's row shifted right
        by ``s_b = P - p_b`` (``p_b`` the column of the prompt's last token, ``P`` the largest),
        pads before and after, position ids ``j - s_b`` (the pipeline's own positions) and
        attention on the real tokens only -- the pipeline's attention pattern, so the hidden
        states equal the pipeline's up to float rounding. The conditioning is gathered back into
        the pipeline's slots. ``extra`` holds the first ``P + 1`` columns with offsets relative to
        the user's prompt (template tokens get ``(0, 0)``), so ``T - 1 = P`` is every row's
        prompt-last token.
        """
        lay = self.layout(prompts)
        ids_p, mask_p, B, M = lay.input_ids, lay.attention_mask, *lay.input_ids.shape
        shift = int(lay.prompt_last.max()) - lay.prompt_last
        P = int(lay.prompt_last.max())
        L = int((shift + M).max())
        pad = self.pipe.tokenizer.pad_token_id
        ids = torch.full((B, L), pad if pad is not None else 0, dtype=ids_p.dtype)
        mask = torch.zeros((B, L), dtype=mask_p.dtype)
        offsets = torch.zeros((B, L, 2), dtype=lay.offsets.dtype)
        for b in range(B):
            s = int(shift[b])
            ids[b, s:s + M] = ids_p[b]
            mask[b, s:s + M] = mask_p[b]
            offsets[b, s:s + M] = lay.offsets[b]
        pos = (torch.arange(L)[None, :] - shift[:, None]).clamp(min=0)
        index = torch.where(lay.slots >= 0, lay.slots + shift[:, None], torch.full_like(lay.slots, -1))
        cond_pos = index.masked_fill(lay.slot_mask == 0, -1)
        C = self.generator.config.in_channels // (4 if self.preset.packed else 1)
        h, w = self._latent_hw()
        latent = torch.randn((1, C, h, w), generator=torch.Generator("cpu").manual_seed(seed))
        x = (TRACE_SIGMA * latent).expand(B, -1, -1, -1).contiguous()
        dev = self.device
        args = (ids.to(dev), mask.to(dev), pos.to(dev), index.to(dev), lay.slot_mask.to(dev), cond_pos.to(dev),
                x.to(dev))
        extra = {"input_ids": ids[:, :P + 1].to(dev), "attention_mask": mask[:, :P + 1].to(dev),
                 "offset_mapping": offsets[:, :P + 1]}
        return args, extra


def _front_align(hidden: torch.Tensor, mask: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's attended slots moved to the front (in order), zero padding after: ``(B, S', C)``,
    ``(B, S')`` with ``S'`` = ``width``, else the most attended slots of any row."""
    keep = mask.bool()
    width = width or max(1, int(keep.sum(1).max()))
    h = hidden.new_zeros(hidden.shape[0], width, hidden.shape[2])
    m = mask.new_zeros(mask.shape[0], width)
    for b in range(hidden.shape[0]):
        k = int(keep[b].sum())
        h[b, :k] = hidden[b, keep[b]]
        m[b, :k] = 1
    return h, m


class _TextEncDiTPath(torch.nn.Module):
    """prompt ids -> LM decoder -> the pipeline's conditioning -> one transformer call.

    Holds references (not copies) to the adapter's LM (as ``lm``) and transformer, so an applied
    weight delta is what gets traced. The transformer is called positionally (the preset's
    ``call``), so that its conditioning is ``input:{cond_arg}`` for the recorder. Returns a
    :class:`TraceOutput` of the transformer's sample and the conditioning.
    """

    def __init__(self, lm, transformer, preset: TextEncPreset):
        super().__init__()
        self.lm = lm
        self.transformer = transformer
        self.hidden_index = preset.hidden_index
        self.call = preset.call

    def forward(self, input_ids, attention_mask, position_ids, cond_index, cond_mask, cond_positions,
                x) -> TraceOutput:
        base = self.lm.model
        out = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   output_hidden_states=True)
        hidden = _gather_slots(out.hidden_states[self.hidden_index], cond_index)
        cond = Conditioning(hidden, cond_mask, cond_positions)
        sample = self.call(self.transformer, x.to(hidden.dtype), TRACE_SIGMA, hidden, cond_mask, x.shape[-2:])
        return TraceOutput(sample, cond)


# --- loading ---------------------------------------------------------------------------------

def load_textenc_dit(
    path: str | Path,
    preset: str = "lumina2",
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    name: str | None = None,
    pipeline_kwargs: dict | None = None,
    device_map: str | dict | None = None,
) -> TextEncDiTAdapter:
    """Load a pipeline folder (diffusers layout: ``model_index.json``, ``text_encoder/``,
    ``tokenizer/``, ``transformer/``, ``vae/``, ``scheduler/``) offline: a local path, or a
    repository id already in the Hugging Face cache (``lumina2:Alpha-VLLM/Lumina-Image-2.0``).

    The LM is ``preset.lm_class`` loaded from ``text_encoder/`` (a saved ``Gemma2Model`` loads
    into ``Gemma2ForCausalLM``, its head tied to the embeddings as in Gemma); the pipeline gets
    ``lm.model`` (or ``lm``) as its text encoder and a second tokenizer instance.

    ``device_map`` (e.g. ``"auto"``; needs ``accelerate``) spreads the *language model* over the
    visible devices with accelerate's big-model loading; the pipeline's other components go to
    ``device``. Without it, everything goes to ``device``.
    """
    from transformers import AutoTokenizer

    if preset not in PRESETS:
        raise KeyError(f"unknown text-encoder preset {preset!r}; known: {', '.join(PRESETS)}")
    from .hub import resolve_model_folder

    p = PRESETS[preset]
    path = resolve_model_folder(path, marker="model_index.json")  # a local folder or a cached repo id
    index = json.loads((path / "model_index.json").read_text())
    if index.get("_class_name") not in (None, p.pipeline):
        raise ValueError(f"{path} holds a {index.get('_class_name')}, preset {preset!r} expects {p.pipeline}")
    device = torch.device(device)
    lm_cls = _import("transformers", p.lm_class)
    lm_kw = {"device_map": device_map} if device_map is not None else {}
    lm = lm_cls.from_pretrained(str(path / "text_encoder"), dtype=dtype, local_files_only=True, **lm_kw)
    if device_map is None:
        lm.to(device)
    lm.eval()
    tok = AutoTokenizer.from_pretrained(str(path / "tokenizer"), local_files_only=True)
    tok.padding_side = "left"
    pipe_tok = AutoTokenizer.from_pretrained(str(path / "tokenizer"), local_files_only=True)
    if preset in ("lumina2", "sana"):
        pipe_tok.padding_side = "right"  # both pipelines set it so themselves
    if not (tok.is_fast and pipe_tok.is_fast):
        raise ValueError(f"{path}/tokenizer: a fast tokenizer is needed (offset mappings)")
    pipe_cls = _import("diffusers", p.pipeline)
    encoder = lm.model if p.encoder == "decoder" else lm
    pipe = pipe_cls.from_pretrained(str(path), text_encoder=encoder, tokenizer=pipe_tok, dtype=dtype,
                                    local_files_only=True)
    if device_map is None:
        pipe.to(device)
    else:
        for mod in (pipe.transformer, pipe.vae):
            mod.to(device)
    pipe.set_progress_bar_config(disable=True)
    for mod in (pipe.transformer, pipe.vae):
        mod.eval()
    return TextEncDiTAdapter(name or f"{preset}:{path}", lm, tok, pipe, p, device=device, dtype=dtype,
                             pipeline_kwargs=pipeline_kwargs)
