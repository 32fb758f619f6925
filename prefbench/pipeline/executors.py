"""Where the training jobs of a run go (``prefbench run --executor local|ray|slurm``).

A comparison is a grid of independent trainings: every objective at every seed, and with ``--sweep`` every
point of every objective's grid. Each is a :class:`TrainJob`, a value (the training's settings and the
benchmark spec, nothing shared) that :func:`run_job` trains exactly as the local loop does, so every executor
runs the same code and writes the same files into the same run directory:

- ``local`` (the default): ``workers`` jobs at a time, each in a process of its own with an equal share of the
  cores (:mod:`prefbench.util.processes`); with one worker, one job after the other in this process. The default
  is two workers on a machine without a GPU whose torch runs two or more threads (a small model keeps two threads
  only partly busy: two one-thread jobs train 1.3-1.5x faster on a 2-core CPU), else one; ``PREFBENCH_WORKERS``
  sets it. The generate stage answers with the same number of processes, a system at a time each.
- ``ray``: each job a Ray task, on a running cluster (``address``) or on a local one started for the stage;
  one GPU per job where the cluster has GPUs.
- ``slurm``: each job a SLURM job through submitit (submitit's files under ``<run>/jobs/slurm/``);
  ``cluster=local`` runs the jobs as local processes instead.

A job on ray, slurm or a local worker process logs to ``<its output dir>/job.log``: its process, host, start and
end times, then the engine's log. A job whose folder already holds a trained adapter is not submitted again, so
such a run resumes like a one-process one. Jobs share nothing mutable: each writes its own folder, and the
reference log-prob cache (engine/reference.py, under ``$PREFBENCH_CACHE``, which must be a folder every worker
sees) is written atomically, so two jobs computing the same entry at once (two seeds of one objective) both read a
whole entry; they spend the forward passes twice rather than wait for each other. On ray and slurm, generation
and judging stay in the driver: they load the base model once for every system.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from prefbench.benchmark import BenchmarkSpec
from prefbench.engine.checkpoint import is_trained
from prefbench.engine.config import ConfigError, TrainConfig, TrainingError
from prefbench.engine.models import WORKERS_VARIABLE, default_workers, threads_per_worker
from prefbench.pipeline.rounds import train_objective
from prefbench.util.processes import Task, run_in_processes
from prefbench.util.settings import positive_int

log = logging.getLogger("prefbench")

JOB_LOG = "job.log"
_FAILED = ": failed: "     # the line of a job's log that says why it failed (read back by the driver)


def _driver_environment() -> dict[str, str]:
    """The driver's PREFBENCH_* settings (the cache root above all), which every job runs under."""
    return {k: v for k, v in os.environ.items() if k.startswith("PREFBENCH_")}


@dataclass(frozen=True)
class TrainJob:
    """One training of the grid, everything it needs held by value (picklable, so any executor can ship it)."""

    name: str                     # how logs and errors name it: "dpo seed 1", "sweep dpo beta=0.1-lr=1e-05"
    settings: TrainConfig
    spec: BenchmarkSpec
    environment: dict[str, str] = field(default_factory=_driver_environment)

    @property
    def log_file(self) -> Path:
        return Path(self.settings.output_dir) / JOB_LOG


def run_job(job: TrainJob) -> str:
    """A job on a worker (a Ray task, a SLURM job): the driver's PREFBENCH_* settings, the log to the job's own
    file, then the training the local executor runs; returns the job's output folder."""
    os.environ.update(job.environment)
    job.log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(job.log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    # unix times, so that the logs of two jobs show whether they ran at the same time; the thread count, since sums
    # split over another number of threads round differently
    import torch

    log.info("job %s: started at %.3f in process %d on %s, torch threads: %d", job.name, time.time(), os.getpid(),
             socket.gethostname(), torch.get_num_threads())
    try:
        out = train_objective(job.settings, job.spec)
        log.info("job %s: ended at %.3f", job.name, time.time())
        return str(out)
    except BaseException as exc:
        log.error("job %s%s%s", job.name, _FAILED, _one_line(exc), exc_info=True)
        raise
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(level)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class _Executor(ABC):
    run_dir: Path
    settings: dict          # the --executor-option values, typed

    options: ClassVar[dict[str, tuple[Callable[[str], object], str]]] = {}   # name: (parse, what it sets)

    def __post_init__(self) -> None:
        """Settings completed from the environment, at construction (before any work)."""

    @abstractmethod
    def run(self, jobs: list[TrainJob]) -> None:
        """Every job trained (or found trained), or a TrainingError."""

    @property
    def generation_workers(self) -> int:
        """Processes the generate stage answers with: one, in the driver (it loads the base model once)."""
        return 1


class _SubmittingExecutor(_Executor):
    """Submits the jobs not trained yet, waits for all of them, and raises one line for the first that failed."""

    name: ClassVar[str]
    module: ClassVar[str | None]      # the library it needs, installed by the extra of its name

    def run(self, jobs: list[TrainJob]) -> None:
        pending = [j for j in jobs if not is_trained(Path(j.settings.output_dir))]
        log.info("%s: %d training jobs (%d already trained)", self.name, len(pending), len(jobs) - len(pending))
        if not pending:
            return
        failures = self.execute(pending)
        if failures:
            job, exc = failures[0]
            more = f" ({len(failures) - 1} other job{'s' * (len(failures) > 2)} failed too)" if len(failures) > 1 else ""
            raise TrainingError(f"{self.name} job {job.name} failed: {_reason(job, exc)}; its log: {job.log_file}{more}")

    @abstractmethod
    def execute(self, jobs: list[TrainJob]) -> list[tuple[TrainJob, BaseException]]:
        """Run ``jobs`` to their end; the failed ones with their error."""


def _reason(job: TrainJob, exc: BaseException) -> str:
    """Why a job failed: its log's own line where it wrote one (the executor's error wraps it in a traceback),
    else the executor's error (a worker that died, a SLURM job that timed out)."""
    lines = job.log_file.read_text(errors="replace").splitlines() if job.log_file.exists() else []
    starts = [i for i, line in enumerate(lines) if f"job {job.name}: started at " in line]
    this_run = lines[starts[-1]:] if starts else []      # the log is appended to by every run of the job
    said = [line.split(_FAILED, 1)[1] for line in this_run if f"job {job.name}{_FAILED}" in line]
    return said[-1] if said else _one_line(exc)


class LocalExecutor(_SubmittingExecutor):
    """``workers`` jobs at a time in processes of this machine; with one worker, every job in this process, one
    after the other (as ``prefbench run`` always did)."""

    name = "local"
    module = None
    options = {"workers": (positive_int, ("jobs at a time, each in a process of its own with an equal share of the "
                                       "cores; 1: one after the other in this process (default: 2 without a GPU where "
                                       f"torch runs 2 or more threads, else 1; {WORKERS_VARIABLE} sets the default)"))}

    def __post_init__(self) -> None:
        self.settings.setdefault("workers", default_workers())   # a bad PREFBENCH_WORKERS fails before any work

    @property
    def workers(self) -> int:
        return self.settings["workers"]

    @property
    def generation_workers(self) -> int:
        return self.workers

    def run(self, jobs: list[TrainJob]) -> None:
        if self.workers > 1:
            return super().run(jobs)
        for i, job in enumerate(jobs, 1):
            log.info("training %s (%d of %d)", job.name, i, len(jobs))
            train_objective(job.settings, job.spec)

    def execute(self, jobs: list[TrainJob]) -> list[tuple[TrainJob, BaseException]]:
        tasks = [Task(job.name, run_job, (job,)) for job in jobs]
        failures = run_in_processes(tasks, self.workers, threads_per_worker(self.workers), desc="train", unit="job",
                                    total=len(jobs), done=lambda: sum(is_trained(Path(j.settings.output_dir))
                                                                      for j in jobs))
        return [(task.args[0], exc) for task, exc in failures]


class RayExecutor(_SubmittingExecutor):
    """Each job a Ray task, on the cluster at ``address`` or on a local one started for the stage; connected for
    the stage only, unless Ray was already initialised in this process (then its cluster, left as it is)."""

    name = "ray"
    module = "ray"
    options = {"address": (str, "a running Ray cluster's address (default: start a local cluster)"),
               "num_cpus": (int, "CPUs of the local cluster (default: all of this machine's)"),
               "cpus_per_job": (float, "CPUs each job holds (default 1)"),
               "gpus_per_job": (float, "GPUs each job holds (default 1 where the cluster has GPUs, else 0)")}

    def execute(self, jobs: list[TrainJob]) -> list[tuple[TrainJob, BaseException]]:
        import ray

        started = not ray.is_initialized()
        if started:
            where = ({"address": self.settings["address"]} if "address" in self.settings else
                     {"num_cpus": self.settings.get("num_cpus"), "include_dashboard": False})
            ray.init(**where)
        try:
            gpus = self.settings.get("gpus_per_job", 1.0 if ray.cluster_resources().get("GPU", 0) else 0.0)
            task = ray.remote(run_job).options(num_cpus=self.settings.get("cpus_per_job", 1.0), num_gpus=gpus)
            handles = [(job, task.remote(job)) for job in jobs]
            failures = []
            for job, handle in handles:
                try:
                    ray.get(handle)
                except ray.exceptions.RayError as exc:
                    failures.append((job, getattr(exc, "cause", None) or exc))
            return failures
        finally:
            if started:
                ray.shutdown()


def _cluster(text: str) -> str:
    if text not in ("slurm", "local"):
        raise ValueError(text)
    return text


class SlurmExecutor(_SubmittingExecutor):
    """Each job a SLURM job through submitit (``cluster=local``: local processes, e.g. to try a run)."""

    name = "slurm"
    module = "submitit"
    options = {"cluster": (_cluster, "slurm, or local to run the jobs as local processes (default slurm)"),
               "partition": (str, "SLURM partition (default: the cluster's)"),
               "time": (int, "each job's time limit in minutes (default 1440)"),
               "gpus_per_job": (int, "GPUs each job holds (default 1 on slurm, 0 with cluster=local)"),
               "cpus_per_job": (int, "CPUs each job holds (default 4)"),
               "mem_gb": (float, "memory each job holds in GB (default: the partition's)"),
               "account": (str, "SLURM account to charge (default: yours)"),
               "qos": (str, "SLURM quality of service (default: the partition's)")}

    def execute(self, jobs: list[TrainJob]) -> list[tuple[TrainJob, BaseException]]:
        import submitit

        cluster = self.settings.get("cluster", "slurm")
        executor = submitit.AutoExecutor(folder=self.run_dir / "jobs" / "slurm" / "%j", cluster=cluster)
        specific = {f"slurm_{key}": self.settings[key] for key in ("partition", "account", "qos") if key in self.settings}
        executor.update_parameters(name=f"prefbench-{self.run_dir.name}", timeout_min=self.settings.get("time", 1440),
                                   gpus_per_node=self.settings.get("gpus_per_job", int(cluster == "slurm")),
                                   cpus_per_task=self.settings.get("cpus_per_job", 4),
                                   mem_gb=self.settings.get("mem_gb"), **specific)
        handles = [(job, executor.submit(run_job, job)) for job in jobs]
        log.info("slurm: submitted %s", ", ".join(f"{job.name} as {handle.job_id}" for job, handle in handles))
        failures = []
        for job, handle in handles:
            try:
                handle.result()
            except Exception as exc:   # the job's own error, or submitit's (timed out, cancelled, node lost)
                failures.append((job, exc))
        return failures


EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}


def make_executor(name: str, options: dict[str, str], run_dir: Path):
    """The executor ``name`` with its ``--executor-option`` values checked and typed; a ConfigError for an unknown
    name or option, or for a library that is not installed (before any work)."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name}: expected one of {', '.join(EXECUTORS)}")
    kind = EXECUTORS[name]
    typed = {}
    for key, text in options.items():
        if key not in kind.options:
            known = ", ".join(kind.options) or "none"
            raise ConfigError(f"--executor-option {key}: not an option of the {name} executor (its options: {known})")
        parse, what = kind.options[key]
        try:
            typed[key] = parse(text)
        except ValueError:
            raise ConfigError(f"--executor-option {key}={text}: not a valid value ({key}: {what})") from None
    if name != "local" and importlib.util.find_spec(kind.module) is None:
        raise ConfigError(f"--executor {name} needs {kind.module}, which is not installed: "
                          f"pip install 'prefbench[{name}]'")
    return kind(Path(run_dir), typed)
