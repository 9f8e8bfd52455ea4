"""Checks every real-model adapter test makes the same way (imported by the ``test_adapters_*``
files; pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import numpy as np
import torch

from unike_interp.editing.delta import WeightDelta


def random_delta(adapter, path: str, scale: float = 0.5, seed: int = 0) -> WeightDelta:
    """A seeded Gaussian update of ``path``'s weight with ``|Delta|_F ~ scale * |W|_F``."""
    w = adapter.module(path).weight
    g = torch.Generator().manual_seed(seed)
    return WeightDelta({path: scale * w.detach().float().norm() / w.numel() ** 0.5
                        * torch.randn(tuple(w.shape), generator=g)})


def assert_edit_changes_text_not_image(adapter, delta: WeightDelta, prompts, base: np.ndarray, **generate) -> None:
    """With ``delta`` applied, the images of ``prompts`` equal ``base`` and the next-token logits move
    (an edit past the image read-out); the edit is removed afterwards."""
    logits0 = adapter.next_token_logits(prompts)
    applied = delta.apply(adapter.lm)
    try:
        np.testing.assert_array_equal(adapter.generate_images(prompts, **generate), base)
        assert not torch.equal(adapter.next_token_logits(prompts), logits0)
    finally:
        applied.remove()


def assert_intervention_equals_weight_edit(recorder, lm, prompts, subjects, delta: WeightDelta, unedited, *,
                                           moved: float = 1e-3, skip_prefix: str | None = None):
    """``delta`` given to ``recorder.record`` as an activation intervention records the same values
    (atol 1e-4) as ``delta`` applied to ``lm``'s weights, and it moves the conditioning tensor by more
    than ``moved`` from the ``unedited`` record. Returns (intervention, weight-edit) records."""
    inter = recorder.record(prompts, subjects, delta=delta)
    applied = delta.apply(lm)
    try:
        weight = recorder.record(prompts, subjects)
    finally:
        applied.remove()
    for k in unedited.values:
        if skip_prefix is not None and k.startswith(skip_prefix):
            continue
        np.testing.assert_allclose(inter.values[k], weight.values[k], rtol=0, atol=1e-4)
    assert np.nanmax(np.abs(weight.values["cond.tensor"] - unedited.values["cond.tensor"])) > moved
    return inter, weight
