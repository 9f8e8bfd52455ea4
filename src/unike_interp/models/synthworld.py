"""Adapter for the SynthWorld UMM: ``toy-direct``, ``toy-queries``, ``toy-bottleneck``.

One language model (Qwen2) shared by three generators that differ only in their conditioning
pathway (:mod:`unike_interp.world.conditioning`). The adapter owns no copy of the language model:
an edit of ``adapter.lm`` reaches text and images alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..world.conditioning import Conditioning
from .base import UMMAdapter


class SynthWorldAdapter(UMMAdapter):
    """A SynthWorld UMM variant. Build with :func:`load_synthworld`."""

    family = "synthworld"

    def __init__(self, name, lm, tokenizer, dit, encoder, gen_config, *, world=None, verifier=None,
                 device: torch.device, dtype: torch.dtype):
        super().__init__(lm, tokenizer, device=device, dtype=dtype)
        self.name = name
        self.generator = dit
        self.encoder = encoder
        self.gen_config = gen_config
        self.world = world
        self.verifier = verifier

    def default_stats_corpus(self) -> list[str] | None:
        """The world's own text corpus (what the language model was trained on), seeded."""
        if self.world is None:
            return None
        from ..data.synthworld import text_corpus

        return text_corpus(self.world, seed=0)

    def reasoning_prompt(self, image_prompt: str, subject: str, category: str) -> str:
        """The reasoning request in the format the SynthWorld language model was trained on."""
        from ..data.synthworld.corpus import reasoning_prompt

        return reasoning_prompt(image_prompt, subject, category)

    # --- interpretability -------------------------------------------------------------------
    def conditioning_sites(self) -> list:
        """Connector input/output (bottleneck), the tensor the DiT receives (its ``hidden``
        argument, ``input:1``), and every DiT block's output at a fixed noise and timestep."""
        from .sites import Site

        out = []
        if self.pathway == "bottleneck":
            out += [Site("cond.connector_in", "conditioning", "encoder.proj", read="input:0"),
                    Site("cond.connector_out", "conditioning", "encoder.proj")]
        out.append(Site("cond.tensor", "conditioning", "dit", read="input:1"))
        out += [Site(f"gen.block.{i}", "generator", f"dit.{b}") for i, b in enumerate(self.generator_blocks)]
        return out

    def trace_module(self) -> torch.nn.Module:
        if getattr(self, "_trace_module", None) is None:
            self._trace_module = _SynthWorldPath(self.lm, self.encoder, self.generator)
        return self._trace_module

    #: The DiT is read at flow time t = 0.5 on seeded noise: x_t = 0.5 * eps (x_0 = 0, mid-grey).
    trace_timestep: float = 0.5

    def trace_inputs(self, prompts: Sequence[str], *, seed: int = 0) -> tuple[tuple, dict]:
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True, return_offsets_mapping=True)
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        size = self.gen_config.image_size
        eps = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(seed))
        x = (self.trace_timestep * eps).expand(len(prompts), -1, -1, -1).to(self.device, torch.float32).contiguous()
        t = torch.full((len(prompts),), 1000.0 * self.trace_timestep, device=self.device)
        return (ids, mask, x, t), {"input_ids": ids, "attention_mask": mask, "offset_mapping": enc["offset_mapping"]}

    def reference_prompt(self, record, stage: str, value: str) -> str:
        """The subject's full caption (every value spelled out, no name) with ``value`` for its category."""
        from ..data.synthworld.corpus import describe
        from ..data.synthworld.vocab import STAGE_LAYOUT

        if self.world is None:
            return super().reference_prompt(record, stage, value)
        layout = STAGE_LAYOUT.get(stage, "single")
        return describe(self.world.subject(record.subject).scene(layout, **{record.category: value}))

    @property
    def pathway(self) -> str:
        return self.encoder.pathway

    @property
    def connector(self) -> str | None:
        """Module path (inside :attr:`encoder`) of the projection between LM and generator, if any."""
        return "proj" if self.pathway == "bottleneck" else None

    @property
    def generator_blocks(self) -> list[str]:
        return [f"transformer.transformer_blocks.{i}" for i in range(len(self.generator.transformer_blocks))]

    @torch.no_grad()
    def conditioning(self, prompts: Sequence[str]) -> Conditioning:
        from ..world.generator import tokenize

        ids, mask = tokenize(self.tokenizer, prompts, self.device)
        return self.encoder(self.lm, ids, mask)

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
        """Images for ``prompts``; every image starts from the same seeded noise (paired comparisons).

        The noise is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` so that it is
        the same on every device.
        """
        from ..world.generator import sample, tensor_to_images

        steps = steps or self.gen_config.sample_steps
        guidance = self.gen_config.guidance if guidance is None else guidance
        size = self.gen_config.image_size
        base_noise = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(seed))
        null = self.conditioning([""])
        out = []
        for i in range(0, len(prompts), batch_size):
            chunk = list(prompts[i:i + batch_size])
            cond = self.conditioning(chunk)
            noise = base_noise.expand(len(chunk), -1, -1, -1).to(self.device, torch.float32).contiguous()
            x = sample(self.generator, cond, null, steps=steps, guidance=guidance, noise=noise)
            out.append(tensor_to_images(x))
        return np.concatenate(out) if out else np.zeros((0, size, size, 3), np.uint8)


VARIANTS = ("toy-direct", "toy-queries", "toy-bottleneck")


def load_synthworld(
    name: str = "toy-direct",
    *,
    world_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> SynthWorldAdapter:
    """Load a SynthWorld variant from a built world folder (the shipped one by default)."""
    from ..world.store import load_generator, load_world

    if name not in VARIANTS:
        raise KeyError(f"unknown SynthWorld model {name!r}; known: {', '.join(VARIANTS)}")
    device = torch.device(device)
    files = load_world(world_dir, device=device, dtype=dtype)
    dit, encoder, gcfg = load_generator(files.path, name, device=device, dtype=dtype)
    return SynthWorldAdapter(
        name, files.lm, files.tokenizer, dit, encoder, gcfg,
        world=files.world, verifier=files.verifier, device=device, dtype=dtype,
    )


class _SynthWorldPath(torch.nn.Module):
    """prompt ids -> LM -> conditioning -> one DiT call; the module nnsight traces.

    Holds references (not copies) to the adapter's LM, encoder and DiT, so an applied weight
    delta is what gets traced.
    """

    def __init__(self, lm, encoder, dit):
        super().__init__()
        self.lm = lm
        self.encoder = encoder
        self.dit = dit

    def forward(self, input_ids, attention_mask, x, t):
        cond = self.encoder(self.lm, input_ids, attention_mask)
        return self.dit(x.to(cond.hidden.dtype), cond.hidden, cond.mask, t.to(cond.hidden.dtype)), cond
