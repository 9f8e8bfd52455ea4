"""What the adapter tests share (imported by ``test_adapter_contract.py`` and the ``test_adapters_*``
files; pytest puts ``tests/`` on ``sys.path``): the tiny adapters and their recordings, made once
per test process, a seeded random weight update, and "an edit past the read-out changes the text,
never the image"."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from unike_interp.editing.delta import WeightDelta
from unike_interp.testing.tiny import (build_tiny_blip3o, build_tiny_janus, build_tiny_lumina2, build_tiny_ovis_u1,
                                      build_tiny_ovisimage, build_tiny_qwenimage, build_tiny_sana)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny models are built here; nothing is downloaded

PROMPTS = ["a red zib", "the blue zab sits on a wooden table near the window"]
#: What the recorder tests record: the third prompt does not name its subject.
RECORD_PROMPTS = PROMPTS + ["a small striped circle"]
RECORD_SUBJECTS = ["zib", "zab", "zib"]
STEPS = 2

BUILDERS = {"janus": build_tiny_janus, "lumina2": build_tiny_lumina2, "sana": build_tiny_sana,
            "qwenimage": build_tiny_qwenimage, "ovisimage": build_tiny_ovisimage, "blip3o": build_tiny_blip3o,
            "ovis_u1": build_tiny_ovis_u1}
#: The tiny models' images are 32 px (Sana's resolution binning knows only the real sizes).
PIPELINE_KWARGS = {"sana": {"height": 32, "width": 32, "use_resolution_binning": False},
                   "qwenimage": {"height": 32, "width": 32}, "ovisimage": {"height": 32, "width": 32},
                   "blip3o": {"decoder_steps": 2}, "ovis_u1": {"height": 32, "width": 32}}
#: Families whose checkpoint folder carries its own model code (loaded with trust_remote_code).
REMOTE_CODE = {"ovis_u1"}


def _omnigen2_missing() -> str | None:
    """Why OmniGen2's official code cannot run here (None where ``omnigen2`` imports)."""
    from unike_interp.models.omnigen2 import OmniGen2ImportError, import_omnigen2

    try:
        import_omnigen2()
    except OmniGen2ImportError as e:
        return ("OmniGen2's code is not importable (" + str(e).splitlines()[0] + "); see "
                "'OmniGen2's official code' in docs/real-models.md to install it beside this package")
    return None


#: The reason the ``omnigen2_official`` tests are skipped here, or None where they run.
OMNIGEN2_MISSING = _omnigen2_missing()


@functools.cache
def tiny_path(family: str) -> Path:
    """The tiny ``family`` checkpoint folder, built once per test process and removed at its exit."""
    out = Path(tempfile.mkdtemp(prefix=f"unike-tiny-{family}-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    return BUILDERS[family](out, seed=0)


@functools.cache
def tiny_adapter(key: str):
    """The adapter of ``key``: a shipped SynthWorld model or a tiny checkpoint through ``load_model``,
    OmniGen2 on its stand-ins (``omnigen2``) or on its official code (``omnigen2-official``). One instance per test process: a test restores what it changes."""
    from unike_interp.models import load_model
    from unike_interp.testing.omnigen2_standin import tiny_omnigen2

    if key == "omnigen2":
        return tiny_omnigen2()
    if key == "omnigen2-official":
        from unike_interp.testing.omnigen2_official import tiny_official_omnigen2

        return tiny_official_omnigen2()
    if key in BUILDERS:
        return load_model(f"{key}:{tiny_path(key)}", pipeline_kwargs=PIPELINE_KWARGS.get(key),
                          trust_remote_code=key in REMOTE_CODE)
    return load_model(key)


@functools.cache
def recording(key: str):
    """``(recorder, recording, conditioning)`` of :data:`RECORD_PROMPTS` on the unedited ``tiny_adapter(key)``."""
    from unike_interp.interp.recorder import Recorder

    a = tiny_adapter(key)
    r = Recorder(a)
    return r, r.record(RECORD_PROMPTS, RECORD_SUBJECTS), a.conditioning(RECORD_PROMPTS)


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
