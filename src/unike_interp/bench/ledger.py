"""An append-only JSONL ledger that survives ``kill -9``.

Each entry is one JSON object on one line, written with ``flush`` + ``os.fsync`` before
:meth:`Ledger.append` returns, so an entry that was reported written is on disk. A kill during a
write can leave a torn last line (no trailing newline, or unparseable): :meth:`Ledger.open`
cuts it off and reports it, since the entry it belonged to was never complete. A bad line
*before* the last one is not a crash artefact: it raises :class:`LedgerError` naming the line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator


class LedgerError(ValueError):
    pass


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries: list[dict] = []
        self.torn_bytes = 0

    @classmethod
    def open(cls, path: str | Path, *, repair: bool = True) -> "Ledger":
        """Read an existing ledger or start an empty one. ``repair``: cut a torn last line off the
        file (what a writer must do before appending); without it the file is left as it is."""
        led = cls(path)
        if not led.path.exists():
            if not repair:
                raise FileNotFoundError(f"no ledger at {led.path}")
            led.path.parent.mkdir(parents=True, exist_ok=True)
            led.path.touch()
            return led
        data = led.path.read_bytes()
        good_end = 0
        pos = 0
        lines = data.split(b"\n")
        for i, raw in enumerate(lines):
            last = i == len(lines) - 1
            end = pos + len(raw) + (0 if last else 1)
            if raw.strip():
                try:
                    entry = json.loads(raw)
                    if last:  # a complete entry always ends with a newline
                        raise ValueError("no trailing newline")
                    if not isinstance(entry, dict):
                        raise ValueError("not a JSON object")
                    led.entries.append(entry)
                    good_end = end
                except ValueError as exc:
                    if last or all(not r.strip() for r in lines[i + 1:]):
                        break
                    raise LedgerError(f"{led.path}: line {i + 1} is not a ledger entry ({exc}); "
                                      "the ledger is damaged beyond a torn last line") from None
            else:
                good_end = end
            pos = end
        if good_end < len(data):
            led.torn_bytes = len(data) - good_end
        if good_end < len(data) and repair:
            with open(led.path, "r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())
        return led

    def append(self, entry: dict) -> None:
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.entries.append(entry)

    def of_type(self, kind: str) -> Iterator[dict]:
        return (e for e in self.entries if e.get("type") == kind)

    def __len__(self) -> int:
        return len(self.entries)
