"""Adapter for BLIP3o (BLIP3-o, Salesforce / JiuhaiChen/BLIP3o), built from stock parts.

BLIP3o appends learned **latent query tokens** to the prompt in a Qwen2.5-VL language model; their
final hidden states condition a **diffusion transformer over CLIP image features** (an 8 x 8 grid
of 1792-d EVA-CLIP features); an **SDXL-style UNet + VAE decoder** turns those features into pixels.
Written from the paper (arXiv 2505.09568) and the module tree and checkpoint layout of the public
repository (its ``main`` branch: ``blip3o/model/language_model/blip3o_qwen_inference.py``,
``blip3o/model/nextdit_crossattn.py``, ``inference.py``; and the decoder pipeline it loads,
``pipeline_llava_gen.py``), read and not copied: the repository carries no licence. No upstream
code runs here. The diffusion transformer was checked against upstream's own ``NextDiTCrossAttn``
(branch ``main`` at ``4689ec389e2b``, run outside this repository on diffusers 0.42 with the
feed-forward width of the diffusers it was written for): the same 642 tensor names and shapes at the
published size (caption width 2048, 1.36 B parameters), and bit-identical outputs on shared tiny
random weights. The language-model side and the decoder call were not run against upstream code
(its model class needs transformers 4.x).

What generation does (text-to-image), and what this adapter does the same way:

* **prompt**: the ``qwen`` conversation with the request ``"Please generate image based on the
  following caption: <prompt>"`` (:data:`CHAT`), tokenised; then the id of ``<im_patch>``
  (:data:`MARKER_TOKEN`, the first token the repository adds to Qwen2.5's vocabulary, id 151665 in
  the published models) is appended, then the ``n_query`` learned queries (``model.latent_queries``,
  ``(1, n_query, hidden)``) as input embeddings;
* **conditioning**: the last entry of the language model's ``hidden_states`` (final-norm output)
  at the ``n_query`` query positions, ``(B, n_query, hidden)``;
* **diffusion transformer** (:class:`Blip3oDiT`): Lumina-Next blocks from diffusers over the
  ``in_channels x input_size x input_size`` feature grid (patch 1), cross-attending to the
  conditioning after a caption projection; flow matching with ``FlowMatchEulerDiscreteScheduler``
  on ``sigmas = linspace(1, 1/N, N)`` (30 steps), guidance 3.0 against an all-zero conditioning,
  timesteps ``1000 sigma`` cast to integers;
* **features**: the sampled grid ``(B, C, s, s)`` read as ``s * s`` tokens of ``C`` features;
* **decoder**: diffusers' ``UNet2DConditionModel`` (SDXL's ``text_time`` added conditioning:
  ``text_embeds`` = the mean feature token, ``time_ids`` = original size (1024, 1024), crop (0, 0),
  target size) and ``AutoencoderKL`` from the checkpoint's ``diffusion-decoder/``, 50 steps of its
  scheduler, guidance 3.0 against the features generated for the prompt ``" "`` (no template);
  ``latents / scaling_factor`` decoded, ``x / 2 + 0.5`` clamped.

**Where this adapter differs** (each a choice, stated): prompts are batched with left padding and
position ids from the mask (upstream draws one prompt at a time; a row's image matches its solo
image up to float rounding); every image draws its DiT noise and then its decoder noise from its own
``torch.Generator("cpu").manual_seed(seed)`` (upstream uses the global RNG); the decoder's negative
features are recomputed per batch from the model as it is (upstream caches them once, which would
keep an edited model's decoder guidance unedited). The DiT scheduler is ``FlowMatchEulerDiscreteScheduler``
with its defaults unless the folder holds ``dit_scheduler/`` (upstream downloads Lumina-Next-SFT's;
not verified).

**Module tree and checkpoint names.** ``adapter.lm`` is transformers' own
``Qwen2_5_VLForConditionalGeneration`` (answers text, is edited; the text decoder's layers are
``model.language_model.layers.{i}`` in transformers >= 4.52). ``adapter.gen`` (:class:`Blip3oGenerator`)
holds ``latent_queries`` and ``dit``. The published checkpoint names its tensors after upstream's
module tree (transformers < 4.52): :data:`CHECKPOINT_PREFIXES` maps them here, :data:`UNUSED_PREFIXES`
lists the ones deliberately left out (with the reason), and :func:`load_blip3o` refuses any other
tensor, any missing one and any shape mismatch, naming them. :func:`save_blip3o_checkpoint` writes
the published naming back (the tiny test model is written with it).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..conditioning import Conditioning, position_ids_from_mask
from .base import UMMAdapter
from .omnigen2 import decoder_paths, text_decoder_prefix
from .sites import TraceOutput

BLIP3O_REPO = "https://github.com/JiuhaiChen/BLIP3o"

#: The user request BLIP3o's ``inference.py`` wraps every prompt in.
INSTRUCTION = "Please generate image based on the following caption: {}"
#: The ``qwen`` conversation of the repository (ChatML, system "You are a helpful assistant."), up to the
#: assistant's turn.
CHAT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
        "<|im_start|>assistant\n")
#: The token appended after the prompt, before the latent queries (upstream appends id 151665, the first
#: token its loader adds to Qwen2.5's 151665-token vocabulary: ``<im_patch>``).
MARKER_TOKEN = "<im_patch>"
#: The text whose generated features are the decoder's negative (classifier-free guidance).
NEGATIVE_TEXT = " "
#: The decoder's SDXL size conditioning: original size and crop (the target size is the image's).
DECODER_ORIGINAL_SIZE = (1024, 1024)
DECODER_CROP = (0, 0)

#: Published tensor-name prefix -> where it lives here (``lm.<text decoder>`` / ``lm.<vision>`` are
#: resolved from the installed transformers' module tree). First match wins.
CHECKPOINT_PREFIXES = (
    ("model.latent_queries", "gen.latent_queries"),
    ("model.dit.", "gen.dit."),
    ("model.", "lm.{text}."),
    ("visual.", "lm.{visual}."),
    ("lm_head.", "lm.lm_head."),
)
#: Published tensors not loaded, and why (counted and reported by :func:`load_blip3o`).
UNUSED_PREFIXES = {
    "model.gen_vision_tower.": "the EVA-CLIP image encoder (image inputs and training targets; text-to-image never runs it)",
}
#: Files of a BLIP3o checkpoint folder.
CHECKPOINT_LAYOUT = ("config.json", "model.safetensors or model.safetensors.index.json", "tokenizer files",
                     "diffusion-decoder/ (unet/, vae/, scheduler/)")

#: ``__call__``-like options of the adapter (``pipeline_kwargs``), with their defaults.
_DECODER_OPTIONS = ("decoder_steps", "decoder_guidance", "height", "width")


class Blip3oCheckpointError(ValueError):
    """A BLIP3o checkpoint's tensors do not match the model: unmatched, missing or misshapen tensors."""


# --- the diffusion transformer, from diffusers' Lumina-Next blocks --------------------------------

@dataclass(frozen=True)
class Blip3oDiTConfig:
    """Shape of the diffusion transformer over CLIP features. Defaults: the published BLIP3o
    (``NextDiTCrossAttnConfig``: 8 x 8 grid of 1792-d features, patch 1, width 1792, 24 layers, 28
    heads, SwiGLU FFN ``8 dim / 3`` rounded up to a multiple of 256, qk-norm); ``caption_dim`` is the
    language model's hidden size (the conditioning's width)."""

    caption_dim: int
    input_size: int = 8
    patch_size: int = 1
    in_channels: int = 1792
    dim: int = 1792
    n_layers: int = 24
    n_heads: int = 28
    n_kv_heads: int = 28
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    qk_norm: bool = True

    def __post_init__(self):
        if self.dim % self.n_heads:
            raise ValueError(f"Blip3oDiTConfig: dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        if self.input_size % self.patch_size:
            raise ValueError(f"Blip3oDiTConfig: input_size {self.input_size} is not a multiple of patch_size "
                             f"{self.patch_size}")

    @classmethod
    def from_dict(cls, d: dict, caption_dim: int) -> "Blip3oDiTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"dit_config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**{"caption_dim": caption_dim, **d})


class Blip3oDiT(torch.nn.Module):
    """``(x (B, C, s, s), timestep (B,), caption (B, K, caption_dim)) -> velocity (B, C, s, s)``.

    ``model`` is diffusers' ``LuminaNextDiT2DModel`` reshaped to BLIP3o's: its blocks cross-attend at
    width ``dim`` (the caption is first projected by ``model.caption_projection``, diffusers'
    ``PixArtAlphaTextProjection``: Linear -> GELU(tanh) -> Linear) and there is no ``pad_token``. The
    feed-forward is the stock block's: SwiGLU of width ``int(8 dim / 3)`` rounded up to ``multiple_of``
    (4864 for 1792), which is what upstream's ``inner_dim=4 * dim`` gave with the diffusers of its time
    (whose ``LuminaFeedForward`` applied the 2/3 itself). Tensor names are upstream's
    ``NextDiTCrossAttn`` names (``model.*``). Rotary frequencies: ``get_2d_rotary_pos_embed_lumina(
    dim // n_heads, 384, 384)``, every caption slot attended.
    """

    def __init__(self, cfg: Blip3oDiTConfig):
        super().__init__()
        from diffusers.models.embeddings import PixArtAlphaTextProjection, get_2d_rotary_pos_embed_lumina
        from diffusers.models.transformers.lumina_nextdit2d import LuminaNextDiT2DModel

        self.cfg = cfg
        m = LuminaNextDiT2DModel(
            sample_size=cfg.input_size, patch_size=cfg.patch_size, in_channels=cfg.in_channels, hidden_size=cfg.dim,
            num_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_kv_heads=cfg.n_kv_heads,
            multiple_of=cfg.multiple_of, ffn_dim_multiplier=cfg.ffn_dim_multiplier, norm_eps=cfg.norm_eps,
            learn_sigma=False, qk_norm=cfg.qk_norm, cross_attention_dim=cfg.dim)
        del m.pad_token  # BLIP3o's blocks never pad
        m.caption_projection = PixArtAlphaTextProjection(in_features=cfg.caption_dim, hidden_size=cfg.dim)
        self.model = m
        self.freqs_cis = get_2d_rotary_pos_embed_lumina(cfg.dim // cfg.n_heads, 384, 384)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.patch_embedder.proj.weight.dtype

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        cap = self.model.caption_projection(caption.to(self.dtype))
        mask = torch.ones(cap.shape[:2], device=cap.device, dtype=torch.long)
        return self.model(hidden_states=x.to(self.dtype), timestep=timestep, encoder_hidden_states=cap,
                          encoder_mask=mask, image_rotary_emb=self.freqs_cis, cross_attention_kwargs={}).sample


class Blip3oGenerator(torch.nn.Module):
    """BLIP3o's generation side that is not the language model: ``latent_queries`` ``(1, K, hidden)``
    and the diffusion transformer ``dit``."""

    def __init__(self, n_query: int, hidden: int, dit: Blip3oDiTConfig):
        super().__init__()
        self.latent_queries = torch.nn.Parameter(torch.zeros(1, n_query, hidden))
        self.dit = Blip3oDiT(dit)


# --- settings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecoderSettings:
    """The SDXL-style decoder's call: ``decoder_steps`` (50), ``decoder_guidance`` (3.0), image
    ``height`` / ``width`` (None: ``unet.sample_size * vae_scale_factor``, 1024 for the published
    decoder). Given as ``pipeline_kwargs``."""

    decoder_steps: int = 50
    decoder_guidance: float = 3.0
    height: int | None = None
    width: int | None = None

    def __post_init__(self):
        if self.decoder_steps < 1:
            raise ValueError(f"BLIP3o pipeline_kwargs: decoder_steps must be >= 1, got {self.decoder_steps}")
        for k in ("height", "width"):
            v = getattr(self, k)
            if v is not None and v < 8:
                raise ValueError(f"BLIP3o pipeline_kwargs: {k} must be >= 8, got {v}")

    @classmethod
    def from_kwargs(cls, kw: dict | None) -> "DecoderSettings":
        kw = dict(kw or {})
        unknown = sorted(set(kw) - set(_DECODER_OPTIONS))
        if unknown:
            raise ValueError(f"BLIP3o pipeline_kwargs: unknown {unknown}; accepted: {list(_DECODER_OPTIONS)} (the DiT's "
                             "steps and guidance are --sample-steps and --guidance)")
        return cls(**kw)


# --- the adapter ----------------------------------------------------------------------------------

class Blip3oAdapter(UMMAdapter):
    """BLIP3o (see the module docstring). Build with :func:`load_blip3o`.

    ``lm``: ``Qwen2_5_VLForConditionalGeneration``; ``tokenizer``: a fast tokenizer holding
    :data:`MARKER_TOKEN` and the ChatML tokens; ``gen``: :class:`Blip3oGenerator`; ``unet``, ``vae``,
    ``scheduler``: the decoder (diffusers); ``dit_scheduler``: a ``FlowMatchEulerDiscreteScheduler``;
    ``pipeline_kwargs``: :class:`DecoderSettings`.
    """

    family = "llama"
    world = None
    verifier = None
    #: BLIP3o's ``sample_images`` defaults (the DiT, which reads the conditioning).
    sample_steps = 30
    guidance = 3.0
    #: The DiT is read by the trace module at flow time sigma = 0.5 on seeded noise.
    trace_sigma = 0.5

    def __init__(self, name: str, lm, tokenizer, gen: Blip3oGenerator, *, unet, vae, scheduler, dit_scheduler,
                 device: torch.device, dtype: torch.dtype, pipeline_kwargs: dict | None = None):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("BLIP3o: a fast tokenizer is needed (offset mappings)")
        tok = copy.deepcopy(tokenizer)
        tok.padding_side = "left"
        super().__init__(lm, tok, device=device, dtype=dtype)
        self.name = name
        self.gen = gen
        self.generator = gen.dit
        self.unet, self.vae, self.scheduler, self.dit_scheduler = unet, vae, scheduler, dit_scheduler
        self.settings = DecoderSettings.from_kwargs(pipeline_kwargs)
        self.text_prefix = text_decoder_prefix(lm)
        self.paths = decoder_paths(self.text_prefix)
        marker = tok.convert_tokens_to_ids(MARKER_TOKEN)
        if marker is None or marker == tok.unk_token_id or marker >= self.module(self.paths.embed).weight.shape[0]:
            raise ValueError(f"BLIP3o: the tokenizer has no {MARKER_TOKEN!r} inside the embedding table (id {marker})")
        self.marker_id = int(marker)
        cross = getattr(unet.config, "cross_attention_dim", None)
        if cross != gen.dit.cfg.in_channels:
            raise ValueError(f"BLIP3o decoder: the UNet cross-attends to width {cross}, the DiT draws "
                             f"{gen.dit.cfg.in_channels}-d features")
        if getattr(unet.config, "addition_embed_type", None) != "text_time":
            raise ValueError("BLIP3o decoder: an SDXL-style UNet (addition_embed_type='text_time') is expected, got "
                             f"{getattr(unet.config, 'addition_embed_type', None)!r}")
        self._trace_module = None

    # --- declared from the model ----------------------------------------------------------
    @property
    def n_query(self) -> int:
        return int(self.gen.latent_queries.shape[1])

    @property
    def appended_query_slots(self) -> int:
        """The latent queries, appended after the prompt and the marker token."""
        return self.n_query

    def instruction(self, prompt: str) -> str:
        """The text BLIP3o encodes for an image prompt (before the marker token and the queries)."""
        return CHAT.format(INSTRUCTION.format(prompt))

    def prompt_prefix(self) -> str:
        return self.instruction("\u2063").partition("\u2063")[0]

    def _rows(self, texts: Sequence[str], offsets: bool = False):
        """Left-padded tokens of ``texts`` with the marker appended: ``(ids (B, T+1), mask (B, T+1), enc)``."""
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, return_offsets_mapping=offsets)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        B = ids.shape[0]
        ids = torch.cat([ids, torch.full((B, 1), self.marker_id, dtype=ids.dtype)], 1)
        mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype)], 1)
        return ids.to(self.device), mask.to(self.device), enc

    def _query_states(self, ids: torch.Tensor, mask: torch.Tensor) -> Conditioning:
        """The language model over ``ids`` followed by the queries: final-norm states at the query slots."""
        return _query_forward(self.lm, self.text_prefix, self.gen.latent_queries, ids, mask)

    @torch.no_grad()
    def conditioning(self, prompts: Sequence[str]) -> Conditioning:
        return self._conditioning(prompts)

    def differentiable_conditioning(self, prompts: Sequence[str]) -> Conditioning:
        with torch.enable_grad():
            return self._conditioning(prompts)

    def _conditioning(self, prompts: Sequence[str]) -> Conditioning:
        """``hidden (B, K, H)``: the queries' final-norm states; ``mask`` ones; ``lm_positions`` the
        queries' columns ``T + 1 .. T + K`` (after the prompt's ``T`` columns and the marker)."""
        prompts = list(prompts)
        if not prompts:
            z = torch.zeros((0, 0), dtype=torch.long, device=self.device)
            return Conditioning(torch.zeros((0, 0, self.hidden_size), dtype=self.lm.dtype, device=self.device), z, z)
        ids, mask, _ = self._rows([self.instruction(p) for p in prompts])
        return self._query_states(ids, mask)

    # --- images ------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def image_hw(self) -> tuple[int, int]:
        size = int(self.unet.config.sample_size) * self.vae_scale_factor
        return int(self.settings.height or size), int(self.settings.width or size)

    @torch.no_grad()
    def _generate_batch(self, prompts: list[str], *, seed: int, steps: int, guidance: float) -> np.ndarray:
        return self._draw(self.conditioning(prompts).hidden, seed=seed, steps=steps, guidance=guidance)

    @torch.no_grad()
    def generate_from_conditioning(self, cond: Conditioning, *, seed: int = 0, steps: int | None = None,
                                   guidance: float | None = None, batch_size: int = 64) -> np.ndarray:
        steps = steps or self.sample_steps
        guidance = self.guidance if guidance is None else guidance
        out = [self._draw(cond.hidden[i:i + batch_size].to(self.device), seed=seed, steps=steps, guidance=guidance)
               for i in range(0, cond.hidden.shape[0], max(1, batch_size))]
        return np.concatenate(out) if out else np.zeros((0, *self.image_hw(), 3), np.uint8)

    def negative_features(self, *, seed: int, steps: int, guidance: float) -> torch.Tensor:
        """``(1, s*s, C)``: the features the model generates for :data:`NEGATIVE_TEXT` (no template), the
        decoder's negative; drawn now, from the model as it is."""
        ids, mask, _ = self._rows([NEGATIVE_TEXT])
        hidden = self._query_states(ids, mask).hidden
        return self.sample_features(hidden, [torch.Generator("cpu").manual_seed(int(seed))], steps=steps,
                                    guidance=guidance)

    def _draw(self, hidden: torch.Tensor, *, seed: int, steps: int, guidance: float) -> np.ndarray:
        """Conditioning ``(B, K, H)`` -> ``(B, H_img, W_img, 3)`` uint8: DiT features, then the decoder."""
        gens = [torch.Generator("cpu").manual_seed(int(seed)) for _ in range(hidden.shape[0])]
        feats = self.sample_features(hidden, gens, steps=steps, guidance=guidance)
        neg = self.negative_features(seed=seed, steps=steps, guidance=guidance)
        return self.decode_features(feats, neg, gens)

    def sample_features(self, hidden: torch.Tensor, generators: list, *, steps: int, guidance: float) -> torch.Tensor:
        """The DiT's flow sampling from ``hidden`` ``(B, K, H)``: ``(B, s*s, C)`` feature tokens.

        Noise ``(C, s, s)`` per row from its generator; ``sigmas = linspace(1, 1/steps, steps)``;
        velocity ``v = v_u + g (v_c - v_u)`` with the unconditional branch on an all-zero conditioning;
        the scheduler's Euler step."""
        cfg = self.generator.cfg
        dev, dt = self.device, self.generator.dtype
        B = hidden.shape[0]
        x = torch.cat([torch.randn((1, cfg.in_channels, cfg.input_size, cfg.input_size), generator=g)
                       for g in generators]).to(dev, dt)
        sched = copy.deepcopy(self.dit_scheduler)
        sched.set_timesteps(steps, sigmas=np.linspace(1.0, 1.0 / steps, steps), device=dev)
        cond = torch.cat([torch.zeros_like(hidden), hidden]).to(dev)
        for t in sched.timesteps:
            tt = t.expand(2 * B).to(dev, torch.long)
            v_u, v_c = self.generator(torch.cat([x, x]), tt, cond).chunk(2)
            v = v_u + guidance * (v_c - v_u)
            x = sched.step(v.float(), t, x.float()).prev_sample.to(dt)
        return x.reshape(B, cfg.in_channels, -1).permute(0, 2, 1).contiguous()

    def decode_features(self, feats: torch.Tensor, negative: torch.Tensor, generators: list) -> np.ndarray:
        """The SDXL-style decoder: features ``(B, N, C)`` -> uint8 images; classifier-free guidance
        against ``negative`` ``(1, N, C)`` (:class:`DecoderSettings`)."""
        st = self.settings
        H, W = self.image_hw()
        dev = self.device
        udt = self.unet.dtype
        B = feats.shape[0]
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(st.decoder_steps, device=dev)
        shape = (1, self.unet.config.in_channels, H // self.vae_scale_factor, W // self.vae_scale_factor)
        lat = torch.cat([torch.randn(shape, generator=g) for g in generators]).to(dev, torch.float32)
        lat = lat * sched.init_noise_sigma
        emb = torch.cat([feats, negative.expand(B, -1, -1)]).to(dev, udt)
        time_ids = torch.tensor([*DECODER_ORIGINAL_SIZE, *DECODER_CROP, H, W], device=dev, dtype=udt).expand(2 * B, -1)
        added = {"text_embeds": emb.mean(1), "time_ids": time_ids}
        for t in sched.timesteps:
            inp = sched.scale_model_input(torch.cat([lat, lat]), t).to(udt)
            e_c, e_u = self.unet(inp, t, encoder_hidden_states=emb, added_cond_kwargs=added).sample.chunk(2)
            eps = e_u + st.decoder_guidance * (e_c - e_u)
            lat = sched.step(eps.float(), t, lat).prev_sample
        img = self.vae.decode((lat / self.vae.config.scaling_factor).to(self.vae.dtype)).sample
        img = (img.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        return (img * 255).round().clip(0, 255).astype(np.uint8)

    # --- interpretability -------------------------------------------------------------------
    @property
    def connector(self) -> str:
        """The DiT's caption projection (an MLP: no linear connector weights)."""
        return "model.caption_projection"

    @property
    def generator_blocks(self) -> list[str]:
        return [f"model.layers.{i}" for i in range(len(self.generator.model.layers))]

    def conditioning_sites(self) -> list:
        """The tensor the DiT receives (``input:2``), its caption projection, and every DiT block's
        output at a fixed seeded noise and timestep."""
        from .sites import Site

        out = [Site("cond.tensor", "conditioning", "dit", read="input:2"),
               Site("cond.connector_out", "conditioning", f"dit.{self.connector}")]
        out += [Site(f"gen.block.{i}", "generator", f"dit.{b}") for i, b in enumerate(self.generator_blocks)]
        return out

    def trace_module(self) -> torch.nn.Module:
        if self._trace_module is None:
            self._trace_module = _Blip3oPath(self.lm, self.text_prefix, self.gen)
        return self._trace_module

    def trace_inputs(self, prompts: Sequence[str], *, seed: int = 0) -> tuple[tuple, dict]:
        """``(ids, mask, x, t)``: the instructions (left-padded) with the marker, the DiT's input
        ``trace_sigma * eps`` (``eps`` from ``torch.Generator("cpu").manual_seed(seed)``) at timestep
        ``1000 * trace_sigma``. ``extra`` holds the instructions' ``T`` columns, offsets relative to the
        user's prompt (tokens before it ``(0, 0)``)."""
        prompts = list(prompts)
        ids, mask, enc = self._rows([self.instruction(p) for p in prompts], offsets=True)
        T = enc["input_ids"].shape[1]
        off = enc["offset_mapping"] - len(self.prompt_prefix())
        off[..., 0] = off[..., 0].clamp(min=0)
        off[off[..., 1] <= 0] = 0
        cfg = self.generator.cfg
        eps = torch.randn((1, cfg.in_channels, cfg.input_size, cfg.input_size),
                          generator=torch.Generator("cpu").manual_seed(int(seed)))
        B = len(prompts)
        x = (self.trace_sigma * eps).expand(B, -1, -1, -1).contiguous().to(self.device)
        t = torch.full((B,), int(round(1000 * self.trace_sigma)), dtype=torch.long, device=self.device)
        extra = {"input_ids": ids[:, :T], "attention_mask": mask[:, :T], "offset_mapping": off}
        return (ids, mask, x, t), extra


def _query_forward(lm, text_prefix: str, queries: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> Conditioning:
    text = lm.get_submodule(text_prefix)
    emb = text.embed_tokens(ids)
    B, K = ids.shape[0], queries.shape[1]
    emb = torch.cat([emb, queries.to(emb.dtype).expand(B, -1, -1)], 1)
    full = torch.cat([mask, mask.new_ones(B, K)], 1)
    h = text(inputs_embeds=emb, attention_mask=full, position_ids=position_ids_from_mask(full),
             use_cache=False).last_hidden_state
    T1 = ids.shape[1]
    pos = torch.arange(T1, T1 + K, device=ids.device).expand(B, -1)
    return Conditioning(h[:, -K:], mask.new_ones(B, K), pos)


class _Blip3oPath(torch.nn.Module):
    """prompt ids + marker -> the text decoder with the latent queries appended -> the queries'
    final-norm states -> one DiT call. Holds references (not copies) to the LM (``lm``) and the
    generator (``gen``; the DiT at ``dit``). Returns a :class:`TraceOutput`."""

    def __init__(self, lm, text_prefix: str, gen: Blip3oGenerator):
        super().__init__()
        self.lm = lm
        self.gen = gen
        self.dit = gen.dit
        self.text_prefix = text_prefix

    def forward(self, input_ids, attention_mask, x, t) -> TraceOutput:
        cond = _query_forward(self.lm, self.text_prefix, self.gen.latent_queries, input_ids, attention_mask)
        return TraceOutput(self.dit(x, t, cond.hidden), cond)


# --- checkpoint names -----------------------------------------------------------------------

def _visual_prefix(lm) -> str:
    inner = getattr(lm, "model", None)
    return "model.visual" if inner is not None and hasattr(inner, "visual") else "visual"


def _targets(lm) -> list[tuple[str, str]]:
    text, visual = text_decoder_prefix(lm), _visual_prefix(lm)
    return [(src, dst.format(text=text, visual=visual)) for src, dst in CHECKPOINT_PREFIXES]


def published_name(here: str, lm) -> str:
    """The published tensor name of ``here`` (``lm.<...>`` or ``gen.<...>``)."""
    for src, dst in _targets(lm):
        if here == dst or (dst.endswith(".") and here.startswith(dst)):
            return src + here[len(dst):]
    raise KeyError(f"{here}: no published name")


def map_checkpoint(names: Sequence[str], lm) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
    """``(published -> here, {unused prefix: [names]}, unmatched)`` for checkpoint tensor ``names``."""
    targets = _targets(lm)
    mapped, unused, unmatched = {}, {}, []
    for n in names:
        skip = next((p for p in UNUSED_PREFIXES if n.startswith(p)), None)
        if skip is not None:
            unused.setdefault(skip, []).append(n)
            continue
        for src, dst in targets:
            if n == src or (src.endswith(".") and n.startswith(src)):
                mapped[n] = dst + n[len(src):]
                break
        else:
            unmatched.append(n)
    return mapped, unused, unmatched


def _model_state(lm, gen) -> dict[str, torch.Tensor]:
    """Every tensor the model holds, as ``lm.<...>`` / ``gen.<...>``, a tied output head once."""
    out = {f"lm.{k}": v for k, v in lm.state_dict().items()}
    out.update({f"gen.{k}": v for k, v in gen.state_dict().items()})
    tied = getattr(lm.config, "tie_word_embeddings", False) or getattr(lm.config.get_text_config(),
                                                                       "tie_word_embeddings", False)
    if tied:
        out.pop("lm.lm_head.weight", None)
    return out


def save_blip3o_checkpoint(out_dir: str | Path, lm, gen: Blip3oGenerator, *, config: dict) -> Path:
    """Write ``lm`` and ``gen`` to ``out_dir/model.safetensors`` under the published names, and
    ``config.json`` (``config``: the language model's flat Qwen2.5-VL fields plus ``n_query`` and,
    for a DiT that is not the published shape, ``dit_config``)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {published_name(k, lm): v.detach().contiguous().cpu() for k, v in _model_state(lm, gen).items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def _checkpoint_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [path / s for s in shards]
    single = path / "model.safetensors"
    if single.exists():
        return [single]
    raise FileNotFoundError(f"{path}: no model.safetensors or model.safetensors.index.json (a BLIP3o checkpoint "
                            f"folder holds {', '.join(CHECKPOINT_LAYOUT)})")


def load_checkpoint_tensors(path: Path, lm, gen) -> dict:
    """Load every tensor of the checkpoint folder into ``lm`` and ``gen`` (in place, cast to their
    dtype). Raises :class:`Blip3oCheckpointError` naming unmatched, missing and misshapen tensors.
    Returns ``{"loaded": n, "unused": {prefix: count}}``."""
    from safetensors import safe_open

    files = _checkpoint_files(path)
    where: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                where[k] = f
    mapped, unused, unmatched = map_checkpoint(list(where), lm)
    state = _model_state(lm, gen)
    tied_head = "lm.lm_head.weight" not in state
    if tied_head:  # a tied head may be stored too; it must then equal the embedding
        for k, v in list(mapped.items()):
            if v == "lm.lm_head.weight":
                mapped.pop(k)
    stray = sorted(k for k, v in mapped.items() if v not in state)
    missing = sorted(set(state) - set(mapped.values()))
    problems = []
    if unmatched or stray:
        bad = sorted(unmatched + stray)
        problems.append(f"{len(bad)} tensor(s) match no module: {', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}")
    if missing:
        names = [published_name(m, lm) for m in missing]
        problems.append(f"{len(missing)} tensor(s) missing: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")
    shapes = []
    by_file: dict[Path, list[str]] = {}
    for k in mapped:
        if mapped[k] in state:
            by_file.setdefault(where[k], []).append(k)
    if not problems:
        for f, keys in by_file.items():
            with safe_open(str(f), framework="pt") as fh:
                for k in keys:
                    shp = tuple(fh.get_slice(k).get_shape())
                    if shp != tuple(state[mapped[k]].shape):
                        shapes.append(f"{k} {shp} vs {tuple(state[mapped[k]].shape)}")
        if shapes:
            problems.append(f"{len(shapes)} shape mismatch(es): {'; '.join(shapes[:8])}")
    if problems:
        raise Blip3oCheckpointError(f"{path}: the checkpoint does not match the BLIP3o model built from its config.json: "
                                    + "; ".join(problems))
    with torch.no_grad():
        for f, keys in by_file.items():
            with safe_open(str(f), framework="pt") as fh:
                for k in keys:
                    dst = state[mapped[k]]
                    dst.copy_(fh.get_tensor(k).to(dst.dtype))
    return {"loaded": len(mapped), "unused": {p: len(v) for p, v in unused.items()}}


def dit_shape_from_checkpoint(path: Path) -> dict:
    """What the checkpoint's tensors say of the DiT's shape (upstream's config.json does not hold it):
    ``n_layers`` from the ``model.dit.model.layers.{i}`` present, ``dim`` and ``in_channels`` (patch 1)
    from ``model.dit.model.patch_embedder.proj.weight``. ``{}`` where the tensors are absent."""
    from safetensors import safe_open

    out: dict = {}
    layers = set()
    for f in _checkpoint_files(path):
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                if k.startswith("model.dit.model.layers."):
                    layers.add(int(k.split(".")[4]))
                elif k == "model.dit.model.patch_embedder.proj.weight":
                    dim, flat = fh.get_slice(k).get_shape()
                    out.update(dim=int(dim), in_channels=int(flat))
    if layers:
        out["n_layers"] = max(layers) + 1
    return out


# --- loading ---------------------------------------------------------------------------------

#: Keys of a BLIP3o ``config.json`` that are not the language model's.
_GEN_KEYS = ("n_query", "dit_config", "gen_pooling", "gen_vision_tower", "gen_hidden_size", "mm_vision_tower",
             "mm_projector_type", "mm_vision_select_layer", "mm_vision_select_feature", "mm_patch_merge_type",
             "use_mm_proj", "vision_tower_pretrained", "mm_use_im_patch_token", "mm_use_im_start_end",
             "pretrain_gen_mlp_adapter", "pretrain_mm_mlp_adapter")


def read_blip3o_config(path: Path) -> tuple[dict, dict]:
    """``(language model config dict, generation fields)`` of ``path/config.json``."""
    f = path / "config.json"
    if not f.exists():
        raise FileNotFoundError(f"{path}: no config.json (a BLIP3o checkpoint folder holds {', '.join(CHECKPOINT_LAYOUT)})")
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: not JSON ({e})") from None
    gen = {k: cfg.pop(k) for k in _GEN_KEYS if k in cfg}
    if "n_query" not in gen:
        raise ValueError(f"{f}: no n_query (the number of latent queries); not a BLIP3o config")
    pooling = str(gen.get("gen_pooling") or "")
    if "pool2d" in pooling and "early" not in pooling:
        raise NotImplementedError(f"{f}: gen_pooling {pooling!r} pools the generated features; this adapter does not")
    cfg.pop("architectures", None)
    cfg.pop("model_type", None)
    cfg.pop("auto_map", None)
    return cfg, gen


def load_blip3o(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                name: str | None = None, pipeline_kwargs: dict | None = None) -> Blip3oAdapter:
    """Load a BLIP3o checkpoint folder offline (:data:`CHECKPOINT_LAYOUT`): the language model
    (transformers' ``Qwen2_5_VLForConditionalGeneration`` from ``config.json``), the latent queries
    and the DiT (shape: ``config.json``'s ``dit_config`` over what the tensors say, else the published
    one; ``caption_dim`` = the language model's width), every tensor through :func:`load_checkpoint_tensors`,
    the tokenizer (the DiT's layer count, width and feature channels read from the checkpoint's tensors,
    :func:`dit_shape_from_checkpoint`; ``<im_patch>`` added where the tokenizer lacks it, as upstream's loader does), the decoder's
    ``unet``/``vae``/``scheduler`` from ``diffusion-decoder/`` and the DiT scheduler from
    ``dit_scheduler/`` where present. ``pipeline_kwargs``: :class:`DecoderSettings` (checked first).
    Nothing is run from the folder (no ``trust_remote_code``)."""
    import diffusers
    from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    DecoderSettings.from_kwargs(pipeline_kwargs)
    from .hub import resolve_model_folder

    path = Path(path) if Path(path).is_dir() else resolve_model_folder(path, marker="config.json")
    lm_cfg, gen_cfg = read_blip3o_config(path)
    dec = path / "diffusion-decoder"
    missing = [p for p in ("unet", "vae", "scheduler") if not (dec / p).is_dir()]
    if missing:
        raise FileNotFoundError(f"{path}: diffusion-decoder/ lacks {', '.join(missing)} (the SDXL-style decoder; "
                                f"a BLIP3o checkpoint folder holds {', '.join(CHECKPOINT_LAYOUT)})")
    device = torch.device(device)
    lm = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**lm_cfg)).eval()
    hidden = int(lm.config.get_text_config().hidden_size)
    dit_cfg = Blip3oDiTConfig.from_dict({**dit_shape_from_checkpoint(path), **(gen_cfg.get("dit_config") or {})},
                                        caption_dim=hidden)
    gen = Blip3oGenerator(int(gen_cfg["n_query"]), hidden, dit_cfg).eval()
    load_checkpoint_tensors(path, lm, gen)
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if MARKER_TOKEN not in tok.get_vocab():
        tok.add_tokens([MARKER_TOKEN], special_tokens=True)
    unet = diffusers.UNet2DConditionModel.from_pretrained(str(dec), subfolder="unet", torch_dtype=dtype,
                                                          local_files_only=True)
    vae = diffusers.AutoencoderKL.from_pretrained(str(dec), subfolder="vae", torch_dtype=dtype, local_files_only=True)
    sched_cfg = json.loads((dec / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    sched_cls = getattr(diffusers, sched_cfg.get("_class_name", ""), None)
    if sched_cls is None:
        raise ValueError(f"{dec / 'scheduler'}: unknown scheduler class {sched_cfg.get('_class_name')!r}")
    scheduler = sched_cls.from_config(sched_cfg)
    dsd = path / "dit_scheduler"
    dit_sched = (diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(str(dsd), local_files_only=True)
                 if dsd.is_dir() else diffusers.FlowMatchEulerDiscreteScheduler())
    for m in (lm, gen):
        m.to(device=device, dtype=dtype)
    for m in (unet, vae):
        m.to(device).eval()
    return Blip3oAdapter(name or f"blip3o:{path}", lm, tok, gen, unet=unet, vae=vae, scheduler=scheduler,
                         dit_scheduler=dit_sched, device=device, dtype=dtype, pipeline_kwargs=pipeline_kwargs)
