"""Adapter for the SynthWorld UMM: ``toy-direct``, ``toy-queries``, ``toy-bottleneck``.

One language model (Qwen2) shared by three generators that differ only in their conditioning
pathway (:mod:`unike_interp.world.conditioning`). The adapter owns no copy of the language model:
an edit of ``adapter.lm`` reaches text and images alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..conditioning import Conditioning
from .base import UMMAdapter
from .sites import TraceOutput


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
        self.sample_steps, self.guidance = gen_config.sample_steps, gen_config.guidance
        self.world = world
        self.verifier = verifier

    def default_stats_corpus(self) -> list[str] | None:
        """The world's own text corpus (what the language model was trained on), seeded."""
        if self.world is None:
            return None
        from ..data.synthworld import text_corpus

        return text_corpus(self.world, seed=0)

    def records(self) -> list | None:
        return None if self.world is None else self.world.records

    def unsupported_records(self, records) -> list[str]:
        """Records whose subject this SynthWorld does not have (its model knows only its own subjects)."""
        if self.world is None:
            return []
        known = {s.name for s in self.world.subjects}
        return [f"{r.case_id}: no subject {r.subject!r} in this SynthWorld" for r in records if r.subject not in known]

    def related_fact_prompts(self, record) -> list[tuple[str, str]]:
        """The subject's facts in every other category, as the world's stage-1 cloze prompts."""
        if self.world is None:
            return []
        from ..data.synthworld import CATEGORIES, CATEGORY_VALUES
        from ..data.synthworld.world import make_record

        subj = self.world.subject(record.subject)
        out = []
        for c in CATEGORIES:
            if c == record.category:
                continue
            alt = next(v for v in CATEGORY_VALUES[c] if v != subj.facts[c])
            out.append((make_record(subj, c, alt, 0).stage_1.prompt, subj.facts[c]))
        return out

    def connector_weights(self):
        """``bottleneck``: ``W (D, 2H)`` over ``[h_L ; norm(h_{L-1})]``; its first ``H`` columns read ``h_L``."""
        if self.pathway != "bottleneck":
            return None
        from .base import ConnectorWeights

        return ConnectorWeights(self.encoder.proj.weight.detach().float().cpu().numpy(), slice(0, self.hidden_size))

    def subject_values(self) -> dict[str, dict[str, str]] | None:
        if self.world is None:
            return None
        from ..data.synthworld import CATEGORIES

        return {s.name: {c: s.facts[c] for c in CATEGORIES} for s in self.world.subjects}

    def subject_prompts(self, subject: str) -> list[str]:
        """The world's implicit prompts (``corpus.implicit_prompts``), the generator's own training
        prompts that name the subject without describing it: the four layouts ("a zib", "two zibs
        side by side", "a zib beside a grey pebble", "a flag showing a zib") and the four relation
        stage-1 image prompts ("a zib in the place where it lives", ...)."""
        if self.world is None:
            return super().subject_prompts(subject)
        from ..data.synthworld.corpus import implicit_prompts

        return [p for p, _layout in implicit_prompts(self.world.subject(subject))]

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
    def appended_query_slots(self) -> int:
        """Learned query tokens appended after the prompt in the LM's sequence (``queries``: K; else 0)."""
        return int(self.encoder.num_queries)

    @property
    def connector(self) -> str | None:
        """Module path (inside :attr:`encoder`) of the projection between LM and generator, if any."""
        return "proj" if self.pathway == "bottleneck" else None

    @property
    def generator_blocks(self) -> list[str]:
        return [f"transformer.transformer_blocks.{i}" for i in range(len(self.generator.transformer_blocks))]

    @torch.no_grad()
    def conditioning(self, prompts: Sequence[str]) -> Conditioning:
        return self._conditioning(prompts)

    def differentiable_conditioning(self, prompts: Sequence[str]) -> Conditioning:
        with torch.enable_grad():
            return self._conditioning(prompts)

    def _conditioning(self, prompts: Sequence[str]) -> Conditioning:
        from ..world.generator import tokenize

        ids, mask = tokenize(self.tokenizer, prompts, self.device)
        return self.encoder(self.lm, ids, mask)

    def image_hw(self) -> tuple[int, int]:
        return self.gen_config.image_size, self.gen_config.image_size

    @torch.no_grad()
    def _generate_batch(self, prompts: list[str], *, seed: int, steps: int, guidance: float) -> np.ndarray:
        return self._sample(self.conditioning(prompts), seed=seed, steps=steps, guidance=guidance)

    @torch.no_grad()
    def generate_from_conditioning(self, cond: Conditioning, *, seed: int = 0, steps: int | None = None,
                                   guidance: float | None = None, batch_size: int = 64) -> np.ndarray:
        steps = steps or self.sample_steps
        guidance = self.guidance if guidance is None else guidance
        out = []
        for i in range(0, cond.hidden.shape[0], batch_size):
            part = Conditioning(cond.hidden[i:i + batch_size].to(self.device, self.generator.dtype),
                                cond.mask[i:i + batch_size].to(self.device), cond.lm_positions[i:i + batch_size])
            out.append(self._sample(part, seed=seed, steps=steps, guidance=guidance))
        return np.concatenate(out) if out else np.zeros((0, *self.image_hw(), 3), np.uint8)

    def _sample(self, cond: Conditioning, *, seed: int, steps: int, guidance: float) -> np.ndarray:
        """Every image starts from the same seeded noise (paired comparisons), drawn on the CPU from
        ``torch.Generator().manual_seed(seed)`` so that it is the same on every device."""
        from ..world.generator import sample, tensor_to_images

        size = self.gen_config.image_size
        noise = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(seed))
        noise = noise.expand(cond.hidden.shape[0], -1, -1, -1).to(self.device, torch.float32).contiguous()
        x = sample(self.generator, cond, self.conditioning([""]), steps=steps, guidance=guidance, noise=noise)
        return tensor_to_images(x)


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


def evaluate_world(
    world_dir=None,
    *,
    device: torch.device | str = "cpu",
    pathways=("toy-direct", "toy-queries", "toy-bottleneck"),
    seed: int = 0,
    verifier_samples: int = 2000,
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> dict:
    """Every metric of :mod:`unike_interp.world.evaluate` for a built world (the shipped one by
    default), through each variant's adapter: text and reasoning recall, verifier accuracy, image
    accuracy on image-seen and text-only subjects; images are not included."""
    from ..world.evaluate import image_metrics, text_metrics
    from ..world.store import load_world
    from ..world.verifier import verifier_accuracy

    files = load_world(world_dir, device=device)
    echo(f"[eval] world at {files.path}")
    out: dict = {"world": str(files.path)}
    echo("[eval] verifier on fresh jittered renders ...")
    out["verifier_accuracy"] = {k: round(v, 4) for k, v in verifier_accuracy(files.verifier, n=verifier_samples).items()}
    out["image_accuracy"], out["image_accuracy_text_only"], out["image_details"] = {}, {}, {}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(files.world.records) * len(pathways), desc="world eval: images", unit="image",
               disable=not progress)
    for i, name in enumerate(pathways):
        adapter = load_synthworld(name, world_dir=files.path, device=device)
        pathway = name.split("-", 1)[1]
        bar.set_postfix_str(name, refresh=False)
        seen = image_metrics(adapter, files.world, files.verifier, seed=seed, split="image-seen", bar=bar)
        text_only = image_metrics(adapter, files.world, files.verifier, seed=seed, split="text-only", bar=bar)
        if i == len(pathways) - 1:
            bar.close()
            with tqdm(total=len(files.world.records), desc="world eval: text recall and reasoning", unit="record",
                      disable=not progress) as text_bar:
                out.update(text_metrics(adapter, files.world, bar=text_bar))
        out["image_accuracy"][pathway] = seen["accuracy"]
        out["image_accuracy_text_only"][pathway] = text_only["accuracy"]
        out["image_details"][pathway] = {
            "image_seen": {k: v for k, v in seen.items() if k != "images"},
            "text_only": {k: v for k, v in text_only.items() if k != "images"},
        }
    out["build_seconds"] = files.build.get("seconds", {})
    return out


def format_world_eval(result: dict) -> str:
    """The lines ``unike world eval`` prints for :func:`evaluate_world`'s result."""
    lines = [f"text_recall        {result['text_recall']}  (full greedy {result['text_recall_full']}, "
             f"all facts {result['text_recall_all_facts']}, n={result['text_recall_n']})",
             f"reasoning_recall   {result['reasoning_recall']}  (exact caption {result['reasoning_caption_exact']})",
             "verifier_accuracy  " + ", ".join(f"{k} {v:.3f}" for k, v in result["verifier_accuracy"].items())]
    lines += [f"{key:<18} " + ", ".join(f"{k} {v}" for k, v in result[key].items())
              for key in ("image_accuracy", "image_accuracy_text_only")]
    return "\n".join(lines)


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

    def forward(self, input_ids, attention_mask, x, t) -> TraceOutput:
        cond = self.encoder(self.lm, input_ids, attention_mask)
        return TraceOutput(self.dit(x.to(cond.hidden.dtype), cond.hidden, cond.mask, t.to(cond.hidden.dtype)), cond)
