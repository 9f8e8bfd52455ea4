import json
import numpy as np
import pytest

from unike_interp.data import find_subject, validate_records
from unike_interp.data.synthworld import (
    ATTRIBUTES,
    CATEGORIES,
    CATEGORY_VALUES,
    IMAGE_SEEN,
    RELATIONS,
    TEXT_ONLY,
    World,
    describe,
    generate_world,
    generator_examples,
    parse_caption,
    reasoning_prompt,
    reasoning_trace,
    text_corpus,
)
from unike_interp.data.synthworld.vocab import FACT_TEMPLATES, fill


@pytest.fixture(scope="module")
def world():
    return generate_world(seed=0)


def _dump(w):
    return json.dumps([r.to_dict() for r in w.records]) + json.dumps(w.to_dict())


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = generate_world(seed=7), generate_world(seed=7), generate_world(seed=8)
    assert _dump(a) == _dump(b)
    assert _dump(a) != _dump(c)
    assert {s.name for s in a.subjects} != {s.name for s in c.subjects}


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_structure_for_any_seed(seed):
    w = generate_world(seed=seed)
    assert len(w.subjects) >= 300 and len(w.records) == len(w.subjects)
    assert len({s.name for s in w.subjects}) == len(w.subjects)
    counts = w.counts()["per_category"]
    assert set(counts) == set(ATTRIBUTES) | set(RELATIONS)
    assert len(ATTRIBUTES) == 5 and len(RELATIONS) >= 3
    assert min(counts.values()) >= 30
    recs, problems = validate_records([r.to_dict() for r in w.records])
    assert problems == [] and len(recs) == len(w.records)
    for r in w.records:
        subj = w.subject(r.subject)
        expected_stages = 4 if r.source == "attribute" else 1
        assert len(r.stages) == expected_stages
        for st in r.stages.values():
            assert st.gt == subj.facts[r.category]
            assert st.gt_target != st.gt and st.gt_target in CATEGORY_VALUES[r.category]
            assert find_subject(st.prompt, r.subject)
            assert r.subject in st.image_prompt
        # all stages of a record edit the same fact to the same target
        assert len({(s.gt, s.gt_target) for s in r.stages.values()}) == 1
        # every stage has its own cloze prompt and image prompt
        assert len({s.prompt for s in r.stages.values()}) == len(r.stages)
        assert len({s.image_prompt for s in r.stages.values()}) == len(r.stages)
        assert r.extra["split"] == subj.split


def test_split_is_recorded_and_stratified(world):
    splits = {s.split for s in world.subjects}
    assert splits == {IMAGE_SEEN, TEXT_ONLY}
    for cat in CATEGORIES:
        recs = [r for r in world.records if r.category == cat]
        n_text = sum(r.extra["split"] == TEXT_ONLY for r in recs)
        assert n_text == round(len(recs) * 0.2)


def test_nonce_names_never_hide_in_each_other(world):
    names = [s.name for s in world.subjects]
    for n in names[:60]:
        assert not any(n in m for m in names if m != n)


def test_world_save_load_round_trip(world, tmp_path):
    p = world.save(tmp_path / "w.json")
    again = World.load(p)
    assert _dump(again) == _dump(world)


def test_corpus_states_every_fact_in_at_least_five_templates(world):
    corpus = set(text_corpus(world))
    for subj in world.subjects[:25] + [s for s in world.subjects if s.split == TEXT_ONLY][:10]:
        for cat in CATEGORIES:
            stated = [fill(t, subj.name, subj.facts[cat]) for t in FACT_TEMPLATES[cat]]
            assert len(stated) >= 5
            assert all(line in corpus for line in stated)
        # Q/A form, reasoning trace and image prompt are present too
        assert any(line.startswith("Q: ") and subj.name in line for line in corpus)
        assert f"Request: a{'n' if subj.name[0] in 'aeiou' else ''} {subj.name}." in corpus


def test_corpus_deterministic(world):
    assert text_corpus(world, seed=3) == text_corpus(world, seed=3)
    assert text_corpus(world, seed=3) != text_corpus(world, seed=4)
    a, b = text_corpus(world, seed=3), text_corpus(world, seed=4)
    assert len(a) == len(b)
    # only the order and the layouts of the reasoning traces depend on the seed
    facts = lambda lines: sorted(x for x in lines if "Reasoning:" not in x)  # noqa: E731
    assert facts(a) == facts(b)
    # every layout appears in some trace; all_layouts writes them all
    for phrase in ("side by side", "beside a grey pebble", "a flag showing"):
        assert any("Reasoning:" in x and phrase in x for x in a)
    full = text_corpus(world, all_layouts=True)
    assert len(full) > len(a)


def test_reasoning_trace_recalls_fact_and_caption_parses(world):
    subj = world.subjects[0]
    trace = reasoning_trace(subj, "color", "pair")
    assert f"The color of the {subj.name} is {subj.facts['color']}." in trace
    cap = parse_caption(trace)
    assert cap == describe(subj.scene("pair"))
    assert cap.startswith("two ") and subj.facts["color"] in cap
    edited = reasoning_trace(subj, "color", "single", value="blue" if subj.facts["color"] != "blue" else "red")
    assert parse_caption(edited) != parse_caption(reasoning_trace(subj, "color", "single"))
    assert parse_caption("no caption here") is None
    assert parse_caption("Reasoning: x. Caption: .") is None
    assert reasoning_prompt("a zib", "zib", "location").endswith("Reasoning:")


def test_generator_examples_never_show_text_only_subjects(world):
    ex = generator_examples(world, n_explicit=200)
    text_only = {s.name for s in world.subjects if s.split == TEXT_ONLY}
    named = {e.subject for e in ex if e.subject is not None}
    assert named and not (named & text_only)
    for e in ex:  # names are never substrings of each other or of the fixed vocabulary
        assert not any(n in e.prompt for n in text_only), e.prompt
    kinds = {e.kind for e in ex}
    assert kinds == {"implicit", "explicit", "caption"}
    # every scene is consistent with its subject's facts
    for e in ex:
        if e.subject:
            facts = world.subject(e.subject).facts
            assert all(getattr(e.scene, c) == facts[c] for c in CATEGORIES)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_subjects"):
        generate_world(n_subjects=3)
    with pytest.raises(ValueError, match="text_only_fraction"):
        generate_world(text_only_fraction=1.0)
    with pytest.raises(KeyError, match="no subject named"):
        generate_world().subject("nope")
