"""Text-side metrics of an edit, measured before and after it.

For a record's stage with cloze ``prompt``, old answer ``gt`` and new answer ``gt_target``:

``top1``      the argmax next token after ``prompt`` is the first token of ``" " + gt_target``
              (the UniKE paper's efficacy);
``full``      greedy decoding of ``len(tokens(gt_target))`` tokens reproduces ``gt_target``;
``p_new_gt_old``  ``log P(gt_target | prompt) > log P(gt | prompt)`` (summed over tokens).

Efficacy is ``top1`` on ``stage_1`` of the edited cases (per stage too, and pooled over all stages
as ``all_stages``); generalization is ``top1`` pooled over the indirect stages (2..n). Locality
compares, for probe prompts of *unedited* records, the argmax next token after the edit with the
one before it (``unchanged``); ``neighbours`` restricts that to records sharing the edited cases'
(category, old value), and ``same_subject`` (SynthWorld only) to the edited subjects' other facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..editing.batching import make_batch, target_logprob


@dataclass
class ClozeSet:
    """Prompts with old and new answers, tagged by case and stage."""

    prompts: list[str] = field(default_factory=list)
    old: list[str | None] = field(default_factory=list)
    new: list[str | None] = field(default_factory=list)
    case: list[str] = field(default_factory=list)
    stage: list[str] = field(default_factory=list)

    def add(self, prompt, old, new, case, stage) -> None:
        self.prompts.append(prompt)
        self.old.append(old)
        self.new.append(new)
        self.case.append(case)
        self.stage.append(stage)

    def __len__(self) -> int:
        return len(self.prompts)


def edit_clozes(records: Sequence) -> ClozeSet:
    """Every stage of every record (efficacy and generalization probes)."""
    cs = ClozeSet()
    for r in records:
        for name, st in r.stages.items():
            cs.add(st.prompt, st.gt, st.gt_target, r.case_id, name)
    return cs


@torch.no_grad()
def argmax_next(adapter, prompts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    if not prompts:
        return np.zeros(0, dtype=np.int64)
    return adapter.next_token_logits(list(prompts), batch_size=batch_size).argmax(-1).numpy()


@torch.no_grad()
def cloze_scores(adapter, cs: ClozeSet, *, full: bool = True, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Per prompt: ``argmax`` token, ``top1_new``, ``top1_old``, ``p_new_gt_old`` and (``full``)
    ``full_new`` — arrays of length ``len(cs)``."""
    n = len(cs)
    arg = argmax_next(adapter, cs.prompts)
    new_first = np.array([adapter.first_token_id(t) for t in cs.new])
    old_first = np.array([adapter.first_token_id(t) if t else -1 for t in cs.old])
    out = {"argmax": arg, "top1_new": arg == new_first, "top1_old": arg == old_first}
    lp_new, lp_old = np.zeros(n), np.zeros(n)
    for i in range(0, n, batch_size):
        sl = slice(i, i + batch_size)
        for tgt, store in ((cs.new, lp_new), (cs.old, lp_old)):
            b = make_batch(adapter.tokenizer, cs.prompts[sl], None, tgt[sl]).to(adapter.device)
            logits = adapter.lm(**b.model_inputs()).logits
            store[sl] = target_logprob(logits, b.target_ids).cpu().numpy()
    out["p_new_gt_old"] = lp_new > lp_old
    if full:
        lens = [len(adapter.tokenizer(" " + t, add_special_tokens=False)["input_ids"]) for t in cs.new]
        texts = adapter.generate_text(cs.prompts, max_new_tokens=max(lens) + 1)
        out["full_new"] = np.array([t.strip().startswith(g) and (len(t.strip()) == len(g) or not t.strip()[len(g)].isalnum())
                                    for t, g in zip(texts, cs.new)])
    return out


def _rate(x) -> float | None:
    x = np.asarray(x, dtype=bool)
    return round(float(x.mean()), 4) if x.size else None


def summarize_clozes(cs: ClozeSet, scores: dict) -> dict:
    """Efficacy (stage_1), per stage, all stages, generalization (stages 2..n) for one score set."""
    stage = np.array(cs.stage)
    out = {"efficacy": _rate(scores["top1_new"][stage == "stage_1"]),
           "efficacy_full": _rate(scores["full_new"][stage == "stage_1"]) if "full_new" in scores else None,
           "efficacy_p_new_gt_old": _rate(scores["p_new_gt_old"][stage == "stage_1"]),
           "per_stage": {s: _rate(scores["top1_new"][stage == s]) for s in sorted(set(cs.stage))},
           "all_stages": _rate(scores["top1_new"]),
           "generalization": _rate(scores["top1_new"][stage != "stage_1"]),
           "old_answer_top1": _rate(scores["top1_old"][stage == "stage_1"])}
    return out


@dataclass
class LocalityProbes:
    """Prompts of unedited facts, their pre-edit argmax, and which are neighbours / same-subject."""

    prompts: list[str]
    kind: list[str]           # "other" | "neighbour" | "same_subject"
    gt: list[str]
    pre: np.ndarray | None = None


def locality_probes(records: Sequence, edited: Sequence, *, adapter=None, max_other: int = 256,
                    seed: int = 0) -> LocalityProbes:
    """Stage-1 prompts of records not in ``edited``: all neighbours (same category and old value as
    an edited case) plus a seeded sample of up to ``max_other`` others; with an ``adapter`` that
    knows its subjects' other facts (:meth:`~unike_interp.models.base.UMMAdapter.related_fact_prompts`),
    also the edited subjects' facts in the other categories."""
    edited_ids = {r.case_id for r in edited}
    edited_subjects = {r.subject for r in edited}
    keys = {(r.category, r.stage_1.gt) for r in edited}
    neigh, other = [], []
    for r in records:
        if r.case_id in edited_ids or r.subject in edited_subjects:
            continue
        (neigh if (r.category, r.stage_1.gt) in keys else other).append(r)
    rng = np.random.default_rng([seed, 7])
    if len(other) > max_other:
        other = [other[i] for i in sorted(rng.choice(len(other), max_other, replace=False))]
    prompts = [r.stage_1.prompt for r in neigh + other]
    kind = ["neighbour"] * len(neigh) + ["other"] * len(other)
    gt = [r.stage_1.gt for r in neigh + other]
    if adapter is not None:
        for r in edited:
            for prompt, answer in adapter.related_fact_prompts(r):
                prompts.append(prompt)
                kind.append("same_subject")
                gt.append(answer)
    return LocalityProbes(prompts, kind, gt)


def locality_scores(adapter, probes: LocalityProbes, post: np.ndarray) -> dict:
    """``unchanged`` rates (all, neighbours, other, same_subject) and top-1 accuracy on the true answers."""
    kind = np.array(probes.kind)
    same = post == probes.pre
    gt_first = np.array([adapter.first_token_id(g) for g in probes.gt])
    unedited = kind != "same_subject"
    out = {"unchanged": _rate(same[unedited]), "n": int(unedited.sum()),
           "accuracy_pre": _rate((probes.pre == gt_first)[unedited]), "accuracy_post": _rate((post == gt_first)[unedited])}
    for k in ("neighbour", "other", "same_subject"):
        if (kind == k).any():
            out[f"unchanged_{k}"] = _rate(same[kind == k])
            out[f"n_{k}"] = int((kind == k).sum())
    return out
