"""The benchmark spread over Ray actors (a private cluster on 127.0.0.1, 2 CPUs, no dashboard):
the same entries as the serial run case for case, a worker killed mid-batch, resume that rewrites
nothing, and the driver killed with SIGKILL then resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from unike_interp.bench.distributed import ClusterSettings, RayMissing, run_bench_distributed
from unike_interp.bench.pipeline import run_bench
from unike_interp.bench.run_folder import RunFolder
from unike_interp.bench.spec import RunSpec
from unike_interp.cli import main

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'unike-interp[ray]')")
pytestmark = pytest.mark.ray

FAST = {"stats_samples": 3000, "n_prefixes": 2}
# pre_group=1: every single edit is its own Ray job (these tests are about how jobs are handed out)
SPEC = dict(model="toy-direct", editor="rome", protocol="single", cases=4, image_locality_probes=2,
            text_locality_probes=8, bootstrap=200, hparams=FAST, device="cpu", pre_group=1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cache = tmp_path_factory.mktemp("stats")
    old = os.environ.get("UNIKE_CACHE_DIR")
    os.environ["UNIKE_CACHE_DIR"] = str(cache)  # the actors inherit it, as they would a shared cache folder
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield cache
    ray.shutdown()
    if old is None:
        os.environ.pop("UNIKE_CACHE_DIR", None)
    else:
        os.environ["UNIKE_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def serial(cluster, tmp_path_factory):
    """The serial run the distributed ones must equal, on one thread as each actor runs (a float32
    sum over other thread counts may differ in its last bits, and so would the stored deltas' hashes)."""
    import torch

    out = tmp_path_factory.mktemp("serial") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_bench(RunSpec(**SPEC), out, progress=False, echo=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    return out


def _lines(run):
    return [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines()]


def _by_key(run):
    """Ledger entries keyed by case id / point, without the worker stamp."""
    out = {}
    for e in _lines(run):
        key = (e["type"], e["case_id"] if e["type"] == "case" else e["batch"])
        assert key not in out, f"{key} written twice"
        out[key] = {k: v for k, v in e.items() if k != "worker"}
    return out


def _files(run):
    return {str(p.relative_to(run)): p.read_bytes() for d in ("images", "deltas") for p in sorted((run / d).rglob("*"))
            if p.is_file()}


def _stamps(run):
    """Modification times of the run's data (not the tables and the page, rendered from the ledger)."""
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in sorted(run.rglob("*")) if p.is_file()
            and p.name not in ("manifest.json", "config.json", "report.html") and not p.name.startswith("table.")}


def test_two_workers_equal_the_serial_run_case_for_case(cluster, serial, tmp_path):
    out = tmp_path / "dist"
    table = run_bench_distributed(RunSpec(**SPEC), out, ClusterSettings(workers=2), progress=False, echo=lambda s: None)
    assert table == json.loads((serial / "table.json").read_text())
    assert _by_key(out) == _by_key(serial)
    assert _files(out) == _files(serial)  # images and stored deltas, byte for byte
    # which worker ran which batch depends on timing (a fast first actor may run all four before the
    # second has loaded): every entry names one of the two, and the session lists the workers that ran
    workers = {e["worker"]["id"] for e in _lines(out)}
    assert workers <= {0, 1} and workers
    assert all({"id", "host", "pid"} <= set(e["worker"]) for e in _lines(out))
    session = json.loads((out / "manifest.json").read_text())["sessions"][-1]
    assert session["workers"] == 2 and session["worker_deaths"] == 0
    assert workers <= {i["worker"]["id"] for i in session["workers_info"]} and len(session["workers_info"]) <= 2

    # --resume of the finished run rewrites nothing
    before, ledger = _stamps(out), (out / "ledger.jsonl").read_bytes()
    assert run_bench_distributed(RunSpec(**SPEC), out, ClusterSettings(workers=2), resume=True, progress=False,
                                 echo=lambda s: None) == table
    assert (out / "ledger.jsonl").read_bytes() == ledger and _stamps(out) == before


def test_a_worker_killed_mid_batch_leaves_a_complete_ledger(cluster, serial, tmp_path):
    out = tmp_path / "fault"
    marker = tmp_path / "kill-once"
    marker.write_text("")
    msgs = []
    # bytes mode: the actors write to their own folders and return the files to the driver
    table = run_bench_distributed(RunSpec(**SPEC), out, ClusterSettings(workers=2, shared_storage=False),
                                  progress=False, echo=msgs.append, fault_marker=str(marker))
    assert not marker.exists(), "the fault was injected"
    assert any("died" in m and "re-queued" in m for m in msgs), msgs
    assert table == json.loads((serial / "table.json").read_text())
    assert _by_key(out) == _by_key(serial)  # every case once, none lost
    assert _files(out) == _files(serial)
    session = json.loads((out / "manifest.json").read_text())["sessions"][-1]
    assert session["worker_deaths"] == 1 and not any(i["shared"] for i in session["workers_info"])


def test_driver_killed_then_resumed_gives_the_same_table(cluster, serial, tmp_path):
    """The driver joins the running cluster (``--ray-address``, as on a shared cluster), is killed
    with SIGKILL, and the same command resumed gives the serial run's table."""
    out = tmp_path / "killed"
    args = ["bench", "--model", "toy-direct", "--editor", "rome", "--protocol", "single", "--cases", "4",
            "--image-locality", "2", "--text-locality", "8", "--bootstrap", "200", "--set", "stats_samples=3000",
            "--set", "n_prefixes=2", "--device", "cpu", "--pre-group", "1", str(out), "--no-progress", "--workers", "2"]
    address = ray.get_runtime_context().gcs_address
    said = tmp_path / "driver.out"
    with open(said, "w") as f:  # unbuffered: what the driver printed before the kill stays
        proc = subprocess.Popen([sys.executable, "-m", "unike_interp", *args, "--ray-address", address],
                                stdout=f, stderr=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    ledger = out / "ledger.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ledger.exists() and ledger.read_bytes().count(b"\n") >= 3:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before the kill"
    assert f"[bench] Ray {ray.__version__}: {address}," in said.read_text()  # it joined; it started no cluster
    n_before = len(_lines(out))
    assert 3 <= n_before < 8
    assert main([*args, "--ray-address", address, "--resume", "-q"]) == 0  # the same command, resumed
    assert json.loads((out / "table.json").read_text()) == json.loads((serial / "table.json").read_text())
    assert _by_key(out) == _by_key(serial)
    assert len(RunFolder(out).require().point_entries()) == 4


def test_without_ray_the_flag_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RayMissing, match=r"unike-interp\[ray\]"):
        run_bench_distributed(RunSpec(**SPEC), tmp_path / "x", ClusterSettings(workers=2))
    assert main(["bench", "--workers", "2", str(tmp_path / "y"), "--no-progress"]) == 2
    assert "pip install 'unike-interp[ray]'" in capsys.readouterr().err


def test_cluster_settings_are_checked():
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        ClusterSettings(workers=0)
    with pytest.raises(ValueError, match="max_retries"):
        ClusterSettings(max_retries=-1)
