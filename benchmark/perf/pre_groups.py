"""Single edits: the unedited model's images drawn per case against drawn per group, side by side.

    python benchmark/perf/pre_groups.py [--model toy-direct] [--cases 16] [--repeat 2] [--group 8]

Runs the same `unike bench` (ROME, single edits, statistics cached by a warm-up run) alternately
with pre-edit groups of 1 case (`--pre-group 1`: each case's pre-edit images drawn alone) and of
``--group`` cases, in one process, and prints wall and CPU seconds of the whole run and of its
pre-edit measurement (the unedited model's images drawn and judged), with the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy-direct", help="a model name (default: toy-direct)")
    ap.add_argument("--cases", type=int, default=16, help="cases, one edit each (default: 16)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting, interleaved (default: 2)")
    ap.add_argument("--group", type=int, default=8, help="cases per pre-edit group to compare (default: 8)")
    args = ap.parse_args()

    from unike_interp.bench import pipeline
    from unike_interp.bench.spec import RunSpec

    spec = RunSpec(model=args.model, editor="rome", protocol="single", cases=args.cases, image_locality_probes=0,
                   bootstrap=10)
    spent = {"wall": 0.0, "cpu": 0.0}
    measure_pre = pipeline.measure_pre

    def timed(m, cases):
        t, c = time.perf_counter(), time.process_time()
        try:
            return measure_pre(m, cases)
        finally:
            spent["wall"] += time.perf_counter() - t
            spent["cpu"] += time.process_time() - c

    pipeline.measure_pre = timed
    work = Path(tempfile.mkdtemp(prefix="pre_groups_"))
    pipeline.run_bench(spec, work / "warm-up", progress=False, echo=lambda s: None)  # the statistics, cached
    results: dict[int, list[dict]] = {1: [], args.group: []}
    tables = {}
    for i in range(args.repeat):
        for group in (1, args.group):
            spent.update(wall=0.0, cpu=0.0)
            t, c = time.perf_counter(), time.process_time()
            tables[group] = pipeline.run_bench(replace(spec, pre_group=group), work / f"g{group}-{i}", progress=False,
                                               echo=lambda s: None)
            results[group].append({"wall": time.perf_counter() - t, "cpu": time.process_time() - c,
                                   "pre_wall": spent["wall"], "pre_cpu": spent["cpu"]})
    med = {g: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for g, rs in results.items()}
    print(f"{args.model} x ROME, {args.cases} single edits, median of {args.repeat} interleaved runs each")
    print(f"{'pre-edit group':>15} {'run wall s':>11} {'run CPU-s':>10} {'pre wall s':>11} {'pre CPU-s':>10}")
    for g, m in med.items():
        print(f"{g:>15} {m['wall']:>11.1f} {m['cpu']:>10.1f} {m['pre_wall']:>11.1f} {m['pre_cpu']:>10.1f}")
    a, b = med[1], med[args.group]
    print(f"ratio {args.group} / 1: run wall {b['wall'] / a['wall']:.2f}x, run CPU {b['cpu'] / a['cpu']:.2f}x, "
          f"pre-edit wall {b['pre_wall'] / a['pre_wall']:.2f}x, pre-edit CPU {b['pre_cpu'] / a['pre_cpu']:.2f}x")
    o1, og = tables[1]["main"]["overall"], tables[args.group]["main"]["overall"]
    print("overall stage-1 rates, group 1 vs group " + str(args.group) + ": "
          + ", ".join(f"{k} {o1[k]['rate']:.3f} / {og[k]['rate']:.3f}" for k in ("eff", "vqa_direct", "vqa_reasoning",
                                                                                "pre_vqa")))


if __name__ == "__main__":
    main()
