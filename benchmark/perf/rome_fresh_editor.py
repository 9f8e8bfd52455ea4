"""ROME from a fresh editor with the statistics cached: preparation and edit seconds.

    UNIKE_CACHE_DIR=... python benchmark/perf/rome_fresh_editor.py [--model toy-direct] [--edits 3]

The first editor fills the cache (key statistics and the Cholesky inverse of C) if it is empty;
each later line is a new editor reading both from the cache, then one edit (restored after).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy-direct")
    ap.add_argument("--edits", type=int, default=3)
    args = ap.parse_args()

    from unike_interp.editing import make_editor, requests_from_records
    from unike_interp.models import load_model

    adapter = load_model(args.model)
    recs = adapter.records()[: args.edits + 1]
    for i in range(args.edits + 1):
        t, c = time.perf_counter(), time.process_time()
        editor = make_editor("rome", {}, family=adapter.family)
        editor.prepare(adapter)
        prep = time.perf_counter() - t
        res = editor.edit(adapter, requests_from_records(recs[i:i + 1]))
        print(f"{'warm-up' if i == 0 else 'fresh editor'}: prepare {prep:.2f} s, edit {res.seconds:.2f} s, "
              f"total {time.perf_counter() - t:.2f} s wall, {time.process_time() - c:.2f} CPU-s")
        res.remove()


if __name__ == "__main__":
    main()
