"""The adapter interface every model family implements.

An adapter wraps one unified multimodal model and declares, from the model's own config, what the
editing, benchmark and interpretability layers need:

- the causal language model (text answers, reasoning, editing) and its tokenizer;
- editable module templates (``model.layers.{}.mlp.down_proj``) and default edit layers;
- the text-pathway sites (residual stream per layer) and the conditioning pathway: the tensor
  handed to the generator, its token-position map, the connector module if any, the generator's
  blocks;
- ``generate_images`` (batched, seeded) and ``generate_text`` (greedy);
- device and dtype from the caller.

Subclasses fill the declarative :class:`ModulePaths` table and implement the few functions their
family really needs (conditioning and image generation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class ModulePaths:
    """Stable names -> module paths inside ``adapter.lm`` (``{}`` is the layer index)."""

    layers: str = "model.layers"
    layer: str = "model.layers.{}"
    mlp: str = "model.layers.{}.mlp"
    mlp_down: str = "model.layers.{}.mlp.down_proj"
    mlp_up: str = "model.layers.{}.mlp.up_proj"
    attn: str = "model.layers.{}.self_attn"
    final_norm: str = "model.norm"
    embed: str = "model.embed_tokens"
    lm_head: str = "lm_head"


@dataclass(frozen=True)
class ConnectorWeights:
    """A linear connector between the language model and the generator: ``c = W x``.

    ``weight``: ``(out, in)`` float32; ``last_layer``: the columns of ``W`` that read the LM's last
    hidden state (all of them for a connector over ``h_L`` alone; the first ``H`` for Ovis-U1-like
    ``[h_L ; h_{L-1}]`` inputs).
    """

    weight: np.ndarray
    last_layer: slice


def default_edit_layers(num_layers: int) -> list[int]:
    """MEMIT-style early-middle layers: ``[n // 8, n // 4]`` inclusive (``[4..8]`` for 32 layers).

    For tiny models this is ``[0, 1]`` (4 layers) or ``[0]`` (2 layers).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be positive, got {num_layers}")
    start = num_layers // 8
    end = max(start, num_layers // 4)
    return list(range(start, min(end, num_layers - 1) + 1)) if num_layers > 1 else [0]


class UMMAdapter(ABC):
    """One unified multimodal model, as the rest of the toolkit sees it."""

    name: str
    #: Key into the editors' per-family hyperparameter defaults (``editing.hparams.FAMILY_DEFAULTS``).
    family: str = "llama"
    paths: ModulePaths = ModulePaths()

    def __init__(self, lm, tokenizer, *, device: torch.device, dtype: torch.dtype):
        self.lm = lm
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.dtype = dtype

    # --- declared from the config ----------------------------------------------------------
    @property
    def text_config(self):
        """The language model's config (the text part of a multimodal config, e.g. Qwen2.5-VL's)."""
        cfg = self.lm.config
        return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg

    @property
    def num_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.text_config.hidden_size)

    @property
    def edit_module_template(self) -> str:
        return self.paths.mlp_down

    @property
    def edit_layers(self) -> list[int]:
        return default_edit_layers(self.num_layers)

    @property
    def rome_layer(self) -> int:
        """A single edit layer for ROME: the first of :attr:`edit_layers` (``n // 8``).

        Measured on the first SynthWorld LM (4 layers, MLP 512): at layer 1 the MLP output at the subject is
        small (norm ~6 against ~20 in the residual) and a ROME target needs an update larger than
        the weight itself; at layer 0, eight of eight edits succeed with relative updates ~0.4.
        """
        return self.edit_layers[0]

    def text_sites(self) -> dict[str, str]:
        """``site name -> module path`` for the residual stream after each LM layer."""
        return {f"resid.{i}": self.paths.layer.format(i) for i in range(self.num_layers)}

    #: Learned query tokens the family appends after the prompt in the LM's sequence (BLIP3o-like).
    appended_query_slots: int = 0

    #: Where the language model sits inside :meth:`trace_module` (a dotted prefix).
    trace_lm_prefix: str = "lm"

    def sites(self) -> list:
        """Every recording site, in execution order (:class:`~unike_interp.models.sites.Site`).

        Text pathway, from the config: the MLP output of each edit layer and the residual stream
        after every layer, read at the subject's last token and the prompt's last token. Then the
        family's conditioning and generator sites (:meth:`conditioning_sites`).
        """
        from .sites import Site

        pre = self.trace_lm_prefix + "."
        out = []
        for i in range(self.num_layers):
            if i in self.edit_layers:
                out.append(Site(f"text.mlp.{i}", "text", pre + self.paths.mlp.format(i), positions="tokens"))
            out.append(Site(f"text.resid.{i}", "text", pre + self.paths.layer.format(i), positions="tokens"))
        return out + self.conditioning_sites()

    def conditioning_sites(self) -> list:
        """The conditioning tensor, connector and generator-block sites (family-specific)."""
        return []

    def trace_module(self) -> torch.nn.Module:
        """An ``nn.Module`` whose forward runs the whole pathway once (see :meth:`trace_inputs`) and
        returns a :class:`~unike_interp.models.sites.TraceOutput`."""
        raise NotImplementedError(f"{type(self).__name__} declares no trace module")

    def trace_inputs(self, prompts: Sequence[str], *, seed: int = 0) -> tuple[tuple, dict]:
        """``(args, extra)`` for ``trace_module()(*args)``; ``extra`` holds ``input_ids``,
        ``attention_mask`` and ``offset_mapping`` of the tokenised prompts."""
        raise NotImplementedError(f"{type(self).__name__} declares no trace inputs")

    def reference_prompt(self, record, stage: str, value: str) -> str:
        """An image prompt with ``value`` (of the record's category) spelled out."""
        st = record.stage(stage)
        return f"{st.image_prompt}, whose {record.category} is {value}"

    # --- what generic code may ask of a model family (None: the family has no such thing) ------
    def records(self) -> list | None:
        """The model's own benchmark records (SynthWorld's); None: the caller must give a data file."""
        return None

    def unsupported_records(self, records) -> list[str]:
        """Why this model cannot run some of ``records`` (one line per record it cannot; ``[]``: all
        fine). Checked before any editing, so a wrong data file costs nothing."""
        return []

    def related_fact_prompts(self, record) -> list[tuple[str, str]]:
        """``(cloze prompt, true answer)`` of the record's subject's *other* facts, for the
        same-subject locality check; ``[]`` where the family knows no such facts."""
        return []

    def connector_weights(self) -> ConnectorWeights | None:
        """The linear connector between LM and generator, where the conditioning passes one."""
        return None

    def subject_values(self) -> dict[str, dict[str, str]] | None:
        """``{subject: {category: value}}`` for every subject the model knows (the value table the
        conditioning probes are trained on); None where the family has no such table."""
        return None

    def subject_prompt(self, subject: str) -> str:
        """The generic image prompt of a subject."""
        return f"a {subject}"

    def subject_prompts(self, subject: str) -> list[str]:
        """The templates of image prompts naming a subject without describing it, whose conditioning
        the value probes train on: the same number, in the same order, for every subject (template
        ``t`` of every subject is one feature space). Default: ``[subject_prompt(subject)]``."""
        return [self.subject_prompt(subject)]

    def default_stats_corpus(self) -> list[str] | None:
        """Texts for the editors' key statistics when none is given (None: the caller must give one)."""
        return None

    def module(self, path: str) -> torch.nn.Module:
        """The LM submodule at a dotted path (e.g. ``model.layers.1.mlp.down_proj``)."""
        try:
            return self.lm.get_submodule(path)
        except AttributeError:
            raise KeyError(f"{self.name}: no module {path!r} in the language model") from None

    # --- family-specific --------------------------------------------------------------------
    @abstractmethod
    def conditioning(self, prompts: Sequence[str]):
        """The exact tensor handed to the generator for ``prompts`` (a ``Conditioning``)."""

    @property
    @abstractmethod
    def generator_blocks(self) -> list[str]:
        """Module paths of the generator's blocks (inside :attr:`generator`)."""

    #: What :meth:`generate_images` uses when it is given no ``steps`` / ``guidance`` (the family's defaults).
    sample_steps: int
    guidance: float

    @abstractmethod
    def image_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the images :meth:`generate_images` draws."""

    @abstractmethod
    def _generate_batch(self, prompts: list[str], *, seed: int, steps: int, guidance: float) -> np.ndarray:
        """One batch of :meth:`generate_images`: ``(B, H, W, 3)`` uint8."""

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
        """``(N, H, W, 3)`` uint8 images, ``batch_size`` prompts per :meth:`_generate_batch`; image ``i``
        depends only on ``prompts[i]`` and ``seed``, up to the float rounding of the batch it is
        drawn in (SynthWorld on the CPU, 32 prompts: batches of 16 and 32 gave identical images,
        batches of 1-5 differed from them in 4-5 images, by one level of 255 in 0.005% of pixels).
        A run draws the same batches whenever it is repeated or resumed. ``steps`` and ``guidance``
        default to :attr:`sample_steps` and :attr:`guidance`."""
        prompts = list(prompts)
        steps = steps or self.sample_steps
        guidance = self.guidance if guidance is None else guidance
        out = [self._generate_batch(prompts[i:i + batch_size], seed=seed, steps=steps, guidance=guidance)
               for i in range(0, len(prompts), max(1, batch_size))]
        return np.concatenate(out) if out else np.zeros((0, *self.image_hw(), 3), np.uint8)

    def differentiable_conditioning(self, prompts: Sequence[str]):
        """:meth:`conditioning` with autograd on: the same tensor, differentiable with respect to
        the language model's activations (what the modality-aware editors optimise through,
        :mod:`unike_interp.editing.modality`)."""
        raise NotImplementedError(
            f"{self.name}: this adapter exposes no differentiable conditioning, so modality-aware editing "
            "(modality_aware=true) cannot move what its generator reads; edit without it")

    def generate_from_conditioning(self, cond, *, seed: int = 0, steps: int | None = None,
                                   guidance: float | None = None, batch_size: int = 64) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 images drawn from a given :class:`~unike_interp.conditioning.Conditioning`
        (``hidden (B, S, C)``, ``mask (B, S)``) in place of the one the prompts would produce: the
        generator's input replaced, everything else as :meth:`generate_images` (the same seeded
        noise, so ``generate_from_conditioning(conditioning(p))`` draws ``generate_images(p)``).
        The conditioning interventions (:mod:`unike_interp.interp.interventions`) need it."""
        raise NotImplementedError(
            f"{self.name}: this adapter cannot draw from a given conditioning tensor (its generator reads the "
            "conditioning inside a pipeline call the adapter does not expose); the conditioning interventions "
            "need generate_from_conditioning")

    # --- shared text side ---------------------------------------------------------------------
    @torch.no_grad()
    def next_token_logits(self, prompts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """``(N, V)`` logits of the token after each prompt (left-padded batches)."""
        from ..conditioning import position_ids_from_mask

        outs = []
        for i in range(0, len(prompts), batch_size):
            enc = self.tokenizer(list(prompts[i:i + batch_size]), return_tensors="pt", padding=True).to(self.device)
            logits = self.lm(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                position_ids=position_ids_from_mask(enc["attention_mask"]),
            ).logits[:, -1]
            outs.append(logits.float().cpu())
        return torch.cat(outs)

    @torch.no_grad()
    def generate_text(self, prompts: Sequence[str], *, max_new_tokens: int = 64, batch_size: int = 64) -> list[str]:
        """Greedy continuations (without the prompt), stopping at end-of-sequence."""
        texts: list[str] = []
        for i in range(0, len(prompts), batch_size):
            enc = self.tokenizer(list(prompts[i:i + batch_size]), return_tensors="pt", padding=True).to(self.device)
            out = self.lm.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            new = out[:, enc["input_ids"].shape[1]:]
            texts += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return texts

    def first_token_id(self, word: str) -> int:
        """The id of the first token of ``" " + word`` (the answer's first token after a cloze)."""
        ids = self.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"{word!r} tokenizes to nothing")
        return ids[0]
