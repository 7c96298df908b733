"""Pure ASGI middleware of the API: the request body limits (size and time) and the request metrics.

The protective headers (``SecurityHeaders``) live in :mod:`service.http.ops` with the other operational
pieces; ``create_app`` stacks all three.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.app.errors import ErrorCode
from service.http.errors import MAX_BODY_BYTES, error_response

REQUESTS = Counter("policyfit_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram("policyfit_request_seconds", "HTTP request latency", ["route", "method"],
                    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


class _BodyTooLarge(StarletteHTTPException):
    """Raised while the body is streamed in (no or a lying Content-Length)."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class _BodyTimeout(StarletteHTTPException):
    """The body did not arrive within the body timeout (a slow or stalled client)."""

    def __init__(self) -> None:
        super().__init__(408, "request body timeout", headers={"Connection": "close"})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, never reading them whole, and bodies that do
    not arrive completely within ``body_timeout`` seconds with 408 (slow clients)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, body_timeout: float = 30.0) -> None:
        self.app, self.max_bytes, self.body_timeout = app, max_bytes, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_bytes):
            if declared.strip().isdigit():
                response = error_response(ErrorCode.PAYLOAD_TOO_LARGE, f"请求体过大：最多{MAX_BODY_BYTES // 1024}KB")
            else:
                response = error_response(ErrorCode.BAD_REQUEST, "请求头 Content-Length 格式不正确", "Content-Length")
            await response(scope, receive, send)
            return
        received = 0
        complete = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what follows is waiting for a disconnect, which may take long
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError:
                raise _BodyTimeout() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)


class Metrics:
    """Request count and latency per route template, method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(path, scope["method"]).observe(time.perf_counter() - start)
            REQUESTS.labels(path, scope["method"], str(status)).inc()
