"""Retrain the three SynthWorld generators on a longer schedule, on an accelerator.

Generators are the slow part of a SynthWorld build on a CPU (about 0.25 s a step on two cores);
on a GPU a step takes milliseconds. This script:

1. copies the finished non-generator stages of a world (default: the shipped one) into one
   folder per pathway, so the three trainings run as parallel processes without sharing a
   ``build.json``;
2. runs ``--probe-steps`` steps of each pathway side by side and takes the slowest seconds/step;
3. picks the largest step count, a multiple of 1,000 and at most ``--max-steps``, that fits
   ``--budget-s`` at that rate, and runs
   ``unike world build --config <world>/build.json --set generator.steps=N --device D``
   for each pathway (again side by side);
4. merges the three generators and their timings into ``--out`` and evaluates it
   (``unike world eval --json``), writing ``eval.json``.

The chosen ``N`` lands in ``--out/build.json``, so ``unike world build --config <out>/build.json``
reproduces the world (same seed; GPU kernels need not be bit-identical to CPU ones).

    python benchmark/gpu/retrain_generators.py --out /tmp/w --device cuda --budget-s 300
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PATHWAYS = ("toy-direct", "toy-queries", "toy-bottleneck")
BASE_STAGES = ("world.json", "build.json", "tokenizer", "lm", "verifier")


def shipped_world() -> Path:
    from unike_interp.world.store import default_world_dir

    return Path(default_world_dir())


def copy_base(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in BASE_STAGES:
        s = src / name
        if s.is_dir():
            shutil.copytree(s, dst / name, dirs_exist_ok=True)
        else:
            shutil.copy2(s, dst / name)
    # A fresh build.json keeps the configuration but forgets the generator timings of ``src``.
    manifest = json.loads((dst / "build.json").read_text())
    manifest["seconds"] = {k: v for k, v in manifest.get("seconds", {}).items() if k not in PATHWAYS}
    (dst / "build.json").write_text(json.dumps(manifest, indent=1) + "\n")


def build_parallel(base: Path, work: Path, steps: int, device: str, extra: list[str], log_dir: Path) -> dict:
    """Train every pathway in its own process; return {pathway: stage seconds}."""
    procs = {}
    for name in PATHWAYS:
        d = work / name
        copy_base(base, d)
        cmd = [sys.executable, "-m", "unike_interp", "world", "build", "--out", str(d), "--config",
               str(base / "build.json"), "--set", f"generator.steps={steps}", *extra, "--pathways", name,
               "--device", device, "--no-progress", "--json"]
        log = open(log_dir / f"{work.name}_{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    seconds, per_step = {}, {}
    for name, (p, log) in procs.items():
        rc = p.wait()
        log.close()
        if rc != 0:
            raise SystemExit(f"{name} build failed (exit {rc}); see {log.name}")
        seconds[name] = json.loads((work / name / "build.json").read_text())["seconds"][name]
        # Seconds per training step from the log's timestamps (start-up and feature caching excluded).
        tl = json.loads((work / name / name / "train_log.json").read_text())
        per_step[name] = (tl[-1]["seconds"] - tl[0]["seconds"]) / max(1, tl[-1]["step"] - tl[0]["step"])
    return seconds, per_step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", help="source world (default: the shipped one)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=300.0, help="wall seconds for the real training")
    ap.add_argument("--probe-steps", type=int, default=300)
    ap.add_argument("--max-steps", type=int, default=30000)
    ap.add_argument("--min-steps", type=int, default=1000)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra build overrides")
    args = ap.parse_args(argv)

    src = Path(args.world) if args.world else shipped_world()
    out = Path(args.out)
    work = out.parent / (out.name + "_work")
    log_dir = out.parent / (out.name + "_logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    extra = [x for s in args.set for x in ("--set", s)]
    copy_base(src, out)

    t0 = time.perf_counter()
    probe, probe_rate = build_parallel(out, work / "probe", args.probe_steps, args.device, extra, log_dir)
    per_step = max(probe_rate.values())
    steps = int(args.budget_s / per_step) // 1000 * 1000
    steps = max(args.min_steps, min(args.max_steps, steps))
    print(json.dumps({"probe_seconds": probe, "probe_s_per_step": probe_rate, "s_per_step": round(per_step, 5), "steps": steps,
                      "probe_wall": round(time.perf_counter() - t0, 1)}), flush=True)
    shutil.rmtree(work / "probe")

    t1 = time.perf_counter()
    seconds, rate = build_parallel(out, work / "real", steps, args.device, extra, log_dir)
    wall = time.perf_counter() - t1
    manifest = json.loads((out / "build.json").read_text())
    for name in PATHWAYS:
        shutil.copytree(work / "real" / name / name, out / name, dirs_exist_ok=True)
        built = json.loads((work / "real" / name / "build.json").read_text())
        manifest["config"] = built["config"]
        manifest["device"] = built["device"]
        manifest.setdefault("stage_devices", {})[name] = built.get("stage_devices", {}).get(name, built["device"])
    manifest["seconds"].update(seconds)
    manifest["generators_parallel_wall_seconds"] = round(wall, 1)
    manifest["total_seconds"] = round(sum(manifest["seconds"].values()), 2)
    (out / "build.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps({"steps": steps, "seconds": seconds, "s_per_step": rate, "wall": round(wall, 1)}), flush=True)
    shutil.rmtree(work)

    res = subprocess.run([sys.executable, "-m", "unike_interp", "world", "eval", "--world", str(out),
                          "--device", args.device, "--json"], capture_output=True, text=True)
    print(res.stdout[-3000:], res.stderr[-2000:], flush=True)
    if res.returncode == 0:
        (out / "eval.json").write_text(res.stdout.strip().splitlines()[-1] + "\n")
    return res.returncode


if __name__ == "__main__":
    raise SystemExit(main())
