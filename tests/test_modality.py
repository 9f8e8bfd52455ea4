"""Modality-aware editing (``modality_aware=true``): the conditioning target against a hand
computation, the update's rows, what it moves, bit-exact restore, and clear refusals."""

import pytest
import torch

from unike_interp.models.positions import prompt_subject_span
from unike_interp.editing import make_editor, make_hparams
from unike_interp.editing.modality import ModalityUnsupportedError, build_objective, preserved_names
from unike_interp.editing.stats import StatsCache
from unike_interp.models import load_model

from test_editing import assert_bit_exact, params, requests

FAST = {"stats_samples": 3000, "cond_steps": 40}


@pytest.fixture(scope="module")
def adapter():
    return load_model("toy-direct")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return StatsCache(tmp_path_factory.mktemp("stats"))


def test_hparams_validate_the_new_fields():
    hp = make_hparams("memit", "synthworld", {"modality_aware": True, "cond_templates": "a {}", "cond_layers": [1, 0, 1]})
    assert hp.cond_templates == ["a {}"] and hp.cond_layers == [0, 1]
    # the modality-aware variant's family defaults apply only with the flag, and overrides win
    assert hp.cond_positions == "last" and hp.cond_preserve == 150
    assert make_hparams("memit", "synthworld").cond_preserve == 0
    assert make_hparams("alphaedit", "synthworld").max_rel_update == 2.0
    assert make_hparams("alphaedit", "synthworld", {"modality_aware": True, "max_rel_update": 5.0}).max_rel_update == 5.0
    for bad in ({"cond_templates": ["a zib"]}, {"cond_positions": "first"}, {"cond_weight": -1.0},
                {"modality_aware": "yes"}, {"cond_preserve": -2}, {"cond_layers": []}):
        with pytest.raises(ValueError, match="--set|cond_|modality_aware"):
            make_hparams("memit", None, bad, source="--set")


@pytest.mark.parametrize("name", ["rome", "ft"])
def test_editors_without_a_joint_solve_refuse_it(name):
    with pytest.raises(ValueError, match="memit, pmet and alphaedit"):
        make_editor(name, {"modality_aware": True})


def test_target_by_hand(adapter):
    """Subject slots -> the mean of the caption's slots read from the new value; the slots before
    the subject are not in the loss; rows at every subject token."""
    reqs = requests(adapter, 2)
    hp = make_hparams("memit", "synthworld", {"modality_aware": True, "cond_positions": "subject", "cond_preserve": 0})
    obj = build_objective(adapter, reqs, hp, [0, 1])
    last = build_objective(adapter, reqs, make_hparams("memit", "synthworld", {"modality_aware": True, "cond_preserve": 0}),
                           [0, 1])
    assert [p.positions for p in last.prompts] == [p.positions[-1:] for p in obj.prompts]
    assert len(obj.prompts) == 2 and obj.info["cond_captions_from_model"] == 2
    for p, r in zip(obj.prompts, reqs):
        assert p.prompt == f"a {r.subject}"
        assert r.target_new in p.caption and p.caption != p.prompt
        c0 = adapter.conditioning([p.prompt])
        cap = adapter.conditioning([p.caption])
        a, b = prompt_subject_span(adapter, p.prompt, r.subject)
        va, vb = prompt_subject_span(adapter, p.caption, r.target_new)
        pos, cpos = c0.lm_positions[0], cap.lm_positions[0]
        v = cap.hidden[0][(cpos >= va) & (cpos <= vb)].float().mean(0)
        subj = (pos >= a) & (pos <= b)
        assert subj.sum() == b - a + 1 and p.positions == list(range(a, b + 1))
        torch.testing.assert_close(p.target[subj], v.expand(int(subj.sum()), -1))
        torch.testing.assert_close(p.target[~subj], c0.hidden[0][~subj].float())
        assert p.slots.tolist() == (pos >= a).tolist()


def test_zero_weight_is_the_plain_update(adapter, cache):
    reqs = requests(adapter, 3)
    plain = make_editor("memit", {**FAST}, family="synthworld", stats_cache=cache)
    d0 = plain.edit(adapter, reqs)
    d0.remove()
    ma = make_editor("memit", {**FAST, "modality_aware": True, "cond_weight": 0.0, "cond_preserve": 20, "cond_preserve_weight": 0.0}, family="synthworld", stats_cache=cache)
    d1 = ma.edit(adapter, reqs)
    d1.remove()
    assert set(d0.delta.deltas) == set(d1.delta.deltas)
    for k in d0.delta.deltas:
        torch.testing.assert_close(d1.delta.deltas[k], d0.delta.deltas[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["memit", "alphaedit"])
def test_it_moves_the_conditioning_toward_the_target(adapter, cache, name):
    """After the edit the generic prompt's loss (1.0 before) is far lower, the plain editor's is
    not; the edit still says the new value and is removed bit for bit."""
    reqs = requests(adapter, 4)
    ma = {**FAST, "modality_aware": True, "cond_positions": "subject", "cond_preserve": 0}
    obj = build_objective(adapter, reqs, make_hparams(name, "synthworld", ma), [0, 1])

    def loss_now():
        with torch.no_grad():
            return torch.cat([obj.losses(adapter.conditioning([obj.prompts[i].prompt for i in g]), g) for g in obj.groups])

    assert torch.allclose(loss_now(), torch.ones(4))
    before = params(adapter.lm)
    res = make_editor(name, {**FAST}, family="synthworld", stats_cache=cache).edit(adapter, reqs)
    plain = loss_now()
    res.remove()
    editor = make_editor(name, ma, family="synthworld", stats_cache=cache)
    res = editor.edit(adapter, reqs)
    try:
        moved = loss_now()
        lg = adapter.next_token_logits([r.prompt for r in reqs]).argmax(-1)
        hits = sum(int(lg[i]) == adapter.first_token_id(r.target_new) for i, r in enumerate(reqs))
        assert res.info["cond_prompts"] == 4 and res.info["cond_rows"] >= 8 and res.info["cond_target_reached"] > 0.8
        assert float(moved.mean()) < 0.5 < float(plain.mean()), (moved, plain)
        assert hits >= 3
    finally:
        res.remove()
    assert_bit_exact(adapter.lm, before)


def test_kept_names_and_other_layers(adapter, cache):
    reqs = requests(adapter, 2)
    corpus = ["the zib and the quorble", "a zib", "Request: a fendle.", "a quorble"]
    assert preserved_names(corpus, {"zib"}, 2, seed=0, templates=["a {}"]) == ["fendle", "quorble"]
    assert set(preserved_names(corpus, {"zib"}, 4, seed=0, templates=["a {}"])[2:]) <= {"and", "the", "Request"}
    assert preserved_names(corpus, {"zib"}, 9, seed=0) == ["Request", "and", "fendle", "quorble", "the"]
    editor = make_editor("memit", {**FAST, "modality_aware": True, "cond_layers": [2], "cond_preserve": 10},
                         family="synthworld", stats_cache=cache)
    assert editor.all_layers(adapter) == [0, 1, 2]
    res = editor.edit(adapter, reqs)
    res.remove()
    assert set(res.delta.deltas) == {f"model.layers.{i}.mlp.down_proj" for i in (0, 1, 2)}
    assert res.info["cond_kept_prompts"] == 10 and res.info["cond_prompts"] == 2


def test_learned_queries_take_the_whole_caption(cache):
    """No conditioning slot is read from the prompt's tokens: the target is the caption's queries."""
    a = load_model("toy-queries")
    reqs = requests(a, 1)
    obj = build_objective(a, reqs, make_hparams("memit", "synthworld", {"modality_aware": True, "cond_preserve": 0}),
                          [0, 1])
    p = obj.prompts[0]
    torch.testing.assert_close(p.target, a.conditioning([p.caption]).hidden[0].float())
    assert bool(p.slots.all())


def test_adapters_without_a_differentiable_conditioning_say_so(adapter):
    class NoGrad:
        name = "nograd"

        def differentiable_conditioning(self, prompts):
            raise NotImplementedError("nograd: this adapter exposes no differentiable conditioning")

    hp = make_hparams("memit", None, {"modality_aware": True})
    with pytest.raises(ModalityUnsupportedError, match="no differentiable conditioning"):
        build_objective(NoGrad(), requests(adapter, 1), hp, [0])


def _official(key):
    from adapter_checks import OMNIGEN2_MISSING

    return pytest.param(key, marks=[pytest.mark.omnigen2_official,
                                    pytest.mark.skipif(OMNIGEN2_MISSING is not None, reason=str(OMNIGEN2_MISSING))])


@pytest.mark.adapters
@pytest.mark.parametrize("key", ["qwenimage", "omnigen2", _official("omnigen2-official")])
def test_real_adapter_families_carry_it(key, tmp_path):
    """Through a real family's differentiable conditioning (tiny random weights, which write no
    caption: the spelled-out template is used and counted) the targets are optimised, the update
    puts them where they were optimised, and it is removed bit for bit. (What that does to the
    conditioning of random weights, whose keys are all alike, says nothing: every position moves.)"""
    from unike_interp.editing import EditRequest

    from adapter_checks import tiny_adapter

    a = tiny_adapter(key)
    req = [EditRequest("c1", "zib", "The color of the zib is", "blue", "red", "color")]
    ma = {"modality_aware": True, "cond_positions": "subject", "v_steps": 5, "cond_steps": 30, "stats_samples": 500,
          "max_rel_update": None, "mom2_update_weight": 1.0}
    obj = build_objective(a, req, make_hparams("memit", a.family, ma), [0])
    assert obj.info["cond_captions_from_template"] == 1 and obj.prompts[0].caption == "a zib, whose color is blue"

    before = params(a.lm)
    editor = make_editor("memit", ma, family=a.family, stats_cache=StatsCache(tmp_path / "stats"),
                         stats_corpus=["a zib is a thing", "the zab is red", "a small striped circle"] * 20)
    res = editor.edit(a, req)
    try:
        assert res.info["cond_loss_start"][0] == 1.0 and res.info["cond_loss_target"][0] < 0.5
        assert res.info["cond_target_reached"] > 0.5
    finally:
        res.remove()
    assert_bit_exact(a.lm, before)


@pytest.mark.adapters
def test_janus_says_why_it_cannot(tmp_path):
    from adapter_checks import tiny_adapter

    from unike_interp.editing import EditRequest

    a = tiny_adapter("janus")
    req = [EditRequest("c1", "zib", "The color of the zib is", "blue", "red", "color")]
    with pytest.raises(ModalityUnsupportedError, match="sampl"):
        build_objective(a, req, make_hparams("memit", None, {"modality_aware": True}), [0])
