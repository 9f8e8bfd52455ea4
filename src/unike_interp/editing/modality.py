"""The conditioning-pathway objective of modality-aware editing (``modality_aware=true``).

A locate-then-edit editor writes the new fact where the language model *says* it. What an image
generator reads is another tensor: the conditioning (:meth:`UMMAdapter.conditioning`), often read
from the subject's name tokens in an image prompt, not from the cloze prompt's last subject token.
This objective adds, for every request, rows to the editor's least-squares update that move that
tensor toward what spelling the new value out produces.

For request ``i`` (subject ``s``, category, ``old -> new``) and each generic template ``t`` of
``cond_templates`` (``"a {}"``: never the record's own image prompts)::

    p      = t.format(s)                          the generic image prompt
    cap    = the model's own caption for p         (its reasoning request, greedy, "Caption: ...")
             with the old value's last mention replaced by the new one; where the model writes no
             caption naming the old value: "<p>, whose <category> is <new>" (counted)
    c0     = conditioning(p)           (S, C)      unedited, slots j read from LM position pos[j]
    v      = mean of conditioning(cap)'s slots read from the new value's tokens     (C,)
    target T (S, C):  T[j] = v      for the slots read from the subject's tokens
                      T[j] = c0[j]  for the other slots the edit can reach (after the subject)
                      where no slot is read from the subject's tokens (learned queries):
                      T = conditioning(cap) whole (the same number of slots, or an error)

A vector ``d_r`` per edited position ``r`` (the subject's tokens in ``p``; ``cond_positions =
"last"``: its last token) is added to the residual stream after the last conditioning layer
``L_c`` (``cond_layers[-1]``) and optimised through the rest of the language model and the
adapter's differentiable conditioning (:meth:`UMMAdapter.differentiable_conditioning`)::

    L(d) = sum_p  |c(p; h + d) - T|^2_M / |c0 - T|^2_M  +  wd * sum_r |d_r|^2 / |h_r|^2,
           |d_r| <= clamp * |h_r|

(``M``: the slots above; each prompt's term starts at 1). ``z_r = h_r + d_r`` is then a target
like the text one: at each conditioning layer ``l`` the editor adds rows ``sqrt(w) k_r^l`` (the
module's input at ``(p, r)``) and ``sqrt(w) (z_r - h_r^{L_c}) / (layers left)`` to its keys and
residuals (MEMIT's spread), ``w = cond_weight``, so one ridge / null-space solve serves both
objectives.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..conditioning import Conditioning
from ..models.positions import prompt_subject_span
from ..models.reasoning import parse_caption, reasoning_request
from .hooks import add_at, capture_at
from .requests import EditRequest


class ModalityUnsupportedError(ValueError):
    """The adapter or request cannot carry the conditioning objective (the message says why)."""


@dataclass
class CondPrompt:
    """One generic image prompt of one request and what its conditioning should become."""

    request: int
    prompt: str
    caption: str
    caption_from: str                      # "model" | "template"
    positions: list[int]                   # LM positions that get a vector d
    target: torch.Tensor | None            # (S, C) float32 (None: a kept prompt)
    slots: torch.Tensor | None             # (S,) bool: slots in the loss
    start: torch.Tensor | None             # (S, C) float32: c0
    lm_positions: tuple[int, ...] = ()
    keep: bool = False                     # another name's prompt, whose states the edit keeps


@dataclass
class ConditioningObjective:
    """The built objective of one edit: prompts, their targets, and (after :meth:`optimize`)
    ``z`` ``(N, H)``, the target of the residual stream after layer ``layers[-1]`` at each of the
    ``N`` edited (prompt, position) rows."""

    adapter: object
    prompts: list[CondPrompt]
    layers: list[int]
    hp: object
    groups: list[list[int]] = field(default_factory=list)
    z: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    _rows: dict = field(default_factory=dict, repr=False)

    # --- rows: one per (prompt, edited position) --------------------------------------------
    @property
    def n_rows(self) -> int:
        return sum(len(p.positions) for p in self.prompts)

    def _group_rows(self, gi: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """``(batch rows, LM positions, global row ids)`` of group ``gi``'s edited positions (the
        groups are fixed once built, so this is computed once per group)."""
        cache = self._rows
        if gi not in cache:
            offsets, n = [], 0
            for p in self.prompts:
                offsets.append(n)
                n += len(p.positions)
            rows, pos, ids = [], [], []
            for b, pi in enumerate(self.groups[gi]):
                for k, r in enumerate(self.prompts[pi].positions):
                    rows.append(b)
                    pos.append(r)
                    ids.append(offsets[pi] + k)
            cache[gi] = (torch.tensor(rows), torch.tensor(pos), ids)
        return cache[gi]

    @torch.no_grad()
    def read(self, *reads: tuple[str, str]) -> list[torch.Tensor]:
        """For each ``(path, "input" | "output")``, that module's value at every row, the model as
        it is now, all from one pass over the prompts: ``(N, D)`` float32 each."""
        ad = self.adapter
        outs = [[None] * self.n_rows for _ in reads]
        for gi, g in enumerate(self.groups):
            rows, pos, ids = self._group_rows(gi)
            with ExitStack() as stack:
                caps = [stack.enter_context(capture_at(ad.module(path), pos, what=what, rows=rows))
                        for path, what in reads]
                ad.conditioning([self.prompts[i].prompt for i in g])
            for out, cap in zip(outs, caps):
                for j, i in enumerate(ids):
                    out[i] = cap["value"][j].float()
        return [torch.stack(out).to(ad.device) for out in outs]

    def rows(self, path: str, site: str, remaining: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K (N, d_in), R (N, d_out))`` for the update of ``path``: keys and spread residuals,
        both scaled by ``sqrt(cond_weight)`` (kept names' rows: ``sqrt(cond_preserve_weight)``)."""
        if self.z is None:
            raise RuntimeError("ConditioningObjective.rows before optimize()")
        w = torch.tensor([self.hp.cond_preserve_weight if p.keep else self.hp.cond_weight
                          for p in self.prompts for _ in p.positions], device=self.z.device).sqrt()[:, None]
        K, cur = self.read((path, "input"), (site, "output"))
        return w * K, w * (self.z - cur) / remaining

    def reached(self) -> float:
        """After the update: ``1 - mean_r |z_r - h_r| / |z_r - h0_r|`` over the optimised rows (1: the
        edited weights put every target where it was optimised; the conditioning then differs from
        the optimised one only through the update's effect on the prompt's other positions)."""
        live = torch.tensor([not p.keep for p in self.prompts for _ in p.positions])
        now, = self.read((self._site, "output"))
        moved = (self.z - self._base).norm(dim=-1)
        rows = live.to(moved.device) & (moved > 1e-6 * self._base.norm(dim=-1).clamp(min=1e-12))
        if not bool(rows.any()):  # no target moved (the objective had no gradient): nothing to reach
            return float("nan")
        return float(1.0 - ((self.z - now).norm(dim=-1)[rows] / moved[rows]).mean())

    # --- the target vectors ------------------------------------------------------------------
    def losses(self, cond: Conditioning, g: list[int]) -> torch.Tensor:
        """Per prompt of group ``g``: ``|c - T|^2_M / |c0 - T|^2_M`` ``(len(g),)``."""
        h = cond.hidden.float()
        out = []
        for b, pi in enumerate(g):
            p = self.prompts[pi]
            T, M, c0 = p.target.to(h.device), p.slots.to(h.device), p.start.to(h.device)
            den = ((c0 - T)[M] ** 2).sum().clamp(min=1e-12)
            out.append(((h[b] - T)[M] ** 2).sum() / den)
        return torch.stack(out)

    def optimize(self, site: str) -> None:
        """Optimise ``d`` at ``site`` (the residual stream after ``layers[-1]``); sets :attr:`z`."""
        ad, hp = self.adapter, self.hp
        module = ad.module(site)
        base, = self.read((site, "output"))
        norms = base.norm(dim=-1).clamp(min=1e-6)
        delta = torch.zeros_like(base, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=hp.cond_lr)
        req_grad = [p.requires_grad for p in ad.lm.parameters()]
        was_training = ad.lm.training
        ad.lm.eval()
        for p in ad.lm.parameters():
            p.requires_grad_(False)
        first = last = None
        steps = 0
        live = torch.tensor([not p.keep for p in self.prompts])
        try:
            for step in range(max(hp.cond_steps, 0) + 1):
                per_prompt = torch.zeros(len(self.prompts), device=ad.device)
                total = 0.0
                for gi, g in enumerate(self.groups):
                    if self.prompts[g[0]].keep:  # kept names are not optimised: their d stays 0
                        continue
                    rows, pos, ids = self._group_rows(gi)
                    with add_at(module, pos, delta[ids], rows=rows):
                        cond = ad.differentiable_conditioning([self.prompts[i].prompt for i in g])
                    if not cond.hidden.requires_grad:
                        raise ModalityUnsupportedError(
                            f"{ad.name}: its differentiable_conditioning returned a tensor without gradients "
                            "(the pipeline disables them); modality-aware editing cannot optimise through it")
                    lg = self.losses(cond, g)
                    per_prompt[g] = lg.detach()
                    total = total + lg.sum()
                if first is None:
                    first = per_prompt.cpu()[live]
                last = per_prompt.cpu()[live]
                steps = step
                if step == hp.cond_steps or float(last.max()) < hp.cond_stop_loss:
                    break
                wd = ((delta ** 2).sum(-1) / norms ** 2).sum()
                loss = total + hp.cond_weight_decay * wd
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    limit = hp.clamp_norm_factor * norms
                    delta.mul_((limit / delta.norm(dim=-1).clamp(min=1e-12)).clamp(max=1.0).unsqueeze(-1))
        finally:
            for p, r in zip(ad.lm.parameters(), req_grad):
                p.requires_grad_(r)
            ad.lm.train(was_training)
        self.z = (base + delta.detach()).float()
        self._base, self._site = base, site
        self.info.update({"cond_loss_start": [round(float(x), 4) for x in first],
                          "cond_loss_target": [round(float(x), 4) for x in last], "cond_steps": steps,
                          "cond_rel_norm": round(float((delta.detach().norm(dim=-1) / norms).mean()), 4)})


def _replace_last_word(text: str, old: str, new: str) -> str | None:
    hits = list(re.finditer(rf"(?<![\w-]){re.escape(old)}(?![\w-])", text))
    if not hits:
        return None
    m = hits[-1]
    return text[:m.start()] + new + text[m.end():]


def spelled_captions(adapter, items: Sequence[tuple[str, str, str, str | None, str]], max_new_tokens: int
                     ) -> list[tuple[str, str]]:
    """``(caption with the new value, "model" | "template")`` per ``(prompt, subject, category, old,
    new)``: the model's own reasoning caption for the prompt, the old value's last mention replaced
    by the new one; ``"<prompt>, whose <category> is <new>"`` where it writes none naming ``old``."""
    texts = adapter.generate_text([reasoning_request(adapter, p, s, c) for p, s, c, _, _ in items],
                                  max_new_tokens=max_new_tokens)
    out = []
    for (p, _s, c, old, new), text in zip(items, texts):
        cap = parse_caption(text)
        spelled = _replace_last_word(cap, old, new) if cap and old else None
        out.append((spelled, "model") if spelled else (f"{p}, whose {c} is {new}", "template"))
    return out


@torch.no_grad()
def build_objective(adapter, requests: Sequence[EditRequest], hp, layers: list[int],
                    corpus: Sequence[str] | None = None) -> ConditioningObjective:
    """Prompts, captions and targets for ``requests`` (see the module doc), and the kept names'
    prompts (``hp.cond_preserve`` words of ``corpus``); raises :class:`ModalityUnsupportedError`
    where the adapter or a request cannot carry the objective."""
    try:  # an adapter without one says why (NotImplementedError), before any caption is written
        with torch.enable_grad():
            adapter.differentiable_conditioning([hp.cond_templates[0].format(requests[0].subject)])
    except NotImplementedError as e:
        raise ModalityUnsupportedError(str(e)) from None
    items, owners = [], []
    for i, r in enumerate(requests):
        for t in hp.cond_templates:
            items.append((t.format(r.subject), r.subject, r.category or "property", r.target_old, r.target_new))
            owners.append(i)
    caps = spelled_captions(adapter, items, hp.cond_caption_tokens)
    prompts: list[CondPrompt] = []
    for (p, subject, category, _old, new), i, (cap, how) in zip(items, owners, caps):
        cid = requests[i].case_id
        c0 = adapter.conditioning([p])
        r1 = adapter.conditioning([cap])
        h0, pos0 = c0.hidden[0].float().cpu(), c0.lm_positions[0].cpu()
        h1, pos1 = r1.hidden[0].float().cpu(), r1.lm_positions[0].cpu()
        span = prompt_subject_span(adapter, p, subject)
        if span is None:
            raise ModalityUnsupportedError(f"case {cid!r}: subject {subject!r} has no tokens in its image prompt {p!r}")
        positions = list(range(span[0], span[1] + 1)) if hp.cond_positions == "subject" else [span[1]]
        subj = (pos0 >= span[0]) & (pos0 <= span[1])
        if bool(subj.any()):
            vspan = prompt_subject_span(adapter, cap, new)
            vslots = (pos1 >= vspan[0]) & (pos1 <= vspan[1]) if vspan else torch.zeros_like(pos1, dtype=torch.bool)
            if not bool(vslots.any()):
                raise ModalityUnsupportedError(f"case {cid!r}: no conditioning slot of the caption {cap!r} is read "
                                               f"from the new value {new!r}")
            T = h0.clone()
            T[subj] = h1[vslots].mean(0)
            M = pos0 >= span[0]
        else:
            if h1.shape != h0.shape:
                raise ModalityUnsupportedError(
                    f"case {cid!r}: {adapter.name}'s conditioning reads no slot from the subject's tokens and the "
                    f"caption's conditioning has {h1.shape[0]} slots against the prompt's {h0.shape[0]}: no target "
                    "can be aligned")
            T, M = h1.clone(), torch.ones(h0.shape[0], dtype=torch.bool)
        prompts.append(CondPrompt(i, p, cap, how, positions, T, M, h0, tuple(int(x) for x in pos0)))
    if hp.cond_preserve:
        for word in preserved_names(corpus or [], {r.subject for r in requests}, hp.cond_preserve, hp.seed,
                                    hp.cond_templates):
            for t in hp.cond_templates:
                p = t.format(word)
                span = prompt_subject_span(adapter, p, word)
                if span is None:
                    continue
                pos0 = adapter.conditioning([p]).lm_positions[0].cpu()
                positions = list(range(span[0], span[1] + 1)) if hp.cond_positions == "subject" else [span[1]]
                prompts.append(CondPrompt(-1, p, "", "kept", positions, None, None, None,
                                          tuple(int(x) for x in pos0), keep=True))
    # prompts with the same slot layout run as one batch (no padding shifts a position); kept
    # names' prompts never share a batch with optimised ones
    by_layout: dict[tuple, list[int]] = {}
    for k, p in enumerate(prompts):
        by_layout.setdefault((p.keep, p.lm_positions), []).append(k)
    groups = []
    for members in by_layout.values():
        for j in range(0, len(members), 64):
            groups.append(members[j:j + 64])
    obj = ConditioningObjective(adapter, prompts, layers, hp, groups)
    obj.info.update({"cond_prompts": sum(not p.keep for p in prompts), "cond_kept_prompts": sum(p.keep for p in prompts),
                     "cond_rows": obj.n_rows,
                     "cond_captions_from_model": sum(p.caption_from == "model" for p in prompts),
                     "cond_captions_from_template": sum(p.caption_from == "template" for p in prompts)})
    return obj


def preserved_names(corpus: Sequence[str], exclude: set[str], n: int, seed: int,
                    templates: Sequence[str] = ()) -> list[str]:
    """``n`` distinct words of ``corpus`` (letters, 3+ characters), not in ``exclude``, drawn with
    ``seed``: the other names whose image-prompt states the edit is asked to keep. Words the corpus
    itself writes in one of ``templates`` (``"a {}"``: the words after "a ") come first -- they are
    what the template is used with, names and nouns -- then any other word of the corpus."""
    import numpy as np

    word = r"[A-Za-z][A-Za-z'-]{2,}"
    rng = np.random.default_rng([seed, 17])
    pats = [re.compile(r"(?<![\w-])" + re.escape(t).replace(re.escape("{}"), f"({word})")) for t in templates]
    used = sorted({m for line in corpus for p in pats for m in p.findall(line)} - set(exclude))
    rest = sorted({w for line in corpus for w in re.findall(word, line)} - set(exclude) - set(used))
    if not used and not rest:
        raise ModalityUnsupportedError("cond_preserve > 0 draws the kept names from the statistics corpus, and none "
                                       "with words in it was given (set cond_preserve=0, or give a corpus)")
    out = [used[i] for i in sorted(rng.permutation(len(used))[:n])]
    if len(out) < n:
        out += [rest[i] for i in sorted(rng.permutation(len(rest))[:n - len(out)])]
    return out
