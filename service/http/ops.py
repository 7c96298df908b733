"""Operations around the API: protective headers, /metrics over every worker, /docs without a CDN.

- ``SecurityHeaders``: every response carries ``X-Content-Type-Options: nosniff``; every answer under
  ``/v1`` (errors included) and ``/metrics`` carries ``Cache-Control: no-store`` — they hold firm data
  or live counts that no browser or proxy cache should keep.
- ``/metrics``: with ``PROMETHEUS_MULTIPROC_DIR`` set (``policyfit serve`` sets it up for its workers)
  the counters of all workers are summed (prometheus_client's multiprocess mode), so successive
  scrapes never go backwards as they land on different workers. Optionally restricted to addresses
  (``POLICYFIT_METRICS_ALLOW``) and/or a bearer token (``POLICYFIT_METRICS_TOKEN``).
- ``/docs``: Swagger UI from the assets bundled in the ``fastapi-offline`` package, served by the app
  itself under ``/docs-assets`` — the page works on a network with no way out.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.settings import Settings
from service.store import limits

NO_STORE_PREFIXES = ("/v1/", "/metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class SecurityHeaders:
    """Pure ASGI middleware (outermost, so the answers of the other middleware get the headers too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        no_store = path == "/v1" or path.startswith(NO_STORE_PREFIXES)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = protect(list(message.get("headers", [])), no_store=no_store)
            await send(message)

        await self.app(scope, receive, sending)


def protect(headers: list[tuple[bytes, bytes]], *, no_store: bool) -> list[tuple[bytes, bytes]]:
    """``headers`` with nosniff (and no-store when asked), replacing what was there for those names."""
    drop = {b"x-content-type-options"} | ({b"cache-control"} if no_store else set())
    kept = [(k, v) for k, v in headers if k.lower() not in drop]
    kept.append((b"x-content-type-options", b"nosniff"))
    if no_store:
        kept.append((b"cache-control", b"no-store"))
    return kept


PROTECTIVE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


# ---- /metrics ---------------------------------------------------------------------------------
def metrics_text() -> bytes:
    """The exposition of this process, or of every worker in multiprocess mode."""
    from prometheus_client import values

    directory = os.environ.get(MULTIPROC_ENV)
    # the counters live in files only if the variable was set before prometheus_client was first imported
    if directory and Path(directory).is_dir() and values.ValueClass is not values.MutexValue:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry)
    return generate_latest()


def metrics_allowed(request: Request, settings: Settings) -> bool:
    """Open unless restricted; restricted: an allowed address, or the metrics token."""
    networks, token = settings.metrics_networks, settings.metrics_token
    if not networks and not token:
        return True
    if networks:
        peer = request.client.host if request.client else ""
        address = limits.client_address(peer, request.headers.getlist("x-forwarded-for"), settings.trusted_networks)
        if limits.in_networks(address, networks):
            return True
    if token:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode()):
            return True
    return False


def metrics_response() -> Response:
    return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)


# ---- /docs ----------------------------------------------------------------------------------------
def swagger_assets() -> Path:
    """Swagger UI's JavaScript, CSS and favicon as the fastapi-offline package ships them."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


def mount_docs(app: FastAPI, *, title: str) -> None:
    """``/docs`` (Swagger UI) from the package's own files; the app must be created with docs_url=None."""
    app.mount("/docs-assets", StaticFiles(directory=swagger_assets()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{title} - 接口文档",
            swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs-assets/favicon.png",
            oauth2_redirect_url=None,
            # no validator badge: it would load an image from validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )
