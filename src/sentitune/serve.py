"""HTTP serving: a FastAPI app around one loaded `Classifier`, plus a small web page.

    POST /predict        {"text": "..."}          -> one prediction
    POST /predict/batch  {"texts": ["...", ...]}  -> {"predictions": [...]}, input order
    GET  /health         liveness (always open)     GET /ready    model warmed up
    GET  /info           model + serving settings   GET /metrics  Prometheus text format
    GET  /               the web page               GET /docs     OpenAPI UI

The model is called from one worker thread only (`Classifier.predict` wants its calls
serialised), so the event loop never blocks on it. With micro-batching on, concurrent
requests are grouped into one `predict` call; see `MicroBatcher` for when a batch closes.

Bad input is always a 4xx with `{"detail": ...}`, never a 5xx:
    400  body is not JSON (or not UTF-8)
    401  API key missing or wrong (when one is set)
    413  body over `max_body_bytes`, checked before parsing
    422  wrong shape or types; a text empty, only whitespace, not valid Unicode, or over
         `max_text_chars`; no texts, or more than `max_texts_per_request`. Per-field limits
         are 422 rather than 413 so the answer can point at the offending field (`loc`).
Texts longer than the model's `max_length` tokens are truncated, not refused; the
prediction says `"truncated": true`.
"""

import asyncio
import hmac
import json
import os
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from sentitune.errors import SentituneError

if TYPE_CHECKING:
    from sentitune.predict import Classifier

API_KEY_ENV = "SENTITUNE_API_KEY"
# Carries the run directory and settings to `uvicorn --workers` processes, which import
# the app by name and so cannot be handed Python objects.
_WORKER_CONFIG_ENV = "SENTITUNE_SERVE_WORKER_CONFIG"
_ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
# Same-origin only: the page loads nothing from elsewhere and runs no inline script.
_PAGE_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


def _api_key_from_env() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens, batches and limits requests; the model is not part of it."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 32  # texts per `predict` call, also its internal batch size
    max_wait_ms: float = 5.0  # longest a batch is held open for concurrent requests
    max_texts_per_request: int = 256
    max_text_chars: int = 100_000
    max_body_bytes: int = 2 * 1024 * 1024
    api_key: str | None = field(default_factory=_api_key_from_env, repr=False)
    micro_batching: bool = True
    review_threshold: float | None = None  # None: the run's own threshold

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_texts_per_request", "max_text_chars", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise SentituneError(f"serve setting {name} must be at least 1")
        if self.max_wait_ms < 0:
            raise SentituneError("serve setting max_wait_ms must not be negative")
        if self.review_threshold is not None and not 0 <= self.review_threshold <= 1:
            raise SentituneError("review threshold must be between 0 and 1")
        if not 0 <= self.port <= 65535:
            raise SentituneError(f"port {self.port} is not a TCP port (0-65535)")


# --- metrics ------------------------------------------------------------------------------

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class _Histogram:
    buckets: Sequence[float]
    counts: list[int] = field(init=False)  # per bucket, not cumulative; +Inf last
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.buckets) if value <= bound), -1)
        self.counts[index] += 1
        self.total += value

    def exposition(self, name: str, labels: str = "") -> Iterator[str]:
        sep = "," if labels else ""
        cumulative = 0
        for bound, count in zip([*self.buckets, "+Inf"], self.counts, strict=True):
            cumulative += count
            yield f'{name}_bucket{{{labels}{sep}le="{bound}"}} {cumulative}'
        braces = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{braces} {self.total}"
        yield f"{name}_count{braces} {cumulative}"


class ServeMetrics:
    """Counters for `/metrics`, written by hand in Prometheus' text format (no dependency).

    Only touched from the event loop thread, so no locks. Per process: with several
    workers each keeps its own.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = {}
        self.batch_size = _Histogram(_BATCH_BUCKETS)
        self.predictions = 0
        self.needs_review = 0

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[endpoint, status] += 1
        self.latency.setdefault(endpoint, _Histogram(_LATENCY_BUCKETS)).observe(seconds)

    def observe_predictions(self, predictions: Iterable[dict[str, Any]]) -> None:
        for prediction in predictions:
            self.predictions += 1
            self.needs_review += bool(prediction["needs_review"])

    def exposition(self) -> str:
        # Endpoint labels come from the app's own route table (or "other"), so they never
        # need escaping.
        lines = [
            "# HELP sentitune_requests_total HTTP requests answered, by endpoint and status.",
            "# TYPE sentitune_requests_total counter",
            *(
                f'sentitune_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}'
                for (endpoint, status), count in sorted(self.requests.items())
            ),
            "# HELP sentitune_request_duration_seconds Time to answer an HTTP request.",
            "# TYPE sentitune_request_duration_seconds histogram",
        ]
        for endpoint, histogram in sorted(self.latency.items()):
            lines += histogram.exposition(
                "sentitune_request_duration_seconds", f'endpoint="{endpoint}"'
            )
        review_share = self.needs_review / self.predictions if self.predictions else 0.0
        lines += [
            "# HELP sentitune_batch_size Texts per call of the model.",
            "# TYPE sentitune_batch_size histogram",
            *self.batch_size.exposition("sentitune_batch_size"),
            "# HELP sentitune_predictions_total Texts classified.",
            "# TYPE sentitune_predictions_total counter",
            f"sentitune_predictions_total {self.predictions}",
            "# HELP sentitune_needs_review_total Predictions flagged for human review.",
            "# TYPE sentitune_needs_review_total counter",
            f"sentitune_needs_review_total {self.needs_review}",
            "# HELP sentitune_review_share Share of predictions flagged for review so far.",
            "# TYPE sentitune_review_share gauge",
            f"sentitune_review_share {review_share}",
        ]
        return "\n".join(lines) + "\n"


# --- calling the model --------------------------------------------------------------------

Predictions = list[dict[str, Any]]


class ModelWorker:
    """Runs `classifier.predict` in one dedicated thread, so calls never overlap."""

    def __init__(
        self, classifier: "Classifier", settings: ServeSettings, metrics: ServeMetrics
    ) -> None:
        self._predict = partial(
            classifier.predict,
            batch_size=settings.max_batch_size,
            review_threshold=settings.review_threshold,
        )
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentitune-model")

    async def predict(self, texts: list[str]) -> Predictions:
        loop = asyncio.get_running_loop()
        predictions = await loop.run_in_executor(self._executor, self._predict, texts)
        self._metrics.batch_size.observe(len(texts))
        return predictions

    async def warm_up(self) -> None:
        """One throwaway call: the first forward pass is slow, and no user should pay it."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._predict, ["warm up"])

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[Predictions]
    arrived: float  # loop.time()


class MicroBatcher:
    """Groups concurrent requests into shared model calls.

    A batch starts with the oldest waiting request and closes when it holds
    `max_batch_size` texts or when that request has waited `max_wait_ms`. A request that
    finds nobody else waiting goes at once: low load pays no batching delay. Under load
    batches form by themselves, because requests queue up while the model is busy with
    the previous batch; the wait only matters for a burst that reaches an idle model.
    """

    def __init__(self, worker: ModelWorker, max_batch_size: int, max_wait_ms: float) -> None:
        self._worker = worker
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._pending: deque[_Pending] = deque()
        self._queued_texts = 0
        # An Event, not an asyncio.Queue: timing out a wait on it can never lose a request.
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve_forever(), name="sentitune-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        for pending in self._pending:
            pending.future.cancel()

    async def predict(self, texts: list[str]) -> Predictions:
        loop = asyncio.get_running_loop()
        pending = _Pending(texts, loop.create_future(), loop.time())
        self._pending.append(pending)
        self._queued_texts += len(texts)
        self._arrived.set()
        return await pending.future

    async def _serve_forever(self) -> None:
        while True:
            await self._run(await self._next_batch())

    async def _next_batch(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        # Let requests already read off the sockets in this loop turn join the batch.
        await asyncio.sleep(0)
        if len(self._pending) > 1:
            deadline = self._pending[0].arrived + self._max_wait
            while (
                self._queued_texts < self._max_batch_size
                and (remaining := deadline - loop.time()) > 0
            ):
                self._arrived.clear()
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
        batch = [self._pending.popleft()]
        texts = len(batch[0].texts)
        while self._pending and texts + len(self._pending[0].texts) <= self._max_batch_size:
            batch.append(self._pending.popleft())
            texts += len(batch[-1].texts)
        self._queued_texts -= texts
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        texts = [text for pending in batch for text in pending.texts]
        try:
            predictions = await self._worker.predict(texts)
        except asyncio.CancelledError:
            for pending in batch:
                pending.future.cancel()
            raise
        except Exception as error:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            # One request must not fail its neighbours: retry each on its own.
            for pending in batch:
                await self._run([pending])
            return
        start = 0
        for pending in batch:
            end = start + len(pending.texts)
            # Done already means cancelled: its client went away while it waited.
            if not pending.future.done():
                pending.future.set_result(predictions[start:end])
            start = end


# --- request and response models ----------------------------------------------------------


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank_text", "text is empty or only whitespace")
    return text


class SingleLabelPrediction(BaseModel):
    text: str
    label: str
    score: float = Field(description="probability of `label`")
    probabilities: dict[str, float]
    needs_review: bool = Field(description="top probability below the review threshold")
    truncated: bool = Field(description="the text was cut to the model's max_length tokens")


class MultiLabelPrediction(BaseModel):
    text: str
    labels: list[str] = Field(description="every label over its threshold; may be empty")
    probabilities: dict[str, float]
    needs_review: bool
    truncated: bool


Prediction = SingleLabelPrediction | MultiLabelPrediction


class BatchResponse(BaseModel):
    predictions: list[Prediction] = Field(description="one per input text, in input order")


class ErrorResponse(BaseModel):
    detail: Any = Field(description="what was wrong: a message, or a list of field errors")


class ServingInfo(BaseModel):
    micro_batching: bool
    max_batch_size: int
    max_wait_ms: float
    max_texts_per_request: int
    max_text_chars: int
    max_body_bytes: int
    review_threshold: float = Field(description="the threshold in use (setting or run's)")
    api_key_required: bool


class InfoResponse(BaseModel):
    # Whatever else `Classifier.info()` reports passes through unchanged.
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str | None
    labels: list[str]
    task: str
    method: str
    metrics: dict[str, Any] = Field(description="validation metrics of the run")
    review_threshold: float = Field(description="the run's own threshold")
    max_length: int
    backend: str
    serving: ServingInfo


def _request_models(settings: ServeSettings) -> tuple[type[BaseModel], type[BaseModel]]:
    """Request bodies, built per app because their limits come from the settings."""
    Text = Annotated[
        str,
        StringConstraints(min_length=1, max_length=settings.max_text_chars),
        AfterValidator(_not_blank),
    ]

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: Text

    class BatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[Text] = Field(min_length=1, max_length=settings.max_texts_per_request)

    return PredictRequest, BatchRequest


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
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


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
    return resources.files("sentitune").joinpath("assets", name).read_text(encoding="utf-8")


def _api_key_check(expected: str) -> Callable[..., Awaitable[None]]:
    expected_bytes = expected.encode()

    async def check(
        header_key: str | None = Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
        bearer: HTTPAuthorizationCredentials | None = Security(HTTPBearer(auto_error=False)),
    ) -> None:
        given = header_key or (bearer.credentials if bearer else None)
        # compare_digest on bytes: constant time, and no TypeError for non-ASCII keys.
        if given is None or not hmac.compare_digest(given.encode(), expected_bytes):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API key: send it as X-API-Key or Authorization: Bearer",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def create_app(classifier: "Classifier", settings: ServeSettings | None = None) -> FastAPI:
    """The app serving an already loaded classifier; the model is never reloaded."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    worker = ModelWorker(classifier, settings, metrics)
    batcher = (
        MicroBatcher(worker, settings.max_batch_size, settings.max_wait_ms)
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
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    PredictRequest, BatchRequest = _request_models(settings)
    protected = [Depends(_api_key_check(settings.api_key))] if settings.api_key else []
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (400, 401, 413, 422)
    }
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

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": ErrorResponse}})
    async def ready() -> dict[str, str]:
        """Readiness: the model is loaded and has answered its warm-up call."""
        if not state["ready"]:
            raise HTTPException(status_code=503, detail="model not ready")
        return {"status": "ready"}

    details = classifier.info()
    serving = {k: v for k, v in asdict(settings).items() if k not in ("host", "port", "api_key")}
    if settings.review_threshold is None:
        serving["review_threshold"] = details["review_threshold"]
    serving["api_key_required"] = settings.api_key is not None

    @app.get("/info", response_model=InfoResponse, dependencies=protected, responses=errors)
    async def info() -> dict[str, Any]:
        """The model (name, labels, task, metrics) and the serving settings that matter."""
        return {**details, "serving": serving}

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=protected, responses=errors)
    async def prometheus_metrics() -> Response:
        """Prometheus text format: requests, latency, batch sizes, review share."""
        return PlainTextResponse(
            metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_CSP})

    for name, media_type in _ASSETS.items():
        app.add_api_route(
            f"/assets/{name}",
            _asset_endpoint(_asset(name), media_type),
            methods=["GET"],
            include_in_schema=False,
        )

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so outermost: it also sees the 413s the body limit sends.
    app.add_middleware(
        MetricsMiddleware,
        metrics=metrics,
        endpoints=frozenset(route.path for route in app.routes),
    )
    return app


def _asset_endpoint(content: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def endpoint() -> Response:
        return Response(content, media_type=media_type)

    return endpoint


# --- running it ---------------------------------------------------------------------------


def run_server(
    run_dir: str | Path,
    settings: ServeSettings | None = None,
    backend: str = "torch",
    workers: int = 1,
) -> None:
    """Serve a run until interrupted. Several workers each load their own model copy."""
    import uvicorn

    from sentitune.predict import Classifier
    from sentitune.rundir import check_run_dir

    settings = settings or ServeSettings()
    if workers < 1:
        raise SentituneError("workers must be at least 1")
    if workers == 1:
        app = create_app(Classifier.from_pretrained(run_dir, backend=backend), settings)
        uvicorn.run(app, host=settings.host, port=settings.port)
        return
    # Fail here, once, rather than in every worker uvicorn would keep restarting.
    check_run_dir(Path(run_dir))
    os.environ[_WORKER_CONFIG_ENV] = json.dumps(
        {
            "run_dir": str(run_dir),
            "backend": backend,
            "workers": workers,
            "settings": asdict(settings),
        }
    )
    uvicorn.run(
        "sentitune.serve:worker_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
    )


def worker_app() -> FastAPI:
    """App factory for one of `run_server(workers=N)`'s processes."""
    import torch

    from sentitune.predict import Classifier

    config = json.loads(os.environ[_WORKER_CONFIG_ENV])
    # N processes each using every core would fight over them; share the cores out.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config["workers"]))
    classifier = Classifier.from_pretrained(config["run_dir"], backend=config["backend"])
    return create_app(classifier, ServeSettings(**config["settings"]))


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread; yields its base URL.

    For tests and notebooks. Port 0 picks a free port; the socket is bound here first,
    so the URL is known before the server starts and no other process can take it.
    """
    import socket
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
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
