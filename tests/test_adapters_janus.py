"""The Janus adapter on a tiny random JanusForConditionalGeneration built offline: module paths on the
shared LM view, text, seeded images, the hooked conditioning against the generation head's input
and the teacher-forced trace, weight edits reaching the image (and the text head reaching it too, since Janus
ties it to the embeddings), recording with nnsight, and the benchmark end to end."""

import json
import os

import numpy as np
import pytest
import torch

from unike_interp.models.janus import JanusAdapter, build_tiny_janus, load_janus

from adapter_checks import assert_edit_changes_text_not_image, assert_intervention_equals_weight_edit, random_delta

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.adapters

PROMPTS = ["a red zib", "the blue zab sits on a wooden table near the window"]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_janus(tmp_path_factory.mktemp("tiny_janus"), seed=0)


@pytest.fixture(scope="module")
def adapter(tiny_path):
    return load_janus(tiny_path)


def test_registry_paths_and_shared_modules(tiny_path, adapter):
    from unike_interp.models import known_models, load_model

    assert "janus:<path>" in known_models()
    a = load_model(f"janus:{tiny_path}")
    assert isinstance(a, JanusAdapter) and a.name == f"janus:{tiny_path}" and a.family == "llama"
    # the LM view shares Janus's own modules (no copy)
    assert type(a.lm).__name__ == "LlamaForCausalLM"
    assert a.lm.model is a.janus.model.language_model and a.lm.lm_head is a.janus.lm_head
    assert a.num_layers == 4 and a.hidden_size == 64 and a.edit_layers == [0, 1]  # from the text config
    for layer in range(a.num_layers):
        for name in ("layer", "mlp", "mlp_down", "mlp_up", "attn"):
            assert isinstance(a.module(getattr(a.paths, name).format(layer)), torch.nn.Module)
    for name in ("layers", "final_norm", "embed", "lm_head"):
        assert isinstance(a.module(getattr(a.paths, name)), torch.nn.Module)
    assert a.edit_module_template == "model.layers.{}.mlp.down_proj"
    assert a.module("model.layers.0.mlp.down_proj") is a.janus.model.language_model.layers[0].mlp.down_proj
    assert a.tokenizer.padding_side == "left" and a.tokenizer.is_fast
    assert a.num_image_tokens == 16 and a.image_size == 32 and a.guidance == 5.0
    ids = a.image_tokens(PROMPTS)["input_ids"]
    assert (ids[:, -1] == a.boi_token_id).all()  # image mode ends in the begin-of-image token
    trace = a.trace_module()
    for site in a.sites():  # every site names a module of the trace module
        trace.get_submodule(site.module)
    names = [s.name for s in a.sites()]
    assert names[:2] == ["text.mlp.0", "text.resid.0"] and "cond.tensor" in names
    assert [n for n in names if n.startswith("gen.block.")] == [f"gen.block.{i}" for i in range(9)]
    with pytest.raises(KeyError, match="janus:<path>"):
        load_model("janus:")


def test_generate_text(adapter):
    out = adapter.generate_text(["The color of the zib is", "a"], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    logits = adapter.next_token_logits(["The color of the zib is"])
    assert logits.shape == (1, 1003)
    with torch.no_grad():  # the view's logits are Janus's own text logits
        enc = adapter.tokenizer(["The color of the zib is"], return_tensors="pt")
        want = adapter.janus(**enc).logits[:, -1]
    torch.testing.assert_close(logits, want, rtol=0, atol=1e-5)


def test_images_shape_seed_and_independence(adapter):
    imgs = adapter.generate_images(PROMPTS, seed=3)
    assert imgs.shape == (2, 32, 32, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(adapter.generate_images(PROMPTS, seed=3), imgs)
    alone = np.concatenate([adapter.generate_images([p], seed=3) for p in PROMPTS])
    np.testing.assert_array_equal(alone, imgs)  # image i depends on prompts[i] and the seed only
    assert not np.array_equal(adapter.generate_images(PROMPTS[:1], seed=4), imgs[:1])
    assert not np.array_equal(imgs[0], imgs[1])
    assert adapter.generate_images([], seed=3).shape == (0, 32, 32, 3)
    with pytest.raises(ValueError, match="guidance"):
        adapter.generate_images(PROMPTS[:1], guidance=1.0)


def test_conditioning_is_what_the_head_reads(adapter):
    calls = []
    h = adapter.janus.model.generation_head.register_forward_pre_hook(lambda m, args: calls.append(args[0]))
    try:
        adapter.generate_images(PROMPTS, seed=2)
    finally:
        h.remove()
    assert len(calls) == adapter.num_image_tokens and calls[0].shape == (4, 64)  # CFG batch: cond + uncond
    cond = adapter.conditioning(PROMPTS, seed=2)
    assert cond.hidden.shape == (2, 16, 64) and (cond.mask == 1).all()
    assert torch.equal(cond.hidden, torch.stack([c[:2] for c in calls], dim=1))  # conditional half
    T = adapter.image_tokens(PROMPTS)["input_ids"].shape[1]
    assert (cond.lm_positions == T - 1 + torch.arange(16)).all()  # slot 0: the BOI token
    # the teacher-forced trace on the codes Janus drew reproduces the conditioning
    codes, _, _ = adapter.generate_codes(PROMPTS, seed=2, guidance=adapter.guidance, capture=False)
    args, _ = adapter.trace_inputs(PROMPTS, codes=codes)
    with torch.no_grad():
        _, traced = adapter.trace_module()(*args)
    torch.testing.assert_close(traced.hidden, cond.hidden, rtol=0, atol=1e-5)
    assert torch.equal(traced.lm_positions, cond.lm_positions)
    # slot 0 (the BOI state) does not depend on the seed; later slots do
    other = adapter.conditioning(PROMPTS, seed=5)
    torch.testing.assert_close(other.hidden[:, 0], cond.hidden[:, 0], rtol=0, atol=0)
    assert not torch.equal(other.hidden[:, 1:], cond.hidden[:, 1:])


def test_weight_edit_reaches_image_and_restores(adapter):
    base = adapter.generate_images(PROMPTS[:1], seed=1)
    cond0 = adapter.conditioning(PROMPTS[:1], seed=1).hidden
    path = adapter.edit_module_template.format(adapter.edit_layers[0])
    # codes are drawn (discrete): on the tiny random LM a relative update of 0.5 moves the head's
    # logits by ~0.4 and no draw; at 2.0 (logits ~1.3) some of the 16 codes change
    applied = random_delta(adapter, path, scale=2.0).apply(adapter.lm)
    try:
        edited = adapter.generate_images(PROMPTS[:1], seed=1)
        assert not torch.equal(adapter.conditioning(PROMPTS[:1], seed=1).hidden, cond0)
    finally:
        applied.remove()
    assert np.abs(edited.astype(int) - base.astype(int)).max() > 0
    np.testing.assert_array_equal(adapter.generate_images(PROMPTS[:1], seed=1), base)
    # Janus reads the *final-norm* output, after every LM layer: no LM layer lies past the read-out
    # point. The one module past it on the text side, lm_head, is tied to the input embeddings
    # (JanusConfig.tie_word_embeddings, True by default), so an lm_head edit is an embedding edit
    # and reaches the image as well as the text.
    assert adapter.janus.config.tie_word_embeddings
    assert adapter.lm.lm_head.weight is adapter.lm.model.embed_tokens.weight
    logits0 = adapter.next_token_logits(PROMPTS[:1])
    applied = random_delta(adapter, adapter.paths.lm_head, scale=2.0).apply(adapter.lm)
    try:
        assert not np.array_equal(adapter.generate_images(PROMPTS[:1], seed=1), base)
        assert not torch.equal(adapter.next_token_logits(PROMPTS[:1]), logits0)
    finally:
        applied.remove()
    np.testing.assert_array_equal(adapter.generate_images(PROMPTS[:1], seed=1), base)
    torch.testing.assert_close(adapter.next_token_logits(PROMPTS[:1]), logits0, rtol=0, atol=0)


def test_recorder(adapter):
    from unike_interp.interp.recorder import Recorder

    prompts = PROMPTS + ["a small striped circle"]
    subjects = ["zib", "zab", "zib"]
    r = Recorder(adapter)
    rec = r.record(prompts, subjects)
    args, extra = adapter.trace_inputs(prompts, seed=0)
    with torch.no_grad():
        _, traced = adapter.trace_module()(*args)
    np.testing.assert_allclose(rec.values["cond.tensor"], traced.hidden.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(rec.cond_lm_positions, traced.lm_positions.numpy())
    assert rec.cond_mask.shape == (3, 16) and (rec.cond_mask == 1).all()
    T = extra["attention_mask"].shape[1]
    assert (rec.cond_lm_positions == T - 1 + np.arange(16)).all()
    # the BOI slot equals the state the head reads first during generation
    cond = adapter.conditioning(prompts, seed=7)
    np.testing.assert_allclose(rec.values["cond.tensor"][:, 0], cond.hidden[:, 0].numpy(), rtol=0, atol=1e-5)
    # text sites at the prompt's last token (BOI) equal the language model on the image prompt
    enc = adapter.image_tokens(prompts)
    with torch.no_grad():
        hs = adapter.janus.model.language_model(**enc, output_hidden_states=True).hidden_states
    for i in range(adapter.num_layers - 1):
        np.testing.assert_allclose(rec.values[f"text.resid.{i}"][:, 1], hs[i + 1][:, -1].numpy(), rtol=0, atol=1e-4)
    assert rec.token_positions[2, 0] == -1 and np.isnan(rec.values["text.resid.0"][2, 0]).all()
    for b, subj in enumerate(subjects[:2]):
        at = int(rec.token_positions[b, 0])
        assert int(enc["input_ids"][b][at]) == adapter.tokenizer(" " + subj, add_special_tokens=False)["input_ids"][-1]
    assert rec.values["gen.logits"].shape == (3, 16, 64) and rec.values["gen.block.8"].shape == (3, 32, 32, 32)
    # an edit as an activation intervention equals the same edit in the weights
    d = random_delta(adapter, adapter.edit_module_template.format(adapter.edit_layers[0]))
    # the decoder runs on argmax codes (discrete): its blocks are left out of the comparison
    assert_intervention_equals_weight_edit(r, adapter.lm, prompts, subjects, d, rec, skip_prefix="gen.block.")


def test_bench_end_to_end(tiny_path, tmp_path):
    from unike_interp.bench.pipeline import BenchConfig, run_bench
    from unike_interp.data.io import write_unike
    from unike_interp.data.synthworld import generate_world, text_corpus

    world = generate_world(0)
    data = write_unike(world.records[:3], tmp_path / "UniKE.json")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(text_corpus(world, seed=0)[:300]) + "\n", encoding="utf-8")
    cfg = BenchConfig(model=f"janus:{tiny_path}", editor="rome", protocol="single", cases=2, data=str(data),
                      judge="verifier", image_locality_probes=1, text_locality_probes=4, bootstrap=20,
                      hparams={"stats_samples": 2000, "n_prefixes": 2}, stats_corpus=str(corpus),
                      sample_steps=2, reasoning_tokens=8, device="cpu")
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
    assert json.loads((out / "config.json").read_text())["model_name"] == f"janus:{tiny_path}"
    # the interpretability layer runs unchanged on the Janus adapter
    from unike_interp.interp.analyze import analyze_run
    from unike_interp.interp.store import ActivationStore

    summary = analyze_run(out, progress=False, echo=lambda s: None, figures=False)
    assert summary["n_cases"] == 2 and summary["model"] == f"janus:{tiny_path}"
    assert "edit_strength" in summary["aucs"]["vqa_direct"] and "cond_drift" in summary["aucs"]["vqa_direct"]
    assert "skipped" in summary["probes"]  # value probes need every subject's values (SynthWorld only)
    assert (out / "analysis" / "activations.h5").exists()
    store = ActivationStore(out / "analysis" / "activations.h5")
    cases = dict(store.iter_cases())
    assert len(cases) == 2
    for case_id in cases:
        for state in ("pre", "post"):
            acts = store.read(case_id, state, "direct")
            assert acts["cond.tensor"].shape == (16, 64)  # the N head-read slots: BOI + 15 image tokens
            assert acts["text.resid.3"].shape == (2, 64) and acts["gen.block.8"].shape == (32, 32, 32)
            assert np.isfinite(acts["cond.tensor"]).all()
        assert not np.array_equal(store.read(case_id, "pre", "direct")["cond.tensor"],
                                  store.read(case_id, "post", "direct")["cond.tensor"])  # the edit reached it
    stats = json.loads((out / "analysis" / "stats.json").read_text())
    assert all(np.isfinite(v["cond_drift"]) and v["cond_drift"] > 0 for v in stats["per_case"].values())


def test_edit_past_the_read_out_leaves_the_image(tmp_path):
    """With an untied text head, the head lies past the read-out (the final norm feeds the image
    head): editing it changes the text and never the image."""
    a = load_janus(build_tiny_janus(tmp_path / "untied", seed=0, tie_word_embeddings=False))
    assert a.lm.lm_head.weight is not a.lm.model.embed_tokens.weight
    base = a.generate_images(PROMPTS[:1], seed=1)
    assert_edit_changes_text_not_image(a, random_delta(a, a.paths.lm_head, scale=2.0), PROMPTS[:1], base, seed=1)
