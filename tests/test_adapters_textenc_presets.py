"""What only the Sana and Qwen-Image presets of the LM-text-encoder + DiT adapter do, on tiny random
pipelines (the contract every adapter owes is ``test_adapter_contract.py``): the LM module the
pipeline encodes with, the conditioning against the pipeline's own transformer call (each
pipeline's token selection), the recorder's shifted rows mapped back to the pipeline's, and
accelerate's ``device_map``."""

import numpy as np
import pytest
import torch

from unike_interp.models.textenc_dit import PRESETS, load_textenc_dit

from adapter_checks import (PIPELINE_KWARGS, PROMPTS, RECORD_PROMPTS, RECORD_SUBJECTS, STEPS, recording, tiny_adapter,
                            tiny_path)

pytestmark = pytest.mark.adapters


@pytest.fixture(scope="module", params=["sana", "qwenimage"])
def preset(request):
    return request.param


@pytest.fixture(scope="module")
def adapter(preset):
    return tiny_adapter(preset)


def _hooked_calls(adapter, prompts, guidance):
    calls = []
    h = adapter.generator.register_forward_pre_hook(lambda m, args, kw: calls.append(kw), with_kwargs=True)
    try:
        adapter.generate_images(prompts, seed=0, steps=STEPS, guidance=guidance)
    finally:
        h.remove()
    return calls


def test_the_pipeline_shares_the_lm(preset, adapter):
    a = adapter
    assert a.preset is PRESETS[preset] and type(a.lm).__name__ == PRESETS[preset].lm_class
    assert a.pipe.text_encoder is (a.lm.model if preset == "sana" else a.lm)  # one module object, two uses
    assert a.tokenizer is not a.pipe.tokenizer


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


def test_recorded_rows_map_to_the_pipeline(adapter):
    """The recorder's LM rows are the pipeline's shifted so that every prompt ends at ``T - 1``:
    conditioning slots and the subject's token map back by that shift."""
    _, rec, cond = recording(adapter.preset.name)
    lay = adapter.layout(RECORD_PROMPTS)
    shift = lay.prompt_last.max() - lay.prompt_last
    keep = cond.mask.bool()
    np.testing.assert_array_equal(rec.cond_lm_positions[keep.numpy()],
                                  (cond.lm_positions + shift[:, None])[keep].numpy())
    T = int(lay.prompt_last.max()) + 1
    assert (rec.token_positions[:, 1] == T - 1).all()
    for b, subj in enumerate(RECORD_SUBJECTS[:2]):  # the subject inside the user's prompt
        at = int(rec.token_positions[b, 0] - shift[b])
        assert int(lay.input_ids[b, at]) == adapter.tokenizer(" " + subj, add_special_tokens=False)["input_ids"][-1]


def test_device_map_loads_the_same_model(preset, adapter):
    """accelerate's device_map (here everything on the CPU) gives the same conditioning and text."""
    a = load_textenc_dit(tiny_path(preset), preset, pipeline_kwargs=PIPELINE_KWARGS[preset], device_map={"": "cpu"})
    assert a.pipe.text_encoder is (a.lm.model if preset == "sana" else a.lm)
    torch.testing.assert_close(a.conditioning(PROMPTS).hidden, adapter.conditioning(PROMPTS).hidden, rtol=0, atol=0)
    torch.testing.assert_close(a.next_token_logits(PROMPTS[:1]), adapter.next_token_logits(PROMPTS[:1]), rtol=0, atol=0)
