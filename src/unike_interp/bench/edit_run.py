"""Run an editor over cases under a protocol and measure the text side before and after.

Protocols (recorded in every result):

``single``      edit one case, evaluate it, restore; repeat for every case;
``batch``       edit ``batch_size`` cases at once, evaluate them, restore; repeat per batch;
``sequential``  apply batches of ``batch_size`` one after another without restoring; evaluate at
                the end (and after each batch with ``eval_each_batch``); restore everything at the end.

A guard failure (:class:`~unike_interp.editing.EditGuardError`) leaves the model restored; the
case (or batch) is evaluated unedited, counted in ``guard_failures`` and listed with its error.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from ..editing import EditGuardError, requests_from_records
from .text_metrics import ClozeSet, cloze_scores, edit_clozes, locality_probes, locality_scores, summarize_clozes

PROTOCOLS = ("single", "batch", "sequential")


@dataclass
class EditProtocol:
    kind: str = "single"
    batch_size: int = 1
    eval_each_batch: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.kind!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.kind == "single":
            self.batch_size = 1


def select_cases(records: Sequence, n: int | None, seed: int = 0) -> list:
    """A seeded sample of ``n`` records (all when ``n`` is None), in their original order."""
    if n is None or n >= len(records):
        return list(records)
    if n < 1:
        raise ValueError(f"--cases must be >= 1, got {n}")
    rng = np.random.default_rng([seed, 11])
    idx = sorted(rng.choice(len(records), n, replace=False))
    return [records[i] for i in idx]


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
    """Edit ``cases`` (records) under ``protocol``; ``records`` is the population locality draws from."""
    from tqdm.auto import tqdm

    world = getattr(adapter, "world", None)
    if adapter.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(adapter.device)
    cases = list(cases)
    chunks = [cases[i:i + protocol.batch_size] for i in range(0, len(cases), protocol.batch_size)]
    # which cases are edited at each evaluation point
    if protocol.kind == "sequential":
        points = [cases[: (i + 1) * protocol.batch_size] for i in range(len(chunks))]
        if not protocol.eval_each_batch:
            points = points[-1:]
    else:
        points = chunks
    probes = [locality_probes(records, p, world=world, max_other=max_locality, seed=seed) for p in points]

    # everything "pre" is measured on the unedited model, once
    all_cs = edit_clozes(cases)
    pre_scores = cloze_scores(adapter, all_cs, full=full)
    uniq = sorted({q for pr in probes for q in pr.prompts})
    pre_arg = dict(zip(uniq, adapter.next_token_logits(uniq).argmax(-1).numpy())) if uniq else {}
    for pr in probes:
        pr.pre = np.array([pre_arg[q] for q in pr.prompts])

    t_stats = time.perf_counter()
    editor.prepare(adapter)
    stats_seconds = time.perf_counter() - t_stats

    edit_seconds = 0.0
    failures: list[dict] = []
    post_parts: list[dict] = []
    post_cs = ClozeSet()
    loc_parts: list[dict] = []
    per_point: list[dict] = []
    applied = []
    deltas = []
    bar = tqdm(chunks, desc=f"{editor.name} {protocol.kind}", unit="batch" if protocol.batch_size > 1 else "edit",
               disable=not progress)
    try:
        for ci, chunk in enumerate(bar):
            reqs = requests_from_records(chunk)
            try:
                res = editor.edit(adapter, reqs)
                edit_seconds += res.seconds
                applied.append(res)
                if keep_delta:
                    deltas.append(res.delta)
            except EditGuardError as e:
                failures.append({"cases": e.cases, "layer": e.layer, "error": str(e)})
            evaluate_now = protocol.kind != "sequential" or protocol.eval_each_batch or ci == len(chunks) - 1
            if evaluate_now:
                pi = ci if (protocol.kind != "sequential" or protocol.eval_each_batch) else 0
                edited = points[pi]
                cs = edit_clozes(edited if protocol.kind == "sequential" else chunk)
                sc = cloze_scores(adapter, cs, full=full)
                post_loc = adapter.next_token_logits(probes[pi].prompts).argmax(-1).numpy() if probes[pi].prompts else np.zeros(0)
                loc = locality_scores(adapter, probes[pi], post_loc)
                if protocol.kind == "sequential":
                    per_point.append({"edits": len(edited), **summarize_clozes(cs, sc), "locality": loc})
                    if ci == len(chunks) - 1:
                        post_parts, post_cs, loc_parts = [sc], cs, [loc]
                else:
                    post_parts.append(sc)
                    for k in ("prompts", "old", "new", "case", "stage"):
                        getattr(post_cs, k).extend(getattr(cs, k))
                    loc_parts.append(loc)
            if protocol.kind != "sequential":
                if applied:
                    applied.pop().remove()
                editor.new_sequence()  # the next batch edits the unedited model (AlphaEdit: no earlier keys)
    finally:
        while applied:
            applied.pop().remove()

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
