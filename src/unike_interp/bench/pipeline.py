"""The benchmark: edit -> text metrics -> reasoning -> direct and reasoning-augmented images -> VQA.

For every selected case and every stage of it, :func:`run_bench` measures

* **pre-edit** (unedited model): the cloze answer, and the image drawn straight from
  ``image_prompt``, judged against the old value ``gt`` (pre-edit VQA) and the new one;
* the **edit** (an editor from :mod:`unike_interp.editing`, under a protocol: ``single``,
  ``batch`` or ``sequential``, as in :mod:`unike_interp.bench.edit_run`);
* **post-edit**: the cloze answer (Eff. = first token of ``gt_target`` is the argmax), the
  reasoning (Reason. = it states ``gt_target``, :mod:`~unike_interp.bench.matching`), the image
  from ``image_prompt`` (VQA Direct) and the image from the composed reasoning prompt (VQA
  Reasoning), both judged against ``gt_target``;
* per evaluation point (after each batch's edit; once at the end of a sequential run): text
  locality (unedited facts' argmax unchanged) and image locality (unedited subjects' stage_1
  images judged correct before the edit and still after it).

Results go to a run folder (see :func:`run_bench`), one ledger line per case, fsynced, so a run
killed at any point continues with ``resume=True``: a batch whose cases and point are all in the
ledger is skipped; any other batch is recomputed whole (same composition, so the same numbers)
and only its missing lines are written. The table is then rendered from the ledger alone
(:mod:`unike_interp.bench.aggregate`), so a resumed run prints the uninterrupted run's table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..editing import EditGuardError, requests_from_records
from .edit_run import PROTOCOLS, peak_memory_mb, select_cases
from .ledger import Ledger
from .matching import states_value
from .reasoning import COMPOSE_MODES, compose, reasoning_request
from .text_metrics import cloze_scores, edit_clozes, locality_probes

RUN_FORMAT = "unike-bench-run/1"


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (exists without --resume, or a different config)."""


@dataclass
class BenchConfig:
    """Everything that determines a benchmark run (with the seed, its results)."""

    model: str = "toy-direct"
    editor: str = "memit"
    protocol: str = "batch"
    batch_size: int | None = None           # None: single -> 1, batch/sequential -> all cases at once
    cases: int | None = 100                 # a seeded sample; None: every record
    data: str | None = None                 # a UniKE.json (default: the model's own SynthWorld records)
    world: str | None = None                # a built SynthWorld folder (default: the shipped one)
    # passed to load_model for real models: pipeline_kwargs (e.g. {"height": 1024}), device_map ("auto")
    model_options: dict = field(default_factory=dict)
    judge: str = "verifier"
    judge_options: dict = field(default_factory=dict)
    compose: str = "replace"
    hparams: dict = field(default_factory=dict)      # editor overrides over the family defaults
    hparams_file: str | None = None
    stats_corpus: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0
    reasoning_tokens: int = 96
    text_locality_probes: int = 64
    image_locality_probes: int = 16
    sample_steps: int | None = None         # generator defaults when None
    guidance: float | None = None
    bootstrap: int = 1000
    full_match: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.compose not in COMPOSE_MODES:
            raise ValueError(f"compose must be one of {', '.join(COMPOSE_MODES)}, got {self.compose!r}")
        for name in ("cases", "batch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        for name in ("text_locality_probes", "image_locality_probes", "bootstrap", "reasoning_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if "api_key" in {k.lower() for k in self.judge_options}:
            raise ValueError("judge_options must not hold an API key: name its environment variable (api_key_env)")
        unknown = sorted(set(self.model_options) - MODEL_OPTIONS)
        if unknown:
            raise ValueError(f"model_options: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(MODEL_OPTIONS))}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def fields_from_file(cls, path: str | Path) -> dict:
        """The fields a TOML or JSON run configuration sets (checked against this class)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FileNotFoundError(f"bench config {path}: {exc.strerror or exc}") from None
        import tomllib

        try:  # (TOMLDecodeError and JSONDecodeError are ValueErrors)
            data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except ValueError as exc:
            raise ValueError(f"bench config {path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'} ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"bench config {path}: expected a table of settings")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"bench config {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if data.get("cases") == "all":  # TOML has no null: "all" means every record
            data["cases"] = None
        return data


# --- run folder ---------------------------------------------------------------------------------

#: What ``BenchConfig.model_options`` may hold (keyword arguments of ``load_model`` for real models).
MODEL_OPTIONS = {"pipeline_kwargs", "device_map"}


def model_load_kwargs(config: BenchConfig) -> dict:
    """Keyword arguments of ``load_model`` for ``config`` (world folder, model options)."""
    return {**({"world_dir": config.world} if config.world else {}), **config.model_options}


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    from ..provenance import package_versions

    return package_versions(("unike-interp", "torch", "transformers", "diffusers", "numpy", "nnsight"))


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120] or "case"


def _resolved(config: BenchConfig, adapter, editor, cases) -> dict:
    return {
        "format": RUN_FORMAT,
        "config": config.to_dict(),
        "hparams": {k: v for k, v in asdict(editor.hp).items()},
        "batches": None,  # filled by run_bench
        "case_ids": [r.case_id for r in cases],
        "model_name": adapter.name,
    }


def _check_resume(out: Path, resolved: dict) -> None:
    path = out / "config.json"
    if not path.exists():
        raise RunFolderError(f"{out} has a ledger but no config.json: not a run folder this version can resume")
    old = json.loads(path.read_text(encoding="utf-8"))
    a, b = dict(old), json.loads(json.dumps(resolved, sort_keys=True))
    for d in (a, b):
        d.get("config", {}).pop("device", None)  # the device may change across a resume
    if a != b:
        keys = sorted({k for k in set(a) | set(b) if a.get(k) != b.get(k)})
        sub = []
        if "config" in keys:
            sub = sorted(k for k in set(a["config"]) | set(b["config"]) if a["config"].get(k) != b["config"].get(k))
        raise RunFolderError(f"{out}: --resume with a different configuration (differs in: "
                             f"{', '.join(sub or keys)}); use the original settings or another --out")


# --- measuring ----------------------------------------------------------------------------------

def _verdict(v) -> dict:
    return {"verdict": v.verdict, "predicted": v.predicted, "confidence": None if v.confidence is None else round(float(v.confidence), 4),
            "target": v.target, "error": v.error, **({"explanation": v.explanation} if getattr(v, "explanation", None) else {})}


class _Measure:
    """Generation and judging with every failure caught, counted and recorded."""

    def __init__(self, adapter, judge, config: BenchConfig):
        self.adapter, self.judge, self.config = adapter, judge, config

    def images(self, prompts: Sequence[str | None]) -> tuple[list[np.ndarray | None], list[str | None]]:
        """One image per prompt (None prompt -> not generated); errors per prompt, never raised."""
        imgs: list[np.ndarray | None] = [None] * len(prompts)
        errs: list[str | None] = [None] * len(prompts)
        idx = [i for i, p in enumerate(prompts) if p is not None]
        bs = 64
        for s in range(0, len(idx), bs):
            chunk = idx[s:s + bs]
            try:
                out = self.adapter.generate_images([prompts[i] for i in chunk], seed=self.config.seed,
                                                   steps=self.config.sample_steps, guidance=self.config.guidance)
                for j, i in enumerate(chunk):
                    imgs[i] = out[j]
            except Exception as exc:  # a failed generation is a result: counted, never dropped
                for i in chunk:
                    errs[i] = f"generation failed: {type(exc).__name__}: {exc}"
        return imgs, errs

    def judge_all(self, images, cases, stages, targets) -> list[dict | None]:
        """Verdict dicts (None where there is no image)."""
        idx = [i for i, im in enumerate(images) if im is not None]
        out: list[dict | None] = [None] * len(images)
        if not idx:
            return out
        try:
            vs = self.judge.judge_batch(np.stack([images[i] for i in idx]), [cases[i] for i in idx],
                                        [stages[i] for i in idx], [targets[i] for i in idx])
            for i, v in zip(idx, vs):
                out[i] = _verdict(v)
        except Exception as exc:  # a judge that raises is a judge error for each image it had
            for i in idx:
                out[i] = {"verdict": None, "predicted": None, "confidence": None, "target": targets[i],
                          "error": f"judge failed: {type(exc).__name__}: {exc}"}
        return out


def _items(cases) -> list[tuple]:
    return [(r, name, st) for r in cases for name, st in r.stages.items()]


def measure_pre(m: _Measure, cases) -> dict[tuple[str, str], dict]:
    """Unedited model: cloze answer, and the direct image judged against ``gt`` and ``gt_target``."""
    items = _items(cases)
    cs = edit_clozes(cases)
    sc = cloze_scores(m.adapter, cs, full=False)
    imgs, errs = m.images([st.image_prompt for _, _, st in items])
    recs = [r for r, _, _ in items]
    stages = [n for _, n, _ in items]
    v_gt = m.judge_all(imgs, recs, stages, [st.gt for _, _, st in items])
    v_new = m.judge_all(imgs, recs, stages, [st.gt_target for _, _, st in items])
    out = {}
    for i, (r, name, st) in enumerate(items):
        out[(r.case_id, name)] = {
            "top1_new": bool(sc["top1_new"][i]), "top1_old": bool(sc["top1_old"][i]),
            "image": imgs[i], "generation_error": errs[i], "vqa_gt": v_gt[i], "vqa_target": v_new[i],
        }
    return out


def measure_post(m: _Measure, cases) -> dict[tuple[str, str], dict]:
    """Edited model: cloze, reasoning, direct and reasoning-augmented images judged against ``gt_target``."""
    items = _items(cases)
    cs = edit_clozes(cases)
    sc = cloze_scores(m.adapter, cs, full=m.config.full_match)
    requests = [reasoning_request(m.adapter, st.image_prompt, r.subject, r.category) for r, _, st in items]
    texts = m.adapter.generate_text(requests, max_new_tokens=m.config.reasoning_tokens) if items else []
    composed = [compose(m.config.compose, t, st.image_prompt) for t, (_, _, st) in zip(texts, items)]
    d_imgs, d_errs = m.images([st.image_prompt for _, _, st in items])
    r_imgs, r_errs = m.images([c.prompt for c in composed])
    recs = [r for r, _, _ in items]
    stages = [n for _, n, _ in items]
    targets = [st.gt_target for _, _, st in items]
    v_d = m.judge_all(d_imgs, recs, stages, targets)
    v_r = m.judge_all(r_imgs, recs, stages, targets)
    out = {}
    for i, (r, name, st) in enumerate(items):
        out[(r.case_id, name)] = {
            "top1_new": bool(sc["top1_new"][i]), "top1_old": bool(sc["top1_old"][i]),
            "p_new_gt_old": bool(sc["p_new_gt_old"][i]),
            **({"full_new": bool(sc["full_new"][i])} if "full_new" in sc else {}),
            "reasoning": {"request": requests[i], "text": texts[i], "caption": composed[i].caption,
                          "prompt": composed[i].prompt, "failure": composed[i].failure,
                          "states_target": states_value(texts[i], st.gt_target),
                          "states_old": states_value(texts[i], st.gt)},
            "direct": {"image": d_imgs[i], "generation_error": d_errs[i], "vqa": v_d[i]},
            "reasoning_image": {"image": r_imgs[i], "generation_error": r_errs[i], "vqa": v_r[i]},
        }
    return out


def image_probe_records(records, cases, n: int, seed: int) -> list:
    """Up to ``n`` records outside ``cases`` (seeded) whose stage_1 images test image locality."""
    chosen = {r.case_id for r in cases}
    subjects = {r.subject for r in cases}
    pool = [r for r in records if r.case_id not in chosen and r.subject not in subjects]
    if len(pool) > n:
        rng = np.random.default_rng([seed, 13])
        pool = [pool[i] for i in sorted(rng.choice(len(pool), n, replace=False))]
    return pool


def _probe_verdicts(m: _Measure, probes) -> list[dict | None]:
    imgs, errs = m.images([r.stage_1.image_prompt for r in probes])
    v = m.judge_all(imgs, probes, ["stage_1"] * len(probes), [r.stage_1.gt for r in probes])
    return [x if x is not None else {"verdict": None, "error": e} for x, e in zip(v, errs)]


# --- the run ------------------------------------------------------------------------------------

def _save_png(img: np.ndarray | None, path: Path) -> str | None:
    if img is None:
        return None
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(img).save(tmp)
    os.replace(tmp, path)
    return str(path.relative_to(path.parents[2]))


def _case_entry(r, batch: int, pre: dict, post: dict | None, guard: str | None, out: Path) -> dict:
    stages = {}
    img_dir = out / "images" / _safe(r.case_id)
    for name, st in r.stages.items():
        p = pre[(r.case_id, name)]
        q = post[(r.case_id, name)] if post is not None else None
        entry = {
            "pre": {"top1_new": p["top1_new"], "top1_old": p["top1_old"],
                    "image": _save_png(p["image"], img_dir / f"{name}-pre.png"),
                    "generation_error": p["generation_error"], "vqa_gt": p["vqa_gt"], "vqa_target": p["vqa_target"]},
        }
        if q is not None:
            entry["post"] = {
                k: q[k] for k in ("top1_new", "top1_old", "p_new_gt_old", "full_new") if k in q
            }
            entry["reasoning"] = q["reasoning"]
            for key, tag in (("direct", "direct"), ("reasoning_image", "reasoning")):
                entry[key] = {"image": _save_png(q[key]["image"], img_dir / f"{name}-{tag}.png"),
                              "generation_error": q[key]["generation_error"], "vqa": q[key]["vqa"]}
        stages[name] = entry
    return {"type": "case", "case_id": r.case_id, "subject": r.subject, "category": r.category, "source": r.source,
            "split": r.extra.get("split"), "batch": batch, "guard_error": guard, "stages": stages}


def _text_locality(adapter, records, edited, world, n, seed):
    probes = locality_probes(records, edited, world=world, max_other=n, seed=seed)
    if not probes.prompts:
        return probes, np.zeros(0, dtype=np.int64)
    return probes, adapter.next_token_logits(probes.prompts).argmax(-1).numpy()


def run_bench(config: BenchConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True,
              echo: Callable[[str], None] = print, adapter=None, judge=None, editor=None) -> dict:
    """Run (or continue) the benchmark into ``out_dir``; return the table (see :mod:`.aggregate`).

    Run folder: ``config.json`` (resolved configuration), ``manifest.json`` (package versions,
    git SHA, seed, device, timings), ``ledger.jsonl`` (one ``case`` line per case, one ``point``
    line per evaluation point), ``images/<case>/<stage>-{pre,direct,reasoning}.png``,
    ``table.md``, ``table.csv``, ``table.json``.

    ``adapter``, ``judge`` and ``editor`` may be passed in (a notebook that holds them already);
    by default they are built from ``config``.
    """
    from tqdm.auto import tqdm

    from ..devices import resolve_device, resolve_dtype
    from .aggregate import build_table, write_tables

    out = Path(out_dir)
    ledger_path = out / "ledger.jsonl"
    if ledger_path.exists() and ledger_path.stat().st_size and not resume:
        raise RunFolderError(f"{out} already holds a run (ledger.jsonl); pass --resume to continue it or choose another --out")
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    if adapter is None:
        from ..models.registry import load_model

        adapter = load_model(config.model, device=device, dtype=dtype, **model_load_kwargs(config))
    if config.data:
        from ..data.io import load_unike

        records = load_unike(config.data, strict=True).records
    elif getattr(adapter, "world", None) is not None:
        records = adapter.world.records
    else:
        raise ValueError(f"{config.model} has no built-in records: set data to a UniKE.json file")
    cases = select_cases(records, config.cases, seed=config.seed)
    if editor is None:
        editor = _make_editor(config, adapter, progress)
    editor.layers(adapter)  # a bad layer list is an input error, reported before any work
    if judge is None:
        from ..judges.registry import make_judge

        judge = make_judge(config.judge, world_dir=config.world, device=device, options=config.judge_options)

    bs = 1 if config.protocol == "single" else (config.batch_size or len(cases))
    batches = [cases[i:i + bs] for i in range(0, len(cases), bs)]
    resolved = _resolved(config, adapter, editor, cases)
    resolved["batches"] = [[r.case_id for r in b] for b in batches]
    resolved["judge_name"] = getattr(judge, "name", config.judge)

    out.mkdir(parents=True, exist_ok=True)
    if resume and ledger_path.exists():
        _check_resume(out, resolved)
    _write_json(out / "config.json", json.loads(json.dumps(resolved, sort_keys=True)))
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update(format=RUN_FORMAT, versions=_versions(), git_sha=_git_sha(), seed=config.seed,
                    device=str(device), dtype=str(dtype).replace("torch.", ""),
                    torch_cuda=torch.version.cuda, judge=resolved["judge_name"])
    manifest.setdefault("sessions", []).append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resume": bool(resume)})
    _write_json(manifest_path, manifest)

    ledger = Ledger.open(ledger_path)
    if ledger.torn_bytes:
        echo(f"[bench] cut a torn last line ({ledger.torn_bytes} bytes) off {ledger_path}: that case is redone")
    done_cases = {e["case_id"] for e in ledger.of_type("case")}
    done_points = {e["batch"] for e in ledger.of_type("point")}
    unknown = done_cases - {r.case_id for r in cases}
    if unknown:
        raise RunFolderError(f"{ledger_path} holds cases this configuration does not select: {sorted(unknown)[:5]}")

    m = _Measure(adapter, judge, config)
    world = getattr(adapter, "world", None)
    t_start = time.perf_counter()
    edit_seconds = 0.0
    todo = [k for k, b in enumerate(batches) if k not in done_points or any(r.case_id not in done_cases for r in b)]
    if todo:
        echo(f"[bench] {config.model} x {editor.name} ({config.protocol}, {len(cases)} cases in {len(batches)} "
             f"batch(es)); {len(todo)} batch(es) to run" + (f", {len(done_cases)} cases already in the ledger" if done_cases else ""))
        probes = image_probe_records(records, cases, config.image_locality_probes, config.seed)
        probe_pre = _probe_verdicts(m, probes) if probes else []
        t0 = time.perf_counter()
        editor.prepare(adapter)
        stats_seconds = time.perf_counter() - t0

        def write(k, batch, pre, post, guards, loc_probes, loc_pre):
            loc_post = adapter.next_token_logits(loc_probes.prompts).argmax(-1).numpy() if loc_probes.prompts else np.zeros(0)
            probe_post = _probe_verdicts(m, probes) if probes else []
            for r in batch:
                if r.case_id not in done_cases:
                    ledger.append(_case_entry(r, k, pre, post, guards.get(r.case_id), out))
                    done_cases.add(r.case_id)
            if k not in done_points:
                gt_first = [adapter.first_token_id(g) for g in loc_probes.gt]
                ledger.append({
                    "type": "point", "batch": k, "cases": [r.case_id for r in batch],
                    "text_locality": [{"kind": kd, "unchanged": bool(a == b), "pre_correct": bool(a == g),
                                       "post_correct": bool(b == g)}
                                      for kd, a, b, g in zip(loc_probes.kind, loc_pre, loc_post, gt_first)],
                    "image_locality": [{"case_id": r.case_id, "pre": a, "post": b}
                                       for r, a, b in zip(probes, probe_pre, probe_post)],
                })
                done_points.add(k)

        if config.protocol == "sequential":
            pre = measure_pre(m, cases)
            loc_probes, loc_pre = _text_locality(adapter, records, cases, world, config.text_locality_probes, config.seed)
            applied, guards = [], {}
            try:
                for k, batch in enumerate(tqdm(batches, desc=f"{editor.name} sequential", disable=not progress)):
                    try:
                        res = editor.edit(adapter, requests_from_records(batch))
                        applied.append(res)
                        edit_seconds += res.seconds
                    except EditGuardError as e:
                        guards.update({c: str(e) for c in e.cases})
                post = measure_post(m, cases)
                write(len(batches) - 1, cases, pre, post, guards, loc_probes, loc_pre)
            finally:
                while applied:
                    applied.pop().remove()
                editor.new_sequence()
        else:
            for k in tqdm(todo, desc=f"{editor.name} {config.protocol}", unit="batch", disable=not progress):
                batch = batches[k]
                pre = measure_pre(m, batch)
                loc_probes, loc_pre = _text_locality(adapter, records, batch, world, config.text_locality_probes,
                                                     config.seed)
                guards: dict[str, str] = {}
                res = None
                try:
                    try:
                        res = editor.edit(adapter, requests_from_records(batch))
                        edit_seconds += res.seconds
                    except EditGuardError as e:
                        guards = {c: str(e) for c in e.cases}
                    post = measure_post(m, batch)
                    write(k, batch, pre, post, guards, loc_probes, loc_pre)
                finally:
                    if res is not None:
                        res.remove()
                    editor.new_sequence()
        manifest = json.loads(manifest_path.read_text())
        manifest["sessions"][-1].update(seconds=round(time.perf_counter() - t_start, 2), edit_seconds=round(edit_seconds, 3),
                                        stats_seconds=round(stats_seconds, 3), peak_memory_mb=peak_memory_mb(device))
        _write_json(manifest_path, manifest)
    else:
        echo(f"[bench] every case is already in {ledger_path}; rendering the table")

    table = build_table(Ledger.open(ledger_path).entries, resolved)
    write_tables(table, out)
    return table


def _make_editor(config: BenchConfig, adapter, progress: bool):
    from ..editing import load_hparams, make_editor, make_hparams
    from ..editing.stats import load_corpus

    if config.hparams_file:
        hp = load_hparams(config.hparams_file, config.editor, adapter.family)
        if config.hparams:
            hp = make_hparams(config.editor, None, {**dataclasses.asdict(hp), **config.hparams}, source="hparams")
    else:
        hp = make_hparams(config.editor, adapter.family, config.hparams, source="hparams")
    corpus = load_corpus(config.stats_corpus) if config.stats_corpus else None
    return make_editor(config.editor, hp, stats_corpus=corpus, progress=progress)
