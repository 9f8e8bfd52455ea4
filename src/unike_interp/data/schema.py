"""Typed records mirroring the UniKE.json schema.

A UniKE record is one edit subject. Attribute records (color, material, pattern, shape, size) carry
four stages of increasingly indirect image prompts; relation records (affiliation, creator,
location, occupation) carry one. Every stage holds the same seven string fields.

The classes here are plain data: validation lives in :mod:`unike_interp.data.validate`, file I/O
in :mod:`unike_interp.data.io`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

STAGE_FIELDS: tuple[str, ...] = (
    "question",
    "prompt",
    "gt",
    "gt_target",
    "image_prompt",
    "visual_target",
    "vqa_question",
)
"""The fields every stage carries, in the order UniKE.json writes them."""

STAGE_KEYS: tuple[str, ...] = ("stage_1", "stage_2", "stage_3", "stage_4")

SOURCES: tuple[str, ...] = ("attribute", "relation")

CATEGORIES: dict[str, tuple[str, ...]] = {
    "attribute": ("color", "material", "pattern", "shape", "size"),
    "relation": ("affiliation", "creator", "location", "occupation"),
}
"""Known categories per source (the UniKE study's nine)."""

RECORD_KEYS: tuple[str, ...] = ("case_id", "subject", "category", "source", *STAGE_KEYS)


@dataclass(frozen=True)
class Stage:
    """One stage of a record: a cloze prompt for the text side and an image prompt for the image side.

    ``prompt`` is the text cloze whose continuation is ``gt`` before the edit and ``gt_target``
    after it; ``image_prompt`` is what the image generator draws; ``visual_target`` is the
    statement the image must satisfy after the edit, and ``vqa_question`` what a judge is asked.
    """

    question: str
    prompt: str
    gt: str
    gt_target: str
    image_prompt: str
    visual_target: str
    vqa_question: str

    def to_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in STAGE_FIELDS}


@dataclass(frozen=True)
class Record:
    """One UniKE edit case.

    ``stages`` maps ``"stage_1"`` .. ``"stage_4"`` to :class:`Stage`, in stage order. ``extra``
    keeps any top-level keys the schema does not name, so that load -> write -> load loses nothing.
    """

    case_id: str
    subject: str
    category: str
    source: str
    stages: dict[str, Stage]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stage_1(self) -> Stage:
        return self.stages["stage_1"]

    @property
    def stage_names(self) -> list[str]:
        return list(self.stages)

    def stage(self, name_or_number: str | int) -> Stage:
        """The stage by key (``"stage_2"``) or number (``2``)."""
        key = f"stage_{name_or_number}" if isinstance(name_or_number, int) else name_or_number
        try:
            return self.stages[key]
        except KeyError:
            raise KeyError(
                f"record {self.case_id!r} has no {key}; it has {', '.join(self.stages)}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The record as a UniKE.json object (``case_id`` first, extra keys last)."""
        out: dict[str, Any] = {
            "case_id": self.case_id,
            "subject": self.subject,
            "category": self.category,
            "source": self.source,
        }
        for key, stage in self.stages.items():
            out[key] = stage.to_dict()
        out.update(self.extra)
        return out


def stage_from_dict(obj: dict[str, Any]) -> Stage:
    """Build a :class:`Stage` from an already validated mapping."""
    return Stage(**{f.name: obj[f.name] for f in fields(Stage)})
