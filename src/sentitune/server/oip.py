"""The Open Inference Protocol (KServe v2, as Triton speaks it) beside sentitune's own API.

    GET  /v2                                server metadata
    GET  /v2/health/live, /v2/health/ready  liveness, readiness (503 until warmed up)
    GET  /v2/models                         the served model: {"models": [index entry]}
    POST /v2/repository/index               Triton's repository index: [{name, version,
                                            state, reason}] (body {"ready": true} optional)
    GET  /v2/models/NAME                    model metadata: input, outputs, labels
    GET  /v2/models/NAME/ready              model readiness
    POST /v2/models/NAME/infer              classify the texts of one BYTES input

NAME is the run directory's own name (`model_names`), also in GET /info as `oip_model`;
each model route also answers under /v2/models/NAME/versions/1 (a run is one version). An
unknown NAME gets the protocol's 404, naming the model served and where it is listed (with
an API key set, only a caller with the key gets that far: 401 first); a known route asked
with another method gets 405 and an Allow header.
The input is one BYTES tensor named `text` (any shape; its elements are the texts), as
JSON data or in the binary tensor extension (what `tritonclient` sends by default).
Outputs, in input order, as JSON data or binary, as the request asks:

    label         BYTES [n]        the chosen class (multi-label runs: `labels`, joined by |)
    score         FP32  [n]        the confidence review is judged on (sentitune.schema)
    probabilities FP32  [n, k]     per class, in the order of the metadata's `labels`
    needs_review  BOOL  [n]
    truncated     BOOL  [n]

A request may name the outputs it wants. Texts go through the same micro-batcher, limits,
API key and Prometheus counters as `/predict`. Errors are `{"error": "..."}` with a 4xx:
400 malformed request, 401 API key, 404 unknown model, 405 wrong method, 413 body too large,
415 a content type other than JSON (or, for the binary extension, application/octet-stream;
none at all is read as JSON, as tritonclient sends it), 422 a text empty, too long, or too
many texts. The OpenAPI schema states all of it (`oip_schema`).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.params import Depends
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.routing import Match

from sentitune import __version__
from sentitune.inference.classifier import Classifier
from sentitune.server.metrics import ServeMetrics
from sentitune.server.oip_schema import (
    HEADER_LENGTH,
    errors,
    infer_openapi,
    infer_responses,
    repository_index_openapi,
)
from sentitune.server.settings import ServeSettings

PREFIX = "/v2"
INPUT_NAME = "text"
VERSION = "1"  # a run directory is one model version


class OipError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


class _ErrorShapeRoute(APIRoute):
    """Every failure of these routes, the API key's 401 included, as `{"error": ...}`."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except OipError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status,
                                    headers=exc.headers)
            except HTTPException as exc:
                return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                                    headers=exc.headers)

        return route


class _Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = {}
    data: list[Any] | None = None


class _RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] = {}


class _InferRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] = {}
    inputs: list[_Tensor]
    outputs: list[_RequestedOutput] | None = None


def _flat(data: list[Any]) -> list[Any]:
    """JSON tensor data may be nested row-major lists; the protocol's order is flat."""
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item) if isinstance(item, list) else [item])
    return out


def _bytes_elements(raw: bytes) -> list[bytes]:
    """A BYTES tensor in the binary extension: each element is a 4-byte little-endian
    length, then that many bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise OipError(400, "binary BYTES data is cut short; send each element as a "
                                "4-byte little-endian length and its bytes")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise OipError(400, "binary BYTES data is cut short; send each element as a "
                                "4-byte little-endian length and its bytes")
        elements.append(raw[offset:offset + size])
        offset += size
    return elements


def _parse(body: bytes, header_length: str | None) -> tuple[_InferRequest, bytes]:
    """The JSON part of an infer request and the binary data after it (if any)."""
    if header_length is not None:
        # isdigit alone also passes "²", which int() refuses: ASCII digits only.
        if not (header_length.isascii() and header_length.isdigit()) or int(
                header_length) > len(body):
            raise OipError(400, f"{HEADER_LENGTH} must be the length of the JSON part of "
                                f"the body, got '{header_length}'")
        body, binary = body[:int(header_length)], body[int(header_length):]
    else:
        binary = b""
    try:
        return _InferRequest.model_validate_json(body), binary
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "body"
        raise OipError(400, f"not an inference request: {where}: {first['msg']}; send "
                            '{"inputs": [{"name": "text", "shape": [N], "datatype": '
                            '"BYTES", "data": [...]}]}') from None


def _texts(request: _InferRequest, binary: bytes, settings: ServeSettings) -> list[str]:
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        names = ", ".join(tensor.name for tensor in request.inputs) or "none"
        raise OipError(400, f"expected one input named '{INPUT_NAME}', got {names}")
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise OipError(400, f"input '{INPUT_NAME}' must be BYTES, not {tensor.datatype}")
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != len(binary):
            raise OipError(400, f"binary_data_size {size} does not match the {len(binary)} "
                                "bytes after the JSON header")
        try:
            texts = [element.decode("utf-8") for element in _bytes_elements(binary)]
        except UnicodeDecodeError:
            raise OipError(400, "a text is not valid UTF-8; send UTF-8 text") from None
    elif tensor.data is not None:
        texts = _flat(tensor.data)
    else:
        raise OipError(400, f"input '{INPUT_NAME}' has neither data nor binary_data_size")
    if not all(isinstance(text, str) for text in texts):
        raise OipError(400, f"input '{INPUT_NAME}' must hold strings")
    count = 1
    for dim in tensor.shape:
        count *= dim
    if count != len(texts) or any(dim < 0 for dim in tensor.shape):
        raise OipError(400, f"shape {tensor.shape} does not hold the {len(texts)} texts sent")
    if not texts:
        raise OipError(422, "no texts; send at least one")
    if len(texts) > settings.max_texts_per_request:
        raise OipError(422, f"{len(texts)} texts in one request; at most "
                            f"{settings.max_texts_per_request}")
    for index, text in enumerate(texts):
        if not text.strip():
            raise OipError(422, f"text {index} is empty or only whitespace")
        if len(text) > settings.max_text_chars:
            raise OipError(422, f"text {index} has {len(text)} characters; at most "
                                f"{settings.max_text_chars}")
    return texts


def _switch(parameters: dict[str, Any], name: str, default: bool) -> bool:
    """A true/false request parameter (`binary_data_output`, `binary_data`)."""
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise OipError(400, f"parameter {name} must be true or false, not {value!r}"[:200])
    return value


def _outputs(classifier: Classifier) -> list[dict[str, Any]]:
    """Output tensors' metadata; -1 is the number of texts."""
    label = "labels" if classifier.task == "multilabel" else "label"
    return [
        {"name": label, "datatype": "BYTES", "shape": [-1]},
        {"name": "score", "datatype": "FP32", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(classifier.labels)]},
        {"name": "needs_review", "datatype": "BOOL", "shape": [-1]},
        {"name": "truncated", "datatype": "BOOL", "shape": [-1]},
    ]


def _binary(data: list, datatype: str) -> bytes:
    """Tensor data in the binary extension: BYTES length-prefixed, numbers little-endian."""
    if datatype == "BYTES":
        encoded = [str(value).encode("utf-8") for value in data]
        return b"".join(struct.pack("<I", len(value)) + value for value in encoded)
    return np.asarray(data, dtype="<f4" if datatype == "FP32" else np.bool_).tobytes()


def _output_data(name: str, predictions: list[dict[str, Any]], labels: list[str]) -> list:
    if name == "labels":
        return ["|".join(p["labels"]) for p in predictions]
    if name == "probabilities":
        return [p["probabilities"][label] for p in predictions for label in labels]
    return [p[name] for p in predictions]


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the routes whose path is this request's (none: an unknown path)."""
    return sorted({method for route in request.app.routes if isinstance(route, APIRoute)
                   and route.matches(request.scope)[0] is Match.PARTIAL
                   for method in route.methods})


def model_names(classifier: Classifier) -> list[str]:
    """The names the model answers under on /v2; the first is its name, the one listed.

    The run directory's own name, taken from its absolute path with `.`, `..` and a trailing
    slash worked out: `serve runs/demo`, `serve runs/demo/`, `serve runs/demo/model/..` and
    `serve .` inside runs/demo all serve `demo`. A run reached through a symbolic link answers
    under the link's name and under the name of the folder it points to. A classifier with
    a name of its own (an ensemble of runs: its members' names joined by '+') is served under
    that name."""
    if len(classifier.members) > 1:
        return [classifier.name]
    path = Path(classifier.run.path)
    names = (Path(os.path.abspath(path)).name, path.resolve().name)
    return [name for name in dict.fromkeys(names) if name] or ["model"]


def model_name(classifier: Classifier) -> str:
    """The model's name on /v2 (GET /v2/models lists it)."""
    return model_names(classifier)[0]


def mount(
    app: FastAPI,
    classifier: Classifier,
    settings: ServeSettings,
    dispatch: Callable[[list[str]], Awaitable[list[dict[str, Any]]]],
    metrics: ServeMetrics,
    protected: list[Depends],
    is_ready: Callable[[], bool],
) -> None:
    """Add the /v2 routes for `classifier` to `app`, sharing its `dispatch` (micro-batcher),
    metrics and API-key dependency."""

    def route(path: str, methods: tuple[str, ...] = ("GET",), **options: Any):
        # Added to the app itself, not through an included router, so each route keeps its
        # own path (the request counters label by it).
        def add(endpoint: Callable) -> Callable:
            app.router.add_api_route(PREFIX + path, endpoint, methods=list(methods),
                                     route_class_override=_ErrorShapeRoute,
                                     tags=["Open Inference Protocol"], **options)
            return endpoint

        return add

    names = model_names(classifier)
    name = names[0]
    outputs = _outputs(classifier)
    output_names = [output["name"] for output in outputs]
    model = f"/models/{name}"
    where = "GET /v2/models and POST /v2/repository/index list it"

    def index_entry() -> dict[str, str]:
        return {"name": name, "version": VERSION,
                "state": "READY" if is_ready() else "LOADING",
                "reason": "" if is_ready() else "warming up"}

    _mount_server_routes(route, protected, is_ready, index_entry)

    ready_errors = errors(503)
    metadata_errors = errors(401)
    infer_errors = infer_responses()
    infer_body = infer_openapi(settings, INPUT_NAME, output_names)

    @route(f"{model}/ready", responses=ready_errors)
    async def model_ready() -> JSONResponse:
        """The served model's readiness (503 before its warm-up call)."""
        return JSONResponse({"name": name, "ready": is_ready()},
                            status_code=200 if is_ready() else 503)

    @route(model, dependencies=protected, responses=metadata_errors)
    async def model_metadata() -> dict[str, Any]:
        """Input and output tensors, and the labels in the order of `probabilities`."""
        return {
            "name": name,
            "versions": [VERSION],
            "platform": f"sentitune_{classifier.backend.name}",
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": outputs,
            "parameters": {"task": classifier.task, "labels": classifier.labels},
        }

    @route(f"{model}/infer", ("POST",), dependencies=protected, responses=infer_errors,
           openapi_extra=infer_body)
    async def infer(request: Request) -> Response:
        """Classify the texts of the BYTES input `text`."""
        return await _infer(request, name, outputs, classifier.labels, settings, dispatch,
                            metrics)

    # The one version the metadata lists, addressed explicitly (as `model_version="1"`),
    # and both spellings under every other name of the model.
    for alias in names:
        for base in ([f"/models/{alias}"] if alias != name else []) + [
                f"/models/{alias}/versions/{VERSION}"]:
            route(f"{base}/ready", responses=ready_errors)(model_ready)
            route(base, dependencies=protected, responses=metadata_errors)(model_metadata)
            route(f"{base}/infer", ("POST",), dependencies=protected, responses=infer_errors,
                  openapi_extra=infer_body)(infer)

    # Any other model, version or route under it: the protocol's 404, not FastAPI's; a
    # known route asked with another method: 405. Behind the key, so that only a caller
    # who may use the model hears its name.
    @route("/models/{other}{rest:path}", ("GET", "POST"), include_in_schema=False,
           dependencies=protected)
    async def unknown_model(request: Request, other: str, rest: str) -> None:
        allowed = _allowed_methods(request)
        if allowed:
            raise OipError(405, f"{request.method} is not allowed here; use "
                                f"{', '.join(allowed)}", headers={"Allow": ", ".join(allowed)})
        if other not in names:
            raise OipError(404, f"unknown model '{other}'; this server serves '{name}' "
                                f"({where})")
        raise OipError(404, f"model '{name}' has no '{rest}'; it serves version {VERSION} "
                            "and the ready, metadata and infer routes")


def _mount_server_routes(route: Callable, protected: list[Depends],
                         is_ready: Callable[[], bool],
                         index_entry: Callable[[], dict[str, str]]) -> None:
    """The server-wide /v2 routes: metadata, health and the model repository index."""

    @route("")
    async def server_metadata() -> dict[str, Any]:
        """Server name, version and protocol extensions."""
        return {"name": "sentitune", "version": __version__,
                "extensions": ["binary_tensor_data"]}

    @route("/health/live")
    async def live() -> dict[str, bool]:
        """Liveness: the process answers."""
        return {"live": True}

    @route("/health/ready", responses=errors(503))
    async def ready() -> JSONResponse:
        """Readiness: the model has answered its warm-up call (503 before)."""
        return JSONResponse({"ready": is_ready()}, status_code=200 if is_ready() else 503)

    @route("/models", dependencies=protected, responses=errors(401))
    async def models() -> dict[str, list[dict[str, str]]]:
        """The served model (one): its name, version and state, as the repository index
        lists it."""
        return {"models": [index_entry()]}

    @route("/repository/index", ("POST",), dependencies=protected,
           responses=errors(400, 401, 413, 415), openapi_extra=repository_index_openapi())
    async def repository_index(request: Request) -> list[dict[str, str]]:
        """Triton's repository index: the served model, its version and state. A body
        `{"ready": true}` lists only ready models."""
        body = await request.body()
        try:
            # Only a body that is absent is no options: whitespace or stray control bytes
            # are not JSON (schemathesis sent b"\x0b", which strip() had called empty).
            options = json.loads(body) if body else {}
        except ValueError:
            options = None
        if not isinstance(options, dict) or not isinstance(options.get("ready", False), bool):
            raise OipError(400, 'a repository index request is empty or {"ready": true|false}')
        return [] if options.get("ready") and not is_ready() else [index_entry()]


async def _infer(request: Request, name: str, outputs: list[dict[str, Any]],
                 labels: list[str], settings: ServeSettings,
                 dispatch: Callable[[list[str]], Awaitable[list[dict[str, Any]]]],
                 metrics: ServeMetrics) -> Response:
    """The answer to an infer request: each output as JSON data, or binary when asked for."""
    output_names = [output["name"] for output in outputs]
    parsed, binary = _parse(await request.body(), request.headers.get(HEADER_LENGTH))
    # Each output as JSON data, or binary when asked for (per output, or for all).
    all_binary = _switch(parsed.parameters, "binary_data_output", False)
    wanted = ({output.name: _switch(output.parameters, "binary_data", all_binary)
               for output in parsed.outputs} if parsed.outputs
              else dict.fromkeys(output_names, all_binary))
    unknown = [output for output in wanted if output not in output_names]
    if unknown:
        raise OipError(400, f"unknown output(s) {', '.join(unknown)}; this model has "
                            f"{', '.join(output_names)}")
    texts = _texts(parsed, binary, settings)
    predictions = await dispatch(texts)
    metrics.observe_predictions(predictions)
    spec = {output["name"]: output for output in outputs}
    tensors, chunks = [], []
    for output, as_binary in wanted.items():
        tensor = {"name": output, "datatype": spec[output]["datatype"],
                  "shape": [len(texts), *spec[output]["shape"][1:]]}
        data = _output_data(output, predictions, labels)
        if as_binary:
            chunks.append(_binary(data, tensor["datatype"]))
            tensor["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            tensor["data"] = data
        tensors.append(tensor)
    answer: dict[str, Any] = {"model_name": name, "outputs": tensors}
    if parsed.id is not None:
        answer["id"] = parsed.id
    if not chunks:
        return JSONResponse(answer)
    header = json.dumps(answer).encode()
    return Response(header + b"".join(chunks), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header))})
