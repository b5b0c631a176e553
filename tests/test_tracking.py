"""`train --report-to`: MLflow (a temporary SQLite store) and TensorBoard, read back with
their own libraries, and the MLflow pyfunc model loaded and scored like `Classifier`."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_one_line_error, run_cli

from sentitune.config import make_config
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier
from sentitune.run import Run
from sentitune.tracking import mlflow_tracking_uri

TEXTS = ["the film was wonderful", "a dull and painful movie", "i found it charming"]


def train_flags(model: Path, data: Path, output: Path) -> list[str]:
    return ["train", "--data", str(data), "--model", str(model), "--output", str(output),
            "--quiet", "--max-length", "32", "--epochs", "3", "--batch-size", "16",
            "--learning-rate", "1e-2", "--warmup-ratio", "0", "--seed", "7"]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_bert, sentiment_csv) -> tuple[Path, str, str]:
    """One run trained through the CLI with both trackers, MLflow in a temporary store:
    (run directory, tracking URI, what the CLI printed)."""
    from sentitune.cli import main

    tmp = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    (tmp / "store").mkdir()
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(tmp)  # MLflow puts artifacts in ./mlruns of the working directory
        assert main([*train_flags(tiny_bert, sentiment_csv, tmp / "run"),
                     "--report-to", "mlflow", "tensorboard"]) == 0
    return tmp / "run", uri, printed.getvalue()


def test_mlflow_run_holds_params_metrics_artifacts_and_model(tracked, monkeypatch, tmp_path):
    import mlflow

    run_dir, uri, printed = tracked
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    [logged] = mlflow.search_runs(search_all_experiments=True, output_format="list")
    run = Run.open(run_dir)
    assert logged.info.run_name == run_dir.name and logged.info.status == "FINISHED"

    params = logged.data.params
    assert params["sentitune.training.learning_rate"] == "0.01"
    assert params["sentitune.data.max_length"] == "32"
    assert params["per_device_train_batch_size"] == "16"  # the Trainer's own
    assert logged.data.tags["sentitune.data_fingerprint"] == run.facts["data_fingerprint"]

    # Per epoch from the Trainer; the final validation metrics and calibration from sentitune.
    history = client.get_metric_history(logged.info.run_id, "eval_accuracy")
    assert [m.value for m in history] == pytest.approx([r["val_accuracy"] for r in run.history()])
    metrics = logged.data.metrics
    assert metrics["final/accuracy"] == pytest.approx(run.metrics["validation"]["accuracy"])
    assert metrics["calibration/ece"] == pytest.approx(run.metrics["calibration"]["ece"])

    artifacts = {Path(a.path).name for a in client.list_artifacts(logged.info.run_id, "run")}
    assert {"config.yaml", "metrics.json", "history.csv", "curves.png", "README.md"} <= artifacts

    # The run directory and the CLI say where it all went.
    assert run.tracking["mlflow"]["run_id"] == logged.info.run_id
    assert run.tracking["mlflow"]["tracking_uri"] == uri
    assert f"MLflow run {logged.info.run_id} in {uri}; model " in printed
    assert f"tensorboard --logdir {run.tensorboard_dir}" in printed
    model = mlflow.pyfunc.load_model(run.tracking["mlflow"]["model_uri"])
    assert mlflow.pyfunc.load_model(f"runs:/{logged.info.run_id}/model").metadata.model_uuid \
        == model.metadata.model_uuid
    answer = model.predict(pd.DataFrame({"text": TEXTS}))
    expected = Classifier.from_pretrained(run_dir).predict(TEXTS)
    assert list(answer["label"]) == [p["label"] for p in expected]
    assert list(answer["needs_review"]) == [p["needs_review"] for p in expected]
    assert list(answer["score"]) == pytest.approx([p["score"] for p in expected])
    assert list(answer["probabilities"]) == [p["probabilities"] for p in expected]


def test_tensorboard_event_files_in_the_run(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _, _ = tracked
    run = Run.open(run_dir)
    events = EventAccumulator(str(run.tensorboard_dir), size_guidance={"tensors": 0}).Reload()
    per_epoch = [event.value for event in events.Scalars("eval/accuracy")]
    assert per_epoch == pytest.approx([row["val_accuracy"] for row in run.history()])
    [final] = events.Scalars("final/f1_macro")
    assert final.value == pytest.approx(run.metrics["validation"]["f1_macro"])
    assert "calibration/temperature" in events.Tags()["scalars"]
    assert "plots/curves" in events.Tags()["images"]
    texts = {tag: events.Tensors(tag)[0].tensor_proto.string_val[0].decode()
             for tag in events.Tags()["tensors"]}
    assert run.facts["data_fingerprint"] in texts["sentitune/config/text_summary"]
    assert texts["sentitune/model_card/text_summary"].startswith("---\n")


def test_mlflow_model_of_a_multilabel_run(tmp_path, monkeypatch):
    """The pyfunc model gives multi-label runs' `labels` lists, like Classifier."""
    import mlflow

    from sentitune.mlflow_model import log_model

    run_dir = _multilabel_run(tmp_path)
    (run_dir / "eval-x").mkdir()  # as `evaluate` would leave: not part of the model
    (run_dir / "eval-x" / "metrics.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run():
        info = log_model(run_dir)
    texts = ["so happy and scared", "livid"]
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    packaged = loaded.unwrap_python_model().classifier.run.path
    assert {p.name for p in packaged.iterdir()} == {
        "model", "config.yaml", "labels.json", "decision.json", "metrics.json", "history.csv",
        "curves.png", "README.md"}
    answer = loaded.predict(pd.DataFrame({"text": texts}))
    expected = Classifier.from_pretrained(run_dir).predict(texts)
    assert [list(labels) for labels in answer["labels"]] == [p["labels"] for p in expected]
    with pytest.raises(SentituneError, match="'text' column"):
        mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model().predict(
            None, pd.DataFrame({"sentence": texts}))


def _multilabel_run(tmp: Path) -> Path:
    from conftest import build_tiny_model, tiny_config

    from sentitune.training import train

    rows = [("so happy and thrilled", "joy"), ("scared and afraid", "fear"),
            ("happy but scared", "joy|fear"), ("livid and furious", "anger")] * 20
    data = tmp / "emotions.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    model = build_tiny_model("bert", tmp / "tiny", num_labels=3)
    return train(tiny_config(model, data, epochs=1.0, max_length=16, class_weights="auto"),
                 tmp / "run", progress=False).run_dir


def test_report_to_setting():
    assert make_config(report_to="mlflow,tensorboard").training.report_to == (
        "mlflow", "tensorboard")
    assert make_config(report_to=["none"]).training.report_to == ()
    assert make_config().training.report_to == ()
    with pytest.raises(SentituneError, match="none cannot be combined"):
        make_config(report_to=["none", "mlflow"])
    with pytest.raises(SentituneError, match="must be one of tensorboard, mlflow, wandb"):
        make_config(report_to="comet")


def test_default_mlflow_store_is_sqlite_in_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert mlflow_tracking_uri() == "http://tracking.example:5000"


@pytest.mark.parametrize("tracker", ["wandb", "mlflow", "tensorboard"])
def test_missing_extra_is_one_line(capsys, monkeypatch, tmp_path, tiny_bert, sentiment_csv,
                                   tracker):
    if tracker != "wandb":  # installed in CI: hide it, as an install without the extra
        monkeypatch.setitem(sys.modules, tracker, None)
    elif "wandb" in sys.modules or _installed("wandb"):
        pytest.skip("wandb is installed here")
    code, _, err = run_cli(capsys, *train_flags(tiny_bert, sentiment_csv, tmp_path / "run"),
                           "--report-to", tracker)
    assert_one_line_error(code, err, f"pip install sentitune[{tracker}]")
    assert list(tmp_path.iterdir()) == []  # failed before anything was written


def test_report_to_flag_errors(capsys, tmp_path, tiny_bert, sentiment_csv):
    flags = train_flags(tiny_bert, sentiment_csv, tmp_path / "run")
    code, _, err = run_cli(capsys, *flags, "--report-to", "none", "mlflow")
    assert_one_line_error(code, err, "--report-to none cannot be combined")
    code, _, err = run_cli(capsys, *flags, "--report-to", "comet")
    assert_one_line_error(code, err, "--report-to must be one of")


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
