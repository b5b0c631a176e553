"""Word attributions: pieces merged into words, three methods, CLI and bad input."""

import numpy as np
import pytest

from sentitune.inference.explanations import METHODS, explain, merge_pieces, top_words, words_of
from tests.conftest import assert_one_line_error, run_cli


def test_words_and_merging_of_pieces():
    text = "an unforgettable, wasn't-it film"
    words = words_of(text)
    assert [text[s:e] for s, e in words] == ["an", "unforgettable", ",", "wasn't", "-", "it",
                                            "film"]
    # [CLS] an un ##forget ##table , ... : pieces of one word add up; specials are dropped.
    spans = [None, (0, 2), (3, 5), (5, 11), (11, 16), (16, 17), None]
    merged = merge_pieces(spans, np.array([9.0, 1.0, 0.5, 0.25, 0.25, 2.0, 9.0]), words)
    assert merged.tolist() == [1.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_explains_the_top_label_word_by_word(classifier, method):
    texts = ["the film was wonderful and moving", "a dull , tedious story"]
    found = explain(classifier, texts, method=method)
    probs = classifier.predict_proba(texts)
    for result, text, p in zip(found, texts, probs, strict=True):
        assert result["method"] == method
        assert result["label"] == classifier.labels[int(p.argmax())]
        assert result["score"] == pytest.approx(p.max(), abs=1e-5)
        assert [w["word"] for w in result["words"]] == text.split()
        for w in result["words"]:
            assert text[w["start"]:w["end"]] == w["word"]
        assert any(w["attribution"] != 0 for w in result["words"])


def test_integrated_gradients_are_complete(classifier):
    """IG's attributions add up to p(text) - p(baseline) (captum's completeness axiom)."""
    text = "what a lovely , charming story"
    # Enough steps for a saturated model: its probability turns sharply along the path, and
    # 64 Riemann steps summed to 0.86 of a change of 1.0.
    result = explain(classifier, text, method="integrated-gradients", steps=512)[0]
    ids, types, spans = classifier.encoder.pieces(text)
    pad = classifier.encoder.pad_id
    baseline = [i if s is None else pad for i, s in zip(ids, spans, strict=True)]
    batch = classifier.encoder.pad([baseline], [types])
    p_base = classifier.backend.logits(batch)
    p_base = np.exp(p_base) / np.exp(p_base).sum(axis=1, keepdims=True)
    label = classifier.labels.index(result["label"])
    total = sum(w["attribution"] for w in result["words"])
    assert total == pytest.approx(result["score"] - p_base[0, label], abs=0.02)


def test_occlusion_is_the_probability_lost_without_the_word(classifier):
    text = "a superb film"
    result = explain(classifier, text, method="occlusion")[0]
    label = classifier.labels.index(result["label"])
    without = classifier.predict_proba(["superb film", "a film", "a superb"])[:, label]
    expected = result["score"] - without
    assert [w["attribution"] for w in result["words"]] == pytest.approx(expected, abs=1e-6)


def test_named_target_and_top_words(classifier):
    result = explain(classifier, "a lovely film", method="occlusion", target="negative")[0]
    assert result["label"] == "negative"
    assert len(top_words(result, 0.34)) == 1
    with pytest.raises(Exception, match="unknown label 'neutral'"):
        explain(classifier, "a film", method="occlusion", target="neutral")


def test_cli_explain_prints_words(tiny_run_dir, capsys):
    code, out, err = run_cli(capsys, "explain", str(tiny_run_dir), "a lovely film",
                             "--method", "occlusion")
    assert code == 0, err
    assert "lovely" in out and "occlusion" in out


def test_predict_explain_adds_words(tiny_run_dir, capsys):
    import json

    code, out, err = run_cli(capsys, "predict", str(tiny_run_dir), "a lovely film",
                             "--explain", "occlusion")
    assert code == 0, err
    record = json.loads(out.strip().splitlines()[0])
    assert [w["word"] for w in record["explanation"]["words"]] == ["a", "lovely", "film"]


def test_gradient_method_on_onnx_is_one_error_line(tiny_run_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from sentitune.run import Run

    run = Run.open(tiny_run_dir).copy_to(tmp_path / "run")
    code, _, err = run_cli(capsys, "export", str(run.path))
    assert code == 0, err
    code, _, err = run_cli(capsys, "explain", str(run.path), "a lovely film", "--backend", "onnx",
                           "--method", "integrated-gradients")
    assert_one_line_error(code, err, "integrated-gradients", "--backend torch")
    code, out, err = run_cli(capsys, "explain", str(run.path), "a lovely film", "--backend",
                             "onnx", "--method", "occlusion")
    assert code == 0, err


def test_server_explains_a_text(classifier):
    import httpx

    from sentitune.server import ServeSettings, create_app, serve_in_thread

    with serve_in_thread(create_app(classifier, ServeSettings(api_key=None))) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        found = client.post("/explain", json={"text": "a lovely film", "method": "occlusion"})
        assert found.status_code == 200, found.text
        body = found.json()
        assert [w["word"] for w in body["words"]] == ["a", "lovely", "film"]
        assert body["label"] in classifier.labels
        default = client.post("/explain", json={"text": "a dull story"}).json()
        assert default["method"] == "integrated-gradients"
        bad = client.post("/explain", json={"text": "a film", "method": "shap"})
        assert bad.status_code == 422
        page = client.get("/assets/app.js").text
        assert "/explain" in page


def test_report_highlights_words_of_errors_and_review_queue(tiny_run_dir, sentiment_csv,
                                                            tmp_path):
    from sentitune.evaluation.evaluator import evaluate

    result = evaluate(tiny_run_dir, str(sentiment_csv), split="train", output=tmp_path,
                      behavioral=False)
    html = (tmp_path / "report.html").read_text()
    markdown = (tmp_path / "report.md").read_text()
    queued = result.metrics["review"]["queued"]
    assert ("Review queue, most uncertain first" in html) == (queued > 0)
    assert '<span style="background:rgba(' in html
    assert "**" in markdown
    import json

    first = json.loads((tmp_path / "errors.jsonl").read_text().splitlines()[0])
    if first["kind"] == "confident_mistake":
        assert first["explanation"]["method"] == "occlusion"


def test_within_chars_scores_only_the_start(classifier):
    text = "a lovely film , " * 30
    short = explain(classifier, text, method="occlusion", within_chars=20)[0]
    assert all(w["end"] <= 20 for w in short["words"]) and len(short["words"]) == 5
    full = explain(classifier, text, method="occlusion")[0]
    assert [w["attribution"] for w in full["words"][:5]] == pytest.approx(
        [w["attribution"] for w in short["words"]])
