"""How the server listens, batches and limits requests; the model is not part of it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
    """How the server listens, batches and limits requests; the model is not part of it."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 32  # texts per `predict` call, also its internal batch size
    max_wait_ms: float = 5.0  # longest a batch is held open for concurrent requests
    # Most padded tokens (rows x longest) in one forward pass: bounds the memory of a pass
    # whatever the texts' lengths (TEI's max batch tokens).
    max_batch_tokens: int = 8192
    # Longest a request waits for the model to start on it before a 503 with Retry-After.
    max_queue_ms: float = 10_000.0
    max_texts_per_request: int = 256
    max_text_chars: int = 100_000
    max_body_bytes: int = 2 * 1024 * 1024
    api_key: str | None = field(default_factory=_api_key_from_env, repr=False)
    micro_batching: bool = True
    review_threshold: float | None = None  # None: the run's own threshold
    review_truncated: bool | None = None  # None: the run's own decision
    # Connection limits (`server/limits.py`), with help: they generate `serve`'s flags.
    max_header_bytes: int = field(default=64 * 1024, metadata={"help": (
        "Most bytes of a request's line and headers; more is refused with 431 before it is "
        "all read.")})
    keep_alive_s: float = field(default=5.0, metadata={"help": (
        "Seconds a connection may sit idle, before its first request or between requests, "
        "before it is closed.")})
    header_timeout_s: float = field(default=10.0, metadata={"help": (
        "Seconds a client has to send a request's line and headers from its first byte; a "
        "slower one gets 408 and is disconnected.")})
    request_timeout_s: float = field(default=60.0, metadata={"help": (
        "Seconds a client has to send a whole request, headers and body, from its first "
        "byte; a slower one gets 408 and is disconnected.")})

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
        if self.review_threshold is not None and not 0 <= self.review_threshold <= 1:
            raise SentituneError("review threshold must be between 0 and 1")
        if not 0 <= self.port <= 65535:
            raise SentituneError(f"port {self.port} is not a TCP port (0-65535)")
