"""Does a text *state* a value? A matcher for the Reason. metric.

The original study counted a reasoning as correct when the target appeared anywhere in it as a
substring, so "the ball is not blue" stated "blue", and "grey" missed "gray". Here a value is
stated when some form of it (the value or one of its synonyms; a trailing plural ``s`` allowed)
occurs as whole words and no negation cue precedes it in the same clause within
``NEGATION_WINDOW`` words:

    >>> states_value("The zib is blue.", "blue")
    True
    >>> states_value("The zib is not blue, it is red.", "blue")
    False
    >>> states_value("The zib is gray.", "grey")
    True
    >>> states_value("The zib is bluegreen.", "blue")
    False

A clause ends at ``. , ; : ! ?`` or the words "but" / "now" ("not red but blue" states blue).
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

NEGATION_CUES: tuple[str, ...] = (
    "not", "no", "never", "isn't", "aren't", "wasn't", "weren't", "doesn't", "don't", "nor", "neither",
    "without", "instead of", "rather than", "no longer", "anything but", "n't",
)
CLAUSE_BREAKS = re.compile(r"[.,;:!?]|\bbut\b|\bnow\b", re.IGNORECASE)
NEGATION_WINDOW = 4

# Spelling variants and near-identical names a judge of text should accept. Extend per data set
# by passing ``synonyms=`` (value -> forms).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "gray": ("grey",), "grey": ("gray",),
    "colour": ("color",), "color": ("colour",),
    "aluminium": ("aluminum",), "aluminum": ("aluminium",),
    "checkered": ("chequered", "checked"), "chequered": ("checkered",),
    "dotted": ("polka-dotted", "spotted"), "striped": ("stripy",),
    "round": ("circular",), "circular": ("round",),
}


def value_forms(value: str, synonyms: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    table = SYNONYMS if synonyms is None else {**SYNONYMS, **{k.lower(): tuple(v) for k, v in synonyms.items()}}
    v = value.strip().lower()
    return [v, *table.get(v, ())]


def _negated(prefix: str) -> bool:
    """Is the clause that ends ``prefix`` negated within the last NEGATION_WINDOW words?"""
    clause = CLAUSE_BREAKS.split(prefix)[-1].lower()
    words = re.findall(r"[\w'-]+", clause)[-NEGATION_WINDOW:]
    tail = " ".join(words)
    return any(re.search(rf"(^|\s){re.escape(cue)}($|\s)", tail) or (cue == "n't" and "n't" in tail)
               for cue in NEGATION_CUES)


def states_value(text: str | None, value: str, synonyms: Mapping[str, Iterable[str]] | None = None) -> bool:
    """True when ``text`` affirms ``value`` (or a synonym) at least once, un-negated."""
    if not text or not value or not value.strip():
        return False
    for form in value_forms(value, synonyms):
        pattern = re.compile(rf"(?<![\w-]){re.escape(form)}(?:s|es)?(?![\w-])", re.IGNORECASE)
        for m in pattern.finditer(text):
            if not _negated(text[: m.start()]):
                return True
    return False
