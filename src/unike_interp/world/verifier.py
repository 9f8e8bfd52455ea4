"""The SynthWorld verifier: a small CNN that reads every category's value off a 32x32 image.

One shared trunk, one linear head per category (softmax over that category's values). Trained on
seeded, jittered renders of random scenes in every layout, so it reads what is drawn, not which
subject it is. It is the judge of SynthWorld's VQA questions (:mod:`unike_interp.judges`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..data.synthworld.vocab import CATEGORIES, CATEGORY_VALUES
from .schedule import warmup_cosine


@dataclass
class VerifierConfig:
    """Trunk width, training set size and schedule."""

    width: int = 16
    train_images: int = 40000
    steps: int = 4000
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class Verifier(nn.Module):
    """``(N, 3, 32, 32)`` in ``[-1, 1]`` -> ``{category: logits (N, n_values)}``."""

    def __init__(self, width: int = 16, image_size: int = 32):
        super().__init__()
        w = width

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.GELU()]

        # Flatten rather than global-pool: corners (relations) and centre (subject) must stay apart.
        self.trunk = nn.Sequential(
            *conv(3, w), nn.MaxPool2d(2),
            *conv(w, 2 * w), *conv(2 * w, 2 * w), nn.MaxPool2d(2),
            *conv(2 * w, 4 * w), *conv(4 * w, 4 * w), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(4 * w * (image_size // 8) ** 2, 256), nn.GELU(), nn.Dropout(0.1),
        )
        self.heads = nn.ModuleDict({c: nn.Linear(256, len(v)) for c, v in CATEGORY_VALUES.items()})
        self.width = width
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.trunk(x)
        return {c: head(z) for c, head in self.heads.items()}

    @torch.no_grad()
    def probabilities(self, images: np.ndarray, batch_size: int = 512) -> dict[str, np.ndarray]:
        """For uint8 images ``(N, H, W, 3)``: ``{category: (N, K) softmax over the category's values}``."""
        from .generator import images_to_tensor

        self.eval()
        device = next(self.parameters()).device
        out: dict[str, list] = {c: [] for c in CATEGORIES}
        for i in range(0, len(images), batch_size):
            x = images_to_tensor(np.ascontiguousarray(images[i:i + batch_size])).to(device)
            for c, logits in self(x).items():
                out[c].append(logits.float().softmax(-1).cpu().numpy())
        return {c: np.concatenate(v) if v else np.zeros((0, len(CATEGORY_VALUES[c])), np.float32)
                for c, v in out.items()}

    def read(self, images: np.ndarray, batch_size: int = 512) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """For uint8 images ``(N, H, W, 3)``: ``{category: (value index (N,), confidence (N,))}``."""
        return {c: (p.argmax(-1), p.max(-1)) for c, p in self.probabilities(images, batch_size).items()}

    def read_values(self, images: np.ndarray) -> list[dict[str, tuple[str, float]]]:
        """Per image, ``{category: (value, confidence)}``."""
        out = self.read(images)
        n = len(images)
        return [
            {c: (CATEGORY_VALUES[c][int(out[c][0][i])], float(out[c][1][i])) for c in CATEGORIES} for i in range(n)
        ]


def scene_labels(scenes) -> dict[str, np.ndarray]:
    return {c: np.array([CATEGORY_VALUES[c].index(getattr(s, c)) for s in scenes]) for c in CATEGORIES}


def verifier_dataset(n: int, seed: int, image_size: int = 32):
    """``n`` jittered renders of random scenes (all layouts, all relations drawn) and their labels."""
    from ..data.synthworld.corpus import random_scene
    from ..data.synthworld.render import Jitter, render

    rng = np.random.default_rng([seed, 30])
    scenes = [random_scene(rng) for _ in range(n)]
    images = np.stack([render(s, image_size=image_size, rng=rng, jitter=Jitter()) for s in scenes])
    return images, scene_labels(scenes)


def train_verifier(config: VerifierConfig, *, device: torch.device | str = "cpu", progress: bool = True, log=None):
    """Train a :class:`Verifier` from scratch on fresh jittered renders; returns it in eval mode."""
    from tqdm.auto import tqdm

    from .generator import images_to_tensor

    device = torch.device(device)
    torch.manual_seed(config.seed)
    images, labels = verifier_dataset(config.train_images, config.seed)
    x_all = images_to_tensor(images)
    y_all = {c: torch.from_numpy(v) for c, v in labels.items()}
    model = Verifier(config.width).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    rng = np.random.default_rng([config.seed, 31])
    bar = tqdm(range(config.steps), desc="train verifier", disable=not progress, unit="step")
    for step in bar:
        lr = warmup_cosine(step, config.steps, config.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.from_numpy(rng.integers(0, len(x_all), config.batch_size))
        x = x_all[idx].to(device)
        logits = model(x)
        loss = sum(nn.functional.cross_entropy(logits[c], y_all[c][idx].to(device)) for c in CATEGORIES)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if log is not None and step % 50 == 0:
            log.append({"step": step, "loss": float(loss.detach())})
    return model.eval()


def verifier_accuracy(model: Verifier, n: int = 2000, seed: int = 12345) -> dict[str, float]:
    """Per-category accuracy on ``n`` fresh jittered renders (a seed the training never used)."""
    images, labels = verifier_dataset(n, seed)
    out = model.read(images)
    return {c: float(np.mean(out[c][0] == labels[c])) for c in CATEGORIES}
