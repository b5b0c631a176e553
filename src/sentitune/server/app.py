"""HTTP serving: a FastAPI app around one loaded `Classifier`, plus a small web page.

    POST /predict        {"text": "..."}          -> one prediction
    POST /predict/batch  {"texts": ["...", ...]}  -> {"predictions": [...]}, input order
    GET  /health         liveness (always open)     GET /ready    model warmed up
    GET  /info           model + serving settings   GET /metrics  Prometheus text format
    GET  /               the web page               GET /docs     OpenAPI UI (`docs`)
    /v2/...              the Open Inference Protocol (KServe v2): see `server/oip.py`
    /label               with a review store: the labelling page (`server/labelling.py`)

The model is called from one worker thread only (`Classifier.predict` wants its calls
serialised), so the event loop never blocks on it. With micro-batching on, concurrent
requests are grouped into one `predict` call; see `MicroBatcher` for when a batch closes.

Bad input is always a 4xx with `{"detail": ...}`, never a 5xx:
    400  body is not JSON (or not UTF-8)
    401  API key missing or wrong (when one is set), checked before the body is read
    405  a known path asked with another method (with an Allow header)
    408  a request not received within `header_timeout_s` / `request_timeout_s`
    413  body over `max_body_bytes`, checked before parsing
    415  a content type other than JSON (none at all is read as JSON)
    422  wrong shape or types; a text empty, only whitespace, not valid Unicode, or over
         `max_text_chars`; no texts, or more than `max_texts_per_request`. Per-field limits
         are 422 rather than 413 so the answer can point at the offending field (`loc`).
    431  request line and headers over `max_header_bytes` (`limits`), before parsing
Texts longer than the model's `max_length` tokens are truncated (as the run's `truncation`
says), not refused, and the prediction says `"truncated": true`; with `long_text="chunk"`
every window is scored instead and the prediction says how many (`windows`). A request the
model has not started on within `max_queue_ms` gets 503 with Retry-After (see
`MicroBatcher`).
"""

import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

import sentitune.server.labelling as labelling
import sentitune.server.oip as oip
from sentitune.config import InferenceConfig
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier
from sentitune.schema import Prediction
from sentitune.server.batching import MicroBatcher, ModelWorker, Overloaded
from sentitune.server.docs import mount_docs
from sentitune.server.gate import KEY_HEADER, RequestGate, error_body, key_matches
from sentitune.server.limits import uvicorn_options
from sentitune.server.metrics import ServeMetrics
from sentitune.server.models import (
    BatchResponse,
    ErrorResponse,
    Explanation,
    InfoResponse,
    explain_request_model,
    request_models,
)
from sentitune.server.settings import ServeSettings, read_api_key_file

# Carries the run directory and settings to `uvicorn --workers` processes, which import
# the app by name and so cannot be handed Python objects.
_WORKER_CONFIG_ENV = "SENTITUNE_SERVE_WORKER_CONFIG"
_ASSETS = {"app.js": "text/javascript", "words.js": "text/javascript", "style.css": "text/css"}
# Same-origin only: the page loads nothing from elsewhere and runs no inline script.
_PAGE_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"

# --- middleware ---------------------------------------------------------------------------

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`, decided before anything parses it.

    A declared Content-Length over the limit is refused unread; otherwise the body is
    counted as it streams in (chunked uploads declare nothing) and handed on whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if delivered:
                return await receive()  # later calls wait for the disconnect, as usual
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict, receive: Callable, send: Callable) -> None:
        detail = f"request body over the {self.max_bytes} byte limit"
        # The Open Inference Protocol's error shape on its own routes.
        key = "error" if scope["path"].startswith(oip.PREFIX + "/") else "detail"
        await JSONResponse({key: detail}, status_code=413)(scope, receive, send)


class MetricsMiddleware:
    """Counts every answer, the 401s and 413s included, with its latency."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, endpoints: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        # Paths outside the app's routes share one label, so scanners cannot grow the
        # metrics without bound.
        self.endpoints = endpoints

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None  # stays None if the client left before an answer
        start = time.perf_counter()

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            status = 500
            raise
        finally:
            if status is not None:
                endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
                self.metrics.observe_request(endpoint, status, time.perf_counter() - start)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 for a body that is not JSON at all, 422 listing each bad field otherwise.

    Unlike FastAPI's default answer this does not echo the offending input back, which
    could be the whole body.
    """
    errors = exc.errors()
    if errors and errors[0]["type"] == "json_invalid":
        where = errors[0]["loc"][-1]
        reason = errors[0].get("ctx", {}).get("error", "")
        detail = f"request body is not valid JSON: {reason} at character {where}"
        return JSONResponse({"detail": detail}, status_code=400)
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


# --- the app ------------------------------------------------------------------------------


def _asset(name: str) -> str:
    return resources.files("sentitune.server").joinpath("assets", name).read_text(encoding="utf-8")


async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, str(exc)), status_code=503,
                        headers={"Retry-After": str(exc.retry_after_s)})


def _api_key_check(expected: str) -> Callable[..., Awaitable[None]]:
    """The key as the OpenAPI schema documents it; `RequestGate` enforces it first."""

    async def check(
        header_key: str | None = Security(APIKeyHeader(name=KEY_HEADER, auto_error=False)),
        bearer: HTTPAuthorizationCredentials | None = Security(HTTPBearer(auto_error=False)),
    ) -> None:
        given = header_key or (bearer.credentials if bearer else None)
        if not key_matches(given, expected):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API key: send it as X-API-Key or Authorization: Bearer",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def create_app(classifier: Classifier, settings: ServeSettings | None = None) -> FastAPI:
    """The app serving an already loaded classifier; the model is never reloaded."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    worker = ModelWorker(classifier, settings, metrics)
    batcher = (
        MicroBatcher(worker, settings.max_batch_size, settings.max_wait_ms,
                     settings.max_queue_ms)
        if settings.micro_batching
        else None
    )
    # Without micro-batching each request is its own call, still one at a time.
    dispatch = batcher.predict if batcher is not None else worker.predict
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if batcher is not None:
            batcher.start()
        await worker.warm_up()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            if batcher is not None:
                await batcher.stop()
            worker.close()

    app = FastAPI(
        title="sentitune",
        summary=f"Sentiment classifier: {', '.join(classifier.labels)} ({classifier.task})",
        lifespan=lifespan,
        # A body without a content type is read as JSON, as Triton's client sends it; a
        # type that is not JSON is refused (415) by `RequestGate`.
        strict_content_type=False,
        # Served by `mount_docs`: from local assets, and behind the API key.
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.settings = settings  # for `serve_in_thread`'s connection limits
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Overloaded, _overloaded)
    key_check = _api_key_check(settings.api_key) if settings.api_key else None
    protected = [Depends(key_check)] if key_check else []
    dispatch = labelling.mount(app, classifier, settings, dispatch, protected)
    _add_routes(app, classifier, settings, dispatch, metrics, protected,
                lambda: state["ready"])
    oip.mount(app, classifier, settings, dispatch, metrics, protected, lambda: state["ready"])
    mount_docs(app, settings.api_key)

    for name, media_type in _ASSETS.items():
        app.add_api_route(
            f"/assets/{name}",
            _asset_endpoint(_asset(name), media_type),
            methods=["GET"],
            include_in_schema=False,
        )

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestGate, api_key=settings.api_key, protected=lambda route: any(
        dependency.dependency is key_check for dependency in route.dependencies))
    # Added last, so outermost: it also sees the 413s the body limit sends.
    app.add_middleware(
        MetricsMiddleware,
        metrics=metrics,
        endpoints=frozenset(route.path for route in app.routes),
    )
    return app


def _serving(classifier: Classifier, settings: ServeSettings) -> dict[str, Any]:
    """The serving settings /info reports, the review ones as they are in force."""
    answers = settings.inference
    decision = classifier.decision_for(classifier.config.replace(
        review_threshold=answers.review_threshold, threshold=answers.threshold,
        review_truncated=answers.review_truncated))
    return {**settings.serving(), "review_threshold": decision.review_threshold,
            "review_truncated": decision.review_truncated,
            "api_key_required": settings.api_key is not None}


def _add_routes(app: FastAPI, classifier: Classifier, settings: ServeSettings,
                dispatch: Callable[[list[str]], Awaitable[list[dict[str, Any]]]],
                metrics: ServeMetrics, protected: list, is_ready: Callable[[], bool]) -> None:
    """The app's own routes: predict, health, info, metrics and the web page."""
    PredictRequest, BatchRequest = request_models(settings)
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422)
    }
    errors[503] = {"model": ErrorResponse, "description": "overloaded: retry after the "
                   "Retry-After header's seconds",
                   "headers": {"Retry-After": {"schema": {"type": "integer"}}}}
    page = _asset("index.html").replace(
        "__API_KEY_REQUIRED__", "true" if settings.api_key else "false"
    )

    @app.post("/predict", response_model=Prediction, dependencies=protected, responses=errors)
    async def predict(body: PredictRequest) -> dict[str, Any]:
        """Classify one text."""
        predictions = await dispatch([body.text])
        metrics.observe_predictions(predictions)
        return predictions[0]

    @app.post(
        "/predict/batch", response_model=BatchResponse, dependencies=protected, responses=errors
    )
    async def predict_batch(body: BatchRequest) -> dict[str, Any]:
        """Classify several texts; predictions come back in input order."""
        predictions = await dispatch(list(body.texts))
        metrics.observe_predictions(predictions)
        return {"predictions": predictions}

    explainer = _ExplainRoute(classifier)
    ExplainRequest = explain_request_model(settings, explainer.methods)

    @app.post("/explain", response_model=Explanation, dependencies=protected, responses=errors)
    async def explain_text(body: ExplainRequest) -> dict[str, Any]:
        """Word attributions for the predicted label of one text (slower than /predict:
        integrated gradients make about 32 forward and backward passes)."""
        return await explainer(body.text, body.method)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": ErrorResponse}})
    async def ready() -> dict[str, str]:
        """Readiness: the model is loaded and has answered its warm-up call."""
        if not is_ready():
            raise HTTPException(status_code=503, detail="model not ready")
        return {"status": "ready"}

    details = classifier.info()
    serving = _serving(classifier, settings)
    oip_model = oip.model_name(classifier)

    @app.get("/info", response_model=InfoResponse, dependencies=protected, responses=errors)
    async def info() -> dict[str, Any]:
        """The model (name, labels, task, metrics, its name on /v2) and the serving settings
        that matter."""
        return {**details, "oip_model": oip_model, "serving": serving}

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=protected, responses=errors)
    async def prometheus_metrics() -> Response:
        """Prometheus text format: requests, latency, batch sizes, review share."""
        return PlainTextResponse(
            metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_CSP})


class _ExplainRoute:
    """POST /explain: one text at a time, in a thread, so the event loop stays free."""

    def __init__(self, classifier: Classifier) -> None:
        from sentitune.inference.explanations import BULK_METHOD, GRADIENT_METHODS, METHODS

        self.classifier = classifier
        gradients = classifier.model is not None and len(classifier.members) == 1
        self.methods = METHODS if gradients else (BULK_METHOD,)
        self.default = GRADIENT_METHODS[0] if gradients else BULK_METHOD

    async def __call__(self, text: str, method: str | None) -> dict[str, Any]:
        import asyncio

        from sentitune.inference.explanations import explain

        return (await asyncio.to_thread(explain, self.classifier, text,
                                        method or self.default))[0]


def _asset_endpoint(content: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def endpoint() -> Response:
        return Response(content, media_type=media_type)

    return endpoint


# --- running it ---------------------------------------------------------------------------


def serve(
    run_dir: str | Path | Sequence[str | Path],
    *,
    workers: int = 1,
    settings: ServeSettings | None = None,
    api_key_file: str | Path | None = None,
    **options: Any,
) -> None:
    """Serve a run until interrupted. `options` are ServeSettings fields (host, port,
    api_key, max_batch_size, max_wait_ms, micro_batching, ...) and InferenceConfig ones
    (backend, long_text, stride, review_threshold, ...), or give a whole `settings`;
    `api_key_file` holds the key on its first line. Several workers each load their own
    model copy. Several run directories are served as one ensemble."""
    import uvicorn

    settings = settings or ServeSettings.from_options(**options)
    if api_key_file is not None:
        if options.get("api_key") is not None:
            raise SentituneError("give the API key once: --api-key or --api-key-file")
        settings = replace(settings, api_key=read_api_key_file(api_key_file))
    if workers < 1:
        raise SentituneError("--workers must be at least 1")
    if workers == 1:
        app = create_app(Classifier.from_pretrained(run_dir, settings.inference), settings)
        uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_options(settings))
        return
    # Fail here, once, rather than in every worker uvicorn would keep restarting.
    Classifier.from_pretrained(run_dir, settings.inference, device="cpu")
    os.environ[_WORKER_CONFIG_ENV] = json.dumps(
        {
            "run_dir": ([str(run_dir)] if isinstance(run_dir, str | Path)
                        else [str(d) for d in run_dir]),
            "workers": workers,
            "settings": asdict(settings),
        }
    )
    uvicorn.run(
        "sentitune.server.app:worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        **uvicorn_options(settings),
    )


def worker_app() -> FastAPI:
    """App factory for one of `serve(workers=N)`'s processes."""
    config = json.loads(os.environ[_WORKER_CONFIG_ENV])
    saved = config["settings"]
    settings = ServeSettings(**{**saved, "inference": InferenceConfig(**saved["inference"])})
    if not settings.inference.backend.startswith("onnx"):
        import torch

        # N processes each using every core would fight over them; share the cores out.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config["workers"]))
    return create_app(Classifier.from_pretrained(config["run_dir"], settings.inference),
                      settings)


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread; yields its base URL.

    For tests and notebooks; the connection limits are those of the app's settings. Port
    0 picks a free port; the socket is bound here first, so the URL is known before the
    server starts and no other process can take it.
    """
    import socket
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           **uvicorn_options(app.state.settings)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SentituneError("the server did not start; see the log above")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
