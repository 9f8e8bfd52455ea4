"""MEMIT, many edits in one batch: CPU seconds per edit with and without reusing the layers below
the optimised site, side by side in one process.

    python benchmark/perf/memit_batch.py [--model toy-direct] [--edits 100] [--threads 1] [--repeat 1]
                                         [--editor memit] [--set key=value ...]

``every-layer`` runs the whole model at each target-optimisation step (the method before, kept
here as the anchor: :func:`unike_interp.editing.targets.fixed_layers` returns nothing);
``reuse`` records the outputs of the layers below the site once and replays them. The key
statistics are computed (or read from the cache) before timing. Prints CPU seconds per edit
(``time.process_time``), wall seconds, efficacy (the new value's first token is the argmax), and
whether the two weight deltas are bit-identical. The order alternates with ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy-direct")
    ap.add_argument("--editor", default="memit")
    ap.add_argument("--edits", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="hyperparameter key=value (JSON value)")
    args = ap.parse_args()

    import json

    import unike_interp.editing.targets as targets
    from unike_interp.bench.protocol import select_cases
    from unike_interp.editing import make_editor, requests_from_records
    from unike_interp.models import load_model

    torch.set_num_threads(args.threads)
    adapter = load_model(args.model)
    recs = select_cases(adapter.records(), args.edits, seed=0)
    reqs = requests_from_records([r for r in recs])[: args.edits]
    hp = {k: json.loads(v) for k, v in (x.split("=", 1) for x in args.set)}
    editor = make_editor(args.editor, hp, family=adapter.family)
    t0 = time.process_time()
    editor.prepare(adapter)
    print(f"machine: {os.cpu_count()} CPU(s), torch {torch.__version__} on {torch.get_num_threads()} thread(s), load "
          f"{os.getloadavg()[0]:.2f}; {args.model} x {args.editor}, {len(reqs)} edits in one batch; statistics "
          f"{time.process_time() - t0:.1f} CPU-s")
    real = targets.fixed_layers
    ids = torch.tensor([adapter.first_token_id(r.target_new) for r in reqs])

    def run(reuse: bool):
        targets.fixed_layers = real if reuse else (lambda *a: [])
        c0, w0 = time.process_time(), time.perf_counter()
        res = editor.edit(adapter, reqs)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        eff = float((adapter.next_token_logits([r.prompt for r in reqs]).argmax(-1) == ids).float().mean())
        sha = res.delta.sha256()
        res.remove()
        editor.new_sequence()
        return cpu, wall, eff, sha

    for i in range(args.repeat):
        order = (False, True) if i % 2 == 0 else (True, False)
        out = {reuse: run(reuse) for reuse in order}
        (c_a, w_a, e_a, s_a), (c_b, w_b, e_b, s_b) = out[False], out[True]
        n = len(reqs)
        print(f"run {i}: every-layer {c_a / n:.3f} CPU-s/edit ({w_a:.1f} s wall, efficacy {e_a:.2f}) | reuse "
              f"{c_b / n:.3f} CPU-s/edit ({w_b:.1f} s wall, efficacy {e_b:.2f}) | ratio {c_b / c_a:.2f}; "
              f"deltas bit-identical: {s_a == s_b}")
    targets.fixed_layers = real


if __name__ == "__main__":
    main()
