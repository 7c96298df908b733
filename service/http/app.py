"""The HTTP service (FastAPI): the app factory and its lifespan.

The lifespan builds one :class:`~service.bootstrap.ServiceState` (database, embedder, catalog and
indexes); routes reach it through :mod:`service.http.deps` and call the use cases of :mod:`service.app`.
Errors become ``{code, message, field}`` in :mod:`service.http.errors` only.

The OpenAPI document is written for integrators' tools: an ASCII title, ASCII tags (the Chinese names
are their descriptions) and a short stable ``operationId`` on every operation (``match``, ``getPackage``…).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.bootstrap import ServiceState
from service.http import errors, ops
from service.http.console.routes import mount_console
from service.http.errors import MAX_BODY_BYTES
from service.http.middleware import BodyLimit, Metrics
from service.http.routes import admin, enterprises, outcomes, policies
from service.http.routes import ops as ops_routes
from service.settings import Settings, get_settings
from service.store import limits

TITLE = "policyfit API"
NAME = "policyfit 惠企政策双向适配"
DESCRIPTION = (f"{NAME}：企业画像 × 政策目录的双向匹配（徐委办〔2023〕37号 附件2 第三项）。"
               "错误统一为 {code, message, field}。")

#: ASCII tag names for generated clients; the description is the Chinese name shown to people.
TAGS = [
    {"name": "enterprises", "description": "企业"},
    {"name": "policies", "description": "政策"},
    {"name": "staff", "description": "工作人员"},
    {"name": "admin", "description": "管理员"},
    {"name": "ops", "description": "运维"},
]


def create_app(settings: Settings | None = None, state: ServiceState | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = state or ServiceState.start(settings)
        app.state.limiter = limits.RateLimiter(app.state.service.engine)
        yield
        app.state.service.engine.dispose()

    app = FastAPI(title=TITLE, version="1.0", description=DESCRIPTION, openapi_tags=TAGS, lifespan=lifespan,
                  docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None)
    app.state.settings = settings
    # anonymous access is limited to the documented public routes: /docs and /openapi.json, no /redoc;
    # /docs is Swagger UI from files inside the installed packages (works without internet)
    ops.mount_docs(app, title=NAME)
    for module in (enterprises, policies, outcomes, admin):
        app.include_router(module.router)
    mount_console(app)  # HTML: staff console and public calculator
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, body_timeout=settings.body_timeout_seconds)
    app.add_middleware(Metrics)
    app.add_middleware(ops.SecurityHeaders)  # outermost of ours: the answers of the others get the headers too
    errors.install(app)
    app.include_router(ops_routes.router)
    return app
