"""What only BLIP3o does: the published checkpoint naming (round trip, strict loading), the
diffusion transformer's published shape from diffusers' Lumina-Next blocks, the conditioning
against a hand-run of the language model with the queries appended, and the decoder's settings.
The contract (edits reach the image, restore, recording, bench + analyze) is in
``test_adapter_contract.py``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from unike_interp.models.blip3o import (MARKER_TOKEN, Blip3oCheckpointError, Blip3oDiT, Blip3oDiTConfig,
                                        DecoderSettings, load_blip3o, save_blip3o_checkpoint)

from adapter_checks import tiny_adapter, tiny_path

pytestmark = pytest.mark.adapters


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter("blip3o")


def _copy(tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_path("blip3o"), dst)
    return dst


def test_checkpoint_round_trips_in_the_published_naming(adapter, tmp_path):
    src = load_file(str(tiny_path("blip3o") / "model.safetensors"))
    assert {"model.latent_queries", "model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight",
            "model.norm.weight", "model.dit.model.caption_projection.linear_1.weight",
            "model.dit.model.layers.1.feed_forward.linear_1.weight"} <= set(src)
    assert any(k.startswith("visual.") for k in src) and "lm_head.weight" not in src  # tied head, as Qwen2.5-VL-3B
    cfg = json.loads((tiny_path("blip3o") / "config.json").read_text())
    out = save_blip3o_checkpoint(tmp_path / "again", adapter.lm, adapter.gen, config=cfg)
    back = load_file(str(out / "model.safetensors"))
    unused = {k for k in src if k.startswith("model.gen_vision_tower.")}
    assert unused and set(back) == set(src) - unused
    for k, v in back.items():
        assert torch.equal(v, src[k]), k
    # and what was written loads into a model that draws the same images
    shutil.copytree(tiny_path("blip3o"), tmp_path / "full", ignore=shutil.ignore_patterns("model.safetensors"))
    shutil.copy(out / "model.safetensors", tmp_path / "full" / "model.safetensors")
    again = load_blip3o(tmp_path / "full", pipeline_kwargs={"decoder_steps": 2})
    np.testing.assert_array_equal(again.generate_images(["a red zib"], seed=1, steps=2),
                                  adapter.generate_images(["a red zib"], seed=1, steps=2))


def test_loader_fails_loudly_on_unmatched_missing_and_misshapen_tensors(tmp_path):
    ck = _copy(tmp_path)
    f = ck / "model.safetensors"
    base = load_file(str(f))

    save_file({**base, "model.mystery.weight": torch.zeros(2)}, str(f))
    with pytest.raises(Blip3oCheckpointError, match=r"1 tensor\(s\) match no module: model.mystery.weight"):
        load_blip3o(ck)
    dropped = dict(base)
    dropped.pop("model.dit.model.layers.0.attn1.to_q.weight")
    save_file(dropped, str(f))
    with pytest.raises(Blip3oCheckpointError, match=r"1 tensor\(s\) missing: model.dit.model.layers.0.attn1.to_q.weight"):
        load_blip3o(ck)
    save_file({**base, "model.latent_queries": torch.zeros(1, 5, 32)}, str(f))
    with pytest.raises(Blip3oCheckpointError, match=r"model.latent_queries \(1, 5, 32\) vs \(1, 4, 32\)"):
        load_blip3o(ck)
    save_file(base, str(f))  # the published encoder we do not run is skipped, not an error
    assert load_blip3o(ck).gen.latent_queries.shape == (1, 4, 32)


def test_folder_errors_name_what_is_missing(tmp_path):
    ck = _copy(tmp_path)
    shutil.rmtree(ck / "diffusion-decoder" / "vae")
    with pytest.raises(FileNotFoundError, match="diffusion-decoder/ lacks vae"):
        load_blip3o(ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg.pop("n_query")
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="no n_query"):
        load_blip3o(ck)
    with pytest.raises(ValueError, match=r"unknown \['steps'\]; accepted: \['decoder_steps'"):
        load_blip3o(ck, pipeline_kwargs={"steps": 3})
    with pytest.raises(ValueError, match="decoder_steps must be >= 1"):
        DecoderSettings.from_kwargs({"decoder_steps": 0})


def test_dit_shape_is_read_from_the_checkpoint(tmp_path):
    from unike_interp.models.blip3o import dit_shape_from_checkpoint

    assert dit_shape_from_checkpoint(tiny_path("blip3o")) == {"n_layers": 2, "dim": 32, "in_channels": 16}
    ck = _copy(tmp_path)  # without dit_config the shape comes from the tensors (heads: the published 28 -> 2 here)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["dit_config"] = {"n_heads": 2, "n_kv_heads": 2, "input_size": 2, "multiple_of": 16}
    (ck / "config.json").write_text(json.dumps(cfg))
    assert load_blip3o(ck).generator.cfg.n_layers == 2


def test_published_dit_shape_from_diffusers_blocks():
    """At the published size (built on the meta device): 24 Lumina-Next blocks of width 1792 over
    1792-d features, a caption projection from the 3B language model's 2048, SwiGLU FFN int(8 * 1792 / 3)
    rounded up to a multiple of 256 (4864), no pad token; every tensor under upstream's ``model.*`` names."""
    with torch.device("meta"):
        dit = Blip3oDiT(Blip3oDiTConfig(caption_dim=2048))
    sd = dit.state_dict()
    assert "model.pad_token" not in sd
    assert sd["model.caption_projection.linear_1.weight"].shape == (1792, 2048)
    assert sd["model.patch_embedder.proj.weight"].shape == (1792, 1792)
    assert sd["model.layers.23.feed_forward.linear_1.weight"].shape == (4864, 1792)
    assert sd["model.layers.0.attn2.to_k.weight"].shape == (1792, 1792)  # cross-attention at width dim
    assert not any(k.startswith("model.layers.24.") for k in sd)


def test_conditioning_is_the_queries_final_states(adapter):
    """``conditioning([p])`` = the final-norm hidden states at the last ``n_query`` positions of the
    language model run on embed(instruction tokens + <im_patch>) followed by the latent queries
    (what upstream's ``generate_image`` reads), computed here through the whole Qwen2.5-VL model."""
    a = adapter
    p = "the blue zab sits on a wooden table"
    ids = a.tokenizer([a.instruction(p)], return_tensors="pt")["input_ids"]
    assert a.tokenizer.convert_ids_to_tokens(int(a.marker_id)) == MARKER_TOKEN
    ids = torch.cat([ids, torch.tensor([[a.marker_id]])], 1)
    with torch.no_grad():
        emb = torch.cat([a.lm.get_input_embeddings()(ids), a.gen.latent_queries], 1)
        L = emb.shape[1]  # explicit positions: Qwen2.5-VL otherwise reuses rope deltas cached by earlier calls
        hs = a.lm(inputs_embeds=emb, position_ids=torch.arange(L)[None], attention_mask=torch.ones(1, L, dtype=torch.long),
                  output_hidden_states=True).hidden_states[-1]
    cond = a.conditioning([p])
    torch.testing.assert_close(cond.hidden, hs[:, -a.n_query:], rtol=0, atol=1e-5)
    T = ids.shape[1]
    assert cond.lm_positions[0].tolist() == list(range(T, T + a.n_query))
    assert a.instruction(p).startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                       "Please generate image based on the following caption: ")


def test_decoder_guidance_and_steps_are_used(adapter):
    a = adapter
    base = a.generate_images(["a red zib"], seed=2, steps=2)
    old = a.settings
    try:
        a.settings = DecoderSettings(decoder_steps=2, decoder_guidance=1.0)
        assert not np.array_equal(a.generate_images(["a red zib"], seed=2, steps=2), base)
        a.settings = DecoderSettings(decoder_steps=3)
        assert not np.array_equal(a.generate_images(["a red zib"], seed=2, steps=2), base)
    finally:
        a.settings = old
    np.testing.assert_array_equal(a.generate_images(["a red zib"], seed=2, steps=2), base)
