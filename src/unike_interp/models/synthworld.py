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
