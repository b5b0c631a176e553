"""What is checked before a request body is read: the API key (401) and the media type (415).

Route dependencies run only after FastAPI has parsed the body, so without this gate a
client without the key would learn from a 400 or 422 that its JSON was wrong before
hearing that it may not ask at all; and a body sent as, say, text/plain would be parsed
as JSON anyway.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import Match

from sentitune.server.oip import PREFIX as OIP_PREFIX

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
KEY_HEADER = "X-API-Key"


def key_matches(given: str | None, expected: str) -> bool:
    # compare_digest on bytes: constant time, and no TypeError for non-ASCII keys.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def given_key(headers: dict[bytes, bytes]) -> str | None:
    """The key from X-API-Key, else from `Authorization: Bearer KEY`."""
    if (key := headers.get(KEY_HEADER.lower().encode())) is not None:
        return key.decode("latin-1")
    scheme, _, credentials = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return (credentials or None) if scheme.lower() == "bearer" else None


def error_body(path: str, message: str) -> dict[str, str]:
    """`{"detail": ...}`, or the Open Inference Protocol's `{"error": ...}` on its routes."""
    return {"error" if path.startswith(OIP_PREFIX + "/") else "detail": message}


def _media_type(content_type: bytes) -> str:
    return content_type.decode("latin-1").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def body_types(route: APIRoute) -> tuple[str, ...] | None:
    """The media types a route's body may have besides JSON (those its OpenAPI request
    body lists, e.g. the binary tensor extension's); None for a route without a body."""
    declared = (route.openapi_extra or {}).get("requestBody", {}).get("content")
    if declared:
        return tuple(media for media in declared if not _is_json(media))
    return () if route.body_field is not None else None


class RequestGate:
    """401 for a protected route without the right key, then 415 for a body that is not
    JSON (or another type its route lists), both before the body is read. A body without a
    content type is read as JSON on every route (`create_app` turns FastAPI's strict
    content type off): that is what Triton's client sends. `protected` says which routes
    need the key."""

    def __init__(self, app: ASGIApp, api_key: str | None,
                 protected: Callable[[APIRoute], bool]) -> None:
        self.app = app
        self.api_key = api_key
        self.protected = protected

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        route = self._route(scope) if scope["type"] == "http" else None
        if route is not None:
            headers = dict(scope["headers"])
            refusal = None
            if self.api_key is not None and self.protected(route) and not key_matches(
                    given_key(headers), self.api_key):
                refusal = JSONResponse(
                    error_body(scope["path"], "missing or wrong API key: send it as X-API-Key "
                                              "or Authorization: Bearer"),
                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            elif (others := body_types(route)) is not None and b"content-type" in headers and (
                    media_type := _media_type(headers[b"content-type"])) not in others and (
                    not _is_json(media_type)):
                shown = headers[b"content-type"].decode("latin-1")[:100]
                refusal = JSONResponse(
                    error_body(scope["path"], f"the body must be "
                                              f"{' or '.join(('application/json', *others))}, "
                                              f"not '{shown}'"),
                    status_code=415)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _route(scope: dict) -> APIRoute | None:
        for route in scope["app"].routes:
            if isinstance(route, APIRoute) and route.matches(scope)[0] is Match.FULL:
                return route
        return None
