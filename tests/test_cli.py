import copy
import json
import subprocess
import sys

import pytest
from PIL import Image

from unike_interp.cli import main


def _last_json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1]), out


def test_validate_mixed_file(good_record, write_json, capsys):
    bad = copy.deepcopy(good_record)
    del bad["stage_1"]["gt"]
    path = write_json([good_record, 42, bad, dict(good_record, source="??")])
    rc = main(["data", "validate", str(path), "--json"])
    summary, lines = _last_json(capsys)
    assert rc == 1
    assert summary["valid"] == 1 and summary["invalid"] == 3 and summary["total"] == 4
    assert sorted({p["index"] for p in summary["problems"]}) == [1, 2, 3]
    assert any("record 2" in line and "stage_1.gt" in line for line in lines)


def test_validate_all_good_exit_zero(good_record, write_json, capsys):
    rc = main(["data", "validate", str(write_json([good_record])), "--json"])
    summary, _ = _last_json(capsys)
    assert rc == 0 and summary == {"total": 1, "valid": 1, "invalid": 0, "problems": []}


def test_validate_strict(good_record, write_json, capsys):
    rc = main(["data", "validate", str(write_json([good_record, 42])), "--strict", "--json"])
    summary, _ = _last_json(capsys)
    assert rc == 1 and summary["problems"][0]["index"] == 1


def test_validate_unreadable_file_is_a_usage_error(tmp_path, capsys):
    p = tmp_path / "x.json"
    p.write_text("{")
    assert main(["data", "validate", str(p)]) == 2
    assert "x.json" in capsys.readouterr().err


def test_synth_json_and_file(tmp_path, capsys):
    out = tmp_path / "w.json"
    rc = main(["data", "synth", "--out", str(out), "--seed", "3", "--json", "--world-out", str(tmp_path / "world.json")])
    summary, _ = _last_json(capsys)
    assert rc == 0
    assert summary["subjects"] >= 300 and summary["records"] == len(json.loads(out.read_text()))
    assert sum(summary["per_source"].values()) == summary["records"]
    assert (tmp_path / "world.json").exists()
    # the written file validates clean through the CLI
    assert main(["data", "validate", str(out)]) == 0


def test_world_show_writes_png(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    rc = main(["world", "show", "--out", str(out), "--subjects", "2", "--json"])
    summary, _ = _last_json(capsys)
    assert rc == 0 and summary["images"] == 8
    assert Image.open(out).size == tuple(summary["size"])


def test_demo_without_a_trained_world(tmp_path, capsys):
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--world", str(tmp_path / "no_world"), "--json"])
    summary, lines = _last_json(capsys)
    assert rc == 0 and summary["invalid"] == 0 and summary["records"] >= 300
    assert summary["world_eval"] is None and any("skipping" in line for line in lines)
    assert (tmp_path / "demo" / "contact_sheet.png").exists()


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "unike_interp.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "unike-interp" in proc.stdout


def test_group_without_subcommand_shows_help(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["data"])
    assert "validate" in capsys.readouterr().out


def test_world_build_config_overrides(tmp_path):
    import pytest

    from unike_interp.world.build import BuildConfig, load_build_config as _load_build_config
    from unike_interp.world.build import override_build_config as _override_build_config
    from unike_interp.world.build import stage_keys

    base = BuildConfig()
    cfg = _override_build_config(base, {"generator.steps": 123, "n_explicit": 7})
    assert cfg.generator.steps == 123 and cfg.n_explicit == 7 and base.generator.steps != 123
    keys, new = stage_keys(base), stage_keys(cfg)
    # Only the generator stages depend on these settings: the LM and verifier stay built.
    assert keys["lm"] == new["lm"] and keys["verifier"] == new["verifier"]
    assert keys["toy-direct"] != new["toy-direct"]
    with pytest.raises(ValueError, match="unknown field 'stepz'"):
        _override_build_config(base, {"generator.stepz": 1})
    with pytest.raises(ValueError, match="not a config section"):
        _override_build_config(base, {"seed.x": 1})
    # A world's build.json round-trips to the configuration that made it.
    path = tmp_path / "build.json"
    path.write_text(json.dumps({"config": cfg.to_dict(), "seconds": {}}))
    assert _load_build_config(str(path)) == cfg
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read build config"):
        _load_build_config(str(path))


def test_demo_runs_the_benchmark(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNIKE_CACHE_DIR", str(tmp_path / "cache"))
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--no-world-eval", "--models", "toy-direct",
               "--editor", "rome", "--cases", "2", "--no-progress", "--json"])
    summary, lines = _last_json(capsys)
    assert rc == 0 and set(summary["bench"]) == {"toy-direct"}
    overall = summary["bench"]["toy-direct"]["overall"]
    assert overall["n"] == 2 and overall["vqa_direct"]["n"] == 2
    table = (tmp_path / "demo" / "bench" / "summary.md").read_text()
    assert "| toy-direct | rome | 2 |" in table
    assert (tmp_path / "demo" / "bench" / "toy-direct-rome" / "ledger.jsonl").exists()


def test_models_lists_the_synthworld_variants(capsys):
    assert main(["models", "--json"]) == 0
    models, lines = _last_json(capsys)
    assert {"toy-direct", "toy-queries", "toy-bottleneck"} <= set(models)
    assert any(line.startswith("toy-direct") for line in lines)


def test_bench_config_file_overlaid_by_given_flags(tmp_path):
    from unike_interp.cli import build_parser, spec_from_args

    def bench_config_from_args(args):
        return spec_from_args("bench", args)

    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "lumina2:/models/L"\neditor = "rome"\nprotocol = "single"\ncases = "all"\n'
                   'dtype = "bfloat16"\n[hparams]\nstats_samples = 5000\n[model_options.pipeline_kwargs]\nheight = 1024\n')
    parse = lambda *a: bench_config_from_args(build_parser().parse_args(["bench", "--config", str(cfg), *a]))  # noqa: E731
    c = parse()
    assert (c.model, c.editor, c.protocol, c.cases, c.dtype) == ("lumina2:/models/L", "rome", "single", None, "bfloat16")
    assert c.hparams == {"stats_samples": 5000} and c.model_options == {"pipeline_kwargs": {"height": 1024}}
    assert c.device == "auto" and c.seed == 0  # unset in the file: RunSpec's defaults
    c = parse("--cases", "3", "--editor", "memit", "--set", "v_steps=10", "--pipeline-option", "width=512",
              "--device-map", "auto", "--dtype", "float32")
    assert (c.cases, c.editor, c.dtype) == (3, "memit", "float32")
    assert c.hparams == {"stats_samples": 5000, "v_steps": 10}
    assert c.model_options == {"pipeline_kwargs": {"height": 1024, "width": 512}, "device_map": "auto"}
    # without a file, flags alone (the defaults included) make the config
    c = bench_config_from_args(build_parser().parse_args(["bench", "--cases", "5"]))
    assert (c.model, c.cases, c.editor, c.model_options) == ("toy-direct", 5, "memit", {})
    cfg.write_text('model = "toy-direct"\nmodel_optoins = {}\n')
    with pytest.raises(ValueError, match="unknown setting"):
        parse()
    assert main(["bench", "--config", str(cfg)]) == 2  # the command says so and exits 2


def test_run_flags_come_from_the_runspec(capsys):
    import dataclasses

    from unike_interp.bench.spec import RunSpec, command_defaults
    from unike_interp.cli import build_parser, spec_from_args

    parser = build_parser()
    for command in ("edit", "bench"):
        sub = parser._subparsers._group_actions[0].choices[command]
        dests = {a.dest for a in sub._actions}
        offered = {f.name for f in dataclasses.fields(RunSpec)
                   if command in f.metadata["commands"] and f.metadata["flags"]}
        assert offered <= dests, f"{command}: RunSpec fields without a flag: {offered - dests}"
        spec = spec_from_args(command, parser.parse_args([command]))
        assert spec == RunSpec(**command_defaults(command))  # no flag given: the command's defaults, nothing else
    edit = spec_from_args("edit", parser.parse_args(["edit"]))
    assert (edit.editor, edit.protocol, edit.text_locality_probes) == ("rome", "single", 256)
    bench = spec_from_args("bench", parser.parse_args(["bench", "--max-locality", "9", "--no-store-deltas"]))
    assert (bench.editor, bench.text_locality_probes, bench.store_deltas) == ("memit", 9, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["edit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: 256)" in help_text and "(default: rome)" in help_text
