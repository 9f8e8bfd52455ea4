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


def stack_conditionings(parts: "list[Conditioning]") -> Conditioning:
    """One batch from several: each part ``(b_i, S_i, C)``, left-padded to ``max S_i`` with zero
    slots (``mask`` 0, ``lm_positions`` -1), as a left-padded prompt batch would be."""
    if not parts:
        raise ValueError("stack_conditionings needs at least one conditioning")
    S = max(p.hidden.shape[1] for p in parts)
    hs, ms, ps = [], [], []
    for p in parts:
        b, s, c = p.hidden.shape
        pad = S - s
        hs.append(torch.cat([p.hidden.new_zeros(b, pad, c), p.hidden], dim=1))
        ms.append(torch.cat([p.mask.new_zeros(b, pad), p.mask], dim=1))
        ps.append(torch.cat([p.lm_positions.new_full((b, pad), -1), p.lm_positions], dim=1))
    return Conditioning(torch.cat(hs), torch.cat(ms), torch.cat(ps))
