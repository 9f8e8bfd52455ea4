"""A run's results as data: pandas DataFrames joined on case id, activations as labelled arrays.

    >>> from unike_interp.results import load_run
    >>> run = load_run("runs/demo/bench/toy-direct-memit")
    >>> run.cases.groupby("category")["direct_success"].mean()        # one row per case x stage
    >>> run.joined[["edit_strength", "direct_success"]].corr()       # stage 1 + the analysis' statistics

:func:`load_run` reads only the run folder (``ledger.jsonl``, ``table.json``, and
``analysis/stats.json`` where ``unike analyze`` has run); nothing is recomputed.
:func:`activations` reads ``analysis/activations.h5`` as an ``xarray.DataArray`` (the optional
extra ``pip install 'unike-interp[xarray]'``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bench.entries import case_rows
from .bench.run_folder import RunFolder

__all__ = ["RunResults", "load_run", "activations", "recorded_sites", "case_rows"]


@dataclass
class RunResults:
    """``table``: the summary table's rows (``table.csv``); ``cases``: one row per case and stage;
    ``stats``: one row per analysed case (empty before ``unike analyze``); ``points``: one row per
    evaluation point; ``path``: the run folder."""

    path: Path
    table: "pd.DataFrame"  # noqa: F821
    cases: "pd.DataFrame"  # noqa: F821
    stats: "pd.DataFrame"  # noqa: F821
    points: "pd.DataFrame"  # noqa: F821

    @property
    def joined(self) -> "pd.DataFrame":  # noqa: F821
        """Stage 1 of every case with its per-case statistics (left join on ``case_id``)."""
        stage1 = self.cases[self.cases["stage"] == "stage_1"]
        if self.stats.empty:
            return stage1.reset_index(drop=True)
        return stage1.merge(self.stats, on="case_id", how="left", suffixes=("", "_stats")).reset_index(drop=True)


def load_run(path: str | Path) -> RunResults:
    """A benchmark run folder's results as DataFrames (see :class:`RunResults`)."""
    import pandas as pd

    folder = RunFolder(path).require()
    entries = folder.entries()
    cases = pd.DataFrame(case_rows(entries))
    points = pd.DataFrame([{"point": e.batch, "cases": len(e.cases), "case_ids": list(e.cases),
                            "text_locality_unchanged": float(np.mean([p["unchanged"] for p in e.text_locality]))
                            if e.text_locality else None,
                            "image_locality_probes": len(e.image_locality),
                            "delta": e.delta.path if e.delta else None}
                           for e in entries if getattr(e, "type", None) == "point"])
    table_csv = folder.table_path("csv")
    table = pd.read_csv(table_csv) if table_csv.exists() else pd.DataFrame()
    stats_path = RunFolder.analysis_file(folder.analysis_dir, "stats")
    stats = pd.DataFrame()
    if stats_path.exists():
        per_case = json.loads(stats_path.read_text(encoding="utf-8")).get("per_case") or {}
        stats = pd.DataFrame([{"case_id": cid, **{k: v for k, v in vals.items() if not isinstance(v, (dict, list))}}
                              for cid, vals in per_case.items()])
    return RunResults(folder.path, table, cases, stats, points)


def _h5(path: str | Path) -> Path:
    path = Path(path)
    h5 = path if path.suffix == ".h5" else RunFolder.analysis_file(RunFolder(path).analysis_dir, "activations")
    if not h5.exists():
        raise FileNotFoundError(f"{h5}: no recorded activations (run `unike analyze {path}` first)")
    return h5


def recorded_sites(path: str | Path, kind: str = "direct") -> list[str]:
    """The site names recorded for prompt kind ``kind`` (of the first analysed case): what
    :func:`activations` accepts."""
    from .interp.store import ActivationStore

    store = ActivationStore(_h5(path))
    first = next((cid for cid, _ in store.iter_cases()), None)
    if first is None:
        return []
    return sorted(k for k in store.read(first, "pre", kind) if not k.startswith("_"))


def activations(path: str | Path, site: str, *, kind: str | None = "direct", states=("pre", "post")):
    """One recorded site of every analysed case as an ``xarray.DataArray`` named ``site``.

    Dimensions ``(case, state, position, channel)``, or with ``kind=None`` every prompt kind,
    ``(case, state, prompt_kind, position, channel)``: ``position`` counts the site's positions (the
    prompt's tokens on the text pathway, the conditioning's slots on the other), padded with NaN to
    the longest case; coordinates ``case`` (case ids), ``state`` and ``prompt_kind`` (direct,
    reasoning, ref_old, ref_new). ``path``: a run folder (its ``analysis/activations.h5``) or the
    HDF5 file itself. :func:`recorded_sites` lists the sites.
    """
    try:
        import xarray as xr
    except ImportError:
        raise ImportError("labelled activations need xarray: pip install 'unike-interp[xarray]'") from None
    from .interp.store import ActivationStore

    h5 = _h5(path)
    store = ActivationStore(h5)
    ids = sorted(cid for cid, _ in store.iter_cases())
    kinds = [kind] if kind is not None else _kinds(store, ids)
    arrays: dict[tuple[int, int, int], np.ndarray] = {}
    for i, cid in enumerate(ids):
        for j, state in enumerate(states):
            for k, knd in enumerate(kinds):
                try:
                    acts = store.read(cid, state, knd)
                except KeyError:
                    continue  # a prompt kind this case did not record (a failed reasoning): NaN
                if site not in acts:
                    known = sorted(n for n in acts if not n.startswith("_"))
                    raise KeyError(f"{h5}: no site {site!r} recorded; recorded: {', '.join(known)}")
                a = np.asarray(acts[site], dtype=np.float32)
                arrays[i, j, k] = a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[0], -1)
    n_pos = max((a.shape[0] for a in arrays.values()), default=0)
    n_ch = max((a.shape[1] for a in arrays.values()), default=0)
    data = np.full((len(ids), len(states), len(kinds), n_pos, n_ch), np.nan, dtype=np.float32)
    for (i, j, k), a in arrays.items():
        data[i, j, k, :a.shape[0], :a.shape[1]] = a
    coords = {"case": ids, "state": list(states), "prompt_kind": kinds}
    da = xr.DataArray(data, dims=("case", "state", "prompt_kind", "position", "channel"), coords=coords, name=site,
                      attrs={"site": site, "file": str(h5)})
    return da.isel(prompt_kind=0) if kind is not None else da


def _kinds(store, ids: list[str]) -> list[str]:
    """The prompt kinds recorded for the first case, in the recorder's order."""
    order = ["direct", "reasoning", "ref_old", "ref_new"]
    if not ids:
        return order
    found = set(store.kinds(ids[0]))
    return [k for k in order if k in found] + sorted(found - set(order))
