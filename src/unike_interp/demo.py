"""The main job on SynthWorld (``unike demo`` / ``make demo``), as a library function.

Synthesise and validate the records, draw a contact sheet, evaluate the shipped SynthWorld UMM,
then run the benchmark with one editor on each of the three variants and print a summary across
them. SynthWorld is this job's subject, so this module sits beside the CLI, above every layer.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

VARIANTS = ("toy-direct", "toy-queries", "toy-bottleneck")


def run_demo(out: str | Path = "runs/demo", *, seed: int = 0, world: str | None = None, device: str = "auto",
             models: tuple[str, ...] = VARIANTS, editor: str = "memit", cases: int = 100, world_eval: bool = True,
             progress: bool = True, echo: Callable[[str], None] = print) -> dict:
    """Run the demo into ``out``; return its summary (records, world evaluation, each model's overall table)."""
    from .data.io import load_unike, write_unike
    from .data.synthworld import generate_world
    from .data.synthworld.sheet import subject_sheet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    synth = generate_world(seed=seed)
    data_path = write_unike(synth.records, out / "synthworld.json")
    synth.save(out / "synthworld.world.json")
    loaded = load_unike(data_path)
    counts = synth.counts()
    echo(f"SynthWorld seed {seed}: {len(synth.subjects)} subjects, {len(synth.records)} records -> {data_path}")
    echo(f"validation: {len(loaded.records)} valid, {len(loaded.invalid_indices)} invalid")
    echo("records per category: " + ", ".join(f"{k} {v}" for k, v in counts["per_category"].items()))
    echo("subjects per split:   " + ", ".join(f"{k} {v}" for k, v in counts["per_split"].items()))
    sheet, n_images = subject_sheet(synth, 16, 4)
    sheet.save(out / "contact_sheet.png")
    echo(f"wrote a contact sheet of {n_images} renders to {out / 'contact_sheet.png'}")
    summary = {"out": str(out), "records": len(loaded.records), "invalid": len(loaded.invalid_indices),
               "contact_sheet": str(out / "contact_sheet.png"), "ok": loaded.ok, **counts}
    summary["world_eval"] = _world_eval(out, world, device, seed, echo, progress) if world_eval else None
    if summary["world_eval"] is not None or not world_eval:
        summary["bench"] = _bench(out, world=world, device=device, seed=seed, models=models, editor=editor,
                                  cases=cases, progress=progress, echo=echo)
    reports = [str(out / "bench" / f"{m}-{editor}" / "report.html") for m in models] if summary.get("bench") else []
    summary["results"] = (f"{out} (table: {out / 'bench' / 'summary.md'}; pages: {', '.join(reports)})" if reports
                          else str(out))
    return summary


def _world_eval(out: Path, world: str | None, device: str, seed: int, echo, progress: bool = True) -> dict | None:
    """Evaluate the SynthWorld UMM and draw what each pathway makes of a few subjects."""
    from .data.synthworld.render import contact_sheet, render
    from .devices import resolve_device
    from .models import load_model
    from .models.synthworld import evaluate_world
    from .world.store import WorldNotBuiltError, default_world_dir

    world_dir = Path(world) if world else default_world_dir()
    dev = resolve_device(device)
    try:
        result = evaluate_world(world_dir, device=dev, progress=progress, echo=echo)
    except WorldNotBuiltError as exc:
        echo(f"no trained SynthWorld model to evaluate ({exc}); skipping the model part of the demo")
        return None
    echo(f"SynthWorld UMM ({world_dir}):")
    echo(f"  text recall {result['text_recall']}, reasoning recall {result['reasoning_recall']}")
    for key in ("image_accuracy", "image_accuracy_text_only"):
        echo(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in result[key].items()))
    from .judges.verifier import VerifierJudge

    images, labels, marks = [], [], []
    adapters = [load_model(n, world_dir=world_dir, device=dev) for n in VARIANTS]
    judge = VerifierJudge.from_world(world_dir, device=dev)
    records = adapters[0].records()
    synth = adapters[0].world
    for rec in records[:12]:
        subj = synth.subject(rec.subject)
        images.append(render(subj.scene("single")))
        labels.append(f"{subj.name}\ntruth ({subj.split})\n{rec.category}: {rec.stage_1.gt}")
        marks.append(None)
        for m in adapters:
            image = m.generate_images([rec.stage_1.image_prompt], seed=seed)[0]
            verdict = judge.judge(image, rec, "stage_1", target=rec.stage_1.gt)
            images.append(image)
            labels.append(f"{subj.name}\n{m.name}\n{'sees' if verdict.verdict else 'reads'} {verdict.predicted}")
            marks.append(verdict.verdict)
    path = out / "generated.png"
    title = ("Unedited model. Each subject: its render (truth; the record's category and value), then what each "
             "pathway draws from the image prompt.\nFrame: green = the verifier reads the true value in the "
             "image, red = it reads another (named in the label).")
    contact_sheet(images, labels, columns=8, scale=4, marks=marks, title=title).save(path)
    echo(f"wrote renders and each pathway's images of 12 subjects, judged, to {path}")
    return {k: v for k, v in result.items() if k not in ("image_details", "reasoning_examples")} | {
        "generated_sheet": str(path)}


def _bench(out: Path, *, world, device, seed, models, editor, cases, progress, echo) -> dict:
    """The benchmark on each model with one editor; a summary table across them."""
    from .bench.aggregate import render_markdown
    from .bench.pipeline import run_bench
    from .bench.spec import RunSpec

    tables = {}
    for model in models:
        run_dir = out / "bench" / f"{model}-{editor}"
        if run_dir.exists():  # the demo's own folder: every demo is a fresh run
            shutil.rmtree(run_dir)
        spec = RunSpec(model=model, editor=editor, protocol="batch", cases=cases, seed=seed, device=device, world=world)
        t0 = time.perf_counter()
        tables[model] = run_bench(spec, run_dir, progress=progress, echo=echo)
        echo(render_markdown(tables[model]))
        echo(f"({model}: {time.perf_counter() - t0:.0f} s; run folder {run_dir})\n")
    summary = demo_summary(tables)
    (out / "bench" / "summary.md").write_text(summary, encoding="utf-8")
    echo(summary)
    first = out / "bench" / f"{models[0]}-{editor}"
    echo(f"each model's run folder {out / 'bench'}/<model>-{editor}/ holds report.html (every case's images and "
         f"verdicts; open it in a browser), table.md, ledger.jsonl and images/; explain a run with "
         f"`unike analyze {first}`")
    return {m: {"overall": t["main"].get("overall"), "locality": t["locality"]} for m, t in tables.items()}


def demo_summary(tables: dict) -> str:
    """One line per model: overall stage-1 rates and locality, the cross-variant comparison."""
    from .bench.aggregate import render_side_by_side

    return render_side_by_side(tables)
