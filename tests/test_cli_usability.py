"""What a new user meets: every option documented with its default, the protocol that fits the
editor, progress counted in cases, runs side by side, models loaded for inference, the interp API."""

import argparse
import shutil

import pytest
import torch

from unike_interp.bench.spec import RunSpec
from unike_interp.cli import build_parser, main
from unike_interp.progress import SHARES, CaseProgress

TINY = ["--cases", "1", "--image-locality", "0", "--text-locality", "2", "--bootstrap", "10", "--sample-steps", "4",
        "--set", "stats_samples=3000", "--set", "n_prefixes=2", "--device", "cpu"]


def _commands(parser, path=()):
    """(command path, its parser) for every command and subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_option_has_help_and_shows_its_default(capsys):
    commands = list(_commands(build_parser()))
    assert len(commands) >= 12
    for path, sub in commands:
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0, path
        text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"unike {' '.join(path)} {name}: no help text"
            valued = action.nargs != 0 and action.default not in (None, False, argparse.SUPPRESS)
            if valued:  # a value the user did not give: --help says which
                assert "".join(f"(default: {action.default})".split()) in text, f"unike {' '.join(path)} {name}: default not shown"


def test_the_protocol_follows_the_editor_and_a_misfit_is_said():
    assert [RunSpec(editor=e).protocol for e in ("rome", "ft", "memit", "pmet", "alphaedit")] == [
        "single", "single", "batch", "batch", "sequential"]
    assert RunSpec(editor="memit", protocol="single").protocol == "single"  # given: kept, never changed
    note = RunSpec(editor="rome", protocol="batch").protocol_note()
    assert "one fact at a time" in note and "--protocol single" in note
    assert RunSpec(editor="memit").protocol_note() is None and RunSpec(editor="rome").protocol_note() is None
    from unike_interp.cli import spec_from_args

    parser = build_parser()
    assert spec_from_args("bench", parser.parse_args(["bench", "--editor", "rome"])).protocol == "single"
    assert spec_from_args("edit", parser.parse_args(["edit", "--editor", "alphaedit"])).protocol == "sequential"


def test_case_progress_counts_cases_through_phases():
    with CaseProgress(4, "test", enabled=False) as bar:
        with bar.phase("pre", 4):
            bar.step(0.5)
            assert bar.n == pytest.approx(0.5 * SHARES["pre"] * 4)
            bar.step(5.0)  # never past the phase's share
            assert bar.n == pytest.approx(SHARES["pre"] * 4)
        with bar.phase("edit", 4):
            pass
        with bar.phase("post", 4):
            bar.step(0.25)
        assert bar.n == pytest.approx(4.0)
    assert abs(sum(SHARES.values()) - 1.0) < 1e-9


def test_bench_shows_cases_with_an_eta_and_report_puts_runs_side_by_side(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNIKE_CACHE_DIR", str(tmp_path / "cache"))
    a = tmp_path / "a"
    assert main(["bench", "--editor", "rome", *TINY, str(a)]) == 0
    out, err = capsys.readouterr()
    assert "1.0/1 cases" in err and "<" in err  # the bar counts cases and shows the time left
    assert f"run folder: {a}" in out
    b = tmp_path / "b"  # another editor, aimed at the image too
    assert main(["bench", str(b), "--editor", "memit", "--set", "modality_aware=true", *TINY, "-q"]) == 0
    assert capsys.readouterr().out.startswith(f"run folder: {b}")
    assert main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"{a / 'report.html'}" in out and f"{b / 'table.md'}" in out
    assert "| a | rome | 1 |" in out and "| b | memit | 1 |" in out
    c = tmp_path / "c" / "a"  # the same name in another folder: told apart by its parent
    shutil.copytree(a, c)
    assert main(["report", str(a), str(c)]) == 0
    assert "| c/a | rome | 1 |" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nope")]) == 2


def test_load_model_takes_names_and_loads_for_inference():
    from unike_interp.models import load_model

    ad = load_model("toy-direct", dtype="bfloat16", device="cpu")
    assert ad.dtype == torch.bfloat16 and next(ad.lm.parameters()).dtype == torch.bfloat16
    modules = [v for v in vars(ad).values() if isinstance(v, torch.nn.Module)]
    assert len(modules) >= 2
    for m in modules:
        assert not m.training and not any(p.requires_grad for p in m.parameters())
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        load_model("toy-direct", dtype="float8")


def test_interp_exports_what_a_notebook_needs():
    import unike_interp.interp as interp
    from unike_interp.interp.recorder import Recorder
    from unike_interp.interp.store import ActivationStore

    assert interp.Recorder is Recorder and interp.ActivationStore is ActivationStore
    assert callable(interp.case_statistics) and callable(interp.analyze_run) and len(interp.STATISTICS) > 5
    assert set(interp.__all__) <= set(dir(interp))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        interp.nope  # noqa: B018


def test_quiet_prints_only_where_results_are_and_verbose_logs_steps(tmp_path, capsys, caplog, monkeypatch):
    import logging

    monkeypatch.setenv("UNIKE_CACHE_DIR", str(tmp_path / "cache"))
    edit = ["--cases", "1", "--text-locality", "2", "--set", "stats_samples=3000", "--set", "n_prefixes=2",
            "--device", "cpu"]
    out = tmp_path / "e"
    with caplog.at_level(logging.INFO, logger="unike_interp"):
        assert main(["edit", *edit, "--out", str(out), "-v", "--no-progress"]) == 0
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("unike_interp")]
    assert any(m.startswith("loaded toy-direct on cpu") for m in logged)
    assert any("key statistics of layer(s)" in m and "computed in one pass" in m for m in logged)
    assert any(": edit of 1 case(s) took" in m for m in logged)
    capsys.readouterr()
    assert main(["edit", *edit, "--out", str(tmp_path / "q"), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines() == [f"wrote {tmp_path / 'q' / 'edit_result.json'}"]
    assert captured.err == ""  # no bar, no note, no warning
    assert main(["models", "-q", "-v"]) == 2
