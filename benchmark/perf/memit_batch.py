"""MEMIT, many edits in one batch: CPU seconds per edit of three ways to run the target
optimisation, side by side in one process.

    python benchmark/perf/memit_batch.py [--model toy-direct] [--edits 100] [--threads 1] [--repeat 1]
                                         [--editor memit] [--set key=value ...]

* ``every-layer``: the whole model on every position at each step (the method before, kept here
  as the anchor: :func:`unike_interp.editing.targets.fixed_layers` returns nothing and
  :func:`~unike_interp.editing.targets.suffix_start` returns 0);
* ``reuse``: the layers below the site recorded once and replayed, every position run;
* ``suffix`` (the library's default): also only the positions from the first subject on, the
  positions before it kept as an attention cache.

The key statistics are computed (or read from the cache) before timing. Prints CPU seconds per
edit (``time.process_time``), wall seconds, efficacy (the new value's first token is the argmax
after the edit), locality (the share of 100 other records' prompts whose argmax the edit leaves
unchanged), and how far each delta is from the anchor's. The order rotates with ``--repeat``.
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
    real_fixed, real_start = targets.fixed_layers, targets.suffix_start
    ids = torch.tensor([adapter.first_token_id(r.target_new) for r in reqs])
    others = [r.prompt for r in requests_from_records(select_cases(adapter.records(), 2 * args.edits, seed=0))
              if r.case_id not in {q.case_id for q in reqs}][: args.edits]
    before = adapter.next_token_logits(others).argmax(-1)
    variants = {"every-layer": (False, False), "reuse": (True, False), "suffix": (True, True)}

    def run(name):
        reuse, suffix = variants[name]
        targets.fixed_layers = real_fixed if reuse else (lambda *a: [])
        targets.suffix_start = real_start if suffix else (lambda batch: 0)
        c0, w0 = time.process_time(), time.perf_counter()
        res = editor.edit(adapter, reqs)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        eff = float((adapter.next_token_logits([r.prompt for r in reqs]).argmax(-1) == ids).float().mean())
        loc = float((adapter.next_token_logits(others).argmax(-1) == before).float().mean())
        delta = {k: v.clone() for k, v in res.delta.deltas.items()}
        res.remove()
        editor.new_sequence()
        return cpu, wall, eff, loc, delta

    names = list(variants)
    try:
        for i in range(args.repeat):
            order = names[i % 3:] + names[:i % 3]
            out = {name: run(name) for name in order}
            n = len(reqs)
            anchor = out["every-layer"]
            print(f"run {i} (order {', '.join(order)}):")
            for name in names:
                cpu, wall, eff, loc, delta = out[name]
                diff = ""
                if name != "every-layer":
                    rel = max(float((delta[k] - anchor[4][k]).norm() / anchor[4][k].norm().clamp(min=1e-30)) for k in delta)
                    diff = f", |delta - anchor| / |anchor| = {rel:.1e}"
                print(f"  {name:12s} {cpu / n:.3f} CPU-s/edit ({wall:6.1f} s wall) x{cpu / anchor[0]:.2f} | "
                      f"efficacy {eff:.2f}, locality {loc:.2f}{diff}")
    finally:
        targets.fixed_layers, targets.suffix_start = real_fixed, real_start

if __name__ == "__main__":
    main()
