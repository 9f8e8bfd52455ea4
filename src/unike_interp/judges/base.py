"""The VQA judge interface: (image, case, stage) -> Verdict.

A judge decides whether an image satisfies a stage's ``visual_target``: its answer to the stage's
``vqa_question`` must be the stage's ``gt_target`` (the edited value). A judge that cannot decide
returns a verdict with ``error`` set and ``verdict=None``, which callers count as a judge error,
never as a pass or a fail.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..data.schema import Record


@dataclass(frozen=True)
class Verdict:
    """One judgement. ``verdict``: does the image show ``target``? (``None`` on a judge error).

    ``explanation`` is the judge's one-sentence reason where it gives one (the model judges do;
    the SynthWorld verifier does not). It comes last so positional construction stays valid.
    """

    verdict: bool | None
    predicted: str | None
    confidence: float | None
    target: str
    error: str | None = None
    explanation: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Judge(ABC):
    """Judges images of UniKE cases."""

    name: str

    @abstractmethod
    def judge_batch(
        self, images: np.ndarray, cases: Sequence[Record], stages: Sequence[str], targets: Sequence[str] | None = None
    ) -> list[Verdict]:
        """Judge ``images[i]`` against ``cases[i].stage(stages[i])``.

        ``targets[i]`` overrides the value the image must show (default: the stage's
        ``gt_target``; pass ``gt`` to check the pre-edit value).
        """

    def unsupported_records(self, records: Sequence[Record]) -> list[str]:
        """Why this judge cannot judge some of ``records`` (one line each; ``[]``: all fine)."""
        return []

    def value_probability(self, images: np.ndarray, cases: Sequence[Record], stages: Sequence[str],
                          targets: Sequence[str]) -> np.ndarray | None:
        """``(N,)`` the judge's probability that ``images[i]`` shows ``targets[i]`` (NaN where it
        cannot say), or None for a judge that gives no probabilities (e.g. a yes/no VLM answer).
        Causal tracing reads it so that its maps are smooth with few cases."""
        return None

    def judge(self, image: np.ndarray, case: Record, stage: str = "stage_1", target: str | None = None) -> Verdict:
        """Judge one ``(H, W, 3)`` uint8 image."""
        return self.judge_batch(image[None], [case], [stage], None if target is None else [target])[0]
