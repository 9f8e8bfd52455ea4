"""A recorded run's statistics as written to ``stats.json``.

For every recorded case: each statistic of :mod:`~unike_interp.interp.statistics` it supports,
plus the best validated value probe's reading (``probe_reads_new``, ``probe_p_new``,
``probe_p_new_delta``; :func:`~unike_interp.interp.probes.probe_run`, which also gives the summary's
``probes``, ``generator_accuracy`` and ``probe_setup``). Against the
benchmark's outcome, ``success[key][case]``: the stage-1 VQA verdict in the ledger (``vqa_direct``:
the image of the image prompt; ``vqa_reasoning``: the image of the composed reasoning prompt; no
verdict counts as failure). Per statistic name ``n`` with values ``v`` over the cases:

* ``aucs[key][n]`` = :func:`~unike_interp.interp.stats.auc_table` (cases without ``n`` dropped): the AUC
  with its 95% class-stratified bootstrap interval (2000 resamples seeded by the run's seed), or
  ``auc = None`` with the reason in ``refused`` when either outcome has fewer than 10 cases;
* ``means[n]`` = ``nanmean(v)`` over all cases, the VQA-direct successes and the failures
  (``None`` where no value is finite).

Floats are rounded to 6 decimals and non-finite ones written as ``null``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import stats as S
from .probes import probe_run
from .statistics import PROBE_P_NEW, PROBE_P_NEW_DELTA, PROBE_READS_NEW, case_statistics

#: ``success`` key -> the stage-1 image whose VQA verdict it reads.
SUCCESS_IMAGES = {"vqa_direct": "direct", "vqa_reasoning": "reasoning_image"}


def vqa_success(entries: dict, case_ids: list[str]) -> dict[str, dict[str, bool]]:
    """``{key: {case: succeeded}}`` from the ledger's case entries (:class:`~unike_interp.bench.entries.CaseEntry`)."""
    return {key: {cid: entries[cid].succeeded("stage_1", image) for cid in case_ids}
            for key, image in SUCCESS_IMAGES.items()}


def _nanmean(v: np.ndarray):
    return np.nanmean(v) if np.isfinite(v).any() else None


def run_statistics(adapter, store, entries: dict, *, seed: int, judge=None, probes: bool = True,
                   progress: bool = False) -> dict:
    """``{"summary": {n_cases, aucs, means, probes, generator_accuracy, probe_setup, vqa_direct_success_rate},
    "per_case": {case: {name: value}}, "success": {key: {case: bool}}}`` of every case in ``store``, JSON-ready.

    ``entries``: the ledger's case entries by case id (``CaseEntry``); ``seed``: the run's (probe folds,
    recorder, generator images); ``judge``: reads the generator's own pre-edit images, against which
    the value probes are validated (:func:`~unike_interp.interp.probes.probe_run`); None:
    ``generator_accuracy = {"skipped": reason}`` and no probe is validated. ``probes=False``: no
    value probe is fitted (``probes = {"skipped": ...}``; the probe columns are absent). ``progress``:
    the probes' bars.
    """
    cases = dict(store.iter_cases())
    case_ids = list(cases)
    per_case = {cid: case_statistics(adapter, store, cid) for cid in case_ids}
    if probes:
        probe_summary, probe_cases = probe_run(adapter, store, cases, seed=seed, judge=judge, progress=progress)
    else:
        why = "not run (--no-probes)"
        probe_summary, probe_cases = {"probes": {"skipped": why}, "generator_accuracy": {"skipped": why}}, {}
    for cid, values in probe_cases.items():
        for stat in (PROBE_READS_NEW, PROBE_P_NEW, PROBE_P_NEW_DELTA):
            per_case[cid][stat.name] = values[stat.name]
    success = vqa_success(entries, case_ids)
    names = sorted({n for stats in per_case.values() for n in stats})
    columns = {n: np.array([per_case[c].get(n, np.nan) for c in case_ids], dtype=float) for n in names}
    aucs = {key: S.auc_table(columns, np.array([succ[c] for c in case_ids]), seed=seed)
            for key, succ in success.items()}
    ok = np.array([success["vqa_direct"][c] for c in case_ids], dtype=bool)
    means = {n: {"all": _nanmean(v), "vqa_direct_success": _nanmean(v[ok]), "vqa_direct_fail": _nanmean(v[~ok])}
             for n, v in columns.items()}
    summary = {"n_cases": len(case_ids), "aucs": aucs, "means": means, **probe_summary,
               "vqa_direct_success_rate": np.mean(ok) if case_ids else None}
    return _jsonable({"summary": summary, "per_case": per_case, "success": success})


def write_stats(path: str | Path, stats: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else round(float(x), 6)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
