"""Activations in HDF5 (h5py): one group per case / state / prompt kind / pathway / site.

Layout::

    /                                   attrs: format, model, editor, seed, versions (JSON)
    /cases/<case_id>                    attrs: subject, category, old, new, edit_hash, complete
    /cases/<case_id>/<state>/<kind>     state: pre | post; kind: direct | reasoning | ref_old | ref_new
                                        attrs: prompt, subject_last, prompt_last
        /<pathway>/<site>               text sites (2, H): rows subject_last, prompt_last
                                        "all" sites (S, C); conditioning sites keep only the
                                        positions that reach the generator
        /conditioning/_lm_positions     (S,) LM position of each conditioning slot (the index map)

Datasets are chunked and gzip-compressed. A case is written whole and then marked
``complete``; the file is closed after every case, so an interrupted run loses at most the case
in flight, and :meth:`ActivationStore.open` removes incomplete case groups so a resume rewrites
them. (HDF5 is not journalled: a kill in the middle of a write can still damage the file; the
benchmark ledger, not this file, is the record of results.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np

FORMAT = "unike-activations/1"


def _key(case_id: str) -> str:
    return case_id.replace("/", "_")


class ActivationStore:
    def __init__(self, path: str | Path, attrs: dict | None = None):
        self.path = Path(path)
        self.attrs = attrs or {}

    @classmethod
    def open(cls, path: str | Path, attrs: dict | None = None) -> "ActivationStore":
        """Create or reopen a store; drop incomplete cases; check the root attributes agree."""
        import h5py

        store = cls(path, attrs)
        store.path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(store.path, "a") as f:
            if "format" not in f.attrs:
                f.attrs["format"] = FORMAT
                for k, v in (attrs or {}).items():
                    f.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v, sort_keys=True)
            elif attrs:
                for k in ("model", "editor", "seed"):
                    if k in attrs and k in f.attrs and str(f.attrs[k]) != str(attrs[k]):
                        raise ValueError(f"{store.path} holds activations of {k}={f.attrs[k]!r}, not {attrs[k]!r}; "
                                         "use another file")
            cases = f.require_group("cases")
            for name in list(cases):
                if not cases[name].attrs.get("complete", False):
                    del cases[name]
        return store

    def complete_cases(self) -> set[str]:
        import h5py

        if not self.path.exists():
            return set()
        with h5py.File(self.path, "r") as f:
            return {f["cases"][n].attrs["case_id"] for n in f.get("cases", {}) if f["cases"][n].attrs.get("complete")}

    def write_case(self, case_id: str, attrs: dict, data: dict) -> None:
        """``data[state][kind] = (recording_row, sites)`` for one case; written whole, then marked complete."""
        import h5py

        with h5py.File(self.path, "a") as f:
            cases = f.require_group("cases")
            if _key(case_id) in cases:
                del cases[_key(case_id)]
            g = cases.create_group(_key(case_id))
            g.attrs["case_id"] = case_id
            for k, v in attrs.items():
                g.attrs[k] = "" if v is None else v
            for state, kinds in data.items():
                for kind, (rec, sites) in kinds.items():
                    kg = g.create_group(f"{state}/{kind}")
                    kg.attrs["prompt"] = rec.prompts[0]
                    kg.attrs["subject_last"] = int(rec.token_positions[0, 0])
                    kg.attrs["prompt_last"] = int(rec.token_positions[0, 1])
                    keep = rec.cond_mask[0].astype(bool)
                    for site in sites:
                        v = rec.values[site.name][0]
                        if site.pathway == "conditioning":
                            v = v[keep]
                        kg.create_dataset(f"{site.pathway}/{site.name}", data=v.astype(np.float32),
                                          chunks=True, compression="gzip", compression_opts=4)
                    kg.create_dataset("conditioning/_lm_positions", data=rec.cond_lm_positions[0][keep])
            g.attrs["complete"] = True

    def read(self, case_id: str, state: str, kind: str) -> dict[str, np.ndarray]:
        """``{site name: array}`` of one case, state and prompt kind, plus ``_lm_positions`` ``(S,)`` and
        ``_subject_last``, the group's ``subject_last`` attribute as a 0-d int array (-1: no subject)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            try:
                kg = f["cases"][_key(case_id)][state][kind]
            except KeyError:
                raise KeyError(f"{self.path}: no {case_id}/{state}/{kind}") from None
            out = {}
            for pathway in kg:
                for name in kg[pathway]:
                    out[name] = kg[pathway][name][()]
            out["_subject_last"] = np.asarray(int(kg.attrs.get("subject_last", -1)))
            return out

    def prompt(self, case_id: str, state: str, kind: str) -> str:
        """The prompt recorded for one case, state and prompt kind (the group's ``prompt`` attribute)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            try:
                return str(f["cases"][_key(case_id)][state][kind].attrs["prompt"])
            except KeyError:
                raise KeyError(f"{self.path}: no {case_id}/{state}/{kind}") from None

    def kinds(self, case_id: str, state: str = "pre") -> list[str]:
        """The prompt kinds recorded for one case and state (direct, reasoning, ref_old, ref_new)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            try:
                return list(f["cases"][_key(case_id)][state].keys())
            except KeyError:
                raise KeyError(f"{self.path}: no {case_id}/{state}") from None

    def iter_cases(self) -> Iterator[tuple[str, dict]]:
        import h5py

        with h5py.File(self.path, "r") as f:
            for n in f.get("cases", {}):
                g = f["cases"][n]
                if g.attrs.get("complete"):
                    yield g.attrs["case_id"], dict(g.attrs)
