"""Validation of raw UniKE.json objects.

Every check yields a :class:`Problem` naming the record's index, its case id where one can be
read, the offending field and a reason a person can act on. Validation never drops a record
silently: :func:`validate_records` returns the good records *and* every problem.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from .cloze import find_subject
from .schema import CATEGORIES, SOURCES, STAGE_FIELDS, STAGE_KEYS, Record, stage_from_dict


@dataclass(frozen=True)
class Problem:
    """One reason a record was rejected."""

    index: int
    reason: str
    field: str | None = None
    case_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __str__(self) -> str:
        where = f"record {self.index}"
        if self.case_id:
            where += f" ({self.case_id})"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.reason}"


class DataValidationError(ValueError):
    """Raised by strict loading on the first invalid record."""

    def __init__(self, problem: Problem, path: str | None = None):
        self.problem = problem
        self.path = path
        prefix = f"{path}: " if path else ""
        super().__init__(prefix + str(problem))


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def default_case_id(index: int) -> str:
    """The case id given to a record whose file names none."""
    return f"case-{index:05d}"


def check_record(obj: Any, index: int) -> list[Problem]:
    """All problems of one raw record (an empty list means it is valid)."""
    if not isinstance(obj, dict):
        return [Problem(index, f"record is not an object (got {type(obj).__name__})")]

    case_id = obj.get("case_id")
    cid = case_id if _nonempty_str(case_id) else None
    problems: list[Problem] = []

    def add(reason: str, field: str | None = None) -> None:
        problems.append(Problem(index, reason, field, cid))

    if "case_id" in obj and not _nonempty_str(case_id):
        add("case_id must be a non-empty string", "case_id")

    subject = obj.get("subject")
    if "subject" not in obj:
        add("missing field", "subject")
    elif not _nonempty_str(subject):
        add("field is empty or not a string", "subject")
        subject = None

    source = obj.get("source")
    if "source" not in obj:
        add("missing field", "source")
        source = None
    elif source not in SOURCES:
        add(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}", "source")
        source = None

    category = obj.get("category")
    if "category" not in obj:
        add("missing field", "category")
    elif not _nonempty_str(category):
        add("field is empty or not a string", "category")
    elif source is not None and category not in CATEGORIES[source]:
        other = [s for s in SOURCES if category in CATEGORIES[s]]
        hint = f" (it is a {other[0]} category)" if other else ""
        add(
            f"unknown category {category!r} for source {source!r}{hint}; expected one of "
            f"{', '.join(CATEGORIES[source])}",
            "category",
        )
    elif source is None and not any(category in c for c in CATEGORIES.values()):
        add(f"unknown category {category!r}", "category")

    if "stage_1" not in obj:
        add("no stage_1: every record needs at least its direct stage", "stage_1")

    present = [k for k in STAGE_KEYS if k in obj]
    # Stages must be contiguous: a stage_3 without stage_2 is almost always a broken export.
    for k, expected in zip(present, STAGE_KEYS):
        if k != expected:
            add(f"stages are not contiguous: {k} present but {expected} missing", k)
            break
    stray = [k for k in obj if isinstance(k, str) and k.startswith("stage_") and k not in STAGE_KEYS]
    for k in stray:
        add(f"unknown stage key {k!r}; stages are {', '.join(STAGE_KEYS)}", k)

    for key in present:
        stage = obj[key]
        if not isinstance(stage, dict):
            add(f"stage is not an object (got {type(stage).__name__})", key)
            continue
        for name in STAGE_FIELDS:
            if name not in stage:
                add("missing field", f"{key}.{name}")
            elif not _nonempty_str(stage[name]):
                add("field is empty or not a string", f"{key}.{name}")
        prompt, gt, tgt = stage.get("prompt"), stage.get("gt"), stage.get("gt_target")
        if subject and _nonempty_str(prompt) and not find_subject(prompt, subject):
            add(f"subject {subject!r} does not occur in the cloze prompt {prompt!r}", f"{key}.prompt")
        if _nonempty_str(gt) and _nonempty_str(tgt) and gt.strip().casefold() == tgt.strip().casefold():
            add(f"gt_target equals gt ({gt!r}): the edit would change nothing", f"{key}.gt_target")
    return problems


def record_from_obj(obj: dict[str, Any], index: int) -> Record:
    """Build a :class:`Record` from a raw object that :func:`check_record` accepted."""
    stages = {k: stage_from_dict(obj[k]) for k in STAGE_KEYS if k in obj}
    known = {"case_id", "subject", "category", "source", *STAGE_KEYS}
    extra = {k: v for k, v in obj.items() if k not in known}
    return Record(
        case_id=obj.get("case_id") or default_case_id(index),
        subject=obj["subject"],
        category=obj["category"],
        source=obj["source"],
        stages=stages,
        extra=extra,
    )


def validate_records(
    objs: Iterable[Any], *, strict: bool = False, path: str | None = None
) -> tuple[list[Record], list[Problem]]:
    """Validate raw objects; return ``(valid records, problems)``.

    With ``strict=True`` the first problem raises :class:`DataValidationError`. Duplicate case ids
    are a problem of the later record; the first keeps its place.
    """
    records: list[Record] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, obj in enumerate(objs):
        found = check_record(obj, index)
        if not found:
            rec = record_from_obj(obj, index)
            if rec.case_id in seen:
                found = [
                    Problem(
                        index,
                        f"duplicate case_id {rec.case_id!r} (first used by record {seen[rec.case_id]})",
                        "case_id",
                        rec.case_id,
                    )
                ]
            else:
                seen[rec.case_id] = index
                records.append(rec)
        if found and strict:
            raise DataValidationError(found[0], path)
        problems.extend(found)
    return records, problems
