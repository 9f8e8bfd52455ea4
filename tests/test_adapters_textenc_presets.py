"""The Sana and Qwen-Image presets of the LM-text-encoder + DiT adapter on tiny random pipelines
built offline: module paths from the config, text, seeded images, the conditioning against the
pipeline's own transformer call (each pipeline's token selection), weight edits reaching the
image and restoring it exactly, an edit past the read-out (Qwen-Image's untied LM head) leaving
the image unchanged, and recording with nnsight."""

import os

import numpy as np
import pytest
import torch

from unike_interp.models.textenc_dit import (
    PRESETS, TextEncDiTAdapter, build_tiny_qwenimage, build_tiny_sana, load_textenc_dit,
)

from adapter_checks import assert_edit_changes_text_not_image, assert_intervention_equals_weight_edit, random_delta

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.adapters

PROMPTS = ["a red zib", "the blue zab sits on a wooden table near the window"]
STEPS = 2
BUILD = {"sana": build_tiny_sana, "qwenimage": build_tiny_qwenimage}
# the tiny models' images are 32 px (Sana's resolution binning knows only the real sizes)
KWARGS = {"sana": {"height": 32, "width": 32, "use_resolution_binning": False}, "qwenimage": {"height": 32, "width": 32}}


@pytest.fixture(scope="module", params=["sana", "qwenimage"])
def preset(request):
    return request.param


@pytest.fixture(scope="module")
def tiny_path(preset, tmp_path_factory):
    return BUILD[preset](tmp_path_factory.mktemp(f"tiny_{preset}"), seed=0)


@pytest.fixture(scope="module")
def adapter(preset, tiny_path):
    return load_textenc_dit(tiny_path, preset, pipeline_kwargs=KWARGS[preset])


def _hooked_calls(adapter, prompts, guidance):
    calls = []
    h = adapter.generator.register_forward_pre_hook(lambda m, args, kw: calls.append(kw), with_kwargs=True)
    try:
        adapter.generate_images(prompts, seed=0, steps=STEPS, guidance=guidance)
    finally:
        h.remove()
    return calls


def test_registry_paths_and_shared_modules(preset, tiny_path, adapter):
    from unike_interp.models import known_models, load_model

    assert f"{preset}:<path>" in known_models()
    a = load_model(f"{preset}:{tiny_path}")
    assert isinstance(a, TextEncDiTAdapter) and a.preset is PRESETS[preset] and a.family == "llama"
    assert type(a.lm).__name__ == PRESETS[preset].lm_class
    encoder = a.lm.model if preset == "sana" else a.lm  # one module object, two uses
    assert a.pipe.text_encoder is encoder
    assert a.num_layers == 4 and a.edit_layers == [0, 1]  # from the (text) config
    assert a.hidden_size == (64 if preset == "sana" else 32)
    for layer in a.edit_layers:
        for name in ("layer", "mlp", "mlp_down", "mlp_up", "attn"):
            assert isinstance(a.module(getattr(a.paths, name).format(layer)), torch.nn.Module)
    want = "model.layers.{}.mlp.down_proj" if preset == "sana" else "model.language_model.layers.{}.mlp.down_proj"
    assert a.edit_module_template == want
    assert a.tokenizer.padding_side == "left" and a.tokenizer is not a.pipe.tokenizer
    trace = a.trace_module()
    for site in a.sites():
        trace.get_submodule(site.module)
    names = [s.name for s in a.sites()]
    assert names[:2] == ["text.mlp.0", "text.resid.0"] and {"cond.tensor", "cond.connector_out"} <= set(names)
    assert [n for n in names if n.startswith("gen.block.")] == ["gen.block.0", "gen.block.1"]


def test_generate_text(adapter):
    out = adapter.generate_text(["The color of the zib is", "a"], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert adapter.next_token_logits(["The color of the zib is"]).shape == (1, len(adapter.tokenizer))


def test_images_shape_and_seed(adapter):
    imgs = adapter.generate_images(PROMPTS, seed=3, steps=STEPS)
    assert imgs.shape == (2, 32, 32, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(adapter.generate_images(PROMPTS, seed=3, steps=STEPS), imgs)
    alone = np.concatenate([adapter.generate_images([p], seed=3, steps=STEPS) for p in PROMPTS])
    # image i depends on prompts[i] and the seed only, up to the rounding of unequal caption lengths
    assert np.abs(alone.astype(int) - imgs.astype(int)).max() <= 2
    assert not np.array_equal(adapter.generate_images(PROMPTS[:1], seed=4, steps=STEPS), imgs[:1])
    assert adapter.generate_images([], seed=3).shape == (0, 32, 32, 3)


def test_conditioning_is_what_the_transformer_receives(preset, adapter):
    (_sana_conditioning if preset == "sana" else _qwen_conditioning)(adapter)


def _sana_conditioning(adapter):
    calls = _hooked_calls(adapter, PROMPTS, guidance=4.5)
    assert len(calls) == STEPS  # one call per step: [negative; prompt] batched
    cond = adapter.conditioning(PROMPTS)
    S = PRESETS["sana"].max_sequence_length
    assert cond.hidden.shape == (2, S, adapter.hidden_size)
    for kw in calls:
        assert torch.equal(kw["encoder_hidden_states"][2:], cond.hidden)
        assert torch.equal(kw["encoder_attention_mask"][2:], cond.mask)
    # the negative prompt "" is encoded without the instruction: BOS + padding, post-norm last state
    neg = adapter.pipe.tokenizer([""], padding="max_length", max_length=S, truncation=True, return_tensors="pt")
    null = adapter.lm.model(neg["input_ids"], attention_mask=neg["attention_mask"])[0]
    assert torch.equal(calls[0]["encoder_hidden_states"][0], null[0])
    # the selection keeps BOS and the last S - 1 columns: the instruction (but its last token) is dropped
    lay = adapter.layout(PROMPTS)
    M = lay.input_ids.shape[1]
    n_chi = len(adapter.pipe.tokenizer.encode(adapter.prompt_prefix()))
    assert M == n_chi + S - 2 and n_chi > 100
    assert cond.lm_positions[0, 0] == 0 and cond.lm_positions[0, 1] == M - S + 1
    n = lay.attention_mask.sum(1)
    assert (cond.mask.sum(1) == n - (M - S)).all()  # every prompt token survives, plus BOS
    # the post-norm last hidden state of the text encoder at the kept columns
    h = adapter.lm.model(lay.input_ids, attention_mask=lay.attention_mask).last_hidden_state
    torch.testing.assert_close(cond.hidden[:, 1:], h[:, M - S + 1:], rtol=0, atol=1e-6)


def _qwen_conditioning(adapter):
    calls = _hooked_calls(adapter, PROMPTS, guidance=4.0)
    assert len(calls) == 2 * STEPS  # true CFG: prompt and negative prompt, two calls per step
    cond = adapter.conditioning(PROMPTS)
    for kw in calls[::2]:
        assert torch.equal(kw["encoder_hidden_states"], cond.hidden)
        assert torch.equal(kw["encoder_hidden_states_mask"], cond.mask)
    # the template's first prompt_template_encode_start_idx tokens are dropped, read from the pipeline
    drop = adapter.pipe.prompt_template_encode_start_idx
    lay = adapter.layout(PROMPTS)
    for b in range(2):
        real = lay.attention_mask[b].nonzero().flatten()
        assert (cond.mask[b].sum() == len(real) - drop)
        assert (cond.lm_positions[b, : len(real) - drop] == real[drop:]).all()
    out = adapter.lm(input_ids=lay.input_ids, attention_mask=lay.attention_mask, output_hidden_states=True)
    post_norm = out.hidden_states[-1]
    b = 1
    torch.testing.assert_close(cond.hidden[b], post_norm[b, lay.attention_mask[b].nonzero().flatten()[drop:]],
                               rtol=0, atol=1e-6)
    # negative prompt " " in the second call of each step
    neg = adapter.conditioning([" "])
    assert torch.equal(calls[1]["encoder_hidden_states"][0], neg.hidden[0])


def test_weight_edit_reaches_image_and_restores(preset, adapter):
    base = adapter.generate_images(PROMPTS[:1], seed=1, steps=STEPS)
    cond0 = adapter.conditioning(PROMPTS[:1]).hidden
    d = random_delta(adapter, adapter.edit_module_template.format(adapter.edit_layers[0]), scale=2.0)
    applied = d.apply(adapter.lm)
    try:
        edited = adapter.generate_images(PROMPTS[:1], seed=1, steps=STEPS)
        assert not torch.equal(adapter.conditioning(PROMPTS[:1]).hidden, cond0)
    finally:
        applied.remove()
    assert np.abs(edited.astype(int) - base.astype(int)).max() > 0
    np.testing.assert_array_equal(adapter.generate_images(PROMPTS[:1], seed=1, steps=STEPS), base)
    if preset == "qwenimage":
        # past the read-out: the (untied) LM head changes the text, never the image
        assert_edit_changes_text_not_image(adapter, random_delta(adapter, "lm_head", scale=2.0), PROMPTS[:1], base,
                                           seed=1, steps=STEPS)


def test_recorder(adapter):
    from unike_interp.interp.recorder import Recorder

    prompts = PROMPTS + ["a small striped circle"]
    subjects = ["zib", "zab", "zib"]
    r = Recorder(adapter)
    rec = r.record(prompts, subjects)
    cond = adapter.conditioning(prompts)
    np.testing.assert_allclose(rec.values["cond.tensor"], cond.hidden.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(rec.cond_mask, cond.mask.numpy())
    lay = adapter.layout(prompts)
    shift = lay.prompt_last.max() - lay.prompt_last
    keep = cond.mask.bool()
    np.testing.assert_array_equal(rec.cond_lm_positions[keep.numpy()],
                                  (cond.lm_positions + shift[:, None])[keep].numpy())
    T = int(lay.prompt_last.max()) + 1
    assert (rec.token_positions[:, 1] == T - 1).all()
    # text sites at the prompt's last token equal the pipeline's own text-encoder run
    te = adapter.lm.model
    with torch.no_grad():
        hs = te(input_ids=lay.input_ids, attention_mask=lay.attention_mask, output_hidden_states=True).hidden_states
    for i in range(adapter.num_layers - 1):
        want = np.stack([hs[i + 1][b, int(lay.prompt_last[b])].numpy() for b in range(3)])
        np.testing.assert_allclose(rec.values[f"text.resid.{i}"][:, 1], want, rtol=0, atol=1e-4)
    for b, subj in enumerate(subjects[:2]):  # the subject inside the user's prompt
        at = int(rec.token_positions[b, 0] - shift[b])
        assert int(lay.input_ids[b, at]) == adapter.tokenizer(" " + subj, add_special_tokens=False)["input_ids"][-1]
    assert rec.token_positions[2, 0] == -1
    assert rec.values["gen.block.0"].shape[0] == 3 and rec.values["gen.block.1"].shape[-1] == 32
    # an edit as an activation intervention equals the same edit in the weights
    d = random_delta(adapter, adapter.edit_module_template.format(adapter.edit_layers[0]))
    assert_intervention_equals_weight_edit(r, adapter.lm, prompts, subjects, d, rec, moved=1e-4)


def test_model_folder_from_path_or_hf_cache(tmp_path, monkeypatch):
    from unike_interp.models.hub import resolve_model_folder

    (tmp_path / "m").mkdir()
    with pytest.raises(FileNotFoundError, match="has no model_index.json"):
        resolve_model_folder(tmp_path / "m", marker="model_index.json")
    (tmp_path / "m" / "model_index.json").write_text("{}")
    assert resolve_model_folder(tmp_path / "m", marker="model_index.json") == tmp_path / "m"
    # a repo id is looked up in the Hugging Face cache only (an empty cache here: a clear error)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a repository in the Hugging Face cache"):
        resolve_model_folder("someone/some-model", marker="model_index.json")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_model_folder(tmp_path / "nope" / "deeper", marker="model_index.json")


def test_device_map_loads_the_same_model(preset, tiny_path, adapter):
    """accelerate's device_map (here everything on the CPU) gives the same conditioning and text."""
    a = load_textenc_dit(tiny_path, preset, pipeline_kwargs=KWARGS[preset], device_map={"": "cpu"})
    assert a.pipe.text_encoder is (a.lm.model if preset == "sana" else a.lm)
    torch.testing.assert_close(a.conditioning(PROMPTS).hidden, adapter.conditioning(PROMPTS).hidden, rtol=0, atol=0)
    torch.testing.assert_close(a.next_token_logits(PROMPTS[:1]), adapter.next_token_logits(PROMPTS[:1]), rtol=0, atol=0)
