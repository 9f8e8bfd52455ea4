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

import copy
import inspect
import logging
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Sequence

import torch

from ..progress import step as progress_step
from .batching import make_batch, target_count, target_logprob
from .hooks import add_at, capture_at
from .requests import EditRequest

log = logging.getLogger(__name__)


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
    chunks = []
    for i in range(0, len(requests), hp.target_batch):
        chunks.append(optimize_chunk(adapter, requests[i:i + hp.target_batch], sites, prefixes, hp))
        progress_step(0.9 * len(chunks[-1].target_nll) / len(requests))  # the optimisation is most of an edit
    return Targets(
        base={s: torch.cat([c.base[s] for c in chunks]) for s in sites},
        delta={s: torch.cat([c.delta[s] for c in chunks]) for s in sites},
        target_nll=torch.cat([c.target_nll for c in chunks]),
        steps=max(c.steps for c in chunks),
    )


def fixed_layers(adapter, sites: Sequence[str]) -> list[str]:
    """The decoder layers whose outputs do not depend on vectors added at ``sites``: every layer
    before the first site's layer, and that layer too where the site is the layer itself."""
    tmpl = adapter.paths.layer
    n = None
    for s in sites:
        for i in range(adapter.num_layers):
            path = tmpl.format(i)
            if s == path or s.startswith(path + "."):
                k = i + 1 if s == path else i
                n = k if n is None else min(n, k)
                break
        else:
            return []  # a site outside the decoder layers: every layer may depend on it
    return [tmpl.format(i) for i in range(n or 0)]


@contextmanager
def record_outputs(modules: dict) -> dict:
    """Record each module's output object (as the module returns it) during a forward pass."""
    out: dict = {}
    handles = [m.register_forward_hook(lambda mod, a, o, p=p: out.__setitem__(p, o)) for p, m in modules.items()]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


@contextmanager
def replay_outputs(modules: dict, outputs: dict):
    """Each module returns its recorded output without computing (its hooks still run): the layers
    below the optimised sites see the same inputs at every step, so their outputs are reused."""
    saved = {}
    for p, m in modules.items():
        saved[p] = m.__dict__.get("forward")  # an instance-level forward (accelerate's hooks) is put back
        m.forward = (lambda *a, _o=outputs[p], **k: _o)
    try:
        yield
    finally:
        for p, m in modules.items():
            if saved[p] is None:
                del m.forward
            else:
                m.forward = saved[p]


def _rows_of(output, rows: torch.Tensor | None):
    """A recorded module output restricted to batch rows ``rows`` (None: all)."""
    if rows is None:
        return output
    if isinstance(output, torch.Tensor):
        return output[rows.to(output.device)]
    if isinstance(output, tuple):
        return tuple(_rows_of(o, rows) for o in output)
    return output


def suffix_start(batch) -> int:
    """The first position a vector added at the subject's last token can change: the smallest
    subject position of the batch (left-padded rows, causal attention). Every position before it
    is the same at every optimisation step, so it is run once and kept as the attention cache."""
    return int(batch.subject_pos.min())


def _cache_argument(lm) -> str | None:
    """The name under which ``lm.forward`` takes a key/value cache (None: it takes none)."""
    params = inspect.signature(lm.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


@dataclass
class SuffixPlan:
    """Run only positions ``start:`` at each step, attending to a cache of positions ``:start``.

    ``inputs``: the suffix's model inputs (the attention mask stays whole); ``fixed``: the
    replayed layers' outputs on the suffix; ``cache``: the prefix's key/value cache, copied for
    each step (a forward appends to it)."""

    start: int
    inputs: dict
    fixed: dict
    cache: object
    argument: str

    def cache_for(self, rows: torch.Tensor | None):
        cache = copy.deepcopy(self.cache)
        if rows is not None:
            cache.batch_select_indices(rows.to(self.inputs["input_ids"].device))
        return cache


@torch.no_grad()
def suffix_plan(lm, batch, fixed: dict, logits0: torch.Tensor) -> SuffixPlan | None:
    """A :class:`SuffixPlan` when it gives the logits of the whole forward (checked here, on the
    unedited model, to ``sqrt(eps)`` of the logits' scale at every real token), else None: a model
    with no cache argument, no position before the subjects, or a cache path that disagrees."""
    start = suffix_start(batch)
    argument = _cache_argument(lm)
    if argument is None or start < 1 or bool((batch.target_ids[:, :start] != -100).any()) \
            or int(batch.last_prompt_pos.min()) < start:
        return None
    inputs = batch.model_inputs()
    head = {k: v[:, :start] for k, v in inputs.items()}
    tail = {"input_ids": inputs["input_ids"][:, start:], "attention_mask": inputs["attention_mask"],
            "position_ids": inputs["position_ids"][:, start:]}
    try:
        out = lm(**head, use_cache=True)
        cache = getattr(out, "cache", None)
        cache = cache if cache is not None else getattr(out, "past_key_values", None)
        if cache is None:
            return None
        plan = SuffixPlan(start, tail, {}, cache, argument)
        with record_outputs(fixed) as rec:
            logits = lm(**tail, **{argument: plan.cache_for(None)}, use_cache=True).logits
        plan.fixed = dict(rec)
    except Exception as e:  # a family whose cache does not work this way keeps the whole forward
        log.debug("target optimisation: no prefix cache (%s: %s)", type(e).__name__, e)
        return None
    ref = logits0[:, start:].float()
    real = inputs["attention_mask"][:, start:].bool()
    tol = torch.finfo(logits0.dtype).eps ** 0.5 * float(ref[real].abs().max())
    if logits.shape != ref.shape or float((logits.float() - ref)[real].abs().max()) > tol:
        log.info("target optimisation: the prefix cache does not reproduce the logits; every position runs")
        return None
    return plan


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

    fixed = {p: adapter.module(p) for p in fixed_layers(adapter, sites)}
    with torch.no_grad(), ExitStack() as stack:
        caps = {s: stack.enter_context(capture_at(modules[s], batch.subject_pos, what="output")) for s in sites}
        fixed_out = stack.enter_context(record_outputs(fixed))
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
        # each step runs only the positions from the first subject on (suffix_plan), where it can
        plan = suffix_plan(lm, batch, fixed, logits0)
        start = plan.start if plan is not None else 0
        step_fixed = plan.fixed if plan is not None else fixed_out
        step_inputs = plan.inputs if plan is not None else inputs
        step_subject_pos = batch.subject_pos - start
        step_target_ids = batch.target_ids[:, start:]
        step_last_pos = batch.last_prompt_pos - start
        for step in range(max(hp.v_steps, 1)):
            # a converged request leaves the batch: only the rows of requests still optimised run
            # (while every request is, the whole batch runs as it is)
            if bool(active.all()):
                rows, n_live, live = None, R, slice(None)
            else:
                live = active.nonzero().squeeze(1)
                main_rows = (live[:, None] * P + torch.arange(P, device=dev)).reshape(-1)
                rows = torch.cat([main_rows, n_main + live])
                n_live = len(live)
            pick = (lambda t: t) if rows is None else (lambda t: t[rows.to(t.device)])
            extra = {} if plan is None else {plan.argument: plan.cache_for(rows), "use_cache": True}
            with ExitStack() as stack:
                stack.enter_context(replay_outputs(fixed, {p: _rows_of(o, rows) for p, o in step_fixed.items()}))
                for s in sites:
                    stack.enter_context(add_at(modules[s], pick(step_subject_pos), deltas[s][pick(owner_all)]))
                logits = lm(**{k: pick(v) for k, v in step_inputs.items()}, **extra).logits
            n_rows = n_live * P
            nll_rows = -target_logprob(logits[:n_rows], pick(step_target_ids)[:n_rows]) / (ntok if rows is None else ntok[main_rows])
            nll = nll_rows.view(n_live, P).mean(1)
            nll_req[live if rows is None else live.cpu()] = nll.detach().cpu()
            steps = step + 1
            if hp.v_steps == 0 or float(nll.detach().max()) < hp.v_stop_loss:
                break
            still = torch.ones(n_live, dtype=torch.bool, device=dev)
            if per_request:
                still = nll.detach() >= hp.v_stop_loss
                active[live] = still
            ess_logp = torch.log_softmax(logits[n_rows + torch.arange(n_live, device=dev),
                                                pick(step_last_pos)[n_rows:]].float(), -1)
            kl = (ess_logp0[live].exp() * (ess_logp0[live] - ess_logp)).sum(-1)
            wd = sum((deltas[s][live].norm(dim=-1) / norms[s][live]) ** 2 for s in sites)
            loss = ((nll + hp.kl_factor * kl + hp.v_weight_decay * wd) * still).sum()
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
