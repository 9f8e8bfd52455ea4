"""The one protocol driver: edit, measure, restore, next sequence.

Protocols (recorded in every result):

``single``      edit one case, evaluate it, restore; repeat for every case;
``batch``       edit ``batch_size`` cases at once, evaluate them, restore; repeat per batch;
``sequential``  apply batches of ``batch_size`` one after another without restoring; evaluate at
                the end (and after each batch with ``eval_each_batch``); restore everything at the end.

:func:`run_protocol` owns that loop for every caller (``unike edit``, ``unike bench``, ``unike
analyze``); what makes the edits is an :class:`EditSource`:

* :class:`EditorSource` runs an editor. At each evaluation point the model is set to exactly
  ``W_0 + delta`` with ``delta = W_now - W_0`` (float32), the form a stored delta is replayed in,
  so the judged weights are the stored ones bit for bit.
* :class:`StoredDeltas` replays the deltas a run folder stored, after checking their hashes, and
  needs no editor and no key statistics.

A guard failure (:class:`~unike_interp.editing.EditGuardError`) leaves the model as it was before
that edit; the cases are evaluated unedited and listed in :attr:`EditedState.guards`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..editing import EditGuardError, WeightDelta, requests_from_records
from ..editing.delta import WeightSnapshot
from .spec import PROTOCOLS


@dataclass
class EditProtocol:
    kind: str = "single"
    batch_size: int = 1
    eval_each_batch: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.kind!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.kind == "single":
            self.batch_size = 1

    @classmethod
    def from_spec(cls, spec, n_cases: int) -> "EditProtocol":
        """The protocol of a :class:`~unike_interp.bench.spec.RunSpec` over ``n_cases`` cases
        (an unset batch size: all cases at once)."""
        return cls(spec.protocol, spec.edit_batch_size or max(n_cases, 1), eval_each_batch=spec.eval_each_batch)

    @property
    def sequential(self) -> bool:
        return self.kind == "sequential"

    def batches(self, cases: Sequence) -> list[list]:
        cases = list(cases)
        return [cases[i:i + self.batch_size] for i in range(0, len(cases), self.batch_size)]

    def edited(self, batches: Sequence[list], point: int) -> list:
        """The records edited when the model is evaluated after batch ``point``."""
        return [r for b in batches[: point + 1] for r in b] if self.sequential else list(batches[point])

    def points(self, n_batches: int) -> list[int]:
        """Batch indices after which the model is evaluated."""
        if self.sequential and not self.eval_each_batch:
            return [n_batches - 1] if n_batches else []
        return list(range(n_batches))


def select_cases(records: Sequence, n: int | None, seed: int = 0) -> list:
    """A seeded sample of ``n`` records (all when ``n`` is None), in their original order."""
    if n is None or n >= len(records):
        return list(records)
    if n < 1:
        raise ValueError(f"--cases must be >= 1, got {n}")
    rng = np.random.default_rng([seed, 11])
    idx = sorted(rng.choice(len(records), n, replace=False))
    return [records[i] for i in idx]


@dataclass
class EditedState:
    """The model at an evaluation point.

    ``point``: the batch index after which it is evaluated; ``batch``: that batch's records;
    ``edited``: every record edited at this point (sequential: all batches so far);
    ``delta``: unedited -> now (None: no edit took effect); ``guards``: case id -> guard error.
    """

    point: int
    batch: list
    edited: list
    delta: WeightDelta | None
    guards: dict[str, str] = field(default_factory=dict)


class EditSource(ABC):
    """What makes the edits the driver evaluates."""

    name: str = "edits"
    edit_seconds: float = 0.0
    stats_seconds: float = 0.0

    def prepare(self, adapter) -> None:
        """Once, before any edit (key statistics)."""

    @abstractmethod
    def begin(self, adapter) -> None:
        """Start a sequence from the unedited model."""

    @abstractmethod
    def edit(self, adapter, index: int, batch: list) -> None:
        """Edit batch ``index`` on top of the current state."""

    @abstractmethod
    def checkpoint(self, adapter, point: int, batch: list, edited: list) -> EditedState:
        """Set the model to the state evaluated at ``point`` and describe it."""

    @abstractmethod
    def end(self, adapter) -> None:
        """Restore the unedited model exactly."""


class EditorSource(EditSource):
    """Edits made by an :class:`~unike_interp.editing.Editor`; guard failures counted in :attr:`failures`."""

    def __init__(self, editor, manifest: dict | None = None):
        self.editor = editor
        self.name = editor.name
        self.manifest = dict(manifest or {})
        self.failures: list[dict] = []
        self._base: WeightSnapshot | None = None  # the unedited weights, once an edit of the sequence took effect
        self._guards: dict[str, str] = {}

    def prepare(self, adapter) -> None:
        t0 = time.perf_counter()
        self.editor.prepare(adapter)
        self.stats_seconds += time.perf_counter() - t0

    def begin(self, adapter) -> None:
        self._base = None
        self._guards = {}

    def edit(self, adapter, index: int, batch: list) -> None:
        try:
            res = self.editor.edit(adapter, requests_from_records(batch))
            self.edit_seconds += res.seconds
            if self._base is None:  # the first edit that took effect: its backup is the unedited weights
                self._base = WeightSnapshot(adapter.lm, saved=res.applied.backup)
        except EditGuardError as e:
            self.failures.append({"cases": e.cases, "layer": e.layer, "error": str(e)})
            self._guards.update({c: str(e) for c in e.cases})

    def checkpoint(self, adapter, point: int, batch: list, edited: list) -> EditedState:
        delta = None
        if self._base is not None:
            delta = WeightDelta(self._base.delta(), {
                **self.manifest, "model": adapter.name, "editor": self.editor.name, "point": point,
                "cases": [r.case_id for r in edited], "dtype": str(adapter.dtype).replace("torch.", "")})
            # evaluate W_0 + delta, the weights a replay of the stored delta gives
            self._base.restore()
            delta.apply(adapter.lm)
        return EditedState(point, list(batch), list(edited), delta, dict(self._guards))

    def end(self, adapter) -> None:
        if self._base is not None:
            self._base.restore()
        self.editor.new_sequence()  # the next sequence edits the unedited model (AlphaEdit: no earlier keys)


class StoredDeltas(EditSource):
    """Replays stored deltas: ``deltas[point]`` is a :class:`WeightDelta` or None (no edit took
    effect); ``guards`` maps case ids to the guard errors the run recorded."""

    name = "stored"

    def __init__(self, deltas: dict[int, Callable[[], WeightDelta | None]], guards: dict[str, str] | None = None):
        self.deltas = deltas
        self.guards = dict(guards or {})
        self._applied = None

    def begin(self, adapter) -> None:
        self._applied = None

    def edit(self, adapter, index: int, batch: list) -> None:
        pass  # the stored state of a point already holds every earlier edit

    def checkpoint(self, adapter, point: int, batch: list, edited: list) -> EditedState:
        if point not in self.deltas:
            raise KeyError(f"the run has no ledger entry for evaluation point {point} (it stopped before that "
                           "point was complete: continue it with `unike bench --resume`)")
        self.end_applied()
        delta = self.deltas[point]()
        if delta is not None:
            self._applied = delta.apply(adapter.lm, check_model=adapter.name)
        guards = {r.case_id: self.guards[r.case_id] for r in edited if r.case_id in self.guards}
        return EditedState(point, list(batch), list(edited), delta, guards)

    def end_applied(self) -> None:
        if self._applied is not None:
            self._applied.remove()
            self._applied = None

    def end(self, adapter) -> None:
        self.end_applied()


def run_protocol(adapter, source: EditSource, batches: Sequence[list], protocol: EditProtocol, *,
                 at_point: Callable[[EditedState], None], before: Callable[[int | None, list], None] | None = None,
                 todo: Sequence[int] | None = None, progress: bool = True, desc: str | None = None) -> None:
    """Drive ``source`` over ``batches`` under ``protocol``; call ``at_point`` at every evaluation point.

    ``before(k, batch)`` runs on the unedited model before batch ``k`` is edited (single / batch),
    or once as ``before(None, all cases)`` before a sequence starts. ``todo``: the batch indices to
    run (single / batch; default all); a sequence always runs whole. The model is the unedited one
    again when this returns or raises. ``progress``: one bar counting the cases run, with an ETA
    (:class:`~unike_interp.progress.CaseProgress`: ``before`` is each case's ``pre`` phase, the
    edit its ``edit`` phase, ``at_point`` its ``post`` phase).
    """
    from ..progress import CaseProgress

    batches = [list(b) for b in batches]
    desc = desc or f"{source.name} {protocol.kind}"
    source.prepare(adapter)
    if protocol.sequential:
        points = set(protocol.points(len(batches)))
        everyone = [r for b in batches for r in b]
        with CaseProgress(len(everyone), desc, progress) as bar:
            if before is not None:
                with bar.phase("pre", len(everyone)):
                    before(None, everyone)
            source.begin(adapter)
            try:
                for k, batch in enumerate(batches):
                    with bar.phase("edit", len(batch)):
                        source.edit(adapter, k, batch)
                    if k in points:
                        edited = protocol.edited(batches, k)
                        # the post phase of every case edited so far, less what earlier points counted
                        counted = sum(len(batches[j]) for j in points if j < k)
                        with bar.phase("post", len(edited) - counted):
                            at_point(source.checkpoint(adapter, k, batch, edited))
            finally:
                source.end(adapter)
        return
    ks = list(range(len(batches))) if todo is None else list(todo)
    with CaseProgress(sum(len(batches[k]) for k in ks), desc, progress) as bar:
        for k in ks:
            batch = batches[k]
            if before is not None:
                with bar.phase("pre", len(batch)):
                    before(k, batch)
            source.begin(adapter)
            try:
                with bar.phase("edit", len(batch)):
                    source.edit(adapter, k, batch)
                with bar.phase("post", len(batch)):
                    at_point(source.checkpoint(adapter, k, batch, batch))
            finally:
                source.end(adapter)
