"""Adapter for Janus / Janus-Pro (transformers ``JanusForConditionalGeneration``).

Checked against transformers 5.24 ``models/janus/modeling_janus.py``:

* the language model is ``janus.model.language_model`` (a ``LlamaModel``); its text head is
  ``janus.lm_head`` on the top model. ``adapter.lm`` is a ``LlamaForCausalLM`` *view* whose
  ``model`` and ``lm_head`` are those very module objects (no copy), so the standard
  :class:`~unike_interp.models.base.ModulePaths` (``model.layers.{}.mlp.down_proj``, ...) resolve
  inside ``adapter.lm``, text generation is plain ``LlamaForCausalLM.generate`` and a weight edit
  of ``adapter.lm`` is an edit of Janus itself (text and images alike);
* image mode (``generate(..., generation_mode="image")``): the prompt gets the begin-of-image
  token appended (``JanusProcessor(generation_mode="image")``); the batch is doubled, the second
  (unconditional) half has every token but BOS and BOI replaced by the pad token; the LM runs
  once over the prompt and then once per image token on the embedding of the previous image token
  (``generation_embeddings`` -> ``generation_aligner``); at every step the *final-norm output at
  the last position* (``last_hidden_state[:, -1]``) goes through ``generation_head`` to image-code
  logits, classifier-free guidance mixes the two halves, a code is drawn. After
  ``num_image_tokens`` steps the VQ decoder (``vqmodel.decode``) turns the code grid into pixels.

**The conditioning** (``conditioning``) is therefore the final-norm output at the ``N =
num_image_tokens`` positions whose state the generation head reads, conditional half only: slot
0 is the BOI token (the last prompt token, LM position ``T - 1`` of the left-padded batch), slot
``k >= 1`` is generated image token ``k - 1`` (LM position ``T - 1 + k``). The final-norm output at
the other prompt positions never reaches the head (the image tokens see the prompt only through
each layer's key/value cache), so it is not part of the conditioning. Slots ``k >= 1`` depend on
the codes drawn before them, hence on the seed: ``conditioning(prompts, seed=s)`` is what
``generate_images(prompts, seed=s)`` hands the head. It is read by a forward hook on the LM's final
norm during ``generate`` in image mode.

**Sampling and seeds.** ``JanusForConditionalGeneration.generate`` samples with
``torch.multinomial`` on the global RNG, one stream for the whole batch, so an image would depend
on its batch-mates. The adapter instead calls ``generate`` greedily (``do_sample=False``,
``guidance_scale=1`` so Janus adds no guidance processor of its own) with two logits processors:
transformers' ``ClassifierFreeGuidanceLogitsProcessor(guidance)`` -- exactly the one Janus adds --
and a per-row sampler that draws each image's code from ``softmax(scores / temperature)`` with its
own ``torch.Generator("cpu").manual_seed(seed)`` and returns scores that are ``-inf`` except at the
drawn code, which the greedy step then picks. Janus's own loop (cache, embeddings, head) is
untouched; the global RNG is not used. ``temperature`` is the model's
``generation_config.temperature`` (1.0 when unset). Image ``i`` depends only on ``prompts[i]`` and
``seed`` up to the float rounding of a left-padded batch (``batch_size=1`` is exact).

Pixels: ``vqmodel.decode`` output in ``[-1, 1]`` mapped as ``JanusImageProcessor.postprocess``
does: ``255 * (x * std + mean)``, clipped to ``[0, 255]`` and truncated to uint8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..conditioning import Conditioning, position_ids_from_mask
from .base import ModulePaths, UMMAdapter
from .sites import TraceOutput

#: Marks the user's prompt inside the processor's chat template (split to get prefix/suffix).
_SENTINEL = "\u2063PROMPT\u2063"


def _lm_view(janus):
    """A ``LlamaForCausalLM`` whose ``model`` and ``lm_head`` are Janus's own modules."""
    from transformers import GenerationConfig, LlamaForCausalLM

    text_cfg = janus.config.text_config
    with torch.device("meta"):
        view = LlamaForCausalLM(text_cfg)
    view.model = janus.model.language_model
    view.lm_head = janus.lm_head
    view.generation_config = GenerationConfig.from_model_config(text_cfg)
    return view.eval()


class _RowSampler:
    """Logits processor: draws one code per row with that row's generator; returns ``-inf``
    everywhere but the drawn code (so a greedy step picks it)."""

    def __init__(self, generators: list[torch.Generator], temperature: float):
        self.generators = generators
        self.temperature = temperature

    def __call__(self, input_ids, scores):
        if scores.shape[0] != len(self.generators):
            raise RuntimeError(f"{scores.shape[0]} score rows for {len(self.generators)} images")
        probs = torch.softmax(scores.float().cpu() / self.temperature, dim=-1)
        out = torch.full_like(scores, float("-inf"))
        for b, g in enumerate(self.generators):
            out[b, int(torch.multinomial(probs[b], 1, generator=g))] = 0.0
        return out


class JanusAdapter(UMMAdapter):
    """Janus / Janus-Pro. Build with :func:`load_janus`.

    ``janus``: the ``JanusForConditionalGeneration``; ``processor``: its ``JanusProcessor``
    (tokenizer, chat template, image processor). ``adapter.tokenizer`` is the processor's
    tokenizer, padding on the left (as Janus's processor does).
    """

    family = "llama"
    paths = ModulePaths()  # inside adapter.lm, the LlamaForCausalLM view
    world = None
    verifier = None
    guidance = 5.0  # what JanusForConditionalGeneration.generate falls back to

    def __init__(self, name: str, janus, processor, *, device: torch.device, dtype: torch.dtype):
        tok = processor.tokenizer
        tok.padding_side = "left"
        super().__init__(_lm_view(janus), tok, device=device, dtype=dtype)
        self.name = name
        self.janus = janus
        self.processor = processor
        self.generator = janus.model.vqmodel
        gen_cfg = janus.generation_config
        gk = getattr(gen_cfg, "generation_kwargs", None) or {}
        self.boi_token_id = int(gk.get("boi_token_id", tok.convert_tokens_to_ids(tok.boi_token)))
        self.bos_token_id = gen_cfg.bos_token_id if gen_cfg.bos_token_id is not None else tok.bos_token_id
        self.pad_token_id = gen_cfg.pad_token_id if gen_cfg.pad_token_id is not None else tok.pad_token_id
        self.temperature = float(getattr(gen_cfg, "temperature", None) or 1.0)
        if gen_cfg.guidance_scale is not None:
            self.guidance = float(gen_cfg.guidance_scale)
        self._trace_module = None

    # --- config ------------------------------------------------------------------------------
    @property
    def text_config(self):  # num_layers / hidden_size (UMMAdapter) read it
        return self.janus.config.text_config

    @property
    def num_image_tokens(self) -> int:
        return int(self.janus.model.vision_model.config.num_image_tokens)

    @property
    def image_size(self) -> int:
        q = self.generator.quantize.quant_state_dims[0]
        return int(q * 2 ** (len(self.generator.config.channel_multiplier) - 1))

    @property
    def sample_steps(self) -> int:
        """Janus has no denoising steps; ``steps`` is ignored (one step per image token)."""
        return self.num_image_tokens

    # --- prompts -----------------------------------------------------------------------------
    def _template_parts(self) -> tuple[str, str]:
        tmpl = getattr(self.processor, "chat_template", None)
        if not tmpl:
            return "", ""
        msgs = [{"role": "user", "content": [{"type": "text", "text": _SENTINEL}]}]
        text = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        pre, _, post = text.partition(_SENTINEL)
        return pre, post

    def prompt_prefix(self) -> str:
        return self._template_parts()[0]

    def image_prompt_text(self, prompt: str) -> str:
        """The text Janus encodes for image mode: chat template, then the begin-of-image token."""
        pre, post = self._template_parts()
        return f"{pre}{prompt}{post}{self.processor.image_start_token}"

    def image_tokens(self, prompts: Sequence[str], *, offsets: bool = False):
        """Left-padded tokens of the image-mode prompts (as ``JanusProcessor(generation_mode="image")``)."""
        return self.tokenizer([self.image_prompt_text(p) for p in prompts], padding=True, return_tensors="pt",
                              return_offsets_mapping=offsets)

    # --- image generation ----------------------------------------------------------------------
    @torch.no_grad()
    def generate_codes(self, prompts: Sequence[str], *, seed: int, guidance: float, capture: bool):
        """One batch through Janus's image mode: ``(codes (B, N), final-norm states (B, N, H) or None, T)``."""
        from transformers import ClassifierFreeGuidanceLogitsProcessor, LogitsProcessorList

        if not guidance > 1:
            raise ValueError(f"Janus image generation needs guidance > 1 (its CFG batch), got {guidance}")
        enc = self.image_tokens(prompts)
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        B, T = ids.shape
        gens = [torch.Generator("cpu").manual_seed(int(seed)) for _ in range(B)]
        procs = LogitsProcessorList([ClassifierFreeGuidanceLogitsProcessor(guidance),
                                     _RowSampler(gens, self.temperature)])
        states: list[torch.Tensor] = []

        def hook(_m, _a, out):
            states.append(out[:B, -1].detach().clone())

        h = self.janus.model.language_model.norm.register_forward_hook(hook) if capture else None
        try:
            codes = self.janus.generate(
                input_ids=ids, attention_mask=mask, generation_mode="image", do_sample=False, guidance_scale=1,
                logits_processor=procs, generation_kwargs={"boi_token_id": self.boi_token_id},
                bos_token_id=self.bos_token_id, pad_token_id=self.pad_token_id,
            )
        finally:
            if h is not None:
                h.remove()
        hidden = None
        if capture:
            if len(states) != self.num_image_tokens:
                raise RuntimeError(f"the final norm ran {len(states)} times for {self.num_image_tokens} image tokens")
            hidden = torch.stack(states, dim=1)
        return codes, hidden, T

    def decode_codes(self, codes: torch.Tensor) -> np.ndarray:
        """``(B, N)`` image codes -> ``(B, H, W, 3)`` uint8, as ``JanusImageProcessor.postprocess``."""
        x = self.generator.decode(codes.to(self.device)).float().cpu()
        ip = self.processor.image_processor
        mean = torch.tensor(ip.image_mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(ip.image_std, dtype=torch.float32)[:, None, None]
        img = ((x * std + mean) / ip.rescale_factor).clip(0, 255).to(torch.uint8)
        return img.permute(0, 2, 3, 1).numpy()

    def image_hw(self) -> tuple[int, int]:
        return self.image_size, self.image_size

    def _generate_batch(self, prompts: list[str], *, seed: int, steps: int, guidance: float) -> np.ndarray:
        """Janus's image mode (``steps`` is ignored: Janus draws ``num_image_tokens`` codes, one LM
        step each). See the module docstring for seeding."""
        return self.decode_codes(self.generate_codes(prompts, seed=seed, guidance=guidance, capture=False)[0])

    @torch.no_grad()
    def conditioning(self, prompts: Sequence[str], *, seed: int = 0, guidance: float | None = None,
                     batch_size: int = 64) -> Conditioning:
        """The final-norm states the generation head reads while ``generate_images(prompts,
        seed=seed, guidance=guidance)`` runs (conditional half): ``(B, N, H)``, mask all ones,
        ``lm_positions[b, k] = T - 1 + k`` in the left-padded batch (slot 0: the BOI token)."""
        prompts = list(prompts)
        guidance = self.guidance if guidance is None else guidance
        hs, pos = [], []
        N = self.num_image_tokens
        for i in range(0, len(prompts), max(1, batch_size)):
            _, hidden, T = self.generate_codes(prompts[i:i + batch_size], seed=seed, guidance=guidance, capture=True)
            hs.append(hidden)
            pos.append((T - 1 + torch.arange(N)).expand(hidden.shape[0], N))
        hidden = torch.cat(hs) if hs else torch.zeros((0, N, self.hidden_size), dtype=self.dtype)
        posi = torch.cat(pos) if pos else torch.zeros((0, N), dtype=torch.long)
        return Conditioning(hidden, torch.ones(posi.shape, dtype=torch.long, device=hidden.device),
                            posi.to(hidden.device))

    def differentiable_conditioning(self, prompts: Sequence[str]) -> Conditioning:
        """Not available: all but the first of Janus's conditioning slots are read at image tokens
        the model samples one by one, so no gradient reaches them from the prompt's states."""
        raise NotImplementedError(
            f"{self.name}: Janus conditions its image head on the states of image tokens it samples one at a "
            "time, which carry no gradient from the prompt, so modality-aware editing (modality_aware=true) "
            "cannot target them; edit without it")

    # --- interpretability -------------------------------------------------------------------
    @property
    def generator_blocks(self) -> list[str]:
        """The VQ decoder's blocks (inside :attr:`generator`, the ``vqmodel``) in execution order."""
        dec = self.generator.decoder
        out = ["decoder.mid"]
        for i, up in enumerate(dec.up):
            out += [f"decoder.up.{i}.block.{j}" for j in range(len(up.block))]
        return out

    def conditioning_sites(self) -> list:
        """The conditioning (the final-norm output at the ``N`` head-read positions, read as the
        generation head's input), the head's hidden layer, its code logits, then the VQ decoder's
        blocks. (Every ``conditioning`` site is ``(B, N, C)`` over the conditioning slots, as the
        activation store expects, so the final norm's whole-sequence output is not a site.)"""
        from .sites import Site

        out = [
            Site("cond.tensor", "conditioning", "head", read="input:0"),
            Site("cond.head_proj", "conditioning", "head.proj_out"),
            Site("gen.logits", "generator", "head"),
        ]
        out += [Site(f"gen.block.{i}", "generator", f"vq.{b}") for i, b in enumerate(self.generator_blocks)]
        return out

    def trace_module(self) -> torch.nn.Module:
        if self._trace_module is None:
            self._trace_module = _JanusPath(self.lm, self.janus)
        return self._trace_module

    def trace_inputs(self, prompts: Sequence[str], *, seed: int = 0, codes: torch.Tensor | None = None
                     ) -> tuple[tuple, dict]:
        """Inputs of :meth:`trace_module`: the left-padded image-mode prompt (ending in BOI) and
        ``N - 1`` teacher-forced image codes -- ``codes`` if given (e.g. codes Janus drew), else
        ``N - 1`` codes drawn uniformly with ``torch.Generator("cpu").manual_seed(seed)``, the same
        for every prompt (the trace's fixed "noise"). ``extra`` is the prompt part, offsets
        relative to the user's prompt (template tokens get ``(0, 0)``); its last column ``T - 1``
        is the BOI token."""
        enc = self.image_tokens(prompts, offsets=True)
        ids, mask, off = enc["input_ids"], enc["attention_mask"], enc["offset_mapping"]
        B, T = ids.shape
        N = self.num_image_tokens
        if codes is None:
            g = torch.Generator("cpu").manual_seed(int(seed))
            codes = torch.randint(0, self.generator.config.num_embeddings, (1, N - 1), generator=g).expand(B, -1)
        codes = codes[:, : N - 1].to(torch.long).cpu()
        pos_p = position_ids_from_mask(mask)
        pos = torch.cat([pos_p, pos_p[:, -1:] + 1 + torch.arange(N - 1)[None]], dim=1)
        full_mask = torch.cat([mask, torch.ones((B, N - 1), dtype=mask.dtype)], dim=1)
        plen = len(self.prompt_prefix())
        o = off - plen
        o[..., 0] = o[..., 0].clamp(min=0)
        o[o[..., 1] <= 0] = 0
        o = o * mask[..., None]
        dev = self.device
        args = (ids.to(dev), codes.to(dev), full_mask.to(dev), pos.to(dev))
        extra = {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "offset_mapping": o}
        return args, extra


class _JanusPath(torch.nn.Module):
    """prompt + teacher-forced codes -> LM (conditional branch) -> final norm -> generation head ->
    greedy codes -> VQ decoder, in one forward.

    Holds references to the adapter's LM view (as ``lm``), Janus's generation embeddings, aligner
    and head (``gen_embed``, ``gen_aligner``, ``head``) and VQ model (``vq``). Returns a
    :class:`TraceOutput`: the decoded pixels and the conditioning, the final-norm output at
    positions ``T - 1 .. T + N - 2`` (BOI and the teacher-forced codes), what the head reads for
    code ``0 .. N - 1``. The decoder runs on the head's greedy codes (no CFG, no sampling): it
    depends on the prompt.
    """

    def __init__(self, lm, janus):
        super().__init__()
        self.lm = lm
        self.gen_embed = janus.model.generation_embeddings
        self.gen_aligner = janus.model.generation_aligner
        self.head = janus.model.generation_head
        self.vq = janus.model.vqmodel

    def forward(self, input_ids, codes, attention_mask, position_ids) -> TraceOutput:
        base = self.lm.model
        T = input_ids.shape[1]
        emb = torch.cat([base.embed_tokens(input_ids), self.gen_aligner(self.gen_embed(codes))], dim=1)
        h = base(inputs_embeds=emb, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        cond_h = h[:, T - 1:]
        logits = self.head(cond_h)
        pixels = self.vq.decode(logits.argmax(-1))
        B, N = cond_h.shape[:2]
        pos = (T - 1 + torch.arange(N, device=h.device)).expand(B, N)
        return TraceOutput(pixels, Conditioning(cond_h, torch.ones_like(pos), pos))


# --- loading ---------------------------------------------------------------------------------

def load_janus(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               name: str | None = None, device_map: str | dict | None = None) -> JanusAdapter:
    """Load a ``JanusForConditionalGeneration`` folder (model, generation config, processor) offline:
    a local path, or a repository id already in the Hugging Face cache. ``device_map`` (e.g.
    ``"auto"``; needs ``accelerate``) places the model with accelerate instead of moving it to ``device``
    (inputs still go to ``device``: the first module's device under ``"auto"``)."""
    from transformers import JanusForConditionalGeneration, JanusProcessor

    from .hub import resolve_model_folder

    path = resolve_model_folder(path, marker="config.json")
    device = torch.device(device)
    kw = {"device_map": device_map} if device_map is not None else {}
    janus = JanusForConditionalGeneration.from_pretrained(str(path), dtype=dtype, local_files_only=True, **kw)
    if device_map is None:
        janus.to(device)
    janus.eval()
    processor = JanusProcessor.from_pretrained(str(path), local_files_only=True)
    if not processor.tokenizer.is_fast:
        raise ValueError(f"{path}: a fast tokenizer is needed (offset mappings)")
    return JanusAdapter(name or f"janus:{path}", janus, processor, device=device, dtype=dtype)
