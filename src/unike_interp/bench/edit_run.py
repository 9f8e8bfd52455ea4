"""Run an editor over cases under a protocol (:mod:`.protocol`) and measure the text side before and after.

A guard failure (:class:`~unike_interp.editing.EditGuardError`) leaves the model restored; the
case (or batch) is evaluated unedited, counted in ``guard_failures`` and listed with its error.
"""

from __future__ import annotations

import json
import resource
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .protocol import EditedState, EditorSource, EditProtocol, run_protocol, select_cases  # noqa: F401  (re-exported)
from .text_metrics import ClozeSet, cloze_scores, edit_clozes, locality_probes, locality_scores, summarize_clozes


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated tensor memory; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _merge(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run_edits(adapter, editor, records: Sequence, cases: Sequence, protocol: EditProtocol, *,
              max_locality: int = 256, seed: int = 0, full: bool = True, progress: bool = True,
              keep_delta: bool = False) -> dict:
    """Edit ``cases`` (records) under ``protocol``; ``records`` is the population locality draws from.

    ``keep_delta``: return each evaluation point's weight delta under ``"_deltas"``.
    """
    if adapter.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(adapter.device)
    cases = list(cases)
    batches = protocol.batches(cases)
    points = protocol.points(len(batches))
    probes = {k: locality_probes(records, protocol.edited(batches, k), adapter=adapter, max_other=max_locality, seed=seed)
              for k in points}

    # everything "pre" is measured on the unedited model, once
    all_cs = edit_clozes(cases)
    pre_scores = cloze_scores(adapter, all_cs, full=full)
    uniq = sorted({q for pr in probes.values() for q in pr.prompts})
    pre_arg = dict(zip(uniq, adapter.next_token_logits(uniq).argmax(-1).numpy())) if uniq else {}
    for pr in probes.values():
        pr.pre = np.array([pre_arg[q] for q in pr.prompts])

    post_parts: list[dict] = []
    post_cs = ClozeSet()
    loc_parts: list[dict] = []
    per_point: list[dict] = []
    deltas = []

    def at_point(state: EditedState) -> None:
        nonlocal post_parts, post_cs, loc_parts
        if keep_delta and state.delta is not None:
            deltas.append(state.delta)
        cs = edit_clozes(state.edited)
        sc = cloze_scores(adapter, cs, full=full)
        pr = probes[state.point]
        post_loc = adapter.next_token_logits(pr.prompts).argmax(-1).numpy() if pr.prompts else np.zeros(0)
        loc = locality_scores(adapter, pr, post_loc)
        if protocol.sequential:
            per_point.append({"edits": len(state.edited), **summarize_clozes(cs, sc), "locality": loc})
            post_parts, post_cs, loc_parts = [sc], cs, [loc]  # the last point is the result
        else:
            post_parts.append(sc)
            for k in ("prompts", "old", "new", "case", "stage"):
                getattr(post_cs, k).extend(getattr(cs, k))
            loc_parts.append(loc)

    source = EditorSource(editor)
    run_protocol(adapter, source, batches, protocol, at_point=at_point, progress=progress,
                 desc=f"{editor.name} {protocol.kind}")
    failures, edit_seconds, stats_seconds = source.failures, source.edit_seconds, source.stats_seconds

    post = _merge(post_parts)
    pre_sum = summarize_clozes(all_cs, pre_scores)
    post_sum = summarize_clozes(post_cs, post)

    def pp(key):
        return {"pre": pre_sum[key], "post": post_sum[key]}

    def mean_loc(key):
        """Probe-weighted mean over evaluation points of a locality rate."""
        count = "n_" + key.split("_", 1)[1] if key.startswith("unchanged_") else "n"
        vals = [(l[key], l[count]) for l in loc_parts if l.get(key) is not None]
        tot = sum(n for _, n in vals)
        return round(sum(v * n for v, n in vals) / tot, 4) if tot else None

    locality = {"pre": 1.0, "post": mean_loc("unchanged"),
                "neighbours": mean_loc("unchanged_neighbour"), "other": mean_loc("unchanged_other"),
                "same_subject": mean_loc("unchanged_same_subject"),
                "accuracy_pre": mean_loc("accuracy_pre"), "accuracy_post": mean_loc("accuracy_post"),
                "probes_per_evaluation": round(float(np.mean([l["n"] for l in loc_parts])), 1)}
    n_edits = len(cases)
    out = {
        "model": adapter.name,
        "editor": editor.name,
        "protocol": asdict(protocol),
        "hparams": asdict(editor.hp),
        "n_cases": n_edits,
        "efficacy": pp("efficacy"),
        "efficacy_full": pp("efficacy_full"),
        "efficacy_p_new_gt_old": pp("efficacy_p_new_gt_old"),
        "per_stage": {s: {"pre": pre_sum["per_stage"].get(s), "post": post_sum["per_stage"].get(s)} for s in pre_sum["per_stage"]},
        "all_stages": pp("all_stages"),
        "generalization": pp("generalization"),
        "locality": locality,
        "old_answer_top1": pp("old_answer_top1"),
        "seconds_per_edit": round(edit_seconds / max(n_edits, 1), 4),
        "edit_seconds": round(edit_seconds, 3),
        "stats_seconds": round(stats_seconds, 3),
        "peak_memory_mb": peak_memory_mb(adapter.device),
        "guard_failures": sum(len(f["cases"]) for f in failures),
        "failures": failures,
        "device": str(adapter.device),
        "dtype": str(adapter.dtype).replace("torch.", ""),
    }
    if per_point:
        out["per_batch"] = per_point
    if keep_delta:
        out["_deltas"] = deltas
    return out


def edit_from_spec(spec, *, out: str | Path | None = None, save_deltas: bool = False, progress: bool = True,
                   echo=print) -> dict:
    """``unike edit`` as a function: build model, editor and cases from a RunSpec, run, write ``out``.

    ``out``: ``edit_result.json`` and, with ``save_deltas``, each evaluation point's weight delta
    under ``deltas/`` (sequential: the cumulative delta at that point).
    """
    from .assemble import build_editor, load_adapter, load_records

    if save_deltas and not out:
        raise ValueError("--save-deltas needs --out DIR")
    adapter = load_adapter(spec)
    editor = build_editor(spec, adapter, progress=progress)
    records = load_records(spec, adapter)
    cases = select_cases(records, spec.cases, seed=spec.seed)
    protocol = EditProtocol.from_spec(spec, len(cases))
    result = run_edits(adapter, editor, records, cases, protocol, max_locality=spec.text_locality_probes, seed=spec.seed,
                       full=spec.full_match, progress=progress, keep_delta=save_deltas)
    deltas = result.pop("_deltas", [])
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for i, d in enumerate(deltas):
            d.save(out / "deltas" / f"edit_{i:04d}")
        if deltas:
            result["deltas"] = [f"deltas/edit_{i:04d}.safetensors" for i in range(len(deltas))]
            echo(f"wrote {len(deltas)} weight deltas to {out / 'deltas'}")
        (out / "edit_result.json").write_text(json.dumps(result, indent=1))
        echo(f"wrote {out / 'edit_result.json'}")
    return result


def format_edit_result(r: dict) -> str:
    """A plain-text table of an edit run's text metrics (pre -> post)."""
    rows = [("efficacy (top-1, stage_1)", r["efficacy"]), ("efficacy (full greedy)", r["efficacy_full"]),
            ("efficacy (P(new) > P(old))", r["efficacy_p_new_gt_old"])]
    rows += [(f"  {s}", v) for s, v in r["per_stage"].items()]
    rows += [("generalization (stages 2..n)", r["generalization"]), ("locality (unchanged)", r["locality"])]
    loc = r["locality"]
    lines = [f"{r['editor']} on {r['model']} -- {r['protocol']['kind']} protocol, batch {r['protocol']['batch_size']}, "
             f"{r['n_cases']} cases", f"{'metric':<32}{'pre':>8}{'post':>8}"]

    def fmt(x):
        return "-" if x is None else f"{x:.3f}"

    lines += [f"{name:<32}{fmt(v['pre']):>8}{fmt(v['post']):>8}" for name, v in rows]
    lines += [f"{'  neighbours / other':<32}{'':>8}{fmt(loc['neighbours']):>8} / {fmt(loc['other'])}",
              f"{'  same subject, other facts':<32}{'':>8}{fmt(loc['same_subject']):>8}",
              f"seconds per edit {r['seconds_per_edit']:.3f} (statistics {r['stats_seconds']:.1f} s), "
              f"peak memory {r['peak_memory_mb']:.0f} MB, guard failures {r['guard_failures']}"]
    return "\n".join(lines)
