"""How ``policyfit serve`` runs uvicorn: slow-client timeouts, no implicit proxy trust, metrics of all workers.

uvicorn itself bounds an idle keep-alive connection (``timeout_keep_alive``) and the number of
connections plus running requests per worker (``limit_concurrency``, 503 beyond it), but it has no
timeout for reading a request's headers: a connection that sends nothing, or a few header bytes now
and then (slowloris), is held open for ever. ``SlowClientGuard`` is uvicorn's httptools protocol with
that timeout added: from the moment a connection opens, and from the first byte of every later
request on it, the complete headers must arrive within ``POLICYFIT_HEADER_TIMEOUT_SECONDS`` (10 s by
default) and stay under ``MAX_HEADER_BYTES``; otherwise the client gets 408 (or 431) and the
connection is closed. A body that does not arrive within ``POLICYFIT_BODY_TIMEOUT_SECONDS`` after its
headers is answered 408 by the app (``service.http.middleware.BodyLimit``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import Settings, get_settings

#: Request line plus headers of one request; real requests here are a few hundred bytes to a few KB.
MAX_HEADER_BYTES = 64 * 1024


def _response(status: bytes, text: str) -> bytes:
    body = text.encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class SlowClientGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap for reading request headers."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = get_settings().header_timeout_seconds
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._header_bytes = 0

    # a deadline from the connection's start, and from the first byte of each later request
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))  # what the event loop gives a stream protocol
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._arm()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._disarm()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        counting = self._awaiting_headers
        if counting:
            self._header_bytes += len(data)
        super().data_received(data)
        if counting and self._awaiting_headers and self._header_bytes > MAX_HEADER_BYTES \
                and not self.transport.is_closing():
            self._refuse(b"431 Request Header Fields Too Large", "请求头过大")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a response is being written: close right after it
            return
        if self._header_bytes == 0:  # nothing sent at all (an idle or speculative connection): just close
            self._disarm()
            self.transport.close()
            return
        self._refuse(b"408 Request Timeout", "请求头发送超时")

    def _refuse(self, status: bytes, text: str) -> None:
        self._disarm()
        self.logger.warning("closing a slow or oversized request from %s: %s", self.client, status.decode())
        self.transport.write(_response(status, text))
        self.transport.close()


@contextmanager
def metrics_directory() -> Iterator[Path]:
    """The directory where every worker writes its Prometheus counters (multiprocess mode), set as
    ``PROMETHEUS_MULTIPROC_DIR`` for the workers. An operator's own directory is used (and emptied of
    old files on start); otherwise a fresh temporary one, removed when the server stops."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):  # counts of an earlier run would be added to this one's
            old.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="policyfit-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    try:
        yield path
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(path, ignore_errors=True)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings ``policyfit serve`` uses (README, "Timeouts and slow clients")."""
    return {
        "http": "service.http.serving:SlowClientGuard",
        # X-Forwarded-For is judged by the app against POLICYFIT_TRUSTED_PROXIES (none by default);
        # uvicorn's own proxy handling would trust it from 127.0.0.1, so a local client could pose as anyone
        "proxy_headers": False,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": 30,
        "server_header": False,
    }
