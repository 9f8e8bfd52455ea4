"""The contract every adapter owes, checked on each tiny one: the shipped SynthWorld models
(toy-direct / queries / bottleneck), tiny random Janus, Lumina2, Sana and Qwen-Image checkpoints
loaded through the registry, and OmniGen2 on its stand-ins.

Layers, module paths and sites declared from the config; the text side; seeded, batch-independent
images; the conditioning's shape, mask and LM positions; a weight edit that reaches the
conditioning and the image and is removed bit for bit; an edit past the read-out that changes
the text only; the recorder (the trace module's typed output, text sites against the family's
own tokens, an edit as an intervention equal to the weight edit); the benchmark end to end. The
registry's table, the model-folder lookup, and the rule that the runtime never imports the test
models. What only one family does is checked in its ``test_adapters_<family>.py``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from unike_interp.models.base import UMMAdapter

from unike_interp.models import known_models, load_model
from unike_interp.models.registry import model_requirements
from unike_interp.models.sites import TraceOutput
from unike_interp.models.textenc_dit import PRESETS

from adapter_checks import (OMNIGEN2_MISSING, PIPELINE_KWARGS, PROMPTS, REMOTE_CODE, RECORD_PROMPTS, RECORD_SUBJECTS, STEPS,
                            assert_edit_changes_text_not_image, random_delta, recording, tiny_adapter, tiny_path)

pytestmark = pytest.mark.adapters


# --- each family's own tokens: (input_ids, attention_mask, column of the prompt's last token) -------

def _left_padded(a, prompts):
    enc = a.tokenizer(prompts, return_tensors="pt", padding=True)
    T = enc["input_ids"].shape[1]
    return enc["input_ids"], enc["attention_mask"], torch.full((len(prompts),), T - 1)


def _janus_image_mode(a, prompts):  # chat template + BOI, left-padded: the BOI token is last
    enc = a.image_tokens(prompts)
    T = enc["input_ids"].shape[1]
    return enc["input_ids"], enc["attention_mask"], torch.full((len(prompts),), T - 1)


def _pipeline_layout(a, prompts):
    lay = a.layout(prompts)
    return lay.input_ids, lay.attention_mask, lay.prompt_last


def _omnigen2_instruction(a, prompts):  # right-padded instructions; the recorder reads their last token
    enc = a.pipeline_tokens(prompts)
    return enc["input_ids"], enc["attention_mask"], enc["attention_mask"].sum(1) - 1


def _blip3o_instruction(a, prompts):  # left-padded instructions (before the marker and the queries)
    enc = a.tokenizer([a.instruction(p) for p in prompts], return_tensors="pt", padding=True)
    T = enc["input_ids"].shape[1]
    return enc["input_ids"], enc["attention_mask"], torch.full((len(prompts),), T - 1)


def _ovis_u1_inputs(a, prompts):  # the stand-in's merged embeddings of the script's inputs (visual tokens first)
    args, extra = a.trace_inputs(prompts)
    ids, mask = args[0], args[1]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        emb = a.model.merge(ids, args[2])
    return {"inputs_embeds": emb, "attention_mask": mask, "position_ids": pos}, mask, torch.full((len(prompts),),
                                                                                                   ids.shape[1] - 1)


@dataclass(frozen=True)
class Case:
    """What one tiny adapter declares, and the few numbers its checks need."""

    key: str
    adapter_class: str
    hidden: int
    vocab: int
    cond_sites: tuple[str, ...]
    gen_blocks: int                  # gen.block.{i} sites, after the generator's other sites (gen_sites)
    tokens: Callable                 # the family's own tokens of prompts (see above)
    gen_sites: tuple[str, ...] = ()  # generator sites before its blocks
    template: str = "model.layers.{}.mlp.down_proj"
    edit_scale: float = 0.5          # an early-layer edit of this relative size moves the image
    past_readout: str | None = None  # a module past the read-out (an edit there changes the text only)
    batch_tol: int = 0               # largest pixel difference of a batch against its prompts alone
    trace_slots: str = "all"         # slots where the trace reproduces conditioning(): all | real | first
    moved: float = 1e-3              # an edit moves the recorded conditioning by more than this
    skip: str | None = None          # sites left out of "intervention == weight edit"
    shapes: dict = field(default_factory=dict)  # recorded shapes of RECORD_PROMPTS


_TOY_BLOCKS = {f"gen.block.{i}": (3, 64, 128) for i in range(4)}
CASES = [
    Case("toy-direct", "SynthWorldAdapter", 128, 1000, ("cond.tensor",), 4, _left_padded, shapes=_TOY_BLOCKS),
    Case("toy-queries", "SynthWorldAdapter", 128, 1000, ("cond.tensor",), 4, _left_padded,
         shapes={"cond.tensor": (3, 8, 128), **_TOY_BLOCKS}),
    Case("toy-bottleneck", "SynthWorldAdapter", 128, 1000, ("cond.connector_in", "cond.connector_out", "cond.tensor"),
         4, _left_padded, batch_tol=1, shapes={"cond.connector_in": (3, 22, 256), **_TOY_BLOCKS}),
    # Lumina2 reads hidden_states[-2]: the last layer never reaches the image (but does reach text)
    Case("lumina2", "TextEncDiTAdapter", 64, 1000, ("cond.tensor", "cond.connector_out", "cond.refiner.0"), 2,
         _pipeline_layout, past_readout="model.layers.3.mlp.down_proj",
         shapes={"cond.refiner.0": (3, 256, 32), "cond.connector_out": (3, 256, 32), "gen.block.1": (3, 119, 32)}),
    Case("sana", "TextEncDiTAdapter", 64, 1000, ("cond.tensor", "cond.connector_out"), 2, _pipeline_layout,
         edit_scale=2.0, batch_tol=2, moved=1e-4, shapes={"cond.tensor": (3, 300, 64), "gen.block.1": (3, 64, 32)}),
    # Qwen-Image's LM head is untied: past the read-out
    Case("qwenimage", "TextEncDiTAdapter", 32, 1002, ("cond.tensor", "cond.connector_out"), 2, _pipeline_layout,
         template="model.language_model.layers.{}.mlp.down_proj", edit_scale=2.0, past_readout="lm_head",
         batch_tol=2, moved=1e-4, shapes={"gen.block.1": (3, 16, 32)}),
    # Ovis-Image (an Ovis-family pipeline, not Ovis-U1): 256 slots, padding zeroed, no mask; tied head
    Case("ovisimage", "TextEncDiTAdapter", 64, 1002, ("cond.tensor", "cond.connector_out"), 2, _pipeline_layout,
         edit_scale=2.0, batch_tol=2, moved=1e-4, shapes={"cond.tensor": (3, 256, 64)}),
    # the trace gathers OmniGen2's padding slots from other columns; batch padding rounds floats
    Case("omnigen2", "OmniGen2Adapter", 64, 1002, ("cond.tensor", "cond.connector_out", "cond.refiner.0"), 2,
         _omnigen2_instruction, template="model.language_model.layers.{}.mlp.down_proj", edit_scale=2.0,
         batch_tol=1, trace_slots="real", shapes={"cond.connector_out": (3, 81, 32), "gen.block.1": (3, 337, 32)}),
    # the same adapter on OmniGen2's own pipeline, transformer and scheduler (where its code is importable)
    Case("omnigen2-official", "OmniGen2Adapter", 64, 1002, ("cond.tensor", "cond.connector_out", "cond.refiner.0"), 2,
         _omnigen2_instruction, template="model.language_model.layers.{}.mlp.down_proj", edit_scale=2.0,
         batch_tol=1, trace_slots="real"),
    # BLIP3o: 4 learned queries after the instruction and <im_patch>; DiT over a 2 x 2 grid of 16-d features
    Case("blip3o", "Blip3oAdapter", 32, 1003, ("cond.tensor", "cond.connector_out"), 2, _blip3o_instruction,
         template="model.language_model.layers.{}.mlp.down_proj", edit_scale=2.0, batch_tol=1,
         shapes={"cond.tensor": (3, 4, 32), "cond.connector_out": (3, 4, 32), "gen.block.1": (3, 4, 32)}),
    # Ovis-U1 on a stand-in loaded through trust_remote_code: [h_L ; h_{L-1}] over the LM positions (blank-image
    # tokens included); the generator runs inside the remote code, so no generator sites
    Case("ovis_u1", "OvisU1Adapter", 32, 1002, ("cond.tensor",), 0, _ovis_u1_inputs, edit_scale=2.0,
         shapes={"cond.tensor": (3, 110, 64)}),
    # Janus draws codes (discrete): on the tiny random LM a relative update of 0.5 moves the head's logits
    # by ~0.4 and no draw, 2.0 changes some codes; the trace teacher-forces seeded codes, so only the
    # BOI slot is what generation reads, and the decoder (on argmax codes) is left out of the comparison
    Case("janus", "JanusAdapter", 64, 1003, ("cond.tensor", "cond.head_proj"), 9, _janus_image_mode,
         edit_scale=2.0, trace_slots="first", skip="gen.block.", gen_sites=("gen.logits",),
         shapes={"cond.tensor": (3, 16, 64), "gen.logits": (3, 16, 64), "gen.block.8": (3, 32, 32, 32)}),
]


def _param(c: Case):
    """OmniGen2's official code is opt-in (``-m omnigen2_official``) and skipped, with the reason, where it is missing."""
    if c.key != "omnigen2-official":
        return pytest.param(c, id=c.key)
    return pytest.param(c, id=c.key, marks=[pytest.mark.omnigen2_official,
                                            pytest.mark.skipif(OMNIGEN2_MISSING is not None, reason=str(OMNIGEN2_MISSING))])


@pytest.fixture(scope="module", params=[_param(c) for c in CASES])
def case(request):
    return request.param


@pytest.fixture(scope="module")
def adapter(case):
    return tiny_adapter(case.key)


@pytest.fixture(scope="module")
def cond(adapter):
    """``adapter.conditioning(PROMPTS)`` on the unedited model."""
    return adapter.conditioning(PROMPTS)


@pytest.fixture(scope="module")
def images(adapter):
    """``PROMPTS`` at seed 3, the unedited reference of the image checks."""
    return adapter.generate_images(PROMPTS, seed=3, steps=STEPS)


def _edit_path(a) -> str:
    return a.edit_module_template.format(a.edit_layers[0])


# --- declared from the config ---------------------------------------------------------------

def test_declared_from_the_config(case, adapter):
    a = adapter
    assert type(a).__name__ == case.adapter_class
    assert a.family == ("synthworld" if case.key.startswith("toy-") else "llama")
    if case.key in known_models():
        assert a.name == case.key
    elif not case.key.startswith("omnigen2"):  # loaded through the registry from its folder
        assert a.name == f"{case.key}:{tiny_path(case.key)}" and f"{case.key}:<path>" in known_models()
    assert a.num_layers == 4 and a.hidden_size == case.hidden and a.edit_layers == [0, 1] and a.rome_layer == 0
    for layer in range(a.num_layers):
        for name in ("layer", "mlp", "mlp_down", "mlp_up", "attn"):
            assert isinstance(a.module(getattr(a.paths, name).format(layer)), torch.nn.Module)
    for name in ("layers", "final_norm", "embed", "lm_head"):
        assert isinstance(a.module(getattr(a.paths, name)), torch.nn.Module)
    assert a.edit_module_template == case.template
    assert a.tokenizer.padding_side == "left" and a.tokenizer.is_fast
    trace = a.trace_module()
    assert trace.lm is a.lm  # the trace module holds the adapter's LM, not a copy
    for site in a.sites():  # every site names a module of the trace module
        trace.get_submodule(site.module)
    names = [s.name for s in a.sites()]  # in execution order
    text = [n for i in range(a.num_layers)
            for n in ([f"text.mlp.{i}"] if i in a.edit_layers else []) + [f"text.resid.{i}"]]
    blocks = [f"gen.block.{i}" for i in range(case.gen_blocks)]
    assert names == text + [*case.cond_sites, *case.gen_sites] + blocks


# --- text ---------------------------------------------------------------------------------------

def test_text_side(case, adapter):
    a = adapter
    out = a.generate_text(["The color of the zib is", "a"], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    logits = a.next_token_logits(["The color of the zib is", "a"])
    assert logits.shape == (2, case.vocab) == (2, len(a.tokenizer))
    with torch.no_grad():  # left padding + explicit positions = the prompt alone
        enc = a.tokenizer(["The color of the zib is"], return_tensors="pt")
        want = a.lm(**enc).logits[:, -1]
    torch.testing.assert_close(logits[:1], want, rtol=0, atol=1e-5)


# --- images -------------------------------------------------------------------------------------

def test_images_shape_seed_and_independence(case, adapter, images):
    a, imgs = adapter, images
    assert a.image_hw() == (32, 32) and imgs.shape == (2, 32, 32, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(a.generate_images(PROMPTS, seed=3, steps=STEPS), imgs)
    alone = np.concatenate([a.generate_images([p], seed=3, steps=STEPS) for p in PROMPTS])
    # image i depends on prompts[i] and the seed only (up to the rounding of a padded batch)
    assert np.abs(alone.astype(int) - imgs.astype(int)).max() <= case.batch_tol
    assert not np.array_equal(a.generate_images(PROMPTS[:1], seed=4, steps=STEPS), imgs[:1])
    assert not np.array_equal(imgs[0], imgs[1])
    assert a.generate_images([], seed=3).shape == (0, 32, 32, 3)


def test_draws_from_a_given_conditioning(case, adapter, images):
    """``generate_from_conditioning(conditioning(p))`` draws ``generate_images(p)`` (the causal analyses'
    gain-1 image is the judged one); a family that cannot says so clearly."""
    a = adapter
    from unike_interp.conditioning import stack_conditionings

    if type(a).generate_from_conditioning is UMMAdapter.generate_from_conditioning:
        with pytest.raises(NotImplementedError, match="generate_from_conditioning"):
            a.generate_from_conditioning(a.conditioning(PROMPTS[:1]), seed=3, steps=STEPS)
        return
    alone = [a.conditioning([p]) for p in PROMPTS]
    got = a.generate_from_conditioning(stack_conditionings(alone), seed=3, steps=STEPS)
    assert np.abs(got.astype(int) - images.astype(int)).max() <= case.batch_tol
    np.testing.assert_array_equal(a.generate_from_conditioning(alone[0], seed=3, steps=STEPS),
                                  a.generate_images(PROMPTS[:1], seed=3, steps=STEPS))


# --- conditioning -------------------------------------------------------------------------------

def test_conditioning_shape_mask_positions(cond):
    B, S, C = cond.hidden.shape
    assert B == 2 and cond.mask.shape == cond.lm_positions.shape == (B, S) and torch.isfinite(cond.hidden).all()
    assert set(cond.mask.unique().tolist()) <= {0, 1} and (cond.mask.sum(1) > 0).all()
    assert ((cond.lm_positions == -1) == (cond.mask == 0)).all()  # -1 exactly on padding
    for b in range(B):  # real slots read increasing LM positions
        pos = cond.lm_positions[b][cond.mask[b].bool()]
        assert (pos >= 0).all() and (pos[1:] > pos[:-1]).all()


# --- edits --------------------------------------------------------------------------------------

def test_weight_edit_reaches_image_and_restores(case, adapter, cond, images):
    a, base, cond0 = adapter, images, cond.hidden
    applied = random_delta(a, _edit_path(a), scale=case.edit_scale).apply(a.lm)
    try:
        edited = a.generate_images(PROMPTS, seed=3, steps=STEPS)
        assert not torch.equal(a.conditioning(PROMPTS).hidden, cond0)
    finally:
        applied.remove()
    assert np.abs(edited.astype(int) - base.astype(int)).max() > 0
    np.testing.assert_array_equal(a.generate_images(PROMPTS, seed=3, steps=STEPS), base)  # bit for bit
    assert torch.equal(a.conditioning(PROMPTS).hidden, cond0)
    if case.past_readout:
        assert_edit_changes_text_not_image(a, random_delta(a, case.past_readout, scale=2.0), PROMPTS, base, seed=3,
                                           steps=STEPS)


# --- recording ----------------------------------------------------------------------------------

def test_recorder_reads_the_trace_output(case, adapter):
    a = adapter
    _, rec, cond = recording(case.key)
    args, extra = a.trace_inputs(RECORD_PROMPTS, seed=0)
    with torch.no_grad():
        out = a.trace_module()(*args)
    assert isinstance(out, TraceOutput) and out.generator_out.shape[0] == 3
    traced = out.conditioning
    np.testing.assert_allclose(rec.values["cond.tensor"], traced.hidden.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(rec.cond_mask, traced.mask.numpy())
    np.testing.assert_array_equal(rec.cond_lm_positions, traced.lm_positions.numpy())
    # the trace reproduces what the generator gets (the slots it can: see Case.trace_slots)
    np.testing.assert_array_equal(rec.cond_mask, cond.mask.numpy())
    keep = np.broadcast_to({"all": True, "real": cond.mask.bool().numpy(),
                            "first": np.arange(cond.mask.shape[1]) == 0}[case.trace_slots], cond.mask.shape)
    np.testing.assert_allclose(rec.values["cond.tensor"][keep], cond.hidden.numpy()[keep], rtol=0, atol=1e-5)
    # every value: one row per prompt; text sites (B, 2, H) at the subject's and the prompt's last token
    T = extra["attention_mask"].shape[1]
    assert (rec.token_positions[:, 1] == T - 1).all()
    for name, v in rec.values.items():
        assert v.shape[0] == 3, name
        if name.startswith("text."):
            assert v.shape == (3, 2, a.hidden_size), name
    for name, shape in case.shapes.items():
        assert rec.values[name].shape == shape, name
    # text sites at the prompt's last token equal the language model on the family's own tokens
    ids, mask, last = case.tokens(a, RECORD_PROMPTS)  # token ids, or the LM's keyword inputs (visual tokens)
    with torch.no_grad():
        inputs = ids if isinstance(ids, dict) else {"input_ids": ids, "attention_mask": mask}
        hs = a.lm(**inputs, output_hidden_states=True).hidden_states
    for i in range(a.num_layers - 1):  # the last entry of hidden_states is after the final norm
        want = np.stack([hs[i + 1][b, int(last[b])].numpy() for b in range(3)])
        np.testing.assert_allclose(rec.values[f"text.resid.{i}"][:, 1], want, rtol=0, atol=1e-4)
    # the subject's last token, inside the user's prompt; a prompt without its subject: -1 and NaN
    for b, subj in enumerate(RECORD_SUBJECTS[:2]):
        at = int(rec.token_positions[b, 0])
        assert int(extra["input_ids"][b][at]) == a.tokenizer(" " + subj, add_special_tokens=False)["input_ids"][-1]
        assert int(extra["offset_mapping"][b][at][1]) > 0
    assert rec.token_positions[2, 0] == -1 and np.isnan(rec.values["text.resid.0"][2, 0]).all()


def test_intervention_equals_weight_edit(case, adapter):
    """An edit given to the recorder as an activation intervention records what the same edit in
    the weights records (to float32 rounding: ``W x + dW x`` against ``(W + dW) x``, summed in
    another order), and it moves the conditioning."""
    a = adapter
    r, unedited, _ = recording(case.key)
    d = random_delta(a, _edit_path(a))
    inter = r.record(RECORD_PROMPTS, RECORD_SUBJECTS, delta=d)
    applied = d.apply(a.lm)
    try:
        weight = r.record(RECORD_PROMPTS, RECORD_SUBJECTS)
    finally:
        applied.remove()
    for k in unedited.values:
        if case.skip is None or not k.startswith(case.skip):
            np.testing.assert_allclose(inter.values[k], weight.values[k], rtol=2e-5, atol=1e-4)
    assert np.nanmax(np.abs(weight.values["cond.tensor"] - unedited.values["cond.tensor"])) > case.moved


# --- the benchmark, end to end, on real-model adapters ------------------------------------------

#: What the activation store holds per case and state (literal shapes where the family fixes them).
STORE_SHAPES = {"janus": {"cond.tensor": (16, 64), "text.resid.3": (2, 64), "gen.block.8": (32, 32, 32)},
                "lumina2": {"text.resid.3": (2, 64)},
                "blip3o": {"cond.tensor": (4, 32), "text.resid.3": (2, 32), "gen.block.1": (4, 32)},
                "ovisimage": {"text.resid.3": (2, 64)},
                "ovis_u1": {"text.resid.3": (2, 32)}}


@pytest.mark.parametrize("family", list(STORE_SHAPES))
def test_bench_end_to_end(family, tmp_path):
    from PIL import Image

    from unike_interp.bench.pipeline import run_bench
    from unike_interp.bench.spec import RunSpec
    from unike_interp.data.io import write_unike
    from unike_interp.data.synthworld import generate_world, text_corpus
    from unike_interp.interp.analyze import analyze_run
    from unike_interp.interp.store import ActivationStore

    model = f"{family}:{tiny_path(family)}"
    world = generate_world(0)
    data = write_unike(world.records[:3], tmp_path / "UniKE.json")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(text_corpus(world, seed=0)[:300]) + "\n", encoding="utf-8")
    cfg = RunSpec(model=model, editor="rome", protocol="single", cases=2, data=str(data),
                  judge="verifier", image_locality_probes=1, text_locality_probes=4, bootstrap=20,
                  hparams={"stats_samples": 2000, "n_prefixes": 2}, stats_corpus=str(corpus),
                  sample_steps=STEPS, reasoning_tokens=8, device="cpu",
                  model_options={**({"pipeline_kwargs": PIPELINE_KWARGS[family]} if family in PIPELINE_KWARGS else {}),
                                 **({"trust_remote_code": True} if family in REMOTE_CODE else {})})
    out = tmp_path / "run"
    table = run_bench(cfg, out, progress=False, echo=lambda s: None)
    entries = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    cases = [e for e in entries if e["type"] == "case"]
    points = [e for e in entries if e["type"] == "point"]
    assert len(cases) == 2 and len(points) == 2 and table["n_cases"] == 2
    for e in cases:
        for s in e["stages"].values():
            assert s["pre"]["generation_error"] is None and s["pre"]["vqa_gt"]["error"] is None
            assert np.asarray(Image.open(out / s["pre"]["image"])).shape == (32, 32, 3)
            assert s["direct"]["generation_error"] is None and s["direct"]["vqa"]["verdict"] is not None
    assert all(len(p["image_locality"]) == 1 and p["image_locality"][0]["pre"]["verdict"] is not None for p in points)
    assert json.loads((out / "config.json").read_text())["model_name"] == model
    # the interpretability layer runs unchanged on the real-model adapter
    if family in REMOTE_CODE:  # the run folder records trust_remote_code; analyzing it must be allowed again
        with pytest.raises(PermissionError, match="pass --trust-remote-code to analyze it"):
            analyze_run(out, progress=False, echo=lambda s: None, figures=False)
    summary = analyze_run(out, progress=False, echo=lambda s: None, figures=False,
                          trust_remote_code=family in REMOTE_CODE)
    assert summary["n_cases"] == 2 and summary["model"] == model
    assert "edit_strength" in summary["aucs"]["vqa_direct"] and "cond_drift" in summary["aucs"]["vqa_direct"]
    assert "skipped" in summary["probes"]  # value probes need every subject's values (SynthWorld only)
    causal = json.loads((out / "analysis" / "stats.json").read_text())
    if family in ("janus", "ovis_u1"):  # no given conditioning to draw from (token by token; remote code), and it says so
        assert "generate_from_conditioning" in causal["interventions"]["skipped"]
    else:  # the same causal analyses as on SynthWorld, through the pipeline's prompt_embeds
        iv = causal["interventions"]["summary"]
        assert iv["n_cases"] == 2 and iv["bench_agreement"] == 1.0
        assert causal["tracing"]["n_cases"] == 2 and causal["tracing"]["edit_layers"] == [0]
        assert np.isfinite(np.array(causal["tracing"]["restore"]["mean_effect"], dtype=float)).any()
    assert "outcomes" in causal["knowledge_source"]
    assert (out / "analysis" / "activations.h5").exists()
    store = ActivationStore(out / "analysis" / "activations.h5")
    stored = dict(store.iter_cases())
    assert len(stored) == 2
    for case_id in stored:
        for state in ("pre", "post"):
            acts = store.read(case_id, state, "direct")
            for name, shape in STORE_SHAPES[family].items():
                assert acts[name].shape == shape, name
            assert np.isfinite(acts["cond.tensor"]).all()
        assert not np.array_equal(store.read(case_id, "pre", "direct")["cond.tensor"],
                                  store.read(case_id, "post", "direct")["cond.tensor"])  # the edit reached it
    stats = json.loads((out / "analysis" / "stats.json").read_text())
    assert all(np.isfinite(v["cond_drift"]) and v["cond_drift"] > 0 for v in stats["per_case"].values())


# --- the registry ---------------------------------------------------------------------------------

def test_registry_table_and_errors(capsys):
    from unike_interp.cli import main

    known = known_models()
    assert list(known)[:3] == ["toy-direct", "toy-queries", "toy-bottleneck"]
    assert {f"{k}:<path>" for k in PRESETS} | {"janus:<path>", "omnigen2:<path>", "blip3o:<path>", "ovis_u1:<path>"} <= set(known)
    req = model_requirements()
    assert set(req) == set(known) and all(req[k]["description"] == known[k] for k in known)
    for key, preset in PRESETS.items():  # every preset, described from its own fields
        needs = " ".join(req[f"{key}:<path>"]["needs"])
        assert preset.pipeline in needs and preset.lm_class in needs
        assert req[f"{key}:<path>"]["description"].startswith(preset.description)
    assert req["toy-direct"]["missing"] == [] and req["janus:<path>"]["missing"] == []
    assert req["blip3o:<path>"]["missing"] == []  # stock transformers + diffusers parts only
    assert all(v["missing"] is None for v in model_requirements(check=False).values())
    for key in known:  # a family that loads from a folder says how to name it
        if key.endswith(":<path>"):
            with pytest.raises(KeyError, match=re.escape(key)):
                load_model(key[: -len("<path>")])
    with pytest.raises(KeyError, match="unknown model 'nope'; known: toy-direct"):
        load_model("nope")
    with pytest.raises(ValueError, match="world_dir applies to the SynthWorld models only"):
        load_model("janus:/x", world_dir="/w")
    with pytest.raises(ValueError, match="pipeline_kwargs and device_map apply to real models only"):
        load_model("toy-direct", device_map="auto")
    with pytest.raises(ValueError, match="Janus is not a diffusers pipeline"):
        load_model("janus:/x", pipeline_kwargs={"height": 8})
    with pytest.raises(ValueError, match="device_map is not supported for OmniGen2 yet"):
        load_model("omnigen2:/x", device_map="auto")
    with pytest.raises(ValueError, match="device_map is not supported for BLIP3o yet"):
        load_model("blip3o:/x", device_map="auto")
    assert main(["models", "--json"]) == 0  # `unike models`: every name, what it needs, what is missing
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == json.loads(json.dumps(req))
    for key, info in req.items():
        assert any(line.startswith(key) for line in lines)
        for need in info["needs"]:
            assert any(line.strip() == f"needs: {need}" for line in lines), need


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


def test_runtime_never_imports_the_test_models():
    src = Path(__file__).resolve().parents[1] / "src" / "unike_interp"
    pattern = re.compile(r"^\s*(from|import)\s+[\w.]*\btesting\b|^\s*from\s+[\w.]+\s+import\s.*\btesting\b", re.M)
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if "testing" not in p.relative_to(src).parts and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
