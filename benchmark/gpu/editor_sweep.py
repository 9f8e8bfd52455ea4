"""Sweep an editor's hyperparameters on a SynthWorld variant: efficacy and locality per setting.

Each setting is one JSON object of hyperparameter overrides (on top of the model family's
defaults); the protocol and the cases are the same for all. A row is printed and appended to
``--out`` (JSON lines) as soon as a setting finishes, so a run stopped by ``--budget-s`` or by a
time limit keeps what it measured.

    python benchmark/gpu/editor_sweep.py --editor memit --protocol batch --cases 100 \\
        --settings benchmark/gpu/memit_settings.json --device cuda --budget-s 240 --out sweep.jsonl

The settings file holds a JSON list of objects; ``{}`` is the family default.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from unike_interp.bench.edit_run import EditProtocol, run_edits, select_cases
from unike_interp.devices import resolve_device
from unike_interp.editing import make_editor
from unike_interp.editing.base import EditGuardError
from unike_interp.models import load_model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy-direct")
    ap.add_argument("--editor", required=True)
    ap.add_argument("--protocol", default="batch", choices=["single", "batch", "sequential"])
    ap.add_argument("--batch-size", type=int, help="default: all cases in one batch")
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="which seeded sample of cases")
    ap.add_argument("--settings", required=True, help="JSON file: a list of hyperparameter override objects")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget-s", type=float, default=None, help="start no new setting after this many seconds")
    ap.add_argument("--out", default="runs/editor_sweep.jsonl")
    args = ap.parse_args(argv)

    settings = json.loads(Path(args.settings).read_text())
    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
        raise SystemExit(f"{args.settings}: expected a JSON list of objects")
    adapter = load_model(args.model, device=resolve_device(args.device))
    cases = select_cases(adapter.world.records, args.cases, seed=args.seed)
    proto = EditProtocol(args.protocol, args.batch_size or len(cases))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"# {args.model} {args.editor} {proto.kind} {proto.batch_size}, {len(cases)} cases, {adapter.device}")
    print("| setting | efficacy | locality | neighbours | generalization | guard failures | s/edit |")
    print("|---|---|---|---|---|---|---|")
    for i, overrides in enumerate(settings):
        if args.budget_s is not None and time.perf_counter() - t0 > args.budget_s:
            print(f"# budget reached: {len(settings) - i} setting(s) not run")
            break
        editor = make_editor(args.editor, dict(overrides), family=adapter.family)
        row = {"model": args.model, "editor": args.editor, "protocol": proto.kind, "batch_size": proto.batch_size,
               "cases": len(cases), "seed": args.seed, "overrides": overrides, "device": str(adapter.device)}
        try:
            r = run_edits(adapter, editor, adapter.world.records, cases, proto, full=False, progress=False)
        except EditGuardError as e:  # a setting the guard refuses is a result, not a crash
            row["error"] = str(e)
            print(f"| {json.dumps(overrides)} | guard: {e} |")
        else:
            row.update(efficacy=r["efficacy"]["post"], locality=r["locality"]["post"],
                       neighbours=r["locality"]["neighbours"], generalization=r["generalization"]["post"],
                       seconds_per_edit=r["seconds_per_edit"], guard_failures=r["guard_failures"])
            if r["guard_failures"]:  # the refused cases were evaluated unedited: say why
                row["guard_error"] = str(r["failures"][0].get("error", ""))[:300] if r.get("failures") else ""
            print(f"| {json.dumps(overrides)} | {row['efficacy']:.3f} | {row['locality']:.3f} | "
                  f"{row['neighbours']:.3f} | {row['generalization']:.3f} | {row['guard_failures']} | "
                  f"{row['seconds_per_edit']:.3f} |", flush=True)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
    print(json.dumps({"out": str(out), "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
