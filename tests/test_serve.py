"""The HTTP server, run for real (uvicorn on a free loopback port) and spoken to with httpx."""

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import psutil
import pytest
from conftest import assert_one_line_error, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentitune.errors import SentituneError
from sentitune.server import API_KEY_ENV, ServeSettings, create_app, serve_in_thread

KEY = "s3cret-key"


# Small limits, so each one can be hit with small requests.
STRICT = ServeSettings(
    max_text_chars=500,
    max_texts_per_request=4,
    max_body_bytes=4096,
    api_key=KEY,
    micro_batching=False,
)


@pytest.fixture(scope="module")
def client(classifier) -> Iterator[httpx.Client]:
    """Default settings: micro-batching on, no API key."""
    app = create_app(classifier, ServeSettings(api_key=None))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def strict(classifier) -> Iterator[httpx.Client]:
    """Small limits, an API key, one model call per request. Sends no key by itself."""
    with (
        serve_in_thread(create_app(classifier, STRICT)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


AUTH = {"X-API-Key": KEY}

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def metrics(client: httpx.Client, **kwargs) -> dict[tuple[str, frozenset], float]:
    """Parse the Prometheus text exposition strictly enough to catch a malformed line."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.text.splitlines():
        if line.startswith("# TYPE"):
            assert line.split()[3] in ("counter", "gauge", "histogram"), line
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        samples[match[1], labels] = float(match[3])
    return samples


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- the endpoints ------------------------------------------------------------------------


def test_health_ready_and_info(client, classifier):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    info = client.get("/info").json()
    assert info["labels"] == classifier.labels
    assert info["task"] == classifier.task
    assert info["max_length"] == classifier.max_length
    assert info["serving"]["micro_batching"] is True
    assert info["serving"]["review_threshold"] == classifier.review_threshold
    assert info["serving"]["api_key_required"] is False
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/predict", "/predict/batch"}
    assert client.get("/docs").status_code == 200


def test_predict_answers_what_the_model_says(client, classifier):
    response = client.post("/predict", json={"text": "a wonderful, moving film"})
    assert response.status_code == 200
    got = response.json()
    [expected] = classifier.predict(["a wonderful, moving film"])
    assert got["label"] == expected["label"] and got["label"] in classifier.labels
    assert got["score"] == pytest.approx(expected["score"])
    assert got["probabilities"] == pytest.approx(expected["probabilities"])
    assert sum(got["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert got["needs_review"] == expected["needs_review"]
    assert got["truncated"] is False


def test_batch_keeps_input_order(client, classifier):
    # Lengths differ so the classifier's length-sorting would show if order leaked out.
    texts = ["terrible " * n + str(n) for n in (9, 1, 5, 30, 2, 14, 3)]
    response = client.post("/predict/batch", json={"texts": texts})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["text"] for p in predictions] == texts
    expected = classifier.predict(texts)
    assert [p["label"] for p in predictions] == [e["label"] for e in expected]
    assert [p["score"] for p in predictions] == pytest.approx([e["score"] for e in expected])


def test_long_text_is_truncated_not_refused(client, classifier):
    text = "word " * (classifier.max_length * 4)
    response = client.post("/predict", json={"text": text})
    assert response.status_code == 200
    assert response.json()["truncated"] is True


def test_page_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="classify"' in page.text
    assert 'data-api-key-required="false"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/assets/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/assets/style.css").status_code == 200


# --- bad input ----------------------------------------------------------------------------

BAD_INPUT = [
    # (path, request keyword arguments, status, words the detail must contain)
    ("/predict", {"json": {"text": ""}}, 422, "at least 1 character"),
    ("/predict", {"json": {"text": " \n\t "}}, 422, "empty or only whitespace"),
    ("/predict", {"json": {"text": "\u200b\u200b\u2060"}}, 422, "empty or only whitespace"),
    ("/predict", {"json": {"text": "x" * 501}}, 422, "at most 500 characters"),
    ("/predict", {"json": {"text": 42}}, 422, "valid string"),
    ("/predict", {"json": {"text": None}}, 422, "valid string"),
    ("/predict", {"json": {"texts": ["a"]}}, 422, "Field required"),
    ("/predict", {"json": ["a"]}, 422, "valid dictionary"),
    ("/predict", {"json": {"text": "a", "extra": 1}}, 422, "Extra inputs"),
    ("/predict/batch", {"json": {"texts": []}}, 422, "at least 1 item"),
    ("/predict/batch", {"json": {"texts": ["a"] * 5}}, 422, "at most 4 items"),
    ("/predict/batch", {"json": {"texts": ["ok", "  "]}}, 422, "empty or only whitespace"),
    ("/predict/batch", {"json": {"texts": "not a list"}}, 422, "valid list"),
    ("/predict", {"content": b'{"text": "\\ud800"}'}, 422, "unicode"),
    ("/predict", {"content": b'{"text": '}, 400, "not valid JSON"),
    ("/predict", {"content": b"\xff\xfe\x00garbage"}, 400, "not valid JSON"),  # read as UTF-16
    ("/predict", {"content": b'{"text": "caf\xe9"}'}, 400, "error parsing the body"),
    ("/predict", {"content": b"[" * 3000}, 400, ""),  # nests deeper than the parser goes
    ("/predict", {"content": b'{"text": "' + b"x" * 5000 + b'"}'}, 413, "4096 byte limit"),
    ("/predict", {"content": iter([b"x" * 1000] * 5)}, 413, "4096 byte limit"),  # chunked
]


@pytest.mark.parametrize(("path", "request_kwargs", "status", "words"), BAD_INPUT)
def test_bad_input_gets_a_clear_4xx(strict, path, request_kwargs, status, words):
    headers = {**AUTH, "Content-Type": "application/json"}
    response = strict.post(path, headers=headers, **request_kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words.lower() in json.dumps(detail).lower()
    # Validation errors name the field and do not echo the (possibly huge) input back.
    if status == 422:
        assert all("input" not in error and error["loc"][0] == "body" for error in detail)


def test_a_declared_oversize_body_is_refused_unread(strict):
    # Only the headers are sent: the answer must come without waiting for the body.
    with socket.create_connection((strict.base_url.host, strict.base_url.port), timeout=10) as s:
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: 1000000000\r\n\r\n"
        )
        reply = b""
        # Headers and body may arrive in separate segments: read until the body is in.
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply
    assert b"byte limit" in reply


# --- the API key --------------------------------------------------------------------------


PROTECTED = [
    ("POST", "/predict", {"text": "x"}),
    ("POST", "/predict/batch", {"texts": ["x"]}),
    ("GET", "/info", None),
    ("GET", "/metrics", None),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"X-API-Key": "clé-ü".encode()},
    ],
    ids=["none", "wrong-header", "wrong-bearer", "not-bearer", "non-ascii"],
)
def test_without_the_right_key_it_is_401(strict, headers):
    for method, path, body in PROTECTED:
        response = strict.request(method, path, headers=headers, json=body)
        assert response.status_code == 401, (path, response.text)
        assert "API key" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}], ids=["header", "bearer"]
)
def test_with_the_key_it_answers(strict, headers):
    response = strict.post("/predict", headers=headers, json={"text": "fine"})
    assert response.status_code == 200
    info = strict.get("/info", headers=headers).json()
    assert info["serving"]["api_key_required"] is True
    assert KEY not in json.dumps(info)


def test_docs_and_their_assets_are_served_from_here(client):
    for path, asset in (("/docs", "/docs/assets/swagger-ui-bundle.js"),
                        ("/redoc", "/docs/assets/redoc.standalone.js")):
        page = client.get(path)
        assert page.status_code == 200 and asset in page.text
        assert "cdn." not in page.text and "fonts.googleapis" not in page.text
        script = client.get(asset)
        assert script.status_code == 200 and len(script.content) > 100_000
        assert script.headers["content-type"].startswith("text/javascript")
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "sentitune"


def test_schema_and_docs_need_the_key(strict, classifier):
    for path in ("/openapi.json", "/docs", "/redoc"):
        refused = strict.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"].startswith("Basic")  # a browser asks
        assert not any(label in refused.text for label in classifier.labels)
        for credentials in ({"headers": AUTH}, {"auth": ("anyone", KEY)}):
            assert strict.get(path, **credentials).status_code == 200, (path, credentials)
        assert strict.get(path, auth=("anyone", "wrong")).status_code == 401
    # The public Swagger UI bundle reveals nothing: it stays open.
    assert strict.get("/docs/assets/swagger-ui.css").status_code == 200


def test_health_ready_and_page_stay_open_with_a_key(strict):
    assert strict.get("/health").status_code == 200
    assert strict.get("/ready").status_code == 200
    assert 'data-api-key-required="true"' in strict.get("/").text


def test_api_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert ServeSettings().api_key == "from-env"
    assert ServeSettings(api_key=None).api_key is None
    assert "from-env" not in repr(ServeSettings())


def test_the_cli_takes_the_key_from_a_file_and_keeps_it_out_of_ps(tiny_run_dir, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n")
    env = {name: value for name, value in os.environ.items() if name != API_KEY_ENV}
    process = subprocess.Popen(
        [sys.executable, "-m", "sentitune", "serve", str(tiny_run_dir), "--port", "0",
         "--api-key-file", str(key_file), "--max-header-bytes", "4096"],
        stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in process.stderr:  # uvicorn names the port it was given
            if found := re.search(r"running on (http://\S+)", line):
                break
        assert found, "the server did not start"
        url = found[1]
        assert "from-a-file" not in " ".join(psutil.Process(process.pid).cmdline())
        assert httpx.get(f"{url}/info").status_code == 401
        assert httpx.get(f"{url}/info", headers={"X-API-Key": "from-a-file"}).status_code == 200
        # The connection limits reach the server `serve` runs.
        assert httpx.get(f"{url}/health", headers={"X-Pad": "x" * 5000}).status_code == 431
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.parametrize(("content", "words"), [(None, "No such file"), ("\n", "no key"),
                                                (b"\xff\xfe", "not UTF-8")])
def test_an_unusable_key_file_is_a_one_line_error(capsys, tiny_run_dir, tmp_path, content,
                                                  words):
    key_file = tmp_path / "key"
    if isinstance(content, str):
        key_file.write_text(content)
    elif content is not None:
        key_file.write_bytes(content)
    code, _, err = run_cli(capsys, "serve", str(tiny_run_dir), "--api-key-file", str(key_file))
    assert_one_line_error(code, err, "API key file", words)


def test_the_key_is_given_once(capsys, tiny_run_dir, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("a")
    code, _, err = run_cli(capsys, "serve", str(tiny_run_dir), "--api-key", "b",
                           "--api-key-file", str(key_file))
    assert_one_line_error(code, err, "--api-key or --api-key-file")


@pytest.mark.parametrize(
    "bad", [{"max_batch_size": 0}, {"max_wait_ms": -1}, {"review_threshold": 1.5}, {"port": -1}]
)
def test_impossible_settings_are_user_errors(bad):
    with pytest.raises(SentituneError):
        ServeSettings.from_options(**bad)


# --- micro-batching and metrics -----------------------------------------------------------


async def _burst(base_url: str, n: int, headers: dict | None = None) -> list[int]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, headers=headers) as client:
        responses = await asyncio.gather(
            *(client.post("/predict", json={"text": f"request number {i}"}) for i in range(n))
        )
    return [r.status_code for r in responses]


def test_concurrent_requests_share_model_calls(client):
    before = metrics(client)
    assert asyncio.run(_burst(str(client.base_url), 16)) == [200] * 16
    after = metrics(client)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("sentitune_batch_size_sum") == 16  # every text went through the model once
    assert grew("sentitune_batch_size_count") < 16  # ...in fewer calls than requests
    assert grew("sentitune_batch_size_bucket", le="1") < 16  # so some batch held > 1
    assert grew("sentitune_requests_total", endpoint="/predict", status="200") == 16
    assert grew("sentitune_predictions_total") == 16


def test_without_micro_batching_each_request_is_its_own_call(strict):
    before = metrics(strict, headers=AUTH)
    assert asyncio.run(_burst(str(strict.base_url), 8, AUTH)) == [200] * 8
    after = metrics(strict, headers=AUTH)
    assert (
        sample(after, "sentitune_batch_size_count") - sample(before, "sentitune_batch_size_count")
        == 8
    )
    assert (
        sample(after, "sentitune_batch_size_bucket", le="1")
        - sample(before, "sentitune_batch_size_bucket", le="1")
        == 8
    )


def test_metrics_count_requests_and_reviews(client):
    before = metrics(client)
    for _ in range(3):
        client.get("/health")
    client.get("/no-such-page")
    predictions = client.post("/predict/batch", json={"texts": ["a", "b", "c"]}).json()
    after = metrics(client)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("sentitune_requests_total", endpoint="/health", status="200") == 3
    assert grew("sentitune_requests_total", endpoint="other", status="404") == 1
    assert grew("sentitune_request_duration_seconds_count", endpoint="/health") == 3
    assert grew("sentitune_predictions_total") == 3
    flagged = sum(p["needs_review"] for p in predictions["predictions"])
    assert grew("sentitune_needs_review_total") == flagged
    share = sample(after, "sentitune_review_share")
    total = sample(after, "sentitune_predictions_total")
    assert share == pytest.approx(sample(after, "sentitune_needs_review_total") / total)
    # Histogram buckets are cumulative and end in the count.
    buckets = [
        v
        for (name, labels), v in after.items()
        if name == "sentitune_request_duration_seconds_bucket" and ("endpoint", "/health") in labels
    ]
    assert buckets == sorted(buckets)
    assert buckets[-1] == sample(
        after, "sentitune_request_duration_seconds_count", endpoint="/health"
    )


# --- fuzzing ------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _shaped_like(schema: dict, components: dict) -> st.SearchStrategy:
    """JSON shaped like an OpenAPI schema (the little our bodies use), reaching just past
    its limits."""
    if "$ref" in schema:
        return _shaped_like(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return st.fixed_dictionaries(
            {name: _shaped_like(sub, components) for name, sub in properties.items()}
        )
    if kind == "array":
        items = _shaped_like(schema["items"], components)
        return st.lists(items, max_size=min(schema.get("maxItems", 8) + 1, 8))
    if kind == "string":
        return st.text(min_size=1, max_size=min(schema.get("maxLength", 64) + 1, 600))
    return _json


_content_types = st.sampled_from(
    ["application/json"] * 6
    + ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)


@pytest.mark.parametrize("server", ["client", "strict"])
def test_fuzzed_requests_never_get_a_5xx(server, request):
    http = request.getfixturevalue(server)
    # Every operation of the published schema that takes a body, with bodies shaped
    # like its schema, arbitrary JSON or arbitrary bytes.
    schema = http.get("/openapi.json", headers=AUTH).json()
    components = schema["components"]["schemas"]
    operations = [
        (method.upper(), path, _shaped_like(body_schema, components))
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if (
            body_schema := operation.get("requestBody", {})
            .get("content", {})
            .get("application/json", {})
            .get("schema")
        )
    ]
    assert operations

    @settings(
        max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(st.data(), _content_types)
    def check(data, content_type):
        method, path, shaped = data.draw(st.sampled_from(operations))
        shaped_json = shaped.map(json.dumps)
        # Mostly schema-shaped, so that many requests get as far as the model.
        body = data.draw(st.one_of(shaped_json, shaped_json, _json.map(json.dumps), st.binary()))
        headers = {**AUTH, "Content-Type": content_type} if content_type else AUTH
        response = http.request(method, path, content=body, headers=headers)
        assert response.status_code < 500, (method, path, body, response.text)
        # The Open Inference Protocol's own error shape under /v2.
        shape = "error" if path.startswith("/v2/") else "detail"
        assert response.status_code < 400 or shape in response.json()

    check()


def test_serve_flags_come_from_the_settings_dataclasses():
    """Every documented ServeSettings and InferenceConfig field is a `serve` flag; only the
    flags given leave their defaults."""
    from sentitune.cli import parse
    from sentitune.cli.flags import given
    from sentitune.config import InferenceConfig

    args = parse(["serve", "runs/x", "--max-text-chars", "50", "--batching", "false",
                  "--review-threshold", "0.9", "--long-text", "chunk", "--port", "9001"])
    settings = ServeSettings.from_options(**given(args, ServeSettings),
                                          **given(args, InferenceConfig))
    assert (settings.max_text_chars, settings.micro_batching, settings.port) == (50, False, 9001)
    assert settings.inference == InferenceConfig(review_threshold=0.9, long_text="chunk")
    assert settings.max_batch_size == ServeSettings().max_batch_size  # not given: default
