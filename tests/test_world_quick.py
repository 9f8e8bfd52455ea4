"""End to end on the quick world: build -> load -> adapters -> eval (marked slow: ~1-2 minutes)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unike_interp.cli import main
from unike_interp.models import load_model
from unike_interp.world.build import BuildConfig, build_world
from unike_interp.models.synthworld import evaluate_world
from unike_interp.world.store import WorldNotBuiltError, load_world

pytestmark = pytest.mark.slow
VARIANTS = ("toy-direct", "toy-queries", "toy-bottleneck")


def test_build_writes_only_safetensors_and_json(quick_world):
    out, manifest = quick_world
    assert set(manifest["seconds"]) >= {"tokenizer", "lm", "verifier", *VARIANTS}
    files = [p for p in out.rglob("*") if p.is_file()]
    suffixes = {p.suffix for p in files}
    assert suffixes <= {".json", ".safetensors", ""}, suffixes  # "" = DONE markers
    assert not any(p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"} for p in files)
    assert json.loads((out / "build.json").read_text())["config"]["quick"] is True


def test_rebuild_is_a_no_op_and_changed_stage_rebuilds(quick_world, tmp_path):
    import shutil

    out, _ = quick_world
    said = []
    build_world(out, BuildConfig.quick_config(seed=0), progress=False, echo=said.append)
    assert not any(s.endswith("...") for s in said), said  # nothing rebuilt
    # a changed verifier configuration rebuilds the verifier and nothing else
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cfg = BuildConfig.quick_config(seed=0)
    cfg.verifier.steps += 1
    said = []
    build_world(copy, cfg, progress=False, echo=said.append)
    assert [s for s in said if s.endswith("...")] == ["[build] verifier ..."]
    # a changed LM rebuilds the LM and every generator downstream of it
    cfg.lm.epochs = 1
    said = []
    build_world(copy, cfg, progress=False, echo=said.append)
    assert [s for s in said if s.endswith("...")] == [f"[build] {n} ..." for n in ("lm", *VARIANTS)]


@pytest.mark.parametrize("name", VARIANTS)
def test_adapter_contract(quick_world, name):
    out, _ = quick_world
    ad = load_model(name, world_dir=out, device=torch.device("cpu"))
    # module paths from the config
    n = ad.lm.config.num_hidden_layers
    assert ad.num_layers == n and ad.edit_layers and max(ad.edit_layers) < n
    for layer in ad.edit_layers:
        assert isinstance(ad.module(ad.edit_module_template.format(layer)), torch.nn.Linear)
    assert len(ad.text_sites()) == n
    assert len(ad.generator_blocks) == len(ad.generator.transformer_blocks)
    for block in ad.generator_blocks:
        ad.generator.get_submodule(block)
    # conditioning and its index map
    cond = ad.conditioning(["a zib", "two zibs side by side"])
    assert cond.hidden.shape[0] == 2 and cond.hidden.shape[:2] == cond.mask.shape == cond.lm_positions.shape
    # images: shape, dtype, seeded, independent of batch composition
    prompts = [ad.world.records[0].stage_1.image_prompt, ad.world.records[1].stage_1.image_prompt]
    a = ad.generate_images(prompts, seed=3)
    b = ad.generate_images(prompts, seed=3, batch_size=1)
    c = ad.generate_images(prompts, seed=4)
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # batching changes float summation order only
    assert not np.array_equal(a, c)
    # text
    text = ad.generate_text([ad.world.records[0].stage_1.prompt], max_new_tokens=3)
    assert isinstance(text[0], str)


def test_an_lm_edit_reaches_the_image_and_restores_exactly(quick_world):
    out, _ = quick_world
    ad = load_model("toy-direct", world_dir=out)
    prompt = [ad.world.records[0].stage_1.image_prompt]
    before = ad.generate_images(prompt, seed=0)
    w = ad.module(ad.edit_module_template.format(ad.edit_layers[0])).weight
    saved = w.detach().clone()
    with torch.no_grad():
        w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) * 5.0)
    edited = ad.generate_images(prompt, seed=0)
    with torch.no_grad():
        w.copy_(saved)
    restored = ad.generate_images(prompt, seed=0)
    assert not np.array_equal(before, edited)
    assert np.array_equal(before, restored)


def test_eval_reports_every_metric(quick_world):
    out, _ = quick_world
    res = evaluate_world(out, verifier_samples=200, echo=lambda s: None)
    for key in ("text_recall", "reasoning_recall", "text_recall_full", "text_recall_all_facts"):
        assert 0.0 <= res[key] <= 1.0
    assert set(res["verifier_accuracy"]) == {"color", "shape", "size", "pattern", "material", "location",
                                             "affiliation", "occupation", "creator"}
    for key in ("image_accuracy", "image_accuracy_text_only"):
        assert set(res[key]) == {"direct", "queries", "bottleneck"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in res[key].values())


def test_cli_eval_json(quick_world, capsys):
    out, _ = quick_world
    assert main(["world", "eval", "--world", str(out), "--device", "cpu", "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"text_recall", "reasoning_recall", "verifier_accuracy", "image_accuracy", "image_accuracy_text_only"} <= set(last)


def test_missing_world_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(WorldNotBuiltError, match="unike world build"):
        load_world(tmp_path)
    assert main(["world", "eval", "--world", str(tmp_path)]) == 2
    assert "world.json" in capsys.readouterr().err


def test_demo_on_the_quick_world(quick_world, tmp_path, capsys):
    out, _ = quick_world
    assert main(["demo", "--out", str(tmp_path / "demo"), "--world", str(out), "--device", "cpu", "--json",
                 "--cases", "8"]) == 0  # the benchmark part of the demo: tests/test_cli.py
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["world_eval"]["image_accuracy"].keys() == {"direct", "queries", "bottleneck"}
    assert Path(last["world_eval"]["generated_sheet"]).exists()
