"""VQA judges behind one interface (``Judge.judge(image, case, stage) -> Verdict``).

``OpenAIJudge``/``OpenAIJudgeConfig`` (needs httpx) and ``LocalVLMJudge`` (needs transformers)
are imported on first use, so importing this package stays light.
"""

from .base import Judge, Verdict
from .prompting import JudgeReplyError, build_judge_prompt, parse_judge_reply
from .registry import JUDGES, make_judge
from .verifier import VerifierJudge

_LAZY = {
    "OpenAIJudge": ".openai_http",
    "OpenAIJudgeConfig": ".openai_http",
    "JudgeStats": ".openai_http",
    "LocalVLMJudge": ".local_vlm",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "JUDGES",
    "Judge",
    "JudgeReplyError",
    "JudgeStats",
    "LocalVLMJudge",
    "OpenAIJudge",
    "OpenAIJudgeConfig",
    "Verdict",
    "VerifierJudge",
    "build_judge_prompt",
    "make_judge",
    "parse_judge_reply",
]
