"""Where a subject's tokens sit in a prompt, in the coordinates of the adapter's conditioning
(``Conditioning.lm_positions``): what the interventions, the tracing and the modality-aware editor
need to find the slots the generator reads from a name."""

from __future__ import annotations

import numpy as np

from ..data.cloze import find_subject


def subject_columns(adapter, prompt: str, subject: str) -> list[int]:
    """The LM input columns of the subject's tokens when ``prompt`` is encoded alone, in the
    coordinates of ``adapter.conditioning([prompt]).lm_positions`` (template tokens counted), from
    the character offsets ``adapter.trace_inputs([prompt])`` reports; ``[]`` where it is absent."""
    spans = find_subject(prompt, subject)
    if not spans:
        return []
    a, b = spans[-1]
    _, extra = adapter.trace_inputs([prompt])
    offsets = np.asarray(extra["offset_mapping"])[0]
    return [j for j, (s, e) in enumerate(offsets.tolist()) if e > s and s < b and e > a]


def prompt_subject_span(adapter, prompt: str, subject: str) -> tuple[int, int] | None:
    """LM positions ``(first, last)`` of the subject's tokens in ``prompt`` encoded alone (as
    ``adapter.conditioning([prompt])`` and its LM layers see it); None where it does not occur."""
    cols = subject_columns(adapter, prompt, subject)
    return (min(cols), max(cols)) if cols else None
