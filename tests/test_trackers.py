"""``--report-to``: every optimizer step's metrics record also goes to TensorBoard, wandb (offline) and mlflow (a
file store), read back here with each library's own reader and compared with metrics.jsonl, the record; the
trackers never change a training's numbers; a resumed training continues its tracker run; a missing library is
one line before any work."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from prefbench.cli import main
from prefbench.engine.config import ConfigError, TrainConfig
from prefbench.engine.tracking import parse_report_to
from prefbench.engine.trainer import train
from prefbench.pipeline.config import RunConfig

TIMING = ("tokens_per_s",)
LOGGED = ("loss", "accuracy", "margin", "chosen_logps", "rejected_logps", "grad_norm", "lr", "tokens", "tokens_per_s")


@pytest.fixture(scope="session")
def wandb_home(tmp_path_factory) -> Path:
    """Where wandb writes, for the whole session: it reads its settings once per process, at its first run."""
    return tmp_path_factory.mktemp("wandb-home")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, wandb_home):
    """The caches, and every place wandb and mlflow would write, in temporary folders; wandb offline."""
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(wandb_home))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    # mlflow 3 keeps its file store for exactly this kind of local use, behind a flag
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


def cfg(model_dir, data, out, **kw) -> TrainConfig:
    base = {"model": str(model_dir), "data": str(data), "quantization": "none", "batch_size": 4, "max_steps": 6,
            "lr": 5e-3, "warmup_steps": 1, "save_every": 3, "output_dir": str(out), "objective": "dpo"}
    return TrainConfig(**{**base, **kw})


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Each tag's (step, value) pairs as TensorBoard shows them (steps a restart purged left out)."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={SCALARS: 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def as_float32(rows: list[dict], key: str) -> list[tuple[int, float]]:
    """What an event file holds of ``key``: TensorBoard stores a scalar as a float32."""
    return [(r["step"], float(np.float32(r[key]))) for r in rows]


def kill_during_step(monkeypatch, n: int):
    """AdamW's n-th step raises KeyboardInterrupt (a killed process); returns the function that undoes it."""
    real_step, calls = torch.optim.AdamW.step, {"n": 0}

    def dying_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    return lambda: monkeypatch.setattr(torch.optim.AdamW, "step", real_step)


@pytest.mark.parametrize("text, names", [("none", ()), ("tensorboard", ("tensorboard",)),
                                         (" tensorboard, wandb ,mlflow", ("tensorboard", "wandb", "mlflow")),
                                         ("wandb,wandb", ("wandb",))])
def test_report_to_names_trackers_separated_by_commas(text, names):
    assert parse_report_to(text) == names


@pytest.mark.parametrize("text, message", [("tensorbord", "unknown tracker 'tensorbord' (did you mean 'tensorboard'?)"),
                                           ("none,wandb", "none stands alone"), ("", "report_to is empty"),
                                           ("comet", "one or more of tensorboard, wandb, mlflow")])
def test_an_unknown_tracker_is_a_config_error_of_train_and_run(text, message, tmp_path):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        TrainConfig(report_to=text)
    with pytest.raises(ConfigError, match="report_to"):
        RunConfig(objectives=["dpo"], report_to=text, output_dir=str(tmp_path / "run"))


def test_train_reports_every_step_to_tensorboard_as_metrics_jsonl_records_it(tiny_model_dir, prefs, tmp_path,
                                                                             capsys):
    out = tmp_path / "out"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(prefs), "--quantization", "none",
                 "--batch-size", "4", "--max-steps", "6", "--lr", "5e-3", "--warmup-steps", "1",
                 "--output-dir", str(out), "--report-to", "tensorboard"]) == 0
    rows = records(out)
    folder = out / "tensorboard" / "dpo-seed0"     # the default folder and run name
    scalars = tensorboard_scalars(folder)
    assert set(scalars) == set(LOGGED)
    for key in LOGGED:
        assert scalars[key] == as_float32(rows, key), key
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3, 4, 5, 6]
    # the hyperparameters: the settings that define the numbers, the objective's resolved with their defaults
    (hparams_file,) = folder.glob("*/hparams.yml")
    hparams = yaml.safe_load(hparams_file.read_text())
    assert hparams["objective_params.beta"] == 0.1 and hparams["lr"] == 5e-3 and hparams["max_steps"] == 6
    assert hparams["objective"] == "dpo" and hparams["data"] == str(prefs)
    assert not {"output_dir", "save_every", "report_to", "tracker_run"} & set(hparams)


def test_trackers_never_change_the_training_numbers(tiny_model_dir, prefs, tmp_path):
    for library in ("tensorboard", "wandb", "mlflow"):
        pytest.importorskip(library)
    plain = records(train(cfg(tiny_model_dir, prefs, tmp_path / "plain")))
    tracked = records(train(cfg(tiny_model_dir, prefs, tmp_path / "tracked", report_to="tensorboard,wandb,mlflow")))
    assert untimed(tracked) == untimed(plain)
    assert (tmp_path / "tracked" / "tensorboard" / "dpo-seed0").is_dir()


def test_a_resumed_training_continues_its_tensorboard_run_from_the_checkpoint(tiny_model_dir, prefs, tmp_path,
                                                                               monkeypatch):
    """Killed during step 5 (checkpoint after step 3, step 4 already logged): the resumed training writes into the
    same folder, and TensorBoard shows each step once, with the values of the training never stopped."""
    full = records(train(cfg(tiny_model_dir, prefs, tmp_path / "full")))
    out = tmp_path / "killed"
    undo = kill_during_step(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tiny_model_dir, prefs, out, report_to="tensorboard"))
    undo()
    folder = out / "tensorboard" / "dpo-seed0"
    assert [step for step, _ in tensorboard_scalars(folder)["loss"]] == [1, 2, 3, 4]
    train(cfg(tiny_model_dir, prefs, out, report_to="tensorboard"))
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    assert tensorboard_scalars(folder)["loss"] == as_float32(full, "loss")
    assert untimed(records(out)) == untimed(full)


def test_tracker_settings_are_not_part_of_a_runs_identity(tiny_model_dir, prefs, tmp_path, caplog):
    """A finished training asked again with trackers is the same training: not refused, not trained again."""
    import logging

    caplog.set_level(logging.INFO, logger="prefbench")
    out = train(cfg(tiny_model_dir, prefs, tmp_path / "out"))
    train(cfg(tiny_model_dir, prefs, tmp_path / "out", report_to="tensorboard", tracker_run="again",
              tracker_group="g", tracker_dir=str(tmp_path / "tb")))
    assert "already trained" in caplog.text
    assert not (tmp_path / "tb").exists() and not (out / "tensorboard").exists()


def wandb_records(path: Path):
    """The records of a wandb transaction log (run-<id>.wandb): wandb's datastore is LevelDB's log format, 32 KiB
    blocks of chunks (crc32c: 4 bytes, length: 2, type: 1 = whole record, 2/3/4 = its first/middle/last part)
    after a 7-byte header (":W&B", magic 0xBEE1, version 0), each record a wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:      # too little left in a block for a chunk header: zero padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def test_wandb_offline_run_grouped_named_with_every_step_and_the_config(tiny_model_dir, prefs, tmp_path, wandb_home):
    pytest.importorskip("wandb")
    out = train(cfg(tiny_model_dir, prefs, tmp_path / "out", report_to="wandb", tracker_group="my-benchmark"))
    run_id = json.loads((out / "trackers.json").read_text())["wandb"]
    (log_file,) = wandb_home.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")
    history, config, runs = {}, {}, []
    for record in wandb_records(log_file):
        if record.HasField("run"):
            runs.append(record.run)
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
        if record.HasField("config"):
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        if record.HasField("history"):
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history[record.history.step.num] = {k: v for k, v in items.items() if not k.startswith("_")}
    assert {(r.project, r.run_group, r.display_name, r.run_id) for r in runs} == {("prefbench", "my-benchmark",
                                                                                 "dpo-seed0", run_id)}
    rows = records(out)
    assert history == {r["step"]: {k: v for k, v in r.items() if k != "step"} for r in rows}
    assert config["objective_params.beta"] == 0.1 and config["lr"] == 5e-3


def test_mlflow_run_in_the_groups_experiment_and_a_resumed_training_continues_it(tiny_model_dir, prefs, tmp_path,
                                                                                  monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    undo = kill_during_step(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(tiny_model_dir, prefs, out, report_to="mlflow", tracker_group="my-benchmark"))
    undo()
    run_id = json.loads((out / "trackers.json").read_text())["mlflow"]
    train(cfg(tiny_model_dir, prefs, out, report_to="mlflow", tracker_group="my-benchmark"))
    client = MlflowClient()
    experiment = client.get_experiment_by_name("my-benchmark")
    (run,) = client.search_runs([experiment.experiment_id])   # the resumed training reopened its run
    assert run.info.run_id == run_id and run.info.run_name == "dpo-seed0"
    assert run.data.params["objective_params.beta"] == "0.1" and run.data.params["lr"] == "0.005"
    rows = records(out)
    for key in ("loss", "accuracy", "margin", "grad_norm", "lr"):
        logged = {(m.step, m.value) for m in client.get_metric_history(run_id, key)}
        # step 4, logged before the kill and again after the resume, has the same value both times
        assert logged == {(r["step"], r[key]) for r in rows}, key


def test_run_reports_one_tracker_run_per_objective_and_seed(tiny_model_dir, tmp_path, capsys):
    from tests.test_run import SPEC

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "my-run"
    assert main(["run", "--benchmark", str(spec), "--preset", "smoke", "--objectives", "dpo,jpo", "--seeds", "0,1",
                 "--model", str(tiny_model_dir), "--quantization", "none", "--output-dir", str(out),
                 "--report-to", "tensorboard"]) == 0
    runs = out / "tensorboard"
    assert sorted(p.name for p in runs.iterdir()) == ["dpo-seed0", "dpo-seed1", "jpo-seed0", "jpo-seed1"]
    for objective in ("dpo", "jpo"):
        for seed in (0, 1):
            rows = records(out / objective / f"seed{seed}")
            assert tensorboard_scalars(runs / f"{objective}-seed{seed}")["loss"] == as_float32(rows, "loss")
            settings = yaml.safe_load((out / objective / f"seed{seed}" / "config.yaml").read_text())
            assert (settings["tracker_group"], settings["tracker_run"]) == ("my-run", f"{objective}-seed{seed}")


@pytest.mark.parametrize("library", ["wandb", "mlflow", "tensorboard"])
def test_a_missing_tracker_library_is_one_line_naming_the_extra_before_any_work(library, tiny_model_dir, prefs,
                                                                               tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, library, None)    # importlib.util.find_spec then finds nothing
    out = tmp_path / "out"
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(prefs), "--output-dir", str(out),
                 "--report-to", f"tensorboard,{library}" if library != "tensorboard" else library]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"prefbench: error: --report-to {library}: the {library} package is not installed; install it "
                   f"with pip install 'prefbench[trackers]'")
    assert not out.exists()
    run_dir = tmp_path / "run"
    assert main(["run", "--objectives", "dpo", "--output-dir", str(run_dir), "--report-to", library]) == 2
    assert "pip install 'prefbench[trackers]'" in capsys.readouterr().err
    assert not run_dir.exists()
    assert main(["sft", "--data", str(prefs), "--output-dir", str(out), "--report-to", library]) == 2
    assert "pip install 'prefbench[trackers]'" in capsys.readouterr().err
    assert not out.exists()


def test_every_training_of_a_run_is_its_own_tracker_run_in_the_runs_group(tmp_path):
    """Trainings, the SFT stage and sweep points get distinct tracker runs under the run directory's name (so no two
    write into one TensorBoard folder); the tracker settings reach each training's config."""
    from prefbench.benchmark import load_benchmark
    from prefbench.pipeline.config import sft_config, train_config
    from prefbench.pipeline.sweep import point_config

    run_dir = tmp_path / "my-run"
    run = RunConfig(objectives=["dpo"], output_dir=str(run_dir), report_to="tensorboard,mlflow", model="m")
    spec = load_benchmark("ifeval-lite", "quick", {"sweep": {"lr": [1e-4], "grid": {"dpo": {"beta": [0.2]}}}})
    trained = train_config(run, spec, {"dpo": {}}, "dpo", 1, run_dir)
    (point,) = spec.sweep.points("dpo", {}, 1e-4)
    swept = point_config(run, spec, point, run_dir)
    sft = sft_config(run, spec, run_dir)
    assert [c.tracker_run for c in (trained, swept, sft)] == ["dpo-seed1", "sweep-dpo-beta0.2-lr0.0001", "sft"]
    for c in (trained, swept, sft):
        assert (c.report_to, c.tracker_group, c.tracker_dir) == ("tensorboard,mlflow", "my-run",
                                                                 str(run_dir / "tensorboard"))


def test_a_tracker_that_cannot_start_its_run_is_one_line(tiny_model_dir, prefs, tmp_path, monkeypatch, capsys):
    """wandb without a login, say: its message, on the one line of a user error."""
    from accelerate.tracking import TensorBoardTracker

    def refused(self):
        raise RuntimeError("No API key configured.\nUse `wandb login` to log in.")
    monkeypatch.setattr(TensorBoardTracker, "start", refused)
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(prefs), "--quantization", "none",
                 "--batch-size", "4", "--max-steps", "2", "--output-dir", str(tmp_path / "out"),
                 "--report-to", "tensorboard"]) == 2
    assert ("prefbench: error: --report-to tensorboard: a tracker could not start its run: No API key configured. "
            "Use `wandb login` to log in.") == capsys.readouterr().err.splitlines()[-1]
