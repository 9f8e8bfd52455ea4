"""What the model judges are asked, and how their replies are read.

Both model judges (:mod:`.openai_http`, :mod:`.local_vlm`) send one image with the text of
:func:`build_judge_prompt` and expect back a single JSON object::

    {"observation": "<short answer to the question, from the image>",
     "matches_target": true | false,
     "confidence": <number in [0, 1]>,
     "explanation": "<one sentence>"}

:func:`parse_judge_reply` reads that object out of the raw reply text. It accepts the object bare,
inside a Markdown code fence, or with prose around it, but it never repairs or guesses a value: a
reply it cannot read raises :class:`JudgeReplyError`, which the judges turn into a ``Verdict``
with ``verdict=None`` and ``error`` set.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..data.schema import Record

PROMPT_VERSION = 1
"""Bumped whenever the prompt text changes, so cached verdicts of an older prompt are not reused."""

REPLY_KEYS: tuple[str, ...] = ("observation", "matches_target", "confidence", "explanation")

_EXCERPT_CHARS = 160


class JudgeReplyError(ValueError):
    """A judge's reply is not the JSON object the prompt asks for."""


def build_judge_prompt(question: str, target: str, visual_target: str | None = None) -> str:
    """The instruction sent with the image.

    ``visual_target`` is the stage's statement of what the edited image should show. It is only
    meaningful when ``target`` is the stage's ``gt_target``; callers checking another value (e.g.
    the pre-edit ``gt``) pass ``None`` so the prompt does not contradict itself.
    """
    lines = [
        "You will be shown one image. Judge it only by what is actually visible in it.",
        "",
        f"Question about the image: {question}",
        f"Value the answer should be: {target}",
    ]
    if visual_target:
        lines.append(f"Statement the image should make true: {visual_target}")
    lines += [
        "",
        "First answer the question from the image. Then decide whether the image meets the "
        f"criterion, that is, whether the visible answer is {target!r}.",
        "",
        "Respond with a single JSON object and nothing else (no code fence, no extra text). "
        "It must have exactly these keys:",
        '  "observation": your short answer to the question, based on the image;',
        '  "matches_target": true if the image meets the criterion, otherwise false (a JSON boolean);',
        '  "confidence": how sure you are, a number from 0 to 1;',
        '  "explanation": one sentence saying why.',
    ]
    return "\n".join(lines)


def _excerpt(text: str) -> str:
    text = text.strip()
    if len(text) > _EXCERPT_CHARS:
        text = text[:_EXCERPT_CHARS] + "..."
    return repr(text)


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n?(.*?)```", re.DOTALL)


def _object_text(text: str) -> str:
    """The candidate ``{...}`` span: a fenced block's body if there is one, else first ``{`` to last ``}``."""
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    try:
        whole = json.loads(body)
    except json.JSONDecodeError:
        pass
    else:  # valid JSON as it stands: it must be the object itself, not e.g. a list holding one
        if not isinstance(whole, dict):
            raise JudgeReplyError(f"the judge reply is JSON but not an object: {_excerpt(text)}")
        return body
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise JudgeReplyError(f"the judge reply holds no JSON object: {_excerpt(text)}")
    return body[start : end + 1]


def parse_judge_reply(text: str) -> dict[str, Any]:
    """Read the judge's JSON object out of ``text``.

    Returns ``{"observation": str, "matches_target": bool, "confidence": float,
    "explanation": str}`` (strings stripped; keys beyond these four are ignored). Raises
    :class:`JudgeReplyError` naming the problem, with an excerpt of the reply, when: there is no
    ``{...}`` span, the span is not one valid JSON object, a key is missing, ``observation`` is not
    a non-empty string, ``matches_target`` is not a JSON boolean (the strings ``"true"``/``"yes"``
    are rejected, not interpreted), ``confidence`` is not a finite number in [0, 1], or
    ``explanation`` is not a string.
    """
    if not isinstance(text, str):
        raise JudgeReplyError(f"the judge reply is not text (got {type(text).__name__})")
    span = _object_text(text)
    try:
        obj = json.loads(span)
    except json.JSONDecodeError as exc:
        raise JudgeReplyError(f"the judge reply is not one valid JSON object ({exc.msg}): {_excerpt(text)}") from None
    if not isinstance(obj, dict):
        raise JudgeReplyError(f"the judge reply is JSON but not an object: {_excerpt(text)}")
    missing = [k for k in REPLY_KEYS if k not in obj]
    if missing:
        raise JudgeReplyError(f"the judge reply lacks key(s) {', '.join(missing)}: {_excerpt(text)}")

    observation, matches, confidence, explanation = (obj[k] for k in REPLY_KEYS)
    if not isinstance(observation, str) or not observation.strip():
        raise JudgeReplyError(f"'observation' must be a non-empty string, got {observation!r}")
    if not isinstance(matches, bool):
        raise JudgeReplyError(f"'matches_target' must be a JSON boolean (true/false), got {matches!r}")
    # bool is an int subclass: reject it so `"confidence": true` is not read as 1.0.
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise JudgeReplyError(f"'confidence' must be a number in [0, 1], got {confidence!r}")
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise JudgeReplyError(f"'confidence' must be in [0, 1], got {confidence!r}")
    if not isinstance(explanation, str):
        raise JudgeReplyError(f"'explanation' must be a string, got {explanation!r}")
    return {
        "observation": observation.strip(),
        "matches_target": matches,
        "confidence": float(confidence),
        "explanation": explanation.strip(),
    }


@dataclass(frozen=True)
class JudgeItem:
    """One image to judge with the text it is judged against (what both model judges need)."""

    image: np.ndarray  # (H, W, 3) uint8
    question: str  # the stage's vqa_question
    target: str  # the value the image must show
    visual_target: str | None  # the stage's visual_target, or None when ``target`` is not gt_target

    @property
    def prompt(self) -> str:
        return build_judge_prompt(self.question, self.target, self.visual_target)


def judge_items(
    images: np.ndarray | Sequence[np.ndarray],
    cases: Sequence[Record],
    stages: Sequence[str],
    targets: Sequence[str] | None = None,
) -> list[JudgeItem]:
    """Check ``judge_batch`` arguments and pair each image with its question and target.

    Raises ``ValueError`` on mismatched lengths or an image that is not ``(H, W, 3)`` uint8, and
    ``KeyError`` for a stage the case lacks: these are caller bugs, not judgements.
    """
    if not (len(images) == len(cases) == len(stages)) or (targets is not None and len(targets) != len(cases)):
        raise ValueError(
            f"judge_batch needs one case, stage (and target) per image: {len(images)} images, "
            f"{len(cases)} cases, {len(stages)} stages" + ("" if targets is None else f", {len(targets)} targets")
        )
    items = []
    for i, (case, stage_name) in enumerate(zip(cases, stages)):
        image = np.asarray(images[i])
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {i} must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        stage = case.stage(stage_name)
        target = targets[i] if targets is not None else stage.gt_target
        visual_target = stage.visual_target if target == stage.gt_target else None
        items.append(JudgeItem(image, stage.vqa_question, target, visual_target))
    return items
