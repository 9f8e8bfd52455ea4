"""VQA judges behind one interface (``Judge.judge(image, case, stage) -> Verdict``)."""

from .base import Judge, Verdict
from .verifier import VerifierJudge

__all__ = ["Judge", "Verdict", "VerifierJudge"]
