"""The tests execute analyses/explore.ipynb: every code cell in order, in one namespace (no
Jupyter needed), so the notebook cannot rot."""

import json
import linecache

import numpy as np
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "analyses" / "explore.ipynb"


def test_explore_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    ns: dict = {"__name__": "__main__"}
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 4
    for i, cell in enumerate(cells):
        src = "".join(cell["source"])
        name = f"<{NOTEBOOK.name} cell {i}>"
        # nnsight reads a trace's `with` body back from source, as Jupyter makes possible
        linecache.cache[name] = (len(src), None, src.splitlines(True), name)
        exec(compile(src, name, "exec"), ns)
    assert len(ns["images"]) == len(ns["names"]) and ns["info"]["delta_norm"] > 0
    tc = ns["tc"]
    assert tc.maps["restore"].shape[0] == ns["adapter"].num_layers and np.isfinite(tc.p_post)
