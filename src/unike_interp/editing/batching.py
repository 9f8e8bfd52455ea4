"""Token batches for editing: prompt (+ target) rows, left-padded, with the subject's last token.

Prompt and target are tokenized separately and concatenated (``BOS prompt | " " target``), so the
target's tokens are the ones a cloze reader scores, whatever merges the tokenizer would make
across the boundary. Rows are left-padded (the convention of the adapters' text side) and carry
explicit ``position_ids`` so padding never shifts positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..conditioning import position_ids_from_mask
from .requests import subject_last_positions


@dataclass
class EditBatch:
    """``input_ids``/``attention_mask``/``position_ids`` ``(B, T)``; ``subject_pos`` ``(B,)``;
    ``target_ids`` ``(B, T)`` holding the token to predict at each position or ``-100``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    subject_pos: torch.Tensor
    target_ids: torch.Tensor
    last_prompt_pos: torch.Tensor

    def to(self, device) -> "EditBatch":
        return EditBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.position_ids,
                                                 self.subject_pos, self.target_ids, self.last_prompt_pos)))

    def model_inputs(self) -> dict:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}


def target_token_ids(tokenizer, target: str) -> list[int]:
    """Tokens of ``" " + target`` without special tokens (how a cloze continues)."""
    ids = tokenizer(" " + target.strip(), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"target {target!r} tokenizes to nothing")
    return ids


def make_batch(
    tokenizer,
    prompts: Sequence[str],
    subjects: Sequence[str] | None = None,
    targets: Sequence[str | None] | None = None,
) -> EditBatch:
    """Rows ``prompt_i (+ " " + targets[i])``; ``subject_pos`` is 0 where ``subjects`` is None.

    With a target, the row omits the target's last token (it is only predicted), and
    ``target_ids`` marks the positions whose next-token logits must predict the target.
    """
    enc = tokenizer(list(prompts), return_offsets_mapping=True, padding=False)
    n = len(prompts)
    if subjects is not None:
        subj_pos = []
        for i in range(n):
            one = {"offset_mapping": torch.tensor([enc["offset_mapping"][i]])}
            subj_pos.append(int(subject_last_positions(tokenizer, [prompts[i]], [subjects[i]], one)[0]))
    else:
        subj_pos = [0] * n
    rows, tgts, last = [], [], []
    for i in range(n):
        ids = list(enc["input_ids"][i])
        t_row = [-100] * len(ids)
        last.append(len(ids) - 1)
        if targets is not None and targets[i] is not None:
            t = target_token_ids(tokenizer, targets[i])
            t_row[-1] = t[0]
            for j in range(1, len(t)):
                ids.append(t[j - 1])
                t_row.append(t[j])
        rows.append(ids)
        tgts.append(t_row)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    target_ids = torch.full((n, width), -100, dtype=torch.long)
    for i, (r, t) in enumerate(zip(rows, tgts)):
        off = width - len(r)
        input_ids[i, off:] = torch.tensor(r)
        mask[i, off:] = 1
        target_ids[i, off:] = torch.tensor(t)
        subj_pos[i] += off
        last[i] += off
    position_ids = position_ids_from_mask(mask)
    return EditBatch(input_ids, mask, position_ids, torch.tensor(subj_pos), target_ids, torch.tensor(last))


def target_logprob(logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-probability of the marked target tokens: ``(B,)``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    mask = target_ids != -100
    picked = logp.gather(-1, target_ids.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def target_count(target_ids: torch.Tensor) -> torch.Tensor:
    return (target_ids != -100).sum(-1)
