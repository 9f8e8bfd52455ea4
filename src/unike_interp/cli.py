"""The ``unike`` command: a thin layer over the library API.

Every subcommand that computes something takes ``--json`` and then prints exactly one JSON object
as the last line of stdout (human-readable text goes before it). Errors in the user's input exit
with status 2 and a message naming the file, record or field; a validation that finds bad records
exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _emit_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, sort_keys=False))


# --- unike data ------------------------------------------------------------------------------

def cmd_data_validate(args: argparse.Namespace) -> int:
    from .data.io import DataFileError, load_unike
    from .data.validate import DataValidationError

    try:
        result = load_unike(args.path, strict=args.strict)
    except DataFileError as exc:
        raise CLIError(str(exc)) from None
    except DataValidationError as exc:
        summary = {"total": None, "valid": None, "invalid": 1, "problems": [exc.problem.to_dict()], "strict": True}
        print(f"{args.path}: invalid (strict): {exc.problem}")
        if args.json:
            _emit_json(summary)
        return EXIT_INVALID
    summary = result.summary()
    print(f"{args.path}: {summary['valid']} valid, {summary['invalid']} invalid, of {summary['total']} records")
    for p in result.problems:
        print(f"  - {p}")
    if args.json:
        _emit_json(summary)
    return EXIT_OK if result.ok else EXIT_INVALID


def cmd_data_synth(args: argparse.Namespace) -> int:
    from .data.io import write_unike
    from .data.synthworld import generate_world

    world = generate_world(seed=args.seed, n_subjects=args.subjects, text_only_fraction=args.text_only_fraction)
    out = write_unike(world.records, args.out)
    counts = world.counts()
    print(f"wrote {counts['records']} records for {counts['subjects']} subjects to {out}")
    print("  per source:   " + ", ".join(f"{k} {v}" for k, v in counts["per_source"].items()))
    print("  per category: " + ", ".join(f"{k} {v}" for k, v in counts["per_category"].items()))
    print("  per split:    " + ", ".join(f"{k} {v}" for k, v in counts["per_split"].items()))
    if args.world_out:
        world.save(args.world_out)
        print(f"wrote the world description (subjects, facts, split) to {args.world_out}")
    if args.json:
        _emit_json({"path": str(out), "seed": args.seed, **counts})
    return EXIT_OK


# --- unike world -----------------------------------------------------------------------------

def cmd_world_show(args: argparse.Namespace) -> int:
    from .data.synthworld import LAYOUTS, generate_world
    from .data.synthworld.render import contact_sheet, render

    world = generate_world(seed=args.seed)
    images, labels = [], []
    for subj in world.subjects[: args.subjects]:
        for layout in LAYOUTS:
            images.append(render(subj.scene(layout)))
            f = subj.facts
            labels.append(
                f"{subj.name} ({subj.split[0]})\n{f['size']} {f['color']} {f['shape']}\n{f['pattern']} {f['material']}"
            )
    sheet = contact_sheet(images, labels, columns=len(LAYOUTS) * 2, scale=args.scale)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote a contact sheet of {len(images)} renders ({args.subjects} subjects x {len(LAYOUTS)} layouts) to {out}")
    if args.json:
        _emit_json({"path": str(out), "images": len(images), "size": list(sheet.size)})
    return EXIT_OK


def _load_build_config(path: str):
    """A BuildConfig from a JSON file: a world's ``build.json`` (its ``config``) or a bare config."""
    from .world.build import BuildConfig

    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CLIError(f"cannot read build config {p}: {exc}") from None
    d = d.get("config", d)
    try:
        return BuildConfig.from_dict(d)
    except (TypeError, KeyError, ValueError) as exc:
        raise CLIError(f"{p}: not a SynthWorld build config ({exc})") from None


def _override_build_config(config, sets: dict):
    """Apply ``--set section.field=value`` overrides (e.g. ``generator.steps=20000``)."""
    from .world.build import BuildConfig

    d = config.to_dict()
    for key, value in sets.items():
        *path, leaf = key.split(".")
        node = d
        for part in path:
            if not isinstance(node.get(part), dict):
                raise CLIError(f"--set {key}: {part!r} is not a config section (sections: lm, generator, verifier)")
            node = node[part]
        if leaf not in node:
            raise CLIError(f"--set {key}: unknown field {leaf!r}; known: {', '.join(sorted(node))}")
        node[leaf] = value
    try:
        return BuildConfig.from_dict(d)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--set: {exc}") from None


def cmd_world_build(args: argparse.Namespace) -> int:
    from .devices import resolve_device
    from .world.build import PATHWAY_NAMES, BuildConfig, build_world

    if args.config:
        config = _load_build_config(args.config)
    else:
        config = BuildConfig.quick_config(args.seed) if args.quick else BuildConfig(seed=args.seed)
        if not args.quick:
            config.lm.seed = config.generator.seed = config.verifier.seed = args.seed
    if args.set:
        config = _override_build_config(config, _parse_sets(args.set))
    pathways = tuple(args.pathways.split(",")) if args.pathways else tuple(PATHWAY_NAMES)
    unknown = [p for p in pathways if p not in PATHWAY_NAMES]
    if unknown:
        raise CLIError(f"unknown pathway(s) {', '.join(unknown)}; known: {', '.join(PATHWAY_NAMES)}")
    try:
        manifest = build_world(args.out, config, device=resolve_device(args.device), pathways=pathways,
                               progress=not args.no_progress)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(f"world built in {args.out}: " + ", ".join(f"{k} {v:.1f} s" for k, v in manifest["seconds"].items()))
    if args.json:
        _emit_json({"out": str(args.out), "seconds": manifest["seconds"], "total_seconds": manifest["total_seconds"],
                    "quick": args.quick, "seed": args.seed})
    return EXIT_OK


def cmd_world_eval(args: argparse.Namespace) -> int:
    from .devices import resolve_device
    from .world.evaluate import evaluate_world
    from .world.store import WorldNotBuiltError

    try:
        result = evaluate_world(args.world, device=resolve_device(args.device), seed=args.seed)
    except WorldNotBuiltError as exc:
        raise CLIError(str(exc)) from None
    print(f"text_recall        {result['text_recall']}  (full greedy {result['text_recall_full']}, "
          f"all facts {result['text_recall_all_facts']}, n={result['text_recall_n']})")
    print(f"reasoning_recall   {result['reasoning_recall']}  (exact caption {result['reasoning_caption_exact']})")
    print("verifier_accuracy  " + ", ".join(f"{k} {v:.3f}" for k, v in result["verifier_accuracy"].items()))
    for key in ("image_accuracy", "image_accuracy_text_only"):
        print(f"{key:<18} " + ", ".join(f"{k} {v}" for k, v in result[key].items()))
    if args.json:
        _emit_json(result)
    return EXIT_OK


# --- unike edit ------------------------------------------------------------------------------

def _parse_sets(items: Sequence[str]) -> dict:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def format_edit_table(r: dict) -> str:
    """A plain-text table of an edit run's text metrics (pre -> post)."""
    rows = [("efficacy (top-1, stage_1)", r["efficacy"]), ("efficacy (full greedy)", r["efficacy_full"]),
            ("efficacy (P(new) > P(old))", r["efficacy_p_new_gt_old"])]
    rows += [(f"  {s}", v) for s, v in r["per_stage"].items()]
    rows += [("generalization (stages 2..n)", r["generalization"]), ("locality (unchanged)", r["locality"])]
    loc = r["locality"]
    lines = [f"{r['editor']} on {r['model']} -- {r['protocol']['kind']} protocol, batch {r['protocol']['batch_size']}, "
             f"{r['n_cases']} cases", f"{'metric':<32}{'pre':>8}{'post':>8}"]
    fmt = lambda x: "-" if x is None else f"{x:.3f}"
    lines += [f"{name:<32}{fmt(v['pre']):>8}{fmt(v['post']):>8}" for name, v in rows]
    lines += [f"{'  neighbours / other':<32}{'':>8}{fmt(loc['neighbours']):>8} / {fmt(loc['other'])}",
              f"{'  same subject, other facts':<32}{'':>8}{fmt(loc['same_subject']):>8}",
              f"seconds per edit {r['seconds_per_edit']:.3f} (statistics {r['stats_seconds']:.1f} s), "
              f"peak memory {r['peak_memory_mb']:.0f} MB, guard failures {r['guard_failures']}"]
    return "\n".join(lines)


def cmd_edit(args: argparse.Namespace) -> int:
    import dataclasses

    from .bench.edit_run import EditProtocol, run_edits, select_cases
    from .devices import resolve_device, resolve_dtype
    from .editing import load_hparams, make_editor, make_hparams
    from .editing.stats import StatsCache, load_corpus
    from .models.registry import load_model
    from .world.store import WorldNotBuiltError

    try:
        protocol = EditProtocol(args.protocol, args.batch_size or (1 if args.protocol == "single" else args.cases or 100),
                                eval_each_batch=args.eval_each_batch)
        adapter = load_model(args.model, device=resolve_device(args.device), dtype=resolve_dtype(args.dtype),
                             **({"world_dir": args.world} if args.world else {}))
        overrides = _parse_sets(args.set)
        if args.hparams:
            hp = load_hparams(args.hparams, args.editor, adapter.family)
            if overrides:
                hp = make_hparams(args.editor, None, {**dataclasses.asdict(hp), **overrides}, source="--set")
        else:
            hp = make_hparams(args.editor, adapter.family, overrides, source="--set")
        corpus = load_corpus(args.stats_corpus) if args.stats_corpus else None
        editor = make_editor(args.editor, hp, stats_cache=StatsCache(args.cache_dir) if args.cache_dir else None,
                             stats_corpus=corpus, progress=not args.no_progress)
        if args.data:
            from .data.io import load_unike

            records = load_unike(args.data, strict=True).records
        elif getattr(adapter, "world", None) is not None:
            records = adapter.world.records
        else:
            raise CLIError(f"{args.model} has no built-in records: pass --data UniKE.json")
        cases = select_cases(records, args.cases, seed=args.seed)
        editor.layers(adapter)  # a bad layer list is an input error, reported before any work
    except (KeyError, ValueError, FileNotFoundError, WorldNotBuiltError) as exc:
        raise CLIError(str(exc).strip("'\"")) from None
    if args.save_deltas and not args.out:
        raise CLIError("--save-deltas needs --out DIR")
    result = run_edits(adapter, editor, records, cases, protocol, max_locality=args.max_locality, seed=args.seed,
                       full=not args.no_full, progress=not args.no_progress, keep_delta=args.save_deltas)
    deltas = result.pop("_deltas", [])
    print(format_edit_table(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for i, d in enumerate(deltas):
            d.save(out / "deltas" / f"edit_{i:04d}")
        if deltas:
            result["deltas"] = [f"deltas/edit_{i:04d}.safetensors" for i in range(len(deltas))]
            print(f"wrote {len(deltas)} weight deltas to {out / 'deltas'}")
        (out / "edit_result.json").write_text(json.dumps(result, indent=1))
        print(f"wrote {out / 'edit_result.json'}")
    if args.json:
        _emit_json(result)
    return EXIT_OK


# --- unike bench / report ---------------------------------------------------------------------

#: CLI destination -> BenchConfig field, for the options a config file may also set.
_BENCH_FIELDS = {
    "model": "model", "editor": "editor", "protocol": "protocol", "batch_size": "batch_size", "cases": "cases",
    "data": "data", "world": "world", "judge": "judge", "compose": "compose", "hparams": "hparams_file",
    "stats_corpus": "stats_corpus", "device": "device", "dtype": "dtype", "seed": "seed",
    "text_locality": "text_locality_probes", "image_locality": "image_locality_probes", "bootstrap": "bootstrap",
}


def bench_config_from_args(args: argparse.Namespace):
    """A BenchConfig from ``--config FILE`` (if given) overlaid with the flags given explicitly."""
    from .bench.pipeline import BenchConfig

    given = lambda dest: dest in (getattr(args, "_given", None) or ())  # noqa: E731
    try:
        values = BenchConfig.fields_from_file(args.config) if getattr(args, "config", None) else {}
        values.setdefault("model_options", {})
        values.setdefault("hparams", {})
        values.setdefault("judge_options", {})
        for dest, name in _BENCH_FIELDS.items():
            if name not in values or given(dest):
                values[name] = getattr(args, dest, None)
        if args.all_cases:
            values["cases"] = None
        values["judge_options"] = {**values["judge_options"], **_parse_sets(args.judge_option)}
        values["hparams"] = {**values["hparams"], **_parse_sets(args.set)}
        if getattr(args, "device_map", None):
            values["model_options"]["device_map"] = args.device_map
        pipe_kw = _parse_sets(getattr(args, "pipeline_option", None))
        if pipe_kw:
            values["model_options"]["pipeline_kwargs"] = {**values["model_options"].get("pipeline_kwargs", {}), **pipe_kw}
        return BenchConfig(**values)
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.aggregate import render_markdown
    from .bench.pipeline import RunFolderError, run_bench
    from .world.store import WorldNotBuiltError

    config = bench_config_from_args(args)
    out = args.out or f"runs/bench/{config.model}-{config.editor}-{config.protocol}-s{config.seed}"
    try:
        table = run_bench(config, out, resume=args.resume, progress=not args.no_progress)
    except (RunFolderError, KeyError, ValueError, FileNotFoundError, WorldNotBuiltError) as exc:
        raise CLIError(str(exc).strip("'\"")) from None
    print(render_markdown(table))
    print(f"run folder: {out} (table.md, table.csv, table.json, ledger.jsonl, images/)")
    if args.json:
        _emit_json(table)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .bench.aggregate import render_markdown, report
    from .bench.ledger import LedgerError

    try:
        table = report(args.run)
    except (FileNotFoundError, LedgerError) as exc:
        raise CLIError(str(exc)) from None
    print(render_markdown(table))
    if args.json:
        _emit_json(table)
    return EXIT_OK


# --- unike analyze ----------------------------------------------------------------------------

def cmd_analyze(args: argparse.Namespace) -> int:
    from .bench.pipeline import RunFolderError, run_bench
    from .interp.analyze import analyze_run
    from .models.sites import SiteError
    from .world.store import WorldNotBuiltError

    try:
        if args.run:
            run = Path(args.run)
            if not (run / "config.json").exists():
                raise CLIError(f"{run} is not a benchmark run folder (no config.json); run `unike bench --out {run}` first")
        else:
            if not args.out:
                raise CLIError("give --run DIR (a benchmark run) or --model/--editor/--cases with --out DIR")
            run = Path(args.out)
            config = bench_config_from_args(args)
            run_bench(config, run, resume=(run / "ledger.jsonl").exists(), progress=not args.no_progress)
        summary = analyze_run(run, args.analysis_out, device=None if args.device == "auto" else args.device,
                              progress=not args.no_progress)
    except (RunFolderError, KeyError, ValueError, FileNotFoundError, WorldNotBuiltError, SiteError) as exc:
        raise CLIError(str(exc).strip("'\"")) from None
    print(f"analysed {summary['n_cases']} cases of {summary['model']} x {summary['editor']}: {summary['hdf5']}")
    rows = sorted(summary["aucs"]["vqa_direct"].items(), key=lambda kv: -abs((kv[1]["auc"] or 0.5) - 0.5))
    print(f"{'statistic':<44}{'AUC (VQA direct)':>18}{'AUC (VQA reasoning)':>21}")
    for name, d in rows[:25]:
        r = summary["aucs"]["vqa_reasoning"].get(name, {})
        fmt = lambda x: "-" if x is None else f"{x:.3f}"
        print(f"{name:<44}{fmt(d['auc']):>18}{fmt(r.get('auc')):>21}")
    for fig in summary.get("figures", []) or []:
        print(f"figure: {fig}")
    if args.json:
        _emit_json(summary)
    return EXIT_OK


# --- unike models -----------------------------------------------------------------------------

def cmd_models(args: argparse.Namespace) -> int:
    from .models.registry import model_requirements

    models = model_requirements()
    width = max(len(k) for k in models)
    for name, info in models.items():
        print(f"{name:<{width}}  {info['description']}")
        for need in info["needs"]:
            print(f"{'':<{width}}    needs: {need}")
        missing = info["missing"]
        print(f"{'':<{width}}    here:  " + (f"missing {', '.join(missing)}" if missing else "nothing missing"))
    if args.json:
        _emit_json(models)
    return EXIT_OK


# --- unike demo ------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on SynthWorld with what exists so far: synthesise, validate, render."""
    from .data.io import load_unike, write_unike
    from .data.synthworld import generate_world

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = generate_world(seed=args.seed)
    data_path = write_unike(world.records, out / "synthworld.json")
    world.save(out / "synthworld.world.json")
    loaded = load_unike(data_path)
    print(f"SynthWorld seed {args.seed}: {len(world.subjects)} subjects, {len(world.records)} records -> {data_path}")
    print(f"validation: {len(loaded.records)} valid, {len(loaded.invalid_indices)} invalid")
    counts = world.counts()
    print("records per category: " + ", ".join(f"{k} {v}" for k, v in counts["per_category"].items()))
    print("subjects per split:   " + ", ".join(f"{k} {v}" for k, v in counts["per_split"].items()))
    sheet_args = argparse.Namespace(seed=args.seed, subjects=16, scale=4, out=str(out / "contact_sheet.png"), json=False)
    cmd_world_show(sheet_args)
    summary = {
        "out": str(out),
        "records": len(loaded.records),
        "invalid": len(loaded.invalid_indices),
        "contact_sheet": str(out / "contact_sheet.png"),
        **counts,
    }
    summary["world_eval"] = _demo_world_eval(out, args) if not args.no_world_eval else None
    if summary["world_eval"] is not None or args.no_world_eval:
        summary["bench"] = _demo_bench(out, args)
    if args.json:
        _emit_json(summary)
    return EXIT_OK if loaded.ok else EXIT_INVALID


def _demo_world_eval(out: Path, args: argparse.Namespace) -> dict | None:
    """Evaluate the shipped SynthWorld UMM and draw what each pathway makes of a few subjects."""
    from .data.synthworld.render import contact_sheet, render
    from .devices import resolve_device
    from .models import load_model
    from .world.evaluate import evaluate_world
    from .world.store import WorldNotBuiltError, default_world_dir

    world_dir = Path(args.world) if getattr(args, "world", None) else default_world_dir()
    device = resolve_device(getattr(args, "device", "auto"))
    try:
        result = evaluate_world(world_dir, device=device)
    except WorldNotBuiltError as exc:
        print(f"no trained SynthWorld model to evaluate ({exc}); skipping the model part of the demo")
        return None
    print(f"SynthWorld UMM ({world_dir}):")
    print(f"  text recall {result['text_recall']}, reasoning recall {result['reasoning_recall']}")
    for key in ("image_accuracy", "image_accuracy_text_only"):
        print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in result[key].items()))
    images, labels = [], []
    models = [load_model(n, world_dir=world_dir, device=device) for n in ("toy-direct", "toy-queries", "toy-bottleneck")]
    world = models[0].world
    for rec in world.records[:12]:
        subj = world.subject(rec.subject)
        images.append(render(subj.scene("single")))
        labels.append(f"{subj.name}\ntruth ({subj.split})")
        for m in models:
            images.append(m.generate_images([rec.stage_1.image_prompt], seed=args.seed)[0])
            labels.append(f"{subj.name}\n{m.name}")
    path = out / "generated.png"
    contact_sheet(images, labels, columns=8, scale=4).save(path)
    print(f"wrote renders and each pathway's images of 12 subjects to {path}")
    return {k: v for k, v in result.items() if k not in ("image_details", "reasoning_examples")} | {
        "generated_sheet": str(path)
    }


def _demo_bench(out: Path, args: argparse.Namespace) -> dict:
    """The benchmark on the three SynthWorld variants with one editor; a summary table across them."""
    import shutil
    import time

    from .bench.aggregate import render_markdown
    from .bench.pipeline import BenchConfig, run_bench

    tables = {}
    for model in args.models.split(","):
        run_dir = out / "bench" / f"{model}-{args.editor}"
        if run_dir.exists():  # the demo's own folder: every demo is a fresh run
            shutil.rmtree(run_dir)
        cfg = BenchConfig(model=model, editor=args.editor, protocol="batch", cases=args.cases, seed=args.seed,
                          device=args.device, world=getattr(args, "world", None))
        t0 = time.perf_counter()
        tables[model] = run_bench(cfg, run_dir, progress=not args.no_progress)
        print(render_markdown(tables[model]))
        print(f"({model}: {time.perf_counter() - t0:.0f} s; run folder {run_dir})\n")
    summary = demo_summary(tables)
    (out / "bench" / "summary.md").write_text(summary, encoding="utf-8")
    print(summary)
    return {m: {"overall": t["main"].get("overall"), "locality": t["locality"]} for m, t in tables.items()}


def demo_summary(tables: dict) -> str:
    """One line per model: overall stage-1 rates and locality, the cross-variant comparison."""
    def pct(d):
        return "-" if not d or d.get("rate") is None else f"{100 * d['rate']:.1f} [{100 * d['ci'][0]:.1f}, {100 * d['ci'][1]:.1f}]"

    head = ["Model", "Editor", "n", "Eff.", "Reason.", "VQA Direct", "VQA Reasoning", "Pre-edit VQA",
            "Text locality", "Image locality"]
    lines = ["Overall, stage 1, rates in % [95% CI]:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, t in tables.items():
        o = t["main"].get("overall", {})
        lines.append(f"| {model} | {t['editor']} | {o.get('n', 0)} | " + " | ".join(
            pct(o.get(k)) for k in ("eff", "reason", "vqa_direct", "vqa_reasoning", "pre_vqa"))
            + f" | {pct(t['locality']['text'])} | {pct(t['locality']['image'])} |")
    return "\n".join(lines) + "\n"


# --- parser ----------------------------------------------------------------------------------

def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a TOML or JSON run configuration (BenchConfig fields; flags given here win), "
                                    "e.g. benchmark/configs/lumina2.toml")
    p.add_argument("--device-map", help="real models: accelerate device_map for the language model (e.g. auto)")
    p.add_argument("--pipeline-option", action="append", metavar="KEY=VALUE",
                   help="diffusers pipelines: an argument of every pipeline call, e.g. height=512")


def _tracked_call(base: type):
    def call(self, parser, namespace, values, option_string=None):
        if getattr(namespace, "_given", None) is None:
            namespace._given = set()
        namespace._given.add(self.dest)
        base.__call__(self, parser, namespace, values, option_string)
    return call


def _track_given_flags(p: argparse.ArgumentParser) -> None:
    """Record which options the command line gives (``args._given``), so that a ``--config`` file
    is overridden by those flags only -- a flag given with its default value included."""
    p.set_defaults(_given=None)
    for a in p._actions:
        if a.dest in _BENCH_FIELDS:
            base = type(a)
            a.__class__ = type(f"Tracked{base.__name__}", (base,), {"__call__": _tracked_call(base)})


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="unike",
        description="Cross-modal knowledge editing in unified multimodal models (SynthWorld by default).",
    )
    parser.add_argument("--version", action="version", version=f"unike-interp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(p: argparse._SubParsersAction, name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        sp = p.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        sp.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
        return sp

    data = sub.add_parser("data", help="UniKE records: validate files, synthesise SynthWorld")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p = add(data_sub, "validate", cmd_data_validate, "validate a UniKE.json file and report every bad record")
    p.add_argument("path", help="a UniKE.json file (a JSON array of records)")
    p.add_argument("--strict", action="store_true", help="stop at the first problem")
    p = add(data_sub, "synth", cmd_data_synth, "write SynthWorld's records as UniKE.json")
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subjects", type=int, default=324, help="number of subjects (one record each)")
    p.add_argument("--text-only-fraction", type=float, default=0.2)
    p.add_argument("--world-out", help="also write the world description (subjects, facts, split) here")

    world = sub.add_parser("world", help="SynthWorld: renders and (later) its trained models")
    world_sub = world.add_subparsers(dest="world_command", metavar="SUBCOMMAND")
    p = add(world_sub, "show", cmd_world_show, "write a labelled contact sheet of SynthWorld renders")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subjects", type=int, default=12, help="how many subjects to show (each in every layout)")
    p.add_argument("--scale", type=int, default=4, help="upscaling factor of each 32x32 render")

    p = add(world_sub, "build", cmd_world_build, "train the SynthWorld UMM (LM, verifier, three generators)")
    p.add_argument("--out", default="runs/world", help="output folder (an interrupted build resumes there)")
    p.add_argument("--quick", action="store_true", help="a tiny world for tests (under two minutes on a CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto")
    p.add_argument("--pathways", help="comma-separated subset of toy-direct,toy-queries,toy-bottleneck")
    p.add_argument("--config", help="build from this configuration (a world's build.json, e.g. the shipped one's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one build setting, e.g. generator.steps=20000 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p = add(world_sub, "eval", cmd_world_eval, "measure text recall, reasoning, verifier and image accuracy")
    p.add_argument("--world", help="a built world folder (default: the world shipped in the package)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for the generated images")

    p = add(sub, "edit", cmd_edit, "edit a model's language backbone and measure the text side before and after")
    p.add_argument("--model", default="toy-direct", help="a model name (see `unike world show` / load_model)")
    p.add_argument("--editor", default="rome", help="rome, memit, pmet, alphaedit or ft")
    p.add_argument("--protocol", default="single", choices=["single", "batch", "sequential"])
    p.add_argument("--cases", type=int, default=100, help="how many records to edit (a seeded sample)")
    p.add_argument("--batch-size", type=int, help="cases per batch (batch/sequential; default: all cases at once)")
    p.add_argument("--eval-each-batch", action="store_true", help="sequential: evaluate after every batch")
    p.add_argument("--hparams", help="a TOML or YAML file of hyperparameters")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one hyperparameter (repeatable)")
    p.add_argument("--data", help="a UniKE.json file (default: the model's own SynthWorld records)")
    p.add_argument("--stats-corpus", help="text/JSONL file for the key statistics (default: the model's corpus)")
    p.add_argument("--cache-dir", help="statistics cache folder (default $UNIKE_CACHE_DIR or ~/.cache/unike-interp)")
    p.add_argument("--world", help="a built SynthWorld folder (default: the shipped world)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-locality", type=int, default=256, help="unrelated locality probes per evaluation")
    p.add_argument("--no-full", action="store_true", help="skip the full greedy-match metric (faster)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", help="write edit_result.json here")
    p.add_argument("--save-deltas", action="store_true",
                   help="also write each edit's (or batch's) weight delta under OUT/deltas (safetensors + JSON)")

    p = add(sub, "bench", cmd_bench, "the benchmark: edit, text metrics, reasoning, direct and reasoning images, VQA, table")
    p.add_argument("--model", default="toy-direct", help="a model name (toy-direct, toy-queries, toy-bottleneck, ...)")
    p.add_argument("--editor", default="memit", help="rome, memit, pmet, alphaedit or ft")
    p.add_argument("--protocol", default="batch", choices=["single", "batch", "sequential"])
    p.add_argument("--batch-size", type=int, help="cases per edit (batch/sequential; default: all cases at once)")
    p.add_argument("--cases", type=int, default=100, help="how many records (a seeded sample)")
    p.add_argument("--all-cases", action="store_true", help="every record of the data")
    p.add_argument("--data", help="a UniKE.json file (default: the model's own SynthWorld records)")
    p.add_argument("--out", help="run folder (default runs/bench/<model>-<editor>-<protocol>-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (after a crash or kill)")
    p.add_argument("--judge", default="verifier", help="verifier, openai or vlm")
    p.add_argument("--judge-option", action="append", metavar="KEY=VALUE",
                   help="judge setting, e.g. base_url=http://127.0.0.1:8000/v1 (API keys: environment only)")
    p.add_argument("--compose", default="replace", choices=["replace", "prepend"],
                   help="reasoning-mode prompt: the caption alone, or the reasoning then the image prompt")
    p.add_argument("--hparams", help="a TOML or YAML file of editor hyperparameters")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one editor hyperparameter")
    p.add_argument("--stats-corpus", help="text/JSONL file for the key statistics (default: the model's corpus)")
    p.add_argument("--world", help="a built SynthWorld folder (default: the shipped world)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-locality", type=int, default=64, help="unrelated text probes per evaluation point")
    p.add_argument("--image-locality", type=int, default=16, help="unedited subjects drawn per evaluation point")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    _model_options(p)
    p.add_argument("--no-progress", action="store_true")
    _track_given_flags(p)

    p = add(sub, "analyze", cmd_analyze, "record both pathways before/after each edit of a run; gap statistics, AUCs, figures")
    p.add_argument("--run", help="a benchmark run folder (written by `unike bench`)")
    p.add_argument("--analysis-out", help="where the HDF5, stats.json and figures go (default RUN/analysis)")
    for a, kw in (("--model", {"default": "toy-direct"}), ("--editor", {"default": "memit"}),
                  ("--protocol", {"default": "batch", "choices": ["single", "batch", "sequential"]}),
                  ("--batch-size", {"type": int}), ("--cases", {"type": int, "default": 100}),
                  ("--data", {}), ("--out", {"help": "run folder for the benchmark run analyze makes first"}),
                  ("--judge", {"default": "verifier"}), ("--compose", {"default": "replace"}),
                  ("--hparams", {}), ("--stats-corpus", {}), ("--world", {}), ("--device", {"default": "auto"}),
                  ("--dtype", {"default": "float32"}), ("--seed", {"type": int, "default": 0}),
                  ("--text-locality", {"type": int, "default": 64}), ("--image-locality", {"type": int, "default": 16}),
                  ("--bootstrap", {"type": int, "default": 1000})):
        p.add_argument(a, **kw)
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--judge-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--all-cases", action="store_true")
    _model_options(p)
    p.add_argument("--no-progress", action="store_true")
    _track_given_flags(p)

    add(sub, "models", cmd_models, "the models `--model` accepts, and what each needs")

    p = add(sub, "report", cmd_report, "re-render a benchmark run's tables from its ledger")
    p.add_argument("run", help="a run folder written by `unike bench`")

    p = add(sub, "demo", cmd_demo, "run the main job on SynthWorld")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--world", help="a built world folder (default: the world shipped in the package)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto")
    p.add_argument("--models", default="toy-direct,toy-queries,toy-bottleneck", help="models to benchmark")
    p.add_argument("--editor", default="memit", help="the editor the demo benchmarks")
    p.add_argument("--cases", type=int, default=100, help="cases per model")
    p.add_argument("--no-world-eval", action="store_true", help="skip `unike world eval` (about a minute)")
    p.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # A group without its subcommand: show that group's help.
        target = {"data": "data", "world": "world"}.get(getattr(args, "command", None) or "")
        if target:
            parser.parse_args([target, "--help"])
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except CLIError as exc:
        print(f"unike: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("unike: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
