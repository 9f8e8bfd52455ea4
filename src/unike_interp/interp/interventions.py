"""Conditioning interventions: why did an edit that flips the text not flip the image?

Every case of a recorded run (:mod:`~unike_interp.interp.replay`) is drawn again from conditioning
tensors built out of its recorded ones and judged as the benchmark judges (the stage-1 VQA
question against the new value, the run's seed, steps and guidance). Notation (each ``(S, C)``,
the slots that reach the generator; the direct prompt's slots are the same before and after)::

    c_pre, c_post   the direct prompt's conditioning in the unedited / edited model
    Δc = c_post - c_pre                     the edit's change
    r_old, r_new    c_pre of the reference prompts (the value spelled out, old / new)
    d  = mean over the slots where r_new and r_old differ of (r_new - r_old)   (C,)
         (the two references share a template and differ in one word; under a causal LM the
         slots before that word are equal, so these are the slots that carry the value)
    u  = d / |d|
    Δc_aligned[s] = <Δc[s], u> u,   Δc_orth = Δc - Δc_aligned               per slot s

Interventions (the generator's input replaced, :meth:`UMMAdapter.generate_from_conditioning`):

``gain:a``        c_pre + a Δc,  a in :attr:`InterventionConfig.gains` (a = 0 draws the unedited
                  image, a = 1 the edited one)
``aligned:a``     c_pre + a Δc_aligned,  a in :attr:`InterventionConfig.component_gains`
``orthogonal:a``  c_pre + a Δc_orth
``random:a``      c_pre + a R, R a seeded Gaussian ``(S, C)`` scaled to ``|R| = |Δc|`` (the control,
                  gains above 1: a push of that size in no particular direction; a gain's flip
                  counts only where this push leaves the old value in the image)
``reference``     c_pre with the subject's slots replaced by the slots that carry the spelled-out
                  new value in r_new (the first slots where r_new and r_old differ, as many as the
                  value has tokens): the generator is told the value where it read the name. A
                  pathway with no slot read from the subject's tokens (learned queries) gets r_new
                  whole, whose slots correspond to the direct prompt's
``caption``       r_new whole, the spelled-out prompt itself (a control; not used by the verdict)

A verdict per case, the first that holds (:data:`VERDICTS`):

``transferred``      gain 1 shows the new value (the benchmark's own outcome, redrawn)
``too_weak``         a larger gain along the edit's own change shows it, while a random push of
                     the same size leaves the old value in the image (otherwise the larger push
                     merely breaks the image and the judge reads a value by chance)
``misaligned``       no gain of its own change does, its aligned component (some gain, the same
                     control) does
``generator_bound``  even the reference (the value named where the name was) does not show it
``unexplained``      the reference shows it, but neither the edit's change nor its aligned
                     component at any gain does
``undetermined``     a judge error or failed generation on an image the verdict needed (counted)

Intervention outcomes are *not* statistics of the AUC table: they are read from generated images,
so using them to predict the image outcome would be circular.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..conditioning import Conditioning, stack_conditionings
from ..models.positions import prompt_subject_span, subject_columns

__all__ = ["GAINS", "COMPONENT_GAINS", "VERDICTS", "InterventionConfig", "value_direction", "split_along",
           "case_interventions", "subject_columns", "prompt_subject_span", "recorded_subject_span", "verdict_of", "run_interventions", "summarize_interventions", "wilson"]

GAINS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
COMPONENT_GAINS = (1.0, 2.0, 4.0, 8.0, 16.0)
VERDICTS = ("transferred", "too_weak", "misaligned", "generator_bound", "unexplained", "undetermined")
#: The verdicts a failed case can get (all but ``transferred``).
FAILED_VERDICTS = VERDICTS[1:]


@dataclass(frozen=True)
class InterventionConfig:
    """What is drawn per case. ``gains`` must contain 0 and 1 (the unedited and edited images);
    ``chunk``: cases per generation batch (``17`` images per case with the defaults)."""

    gains: tuple[float, ...] = GAINS
    component_gains: tuple[float, ...] = COMPONENT_GAINS
    reference: bool = True
    chunk: int = 8

    def __post_init__(self) -> None:
        for name in ("gains", "component_gains"):
            g = tuple(float(x) for x in getattr(self, name))
            if not g or any(x < 0 or not np.isfinite(x) for x in g) or list(g) != sorted(set(g)):
                raise ValueError(f"InterventionConfig.{name} must be distinct, increasing, finite and >= 0; got {g}")
            object.__setattr__(self, name, g)
        if 0.0 not in self.gains or 1.0 not in self.gains:
            raise ValueError(f"InterventionConfig.gains must contain 0 and 1 (the unedited and edited images); "
                             f"got {self.gains}")
        if self.chunk < 1:
            raise ValueError(f"InterventionConfig.chunk must be >= 1; got {self.chunk}")

    def names(self) -> list[str]:
        """Every intervention drawn per case, in order."""
        out = [f"gain:{_g(a)}" for a in self.gains]
        out += [f"{part}:{_g(a)}" for part in ("aligned", "orthogonal") for a in self.component_gains]
        out += [f"random:{_g(a)}" for a in self.gains if a > 1.0]
        return out + (["reference", "caption"] if self.reference else [])


def _g(a: float) -> str:
    return f"{a:g}"


def value_direction(r_old: np.ndarray, r_new: np.ndarray) -> tuple[np.ndarray, str]:
    """``(d (C,), how)``: the mean of ``r_new - r_old`` over the slots where they differ (``how =
    "differing_slots"``); the difference of their slot means where the slot counts differ
    (``"pooled"``); zeros where the references are identical (``"identical"``)."""
    if r_old.shape == r_new.shape:
        diff = r_new - r_old
        rows = np.abs(diff).max(axis=1) > 1e-6 * max(1.0, float(np.abs(r_old).max()))
        if not rows.any():
            return np.zeros(r_old.shape[1], dtype=np.float64), "identical"
        return diff[rows].mean(axis=0).astype(np.float64), "differing_slots"
    return (r_new.mean(axis=0) - r_old.mean(axis=0)).astype(np.float64), "pooled"


def split_along(delta: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(aligned, orthogonal)`` ``(S, C)``: each slot's ``delta[s]`` split into its component along
    ``u = d / |d|`` and the rest (all of it orthogonal when ``d = 0``)."""
    n = float(np.linalg.norm(d))
    if n == 0.0:
        return np.zeros_like(delta), delta.copy()
    u = d / n
    aligned = np.outer(delta @ u, u).astype(delta.dtype)
    return aligned, delta - aligned


def subject_slots(lm_positions: np.ndarray, span: tuple[int, int] | None) -> np.ndarray:
    """Indices of the slots read from the subject's tokens ``span = (first, last)`` (LM positions,
    inclusive); empty without a span or where no slot is read from them (learned queries)."""
    if span is None:
        return np.zeros(0, dtype=np.int64)
    pos = np.asarray(lm_positions)
    return np.flatnonzero((pos >= span[0]) & (pos <= span[1]))


def value_slots(r_old: np.ndarray, r_new: np.ndarray, n_tokens: int) -> np.ndarray:
    """The first ``n_tokens`` slots where ``r_new`` and ``r_old`` differ (the spelled-out value's own
    slots); empty where the slot counts differ or nothing differs."""
    if r_old.shape != r_new.shape:
        return np.zeros(0, dtype=np.int64)
    diff = np.abs(r_new - r_old).max(axis=1) > 1e-6 * max(1.0, float(np.abs(r_old).max()))
    rows = np.flatnonzero(diff)
    return rows[:max(1, n_tokens)] if len(rows) else rows


def case_interventions(pre: Mapping[str, np.ndarray], post: Mapping[str, np.ndarray],
                       ref_old: Mapping[str, np.ndarray] | None, ref_new: Mapping[str, np.ndarray] | None,
                       config: InterventionConfig, *, subject_span: tuple[int, int] | None = None,
                       value_tokens: int = 1, control_seed: int = 0) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """``({name: (hidden (S', C), lm_positions (S',))}, info)`` of one case from its recorded
    ``cond.tensor`` / ``_lm_positions`` (store dicts of the direct prompt before / after, and of
    the references before). ``subject_span``: the LM positions ``(first, last)`` of the subject's
    tokens in the direct prompt; ``value_tokens``: how many tokens the new value has. Without
    references only the gains are built. ``info``: ``|Δc|``, ``|d|``, how ``d`` and the reference
    were taken, and the share of ``|Δc|^2`` along ``u``."""
    c0, c1 = pre["cond.tensor"].astype(np.float32), post["cond.tensor"].astype(np.float32)
    if c0.shape != c1.shape:
        raise ValueError(f"the direct prompt's conditioning has shape {c0.shape} before the edit and {c1.shape} "
                         "after: the slots do not correspond")
    pos = pre["_lm_positions"]
    delta = c1 - c0
    out = {f"gain:{_g(a)}": (c0 + a * delta, pos) for a in config.gains}
    info: dict = {"delta_norm": float(np.linalg.norm(delta))}
    noise = np.random.default_rng(control_seed).standard_normal(delta.shape).astype(np.float32)
    noise *= info["delta_norm"] / max(float(np.linalg.norm(noise)), 1e-12)
    out.update({f"random:{_g(a)}": (c0 + a * noise, pos) for a in config.gains if a > 1.0})
    if ref_old is not None and ref_new is not None:
        r0, r1 = ref_old["cond.tensor"].astype(np.float32), ref_new["cond.tensor"].astype(np.float32)
        d, how = value_direction(r0, r1)
        aligned, orth = split_along(delta, d)
        out.update({f"aligned:{_g(a)}": (c0 + a * aligned, pos) for a in config.component_gains})
        out.update({f"orthogonal:{_g(a)}": (c0 + a * orth, pos) for a in config.component_gains})
        sq = float((delta ** 2).sum())
        info.update({"d_norm": float(np.linalg.norm(d)), "d_from": how,
                     "aligned_share": float((aligned ** 2).sum() / sq) if sq > 0 else None})
        if config.reference:
            subj, val = subject_slots(pos, subject_span), value_slots(r0, r1, value_tokens)
            if len(subj) and len(val):
                hidden = np.concatenate([c0[:subj[0]], r1[val], c0[subj[-1] + 1:]])
                out["reference"] = (hidden, np.arange(len(hidden)))
                info["reference_from"] = "subject_slots"
            else:
                out["reference"] = (r1, ref_new["_lm_positions"])
                info["reference_from"] = "caption"
            out["caption"] = (r1, ref_new["_lm_positions"])
    return out, info


def _shows(outcomes: Mapping[str, dict], name: str) -> bool | None:
    o = outcomes.get(name)
    return None if o is None else o.get("verdict")


def _intact(outcomes: Mapping[str, dict], a: float, old: str | None) -> bool | None:
    """Whether the random push of gain ``a`` (the control) leaves the image showing the old value,
    i.e. a push of that size alone does not break the image (gains <= 1 need no control; None where
    the judge names no value)."""
    if a <= 1.0:
        return True
    o = outcomes.get(f"random:{_g(a)}")
    if o is None or old is None or o.get("predicted") is None:
        return None
    return o["predicted"] == old


def verdict_of(outcomes: Mapping[str, dict], config: InterventionConfig, old: str | None = None) -> dict:
    """``{verdict, min_gain, min_aligned_gain, chance_flips, controlled, reason}`` from one case's
    outcomes (``name -> {"verdict": bool | None, "predicted": str | None, ...}``).

    A gain ``a > 1`` counts as showing the new value only where the random push of the same size
    leaves the old value (``old``) in the image: otherwise a push that size breaks the image, and
    the judge reading the new value in it is chance (listed in ``chance_flips``). ``min_gain``: the
    smallest gain along the edit's own change that shows the new value so (``inf`` when none);
    ``min_aligned_gain`` likewise for its aligned component; ``controlled``: False where the judge
    named no value to check the control by (the flip is then taken as it is). A needed image
    without a verdict makes the case ``undetermined``."""
    chance: list[str] = []
    controlled = True

    def first(names: Sequence[str], gains: Sequence[float]) -> tuple[float, str | None]:
        nonlocal controlled
        for n, a in zip(names, gains):
            v = _shows(outcomes, n)
            if v is None:
                return float("nan"), n
            if v:
                intact = _intact(outcomes, a, old)
                if intact is False:
                    chance.append(n)
                    continue
                controlled = controlled and intact is True
                return a, None
        return float("inf"), None

    def done(**kw) -> dict:
        return {**out, "chance_flips": chance, "controlled": controlled, **kw}

    gains = [a for a in config.gains if a >= 1.0]
    g, missing = first([f"gain:{_g(a)}" for a in gains], gains)
    out = {"min_gain": g, "min_aligned_gain": float("nan")}
    if missing:
        return done(verdict="undetermined", reason=f"no verdict for {missing}")
    if g == 1.0:
        return done(verdict="transferred", reason="the edited conditioning shows the new value")
    if np.isfinite(g):
        return done(verdict="too_weak", reason=f"the edit's own change, scaled by {_g(g)}, shows it (a random push "
                                               "that size does not)")
    if not any(n.startswith("aligned:") for n in outcomes):
        return done(verdict="undetermined", reason="no value direction (the references were not recorded)")
    ga, missing = first([f"aligned:{_g(a)}" for a in config.component_gains], config.component_gains)
    out["min_aligned_gain"] = ga
    if missing:
        return done(verdict="undetermined", reason=f"no verdict for {missing}")
    if np.isfinite(ga):
        return done(verdict="misaligned",
                    reason=f"no gain of its own change shows it; its aligned component scaled by {_g(ga)} does")
    ref = _shows(outcomes, "reference")
    if ref is None:
        return done(verdict="undetermined", reason="no verdict for the reference")
    if not ref:
        return done(verdict="generator_bound", reason="even the new value named where the name was does not show it")
    return done(verdict="unexplained",
                reason="the named value shows it, but no gain of the edit's change or its aligned component does")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """The Wilson score 95% interval of a proportion ``k / n`` (``(None, None)`` for ``n = 0``)."""
    if n == 0:
        return None, None
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def _share(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"count": k, "share": k / n if n else None, "ci": [lo, hi]}


@dataclass
class InterventionResult:
    """``per_case``: case id -> ``{verdict, min_gain, ..., outcomes: {name: {verdict, predicted,
    p_new}}, info}``; ``seconds``; ``images``: how many were drawn this session."""

    per_case: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    images: int = 0


def run_interventions(adapter, store, records: Mapping, judge, *, seed: int, steps: int | None = None,
                      guidance: float | None = None, config: InterventionConfig | None = None,
                      cache: str | Path | None = None, progress: bool = True,
                      echo: Callable[[str], None] = print) -> InterventionResult:
    """Draw and judge every intervention of every case of ``store`` (``records``: case id -> Record).

    Batched: :attr:`InterventionConfig.chunk` cases' images per generator call. ``cache``: a JSON
    Lines file of finished cases (one line per case, appended as they finish), so a killed
    analysis resumes where it stopped; cases already in it are not drawn again.
    """
    from tqdm.auto import tqdm

    config = config or InterventionConfig()
    cases = [cid for cid, _ in store.iter_cases()]
    done: dict[str, dict] = {}
    cache = Path(cache) if cache else None
    if cache is not None and cache.exists():
        for line in cache.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a torn last line of a killed run: drawn again
                continue
            if row.get("config") == _config_key(config, seed, steps, guidance) and row["case_id"] in records:
                # the drawn outcomes are kept; the verdict is read again by this version's ladder
                r = row["result"]
                done[row["case_id"]] = _finite({**verdict_of(r["outcomes"], config, records[row["case_id"]].stage_1.gt),
                                                "outcomes": r["outcomes"], "info": r.get("info", {})})
    result = InterventionResult({c: done[c] for c in cases if c in done})
    todo = [c for c in cases if c not in done]
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc="interventions", unit="case", disable=not progress or not todo)
    for i in range(0, len(todo), config.chunk):
        chunk = todo[i:i + config.chunk]
        items: list[tuple[str, str, np.ndarray, np.ndarray]] = []
        infos = {}
        for cid in chunk:
            acts = {(s, k): _read(store, cid, s, k) for s, k in (("pre", "direct"), ("post", "direct"),
                                                            ("pre", "ref_old"), ("pre", "ref_new"))}
            rec, pre = records[cid], acts[("pre", "direct")]
            conds, infos[cid] = case_interventions(
                pre, acts[("post", "direct")], acts[("pre", "ref_old")], acts[("pre", "ref_new")], config,
                subject_span=recorded_subject_span(adapter, rec.stage_1.image_prompt, rec.subject,
                                                   pre["_lm_positions"]),
                value_tokens=_n_tokens(adapter.tokenizer, rec.stage_1.gt_target),
                control_seed=zlib.crc32(f"{seed}:{cid}".encode()))
            items += [(cid, name, h, p) for name, (h, p) in conds.items()]
        outcomes = _draw_and_judge(adapter, judge, records, items, seed=seed, steps=steps, guidance=guidance)
        lines = []
        for cid in chunk:
            oc = {name: o for (c, name), o in outcomes.items() if c == cid}
            res = _finite({**verdict_of(oc, config, records[cid].stage_1.gt), "outcomes": oc, "info": infos[cid]})
            result.per_case[cid] = res
            lines.append(json.dumps({"case_id": cid, "config": _config_key(config, seed, steps, guidance),
                                     "result": res}))
        if cache is not None:
            with cache.open("a") as f:
                f.write("\n".join(lines) + "\n")
        result.images += len(items)
        bar.update(len(chunk))
    bar.close()
    result.seconds = time.perf_counter() - t0
    if todo:
        echo(f"[analyze] interventions: {result.images} images for {len(todo)} cases in {result.seconds:.1f} s")
    result.per_case = {c: result.per_case[c] for c in cases}
    return result


def recorded_subject_span(adapter, prompt: str, subject: str, recorded_positions: np.ndarray) -> tuple[int, int] | None:
    """The subject's LM positions in the coordinates of a recorded conditioning (a prompt recorded in
    a padded batch): :func:`prompt_subject_span` shifted by the difference between the last LM
    position the recorded conditioning reads and the one the prompt encoded alone reads."""
    span = prompt_subject_span(adapter, prompt, subject)
    if span is None:
        return None
    alone = adapter.conditioning([prompt]).lm_positions[0].cpu().numpy()
    rec = np.asarray(recorded_positions)
    if not (alone >= 0).any() or not (rec >= 0).any():
        return None
    shift = int(rec[rec >= 0].max()) - int(alone[alone >= 0].max())
    return span[0] + shift, span[1] + shift


def _n_tokens(tokenizer, value: str) -> int:
    return max(1, len(tokenizer(" " + value, add_special_tokens=False)["input_ids"]))


def _config_key(config: InterventionConfig, seed, steps, guidance) -> dict:
    return {"gains": list(config.gains), "component_gains": list(config.component_gains),
            "reference": config.reference, "seed": seed, "steps": steps, "guidance": guidance}


def _finite(x):
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, float) and not np.isfinite(x):
        return None if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _read(store, cid: str, state: str, kind: str):
    try:
        return store.read(cid, state, kind)
    except KeyError:
        return None


def _draw_and_judge(adapter, judge, records: Mapping, items, *, seed, steps, guidance) -> dict:
    """``{(case id, name): {verdict, predicted, p_new, error}}`` for ``items`` = ``(case id, name,
    hidden (S, C), lm_positions (S,))``. A failed generation or judge call is an error on each of
    its images (counted by the verdict as ``undetermined``), never dropped."""
    conds = [Conditioning(torch.from_numpy(np.ascontiguousarray(h))[None],
                          torch.ones(1, h.shape[0], dtype=torch.long),
                          torch.as_tensor(np.asarray(p), dtype=torch.long)[None]) for _, _, h, p in items]
    keys = [(c, n) for c, n, _, _ in items]
    try:
        images = adapter.generate_from_conditioning(stack_conditionings(conds), seed=seed, steps=steps,
                                                    guidance=guidance)
    except NotImplementedError:
        raise
    except Exception as exc:  # a failed generation is a result: counted, never dropped
        err = f"generation failed: {type(exc).__name__}: {exc}"
        return {k: {"verdict": None, "predicted": None, "p_new": None, "error": err} for k in keys}
    recs = [records[c] for c, _ in keys]
    stages = ["stage_1"] * len(keys)
    targets = [r.stage_1.gt_target for r in recs]
    try:
        verdicts = judge.judge_batch(images, recs, stages, targets)
        p_new = judge.value_probability(images, recs, stages, targets)
    except Exception as exc:
        err = f"judge failed: {type(exc).__name__}: {exc}"
        return {k: {"verdict": None, "predicted": None, "p_new": None, "error": err} for k in keys}
    out = {}
    for j, (k, v) in enumerate(zip(keys, verdicts)):
        p = None if p_new is None or not np.isfinite(p_new[j]) else round(float(p_new[j]), 6)
        out[k] = {"verdict": v.verdict, "predicted": v.predicted, "p_new": p, "error": v.error}
    return out


def summarize_interventions(per_case: Mapping[str, dict], entries: Mapping, config: InterventionConfig) -> dict:
    """The tables of ``stats.json``'s ``interventions`` entry.

    ``verdicts``: counts over the cases whose benchmark VQA Direct failed, overall and per split
    and category, each with its share and Wilson 95% interval; ``all_verdicts``: the same over
    every case; ``gain_curve``: per intervention, the share of cases whose image shows the new
    value (with the interval), and its *net* value, minus the share at gain 0 (the unedited
    image); ``bench_agreement``: how often the redrawn gain-1 image's verdict equals the
    benchmark's (1.0 when the recorded conditioning is the judged one); ``random_control``: over the
    cases whose edited image does not show the new value, how many some gain > 1 of the edit's
    change makes show it, beside how many a random push of the same size does (the rate at which
    the ``too_weak`` rung would fire by chance)."""

    def table(ids: list[str]) -> dict:
        groups: dict[str, dict[str, list[str]]] = {"all": {"all": ids}, "split": {}, "category": {}}
        for cid in ids:
            e = entries.get(cid)
            groups["split"].setdefault(str(getattr(e, "split", None)), []).append(cid)
            groups["category"].setdefault(str(getattr(e, "category", None)), []).append(cid)
        out = {}
        for gname, members in groups.items():
            out[gname] = {}
            for key, cids in sorted(members.items()):
                n = len(cids)
                row = {"n": n}
                for v in VERDICTS:
                    k = sum(per_case[c]["verdict"] == v for c in cids)
                    lo, hi = wilson(k, n)
                    row[v] = {"count": k, "share": k / n if n else None, "ci": [lo, hi]}
                out[gname][key] = row
        return out

    ids = list(per_case)
    failed = [c for c in ids if c in entries and not entries[c].succeeded("stage_1", "direct")]
    curve = {}
    base = [per_case[c]["outcomes"].get("gain:0", {}).get("verdict") for c in ids]
    base_rate = np.mean([b is True for b in base]) if ids else None
    for name in config.names():
        vs = [per_case[c]["outcomes"].get(name, {}).get("verdict") for c in ids]
        judged = [v for v in vs if v is not None]
        k = sum(v is True for v in judged)
        lo, hi = wilson(k, len(judged))
        curve[name] = {"shows_new": k / len(judged) if judged else None, "ci": [lo, hi], "n": len(judged),
                       "errors": len(vs) - len(judged),
                       "net": (k / len(judged) - base_rate) if judged and base_rate is not None else None}
    def any_shows(cid: str, part: str) -> bool:
        return any(o.get("verdict") is True for n, o in per_case[cid]["outcomes"].items()
                   if n.startswith(part + ":") and float(n.split(":")[1]) > 1.0)

    not_new = [c for c in ids if per_case[c]["outcomes"].get("gain:1", {}).get("verdict") is False]
    k_rand = sum(any_shows(c, "random") for c in not_new)
    k_gain = sum(any_shows(c, "gain") for c in not_new)
    control = {"n": len(not_new), "random_any_gain": _share(k_rand, len(not_new)),
               "edit_any_gain": _share(k_gain, len(not_new)),
               "note": "cases whose edited image does not show the new value: the share that some gain > 1 of the "
                       "edit's change shows it (too_weak) beside the share that a random push of the same size does"}
    agree = [per_case[c]["outcomes"].get("gain:1", {}).get("verdict") == entries[c].succeeded("stage_1", "direct")
             for c in ids if c in entries]
    return {"n_cases": len(ids), "n_failed": len(failed), "verdicts": table(failed), "all_verdicts": table(ids),
            "gain_curve": curve, "random_control": control, "bench_agreement": float(np.mean(agree)) if agree else None,
            "config": {"gains": list(config.gains), "component_gains": list(config.component_gains),
                       "reference": config.reference}}
