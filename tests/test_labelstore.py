"""The label store, on SQLite and on a real PostgreSQL server: records, idempotent and
concurrent labelling, task and schema checks, agreement, intake, export, training from
it, and a committed label surviving `kill -9` of the server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, assert_one_line_error, read_jsonl, run_cli, tiny_config
from postgres import fresh_database, postgres_server

from sentitune.errors import SentituneError
from sentitune.labelstore.agreement import agreement
from sentitune.labelstore.store import LabelStore, text_hash
from sentitune.run import Run

pytest.importorskip("sqlalchemy", reason="needs SQLAlchemy (pip install 'sentitune[labels]')")

BINARY = ["negative", "positive"]


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A new, empty store location of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "labels.db")
    return fresh_database(request.getfixturevalue("postgres_url"))


def binary_store(url: str) -> LabelStore:
    return LabelStore.open(url, labels=BINARY, task="binary")


def test_a_record_holds_text_hash_labels_annotator_time_and_the_models_answer(store_url):
    store = binary_store(store_url)
    added = store.add([
        {"text": "a fine film", "label": "positive", "score": 0.9,
         "probabilities": {"negative": 0.1, "positive": 0.9}},
        {"text": "  not sure about it ", "label": "negative", "score": 0.55,
         "probabilities": {"negative": 0.55, "positive": 0.45}},
        {"text": "no answer yet"}, {"text": "   "}, {"text": None}], source="test", run="r1")
    assert (added.added, added.already, added.empty) == (3, 0, 2)
    # The least sure answer comes first; texts without an answer come last.
    first = store.next_item("ann")
    assert first["text"] == "not sure about it" and first["model_score"] == 0.55
    assert first["text_hash"] == text_hash("not sure about it")
    assert (first["model_run"], first["model_answer"]) == ("r1", "negative")
    assert first["model_probabilities"] == {"negative": 0.55, "positive": 0.45}
    store.submit(first["id"], "ann", ["positive"])
    [row] = store.annotations()
    assert (row["annotator"], row["labels"], row["skipped"]) == ("ann", ["positive"], False)
    assert row["text"] == "not sure about it" and row["model_answer"] == "negative"
    assert row["created_at"] is not None
    assert store.next_item("ann")["text"] == "a fine film"
    assert store.next_item("bob")["text"] == "not sure about it"  # each annotator sees all


def test_duplicate_texts_and_submits_are_idempotent_and_a_change_replaces(store_url):
    store = binary_store(store_url)
    store.add([{"text": "same text"}], source="a")
    again = store.add([{"text": "same text "}, {"text": "same text"}], source="b")
    assert (again.added, again.already) == (0, 1)
    item = store.next_item("ann")["id"]
    for _ in range(3):
        store.submit(item, "ann", ["negative"])
    assert [a["labels"] for a in store.annotations()] == [["negative"]]
    store.submit(item, "ann", ["positive"])  # the annotator changed their mind
    assert [a["labels"] for a in store.annotations()] == [["positive"]]


def test_skip_and_undo(store_url):
    store = binary_store(store_url)
    store.add([{"text": t} for t in ("one", "two")], source="t")
    one = store.next_item("ann")
    store.submit(one["id"], "ann", None)  # a skip
    assert store.next_item("ann")["text"] == "two"
    assert store.annotations()[0]["skipped"] is True
    assert store.undo("ann") == one["id"]
    assert store.next_item("ann")["text"] == "one"
    assert store.undo("ann") is None
    assert store.next_item("ann", one["id"])["id"] == one["id"]


def test_bad_labels_annotators_and_items_are_refused(store_url):
    store = binary_store(store_url)
    store.add([{"text": "t"}], source="t")
    item = store.next_item("ann")["id"]
    with pytest.raises(SentituneError, match="unknown label 'happy'"):
        store.submit(item, "ann", ["happy"])
    with pytest.raises(SentituneError, match="exactly one label"):
        store.submit(item, "ann", ["negative", "positive"])
    with pytest.raises(SentituneError, match="annotator name"):
        store.submit(item, "  ", ["negative"])
    with pytest.raises(SentituneError, match="no text 999"):
        store.submit(999, "ann", ["negative"])
    assert store.annotations() == []


def test_a_store_of_another_task_or_schema_version_is_refused(store_url):
    from sqlalchemy import update

    from sentitune.labelstore import schema

    binary_store(store_url).add([{"text": "t"}], source="t")
    with pytest.raises(SentituneError, match="another task .*negative, positive"):
        LabelStore.open(store_url, labels=["joy", "anger", "fear"], task="multiclass")
    assert LabelStore.open(store_url).labels == BINARY  # no labels given: any task opens
    store = LabelStore.open(store_url)
    with store.engine.begin() as connection:
        connection.execute(update(schema.meta).where(schema.meta.c.key == "schema_version")
                           .values(value="99"))
    with pytest.raises(SentituneError, match="schema version 99.*reads version 1"):
        LabelStore.open(store_url)


def test_concurrent_annotators_lose_nothing(store_url):
    store = binary_store(store_url)
    texts = [f"text number {i}" for i in range(40)]
    store.add([{"text": t} for t in texts], source="t")
    ids = [row["id"] for row in [store.next_item("probe")]]  # warm the pool
    ids = list(range(ids[0], ids[0] + len(texts)))
    errors: list[Exception] = []

    def annotate(name: str, label: str) -> None:
        mine = LabelStore.open(store_url)  # each annotator its own connection pool
        try:
            for item in ids:
                mine.submit(item, name, [label])
                mine.submit(item, name, [label])  # a double click
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(name, label))
               for name, label in (("ann", "positive"), ("bob", "negative"), ("cy", "positive"),
                                   ("ann", "positive"))]  # ann twice: the same rows at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    rows = store.annotations()
    assert len(rows) == 3 * len(texts)
    assert {(r["annotator"], r["item_id"]) for r in rows} == {
        (name, item) for name in ("ann", "bob", "cy") for item in ids}


def test_agreement_two_annotators_cohen_kappa_by_hand():
    # Observed agreement 3/4; ann says a half each, bob a quarter negative: chance 1/2;
    # kappa = (3/4 - 1/2) / (1 - 1/2) = 0.5.
    given = {1: ("negative", "negative"), 2: ("negative", "positive"),
             3: ("positive", "positive"), 4: ("positive", "positive")}
    rows = [{"item_id": i, "annotator": who, "labels": [label], "skipped": False}
            for i, pair in given.items() for who, label in zip(("ann", "bob"), pair, strict=True)]
    report = agreement(rows, BINARY, "binary")
    assert report["cohen_kappa"] == pytest.approx(0.5)
    assert report["texts_compared"] == 4 and report["observed_agreement"] == 0.75


def test_agreement_three_annotators_krippendorff_alpha():
    krippendorff = pytest.importorskip("krippendorff")
    import numpy as np

    labels = ["joy", "anger", "fear"]
    given = {1: ("joy", "joy", "joy"), 2: ("anger", "anger", "fear"),
             3: ("fear", "fear", None), 4: ("joy", "anger", "joy")}
    rows = [{"item_id": i, "annotator": who, "labels": [label], "skipped": False}
            for i, triple in given.items()
            for who, label in zip(("a", "b", "c"), triple, strict=True) if label is not None]
    rows.append({"item_id": 3, "annotator": "c", "labels": None, "skipped": True})
    report = agreement(rows, labels, "multiclass")
    matrix = np.array([[np.nan if t[k] is None else labels.index(t[k])
                        for t in given.values()] for k in range(3)])
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert report["krippendorff_alpha"] == pytest.approx(expected, abs=1e-4)
    assert 0 < report["krippendorff_alpha"] < 1
    perfect = [r for r in rows if r["item_id"] in (1, 3)] + [
        {"item_id": 2, "annotator": w, "labels": ["anger"], "skipped": False} for w in "abc"]
    assert agreement(perfect, labels, "multiclass")["krippendorff_alpha"] == pytest.approx(1)


def test_multilabel_store_labels_per_label_agreement_and_export(tmp_path, capsys):
    store = LabelStore.open(tmp_path / "ml.db", labels=["joy", "anger", "fear"],
                            task="multilabel")
    store.add([{"text": t} for t in ("x", "y", "z")], source="t")
    x, y, z = (store.next_item("probe", i)["id"] for i in (1, 2, 3))
    for who, answers in {"ann": {x: ["joy"], y: ["anger", "fear"], z: []},
                         "bob": {x: ["joy"], y: ["fear"], z: ["fear"]},
                         "cy": {x: ["joy", "fear"], y: ["anger", "fear"], z: []}}.items():
        for item, labels in answers.items():
            store.submit(item, who, labels)
    with pytest.raises(SentituneError, match="unknown label"):
        store.submit(x, "ann", ["joy", "love"])
    code, out, _ = run_cli(capsys, "labels", "stats", str(tmp_path / "ml.db"))
    stats = json.loads(out)
    assert code == 0 and stats["labelled_texts"] == 3
    assert set(stats["agreement"]["krippendorff_alpha_per_label"]) == {"joy", "anger", "fear"}
    code, _, _ = run_cli(capsys, "labels", "export", str(tmp_path / "ml.db"), "--output",
                         str(tmp_path / "ml.jsonl"))
    exported = {r["text"]: r["labels"] for r in read_jsonl(tmp_path / "ml.jsonl")}
    assert exported == {"x": ["joy"], "y": ["anger", "fear"], "z": []}


def test_export_writes_the_majority_and_leaves_ties_out(tmp_path, capsys):
    store = binary_store(str(tmp_path / "l.db"))
    store.add([{"text": "agreed", "label": "positive", "score": 0.7},
               {"text": "tied"}, {"text": "skipped"}], source="t", run="r")
    ids = {store.next_item("probe", i)["text"]: i for i in (1, 2, 3)}
    store.submit(ids["agreed"], "ann", ["negative"])
    store.submit(ids["agreed"], "bob", ["negative"])
    store.submit(ids["agreed"], "cy", ["positive"])
    store.submit(ids["tied"], "ann", ["negative"])
    store.submit(ids["tied"], "bob", ["positive"])
    store.submit(ids["skipped"], "ann", None)
    for name in ("x.csv", "x.jsonl"):
        code, out, _ = run_cli(capsys, "labels", "export", str(tmp_path / "l.db"),
                               "--output", str(tmp_path / name))
        assert code == 0 and "1 labelled texts" in out and "1 tied" in out
    [row] = read_jsonl(tmp_path / "x.jsonl")
    assert (row["text"], row["label"], row["annotators"]) == ("agreed", "negative", 3)
    assert row["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert (row["model_run"], row["model_answer"]) == ("r", "positive")
    frame = pd.read_csv(tmp_path / "x.csv")
    assert list(frame["label"]) == ["negative"]
    assert not list(tmp_path.glob(".*partial"))
    code, _, err = run_cli(capsys, "labels", "export", str(tmp_path / "l.db"), "--output",
                           str(tmp_path / "x.txt"))
    assert_one_line_error(code, err, "--output must end in .csv or .jsonl")


def test_labels_add_takes_predict_output_review_queue_and_plain_files(tmp_path, capsys,
                                                                      tiny_run_dir):
    texts = pd.DataFrame({"review": ["a lovely film", "a dull film", "i found it moving", ""],
                          "id": [1, 2, 3, 4]})
    texts.to_csv(tmp_path / "texts.csv", index=False)
    store = str(tmp_path / "labels.db")
    # predict output: only the rows flagged needs_review, with the model's answers.
    run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(tmp_path / "texts.csv"),
            "--output", str(tmp_path / "p.jsonl"), "--review-threshold", "1.0", "--quiet")
    predictions = read_jsonl(tmp_path / "p.jsonl")
    code, out, err = run_cli(capsys, "labels", "add", store, "--from",
                             str(tmp_path / "p.jsonl"), "--run", str(tiny_run_dir))
    assert code == 0, err
    assert "3 texts added" in out and "needs_review" in out
    opened = LabelStore.open(store)
    first = opened.next_item("ann")
    by_text = {p["text"]: p for p in predictions}
    assert first["model_answer"] == by_text[first["text"]]["label"]
    assert first["model_score"] == pytest.approx(min(p["score"] for p in predictions
                                                     if p["error"] is None))
    assert first["model_run"] == tiny_run_dir.name
    # CSV predict output and an unlabeled file: nothing new, nothing duplicated.
    run_cli(capsys, "predict", str(tiny_run_dir), "--input", str(tmp_path / "texts.csv"),
            "--output", str(tmp_path / "p.csv"), "--review-threshold", "0.0", "--quiet")
    code, out, _ = run_cli(capsys, "labels", "add", store, "--from", str(tmp_path / "p.csv"))
    assert code == 0 and "0 texts added" in out  # nothing flagged at threshold 0
    code, out, _ = run_cli(capsys, "labels", "add", store, "--from", str(tmp_path / "p.csv"),
                           "--all")
    assert "0 texts added" in out and "3 already there" in out
    pd.DataFrame({"sentence": ["a new one", "a dull film"]}).to_csv(tmp_path / "u.csv",
                                                                    index=False)
    code, out, _ = run_cli(capsys, "labels", "add", store, "--from", str(tmp_path / "u.csv"))
    assert "1 texts added" in out and "column 'sentence'" in out
    # evaluate's review queue, of a copy whose review threshold queues every answer (the
    # tiny run is right on all its validation rows, so a target accuracy queued none).
    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    Run.open(run).update_decision(review_threshold=1.0)
    code, _, err = run_cli(capsys, "evaluate", str(run), "--review-queue",
                           str(tmp_path / "queue.jsonl"), "--output", str(tmp_path / "eval"))
    assert code == 0, err
    queued = read_jsonl(tmp_path / "queue.jsonl")
    assert queued
    code, out, _ = run_cli(capsys, "labels", "add", store, "--from",
                           str(tmp_path / "queue.jsonl"))
    distinct = len({q["text"] for q in queued})  # a text queued twice is stored once
    assert code == 0 and f"{distinct} texts added" in out
    assert LabelStore.open(store).item_count() == 4 + distinct


def test_labels_cli_errors_are_one_line(tmp_path, capsys, tiny_run_dir):
    pd.DataFrame({"text": ["x"]}).to_csv(tmp_path / "u.csv", index=False)
    code, _, err = run_cli(capsys, "labels", "add", str(tmp_path / "new.db"), "--from",
                           str(tmp_path / "u.csv"))
    assert_one_line_error(code, err, "not a label store yet", "--run")
    code, _, err = run_cli(capsys, "labels", "add", str(tmp_path / "other.db"), "--from",
                           str(tmp_path / "u.csv"), "--labels", "joy,anger,fear")
    assert code == 0, err
    code, _, err = run_cli(capsys, "labels", "add", str(tmp_path / "other.db"), "--from",
                           str(tmp_path / "u.csv"), "--run", str(tiny_run_dir))
    assert_one_line_error(code, err, "another task", "joy, anger, fear")
    code, _, err = run_cli(capsys, "labels", "stats", str(tmp_path / "missing" / "x.db"))
    assert_one_line_error(code, err, "no folder for the label store")
    code, _, err = run_cli(capsys, "labels", "stats", "postgresql://nobody@127.0.0.1:1/none")
    assert_one_line_error(code, err, "cannot open the label store")


def test_train_takes_the_store_or_its_export_as_extra_training_data(tmp_path, capsys,
                                                                    tiny_bert, sentiment_csv):
    from sentitune.config import config_yaml
    from sentitune.run import Run
    from sentitune.training import train

    store = binary_store(str(tmp_path / "labels.db"))
    people = {"an utterly new sentence": "positive", "another unseen line": "negative",
              "the film was awful": "positive"}  # a person overrules a training row
    store.add([{"text": t} for t in people], source="t")
    for i, (text, label) in enumerate(people.items(), start=1):
        assert store.next_item("probe", i)["text"] == text
        store.submit(i, "ann", [label])
    run_cli(capsys, "labels", "export", str(tmp_path / "labels.db"), "--output",
            str(tmp_path / "labels.csv"))
    base = tiny_config(tiny_bert, sentiment_csv, epochs=1.0)
    for source in (str(tmp_path / "labels.db"), str(tmp_path / "labels.csv")):
        out = tmp_path / f"run-{Path(source).suffix[1:]}"
        train(base.replace(extra_data=(source,)), out, progress=False)
        notes = Run.open(out).facts["data_notes"]
        assert notes["extra_data"][source] == 3
        assert notes["extra_data"]["replaced_training_rows"] >= 1  # "the film was awful"
        assert "extra_data" in config_yaml(Run.open(out).config)
    code, _, err = run_cli(capsys, "train", "--model", str(tiny_bert), "--data",
                           str(sentiment_csv), "--extra-data", str(tmp_path / "nope.csv"),
                           "--output", str(tmp_path / "bad"), "--quiet")
    assert_one_line_error(code, err, "nope.csv")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_committed_label_survives_kill_9_of_the_server(tmp_path, tiny_run_dir):
    import httpx

    store = str(tmp_path / "review.db")
    port = free_port()
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    server = subprocess.Popen(
        [sys.executable, "-m", "sentitune", "serve", str(tiny_run_dir), "--port", str(port),
         "--review-store", store, "--review-threshold", "1.0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
        # Flagged for review (threshold 1.0 flags every answer): into the store.
        answer = httpx.post(f"{base}/predict/batch",
                            json={"texts": ["what a lovely film", "so dull"]}).json()
        assert all(p["needs_review"] for p in answer["predictions"])
        item = httpx.get(f"{base}/label/api/next", params={"annotator": "ann"}).json()["item"]
        saved = httpx.post(f"{base}/label/api/submit", json={
            "item_id": item["id"], "annotator": "ann", "labels": ["positive"]})
        assert saved.status_code == 200
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    rows = LabelStore.open(store).annotations()
    assert [(r["item_id"], r["annotator"], r["labels"]) for r in rows] == [
        (item["id"], "ann", ["positive"])]
    assert LabelStore.open(store).item_count() == 2
