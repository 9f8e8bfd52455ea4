"""Explain a benchmark run: record both pathways before and after each edit, compute the gap statistics.

:func:`analyze_run` reads a run folder written by :func:`unike_interp.bench.pipeline.run_bench`
(its configuration, batches and ledger), re-applies each batch's edit (same editor, same
hyperparameters, same cases: the same weight delta on a given device), and records with
:class:`~unike_interp.interp.recorder.Recorder`, for every case and for the unedited (``pre``) and
edited (``post``) model, four prompts of its stage 1:

``direct``     the stage's ``image_prompt``;
``reasoning``  the composed reasoning prompt the edited model wrote in the run (absent when the
               reasoning failed);
``ref_old`` / ``ref_new``  the image prompt with the old / new value spelled out
               (``adapter.reference_prompt``).

into ``activations.h5`` (:mod:`~unike_interp.interp.store`), then computes per case (``c`` is
the pooled conditioning, the masked mean over the positions that reach the generator):

* ``text_drift.<site>.<pos>``: drift (L2, relative, cosine distance) of each text site at the
  subject's and the prompt's last token, direct prompt;
* ``cond_drift``: relative drift of ``c`` on the direct prompt;
* ``projection_cos``, ``edit_strength``: ``Δc = c_post - c_pre`` against the attribute direction
  ``d = c_pre(ref_new) - c_pre(ref_old)``; strength ``<Δc, d> / |d|^2`` (1.0 = as far as spelling
  the new value out moves it);
* ``alignment``: cos(Δ of the last text layer at the prompt's last token, Δc) -- through the
  connector's first half ``W[:, :H]`` for ``bottleneck`` (the half that reads ``h_L``);
* ``bottleneck_energy``, ``bottleneck_gain``: retention of Δ(connector input) by ``W``;
* ``generator_sensitivity.<block>``: relative change of each generator block's output;
* reasoning decomposition (``edit``, ``reasoning``, ``edit_on_reasoning`` shifts, ratios, cosines,
  strengths) where the reasoning prompt exists;
* ``probe_reads_new``: a logistic probe trained on pre-edit conditioning (all subjects of the
  world, folds grouped by subject) reads the new value from the post-edit conditioning.

and the ROC AUC of each statistic for predicting the case's VQA success (stage 1, direct and
reasoning), joined from the ledger. Written: ``stats.json`` (summary + per case).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import stats as S
from .recorder import Recorder
from .store import ActivationStore

KINDS = ("direct", "reasoning", "ref_old", "ref_new")


def _delta_hash(delta) -> str:
    h = hashlib.sha256()
    for name in sorted(delta.deltas):
        h.update(name.encode())
        h.update(delta.deltas[name].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _record_chunked(recorder: Recorder, prompts, subjects, chunk: int = 64):
    out = []
    for i in range(0, len(prompts), chunk):
        rec = recorder.record(prompts[i:i + chunk], subjects[i:i + chunk])
        out += [rec.row(j) for j in range(len(rec.prompts))]
    return out


def _case_prompts(adapter, r, entry) -> dict[str, str]:
    st = r.stage_1
    kinds = {"direct": st.image_prompt}
    reasoning = ((entry or {}).get("stages", {}).get("stage_1", {}).get("reasoning") or {}).get("prompt")
    if reasoning:
        kinds["reasoning"] = reasoning
    kinds["ref_old"] = adapter.reference_prompt(r, "stage_1", st.gt)
    kinds["ref_new"] = adapter.reference_prompt(r, "stage_1", st.gt_target)
    return kinds


def record_run(run_dir: str | Path, out: str | Path, *, device=None, progress: bool = True,
               echo: Callable[[str], None] = print):
    """Record every case of a run into ``out/activations.h5`` (resumable); return what the stats need."""
    from tqdm.auto import tqdm

    from ..bench.edit_run import peak_memory_mb  # noqa: F401  (same device bookkeeping as the bench)
    from ..bench.ledger import Ledger
    from ..bench.pipeline import BenchConfig, _make_editor, _versions, model_load_kwargs
    from ..devices import resolve_device, resolve_dtype
    from ..editing import EditGuardError, requests_from_records
    from ..models.registry import load_model

    run = Path(run_dir)
    resolved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    cfg = BenchConfig(**resolved["config"])
    dev = resolve_device(device or cfg.device)
    adapter = load_model(cfg.model, device=dev, dtype=resolve_dtype(cfg.dtype), **model_load_kwargs(cfg))
    if cfg.data:
        from ..data.io import load_unike

        records = load_unike(cfg.data, strict=True).records
    else:
        records = adapter.world.records
    by_id = {r.case_id: r for r in records}
    entries = {e["case_id"]: e for e in Ledger.open(run / "ledger.jsonl", repair=False).of_type("case")}
    batches = [[by_id[c] for c in b if c in entries] for b in resolved["batches"]]
    editor = _make_editor(cfg, adapter, progress)
    recorder = Recorder(adapter, seed=cfg.seed)
    out = Path(out)
    store = ActivationStore.open(out / "activations.h5", {
        "model": cfg.model, "editor": cfg.editor, "seed": cfg.seed, "protocol": cfg.protocol,
        "versions": _versions(), "run": str(run), "trace_timestep": getattr(adapter, "trace_timestep", "")})
    done = store.complete_cases()
    todo = [(k, b) for k, b in enumerate(batches) if any(r.case_id not in done for r in b)]
    if cfg.protocol == "sequential" and todo:
        todo = [(len(batches) - 1, [r for b in batches for r in b])]  # post = after every batch
    t0 = time.perf_counter()
    for k, batch in tqdm(todo, desc="record", unit="batch", disable=not progress):
        flat = []
        for r in batch:
            for kind, prompt in _case_prompts(adapter, r, entries.get(r.case_id)).items():
                flat.append((r, kind, prompt))
        prompts = [p for _, _, p in flat]
        subjects = [r.subject for r, _, _ in flat]
        pre = _record_chunked(recorder, prompts, subjects)
        applied, guard = [], None
        try:
            edit_batches = batches if cfg.protocol == "sequential" else [batch]
            for eb in edit_batches:
                try:
                    applied.append(editor.edit(adapter, requests_from_records(eb)))
                except EditGuardError as e:
                    guard = str(e)
            post = _record_chunked(recorder, prompts, subjects)
            ehash = _delta_hash(applied[-1].delta) if applied else ""
        finally:
            while applied:
                applied.pop().remove()
            editor.new_sequence()
        per_case: dict[str, dict] = {}
        for (r, kind, _), a, b in zip(flat, pre, post):
            per_case.setdefault(r.case_id, {"pre": {}, "post": {}})
            per_case[r.case_id]["pre"][kind] = (a, recorder.sites)
            per_case[r.case_id]["post"][kind] = (b, recorder.sites)
        for r in batch:
            if r.case_id in done:
                continue
            st = r.stage_1
            store.write_case(r.case_id, {"subject": r.subject, "category": r.category, "source": r.source,
                                         "old": st.gt, "new": st.gt_target, "edit_hash": ehash,
                                         "guard_error": guard or "", "batch": k}, per_case[r.case_id])
    echo(f"[analyze] recorded {len(store.complete_cases())} cases into {store.path} "
         f"({time.perf_counter() - t0:.1f} s this session)")
    return adapter, store, entries, cfg


def _pooled(d: dict) -> np.ndarray:
    return d["cond.tensor"].mean(axis=0)  # the store keeps only the positions that reach the generator


def _read_kinds(store: ActivationStore, case_id: str, state: str) -> dict[str, dict]:
    """Every recorded prompt kind of one case and state (a failed reasoning has none)."""
    out = {}
    for k in KINDS:
        try:
            out[k] = store.read(case_id, state, k)
        except KeyError:
            pass
    return out


def case_statistics(adapter, store: ActivationStore, case_id: str) -> dict:
    """Every per-case statistic (flat ``name -> float``) for one recorded case."""
    pre = _read_kinds(store, case_id, "pre")
    post = _read_kinds(store, case_id, "post")
    out: dict[str, float] = {}
    a, b = pre["direct"], post["direct"]
    for name in a:
        if name.startswith("text."):
            dr = S.drift(a[name], b[name])  # rows: subject_last, prompt_last
            for j, pos in enumerate(("subject", "prompt")):
                out[f"text_drift_rel.{name[5:]}.{pos}"] = float(dr["relative"][j])
                out[f"text_drift_cos.{name[5:]}.{pos}"] = float(dr["cosine_distance"][j])
    c_pre, c_post = _pooled(a), _pooled(b)
    dc = c_post - c_pre
    out["cond_drift"] = float(S.drift(c_pre, c_post)["relative"])
    d = _pooled(pre["ref_new"]) - _pooled(pre["ref_old"])
    pr = S.projection(dc, d)
    out["projection_cos"] = float(pr["cos"])
    out["edit_strength"] = float(pr["strength"])
    last = f"text.resid.{adapter.num_layers - 1}"
    dtext = b[last][1] - a[last][1]
    W = None
    if "cond.connector_in" in a:
        W = adapter.encoder.proj.weight.detach().float().cpu().numpy()
        ret = S.bottleneck_retention(_mean_rows(b["cond.connector_in"]) - _mean_rows(a["cond.connector_in"]), W)
        out["bottleneck_energy"] = float(ret["energy_topk"])
        out["bottleneck_gain_relative"] = float(ret["gain_relative"])
        W = W[:, : adapter.hidden_size]
    out["alignment"] = float(S.alignment(dtext, dc, W))
    blocks = sorted((n for n in a if n.startswith("gen.block.")), key=lambda n: int(n.rsplit(".", 1)[1]))
    sens = S.generator_sensitivity([a[n][None] for n in blocks], [b[n][None] for n in blocks])
    for n, v in zip(blocks, sens[:, 0]):
        out[f"generator_sensitivity.{n[4:]}"] = float(v)
    if "reasoning" in pre and "reasoning" in post:
        rd = S.reasoning_decomposition(c_pre, c_post, _pooled(pre["reasoning"]), _pooled(post["reasoning"]), d)
        for k, v in rd.items():
            if np.ndim(v) == 0:
                out[f"reasoning.{k}"] = float(v)
    return out


def _mean_rows(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=0)


def _probes(adapter, store, case_ids, cfg, recorder_seed: int) -> tuple[dict, dict[str, float]]:
    """Value probes on pre-edit conditioning of every subject; read post-edit conditioning of the cases."""
    from .probes import probe_all_categories, probe_shift

    world = getattr(adapter, "world", None)
    if world is None:
        return {"skipped": "probes need every subject's values (SynthWorld)"}, {}
    from ..data.synthworld import CATEGORIES

    subjects = world.subjects
    prompts = [f"a {s.name}" for s in subjects]
    rec = Recorder(adapter, [s for s in adapter.sites() if s.name == "cond.tensor"], seed=recorder_seed)
    feats = np.concatenate([S.masked_mean(r.values["cond.tensor"], r.cond_mask) for r in
                            [rec.record(prompts[i:i + 128]) for i in range(0, len(prompts), 128)]])
    rows_f, cats, vals, subj = [], [], [], []
    for i, s in enumerate(subjects):
        for c in CATEGORIES:
            rows_f.append(feats[i]); cats.append(c); vals.append(s.facts[c]); subj.append(s.name)
    probes = probe_all_categories(np.stack(rows_f), cats, vals, subj, seed=cfg.seed)
    summary, per_case = {}, {}
    for c, p in probes.items():
        if isinstance(p, str):
            summary[c] = {"skipped": p}
            continue
        ids = [cid for cid in case_ids if store_attr(store, cid, "category") == c]
        entry = {"cv_accuracy": float(np.mean(p.cv_accuracy)) if hasattr(p, "cv_accuracy") else None,
                 "chance": float(p.chance) if hasattr(p, "chance") else None}
        if ids:
            pre_x = np.stack([_pooled(store.read(cid, "pre", "direct")) for cid in ids])
            post_x = np.stack([_pooled(store.read(cid, "post", "direct")) for cid in ids])
            new = [store_attr(store, cid, "new") for cid in ids]
            old = [store_attr(store, cid, "old") for cid in ids]
            entry["pre"] = _jsonable(probe_shift(p, pre_x, new, old))
            entry["post"] = _jsonable(probe_shift(p, post_x, new, old))
            pred = p.predict(post_x)
            for cid, y, n in zip(ids, pred, new):
                per_case[cid] = float(y == n)
        summary[c] = entry
    return summary, per_case


_ATTRS: dict = {}


def store_attr(store, case_id, key):
    if (store.path, case_id) not in _ATTRS:
        _ATTRS.update({(store.path, cid): a for cid, a in store.iter_cases()})
    return _ATTRS[(store.path, case_id)][key]


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else round(float(x), 6)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def analyze_run(run_dir: str | Path, out: str | Path | None = None, *, device=None, progress: bool = True,
                echo: Callable[[str], None] = print, figures: bool = True) -> dict:
    """Record, compute statistics and AUCs, write ``stats.json`` (and the figures); return the summary."""
    run = Path(run_dir)
    out = Path(out) if out else run / "analysis"
    adapter, store, entries, cfg = record_run(run, out, device=device, progress=progress, echo=echo)
    _ATTRS.clear()
    case_ids = [cid for cid, _ in store.iter_cases()]
    per_case = {cid: case_statistics(adapter, store, cid) for cid in case_ids}
    probe_summary, probe_case = _probes(adapter, store, case_ids, cfg, cfg.seed)
    for cid, v in probe_case.items():
        per_case[cid]["probe_reads_new"] = v
    success = {}
    for key, field in (("vqa_direct", "direct"), ("vqa_reasoning", "reasoning_image")):
        success[key] = {cid: bool(((entries[cid]["stages"]["stage_1"].get(field) or {}).get("vqa") or {}).get("verdict") is True)
                        for cid in case_ids}
    names = sorted({k for v in per_case.values() for k in v})
    aucs = {}
    for key, succ in success.items():
        y = np.array([succ[c] for c in case_ids])
        table = S.auc_table({n: np.array([per_case[c].get(n, np.nan) for c in case_ids], dtype=float) for n in names}, y)
        aucs[key] = _jsonable(table)
    means = {}
    for n in names:
        v = np.array([per_case[c].get(n, np.nan) for c in case_ids], dtype=float)
        ok = np.array([success["vqa_direct"][c] for c in case_ids])
        means[n] = _jsonable({"all": np.nanmean(v) if np.isfinite(v).any() else None,
                              "vqa_direct_success": np.nanmean(v[ok]) if np.isfinite(v[ok]).any() else None,
                              "vqa_direct_fail": np.nanmean(v[~ok]) if np.isfinite(v[~ok]).any() else None})
    summary = {
        "run": str(run), "model": cfg.model, "editor": cfg.editor, "protocol": cfg.protocol, "n_cases": len(case_ids),
        "hdf5": str(store.path), "aucs": aucs, "means": means, "probes": _jsonable(probe_summary),
        "vqa_direct_success_rate": _jsonable(np.mean([success["vqa_direct"][c] for c in case_ids])) if case_ids else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "stats.json").write_text(json.dumps({"summary": summary, "per_case": _jsonable(per_case),
                                                "success": success}, indent=1, sort_keys=True) + "\n")
    if figures:
        try:
            from .plots import render_all
        except ImportError:
            render_all = None
        if render_all is not None:
            summary["figures"] = render_all(out, run)
    return summary
