"""Experiment tracking: `train --report-to tensorboard mlflow wandb`.

The Trainer's own integrations log the training arguments and, every epoch, the training
loss and each validation metric. `Tracker` sets them up (the extra each one needs,
TensorBoard's folder inside the run, MLflow's store) and, once the run is written, adds what
they do not log: the resolved config and data fingerprint, the final validation metrics and
calibration, the run's plots and model card, and for MLflow the model itself (a pyfunc model,
see `sentitune.mlflow_model`). wandb gets the Trainer's logging only.

MLflow's store is `$MLFLOW_TRACKING_URI` (which `mlflow.set_tracking_uri` also sets), else
`sqlite:///mlflow.db` in the working directory: MLflow's own default, so `mlflow ui` started
in the same folder shows every run trained there, side by side. A store inside each run
directory would hold one run and compare nothing.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from sentitune.config import config_yaml
from sentitune.errors import SentituneError
from sentitune.run import Run

# Tracker -> the module it needs (the extra of the same name installs it).
_MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def require(tracker: str) -> None:
    """Raise one clear line when `tracker`'s extra is not installed."""
    try:
        importlib.import_module(_MODULES[tracker])
    except ImportError:
        raise SentituneError(f"--report-to {tracker} needs {_MODULES[tracker]}: "
                             f"pip install sentitune[{tracker}]") from None


def mlflow_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else the SQLite store `mlflow.db` in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class Tracker:
    """The trackers of one training run, from before the Trainer starts to the finished run."""

    def __init__(self, report_to: tuple[str, ...], run_name: str) -> None:
        for tracker in report_to:
            require(tracker)
        self.trackers = report_to
        self.run_name = run_name
        if "mlflow" in report_to:
            import mlflow

            # Set before the Trainer's callback starts its MLflow run, so it logs here too.
            mlflow.set_tracking_uri(mlflow_tracking_uri())

    @property
    def report_to(self) -> list[str] | str:
        """The Trainer's `report_to`."""
        return list(self.trackers) or "none"

    def attach(self, trainer, run: Run) -> None:
        """Name the tracked run after the run directory; TensorBoard writes inside the run."""
        trainer.args.run_name = self.run_name
        if "tensorboard" not in self.trackers:
            return
        from transformers.integrations import TensorBoardCallback

        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback):
                callback.logging_dir = str(run.tensorboard_dir)

    def log_run(self, trainer, run: Run) -> None:
        """Log what the Trainer did not, from the written (not yet published) `run`, and
        record in it where it went (`Run.tracking`)."""
        if not self.trackers:
            return
        step = trainer.state.global_step
        record: dict[str, Any] = {"report_to": list(self.trackers)}
        if "tensorboard" in self.trackers:
            _log_tensorboard(run, step)
            record["tensorboard"] = {"log_dir": run.tensorboard_dir.name}
        if "mlflow" in self.trackers:
            record["mlflow"] = _log_mlflow(run, step)
        run.write_tracking(record)


def summary(run: Run) -> list[str]:
    """Where a run was tracked, as lines for the user."""
    found = run.tracking
    lines = []
    if "tensorboard" in found:
        lines.append(f"TensorBoard: tensorboard --logdir {run.tensorboard_dir}")
    if "mlflow" in found:
        mlflow = found["mlflow"]
        lines.append(f"MLflow run {mlflow['run_id']} in {mlflow['tracking_uri']}; model "
                     f"{mlflow['model_uri']}")
    return lines


def _scalars(metrics: dict) -> dict[str, float]:
    """The numbers worth a chart: final validation metrics, calibration, cost of training."""
    found = {f"final/{name}": value for name, value in metrics["validation"].items()
             if isinstance(value, int | float) and not isinstance(value, bool)}
    found |= {f"calibration/{name}": float(value)
              for name, value in metrics.get("calibration", {}).items()
              if isinstance(value, int | float)}
    for name in ("best_epoch", "epochs_run", "train_runtime_s", "train_samples_per_s",
                 "trainable_params", "total_params", "peak_memory_mb"):
        if isinstance(metrics.get(name), int | float):
            found[f"train/{name}"] = metrics[name]
    return found


def _facts_text(run: Run) -> str:
    return config_yaml(run.config, run.facts)


def _log_tensorboard(run: Run, step: int) -> None:
    import matplotlib.image
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run.tensorboard_dir))
    try:
        # Indented four spaces: TensorBoard's text tab renders markdown, this as code.
        writer.add_text("sentitune/config", "    " + _facts_text(run).replace("\n", "\n    "),
                        step)
        writer.add_text("sentitune/data_fingerprint", str(run.facts.get("data_fingerprint")),
                        step)
        for name, value in _scalars(run.metrics).items():
            writer.add_scalar(name, value, step)
        for path in run.record_files():
            if path.suffix == ".png":
                writer.add_image(f"plots/{path.stem}", matplotlib.image.imread(path)[..., :3],
                                 step, dataformats="HWC")
            elif path.name == "README.md":
                writer.add_text("sentitune/model_card", path.read_text(encoding="utf-8"), step)
    finally:
        writer.close()


def _flat_params(config: dict, prefix: str = "sentitune") -> dict[str, Any]:
    """`sentitune.training.learning_rate`-style names: apart from the Trainer's own params."""
    params: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            params |= _flat_params(value, f"{prefix}.{key}")
        else:
            params[f"{prefix}.{key}"] = value
    return params


def _log_mlflow(run: Run, step: int) -> dict[str, str]:
    import mlflow

    from sentitune.mlflow_model import log_model

    active = mlflow.active_run()
    # The Trainer's callback ended the run it started; reopen it (a caller's own run stays
    # open for the caller to end).
    last = active or mlflow.last_active_run()
    if last is None:
        raise SentituneError("MLflow has no run from this training to log into; check "
                             "MLFLOW_TRACKING_URI and MLFLOW_RUN_ID")
    context = mlflow.start_run(run_id=last.info.run_id) if active is None else None
    try:
        facts = run.facts
        mlflow.log_params(_flat_params(run.config.to_dict()))
        mlflow.set_tags({
            "sentitune.data_fingerprint": str(facts.get("data_fingerprint")),
            "sentitune.task": run.task,
            "sentitune.labels": ",".join(run.labels),
            "sentitune.rows": str(facts.get("rows")),
        })
        mlflow.log_metrics(_scalars(run.metrics), step=step)
        for path in run.record_files():
            mlflow.log_artifact(str(path), artifact_path="run")
        model = log_model(run)
    finally:
        if context is not None:
            mlflow.end_run()
    return {"tracking_uri": mlflow.get_tracking_uri(), "run_id": last.info.run_id,
            "model_uri": model.model_uri}
