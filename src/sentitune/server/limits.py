"""Connection limits uvicorn leaves open: the size of a request's headers, and how long a
client may take to send a request or sit idle.

uvicorn's httptools protocol takes headers of any size (llhttp has no limit, and a 200 MB
header held the server at 1 GB), cancels its idle timer at a client's first byte (a byte a
second kept a socket open for good) and arms none before a connection's first request.
Here, as Node's http server and hyper do:

- a request line and headers over `max_header_bytes`: 431, counted as the bytes arrive,
  before they are parsed, and the connection closed;
- a connection idle for `keep_alive_s`, before its first request too: closed;
- a request whose headers are not all in within `header_timeout_s` of its first byte, or
  that is not in whole within `request_timeout_s`: 408, and the connection closed (nginx's
  client_header_timeout and client_body_timeout, Apache's mod_reqtimeout).

Errors have the app's shape (`{"detail": ...}`, `{"error": ...}` under /v2).
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from sentitune.server.gate import error_body
from sentitune.server.settings import ServeSettings

_HEADER_ENDS = (b"\r\n\r\n", b"\n\n")


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """What `uvicorn.run` and `uvicorn.Config` take to enforce the settings' limits."""
    return {
        # A partial of a module-level class: it pickles, so `--workers` processes get it.
        "http": functools.partial(GuardedHttpToolsProtocol,
                                  max_header_bytes=settings.max_header_bytes,
                                  header_timeout_s=settings.header_timeout_s,
                                  request_timeout_s=settings.request_timeout_s),
        "timeout_keep_alive": settings.keep_alive_s,
    }


def _target(request_start: bytes) -> bytes:
    """The request target of a request line, as far as it has arrived."""
    words = request_start.lstrip(b"\r\n").split(b"\n", 1)[0].split(b" ")
    return words[1] if len(words) > 1 else b""


def _header_end(data: bytes) -> int:
    """The index just past the blank line that ends the headers in `data`; -1 if none."""
    ends = [data.find(end) + len(end) for end in _HEADER_ENDS if end in data]
    return min(ends, default=-1)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit and a request timeout."""

    def __init__(self, *args: Any, max_header_bytes: int, header_timeout_s: float,
                 request_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = min(header_timeout_s, request_timeout_s)
        self.request_timeout_s = request_timeout_s
        self.request_started = 0.0  # the loop's time at the request's first byte
        self.header_bytes: int | None = 0  # of the request being read; None once in its body
        self.header_tail = b""  # the last bytes seen, to find a blank line split in two
        self.request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_request_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.header_bytes is not None:
            # Before the parser has seen it, the request line is at the start of this data.
            target = _target(data) if self.header_bytes == 0 else None
            seen = self.header_tail + data
            end = _header_end(seen)
            self.header_bytes += len(data) if end < 0 else max(0, end - len(self.header_tail))
            self.header_tail = seen[-3:]
            if self.header_bytes > self.max_header_bytes:
                self._refuse(431, f"request headers over the {self.max_header_bytes} byte "
                                  "limit", target)
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._stop_request_timer()
        self.request_started = self.loop.time()
        self.request_timer = self.loop.call_later(
            self.header_timeout_s, self._too_slow,
            f"request headers not received within {self.header_timeout_s:g} s")

    def on_headers_complete(self) -> None:
        self.header_bytes = None
        self._stop_request_timer()
        self.request_timer = self.loop.call_at(
            self.request_started + self.request_timeout_s, self._too_slow,
            f"request not received within {self.request_timeout_s:g} s")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_request_timer()
        self.header_bytes, self.header_tail = 0, b""
        super().on_message_complete()

    def _stop_request_timer(self) -> None:
        if self.request_timer is not None:
            self.request_timer.cancel()
            self.request_timer = None

    def _too_slow(self, message: str) -> None:
        self.request_timer = None
        answering = self.cycle is not None and self.cycle.response_started and (
            not self.cycle.response_complete)
        if answering:  # the app has begun its answer: only the connection can go
            self.transport.close()
        else:
            self._refuse(408, message)

    def _refuse(self, status: int, message: str, target: bytes | None = None) -> None:
        """Answer `status` with the app's error shape, then close the connection."""
        if self.transport.is_closing():
            return
        target = getattr(self, "url", b"") if target is None else target
        path = target.split(b"?")[0].decode("latin-1")
        body = json.dumps(error_body(path, message)).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
