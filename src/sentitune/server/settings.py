"""How the server listens, batches and limits requests, and how its model answers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sentitune.config import InferenceConfig, _help
from sentitune.errors import SentituneError

API_KEY_ENV = "SENTITUNE_API_KEY"


def _api_key_from_env() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


def read_api_key_file(path: str | Path) -> str:
    """The API key on the first line of a file (`serve --api-key-file`): unlike a key given
    as `--api-key`, it does not show in `ps` or the shell's history."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
        raise SentituneError(f"cannot read the API key file {path}: {reason}; give a "
                             "readable file with the key on its first line") from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise SentituneError(f"the API key file {path} has no key on its first line; write "
                             "the key there")
    return key


@dataclass(frozen=True)
class ServeSettings:
    """How the server listens, batches and limits requests; `inference` is how the model
    answers (its `batch_size` is unused here: `max_batch_size` is the server's)."""

    host: str = _help("Address to bind; 127.0.0.1 answers this machine only.", "127.0.0.1")
    port: int = _help("TCP port.", 8000)
    max_batch_size: int = _help("Most texts grouped into one forward pass.", 32)
    max_wait_ms: float = _help("Longest a micro-batch waits for more requests.", 5.0)
    # TEI's max batch tokens.
    max_batch_tokens: int = _help(
        "Most padded tokens (rows x longest) in one forward pass, bounding its memory "
        "whatever the texts' lengths.", 8192)
    max_queue_ms: float = _help(
        "Longest a request waits for the model before a 503 with Retry-After.", 10_000.0)
    max_texts_per_request: int = _help("Most texts in one request.", 256)
    max_text_chars: int = _help("Longest text accepted, in characters.", 100_000)
    max_body_bytes: int = _help("Largest request body accepted, in bytes.", 2 * 1024 * 1024)
    api_key: str | None = field(default_factory=_api_key_from_env, repr=False, metadata={
        "help": f"Require this key (X-API-Key or Bearer); none: ${API_KEY_ENV} if set. Any "
                "user of this machine sees a key given here in `ps`: prefer the variable or "
                "--api-key-file.",
        "choices": None, "flag": None})
    micro_batching: bool = _help("Group concurrent requests into one forward pass.", True,
                                 flag="--batching")
    # Connection limits (`server/limits.py`).
    max_header_bytes: int = _help(
        "Most bytes of a request's line and headers; more is refused with 431 before it is "
        "all read.", 64 * 1024)
    keep_alive_s: float = _help(
        "Seconds a connection may sit idle, before its first request or between requests, "
        "before it is closed.", 5.0)
    header_timeout_s: float = _help(
        "Seconds a client has to send a request's line and headers from its first byte; a "
        "slower one gets 408 and is disconnected.", 10.0)
    request_timeout_s: float = _help(
        "Seconds a client has to send a whole request, headers and body, from its first "
        "byte; a slower one gets 408 and is disconnected.", 60.0)
    # A label store that receives every text flagged for review and backs the labelling
    # page at /label. Its URL may hold a password: not shown.
    review_store: str | None = field(default=None, repr=False, metadata={
        "help": "Add every text flagged for review to this label store (file or URL) and "
                "serve the labelling page at /label; none: neither.",
        "choices": None, "flag": None})
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    @classmethod
    def from_options(cls, **options: Any) -> ServeSettings:
        """Settings from flat options: ServeSettings fields and InferenceConfig fields
        (review_threshold, long_text, ...) alike; None means the default."""
        own = {f.name for f in fields(cls)}
        inference = options.pop("inference", None) or InferenceConfig()
        return cls(**{k: v for k, v in options.items() if k in own and v is not None},
                   inference=inference.replace(
                       **{k: v for k, v in options.items() if k not in own}))

    def serving(self) -> dict[str, Any]:
        """The settings /info reports: the limits and the review settings, flat."""
        hidden = ("host", "port", "api_key", "inference")
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden},
                "review_threshold": self.inference.review_threshold,
                "review_truncated": self.inference.review_truncated}

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_texts_per_request", "max_text_chars", "max_body_bytes",
                     "max_batch_tokens", "max_header_bytes"):
            if getattr(self, name) < 1:
                raise SentituneError(f"serve setting {name} must be at least 1")
        for name in ("keep_alive_s", "header_timeout_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise SentituneError(f"serve setting {name} must be positive")
        if self.max_wait_ms < 0:
            raise SentituneError("serve setting max_wait_ms must not be negative")
        if self.max_queue_ms <= 0:
            raise SentituneError("serve setting max_queue_ms must be positive")
        if not 0 <= self.port <= 65535:
            raise SentituneError(f"port {self.port} is not a TCP port (0-65535)")
