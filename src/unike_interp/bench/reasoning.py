"""Reasoning-augmented generation: ask the (edited) model to recall, apply, then caption.

For each stage the model gets a reasoning request built from the stage's ``image_prompt``, the
subject and the category; it greedily writes a short reasoning that should recall the (edited)
property and end with ``Caption: <what to draw>``. The image prompt is then composed under an
explicit mode:

``replace``   the caption alone (what the original study's code did);
``prepend``   the whole reasoning, then the image prompt.

An empty reasoning, or (``replace``) one without a caption, is a *failure of the reasoning mode*:
:func:`compose` returns no prompt and a reason, the image is not generated, and the case counts
as a reasoning-VQA failure in its own column. There is never a fall-back to the direct prompt.

Requests: an adapter may define ``reasoning_prompt(image_prompt, subject, category)`` in the
format its language model was trained on (SynthWorld does); otherwise :data:`TEMPLATES` (one per
category, our own wording) are used.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.reasoning import GENERIC, TEMPLATES, parse_caption, reasoning_request  # noqa: F401  (re-exported)

COMPOSE_MODES = ("replace", "prepend")


@dataclass(frozen=True)
class Composed:
    """The generation prompt of the reasoning mode, or why there is none."""

    prompt: str | None
    caption: str | None
    failure: str | None


def compose(mode: str, reasoning: str | None, image_prompt: str) -> Composed:
    if mode not in COMPOSE_MODES:
        raise ValueError(f"compose mode must be one of {', '.join(COMPOSE_MODES)}, got {mode!r}")
    text = (reasoning or "").strip()
    caption = parse_caption(text)
    if not text:
        return Composed(None, None, "empty reasoning")
    if mode == "replace":
        if caption is None:
            return Composed(None, None, "no caption in the reasoning")
        return Composed(caption, caption, None)
    return Composed(f"{' '.join(text.split())} {image_prompt}", caption, None)
