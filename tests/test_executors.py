"""``prefbench run --executor local|ray|slurm``: the grid's training jobs in local worker processes, on Ray or
through submitit give the local run's numbers, run at the same time, resume, and fail in one line naming the job
and its log."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from prefbench.cli import main
from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.pipeline.config import RunConfig
from prefbench.pipeline.executors import JOB_LOG, make_executor
from prefbench.pipeline.run import run
from prefbench.util.processes import Task, run_in_processes

JOBS = ("dpo/seed0", "jpo/seed0")     # trained by the executor
TRAINED = ("dpo/seed1", "jpo/seed1")  # copied trained from the local run: a resumed run does not submit them
# what the train stage and every later stage write; the run's data stage is kept, so only these are redone
REDONE = ("dpo", "jpo", "generations", "kl", "judgments.jsonl", "results.json", "leaderboard.csv", "report.md",
          "report.html", "plots", "export", "push")


def _untrained_copy(finished: Path, to: Path) -> Path:
    """``finished``'s run directory up to its data stage (the sampled pairs are the same for every executor)."""
    shutil.copytree(finished, to, ignore=lambda folder, names: [n for n in names if Path(folder) == finished
                                                                  and n in REDONE])
    return to


def _config(finished: Path, out: Path, executor: str, **options) -> RunConfig:
    return RunConfig(objectives=["dpo", "jpo"], benchmark=str(finished.parent / "tiny.yaml"), preset="smoke",
                     seeds=[0, 1], model=TrainConfig.from_yaml(finished / "dpo/seed0/config.yaml").model,
                     quantization="none", output_dir=str(out), executor=executor,
                     executor_options={k: str(v) for k, v in options.items()})


def _metrics(folder: Path) -> list[dict]:
    """Every step's metrics but its throughput (a measure of the machine, not of the numbers)."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "tokens_per_s"} for row in rows]


def _adapter(folder: Path) -> dict:
    """An adapter's files as bytes (adapter_config.json included: its target_modules are written sorted, not in the
    order of each process's string hashes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _job_spans(run_dir: Path) -> dict[str, tuple[float, float, int]]:
    """Each job's (start, end) in unix time and its process, read from its job.log."""
    spans = {}
    for system in JOBS:
        text = (run_dir / system / JOB_LOG).read_text()
        start, pid = re.search(r"started at ([\d.]+) in process (\d+)", text).groups()
        spans[system] = (float(start), float(re.search(r"ended at ([\d.]+)", text).group(1)), int(pid))
    return spans


def _overlapping(spans: dict[str, tuple[float, float, int]]) -> list[tuple[str, str]]:
    return [(a, b) for a in spans for b in spans if a < b and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
            and spans[a][2] != spans[b][2]]


@pytest.mark.parametrize("executor, options", [
    ("local", {"workers": 2}),         # two worker processes of one thread each; they answer the eval prompts too
    ("ray", {"num_cpus": 2}),          # a local Ray cluster of two CPUs: two one-CPU jobs at a time
    ("slurm", {"cluster": "local"}),   # submitit's local executor: every job a process of its own, all at once
])
def test_jobs_run_at_once_and_give_the_local_runs_numbers(executor, options, tiny_finished_run, tmp_path, monkeypatch):
    pytest.importorskip({"local": "prefbench", "ray": "ray", "slurm": "submitit"}[executor])
    # a cache of its own: the jobs compute the reference log-probs themselves, under the driver's PREFBENCH_CACHE
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    out = _untrained_copy(tiny_finished_run, tmp_path / "run")
    for trained in TRAINED:
        shutil.copytree(tiny_finished_run / trained, out / trained)
    results = run(_config(tiny_finished_run, out, executor, **options))

    local = json.loads((tiny_finished_run / "results.json").read_text())
    assert results["systems"] == local["systems"] and results["comparisons"] == local["comparisons"]
    assert not any((out / trained / JOB_LOG).exists() for trained in TRAINED)
    for system in JOBS:
        assert _metrics(out / system) == _metrics(tiny_finished_run / system), system
        assert _adapter(out / system / "adapter") == _adapter(tiny_finished_run / system / "adapter"), system
    assert (out / "judgments.jsonl").read_text() == (tiny_finished_run / "judgments.jsonl").read_text()
    assert list((tmp_path / "cache").rglob("*.safetensors")), "the jobs wrote no reference log-probs to the cache"
    spans = _job_spans(out)
    assert _overlapping(spans), f"no two jobs ran at the same time: {spans}"
    if executor == "local":     # two workers on this machine's threads: a share each
        threads = max(1, torch.get_num_threads() // 2)
        assert all(f"torch threads: {threads}\n" in (out / s / JOB_LOG).read_text() for s in JOBS)

    # a second run finds every job trained: nothing is submitted, the same results
    again = run(_config(tiny_finished_run, out, executor, **options))
    assert again["systems"] == results["systems"] and _job_spans(out) == spans


@pytest.mark.parametrize("executor, option", [("local", "workers=2"), ("slurm", "cluster=local")])
def test_a_failed_job_is_one_line_naming_it_and_its_log(executor, option, tiny_finished_run, tmp_path, monkeypatch,
                                                        capsys):
    pytest.importorskip({"local": "prefbench", "slurm": "submitit"}[executor])
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    out = _untrained_copy(tiny_finished_run, tmp_path / "run")
    for trained in ("dpo/seed0", "jpo/seed0"):       # two jobs left: dpo seed 1, and jpo seed 1, which fails
        shutil.copytree(tiny_finished_run / trained, out / trained)
    (out / "jpo/seed1").mkdir(parents=True)   # jpo seed 1's folder holds a training of other settings
    (out / "jpo/seed1/config.yaml").write_text((tiny_finished_run / "jpo/seed1/config.yaml").read_text()
                                               .replace("max_steps: 2", "max_steps: 3"))
    cfg = _config(tiny_finished_run, out, executor)
    args = ["run", "--objectives", "dpo,jpo", "--benchmark", cfg.benchmark, "--preset", "smoke", "--seeds", "0,1",
            "--model", cfg.model, "--quantization", "none", "--output-dir", str(out),
            "--executor", executor, "--executor-option", option]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]    # after the progress bars
    log_file = out / "jpo/seed1" / JOB_LOG
    assert err.startswith(f"prefbench: error: {executor} job jpo seed 1 failed: SameRunError: ")
    assert err.endswith(f"its log: {log_file}") and "max_steps" in err
    assert "Traceback" in log_file.read_text()          # the whole story is in the job's log
    # the other job ran to its end: a rerun after the fix trains jpo seed 1 alone
    assert (out / "dpo/seed1/adapter/adapter_config.json").exists() and not (out / "jpo/seed1/adapter").exists()


@pytest.mark.parametrize("name, options, message", [
    ("dask", {}, "--executor dask: expected one of local, ray, slurm"),
    ("ray", {"partition": "gpu"}, "--executor-option partition: not an option of the ray executor (its options: "
                                  "address, num_cpus, cpus_per_job, gpus_per_job)"),
    ("slurm", {"time": "1h"}, "--executor-option time=1h: not a valid value (time: each job's time limit in minutes"),
    ("slurm", {"cluster": "pbs"}, "--executor-option cluster=pbs: not a valid value"),
    ("local", {"num_cpus": "2"}, "not an option of the local executor (its options: workers)"),
    ("local", {"workers": "0"}, "--executor-option workers=0: not a valid value (workers: jobs at a time"),
])
def test_executor_settings_are_checked(name, options, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        make_executor(name, options, tmp_path)
    assert message in str(err.value)


@pytest.mark.parametrize("executor, extra, module", [("ray", "ray", "ray"), ("slurm", "slurm", "submitit")])
def test_a_missing_library_names_its_extra_before_any_work(executor, extra, module, tmp_path, monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else find_spec(name, *a))
    out = tmp_path / "run"
    assert main(["run", "--objectives", "dpo", "--output-dir", str(out), "--executor", executor]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"prefbench: error: --executor {executor} needs {module}, which is not installed: "
                   f"pip install 'prefbench[{extra}]'")
    assert not out.exists()


def test_a_malformed_executor_option_is_one_line(capsys):
    assert main(["run", "--executor", "slurm", "--executor-option", "partition"]) == 2
    assert capsys.readouterr().err.strip() == ("prefbench: error: --executor-option must look like KEY=VALUE "
                                               "(e.g. partition=gpu), got 'partition'")


def _worker_report(folder: str) -> None:
    """A task for a worker process (module level, so a spawned process can import it): what that process runs with."""
    seen = {"pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS"), "tqdm": os.environ.get("TQDM_DISABLE"),
            "torch_threads": torch.get_num_threads()}
    (Path(folder) / f"{os.getpid()}-{len(list(Path(folder).iterdir()))}.json").write_text(json.dumps(seen))


def _worker_failure(message: str) -> None:
    raise ConfigError(message)


def test_worker_processes_run_with_their_threads_and_no_bars_and_failures_come_back_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    tasks = [Task("a", _worker_report, (str(tmp_path),)), Task("b", _worker_failure, ("b broke",)),
             Task("c", _worker_report, (str(tmp_path),)), Task("d", _worker_failure, ("d broke",))]
    failures = run_in_processes(tasks, 2, 1, desc="tasks", unit="task", total=4, done=lambda: 0)
    assert [(task.name, type(exc).__name__, str(exc)) for task, exc in failures] == [
        ("b", "ConfigError", "b broke"), ("d", "ConfigError", "d broke")]
    seen = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert len(seen) == 2
    assert all(s["omp"] == "1" and s["tqdm"] == "1" and s["torch_threads"] == 1 for s in seen), seen
    assert os.getpid() not in {s["pid"] for s in seen}
    assert "TQDM_DISABLE" not in os.environ and "OMP_NUM_THREADS" not in os.environ   # the driver's are as they were


@pytest.mark.parametrize("variable, cuda, threads, workers", [
    (None, False, 2, 2),     # a CPU of two or more threads: two one-thread jobs
    (None, False, 1, 1),
    (None, True, 16, 1),     # a GPU: one job at a time on it
    ("3", True, 16, 3),      # PREFBENCH_WORKERS says
])
def test_local_workers_by_default(variable, cuda, threads, workers, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    if variable is None:
        monkeypatch.delenv("PREFBENCH_WORKERS", raising=False)
    else:
        monkeypatch.setenv("PREFBENCH_WORKERS", variable)
    executor = make_executor("local", {}, tmp_path)
    assert executor.workers == executor.generation_workers == workers
    assert make_executor("local", {"workers": "4"}, tmp_path).workers == 4
    assert make_executor("ray", {}, tmp_path).generation_workers == 1    # the driver answers, as before


def test_a_bad_workers_variable_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PREFBENCH_WORKERS", "two")
    out = tmp_path / "run"
    assert main(["run", "--objectives", "dpo", "--output-dir", str(out)]) == 2
    assert capsys.readouterr().err.strip() == ("prefbench: error: PREFBENCH_WORKERS=two: expected a whole number of "
                                               "at least 1")
    assert not out.exists()
