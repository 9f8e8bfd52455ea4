"""A run as one static page, ``<run>/report.html``: the summary table, every case with its images
and verdicts, and the analysis figures. No server and no network: the page links the run's own
PNGs by relative paths, so it opens from disk (``file://``) and travels with the folder.

``unike bench`` writes it with the tables, ``unike analyze`` rewrites it with the figures, and
``unike report`` re-renders it. One row per case and stage shows the old -> new value, the
post-edit text result, the image drawn before the edit, the image drawn from the edited model's
direct prompt, its reasoning and the image drawn from that, each with the judge's verdict. The
rows can be filtered by category, stage and outcome (a few lines of inline script; without
script every row shows).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .entries import case_rows
from .measures import DEFINITIONS, JUDGED, LABELS, METRICS

#: Outcome filters: name (a row's ``data-<name>`` attribute is 1 where it applies) -> label.
OUTCOMES = {
    "gap": "text edited, direct image missed",
    "direct-hit": "direct image shows the new value",
    "direct-miss": "direct image missed",
    "reasoning-hit": "reasoning image shows the new value",
    "reasoning-miss": "reasoning image missed",
    "text-miss": "text edit failed",
    "error": "a judge error or a failed generation",
}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:.9em} table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.pooled td{font-weight:600;background:#fafafa} dl{font-size:.85em} dt{font-weight:600;float:left;width:9em}
dd{margin-left:9.5em;margin-bottom:.2em} .filters{position:sticky;top:0;background:#fff;padding:.5em 0;
border-bottom:1px solid #ddd;z-index:1;font-size:.9em} .filters label{margin-right:1.2em}
#cases td{font-size:.9em} #cases img{width:112px;height:auto;display:block;border:1px solid #ccc}
#cases img.pixelated{image-rendering:pixelated} .v{display:inline-block;margin-top:3px;padding:0 4px;
border-radius:3px;font-size:.85em} .ok{background:#d8f3dc;color:#1b4332} .no{background:#fde2e1;color:#7f1d1d}
.err{background:#eee;color:#444} .arrow{color:#888} .reasoning{max-width:22em;font-size:.85em;color:#333}
.none{color:#999;font-style:italic} figure{display:inline-block;margin:.5em;vertical-align:top;max-width:46%}
figure img{max-width:100%;border:1px solid #ddd} figcaption{font-size:.85em;color:#444}
"""

_SCRIPT = """
(function(){
  var rows=[].slice.call(document.querySelectorAll('#cases tbody tr'));
  var cat=document.getElementById('f-category'), stage=document.getElementById('f-stage'),
      outcome=document.getElementById('f-outcome'), shown=document.getElementById('shown');
  function apply(){
    var n=0;
    rows.forEach(function(r){
      var ok=(!cat.value||r.dataset.category===cat.value)&&(!stage.value||r.dataset.stage===stage.value)&&
             (!outcome.value||r.getAttribute('data-'+outcome.value)==='1');
      r.style.display=ok?'':'none'; if(ok){n++;}
    });
    shown.textContent=n;
  }
  [cat,stage,outcome].forEach(function(e){e.addEventListener('change',apply);});
  document.querySelectorAll('#cases img').forEach(function(im){
    function px(){ if(im.naturalWidth&&im.naturalWidth<112){im.classList.add('pixelated');} }
    if(im.complete){px();} else {im.addEventListener('load',px);}
  });
  apply();
})();
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _pct(d: dict | None) -> str:
    if not d or d.get("rate") is None:
        return "&ndash;"
    ci = d.get("ci")
    text = f"{100 * d['rate']:.1f}"
    return text + (f" <small>[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]</small>" if ci else "")


def _row_order(main: dict) -> list[str]:
    """The main table's rows as ``table.md`` lists them: each source's categories in the study's
    order, then the source pooled; other categories; ``overall`` last (``table.json`` sorts its keys)."""
    from ..data.schema import CATEGORIES

    order = [k for source, cats in CATEGORIES.items() for k in (*cats, source)]
    known = [k for k in order if k in main]
    return known + sorted(k for k in main if k not in known and k != "overall") + (["overall"] if "overall" in main else [])


def _summary(t: dict) -> str:
    head = "".join(f"<th>{_e(LABELS[m])}</th>" for m in METRICS)
    rows = []
    for key in _row_order(t["main"]):
        b = t["main"][key]
        pooled = key in ("attribute", "relation", "overall")
        errs = sum(b[m].get("judge_errors", 0) for m in JUDGED)
        fails = sum(b[m].get("failures", 0) for m in ("vqa_direct", "vqa_reasoning", "pre_vqa"))
        rows.append(f"<tr{' class=pooled' if pooled else ''}><td>{_e(b['source'])}</td><td>{_e(key)}</td>"
                    f"<td class=num>{b['n']}</td>" + "".join(f"<td class=num>{_pct(b[m])}</td>" for m in METRICS)
                    + f"<td class=num>{errs}</td><td class=num>{fails}</td></tr>")
    stages = "".join(f"<tr><td>{_e(st)}</td><td class=num>{b['n']}</td>"
                     + "".join(f"<td class=num>{_pct(b[m])}</td>" for m in METRICS) + "</tr>"
                     for st, b in sorted(t["stages"].items(), key=lambda kv: (kv[0] == "stage_n", kv[0])))
    loc, c = t["locality"], t["counts"]
    return (
        "<p>Stage 1 (the direct case). Rates in %, [95% bootstrap interval over cases]; n = cases. A judge "
        "error or a failed generation counts as a miss and is also counted in its own column.</p>"
        f"<table id=summary><thead><tr><th>Source</th><th>Category</th><th>n</th>{head}<th>Judge err.</th>"
        f"<th>Failures</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "<p>By stage (stage_n: the indirect stages 2..n pooled; n = case-stages):</p>"
        f"<table id=stages><thead><tr><th>Stage</th><th>n</th>{head}</tr></thead><tbody>{stages}</tbody></table>"
        f"<p>Locality: text {_pct(loc['text'])} unchanged (n = {loc['text']['n']} probes); image "
        f"{_pct(loc['image'])} still right (n = {loc['image']['n']} of {loc['image_probes']} probes judged right "
        f"before the edit). Counts: guard failures {c['guard_failures']}, judge errors {c['judge_errors']}, "
        f"generation failures {c['generation_failures']}, reasoning failures "
        + _e(", ".join(f"{v} ({k})" for k, v in c["reasoning_failures"].items()) or "0") + ".</p>"
        "<dl>" + "".join(f"<dt>{_e(LABELS[m])}</dt><dd>{_e(DEFINITIONS[m])}</dd>" for m in METRICS) + "</dl>")


def _verdict(prefix: str, row: dict, target: str | None) -> tuple[str, str]:
    """The verdict badge of one judged image and its outcome (``hit``, ``miss``, ``error``)."""
    gen_error = row.get(f"{prefix}_generation_error")
    if gen_error:
        return f"<span class='v err' title='{_e(gen_error)}'>generation failed</span>", "error"
    error = row.get(f"{prefix}_judge_error")
    verdict = row.get(f"{prefix}_verdict")
    if verdict is None and error:
        return f"<span class='v err' title='{_e(error)}'>judge error</span>", "error"
    if verdict is None:  # no image to judge (a reasoning without a caption): a miss
        return "<span class='v err'>not judged</span>", "miss"
    seen = row.get(f"{prefix}_predicted")
    if verdict:
        return f"<span class='v ok'>&#10003; {_e(target)}</span>", "hit"
    return f"<span class='v no'>&#10007; judge saw {_e(seen if seen is not None else '?')}</span>", "miss"


def _image(path: str | None, alt: str) -> str:
    if not path:
        return "<span class=none>no image</span>"
    return f"<img src='{_e(Path(path).as_posix())}' alt='{_e(alt)}' loading=lazy>"


def _case_row(r: dict) -> str:
    """One ``<tr>`` of the case table; its ``data-<outcome>`` attributes (:data:`OUTCOMES`) drive the filter."""
    old, new = r.get("old"), r.get("new")
    pre_badge, _ = _verdict("pre_vqa_old", {**r, "pre_vqa_old_generation_error": r.get("pre_generation_error")}, old)
    d_badge, d_out = _verdict("direct", r, new)
    r_badge, r_out = _verdict("reasoning", r, new)
    text_ok = r.get("post_top1_new") is True
    gap = text_ok and d_out != "hit"
    flags = {"gap": gap, "direct-hit": d_out == "hit", "direct-miss": d_out != "hit", "reasoning-hit": r_out == "hit",
             "reasoning-miss": r_out != "hit", "text-miss": not text_ok,
             "error": "error" in (d_out, r_out) or bool(r.get("pre_generation_error"))}
    attrs = "".join(f" data-{k}={int(v)}" for k, v in flags.items())
    text = ("<span class='v ok'>&#10003; says the new value</span>" if text_ok else
            "<span class='v no'>&#10007; still not the new value</span>")
    reasoning = r.get("reasoning_text") or r.get("reasoning_failure")
    rs = (f"<div class=reasoning>{_e(reasoning)}</div>" if reasoning else "<span class=none>no reasoning</span>")
    if r.get("reasoning_failure"):
        rs += f"<span class='v err'>{_e(r['reasoning_failure'])}</span>"
    cid = r["case_id"]
    html_row = (
        f"<tr id='{_e(cid)}-{_e(r['stage'])}' data-category='{_e(r['category'])}' data-stage='{_e(r['stage'])}'{attrs}>"
        f"<td><b>{_e(r['subject'])}</b><br>{_e(r['category'])}<br><small>{_e(cid)} &middot; {_e(r['stage'])}</small></td>"
        f"<td>{_e(old)} <span class=arrow>&rarr;</span> <b>{_e(new)}</b></td><td>{text}</td>"
        f"<td>{_image(r.get('pre_image'), f'{cid} before the edit')}{pre_badge}</td>"
        f"<td>{_image(r.get('direct_image'), f'{cid} direct')}{d_badge}</td>"
        f"<td>{rs}</td><td>{_image(r.get('reasoning_image'), f'{cid} reasoning')}{r_badge}</td></tr>")
    return html_row


def _cases(rows: list[dict]) -> str:
    cats = sorted({r["category"] for r in rows})
    stages = sorted({r["stage"] for r in rows})
    body = [_case_row(r) for r in rows]
    opt = lambda v, label: f"<option value='{_e(v)}'>{_e(label)}</option>"  # noqa: E731
    stage_default = "stage_1" if "stage_1" in stages else ""
    return (
        "<div class=filters>"
        "<label>Category <select id=f-category>" + opt("", "all") + "".join(opt(c, c) for c in cats) + "</select></label>"
        "<label>Stage <select id=f-stage>" + opt("", "all") + "".join(
            f"<option value='{_e(s)}'{' selected' if s == stage_default else ''}>{_e(s)}</option>" for s in stages)
        + "</select></label>"
        "<label>Outcome <select id=f-outcome>" + opt("", "all")
        + "".join(opt(k, label) for k, label in OUTCOMES.items()) + "</select></label>"
        f"showing <span id=shown>{len(rows)}</span> of {len(rows)} case-stages</div>"
        "<table id=cases><thead><tr><th>Case</th><th>old &rarr; new</th><th>Text after the edit</th>"
        "<th>Image before the edit<br><small>judged for the old value</small></th>"
        "<th>Direct image<br><small>after the edit</small></th><th>Reasoning</th>"
        "<th>Reasoning image<br><small>after the edit</small></th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>")


def _figures(folder, analysis_dir: Path | None) -> str:
    """The figures of ``analysis_dir/figures`` (default ``<run>/analysis``), captioned with the titles
    their ``index.json`` gives, linked relative to the run folder."""
    import os

    fig_dir = Path(analysis_dir or folder.analysis_dir) / "figures"
    index = fig_dir / "index.json"
    titles = json.loads(index.read_text(encoding="utf-8")).get("titles", {}) if index.is_file() else {}
    pngs = sorted(fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    if not pngs:
        return ("<p class=none>No analysis yet: <code>unike analyze " + _e(folder.path)
                + "</code> records both pathways and adds its figures here.</p>")
    order = {name: i for i, name in enumerate(titles)}
    pngs.sort(key=lambda p: (order.get(p.stem, len(order)), p.stem))
    rel = lambda p: Path(os.path.relpath(p, folder.path)).as_posix()  # noqa: E731
    return "".join(f"<figure><img src='{_e(rel(p))}' alt='{_e(p.stem)}'>"
                   f"<figcaption>{_e(titles.get(p.stem, p.stem))}</figcaption></figure>" for p in pngs)


def render_html(folder, table: dict, analysis_dir: str | Path | None = None) -> str:
    """The page of the run folder ``folder`` (a :class:`~.run_folder.RunFolder`), its ``table`` and the
    figures of ``analysis_dir`` (default ``<run>/analysis``)."""
    rows = case_rows(folder.entries())
    t = table
    title = f"{t['model']} \u00d7 {t['editor']}"
    meta = (f"{_e(t['protocol'])} protocol, batch {_e(t['batch_size'])}, judge {_e(t['judge'])}, compose "
            f"{_e(t['compose'])}, seed {_e(t['seed'])}: {t['n_cases']} of {t['n_cases_planned']} cases, "
            f"{t['n_items']} case-stages. Run folder <code>{_e(folder.path)}</code>; tables in "
            "<a href='table.md'>table.md</a>, <a href='table.csv'>table.csv</a>, <a href='table.json'>table.json</a>.")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(title)} &middot; unike-interp</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class=meta>{meta}</p>"
        f"<h2>Summary</h2>{_summary(t)}"
        f"<h2>Cases</h2>{_cases(rows)}"
        f"<h2>Analysis</h2>{_figures(folder, analysis_dir)}"
        f"<script>{_SCRIPT}</script></body></html>\n")


def write_html_report(run, table: dict | None = None, analysis_dir: str | Path | None = None) -> Path:
    """Write ``<run>/report.html`` (atomically) and return its path; ``table`` defaults to ``table.json``,
    ``analysis_dir`` (where the figures are) to ``<run>/analysis``."""
    from .run_folder import RunFolder, write_text

    folder = RunFolder(run)
    if table is None:
        table = json.loads(folder.table_path("json").read_text(encoding="utf-8"))
    write_text(folder.report_path, render_html(folder, table, analysis_dir))
    return folder.report_path
