"""Benchmark building blocks: the Reason. matcher, reasoning composition, the ledger, and the table
arithmetic against hand-computed values."""

import json

import numpy as np
import pytest

from unike_interp.bench.aggregate import bootstrap_rate, build_table, render_csv, render_markdown
from unike_interp.bench.ledger import Ledger, LedgerError
from unike_interp.bench.matching import states_value
from unike_interp.bench.reasoning import TEMPLATES, compose, parse_caption, reasoning_request
from unike_interp.data.schema import CATEGORIES


@pytest.mark.parametrize("text,value,expected", [
    ("The zib is blue.", "blue", True),
    ("The zib is not blue.", "blue", False),
    ("The zib isn't blue; it is red.", "blue", False),
    ("It is not red but blue.", "blue", True),
    ("Not red. The zib is blue.", "blue", True),
    ("Rather than blue, it is painted red.", "blue", False),
    ("The zib is bluegreen.", "blue", False),
    ("The zib is gray.", "grey", True),
    ("Two zibs, both checkered.", "chequered", True),
    ("The zibs are triangles.", "triangle", True),
    ("It lives in the desert, never in the city.", "city", False),
    ("", "blue", False),
    (None, "blue", False),
])
def test_states_value(text, value, expected):
    assert states_value(text, value) is expected


def test_states_value_custom_synonyms():
    assert states_value("a crimson zib", "red", synonyms={"red": ["crimson"]})
    assert not states_value("a crimson zib", "red")


def test_compose_modes():
    r = " The color of the zib is blue. Caption: a small blue zib."
    c = compose("replace", r, "a zib")
    assert c.prompt == "a small blue zib" and c.caption == "a small blue zib" and c.failure is None
    p = compose("prepend", r, "a zib")
    assert p.prompt == "The color of the zib is blue. Caption: a small blue zib. a zib" and p.failure is None
    # never a silent fall-back to the direct prompt
    for text, why in (("", "empty reasoning"), ("   ", "empty reasoning"), ("The zib is blue.", "no caption")):
        c = compose("replace", text, "a zib")
        assert c.prompt is None and why in c.failure
    assert compose("prepend", "", "a zib").prompt is None
    with pytest.raises(ValueError, match="compose mode"):
        compose("append", r, "a zib")
    assert parse_caption("x Caption:  ") is None and parse_caption("Caption: a\nmore") == "a"


def test_reasoning_templates_cover_categories():
    cats = [c for cs in CATEGORIES.values() for c in cs]
    assert set(TEMPLATES) == set(cats)

    class Plain:  # an adapter without its own reasoning format
        pass

    text = reasoning_request(Plain(), "a zib", "zib", "color")
    assert "a zib" in text and "zib" in text and "Caption:" in text


def test_ledger_torn_last_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    led = Ledger.open(path)
    led.append({"type": "case", "case_id": "a"})
    led.append({"type": "case", "case_id": "b"})
    with open(path, "a") as f:
        f.write('{"type": "case", "case_id": "c", "sta')  # kill -9 mid-write
    ro = Ledger.open(path, repair=False)
    assert [e["case_id"] for e in ro.entries] == ["a", "b"] and ro.torn_bytes > 0
    assert path.read_text().endswith('"sta')  # a reader leaves the file alone
    led = Ledger.open(path)
    assert [e["case_id"] for e in led.entries] == ["a", "b"]
    led.append({"type": "case", "case_id": "c"})
    assert [json.loads(x)["case_id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]
    # damage before the last line is not a crash artefact
    path.write_text('{"case_id": "a"}\nGARBAGE\n{"case_id": "b"}\n')
    with pytest.raises(LedgerError, match="line 2"):
        Ledger.open(path)


def _v(verdict, error=None):
    return {"verdict": verdict, "predicted": None, "confidence": None, "target": "t", "error": error}


def _stage(eff, reason, direct, reasoning, pre, reasoning_failure=None, gen_error=None, pre_target=None):
    return {
        "pre": {"top1_new": False, "top1_old": True, "generation_error": None, "vqa_gt": _v(pre),
                "vqa_target": pre_target or _v(False)},
        "post": {"top1_new": eff, "top1_old": not eff, "p_new_gt_old": eff},
        "reasoning": {"states_target": reason, "failure": reasoning_failure, "text": "", "caption": None, "prompt": None},
        "direct": {"generation_error": gen_error, "vqa": None if gen_error else direct},
        "reasoning_image": {"generation_error": None, "vqa": None if reasoning_failure else reasoning},
    }


def _entries():
    """Typed ledger entries, as the run folder reads them."""
    from unike_interp.bench.entries import parse_entry

    return [parse_entry(d) for d in _raw_entries()]


def _raw_entries():
    return [
        {"type": "case", "case_id": "c1", "subject": "s1", "batch": 0, "category": "color", "source": "attribute", "split": "image-seen",
         "stages": {"stage_1": _stage(True, True, _v(True), _v(True), True),
                    "stage_2": _stage(False, True, _v(False), _v(True), True)}},
        {"type": "case", "case_id": "c2", "subject": "s2", "batch": 0, "category": "color", "source": "attribute", "split": "image-seen",
         "stages": {"stage_1": _stage(True, False, _v(None, "judge said nonsense"), _v(False), True,
                                      reasoning_failure="no caption in the reasoning"),
                    "stage_2": _stage(True, False, None, _v(False), False, gen_error="generation failed: boom")}},
        {"type": "case", "case_id": "c3", "subject": "s3", "batch": 0, "category": "location", "source": "relation", "split": "text-only",
         "stages": {"stage_1": _stage(False, True, _v(True), _v(True), False, pre_target=_v(None, "judge timed out"))}},
        {"type": "point", "batch": 0, "cases": ["c1", "c2", "c3"],
         "text_locality": [{"kind": "other", "unchanged": True}, {"kind": "other", "unchanged": False},
                           {"kind": "neighbour", "unchanged": True}, {"kind": "same_subject", "unchanged": False}],
         "image_locality": [{"case_id": "p1", "pre": _v(True), "post": _v(True)},
                            {"case_id": "p2", "pre": _v(True), "post": _v(False)},
                            {"case_id": "p3", "pre": _v(False), "post": _v(True)}]},
    ]


RESOLVED = {"config": {"model": "m", "editor": "e", "protocol": "batch", "judge": "j", "compose": "replace",
                       "seed": 0, "bootstrap": 500}, "batches": [["c1", "c2", "c3"]], "case_ids": ["c1", "c2", "c3"]}


def test_table_by_hand():
    t = build_table(_entries(), RESOLVED)
    color, overall = t["main"]["color"], t["main"]["overall"]
    assert color["n"] == 2 and overall["n"] == 3
    assert color["eff"]["rate"] == 1.0 and overall["eff"]["k"] == 2
    assert color["reason"]["rate"] == 0.5
    # the judge error stays in the denominator and is counted
    assert color["vqa_direct"] == {**color["vqa_direct"], "k": 1, "n": 2, "judge_errors": 1, "failures": 0}
    # a reasoning without caption is a reasoning-VQA miss and a failure
    assert color["vqa_reasoning"]["k"] == 1 and color["vqa_reasoning"]["failures"] == 1
    assert t["main"]["relation"]["pre_vqa"]["rate"] == 0.0
    assert t["main"]["attribute"]["n"] == 2 and "relation" in t["main"]
    st2 = t["stages"]["stage_2"]
    assert st2["vqa_direct"]["failures"] == 1 and st2["vqa_direct"]["k"] == 0 and st2["eff"]["rate"] == 0.5
    assert t["stages"]["stage_n"]["n"] == 2
    loc = t["locality"]
    assert loc["text"]["k"] == 2 and loc["text"]["n"] == 3  # same-subject probes are reported apart
    assert loc["text_same_subject"]["rate"] == 0.0
    assert loc["image"]["n"] == 2 and loc["image"]["rate"] == 0.5  # only probes correct before the edit
    # the pre-edit judgement against the new value: its judge error in its column and in the totals
    assert t["main"]["relation"]["pre_vqa_target"]["judge_errors"] == 1
    assert t["counts"] == {"guard_failures": 0, "judge_errors": 2, "generation_failures": 1,
                           "judge_errors_by_judgement": {"vqa_direct": 1, "vqa_reasoning": 0, "pre_vqa": 0,
                                                         "pre_vqa_target": 1},
                           "reasoning_failures": {"no caption in the reasoning": 1}}
    for b in (color, overall):
        for m in ("eff", "reason", "vqa_direct"):
            lo, hi = b[m]["ci"]
            assert lo <= b[m]["rate"] <= hi
    assert build_table(_entries(), RESOLVED) == t  # seeded: the table is a function of the ledger
    md, csv = render_markdown(t), render_csv(t)
    assert "| attribute | color | 2 | 100.0 [100.0, 100.0] | 50.0" in md
    assert "main,overall,all,vqa_direct,0.6667,2,3," in csv


def test_bootstrap_case_resampling():
    assert bootstrap_rate(np.ones(5), None, n_boot=100, seed=0) == [1.0, 1.0]
    assert bootstrap_rate(np.zeros(0), None, n_boot=100, seed=0) is None
    # two cases: one all-pass with 3 stages, one all-fail with 1 stage -> rates {1, 0, 0.75}
    ci = bootstrap_rate(np.array([1, 1, 1, 0]), np.array(["a", "a", "a", "b"]), n_boot=2000, seed=0)
    assert ci[0] == 0.0 and ci[1] == 1.0


def test_shipped_gpu_configs_parse(tmp_path):
    """benchmark/configs/*.toml name only known settings and valid values (paths are placeholders)."""
    from pathlib import Path

    from unike_interp.bench.spec import RunSpec

    files = sorted((Path(__file__).resolve().parents[1] / "benchmark" / "configs").glob("*.toml"))
    assert {f.stem for f in files} >= {"janus-pro-7b", "lumina2", "sana", "qwenimage"}
    for f in files:
        cfg = RunSpec(**RunSpec.fields_from_file(f))
        assert cfg.cases is None and cfg.device == "cuda" and cfg.model.split(":")[0] in f.stem.replace("-pro-7b", "")
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "toy-direct"\nmodle = 1\n')
    with pytest.raises(ValueError, match=r"bad.toml: unknown setting\(s\) modle"):
        RunSpec.fields_from_file(bad)
    bad.write_text('model = "toy-direct"\n[model_options]\ndevice_mapp = "auto"\n')
    with pytest.raises(ValueError, match="model_options: unknown key"):
        RunSpec(**RunSpec.fields_from_file(bad))
    bad.write_text("model = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        RunSpec.fields_from_file(bad)


def test_ledger_entries_round_trip_and_bad_lines_are_named():
    from unike_interp.bench.entries import CaseEntry, DeltaRef, EntryError, PointEntry, parse_entry

    case, point = _entries()[0], _entries()[-1]
    assert isinstance(case, CaseEntry) and isinstance(point, PointEntry)
    assert parse_entry(case.to_json()) == case and case.to_json()["v"] == 1
    assert case.succeeded("stage_1", "direct") and not case.succeeded("stage_3", "direct")
    stored = PointEntry(2, ["c1"], delta=DeltaRef("deltas/point_0002", "ab" * 32))
    assert parse_entry(stored.to_json()) == stored
    with pytest.raises(EntryError, match="ledger.jsonl entry 4: case entry lacks subject, batch"):
        parse_entry({"type": "case", "case_id": "x", "category": "color", "source": "attribute", "stages": {}},
                    "ledger.jsonl entry 4")
    with pytest.raises(EntryError, match="neither 'case' nor 'point'"):
        parse_entry({"type": "cas"})
    with pytest.raises(EntryError, match="newer"):
        parse_entry({**stored.to_json(), "v": 99})
    with pytest.raises(KeyError, match="image must be one of"):
        case.verdict("stage_1", "reasoning")


def test_run_folder_refuses_what_it_cannot_resume(tmp_path):
    import json

    from unike_interp.bench.run_folder import RunFolder, RunFolderError

    folder = RunFolder(tmp_path / "run")
    resolved = {"config": {"model": "m", "device": "cpu"}, "batches": [["c1"]]}
    folder.write_resolved(resolved, resume=False)
    folder.ledger_path.write_text('{"type": "point", "batch": 0, "cases": ["c1"]}\n')
    with pytest.raises(RunFolderError, match="--resume"):
        folder.write_resolved(resolved, resume=False)
    folder.write_resolved({**resolved, "config": {"model": "m", "device": "cuda"}}, resume=True)  # device may change
    with pytest.raises(RunFolderError, match="differs in: model"):
        folder.write_resolved({**resolved, "config": {"model": "n", "device": "cpu"}}, resume=True)
    old = json.loads(folder.config_path.read_text())
    folder.config_path.write_text(json.dumps({**old, "format": "unike-bench-run/1"}))
    with pytest.raises(RunFolderError, match="format 'unike-bench-run/1'"):
        folder.write_resolved(resolved, resume=True)
    assert folder.table_path("json") == folder.path / "table.json"
    assert RunFolder.analysis_file(folder.analysis_dir, "stats").name == "stats.json"


def test_pre_groups_gather_small_batches_and_keep_large_ones():
    from unike_interp.bench.pipeline import pre_groups

    single = [[f"c{i}"] for i in range(19)]
    assert pre_groups(single, False, 8) == [list(range(0, 8)), list(range(8, 16)), [16, 17, 18]]
    mixed = [["a"] * 3, ["b"] * 5, ["c"] * 12, ["d"] * 2, ["e"] * 6, ["f"]]
    assert pre_groups(mixed, False, 8) == [[0, 1], [2], [3, 4], [5]]  # never more than 8 cases, never reordered
    assert pre_groups(mixed, True, 8) == [[0, 1, 2, 3, 4, 5]]  # a sequence is measured once, before it starts
    assert pre_groups(single, False, 1) == [[k] for k in range(19)]  # --pre-group 1: each case alone


def test_resume_without_flags_takes_the_runs_settings_but_never_grants_remote_code(tmp_path, capsys):
    from unike_interp.bench.run_folder import RUN_FORMAT
    from unike_interp.bench.spec import RunSpec
    from unike_interp.cli import _stored_spec, build_parser, main

    run = tmp_path / "run"
    run.mkdir()
    stored = RunSpec(model="toy-queries", editor="rome", cases=7, seed=3, hparams={"v_steps": 5})
    (run / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "config": stored.to_dict()}))
    parse = build_parser().parse_args
    assert _stored_spec(parse(["bench", str(run), "--resume"])) == stored
    moved = _stored_spec(parse(["bench", str(run), "--resume", "--device", "cpu"]))  # where it runs may change
    assert moved.device == "cpu" and moved.model == "toy-queries" and moved.cases == 7
    assert _stored_spec(parse(["bench", str(run), "--resume", "--cases", "9"])) is None  # settings given: checked
    remote = RunSpec(model="toy-direct", model_options={"trust_remote_code": True})
    (run / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "config": remote.to_dict()}))
    (run / "ledger.jsonl").write_text("{}\n")
    assert main(["bench", str(run), "--resume"]) == 2
    assert "--trust-remote-code" in capsys.readouterr().err
