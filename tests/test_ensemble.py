"""Ensembles: several runs answer with the mean of their calibrated probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, make_sentiment_frame, read_jsonl, run_cli, tiny_config
from scipy.special import expit, softmax

from sentitune.inference.classifier import Classifier
from sentitune.inference.ensemble import mean_probability_logits
from sentitune.run import Run

TEXTS = ["the film was wonderful", "a dull and tedious movie", "i found it charming",
         "what a horrible story"]


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, tiny_bert, sentiment_csv):
    """Another member: the same data and labels, another seed."""
    from sentitune.training import train

    out = tmp_path_factory.mktemp("ensemble") / "tiny-seed8"
    train(tiny_config(tiny_bert, sentiment_csv, epochs=2.0, seed=8), out, progress=False)
    return out


@pytest.fixture(scope="module")
def other_labels_run(tmp_path_factory, tiny_bert):
    """A run whose labels are not the others' (liked/disliked)."""
    from sentitune.training import train

    root = tmp_path_factory.mktemp("other-labels")
    frame = make_sentiment_frame(80, seed=3)
    frame["label"] = frame["label"].map({"positive": "liked", "negative": "disliked"})
    frame.to_csv(root / "data.csv", index=False)
    out = root / "liked-disliked"
    train(tiny_config(tiny_bert, root / "data.csv", epochs=1.0), out, progress=False)
    return out


def test_mean_probability_logits_give_back_the_mean():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    mean = (softmax(a, axis=1) + softmax(b, axis=1)) / 2
    np.testing.assert_allclose(softmax(mean_probability_logits([a, b], "multiclass"), axis=1),
                               mean, atol=1e-9)
    mean = (expit(a) + expit(b)) / 2
    np.testing.assert_allclose(expit(mean_probability_logits([a, b], "multilabel")), mean,
                               atol=1e-9)


def test_ensemble_predicts_the_mean_of_its_members(tiny_run_dir, second_run):
    members = [Classifier.from_pretrained(d) for d in (tiny_run_dir, second_run)]
    ensemble = Classifier.from_pretrained([tiny_run_dir, second_run])
    assert len(ensemble.members) == 2 and ensemble.labels == members[0].labels
    expected = np.mean([m.predict_proba(TEXTS) for m in members], axis=0)
    found = ensemble.predict(TEXTS)
    probs = np.array([[p["probabilities"][name] for name in ensemble.labels] for p in found])
    np.testing.assert_allclose(probs, expected, atol=2e-6)
    assert [p["label"] for p in found] == [ensemble.labels[i] for i in expected.argmax(1)]
    # The members disagree somewhere, or the test would not tell an ensemble from one run.
    assert not np.allclose(members[0].predict_proba(TEXTS), members[1].predict_proba(TEXTS))


def test_predict_cli_takes_several_runs(capsys, tiny_run_dir, second_run, tmp_path):
    code, out, _ = run_cli(capsys, "predict", str(tiny_run_dir), str(second_run), *TEXTS[:2])
    assert code == 0
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [line["text"] for line in lines] == TEXTS[:2]
    expected = Classifier.from_pretrained([tiny_run_dir, second_run]).predict(TEXTS[:2])
    assert [line["probabilities"] for line in lines] == [e["probabilities"] for e in expected]

    source = tmp_path / "in.csv"
    source.write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(TEXTS)))
    code, _, _ = run_cli(capsys, "predict", str(tiny_run_dir), str(second_run), "--input",
                         str(source), "--output", str(tmp_path / "out.jsonl"), "--quiet")
    assert code == 0
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["probabilities"] for r in rows] == [e["probabilities"]
                                                   for e in Classifier.from_pretrained(
                                                       [tiny_run_dir, second_run]).predict(TEXTS)]


def test_evaluate_an_ensemble_leaves_its_members_alone(capsys, tiny_run_dir, second_run):
    before = (tiny_run_dir / "decision.json").read_text()
    code, out, _ = run_cli(capsys, "evaluate", str(tiny_run_dir), str(second_run),
                           "--split", "validation")
    assert code == 0, out
    out_dir = tiny_run_dir.parent / f"ensemble-{tiny_run_dir.name}+{second_run.name}"
    metrics = json.loads(next(out_dir.glob("eval-*/metrics.json")).read_text())
    assert metrics["run"] == [str(tiny_run_dir), str(second_run)]
    rows = Run.open(tiny_run_dir).rebuilt_splits().validation
    answers = Classifier.from_pretrained([tiny_run_dir, second_run]).predict(list(rows["text"]))
    labels = Run.open(tiny_run_dir).labels
    right = [labels.index(a["label"]) == y for a, y in zip(answers, rows["label"], strict=True)]
    assert metrics["n"] == len(rows) and metrics["accuracy"] == pytest.approx(np.mean(right))
    assert (tiny_run_dir / "decision.json").read_text() == before
    code, _, err = run_cli(capsys, "evaluate", str(tiny_run_dir), str(second_run),
                           "--target-accuracy", "0.9")
    assert_one_line_error(code, err, "ensemble")


def test_serve_an_ensemble(tiny_run_dir, second_run):
    from fastapi.testclient import TestClient

    from sentitune.server import ServeSettings, create_app

    ensemble = Classifier.from_pretrained([tiny_run_dir, second_run])
    with TestClient(create_app(ensemble, ServeSettings(api_key=None))) as client:
        answer = client.post("/predict", json={"text": TEXTS[0]}).json()
        info = client.get("/info").json()
    assert answer["probabilities"] == ensemble.predict(TEXTS[0])[0]["probabilities"]
    assert info["run_dir"] == [str(tiny_run_dir), str(second_run)] and info["ensemble"] == 2


@pytest.mark.parametrize("verb", ["predict", "evaluate", "serve"])
def test_members_with_other_labels_are_refused(capsys, verb, tiny_run_dir, other_labels_run):
    extra = ["a lovely film"] if verb == "predict" else []
    code, _, err = run_cli(capsys, verb, str(tiny_run_dir), str(other_labels_run), *extra)
    assert_one_line_error(code, err, "share their labels", str(other_labels_run))


def test_a_run_listed_twice_is_refused(capsys, tiny_run_dir):
    code, _, err = run_cli(capsys, "evaluate", str(tiny_run_dir), str(tiny_run_dir))
    assert_one_line_error(code, err, "listed twice")


def test_ray_engine_scores_an_ensemble_as_local_does(capsys, tiny_run_dir, second_run,
                                                     tmp_path):
    pytest.importorskip("ray.data")
    source = tmp_path / "in.txt"
    source.write_text("a lovely film\n\nawful\n")
    outputs = {}
    for engine in ("local", "ray"):
        outputs[engine] = tmp_path / f"{engine}.jsonl"
        code, _, err = run_cli(capsys, "predict", str(tiny_run_dir), str(second_run),
                               "--input", str(source), "--output", str(outputs[engine]),
                               "--engine", engine, "--quiet",
                               *(["--ray-cpus", "1", "--actors", "1"] if engine == "ray" else []))
        assert code == 0, err
    local, ray = read_jsonl(outputs["local"]), read_jsonl(outputs["ray"])
    assert [r["error"] for r in ray] == [None, "empty text", None]
    assert [r["probabilities"] for r in ray] == [r["probabilities"] for r in local]
