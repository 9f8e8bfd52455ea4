"""The SynthWorld verifier as a VQA judge.

SynthWorld's questions ask for one category's value (the record's ``category``), so the verifier
reads that category's head: ``predicted = argmax``, ``confidence = softmax max``,
``verdict = predicted == target``. A record whose category the verifier has no head for, or a
target outside the category's values, is a judge error (never a silent fail).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data.schema import Record
from ..data.synthworld.vocab import CATEGORY_VALUES
from .base import Judge, Verdict


class VerifierJudge(Judge):
    name = "synthworld-verifier"

    def __init__(self, verifier):
        self.verifier = verifier

    @classmethod
    def from_world(cls, world_dir=None, *, device="cpu") -> "VerifierJudge":
        from ..world.store import default_world_dir, load_verifier

        return cls(load_verifier(world_dir or default_world_dir(), device=device))

    def unsupported_records(self, records: Sequence[Record]) -> list[str]:
        """Records with a category or value (old or new, any stage) the SynthWorld verifier has no class for."""
        out = []
        for r in records:
            values = CATEGORY_VALUES.get(r.category)
            if values is None:
                out.append(f"{r.case_id}: no verifier head for category {r.category!r}")
                continue
            bad = sorted({v for st in r.stages.values() for v in (st.gt, st.gt_target) if v not in values})
            if bad:
                out.append(f"{r.case_id}: {', '.join(map(repr, bad))} not a SynthWorld {r.category} value")
        return out

    def judge_batch(
        self, images: np.ndarray, cases: Sequence[Record], stages: Sequence[str], targets: Sequence[str] | None = None
    ) -> list[Verdict]:
        if not (len(images) == len(cases) == len(stages)) or (targets is not None and len(targets) != len(cases)):
            raise ValueError(
                f"judge_batch needs one case, stage (and target) per image: {len(images)} images, "
                f"{len(cases)} cases, {len(stages)} stages" + ("" if targets is None else f", {len(targets)} targets")
            )
        read = self.verifier.read(np.asarray(images)) if len(images) else {}
        out: list[Verdict] = []
        for i, (case, stage) in enumerate(zip(cases, stages)):
            target = targets[i] if targets is not None else case.stage(stage).gt_target
            values = CATEGORY_VALUES.get(case.category)
            if values is None:
                out.append(Verdict(None, None, None, target, error=f"the verifier has no head for category {case.category!r}"))
                continue
            if target not in values:
                out.append(Verdict(None, None, None, target, error=f"{target!r} is not a SynthWorld {case.category} value"))
                continue
            idx, conf = read[case.category]
            predicted = values[int(idx[i])]
            out.append(Verdict(predicted == target, predicted, float(conf[i]), target))
        return out

    def value_probability(self, images: np.ndarray, cases: Sequence[Record], stages: Sequence[str],
                          targets: Sequence[str]) -> np.ndarray:
        """The softmax of the record's category head at ``targets[i]`` (NaN for a category or value
        the verifier does not know)."""
        probs = self.verifier.probabilities(np.asarray(images)) if len(images) else {}
        out = np.full(len(images), np.nan)
        for i, (case, target) in enumerate(zip(cases, targets)):
            values = CATEGORY_VALUES.get(case.category)
            if values is not None and target in values:
                out[i] = probs[case.category][i, values.index(target)]
        return out
