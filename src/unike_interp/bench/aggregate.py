"""From a run's ledger to the UniKE table: rates with denominators and bootstrap intervals.

Items are (case, stage) pairs. Per item:

``Eff.``            post-edit argmax after the cloze ``prompt`` = first token of ``gt_target``;
``Reason.``         the reasoning states ``gt_target`` (negation- and synonym-aware matcher);
``VQA Direct``      the judge finds ``gt_target`` in the image drawn from ``image_prompt``;
``VQA Reasoning``   the same for the image drawn from the composed reasoning prompt;
``Pre-edit VQA``    the judge finds ``gt`` in the unedited model's image (how well the model
                    draws what it knew: the ceiling an edit's images are measured against).

Every denominator counts every item: a judge error, a failed generation or a reasoning without
a caption is a miss, and is also counted in its own column (``judge_errors``, ``failures``).
Judge errors are counted for every judgement of an image (:data:`JUDGED`: the pre-edit image
against the new value too), per column, per judgement in ``counts.judge_errors_by_judgement``,
and in the total ``counts.judge_errors``.
Rows: the nine categories, each source pooled (``attribute``, ``relation``), and ``overall``
pooled over all items. The main table uses ``stage_1`` (the direct case); the stage table gives
``stage_1`` .. ``stage_4`` and ``stage_n`` (the indirect stages 2..n pooled).

Intervals: percentile bootstrap, 95%, resampling *cases* (a case's stages move together), seeded
by the run seed, so a table is a function of the ledger alone. Locality pools its probes over
evaluation points and resamples probes: text locality = unedited facts whose argmax is unchanged;
image locality = unedited subjects' images judged correct before the edit that still are after it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..data.schema import CATEGORIES
from .entries import CaseEntry, PointEntry
from .measures import JUDGED, LABELS, METRICS  # noqa: F401  (re-exported: the table's columns)



def _ok(v: dict | None) -> bool:
    return bool(v) and v.get("verdict") is True


def _judge_error(v: dict | None) -> bool:
    return bool(v) and v.get("verdict") is None and v.get("error") is not None and not str(v.get("error")).startswith("generation failed")


def item_rows(entries: list) -> list[dict]:
    """One flat row per (case, stage) of the ledger's :class:`CaseEntry` s, with 0/1 outcomes and error flags."""
    rows = []
    for e in entries:
        if not isinstance(e, CaseEntry):
            continue
        for stage, s in e.stages.items():
            pre, post = s["pre"], s.get("post", {})
            d, r = s.get("direct", {}), s.get("reasoning_image", {})
            reasoning = s.get("reasoning", {})
            row = {
                "case_id": e.case_id, "category": e.category, "source": e.source, "split": e.split,
                "stage": stage, "guard_error": e.guard_error is not None,
                "eff": bool(post.get("top1_new")), "eff_pre": bool(pre.get("top1_new")),
                "reason": bool(reasoning.get("states_target")),
                "vqa_direct": _ok(d.get("vqa")), "vqa_reasoning": _ok(r.get("vqa")), "pre_vqa": _ok(pre.get("vqa_gt")),
                "pre_vqa_target": _ok(pre.get("vqa_target")),
                "err_vqa_direct": _judge_error(d.get("vqa")), "err_vqa_reasoning": _judge_error(r.get("vqa")),
                "err_pre_vqa": _judge_error(pre.get("vqa_gt")), "err_pre_vqa_target": _judge_error(pre.get("vqa_target")),
                "fail_vqa_direct": d.get("generation_error") is not None,
                "fail_vqa_reasoning": r.get("generation_error") is not None or reasoning.get("failure") is not None,
                "fail_pre_vqa": pre.get("generation_error") is not None,
                "fail_pre_vqa_target": pre.get("generation_error") is not None,
                "reasoning_failure": reasoning.get("failure"),
            }
            rows.append(row)
    return rows


def bootstrap_rate(success: np.ndarray, groups: np.ndarray | None, *, n_boot: int, seed: int,
                   level: float = 0.95) -> list[float] | None:
    """Percentile interval of ``mean(success)``, resampling ``groups`` (or items) with replacement."""
    success = np.asarray(success, dtype=float)
    if success.size == 0 or n_boot == 0:
        return None
    if groups is None:
        groups = np.arange(success.size)
    _, inv = np.unique(groups, return_inverse=True)
    k = np.bincount(inv, weights=success)
    n = np.bincount(inv).astype(float)
    rng = np.random.default_rng([seed, 101])
    draws = rng.multinomial(len(k), np.full(len(k), 1.0 / len(k)), size=n_boot)
    rates = (draws @ k) / (draws @ n)
    lo, hi = np.quantile(rates, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


def rate(rows: list[dict], metric: str, *, n_boot: int, seed: int) -> dict:
    succ = np.array([r[metric] for r in rows], dtype=bool)
    out = {"rate": round(float(succ.mean()), 4) if succ.size else None, "k": int(succ.sum()), "n": int(succ.size),
           "ci": bootstrap_rate(succ, np.array([r["case_id"] for r in rows]), n_boot=n_boot, seed=seed)}
    if f"err_{metric}" in (rows[0] if rows else {}):
        out["judge_errors"] = int(sum(r[f"err_{metric}"] for r in rows))
        out["failures"] = int(sum(r[f"fail_{metric}"] for r in rows))
    return out


def _block(rows: list[dict], n_boot: int, seed: int) -> dict:
    return {"n_cases": len({r["case_id"] for r in rows}), "n": len(rows),
            **{m: rate(rows, m, n_boot=n_boot, seed=seed) for m in (*METRICS, "eff_pre", "pre_vqa_target")}}


def _locality(entries: list, n_boot: int, seed: int) -> dict:
    points = [e for e in entries if isinstance(e, PointEntry)]
    text = [p for e in points for p in e.text_locality]
    img = [p for e in points for p in e.image_locality]

    def r(vals):
        v = np.array(vals, dtype=bool)
        return {"rate": round(float(v.mean()), 4) if v.size else None, "k": int(v.sum()), "n": int(v.size),
                "ci": bootstrap_rate(v, None, n_boot=n_boot, seed=seed)}

    unedited = [p for p in text if p["kind"] != "same_subject"]
    kept = [p for p in img if (p["pre"] or {}).get("verdict") is True]
    return {
        "text": r([p["unchanged"] for p in unedited]),
        "text_neighbours": r([p["unchanged"] for p in unedited if p["kind"] == "neighbour"]),
        "text_same_subject": r([p["unchanged"] for p in text if p["kind"] == "same_subject"]),
        "image": r([(p["post"] or {}).get("verdict") is True for p in kept]),
        "image_probes": len(img),
        "image_probes_correct_pre": len(kept),
        "image_judge_errors": sum(1 for p in img for k in ("pre", "post") if (p[k] or {}).get("verdict") is None),
    }


def build_table(entries: list, resolved: dict) -> dict:
    """The table as one JSON-able dict (a function of the typed ledger entries and the configuration,
    not of the order the entries were written in: a resumed or distributed run writes them in
    another order, and the bootstrap must resample the same rows)."""
    order = {c: i for i, c in enumerate(resolved.get("case_ids", []))}
    entries = sorted(entries, key=lambda e: (isinstance(e, PointEntry), e.batch,
                                             order.get(e.case_id, len(order)) if isinstance(e, CaseEntry) else 0,
                                             getattr(e, "case_id", "")))
    cfg = resolved["config"]
    n_boot, seed = int(cfg.get("bootstrap", 1000)), int(cfg.get("seed", 0))
    rows = item_rows(entries)
    s1 = [r for r in rows if r["stage"] == "stage_1"]
    main: dict[str, dict] = {}
    for source, cats in CATEGORIES.items():
        for c in cats:
            sel = [r for r in s1 if r["category"] == c]
            if sel:
                main[c] = {"source": source, **_block(sel, n_boot, seed)}
        sel = [r for r in s1 if r["source"] == source]
        if sel:
            main[source] = {"source": source, **_block(sel, n_boot, seed)}
    extra = sorted({r["category"] for r in s1} - {c for cs in CATEGORIES.values() for c in cs})
    for c in extra:  # categories outside the study's nine (a user's data set)
        main[c] = {"source": next(r["source"] for r in s1 if r["category"] == c),
                   **_block([r for r in s1 if r["category"] == c], n_boot, seed)}
    if s1:
        main["overall"] = {"source": "all", **_block(s1, n_boot, seed)}
    stages = {}
    for st in sorted({r["stage"] for r in rows}):
        stages[st] = _block([r for r in rows if r["stage"] == st], n_boot, seed)
    indirect = [r for r in rows if r["stage"] != "stage_1"]
    if indirect:
        stages["stage_n"] = _block(indirect, n_boot, seed)
    splits = {}
    for sp in sorted({r["split"] for r in s1 if r["split"]}):
        splits[sp] = _block([r for r in s1 if r["split"] == sp], n_boot, seed)
    reasons: dict[str, int] = {}
    for r in rows:
        if r["reasoning_failure"]:
            reasons[r["reasoning_failure"]] = reasons.get(r["reasoning_failure"], 0) + 1
    cases = [e for e in entries if isinstance(e, CaseEntry)]
    return {
        "model": cfg["model"], "editor": cfg["editor"], "protocol": cfg["protocol"],
        "batch_size": len(resolved["batches"][0]) if resolved.get("batches") else None,
        "judge": resolved.get("judge_name", cfg["judge"]), "compose": cfg["compose"], "seed": seed,
        "n_cases": len(cases), "n_cases_planned": len(resolved.get("case_ids", [])), "n_items": len(rows),
        "main": main, "stages": stages, "splits": splits, "locality": _locality(entries, n_boot, seed),
        "counts": {
            "guard_failures": sum(1 for e in cases if e.guard_error),
            "judge_errors": int(sum(r[f"err_{m}"] for r in rows for m in JUDGED)),
            "judge_errors_by_judgement": {m: int(sum(r[f"err_{m}"] for r in rows)) for m in JUDGED},
            "generation_failures": int(sum(r[f"fail_{m}"] for r in rows for m in ("vqa_direct", "pre_vqa"))),
            "reasoning_failures": reasons,
        },
        "definitions": "main: stage_1 items; stage_n: stages 2..n pooled; rates count judge errors and failures as misses; "
                       "95% intervals: case bootstrap",
    }


def _cell(d: dict | None) -> str:
    if not d or d.get("rate") is None:
        return "-"
    ci = d.get("ci")
    return f"{100 * d['rate']:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else f"{100 * d['rate']:.1f}"


def render_markdown(t: dict) -> str:
    head = (f"### {t['model']} x {t['editor']} ({t['protocol']}, batch {t['batch_size']}), judge {t['judge']}, "
            f"compose {t['compose']}: {t['n_cases']} cases, {t['n_items']} case-stages\n")
    cols = ["Source", "Category", "n", "Eff.", "Reason.", "VQA Direct", "VQA Reasoning", "Pre-edit VQA",
            "Judge err.", "Failures"]
    lines = [head, "Stage 1 (the direct case); rates in %, [95% CI]; n = cases.", "",
             "| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * len(cols)) + "|"]
    for key, b in t["main"].items():
        name = key if key not in ("attribute", "relation", "overall") else f"**{key}**"
        errs = sum(b[m].get("judge_errors", 0) for m in JUDGED)
        fails = sum(b[m].get("failures", 0) for m in ("vqa_direct", "vqa_reasoning", "pre_vqa"))
        lines.append(f"| {b['source']} | {name} | {b['n']} | " + " | ".join(_cell(b[m]) for m in METRICS)
                     + f" | {errs} | {fails} |")
    lines += ["", "By stage (all cases; stage_n = stages 2..n pooled; n = case-stages):", "",
              "| Stage | n | Eff. | Reason. | VQA Direct | VQA Reasoning | Pre-edit VQA |", "|---|---|---|---|---|---|---|"]
    for st, b in t["stages"].items():
        lines.append(f"| {st} | {b['n']} | " + " | ".join(_cell(b[m]) for m in METRICS) + " |")
    if t.get("splits"):
        lines += ["", "By split (stage 1):", "", "| Split | n | Eff. | Reason. | VQA Direct | VQA Reasoning | Pre-edit VQA |",
                  "|---|---|---|---|---|---|---|"]
        for sp, b in t["splits"].items():
            lines.append(f"| {sp} | {b['n']} | " + " | ".join(_cell(b[m]) for m in METRICS) + " |")
    loc = t["locality"]
    c = t["counts"]
    lines += ["", f"Locality: text {_cell(loc['text'])} (n={loc['text']['n']} probes; neighbours "
                  f"{_cell(loc['text_neighbours'])}, same subject {_cell(loc['text_same_subject'])}); "
                  f"image {_cell(loc['image'])} (n={loc['image']['n']} of {loc['image_probes']} probes "
                  f"judged correct before the edit; {loc['image_judge_errors']} judge errors)",
              f"Counts: guard failures {c['guard_failures']}, judge errors {c['judge_errors']}, generation failures "
              f"{c['generation_failures']}, reasoning failures "
              + (", ".join(f"{k} {v}" for k, v in c["reasoning_failures"].items()) or "0")]
    return "\n".join(lines) + "\n"


def render_csv(t: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["table", "row", "source", "metric", "rate", "k", "n", "ci_low", "ci_high", "judge_errors", "failures"])
    for table, rows in (("main", t["main"]), ("stages", t["stages"]), ("splits", t.get("splits", {}))):
        for key, b in rows.items():
            for m in (*METRICS, "eff_pre", "pre_vqa_target"):
                d = b[m]
                ci = d.get("ci") or [None, None]
                w.writerow([table, key, b.get("source", ""), m, d["rate"], d["k"], d["n"], ci[0], ci[1],
                            d.get("judge_errors", ""), d.get("failures", "")])
    for key in ("text", "text_neighbours", "text_same_subject", "image"):
        d = t["locality"][key]
        ci = d.get("ci") or [None, None]
        w.writerow(["locality", key, "", "unchanged", d["rate"], d["k"], d["n"], ci[0], ci[1], "", ""])
    return buf.getvalue()


def write_tables(t: dict, out: str | Path) -> None:
    """``table.md``, ``table.csv``, ``table.json`` and the page ``report.html`` of the run folder ``out``."""
    from .html_report import write_html_report
    from .run_folder import RunFolder

    folder = RunFolder(out)
    folder.table_path("md").write_text(render_markdown(t), encoding="utf-8")
    folder.table_path("csv").write_text(render_csv(t), encoding="utf-8")
    folder.table_path("json").write_text(json.dumps(t, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    write_html_report(folder.path, t)


def report(run_dir: str | Path) -> dict:
    """Re-render a run folder's tables from its ledger and config (``unike report DIR``)."""
    from .run_folder import RunFolder

    folder = RunFolder(run_dir).require()
    t = build_table(folder.entries(), folder.resolved())
    write_tables(t, folder.path)
    return t


def render_side_by_side(tables: dict) -> str:
    """Runs side by side (``tables``: label -> table): overall stage-1 rates and locality, one line each."""
    def pct(d):
        return "-" if not d or d.get("rate") is None else f"{100 * d['rate']:.1f} [{100 * d['ci'][0]:.1f}, {100 * d['ci'][1]:.1f}]"

    head = ["Run", "Editor", "n", "Eff.", "Reason.", "VQA Direct", "VQA Reasoning", "Pre-edit VQA",
            "Text locality", "Image locality"]
    lines = ["Overall, stage 1, rates in % [95% CI]:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, t in tables.items():
        o = t["main"].get("overall", {})
        lines.append(f"| {model} | {t['editor']} | {o.get('n', 0)} | " + " | ".join(
            pct(o.get(k)) for k in ("eff", "reason", "vqa_direct", "vqa_reasoning", "pre_vqa"))
            + f" | {pct(t['locality']['text'])} | {pct(t['locality']['image'])} |")
    return "\n".join(lines) + "\n"
