"""Seconds per edit of every editor, measured side by side in one process.

    python benchmark/perf/edit_speed.py [--model toy-direct] [--cases 25] [--device auto] [--dtype float32]

For each editor, runs its default protocol (ROME single; MEMIT and PMET one batch; AlphaEdit
sequential batches; FT single) on the same seeded cases, after warming the statistics cache (so
statistics time is reported apart and not in the per-edit time), and prints seconds per edit,
statistics seconds, peak memory and each editor's time relative to ROME's. Text metrics are skipped
except efficacy, to time the editing itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from unike_interp.bench.edit_run import EditProtocol, run_edits, select_cases
from unike_interp.devices import resolve_device, resolve_dtype
from unike_interp.editing import make_editor
from unike_interp.models import load_model

PROTOCOLS = {
    "rome": lambda n: EditProtocol("single"),
    "memit": lambda n: EditProtocol("batch", n),
    "pmet": lambda n: EditProtocol("batch", n),
    "alphaedit": lambda n: EditProtocol("sequential", max(1, n // 4)),
    "ft": lambda n: EditProtocol("single"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="toy-direct")
    ap.add_argument("--cases", type=int, default=25)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--editors", default=",".join(PROTOCOLS))
    args = ap.parse_args()
    device = resolve_device(args.device)
    adapter = load_model(args.model, device=device, dtype=resolve_dtype(args.dtype))
    records = adapter.world.records
    cases = select_cases(records, args.cases)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"# {args.model} on {device} ({machine}), {args.dtype}, {len(cases)} cases, torch {torch.__version__}")
    rows = []
    for name in args.editors.split(","):
        editor = make_editor(name, family=adapter.family)
        t = time.perf_counter()
        editor.prepare(adapter)  # warm (or load) the statistics cache
        warm = time.perf_counter() - t
        out = run_edits(adapter, editor, records, cases, PROTOCOLS[name](len(cases)), max_locality=1, full=False, progress=False)
        rows.append({"editor": name, "protocol": out["protocol"]["kind"], "batch": out["protocol"]["batch_size"],
                     "seconds_per_edit": out["seconds_per_edit"], "stats_seconds_first_call": round(warm, 2),
                     "peak_memory_mb": out["peak_memory_mb"], "efficacy": out["efficacy"]["post"]})
    base = next((r["seconds_per_edit"] for r in rows if r["editor"] == "rome"), rows[0]["seconds_per_edit"])
    print(f"{'editor':<10}{'protocol':<12}{'batch':>6}{'s/edit':>9}{'x ROME':>8}{'stats s':>9}{'peak MB':>9}{'efficacy':>10}")
    for r in rows:
        r["ratio_to_rome"] = round(r["seconds_per_edit"] / base, 2) if base else None
        print(f"{r['editor']:<10}{r['protocol']:<12}{r['batch']:>6}{r['seconds_per_edit']:>9.3f}{r['ratio_to_rome']:>8.2f}"
              f"{r['stats_seconds_first_call']:>9.2f}{r['peak_memory_mb']:>9.0f}{r['efficacy']:>10.3f}")
    print(json.dumps({"device": str(device), "machine": machine, "rows": rows}))


if __name__ == "__main__":
    main()
