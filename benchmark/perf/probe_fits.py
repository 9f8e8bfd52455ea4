"""Value-probe validation: every fold of every probe fitted in this process vs over one process per core.

    python benchmark/perf/probe_fits.py [--model toy-direct] [--repeat 1] [--jobs N]

Records the conditioning of every subject x template once, then runs ``validate_probes`` on it (no
judge: the fits alone) alternately with ``n_jobs=1`` and ``n_jobs=N`` (default: the cores this
process may use), and prints the wall seconds, their ratio, and whether both gave the same
cross-validated accuracies.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from unike_interp.interp.probes import default_jobs, record_templates, validate_probes
from unike_interp.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy-direct")
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs (default: 1)")
    ap.add_argument("--jobs", type=int, default=default_jobs(), help="processes of the parallel run (default: cores)")
    args = ap.parse_args()

    adapter = load_model(args.model)
    subjects = list(adapter.subject_values())
    t0 = time.perf_counter()
    conds = record_templates(adapter, subjects, seed=0)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {args.model}: {len(subjects)} subjects x {len(conds)} templates "
          f"recorded in {time.perf_counter() - t0:.1f} s")
    results: dict[int, list[float]] = {1: [], args.jobs: []}
    accs: dict[int, list[float]] = {}
    for r in range(args.repeat):
        for jobs in ((1, args.jobs) if r % 2 == 0 else (args.jobs, 1)):
            t0 = time.perf_counter()
            val = validate_probes(adapter, seed=0, conditioning=conds, n_jobs=jobs)
            wall = time.perf_counter() - t0
            results[jobs].append(wall)
            accs[jobs] = [p.cv_mean for ps in val.probes.values() for p in ps]
            n = sum(len(ps) for ps in val.probes.values())
            print(f"pair {r} n_jobs={jobs}: {n} probes in {wall:.1f} s wall")
    one, many = np.median(results[1]), np.median(results[args.jobs])
    diff = np.abs(np.asarray(accs[1]) - np.asarray(accs[args.jobs]))
    print(f"median wall: n_jobs=1 {one:.1f} s, n_jobs={args.jobs} {many:.1f} s -> {many / one:.3f}x "
          f"({one / many:.2f}x faster)")
    print(f"cross-validated accuracies: {int((diff == 0).sum())} of {len(diff)} identical, largest difference "
          f"{diff.max():.4f}")


if __name__ == "__main__":
    main()
