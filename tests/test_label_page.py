"""The labelling page at /label (`serve --review-store`), used as a person would: headless
Chromium against the real server, the database checked after the clicks and keys. The
page's API is also checked directly for its 4xx answers.

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package for the browser
tests; skipped without them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from sentitune.labelstore.store import LabelStore
from sentitune.server import ServeSettings, create_app, serve_in_thread

pytest.importorskip("sqlalchemy", reason="needs SQLAlchemy (pip install 'sentitune[labels]')")

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
KEY = "label-key"
TEXTS = [("a quietly moving film", "positive", 0.55), ("dull and far too long", "negative", 0.6),
         ("i found it odd", None, None)]


def filled_store(path) -> str:
    store = LabelStore.open(path, labels=["negative", "positive"], task="binary")
    store.add([{"text": t, "label": label, "score": score,
                "probabilities": None if label is None else
                {label: score, ("negative" if label == "positive" else "positive"): 1 - score}}
               for t, label, score in TEXTS], source="test", run="earlier-run")
    return str(path)


def annotations(store: str) -> list[tuple]:
    return [(r["text"], r["annotator"], r["labels"], r["skipped"])
            for r in LabelStore.open(store).annotations()]


@pytest.fixture
def served(classifier, tmp_path) -> Iterator[tuple[str, str]]:
    store = filled_store(tmp_path / "labels.db")
    app = create_app(classifier, ServeSettings(api_key=None, review_store=store))
    with serve_in_thread(app) as url:
        yield url, store


@pytest.fixture
def keyed(classifier, tmp_path) -> Iterator[tuple[str, str]]:
    store = filled_store(tmp_path / "keyed.db")
    # Review threshold 1: every answer is flagged for review.
    app = create_app(classifier, ServeSettings.from_options(api_key=KEY, review_store=store,
                                                            review_threshold=1.0))
    with serve_in_thread(app) as url:
        yield url, store


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from test_web_page import FLAGS

    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-label')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(browser, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(lambda _: condition())


def element(browser, element_id: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id)


def shown_text(browser) -> str:
    return element(browser, "label-text").text


def press(browser, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    element(browser, "task-info").click()  # focus off the name field
    ActionChains(browser).send_keys(key).perform()


def start(browser, url: str, name: str, key: str | None = None) -> None:
    browser.get(f"{url}/label")
    browser.execute_script("localStorage.clear()")
    browser.get(f"{url}/label")
    element(browser, "annotator").clear()
    element(browser, "annotator").send_keys(name)
    if key is not None:
        element(browser, "api-key").send_keys(key)
    element(browser, "start").click()
    wait_for(browser, lambda: element(browser, "work").is_displayed())


@needs_browser
def test_label_with_keys_and_buttons_skip_and_undo(browser, served):
    url, store = served
    start(browser, url, "ann")
    # The least sure text first, with the model's answer and probability.
    assert shown_text(browser) == "a quietly moving film"
    assert "says positive with probability 55.0%" in element(browser, "model-answer").text
    assert "earlier-run" in element(browser, "model-answer").text
    assert "0 of 3" in element(browser, "progress").text
    press(browser, "2")  # the second label: positive
    wait_for(browser, lambda: shown_text(browser) == "dull and far too long")
    assert annotations(store) == [("a quietly moving film", "ann", ["positive"], False)]
    element(browser, "skip").click()
    # A text added without an answer: the served run answers it on the page.
    wait_for(browser, lambda: shown_text(browser) == "i found it odd")
    assert "The model (" in element(browser, "model-answer").text
    element(browser, "undo").click()  # the skip is undone: that text comes back
    wait_for(browser, lambda: shown_text(browser) == "dull and far too long")
    assert [a[3] for a in annotations(store)] == [False]
    element(browser, "choice-0").click()  # the negative button
    wait_for(browser, lambda: shown_text(browser) == "i found it odd")
    press(browser, "s")
    wait_for(browser, lambda: element(browser, "done").is_displayed())
    press(browser, "u")
    wait_for(browser, lambda: shown_text(browser) == "i found it odd")
    element(browser, "choice-1").click()
    wait_for(browser, lambda: element(browser, "done").is_displayed())
    assert sorted(annotations(store)) == [
        ("a quietly moving film", "ann", ["positive"], False),
        ("dull and far too long", "ann", ["negative"], False),
        ("i found it odd", "ann", ["positive"], False)]
    assert "3 of 3" in element(browser, "progress").text


@needs_browser
def test_the_words_that_drove_the_answer_are_shaded_in_the_text(browser, served):
    from selenium.webdriver.common.by import By

    url, _ = served
    start(browser, url, "reader")
    wait_for(browser, lambda: element(browser, "explanation").is_displayed())
    assert "Shaded: the words that make this server's model say" in element(
        browser, "explanation").text
    words = element(browser, "label-text").find_elements(By.CSS_SELECTOR, "span.word")
    assert [w.text for w in words] == ["a", "quietly", "moving", "film"]
    assert all(w.get_attribute("title") for w in words)  # each carries its attribution
    assert shown_text(browser) == "a quietly moving film"  # the text itself is unchanged


@needs_browser
def test_a_second_annotator_gets_every_text_and_agreement_is_reported(browser, served):
    url, store = served
    for name, keys in (("ann", "221"), ("bob", "211")):
        start(browser, url, name)
        for i, key in enumerate(keys):
            press(browser, key)
            wait_for(browser, lambda i=i: f"{i + 1} of 3" in element(browser, "progress").text)
    rows = annotations(store)
    assert len(rows) == 6 and {r[1] for r in rows} == {"ann", "bob"}
    stats = httpx.get(f"{url}/label/api/stats").json()
    assert stats["agreement"]["annotators"] == 2 and stats["agreement"]["texts_compared"] == 3
    assert stats["tied_texts"] == 1


@needs_browser
def test_the_page_asks_for_the_api_key_when_one_is_set(browser, keyed):
    url, store = keyed
    browser.get(f"{url}/label")
    assert element(browser, "auth").is_displayed()
    element(browser, "annotator").send_keys("ann")
    element(browser, "start").click()
    wait_for(browser, lambda: "API key" in element(browser, "error").text)
    element(browser, "api-key").send_keys("wrong")
    element(browser, "start").click()
    wait_for(browser, lambda: "missing or wrong API key" in element(browser, "error").text)
    start(browser, url, "ann", KEY)
    press(browser, "1")
    wait_for(browser, lambda: "1 of 3" in element(browser, "progress").text)
    assert annotations(store) == [("a quietly moving film", "ann", ["negative"], False)]


def test_the_label_api_answers_bad_input_with_4xx(served):
    url, store = served
    item = httpx.get(f"{url}/label/api/next", params={"annotator": "ann"}).json()["item"]
    cases = [({"item_id": item["id"], "annotator": "ann", "labels": ["happy"]}, 422,
              "unknown label 'happy'"),
             ({"item_id": item["id"], "annotator": "ann", "labels": ["negative", "positive"]},
              422, "exactly one label"),
             ({"item_id": 999, "annotator": "ann", "labels": ["negative"]}, 404, "no text 999"),
             ({"item_id": item["id"], "annotator": "", "labels": ["negative"]}, 422, None)]
    for body, status, message in cases:
        answer = httpx.post(f"{url}/label/api/submit", json=body)
        assert answer.status_code == status, answer.text
        if message:
            assert message in answer.json()["detail"]
    assert httpx.get(f"{url}/label/api/next").status_code == 422  # no annotator
    assert annotations(store) == []
    body = {"item_id": item["id"], "annotator": "ann", "labels": ["negative"]}
    for _ in range(2):  # a double submit is one label
        assert httpx.post(f"{url}/label/api/submit", json=body).status_code == 200
    assert len(annotations(store)) == 1


def test_flagged_predictions_reach_the_store_and_the_key_guards_the_api(keyed):
    url, store = keyed
    headers = {"X-API-Key": KEY}
    assert httpx.get(f"{url}/label/api/task").status_code == 401
    assert httpx.post(f"{url}/label/api/undo", json={"annotator": "a"}).status_code == 401
    assert httpx.get(f"{url}/label").status_code == 200  # the page itself; its API is keyed
    task = httpx.get(f"{url}/label/api/task", headers=headers).json()
    assert task["labels"] == ["negative", "positive"] and task["task"] == "binary"
    answers = httpx.post(f"{url}/predict/batch", headers=headers, json={
        "texts": ["brand new text one", "brand new text two"]}).json()["predictions"]
    assert all(a["needs_review"] for a in answers)
    assert {"brand new text one", "brand new text two"} <= _all_texts(store)
    new = httpx.post(f"{url}/predict", headers=headers, json={"text": "a third"}).json()
    assert new["needs_review"] and "a third" in _all_texts(store)


def test_texts_not_flagged_stay_out_of_the_store(served, classifier):
    url, store = served
    before = _all_texts(store)
    answer = httpx.post(f"{url}/predict", json={"text": "not flagged at all"}).json()
    assert not answer["needs_review"] or answer["score"] < classifier.review_threshold
    assert ("not flagged at all" in _all_texts(store)) == answer["needs_review"]
    assert before <= _all_texts(store)


def _all_texts(store: str) -> set[str]:
    from sqlalchemy import select

    from sentitune.labelstore import schema

    with LabelStore.open(store).engine.connect() as connection:
        return set(connection.scalars(select(schema.items.c.text)))


def test_a_review_store_of_another_task_stops_the_server_with_one_message(classifier,
                                                                           tmp_path):
    from sentitune.errors import SentituneError

    other = tmp_path / "other.db"
    LabelStore.open(other, labels=["joy", "anger", "fear"], task="multiclass")
    with pytest.raises(SentituneError, match="another task"):
        create_app(classifier, ServeSettings(review_store=str(other)))


@pytest.fixture(scope="module")
def multilabel_served(tmp_path_factory, tiny_bert) -> Iterator[tuple[str, str]]:
    """A tiny multi-label run (joy, anger, fear) serving the labelling page."""
    import pandas as pd
    from conftest import tiny_config

    from sentitune.inference.classifier import Classifier
    from sentitune.training import train

    root = tmp_path_factory.mktemp("multilabel-page")
    cells = ["joy", "anger", "fear", "joy|fear", "anger|fear"]
    words = {"joy": "delighted", "anger": "furious", "fear": "scared"}
    frame = pd.DataFrame({"text": [f"so {' '.join(words[x] for x in cell.split('|'))} {i}"
                                   for i, cell in enumerate(cells * 8)],
                          "label": cells * 8})
    frame.to_csv(root / "emotions.csv", index=False)
    train(tiny_config(tiny_bert, root / "emotions.csv", epochs=1.0, task="multilabel"),
          root / "run", progress=False)
    store = str(root / "labels.db")
    app = create_app(Classifier.from_pretrained(root / "run"),
                     ServeSettings(api_key=None, review_store=store))
    LabelStore.open(store).add([{"text": "first text"}, {"text": "second text"}],
                               source="test")
    with serve_in_thread(app) as url:
        yield url, store


@needs_browser
def test_multilabel_runs_label_with_check_boxes(browser, multilabel_served):
    url, store = multilabel_served
    start(browser, url, "ann")
    boxes = [element(browser, f"choice-{i}") for i in range(3)]
    assert all(box.get_attribute("type") == "checkbox" for box in boxes)
    assert element(browser, "save").is_displayed()

    def choose(wanted: set[int]) -> None:
        # The model's answer comes pre-checked: toggle each box to the wanted state.
        for i, box in enumerate(boxes):
            if box.is_selected() != (i in wanted):
                press(browser, str(i + 1))
        assert {i for i, box in enumerate(boxes) if box.is_selected()} == wanted

    first = shown_text(browser)
    choose({0, 2})
    press(browser, "\n")  # Enter saves
    wait_for(browser, lambda: shown_text(browser) != first)
    second = shown_text(browser)
    choose(set())
    element(browser, "save").click()  # none of the labels: an answer too
    wait_for(browser, lambda: element(browser, "done").is_displayed())
    names = httpx.get(f"{url}/label/api/task").json()["labels"]
    assert sorted(annotations(store)) == sorted([(first, "ann", [names[0], names[2]], False),
                                                 (second, "ann", [], False)])
