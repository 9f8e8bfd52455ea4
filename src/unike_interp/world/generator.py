"""The SynthWorld image generator: a small diffusers PixArt DiT trained by flow matching.

Pixel space, no VAE: images are ``(3, 32, 32)`` in ``[-1, 1]``, cut into 4x4 patches (64 tokens)
that cross-attend to a pathway's conditioning (:mod:`.conditioning`).

Training (rectified flow): ``x_t = (1 - t) x_0 + t eps`` with ``t = sigmoid(n), n ~ N(0, 1)``;
the DiT predicts ``v = eps - x_0`` at ``timestep = 1000 t``; loss ``|| v_hat - v ||^2``. A share
``cond_dropout`` of prompts is replaced by the empty prompt so that classifier-free guidance
``v = v_u + g (v_c - v_u)`` can be used when sampling with diffusers'
``FlowMatchEulerDiscreteScheduler``.

The language model stays frozen throughout. For ``direct`` and ``bottleneck`` its features for
the fixed training prompts are computed once (the costly part of a step otherwise); ``queries``
must run it every step, since its query embeddings learn through it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .conditioning import PATHWAYS, Conditioning, ConditionEncoder
from .schedule import warmup_cosine


@dataclass
class GeneratorConfig:
    """Size, training schedule and sampling defaults of one SynthWorld generator."""

    pathway: str = "direct"
    image_size: int = 32
    patch_size: int = 4
    num_layers: int = 4
    num_heads: int = 4
    head_dim: int = 32
    num_queries: int = 8
    bottleneck_dim: int = 64
    # 12,000 steps of 128: measured on the shipped world (one H100, 3 pathways side by side,
    # ~0.021-0.032 s/step, 400 s wall): image accuracy direct/queries/bottleneck 1.00/0.99/0.98,
    # against 0.92/0.81/0.77 for 10,000 steps of 64 and 0.74/0.63/0.64 for 2,500 of 64.
    # On two CPU cores a step of 64 takes ~0.18-0.37 s: `--set generator.steps=2500
    # --set generator.batch_size=64` gives a weaker world in ~15-30 min a pathway there.
    steps: int = 12000
    batch_size: int = 128
    # Measured on a 16-prompt overfit test: after 400 steps the loss at t=0.3 was 0.50 (lr 3e-4),
    # 0.28 (1e-3), 0.12 (3e-3), 0.086 (5e-3), 0.058 (1e-2). A small DiT from scratch is lr-starved;
    # on the full world, 1e-3 -> 5e-3 raised implicit-prompt image accuracy (toy-direct) 0.34 -> 0.68,
    # while 8e-3 with 3,000 steps and half the explicit captions fell back to 0.46. Also measured
    # (2,500 steps, toy-direct): 60% of each batch from implicit prompts 0.678 (no gain); a 1024-wide
    # pooled MLP 0.621; 5,000 steps 0.785. Guidance 1/2/3/4/6 at 5,000 steps: 0.74/0.79/0.80/0.80/0.79.
    # Captions are drawn right (0.98-1.0 per category): the name -> facts mapping is what is slow.
    lr: float = 5e-3
    warmup_steps: int = 100
    cond_dropout: float = 0.1
    sample_steps: int = 20
    guidance: float = 2.0
    pooled: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pathway not in PATHWAYS:
            raise ValueError(f"GeneratorConfig.pathway={self.pathway!r}; expected one of {', '.join(PATHWAYS)}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


class SynthDiT(nn.Module):
    """A diffusers ``PixArtTransformer2DModel`` plus an optional pooled-text embedding.

    PixArt reads text only through cross-attention. Trained from scratch on a CPU budget that
    learns too slowly (measured: after 2,500 steps, backgrounds spelled out in the prompt were
    drawn at chance). As in SD3's pooled projections, the masked mean of the conditioning,
    ``p = sum_s m_s c_s / sum_s m_s``, goes through ``MLP: C -> D`` and is added to PixArt's
    timestep embedding (a forward hook on ``adaln_single.emb``), so it modulates every block.
    The conditioning tensor itself is unchanged: ``p`` is a function of it.
    """

    def __init__(self, transformer, cond_dim: int, pooled: bool = True):
        super().__init__()
        self.transformer = transformer
        inner = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        self.pooled_embedder = (
            nn.Sequential(nn.Linear(cond_dim, inner), nn.SiLU(), nn.Linear(inner, inner)) if pooled else None
        )
        self._pooled: torch.Tensor | None = None
        if pooled:
            transformer.adaln_single.emb.register_forward_hook(self._add_pooled)

    def _add_pooled(self, module, args, output):
        return output if self._pooled is None else output + self._pooled.to(output.dtype)

    @property
    def transformer_blocks(self) -> nn.ModuleList:
        return self.transformer.transformer_blocks

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    def forward(self, x: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, 3, H, W)``, conditioning ``hidden`` ``(B, S, C)`` with ``mask`` ``(B, S)``, ``timestep`` ``(B,)``."""
        if self.pooled_embedder is not None:
            m = mask.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            self._pooled = self.pooled_embedder(pooled)
        try:
            return self.transformer(
                x, encoder_hidden_states=hidden, encoder_attention_mask=mask, timestep=timestep, return_dict=False
            )[0]
        finally:
            self._pooled = None


def build_dit(config: GeneratorConfig, cond_dim: int) -> SynthDiT:
    """A randomly initialised :class:`SynthDiT` for pixel-space 3-channel images."""
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(config.seed)
    inner = config.num_heads * config.head_dim
    transformer = PixArtTransformer2DModel(
        num_attention_heads=config.num_heads,
        attention_head_dim=config.head_dim,
        in_channels=3,
        out_channels=3,
        num_layers=config.num_layers,
        cross_attention_dim=inner,
        sample_size=config.image_size,
        patch_size=config.patch_size,
        caption_channels=cond_dim,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
    )
    return SynthDiT(transformer, cond_dim, pooled=config.pooled)


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float in ``[-1, 1]``."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in ``[-1, 1]`` -> ``(N, H, W, 3)`` uint8."""
    x = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round()
    return x.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()


def tokenize(tokenizer, prompts: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def _pad_features(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(f.shape[0] for f in feats)
    out = feats[0].new_zeros(len(feats), width, feats[0].shape[-1])
    mask = torch.zeros(len(feats), width, dtype=torch.long)
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = 1
    return out, mask


@torch.no_grad()
def _frozen_features(encoder: ConditionEncoder, lm, tokenizer, prompts: list[str], device, chunk: int = 256):
    """Per prompt, the frozen LM features the pathway's trainable head reads: ``(T_i, F)`` each."""
    feats: list[torch.Tensor] = []
    for i in range(0, len(prompts), chunk):
        ids, mask = tokenize(tokenizer, prompts[i:i + chunk], device)
        f = encoder.lm_features(lm, ids, mask)
        for r in range(ids.shape[0]):
            feats.append(f[r, mask[r].bool()].float().cpu())
    return feats


def flow_matching_loss(dit, x0: torch.Tensor, cond: Conditioning, generator: torch.Generator) -> torch.Tensor:
    """Rectified-flow loss for one batch (see module docstring)."""
    B = x0.shape[0]
    eps = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device, x0.dtype)
    t = torch.sigmoid(torch.randn(B, generator=generator, device=generator.device)).to(x0.device, x0.dtype)
    xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * eps
    v_hat = dit(xt, cond.hidden, cond.mask, t * 1000)
    return torch.mean((v_hat.float() - (eps - x0).float()) ** 2)


def train_generator(
    dit,
    encoder: ConditionEncoder,
    lm,
    tokenizer,
    prompts: Sequence[str],
    images: np.ndarray,
    config: GeneratorConfig,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    log: list | None = None,
):
    """Train ``dit`` and the encoder's pathway parameters on ``(prompts[i], images[i])`` pairs.

    The language model's parameters are frozen (``requires_grad=False``) for the duration.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    lm.to(device).eval()
    was = [p.requires_grad for p in lm.parameters()]
    for p in lm.parameters():
        p.requires_grad_(False)
    dit.to(device).train()
    encoder.to(device).train()
    # Everything a step reads lives on the device, padded once: on a GPU a step of these tiny
    # models is bound by host work (tokenizing, padding, copies, syncs), not by arithmetic.
    x_all = images_to_tensor(images).to(device)
    n = len(prompts)
    prompts = list(prompts) + [""]  # row n: the empty prompt, for conditioning dropout
    gen = torch.Generator(device=device).manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 20])

    precomputed = encoder.pathway != "queries"
    if precomputed:
        # Right-padded (N+1, T_max, F) features and their mask; padding is masked out of the
        # cross-attention and of the pooled mean, so the global padding changes no output.
        feats, feat_mask = _pad_features(_frozen_features(encoder, lm, tokenizer, prompts, device))
        feats, feat_mask = feats.to(device), feat_mask.to(device)
    else:
        ids_all, mask_all = tokenize(tokenizer, prompts, device)  # left-padded; positions from the mask

    params = list(dit.parameters()) + list(encoder.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0, betas=(0.9, 0.99))

    def lr_at(step: int) -> float:
        return warmup_cosine(step, config.steps, config.lr, config.warmup_steps, floor=0.1)

    bar = tqdm(range(config.steps), desc=f"train generator ({encoder.pathway})", disable=not progress, unit="step")
    running = None
    t_start = time.perf_counter()
    try:
        for step in bar:
            idx = rng.integers(0, n, config.batch_size)
            drop = rng.random(config.batch_size) < config.cond_dropout
            rows = torch.from_numpy(np.where(drop, n, idx)).to(device)
            x0 = x_all[torch.from_numpy(idx).to(device)]
            if precomputed:
                m = feat_mask[rows]
                cond = Conditioning(encoder.head(feats[rows]), m, m)
            else:
                cond = encoder(lm, ids_all[rows], mask_all[rows])
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = flow_matching_loss(dit, x0, cond, gen)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step % 50 == 0 or step == config.steps - 1:
                # Reading the loss synchronises with the device: only every 50 steps.
                value = float(loss.detach())
                running = value if running is None else 0.8 * running + 0.2 * value
                bar.set_postfix(loss=f"{running:.4f}", refresh=False)
                if log is not None and step % 50 == 0:
                    log.append({"step": step, "loss": value, "seconds": round(time.perf_counter() - t_start, 3)})
    finally:
        for p, w in zip(lm.parameters(), was):
            p.requires_grad_(w)
    dit.eval()
    encoder.eval()
    return dit, encoder


@torch.no_grad()
def sample(
    dit,
    cond: Conditioning,
    null: Conditioning,
    *,
    steps: int = 20,
    guidance: float = 2.0,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Euler flow-matching sampling with classifier-free guidance; returns ``(B, 3, H, W)`` in [-1, 1].

    ``null`` is the empty prompt's conditioning (batch 1, broadcast). ``noise`` fixes the start.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(steps, device=noise.device)
    B = noise.shape[0]
    x = noise
    use_cfg = guidance != 1.0
    if use_cfg:
        S = max(cond.hidden.shape[1], null.hidden.shape[1])

        def pad(c: Conditioning, n: int) -> tuple[torch.Tensor, torch.Tensor]:
            h = c.hidden.expand(n, -1, -1)
            m = c.mask.expand(n, -1)
            extra = S - h.shape[1]
            if extra:
                h = torch.cat([h, h.new_zeros(n, extra, h.shape[-1])], dim=1)
                m = torch.cat([m, m.new_zeros(n, extra)], dim=1)
            return h, m

        hc, mc = pad(cond, B)
        hn, mn = pad(null, B)
        hidden, mask = torch.cat([hc, hn]), torch.cat([mc, mn])
    else:
        hidden, mask = cond.hidden, cond.mask
    for t in sched.timesteps:
        inp = torch.cat([x, x]) if use_cfg else x
        v = dit(inp.to(hidden.dtype), hidden, mask, t.expand(inp.shape[0]).to(hidden.dtype)).to(x.dtype)
        if use_cfg:
            v_c, v_u = v.chunk(2)
            v = v_u + guidance * (v_c - v_u)
        x = sched.step(v, t, x).prev_sample
    return x
