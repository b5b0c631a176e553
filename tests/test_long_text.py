"""Long texts: head / tail / head+tail truncation in training and every consumer, and
chunked inference (overlapping windows, mean of their logits)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, read_jsonl, run_cli, tiny_config

from sentitune.config import make_config
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier
from sentitune.inference.encoding import TextEncoder
from sentitune.metrics import probabilities
from sentitune.run import Run
from sentitune.training import train
from sentitune.truncation import aggregate, keep, window_starts

# 40 distinct words: every one is one token of the uncased vocabulary.
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "one", "golf", "hotel", "india",
         "juliet", "two", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
         "sierra", "tango", "uniform", "victor", "whiskey", "three", "yankee", "zulu", "red",
         "green", "blue", "black", "white", "brown", "pink", "gray", "orange", "purple",
         "north", "south", "east", "west"]
LONG = " ".join(WORDS)


@pytest.fixture(scope="module")
def tail_run(tmp_path_factory, tiny_bert, sentiment_csv):
    """A tiny run trained with tail truncation, chunking by default (stride 2)."""
    out = tmp_path_factory.mktemp("long") / "tail"
    train(tiny_config(tiny_bert, sentiment_csv, max_length=12, truncation="tail",
                      long_text="chunk", stride=2, epochs=3.0), out, progress=False)
    return out


def encoder_for(model_dir, truncation: str, max_length: int = 12) -> TextEncoder:
    return TextEncoder.from_dir(model_dir, max_length, truncation)


def words_of(model_dir, ids: list[int]) -> list[str]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return [tokenizer.id_to_token(i) for i in ids]


@pytest.mark.parametrize(("truncation", "kept"), [
    ("head", WORDS[:10]),
    ("tail", WORDS[-10:]),
    # a quarter of the 10-token budget from the start (2), the rest from the end
    ("head+tail", WORDS[:2] + WORDS[-8:]),
])
def test_each_strategy_keeps_its_tokens_inside_the_special_tokens(tiny_bert, truncation, kept):
    ids, type_ids, truncated = encoder_for(tiny_bert, truncation).encode([LONG, "short text"])
    assert words_of(tiny_bert, ids[0]) == ["[CLS]", *kept, "[SEP]"]
    assert len(ids[0]) == 12 and type_ids[0] == [0] * 12
    assert truncated == [True, False]
    assert words_of(tiny_bert, ids[1]) == ["[CLS]", "short", "text", "[SEP]"]


def test_head_encoding_matches_the_transformers_tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    texts = [LONG, "a wonderful film", LONG[:50]]
    ids, type_ids, _ = encoder_for(tiny_bert, "head").encode(texts)
    reference = AutoTokenizer.from_pretrained(tiny_bert)(texts, truncation=True, max_length=12)
    assert ids == reference["input_ids"] and type_ids == reference["token_type_ids"]


def test_windows_cover_the_text_with_the_given_overlap(tiny_bert):
    ids, _, owners = encoder_for(tiny_bert, "head").windows([LONG, "short text"], stride=4)
    assert owners.tolist() == [0] * 6 + [1]
    inner = [words_of(tiny_bert, row)[1:-1] for row in ids[:6]]
    assert [len(w) for w in inner] == [10] * 6
    assert inner[0] == WORDS[:10] and inner[-1] == WORDS[-10:]
    for left, right in zip(inner[:-2], inner[1:-1], strict=True):
        assert left[-4:] == right[:4]  # neighbours share `stride` tokens
    assert set(WORDS) == {w for window in inner for w in window}


def test_window_starts_and_the_mean_of_logits():
    assert window_starts(5, 10, 3) == [0]
    assert window_starts(25, 10, 3) == [0, 7, 14, 15]
    logits = np.array([[1.0, 3.0], [3.0, 1.0], [0.0, 4.0]], dtype=np.float32)
    assert aggregate(logits, np.array([0, 0, 1]), 2).tolist() == [[2.0, 2.0], [0.0, 4.0]]
    assert keep(list(range(4)), 10, "head+tail") == [0, 1, 2, 3]


def test_truncation_is_saved_and_used_by_training_and_inference(tail_run):
    run = Run.open(tail_run)
    assert run.config.data.truncation == "tail" and run.config.data.long_text == "chunk"
    clf = Classifier.from_pretrained(tail_run, long_text="truncate")
    assert clf.encoder.truncation == "tail"
    assert clf.info()["truncation"] == "tail" and clf.info()["long_text"] == "truncate"
    # The model sees only the last tokens: changing the start of a long text changes nothing.
    ending = "a wonderful , superb film , simply brilliant and moving"  # 10 tokens
    text, other = "awful " * 30 + ending, "great " * 30 + ending
    same = clf.predict([text, other])
    assert same[0]["probabilities"] == same[1]["probabilities"]
    assert same[0]["truncated"] and same[0]["windows"] == 1


def test_chunked_prediction_is_the_mean_of_window_logits(tail_run):
    clf = Classifier.from_pretrained(tail_run)  # the run's own default: chunk, stride 2
    texts = ["awful " * 20 + "a wonderful , superb film", "a wonderful film"]
    results = clf.predict(texts)
    encoder = clf.encoder
    ids, type_ids, owners = encoder.windows(clf.run.preprocess(texts), 2)
    assert results[0]["windows"] == int((owners == 0).sum()) > 1
    assert results[1]["windows"] == 1 and not results[0]["truncated"]
    window_logits = np.concatenate([
        clf.backend.logits(encoder.pad([row], [types])) for row, types in zip(ids, type_ids,
                                                                               strict=True)])
    expected = probabilities(window_logits[owners == 0].mean(axis=0, keepdims=True)
                             .astype(np.float64), clf.task)[0]
    assert np.allclose(list(results[0]["probabilities"].values()), expected, atol=1e-5)


def test_predict_and_evaluate_cli_take_long_text_and_stride(tail_run, tmp_path, capsys):
    text = "dull " * 30 + "great film"
    code, out, _ = run_cli(capsys, "predict", str(tail_run), text, "--long-text", "chunk",
                           "--stride", "5")
    assert code == 0
    # 32 tokens in windows of 10 sharing 5: starts 0, 5, ..., 20 and 22.
    assert json.loads(out)["windows"] == 6
    code, out, _ = run_cli(capsys, "predict", str(tail_run), text, "--long-text", "truncate")
    assert json.loads(out)["windows"] == 1 and json.loads(out)["truncated"] is True

    data = tmp_path / "long.csv"
    data.write_text("text,label\n" + "".join(f'"{"dull " * 20}{w} film",{label}\n'
                                           for w, label in (("awful", "negative"),
                                                            ("superb", "positive"))))
    out_dir = tmp_path / "eval"
    code, _, err = run_cli(capsys, "evaluate", str(tail_run), "--data", str(data),
                           "--output", str(out_dir), "--long-text", "chunk")
    assert code == 0, err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["long_text"]["mode"] == "chunk" and metrics["long_text"]["truncation"] == "tail"
    assert metrics["long_text"]["texts_over_max_length"] == 2
    assert metrics["long_text"]["windows"] > 2
    assert all(r["windows"] > 1 for r in read_jsonl(out_dir / "errors.jsonl"))


def test_bad_long_text_settings_are_one_line_errors(tail_run, capsys):
    code, _, err = run_cli(capsys, "predict", str(tail_run), "x", "--stride", "10")
    assert_one_line_error(code, err, "--stride must be between 0 and 9")
    with pytest.raises(SentituneError, match="--truncation must be one of head, tail"):
        make_config(truncation="middle")
    with pytest.raises(SentituneError, match="--stride must be >= 0"):
        make_config(stride=-1)


def test_onnx_backend_and_server_honour_truncation_and_chunks(tail_run):
    import httpx

    from sentitune.exporting.run_export import export
    from sentitune.server import create_app, serve_in_thread

    export(tail_run)
    texts = ["awful " * 20 + "a wonderful , superb film , simply brilliant and moving",
             "dull " * 30 + "great film"]
    for long_text in ("truncate", "chunk"):
        torch_answers = Classifier.from_pretrained(tail_run, long_text=long_text).predict(texts)
        onnx_answers = Classifier.from_pretrained(tail_run, backend="onnx",
                                                  long_text=long_text).predict(texts)
        for ours, theirs in zip(onnx_answers, torch_answers, strict=True):
            assert ours["windows"] == theirs["windows"]
            assert np.allclose(list(ours["probabilities"].values()),
                               list(theirs["probabilities"].values()), atol=1e-4)
    expected = Classifier.from_pretrained(tail_run).predict(texts[1:])[0]
    with serve_in_thread(create_app(Classifier.from_pretrained(tail_run))) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/predict", json={"text": texts[1]}).json()
        info = client.get("/info").json()
    assert answer["windows"] == expected["windows"] > 1
    assert answer["probabilities"] == expected["probabilities"]
    assert info["long_text"] == "chunk" and info["truncation"] == "tail"
