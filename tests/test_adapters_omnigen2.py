"""What only the OmniGen2 adapter does (the contract every adapter owes is
``test_adapter_contract.py``): without OmniGen2's code (not importable here), the error that says
what is missing and how to install it (simulated even where the code is present), its registry
entry and `unike models` requirements, the instruction / layout logic, and, on a tiny random
Qwen2.5-VL driven by the stand-in pipeline and transformer of
:mod:`unike_interp.testing.omnigen2_standin`, the conditioning against what the pipeline encodes and
the arguments every pipeline call gets. The stand-ins check the adapter's plumbing, not OmniGen2."""

import sys
import types

import numpy as np
import pytest
import torch

from unike_interp.models import omnigen2 as og2
from unike_interp.models.omnigen2 import (OmniGen2ImportError, build_instruction, decoder_paths, end_aligned,
                                          text_decoder_prefix)
from unike_interp.testing.omnigen2_standin import chatml_tokenizer

from adapter_checks import PROMPTS, tiny_adapter

pytestmark = pytest.mark.adapters

SYSTEM = "You are a helpful assistant that generates high-quality images based on user instructions."

# --- the missing-code path --------------------------------------------------------------------------

def _hide_omnigen2(monkeypatch):
    """Make every ``import omnigen2...`` fail, whether or not the package is installed."""
    for name in [n for n in sys.modules if n == "omnigen2" or n.startswith("omnigen2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "omnigen2", None)


def test_missing_code_error_says_what_and_how(monkeypatch, tmp_path):
    from unike_interp.models import load_model

    _hide_omnigen2(monkeypatch)
    with pytest.raises(OmniGen2ImportError) as info:
        load_model(f"omnigen2:{tmp_path}")
    err = info.value
    assert isinstance(err, ImportError)
    msg = str(err)
    assert "import omnigen2.pipelines.omnigen2.pipeline_omnigen2" in msg  # which import failed
    assert "ModuleNotFoundError" in msg and "omnigen2" in msg  # the original error
    assert isinstance(err.__cause__, ImportError)
    for needed in ("git clone https://github.com/VectorSpaceLab/OmniGen2", "PYTHONPATH", "pip install -e",
                   "requirements.txt", "model_index.json", "mllm/", "processor/", "transformer/", "vae/", "scheduler/",
                   "omnigen2:/path/to/folder"):
        assert needed in msg, needed


def test_error_raised_inside_omnigen2_is_reported(monkeypatch, tmp_path):
    """A package that is found but fails while importing its own dependencies."""
    for name in [n for n in sys.modules if n == "omnigen2" or n.startswith("omnigen2.")]:
        monkeypatch.delitem(sys.modules, name)
    pkg = tmp_path / "src" / "omnigen2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('omnigen2 needs einops (simulated)')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    with pytest.raises(OmniGen2ImportError, match=r"RuntimeError: omnigen2 needs einops \(simulated\)") as info:
        og2.load_omnigen2(tmp_path)
    assert isinstance(info.value.__cause__, RuntimeError) and "git clone" in str(info.value)


def test_incomplete_module_and_missing_folder(monkeypatch, tmp_path):
    """With stand-in ``omnigen2`` modules: a module lacking its class is named; then a folder that
    is not an OmniGen2 checkpoint is a FileNotFoundError listing the missing parts."""
    _hide_omnigen2(monkeypatch)
    mods = {}
    for module, attr in og2.REQUIRED_IMPORTS:
        parts = module.split(".")
        for k in range(1, len(parts) + 1):
            mods.setdefault(".".join(parts[:k]), types.ModuleType(".".join(parts[:k])))
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    with pytest.raises(OmniGen2ImportError, match="has no OmniGen2Pipeline"):
        og2.import_omnigen2()
    for module, attr in og2.REQUIRED_IMPORTS:
        setattr(mods[module], attr, type(attr, (), {}))
    assert set(og2.import_omnigen2()) == {"pipeline", "transformer", "rotary"}
    (tmp_path / "mllm").mkdir()
    with pytest.raises(FileNotFoundError, match="missing model_index.json, processor, transformer, vae, scheduler"):
        og2.load_omnigen2(tmp_path)


def test_requirements_name_the_code_and_the_checkpoint():
    from unike_interp.models.registry import model_requirements

    og = model_requirements()["omnigen2:<path>"]
    assert any("git clone https://github.com/VectorSpaceLab/OmniGen2" in n for n in og["needs"])
    assert any("mllm" in n and "model_index.json" in n for n in og["needs"])
    try:
        import omnigen2  # noqa: F401
        has_code = True
    except Exception:
        has_code = False
    assert ("omnigen2 (package)" in og["missing"]) is not has_code


# --- pure logic -----------------------------------------------------------------------------------

def test_instruction_is_the_pipeline_chat_template():
    text = build_instruction(chatml_tokenizer(), "a red zib")
    assert text == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\na red zib<|im_end|>\n"
    assert og2.SYSTEM_PROMPT == SYSTEM
    assert not text.endswith("assistant\n")  # add_generation_prompt=False, as the pipeline


def test_end_aligned_layout():
    ids = torch.tensor([[5, 6, 7, 0, 0], [1, 2, 3, 4, 9]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    off = torch.arange(20).view(2, 5, 2)
    out_ids, out_mask, pos, out_off, index = end_aligned(ids, mask, off, pad_id=0)
    assert out_ids.tolist() == [[0, 0, 5, 6, 7, 0, 0], [1, 2, 3, 4, 9, 0, 0]]
    assert out_mask.tolist() == [[0, 0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0]]
    assert pos[0, 2:5].tolist() == [0, 1, 2] and pos[1, :5].tolist() == [0, 1, 2, 3, 4]
    assert index.tolist() == [[2, 3, 4, 5, 6], [0, 1, 2, 3, 4]]
    assert (out_ids[:, 4] != 0).all()  # every row's last real token in one column
    assert out_off[0, 2].tolist() == [0, 1] and out_off[0, 5].tolist() == [0, 0]


# --- the adapter on a tiny Qwen2.5-VL with stand-ins ------------------------------------------------

def test_the_lm_is_the_pipelines_mllm():
    a = tiny_adapter("omnigen2")
    assert a.lm is a.pipe.mllm and type(a.lm).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert text_decoder_prefix(a.lm) == "model.language_model" and a.paths == decoder_paths("model.language_model")
    assert a.pipe.processor.tokenizer.padding_side == "right" and a.tokenizer is not a.pipe.processor.tokenizer


def test_conditioning_is_what_the_pipeline_encodes():
    a = tiny_adapter("omnigen2")
    cond = a.conditioning(PROMPTS)
    # independently: the chat template, right padding to the longest, the mllm's hidden_states[-1]
    texts = [f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{p}<|im_end|>\n" for p in PROMPTS]
    tok_r = a.pipe.processor.tokenizer
    enc = tok_r(texts, padding="longest", return_tensors="pt")
    assert (enc.attention_mask[:, 0] == 1).all() and enc.attention_mask[0, -1] == 0  # right padding
    with torch.no_grad():
        want = a.lm(enc.input_ids, attention_mask=enc.attention_mask, output_hidden_states=True).hidden_states[-1]
        last = a.lm.model.language_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
    torch.testing.assert_close(want, last, rtol=0, atol=1e-6)  # hidden_states[-1] is the final-norm output
    assert torch.equal(cond.hidden, want) and torch.equal(cond.mask, enc.attention_mask)
    n = enc.attention_mask.sum(1)
    for b in range(2):
        assert cond.lm_positions[b, : n[b]].tolist() == list(range(int(n[b])))
        assert (cond.lm_positions[b, n[b]:] == -1).all()
    # the system message comes before the user's prompt
    assert a.prompt_prefix() == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
    assert a.conditioning([]).hidden.shape[0] == 0
    # the trace module reproduces it, and hands it to the transformer as positional argument 2 (mask: 4)
    args, extra = a.trace_inputs(PROMPTS, seed=0)
    trace = a.trace_module()
    trace.transformer.calls.clear()
    with torch.no_grad():
        out = trace(*args)
    sample, traced = out.generator_out, out.conditioning
    real = cond.mask.bool()
    torch.testing.assert_close(traced.hidden[real], cond.hidden[real], rtol=0, atol=1e-5)
    assert torch.equal(traced.mask, cond.mask)
    call = trace.transformer.calls[-1]
    assert call["text"] is traced.hidden and torch.equal(call["mask"], cond.mask)
    assert call["ref"] == [None, None] and len(call["freqs_cis"]) == 3
    assert sample.shape == (2, 4, a.trace_latent_size, a.trace_latent_size)
    ids = extra["input_ids"]
    assert (ids[:, -1] == ids[0, -1]).all()  # every row ends in the template's last token, at T - 1
    T = ids.shape[1]
    for b in range(2):  # lm_positions index the end-aligned columns of the prompt part
        pos = traced.lm_positions[b][real[b]]
        assert pos.max().item() == T - 1


def test_every_pipeline_call_gets_steps_guidance_and_one_generator_per_image():
    a = tiny_adapter("omnigen2")
    a.pipe.calls.clear()
    a.generate_images(PROMPTS, seed=3, steps=2)
    call = a.pipe.calls[-1]
    assert call["steps"] == 2 and call["guidance"] == a.guidance == 4.0 and call["output_type"] == "np"
    assert call["max_sequence_length"] is None and call["negative_prompt"] is None
    assert call["input_images"] == [None, None]  # one entry per prompt: prepare_image iterates them
    gens = call["generator"]
    assert len(gens) == 2 and all(g.device.type == "cpu" for g in gens)
    assert all(torch.equal(g.get_state(), gens[0].get_state()) for g in gens)  # one seed, one generator each
    a.pipeline_kwargs = {"height": 16, "width": 16}
    try:
        assert a.generate_images(PROMPTS[:1], seed=3, steps=1).shape == (1, 16, 16, 3)
        assert a.pipe.calls[-1]["input_images"] is None  # one prompt: prepare_image wraps it itself
        assert a.generate_images([], seed=3).shape == (0, 16, 16, 3)
    finally:
        a.pipeline_kwargs = {}


def test_the_stand_in_fails_where_omnigen2_fails_on_input_images():
    """The stand-in's ``prepare_image`` handles ``input_images`` as OmniGen2's does, so a
    text-to-image call that leaves them at ``None`` for two prompts (or passes ``[None]`` for one)
    fails here as it fails in OmniGen2 -- the bug that made every image of a batched run a failed
    generation."""
    a = tiny_adapter("omnigen2")
    with pytest.raises(TypeError, match="'NoneType' object is not iterable"):
        a.pipe(prompt=PROMPTS, num_inference_steps=1, output_type="np")
    with pytest.raises(ValueError, match="incorrect format"):  # read as one prompt's list holding a None image
        a.pipe(prompt=PROMPTS[:1], input_images=[None], num_inference_steps=1, output_type="np")
    assert og2.text_to_image_inputs(1) is None and og2.text_to_image_inputs(3) == [None] * 3
    # and the adapter's batches are its one-prompt images (up to a batch's float rounding)
    both = a.generate_images(PROMPTS, seed=5, steps=2)
    alone = np.concatenate([a.generate_images([p], seed=5, steps=2) for p in PROMPTS])
    assert np.abs(both.astype(int) - alone.astype(int)).max() <= 1


def test_pipeline_kwargs_reach_every_call_and_the_conditioning():
    """``max_sequence_length`` and ``negative_prompt`` (the study's settings) go to each pipeline
    call; the caption length also bounds :meth:`conditioning`; arguments the adapter sets are refused."""
    a = tiny_adapter("omnigen2")
    full = a.conditioning(PROMPTS[1:])
    a.pipeline_kwargs = {"max_sequence_length": 20, "negative_prompt": "blurry"}
    try:
        a.pipe.calls.clear()
        a.generate_images(PROMPTS, seed=3, steps=1)
        call = a.pipe.calls[-1]
        assert call["max_sequence_length"] == 20 and call["negative_prompt"] == "blurry"
        cut = a.conditioning(PROMPTS[1:])
        assert cut.hidden.shape[1] == 20 < full.hidden.shape[1]
        torch.testing.assert_close(cut.hidden, full.hidden[:, :20], rtol=0, atol=1e-5)  # causal: a prefix
    finally:
        a.pipeline_kwargs = {}
    for key, flag in (("num_inference_steps", "--sample-steps"), ("text_guidance_scale", "--guidance"),
                      ("input_images", "text-to-image only")):
        with pytest.raises(ValueError, match=flag):
            og2.OmniGen2Adapter("x", a.pipe, device=a.device, dtype=a.dtype, pipeline_kwargs={key: 1})
