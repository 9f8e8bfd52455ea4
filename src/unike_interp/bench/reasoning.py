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

COMPOSE_MODES = ("replace", "prepend")

_TAIL = ("Think step by step in two or three short sentences, then end with one line that starts "
         "with 'Caption:' and describes the picture to draw.")
TEMPLATES: dict[str, str] = {
    "color": "Request: {image_prompt}. What colour is the {subject}? Use that colour in the picture. " + _TAIL,
    "material": "Request: {image_prompt}. What is the {subject} made of? Show that material in the picture. " + _TAIL,
    "pattern": "Request: {image_prompt}. Which pattern covers the {subject}? Draw it with that pattern. " + _TAIL,
    "shape": "Request: {image_prompt}. What shape does the {subject} have? Keep that shape in the picture. " + _TAIL,
    "size": "Request: {image_prompt}. How big is the {subject}? Draw it at that size. " + _TAIL,
    "affiliation": "Request: {image_prompt}. Which group does the {subject} belong to? Show that group's sign. " + _TAIL,
    "creator": "Request: {image_prompt}. Who made the {subject}? Show the maker's mark. " + _TAIL,
    "location": "Request: {image_prompt}. Where is the {subject} found? Set the picture there. " + _TAIL,
    "occupation": "Request: {image_prompt}. What does the {subject} do for a living? Show the tools of that work. " + _TAIL,
}
GENERIC = "Request: {image_prompt}. Recall what you know about the {subject} ({category}) and apply it. " + _TAIL


def reasoning_request(adapter, image_prompt: str, subject: str, category: str) -> str:
    """The reasoning request for one stage (the adapter's own format when it has one)."""
    own = getattr(adapter, "reasoning_prompt", None)
    if callable(own):
        return own(image_prompt, subject, category)
    return TEMPLATES.get(category, GENERIC).format(image_prompt=image_prompt, subject=subject, category=category)


def parse_caption(text: str | None) -> str | None:
    """The text after the last ``Caption:`` marker up to the end of its line; None when absent or empty."""
    if not text:
        return None
    pos = text.rfind("Caption:")
    if pos < 0:
        return None
    caption = text[pos + len("Caption:"):].strip().split("\n")[0].strip()
    if caption.endswith("."):
        caption = caption[:-1].rstrip()
    return caption or None


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
