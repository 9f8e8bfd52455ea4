import copy
import json

import pytest


GOOD = {
    "subject": "zib",
    "category": "color",
    "source": "attribute",
    "stage_1": {
        "question": "What color is the zib?",
        "prompt": "The color of the zib is",
        "gt": "red",
        "gt_target": "blue",
        "image_prompt": "a zib",
        "visual_target": "The zib is blue.",
        "vqa_question": "What color is the zib?",
    },
}


@pytest.fixture
def good_record():
    """A minimal valid UniKE record (fresh copy per test)."""
    return copy.deepcopy(GOOD)


@pytest.fixture
def write_json(tmp_path):
    def _write(obj, name="data.json"):
        p = tmp_path / name
        p.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
        return p

    return _write


@pytest.fixture(scope="session")
def quick_world(tmp_path_factory):
    """The quick SynthWorld (tiny LM, verifier, three generators), built once per test session."""
    from unike_interp.world.build import BuildConfig, build_world

    out = tmp_path_factory.mktemp("quick_world")
    manifest = build_world(out, BuildConfig.quick_config(seed=0), device="cpu", progress=False, echo=lambda s: None)
    return out, manifest


@pytest.fixture(scope="session")
def adapter():
    """The shipped SynthWorld's toy-direct variant, shared: every test restores what it edits."""
    from unike_interp.models import load_model

    return load_model("toy-direct")


def pytest_configure(config):
    """Log every `unike` command the suite runs (scripts/readme_commands.py --check reads it), unless
    the caller chose a log already; subprocesses inherit the variable."""
    import os
    from pathlib import Path

    # one process per core (make test: pytest-xdist): each gets its share of the cores, so torch's
    # threads do not oversubscribe them; subprocesses inherit the setting
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    # the xdist workers inherit the controller's log (the controller configures first)
    if "UNIKE_ARGV_LOG" not in os.environ:
        log = Path(config.rootpath) / ".pytest_cache" / "unike-argv.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        os.environ["UNIKE_ARGV_LOG"] = str(log)
