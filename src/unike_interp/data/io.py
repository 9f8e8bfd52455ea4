"""Reading and writing UniKE.json files.

A UniKE.json file is a JSON array of record objects. :func:`load_unike` validates every record and
returns the valid ones together with the problems of the others; :func:`write_unike` writes
records so that ``load_unike(write_unike(load_unike(p)))`` gives equal records.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .schema import Record
from .validate import DataValidationError, Problem, validate_records


class DataFileError(ValueError):
    """The file itself cannot be read as a UniKE.json array."""


@dataclass
class LoadResult:
    """What :func:`load_unike` found: the valid records and one problem per rejected record."""

    records: list[Record]
    problems: list[Problem] = field(default_factory=list)
    total: int = 0

    @property
    def invalid_indices(self) -> list[int]:
        return sorted({p.index for p in self.problems})

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict:
        """``valid``, ``invalid`` (records with at least one problem), ``total`` and ``problems``."""
        return {
            "total": self.total,
            "valid": len(self.records),
            "invalid": len(self.invalid_indices),
            "problems": [p.to_dict() for p in self.problems],
        }


def load_unike(path: str | os.PathLike, *, strict: bool = False) -> LoadResult:
    """Load and validate a UniKE.json file.

    Raises :class:`DataFileError` when the file is not JSON or not an array (the records cannot be
    enumerated at all); otherwise every record is validated and problems are collected, or with
    ``strict=True`` the first one raises :class:`~unike_interp.data.validate.DataValidationError`.
    """
    path = Path(path)
    if path.is_dir():
        raise DataFileError(f"{path}: is a folder; give the UniKE.json file inside it")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except PermissionError:
        raise DataFileError(f"{path}: cannot read it (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not text.strip():
        raise DataFileError(f"{path}: the file is empty (expected a JSON array of records)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        data = data["records"]  # tolerate {"records": [...]} wrappers
    if not isinstance(data, list):
        raise DataFileError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
    if not data:
        raise DataFileError(f"{path}: the array holds no records")
    records, problems = validate_records(data, strict=strict, path=str(path))
    return LoadResult(records=records, problems=problems, total=len(data))


def write_unike(records: Iterable[Record], path: str | os.PathLike, *, indent: int | None = 1) -> Path:
    """Write records as a UniKE.json array (UTF-8, non-ASCII kept). Returns the path.

    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    payload = [r.to_dict() for r in records]
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, ensure_ascii=False, indent=indent)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


__all__ = ["DataFileError", "DataValidationError", "LoadResult", "load_unike", "write_unike"]
