"""Target vectors: what a site should output at the subject's last token for the new fact.

For each request, a vector ``d`` is added to a module's output at the subject's last token in
every context-prefixed prompt (and in the "essence" prompt ``"{subject} is"``) and optimised:

    L(d) = mean_prefix[-log P(target_new | prefix + prompt; h + d)] / |target|
           + kl * KL(P(. | essence; h) || P(. | essence; h + d))
           + wd * |d|^2 / |h|^2,        subject to |d| <= clamp * |h|

(ROME eq. 4, MEMIT eq. 16). ``h`` is the site's unedited output averaged over the prefixed
prompts; the target is ``h + d``. Requests are optimised together (each has its own ``d``, the
loss is a sum, so Adam's per-parameter steps make them independent), in chunks.

``sites`` may name several modules per layer (PMET optimises the attention and the MLP outputs
together); each gets its own ``d``.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Sequence

import torch

from .batching import make_batch, target_count, target_logprob
from .hooks import add_at, capture_at
from .requests import EditRequest


@dataclass
class Targets:
    """Per site path: ``base`` ``(R, D)`` (unedited output, mean over prefixes) and ``delta`` ``(R, D)``;
    ``target_nll`` ``(R,)`` after optimisation and the steps taken."""

    base: dict[str, torch.Tensor]
    delta: dict[str, torch.Tensor]
    target_nll: torch.Tensor
    steps: int

    def target(self, site: str) -> torch.Tensor:
        return self.base[site] + self.delta[site]


def _rows(requests: Sequence[EditRequest], prefixes: Sequence[str]):
    prompts, subjects, targets, owner = [], [], [], []
    for r_i, r in enumerate(requests):
        for p in prefixes:
            prompts.append(p + r.prompt)
            subjects.append(r.subject)
            targets.append(r.target_new)
            owner.append(r_i)
    return prompts, subjects, targets, torch.tensor(owner)


def optimize_targets(adapter, requests: Sequence[EditRequest], sites: Sequence[str], prefixes: Sequence[str], hp) -> Targets:
    """Optimise one vector per request and site (module paths in ``adapter.lm``); see module doc."""
    chunks = [optimize_chunk(adapter, requests[i:i + hp.target_batch], sites, prefixes, hp)
              for i in range(0, len(requests), hp.target_batch)]
    return Targets(
        base={s: torch.cat([c.base[s] for c in chunks]) for s in sites},
        delta={s: torch.cat([c.delta[s] for c in chunks]) for s in sites},
        target_nll=torch.cat([c.target_nll for c in chunks]),
        steps=max(c.steps for c in chunks),
    )


def optimize_chunk(adapter, requests, sites, prefixes, hp) -> Targets:
    lm, dev = adapter.lm, adapter.device
    R, P = len(requests), len(prefixes)
    prompts, subjects, targets, owner = _rows(requests, prefixes)
    ess_prompts = [f"{r.subject} is" for r in requests]
    batch = make_batch(adapter.tokenizer, prompts + ess_prompts, subjects + [r.subject for r in requests],
                       targets + [None] * R).to(dev)
    owner_all = torch.cat([owner, torch.arange(R)]).to(dev)
    n_main = R * P
    inputs = batch.model_inputs()
    modules = {s: adapter.module(s) for s in sites}
    ntok = target_count(batch.target_ids[:n_main]).clamp(min=1).float()

    with torch.no_grad(), ExitStack() as stack:
        caps = {s: stack.enter_context(capture_at(modules[s], batch.subject_pos, what="output")) for s in sites}
        logits0 = lm(**inputs).logits
        base = {s: caps[s]["value"][:n_main].float().view(R, P, -1).mean(1) for s in sites}
        ess_logp0 = torch.log_softmax(logits0[n_main + torch.arange(R, device=dev), batch.last_prompt_pos[n_main:]].float(), -1)

    deltas = {s: torch.zeros_like(base[s], requires_grad=True) for s in sites}
    opt = torch.optim.Adam(list(deltas.values()), lr=hp.v_lr)
    norms = {s: base[s].norm(dim=-1).clamp(min=1e-6) for s in sites}
    was_training = lm.training
    lm.eval()
    req_grad = [p.requires_grad for p in lm.parameters()]
    for p in lm.parameters():
        p.requires_grad_(False)
    steps = 0
    nll_req = torch.zeros(R)
    # hp.v_stop_per_request: each request stops on its own once its NLL is below v_stop_loss (as
    # the ROME/MEMIT reference loops do, one request at a time) and is frozen, not pushed further
    # while others catch up. Otherwise every target keeps moving until all are below it.
    per_request = bool(getattr(hp, "v_stop_per_request", False))
    active = torch.ones(R, dtype=torch.bool, device=dev)
    try:
        for step in range(max(hp.v_steps, 1)):
            with ExitStack() as stack:
                for s in sites:
                    stack.enter_context(add_at(modules[s], batch.subject_pos, deltas[s][owner_all]))
                logits = lm(**inputs).logits
            nll_rows = -target_logprob(logits[:n_main], batch.target_ids[:n_main]) / ntok
            nll = nll_rows.view(R, P).mean(1)
            nll_req = torch.where(active.cpu(), nll.detach().cpu(), nll_req)
            steps = step + 1
            if hp.v_steps == 0 or float(nll.detach()[active].max()) < hp.v_stop_loss:
                break
            if per_request:
                active &= nll.detach() >= hp.v_stop_loss
            ess_logp = torch.log_softmax(logits[n_main + torch.arange(R, device=dev), batch.last_prompt_pos[n_main:]].float(), -1)
            kl = (ess_logp0.exp() * (ess_logp0 - ess_logp)).sum(-1)
            wd = sum((deltas[s].norm(dim=-1) / norms[s]) ** 2 for s in sites)
            loss = ((nll + hp.kl_factor * kl + hp.v_weight_decay * wd) * active).sum()
            frozen = {s: deltas[s].detach().clone() for s in sites} if per_request else None
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for s in sites:
                    limit = hp.clamp_norm_factor * norms[s]
                    scale = (limit / deltas[s].norm(dim=-1).clamp(min=1e-12)).clamp(max=1.0)
                    deltas[s].mul_(scale.unsqueeze(-1))
                    if per_request:  # Adam's moments would keep moving a frozen row: put it back
                        deltas[s][~active] = frozen[s][~active]
    finally:
        for p, g in zip(lm.parameters(), req_grad):
            p.requires_grad_(g)
        lm.train(was_training)
    return Targets(base={s: base[s].cpu() for s in sites}, delta={s: deltas[s].detach().cpu() for s in sites},
                   target_nll=nll_req, steps=steps)


@torch.no_grad()
def mean_at_subject(adapter, requests: Sequence[EditRequest], prefixes: Sequence[str], path: str,
                    what: str = "output", batch_size: int = 256) -> torch.Tensor:
    """``path``'s input or output at the subject's last token, averaged over prefixes: ``(R, D)`` on the CPU."""
    prompts, subjects, _, _ = _rows(requests, prefixes)
    module = adapter.module(path)
    out = []
    for i in range(0, len(prompts), batch_size):
        b = make_batch(adapter.tokenizer, prompts[i:i + batch_size], subjects[i:i + batch_size]).to(adapter.device)
        with capture_at(module, b.subject_pos, what=what) as cap:
            adapter.lm(**b.model_inputs())
        out.append(cap["value"].float().cpu())
    return torch.cat(out).view(len(requests), len(prefixes), -1).mean(1)
