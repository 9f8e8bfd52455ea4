"""The LM-text-encoder + DiT adapter on a tiny random Lumina2 pipeline built offline: module paths,
text, seeded images, the conditioning against the pipeline's own transformer call, weight edits
reaching (or, past the read-out layer, not reaching) the image, recording with nnsight, and the
benchmark end to end."""

import json
import os

import numpy as np
import pytest
import torch

from unike_interp.models.textenc_dit import PRESETS, TextEncDiTAdapter, build_tiny_lumina2, load_textenc_dit

from adapter_checks import assert_edit_changes_text_not_image, assert_intervention_equals_weight_edit, random_delta

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.adapters

PROMPTS = ["a red zib", "the blue zab sits on a wooden table near the window"]
STEPS = 2


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_lumina2(tmp_path_factory.mktemp("tiny_lumina2"), seed=0)


@pytest.fixture(scope="module")
def adapter(tiny_path):
    return load_textenc_dit(tiny_path, "lumina2")


def _delta(adapter, layer, scale=0.5, seed=0):
    path = adapter.edit_module_template.format(layer)
    return path, random_delta(adapter, path, scale, seed)


def test_registry_paths_and_shared_modules(tiny_path, adapter):
    from unike_interp.models import known_models, load_model

    assert any(k.startswith("lumina2:") for k in known_models())
    assert {"toy-direct", "toy-queries", "toy-bottleneck"} <= set(known_models())
    a = load_model(f"lumina2:{tiny_path}")
    assert isinstance(a, TextEncDiTAdapter) and a.name == f"lumina2:{tiny_path}" and a.family == "llama"
    assert type(a.lm).__name__ == "Gemma2ForCausalLM" and a.pipe.text_encoder is a.lm.model  # one module, two uses
    assert a.num_layers == 4 and a.hidden_size == 64 and a.edit_layers == [0, 1]  # from the config
    for layer in a.edit_layers:
        for name in ("layer", "mlp", "mlp_down", "mlp_up", "attn"):
            assert isinstance(a.module(getattr(a.paths, name).format(layer)), torch.nn.Module)
    assert a.edit_module_template == "model.layers.{}.mlp.down_proj"
    assert a.tokenizer.padding_side == "left" and a.pipe.tokenizer.padding_side == "right"
    assert a.tokenizer is not a.pipe.tokenizer and a.tokenizer.is_fast
    trace = a.trace_module()
    for site in a.sites():  # every site names a module of the trace module
        trace.get_submodule(site.module)
    names = [s.name for s in a.sites()]
    assert names[:2] == ["text.mlp.0", "text.resid.0"] and "cond.tensor" in names
    assert [n for n in names if n.startswith("gen.block.")] == ["gen.block.0", "gen.block.1"]
    with pytest.raises(KeyError, match="unknown"):
        load_textenc_dit(tiny_path, "nope")


def test_generate_text(adapter):
    out = adapter.generate_text(["The color of the zib is", "a"], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert adapter.next_token_logits(["The color of the zib is"]).shape == (1, 1000)


def test_images_shape_seed_and_independence(adapter):
    imgs = adapter.generate_images(PROMPTS, seed=3, steps=STEPS)
    assert imgs.shape == (2, 32, 32, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(adapter.generate_images(PROMPTS, seed=3, steps=STEPS), imgs)
    alone = np.concatenate([adapter.generate_images([p], seed=3, steps=STEPS) for p in PROMPTS])
    np.testing.assert_array_equal(alone, imgs)  # image i depends on prompts[i] and the seed only
    assert not np.array_equal(adapter.generate_images(PROMPTS[:1], seed=4, steps=STEPS), imgs[:1])
    assert not np.array_equal(imgs[0], imgs[1])
    assert adapter.generate_images([], seed=3).shape == (0, 32, 32, 3)


def test_conditioning_is_what_the_transformer_receives(adapter):
    calls = []
    h = adapter.generator.register_forward_pre_hook(lambda m, args, kw: calls.append(kw), with_kwargs=True)
    try:
        adapter.generate_images(PROMPTS, seed=0, steps=STEPS, guidance=4.0)
    finally:
        h.remove()
    assert len(calls) == 2 * STEPS  # conditional and unconditional call per step
    cond = adapter.conditioning(PROMPTS)
    assert cond.hidden.shape == (2, PRESETS["lumina2"].max_sequence_length, adapter.hidden_size)
    for kw in calls[::2]:
        assert torch.equal(kw["encoder_hidden_states"], cond.hidden)
        assert torch.equal(kw["encoder_attention_mask"], cond.mask)
    # the unconditional call: the empty negative prompt, encoded *without* the system prompt
    S = PRESETS["lumina2"].max_sequence_length
    neg = adapter.pipe.tokenizer([""], padding="max_length", max_length=S, truncation=True, return_tensors="pt")
    null = adapter.lm.model(neg["input_ids"], attention_mask=neg["attention_mask"], output_hidden_states=True)
    assert torch.equal(calls[1]["encoder_hidden_states"][0], null.hidden_states[-2][0])
    assert torch.equal(calls[1]["encoder_attention_mask"][0], neg["attention_mask"][0])
    n = cond.mask.sum(1)
    assert (n > len(adapter.pipe.tokenizer(adapter.prompt_prefix())["input_ids"]) - 1).all()
    assert (cond.lm_positions[0, : int(n[0])] == torch.arange(int(n[0]))).all() and (cond.lm_positions[0, int(n[0]):] == -1).all()
    # hidden_states[-2]: the output of the second-to-last decoder layer
    enc = adapter.pipeline_tokens(PROMPTS[:1])
    outs = {}
    h = adapter.lm.model.layers[adapter.num_layers - 2].register_forward_hook(lambda m, a, o: outs.setdefault("x", o))
    try:
        adapter.lm.model(enc["input_ids"], attention_mask=enc["attention_mask"])
    finally:
        h.remove()
    torch.testing.assert_close(outs["x"][0], cond.hidden[0], rtol=0, atol=1e-5)


def test_weight_edit_reaches_image_and_restores(adapter):
    base = adapter.generate_images(PROMPTS[:1], seed=1, steps=STEPS)
    cond0 = adapter.conditioning(PROMPTS[:1]).hidden
    _, d = _delta(adapter, adapter.edit_layers[0])
    applied = d.apply(adapter.lm)
    try:
        edited = adapter.generate_images(PROMPTS[:1], seed=1, steps=STEPS)
        assert not torch.equal(adapter.conditioning(PROMPTS[:1]).hidden, cond0)
    finally:
        applied.remove()
    assert np.abs(edited.astype(int) - base.astype(int)).max() > 0
    np.testing.assert_array_equal(adapter.generate_images(PROMPTS[:1], seed=1, steps=STEPS), base)
    # Lumina2 reads hidden_states[-2]: the last layer never reaches the image (but does reach text)
    last = adapter.num_layers - 1
    _, d = _delta(adapter, last, scale=2.0)
    assert_edit_changes_text_not_image(adapter, d, PROMPTS[:1], base, seed=1, steps=STEPS)


def test_recorder(adapter):
    from unike_interp.interp.recorder import Recorder

    prompts = PROMPTS + ["a small striped circle"]
    subjects = ["zib", "zab", "zib"]
    r = Recorder(adapter)
    rec = r.record(prompts, subjects)
    cond = adapter.conditioning(prompts)
    np.testing.assert_allclose(rec.values["cond.tensor"], cond.hidden.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(rec.cond_mask, cond.mask.numpy())
    # conditioning slots map to the recorded LM sequence (end-aligned): same tokens, shifted rows
    n = cond.mask.sum(1).numpy()
    T = int(n.max())
    for b in range(len(prompts)):
        keep = rec.cond_mask[b].astype(bool)
        np.testing.assert_array_equal(rec.cond_lm_positions[b][keep], np.arange(n[b]) + T - n[b])
        assert rec.cond_lm_positions[b][keep][-1] == rec.token_positions[b, 1] == T - 1
    # text sites: the prompt's last token equals the pipeline's text encoder at that token
    enc = adapter.pipeline_tokens(prompts)
    with torch.no_grad():
        hs = adapter.lm.model(enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True).hidden_states
    for i in range(adapter.num_layers - 1):
        want = np.stack([hs[i + 1][b, int(n[b]) - 1].numpy() for b in range(len(prompts))])
        np.testing.assert_allclose(rec.values[f"text.resid.{i}"][:, 1], want, rtol=0, atol=1e-4)
    # subject found inside the user's prompt, not the system prompt; absent subject -> -1
    assert rec.token_positions[0, 0] >= T - n[0] and rec.token_positions[1, 0] >= T - n[1]
    assert rec.token_positions[2, 0] == -1 and np.isnan(rec.values["text.resid.0"][2, 0]).all()
    for b, subj in enumerate(subjects[:2]):
        at = int(rec.token_positions[b, 0] - (T - n[b]))  # back to the pipeline's (right-padded) row
        assert int(enc["input_ids"][b][at]) == adapter.tokenizer(" " + subj, add_special_tokens=False)["input_ids"][-1]
    S = PRESETS["lumina2"].max_sequence_length
    assert rec.values["cond.refiner.0"].shape == (3, S, 32) and rec.values["cond.connector_out"].shape == (3, S, 32)
    assert rec.values["gen.block.0"].shape[0] == 3 and rec.values["gen.block.1"].shape[-1] == 32
    # an edit as an activation intervention equals the same edit in the weights
    _, d = _delta(adapter, adapter.edit_layers[0])
    assert_intervention_equals_weight_edit(r, adapter.lm, prompts, subjects, d, rec)


def test_bench_end_to_end(tiny_path, tmp_path):
    from unike_interp.bench.pipeline import BenchConfig, run_bench
    from unike_interp.data.io import write_unike
    from unike_interp.data.synthworld import generate_world, text_corpus

    world = generate_world(0)
    data = write_unike(world.records[:3], tmp_path / "UniKE.json")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(text_corpus(world, seed=0)[:300]) + "\n", encoding="utf-8")
    cfg = BenchConfig(model=f"lumina2:{tiny_path}", editor="rome", protocol="single", cases=2, data=str(data),
                      judge="verifier", image_locality_probes=1, text_locality_probes=4, bootstrap=20,
                      hparams={"stats_samples": 2000, "n_prefixes": 2}, stats_corpus=str(corpus),
                      sample_steps=STEPS, reasoning_tokens=8, device="cpu")
    out = tmp_path / "run"
    table = run_bench(cfg, out, progress=False, echo=lambda s: None)
    entries = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    cases = [e for e in entries if e["type"] == "case"]
    points = [e for e in entries if e["type"] == "point"]
    assert len(cases) == 2 and len(points) == 2 and table["n_cases"] == 2
    from PIL import Image

    for e in cases:
        for s in e["stages"].values():
            assert s["pre"]["generation_error"] is None and s["pre"]["vqa_gt"]["error"] is None
            assert np.asarray(Image.open(out / s["pre"]["image"])).shape == (32, 32, 3)
            assert s["direct"]["generation_error"] is None and s["direct"]["vqa"]["verdict"] is not None
    assert all(len(p["image_locality"]) == 1 and p["image_locality"][0]["pre"]["verdict"] is not None for p in points)
    assert json.loads((out / "config.json").read_text())["model_name"] == f"lumina2:{tiny_path}"
    # the interpretability layer runs unchanged on the real-model adapter
    from unike_interp.interp.analyze import analyze_run

    summary = analyze_run(out, progress=False, echo=lambda s: None, figures=False)
    assert summary["n_cases"] == 2 and "edit_strength" in summary["aucs"]["vqa_direct"]
    assert "skipped" in summary["probes"]  # value probes need every subject's values (SynthWorld only)
    assert (out / "analysis" / "activations.h5").exists()
