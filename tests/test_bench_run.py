"""The benchmark end to end on the shipped SynthWorld (a few cases): run folder, failures counted,
refusals, and kill -9 at a random point followed by --resume giving the uninterrupted table."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from unike_interp.bench.pipeline import RunFolderError, run_bench
from unike_interp.bench.run_folder import RunFolder
from unike_interp.bench.spec import RunSpec
from unike_interp.cli import main
from unike_interp.editing import make_editor
from unike_interp.editing.stats import StatsCache
from unike_interp.judges import Judge, VerifierJudge

FAST = {"stats_samples": 3000, "n_prefixes": 2}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("stats")


def _editor(adapter, cache_dir, name="rome"):
    return make_editor(name, FAST, family=adapter.family, stats_cache=StatsCache(cache_dir))


def test_run_folder_and_refusals(adapter, cache_dir, tmp_path):
    cfg = RunSpec(editor="rome", protocol="single", cases=3, image_locality_probes=2, text_locality_probes=8,
                      bootstrap=100, hparams=FAST)
    out = tmp_path / "run"
    t = run_bench(cfg, out, adapter=adapter, editor=_editor(adapter, cache_dir), judge=VerifierJudge(adapter.verifier),
                  progress=False, echo=lambda s: None)
    entries = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    cases = [e for e in entries if e["type"] == "case"]
    points = [e for e in entries if e["type"] == "point"]
    assert len(cases) == 3 and len(points) == 3 and len({e["case_id"] for e in cases}) == 3
    n_stages = sum(len(e["stages"]) for e in cases)
    assert t["n_cases"] == 3 and t["n_items"] == n_stages
    for e in cases:
        for name, s in e["stages"].items():
            for key in ("pre",):
                assert (out / s[key]["image"]).exists()
            assert (out / s["direct"]["image"]).exists()
            assert s["reasoning"]["request"].startswith("Request:")
    for f in ("config.json", "manifest.json", "table.md", "table.csv", "table.json", "report.html"):
        assert (out / f).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["torch"] and "git_sha" in manifest and manifest["device"] == "cpu"
    assert json.loads((out / "table.json").read_text()) == t
    # the table does not depend on the order entries were written in (a distributed run's order)
    from unike_interp.bench.aggregate import build_table

    folder = RunFolder(out)
    shuffled = folder.entries()[::-1]
    assert build_table(shuffled, folder.resolved()) == t
    # a second run into the same folder must be asked for explicitly
    with pytest.raises(RunFolderError, match="--resume"):
        run_bench(cfg, out, adapter=adapter, judge=VerifierJudge(adapter.verifier), progress=False, echo=lambda s: None)
    other = RunSpec(**{**cfg.to_dict(), "compose": "prepend"})
    with pytest.raises(RunFolderError, match="compose"):
        run_bench(other, out, resume=True, adapter=adapter, judge=VerifierJudge(adapter.verifier), progress=False,
                  echo=lambda s: None)
    # nothing left to do: resume just re-renders the same table
    assert run_bench(cfg, out, resume=True, adapter=adapter, judge=VerifierJudge(adapter.verifier), progress=False,
                     echo=lambda s: None) == t


class RaisingJudge(Judge):
    name = "raising"

    def judge_batch(self, images, cases, stages, targets=None):
        raise ConnectionError("judge offline")


def o_target_errors(t):
    """The stage-1 column of the pre-edit judgement against the new value, its judge errors."""
    return t["main"]["overall"]["pre_vqa_target"]["judge_errors"]


def test_failures_are_counted_not_dropped(adapter, cache_dir, tmp_path, monkeypatch):
    real = adapter.generate_images

    def flaky(prompts, **kw):  # image generation fails whenever a batch holds a flag picture
        if any("flag" in p for p in prompts):
            raise RuntimeError("out of paint")
        return real(prompts, **kw)

    monkeypatch.setattr(adapter, "generate_images", flaky)
    cfg = RunSpec(editor="rome", protocol="batch", cases=3, image_locality_probes=0, text_locality_probes=4,
                      bootstrap=50, hparams=FAST)
    t = run_bench(cfg, tmp_path / "f", adapter=adapter, editor=_editor(adapter, cache_dir), judge=RaisingJudge(),
                  progress=False, echo=lambda s: None)
    entries = [json.loads(x) for x in (tmp_path / "f" / "ledger.jsonl").read_text().splitlines()]
    stages = [s for e in entries if e["type"] == "case" for s in e["stages"].values()]
    assert t["n_items"] == len(stages) and t["n_cases"] == 3
    has_flag = any("flag" in s["reasoning"]["request"] for s in stages)
    gen_failed = sum(s["direct"]["generation_error"] is not None for s in stages)
    assert gen_failed == (len(stages) if has_flag else 0)
    # every judged image became a judge error; none vanished from a denominator
    judged = sum(s[k]["vqa"] is not None for s in stages for k in ("direct", "reasoning_image"))
    judged += sum(s["pre"][k] is not None for s in stages for k in ("vqa_gt", "vqa_target"))
    assert t["counts"]["judge_errors"] == judged  # the pre-edit judgement against the new value too
    by = t["counts"]["judge_errors_by_judgement"]
    assert by["pre_vqa_target"] == sum(s["pre"]["vqa_target"] is not None for s in stages)
    assert sum(by.values()) == judged
    assert o_target_errors(t) == sum(e["stages"]["stage_1"]["pre"]["vqa_target"] is not None
                                     for e in entries if e["type"] == "case")  # stage 1's column
    o = t["main"]["overall"]
    assert o["vqa_direct"]["rate"] == 0.0 and o["vqa_direct"]["n"] == t["main"]["overall"]["n"]
    assert o["vqa_direct"]["judge_errors"] + o["vqa_direct"]["failures"] == o["n"]


def _bench_args(out):
    return ["bench", "--editor", "rome", "--protocol", "single", "--cases", "4", "--image-locality", "2",
            "--text-locality", "8", "--bootstrap", "200", "--set", "stats_samples=3000", "--set", "n_prefixes=2",
            str(out), "--no-progress", "--device", "cpu"]


def test_kill9_then_resume_gives_the_same_table(tmp_path, cache_dir, monkeypatch):
    from unike_interp.bench import pipeline

    monkeypatch.setenv("UNIKE_CACHE_DIR", str(cache_dir))
    drawn, measure_pre = [], pipeline.measure_pre
    monkeypatch.setattr(pipeline, "measure_pre", lambda m, cases: drawn.append([r.case_id for r in cases])
                        or measure_pre(m, cases))
    ref = tmp_path / "ref"
    assert main(_bench_args(ref)) == 0
    ref_table = json.loads((ref / "table.json").read_text())
    # four single edits, one pre-edit group: their unedited images drawn and judged together, once
    assert drawn == [json.loads((ref / "config.json").read_text())["case_ids"]]
    n_lines = len((ref / "ledger.jsonl").read_text().splitlines())
    assert n_lines == 8  # 4 cases + 4 evaluation points

    kill_at = int(np.random.default_rng(int(time.time())).integers(1, n_lines))
    out = tmp_path / "killed"
    env = {**os.environ, "UNIKE_CACHE_DIR": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "unike_interp", *_bench_args(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = out / "ledger.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ledger.exists() and ledger.read_bytes().count(b"\n") >= kill_at:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before the kill at line {kill_at}"
    # resumed with the run's own settings: only the folder (and where it runs) given again
    assert main(["bench", str(out), "--resume", "--device", "cpu", "--no-progress"]) == 0
    lines = [json.loads(x) for x in ledger.read_text().splitlines()]
    ids = [e["case_id"] for e in lines if e["type"] == "case"]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 4  # no case lost, none duplicated
    assert len([e for e in lines if e["type"] == "point"]) == 4
    assert json.loads((out / "table.json").read_text()) == ref_table, f"killed at line {kill_at}"
    # the resumed run stored the same edits as the uninterrupted one (a redone batch stores its delta again)
    # (a point whose edit hit a guard stores none)
    hashes = lambda run: {k: p.delta and p.delta.sha256 for k, p in RunFolder(run).point_entries().items()}  # noqa: E731
    assert hashes(out) == hashes(ref) and len(hashes(ref)) == 4 and any(hashes(ref).values())
    assert main(["report", str(out), "--json"]) == 0


def _small_bench(out):
    return ["bench", "--editor", "rome", "--protocol", "single", "--cases", "2", "--image-locality", "1",
            "--text-locality", "4", "--bootstrap", "100", "--set", "stats_samples=3000", "--set", "n_prefixes=2",
            str(out), "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def small_ref(cache_dir, tmp_path_factory):
    """An uninterrupted small run, the reference of the full-disk tests."""
    ref = tmp_path_factory.mktemp("ref") / "run"
    old = os.environ.get("UNIKE_CACHE_DIR")
    os.environ["UNIKE_CACHE_DIR"] = str(cache_dir)
    try:
        assert main(_small_bench(ref)) == 0
    finally:
        os.environ.pop("UNIKE_CACHE_DIR") if old is None else os.environ.__setitem__("UNIKE_CACHE_DIR", old)
    return ref


@pytest.mark.parametrize("where", ["image", "ledger", "delta"])
def test_a_full_disk_stops_clearly_and_resume_completes(where, tmp_path, cache_dir, small_ref, monkeypatch, capsys):
    """Writing fails with ENOSPC at a seeded random point (an image half written, a ledger line half
    appended, or a stored delta); the run stops with one clear line, leaves no temporary file, and
    --resume after space is freed gives the uninterrupted run's table with every case once."""
    import errno
    import random

    from PIL import Image

    from unike_interp.bench.ledger import Ledger
    from unike_interp.editing.delta import WeightDelta

    monkeypatch.setenv("UNIKE_CACHE_DIR", str(cache_dir))
    args, ref = _small_bench, small_ref
    ref_table = json.loads((ref / "table.json").read_text())
    n_calls = {"image": len(list((ref / "images").rglob("*.png"))),  # writes of that kind in the run
               "ledger": len((ref / "ledger.jsonl").read_text().splitlines()),
               "delta": len(list((ref / "deltas").glob("*.safetensors")))}[where]
    fail_at = random.Random(f"enospc-{where}").randrange(1, n_calls + 1)
    calls = [0]

    def full(write):
        def patched(self, *a, **k):
            calls[0] += 1
            if calls[0] == fail_at:
                target = {"image": lambda: a[0], "ledger": lambda: self.path, "delta": lambda: None}[where]()
                if target is not None:  # half of what was to be written reaches the disk
                    with open(target, "ab") as f:
                        f.write(b'{"type": "case", "case_id": "torn' if where == "ledger" else b"\x89PNG\r\n")
                raise OSError(errno.ENOSPC, "No space left on device", str(target or "deltas"))
            return write(self, *a, **k)
        return patched

    if where == "image":
        monkeypatch.setattr(Image.Image, "save", full(Image.Image.save))
    elif where == "ledger":
        monkeypatch.setattr(Ledger, "append", full(Ledger.append))
    else:
        monkeypatch.setattr(WeightDelta, "save", full(WeightDelta.save))
    out = tmp_path / "full"
    capsys.readouterr()
    assert main(args(out)) == 2
    err = capsys.readouterr().err
    assert err.count("unike: error:") == 1 and "No space left on device" in err and "--resume" in err
    assert "Traceback" not in err
    assert not list(out.rglob("*.tmp*")), "a temporary file was left behind"
    monkeypatch.undo()  # space freed
    monkeypatch.setenv("UNIKE_CACHE_DIR", str(cache_dir))
    assert main([*args(out), "--resume"]) == 0
    lines = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    ids = [e["case_id"] for e in lines if e["type"] == "case"]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 2
    assert json.loads((out / "table.json").read_text()) == ref_table
