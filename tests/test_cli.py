"""The command line: every user mistake is one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import assert_one_line_error, make_sentiment_frame, run_cli


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "good.csv"
    make_sentiment_frame(60).to_csv(good, index=False)
    blob = tmp_path / "blob.parquet"
    blob.write_bytes(b"\x00\x01\x02 not parquet" * 100)
    nocol = tmp_path / "nocol.csv"
    pd.DataFrame({"comment_text": ["a", "b"], "y": [0, 1]}).to_csv(nocol, index=False)
    blank = tmp_path / "blank.csv"
    pd.DataFrame({"text": [" ", "\t", None], "label": [0, 1, 0]}).to_csv(blank, index=False)
    one = tmp_path / "one.csv"
    pd.DataFrame({"text": ["good", "nice", "fine"], "label": [1, 1, 1]}).to_csv(one, index=False)
    odd = tmp_path / "odd.csv"
    pd.DataFrame({"text": list("abcdefg"), "label": ["pos", "neg"] * 3 + ["meh"]}).to_csv(
        odd, index=False)
    return {"good": good, "blob": blob, "nocol": nocol, "blank": blank, "one": one, "odd": odd}


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("missing", [], "file not found"),
        ("blob", [], "binary or malformed"),
        ("nocol", [], "columns found: comment_text, y"),
        ("blank", [], "no rows left"),
        ("one", [], "only one class"),
        ("odd", [], "unknown label value(s) 'meh'"),
        ("good", ["--train-samples", "1000"], "--train-samples 1000 is larger"),
        ("good", ["--max-length", "9999"], "above this model's limit of 512"),
        ("good", ["--learning-rate", "-1"], "must be > 0"),
        ("good", ["--lora-r", "0"], "--lora-r must be > 0"),
    ],
)
def test_train_bad_input(capsys, tmp_path, files, tiny_bert, case, extra, message):
    data = str(tmp_path / "missing.csv") if case == "missing" else str(files[case])
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", data, "--model", str(tiny_bert),
                           "--output", str(out), "--quiet", *extra)
    assert_one_line_error(code, err, message)
    assert not out.exists()
    assert not (tmp_path / "run.partial").exists()


def test_unknown_model_offline_names_minilm(capsys, tmp_path, files):
    code, _, err = run_cli(capsys, "train", "--dataset", str(files["good"]), "--model",
                           "no-such-org/no-such-model", "--output", str(tmp_path / "r"))
    assert_one_line_error(code, err, "--model minilm")


def test_run_dir_that_is_not_a_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", str(tmp_path), "hello")
    assert_one_line_error(code, err, "is not a sentitune run")
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "nothing"))
    assert_one_line_error(code, err, "is not a directory")


def test_predict_texts_and_file(capsys, tmp_path, tiny_run_dir):
    code, out, _ = run_cli(capsys, "predict", str(tiny_run_dir), "a superb film", "awful")
    assert code == 0
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["text"] for r in rows] == ["a superb film", "awful"]

    source = tmp_path / "in.txt"
    source.write_text("a superb film\n\nawful\nwhat a lovely story\n")
    target = tmp_path / "out.jsonl"
    code, out, _ = run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(source),
                           "--output", str(target), "--quiet")
    assert code == 0 and "1 could not be scored" in out
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    # Every input row keeps its place; the blank one is marked, not dropped.
    assert [r["text"] for r in rows] == ["a superb film", "", "awful", "what a lovely story"]
    assert [r["error"] for r in rows] == [None, "empty text", None, None]
    assert rows[1]["label"] is None and rows[1]["needs_review"] is True
    errors = [json.loads(line) for line in
              (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["row"], e["error"]) for e in errors] == [(1, "empty text")]

    csv_target = tmp_path / "out.csv"
    code, _, _ = run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(source),
                         "--output", str(csv_target), "--quiet")
    assert code == 0
    frame = pd.read_csv(csv_target, keep_default_na=False)
    assert list(frame["text"]) == ["a superb film", "", "awful", "what a lovely story"]
    assert {"label", "score", "needs_review", "p_positive", "p_negative",
            "error"} <= set(frame.columns)

    parquet_target = tmp_path / "out.parquet"
    code, _, _ = run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(source),
                         "--output", str(parquet_target), "--quiet")
    assert code == 0
    table = pd.read_parquet(parquet_target)
    assert list(table["label"].isna()) == [False, True, False, False]
    assert list(table["label"].dropna()) == [r["label"] for r in rows if r["label"]]


def test_predict_bad_input_writes_nothing(capsys, tmp_path, tiny_run_dir):
    target = tmp_path / "out.jsonl"
    code, _, err = run_cli(capsys, "predict", str(tiny_run_dir), "--input",
                           str(tmp_path / "none.csv"), "--output", str(target))
    assert_one_line_error(code, err, "file not found")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"review_body": ["x"]}).to_csv(bad, index=False)
    code, _, err = run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(bad),
                           "--output", str(target))
    assert_one_line_error(code, err, "columns found: review_body")
    assert not target.exists()
    assert not list(tmp_path.glob(".out.jsonl*"))


def test_evaluate_writes_metrics_and_confusion(capsys, tmp_path, tiny_run_dir, sentiment_csv):
    out = tmp_path / "eval"
    code, stdout, _ = run_cli(capsys, "evaluate", str(tiny_run_dir), "--data",
                              str(sentiment_csv), "--output", str(out))
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "f1", "precision", "recall", "loss", "per_class"} <= set(metrics)
    matrix = json.loads((out / "confusion_matrix.json").read_text())
    # --data names the run's own file: its held-out validation rows, not the whole file.
    assert sum(map(sum, matrix["matrix"])) == metrics["n"] == 24
    assert metrics["split"] == "validation"
    assert (out / "confusion_matrix.png").stat().st_size > 1000


def test_evaluate_on_another_file_names_it_whole(capsys, tmp_path, tiny_run_dir):
    """`evaluate RUN --data test.csv` once titled the report "(train)" in eval-test-train/."""
    test = tmp_path / "test.csv"
    make_sentiment_frame(30, seed=5).to_csv(test, index=False)
    code, _, _ = run_cli(capsys, "evaluate", str(tiny_run_dir), "--data", str(test))
    assert code == 0
    out = tiny_run_dir / "eval-test"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "all rows" and metrics["n"] == 30
    assert "(train)" not in (out / "report.html").read_text()
    assert not (tiny_run_dir / "eval-test-train").exists()


def test_data_report(capsys, tmp_path, files):
    out = tmp_path / "report"
    code, stdout, _ = run_cli(capsys, "data", str(files["good"]), "--output", str(out),
                              "--max-length", "6")
    assert code == 0
    report = json.loads((out / "data_report.json").read_text())
    train = report["splits"]["train"]
    assert train["rows"] + report["splits"]["validation"]["rows"] == 60
    assert sum(train["class_balance"].values()) == train["rows"]
    assert 0 < train["truncated_share"] < 1
    assert (out / "lengths.png").is_file()


def test_console_script_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sentitune.cli", "predict", str(tmp_path / "x"), "hi"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: ")


def test_export_then_predict_with_onnx_backends(capsys, tiny_run_dir):
    code, out, _ = run_cli(capsys, "export", str(tiny_run_dir), "--quantize", "int8")
    assert code == 0
    report = json.loads(out)
    assert report["agreement"]["onnx"]["label_agreement"] == 1.0
    assert report["agreement"]["onnx"]["max_prob_diff"] < 1e-4
    int8 = report["agreement"]["onnx-int8"]
    agreeing = int8["label_agreement"] * int8["n"]  # a share of the n validation rows
    assert int8["n"] > 0 and agreeing == pytest.approx(round(agreeing))
    # Calibrated on the run's own training texts, not on the 4 built-in sentences.
    assert report["int8_calibration_texts"] > 4
    texts = ["a superb film", "awful and dull"]
    by_backend = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        code, out, _ = run_cli(capsys, "predict", str(tiny_run_dir), *texts, "--backend", backend)
        assert code == 0
        by_backend[backend] = [json.loads(line) for line in out.strip().splitlines()]
    for torch_row, onnx_row in zip(by_backend["torch"], by_backend["onnx"], strict=True):
        assert torch_row["label"] == onnx_row["label"]
        assert abs(torch_row["score"] - onnx_row["score"]) < 1e-4


def test_export_warns_when_int8_labels_drift(capsys, monkeypatch, tiny_run_dir):
    # A real export; only the bar is raised above what any int8 model can reach (100%),
    # so the warning's path runs for real, and its number is the measured agreement.
    import sentitune.exporting.run_export as run_export

    monkeypatch.setattr(run_export, "INT8_MIN_AGREEMENT", 1.01)
    code, out, err = run_cli(capsys, "export", str(tiny_run_dir), "--quantize", "int8",
                             "--quiet")
    measured = json.loads(out)["agreement"]["onnx-int8"]
    assert code == 0 and measured["n"] == 24  # the run's own 24 validation texts
    assert err.count("\n") == 1 and err.startswith("warning: ")
    assert f"{measured['label_agreement']:.1%}" in err and "--backend onnx" in err
    monkeypatch.undo()
    code, _, err = run_cli(capsys, "export", str(tiny_run_dir), "--quiet")  # nothing to warn
    assert code == 0 and err == ""


def test_onnx_backend_before_export_is_a_clear_error(capsys, tmp_path, tiny_bert, sentiment_csv):
    from conftest import tiny_config

    from sentitune.training import train

    run = train(tiny_config(tiny_bert, sentiment_csv, epochs=1.0), tmp_path / "r",
                progress=False).run_dir
    code, _, err = run_cli(capsys, "predict", str(run), "hello", "--backend", "onnx")
    assert_one_line_error(code, err, "sentitune export")
