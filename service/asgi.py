"""ASGI entry point for uvicorn workers: ``uvicorn service.asgi:app``."""

from service.http.api import create_app

app = create_app()
