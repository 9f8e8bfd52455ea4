"""What SynthWorld's models learn from: a text corpus and (image prompt -> scene) pairs.

Text corpus (for the language model), for every subject including the text-only ones:

- every fact in each of its :data:`~.vocab.FACT_TEMPLATES` (>= 5 per category);
- question/answer forms (``"Q: What color is the zib? A: red."``);
- every stage's cloze prompt completed with the true value;
- reasoning traces: a drawing request, a recall sentence stating the fact, then a visual caption
  that spells out everything the picture shows (:func:`reasoning_prompt` + :func:`reasoning_trace`);
- the image prompts themselves (``"Request: two zibs side by side."``).

Generator pairs (for an image generator), image-seen subjects only for anything naming a subject:

- ``implicit``: the subject's name in a layout (``"a zib"``): the look must come from what the
  language model knows about the name;
- ``explicit``: a caption spelling out every value, for random scenes;
- ``caption``: a subject's own reasoning-style caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .render import Scene
from .vocab import (
    ATTRIBUTE_STAGE_TEXT,
    ATTRIBUTE_VALUES,
    CATEGORIES,
    CATEGORY_VALUES,
    FACT_TEMPLATES,
    LAYOUTS,
    RELATION_STAGE_TEXT,
    RELATION_VALUES,
    STAGE_LAYOUT,
    fill,
    layout_phrase,
)
from .world import IMAGE_SEEN, Subject, World

QA_TEMPLATE = "Q: {question} A: {value}."


def describe(scene: Scene) -> str:
    """A caption that spells out every value of ``scene`` (relations only where present).

    >>> describe(Scene("red", "circle", "small", "striped", "matte", location="desert"))
    'a small red striped matte circle in the desert'
    """
    thing = f"{scene.size} {scene.color} {scene.pattern} {scene.material} {scene.shape}"
    text = layout_phrase(scene.layout, thing)
    if scene.location:
        text += f" in the {scene.location}"
    extras = []
    if scene.affiliation:
        extras.append(f"the emblem of {scene.affiliation}")
    if scene.occupation:
        extras.append(f"the tool of a {scene.occupation}")
    if scene.creator:
        extras.append(f"the mark of {scene.creator}")
    if extras:
        text += ", with " + (", ".join(extras[:-1]) + " and " + extras[-1] if len(extras) > 1 else extras[0])
    return text


def recall_sentence(subject: str, category: str, value: str) -> str:
    """The stage-1 statement of a fact: the cloze prompt completed (``"The color of the zib is red."``)."""
    if category in ATTRIBUTE_STAGE_TEXT:
        prompt = ATTRIBUTE_STAGE_TEXT[category]["stage_1"][1]
    else:
        prompt = RELATION_STAGE_TEXT[category][1]
    return f"{fill(prompt, subject)} {value}."


def reasoning_prompt(image_prompt: str, subject: str, category: str) -> str:
    """The request that asks the model to recall a property and then caption the picture."""
    noun = {"location": "home", "affiliation": "guild", "occupation": "trade", "creator": "maker"}.get(category, category)
    return f"Request: {image_prompt}. Recall the {noun} of the {subject}, then describe the picture. Reasoning:"


def reasoning_trace(subject: Subject, category: str, layout: str, value: str | None = None) -> str:
    """What the model should write after :func:`reasoning_prompt` (leading space included).

    ``value`` overrides the subject's own value of ``category`` (the caption follows it).
    """
    v = subject.facts[category] if value is None else value
    scene = subject.scene(layout, **{category: v})
    return f" {recall_sentence(subject.name, category, v)} Caption: {describe(scene)}."


def parse_caption(text: str) -> str | None:
    """The caption out of a generated reasoning text, or ``None`` when there is none."""
    marker = "Caption:"
    pos = text.find(marker)
    if pos < 0:
        return None
    caption = text[pos + len(marker):].strip()
    caption = caption.split("\n")[0].strip()
    if caption.endswith("."):
        caption = caption[:-1].rstrip()
    return caption or None


def subject_lines(subject: Subject, rng: np.random.Generator | None = None) -> list[str]:
    """Every corpus line about one subject.

    Reasoning traces: one per category; for attribute categories its layout is drawn from ``rng``
    (all four layouts when ``rng`` is None), which keeps the corpus small without losing any
    layout across subjects.
    """
    s = subject.name
    lines: list[str] = []
    for cat in CATEGORIES:
        v = subject.facts[cat]
        lines += [fill(t, s, v) for t in FACT_TEMPLATES[cat]]
        if cat in ATTRIBUTE_STAGE_TEXT:
            for question, prompt in ATTRIBUTE_STAGE_TEXT[cat].values():
                lines.append(f"{fill(prompt, s)} {v}.")
                lines.append(QA_TEMPLATE.format(question=fill(question, s), value=v))
            layouts = list(STAGE_LAYOUT.values())
            image_prompts = [layout_phrase(layout, s) for layout in layouts]
        else:
            question, prompt, image_t = RELATION_STAGE_TEXT[cat][:3]
            lines.append(f"{fill(prompt, s)} {v}.")
            lines.append(QA_TEMPLATE.format(question=fill(question, s), value=v))
            layouts = ["single"]
            image_prompts = [fill(image_t, s, capitalize=False)]
        pairs = list(zip(layouts, image_prompts))
        if rng is not None and len(pairs) > 1:
            pairs = [pairs[int(rng.integers(len(pairs)))]]
        for layout, img in pairs:
            lines.append(f"{reasoning_prompt(img, s, cat)}{reasoning_trace(subject, cat, layout)}")
    for layout in LAYOUTS:
        lines.append(f"Request: {layout_phrase(layout, s)}.")
    return lines


def text_corpus(world: World, *, seed: int = 0, shuffle: bool = True, all_layouts: bool = False) -> list[str]:
    """The language model's corpus: all subjects' lines (text-only subjects included), shuffled.

    ``all_layouts=True`` writes a reasoning trace for every layout of every attribute fact
    (about 2.5x the tokens); by default one seeded layout per fact.
    """
    layout_rng = None if all_layouts else np.random.default_rng([seed, 5])
    lines = [line for subj in world.subjects for line in subject_lines(subj, layout_rng)]
    if shuffle:
        order = np.random.default_rng([seed, 3]).permutation(len(lines))
        lines = [lines[i] for i in order]
    return lines


@dataclass(frozen=True)
class GeneratorExample:
    """One (prompt -> scene) pair for training an image generator."""

    prompt: str
    scene: Scene
    kind: str  # "implicit" | "explicit" | "caption"
    subject: str | None = None


def random_scene(rng: np.random.Generator, *, layout: str | None = None, with_relations: bool = True) -> Scene:
    vals = {c: str(rng.choice(v)) for c, v in ATTRIBUTE_VALUES.items()}
    if with_relations:
        vals.update({c: str(rng.choice(v)) for c, v in RELATION_VALUES.items()})
    return Scene(layout=layout or str(rng.choice(LAYOUTS)), **vals)


def implicit_prompts(subject: Subject) -> list[tuple[str, str]]:
    """(prompt, layout) pairs that name the subject without describing it."""
    s = subject.name
    out = [(layout_phrase(layout, s), layout) for layout in LAYOUTS]
    out += [(fill(t[2], s, capitalize=False), "single") for t in RELATION_STAGE_TEXT.values()]
    return out


def generator_examples(world: World, *, n_explicit: int = 2000, seed: int = 0) -> list[GeneratorExample]:
    """Training pairs for an image generator; text-only subjects never appear.

    Per image-seen subject: every implicit prompt and its caption in every layout. Plus
    ``n_explicit`` captions of random scenes (any value combination).
    """
    rng = np.random.default_rng([seed, 4])
    out: list[GeneratorExample] = []
    for subj in world.subjects:
        if subj.split != IMAGE_SEEN:
            continue
        for prompt, layout in implicit_prompts(subj):
            out.append(GeneratorExample(prompt, subj.scene(layout), "implicit", subj.name))
        for layout in LAYOUTS:
            sc = subj.scene(layout)
            out.append(GeneratorExample(describe(sc), sc, "caption", subj.name))
    for _ in range(n_explicit):
        sc = random_scene(rng)
        out.append(GeneratorExample(describe(sc), sc, "explicit"))
    return out


def iter_value_words() -> Iterator[str]:
    for vals in CATEGORY_VALUES.values():
        yield from vals
