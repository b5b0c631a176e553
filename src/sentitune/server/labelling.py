"""The labelling loop inside `sentitune serve --review-store STORE`.

Every text the server flags for review (`needs_review`, on /predict, /predict/batch and
/v2) is added to the label store, and people label the store's texts at /label: one text
at a time with the model's answer and probability and the words that drove it (shaded by
the page from POST /explain), a button and a key per label (check boxes for multi-label
runs), skip and undo. The page is static and local; its API
(/label/api/...) is behind the API key when one is set.

    GET  /label/api/task            labels, task, the run
    GET  /label/api/next            ?annotator=NAME[&item=ID]: the next text to label
    POST /label/api/submit          {"item_id", "annotator", "labels": [...]}
    POST /label/api/skip            {"item_id", "annotator"}
    POST /label/api/undo            {"annotator"}: removes their latest answer
    GET  /label/api/stats           counts and annotator agreement

A label is committed to the database before the answer is sent. Bad input is a 4xx with a
message: 404 for an unknown text, 422 for an unknown label or a missing annotator.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from sentitune.errors import SentituneError
from sentitune.labelstore.store import MAX_ANNOTATOR_CHARS, LabelStore, UnknownItem

Dispatch = Callable[[list[str]], Awaitable[list[dict]]]
_ASSETS = {"label.js": "text/javascript", "label.css": "text/css"}
_PAGE_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
log = logging.getLogger("sentitune.serve")

Annotator = Annotated[str, Field(min_length=1, max_length=MAX_ANNOTATOR_CHARS)]


class Answer(BaseModel):
    item_id: int
    annotator: Annotator
    labels: list[str] = Field(description="one label, or any number for multi-label runs")


class Skip(BaseModel):
    item_id: int
    annotator: Annotator


class Undo(BaseModel):
    annotator: Annotator


def _asset(name: str) -> str:
    return resources.files("sentitune.server").joinpath("assets", name).read_text(
        encoding="utf-8")


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    """A store call off the event loop; the user's mistakes as 4xx answers."""
    try:
        return await run_in_threadpool(function, *args)
    except UnknownItem as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except SentituneError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


def add_routes(app: FastAPI, store: LabelStore, classifier, dispatch: Dispatch,
               protected: list) -> None:
    """The page, its assets and its API over `store`, on `app` itself (FastAPI's included
    routers are not plain routes, and the app's middleware reads its routes' paths)."""
    run_name = classifier.run.path.resolve().name
    api = {"dependencies": protected, "tags": ["labelling"]}

    @app.get("/label", include_in_schema=False)
    async def page() -> HTMLResponse:
        html = _asset("label.html").replace(
            "__API_KEY_REQUIRED__", "true" if protected else "false")
        return HTMLResponse(html, headers={"Content-Security-Policy": _PAGE_CSP})

    for name, media_type in _ASSETS.items():
        app.add_api_route(f"/label/assets/{name}", _static(_asset(name), media_type),
                             methods=["GET"], include_in_schema=False)

    @app.get("/label/api/task", **api)
    async def task() -> dict[str, Any]:
        """The store's labels and task, and the run answering."""
        return {"labels": store.labels, "task": store.task, "run": run_name}

    @app.get("/label/api/next", **api)
    async def next_text(annotator: Annotated[str, Query(min_length=1)],
                        item: int | None = None) -> dict[str, Any]:
        """The next text this annotator has not answered, least sure first (or `item`)."""
        found = await _call(store.next_item, annotator, item)
        if found is not None and found["model_answer"] is None:
            # A text added without a model answer: this run answers it now (not stored).
            answer = (await dispatch([found["text"]]))[0]
            found |= {"model_run": run_name, "model_score": answer["score"],
                      "model_answer": answer.get("labels", answer.get("label")),
                      "model_probabilities": answer["probabilities"]}
        return {"item": found, "progress": await _call(store.progress, annotator)}

    @app.post("/label/api/submit", **api)
    async def submit(body: Answer) -> dict[str, Any]:
        """Save the annotator's label(s) for a text; the same submit twice is one."""
        saved = await _call(store.submit, body.item_id, body.annotator, body.labels)
        return {"saved": saved, "progress": await _call(store.progress, body.annotator)}

    @app.post("/label/api/skip", **api)
    async def skip(body: Skip) -> dict[str, Any]:
        """Pass over a text (recorded, so it is not offered again; undo brings it back)."""
        saved = await _call(store.submit, body.item_id, body.annotator, None)
        return {"saved": saved, "progress": await _call(store.progress, body.annotator)}

    @app.post("/label/api/undo", **api)
    async def undo(body: Undo) -> dict[str, Any]:
        """Remove the annotator's latest label or skip; the text it was about."""
        return {"item_id": await _call(store.undo, body.annotator)}

    @app.get("/label/api/stats", **api)
    async def stats() -> dict[str, Any]:
        """Texts, labels, annotators and their agreement (as `sentitune labels stats`)."""
        from sentitune.labelstore.api import label_stats

        return await _call(label_stats, store.url)


def _static(content: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def endpoint() -> Response:
        return Response(content, media_type=media_type)

    return endpoint


def collecting(dispatch: Dispatch, store: LabelStore, run_name: str) -> Dispatch:
    """`dispatch` that also adds every prediction flagged for review to the store. A store
    that fails is logged, never turned into a failed prediction."""

    async def dispatch_and_collect(texts: list[str]) -> list[dict]:
        predictions = await dispatch(texts)
        flagged = [p for p in predictions if p["needs_review"]]
        if flagged:
            try:
                await run_in_threadpool(store.add, flagged, source="serve", run=run_name)
            except Exception as exc:  # the database, not the request, is at fault
                log.warning("could not add %d flagged texts to the review store: %s",
                            len(flagged), exc)
        return predictions

    return dispatch_and_collect


def mount(app: FastAPI, classifier, settings, dispatch: Dispatch, protected: list
          ) -> Dispatch:
    """With `settings.review_store`: open the store (created for the run's labels; a store
    of another task is refused), add the labelling routes, and return the dispatch that
    collects flagged texts. Without one: `dispatch` unchanged."""
    if settings.review_store is None:
        return dispatch
    store = LabelStore.open(settings.review_store, labels=classifier.labels,
                            task=classifier.task)
    add_routes(app, store, classifier, dispatch, protected)
    return collecting(dispatch, store, classifier.run.path.resolve().name)
