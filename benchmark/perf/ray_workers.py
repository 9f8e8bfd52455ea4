"""The same benchmark on 1 Ray worker and on N, side by side in one process (a private Ray cluster).

    python benchmark/perf/ray_workers.py [--model toy-direct] [--editor rome] [--protocol single]
                                         [--cases 24] [--batch-size N] [--workers 2] [--repeat 1]
                                         [--device cpu]

Both runs use the same spec and the same warm key-statistics cache (a warm-up run fills it first,
so neither pays for the statistics). The cluster is started with ``workers`` CPU slots (or the
GPUs it finds); one worker gets one slot, N workers get N. Prints each run's wall seconds (the
models loading in the actors included, since a user pays for them), the seconds spent in batches,
the speed-up, and whether the tables and ledgers agree. The order alternates with ``--repeat``.

On a GPU machine ``--device cuda`` gives each worker one GPU (1 vs all visible GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def _entries(run: Path) -> dict:
    out = {}
    for line in (run / "ledger.jsonl").read_text().splitlines():
        e = json.loads(line)
        e.pop("worker", None)
        out[(e["type"], e.get("case_id", e["batch"]))] = e
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy-direct")
    ap.add_argument("--editor", default="rome")
    ap.add_argument("--protocol", default="single", choices=("single", "batch"))
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2, help="the N of 1 vs N")
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs (order alternates)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pre-group", type=int, default=1,
                    help="single edits per job (RunSpec.pre_group; default 1, as measured before groups existed)")
    args = ap.parse_args()

    import ray
    import torch

    from unike_interp.bench.distributed import ClusterSettings, run_bench_distributed
    from unike_interp.bench.spec import RunSpec

    work = Path(tempfile.mkdtemp(prefix="ray_workers_"))
    os.environ.setdefault("UNIKE_CACHE_DIR", str(work / "cache"))
    spec = RunSpec(model=args.model, editor=args.editor, protocol=args.protocol, cases=args.cases,
                   batch_size=args.batch_size, device=args.device, pre_group=args.pre_group)
    gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    ray.init(num_cpus=max(args.workers, os.cpu_count() or 1) if gpus else args.workers, num_gpus=gpus,
             include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    print(f"machine: {os.cpu_count()} CPU(s), {gpus} GPU(s){' ' + torch.cuda.get_device_name(0) if gpus else ''}; "
          f"ray {ray.__version__}, torch {torch.__version__}; {args.model} x {args.editor} ({args.protocol}), "
          f"{args.cases} cases")

    def run(n: int, tag: str) -> tuple[float, dict, Path]:
        out = work / tag
        t0 = time.perf_counter()
        table = run_bench_distributed(spec, out, ClusterSettings(workers=n), progress=False, echo=lambda s: None)
        wall = time.perf_counter() - t0
        session = json.loads((out / "manifest.json").read_text())["sessions"][-1]
        load = max(i["load_seconds"] for i in session["workers_info"])
        print(f"  {n} worker(s): {wall:7.1f} s wall (slowest model load {load:.1f} s, "
              f"edit seconds summed over workers {session['edit_seconds']:.1f})")
        return wall, table, out

    run(1, "warmup")  # fills the key-statistics cache
    ratios = []
    for i in range(args.repeat):
        order = (1, args.workers) if i % 2 == 0 else (args.workers, 1)
        res = {n: run(n, f"r{i}-w{n}") for n in order}
        (w1, t1, o1), (wn, tn, on) = res[1], res[args.workers]
        same = t1 == tn and _entries(o1) == _entries(on)
        ratios.append(w1 / wn)
        print(f"pair {i}: speed-up {w1 / wn:.2f}x with {args.workers} workers; tables and ledgers identical: {same}")
    print(f"speed-up (1 -> {args.workers} workers): " + ", ".join(f"{r:.2f}x" for r in ratios))
    ray.shutdown()


if __name__ == "__main__":
    main()
