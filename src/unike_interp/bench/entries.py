"""The ledger's entries, typed: one :class:`CaseEntry` per case, one :class:`PointEntry` per
evaluation point. Written and read only through :meth:`to_json` / :func:`parse_entry`, so the
format lives here and nowhere else.

A case's ``stages`` keep the nested per-stage record the benchmark writes::

    {"stage_1": {"pre": {top1_new, top1_old, image, generation_error, vqa_gt, vqa_target},
                 "post": {top1_new, top1_old, p_new_gt_old, full_new},
                 "reasoning": {request, text, caption, prompt, failure, states_target, states_old},
                 "direct": {image, generation_error, vqa}, "reasoning_image": {image, generation_error, vqa}},
     ...}

A verdict is ``{verdict: True | False | None, predicted, confidence, target, error}``.

An entry written by a distributed run (:mod:`.distributed`) also names the worker that produced it,
``worker: {id, host, pid}``; a serial run's entries have no ``worker`` key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

#: Version written into every entry (``v``); entries without one are version 1 (the same fields).
ENTRY_VERSION = 1

#: The two images judged after an edit, as named in a stage record.
IMAGES = ("direct", "reasoning_image")


class EntryError(ValueError):
    """A ledger line that is JSON but not an entry of this format."""


@dataclass(frozen=True)
class DeltaRef:
    """Where an evaluation point's weight delta is stored (relative to the run folder) and its hash."""

    path: str
    sha256: str

    def to_json(self) -> dict:
        return {"path": self.path, "sha256": self.sha256}


@dataclass
class CaseEntry:
    type: ClassVar[str] = "case"

    case_id: str
    subject: str
    category: str
    source: str
    split: str | None
    batch: int
    guard_error: str | None
    stages: dict[str, dict]
    worker: dict | None = None

    def to_json(self) -> dict:
        return {"type": self.type, "v": ENTRY_VERSION, "case_id": self.case_id, "subject": self.subject,
                "category": self.category, "source": self.source, "split": self.split, "batch": self.batch,
                "guard_error": self.guard_error, "stages": self.stages, **_worker(self.worker)}

    def verdict(self, stage: str, image: str) -> dict | None:
        """The post-edit verdict of one image (``direct`` or ``reasoning_image``) of a stage."""
        if image not in IMAGES:
            raise KeyError(f"image must be one of {', '.join(IMAGES)}, got {image!r}")
        return ((self.stages.get(stage) or {}).get(image) or {}).get("vqa")

    def succeeded(self, stage: str, image: str) -> bool:
        """The judge found the new value in that image (an error or a missing image is a miss)."""
        return (self.verdict(stage, image) or {}).get("verdict") is True

    def reasoning_prompt(self, stage: str) -> str | None:
        """The composed reasoning prompt the edited model wrote (None where the reasoning failed)."""
        return ((self.stages.get(stage) or {}).get("reasoning") or {}).get("prompt")


@dataclass
class PointEntry:
    type: ClassVar[str] = "point"

    batch: int
    cases: list[str]
    text_locality: list[dict] = field(default_factory=list)
    image_locality: list[dict] = field(default_factory=list)
    delta: DeltaRef | None = None
    worker: dict | None = None

    def to_json(self) -> dict:
        return {"type": self.type, "v": ENTRY_VERSION, "batch": self.batch, "cases": self.cases,
                "text_locality": self.text_locality, "image_locality": self.image_locality,
                "delta": self.delta.to_json() if self.delta else None, **_worker(self.worker)}


def _worker(worker: dict | None) -> dict:
    return {"worker": worker} if worker else {}


_REQUIRED = {"case": ("case_id", "subject", "category", "source", "batch", "stages"),
             "point": ("batch", "cases")}


def parse_entry(d: dict, where: str = "ledger") -> CaseEntry | PointEntry:
    """A typed entry from one ledger object; :class:`EntryError` names ``where`` and what is wrong."""
    kind = d.get("type")
    if kind not in _REQUIRED:
        raise EntryError(f"{where}: entry type {kind!r} is neither 'case' nor 'point'")
    missing = [k for k in _REQUIRED[kind] if k not in d]
    if missing:
        raise EntryError(f"{where}: {kind} entry lacks {', '.join(missing)}")
    if d.get("v", 1) > ENTRY_VERSION:
        raise EntryError(f"{where}: entry version {d['v']} is newer than this unike-interp reads ({ENTRY_VERSION})")
    if kind == "case":
        return CaseEntry(d["case_id"], d["subject"], d["category"], d["source"], d.get("split"), int(d["batch"]),
                         d.get("guard_error"), d["stages"], d.get("worker"))
    ref = d.get("delta")
    return PointEntry(int(d["batch"]), list(d["cases"]), d.get("text_locality", []), d.get("image_locality", []),
                      DeltaRef(ref["path"], ref["sha256"]) if ref else None, d.get("worker"))


#: Post-edit images of a stage and their column prefix.
_IMAGE_PREFIX = {"direct": "direct", "reasoning_image": "reasoning"}


def _verdict_columns(prefix: str, v: dict | None) -> dict:
    v = v or {}
    return {f"{prefix}_verdict": v.get("verdict"), f"{prefix}_predicted": v.get("predicted"),
            f"{prefix}_confidence": v.get("confidence"), f"{prefix}_judge_error": v.get("error")}


def case_rows(entries) -> list[dict]:
    """One flat dict per case and stage of the ledger's case entries (the columns of
    :attr:`unike_interp.results.RunResults.cases`; ``old``/``new``: the values the judge looks for)."""
    rows = []
    for e in entries:
        if not isinstance(e, CaseEntry):
            continue
        for stage, st in e.stages.items():
            pre, post, rs = st.get("pre") or {}, st.get("post") or {}, st.get("reasoning") or {}
            row = {"case_id": e.case_id, "stage": stage, "subject": e.subject, "category": e.category,
                   "source": e.source, "split": e.split, "batch": e.batch, "guard_error": e.guard_error,
                   "old": (pre.get("vqa_gt") or {}).get("target"), "new": (pre.get("vqa_target") or {}).get("target"),
                   "pre_top1_new": pre.get("top1_new"), "pre_top1_old": pre.get("top1_old"),
                   "pre_image": pre.get("image"), "pre_generation_error": pre.get("generation_error"),
                   **_verdict_columns("pre_vqa_old", pre.get("vqa_gt")),
                   **_verdict_columns("pre_vqa_new", pre.get("vqa_target")),
                   "post_top1_new": post.get("top1_new"), "post_top1_old": post.get("top1_old"),
                   "post_p_new_gt_old": post.get("p_new_gt_old"), "post_full_new": post.get("full_new"),
                   "reasoning_text": rs.get("text"), "reasoning_caption": rs.get("caption"),
                   "reasoning_prompt": rs.get("prompt"), "reasoning_failure": rs.get("failure"),
                   "reasoning_states_new": rs.get("states_target"), "reasoning_states_old": rs.get("states_old")}
            for key, prefix in _IMAGE_PREFIX.items():
                im = st.get(key) or {}
                row[f"{prefix}_image"] = im.get("image")
                row[f"{prefix}_generation_error"] = im.get("generation_error")
                row.update(_verdict_columns(prefix, im.get("vqa")))
                row[f"{prefix}_success"] = (im.get("vqa") or {}).get("verdict") is True if im else None
            rows.append(row)
    return rows
