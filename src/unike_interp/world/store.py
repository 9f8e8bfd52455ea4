"""Loading a built SynthWorld from disk (safetensors and JSON only; nothing is unpickled).

The world shipped with the package lives in ``unike_interp/assets/synthworld``;
:func:`default_world_dir` finds it. Any folder written by :func:`~.build.build_world` loads the
same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "synthworld"


class WorldNotBuiltError(FileNotFoundError):
    """The folder holds no (complete) SynthWorld build."""


def default_world_dir() -> Path:
    """The world shipped inside the package."""
    return SHIPPED


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise WorldNotBuiltError(
            f"{path} is missing: {what} has not been built in {path.parent}. "
            f"Run `unike world build --out {path.parent}` (or point --world at a built folder)."
        )
    return path


def load_tokenizer(world_dir: str | Path):
    from transformers import PreTrainedTokenizerFast

    path = _require(Path(world_dir) / "tokenizer", "the tokenizer")
    tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    tok.padding_side = "left"
    return tok


def load_lm(world_dir: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    from transformers import Qwen2ForCausalLM

    path = _require(Path(world_dir) / "lm", "the language model")
    lm = Qwen2ForCausalLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True)
    return lm.to(torch.device(device)).eval()


def load_verifier(world_dir: str | Path, *, device: torch.device | str = "cpu"):
    from safetensors.torch import load_file

    from .verifier import Verifier

    path = _require(Path(world_dir) / "verifier", "the verifier")
    cfg = json.loads((path / "verifier.json").read_text())
    model = Verifier(cfg["width"], cfg["image_size"])
    model.load_state_dict(load_file(str(path / "verifier.safetensors")))
    return model.to(torch.device(device)).eval()


def load_generator(
    world_dir: str | Path, name: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
):
    """``(SynthDiT, encoder, GeneratorConfig)`` for ``toy-direct`` / ``toy-queries`` / ``toy-bottleneck``."""
    from diffusers import PixArtTransformer2DModel
    from safetensors.torch import load_file

    from .conditioning import ConditionEncoder
    from .generator import GeneratorConfig, SynthDiT

    path = _require(Path(world_dir) / name, f"the {name} generator")
    meta = json.loads((path / "generator.json").read_text())
    gcfg = GeneratorConfig(**meta["generator"])
    enc_cfg = meta["encoder"]
    encoder = ConditionEncoder(enc_cfg["pathway"], enc_cfg["hidden_size"], enc_cfg["num_queries"], enc_cfg["bottleneck_dim"])
    if (path / "encoder.safetensors").exists():
        encoder.load_state_dict(load_file(str(path / "encoder.safetensors")))
    transformer = PixArtTransformer2DModel.from_pretrained(str(path / "dit"), torch_dtype=dtype, use_safetensors=True)
    dit = SynthDiT(transformer, encoder.out_dim, pooled=gcfg.pooled)
    if gcfg.pooled:
        dit.pooled_embedder.load_state_dict(load_file(str(path / "pooled_embedder.safetensors")))
    dit.to(dtype)
    device = torch.device(device)
    return dit.to(device).eval(), encoder.to(device, dtype).eval(), gcfg


@dataclass
class WorldFiles:
    """A built world's shared parts: the world description, tokenizer, language model, verifier."""

    path: Path
    world: object
    tokenizer: object
    lm: object
    verifier: object
    build: dict = field(default_factory=dict)


def load_world(
    world_dir: str | Path | None = None, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> WorldFiles:
    """Load the shared parts of a built world (the shipped one by default)."""
    from ..data.synthworld import World

    path = Path(world_dir) if world_dir is not None else default_world_dir()
    world = World.load(_require(path / "world.json", "the world description"))
    build = json.loads((path / "build.json").read_text()) if (path / "build.json").exists() else {}
    return WorldFiles(
        path=path,
        world=world,
        tokenizer=load_tokenizer(path),
        lm=load_lm(path, device=device, dtype=dtype),
        verifier=load_verifier(path, device=device),
        build=build,
    )
