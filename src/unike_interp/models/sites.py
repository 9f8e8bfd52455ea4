"""Named recording sites: where the interpretability layer reads a model.

A :class:`Site` names one tensor of one forward pass of the adapter's *trace module* (an
``nn.Module`` whose forward runs prompt -> language model -> conditioning -> one generator call,
see :meth:`UMMAdapter.trace_module`):

``module``    dotted path inside the trace module (``lm.model.layers.3``, ``encoder.proj``,
              ``dit.transformer.transformer_blocks.0``);
``read``      ``"output"`` (the first element when the module returns a tuple), ``"output:K"`` (the
              K-th element of a returned tuple) or ``"input:K"`` (the K-th positional argument
              of the module's forward);
``positions`` ``"tokens"``: gather the subject's last token and the prompt's last token (text
              pathway, ``(B, 2, H)``); ``"all"``: keep every position (``(B, S, C)``);
``calls``     how many times the module must run in one forward. A site that fires another number
              of times is an error (:class:`SiteError`), never an empty or partial result.

Sites are listed in execution order: nnsight reads module outputs in the order the model
produces them. The trace module returns a :class:`TraceOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..conditioning import Conditioning

PATHWAY_NAMES = ("text", "conditioning", "generator")


class SiteError(RuntimeError):
    """A site did not fire as declared (missing module, wrong number of calls)."""


@dataclass(frozen=True)
class Site:
    name: str
    pathway: str
    module: str
    read: str = "output"
    positions: str = "all"
    calls: int = 1

    def __post_init__(self) -> None:
        if self.pathway not in PATHWAY_NAMES:
            raise ValueError(f"site {self.name!r}: pathway must be one of {', '.join(PATHWAY_NAMES)}, got {self.pathway!r}")
        kind, _, k = self.read.partition(":")
        if not (self.read == "output" or (kind in ("input", "output") and k.isdigit())):
            raise ValueError(f"site {self.name!r}: read must be 'output', 'output:K' or 'input:K', got {self.read!r}")
        if self.positions not in ("tokens", "all"):
            raise ValueError(f"site {self.name!r}: positions must be 'tokens' or 'all', got {self.positions!r}")
        if self.calls < 1:
            raise ValueError(f"site {self.name!r}: calls must be >= 1")


class TraceOutput(NamedTuple):
    """What a trace module's forward returns.

    ``generator_out``: the generator's output for the one call (a DiT's prediction ``(B, C, h, w)``,
    Janus's decoded pixels ``(B, 3, H, W)``); ``conditioning``: the :class:`Conditioning` handed to
    it. A tuple, so that nnsight passes it through a trace unchanged and callers may unpack it.
    """

    generator_out: torch.Tensor
    conditioning: Conditioning
