"""What only the LM-text-encoder + DiT adapter does, on a tiny random Lumina2 pipeline (the contract
every adapter owes is ``test_adapter_contract.py``): one LM module as the pipeline's text encoder,
the conditioning against the pipeline's own transformer call, and the recorder's end-aligned rows
mapped back to the pipeline's."""

import numpy as np
import pytest
import torch

from unike_interp.models.textenc_dit import PRESETS, load_textenc_dit

from adapter_checks import PROMPTS, RECORD_PROMPTS, RECORD_SUBJECTS, STEPS, recording, tiny_adapter, tiny_path

pytestmark = pytest.mark.adapters


def test_the_pipeline_shares_the_lm():
    a = tiny_adapter("lumina2")
    assert type(a.lm).__name__ == "Gemma2ForCausalLM" and a.pipe.text_encoder is a.lm.model  # one module, two uses
    assert a.pipe.tokenizer.padding_side == "right" and a.tokenizer is not a.pipe.tokenizer
    with pytest.raises(KeyError, match="unknown"):
        load_textenc_dit(tiny_path("lumina2"), "nope")


def test_conditioning_is_what_the_transformer_receives():
    a = tiny_adapter("lumina2")
    calls = []
    h = a.generator.register_forward_pre_hook(lambda m, args, kw: calls.append(kw), with_kwargs=True)
    try:
        a.generate_images(PROMPTS, seed=0, steps=STEPS, guidance=4.0)
    finally:
        h.remove()
    assert len(calls) == 2 * STEPS  # conditional and unconditional call per step
    cond = a.conditioning(PROMPTS)
    assert cond.hidden.shape == (2, PRESETS["lumina2"].max_sequence_length, a.hidden_size)
    for kw in calls[::2]:
        assert torch.equal(kw["encoder_hidden_states"], cond.hidden)
        assert torch.equal(kw["encoder_attention_mask"], cond.mask)
    # the unconditional call: the empty negative prompt, encoded *without* the system prompt
    S = PRESETS["lumina2"].max_sequence_length
    neg = a.pipe.tokenizer([""], padding="max_length", max_length=S, truncation=True, return_tensors="pt")
    null = a.lm.model(neg["input_ids"], attention_mask=neg["attention_mask"], output_hidden_states=True)
    assert torch.equal(calls[1]["encoder_hidden_states"][0], null.hidden_states[-2][0])
    assert torch.equal(calls[1]["encoder_attention_mask"][0], neg["attention_mask"][0])
    n = cond.mask.sum(1)
    assert (n > len(a.pipe.tokenizer(a.prompt_prefix())["input_ids"]) - 1).all()
    assert (cond.lm_positions[0, : int(n[0])] == torch.arange(int(n[0]))).all() and (cond.lm_positions[0, int(n[0]):] == -1).all()
    # hidden_states[-2]: the output of the second-to-last decoder layer
    enc = a.pipeline_tokens(PROMPTS[:1])
    outs = {}
    h = a.lm.model.layers[a.num_layers - 2].register_forward_hook(lambda _m, _i, o: outs.setdefault("x", o))
    try:
        a.lm.model(enc["input_ids"], attention_mask=enc["attention_mask"])
    finally:
        h.remove()
    torch.testing.assert_close(outs["x"][0], cond.hidden[0], rtol=0, atol=1e-5)


def test_recorded_rows_map_to_the_pipeline():
    """The recorder's LM rows are the pipeline's, end-aligned: conditioning slots and the subject's
    token map back to the pipeline's right-padded rows by the shift ``T - n``."""
    a = tiny_adapter("lumina2")
    _, rec, cond = recording("lumina2")
    n = cond.mask.sum(1).numpy()
    T = int(n.max())
    for b in range(len(RECORD_PROMPTS)):
        keep = rec.cond_mask[b].astype(bool)
        np.testing.assert_array_equal(rec.cond_lm_positions[b][keep], np.arange(n[b]) + T - n[b])
        assert rec.cond_lm_positions[b][keep][-1] == rec.token_positions[b, 1] == T - 1
    # the subject is found inside the user's prompt, not the system prompt
    assert rec.token_positions[0, 0] >= T - n[0] and rec.token_positions[1, 0] >= T - n[1]
    enc = a.pipeline_tokens(RECORD_PROMPTS)
    for b, subj in enumerate(RECORD_SUBJECTS[:2]):
        at = int(rec.token_positions[b, 0] - (T - n[b]))  # back to the pipeline's (right-padded) row
        assert int(enc["input_ids"][b][at]) == a.tokenizer(" " + subj, add_special_tokens=False)["input_ids"][-1]
