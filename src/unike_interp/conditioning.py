"""What every adapter hands its generator, and the position helper all left-padded batches use.

The ground floor of the package: generic types that the SynthWorld world, the real-model adapters,
the editors and the recorder share, with no import of any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Conditioning:
    """What reaches the generator.

    ``hidden``: ``(B, S, C)`` conditioning tensor; ``mask``: ``(B, S)`` (1 = attend);
    ``lm_positions``: ``(B, S)`` the language-model input position each conditioning slot is read
    from (``-1`` for padding), i.e. the token index map from the LM sequence to the conditioning.
    """

    hidden: torch.Tensor
    mask: torch.Tensor
    lm_positions: torch.Tensor


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Left-padding-aware positions: ``cumsum(mask) - 1``, clamped at 0 on padding."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
