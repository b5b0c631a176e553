"""`sentitune select`: which unlabeled texts a person should label next."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, assert_one_line_error, read_jsonl, require_shared_data, run_cli

from sentitune.errors import SentituneError
from sentitune.selection import choose, uncertainty

# Four rows: sure, unsure, very unsure (an even split), fairly sure.
PROBS = np.array([[0.98, 0.02], [0.60, 0.40], [0.50, 0.50], [0.10, 0.90]])


def test_margin_and_entropy_rank_the_least_sure_first():
    assert list(choose(PROBS, 2, "margin")) == [2, 1]
    assert list(choose(PROBS, 4, "entropy")) == [2, 1, 3, 0]
    three = np.array([[0.4, 0.4, 0.2], [0.5, 0.25, 0.25], [0.9, 0.05, 0.05]])
    # Margin looks at the top two only; entropy at the whole spread.
    assert choose(three, 1, "margin")[0] == 0
    assert uncertainty(three, "multiclass", "entropy")[0] > uncertainty(
        three, "multiclass", "entropy")[2]


def test_multilabel_uncertainty_is_the_distance_to_each_labels_threshold():
    probs = np.array([[0.9, 0.05], [0.55, 0.1], [0.3, 0.02]])
    cuts = np.array([0.5, 0.3])
    assert list(choose(probs, 3, "margin", task="multilabel", cuts=cuts)) == [1, 2, 0]


def test_random_is_seeded():
    probs = np.full((50, 2), 0.5)
    first = choose(probs, 10, "random", seed=1)
    assert list(first) == list(choose(probs, 10, "random", seed=1))
    assert list(first) != list(choose(probs, 10, "random", seed=2))
    assert len(set(first)) == 10


def test_diverse_spreads_the_batch_over_the_embedding_space():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]])
    sizes = (5, 10, 10)
    embeddings = np.concatenate([c + rng.normal(size=(n, 3))
                                 for c, n in zip(centres, sizes, strict=True)])
    cluster = np.repeat([0, 1, 2], sizes)
    # Cluster 0 holds every very unsure text; clusters 1 and 2 only fairly unsure ones.
    top = np.choose(cluster, [0.51, 0.7, 0.75])
    probs = np.stack([top, 1 - top], axis=1)
    margin = choose(probs, 3, "margin")
    diverse = choose(probs, 3, "diverse", embeddings=embeddings, seed=0)
    assert set(cluster[margin]) == {0}
    assert set(cluster[diverse]) == {0, 1, 2}
    assert cluster[diverse[0]] == 0  # still the most uncertain first


def test_bad_strategy_and_budget_are_refused():
    with pytest.raises(SentituneError, match="--strategy must be one of"):
        choose(PROBS, 1, "confidence")
    with pytest.raises(SentituneError, match="--budget must be at least 1"):
        choose(PROBS, 0, "margin")


@pytest.fixture
def unlabeled_csv(tmp_path):
    texts = [f"the film was {w}" for w in ("great", "dull", "fine", "odd", "superb",
                                           "boring", "lovely", "awful", "moving", "so so")]
    path = tmp_path / "pool.csv"
    pd.DataFrame({"id": range(len(texts) + 2), "review": texts + ["", texts[0]]}).to_csv(
        path, index=False)
    return path


@pytest.mark.parametrize("strategy", ["margin", "entropy", "random", "diverse"])
def test_select_writes_the_next_texts_with_the_models_answer(tmp_path, capsys, tiny_run_dir,
                                                              unlabeled_csv, strategy):
    out = tmp_path / "next.jsonl"
    code, printed, err = run_cli(capsys, "select", str(tiny_run_dir), "--unlabeled",
                                 str(unlabeled_csv), "--budget", "4", "--strategy", strategy,
                                 "--output", str(out))
    assert code == 0, err
    assert "4 of 10 unlabeled texts" in printed  # the empty row and the duplicate left out
    rows = read_jsonl(out)
    assert [r["rank"] for r in rows] == [0, 1, 2, 3]
    assert all(r["label"] in ("negative", "positive") and 0 <= r["score"] <= 1 for r in rows)
    assert len({r["text"] for r in rows}) == 4
    if strategy in ("margin", "entropy"):
        scores = [r["uncertainty"] for r in rows]
        assert scores == sorted(scores, reverse=True)
        everything = tmp_path / "all.jsonl"
        run_cli(capsys, "select", str(tiny_run_dir), "--unlabeled", str(unlabeled_csv),
                "--budget", "10", "--strategy", strategy, "--output", str(everything))
        least_sure = max(r["uncertainty"] for r in read_jsonl(everything))
        assert scores[0] == least_sure


def test_select_pushes_into_the_store_and_skips_what_it_holds(tmp_path, capsys, tiny_run_dir,
                                                              unlabeled_csv):
    from sentitune.labelstore.store import LabelStore

    store = str(tmp_path / "labels.db")
    for round_ in (1, 2):
        code, printed, err = run_cli(capsys, "select", str(tiny_run_dir), "--unlabeled",
                                     str(unlabeled_csv), "--budget", "6", "--output",
                                     str(tmp_path / f"r{round_}.jsonl"), "--store", store)
        assert code == 0, err
    assert "4 of 4 unlabeled texts" in printed and "4 added to the label store" in printed
    opened = LabelStore.open(store)
    assert opened.item_count() == 10
    first = opened.next_item("ann")
    [row] = [r for r in read_jsonl(tmp_path / "r1.jsonl") if r["text"] == first["text"]]
    assert first["model_answer"] == row["label"] and first["model_score"] == row["score"]
    assert first["source"] == "select:margin" and first["model_run"] == tiny_run_dir.name


def test_select_bad_input_is_one_line(tmp_path, capsys, tiny_run_dir, unlabeled_csv):
    from sentitune.labelstore.store import LabelStore

    base = ["select", str(tiny_run_dir), "--unlabeled", str(unlabeled_csv)]
    code, _, err = run_cli(capsys, *base, "--budget", "0", "--output", str(tmp_path / "x.jsonl"))
    assert_one_line_error(code, err, "--budget must be at least 1")
    code, _, err = run_cli(capsys, *base, "--budget", "2", "--output", str(tmp_path / "x.csv"))
    assert_one_line_error(code, err, "--output must end in .jsonl")
    code, _, err = run_cli(capsys, *base, "--budget", "2", "--output", str(tmp_path / "x.jsonl"),
                           "--text-column", "nope")
    assert_one_line_error(code, err, "no text column 'nope'")
    other = tmp_path / "other.db"
    LabelStore.open(other, labels=["joy", "anger", "fear"], task="multiclass")
    code, _, err = run_cli(capsys, *base, "--budget", "2", "--output", str(tmp_path / "x.jsonl"),
                           "--store", str(other))
    assert_one_line_error(code, err, "another task")
    assert not (tmp_path / "x.jsonl").exists()


def test_active_learning_benchmark_runs_in_its_tiny_mode(tmp_path, tiny_bert):
    require_shared_data()
    out = tmp_path / "al.json"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                       str(REPO / "benchmarks")])}
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "active_learning.py"),
                    "--model", str(tiny_bert), "--pool", "60", "--dev", "30", "--start", "10",
                    "--step", "10", "--rounds", "1", "--seeds", "0", "--strategies", "random",
                    "diverse", "--work-dir", str(tmp_path / "work"), "--output",
                    str(out)], check=True, env=env, capture_output=True, timeout=900)
    result = json.loads(out.read_text())
    assert set(result["summary"]["curves"]) == {"random", "diverse"}
    for curve in result["summary"]["curves"].values():
        assert curve["labels"] == [10, 20] and len(curve["mean"]) == 2
    picked = [i for arm in result["arms"].values() for r in arm["rounds"] for i in r["picked"]]
    assert picked and max(picked) < 60
    assert out.with_suffix(".png").stat().st_size > 0
    assert result["machine"]["cpu"] and "goal_met" in result["summary"]
