"""Building (training) a SynthWorld UMM end to end, reproducibly from a seed.

Stages, each written to ``out_dir`` as safetensors + JSON and skipped when already complete
(so an interrupted build resumes where it stopped):

A stage's ``DONE`` file holds the configuration it was built from (upstream stages included); a
stage whose configuration changed is rebuilt, and so is everything downstream of it.

1. ``world``      -- subjects, facts, split (``world.json``) and the text corpus;
2. ``tokenizer``  -- byte-level BPE on the corpus (``tokenizer/``);
3. ``lm``         -- the Qwen2 language model on the corpus (``lm/``);
4. ``verifier``   -- the CNN judge on jittered renders (``verifier/``);
5. ``toy-direct``, ``toy-queries``, ``toy-bottleneck`` -- one generator per pathway on the image
   examples of image-seen subjects, with the language model frozen.

``build.json`` records the configuration, the seconds each stage took, and package versions.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .generator import GeneratorConfig
from .lm import LMConfig
from .verifier import VerifierConfig

BUILD_FORMAT = "synthworld-build/1"
PATHWAY_NAMES = {"toy-direct": "direct", "toy-queries": "queries", "toy-bottleneck": "bottleneck"}


@dataclass
class BuildConfig:
    """Everything that determines a built world (with the seed, it determines it entirely)."""

    seed: int = 0
    n_subjects: int = 324
    text_only_fraction: float = 0.2
    vocab_size: int = 1000
    # Random explicit captions beside the image-seen subjects' own prompts (1,500 instead, with a
    # higher lr, measured worse on both implicit and explicit prompts).
    n_explicit: int = 3000
    # A reasoning trace for every layout of every attribute fact (not one seeded layout): measured,
    # one layout per fact left the 4-layer LM miscopying subject names in 24% of reasoning texts.
    reasoning_all_layouts: bool = True
    lm: LMConfig = field(default_factory=LMConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    quick: bool = False

    @classmethod
    def quick_config(cls, seed: int = 0) -> "BuildConfig":
        """A tiny world for tests: builds in well under two minutes on two CPU cores."""
        return cls(
            seed=seed,
            n_subjects=27,
            vocab_size=400,
            n_explicit=150,
            lm=LMConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, epochs=3, batch_size=32,
                        warmup_steps=20, lr=3e-3, seed=seed),
            generator=GeneratorConfig(num_layers=2, num_heads=2, head_dim=16, num_queries=4, bottleneck_dim=32,
                                      steps=60, batch_size=16, warmup_steps=10, sample_steps=4, seed=seed),
            verifier=VerifierConfig(width=8, train_images=1000, steps=60, batch_size=64, seed=seed),
            quick=True,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BuildConfig":
        d = dict(d)
        return cls(
            lm=LMConfig(**d.pop("lm")),
            generator=GeneratorConfig(**d.pop("generator")),
            verifier=VerifierConfig(**d.pop("verifier")),
            **d,
        )


def load_build_config(path: str | Path) -> "BuildConfig":
    """A BuildConfig from a JSON file: a world's ``build.json`` (its ``config``) or a bare config."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read build config {p}: {exc}") from None
    try:
        return BuildConfig.from_dict(d.get("config", d))
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{p}: not a SynthWorld build config ({exc})") from None


def override_build_config(config: "BuildConfig", sets: dict) -> "BuildConfig":
    """``{"section.field": value}`` overrides (e.g. ``{"generator.steps": 20000}``), checked by name."""
    d = config.to_dict()
    for key, value in sets.items():
        *path, leaf = key.split(".")
        node = d
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"--set {key}: {part!r} is not a config section (sections: lm, generator, verifier)")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"--set {key}: unknown field {leaf!r}; known: {', '.join(sorted(node))}")
        section = config
        for part in path:
            section = getattr(section, part)
        from ..fields import check_types

        check_types(type(section), {leaf: value}, source=f"--set {key}")  # a wrong type now, not after an hour
        node[leaf] = value
    try:
        return BuildConfig.from_dict(d)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--set: {exc}") from None


def make_build_config(*, config_file: str | Path | None = None, quick: bool = False, seed: int = 0,
                      overrides: dict | None = None) -> "BuildConfig":
    """``unike world build``'s configuration: a file (a world's ``build.json``), else the full (or
    quick) default with every stage seeded by ``seed``; then ``overrides`` (``{"generator.steps": N}``)."""
    if config_file:
        config = load_build_config(config_file)
    elif quick:
        config = BuildConfig.quick_config(seed)
    else:
        config = BuildConfig(seed=seed)
        config.lm.seed = config.generator.seed = config.verifier.seed = seed
    return override_build_config(config, overrides) if overrides else config


def _versions() -> dict[str, str]:
    from ..provenance import package_versions

    return package_versions(("unike-interp", "torch", "transformers", "diffusers", "tokenizers", "numpy"))


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def _done(path: Path, key: str) -> bool:
    """A stage is complete when its DONE file holds the key of the configuration that made it."""
    return (path / "DONE").exists() and (path / "DONE").read_text() == key


def _mark_done(path: Path, key: str) -> None:
    (path / "DONE").write_text(key)


def stage_keys(config: "BuildConfig") -> dict[str, str]:
    """Per stage, a JSON string of everything it depends on (upstream stages included)."""
    c = config.to_dict()
    world = {k: c[k] for k in ("seed", "n_subjects", "text_only_fraction", "reasoning_all_layouts")}
    tok = {**world, "vocab_size": c["vocab_size"]}
    lm = {**tok, "lm": c["lm"]}
    keys = {
        "tokenizer": tok,
        "lm": lm,
        "verifier": {"verifier": c["verifier"]},
    }
    for name, pathway in PATHWAY_NAMES.items():
        keys[name] = {**lm, "n_explicit": c["n_explicit"], "generator": {**c["generator"], "pathway": pathway}}
    return {k: json.dumps(v, sort_keys=True) for k, v in keys.items()}


def generator_training_set(world, config: BuildConfig):
    """Prompts and canonical renders for the generators (image-seen subjects + explicit scenes)."""
    from ..data.synthworld.corpus import generator_examples
    from ..data.synthworld.render import render

    examples = generator_examples(world, n_explicit=config.n_explicit, seed=config.seed)
    prompts = [e.prompt for e in examples]
    images = np.stack([render(e.scene) for e in examples])
    return prompts, images, examples


def build_world(
    out_dir: str | Path,
    config: BuildConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    pathways: tuple[str, ...] | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Build every stage not yet complete in ``out_dir`` (``pathways``: default all); return the build manifest."""
    from safetensors.torch import save_file

    pathways = tuple(PATHWAY_NAMES) if pathways is None else tuple(pathways)
    unknown = [p for p in pathways if p not in PATHWAY_NAMES]
    if unknown:
        raise ValueError(f"unknown pathway(s) {', '.join(unknown)}; known: {', '.join(PATHWAY_NAMES)}")

    from ..data.synthworld import World, generate_world, text_corpus
    from .conditioning import ConditionEncoder
    from .generator import build_dit, train_generator
    from .lm import build_lm, train_lm
    from .store import load_lm, load_tokenizer
    from .tokenizer import train_tokenizer
    from .verifier import train_verifier

    config = config or BuildConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    manifest_path = out / "build.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    keys = stage_keys(config)
    manifest.update(format=BUILD_FORMAT, config=config.to_dict(), versions=_versions(), device=str(device))
    seconds = manifest.setdefault("seconds", {})

    def save_manifest() -> None:
        _write_json(manifest_path, manifest)

    def stage(name: str) -> float:
        echo(f"[build] {name} ...")
        return time.perf_counter()

    def finish(name: str, t0: float) -> None:
        seconds[name] = round(time.perf_counter() - t0, 2)
        manifest.setdefault("stage_devices", {})[name] = str(device)
        save_manifest()
        echo(f"[build] {name} done in {seconds[name]:.1f} s")

    torch.manual_seed(config.seed)
    world = generate_world(config.seed, config.n_subjects, config.text_only_fraction)
    corpus = text_corpus(world, seed=config.seed, all_layouts=config.reasoning_all_layouts)
    if not (out / "world.json").exists() or World.load(out / "world.json").to_dict() != world.to_dict():
        t0 = stage("world")
        world.save(out / "world.json")
        finish("world", t0)

    tok_dir = out / "tokenizer"
    if not _done(tok_dir, keys["tokenizer"]):
        t0 = stage("tokenizer")
        tok = train_tokenizer(corpus, config.vocab_size)
        tok.save_pretrained(tok_dir)
        _mark_done(tok_dir, keys["tokenizer"])
        finish("tokenizer", t0)
    tokenizer = load_tokenizer(out)

    lm_dir = out / "lm"
    if not _done(lm_dir, keys["lm"]):
        t0 = stage("lm")
        lm = build_lm(config.lm, tokenizer)
        log: list = []
        train_lm(lm, tokenizer, corpus, config.lm, device=device, progress=progress, log=log)
        lm.save_pretrained(lm_dir, safe_serialization=True)
        _write_json(lm_dir / "train_log.json", log)
        _mark_done(lm_dir, keys["lm"])
        finish("lm", t0)
    lm = load_lm(out, device=device)

    ver_dir = out / "verifier"
    if not _done(ver_dir, keys["verifier"]):
        t0 = stage("verifier")
        log = []
        ver = train_verifier(config.verifier, device=device, progress=progress, log=log)
        ver_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in ver.state_dict().items()}, ver_dir / "verifier.safetensors")
        _write_json(ver_dir / "verifier.json", {"width": ver.width, "image_size": ver.image_size, **config.verifier.to_dict()})
        _write_json(ver_dir / "train_log.json", log)
        _mark_done(ver_dir, keys["verifier"])
        finish("verifier", t0)

    todo = [n for n in pathways if not _done(out / n, keys[n])]
    if todo:
        prompts, images, _ = generator_training_set(world, config)
        for name in todo:
            pathway = PATHWAY_NAMES[name]
            t0 = stage(name)
            gcfg = GeneratorConfig(**{**config.generator.to_dict(), "pathway": pathway})
            encoder = ConditionEncoder(pathway, lm.config.hidden_size, gcfg.num_queries, gcfg.bottleneck_dim)
            dit = build_dit(gcfg, encoder.out_dim)
            torch.manual_seed(config.seed)
            log = []
            train_generator(dit, encoder, lm, tokenizer, prompts, images, gcfg, device=device, progress=progress, log=log)
            gdir = out / name
            dit.transformer.save_pretrained(gdir / "dit", safe_serialization=True)
            if dit.pooled_embedder is not None:
                save_file({k: v.detach().cpu().contiguous() for k, v in dit.pooled_embedder.state_dict().items()},
                          gdir / "pooled_embedder.safetensors")
            state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
            if state:
                save_file(state, gdir / "encoder.safetensors")
            _write_json(gdir / "generator.json", {"encoder": encoder.config(), "generator": gcfg.to_dict()})
            _write_json(gdir / "train_log.json", log)
            _mark_done(gdir, keys[name])
            finish(name, t0)
    manifest["total_seconds"] = round(sum(seconds.values()), 2)
    save_manifest()
    return manifest
