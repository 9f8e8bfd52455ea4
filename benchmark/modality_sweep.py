"""Modality-aware editing, side by side with the plain editor: one `unike bench` run per setting.

    python benchmark/modality_sweep.py SETTINGS.json --model toy-direct --seed 1 [--cases 100]
                                       [--image-locality 100] [--out runs/modality] [--jobs 1]

``SETTINGS.json`` is a list of ``{"label", "editor", "protocol", "batch_size", "set": {hparam: value}}``
(``protocol`` / ``batch_size`` optional: MEMIT and PMET one batch of all cases, AlphaEdit sequential
batches of 25). Each setting runs as its own process into ``<out>/<model>/s<seed>/<label>/`` (a
finished run is read back, not run again), and one JSON line per setting is appended to
``<out>/sweep.jsonl``: the setting, efficacy, generalisation (stages 2-4 cloze prompts), text
and image locality, VQA Direct at stage 1 and stages 2-4, VQA Reasoning, seconds per edit, each
rate with its 95% interval. ``image_loc_unkept``: image locality over the probes whose subject was
not among the kept names (``cond_preserve``); a plain setting is read over the probes its editor's
default modality-aware edit keeps out. A markdown table row per setting is printed as it finishes.

Per-family defaults are chosen on held-out samples (``--seed 1`` and ``--seed 2``) and read on
``--seed 0``; every setting tried lands in ``sweep.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROTOCOLS = {"memit": ("batch", None), "pmet": ("batch", None), "alphaedit": ("sequential", 25)}
COLUMNS = ("eff", "gen", "text_loc", "image_loc", "image_loc_unkept", "vqa1", "vqa_n", "vqa_reason", "s_per_edit")


def _rate(x: dict) -> dict:
    return {"rate": x["rate"], "ci": x["ci"], "k": x["k"], "n": x["n"]}


def read_run(folder: Path) -> dict:
    """The sweep's columns from a finished run folder's ``table.json`` and ``manifest.json``."""
    t = json.loads((folder / "table.json").read_text())
    m = json.loads((folder / "manifest.json").read_text())
    sessions = m.get("sessions") or [m]
    edit_s = sum(float(s.get("edit_seconds") or 0.0) for s in sessions)
    main, stn, loc = t["main"]["overall"], t["stages"].get("stage_n", {}), t["locality"]
    return {
        "eff": _rate(main["eff"]), "gen": _rate(stn["eff"]) if stn else None,
        "text_loc": _rate(loc["text"]), "image_loc": _rate(loc["image"]),
        "vqa1": _rate(main["vqa_direct"]), "vqa_n": _rate(stn["vqa_direct"]) if stn else None,
        "vqa_reason": _rate(main["vqa_reasoning"]), "s_per_edit": round(edit_s / max(1, t["n_cases"]), 3),
        "n_cases": t["n_cases"],
    }


def unkept_image_locality(folder: Path, model: str, hp: dict) -> dict | None:
    """Image locality over the probes whose subject was *not* among the kept names
    (``cond_preserve``): the kept names come from the statistics corpus, which in SynthWorld holds
    every subject, the probes' included, so the probes the edit was told to keep are left out here."""
    from unike_interp.editing.modality import preserved_names
    from unike_interp.editing.hparams import make_hparams
    from unike_interp.models import load_model

    full = make_hparams(hp.get("editor", "memit"), "synthworld", {k: v for k, v in hp.items() if k != "editor"})
    n = full.cond_preserve if full.modality_aware else 0
    if not n:
        return None
    corpus = load_model(model).default_stats_corpus()
    points = [d for d in map(json.loads, (folder / "ledger.jsonl").read_text().splitlines()) if "image_locality" in d]
    k = m = 0
    records = {r.case_id: r for r in load_model(model).records()}
    for d in points:  # (a sequence's point lists every case so far; batch protocol: its batch)
        edited = {records[c].subject for c in d["cases"]}
        kept = set(preserved_names(corpus, edited, n, full.seed, full.cond_templates))
        for p in d["image_locality"]:
            if p["pre"]["verdict"] and records[p["case_id"]].subject not in kept:
                m += 1
                k += bool(p["post"]["verdict"])
    from unike_interp.interp.interventions import wilson

    lo, hi = wilson(k, m)
    return {"rate": k / m if m else None, "ci": [lo, hi], "k": k, "n": m}


def run_setting(s: dict, args) -> dict:
    editor = s.get("editor", "memit")
    proto, bs = PROTOCOLS.get(editor, ("batch", None))
    proto, bs = s.get("protocol", proto), s.get("batch_size", bs)
    folder = Path(args.out) / args.model / f"s{args.seed}" / s["label"]
    if not (folder / "table.json").exists():
        cmd = [sys.executable, "-m", "unike_interp", "bench", "--model", args.model, "--editor", editor,
               "--protocol", proto, "--cases", str(args.cases), "--seed", str(args.seed),
               "--image-locality", str(args.image_locality), "--no-progress", str(folder)]
        if bs:
            cmd += ["--batch-size", str(bs)]
        for k, v in (s.get("set") or {}).items():
            cmd += ["--set", f"{k}={json.dumps(v)}"]
        folder.parent.mkdir(parents=True, exist_ok=True)
        log = folder.parent / f"{s['label']}.log"
        with log.open("w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ}).returncode
        if rc != 0:
            return {"label": s["label"], "error": f"unike bench exited {rc}; see {log}"}
    out = {"label": s["label"], "model": args.model, "seed": args.seed, "editor": editor, "protocol": proto,
           "batch_size": bs, "set": s.get("set") or {}, **read_run(folder)}
    hp = {"editor": editor, **(s.get("set") or {})}
    # a plain run is read over the probes its editor's default modality-aware edit keeps out, so the
    # plain and modality-aware rows compare on one subset
    out["image_loc_unkept"] = unkept_image_locality(folder, args.model, hp if hp.get("modality_aware") else
                                                    {**hp, "modality_aware": True})
    return out


def row(r: dict) -> str:
    if "error" in r:
        return f"| {r['label']} | error: {r['error']} |"

    def f(x):
        if isinstance(x, dict) and x.get("rate") is None:
            return "-"
        return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else
                                      f"{100 * x['rate']:.1f} [{100 * x['ci'][0]:.1f}, {100 * x['ci'][1]:.1f}]")
    return "| " + " | ".join([r["label"], *(f(r[c]) for c in COLUMNS)]) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("settings", help="JSON list of settings (see the module doc)")
    ap.add_argument("--model", default="toy-direct")
    ap.add_argument("--seed", type=int, default=1, help="case sample (1, 2: held out for choosing; 0: reported)")
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--image-locality", type=int, default=100, help="unedited subjects drawn per evaluation point")
    ap.add_argument("--out", default="runs/modality")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each with OMP_NUM_THREADS=cores/jobs)")
    ap.add_argument("--only", help="comma-separated labels to run (default: all)")
    args = ap.parse_args()
    settings = json.loads(Path(args.settings).read_text())
    if args.only:
        keep = set(args.only.split(","))
        settings = [s for s in settings if s["label"] in keep]
    if args.jobs > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // args.jobs)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("| setting | " + " | ".join(COLUMNS) + " |\n|" + "---|" * (len(COLUMNS) + 1), flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(lambda s: run_setting(s, args), settings):
            print(row(r), flush=True)
            with (out / "sweep.jsonl").open("a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
