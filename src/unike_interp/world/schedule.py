"""The learning-rate schedule shared by every SynthWorld trainer."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, lr: float, warmup: int = 0, floor: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``lr`` to ``floor * lr`` at ``total``.

    ``lr_t = lr (t + 1) / warmup`` for ``t < warmup``; afterwards, with
    ``f = min(1, (t - warmup) / (total - warmup))``, ``lr_t = lr (floor + (1 - floor) (1 + cos(pi f)) / 2)``.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    if floor == 0.0:
        return lr * 0.5 * (1 + math.cos(math.pi * frac))
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))
