"""Edit requests: which fact to rewrite, on which prompt, and where the subject ends.

An :class:`EditRequest` is the editors' unit of work: ``prompt`` is a cloze that contains
``subject`` and is completed by ``target_old`` before the edit and should be completed by
``target_new`` after it. Requests come from UniKE records (:func:`requests_from_records`).

The subject's last token (the position whose MLP keys ROME/MEMIT read and rewrite) is found
through the fast tokenizer's character offsets, not by re-tokenizing the subject alone: BPE merges
across the subject boundary, leading spaces, unicode and braces all stay correct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from ..data.cloze import find_subject


@dataclass(frozen=True)
class EditRequest:
    """One counterfactual rewrite ``(subject, prompt) : target_old -> target_new``."""

    case_id: str
    subject: str
    prompt: str
    target_new: str
    target_old: str | None = None
    category: str | None = None

    def __post_init__(self) -> None:
        if not self.target_new.strip():
            raise ValueError(f"case {self.case_id!r}: empty target_new")
        if not find_subject(self.prompt, self.subject):
            raise ValueError(f"case {self.case_id!r}: subject {self.subject!r} does not occur in prompt {self.prompt!r}")


def requests_from_records(records: Iterable, stage: str = "stage_1") -> list[EditRequest]:
    """One request per record from its ``stage`` (cloze ``prompt``, ``gt`` -> ``gt_target``)."""
    out = []
    for r in records:
        s = r.stages.get(stage)
        if s is None:
            raise ValueError(f"case {r.case_id!r} has no {stage} (it has {', '.join(r.stages)})")
        out.append(EditRequest(r.case_id, r.subject, s.prompt, s.gt_target, s.gt, r.category))
    return out


def subject_last_positions(tokenizer, texts: Sequence[str], subjects: Sequence[str], enc) -> torch.Tensor:
    """Index, in each row of the padded batch ``enc``, of the last token of the last occurrence of
    the subject in ``texts[i]``. ``enc`` must come from ``tokenizer(texts, return_offsets_mapping=True, ...)``.

    A token belongs to the subject span ``[a, b)`` when its character span ``[s, e)`` overlaps it
    (``s < b`` and ``e > a``); special and padding tokens have empty spans and never match.
    """
    offsets = enc["offset_mapping"]
    out = []
    for i, (text, subject) in enumerate(zip(texts, subjects)):
        spans = find_subject(text, subject)
        if not spans:
            raise ValueError(f"subject {subject!r} does not occur in {text!r}")
        a, b = spans[-1]
        hits = [j for j, (s, e) in enumerate(offsets[i].tolist()) if e > s and s < b and e > a]
        if not hits:
            raise ValueError(f"no token covers subject {subject!r} in {text!r}")
        out.append(hits[-1])
    return torch.tensor(out, dtype=torch.long)
