"""Batch scoring on Ray Data (`predict --engine ray`) against local predict, on a local Ray
of 2 CPUs started once for the module."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
from conftest import assert_one_line_error, make_sentiment_frame, read_jsonl, run_cli

from sentitune.inference.scoring import predict, score_file

ray = pytest.importorskip("ray")

SCORE_TOLERANCE = 2e-6


@pytest.fixture(scope="module")
def local_ray():
    # log_to_driver=False: Ray's processes log into this process's stderr at any moment
    # (a GCS "Failed to kill actor" line landed in another test's one-line-error check).
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder: 2,000 reviews with ids, then a file with bad rows between good ones."""
    folder = tmp_path_factory.mktemp("ray-input")
    reviews = make_sentiment_frame(2000, seed=3)[["text"]]
    reviews.insert(0, "id", range(len(reviews)))
    reviews.to_csv(folder / "a_reviews.csv", index=False)
    (folder / "b_bad.csv").write_bytes(b"id,text\n5000,a lovely film\n5001,\n"
                                       b"5002,caf\xe9 au lait was \xff awful\n5003,   \n"
                                       b"5004,the film was dull\n")
    return folder


def test_ray_scores_a_folder_like_local_scoring_in_order_with_bad_rows_marked(
        tmp_path, local_ray, inputs, classifier, tiny_run_dir):
    output = tmp_path / "scored.parquet"
    found = score_file(tiny_run_dir, inputs, output, engine="ray", actors=2, batch_size=32,
                       progress=False)
    assert found.actors == 2 and found.texts == 2005 and found.errors == 3
    assert not list(tmp_path.glob(".*partial"))

    local = score_file(classifier, inputs, tmp_path / "local.parquet", batch_size=32,
                       progress=False)
    assert (local.texts, local.errors, local.engine) == (2005, 3, "local")
    # Nulls as None (pandas reads a null string as NaN or None, by column type).
    expected, scored = ([{k: None if v is None or (isinstance(v, float) and v != v) else v
                          for k, v in row.items()} for row in pd.read_parquet(path).to_dict(
                             "records")] for path in (local.output, output))
    assert [row["text"] for row in scored] == [row["text"] for row in expected]  # order
    assert [row["id"] for row in scored] == [*range(2000), *range(5000, 5005)]
    assert [row["error"] for row in scored[2000:]] == [None, "empty text", "not valid UTF-8",
                                                       "empty text", None]
    for row, want in zip(scored, expected, strict=True):
        assert (row["label"], row["error"]) == (want["label"], want["error"])
        if row["error"] is not None:
            assert row["needs_review"] and row["score"] is None
            continue
        # Probabilities are rounded to 6 decimals; the last one can move with how texts
        # are batched (padding), on Ray as between two local files.
        assert row["score"] == pytest.approx(want["score"], abs=SCORE_TOLERANCE)
        assert row["probabilities"] == pytest.approx(want["probabilities"],
                                                     abs=SCORE_TOLERANCE)
        assert (row["needs_review"], row["truncated"]) == (want["needs_review"],
                                                           want["truncated"])
    assert found.needs_review == local.needs_review

    errors = read_jsonl(found.errors_file)
    assert errors == read_jsonl(local.errors_file)
    assert [(e["file"], e["row"], e["id"], e["error"]) for e in errors] == [
        (str(inputs / "b_bad.csv"), 1, 5001, "empty text"),
        (str(inputs / "b_bad.csv"), 2, 5002, "not valid UTF-8"),
        (str(inputs / "b_bad.csv"), 3, 5003, "empty text")]


def test_cli_engine_ray_writes_the_jsonl_of_local(tmp_path, capsys, local_ray, inputs,
                                                       tiny_run_dir):
    source = tmp_path / "few.jsonl"
    source.write_text("".join(json.dumps({"review": text, "n": i}) + "\n" for i, text in
                              enumerate(make_sentiment_frame(300, seed=5)["text"])))
    code, out, err = run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(source),
                             "--output", str(tmp_path / "ray.jsonl"), "--engine", "ray",
                             "--quiet")
    assert code == 0, err
    assert "300 rows written" in out and "0 could not be scored" in out
    assert (tmp_path / "ray.jsonl.errors.jsonl").read_text() == ""
    code, _, err = run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(source),
                           "--output", str(tmp_path / "local.jsonl"), "--quiet")
    assert code == 0, err
    ray_rows, local_rows = (read_jsonl(tmp_path / name) for name in ("ray.jsonl", "local.jsonl"))
    assert [{**r, "score": None, "probabilities": None} for r in ray_rows] == [
        {**r, "score": None, "probabilities": None} for r in local_rows]  # order, fields
    assert [r["score"] for r in ray_rows] == pytest.approx([r["score"] for r in local_rows],
                                                           abs=SCORE_TOLERANCE)


def test_engine_ray_without_ray_installed_names_the_extra(tmp_path, capsys, monkeypatch,
                                                          tiny_run_dir, sentiment_csv):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    code, _, err = run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(sentiment_csv),
                           "--output", str(tmp_path / "out.jsonl"), "--engine", "ray")
    assert_one_line_error(code, err, "pip install 'sentitune[ray]'")
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("argv, message", [
    (["--address", "ray://head:10001"], "go with --engine ray"),
    (["--engine", "ray", "--output", "x.txt"], "--output must end in .jsonl, .csv, .parquet"),
    (["--engine", "ray", "--ray-cpus", "0"], "--ray-cpus must be > 0"),
    (["--engine", "ray", "--address", "ray://h:1", "--ray-cpus", "2"], "drop one of them"),
])
def test_engine_ray_bad_options_are_one_line_errors(tmp_path, capsys, tiny_run_dir,
                                                    sentiment_csv, argv, message):
    args = ["predict", str(tiny_run_dir), "--input", str(sentiment_csv)]
    if "--output" not in argv:
        args += ["--output", str(tmp_path / "out.jsonl")]
    code, _, err = run_cli(capsys, *args, *argv)
    assert_one_line_error(code, err, message)


def test_ray_actors_load_any_backend_onnx_here(tmp_path, local_ray, tiny_run_dir):
    import shutil

    from sentitune.exporting.run_export import export

    run = shutil.copytree(tiny_run_dir, tmp_path / "run")
    export(run)
    texts = list(make_sentiment_frame(400, seed=9)["text"])
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n")
    found = score_file(run, source, tmp_path / "onnx.csv", engine="ray", backend="onnx",
                       progress=False)
    assert found.texts == 400 and found.errors == 0
    scored = pd.read_csv(tmp_path / "onnx.csv")
    local = predict(run, texts, backend="onnx")
    assert list(scored["text"]) == texts
    assert list(scored["label"]) == [r["label"] for r in local]
    assert scored["score"].tolist() == pytest.approx([r["score"] for r in local], abs=1e-5)
