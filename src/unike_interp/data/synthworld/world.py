"""SynthWorld: seeded subjects with facts, their UniKE-format records and their scenes.

``generate_world(seed)`` is a pure function of its arguments: the same seed gives the same
subjects, facts, split and records, byte for byte once serialised.

Every subject gets one record (one edit case) whose category is assigned round-robin over the
nine categories after a seeded shuffle, so categories are balanced. A seeded, category-stratified
fraction of subjects is *text-only*: their facts are in the text corpus but an image generator is
never shown their images (``Subject.split``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..schema import Record, Stage
from .render import Scene
from .vocab import (
    ATTRIBUTE_STAGE_TEXT,
    ATTRIBUTE_VALUES,
    ATTRIBUTE_VISUAL,
    ATTRIBUTES,
    CATEGORIES,
    CATEGORY_VALUES,
    FACT_TEMPLATES,
    RELATION_STAGE_TEXT,
    RELATION_VALUES,
    RELATIONS,
    STAGE_LAYOUT,
    a,
    fill,
    layout_noun_phrase,
    layout_phrase,
    source_of,
)

IMAGE_SEEN = "image-seen"
TEXT_ONLY = "text-only"
WORLD_FORMAT = "synthworld/1"

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gl", "kr", "pl", "sk", "st", "tr", "j", "h", "qu")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ei", "y")
_CODAS = ("", "", "", "n", "r", "l", "x", "m", "sh", "k")


@dataclass(frozen=True)
class Subject:
    """A nonce-named thing with one value per category."""

    name: str
    facts: dict[str, str]
    split: str = IMAGE_SEEN

    def scene(self, layout: str = "single", **overrides: str) -> Scene:
        """The subject's scene in a layout; ``overrides`` replace facts (e.g. an edited value)."""
        vals = {**self.facts, **overrides}
        return Scene(layout=layout, **{c: vals[c] for c in CATEGORIES})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "facts": dict(self.facts)}


@dataclass
class World:
    """A generated SynthWorld: subjects, their records, and the seed that made them."""

    seed: int
    subjects: list[Subject]
    records: list[Record]
    text_only_fraction: float
    _by_name: dict[str, Subject] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {s.name: s for s in self.subjects}

    def subject(self, name: str) -> Subject:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no subject named {name!r} in this SynthWorld (seed {self.seed})") from None

    def split_of(self, name: str) -> str:
        return self.subject(name).split

    def counts(self) -> dict[str, Any]:
        """Records per source and per category, subjects per split."""
        by_source: dict[str, int] = {}
        by_cat: dict[str, int] = {}
        for r in self.records:
            by_source[r.source] = by_source.get(r.source, 0) + 1
            by_cat[r.category] = by_cat.get(r.category, 0) + 1
        splits: dict[str, int] = {}
        for s in self.subjects:
            splits[s.split] = splits.get(s.split, 0) + 1
        return {
            "subjects": len(self.subjects),
            "records": len(self.records),
            "per_source": by_source,
            "per_category": {c: by_cat.get(c, 0) for c in CATEGORIES},
            "per_split": splits,
            "stages": {
                "attribute": sorted({len(r.stages) for r in self.records if r.source == "attribute"}),
                "relation": sorted({len(r.stages) for r in self.records if r.source == "relation"}),
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": WORLD_FORMAT,
            "seed": self.seed,
            "text_only_fraction": self.text_only_fraction,
            "subjects": [s.to_dict() for s in self.subjects],
        }

    def save(self, path: str | Path) -> Path:
        """Write the world description (subjects, facts, split) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "World":
        """Read a world written by :meth:`save`; records are rebuilt from the subjects."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != WORLD_FORMAT:
            raise ValueError(f"{path}: not a SynthWorld file (format {data.get('format')!r}, expected {WORLD_FORMAT!r})")
        subjects = [Subject(d["name"], dict(d["facts"]), d["split"]) for d in data["subjects"]]
        rng = np.random.default_rng([data["seed"], 2])
        records = _make_records(subjects, rng)
        return cls(data["seed"], subjects, records, data["text_only_fraction"])


def _reserved_text() -> str:
    """All the fixed words the world's texts use; a nonce name must not hide inside any of them."""
    parts: list[str] = []
    for vals in CATEGORY_VALUES.values():
        parts.extend(vals)
    for per_stage in ATTRIBUTE_STAGE_TEXT.values():
        for q, p in per_stage.values():
            parts += [q, p]
    for tpl in RELATION_STAGE_TEXT.values():
        parts.extend(tpl)
    for tpls in FACT_TEMPLATES.values():
        parts.extend(tpls)
    parts += [v for v, _ in ATTRIBUTE_VISUAL.values()] + [q for _, q in ATTRIBUTE_VISUAL.values()]
    parts += ["two side by side beside a grey pebble flag showing request recall caption reasoning"]
    parts += ["with the emblem of tool mark and in"]
    return " ".join(parts).lower()


def _nonce_names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct pronounceable names, none a substring of another or of the world's fixed text."""
    reserved = _reserved_text()
    names: list[str] = []
    attempts = 0
    while len(names) < n:
        attempts += 1
        if attempts > 200 * n:
            raise RuntimeError(f"could not draw {n} distinct nonce names")
        k = int(rng.choice([2, 2, 3]))
        name = "".join(
            str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) + (str(rng.choice(_CODAS)) if i == k - 1 else "")
            for i in range(k)
        )
        if len(name) < 4 or len(name) > 11 or name in reserved:
            continue
        # No name inside another (or vice versa): a cloze for one must never match the other.
        if any(name in other or other in name for other in names):
            continue
        names.append(name)
    return names


def _attribute_stage(subject: Subject, category: str, stage_key: str, target: str) -> Stage:
    s = subject.name
    question_t, prompt_t = ATTRIBUTE_STAGE_TEXT[category][stage_key]
    layout = STAGE_LAYOUT[stage_key]
    np_, plural = layout_noun_phrase(layout, s)
    stmt_t, q_t = ATTRIBUTE_VISUAL[category]
    statement = stmt_t.format(v=target, a_v=a(target))
    visual = f"{np_} {'are' if plural else 'is'} {statement}."
    vqa = q_t.format(np=np_, be="are" if plural else "is", do="do" if plural else "does")
    return Stage(
        question=fill(question_t, s),
        prompt=fill(prompt_t, s),
        gt=subject.facts[category],
        gt_target=target,
        image_prompt=layout_phrase(layout, s),
        visual_target=visual[:1].upper() + visual[1:],
        vqa_question=vqa,
    )


def _relation_stage(subject: Subject, category: str, target: str) -> Stage:
    q, p, img, vis, vqa = RELATION_STAGE_TEXT[category]
    s = subject.name
    return Stage(
        question=fill(q, s),
        prompt=fill(p, s),
        gt=subject.facts[category],
        gt_target=target,
        image_prompt=fill(img, s, capitalize=False),
        visual_target=fill(vis, s, target),
        vqa_question=fill(vqa, s),
    )


def make_record(subject: Subject, category: str, target: str, index: int) -> Record:
    """The UniKE record editing ``subject``'s ``category`` to ``target``."""
    if target == subject.facts[category]:
        raise ValueError(f"target {target!r} equals {subject.name}'s current {category}")
    if target not in CATEGORY_VALUES[category]:
        raise ValueError(f"{target!r} is not a {category} value ({', '.join(CATEGORY_VALUES[category])})")
    src = source_of(category)
    if src == "attribute":
        stages = {k: _attribute_stage(subject, category, k, target) for k in STAGE_LAYOUT}
    else:
        stages = {"stage_1": _relation_stage(subject, category, target)}
    return Record(
        case_id=f"sw-{index:04d}-{category}",
        subject=subject.name,
        category=category,
        source=src,
        stages=stages,
        extra={"split": subject.split},
    )


def _make_records(subjects: list[Subject], rng: np.random.Generator) -> list[Record]:
    order = rng.permutation(len(subjects))
    records = []
    for rank, idx in enumerate(order):
        subject = subjects[int(idx)]
        category = CATEGORIES[rank % len(CATEGORIES)]
        others = [v for v in CATEGORY_VALUES[category] if v != subject.facts[category]]
        target = str(rng.choice(others))
        records.append((int(idx), make_record(subject, category, target, int(idx))))
    records.sort(key=lambda t: t[0])  # file order follows subject order
    return [r for _, r in records]


def generate_world(seed: int = 0, n_subjects: int = 324, text_only_fraction: float = 0.2) -> World:
    """Generate a SynthWorld deterministically from ``seed``.

    ``n_subjects`` subjects each get one value per category (uniform draws) and one record;
    ``text_only_fraction`` of them, stratified by their record's category, are text-only.
    """
    if n_subjects < len(CATEGORIES):
        raise ValueError(f"n_subjects must be at least {len(CATEGORIES)} (one per category), got {n_subjects}")
    if not 0.0 <= text_only_fraction < 1.0:
        raise ValueError(f"text_only_fraction must be in [0, 1), got {text_only_fraction}")
    rng = np.random.default_rng([seed, 0])
    names = _nonce_names(n_subjects, rng)
    subjects = [
        Subject(name, {c: str(rng.choice(CATEGORY_VALUES[c])) for c in CATEGORIES}) for name in names
    ]
    records = _make_records(subjects, np.random.default_rng([seed, 2]))
    # Stratified split: within each category's records, every k-th (after a shuffle) is text-only.
    split_rng = np.random.default_rng([seed, 1])
    text_only: set[str] = set()
    for cat in CATEGORIES:
        names_c = [r.subject for r in records if r.category == cat]
        n_t = int(round(len(names_c) * text_only_fraction))
        text_only.update(str(x) for x in split_rng.permutation(names_c)[:n_t])
    subjects = [Subject(s.name, s.facts, TEXT_ONLY if s.name in text_only else IMAGE_SEEN) for s in subjects]
    split = {s.name: s.split for s in subjects}
    records = [replace(r, extra={**r.extra, "split": split[r.subject]}) for r in records]
    return World(seed, subjects, records, text_only_fraction)


def iter_facts(world: World) -> Iterator[tuple[Subject, str, str]]:
    """Every (subject, category, value) triple of the world."""
    for s in world.subjects:
        for c in CATEGORIES:
            yield s, c, s.facts[c]


__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_VALUES",
    "IMAGE_SEEN",
    "RELATIONS",
    "RELATION_VALUES",
    "Subject",
    "TEXT_ONLY",
    "World",
    "generate_world",
    "iter_facts",
    "make_record",
]
