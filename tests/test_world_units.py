"""Unit tests of the SynthWorld model parts on tiny random models (no training to convergence)."""

import numpy as np
import pytest
import torch

from unike_interp.data.synthworld import generate_world, text_corpus
from unike_interp.devices import resolve_device, resolve_dtype
from unike_interp.models.base import default_edit_layers
from unike_interp.world.conditioning import ConditionEncoder, position_ids_from_mask
from unike_interp.world.generator import (
    GeneratorConfig,
    build_dit,
    flow_matching_loss,
    images_to_tensor,
    sample,
    tensor_to_images,
    train_generator,
)
from unike_interp.world.lm import LMConfig, build_lm, train_lm
from unike_interp.world.tokenizer import train_tokenizer
from unike_interp.world.verifier import Verifier, scene_labels, verifier_dataset


@pytest.fixture(scope="module")
def small():
    world = generate_world(seed=0, n_subjects=18)
    corpus = text_corpus(world)
    tok = train_tokenizer(corpus, vocab_size=350)
    cfg = LMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, epochs=0.05, batch_size=16,
                   warmup_steps=2)
    lm = build_lm(cfg, tok).eval()
    return world, corpus, tok, cfg, lm


@pytest.mark.parametrize("n, expected", [(32, [4, 5, 6, 7, 8]), (28, [3, 4, 5, 6, 7]), (4, [0, 1]), (2, [0]), (1, [0])])
def test_default_edit_layers(n, expected):
    assert default_edit_layers(n) == expected


def test_tokenizer_bos_round_trip_and_names_split(small):
    world, _, tok, _, _ = small
    enc = tok("The color of the zib is")
    assert enc["input_ids"][0] == tok.bos_token_id
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "The color of the zib is"
    lengths = [len(tok(" " + s.name, add_special_tokens=False)["input_ids"]) for s in world.subjects]
    assert max(lengths) > 1
    assert tok.padding_side == "left"


def test_position_ids_from_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


@pytest.mark.parametrize("pathway", ["direct", "queries", "bottleneck"])
def test_conditioning_shapes_map_and_batch_invariance(small, pathway):
    _, _, tok, cfg, lm = small
    enc = ConditionEncoder(pathway, cfg.hidden_size, num_queries=3, bottleneck_dim=8)
    prompts = ["a zib", "two zibs side by side beside a grey pebble"]
    batch = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        c = enc(lm, batch["input_ids"], batch["attention_mask"])
        alone = tok(prompts[:1], return_tensors="pt", padding=True)
        c1 = enc(lm, alone["input_ids"], alone["attention_mask"])
    T = batch["input_ids"].shape[1]
    width = {"direct": cfg.hidden_size, "queries": cfg.hidden_size, "bottleneck": 8}[pathway]
    S = 3 if pathway == "queries" else T
    assert c.hidden.shape == (2, S, width) and c.mask.shape == (2, S)
    if pathway == "queries":
        assert c.lm_positions[0].tolist() == [T, T + 1, T + 2]
        torch.testing.assert_close(c.hidden[0], c1.hidden[0], atol=1e-5, rtol=1e-4)
    else:
        # the short prompt is left-padded: its first slots are padding and map to -1
        n_pad = int((batch["attention_mask"][0] == 0).sum())
        assert c.lm_positions[0, :n_pad].tolist() == [-1] * n_pad
        assert c.lm_positions[0, n_pad:].tolist() == list(range(n_pad, T))
        # the same prompt alone gives the same conditioning at its real tokens
        torch.testing.assert_close(c.hidden[0, n_pad:], c1.hidden[0], atol=1e-5, rtol=1e-4)


def test_direct_conditioning_is_the_lm_last_hidden_state(small):
    _, _, tok, cfg, lm = small
    enc = ConditionEncoder("direct", cfg.hidden_size)
    b = tok(["a zib"], return_tensors="pt")
    with torch.no_grad():
        c = enc(lm, b["input_ids"], b["attention_mask"])
        ref = lm(**b, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(c.hidden, ref)


def test_bottleneck_is_projection_of_last_two_layers(small):
    _, _, tok, cfg, lm = small
    enc = ConditionEncoder("bottleneck", cfg.hidden_size, bottleneck_dim=8)
    b = tok(["a zib"], return_tensors="pt")
    with torch.no_grad():
        c = enc(lm, b["input_ids"], b["attention_mask"])
        hs = lm(**b, output_hidden_states=True).hidden_states
        ref = torch.cat([hs[-1], lm.model.norm(hs[-2])], -1) @ enc.proj.weight.T + enc.proj.bias
    torch.testing.assert_close(c.hidden, ref, atol=1e-5, rtol=1e-4)


def test_unknown_pathway():
    with pytest.raises(ValueError, match="unknown pathway"):
        ConditionEncoder("sideways", 8)
    with pytest.raises(ValueError, match="pathway"):
        GeneratorConfig(pathway="sideways")


def test_image_tensor_round_trip():
    imgs = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    x = images_to_tensor(imgs)
    assert x.shape == (3, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(tensor_to_images(x), imgs)


def test_lm_training_is_deterministic(small):
    _, corpus, tok, cfg, _ = small
    a, b = build_lm(cfg, tok), build_lm(cfg, tok)
    train_lm(a, tok, corpus[:64], cfg, progress=False)
    train_lm(b, tok, corpus[:64], cfg, progress=False)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_lm_rejects_overlong_lines(small):
    _, _, tok, cfg, _ = small
    short = LMConfig(**{**cfg.to_dict(), "max_positions": 4})
    with pytest.raises(ValueError, match="exceed max_positions=4"):
        train_lm(build_lm(short, tok), tok, ["a long line with many words in it"], short, progress=False)


@pytest.mark.parametrize("pathway", ["direct", "queries", "bottleneck"])
def test_generator_train_step_sample_and_frozen_lm(small, pathway):
    _, _, tok, cfg, lm = small
    g = GeneratorConfig(pathway=pathway, num_layers=1, num_heads=2, head_dim=8, num_queries=2, bottleneck_dim=8,
                        steps=3, batch_size=4, warmup_steps=1)
    enc = ConditionEncoder(pathway, cfg.hidden_size, g.num_queries, g.bottleneck_dim)
    dit = build_dit(g, enc.out_dim)
    before = {n: p.clone() for n, p in lm.named_parameters()}
    dit_before = [p.clone() for p in dit.parameters()]
    imgs = np.zeros((2, 32, 32, 3), np.uint8)
    train_generator(dit, enc, lm, tok, ["a zib", "a red circle"], imgs, g, progress=False)
    assert all(torch.equal(p, before[n]) for n, p in lm.named_parameters())  # LM frozen
    assert all(p.requires_grad for p in lm.parameters())  # and its flags restored
    assert any(not torch.equal(a, b) for a, b in zip(dit_before, dit.parameters()))
    b = tok(["a zib"], return_tensors="pt")
    null = tok([""], return_tensors="pt")
    with torch.no_grad():
        c = enc(lm, b["input_ids"], b["attention_mask"])
        n = enc(lm, null["input_ids"], null["attention_mask"])
        noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        out = sample(dit, c, n, steps=2, guidance=2.0, noise=noise)
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()


def test_flow_matching_loss_is_zero_for_an_oracle():
    """A 'model' returning exactly eps - x0 has zero loss: checks the target's sign convention."""
    x0 = torch.randn(2, 3, 8, 8)
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    eps = torch.randn(x0.shape, generator=gen_b)

    class Oracle(torch.nn.Module):
        def forward(self, xt, hidden, mask, timestep):
            return eps - x0

    from unike_interp.world.conditioning import Conditioning

    cond = Conditioning(torch.zeros(2, 1, 4), torch.ones(2, 1), torch.zeros(2, 1))
    assert float(flow_matching_loss(Oracle(), x0, cond, gen_a)) == pytest.approx(0.0, abs=1e-10)


def test_verifier_shapes_and_labels():
    images, labels = verifier_dataset(6, seed=0)
    assert images.shape == (6, 32, 32, 3)
    assert set(labels) == {"color", "shape", "size", "pattern", "material", "location", "affiliation",
                           "occupation", "creator"}
    model = Verifier(width=4)
    out = model(images_to_tensor(images))
    assert out["color"].shape == (6, 8) and out["size"].shape == (6, 3)
    read = model.read_values(images)
    assert len(read) == 6 and set(read[0]) == set(labels)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float7")


def test_synthdit_without_pooling_is_plain_pixart_and_pooling_changes_only_through_the_hook():
    g = GeneratorConfig(num_layers=1, num_heads=2, head_dim=8, pooled=False)
    plain = build_dit(g, 12)
    pooled = build_dit(GeneratorConfig(**{**g.to_dict(), "pooled": True}), 12)
    pooled.transformer.load_state_dict(plain.transformer.state_dict())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    h = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(1))
    m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    t = torch.tensor([500.0, 100.0])
    with torch.no_grad():
        ref = plain.transformer(x, encoder_hidden_states=h, encoder_attention_mask=m, timestep=t, return_dict=False)[0]
        assert torch.equal(plain(x, h, m, t), ref)
        torch.nn.init.zeros_(pooled.pooled_embedder[-1].weight)
        torch.nn.init.zeros_(pooled.pooled_embedder[-1].bias)
        torch.testing.assert_close(pooled(x, h, m, t), ref)  # a zero pooled embedding changes nothing
        torch.nn.init.normal_(pooled.pooled_embedder[-1].weight)
        assert not torch.allclose(pooled(x, h, m, t), ref)
        # masked mean: padding slots do not matter
        h2 = h.clone()
        h2[0, 3:] = 100.0
        torch.testing.assert_close(pooled(x, h2, m, t)[0], pooled(x, h, m, t)[0])
        # and the hook leaves no state behind: the plain transformer call is unaffected afterwards
        out_after = pooled.transformer(x, encoder_hidden_states=h, encoder_attention_mask=m, timestep=t, return_dict=False)[0]
        torch.testing.assert_close(out_after, ref)


def test_verifier_judge_reads_the_records_category_and_flags_errors():
    from unike_interp.data.synthworld import generate_world, render
    from unike_interp.judges import VerifierJudge

    class Oracle(Verifier):
        """A 'verifier' that reads scenes perfectly (labels smuggled in), to test the judge logic."""

        def __init__(self, labels):
            super().__init__(width=4)
            self.labels = labels

        def read(self, images, batch_size=512):
            return {c: (v, np.full(len(v), 0.9)) for c, v in self.labels.items()}

    world = generate_world(seed=0)
    recs = [r for r in world.records if r.category in ("color", "location")][:2]
    scenes = [world.subject(r.subject).scene("single") for r in recs]
    images = np.stack([render(s) for s in scenes])
    judge = VerifierJudge(Oracle(scene_labels(scenes)))
    verdicts = judge.judge_batch(images, recs, ["stage_1", "stage_1"])
    for r, v in zip(recs, verdicts):  # the images show the old value: the edit target is not shown
        assert v.verdict is False and v.predicted == r.stage_1.gt and v.target == r.stage_1.gt_target
    pre = judge.judge(images[0], recs[0], "stage_1", target=recs[0].stage_1.gt)
    assert pre.verdict is True and pre.confidence == pytest.approx(0.9)
    bad = judge.judge(images[0], recs[0], "stage_1", target="chartreuse")
    assert bad.verdict is None and "not a SynthWorld" in bad.error
    with pytest.raises(ValueError, match="one case, stage"):
        judge.judge_batch(images, recs[:1], ["stage_1"])


def test_warmup_cosine_matches_the_formulas_the_shipped_world_was_trained_with():
    import math

    from unike_interp.world.schedule import warmup_cosine

    lr, total, warm = 2e-3, 1000, 100
    for step in (0, 50, 99, 100, 101, 500, 999, 1000, 1200):
        if step < warm:
            ref_lm = ref_gen = lr * (step + 1) / warm
        else:
            frac = (step - warm) / (total - warm)
            ref_lm = lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
            ref_gen = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        assert warmup_cosine(step, total, lr, warm) == ref_lm  # bit-for-bit
        assert warmup_cosine(step, total, lr, warm, floor=0.1) == ref_gen
    for step in (0, 10, 999):
        assert warmup_cosine(step, 1000, lr) == lr * 0.5 * (1 + math.cos(math.pi * step / 1000))
    assert warmup_cosine(1000, 1000, lr, 100, floor=0.1) == pytest.approx(0.1 * lr)
