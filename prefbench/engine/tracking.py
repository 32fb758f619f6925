"""Experiment trackers (TensorBoard, Weights & Biases, MLflow): extra sinks of a training run's metrics, through
accelerate's tracker API.

``metrics.jsonl`` stays the record. Each of its lines also goes to every tracker that ``report_to`` names, at its
step, from the main process, once the step's numbers are computed: a tracker reads them and never changes them.
A training run is one tracker run (``prefbench run``: one per objective and seed, grouped under the benchmark
run), with the settings that define its numbers (the objective's parameters resolved with their defaults) as its
hyperparameters:

    tensorboard   event files in <tracker_dir>/<tracker_run>/ (tracker_dir default: <output_dir>/tensorboard)
    wandb         project $WANDB_PROJECT (default prefbench), group tracker_group, run name tracker_run
    mlflow        experiment tracker_group, run name tracker_run, in the store $MLFLOW_TRACKING_URI names

``tracker_run`` defaults to ``<objective>-seed<seed>``, ``tracker_group`` to ``prefbench``. A resumed training
continues its tracker run: TensorBoard writes into the same folder and hides the steps after the checkpoint, which
are trained again (SummaryWriter's ``purge_step``); wandb and mlflow reopen the run whose id ``trackers.json`` in
the output folder recorded (mlflow: while ``$MLFLOW_TRACKING_URI`` names the same store).

The libraries are optional (``pip install 'prefbench[trackers]'``); a missing one is a ConfigError before any
work (:func:`require_trackers`)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefbench.util.errors import ConfigError, UserError
from prefbench.util.files import atomic_write_text
from prefbench.util.names import suggest

if TYPE_CHECKING:   # the config module imports this one to check report_to
    from prefbench.engine.config import TrainConfig

TRACKERS = ("tensorboard", "wandb", "mlflow")   # each is also the name of the module it needs
DEFAULT_GROUP = "prefbench"
IDS_FILE = "trackers.json"


class TrackerError(UserError):
    """A tracker that could not start its run (wandb without a login, an mlflow store out of reach)."""


def parse_report_to(text: str) -> tuple[str, ...]:
    """``"tensorboard,wandb"`` -> ("tensorboard", "wandb"); ``"none"`` -> (). An unknown name is a ConfigError."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if names == ["none"]:
        return ()
    for name in names:
        if name not in TRACKERS:
            also = "" if name != "none" else "; none stands alone"
            raise ConfigError(f"report_to: unknown tracker '{name}'{suggest(name, TRACKERS)}{also}: give none, or "
                              f"one or more of {', '.join(TRACKERS)} separated by commas")
    if not names:
        raise ConfigError(f"report_to is empty: give none, or one or more of {', '.join(TRACKERS)} separated by "
                          f"commas")
    return tuple(dict.fromkeys(names))


def require_trackers(report_to: str) -> None:
    """A ConfigError that names the extra to install, for a tracker whose library is missing."""
    for name in parse_report_to(report_to):
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"--report-to {name}: the {name} package is not installed; install it with "
                              f"pip install 'prefbench[trackers]'")


def tracker_run(cfg: TrainConfig) -> str:
    """The name of ``cfg``'s tracker run."""
    return cfg.tracker_run or f"{cfg.objective}-seed{cfg.seed}"


def hyperparameters(cfg: TrainConfig) -> dict[str, Any]:
    """What a tracker run records as its hyperparameters: the settings that define the run's numbers (the same
    when it resumes), one level deep, the objective's parameters resolved with their defaults."""
    from prefbench.registry import get_objective

    values = {key: value for key, value in cfg.identity().items() if key != "objective_params"}
    resolved = get_objective(cfg.objective).resolve_params(**cfg.objective_params)
    return {**values, **{f"objective_params.{name}": value for name, value in resolved.items()}}


class Trackers:
    """The trackers of one training run into ``out``: made before the accelerator (which takes them), open while
    the optimizer steps run, fed each step's metrics record."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out = cfg, Path(out)
        self.names = parse_report_to(cfg.report_to)
        self.ids: dict[str, str] = {}     # of the runs to continue
        path = self.out / IDS_FILE
        if self.names and path.exists():
            self.ids = json.loads(path.read_text(encoding="utf-8"))
        if "wandb" in self.names:
            self.ids.setdefault("wandb", secrets.token_hex(4))   # chosen now: a run killed before its end keeps it
        if self.ids.get("mlflow_store") != os.environ.get("MLFLOW_TRACKING_URI", ""):
            self.ids.pop("mlflow", None)    # another store does not hold that run
        self.instances = [self._make(name) for name in self.names]

    def _make(self, name: str):
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

        from prefbench.engine.checkpoint import checkpoint_step  # (it imports what imports this)

        run, group = tracker_run(self.cfg), self.cfg.tracker_group or DEFAULT_GROUP
        if name == "tensorboard":
            # events of the steps after the checkpoint (records are numbered from 1) are hidden: they are redone
            return TensorBoardTracker(run, self.cfg.tracker_dir or str(self.out / "tensorboard"),
                                      purge_step=checkpoint_step(self.out) + 1)
        if name == "wandb":
            return WandBTracker(os.environ.get("WANDB_PROJECT", DEFAULT_GROUP), group=group, name=run,
                                id=self.ids["wandb"], resume="allow")
        return MLflowTracker(experiment_name=group, run_name=run, run_id=self.ids.get("mlflow"))

    @contextlib.contextmanager
    def running(self, accelerator) -> Iterator[None]:
        """The tracker runs open (or reopened) with the hyperparameters, their ids recorded to reopen them by;
        closed at the end, after a failure without accelerate's barrier (it would wait for processes that
        stopped)."""
        if not self.names:
            yield
            return
        try:
            accelerator.init_trackers(tracker_run(self.cfg), config=hyperparameters(self.cfg))
        except Exception as exc:   # wandb without a login, an mlflow server out of reach: the user's to fix
            raise TrackerError(f"--report-to {self.cfg.report_to}: a tracker could not start its run: {exc}") from exc
        if accelerator.is_main_process:
            if "mlflow" in self.names:
                self.ids.update(mlflow=accelerator.get_tracker("mlflow", unwrap=True).info.run_id,
                                mlflow_store=os.environ.get("MLFLOW_TRACKING_URI", ""))
            atomic_write_text(self.out / IDS_FILE, json.dumps(self.ids, indent=2) + "\n")
        try:
            yield
        except BaseException:
            for tracker in accelerator.trackers:
                tracker.finish()
            raise
        accelerator.end_training()

    def log(self, accelerator, record: dict) -> None:
        """One step's metrics record, at its step."""
        if self.names:
            accelerator.log({key: value for key, value in record.items() if key != "step"}, step=record["step"])
