"""The web page at `/`, used as a person would: headless Chromium against the real server.

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package; skipped
without them.
"""

import re
import shutil
from collections.abc import Iterator

import pytest

from sentitune.server import ServeSettings, create_app, serve_in_thread

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="needs selenium (pip install selenium)"
)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
KEY = "page-key"


@pytest.fixture(scope="module")
def open_url(classifier) -> Iterator[str]:
    with serve_in_thread(create_app(classifier, ServeSettings(api_key=None))) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_url(classifier) -> Iterator[str]:
    with serve_in_thread(create_app(classifier, ServeSettings(api_key=KEY))) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # An explicit driver path: Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(browser, condition, timeout: float = 20):
    return WebDriverWait(browser, timeout).until(lambda _: condition())


def element(browser, element_id: str):
    return browser.find_element(By.ID, element_id)


def test_one_text_shows_label_probability_and_review_badge(browser, open_url, classifier):
    browser.get(open_url)
    wait_for(browser, lambda: "labels:" in element(browser, "model-info").text)
    assert not element(browser, "auth").is_displayed()

    text = "What a wonderful, moving film!"
    element(browser, "text").send_keys(text)
    element(browser, "classify").click()
    wait_for(browser, lambda: element(browser, "result").is_displayed())

    [expected] = classifier.predict([text])
    assert element(browser, "result-label").text == expected["label"]
    assert re.fullmatch(r"\d{1,3}\.\d%", element(browser, "result-score").text)
    score = float(element(browser, "result-score").get_attribute("data-score"))
    assert score == pytest.approx(expected["score"])
    assert element(browser, "review-badge").is_displayed() == expected["needs_review"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#probabilities [role=meter]")
    assert sorted(bar.get_attribute("aria-label") for bar in bars) == sorted(classifier.labels)
    assert not element(browser, "error").is_displayed()


def test_words_under_the_bars_are_shaded_by_their_attribution(browser, open_url, classifier):
    from sentitune.inference.explanations import explain

    browser.get(open_url)
    text = "a lovely, charming film"
    element(browser, "text").send_keys(text)
    element(browser, "classify").click()
    wait_for(browser, lambda: element(browser, "explanation").is_displayed())
    words = browser.find_elements(By.CSS_SELECTOR, "#explanation-words .word")
    assert [w.text for w in words] == ["a", "lovely", ",", "charming", "film"]
    assert element(browser, "explanation-words").text == text
    [expected] = explain(classifier, text)
    titles = [float(w.get_attribute("title")) for w in words]
    assert titles == pytest.approx([w["attribution"] for w in expected["words"]], abs=2e-3)
    strongest = max(range(len(titles)), key=lambda i: abs(titles[i]))
    assert "rgba" in words[strongest].value_of_css_property("background-color")
    assert expected["label"] in element(browser, "explanation-legend").text


def test_batch_mode_fills_a_table_in_input_order(browser, open_url, classifier):
    browser.get(open_url)
    lines = ["I loved it", "awful, just awful", "it was fine I guess"]
    # The blank line is skipped by the page, not sent.
    element(browser, "batch-texts").send_keys("\n".join([lines[0], "", *lines[1:]]))
    element(browser, "classify-batch").click()
    rows_selector = "#batch-table tbody tr"
    wait_for(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, rows_selector)) == 3)

    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, rows_selector)
    ]
    assert [row[1] for row in rows] == lines
    assert [row[2] for row in rows] == [p["label"] for p in classifier.predict(lines)]
    assert all(re.fullmatch(r"\d{1,3}\.\d%", row[3]) for row in rows)


def test_a_server_with_a_key_asks_for_it(browser, keyed_url):
    browser.get(keyed_url)
    wait_for(browser, lambda: "API key" in element(browser, "model-info").text)
    assert element(browser, "auth").is_displayed()

    element(browser, "text").send_keys("no key yet")
    element(browser, "classify").click()
    wait_for(browser, lambda: element(browser, "error").is_displayed())
    assert "API key" in element(browser, "error").text

    element(browser, "api-key").send_keys(KEY)
    element(browser, "classify").click()
    wait_for(browser, lambda: element(browser, "result").is_displayed())
    assert not element(browser, "error").is_displayed()
    assert element(browser, "result-label").text


def operations(browser) -> list[str]:
    """The paths Swagger UI lists, once it has drawn them."""
    return [path.text for path in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]


def test_docs_draw_offline(browser, open_url):
    """This machine reaches no CDN: Swagger UI and ReDoc must come from the server itself."""
    browser.get(f"{open_url}/docs")
    wait_for(browser, lambda: "/predict" in operations(browser))
    assert any(path.endswith("/infer") for path in operations(browser))
    browser.get(f"{open_url}/redoc")
    wait_for(browser, lambda: "Open Inference Protocol" in browser.find_element(
        By.TAG_NAME, "body").text)


def test_docs_behind_a_key_take_it_as_a_password(browser, keyed_url):
    """Once given (here in the URL, where a person types them into the browser's prompt),
    the browser sends the HTTP Basic credentials again, also when the page fetches the
    schema."""
    address = keyed_url.removeprefix("http://")
    browser.get(f"http://anyone:{KEY}@{address}/docs")  # the browser remembers them
    browser.get(f"{keyed_url}/docs")  # a URL without them, as a fetch from the page
    wait_for(browser, lambda: "/predict" in operations(browser))


@pytest.fixture(scope="module")
def multilabel_url(tmp_path_factory) -> Iterator[tuple[str, object]]:
    from conftest import build_tiny_model, make_sentiment_frame, tiny_config

    from sentitune.inference.classifier import Classifier
    from sentitune.training import train

    root = tmp_path_factory.mktemp("page-multilabel")
    frame = make_sentiment_frame(60)
    mood = {"positive": "glad", "negative": "sad"}  # not sentiment spellings: three names
    frame["label"] = [f"{mood[label]}|loud" if i % 3 == 0 else mood[label]
                      for i, label in enumerate(frame["label"])]
    frame.to_csv(root / "data.csv", index=False)
    model = build_tiny_model("bert", root / "bert3", num_labels=3)
    run = train(tiny_config(model, root / "data.csv", epochs=1.0), root / "run",
                progress=False).run_dir
    clf = Classifier.from_pretrained(run)
    with serve_in_thread(create_app(clf, ServeSettings(api_key=None))) as url:
        yield url, clf


def test_multilabel_page_shows_a_probability_and_explains_the_colours(browser, multilabel_url):
    url, clf = multilabel_url
    browser.get(url)
    wait_for(browser, lambda: "labels:" in element(browser, "model-info").text)
    text = "a superb film , simply lovely"
    element(browser, "text").send_keys(text)
    element(browser, "classify").click()
    wait_for(browser, lambda: element(browser, "result").is_displayed())

    [expected] = clf.predict([text])
    chosen = [expected["probabilities"][label] for label in expected["labels"]]
    shown = element(browser, "result-score").get_attribute("data-score")
    # A probability of a chosen label, never the margin that `score` holds for multi-label.
    assert (float(shown) == pytest.approx(max(chosen))) if chosen else shown == ""
    assert element(browser, "bars-legend").is_displayed()
    assert "threshold" in element(browser, "legend-chosen").text
    green = browser.find_elements(By.CSS_SELECTOR, "#probabilities .bar.chosen")
    assert sorted(bar.get_attribute("aria-label") for bar in green) == sorted(expected["labels"])
