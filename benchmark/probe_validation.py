"""Validated value probes on the shipped SynthWorld: per category, the generator's own accuracy
(image-seen / text-only subjects) beside the best probe's grouped-CV accuracy, chance, and whether a
probe validates (:func:`unike_interp.interp.probes.validate_probes`); and the seconds it took.

    OMP_NUM_THREADS=1 python benchmark/probe_validation.py [--variants toy-direct ...] [--out runs/probes.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from unike_interp.interp.probes import validate_probes
from unike_interp.judges.verifier import VerifierJudge
from unike_interp.models.synthworld import VARIANTS, load_synthworld


def _f(x) -> str:
    return "   -" if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--categories", nargs="+", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write every probe's scores here (JSON)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    for name in args.variants:
        adapter = load_synthworld(name)
        t0 = time.perf_counter()
        judge = VerifierJudge(adapter.verifier)
        val = validate_probes(adapter, seed=args.seed, judge=judge, categories=args.categories)
        total = time.perf_counter() - t0
        summary = val.summary()
        sec = val.seconds
        print(f"\n{name}: record {sec['record']:.1f} s, generator {sec['generator']:.1f} s, "
              f"probe fit {sec['fit']:.1f} s (CPU {sec['fit_cpu']:.1f} s), total {total:.1f} s")
        print(f"{'category':<12}{'gen seen':>9}{'gen text':>9}  {'best probe: reader/model/templates':<56}"
              f"{'CV':>6}{'seen':>6}{'text':>6}{'chance':>7}{'bar':>6}  validated")
        for cat, d in summary.items():
            b, g = d["best"], d["generator"]
            if b is None:
                print(f"{cat:<12} no probe: {d.get('skipped')}")
                continue
            reader = b["reader"] + ("->slots" if b.get("fallback") else "")
            where = f"{reader}/{b['model']}/{b['template_set']}"
            print(f"{cat:<12}{_f(g.get('image-seen')):>9}{_f(g.get('text-only')):>9}  {where:<56}"
                  f"{_f(b['cv_accuracy']):>6}{_f(b['cv_by_split'].get('image-seen')):>6}"
                  f"{_f(b['cv_by_split'].get('text-only')):>6}{_f(d['chance']):>7}{_f(d['bar']):>6}  {d['validated']}")
        out[name] = {"seconds": sec, "summary": summary, "generator": val.generator}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
