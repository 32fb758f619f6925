"""``prefbench run --executor ray|slurm``: the grid's training jobs on Ray or through submitit give the local run's
numbers, run at the same time, resume, and fail in one line naming the job and its log."""

import json
import re
import shutil
from pathlib import Path

import pytest

from prefbench.cli import main
from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.pipeline.config import RunConfig
from prefbench.pipeline.executors import JOB_LOG, make_executor
from prefbench.pipeline.run import run

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
    ("ray", {"num_cpus": 2}),          # a local Ray cluster of two CPUs: two one-CPU jobs at a time
    ("slurm", {"cluster": "local"}),   # submitit's local executor: every job a process of its own, all at once
])
def test_jobs_run_at_once_and_give_the_local_runs_numbers(executor, options, tiny_finished_run, tmp_path, monkeypatch):
    pytest.importorskip({"ray": "ray", "slurm": "submitit"}[executor])
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

    # a second run finds every job trained: nothing is submitted, the same results
    again = run(_config(tiny_finished_run, out, executor, **options))
    assert again["systems"] == results["systems"] and _job_spans(out) == spans


def test_a_failed_job_is_one_line_naming_it_and_its_log(tiny_finished_run, tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    out = _untrained_copy(tiny_finished_run, tmp_path / "run")
    for trained in ("dpo/seed0", "jpo/seed0"):       # two jobs left: dpo seed 1, and jpo seed 1, which fails
        shutil.copytree(tiny_finished_run / trained, out / trained)
    (out / "jpo/seed1").mkdir(parents=True)   # jpo seed 1's folder holds a training of other settings
    (out / "jpo/seed1/config.yaml").write_text((tiny_finished_run / "jpo/seed1/config.yaml").read_text()
                                               .replace("max_steps: 2", "max_steps: 3"))
    cfg = _config(tiny_finished_run, out, "slurm", cluster="local")
    args = ["run", "--objectives", "dpo,jpo", "--benchmark", cfg.benchmark, "--preset", "smoke", "--seeds", "0,1",
            "--model", cfg.model, "--quantization", "none", "--output-dir", str(out),
            "--executor", "slurm", "--executor-option", "cluster=local"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]    # after the progress bars
    log_file = out / "jpo/seed1" / JOB_LOG
    assert err.startswith("prefbench: error: slurm job jpo seed 1 failed: SameRunError: ")
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
    ("local", {"num_cpus": "2"}, "not an option of the local executor (its options: none)"),
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
