"""The published OpenAPI schema says what the server accepts: schemathesis, every check,
on every route (the Open Inference Protocol's under /v2 included).

The real server (uvicorn, an API key, limits small enough that a CI-sized run reaches
them) is tested by the schemathesis CLI with all of its checks: no 5xx, and beyond that
every status code, header and body documented, schema-valid requests accepted,
schema-invalid ones refused.
"""

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sentitune.server import ServeSettings, create_app, serve_in_thread
from sentitune.server.models import NOT_BLANK

KEY = "schema-key"
LIMITS = ServeSettings(api_key=KEY, max_text_chars=1000, max_texts_per_request=16,
                       max_body_bytes=32 * 1024)
# A body over max_body_bytes is refused with 413 before it is parsed, whatever it holds:
# a rejection schemathesis does not list by default. The Open Inference Protocol's infer
# has two rules no OpenAPI schema can state (its schema says so): `shape` holds exactly the
# number of texts sent, and Inference-Header-Content-Length and binary_data_size fit the
# body's parts; a request that breaks them is a documented 400, so most generated "valid"
# infer bodies are refused and schemathesis's validation_mismatch warning says so there.
# Every other warning fails the run: it would mean the run did not test what it should
# (a missing key, rate limiting), and a warning used to drop the summary line silently.
CONFIG = """
[warnings]
fail-on = true

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429"]

[[operations]]
include-path-regex = "/infer$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "429"]
warnings.display = ["missing_auth", "missing_test_data", "base_url_mismatch", "rate_limited"]
warnings.fail-on = true
"""


@pytest.fixture(scope="module")
def server(classifier) -> Iterator[str]:
    with serve_in_thread(create_app(classifier, LIMITS)) as url:
        yield url


def schemathesis_cli() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("schemathesis is not installed (pip install sentitune[dev])")
    return [found]


def test_schemathesis_finds_no_failure_of_any_check(server, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        *schemathesis_cli(), "--config-file", str(config), "run", f"{server}/openapi.json",
        "--checks", "all", "--max-examples", "60", "--seed", "11",
        "--header", f"X-API-Key: {KEY}", "--request-timeout", "30",
        # No --max-time: in schemathesis 4.32 it is a budget the phases cycle until they
        # spend (a 240 s cap ran 240 s), not a cap. The examples bound the run (about 17 s
        # alone on 2 cores); the subprocess timeout only guards against a hang.
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout


def test_the_schema_publishes_the_limits_and_the_non_blank_rule(server):
    schema = httpx.get(f"{server}/openapi.json", headers={"X-API-Key": KEY}).json()
    components = schema["components"]["schemas"]
    text = components["PredictRequest"]["properties"]["text"]
    texts = components["BatchRequest"]["properties"]["texts"]
    assert text["pattern"] == texts["items"]["pattern"] == NOT_BLANK
    assert text["maxLength"] == LIMITS.max_text_chars and text["minLength"] == 1
    assert texts["maxItems"] == LIMITS.max_texts_per_request
    for path in ("/predict", "/predict/batch"):
        responses = schema["paths"][path]["post"]["responses"]
        assert {"401", "413", "415", "422", "503"} <= responses.keys()
        assert "Retry-After" in responses["503"]["headers"]


def test_the_published_pattern_refuses_exactly_the_characters_cleaning_leaves_nothing_of():
    """Every code point, one at a time: the schema's pattern and the server's rule agree, so
    schemathesis (or a generated client) never sends a "valid" text the server refuses
    (a lone soft hyphen did, one run in a few)."""
    import re

    from sentitune.dataset.splits import is_blank

    pattern = re.compile(NOT_BLANK)
    differ = [hex(code) for code in range(0x110000)
              if (pattern.search(chr(code)) is None) != is_blank(chr(code))]
    assert not differ


@pytest.mark.parametrize("text", ["\r", " \t\n", "\u3000", "\x1c", "\ufeff", "\xa0\u2028", "\xad",
                                  "\u200e\u2066", "\U000e0041"])
def test_blank_texts_are_refused_as_the_schema_says(server, text):
    import re

    assert re.search(NOT_BLANK, text) is None  # the schema's own pattern refuses it ...
    response = httpx.post(f"{server}/predict", json={"text": text}, headers={"X-API-Key": KEY})
    assert response.status_code == 422, response.text  # ... and so does the server
    assert response.json()["detail"][0]["msg"] == "text is empty or only whitespace"


def test_wrong_content_type_is_415_and_the_key_comes_before_the_body(server):
    post = httpx.post
    url = f"{server}/predict"
    wrong_type = post(url, content=b'{"text": "fine"}',
                      headers={"X-API-Key": KEY, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and "application/json" in wrong_type.json()["detail"]
    # Without the key, a broken body or a wrong type are not looked at: 401 first.
    for body, content_type in ((b"{not json", "application/json"), (b"x", "text/plain")):
        response = post(url, content=body, headers={"Content-Type": content_type})
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
    ok = post(url, content=b'{"text": "fine"}',
              headers={"Authorization": f"Bearer {KEY}",
                       "Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200
