"""How a model is asked to reason before drawing, and how its caption is read back.

The benchmark's reasoning mode (:mod:`unike_interp.bench.reasoning`) and the modality-aware editor
(:mod:`unike_interp.editing.modality`) ask a model the same way: the adapter's own
``reasoning_prompt(image_prompt, subject, category)`` where it has one (SynthWorld's, the format
its LM was trained on), else :data:`TEMPLATES` (one per category, our own wording).
"""

from __future__ import annotations

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
