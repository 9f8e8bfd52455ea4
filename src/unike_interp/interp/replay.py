"""Replay a benchmark run's edits and record both pathways before and after each of them.

:func:`record_run` reads a run folder (:class:`~unike_interp.bench.run_folder.RunFolder`), applies
the weight delta each evaluation point stored (its hash checked against the ledger: the recorded
model is the judged model, bit for bit) and records with
:class:`~unike_interp.interp.recorder.Recorder`, for every case and for the unedited (``pre``) and
edited (``post``) model, four prompts of its stage 1 (:data:`~unike_interp.interp.statistics.KINDS`):

``direct``     the stage's ``image_prompt``;
``reasoning``  the composed reasoning prompt the edited model wrote in the run (absent when the
               reasoning failed);
``ref_old`` / ``ref_new``  the image prompt with the old / new value spelled out
               (``adapter.reference_prompt``).

into ``activations.h5`` (:mod:`~unike_interp.interp.store`). Replaying builds no editor and
computes no key statistics. A run without stored deltas (``store_deltas = false``, or written
before runs stored them) is recorded only with ``reoptimize=True``, which runs the editor again
(the same edits on a deterministic device, but not provably the judged ones).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..bench.assemble import build_editor, load_adapter, load_records
from ..bench.entries import CaseEntry
from ..bench.protocol import EditedState, EditorSource, EditProtocol, StoredDeltas, run_protocol
from ..bench.run_folder import DELTA_FORMATS, RunFolder, RunFolderError, versions
from .recorder import Recorder
from .statistics import KINDS  # noqa: F401  (the prompt kinds recorded per case)
from .store import ActivationStore


class NoStoredDeltasError(RunFolderError):
    """The run stored no weight deltas: there is nothing to replay."""


@dataclass
class RecordedRun:
    """What the statistics need after :func:`record_run`."""

    adapter: object
    store: ActivationStore
    entries: dict[str, CaseEntry]
    spec: object
    edits: str                      # "stored" | "reoptimized"
    seconds: float
    records: dict = None            # case id -> Record, every case of the run
    run_dir: Path | None = None


def case_prompts(adapter, record, entry: CaseEntry | None) -> dict[str, str]:
    """``kind -> prompt`` of one case's stage 1 (see :data:`KINDS`)."""
    st = record.stage_1
    kinds = {"direct": st.image_prompt}
    reasoning = entry.reasoning_prompt("stage_1") if entry is not None else None
    if reasoning:
        kinds["reasoning"] = reasoning
    kinds["ref_old"] = adapter.reference_prompt(record, "stage_1", st.gt)
    kinds["ref_new"] = adapter.reference_prompt(record, "stage_1", st.gt_target)
    return kinds


def _record_chunked(recorder: Recorder, prompts, subjects, chunk: int = 64):
    out = []
    for i in range(0, len(prompts), chunk):
        rec = recorder.record(prompts[i:i + chunk], subjects[i:i + chunk])
        out += [rec.row(j) for j in range(len(rec.prompts))]
    return out


def stored_edits(folder: RunFolder, entries: dict[str, CaseEntry]) -> StoredDeltas:
    """The run's stored deltas as an edit source (each loaded, and its hash checked, when replayed)."""
    spec = folder.spec()
    if folder.resolved().get("format") not in DELTA_FORMATS or not spec.store_deltas:
        raise NoStoredDeltasError(
            f"{folder.path} stored no weight deltas (run with store_deltas off, or by an older version): there is "
            "nothing to replay. Pass --reoptimize to compute the edits again with the run's editor and settings "
            "(same edits on a deterministic device, but not checked against the judged model)")
    loaders = {k: (lambda ref=p.delta: folder.load_delta(ref) if ref is not None else None)
               for k, p in folder.point_entries().items()}
    guards = {cid: e.guard_error for cid, e in entries.items() if e.guard_error}
    return StoredDeltas(loaders, guards)


def record_run(run_dir: str | Path, out: str | Path, *, device=None, reoptimize: bool = False, adapter=None,
               progress: bool = True, echo: Callable[[str], None] = print,
               trust_remote_code: bool = False) -> RecordedRun:
    """Record every case of a run into ``out/activations.h5`` (resumable: complete cases are kept).
    A run whose model runs code from its checkpoint folder (``model_options.trust_remote_code``) is
    loaded only when ``trust_remote_code`` is given again here: a run folder does not grant it."""
    folder = RunFolder(run_dir).require()
    spec = folder.spec()
    resolved = folder.resolved()
    if adapter is None and spec.model_options.get("trust_remote_code") and not trust_remote_code:
        raise PermissionError(f"{folder.path}: its model {spec.model} runs the code shipped in its checkpoint folder; "
                              "pass --trust-remote-code to analyze it (Python: trust_remote_code=True)")
    adapter = adapter or load_adapter(spec, device)
    by_id = {r.case_id: r for r in load_records(spec, adapter)}
    entries = folder.case_entries()
    missing = sorted(set(entries) - set(by_id))
    if missing:
        raise RunFolderError(f"{folder.ledger_path}: cases {missing[:5]} are not in the run's records")
    batches = [[by_id[c] for c in b if c in entries] for b in resolved["batches"]]
    protocol = EditProtocol.from_spec(spec, len(resolved["case_ids"]))
    if reoptimize:
        source = EditorSource(build_editor(spec, adapter, progress=progress))
        edits = "reoptimized"
    else:
        source = stored_edits(folder, entries)
        edits = "stored"
    recorder = Recorder(adapter, seed=spec.seed)
    store = ActivationStore.open(RunFolder.analysis_file(out, "activations"), {
        "model": spec.model, "editor": spec.editor, "seed": spec.seed, "protocol": spec.protocol,
        "versions": versions(), "run": str(folder.path), "trace_timestep": getattr(adapter, "trace_timestep", ""),
        "edits": edits})
    done = store.complete_cases()
    todo = [k for k, b in enumerate(batches) if any(r.case_id not in done for r in b)]
    unedited: dict = {}

    def flat_prompts(batch):
        return [(r, kind, p) for r in batch for kind, p in case_prompts(adapter, r, entries.get(r.case_id)).items()]

    def before(k, batch):
        flat = flat_prompts(batch)
        unedited["pre"] = _record_chunked(recorder, [p for _, _, p in flat], [r.subject for r, _, _ in flat])

    def at_point(state: EditedState) -> None:
        flat = flat_prompts(state.edited)
        post = _record_chunked(recorder, [p for _, _, p in flat], [r.subject for r, _, _ in flat])
        ehash = state.delta.sha256() if state.delta is not None else ""
        per_case: dict[str, dict] = {}
        for (r, kind, _), a, b in zip(flat, unedited["pre"], post):
            per_case.setdefault(r.case_id, {"pre": {}, "post": {}})
            per_case[r.case_id]["pre"][kind] = (a, recorder.sites)
            per_case[r.case_id]["post"][kind] = (b, recorder.sites)
        for r in state.edited:
            if r.case_id in done:
                continue
            st = r.stage_1
            store.write_case(r.case_id, {"subject": r.subject, "category": r.category, "source": r.source,
                                         "old": st.gt, "new": st.gt_target, "edit_hash": ehash,
                                         "guard_error": state.guards.get(r.case_id) or "", "batch": state.point},
                             per_case[r.case_id])

    t0 = time.perf_counter()
    if todo:
        run_protocol(adapter, source, batches, protocol, at_point=at_point, before=before, todo=todo,
                     progress=progress, desc=f"record ({edits} edits)")
    seconds = time.perf_counter() - t0
    echo(f"[analyze] recorded {len(store.complete_cases())} cases into {store.path} "
         f"({seconds:.1f} s this session; {edits} edits)")
    return RecordedRun(adapter, store, entries, spec, edits, seconds, by_id, folder.path)
