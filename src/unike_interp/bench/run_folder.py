"""A run folder and its layout, owned by one class: :class:`RunFolder`.

::

    <run>/config.json       resolved run: RunSpec, editor hyperparameters, case ids, batches, model and judge names
    <run>/manifest.json     versions, git SHA, seed, device, one record per session (timings)
    <run>/ledger.jsonl      typed entries (:mod:`.entries`), appended and fsynced
    <run>/images/<case>/<stage>-{pre,direct,reasoning}.png
    <run>/deltas/point_<k>.{safetensors,json}   the weight delta of evaluation point k (hash in the ledger)
    <run>/table.{md,csv,json}
    <run>/report.html       the run as one static page (:mod:`.html_report`)
    <run>/analysis/         what `unike analyze` writes (activations.h5, stats.json, figures/)

``unike bench`` writes it, ``unike report`` re-renders its tables, ``unike analyze`` replays its
stored deltas; none of them spells a file name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from .entries import CaseEntry, DeltaRef, EntryError, PointEntry, parse_entry
from .ledger import Ledger, LedgerError
from .spec import VOLATILE_FIELDS

#: Format 3: the unedited model's images of several single edits are drawn together (pre-edit
#: groups, :func:`~unike_interp.bench.pipeline.pre_groups`); 2: each batch's alone; 1: no stored deltas.
RUN_FORMAT = "unike-bench-run/3"
#: Formats this version reads (format 1 runs have no stored deltas; analyze re-optimises them).
READABLE_FORMATS = ("unike-bench-run/1", "unike-bench-run/2", RUN_FORMAT)
#: Formats whose runs store the judged model's weight deltas.
DELTA_FORMATS = ("unike-bench-run/2", RUN_FORMAT)


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (exists without --resume, another config, damaged)."""


class DeltaHashError(RunFolderError):
    """A stored weight delta is not the one the ledger recorded."""


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically (temporary file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:  # a full disk, a read-only folder: no half-written file left behind
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (:func:`write_text`)."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120] or "case"


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    from ..provenance import package_versions

    return package_versions(("unike-interp", "torch", "transformers", "diffusers", "numpy", "nnsight"))


class RunFolder:
    """One benchmark run on disk. Paths are properties; reading and writing go through methods."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    manifest_path = property(lambda self: self.path / "manifest.json")
    ledger_path = property(lambda self: self.path / "ledger.jsonl")
    images_dir = property(lambda self: self.path / "images")
    deltas_dir = property(lambda self: self.path / "deltas")
    analysis_dir = property(lambda self: self.path / "analysis")
    report_path = property(lambda self: self.path / "report.html")

    def table_path(self, fmt: str) -> Path:
        """``table.md`` / ``table.csv`` / ``table.json``."""
        if fmt not in ("md", "csv", "json"):
            raise ValueError(f"table format must be md, csv or json, got {fmt!r}")
        return self.path / f"table.{fmt}"

    @staticmethod
    def analysis_file(analysis_dir: str | Path, name: str) -> Path:
        """A file of an analysis folder: ``activations`` (HDF5), ``stats`` (JSON), ``interventions`` (JSON
        Lines of finished cases, so a killed analysis resumes) or ``figures`` (a folder)."""
        files = {"activations": "activations.h5", "stats": "stats.json", "interventions": "interventions.jsonl",
                 "figures": "figures"}
        if name not in files:
            raise KeyError(f"an analysis folder holds {', '.join(files)}, not {name!r}")
        return Path(analysis_dir) / files[name]

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # --- state ------------------------------------------------------------------------------
    def has_run(self) -> bool:
        """A ledger with at least one byte: a run was started here."""
        return self.ledger_path.exists() and self.ledger_path.stat().st_size > 0

    def check_writable(self, *, resume: bool) -> None:
        """A run may be written here: the folder holds none, or ``resume`` continues it."""
        from ..paths import check_output_folder

        check_output_folder(self.path)
        if resume and not self.has_run() and not self.config_path.exists():
            raise RunFolderError(f"{self.path}: nothing to resume (no run was started there); drop --resume to start one")
        if self.has_run() and not resume:
            raise RunFolderError(f"{self.path} already holds a run ({self.ledger_path.name}); pass --resume to continue "
                                 "it or choose another run folder")

    def require(self) -> "RunFolder":
        """Raise unless this is a run folder a reader can use (config.json and ledger.jsonl)."""
        if not self.config_path.exists() or not self.ledger_path.exists():
            raise FileNotFoundError(f"{self.path} is not a benchmark run folder (needs config.json and ledger.jsonl); "
                                    f"run `unike bench {self.path}` first")
        fmt = self.resolved().get("format")
        if fmt not in READABLE_FORMATS:
            raise RunFolderError(f"{self.config_path}: run format {fmt!r}; this version reads {', '.join(READABLE_FORMATS)}")
        return self

    # --- config -----------------------------------------------------------------------------
    def resolved(self) -> dict:
        try:
            return json.loads(self.config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunFolderError(f"{self.config_path}: not valid JSON ({exc})") from None

    def spec(self):
        """The run's :class:`~unike_interp.bench.spec.RunSpec` (fields this version no longer has are refused)."""
        from .spec import RunSpec

        try:
            return RunSpec(**self.resolved()["config"])
        except TypeError as exc:
            raise RunFolderError(f"{self.config_path}: not a run configuration of this version ({exc})") from None

    def write_resolved(self, resolved: dict, *, resume: bool) -> None:
        """Write ``config.json``; on resume first check it matches the stored one (but for volatile fields)."""
        resolved = json.loads(json.dumps({"format": RUN_FORMAT, **resolved}, sort_keys=True))
        self.check_writable(resume=resume)
        if resume and self.has_run():
            if not self.config_path.exists():
                raise RunFolderError(f"{self.path} has a ledger but no config.json: not a run folder this version can resume")
            old = self.resolved()
            if old.get("format") != RUN_FORMAT:
                raise RunFolderError(f"{self.path} was written in format {old.get('format')!r}; this version resumes "
                                     f"{RUN_FORMAT!r} runs only (`unike report` and `unike analyze --reoptimize` read it)")
            self._check_same(old, resolved)
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, resolved)

    def _check_same(self, old: dict, new: dict) -> None:
        a, b = dict(old), dict(new)
        for d in (a, b):
            d["config"] = {k: v for k, v in d.get("config", {}).items() if k not in VOLATILE_FIELDS}
        if a != b:
            keys = sorted({k for k in set(a) | set(b) if a.get(k) != b.get(k)})
            sub = []
            if "config" in keys:
                sub = sorted(k for k in set(a["config"]) | set(b["config"]) if a["config"].get(k) != b["config"].get(k))
            raise RunFolderError(f"{self.path}: --resume with a different configuration (differs in: "
                                 f"{', '.join(sub or keys)}); use the original settings or another --out")

    # --- manifest ---------------------------------------------------------------------------
    def start_session(self, *, resume: bool, **facts) -> None:
        """Record versions, git SHA and ``facts`` (seed, device, ...) and open a session record."""
        manifest = self.manifest()
        manifest.update(format=RUN_FORMAT, versions=versions(), git_sha=git_sha(), **facts)
        manifest.setdefault("sessions", []).append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resume": bool(resume)})
        write_json(self.manifest_path, manifest)

    def end_session(self, **timings) -> None:
        manifest = self.manifest()
        manifest["sessions"][-1].update(timings)
        write_json(self.manifest_path, manifest)

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text(encoding="utf-8")) if self.manifest_path.exists() else {}

    # --- ledger -----------------------------------------------------------------------------
    def open_ledger(self, *, repair: bool = True) -> Ledger:
        return Ledger.open(self.ledger_path, repair=repair)

    def entries(self, ledger: Ledger | None = None) -> list[CaseEntry | PointEntry]:
        """Every ledger entry, typed (read only; a torn last line is left alone and not returned)."""
        led = ledger or self.open_ledger(repair=False)
        out = []
        for i, e in enumerate(led.entries):
            try:
                out.append(parse_entry(e, f"{self.ledger_path} entry {i + 1}"))
            except EntryError as exc:
                raise LedgerError(str(exc)) from None
        return out

    def case_entries(self, ledger: Ledger | None = None) -> dict[str, CaseEntry]:
        return {e.case_id: e for e in self.entries(ledger) if isinstance(e, CaseEntry)}

    def point_entries(self, ledger: Ledger | None = None) -> dict[int, PointEntry]:
        return {e.batch: e for e in self.entries(ledger) if isinstance(e, PointEntry)}

    def check_done(self, ledger: Ledger, case_ids) -> tuple[set[str], set[int]]:
        """The case ids and evaluation points already in ``ledger``; a case the run does not select is an error."""
        done_cases, done_points = set(self.case_entries(ledger)), set(self.point_entries(ledger))
        unknown = done_cases - set(case_ids)
        if unknown:
            raise RunFolderError(f"{self.ledger_path} holds cases this configuration does not select: {sorted(unknown)[:5]}")
        return done_cases, done_points

    # --- files ------------------------------------------------------------------------------
    def image_path(self, case_id: str, stage: str, tag: str) -> Path:
        return self.images_dir / _safe(case_id) / f"{stage}-{tag}.png"

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.path))

    def save_image(self, img, case_id: str, stage: str, tag: str) -> str | None:
        """Write a PNG atomically; its path relative to the run (None when there is no image)."""
        if img is None:
            return None
        from PIL import Image

        path = self.image_path(case_id, stage, tag)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.png")
        try:
            Image.fromarray(img).save(tmp)
            os.replace(tmp, path)
        except BaseException:  # no half-written image left behind
            tmp.unlink(missing_ok=True)
            raise
        return self.relative(path)

    def save_delta(self, point: int, delta) -> DeltaRef:
        """Write point ``point``'s :class:`~unike_interp.editing.WeightDelta`; its reference for the ledger."""
        base = self.deltas_dir / f"point_{point:04d}"
        delta.save(base)
        return DeltaRef(self.relative(base), delta.sha256())

    def load_delta(self, ref: DeltaRef):
        """The stored delta, checked against the hash the ledger recorded (:class:`DeltaHashError`)."""
        from ..editing import WeightDelta

        delta = WeightDelta.load(self.path / ref.path)
        got = delta.sha256()
        if got != ref.sha256:
            raise DeltaHashError(f"{self.path / ref.path}: content hash {got[:16]}... is not the {ref.sha256[:16]}... the "
                                 "ledger recorded for the judged model; the file was changed or belongs to another run")
        return delta
