"""``policyfit db …``: the database schema (Alembic migrations)."""

from __future__ import annotations

import typer

app = typer.Typer(help="数据库：迁移", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """把数据库结构迁移到最新版本（Alembic）。"""
    from service.bootstrap import migrated_engine
    from service.settings import get_settings

    migrated_engine().dispose()
    typer.echo(f"数据库已是最新结构：{get_settings().database_url.split('@')[-1]}")
