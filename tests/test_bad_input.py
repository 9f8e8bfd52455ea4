"""Bad input never ends in a traceback: every command, each class of bad input, one table.

Each row runs ``unike ...`` in-process and asserts a non-zero exit, exactly one ``unike: error:``
line on stderr naming what is wrong, no traceback, and nothing half-written left behind.
"""

import json
import os
import stat

import pytest

from unike_interp.cli import main

FAST = ["--set", "stats_samples=3000", "--set", "n_prefixes=2", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "dir").mkdir()
    (d / "empty.json").write_text("")
    (d / "empty_list.json").write_text("[]")
    (d / "dict.json").write_text('{"a": 1}')
    (d / "notjson.json").write_text("[{,]")
    (d / "latin1.json").write_bytes('[{"subject": "caf\xe9"}]'.encode("latin-1"))
    (d / "a_file").write_text("x")
    real = [{"case_id": "r1", "subject": "stop sign", "category": "color", "source": "attribute",
             "stage_1": {"question": "What color is the stop sign?", "prompt": "The color of the stop sign is",
                         "gt": "red", "gt_target": "blue", "image_prompt": "a stop sign",
                         "visual_target": "a blue stop sign", "vqa_question": "What color is the sign?"}}]
    (d / "real.json").write_text(json.dumps(real))
    (d / "bad.toml").write_text("model = [")
    (d / "unknown.toml").write_text('modle = "toy-direct"\n')
    (d / "cases_str.toml").write_text('cases = "ten"\n')
    (d / "hp.txt").write_text("v_steps = 3\n")
    (d / "hp_type.toml").write_text('editor = "rome"\nv_steps = 2.5\n')
    ro = d / "readonly"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    newer = d / "newer"  # a run folder written by a later version
    newer.mkdir()
    (newer / "config.json").write_text(json.dumps({"format": "unike-run/99", "config": {}}))
    (newer / "ledger.jsonl").write_text('{"type": "case", "v": 99}\n')
    notrun = d / "notrun"
    notrun.mkdir()
    (notrun / "x.txt").write_text("not a run")
    return d


# (id, argv with {d} for the fixture folder, a fragment the error line must hold)
CASES = [
    # data validate
    ("validate-missing", ["data", "validate", "{d}/nope.json"], "no such file"),
    ("validate-dir", ["data", "validate", "{d}/dir"], "is a folder"),
    ("validate-empty-file", ["data", "validate", "{d}/empty.json"], "empty"),
    ("validate-not-json", ["data", "validate", "{d}/notjson.json"], "not valid JSON"),
    ("validate-not-utf8", ["data", "validate", "{d}/latin1.json"], "not UTF-8"),
    ("validate-dict", ["data", "validate", "{d}/dict.json"], "expected a JSON array"),
    ("validate-empty-list", ["data", "validate", "{d}/empty_list.json"], "no records"),
    ("validate-no-arg", ["data", "validate"], "path"),
    # data synth
    ("synth-zero-subjects", ["data", "synth", "--out", "{d}/s.json", "--subjects", "0"], "--subjects"),
    ("synth-negative", ["data", "synth", "--out", "{d}/s.json", "--subjects", "-4"], "--subjects"),
    ("synth-not-a-number", ["data", "synth", "--out", "{d}/s.json", "--subjects", "many"], "invalid int"),
    ("synth-fraction", ["data", "synth", "--out", "{d}/s.json", "--text-only-fraction", "1.5"], "fraction"),
    ("synth-out-dir", ["data", "synth", "--out", "{d}/dir"], "is a folder"),
    ("synth-out-readonly", ["data", "synth", "--out", "{d}/readonly/s.json"], "cannot write"),
    ("synth-out-under-file", ["data", "synth", "--out", "{d}/a_file/s.json"], "cannot write"),
    ("synth-no-out", ["data", "synth"], "--out"),
    # world
    ("show-zero-subjects", ["world", "show", "--out", "{d}/w.png", "--subjects", "0"], "--subjects"),
    ("show-zero-scale", ["world", "show", "--out", "{d}/w.png", "--scale", "0"], "--scale"),
    ("show-out-readonly", ["world", "show", "--out", "{d}/readonly/w.png"], "cannot write"),
    ("show-out-dir", ["world", "show", "--out", "{d}/dir"], "is a folder"),
    ("build-bad-set", ["world", "build", "--out", "{d}/wb", "--set", "generator.stepz=3"], "stepz"),
    ("build-set-type", ["world", "build", "--out", "{d}/wb", "--set", "generator.steps=abc"], "generator.steps"),
    ("build-missing-config", ["world", "build", "--out", "{d}/wb", "--config", "{d}/nope.json"], "nope.json"),
    ("build-bad-pathway", ["world", "build", "--out", "{d}/wb", "--pathways", "toy-nothing"], "toy-nothing"),
    ("build-out-file", ["world", "build", "--out", "{d}/a_file", "--quick"], "a_file"),
    ("eval-missing-world", ["world", "eval", "--world", "{d}/nope"], "nope"),
    ("eval-world-file", ["world", "eval", "--world", "{d}/a_file"], "a_file"),
    ("eval-no-cuda", ["world", "eval", "--device", "cuda:7"], "CUDA"),
    ("world-unknown-sub", ["world", "paint"], "invalid choice"),
    # models
    ("models-unknown-flag", ["models", "--bogus"], "unrecognized"),
    # edit
    ("edit-unknown-model", ["edit", "--model", "toy-nothing", *FAST], "unknown model"),
    ("edit-unknown-editor", ["edit", "--editor", "grace", *FAST], "unknown editor"),
    ("edit-set-float-for-int", ["edit", "--set", "v_steps=2.5", *FAST], "v_steps"),
    ("edit-set-str-for-float", ["edit", "--set", "v_lr=abc", *FAST], "v_lr"),
    ("edit-set-int-for-list", ["edit", "--set", "layers=1", *FAST], "layers"),
    ("edit-set-bool", ["edit", "--set", "v_stop_per_request=maybe", *FAST], "v_stop_per_request"),
    ("edit-set-unknown", ["edit", "--set", "v_stepz=3", *FAST], "v_stepz"),
    ("edit-set-no-equals", ["edit", "--set", "v_steps", *FAST], "KEY=VALUE"),
    ("edit-set-negative", ["edit", "--set", "v_steps=-3", *FAST], "v_steps"),
    ("edit-layer-out-of-range", ["edit", "--set", "layers=[99]", *FAST], "99"),
    ("edit-cases-zero", ["edit", "--cases", "0", *FAST], "cases"),
    ("edit-cases-negative", ["edit", "--cases", "-2", *FAST], "cases"),
    ("edit-batch-zero", ["edit", "--batch-size", "0", *FAST], "batch_size"),
    ("edit-data-missing", ["edit", "--data", "{d}/nope.json", *FAST], "no such file"),
    ("edit-data-dir", ["edit", "--data", "{d}/dir", *FAST], "is a folder"),
    ("edit-data-empty-list", ["edit", "--data", "{d}/empty_list.json", *FAST], "no records"),
    ("edit-data-dict", ["edit", "--data", "{d}/dict.json", *FAST], "expected a JSON array"),
    ("edit-data-latin1", ["edit", "--data", "{d}/latin1.json", *FAST], "not UTF-8"),
    ("edit-data-foreign", ["edit", "--data", "{d}/real.json", *FAST], "stop sign"),
    ("edit-out-file", ["edit", "--out", "{d}/a_file", *FAST], "a_file"),
    ("edit-out-readonly", ["edit", "--out", "{d}/readonly/e", "--save-deltas", *FAST], "cannot write"),
    ("edit-out-under-file", ["edit", "--out", "{d}/a_file/e", "--save-deltas", *FAST], "cannot write"),
    ("edit-save-deltas-no-out", ["edit", "--save-deltas", *FAST], "--out"),
    ("edit-hparams-missing", ["edit", "--hparams", "{d}/nope.toml", *FAST], "nope.toml"),
    ("edit-hparams-suffix", ["edit", "--hparams", "{d}/hp.txt", *FAST], "hp.txt"),
    ("edit-hparams-type", ["edit", "--hparams", "{d}/hp_type.toml", *FAST], "v_steps"),
    ("edit-config-missing", ["edit", "--config", "{d}/nope.toml", *FAST], "nope.toml"),
    ("edit-config-bad-toml", ["edit", "--config", "{d}/bad.toml", *FAST], "not valid TOML"),
    ("edit-config-unknown", ["edit", "--config", "{d}/unknown.toml", *FAST], "modle"),
    ("edit-config-type", ["edit", "--config", "{d}/cases_str.toml", *FAST], "cases"),
    ("edit-dtype", ["edit", "--dtype", "float8", *FAST], "float8"),
    ("edit-no-cuda", ["edit", "--no-progress", "--device", "cuda:3"], "CUDA"),
    ("edit-huge-locality", ["edit", "--text-locality", "-1", *FAST], "text_locality_probes"),
    # bench
    ("bench-out-file", ["bench", "{d}/a_file", *FAST], "a_file"),
    ("bench-out-readonly", ["bench", "{d}/readonly/run", *FAST], "cannot write"),
    ("bench-out-under-file", ["bench", "{d}/a_file/run", *FAST], "cannot write"),
    ("bench-data-empty-list", ["bench", "{d}/b1", "--data", "{d}/empty_list.json", *FAST], "no records"),
    ("bench-data-dir", ["bench", "{d}/b2", "--data", "{d}/dir", *FAST], "is a folder"),
    ("bench-data-foreign", ["bench", "{d}/b3", "--data", "{d}/real.json", *FAST], "stop sign"),
    ("bench-resume-nothing", ["bench", "{d}/b4", "--resume", *FAST], "nothing to resume"),
    ("bench-judge", ["bench", "{d}/b5", "--judge", "oracle", *FAST], "oracle"),
    ("bench-compose", ["bench", "{d}/b6", "--compose", "append", *FAST], "invalid choice"),
    ("bench-api-key", ["bench", "{d}/b7", "--judge-option", "api_key=sk-123", *FAST], "api_key"),
    ("bench-workers-zero", ["bench", "{d}/b8", "--workers", "0", *FAST], "--workers"),
    ("bench-set-type", ["bench", "{d}/b9", "--set", "v_steps=2.5", *FAST], "v_steps"),
    ("bench-bootstrap", ["bench", "{d}/b10", "--bootstrap", "-5", *FAST], "bootstrap"),
    ("bench-cases-word", ["bench", "{d}/b11", "--cases", "ten", *FAST], "invalid int"),
    ("bench-guidance-word", ["bench", "{d}/b12", "--guidance", "strong", *FAST], "invalid float"),
    ("bench-seed-negative", ["bench", "{d}/b13", "--seed", "-1", *FAST], "seed"),
    ("bench-sample-steps", ["bench", "{d}/b14", "--sample-steps", "0", *FAST], "sample_steps"),
    ("bench-guidance-negative", ["bench", "{d}/b15", "--guidance", "-2", *FAST], "guidance"),
    ("bench-resume-newer", ["bench", "{d}/newer", "--resume", *FAST], "format"),
    ("bench-huge-batch-zero", ["bench", "{d}/b16", "--batch-size", "-99999999999999999999", *FAST], "batch_size"),
    # analyze
    ("bench-out-flag", ["bench", "--out", "{d}/b17", *FAST], "first argument"),
    ("analyze-newer-run", ["analyze", "{d}/newer"], "format"),
    ("analyze-nothing", ["analyze", "--no-progress"], "RUN"),
    ("analyze-run-missing", ["analyze", "{d}/nope"], "nope"),
    ("analyze-run-file", ["analyze", "{d}/a_file"], "a_file"),
    ("analyze-not-a-run", ["analyze", "{d}/notrun"], "notrun"),
    ("analyze-trace-negative", ["analyze", "{d}/notrun", "--trace-cases", "-1"], "--trace-cases"),
    # report
    ("report-missing", ["report", "{d}/nope"], "nope"),
    ("report-file", ["report", "{d}/a_file"], "a_file"),
    ("report-not-a-run", ["report", "{d}/notrun"], "notrun"),
    ("report-no-run", ["report"], "RUN"),
    ("report-newer-run", ["report", "{d}/newer"], "format"),
    ("report-one-bad-of-two", ["report", "{d}/newer", "{d}/nope"], "format"),
    # the command line itself
    ("no-such-command", ["paint"], "invalid choice"),
    ("quiet-and-verbose", ["models", "-q", "-v"], "not both"),
]


@pytest.mark.parametrize("name,argv,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(name, argv, fragment, files, capsys, monkeypatch, tmp_path):
    if "readonly" in " ".join(argv) and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the under-a-file rows test the same check)")
    monkeypatch.setenv("UNIKE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{d}", str(files)) for a in argv]
    before = sorted(p.relative_to(files) for p in files.rglob("*"))
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc not in (0, None), f"{name}: exit {rc}"
    assert "Traceback" not in err, f"{name}: a traceback\n{err}"
    errors = [line for line in lines if line.startswith("unike: error:")]
    assert len(errors) == 1, f"{name}: expected one 'unike: error:' line, got\n{err}"
    assert fragment.lower() in errors[0].lower(), f"{name}: {errors[0]!r} does not mention {fragment!r}"
    after = sorted(p.relative_to(files) for p in files.rglob("*"))
    assert [p for p in after if p not in before and p.suffix == ".tmp"] == [], f"{name}: left a half-written file"


def test_the_table_is_wide(files):
    commands = {c[1][0] for c in CASES}
    assert len(CASES) >= 60 and {"data", "edit", "bench", "analyze", "report", "world", "models"} <= commands


def test_an_unexpected_error_points_to_debug(monkeypatch, capsys):
    import unike_interp.cli as cli

    def boom(args):
        raise RuntimeError("something no one foresaw")

    monkeypatch.setattr(cli, "cmd_models", boom)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("unike: error:") == 1 and "--debug" in err
    assert "something no one foresaw" in err
    with pytest.raises(RuntimeError):
        main(["models", "--debug"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_readonly_folder_is_really_read_only(files):
    with pytest.raises(PermissionError):
        (files / "readonly" / "probe").write_text("x")
