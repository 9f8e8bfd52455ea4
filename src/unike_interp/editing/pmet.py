"""PMET — Li, Li, Song, Yang, Ma, Yu, "PMET: Precise Model Editing in a Transformer", AAAI 2024.

PMET keeps MEMIT's closed-form update of the MLP output projections but changes what it
distributes. At the last critical layer ``L`` it optimises two vectors per request together, one
added to the attention (MHSA) output and one to the MLP (FFN) output at the subject's last token
(the "transformer-component hidden states"); only the FFN vector becomes the target:

    m_i* = m_i^L + d_i^ffn                 (d_i^attn is optimised with it, then discarded)
    for l in l_1..l_L:
        R = [(m_i* - m_i^L) / sqrt(L - l + 1)]    square-root spread of the remaining residual
        Delta_l = R^T K (lambda C_l + K^T K)^-1,  W_l += Delta_l

where ``m_i^L`` is the current MLP output at layer ``L`` (recomputed after each update).
"""

from __future__ import annotations

import math

from .memit import MEMIT


class PMET(MEMIT):
    name = "pmet"

    def target_sites(self, adapter, last: int) -> tuple[list[str], str]:
        attn = adapter.paths.attn.format(last)
        mlp = adapter.paths.mlp.format(last)
        return [attn, mlp], mlp

    def residual_scale(self, remaining: int) -> float:
        return 1.0 / math.sqrt(remaining)
