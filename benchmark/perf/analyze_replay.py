"""`unike analyze` replaying stored deltas against re-optimising every edit, side by side in one process.

    python benchmark/perf/analyze_replay.py [--model toy-bottleneck] [--editor memit] [--cases 100]
                                            [--batch-size N] [--run DIR]

Runs the benchmark once (or takes ``--run``), then analyses it twice into separate folders:
``stored`` (the default: apply each point's stored delta, no editor, no key statistics) and
``reoptimized`` (what analyze did before runs stored their deltas: build the editor, re-run every
edit). Prints the seconds of each (recording, and recording + statistics), the editing and
key-statistics seconds the re-optimising analysis spent, and whether both recorded the same
post-edit activations. The order alternates with ``--repeat`` so neither always runs warm.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy-bottleneck")
    ap.add_argument("--editor", default="memit")
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=None, help="cases per edit (default: all at once)")
    ap.add_argument("--run", help="an existing run folder with stored deltas (default: run the benchmark first)")
    ap.add_argument("--repeat", type=int, default=1, help="pairs of analyses (order alternates)")
    args = ap.parse_args()

    from unike_interp.bench import protocol
    from unike_interp.bench.pipeline import run_bench
    from unike_interp.bench.spec import RunSpec
    from unike_interp.interp.analyze import analyze_run
    from unike_interp.interp.store import ActivationStore

    work = Path(tempfile.mkdtemp(prefix="analyze_replay_"))
    run = Path(args.run) if args.run else work / "run"
    if not args.run:
        spec = RunSpec(model=args.model, editor=args.editor, protocol="batch", batch_size=args.batch_size,
                       cases=args.cases)
        t0 = time.perf_counter()
        run_bench(spec, run, progress=False, echo=lambda s: None)
        print(f"benchmark run ({args.model} x {args.editor}, {args.cases} cases): {time.perf_counter() - t0:.1f} s -> {run}")

    # count the re-optimising analysis' editing time through the driver's editor source
    spent = {"edit": 0.0, "stats": 0.0}
    original_prepare, original_edit = protocol.EditorSource.prepare, protocol.EditorSource.edit

    def prepare(self, adapter):
        t = time.perf_counter()
        original_prepare(self, adapter)
        spent["stats"] += time.perf_counter() - t

    def edit(self, adapter, index, batch):
        t = time.perf_counter()
        original_edit(self, adapter, index, batch)
        spent["edit"] += time.perf_counter() - t

    protocol.EditorSource.prepare, protocol.EditorSource.edit = prepare, edit
    rows = []
    for i in range(args.repeat):
        order = ("stored", "reoptimized") if i % 2 == 0 else ("reoptimized", "stored")
        for mode in order:
            out = work / f"analysis-{mode}-{i}"
            spent.update(edit=0.0, stats=0.0)
            t0 = time.perf_counter()
            s = analyze_run(run, out, reoptimize=mode == "reoptimized", progress=False, echo=lambda s: None,
                            figures=False)
            rows.append({"mode": mode, "pair": i, "record_s": s["record_seconds"], "total_s": time.perf_counter() - t0,
                         "edit_s": spent["edit"], "stats_s": spent["stats"], "out": out})
    same = True
    a, b = (ActivationStore.open(r["out"] / "activations.h5") for r in rows[:2])
    for cid, _ in a.iter_cases():
        x, y = a.read(cid, "post", "direct"), b.read(cid, "post", "direct")
        same &= all(np.array_equal(x[k], y[k]) for k in x)
    print(f"{'mode':<12}{'pair':>5}{'record s':>10}{'total s':>9}{'editing s':>11}{'key stats s':>13}")
    for r in rows:
        print(f"{r['mode']:<12}{r['pair']:>5}{r['record_s']:>10.1f}{r['total_s']:>9.1f}{r['edit_s']:>11.1f}{r['stats_s']:>13.1f}")
    st = [r for r in rows if r["mode"] == "stored"]
    ro = [r for r in rows if r["mode"] == "reoptimized"]
    saved = np.mean([r["record_s"] for r in ro]) - np.mean([r["record_s"] for r in st])
    paid = np.mean([r["edit_s"] + r["stats_s"] for r in ro])
    print(f"stored replay saves {saved:.1f} s of recording; the re-optimising analysis spent {paid:.1f} s editing "
          f"(incl. key statistics); post-edit activations identical: {bool(same)}")
    print(json.dumps({"rows": [{k: (round(v, 2) if isinstance(v, float) else str(v)) for k, v in r.items()} for r in rows],
                      "saved_s": round(float(saved), 2), "editing_s": round(float(paid), 2), "identical": bool(same)}))


if __name__ == "__main__":
    main()
