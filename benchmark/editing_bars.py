"""The editing table of the knowledge-editor issue: every editor under its protocol on the shipped
SynthWorld, 100 stage_1 edits, per toy variant.

    python benchmark/editing_bars.py [--variants toy-direct,toy-queries,toy-bottleneck] [--cases 100]
                                     [--editors rome,memit,pmet,alphaedit,ft] [--out runs/editing_bars.json]

Protocols: ROME single; MEMIT and PMET one batch of all cases; AlphaEdit sequential batches of 25
(evaluated at the end); FT single. Hyperparameters are the ``synthworld`` family defaults. The three
variants share one language model, so their text-side numbers coincide by construction; they are
run separately to show exactly that.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unike_interp.bench.edit_run import EditProtocol, run_edits, select_cases
from unike_interp.devices import resolve_device
from unike_interp.editing import make_editor
from unike_interp.models import load_model


def protocol_for(editor: str, n: int) -> EditProtocol:
    return {"rome": EditProtocol("single"), "ft": EditProtocol("single"), "memit": EditProtocol("batch", n),
            "pmet": EditProtocol("batch", n), "alphaedit": EditProtocol("sequential", 25)}[editor]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="toy-direct,toy-queries,toy-bottleneck")
    ap.add_argument("--editors", default="rome,memit,pmet,alphaedit,ft")
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="which seeded sample of cases (0: the one the bars are read on)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--world", help="a built SynthWorld folder (default: the shipped one)")
    ap.add_argument("--out", default="runs/editing_bars.json")
    args = ap.parse_args()
    rows = []
    print("| variant | editor | protocol | efficacy pre -> post | full match | P(new)>P(old) | generalization | "
          "locality | neighbours | same subject | s/edit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        adapter = load_model(variant, device=resolve_device(args.device), **({"world_dir": args.world} if args.world else {}))
        cases = select_cases(adapter.world.records, args.cases, seed=args.seed)
        for name in args.editors.split(","):
            editor = make_editor(name, family=adapter.family)
            proto = protocol_for(name, len(cases))
            r = run_edits(adapter, editor, adapter.world.records, cases, proto, progress=False)
            r.pop("hparams")
            rows.append({"variant": variant, **r})
            loc = r["locality"]
            print(f"| {variant} | {name} | {proto.kind} {proto.batch_size} | {r['efficacy']['pre']:.2f} -> "
                  f"{r['efficacy']['post']:.2f} | {r['efficacy_full']['post']:.2f} | {r['efficacy_p_new_gt_old']['post']:.2f} | "
                  f"{r['generalization']['post']:.2f} | {loc['post']:.3f} | {loc['neighbours']:.3f} | "
                  f"{loc['same_subject']:.3f} | {r['seconds_per_edit']:.3f} |", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print(json.dumps({"out": args.out, "rows": len(rows)}))


if __name__ == "__main__":
    main()
