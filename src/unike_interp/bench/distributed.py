"""One benchmark run spread over Ray actors: many GPUs or machines, one ledger, resumable.

The run is the one :func:`~unike_interp.bench.pipeline.run_bench` makes, cut at its batches:

* under the ``single`` and ``batch`` protocols each batch is independent (edit, measure, restore),
  so batches are handed out dynamically, one in flight per actor; each actor holds one model
  replica (``num_gpus=1`` where the cluster has GPUs, else ``num_cpus=1``) and runs a batch exactly
  as the serial run does (:class:`~unike_interp.bench.pipeline.BatchRunner`), so the entries are the
  serial run's;
* a ``sequential`` run is one chain of edits: it runs whole on one actor (no speed-up; said when
  it starts).

The **driver** (this process) loads no model. It asks the first actor to load the model and warm
the key-statistics cache, checks the configuration against the run folder as ``--resume`` does,
starts the other actors (which find the statistics cached where the cache folder is shared), and
is the only process that appends to ``ledger.jsonl``. So the ledger format and ``--resume`` stay as
they are: a distributed run resumes serially and the other way round. Each entry names the worker
that produced it (``worker: {id, host, pid}``).

Images and stored deltas are written straight into the run folder when the actors can see it
(checked with a token file, so it works on one machine and on shared storage); otherwise an actor
writes them to a local temporary folder and returns them as bytes, and the driver writes them.

A batch whose actor dies is re-queued on a fresh actor up to ``max_retries`` times, then left for
``--resume`` (the run ends with :class:`DistributedRunIncomplete` naming the batches). An exception
raised inside a batch (bad input, a bug) stops the run as it would a serial one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .run_folder import RunFolder, RunFolderError
from .spec import RunSpec

#: The file through which the driver checks that actors see the run folder (removed at the end).
TOKEN_FILE = ".unike-ray-token"


class RayMissing(ImportError):
    """``--workers`` was asked for but Ray is not installed."""


class DistributedRunIncomplete(RunFolderError):
    """Some batches failed on every actor they were given to; ``--resume`` runs them again."""


def import_ray():
    """Ray, or :class:`RayMissing` saying what to install."""
    try:
        import ray
    except ImportError:
        raise RayMissing("--workers runs the benchmark on Ray, which is not installed: "
                         "pip install 'unike-interp[ray]' (or pip install 'ray>=2.9')") from None
    return ray


@dataclass
class ClusterSettings:
    """How the run is spread.

    ``workers``: actors (model replicas); ``address``: a running Ray cluster (``"auto"``, or
    ``host:port``) or None to start a private one on this machine (127.0.0.1, no dashboard);
    ``gpus_per_worker``: None = 1 where the cluster has GPUs and the spec's device is not the CPU,
    else 0; ``cpus_per_worker``: CPU slots per actor (its torch threads); ``max_retries``: how often
    a batch whose actor died is given to a fresh actor; ``shared_storage``: None = detect whether the
    actors see the run folder, False = always return files as bytes.
    """

    workers: int = 2
    address: str | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: int = 1
    max_retries: int = 2
    shared_storage: bool | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker < 1:
            raise ValueError(f"cpus_per_worker must be >= 1, got {self.cpus_per_worker}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")


class BenchWorker:
    """One Ray actor: one model replica that runs batches of a run (:class:`BatchRunner`).

    ``fault_marker`` (tests): after a batch's edit, the first worker that removes this file exits
    hard (``os._exit``), as a killed machine would, before the batch is measured.
    """

    def __init__(self, spec: RunSpec, run_path: str, worker_id: int, token: str | None,
                 fault_marker: str | None = None):
        self.spec, self.run_path, self.worker_id, self.token = spec, run_path, worker_id, token
        self.fault_marker = fault_marker
        self.info = {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid()}
        self.runner = None
        self.local_dir: Path | None = None

    def _shared(self) -> bool:
        try:
            return self.token is not None and (Path(self.run_path) / TOKEN_FILE).read_text().strip() == self.token
        except OSError:
            return False

    def setup(self, warm: bool = True) -> dict:
        """Load the model, editor and judge; with ``warm``, also :meth:`warm`. The resolved configuration."""
        from .assemble import build_editor, build_judge, load_adapter
        from .pipeline import BatchRunner, plan_bench

        t0 = time.perf_counter()
        adapter = load_adapter(self.spec)
        editor = build_editor(self.spec, adapter, progress=False)
        judge = build_judge(self.spec, adapter.device)
        plan = plan_bench(self.spec, adapter, editor, judge)
        shared = self._shared()
        if not shared:
            self.local_dir = Path(tempfile.mkdtemp(prefix=f"unike-worker{self.worker_id}-"))
        folder = RunFolder(self.run_path if shared else self.local_dir)
        self.runner = BatchRunner(plan, folder, adapter, editor, judge, after_edit=self._fault)
        self.info_setup = {"resolved": plan.resolved, "worker": self.info, "shared": shared,
                           "device": str(adapter.device), "dtype": str(adapter.dtype).replace("torch.", ""),
                           "load_seconds": round(time.perf_counter() - t0, 2), "stats_seconds": None}
        return self.warm() if warm else self.info_setup

    def warm(self) -> dict:
        """Key statistics (computed by the first actor, read from the cache by the others) and the
        image-locality probes on the unedited model."""
        t0 = time.perf_counter()
        self.runner.editor.prepare(self.runner.adapter)
        self.runner.probe_pre()
        self.info_setup["stats_seconds"] = round(time.perf_counter() - t0, 2)
        return self.info_setup

    def _fault(self, point: int) -> None:
        if self.fault_marker:
            try:
                os.remove(self.fault_marker)
            except FileNotFoundError:
                return
            os._exit(1)

    def run(self, todo: list[int], done_cases: list[str], done_points: list[int]) -> dict:
        """Run batches ``todo``; their ledger entries (stamped with this worker) and, without shared
        storage, the files they wrote as ``{path relative to the run: bytes}``."""
        entries: list[dict] = []
        before = self.runner.source.edit_seconds
        self.runner.run(todo, entries.append, done_cases=set(done_cases), done_points=set(done_points))
        for e in entries:
            e["worker"] = dict(self.info)
        files = {}
        if self.local_dir is not None:
            for p in sorted(self.local_dir.rglob("*")):
                if p.is_file():
                    files[str(p.relative_to(self.local_dir))] = p.read_bytes()
            shutil.rmtree(self.local_dir, ignore_errors=True)
            self.local_dir.mkdir(parents=True, exist_ok=True)
        return {"entries": entries, "files": files, "edit_seconds": self.runner.source.edit_seconds - before}


def _write_file(root: Path, rel: str, data: bytes) -> None:
    path = (root / rel).resolve()
    if root.resolve() not in path.parents:
        raise RunFolderError(f"a worker returned a file outside the run folder: {rel!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class _Pool:
    """The driver's view of its actors: which are set up and idle, what is in flight."""

    ray: object
    make: Callable[[int], object]
    idle: list = field(default_factory=list)
    pending: dict = field(default_factory=dict)  # object ref -> (kind: load | setup | run, actor, job)
    loaded: list = field(default_factory=list)  # loaded, waiting for the key statistics to be cached
    started: int = 0
    deaths: int = 0
    infos: list = field(default_factory=list)

    def start(self, warm: bool = True) -> None:
        """A new actor loading the model (``warm``: then the statistics, as soon as it has loaded)."""
        actor = self.make(self.started)
        self.started += 1
        self.pending[actor.setup.remote(warm)] = ("setup" if warm else "load", actor, None)

    def shutdown(self) -> None:
        for actor in self.idle + self.loaded + [a for _, a, _ in self.pending.values()]:
            try:
                self.ray.kill(actor)
            except Exception:  # already dead
                pass


def _cluster(ray, settings: ClusterSettings, spec: RunSpec, echo) -> tuple[bool, float]:
    """Start or join the cluster; (started here, GPUs per worker)."""
    started = False
    if not ray.is_initialized():
        if settings.address:
            ray.init(address=settings.address, log_to_driver=False)
        else:
            # actors inherit this process's environment (cache folder, a judge's key variable); nothing
            # secret goes through Ray's runtime environment, which its control store keeps
            ray.init(num_cpus=settings.workers * settings.cpus_per_worker, include_dashboard=False,
                     _node_ip_address="127.0.0.1", log_to_driver=False)
            started = True
    res = ray.cluster_resources()
    gpus = settings.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if res.get("GPU", 0) >= 1 and str(spec.device) != "cpu" else 0.0
    slots = res.get("GPU", 0) / gpus if gpus else res.get("CPU", 0) / settings.cpus_per_worker
    if settings.workers > slots:
        if started:
            ray.shutdown()
        raise ValueError(f"--workers {settings.workers} asks for more actors than the Ray cluster holds "
                         f"({res.get('GPU', 0):g} GPU, {res.get('CPU', 0):g} CPU: {int(slots)} actor(s) of "
                         f"{gpus:g} GPU / {settings.cpus_per_worker} CPU); lower --workers or add nodes")
    echo(f"[bench] Ray {ray.__version__}: {'a private cluster on 127.0.0.1' if started else settings.address or 'the running cluster'}"
         f", {settings.workers} worker(s) of {gpus:g} GPU / {settings.cpus_per_worker} CPU each")
    return started, gpus


def run_bench_distributed(spec: RunSpec, out_dir: str | Path, cluster: ClusterSettings | None = None, *,
                          resume: bool = False, progress: bool = True, echo: Callable[[str], None] = print,
                          fault_marker: str | None = None) -> dict:
    """:func:`~unike_interp.bench.pipeline.run_bench` over Ray actors (see the module docstring); the table.

    The ledger, images, deltas, tables and ``--resume`` are the serial run's; the manifest's session
    records the workers, their hosts and devices, and how many died.
    """
    from tqdm.auto import tqdm

    from .aggregate import build_table, write_tables

    cluster = cluster or ClusterSettings()
    ray = import_ray()
    folder = RunFolder(out_dir)
    folder.check_writable(resume=resume)
    started, gpus = _cluster(ray, cluster, spec, echo)
    token_path = folder.path / TOKEN_FILE
    token = None
    if cluster.shared_storage is not False:
        folder.path.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(16)
        token_path.write_text(token)
    Actor = ray.remote(num_cpus=cluster.cpus_per_worker, num_gpus=gpus, max_restarts=0, max_task_retries=0)(BenchWorker)
    pool = _Pool(ray, lambda i: Actor.remote(spec, str(folder.path.resolve()), i, token, fault_marker))
    try:
        return _drive(ray, pool, spec, folder, cluster, resume=resume, progress=progress, echo=echo,
                      tqdm=tqdm, build_table=build_table, write_tables=write_tables)
    finally:
        pool.shutdown()
        token_path.unlink(missing_ok=True)
        if started:
            ray.shutdown()


def _get(ray, ref):
    """(result, None) or (None, 'died') for an actor that died; a task's own exception is re-raised as itself."""
    try:
        return ray.get(ref), None
    except ray.exceptions.RayActorError as exc:
        return None, f"died: {type(exc).__name__}"
    except ray.exceptions.WorkerCrashedError as exc:
        return None, f"died: {type(exc).__name__}"
    except ray.exceptions.RayTaskError as exc:
        raise exc.as_instanceof_cause() from None


def _drive(ray, pool: _Pool, spec, folder: RunFolder, cluster: ClusterSettings, *, resume, progress, echo, tqdm,
           build_table, write_tables) -> dict:
    from .pipeline import batches_to_run, point_of, pre_groups

    t_start = time.perf_counter()
    # the first actor loads the model and warms the key-statistics cache; it also resolves the configuration
    info = None
    for _ in range(cluster.max_retries + 1):
        actor = pool.make(pool.started)
        pool.started += 1
        info, died = _get(ray, actor.setup.remote(False))
        if info is not None:
            break
        pool.deaths += 1
        echo(f"[bench] worker {pool.started - 1} {died} while loading the model; starting another")
    if info is None:
        raise DistributedRunIncomplete(f"every worker died while loading {spec.model} ({pool.deaths} tries); "
                                       "see the Ray logs (/tmp/ray/session_latest/logs)")
    resolved = info["resolved"]
    folder.write_resolved(resolved, resume=resume)
    folder.start_session(resume=resume, seed=spec.seed, device=info["device"], dtype=info["dtype"],
                         judge=resolved["judge_name"])
    ledger = folder.open_ledger()
    if ledger.torn_bytes:
        echo(f"[bench] cut a torn last line ({ledger.torn_bytes} bytes) off {folder.ledger_path}: that case is redone")
    done_cases, done_points = folder.check_done(ledger, resolved["case_ids"])
    batches = resolved["batches"]
    sequential = resolved["config"]["protocol"] == "sequential"
    todo = batches_to_run(batches, sequential, done_cases, done_points)
    if not todo:
        ray.kill(actor)
        echo(f"[bench] every case is already in {folder.ledger_path}; rendering the table")
        table = build_table(folder.entries(ledger), resolved)
        write_tables(table, folder.path)
        return table
    pool.pending[actor.warm.remote()] = ("setup", actor, None)  # the key statistics once, before the others start
    # one job per pre-edit group: its cases' unedited images are drawn together, as in a serial run
    groups = pre_groups(batches, sequential, spec.pre_group)
    jobs = deque(job for job in (tuple(k for k in g if k in todo) for g in groups) if job)
    n_left = sum(len(batches[k]) for k in todo) - sum(c in done_cases for k in todo for c in batches[k])
    echo(f"[bench] {spec.model} x {spec.editor} ({spec.protocol}, {len(resolved['case_ids'])} cases in {len(batches)} "
         f"batch(es)); {len(todo)} batch(es) to run on {cluster.workers} worker(s)"
         + (f", {len(done_cases)} cases already in the ledger" if done_cases else "")
         + ("; a sequential run is one chain of edits and runs whole on one worker" if sequential else ""))
    if note := spec.protocol_note():
        echo(f"[bench] note: {note}")
    # the other actors load the model now and read the statistics once the first has cached them
    for _ in range(min(cluster.workers, len(jobs)) - 1):
        pool.start(warm=False)
    warm = False
    tries: dict[tuple, int] = {}
    failed: list[tuple] = []
    restarts_left = cluster.workers * cluster.max_retries
    edit_seconds = 0.0
    bar = tqdm(total=n_left, desc=f"{spec.editor} {spec.protocol} x{cluster.workers}", unit="case", disable=not progress)
    try:
        while jobs or pool.pending:
            while pool.idle and jobs:
                actor, job = pool.idle.pop(), jobs.popleft()
                cases = [c for k in job for c in batches[k]]
                ref = actor.run.remote(list(job), [c for c in cases if c in done_cases],
                                       [p for p in {point_of(k, len(batches), sequential) for k in job} if p in done_points])
                pool.pending[ref] = ("run", actor, job)
            if not pool.pending:  # work left but no actor: every restart is spent
                failed.extend(jobs)
                jobs.clear()
                break
            ready, _ = ray.wait(list(pool.pending), num_returns=1)
            kind, actor, job = pool.pending.pop(ready[0])
            out, died = _get(ray, ready[0])
            if died:
                pool.deaths += 1
                what = "while loading the model" if kind != "run" else f"on batch(es) {list(job)}"
                if kind == "run":
                    tries[job] = tries.get(job, 0) + 1
                    if tries[job] <= cluster.max_retries:
                        jobs.appendleft(job)
                        what += ", re-queued"
                    else:
                        failed.append(job)
                        what += f", given up after {tries[job]} tries (left for --resume)"
                echo(f"[bench] a worker {died} {what}")
                if kind == "setup" and not warm and pool.loaded:  # it died computing the statistics: another does
                    a = pool.loaded.pop(0)
                    pool.pending[a.warm.remote()] = ("setup", a, None)
                if jobs and restarts_left > 0:
                    restarts_left -= 1
                    pool.start(warm=True)
                continue
            if kind == "load":  # loaded; warm once the statistics are cached
                pool.loaded.append(actor)
            if kind == "setup":
                pool.infos.append(out)
                pool.idle.append(actor)
                warm = True
            if warm:
                for a in pool.loaded:
                    pool.pending[a.warm.remote()] = ("setup", a, None)
                pool.loaded.clear()
            if kind != "run":
                continue
            for rel, data in out["files"].items():
                _write_file(folder.path, rel, data)
            for entry in out["entries"]:  # the driver is the only ledger writer; an entry is never written twice
                if entry["type"] == "case" and entry["case_id"] not in done_cases:
                    ledger.append(entry)
                    done_cases.add(entry["case_id"])
                    bar.update(1)
                elif entry["type"] == "point" and entry["batch"] not in done_points:
                    ledger.append(entry)
                    done_points.add(entry["batch"])
            edit_seconds += out["edit_seconds"]
            pool.idle.append(actor)
    finally:
        bar.close()
        folder.end_session(workers=cluster.workers, ray_address=cluster.address or "local",
                           seconds=round(time.perf_counter() - t_start, 2), edit_seconds=round(edit_seconds, 3),
                           stats_seconds=pool.infos[0]["stats_seconds"] if pool.infos else None, worker_deaths=pool.deaths,
                           workers_info=[{k: i[k] for k in ("worker", "device", "shared", "load_seconds", "stats_seconds")}
                                         for i in pool.infos])
    table = build_table(folder.entries(ledger), resolved)
    write_tables(table, folder.path)
    if failed:
        raise DistributedRunIncomplete(
            f"{len(failed)} batch(es) failed on {cluster.max_retries + 1} workers each ({sorted(k for j in failed for k in j)}); "
            f"the table in {folder.path} covers the {len(done_cases)} finished cases; run the same command with --resume")
    return table
