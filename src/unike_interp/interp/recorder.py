"""Record an adapter's sites with nnsight: one traced forward per batch of prompts.

For a batch of prompts the adapter's trace module runs once (prompt -> language model ->
conditioning -> one generator call at a fixed noise and timestep) inside ``NNsight.trace``, and
every declared :class:`~unike_interp.models.sites.Site` is saved, with the conditioning the trace
module returns (:class:`~unike_interp.models.sites.TraceOutput`):

* text sites (``positions="tokens"``): ``(B, 2, H)`` -- row 0 the subject's last token, row 1 the
  prompt's last token (the batch is left-padded, so that is index ``T-1``); a prompt that does
  not contain the subject (a caption) has NaN in row 0 and ``subject_last = -1``;
* ``"all"`` sites: the whole tensor, ``(B, S, C)``;
* plus the conditioning's mask ``(B, S)`` and its LM-position map ``(B, S)`` (``-1`` = padding).

Each site's module also carries a plain forward-hook counter during the trace: a module that
runs another number of times than the site declares raises :class:`SiteError`.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..models.sites import Site, SiteError


@dataclass
class Recording:
    """Site values for one batch (numpy, float32) and the token bookkeeping."""

    prompts: list[str]
    values: dict[str, np.ndarray]
    cond_mask: np.ndarray           # (B, S)
    cond_lm_positions: np.ndarray   # (B, S)
    token_positions: np.ndarray     # (B, 2): subject_last (-1 absent), prompt_last

    def row(self, i: int) -> "Recording":
        return Recording([self.prompts[i]], {k: v[i:i + 1] for k, v in self.values.items()},
                         self.cond_mask[i:i + 1], self.cond_lm_positions[i:i + 1], self.token_positions[i:i + 1])


def _resolve(envoy, path: str):
    node = envoy
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _subject_last(tokenizer, prompts, subjects, offsets) -> np.ndarray:
    from ..editing.requests import subject_last_positions

    out = np.full(len(prompts), -1, dtype=np.int64)
    for i, (p, s) in enumerate(zip(prompts, subjects)):
        if s and s.lower() in p.lower():
            try:
                out[i] = int(subject_last_positions(tokenizer, [p], [s], {"offset_mapping": offsets[i:i + 1]})[0])
            except ValueError:
                out[i] = -1
    return out


class Recorder:
    """Traces ``adapter.trace_module()`` with nnsight and returns :class:`Recording` s.

    ``sites``: a subset of ``adapter.sites()`` (default: all). The trace module holds the
    adapter's own modules, so an applied weight delta is what gets recorded (no model copy).
    """

    def __init__(self, adapter, sites: Sequence[Site] | None = None, *, seed: int = 0):
        from nnsight import NNsight

        self.adapter = adapter
        declared = adapter.sites()
        if sites is None:
            sites = declared
        else:
            order = {s.name: k for k, s in enumerate(declared)}
            unknown = [s.name for s in sites if s.name not in order]
            if unknown:
                raise KeyError(f"{adapter.name} declares no site(s) {', '.join(unknown)}; "
                               f"known: {', '.join(order)}")
            sites = sorted(sites, key=lambda s: order[s.name])  # nnsight reads in execution order
        self.sites = list(sites)
        self.seed = seed
        self.module = adapter.trace_module()
        self.model = NNsight(self.module)

    def _count_calls(self, stack: ExitStack) -> dict[str, list[int]]:
        counts: dict[str, list[int]] = {}
        for site in self.sites:
            try:
                mod = self.module.get_submodule(site.module) if site.module else self.module
            except AttributeError:
                raise SiteError(f"{self.adapter.name}: site {site.name!r} names module {site.module!r}, "
                                "which the trace module does not have") from None
            if site.module in counts:  # one counter per module, however many sites read it
                continue
            c = counts[site.module] = [0]
            h = mod.register_forward_hook(lambda *_a, c=c: c.__setitem__(0, c[0] + 1))
            stack.callback(h.remove)
        return counts

    def _plan(self, delta) -> list[tuple[str, object]]:
        """Sites and intervention points in the order nnsight must reach them.

        An intervention on module ``P`` goes before the first site that is an ancestor of ``P``
        (its output completes after ``P``'s) or that comes after ``P`` in module order.
        """
        plan: list[tuple[str, object]] = [("site", s) for s in self.sites]
        if delta is None:
            return plan
        pre = self.adapter.trace_lm_prefix + "."
        order = {name: k for k, (name, _) in enumerate(self.module.named_modules())}
        for path in sorted(delta.deltas, key=lambda p: order.get(pre + p, 0)):
            full = pre + path
            if full not in order:
                raise SiteError(f"{self.adapter.name}: the delta edits {path!r}, which the trace module does not have")
            at = len(plan)
            for k, (kind, s) in enumerate(plan):
                if kind == "site" and (full.startswith(s.module + ".") or order.get(s.module, -1) > order[full]):
                    at = k
                    break
            plan.insert(at, ("edit", (full, delta.deltas[path])))
        return plan

    @torch.no_grad()
    def record(self, prompts: Sequence[str], subjects: Sequence[str | None] | None = None, *,
               delta=None) -> Recording:
        """Record ``prompts``; ``subjects[i]`` locates the subject's last token (None: none).

        ``delta`` (a :class:`~unike_interp.editing.delta.WeightDelta`) applies the edit as an
        activation intervention instead of a weight change: each edited ``Linear`` module's
        output gets ``x @ Delta^T`` added, which equals running with ``W + Delta``.
        """
        prompts = list(prompts)
        subjects = list(subjects) if subjects is not None else [None] * len(prompts)
        args, extra = self.adapter.trace_inputs(prompts, seed=self.seed)
        saved = {}
        with ExitStack() as stack:
            counts = self._count_calls(stack)
            try:
                with self.model.trace(*args):
                    for kind, item in self._plan(delta):
                        if kind == "edit":
                            path, D = item
                            env = _resolve(self.model, path)
                            x = env.input
                            env.output = env.output + (x.float() @ D.to(x.device).T).to(x.dtype)
                            continue
                        site = item
                        env = _resolve(self.model, site.module) if site.module else self.model
                        if site.read.startswith("output"):
                            saved[site.name] = env.output.save()
                        else:
                            saved[site.name] = env.inputs.save()
                    root = self.model.output.save()
            except SiteError:
                raise
            except Exception as exc:  # nnsight reports a site that never ran as a tracing error
                raise SiteError(f"{self.adapter.name}: recording failed ({type(exc).__name__}: {exc})") from exc
        for site in self.sites:
            n = counts[site.module][0]
            if n != site.calls:
                raise SiteError(f"{self.adapter.name}: site {site.name!r} ({site.module}) ran {n} time(s) in one "
                                f"forward; it declares {site.calls}")
        mask = extra["attention_mask"]
        T = mask.shape[1]
        subj = _subject_last(self.adapter.tokenizer, prompts, subjects, extra["offset_mapping"])
        tokpos = np.stack([subj, np.full(len(prompts), T - 1)], axis=1)
        values = {}
        for site in self.sites:
            v = saved[site.name]
            kind, _, k = site.read.partition(":")
            if kind == "input":
                args_, _kw = v
                v = args_[int(k)]
            elif k:
                v = v[int(k)]
            if isinstance(v, (tuple, list)):
                v = v[0]
            v = v.detach().float().cpu().numpy()
            if site.positions == "tokens":
                rows = np.arange(len(prompts))
                pl = v[rows, T - 1]
                sl = np.where(subj[:, None] >= 0, v[rows, np.maximum(subj, 0)], np.nan)
                v = np.stack([sl, pl], axis=1).astype(np.float32)
            values[site.name] = v
        cond = root.conditioning
        return Recording(prompts, values, cond.mask.detach().cpu().numpy().astype(np.int8),
                         cond.lm_positions.detach().cpu().numpy().astype(np.int32), tokpos)
