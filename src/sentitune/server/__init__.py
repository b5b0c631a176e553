"""HTTP serving: a FastAPI app around one loaded `Classifier`, plus a small web page.

    settings   `ServeSettings`: address, batching, limits, API key
    metrics    Prometheus counters and histograms
    batching   the model's worker thread and the micro-batcher
    models     request and response bodies (predictions: `sentitune.schema`)
    app        `create_app` (the app factory), middleware, `serve`, `serve_in_thread`
    oip        the Open Inference Protocol (KServe v2) routes under /v2
    oip_schema what the /v2 routes publish in the OpenAPI schema
    limits     header size, idle and slow clients: uvicorn's protocol, guarded
    docs       /docs, /redoc and /openapi.json from local assets, behind the API key
"""

from typing import Any

from sentitune.server.settings import API_KEY_ENV, ServeSettings

__all__ = ["API_KEY_ENV", "ServeSettings", "create_app", "serve", "serve_in_thread"]


def __getattr__(name: str) -> Any:
    # The app (FastAPI, the model's libraries) loads when first asked for, so that the CLI
    # can build `serve`'s flags from ServeSettings without it.
    if name in ("create_app", "serve", "serve_in_thread"):
        from sentitune.server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
