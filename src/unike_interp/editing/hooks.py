"""Forward hooks the editors need: read a module's input/output at chosen token positions, and add
a vector to a module's output at chosen positions (differentiably).

These are plain ``torch`` hooks on the language model: editing needs exactly two operations at
known positions, and must also work under ``torch.no_grad`` and autograd alike. The
interpretability layer records with nnsight instead.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def _main(x):
    return x[0] if isinstance(x, tuple) else x


def _replace_main(x, new):
    return (new,) + tuple(x[1:]) if isinstance(x, tuple) else new


@contextmanager
def capture_at(module: torch.nn.Module, positions: torch.Tensor, *, what: str = "output",
               rows: torch.Tensor | None = None) -> Iterator[dict]:
    """Record ``module``'s ``what`` (``"input"`` or ``"output"``) at ``positions[b]`` of each row
    (or, with ``rows``, at ``(rows[i], positions[i])``, several positions per row): the yielded dict
    gets ``"value"`` ``(B, D)`` (``(N, D)``) after the forward pass."""
    if what not in ("input", "output"):
        raise ValueError(f"what must be 'input' or 'output', got {what!r}")
    store: dict = {}
    rows = torch.arange(positions.shape[0]) if rows is None else rows

    def hook(mod, args, output):
        x = args[0] if what == "input" else _main(output)
        store["value"] = x[rows.to(x.device), positions.to(x.device)]

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@contextmanager
def add_at(module: torch.nn.Module, positions: torch.Tensor, vectors: torch.Tensor,
           rows: torch.Tensor | None = None) -> Iterator[None]:
    """Add ``vectors[b]`` ``(B, D)`` to ``module``'s output at ``positions[b]`` of row ``b`` (with
    ``rows``: ``vectors[i]`` at ``(rows[i], positions[i])``; the pairs must be distinct)."""

    def hook(mod, args, output):
        x = _main(output)
        r = torch.arange(x.shape[0], device=x.device) if rows is None else rows.to(x.device)
        add = torch.zeros_like(x)
        add = add.index_put((r, positions.to(x.device)), vectors.to(x.dtype))
        return _replace_main(output, x + add)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
