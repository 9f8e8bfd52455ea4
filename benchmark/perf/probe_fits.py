"""Value-probe validation: every fold of every probe fitted in this process vs over one process per core.

    python benchmark/perf/probe_fits.py [--model toy-direct] [--repeat 1] [--jobs N]

Records the conditioning of every subject x template once, then runs ``validate_probes`` on it (no
judge: the fits alone) with ``n_jobs=1`` (BLAS on every core, as before), ``n_jobs=1`` with BLAS
limited to one thread (``threadpoolctl``: how much of the gain is the thread count alone) and
``n_jobs=N`` (default: the cores this process may use; each worker one BLAS thread), and prints the
wall seconds, the ratios, and whether all gave the same cross-validated accuracies.
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
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    variants = {"in-process, BLAS all cores": (1, nullcontext), "in-process, BLAS 1 thread": (1, lambda: threadpool_limits(1)),
                f"{args.jobs} processes": (args.jobs, nullcontext)}
    results: dict[str, list[float]] = {k: [] for k in variants}
    accs: dict[str, list[float]] = {}
    for r in range(args.repeat):
        for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            jobs, limit = variants[name]
            with limit():
                t0 = time.perf_counter()
                val = validate_probes(adapter, seed=0, conditioning=conds, n_jobs=jobs)
                wall = time.perf_counter() - t0
            results[name].append(wall)
            accs[name] = [p.cv_mean for ps in val.probes.values() for p in ps]
            n = sum(len(ps) for ps in val.probes.values())
            print(f"round {r} {name}: {n} probes in {wall:.1f} s wall")
    base = np.median(results[next(iter(variants))])
    for name in variants:
        m = np.median(results[name])
        diff = np.abs(np.asarray(accs[name]) - np.asarray(accs[next(iter(variants))]))
        print(f"{name}: median {m:.1f} s wall, {m / base:.3f}x the first ({base / m:.2f}x faster); "
              f"cv accuracies identical to the first: {int((diff == 0).sum())} of {len(diff)} (largest difference "
              f"{diff.max():.4f})")


if __name__ == "__main__":
    main()
