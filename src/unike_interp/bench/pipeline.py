"""The benchmark: edit -> text metrics -> reasoning -> direct and reasoning-augmented images -> VQA.

For every selected case and every stage of it, :func:`run_bench` measures

* **pre-edit** (unedited model): the cloze answer, and the image drawn straight from
  ``image_prompt``, judged against the old value ``gt`` (pre-edit VQA) and the new one;
* the **edit** (an editor from :mod:`unike_interp.editing`, under a protocol: ``single``,
  ``batch`` or ``sequential``, driven by :mod:`unike_interp.bench.protocol`);
* **post-edit**: the cloze answer (Eff. = first token of ``gt_target`` is the argmax), the
  reasoning (Reason. = it states ``gt_target``, :mod:`~unike_interp.bench.matching`), the image
  from ``image_prompt`` (VQA Direct) and the image from the composed reasoning prompt (VQA
  Reasoning), both judged against ``gt_target``;
* per evaluation point (after each batch's edit; once at the end of a sequential run): text
  locality (unedited facts' argmax unchanged) and image locality (unedited subjects' stage_1
  images judged correct before the edit and still after it).

Results go to a run folder (:class:`~unike_interp.bench.run_folder.RunFolder`): one typed ledger
entry per case and per evaluation point, fsynced, and the weight delta the judged model carried at
each point (``store_deltas``; what ``unike analyze`` replays), so a run
killed at any point continues with ``resume=True``: a batch whose cases and point are all in the
ledger is skipped; any other batch is recomputed whole (same composition, so the same numbers)
and only its missing lines are written. The table is then rendered from the ledger alone
(:mod:`unike_interp.bench.aggregate`), so a resumed run prints the uninterrupted run's table.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..progress import step as progress_step
from .edit_run import peak_memory_mb
from .entries import CaseEntry, PointEntry
from .matching import states_value
from .protocol import EditedState, EditorSource, EditProtocol, run_protocol, select_cases
from .reasoning import compose, reasoning_request
from .run_folder import RunFolder, RunFolderError  # noqa: F401  (RunFolderError: the error of run_bench)
from .spec import RunSpec
from .text_metrics import cloze_scores, edit_clozes, locality_probes


# --- measuring ----------------------------------------------------------------------------------

def _verdict(v) -> dict:
    return {"verdict": v.verdict, "predicted": v.predicted, "confidence": None if v.confidence is None else round(float(v.confidence), 4),
            "target": v.target, "error": v.error, **({"explanation": v.explanation} if getattr(v, "explanation", None) else {})}


class _Measure:
    """Generation and judging with every failure caught, counted and recorded."""

    def __init__(self, adapter, judge, config: RunSpec):
        self.adapter, self.judge, self.config = adapter, judge, config

    def images(self, prompts: Sequence[str | None], share: float = 0.0) -> tuple[list[np.ndarray | None], list[str | None]]:
        """One image per prompt (None prompt -> not generated); errors per prompt, never raised.
        ``share``: the fraction of the open progress phase these images are (the bar moves per chunk)."""
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
            progress_step(share * len(chunk) / len(idx))
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
    imgs, errs = m.images([st.image_prompt for _, _, st in items], share=0.9)
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
    progress_step(0.15)
    composed = [compose(m.config.compose, t, st.image_prompt) for t, (_, _, st) in zip(texts, items)]
    d_imgs, d_errs = m.images([st.image_prompt for _, _, st in items], share=0.35)
    r_imgs, r_errs = m.images([c.prompt for c in composed], share=0.35)
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

def _case_entry(folder: RunFolder, r, batch: int, pre: dict, post: dict | None, guard: str | None) -> CaseEntry:
    stages = {}
    for name in r.stages:
        p = pre[(r.case_id, name)]
        q = post[(r.case_id, name)] if post is not None else None
        entry = {
            "pre": {"top1_new": p["top1_new"], "top1_old": p["top1_old"],
                    "image": folder.save_image(p["image"], r.case_id, name, "pre"),
                    "generation_error": p["generation_error"], "vqa_gt": p["vqa_gt"], "vqa_target": p["vqa_target"]},
        }
        if q is not None:
            entry["post"] = {k: q[k] for k in ("top1_new", "top1_old", "p_new_gt_old", "full_new") if k in q}
            entry["reasoning"] = q["reasoning"]
            for key, tag in (("direct", "direct"), ("reasoning_image", "reasoning")):
                entry[key] = {"image": folder.save_image(q[key]["image"], r.case_id, name, tag),
                              "generation_error": q[key]["generation_error"], "vqa": q[key]["vqa"]}
        stages[name] = entry
    return CaseEntry(r.case_id, r.subject, r.category, r.source, r.extra.get("split"), batch, guard, stages)


def _text_locality(adapter, records, edited, n, seed):
    probes = locality_probes(records, edited, adapter=adapter, max_other=n, seed=seed)
    if not probes.prompts:
        return probes, np.zeros(0, dtype=np.int64)
    return probes, adapter.next_token_logits(probes.prompts).argmax(-1).numpy()


def bench_protocol(spec: RunSpec, n_cases: int) -> EditProtocol:
    """The spec's protocol; the benchmark evaluates a sequence once, at its end."""
    if spec.eval_each_batch:
        raise ValueError("eval_each_batch is for `unike edit`: the benchmark judges a sequence once, at its end")
    return EditProtocol.from_spec(spec, n_cases)


@dataclass
class BenchPlan:
    """What a run does, from its spec and the loaded parts: the selected cases, their batches under
    the protocol, and the resolved configuration ``config.json`` holds."""

    spec: RunSpec
    records: list
    cases: list
    protocol: EditProtocol
    batches: list[list]
    resolved: dict

    def todo(self, done_cases: set, done_points: set) -> list[int]:
        """Batches whose cases or evaluation point are not all in the ledger (recomputed whole)."""
        return batches_to_run(self.resolved["batches"], self.protocol.sequential, done_cases, done_points)


def point_of(k: int, n_batches: int, sequential: bool) -> int:
    """The evaluation point whose ledger entry batch ``k`` is judged in."""
    return n_batches - 1 if sequential else k


def pre_groups(batches: Sequence[Sequence[str]], sequential: bool, max_cases: int) -> list[list[int]]:
    """Consecutive batch indices whose cases are measured on the unedited model together.

    Single edits (batches of one case) would otherwise draw the pre-edit images of one case at a
    time; a group draws those of up to ``max_cases`` cases (``RunSpec.pre_group``) in one batch of
    prompts. Groups are a function of the planned batches and the run's settings only, so a resumed
    or distributed run measures the same cases together as an uninterrupted serial one (a batched
    draw can differ from a lone one in the last bit). A batch of more than ``max_cases`` cases is a
    group of its own; a sequence is one group.
    """
    if sequential:
        return [list(range(len(batches)))]
    groups: list[list[int]] = []
    size = 0
    for k, b in enumerate(batches):
        if groups and size + len(b) <= max_cases:
            groups[-1].append(k)
            size += len(b)
        else:
            groups.append([k])
            size = len(b)
    return groups


def batches_to_run(batches: Sequence[Sequence[str]], sequential: bool, done_cases: set, done_points: set) -> list[int]:
    """Indices of the batches (case ids) whose cases or evaluation point are not all in the ledger."""
    return [k for k, b in enumerate(batches)
            if point_of(k, len(batches), sequential) not in done_points or any(c not in done_cases for c in b)]


def plan_bench(spec: RunSpec, adapter, editor, judge) -> BenchPlan:
    """Select the cases and plan the batches; ``resolved`` is what a resume is checked against."""
    from .assemble import check_supported, load_records

    records = load_records(spec, adapter)
    cases = select_cases(records, spec.cases, seed=spec.seed)
    check_supported(cases, judge.unsupported_records(cases) if hasattr(judge, "unsupported_records") else [],
                    spec.data or adapter.name, f"the judge {getattr(judge, 'name', spec.judge)}",
                    "choose a judge that reads these values (--judge openai or --judge vlm)")
    protocol = bench_protocol(spec, len(cases))
    batches = protocol.batches(cases)
    resolved = {"config": spec.to_dict(), "hparams": asdict(editor.hp), "case_ids": [r.case_id for r in cases],
                "batches": [[r.case_id for r in b] for b in batches], "model_name": adapter.name,
                "judge_name": getattr(judge, "name", spec.judge)}
    return BenchPlan(spec, records, cases, protocol, batches, resolved)


class BatchRunner:
    """Runs batches of one benchmark run on one model replica: pre -> edit -> post -> ledger entries.

    Entries go to ``emit`` (a JSON dict each) in the order the serial run appends them: per
    evaluation point, its cases not in ``done_cases``, then the point unless in ``done_points``.
    Images and stored deltas are written into ``folder``. ``after_edit(k)`` runs after batch
    ``k``'s edit, before it is measured (a hook for fault-injection tests).
    """

    def __init__(self, plan: BenchPlan, folder: RunFolder, adapter, editor, judge, *,
                 after_edit: Callable[[int], None] | None = None):
        self.plan, self.folder, self.adapter, self.editor = plan, folder, adapter, editor
        self.m = _Measure(adapter, judge, plan.spec)
        self.source = EditorSource(editor, manifest={"protocol": plan.spec.protocol, "seed": plan.spec.seed})
        self.after_edit = after_edit
        self.probes = image_probe_records(plan.records, plan.cases, plan.spec.image_locality_probes, plan.spec.seed)
        self._probe_pre: list | None = None

    def probe_pre(self) -> list:
        """Image-locality probes judged on the unedited model (once per runner)."""
        if self._probe_pre is None:
            self._probe_pre = _probe_verdicts(self.m, self.probes) if self.probes else []
        return self._probe_pre

    def run(self, todo: Sequence[int] | None, emit: Callable[[dict], None], *, done_cases: set | None = None,
            done_points: set | None = None, progress: bool = False, desc: str | None = None) -> None:
        """Run batches ``todo`` (None: all; a sequence always runs whole)."""
        spec, adapter, folder = self.plan.spec, self.adapter, self.folder
        done_cases = set() if done_cases is None else done_cases
        done_points = set() if done_points is None else done_points
        probe_pre = self.probe_pre()
        unedited: dict = {}
        batches = self.plan.batches
        groups = pre_groups(batches, self.plan.protocol.sequential, spec.pre_group)
        group_of = {k: g for g, ks in enumerate(groups) for k in ks}

        def before(k, batch):
            g = group_of[k] if k is not None else None
            if unedited.get("group", -1) != g or g is None:  # the whole group's cases, done ones too (same draw)
                cases = batch if g is None else [r for j in groups[g] for r in batches[j]]
                unedited["pre"], unedited["group"] = measure_pre(self.m, cases), g
            unedited["loc"] = _text_locality(adapter, self.plan.records, batch, spec.text_locality_probes, spec.seed)

        def at_point(state: EditedState) -> None:
            if self.after_edit is not None:
                self.after_edit(state.point)
            post = measure_post(self.m, state.edited)
            loc_probes, loc_pre = unedited["loc"]
            loc_post = adapter.next_token_logits(loc_probes.prompts).argmax(-1).numpy() if loc_probes.prompts else np.zeros(0)
            probe_post = _probe_verdicts(self.m, self.probes) if self.probes else []
            ref = folder.save_delta(state.point, state.delta) if spec.store_deltas and state.delta is not None else None
            for r in state.edited:
                if r.case_id not in done_cases:
                    emit(_case_entry(folder, r, state.point, unedited["pre"], post, state.guards.get(r.case_id)).to_json())
                    done_cases.add(r.case_id)
            if state.point not in done_points:
                gt_first = [adapter.first_token_id(g) for g in loc_probes.gt]
                emit(PointEntry(
                    state.point, [r.case_id for r in state.edited],
                    text_locality=[{"kind": kd, "unchanged": bool(a == b), "pre_correct": bool(a == g),
                                    "post_correct": bool(b == g)}
                                   for kd, a, b, g in zip(loc_probes.kind, loc_pre, loc_post, gt_first)],
                    image_locality=[{"case_id": r.case_id, "pre": a, "post": b}
                                    for r, a, b in zip(self.probes, probe_pre, probe_post)],
                    delta=ref).to_json())
                done_points.add(state.point)

        run_protocol(adapter, self.source, self.plan.batches, self.plan.protocol, at_point=at_point, before=before,
                     todo=todo, progress=progress, desc=desc or f"{spec.model} x {self.editor.name} {spec.protocol}")


def run_bench(spec: RunSpec, out_dir: str | Path, *, resume: bool = False, progress: bool = True,
              echo: Callable[[str], None] = print, adapter=None, judge=None, editor=None) -> dict:
    """Run (or continue) the benchmark into the run folder ``out_dir`` (:class:`RunFolder`); return the table.

    Per evaluation point the ledger gets one ``case`` entry per case and one ``point`` entry (text
    and image locality, and the reference and hash of the stored weight delta the judged model
    carried). ``adapter``, ``judge`` and ``editor`` may be passed in (a notebook that holds them
    already); by default they are built from ``spec`` (:mod:`.assemble`). The same run spread over
    Ray workers: :func:`unike_interp.bench.distributed.run_bench_distributed`.
    """
    from .aggregate import build_table, write_tables
    from .assemble import build_editor, build_judge, load_adapter

    folder = RunFolder(out_dir)
    folder.check_writable(resume=resume)  # before the model is loaded
    adapter = adapter or load_adapter(spec)
    if editor is None:
        editor = build_editor(spec, adapter, progress=progress)
    editor.layers(adapter)  # a bad layer list is an input error, reported before any work
    judge = judge or build_judge(spec, adapter.device)
    plan = plan_bench(spec, adapter, editor, judge)
    folder.write_resolved(plan.resolved, resume=resume)
    folder.start_session(resume=resume, seed=spec.seed, device=str(adapter.device),
                         dtype=str(adapter.dtype).replace("torch.", ""), torch_cuda=torch.version.cuda,
                         judge=plan.resolved["judge_name"])

    ledger = folder.open_ledger()
    if ledger.torn_bytes:
        echo(f"[bench] cut a torn last line ({ledger.torn_bytes} bytes) off {folder.ledger_path}: that case is redone")
    done_cases, done_points = folder.check_done(ledger, plan.resolved["case_ids"])

    t_start = time.perf_counter()
    if note := spec.protocol_note():
        echo(f"[bench] note: {note}")
    todo = plan.todo(done_cases, done_points)
    if not todo:
        echo(f"[bench] every case is already in {folder.ledger_path}; rendering the table")
    else:
        echo(f"[bench] {spec.model} x {editor.name} ({spec.protocol}, {len(plan.cases)} cases in {len(plan.batches)} "
             f"batch(es)); {len(todo)} batch(es) to run" + (f", {len(done_cases)} cases already in the ledger" if done_cases else ""))
        runner = BatchRunner(plan, folder, adapter, editor, judge)
        runner.run(todo, ledger.append, done_cases=done_cases, done_points=done_points, progress=progress)
        folder.end_session(seconds=round(time.perf_counter() - t_start, 2), edit_seconds=round(runner.source.edit_seconds, 3),
                           stats_seconds=round(runner.source.stats_seconds, 3), peak_memory_mb=peak_memory_mb(adapter.device))

    table = build_table(folder.entries(), plan.resolved)
    write_tables(table, folder.path)
    return table
