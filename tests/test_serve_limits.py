"""The server's connection limits, against the real uvicorn server over raw sockets: header
size (431 before the headers are all read) and slow or idle clients (disconnected)."""

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from sentitune.errors import SentituneError
from sentitune.server import ServeSettings, create_app, serve_in_thread

# Short timeouts, so that a slow client is seen off within a test's patience.
QUICK = ServeSettings(api_key=None, keep_alive_s=1, header_timeout_s=1, request_timeout_s=2)
# How long a test waits for the server to hang up on a client: far above the limits.
PATIENCE_S = 30


@pytest.fixture(scope="module")
def default_url(classifier) -> Iterator[str]:
    with serve_in_thread(create_app(classifier, ServeSettings(api_key=None))) as url:
        yield url


@pytest.fixture(scope="module")
def quick_url(classifier) -> Iterator[str]:
    with serve_in_thread(create_app(classifier, QUICK)) as url:
        yield url


def connect(url: str) -> socket.socket:
    address = httpx.URL(url)
    return socket.create_connection((address.host, address.port), timeout=PATIENCE_S)


def until_closed(sock: socket.socket, stop: float = float("inf")) -> bytes | None:
    """What the server sends until it hangs up; None if it has not by `stop`."""
    reply = b""
    try:
        while True:
            sock.settimeout(min(PATIENCE_S, max(0.1, stop - time.monotonic())))
            if not (chunk := sock.recv(65536)):
                return reply
            reply += chunk
    except ConnectionResetError:
        return reply
    except TimeoutError:
        return None


def send_huge_header(sock: socket.socket, size: int) -> None:
    """A request with one header of `size` bytes, sent until the server stops taking it."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: ")
    chunk = b"a" * (1 << 20)
    try:
        for _ in range(size // len(chunk)):
            sock.sendall(chunk)
        sock.sendall(b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server hung up: what is being tested


def test_a_200_mb_header_is_refused_with_431(default_url):
    with connect(default_url) as sock:
        sender = threading.Thread(target=send_huge_header, args=(sock, 200 << 20))
        sender.start()
        reply = until_closed(sock)
        sender.join()
    assert reply is not None and reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert b"header" in reply and b"65536 byte limit" in reply
    # The server is none the worse for it.
    assert httpx.get(f"{default_url}/health").status_code == 200


def test_headers_within_the_limit_are_served(default_url):
    cookie = "c=" + "x" * 40_000  # a large cookie, well under 64 KiB of headers
    response = httpx.get(f"{default_url}/health", headers={"Cookie": cookie})
    assert response.status_code == 200


def test_the_header_limit_is_a_setting(classifier):
    settings = ServeSettings(api_key=None, max_header_bytes=2048)
    with serve_in_thread(create_app(classifier, settings)) as url:
        assert httpx.get(f"{url}/health", headers={"X-Pad": "x" * 1500}).status_code == 200
        refused = httpx.get(f"{url}/v2/health/live", headers={"X-Pad": "x" * 3000})
    assert refused.status_code == 431
    assert refused.json() == {"error": "request headers over the 2048 byte limit"}


def trickle(sock: socket.socket, data: bytes, stop: float) -> bool:
    """Send one byte at a time, a tenth of a second apart; True if the server hung up."""
    sock.settimeout(0.1)
    for byte in data:
        if time.monotonic() > stop:
            return False
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


SLOW_HEADERS = b"GET /health HTTP/1.1\r\nHost: test\r\n" + b"X-Slow: " + b"a" * 10_000
SLOW_BODY = (b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
             b"Content-Length: 10000\r\n\r\n")


def test_slow_and_idle_clients_are_disconnected(quick_url):
    stop = time.monotonic() + PATIENCE_S
    with connect(quick_url) as idle, connect(quick_url) as slow_headers, \
            connect(quick_url) as slow_body, connect(quick_url) as between_requests:
        between_requests.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert trickle(slow_headers, SLOW_HEADERS, stop), "a header trickle kept its socket"
        slow_body.sendall(SLOW_BODY)
        assert trickle(slow_body, b'{"text": "' + b"a" * 9_000, stop), \
            "a body trickle kept its socket"
        assert until_closed(idle, stop) is not None, "a socket that sent nothing stayed open"
        reply = until_closed(between_requests, stop)
        assert reply is not None, "an idle keep-alive socket stayed open"
        assert reply.startswith(b"HTTP/1.1 200 ")
    # Others are served all along.
    assert httpx.get(f"{quick_url}/health").status_code == 200


def test_a_slow_request_is_told_408(quick_url):
    stop = time.monotonic() + PATIENCE_S
    with connect(quick_url) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n")  # never finished
        reply = until_closed(sock, stop)
    assert reply is not None and reply.startswith(b"HTTP/1.1 408 "), reply
    assert b'"error"' in reply and b"headers not received within 1 s" in reply


@pytest.mark.parametrize("bad", [{"max_header_bytes": 0}, {"keep_alive_s": 0},
                                 {"header_timeout_s": 0}, {"request_timeout_s": -1}])
def test_impossible_connection_limits_are_user_errors(bad):
    with pytest.raises(SentituneError, match=next(iter(bad))):
        ServeSettings(**bad)
