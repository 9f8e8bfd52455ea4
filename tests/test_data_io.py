import copy
import json

import pytest

from unike_interp.data import (
    DataFileError,
    DataValidationError,
    Record,
    load_unike,
    validate_records,
    write_unike,
)


def _mixed(good):
    """A list mixing good records and one bad record of each kind, with the bad indices."""
    bad = {}
    items = [copy.deepcopy(good)]  # 0 good
    items.append("not an object")  # 1
    bad[1] = "not an object"
    r = copy.deepcopy(good); del r["subject"]; items.append(r)  # 2
    bad[2] = "missing field"
    r = copy.deepcopy(good); r["stage_1"]["gt"] = "  "; items.append(r)  # 3
    bad[3] = "empty"
    r = copy.deepcopy(good); r["source"] = "visual"; items.append(r)  # 4
    bad[4] = "unknown source"
    r = copy.deepcopy(good); r["category"] = "flavour"; items.append(r)  # 5
    bad[5] = "unknown category"
    r = copy.deepcopy(good); r["stage_1"] = ["a", "list"]; items.append(r)  # 6
    bad[6] = "not an object"
    r = copy.deepcopy(good); del r["stage_1"]; items.append(r)  # 7
    bad[7] = "no stage_1"
    r = copy.deepcopy(good); r["stage_1"]["prompt"] = "The color of the thing is"; items.append(r)  # 8
    bad[8] = "does not occur in the cloze prompt"
    r = copy.deepcopy(good); r["stage_1"]["gt_target"] = "Red"; items.append(r)  # 9
    bad[9] = "equals gt"
    r = copy.deepcopy(good); r["stage_3"] = copy.deepcopy(good["stage_1"]); items.append(r)  # 10
    bad[10] = "not contiguous"
    r = copy.deepcopy(good); r["category"] = "location"; items.append(r)  # 11: relation category on attribute
    bad[11] = "relation category"
    r = copy.deepcopy(good); r["subject"] = "Ünïcode {x}"; r["stage_1"]["prompt"] = "The color of the ÜNÏCODE {X} is"
    items.append(r)  # 12 good (unicode + braces + case)
    r = copy.deepcopy(good); r["subject"] = "a+b (c)?"; r["stage_1"]["prompt"] = "Is A+B (C)? red? The a+b (c)? is"
    items.append(r)  # 13 good (regex metacharacters)
    return items, bad


def test_mixed_file_reports_every_bad_record_and_keeps_every_good(good_record, write_json):
    items, bad = _mixed(good_record)
    res = load_unike(write_json(items))
    assert res.total == len(items)
    assert res.invalid_indices == sorted(bad)
    assert [r.subject for r in res.records] == ["zib", "Ünïcode {x}", "a+b (c)?"]
    for idx, needle in bad.items():
        reasons = [p.reason for p in res.problems if p.index == idx]
        assert any(needle in reason for reason in reasons), (idx, reasons)
    s = res.summary()
    assert s["valid"] == 3 and s["invalid"] == len(bad) and s["total"] == len(items)
    assert all({"index", "reason"} <= set(p) for p in s["problems"])


def test_problem_names_field(good_record):
    r = copy.deepcopy(good_record)
    r["stage_1"]["vqa_question"] = ""
    del r["stage_1"]["image_prompt"]
    _, problems = validate_records([r])
    fields = {p.field for p in problems}
    assert fields == {"stage_1.vqa_question", "stage_1.image_prompt"}
    assert "record 0" in str(problems[0])


def test_strict_raises_on_first_problem(good_record, write_json):
    items, bad = _mixed(good_record)
    with pytest.raises(DataValidationError) as err:
        load_unike(write_json(items), strict=True)
    assert err.value.problem.index == min(bad)
    assert "record 1" in str(err.value)


def test_duplicate_case_id_is_a_problem_of_the_later_record(good_record):
    a = dict(copy.deepcopy(good_record), case_id="c1")
    b = dict(copy.deepcopy(good_record), case_id="c1")
    recs, problems = validate_records([a, b])
    assert len(recs) == 1 and [p.index for p in problems] == [1]
    assert "duplicate case_id" in problems[0].reason


def test_default_case_ids_and_extra_keys(good_record):
    r = dict(copy.deepcopy(good_record), split="text-only", notes={"k": [1, 2]})
    recs, problems = validate_records([good_record, r])
    assert not problems
    assert [x.case_id for x in recs] == ["case-00000", "case-00001"]
    assert recs[1].extra == {"split": "text-only", "notes": {"k": [1, 2]}}


def test_round_trip_load_write_load(good_record, write_json, tmp_path):
    items, _ = _mixed(good_record)
    first = load_unike(write_json(items))
    out = write_unike(first.records, tmp_path / "out" / "again.json")
    second = load_unike(out)
    assert second.ok
    assert second.records == first.records
    # and the text survives byte-for-byte in a second round
    third_path = write_unike(second.records, tmp_path / "third.json")
    assert third_path.read_bytes() == out.read_bytes()
    assert "Ünïcode" in out.read_text(encoding="utf-8")


def test_record_api(good_record):
    recs, _ = validate_records([good_record])
    rec: Record = recs[0]
    assert rec.stage(1) is rec.stage_1 and rec.stage("stage_1") is rec.stage_1
    with pytest.raises(KeyError, match="has no stage_2"):
        rec.stage(2)


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not valid JSON"), ('{"a": 1}', "expected a JSON array"), ('"text"', "expected a JSON array")],
)
def test_unreadable_files_name_the_file(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(DataFileError, match=message) as err:
        load_unike(p)
    assert "bad.json" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_unike(tmp_path / "absent.json")


def test_records_wrapper_object_is_accepted(good_record, write_json):
    res = load_unike(write_json({"records": [good_record]}))
    assert res.ok and len(res.records) == 1
