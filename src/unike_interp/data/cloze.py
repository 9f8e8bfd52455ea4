"""Cloze templates: a prompt with its subject cut out.

Editors such as ROME need the prompt as a template with a placeholder where the subject stands
(``"The color of the {} is"``). Building that with ``str.replace`` or ``str.format`` breaks on
subjects or prompts that contain braces, regex metacharacters, unicode case variants or a
different capitalisation than the record's ``subject`` field. :class:`ClozeTemplate` keeps the
literal segments and the matched subject spellings separately, so nothing is ever re-parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class SubjectNotFoundError(ValueError):
    """The subject does not occur in the prompt (case-insensitively)."""


def find_subject(prompt: str, subject: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of every case-insensitive occurrence of ``subject``.

    The subject is matched literally (``re.escape``), so ``"a+b (c)"`` or ``"{x}"`` are fine.
    Occurrences do not overlap; they are returned left to right.
    """
    if not subject:
        raise ValueError("subject is empty")
    pattern = re.compile(re.escape(subject), flags=re.IGNORECASE)
    return [(m.start(), m.end()) for m in pattern.finditer(prompt)]


@dataclass(frozen=True)
class ClozeTemplate:
    """A prompt split around its subject occurrences.

    ``segments`` has one more element than ``matches``: the prompt equals
    ``segments[0] + matches[0] + segments[1] + ... + segments[-1]``.
    """

    segments: tuple[str, ...]
    matches: tuple[str, ...]

    @classmethod
    def from_prompt(cls, prompt: str, subject: str) -> "ClozeTemplate":
        spans = find_subject(prompt, subject)
        if not spans:
            raise SubjectNotFoundError(f"subject {subject!r} does not occur in prompt {prompt!r}")
        segments, matches, cursor = [], [], 0
        for start, end in spans:
            segments.append(prompt[cursor:start])
            matches.append(prompt[start:end])
            cursor = end
        segments.append(prompt[cursor:])
        return cls(tuple(segments), tuple(matches))

    def fill(self, subject: str | None = None) -> str:
        """The prompt with ``subject`` at every placeholder (``None``: the original spellings)."""
        parts = [self.segments[0]]
        for i, seg in enumerate(self.segments[1:]):
            parts.append(self.matches[i] if subject is None else subject)
            parts.append(seg)
        return "".join(parts)

    @property
    def format_string(self) -> str:
        """A ``str.format`` template with ``{}`` placeholders; literal braces are doubled."""
        esc = [s.replace("{", "{{").replace("}", "}}") for s in self.segments]
        return "{}".join(esc)

    def subject_spans(self, subject: str | None = None) -> list[tuple[int, int]]:
        """Character spans of the subject in ``self.fill(subject)``, left to right."""
        spans, pos = [], len(self.segments[0])
        for i, seg in enumerate(self.segments[1:]):
            length = len(self.matches[i] if subject is None else subject)
            spans.append((pos, pos + length))
            pos += length + len(seg)
        return spans

    def last_subject_span(self, subject: str | None = None) -> tuple[int, int]:
        """The span of the last subject occurrence: where ROME-style editors read the key."""
        return self.subject_spans(subject)[-1]


def make_template(prompt: str, subject: str) -> str:
    """``str.format`` template of ``prompt`` with ``{}`` where ``subject`` stands.

    >>> make_template("Is {x} red? The {X} is", "{x}")
    'Is {} red? The {} is'
    >>> make_template("The Zib is", "zib").format("zib")
    'The zib is'
    """
    return ClozeTemplate.from_prompt(prompt, subject).format_string
