"""Cross-modal causal tracing: which language-model states carry an edit into the image?

The image-side analogue of ROME's causal tracing. For one case (its stage-1 image prompt) and one
evaluation point of a benchmark run, with ``h_l[t]`` the output of LM layer ``l`` at token ``t``:

``restore``  inside the *edited* model, ``h_l[t]`` of one (layer, position group) is set to its
             unedited value; the conditioning that results is drawn and judged. How far the image
             moves back toward the old value is ``p_new(edited) - p_new(restored)``.
``inject``   the reverse patch: inside the *unedited* model, ``h_l[t]`` is set to its edited value;
             ``p_new(injected) - p_new(unedited)`` is how much of the edit's effect on the image that
             one state carries on its own.

``p_new``: the judge's probability that the image shows the new value
(:meth:`Judge.value_probability`; the 0/1 verdict for a judge that gives none), so maps are smooth
with few cases. Token positions are grouped by their role in the prompt, so prompts of different
lengths share one map (:func:`position_groups`): ``first`` (the first token, BOS where there is one),
``before`` (other tokens before the subject), ``subject_first``, ``subject_mid``, ``subject_last``,
``after`` (after the subject) and, for a pathway whose conditioning is read at positions after the
prompt (learned queries), ``queries``. A group is patched as a whole.

The patch is a forward hook on each LM layer (:attr:`ModulePaths.layer`) while the adapter computes
the conditioning; the generator is drawn from that conditioning
(:meth:`UMMAdapter.generate_from_conditioning`), the same seeded noise throughout.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

__all__ = ["GROUPS", "position_groups", "capture_layers", "patch_layers", "TraceCase", "trace_case_conditionings",
           "trace_cases", "trace_run", "summarize_traces"]

GROUPS = ("first", "before", "subject_first", "subject_mid", "subject_last", "after", "queries")
DIRECTIONS = ("restore", "inject")


def position_groups(n_tokens: int, subject: tuple[int, int] | None, cond_positions: Sequence[int]) -> dict[str, list[int]]:
    """``{group: LM positions}`` of one unpadded prompt of ``n_tokens`` tokens with the subject at
    ``subject = (first, last)`` (inclusive; None: absent) and a conditioning read at
    ``cond_positions``; positions at or after ``n_tokens`` (learned queries) form ``queries``.
    Empty groups are left out."""
    out: dict[str, list[int]] = {g: [] for g in GROUPS}
    for t in range(n_tokens):
        if t == 0:
            out["first"].append(t)
        elif subject is None or t < subject[0]:
            out["before" if subject is not None else "after"].append(t)
        elif t == subject[1]:
            out["subject_last"].append(t)
        elif t == subject[0]:
            out["subject_first"].append(t)
        elif t < subject[1]:
            out["subject_mid"].append(t)
        else:
            out["after"].append(t)
    out["queries"] = sorted(int(p) for p in cond_positions if p >= n_tokens)
    return {g: v for g, v in out.items() if v}


def _layer_modules(adapter) -> list[torch.nn.Module]:
    return [adapter.module(adapter.paths.layer.format(i)) for i in range(adapter.num_layers)]


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def capture_layers(adapter) -> Iterator[list[torch.Tensor]]:
    """Collects every LM layer's output ``(B, T', H)`` of the forward passes run inside (the last
    pass per layer wins), in layer order."""
    got: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, i=i: got.__setitem__(i, _hidden(out).detach().clone()))
             for i, m in enumerate(_layer_modules(adapter))]
    out: list[torch.Tensor] = []
    try:
        yield out
    finally:
        for h in hooks:
            h.remove()
        out.extend(got[i] for i in sorted(got))


@contextmanager
def patch_layers(adapter, patches: Sequence[tuple[int, list[int], torch.Tensor]],
                 rows: Sequence[int] | None = None) -> Iterator[None]:
    """Inside, batch row ``rows[i]`` (default ``i``)'s output of layer ``patches[i][0]`` at positions
    ``patches[i][1]`` is replaced by ``patches[i][2]`` ``(len(positions), H)``; patches with
    ``layer = -1`` do nothing. Several patches may name one row (several layers of one forward)."""
    by_layer: dict[int, list[tuple[int, list[int], torch.Tensor]]] = {}
    for r, (layer, pos, value) in zip(range(len(patches)) if rows is None else rows, patches):
        if layer >= 0:
            by_layer.setdefault(layer, []).append((r, pos, value))

    def hook(mod, args, output, layer):
        h = _hidden(output).clone()
        for r, pos, value in by_layer[layer]:
            h[r, pos] = value.to(h.dtype)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    modules = _layer_modules(adapter)
    hooks = [modules[layer].register_forward_hook(lambda mod, a, o, layer=layer: hook(mod, a, o, layer))
             for layer in by_layer]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


@dataclass
class TraceCase:
    """One traced case: ``p_new`` of the unedited and edited images and per direction a
    ``(layers, groups)`` map of ``p_new`` after the patch (NaN where a group is absent)."""

    case_id: str
    groups: dict[str, list[int]]
    p_pre: float
    p_post: float
    maps: dict[str, np.ndarray] = field(default_factory=dict)

    def effect(self, direction: str) -> np.ndarray:
        """``restore``: ``p_post - p_restored``; ``inject``: ``p_injected - p_pre`` (``(layers, groups)``)."""
        m = self.maps[direction]
        return self.p_post - m if direction == "restore" else m - self.p_pre


def trace_case_conditionings(adapter, prompt: str, subject_span: tuple[int, int] | None,
                             pre_states: list[torch.Tensor], post_states: list[torch.Tensor], edited: bool):
    """``(rows, conditioning)`` for one case in one model state: ``rows`` = ``[(direction, layer,
    group)]`` of the patched rows, ``conditioning`` ``(len(rows), S, C)``. ``edited``: the model
    currently holds the edit (rows restore unedited states) or not (rows inject edited ones)."""
    # the LM's text tokens as its layers see them (template included), without appended learned queries
    n_tokens = pre_states[0].shape[1] - int(getattr(adapter, "appended_query_slots", 0))
    cond0 = adapter.conditioning([prompt])
    groups = position_groups(n_tokens, subject_span, cond0.lm_positions[0].tolist())
    source = pre_states if edited else post_states
    rows, patches = [], []
    for layer in range(adapter.num_layers):
        for g, pos in groups.items():
            rows.append(("restore" if edited else "inject", layer, g))
            patches.append((layer, pos, source[layer][0, pos]))
    with patch_layers(adapter, patches):
        cond = adapter.conditioning([prompt] * len(rows))
    return rows, groups, cond


def trace_cases(adapter, judge, records: Mapping, case_ids: Sequence[str], *, edited_context, seed: int,
                steps: int | None = None, guidance: float | None = None) -> dict[str, TraceCase]:
    """Trace ``case_ids`` at one evaluation point. ``edited_context()``: a context manager inside
    which ``adapter`` holds the point's edit (outside it, the unedited weights)."""
    from ..conditioning import stack_conditionings
    from .interventions import prompt_subject_span

    states: dict[str, dict] = {}
    for cid in case_ids:
        rec = records[cid]
        prompt = rec.stage_1.image_prompt
        with capture_layers(adapter) as pre:
            c_pre = adapter.conditioning([prompt])
        with edited_context():
            with capture_layers(adapter) as post:
                c_post = adapter.conditioning([prompt])
        span = prompt_subject_span(adapter, prompt, rec.subject)
        states[cid] = {"prompt": prompt, "span": span, "pre": pre, "post": post, "c_pre": c_pre, "c_post": c_post}
    parts, keys = [], []
    for cid, s in states.items():
        parts += [s["c_pre"], s["c_post"]]
        keys += [(cid, "pre", -1, ""), (cid, "post", -1, "")]
        rows, groups, cond = trace_case_conditionings(adapter, s["prompt"], s["span"], s["pre"], s["post"], edited=False)
        parts.append(cond)
        keys += [(cid, d, layer, g) for d, layer, g in rows]
        with edited_context():
            rows, groups, cond = trace_case_conditionings(adapter, s["prompt"], s["span"], s["pre"], s["post"], edited=True)
        parts.append(cond)
        keys += [(cid, d, layer, g) for d, layer, g in rows]
        s["groups"] = groups
    images = adapter.generate_from_conditioning(stack_conditionings(parts), seed=seed, steps=steps, guidance=guidance)
    recs = [records[k[0]] for k in keys]
    targets = [r.stage_1.gt_target for r in recs]
    p = judge.value_probability(images, recs, ["stage_1"] * len(keys), targets)
    if p is None:
        p = np.array([float(v.verdict) if v.verdict is not None else np.nan
                      for v in judge.judge_batch(images, recs, ["stage_1"] * len(keys), targets)])
    out: dict[str, TraceCase] = {}
    for cid, s in states.items():
        out[cid] = TraceCase(cid, s["groups"], np.nan, np.nan,
                             {d: np.full((adapter.num_layers, len(GROUPS)), np.nan) for d in DIRECTIONS})
    for (cid, d, layer, g), v in zip(keys, p):
        tc = out[cid]
        if d == "pre":
            tc.p_pre = float(v)
        elif d == "post":
            tc.p_post = float(v)
        else:
            tc.maps[d][layer, GROUPS.index(g)] = float(v)
    return out


def min_cases(n_cases: int) -> int:
    """The fewest traced cases a (layer, token group) cell is reported with (a token group few
    prompts have, e.g. words after the subject): a quarter of them, at least 3."""
    return max(3, int(np.ceil(0.25 * n_cases)))


def summarize_traces(traced: Mapping[str, TraceCase], *, num_layers: int, edit_layers: Sequence[int]) -> dict:
    """``stats.json``'s ``tracing`` entry: per direction the ``(layers, groups)`` mean effect over the
    traced cases (NaN-aware; ``n`` per cell), the groups, the edited layers, the mean ``p_new`` of
    the unedited and edited images, and per case its maps."""
    out: dict = {"groups": list(GROUPS), "layers": list(range(num_layers)), "edit_layers": list(edit_layers),
                 "n_cases": len(traced), "cases": {}}
    if not traced:
        return out
    import warnings

    for d in DIRECTIONS:
        eff = np.stack([tc.effect(d) for tc in traced.values()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN cell (a group no prompt has) stays NaN
            out[d] = {"mean_effect": np.nanmean(eff, axis=0).tolist(), "n": np.isfinite(eff).sum(0).tolist()}
    out["p_new_pre"] = float(np.nanmean([tc.p_pre for tc in traced.values()]))
    out["p_new_post"] = float(np.nanmean([tc.p_post for tc in traced.values()]))
    out["cases"] = {cid: {"p_pre": tc.p_pre, "p_post": tc.p_post, "groups": tc.groups,
                          **{d: tc.maps[d].tolist() for d in DIRECTIONS}} for cid, tc in traced.items()}
    return out


def trace_run(run_dir, *, adapter, records: Mapping, judge, case_ids: Sequence[str], seed: int,
              steps: int | None = None, guidance: float | None = None, progress: bool = True,
              echo: Callable[[str], None] = print) -> tuple[dict[str, TraceCase], list[int]]:
    """Trace ``case_ids`` of a benchmark run, each at its own evaluation point (the stored delta
    applied, its hash checked, and removed after), a progress bar per case. Returns the traced
    cases and the LM layers the applied deltas edit."""
    from tqdm.auto import tqdm

    from ..bench.run_folder import RunFolder

    from .replay import stored_edits

    folder = RunFolder(run_dir).require()
    entries = folder.case_entries()
    points = folder.point_entries()
    stored = stored_edits(folder, entries)  # NoStoredDeltasError: tracing needs the judged edits
    by_point: dict[int, list[str]] = {}
    for cid in case_ids:
        by_point.setdefault(_point_of(entries[cid].batch, points, folder), []).append(cid)
    out: dict[str, TraceCase] = {}
    edited_layers: set[int] = set()
    bar = tqdm(total=len(case_ids), desc="tracing", unit="case", disable=not progress)
    for point, cids in sorted(by_point.items()):
        delta = stored.deltas[point]()  # None: no edit of this point took effect
        if delta is not None:
            edited_layers |= delta_layers(adapter, delta)

        for cid in cids:
            out.update(trace_cases(adapter, judge, records, [cid], edited_context=lambda d=delta: _holding(adapter, d),
                                   seed=seed, steps=steps,
                                   guidance=guidance))
            bar.update(1)
    bar.close()
    return out, sorted(edited_layers)


def delta_layers(adapter, delta) -> set[int]:
    """The LM layers whose modules ``delta`` changes (read from the adapter's layer path template)."""
    import re

    pattern = re.compile(re.escape(adapter.paths.layer).replace(r"\{\}", r"(\d+)") + r"(\.|$)")
    return {int(m.group(1)) for name in delta.modules if (m := pattern.match(name))}


@contextmanager
def _holding(adapter, delta):
    """Inside, ``adapter.lm`` holds ``delta`` (nothing when it is None); restored bit for bit after."""
    if delta is None:
        yield
        return
    with delta.apply(adapter.lm, check_model=adapter.name):
        yield


def _point_of(batch: int, points: Mapping[int, object], folder) -> int:
    """The evaluation point that judged a case of ``batch`` (its own batch, or the first point after
    it in a sequential run)."""
    later = sorted(p for p in points if p >= batch)
    if not later:
        raise KeyError(f"{folder.path}: no evaluation point at or after batch {batch}: resume the run first")
    return later[0]
