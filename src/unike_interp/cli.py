"""The ``unike`` command: it parses and prints; the library does the work.

Every subcommand that computes something takes ``--json`` and then prints exactly one JSON object
as the last line of stdout (human-readable text goes before it). Errors in the user's input exit
with status 2 and a message naming the file, record or field; a validation that finds bad records
exits 1. The run flags of ``edit``, ``bench`` and ``analyze`` are generated from
:class:`~unike_interp.bench.spec.RunSpec` (every default shown in ``--help``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``unike: error:`` line (the command and where to read more)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"unike: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _emit_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, sort_keys=False))


def _finish(args: argparse.Namespace, result: Any, status: int = EXIT_OK) -> int:
    """With ``--json``, print ``result`` as the last line; return the exit status."""
    if args.json:
        _emit_json(result)
    return status


def _say(args: argparse.Namespace, text: str) -> None:
    """Print ``text`` unless ``-q``: tables, notes, summaries."""
    if not getattr(args, "quiet", False):
        print(text)


def _where(text: str) -> None:
    """Print where a command's results are: its last line of text, also under ``-q``."""
    print(text)


def _bars(args: argparse.Namespace) -> bool:
    """Progress bars are drawn unless ``--no-progress`` or ``-q``."""
    return not (getattr(args, "no_progress", False) or getattr(args, "quiet", False))


def _setup_logging(verbosity: int) -> None:
    """``-q`` (-1): errors only; default (0): warnings; ``-v`` (1): the library's steps and timings
    (logger ``unike_interp``); ``-vv`` (2): the library's debug lines and transformers' and diffusers' info."""
    import logging

    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=max(level, logging.INFO))
    logging.getLogger("unike_interp").setLevel(level)
    if verbosity < 0:
        import warnings

        warnings.filterwarnings("ignore")  # -q: the user asked for results and errors only
    for module in ("transformers.utils.logging", "diffusers.utils.logging"):
        try:
            mod = __import__(module, fromlist=["set_verbosity"])
            mod.set_verbosity(logging.ERROR if verbosity < 0 else logging.WARNING if verbosity < 2 else logging.INFO)
        except Exception:  # a library that is not installed logs nothing
            pass


def _folder(path: str, flag: str, what: str) -> Path:
    """``path`` as an existing folder, else a :class:`CLIError` saying what it is instead."""
    folder = Path(path)
    if not folder.is_dir():
        raise CLIError(f"{flag}{path}: {'is a file' if folder.exists() else 'no such folder'}; give {what}")
    return folder


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions the library raises for bad input (a message naming the file, record or field)."""
    from .bench.distributed import RayMissing
    from .models.sites import SiteError

    return KeyError, ValueError, OSError, SiteError, RayMissing


# --- unike data ------------------------------------------------------------------------------

def cmd_data_validate(args: argparse.Namespace) -> int:
    from .data.io import load_unike
    from .data.validate import DataValidationError

    try:
        result = load_unike(args.path, strict=args.strict)
    except DataValidationError as exc:
        print(f"{args.path}: invalid (strict): {exc.problem}")
        problem = {"total": None, "valid": None, "invalid": 1, "problems": [exc.problem.to_dict()], "strict": True}
        return _finish(args, problem, EXIT_INVALID)
    summary = result.summary()
    for p in result.problems:
        _say(args, f"  - {p}")
    _where(f"{args.path}: {summary['valid']} valid, {summary['invalid']} invalid, of {summary['total']} records")
    return _finish(args, summary, EXIT_OK if result.ok else EXIT_INVALID)


def cmd_data_synth(args: argparse.Namespace) -> int:
    from .data.io import write_unike
    from .data.synthworld import generate_world

    from .paths import check_output_file

    if args.subjects < 1:
        raise CLIError(f"--subjects must be >= 1, got {args.subjects}")
    if not 0.0 <= args.text_only_fraction < 1.0:
        raise CLIError(f"--text-only-fraction must be in [0, 1), got {args.text_only_fraction}")
    check_output_file(args.out)
    if args.world_out:
        check_output_file(args.world_out, "--world-out")
    world = generate_world(seed=args.seed, n_subjects=args.subjects, text_only_fraction=args.text_only_fraction)
    out = write_unike(world.records, args.out)
    counts = world.counts()
    for key in ("per_source", "per_category", "per_split"):
        _say(args, f"  {key.replace('_', ' ') + ':':<14}" + ", ".join(f"{k} {v}" for k, v in counts[key].items()))
    _where(f"wrote {counts['records']} records for {counts['subjects']} subjects to {out}")
    if args.world_out:
        world.save(args.world_out)
        _where(f"wrote the world description (subjects, facts, split) to {args.world_out}")
    return _finish(args, {"path": str(out), "seed": args.seed, **counts})


# --- unike world -----------------------------------------------------------------------------

def cmd_world_show(args: argparse.Namespace) -> int:
    from .data.synthworld import generate_world
    from .data.synthworld.sheet import subject_sheet

    from .paths import check_output_file

    for flag, value in (("--subjects", args.subjects), ("--scale", args.scale)):
        if value < 1:
            raise CLIError(f"{flag} must be >= 1, got {value}")
    check_output_file(args.out)
    sheet, n = subject_sheet(generate_world(seed=args.seed), args.subjects, args.scale)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    _where(f"wrote a contact sheet of {n} renders ({args.subjects} subjects, every layout) to {out}")
    return _finish(args, {"path": str(out), "images": n, "size": list(sheet.size)})


def cmd_world_build(args: argparse.Namespace) -> int:
    from .devices import resolve_device
    from .bench.spec import parse_pairs
    from .world.build import build_world, make_build_config

    from .paths import check_output_folder

    config = make_build_config(config_file=args.config, quick=args.quick, seed=args.seed, overrides=parse_pairs(args.set))
    check_output_folder(args.out)
    if args.pathways:
        from .world.conditioning import PATHWAYS

        known = [f"toy-{p}" for p in PATHWAYS]
        bad = [p for p in args.pathways.split(",") if p not in known]
        if bad:
            raise CLIError(f"--pathways: unknown {', '.join(bad)}; known: {', '.join(known)}")
    manifest = build_world(args.out, config, device=resolve_device(args.device),
                           pathways=tuple(args.pathways.split(",")) if args.pathways else None, progress=_bars(args))
    _say(args, "build time: " + ", ".join(f"{k} {v:.1f} s" for k, v in manifest["seconds"].items()))
    _where(f"world built in {args.out} (use it with --world {args.out})")
    return _finish(args, {"out": str(args.out), "seconds": manifest["seconds"], "total_seconds": manifest["total_seconds"],
                          "quick": args.quick, "seed": args.seed})


def cmd_world_eval(args: argparse.Namespace) -> int:
    from .devices import resolve_device
    from .models.synthworld import evaluate_world, format_world_eval

    if args.world:
        _folder(args.world, "--world ", "a folder written by `unike world build`")
    result = evaluate_world(args.world, device=resolve_device(args.device), seed=args.seed,
                            progress=_bars(args), echo=lambda s: _say(args, s))
    _where(format_world_eval(result))
    return _finish(args, result)


# --- unike edit / bench / analyze / report -----------------------------------------------------

def spec_from_args(command: str, args: argparse.Namespace):
    """The RunSpec of ``command``: its defaults < ``--config FILE`` < the flags given on the command line."""
    from .bench.spec import RunSpec, spec_from_values

    names = {f for f in RunSpec.__dataclass_fields__}
    given = {k: v for k, v in vars(args).items() if k in names}  # run flags default to SUPPRESS: only given ones
    if getattr(args, "all_cases", False):
        given["cases"] = None
    return spec_from_values(command, given, config_file=getattr(args, "config", None),
                            device_map=getattr(args, "device_map", None),
                            pipeline_options=getattr(args, "pipeline_option", None),
                            trust_remote_code=getattr(args, "trust_remote_code", False))


def cmd_edit(args: argparse.Namespace) -> int:
    from .bench.edit_run import edit_from_spec, format_edit_result

    spec = spec_from_args("edit", args)
    if args.out:
        from .paths import check_output_folder

        check_output_folder(args.out)
    if (note := spec.protocol_note()) and not args.quiet:  # -q: results and errors only
        print(f"note: {note}", file=sys.stderr)
    result = edit_from_spec(spec, out=args.out, save_deltas=args.save_deltas, progress=_bars(args),
                            echo=lambda s: None)
    text = format_edit_result(result)
    if args.out:
        _say(args, text)
        if result.get("deltas"):
            _where(f"wrote {len(result['deltas'])} weight deltas to {Path(args.out) / 'deltas'}")
        _where(f"wrote {Path(args.out) / 'edit_result.json'}")
    else:
        _where(text)  # no --out: the printed result is where the results are
    return _finish(args, result)


def _default_out(spec) -> str:
    return f"runs/bench/{spec.model.replace(':', '_').replace('/', '_')}-{spec.editor}-{spec.protocol}-s{spec.seed}"


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.aggregate import render_markdown
    from .bench.pipeline import run_bench

    if args.out_moved is not None:
        raise CLIError(f"the run folder is the first argument: `unike bench {args.out_moved} ...` (not --out)")
    spec = _stored_spec(args) if args.resume and args.run else None
    spec = spec or spec_from_args("bench", args)
    out = args.run or _default_out(spec)
    if args.workers is not None or args.ray_address is not None:
        from .bench.distributed import ClusterSettings, run_bench_distributed

        cluster = ClusterSettings(workers=2 if args.workers is None else args.workers, address=args.ray_address)
        table = run_bench_distributed(spec, out, cluster, resume=args.resume, progress=_bars(args),
                                      echo=lambda s: _say(args, s))
    else:
        table = run_bench(spec, out, resume=args.resume, progress=_bars(args), echo=lambda s: _say(args, s))
    _say(args, render_markdown(table))
    _where(f"run folder: {out} -- open {Path(out) / 'report.html'} in a browser (tables: table.md, table.csv, "
           "table.json; per case: ledger.jsonl, images/; stored edits: deltas/)")
    return _finish(args, table)


def _stored_spec(args: argparse.Namespace):
    """``bench RUN --resume`` with no run settings given: the run's own (``config.json``), so a resume
    needs no flags repeated; where it runs (``--device``, ``--cache-dir``) may still be given. A
    model that runs code from its checkpoint folder needs ``--trust-remote-code`` again: a run
    folder does not grant it."""
    import dataclasses

    from .bench.run_folder import RunFolder
    from .bench.spec import VOLATILE_FIELDS, RunSpec

    given = [k for k in vars(args) if k in RunSpec.__dataclass_fields__]  # run flags default to SUPPRESS
    folder = RunFolder(args.run)
    if ([k for k in given if k not in VOLATILE_FIELDS] or args.config or args.all_cases or args.device_map
            or args.pipeline_option or not folder.config_path.is_file()):
        return None
    spec = folder.spec()
    if spec.model_options.get("trust_remote_code") and not args.trust_remote_code:
        raise CLIError(f"{folder.path}: its model runs code from its checkpoint folder; resume it with "
                       "--trust-remote-code (a run folder does not grant that)")
    return dataclasses.replace(spec, **{k: getattr(args, k) for k in given})


def _runs(runs: Sequence[str]) -> list[Path]:
    """Each of ``runs`` as a run folder a reader can use, else a :class:`CLIError` naming it."""
    from .bench.run_folder import RunFolder

    return [RunFolder(_folder(r, "", "a run folder written by `unike bench`")).require().path for r in runs]


def cmd_report(args: argparse.Namespace) -> int:
    from .bench.aggregate import render_markdown, render_side_by_side, report

    tables = {}
    for run in _runs(args.runs):
        label = run.name or str(run)
        while label in tables:  # two folders of the same name: tell them apart by their parents
            label = f"{run.resolve().parent.name}/{label}"
        tables[label] = report(run)
    if len(args.runs) == 1:
        _say(args, render_markdown(tables[next(iter(tables))]))
    else:
        _say(args, render_side_by_side(tables))
    for run in args.runs:
        _where(f"re-rendered {Path(run) / 'report.html'} and {Path(run) / 'table.md'} (table.csv, table.json)")
    return _finish(args, tables[next(iter(tables))] if len(args.runs) == 1 else tables)


def cmd_analyze(args: argparse.Namespace) -> int:
    from .interp.analyze import analyze_run, format_aucs, format_causal
    from .paths import check_output_folder

    if args.trace_cases < 0:
        raise CLIError(f"--trace-cases must be >= 0, got {args.trace_cases}")
    run = _runs([args.run])[0]
    if args.out:
        check_output_folder(args.out)
    summary = analyze_run(run, args.out, device=args.device, reoptimize=args.reoptimize, progress=_bars(args),
                          interventions=not args.no_interventions, probes=not args.no_probes,
                          trace_cases=args.trace_cases, trust_remote_code=args.trust_remote_code,
                          figures=not args.no_figures, echo=lambda s: _say(args, s))
    _say(args, f"analysed {summary['n_cases']} cases of {summary['model']} x {summary['editor']} "
               f"({summary['edits']} edits, recorded in {summary['record_seconds']:.1f} s)")
    _say(args, format_aucs(summary))
    if causal := format_causal(summary):
        _say(args, causal)
    analysis = Path(summary["hdf5"]).parent
    figures = summary.get("figures") or []
    _where(f"analysis: {analysis} (activations.h5, stats.json"
           + (f", {len(figures) // 2} figures in figures/" if figures else "") + f"); open {summary['report']}")
    return _finish(args, summary)


# --- unike models / demo ---------------------------------------------------------------------

def cmd_models(args: argparse.Namespace) -> int:
    from .models.registry import format_requirements, model_requirements

    models = model_requirements()
    _where(format_requirements(models))
    return _finish(args, models)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(args.out, seed=args.seed, world=args.world, device=args.device, models=tuple(args.models.split(",")),
                       editor=args.editor, cases=args.cases, world_eval=not args.no_world_eval,
                       progress=_bars(args), echo=lambda s: _say(args, s))
    _where(f"demo results: {summary['results']}")
    return _finish(args, summary, EXIT_OK if summary["ok"] else EXIT_INVALID)


# --- parser ----------------------------------------------------------------------------------

def _run_flags(p: argparse.ArgumentParser, command: str) -> None:
    """The RunSpec flags of ``command``, a run configuration file, and the real-model options."""
    from .bench.spec import spec_flags

    p.add_argument("--config", help="a TOML or JSON run configuration (RunSpec fields; flags given here win), "
                                    "e.g. benchmark/configs/lumina2.toml")
    for flag in spec_flags(command):
        flag.add_to(p)
    if command != "edit":
        p.add_argument("--all-cases", action="store_true", help="every record of the data")
        p.add_argument("--device-map", help="real models: accelerate device_map for the language model (e.g. auto)")
        p.add_argument("--pipeline-option", action="append", metavar="KEY=VALUE",
                       help="diffusers pipelines: an argument of every pipeline call, e.g. height=512")
        p.add_argument("--trust-remote-code", action="store_true",
                       help="Ovis-U1: run the model code shipped in its checkpoint folder (read it first)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default, but not ``None`` (unset) or ``False`` (a flag not given)."""

    def _get_help_string(self, action):
        return action.help if action.default is None or action.default is False else super()._get_help_string(action)


#: Options several commands share: key -> (flags, argparse keywords).
_COMMON = {
    "seed": (("--seed",), {"type": int, "default": 0, "help": "random seed (records, sampling)"}),
    "device": (("--device",), {"default": "auto", "help": "cpu, cuda, cuda:1, mps or auto"}),
    "world": (("--world",), {"help": "a built world folder (default: the world shipped in the package)"}),
    "no_progress": (("--no-progress",), {"action": "store_true", "help": "no progress bars"}),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="unike", description="Cross-modal knowledge editing in unified multimodal models (SynthWorld by default).",
        formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"unike-interp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(p: argparse._SubParsersAction, name: str, func: Callable, help: str, *common: str) -> argparse.ArgumentParser:
        sp = p.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)
        sp.set_defaults(func=func)
        sp.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
        sp.add_argument("--debug", action="store_true",
                        help="on an unexpected error, show Python's traceback instead of one line")
        sp.add_argument("-q", "--quiet", action="store_true",
                        help="print only where the results are, and errors (no bars, tables or warnings)")
        sp.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail: -v the library's steps and timings, -vv debug")
        for key in common:
            flags, kw = _COMMON[key]
            sp.add_argument(*flags, **kw)
        return sp

    data = sub.add_parser("data", help="UniKE records: validate files, synthesise SynthWorld")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=_Parser)
    p = add(data_sub, "validate", cmd_data_validate, "validate a UniKE.json file and report every bad record")
    p.add_argument("path", help="a UniKE.json file (a JSON array of records)")
    p.add_argument("--strict", action="store_true", help="stop at the first problem")
    p = add(data_sub, "synth", cmd_data_synth, "write SynthWorld's records as UniKE.json", "seed")
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument("--subjects", type=int, default=324, help="number of subjects (one record each)")
    p.add_argument("--text-only-fraction", type=float, default=0.2,
                   help="share of subjects whose images the generator never sees (text-only split)")
    p.add_argument("--world-out", help="also write the world description (subjects, facts, split) here")

    world = sub.add_parser("world", help="SynthWorld: renders and its trained models")
    world_sub = world.add_subparsers(dest="world_command", metavar="SUBCOMMAND", parser_class=_Parser)
    p = add(world_sub, "show", cmd_world_show, "write a labelled contact sheet of SynthWorld renders", "seed")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--subjects", type=int, default=12, help="how many subjects to show (each in every layout)")
    p.add_argument("--scale", type=int, default=4, help="upscaling factor of each 32x32 render")
    p = add(world_sub, "build", cmd_world_build, "train the SynthWorld UMM (LM, verifier, three generators)",
            "seed", "device", "no_progress")
    p.add_argument("--out", default="runs/world", help="output folder (an interrupted build resumes there)")
    p.add_argument("--quick", action="store_true", help="a tiny world for tests (under two minutes on a CPU)")
    p.add_argument("--pathways", help="comma-separated subset of toy-direct,toy-queries,toy-bottleneck")
    p.add_argument("--config", help="build from this configuration (a world's build.json, e.g. the shipped one's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one build setting, e.g. generator.steps=20000 (repeatable)")
    add(world_sub, "eval", cmd_world_eval, "measure text recall, reasoning, verifier and image accuracy",
        "world", "device", "seed", "no_progress")

    p = add(sub, "edit", cmd_edit, "edit a model's language backbone and measure the text side before and after")
    _run_flags(p, "edit")
    p.add_argument("--out", help="write edit_result.json here")
    p.add_argument("--save-deltas", action="store_true",
                   help="also write each evaluation point's weight delta under OUT/deltas (safetensors + JSON)")

    p = add(sub, "bench", cmd_bench, "the benchmark: edit, text metrics, reasoning, direct and reasoning images, VQA, table")
    p.add_argument("run", nargs="?", metavar="RUN",
                   help="the run folder to write (or continue with --resume); default "
                        "runs/bench/<model>-<editor>-<protocol>-s<seed>")
    _run_flags(p, "bench")
    p.add_argument("--out", dest="out_moved", help=argparse.SUPPRESS)  # the run folder is RUN: a clear error
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN (after a crash or kill); without run settings, with the run's own")
    p.add_argument("--workers", type=int, default=None,
                   help="spread the batches over N Ray actors, one model replica each (one GPU each where the "
                        "cluster has GPUs); needs `pip install 'unike-interp[ray]'` (default: one process, no Ray)")
    p.add_argument("--ray-address", default=None,
                   help="join a running Ray cluster (`auto`, or host:port of `ray start --head`) instead of starting "
                        "a private one on 127.0.0.1 (default: private; with --workers 2 where --workers is not given)")

    p = add(sub, "analyze", cmd_analyze, "replay each stored edit of a run, record both pathways before/after; "
                                         "gap statistics, AUCs, causal analyses, figures", "device", "no_progress")
    p.add_argument("run", metavar="RUN", help="a run folder (written by `unike bench`)")
    p.add_argument("--out", help="where the HDF5, stats.json and figures go (default: RUN/analysis)")
    p.add_argument("--reoptimize", action="store_true",
                   help="run the editor again instead of replaying stored deltas (runs that stored none)")
    p.add_argument("--no-interventions", action="store_true",
                   help="skip the conditioning interventions, the subject-state swap and the tracing (default: run them "
                        "where the model can draw from a given conditioning)")
    p.add_argument("--no-figures", action="store_true",
                   help="write stats.json only; draw the figures later with `python analyses/figures.py RUN` "
                        "(default: draw them)")
    p.add_argument("--no-probes", action="store_true",
                   help="skip fitting and validating the value probes (every subject x template, 5 folds, "
                        "fitted over every core); the probe columns are then absent (default: run them)")
    p.add_argument("--trace-cases", type=int, default=20,
                   help="cases the cross-modal causal tracing traces, those whose image moved most (0: none)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="Ovis-U1: run the model code shipped in its checkpoint folder, as the run did (read it first)")

    add(sub, "models", cmd_models, "the models `--model` accepts, and what each needs")
    p = add(sub, "report", cmd_report, "re-render runs' tables and report.html from their ledgers; with several "
                                       "runs, also one table of them side by side")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (written by `unike bench`)")

    p = add(sub, "demo", cmd_demo, "run the main job on SynthWorld", "seed", "world", "device", "no_progress")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--models", default="toy-direct,toy-queries,toy-bottleneck", help="models to benchmark")
    p.add_argument("--editor", default="memit", help="the editor the demo benchmarks")
    p.add_argument("--cases", type=int, default=100, help="cases per model")
    p.add_argument("--no-world-eval", action="store_true", help="skip `unike world eval` (about a minute)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    status: int | None = None
    try:
        status = _main(argv)
        return status
    except SystemExit as exc:  # --help, --version, a usage error
        status = int(exc.code or 0) if isinstance(exc.code, (int, type(None))) else EXIT_USAGE
        raise
    finally:
        if log := os.environ.get("UNIKE_ARGV_LOG"):  # which commands ran: scripts/readme_commands.py reads it
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"argv": argv, "status": status}) + "\n")


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # A group without its subcommand: show that group's help.
        target = {"data": "data", "world": "world"}.get(getattr(args, "command", None) or "")
        if target:
            parser.parse_args([target, "--help"])
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "quiet", False) and getattr(args, "verbose", 0):
        print("unike: error: give -q or -v, not both", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
    if not _bars(args):
        from .progress import quiet_third_party_bars

        quiet_third_party_bars()
    try:
        return int(args.func(args))
    except CLIError as exc:
        print(f"unike: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _user_errors() as exc:  # bad input named by the library: a message, not a traceback
        message = str(exc).strip("'\"")  # a KeyError's message comes quoted
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            message += (" -- what was written before stays valid: free some space, then run the same command again "
                        "(`unike bench` with --resume)")
        print(f"unike: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("unike: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # not foreseen: one line, and the way to the traceback
        if getattr(args, "debug", False):
            raise
        where = " ".join(x for x in (getattr(args, "command", None), getattr(args, "data_command", None),
                                     getattr(args, "world_command", None)) if x)
        print(f"unike: error: unike {where} failed: {type(exc).__name__}: {exc} (run it again with --debug for "
              "the traceback; if the input looks right, please report it)", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
