"""Explain a benchmark run: record both pathways before and after each edit, compute the gap statistics.

:func:`analyze_run` reads a run folder written by :func:`unike_interp.bench.pipeline.run_bench`,
replays each evaluation point's stored weight delta and records both pathways for four prompts of
every case's stage 1 (:mod:`~unike_interp.interp.replay`) into ``activations.h5``, then computes
every statistic of :mod:`~unike_interp.interp.statistics` per case, the value probes, and the ROC
AUC of each statistic for predicting the case's VQA success (stage 1, direct and reasoning),
joined from the ledger (:mod:`~unike_interp.interp.summary`). Written: ``stats.json`` (summary +
per case) and the figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..bench.run_folder import RunFolder, RunFolderError
from ..models.base import UMMAdapter
from .replay import record_run
from .summary import run_statistics, write_stats


def analyze_run(run_dir: str | Path, out: str | Path | None = None, *, device=None, reoptimize: bool = False,
                progress: bool = True, echo: Callable[[str], None] = print, figures: bool = True, adapter=None,
                interventions: bool = True, trace_cases: int = 20, trust_remote_code: bool = False,
                probes: bool = True) -> dict:
    """Record, compute statistics and AUCs, run the causal analyses, write ``stats.json`` (and the
    figures); return the summary.

    ``out``: default ``<run>/analysis``. ``reoptimize``: run the editor again instead of replaying
    the stored deltas (for runs that stored none). ``interventions``: the conditioning interventions
    and the subject-state swap (:mod:`~unike_interp.interp.interventions`,
    :mod:`~unike_interp.interp.knowledge_source`); ``trace_cases``: how many cases the cross-modal
    causal tracing traces (:mod:`~unike_interp.interp.tracing`; 0: none; it needs stored deltas).
    ``trust_remote_code``: load a model that runs code from its checkpoint folder (Ovis-U1), as its
    run did; the run folder alone does not allow it. ``probes``: fit and validate the value probes
    (:mod:`~unike_interp.interp.probes`; their folds are fitted over every core).
    """
    run = Path(run_dir)
    out = Path(out) if out else RunFolder(run).analysis_dir
    rec = record_run(run, out, device=device, reoptimize=reoptimize, adapter=adapter, progress=progress, echo=echo,
                     trust_remote_code=trust_remote_code)
    cfg = rec.spec
    from ..bench.assemble import build_judge

    judge = build_judge(cfg)
    stats = run_statistics(rec.adapter, rec.store, rec.entries, seed=cfg.seed, judge=judge, probes=probes,
                           progress=progress)
    echo(_probe_line(stats["summary"]))
    summary = stats["summary"] = {"run": str(run), "model": cfg.model, "editor": cfg.editor, "protocol": cfg.protocol,
                                  "hdf5": str(rec.store.path), "edits": rec.edits,
                                  "record_seconds": round(rec.seconds, 2), **stats["summary"]}
    stats.update(causal_analyses(rec, out, judge=judge, interventions=interventions, trace_cases=trace_cases,
                                 progress=progress, echo=echo))
    per_case_keys = ("per_case", "cases", "swap_per_case")  # in stats.json only, not in the summary
    summary["causal"] = {k: stats[k].get("summary") or {n: v for n, v in stats[k].items() if n not in per_case_keys}
                         for k in ("interventions", "tracing", "knowledge_source") if k in stats}
    write_stats(RunFolder.analysis_file(out, "stats"), stats)
    if figures:
        from .plots import render_all

        summary["figures"] = render_all(out, run)
    from ..bench.html_report import write_html_report

    summary["report"] = str(write_html_report(run, analysis_dir=out))
    return summary


def _probe_line(summary: dict) -> str:
    """What the value probes did, in one line (``[analyze] value probes: ...``)."""
    probes = summary.get("probes") or {}
    if "skipped" in probes:
        return f"[analyze] value probes: skipped ({probes['skipped']})"
    cats = [e for e in probes.values() if isinstance(e, dict)]
    fitted = sum(len(e.get("candidates") or []) for e in cats)
    validated = sum(1 for e in cats if e.get("validated"))
    sec = (summary.get("probe_setup") or {}).get("seconds") or {}
    parts = ", ".join(f"{name} {sec[key]:.1f} s" for key, name in
                      (("record", "conditioning"), ("generator", "the generator's accuracy"), ("fit", "fits")) if key in sec)
    return (f"[analyze] value probes: {fitted} fitted over {len(cats)} categories, validated in {validated} of them; "
            f"{sum(sec.get(k, 0.0) for k in ('record', 'generator', 'fit')):.1f} s ({parts})")


def causal_analyses(rec, out: Path, *, judge, interventions: bool, trace_cases: int, progress: bool,
                    echo: Callable[[str], None]) -> dict:
    """``{"knowledge_source", "interventions", "tracing"}`` of ``stats.json`` for a recorded run
    (``{"skipped": reason}`` for an analysis the adapter or run cannot support), and the seconds
    each took in ``knowledge_source["seconds"]`` etc."""
    import time

    from .interventions import InterventionConfig, run_interventions, summarize_interventions
    from .knowledge_source import outcome_table, summarize_swaps, swap_subject_state
    from .tracing import summarize_traces, trace_run

    adapter, spec, entries, records = rec.adapter, rec.spec, rec.entries, rec.records
    case_ids = [cid for cid, _ in rec.store.iter_cases()]
    draw = {"seed": spec.seed, "steps": spec.sample_steps, "guidance": spec.guidance}
    out_stats: dict = {"knowledge_source": {"outcomes": outcome_table(entries, records, case_ids)}}
    if not interventions:
        out_stats["interventions"] = {"skipped": "interventions off (--no-interventions)"}
        return out_stats
    if type(adapter).generate_from_conditioning is UMMAdapter.generate_from_conditioning:
        reason = f"{adapter.name} cannot draw from a given conditioning (generate_from_conditioning)"
        return {**out_stats, "interventions": {"skipped": reason}, "tracing": {"skipped": reason}}
    config = InterventionConfig()
    t0 = time.perf_counter()
    res = run_interventions(adapter, rec.store, records, judge, config=config, progress=progress, echo=echo,
                            cache=RunFolder.analysis_file(out, "interventions"), **draw)
    summary = summarize_interventions(res.per_case, entries, config)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    out_stats["interventions"] = {"summary": summary, "per_case": res.per_case}

    t0 = time.perf_counter()
    swaps = swap_subject_state(adapter, judge, records, case_ids, **draw)
    ks = out_stats["knowledge_source"]
    ks["swap"] = summarize_swaps(swaps, entries)
    ks["swap_per_case"] = swaps
    ks["seconds"] = round(time.perf_counter() - t0, 2)
    echo(f"[analyze] subject-state swap: {len(case_ids)} cases in {ks['seconds']:.1f} s")

    if trace_cases > 0:
        # the cases whose image moved most toward the new value carry the most signal to trace
        def moved(cid):
            oc = res.per_case[cid]["outcomes"]
            return (oc.get("gain:1", {}).get("p_new") or 0.0) - (oc.get("gain:0", {}).get("p_new") or 0.0)

        chosen = sorted(case_ids, key=lambda c: -moved(c))[:trace_cases]
        t0 = time.perf_counter()
        try:
            traced, edited = trace_run(rec.run_dir, adapter=adapter, records=records, judge=judge, case_ids=chosen,
                                       progress=progress, echo=echo, **draw)
        except RunFolderError as exc:  # a run that stored no deltas
            out_stats["tracing"] = {"skipped": str(exc)}
        else:
            tr = summarize_traces(traced, num_layers=adapter.num_layers, edit_layers=edited)
            tr["seconds"] = round(time.perf_counter() - t0, 2)
            tr["selection"] = "the cases whose edited image moved most toward the new value (judge probability)"
            out_stats["tracing"] = tr
            echo(f"[analyze] tracing: {len(chosen)} cases in {tr['seconds']:.1f} s")
    return out_stats


def format_aucs(summary: dict, top: int = 25) -> str:
    """The AUC table as text: the ``top`` reported statistics (VQA direct) by ``|auc - 0.5|``, each as
    ``AUC [95% CI]`` with its successes/failures, the reasoning AUC beside it; then, once per reason,
    how many statistics were refused (``auc = None``) and why (names listed when there are few)."""
    aucs = summary.get("aucs") or {}
    direct, reasoning = aucs.get("vqa_direct") or {}, aucs.get("vqa_reasoning") or {}

    def cell(d: dict | None) -> str:
        if not d:
            return "-"
        if d.get("auc") is None:
            return "refused" if d.get("refused") else "-"
        ci = "" if d.get("ci_low") is None else f" [{d['ci_low']:.2f}, {d['ci_high']:.2f}]"
        return f"{d['auc']:.3f}{ci} {d.get('n_success', '?')}/{d.get('n_fail', '?')}"

    def rank(name: str) -> tuple:  # reported for VQA direct first, by |auc - 0.5|; then by the reasoning AUC
        for i, table in enumerate((direct, reasoning)):
            if (a := (table.get(name) or {}).get("auc")) is not None:
                return i, -abs(a - 0.5), name
        return 2, 0.0, name

    reported = sorted((n for n in set(direct) | set(reasoning) if rank(n)[0] < 2), key=rank)
    head = "AUC [95% CI] succ/fail"
    lines = [f"{'statistic':<44}{'VQA direct: ' + head:>36}{'VQA reasoning: ' + head:>39}"]
    lines += [f"{name:<44}{cell(direct.get(name)):>36}{cell(reasoning.get(name)):>39}" for name in reported[:top]]
    if len(reported) > top:
        lines.append(f"... {len(reported) - top} more reported statistics")
    if not reported:
        lines.append("(no AUC reported)")
    for key, table in (("VQA direct", direct), ("VQA reasoning", reasoning)):
        reasons: dict[str, list[str]] = {}
        for name, d in table.items():
            if d.get("auc") is None:
                reasons.setdefault(d.get("refused") or "undefined", []).append(name)
        for why, names in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
            which = f": {', '.join(sorted(names))}" if len(names) <= 5 else ""
            lines.append(f"refused for {key}, {len(names)} statistic(s): {why}{which}")
    return "\n".join(lines)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def format_causal(summary: dict) -> str:
    """The causal analyses in a few lines: the verdict of every failed case, the image's value
    before/after per split with net transfer, the subject-state swap, the strongest tracing cell."""
    causal = summary.get("causal") or {}
    lines = []
    iv = causal.get("interventions") or {}
    if "skipped" in iv:
        lines.append(f"interventions: skipped ({iv['skipped']})")
    elif iv:
        from .interventions import FAILED_VERDICTS

        row = iv["verdicts"]["all"]["all"]
        lines.append(f"verdicts of the {iv['n_failed']} cases whose VQA Direct failed: " + ", ".join(
            f"{v} {row[v]['count']}" for v in FAILED_VERDICTS) + f"  (gain-1 redraw agrees with the benchmark on "
            f"{_pct(iv['bench_agreement'])} of cases)")
        rc = iv.get("random_control")
        if rc and rc["n"]:
            lines.append(f"control: of {rc['n']} cases whose edited image lacks the new value, a larger gain of the edit "
                         f"shows it in {_pct(rc['edit_any_gain']['share'])}, a random push of the same size in "
                         f"{_pct(rc['random_any_gain']['share'])}")
    ks = causal.get("knowledge_source") or {}
    for split, row in (ks.get("outcomes") or {}).items():
        lines.append(f"{split:<11} n={row['n']:<4} image shows the new value: pre {_pct(row['pre']['new']['share'])}, "
                     f"post {_pct(row['post']['new']['share'])} (net transfer {_pct(row['net_transfer'])}); "
                     f"old value after the edit {_pct(row['post']['old']['share'])}")
    for split, row in (ks.get("swap") or {}).items():
        lm = row["lm_from_donor"]
        lines.append(f"{split:<11} subject-state swap (n={row['n']}): the image follows the LM's last-subject-token "
                     f"states {_pct(lm['lm']['share'])}, the name's earlier tokens {_pct(lm['name']['share'])}")
    tr = causal.get("tracing") or {}
    if "skipped" in tr:
        lines.append(f"tracing: skipped ({tr['skipped']})")
    elif tr.get("n_cases"):
        import numpy as np

        from .tracing import min_cases

        for d in ("restore", "inject"):
            m = np.array(tr[d]["mean_effect"], dtype=float)
            m[np.array(tr[d]["n"]) < min_cases(tr["n_cases"])] = np.nan
            if np.isfinite(m).any():
                i, j = np.unravel_index(np.nanargmax(m), m.shape)
                lines.append(f"tracing ({d}, {tr['n_cases']} cases): strongest at layer {i}, {tr['groups'][j]} "
                             f"(mean change of p(new value) {m[i, j]:+.2f})")
    return "\n".join(lines)
