"""``policyfit serve``: the HTTP service under uvicorn. Mounted on the ``policyfit`` root by :mod:`service.main`."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cmdline import in_range

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="工作进程数")] = 2,
) -> None:
    """启动 HTTP 服务（uvicorn）。超时与连接上限见 README “Timeouts and slow clients”（POLICYFIT_HEADER_TIMEOUT_SECONDS 等）。"""
    in_range("--port", port, 1, 65535)
    in_range("--workers", workers, 1, 16)
    # first of all: the workers' Prometheus counters go to files in a shared directory (multiprocess
    # mode), which prometheus_client only honours if the variable is set before it is imported
    from service.http.serving import metrics_directory, uvicorn_options

    with metrics_directory():
        import uvicorn

        from service.bootstrap import migrated_engine, sync_catalog
        from service.settings import get_settings

        settings = get_settings()
        engine = migrated_engine(settings)  # migrate once, before the workers start
        sync_catalog(engine, settings)  # and load the catalog once: workers then find nothing to write
        engine.dispose()
        base = f"http://{host}:{port}"
        typer.echo(f"policyfit 服务已启动（{workers}个工作进程）：\n"
                   f"  热线工作台  {base}/console（用工作人员令牌登录）\n"
                   f"  政策计算器  {base}/calculator（无需登录）\n"
                   f"  接口文档    {base}/docs\n"
                   f"  运维        {base}/readyz · {base}/metrics")
        uvicorn.run("service.asgi:app", host=host, port=port, workers=workers, log_level="warning",
                    **uvicorn_options(settings))
