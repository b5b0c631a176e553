"""/docs (Swagger UI), /redoc and /openapi.json: served from this machine, behind the key.

FastAPI's own pages fetch Swagger UI and ReDoc from a CDN, so offline they are blank; these
take the same assets from the `fastapi-offline` package. The schema names the labels, the
task and the model, so with an API key set the schema and both pages need the key. A
browser cannot send X-API-Key when it opens a page, so these three also take HTTP Basic
credentials (any user name, the key as password): the browser asks for them once and sends
them again with the page's own request for the schema. The assets themselves (the public
Swagger UI and ReDoc bundles) stay open.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from pathlib import Path

import fastapi_offline
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from sentitune.server.gate import given_key, key_matches

ASSETS_URL = "/docs/assets"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"
_MEDIA_TYPES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
                "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}


def _basic_password(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def _key_check(expected: str) -> Callable[[Request], Awaitable[None]]:
    async def check(request: Request) -> None:
        headers = {name.encode("latin-1"): value.encode("latin-1")
                   for name, value in request.headers.items()}
        if not (key_matches(given_key(headers), expected)
                or key_matches(_basic_password(request), expected)):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API key: send it as X-API-Key, Authorization: "
                       "Bearer, or as the password of HTTP Basic (any user name)",
                # Basic alone: a browser that is offered Basic among others may not ask.
                headers={"WWW-Authenticate": 'Basic realm="sentitune API key"'})

    return check


def mount_docs(app: FastAPI, api_key: str | None) -> None:
    """Add /openapi.json, /docs, /redoc and their assets; create the app with
    `openapi_url=None, docs_url=None, redoc_url=None` so FastAPI adds none of its own."""
    guarded = [Depends(_key_check(api_key))] if api_key else []

    def page(path: str) -> Callable:
        return app.get(path, include_in_schema=False, dependencies=guarded)

    @page("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @page("/docs")
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png")

    @page("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)

    for name, media_type in _MEDIA_TYPES.items():
        app.add_api_route(f"{ASSETS_URL}/{name}", _asset(name, media_type), methods=["GET"],
                          include_in_schema=False)


def _asset(name: str, media_type: str) -> Callable[[], Awaitable[FileResponse]]:
    async def endpoint() -> FileResponse:
        return FileResponse(_ASSETS / name, media_type=media_type)

    return endpoint
