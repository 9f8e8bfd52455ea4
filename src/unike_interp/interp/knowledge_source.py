"""Where the visual knowledge lives: the language model's representation of the subject, or the
generator's memory of its name?

Two measurements, for image-seen and text-only subjects apart (the generator was trained on the
images of the first, never on the second):

**Ledger** (:func:`outcome_table`, no generation): which value each stage-1 image shows before and
after the edit: the true (old) value, the new one, another one, or no verdict. After the edit,
``new`` means the image followed the language model's edited fact, ``old`` that it kept the
subject's old look. *Net transfer* = share showing the new value after the edit minus the share
that already showed it before (the unedited image).

**Subject-state swap** (:func:`swap_subject_state`, unedited model): for each case's subject ``X``
(category ``k``) a donor ``Y`` of the same split whose value in ``k`` differs from ``X``'s (seeded
choice). With ``t_X`` the last token of ``X`` in its stage-1 image prompt, and ``t_Y`` that of
``Y`` in the same prompt with ``Y`` in place of ``X``:

``lm_from_donor``  ``X``'s prompt, with the output of *every* LM layer at ``t_X`` replaced by
                   ``Y``'s at ``t_Y``: the language model's whole representation of the subject at
                   the token where it completes the name is ``Y``'s, the name's earlier tokens (and
                   every slot the generator reads from them) are ``X``'s
``name_from_donor`` the converse: ``Y``'s prompt with ``X``'s states at ``t_Y``

The image's value in ``k`` then says which one the generator draws from: following the
last-token states (``follows_lm``) or the name's earlier tokens (``follows_name``). A name of one
token has no earlier tokens of its own; such cases are counted apart (``single_token``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .interventions import _share

__all__ = ["outcome_table", "swap_subject_state", "summarize_swaps"]

OUTCOMES = ("new", "old", "other", "no_verdict")


def _value_shown(v: dict | None, old: str, new: str) -> str:
    if not v or v.get("verdict") is None or v.get("predicted") is None:
        return "no_verdict"
    return "new" if v["predicted"] == new else "old" if v["predicted"] == old else "other"


def outcome_table(entries: Mapping, records: Mapping, case_ids: Sequence[str]) -> dict:
    """Per split (and ``all``): the share of stage-1 images showing the new / old / another value /
    no verdict, before (``pre``) and after (``post``) the edit, with Wilson 95% intervals, and
    ``net_transfer`` = post share of ``new`` - pre share of ``new``. Reads the ledger only."""
    groups: dict[str, list[str]] = {"all": list(case_ids)}
    for cid in case_ids:
        groups.setdefault(str(entries[cid].split), []).append(cid)
    out = {}
    for g, cids in groups.items():
        row: dict = {"n": len(cids)}
        for state in ("pre", "post"):
            shown = []
            for cid in cids:
                st, r = entries[cid].stages.get("stage_1") or {}, records[cid].stage_1
                v = (st.get("pre") or {}).get("vqa_gt") if state == "pre" else (st.get("direct") or {}).get("vqa")
                shown.append(_value_shown(v, r.gt, r.gt_target))
            row[state] = {o: _share(shown.count(o), len(cids)) for o in OUTCOMES}
        pre_new, post_new = row["pre"]["new"]["share"], row["post"]["new"]["share"]
        row["net_transfer"] = None if pre_new is None else post_new - pre_new
        out[g] = row
    return out


def _donor(subject: str, category: str, split: str, table: Mapping[str, Mapping[str, str]],
           splits: Mapping[str, str], rng: np.random.Generator) -> str | None:
    own = table[subject][category]
    pool = sorted(s for s in table if s != subject and splits.get(s) == split and table[s][category] != own)
    return str(rng.choice(pool)) if pool else None


def swap_subject_state(adapter, judge, records: Mapping, case_ids: Sequence[str], *, seed: int,
                       steps: int | None = None, guidance: float | None = None) -> dict[str, dict]:
    """Per case ``{donor, single_token, lm_from_donor: {follows}, name_from_donor: {follows}}`` with
    ``follows`` in ``lm`` / ``name`` / ``other`` / ``no_verdict`` (see the module docstring), or
    ``{"skipped": reason}``. Needs ``adapter.subject_values()`` (the donor's values)."""
    from ..conditioning import stack_conditionings
    from ..data.cloze import find_subject
    from .interventions import prompt_subject_span
    from .tracing import capture_layers, patch_layers

    table = adapter.subject_values()
    if table is None:
        return {cid: {"skipped": f"{adapter.name}: no table of every subject's values to pick donors from"}
                for cid in case_ids}
    splits = {cid_r.subject: (cid_r.extra or {}).get("split") for cid_r in records.values()}
    splits.update(getattr(adapter, "subject_splits", lambda: {})() or {})
    rng = np.random.default_rng([seed, 17])
    plan, parts = {}, []
    for cid in case_ids:
        rec = records[cid]
        x, k, prompt = rec.subject, rec.category, rec.stage_1.image_prompt
        y = _donor(x, k, splits.get(x), table, splits, rng)
        if y is None or not find_subject(prompt, x):
            plan[cid] = {"skipped": "no donor of the same split with another value" if y is None
                         else "the image prompt does not name the subject"}
            continue
        a, b = find_subject(prompt, x)[-1]
        prompt_y = prompt[:a] + y + prompt[b:]
        tx, ty = prompt_subject_span(adapter, prompt, x)[1], prompt_subject_span(adapter, prompt_y, y)[1]
        n_x = len(adapter.tokenizer(" " + x, add_special_tokens=False)["input_ids"])
        n_y = len(adapter.tokenizer(" " + y, add_special_tokens=False)["input_ids"])
        with capture_layers(adapter) as hx:
            adapter.conditioning([prompt])
        with capture_layers(adapter) as hy:
            adapter.conditioning([prompt_y])
        # every layer's state at the name's last token from the other prompt, in one forward (row 0)
        with patch_layers(adapter, [(layer, [tx], hy[layer][0, [ty]]) for layer in range(len(hy))], rows=[0] * len(hy)):
            c_lm = adapter.conditioning([prompt])
        with patch_layers(adapter, [(layer, [ty], hx[layer][0, [tx]]) for layer in range(len(hx))], rows=[0] * len(hx)):
            c_name = adapter.conditioning([prompt_y])
        plan[cid] = {"donor": y, "x_value": table[x][k], "y_value": table[y][k],
                     "single_token": bool(n_x == 1 or n_y == 1), "rows": (len(parts), len(parts) + 1)}
        parts += [c_lm, c_name]
    done = {cid: p for cid, p in plan.items() if "rows" in p}
    if parts:
        images = adapter.generate_from_conditioning(stack_conditionings(parts), seed=seed, steps=steps,
                                                    guidance=guidance)
        idx = [(cid, j) for cid, p in done.items() for j in p["rows"]]
        recs = [records[cid] for cid, _ in idx]
        stages = ["stage_1"] * len(idx)
        vx = judge.judge_batch(images[[j for _, j in idx]], recs, stages, [done[c]["x_value"] for c, _ in idx])
        vy = judge.judge_batch(images[[j for _, j in idx]], recs, stages, [done[c]["y_value"] for c, _ in idx])
        for (cid, j), a, b in zip(idx, vx, vy):
            p = done[cid]
            which = "lm_from_donor" if j == p["rows"][0] else "name_from_donor"
            # in lm_from_donor the LM's subject state is Y's; in name_from_donor it is X's
            lm_val, name_val = (b, a) if which == "lm_from_donor" else (a, b)
            follows = ("no_verdict" if a.verdict is None or b.verdict is None else "lm" if lm_val.verdict
                       else "name" if name_val.verdict else "other")
            p[which] = {"follows": follows, "predicted": a.predicted}
    for p in plan.values():
        p.pop("rows", None)
    return plan


def summarize_swaps(per_case: Mapping[str, dict], entries: Mapping) -> dict:
    """Per split (and ``all``), per swap: the share of images following the LM's subject state /
    the name's earlier tokens / neither / no verdict (Wilson 95% intervals), over cases whose
    names both have more than one token, and the count of cases left out (single-token or
    skipped)."""
    groups: dict[str, list[str]] = {"all": [c for c in per_case]}
    for cid in per_case:
        groups.setdefault(str(entries[cid].split) if cid in entries else "None", []).append(cid)
    out = {}
    for g, cids in groups.items():
        used = [c for c in cids if "lm_from_donor" in per_case[c] and not per_case[c]["single_token"]]
        row: dict = {"n": len(used), "left_out": len(cids) - len(used)}
        for which in ("lm_from_donor", "name_from_donor"):
            f = [per_case[c][which]["follows"] for c in used]
            row[which] = {o: _share(f.count(o), len(f)) for o in ("lm", "name", "other", "no_verdict")}
        out[g] = row
    return out
