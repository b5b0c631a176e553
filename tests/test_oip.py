"""The Open Inference Protocol (KServe v2) of `sentitune serve`, spoken to by Triton's own
HTTP client (`tritonclient.http`) against the real server, for binary, multi-class and
multi-label runs."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from conftest import build_tiny_model, tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from sentitune.inference.classifier import Classifier
from sentitune.server import ServeSettings, create_app, serve_in_thread

TEXTS = ["the film was wonderful", "a dull and painful movie", "so furious and scared",
         "happy , thrilled", "i found it tedious"]
WORDS = {"anger": ["furious", "livid"], "fear": ["scared", "afraid"],
         "joy": ["happy", "thrilled"]}


def emotion_csv(path: Path, multilabel: bool) -> Path:
    rng = random.Random(0)
    labels = list(WORDS)
    rows = []
    for i in range(90):
        picked = [labels[i % 3]]
        if multilabel and i % 3 == 0:
            picked.append(labels[(i + 1) % 3])
        rows.append((" ".join(rng.choice(WORDS[label]) for label in picked), "|".join(picked)))
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def emotion_runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny multi-class and a tiny multi-label run."""
    from sentitune.training import train

    tmp = tmp_path_factory.mktemp("oip")
    model = build_tiny_model("bert", tmp / "tiny-bert-3", num_labels=3)
    runs = {}
    for task in ("multiclass", "multilabel"):
        data = emotion_csv(tmp / f"{task}.csv", task == "multilabel")
        runs[task] = train(tiny_config(model, data, epochs=3.0, max_length=16,
                                       class_weights="auto"), tmp / task, progress=False).run_dir
    return runs


def served(classifier: Classifier, settings: ServeSettings | None = None):
    return serve_in_thread(create_app(classifier, settings or ServeSettings(api_key=None)))


def infer(client: triton.InferenceServerClient, name: str, texts: list[str],
          binary: bool = True, **kwargs) -> triton.InferResult:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    return client.infer(name, [tensor], **kwargs)


def check_against_predict(url: str, classifier: Classifier) -> None:
    """Metadata, readiness and inference agree with the run and with /predict/batch."""
    name = classifier.run.path.name
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(name)
    assert client.get_server_metadata()["name"] == "sentitune"
    metadata = client.get_model_metadata(name)
    assert metadata["name"] == name
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["parameters"]["labels"] == classifier.labels
    label_output = "labels" if classifier.task == "multilabel" else "label"
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {
        label_output: "BYTES", "score": "FP32", "probabilities": "FP32",
        "needs_review": "BOOL", "truncated": "BOOL"}

    expected = httpx.post(f"{url}/predict/batch", json={"texts": TEXTS}).json()["predictions"]
    # The binary tensor extension (tritonclient's default), and plain JSON both ways.
    json_outputs = [triton.InferRequestedOutput(o["name"], binary_data=False)
                    for o in metadata["outputs"]]
    for binary in (True, False):
        result = infer(client, name, TEXTS, binary=binary,
                       outputs=None if binary else json_outputs)
        chosen = [value.decode() if binary else value
                  for value in result.as_numpy(label_output)]
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(TEXTS), len(classifier.labels))
        if classifier.task == "multilabel":
            assert chosen == ["|".join(p["labels"]) for p in expected]
        else:
            assert chosen == [p["label"] for p in expected]
        assert probabilities.dtype == np.float32
        np.testing.assert_allclose(
            probabilities, [[p["probabilities"][label] for label in classifier.labels]
                            for p in expected], atol=1e-6)
        np.testing.assert_allclose(result.as_numpy("score"), [p["score"] for p in expected],
                                   atol=1e-6)
        assert result.as_numpy("needs_review").tolist() == [p["needs_review"]
                                                            for p in expected]

    # A request may name the outputs it wants; it gets only those.
    only_score = infer(client, name, TEXTS[:2], outputs=[triton.InferRequestedOutput(
        "score", binary_data=False)])
    assert [o["name"] for o in only_score.get_response()["outputs"]] == ["score"]

    # The one version the metadata lists, addressed explicitly.
    assert metadata["versions"] == ["1"]
    assert client.is_model_ready(name, "1")
    assert client.get_model_metadata(name, "1") == metadata
    versioned = infer(client, name, TEXTS, model_version="1").as_numpy(label_output)
    assert [value.decode() for value in versioned] == [value.decode() for value in
                                                       infer(client, name, TEXTS).as_numpy(
                                                           label_output)]


def test_binary_run_speaks_the_protocol(classifier):
    with served(classifier) as url:
        check_against_predict(url, classifier)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_multiclass_and_multilabel_runs(emotion_runs, task):
    classifier = Classifier.from_pretrained(emotion_runs[task])
    assert classifier.task == task
    with served(classifier) as url:
        check_against_predict(url, classifier)


def test_protocol_errors_limits_key_and_counters(classifier):
    key = "oip-key"
    settings = ServeSettings(api_key=key, max_texts_per_request=3, max_text_chars=50,
                             max_body_bytes=2048)
    name = classifier.run.path.name
    with served(classifier, settings) as url, httpx.Client(base_url=url, timeout=30) as http:
        infer_url = f"/v2/models/{name}/infer"
        good = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                            "data": ["lovely"]}]}

        def error(response: httpx.Response, status: int, pattern: str) -> None:
            assert response.status_code == status, response.text
            assert set(response.json()) == {"error"}, response.text
            assert re.search(pattern, response.json()["error"]), response.json()

        error(http.post(infer_url, json=good), 401, "API key")
        error(http.get(f"/v2/models/{name}"), 401, "API key")
        auth = {"X-API-Key": key}
        assert http.post(infer_url, json=good, headers=auth).status_code == 200
        # Liveness and readiness stay open, as /health and /ready do.
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}

        def bad(tensor: dict) -> dict:
            return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"} | tensor]}

        error(http.post(infer_url, content=b"{not json", headers=auth), 400,
              "not an inference request")
        error(http.post(infer_url, json={"texts": ["x"]}, headers=auth), 400, "inputs")
        error(http.post(infer_url, json=bad({"name": "sentence", "data": ["x"]}), headers=auth),
              400, "one input named 'text'")
        error(http.post(infer_url, json=bad({"datatype": "INT32", "data": [1]}), headers=auth),
              400, "must be BYTES")
        error(http.post(infer_url, json=bad({"shape": [2], "data": ["x"]}), headers=auth),
              400, r"shape \[2\]")
        error(http.post(infer_url, json=bad({"data": [3]}), headers=auth), 400, "strings")
        error(http.post(infer_url, json=good | {"outputs": [{"name": "logits"}]},
                        headers=auth), 400, "unknown output")
        error(http.post(infer_url, json=bad({"data": ["  "]}), headers=auth), 422, "empty")
        error(http.post(infer_url, json=bad({"data": ["x" * 51]}), headers=auth), 422,
              "at most 50")
        error(http.post(infer_url, json=bad({"shape": [4], "data": ["a", "b", "c", "d"]}),
                        headers=auth), 422, "at most 3")
        error(http.post(infer_url, json=bad({"data": ["y" * 3000]}), headers=auth), 413,
              "byte limit")
        error(http.post("/v2/models/nope/infer", json=good, headers=auth), 404,
              "unknown model 'nope'")

        # The same Prometheus counters as /predict: requests by endpoint and status, texts.
        exposition = http.get("/metrics", headers=auth).text
        assert f'endpoint="{infer_url}",status="200"' in exposition
        assert f'endpoint="{infer_url}",status="422"' in exposition
        assert re.search(r"^sentitune_predictions_total 1$", exposition, re.M), exposition


def test_tritonclient_sees_protocol_errors(classifier):
    with served(classifier, ServeSettings(api_key=None, max_texts_per_request=2)) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        with pytest.raises(InferenceServerException, match="at most 2"):
            infer(client, classifier.run.path.name, TEXTS)
        with pytest.raises(InferenceServerException, match="unknown model"):
            client.get_model_metadata("nope")
        with pytest.raises(InferenceServerException, match="serves version 1"):
            client.get_model_metadata(classifier.run.path.name, "2")


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)
_TENSOR = st.fixed_dictionaries({"name": st.sampled_from(["text", "x"]),
                                 "shape": st.lists(st.integers(-2, 4), max_size=2),
                                 "datatype": st.sampled_from(["BYTES", "FP32"])},
                                optional={"data": _JSON, "parameters": st.fixed_dictionaries(
                                    {}, optional={"binary_data_size": _JSON})})
_REQUEST = st.fixed_dictionaries({"inputs": st.lists(_TENSOR, max_size=2)}, optional={
    "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["score", "label", "y"])}),
                        max_size=2),
    "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": _JSON})})


def test_fuzzed_infer_requests_never_get_a_5xx(classifier):
    name = classifier.run.path.name
    with served(classifier, ServeSettings(api_key=None, max_texts_per_request=4)) as url, \
            httpx.Client(base_url=url, timeout=30) as http:

        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(st.one_of(_REQUEST.map(lambda r: json.dumps(r).encode()), st.binary()),
               st.binary(max_size=12), st.one_of(st.none(), st.integers(-1, 400).map(str)))
        def check(header: bytes, binary: bytes, header_length: str | None):
            headers = {} if header_length is None else {"Inference-Header-Content-Length":
                                                        header_length}
            response = http.post(f"/v2/models/{name}/infer", content=header + binary,
                                 headers=headers)
            assert response.status_code < 500, response.text
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}, response.text

        check()


def test_concurrent_infer_requests_share_model_calls(classifier):
    """The /v2 route goes through /predict's micro-batcher: 16 concurrent one-text requests
    take fewer than 16 model calls, and the Prometheus counters see every text.

    In process (httpx's ASGI transport), so that all 16 requests are waiting before the
    batcher's first look, however busy the machine is."""
    app = create_app(classifier, ServeSettings(api_key=None, max_batch_size=16,
                                               max_wait_ms=1000))
    name = classifier.run.path.name
    texts = [f"{word} , simply {word}" for word in ("lovely", "dull") * 8]

    async def send_all() -> tuple[list[dict], str]:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://oip") as http:
            answers = await asyncio.gather(*(
                http.post(f"/v2/models/{name}/infer", json={"inputs": [
                    {"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]})
                for text in texts))
            return [a.json() for a in answers], (await http.get("/metrics")).text

    answers, exposition = asyncio.run(send_all())
    labels = [next(o["data"][0] for o in a["outputs"] if o["name"] == "label")
              for a in answers]
    assert labels == [p["label"] for p in classifier.predict(texts)]
    calls = float(re.search(r"^sentitune_batch_size_count (\S+)$", exposition, re.M)[1])
    assert calls < len(texts)
    assert re.search(rf"^sentitune_predictions_total {len(texts)}$", exposition, re.M)


def _served_name(url: str, http: httpx.Client | None = None) -> str:
    """The model's name as a client discovers it: Triton's repository index, which
    GET /v2/models and GET /info agree with."""
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    (entry,) = client.get_model_repository_index()
    assert entry == {"name": entry["name"], "version": "1", "state": "READY", "reason": ""}
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/v2/models").json() == {"models": [entry]}
        assert http.get("/info").json()["oip_model"] == entry["name"]
        assert http.post("/v2/repository/index", json={"ready": True}).json() == [entry]
    return entry["name"]


def test_discovered_model_name_answers_infer(classifier, tiny_run_dir):
    with served(classifier) as url:
        name = _served_name(url)
        assert name == tiny_run_dir.name
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        labels = [v.decode() for v in infer(client, name, TEXTS).as_numpy("label")]
        assert labels == [p["label"] for p in classifier.predict(TEXTS)]
        assert client.get_model_metadata(name)["name"] == name


@pytest.mark.parametrize("spelling", ["trailing slash", "dot dot", "dot"])
def test_run_served_by_any_path_spelling_keeps_its_name(tiny_run_dir, monkeypatch, spelling):
    """`serve runs/tiny/`, `serve runs/tiny/model/..` and `serve .` inside it: the run is
    served as `tiny` (it was '' or '..' before, so the name users took gave 404)."""
    subfolder = next(p for p in sorted(tiny_run_dir.iterdir()) if p.is_dir())
    monkeypatch.chdir(tiny_run_dir.parent)
    path = {"trailing slash": f"{tiny_run_dir.name}/",
            "dot dot": f"{tiny_run_dir.name}/{subfolder.name}/..", "dot": "."}[spelling]
    if spelling == "dot":
        monkeypatch.chdir(tiny_run_dir)
    classifier = Classifier.from_pretrained(path)
    with served(classifier) as url:
        name = _served_name(url)
        assert name == tiny_run_dir.name
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_model_ready(name)
        assert infer(client, name, TEXTS[:2]).as_numpy("label").shape == (2,)


def test_symlinked_run_with_a_name_to_quote(tiny_run_dir, tmp_path):
    """A run reached through a link named `latest run #1` is listed under that name, which
    tritonclient sends URL-quoted; the folder's own name answers too."""
    link = tmp_path / "latest run #1"
    link.symlink_to(tiny_run_dir, target_is_directory=True)
    with served(Classifier.from_pretrained(link)) as url:
        assert _served_name(url) == link.name
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        for name in (link.name, tiny_run_dir.name):
            assert infer(client, name, TEXTS[:2]).get_response()["model_name"] == link.name
        with httpx.Client(base_url=url, timeout=30) as http:
            quoted = "/v2/models/latest%20run%20%231/infer"
            body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                "data": ["lovely"]}]}
            assert http.post(quoted, json=body).status_code == 200


def test_unknown_model_name_points_to_the_served_one_only_with_the_key(classifier):
    name = classifier.run.path.name
    key = "oip-key"
    with served(classifier, ServeSettings(api_key=key)) as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        hint = rf"unknown model 'Tiny'; this server serves '{name}' \(GET /v2/models"
        with pytest.raises(InferenceServerException, match=hint):
            infer(client, "Tiny", TEXTS, headers={"X-API-Key": key})
        answer = http.post("/v2/models/Tiny/infer", json={}, headers={"X-API-Key": key})
        assert answer.status_code == 404 and re.search(hint, answer.json()["error"])
        # Without the key, no name: 401 for every model route, known or not.
        for path in ("/v2/models/Tiny/infer", "/v2/models/Tiny", "/v2/models/Tiny/versions/2"):
            for method in ("GET", "POST"):
                hidden = http.request(method, path, json={})
                assert hidden.status_code == 401, (method, path, hidden.text)
                assert name not in hidden.text
        # Listing the model needs the key, as its metadata does.
        assert http.get("/v2/models").status_code == 401
        assert http.post("/v2/repository/index").status_code == 401
        auth = {"X-API-Key": key}
        assert http.get("/v2/models", headers=auth).json()["models"][0]["name"] == name
        bad = http.post("/v2/repository/index", content=b"[1]", headers=auth)
        assert bad.status_code == 400 and "repository index" in bad.json()["error"]


@pytest.mark.parametrize("length", ["²", "1²", "+5", "-1", "5.0", "0x5"])
def test_header_length_that_is_not_ascii_digits_is_400(classifier, length):
    # Header bytes read as Latin-1, where str.isdigit() accepts "²" and int() does not.
    name = classifier.run.path.name
    body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                   "data": ["lovely"]}]}).encode()
    with served(classifier) as url, httpx.Client(base_url=url, timeout=30) as http:
        response = http.post(f"/v2/models/{name}/infer", content=body,
                             headers={"Inference-Header-Content-Length": length.encode("latin-1")})
    assert response.status_code == 400, response.text
    assert "Inference-Header-Content-Length" in response.json()["error"]


def test_infer_takes_the_content_types_predict_takes(classifier):
    """No content type (what tritonclient sends) reads as JSON on both; a type that is not
    JSON is 415 on both, before the body is read; the binary extension may say
    application/octet-stream (its schema lists it)."""
    name = classifier.run.path.name
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["lovely"]}
    bodies = {"/predict": json.dumps({"text": "lovely"}).encode(),
              f"/v2/models/{name}/infer": json.dumps({"inputs": [tensor]}).encode()}
    with served(classifier) as url, httpx.Client(base_url=url, timeout=30) as http:
        for path, body in bodies.items():
            untyped = http.post(path, content=body)
            assert untyped.status_code == 200, (path, untyped.text)
            for wrong in ("text/plain", "application/x-www-form-urlencoded"):
                refused = http.post(path, content=body, headers={"Content-Type": wrong})
                assert refused.status_code == 415, (path, wrong, refused.text)
                assert "application/json" in refused.text
        header = json.dumps({"inputs": [{**tensor, "data": None,
                                         "parameters": {"binary_data_size": 10}}]}).encode()
        binary = http.post(f"/v2/models/{name}/infer", content=header + b"\x06\0\0\0lovely",
                           headers={"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(header))})
        assert binary.status_code == 200, binary.text


def test_known_routes_asked_with_another_method_are_405(classifier):
    name = classifier.run.path.name
    with served(classifier) as url, httpx.Client(base_url=url, timeout=30) as http:
        for method, path, allowed in (("GET", f"/v2/models/{name}/infer", "POST"),
                                      ("POST", f"/v2/models/{name}", "GET"),
                                      ("POST", f"/v2/models/{name}/versions/1/ready",
                                       "GET"),
                                      ("DELETE", f"/v2/models/{name}/infer", "POST")):
            response = http.request(method, path)
            assert response.status_code == 405, (method, path, response.text)
            assert response.headers["allow"] == allowed
        assert http.get("/v2/models/nope/infer").status_code == 404
