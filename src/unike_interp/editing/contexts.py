"""Seeded random context prefixes (ROME section 3.1; MEMIT eq. 15-16).

Keys and target vectors are averaged over the prompt preceded by short texts the model itself
writes from its BOS token, so that the edit holds in varied contexts, not only the bare prompt.
The empty prefix comes first; the samples are seeded and drawn on the CPU generator state so the
same seed gives the same prefixes on every device.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def context_prefixes(adapter, n: int, tokens: int, seed: int = 0) -> list[str]:
    """``[""] + n`` prefixes, each ``tokens`` sampled tokens and a ``". "`` separator."""
    if n == 0:
        return [""]
    tok = adapter.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids = torch.full((n, 1), start, dtype=torch.long, device=adapter.device)
    devices = [adapter.device] if adapter.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = adapter.lm.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=True,
            top_k=5,
            pad_token_id=tok.pad_token_id,
            eos_token_id=None,
        )
    texts = tok.batch_decode(out[:, 1:], skip_special_tokens=True)
    return [""] + [t.replace("{", "").replace("}", "").strip() + ". " for t in texts]
