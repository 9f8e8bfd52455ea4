"""The run's static page, ``report.html``: written by `unike bench`, opened in a real headless
Chromium from disk (no server), checked against the ledger it was rendered from."""

import json
import os

import pytest

from unike_interp.bench.entries import case_rows
from unike_interp.bench.html_report import OUTCOMES, write_html_report
from unike_interp.bench.run_folder import RunFolder
from unike_interp.cli import main
from unike_interp.testing.browser import browser_or_reason, open_browser

RUN = ["--editor", "rome", "--compose", "prepend", "--cases", "4", "--image-locality", "0", "--text-locality", "2", "--bootstrap", "10",
       "--sample-steps", "4", "--set", "stats_samples=3000", "--set", "n_prefixes=2", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real 4-case run with one analysis figure (the modality gap, drawn from table.json)."""
    from unike_interp.interp.plots import render

    root = tmp_path_factory.mktemp("report")
    old = os.environ.get("UNIKE_CACHE_DIR")
    os.environ["UNIKE_CACHE_DIR"] = str(root / "cache")
    try:
        assert main(["bench", *RUN, str(root / "run")]) == 0
    finally:
        os.environ.pop("UNIKE_CACHE_DIR") if old is None else os.environ.__setitem__("UNIKE_CACHE_DIR", old)
    folder = RunFolder(root / "run")
    assert folder.report_path.is_file()  # bench wrote it with the tables
    table = json.loads(folder.table_path("json").read_text())
    render(None, table, folder.analysis_dir / "figures", names=["modality_gap"])
    write_html_report(folder.path)  # what `unike analyze` does after its figures
    return folder


def test_the_page_is_static_and_escapes_what_it_shows(run, tmp_path):
    page = run.report_path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page  # nothing fetched: it opens offline
    rows = case_rows(run.entries())
    for r in rows:
        for key in ("pre_image", "direct_image", "reasoning_image"):
            if r[key]:
                assert f"src='{r[key]}'" in page and (run.path / r[key]).is_file()
    # A value with markup is shown as text, never run as markup.
    entries = [json.loads(line) for line in run.ledger_path.read_text().splitlines()]
    case = next(e for e in entries if e["type"] == "case")
    case["subject"] = "<script>alert(1)</script>"
    copy = RunFolder(tmp_path / "copy")
    copy.path.mkdir()
    for name in ("config.json", "table.json"):
        (copy.path / name).write_text((run.path / name).read_text())
    copy.ledger_path.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    text = write_html_report(copy.path).read_text()
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_headless_browser_renders_the_table_the_images_and_the_filters(run, tmp_path):
    reason = browser_or_reason()
    if reason:
        if os.environ.get("UNIKE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"UNIKE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    table = json.loads(run.table_path("json").read_text())
    rows = case_rows(run.entries())
    stage1 = [r for r in rows if r["stage"] == "stage_1"]
    with open_browser(1400, 4000) as page:
        page.get(run.report_path.resolve().as_uri())
        js = page.execute_script
        # The summary table: one row per row of table.json, the overall rate as the table gives it.
        names = js("return [].map.call(document.querySelectorAll('#summary tbody tr'), r => r.cells[1].textContent)")
        assert sorted(names) == sorted(table["main"]) and names[-1] == "overall"
        md_rows = [line.split("|")[2].strip().strip("*") for line in run.table_path("md").read_text().splitlines()
                   if line.startswith("| ") and line.split("|")[2].strip().strip("*") in table["main"]]
        assert names == md_rows  # the order table.md gives, though table.json sorts its keys
        overall = js("return [].find.call(document.querySelectorAll('#summary tbody tr'), "
                     "r => r.cells[1].textContent === 'overall').cells[3].textContent")
        assert overall.startswith(f"{100 * table['main']['overall']['eff']['rate']:.1f}")
        # Stage 1 shows by default; each visible case's three images decode (32 x 32 renders).
        assert js("return document.getElementById('shown').textContent") == str(len(stage1))
        page.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        sizes = js("return [].map.call(document.querySelectorAll('#cases tbody tr'), r => r.style.display === 'none' "
                   "? null : [].map.call(r.querySelectorAll('img'), i => i.complete ? i.naturalWidth : -1))")
        shown = [s for s in sizes if s is not None]
        assert len(shown) == len(stage1)
        expected = [sum(bool(r[k]) for k in ("pre_image", "direct_image", "reasoning_image")) for r in stage1]
        assert [len(s) for s in shown] == expected and all(w == 32 for s in shown for w in s), shown
        # drawn larger, square pixels kept sharp (a 32 x 32 render is not blurred into a smear)
        looks = js("return [].filter.call(document.querySelectorAll('#cases tbody tr'), r => r.style.display !== 'none')"
                   ".flatMap(r => [].map.call(r.querySelectorAll('img'), i => [i.width, i.height, "
                   "i.classList.contains('pixelated')]))")
        assert looks and all(look == [112, 112, True] for look in looks), looks
        texts = js("return [].filter.call(document.querySelectorAll('#cases tbody tr'), r => r.style.display !== 'none')"
                   ".map(r => r.cells[1].textContent)")
        assert texts == [f"{r['old']} \u2192 {r['new']}" for r in stage1]
        # The filters count what the ledger says.
        def shown_after(**select):
            for name, value in select.items():
                js(f"var s=document.getElementById('f-{name}'); s.value={json.dumps(value)}; "
                   "s.dispatchEvent(new Event('change'))")
            return int(js("return document.getElementById('shown').textContent"))

        category = stage1[0]["category"]
        assert shown_after(category=category) == sum(r["category"] == category for r in stage1)
        assert shown_after(category="", stage="") == len(rows)
        def errored(r):
            return any(r[k] for k in ("pre_generation_error", "direct_generation_error", "reasoning_generation_error")) \
                or any(r[f"{p}_verdict"] is None and r[f"{p}_judge_error"] for p in ("direct", "reasoning"))

        expected = {  # each outcome filter, counted from the ledger's rows
            "gap": lambda r: r["post_top1_new"] is True and r["direct_verdict"] is not True,
            "direct-hit": lambda r: r["direct_verdict"] is True, "direct-miss": lambda r: r["direct_verdict"] is not True,
            "reasoning-hit": lambda r: r["reasoning_verdict"] is True,
            "reasoning-miss": lambda r: r["reasoning_verdict"] is not True,
            "text-miss": lambda r: r["post_top1_new"] is not True, "error": errored}
        assert set(expected) == set(OUTCOMES)
        for outcome, rule in expected.items():
            for stage, subset in (("stage_1", stage1), ("", rows)):
                assert shown_after(stage=stage, outcome=outcome) == sum(map(rule, subset)), (outcome, stage)
        assert sum(map(expected["direct-hit"], rows)) + sum(map(expected["direct-miss"], rows)) == len(rows)
        assert set(OUTCOMES) == set(js("return [].map.call(document.querySelectorAll('#f-outcome option'), "
                                       "o => o.value).filter(v => v)"))
        # The analysis figure shows with its title.
        fig = js("return [].map.call(document.querySelectorAll('figure'), "
                 "f => [f.querySelector('img').naturalWidth, f.textContent])")
        assert len(fig) == 1 and fig[0][0] > 100 and fig[0][1].startswith("Modality gap")
        page.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
