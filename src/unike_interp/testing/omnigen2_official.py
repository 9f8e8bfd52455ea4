"""A tiny random OmniGen2 built from OmniGen2's own code, where the ``omnigen2`` package is importable.

:func:`tiny_official_omnigen2` assembles ``OmniGen2Pipeline`` from its real parts at tiny size --
``OmniGen2Transformer2DModel`` (2 joint blocks, 1 refiner block, width 48), OmniGen2's own
``FlowMatchEulerDiscreteScheduler``, a diffusers ``AutoencoderKL`` (2x) and the tiny random
Qwen2.5-VL of :mod:`unike_interp.testing.omnigen2_standin` -- and wraps it in
:class:`~unike_interp.models.omnigen2.OmniGen2Adapter`. Nothing from OmniGen2 is shipped with this
package: the user installs its code (``install_hint()``), and the tests marked
``omnigen2_official`` run the adapter against it (skipped, with the reason, where it is missing).

The pipeline is constructed, not loaded: ``load_omnigen2``'s ``from_pretrained`` path needs a
checkpoint folder laid out as the published one, which is not built here.
"""

from __future__ import annotations

import importlib

import torch

from ..models.omnigen2 import OmniGen2Adapter, import_omnigen2
from .omnigen2_standin import chatml_tokenizer
from .tiny import tiny_qwen2_5_vl

#: OmniGen2's own flow-matching scheduler (its ``set_timesteps`` takes ``num_tokens``, diffusers' does not).
SCHEDULER = ("omnigen2.schedulers.scheduling_flow_match_euler_discrete", "FlowMatchEulerDiscreteScheduler")

#: Image side of the tiny pipeline's calls (latent 16 x 16 with the 2x VAE; 64 image tokens at patch 2).
IMAGE_SIDE = 32


class TinyProcessor:
    """What ``OmniGen2Pipeline`` reads from its processor in text-to-image: ``.tokenizer``."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer


def tiny_official_omnigen2(seed: int = 0, name: str = "omnigen2:tiny-official") -> OmniGen2Adapter:
    """:class:`OmniGen2Adapter` over a tiny random ``OmniGen2Pipeline`` of the installed ``omnigen2``
    package (:class:`~unike_interp.models.omnigen2.OmniGen2ImportError` where it does not import).
    The adapter's ``pipeline_kwargs`` give 32-pixel images."""
    from diffusers import AutoencoderKL

    og = import_omnigen2()
    scheduler_cls = getattr(importlib.import_module(SCHEDULER[0]), SCHEDULER[1])
    tok = chatml_tokenizer()
    mllm = tiny_qwen2_5_vl(tok, seed, hidden=64, mrope_section=(4, 6, 6), tied=True)
    torch.manual_seed(seed)
    # axes_lens bound the rotary tables: the caption axis must cover the chat-templated prompt
    transformer = og["transformer"](
        patch_size=2, in_channels=4, hidden_size=48, num_layers=2, num_refiner_layers=1, num_attention_heads=2,
        num_kv_heads=1, multiple_of=16, axes_dim_rope=(8, 8, 8), axes_lens=(1024, 1024, 1024), text_feat_dim=64).eval()
    # OmniGen2 zero-initialises its output projection and modulations (a fresh model predicts zero
    # velocity, so no prompt would reach the image): give every all-zero tensor small seeded values
    with torch.no_grad():
        for param in transformer.parameters():
            if not param.any():
                param.normal_(0.0, 0.02)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, layers_per_block=1).eval()
    pipe = og["pipeline"](transformer=transformer, vae=vae, scheduler=scheduler_cls(), mllm=mllm,
                          processor=TinyProcessor(tok))
    pipe.set_progress_bar_config(disable=True)
    adapter = OmniGen2Adapter(name, pipe, device=torch.device("cpu"), dtype=torch.float32,
                              freqs_cis_fn=og["rotary"].get_freqs_cis)
    adapter.pipeline_kwargs = {"height": IMAGE_SIDE, "width": IMAGE_SIDE}
    return adapter
