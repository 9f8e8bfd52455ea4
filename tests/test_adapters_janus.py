"""What only the Janus adapter does, on a tiny random JanusForConditionalGeneration (the contract
every adapter owes is ``test_adapter_contract.py``): the LM view over Janus's own modules, the
hooked conditioning against the generation head's input and the teacher-forced trace, the tied
text head reaching the image, and an untied one that does not."""

import numpy as np
import pytest
import torch

from unike_interp.models.janus import load_janus
from unike_interp.testing.tiny import build_tiny_janus

from adapter_checks import (PROMPTS, RECORD_PROMPTS, assert_edit_changes_text_not_image, random_delta, recording,
                            tiny_adapter)

pytestmark = pytest.mark.adapters


def test_lm_view_shares_janus_modules():
    a = tiny_adapter("janus")
    assert type(a.lm).__name__ == "LlamaForCausalLM"
    assert a.lm.model is a.janus.model.language_model and a.lm.lm_head is a.janus.lm_head  # no copy
    assert a.module("model.layers.0.mlp.down_proj") is a.janus.model.language_model.layers[0].mlp.down_proj
    assert a.num_image_tokens == 16 and a.image_size == 32 and a.guidance == 5.0
    ids = a.image_tokens(PROMPTS)["input_ids"]
    assert (ids[:, -1] == a.boi_token_id).all()  # image mode ends in the begin-of-image token
    logits = a.next_token_logits(["The color of the zib is"])
    with torch.no_grad():  # the view's logits are Janus's own text logits
        enc = a.tokenizer(["The color of the zib is"], return_tensors="pt")
        want = a.janus(**enc).logits[:, -1]
    torch.testing.assert_close(logits, want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="guidance"):
        a.generate_images(PROMPTS[:1], guidance=1.0)


def test_conditioning_is_what_the_head_reads():
    a = tiny_adapter("janus")
    calls = []
    h = a.janus.model.generation_head.register_forward_pre_hook(lambda m, args: calls.append(args[0]))
    try:
        a.generate_images(PROMPTS, seed=2)
    finally:
        h.remove()
    assert len(calls) == a.num_image_tokens and calls[0].shape == (4, 64)  # CFG batch: cond + uncond
    cond = a.conditioning(PROMPTS, seed=2)
    assert cond.hidden.shape == (2, 16, 64) and (cond.mask == 1).all()
    assert torch.equal(cond.hidden, torch.stack([c[:2] for c in calls], dim=1))  # conditional half
    T = a.image_tokens(PROMPTS)["input_ids"].shape[1]
    assert (cond.lm_positions == T - 1 + torch.arange(16)).all()  # slot 0: the BOI token
    # the teacher-forced trace on the codes Janus drew reproduces the conditioning
    codes, _, _ = a.generate_codes(PROMPTS, seed=2, guidance=a.guidance, capture=False)
    args, _ = a.trace_inputs(PROMPTS, codes=codes)
    with torch.no_grad():
        traced = a.trace_module()(*args).conditioning
    torch.testing.assert_close(traced.hidden, cond.hidden, rtol=0, atol=1e-5)
    assert torch.equal(traced.lm_positions, cond.lm_positions)
    # slot 0 (the BOI state) does not depend on the seed; later slots do
    other = a.conditioning(PROMPTS, seed=5)
    torch.testing.assert_close(other.hidden[:, 0], cond.hidden[:, 0], rtol=0, atol=0)
    assert not torch.equal(other.hidden[:, 1:], cond.hidden[:, 1:])


def test_recorded_slots_follow_the_prompt():
    a = tiny_adapter("janus")
    _, rec, _ = recording("janus")
    T = a.trace_inputs(RECORD_PROMPTS)[1]["attention_mask"].shape[1]
    assert rec.cond_mask.shape == (3, 16) and (rec.cond_mask == 1).all()
    assert (rec.cond_lm_positions == T - 1 + np.arange(16)).all()  # slot 0: BOI, then the image tokens


def test_tied_text_head_reaches_the_image():
    """Janus reads the *final-norm* output, after every LM layer: no LM layer lies past the read-out
    point. The one module past it on the text side, lm_head, is tied to the input embeddings
    (JanusConfig.tie_word_embeddings, True by default), so an lm_head edit is an embedding edit and
    reaches the image as well as the text."""
    a = tiny_adapter("janus")
    assert a.janus.config.tie_word_embeddings
    assert a.lm.lm_head.weight is a.lm.model.embed_tokens.weight
    base = a.generate_images(PROMPTS[:1], seed=1)
    logits0 = a.next_token_logits(PROMPTS[:1])
    applied = random_delta(a, a.paths.lm_head, scale=2.0).apply(a.lm)
    try:
        assert not np.array_equal(a.generate_images(PROMPTS[:1], seed=1), base)
        assert not torch.equal(a.next_token_logits(PROMPTS[:1]), logits0)
    finally:
        applied.remove()
    np.testing.assert_array_equal(a.generate_images(PROMPTS[:1], seed=1), base)
    torch.testing.assert_close(a.next_token_logits(PROMPTS[:1]), logits0, rtol=0, atol=0)


def test_edit_past_the_read_out_leaves_the_image(tmp_path):
    """With an untied text head, the head lies past the read-out (the final norm feeds the image
    head): editing it changes the text and never the image."""
    a = load_janus(build_tiny_janus(tmp_path / "untied", seed=0, tie_word_embeddings=False))
    assert a.lm.lm_head.weight is not a.lm.model.embed_tokens.weight
    base = a.generate_images(PROMPTS[:1], seed=1)
    assert_edit_changes_text_not_image(a, random_delta(a, a.paths.lm_head, scale=2.0), PROMPTS[:1], base, seed=1)
