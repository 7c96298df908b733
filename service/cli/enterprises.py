"""``policyfit enterprises …``: bulk import of enterprise profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.cmdline import fail

app = typer.Typer(help="企业画像：批量导入", no_args_is_help=True)


@app.command("import")
def enterprises_import(
    path: Annotated[Path, typer.Argument(help="CSV（表头为字段名）或 JSONL 文件")],
    errors: Annotated[Path | None, typer.Option("--errors", help="被拒行及原因的输出文件")] = None,
) -> None:
    """批量导入企业画像：逐行校验，有效行入库，无效行连同原因写入错误文件。"""
    from service.app.importer import import_file
    from service.bootstrap import migrated_engine

    if not path.exists():
        fail(f"找不到文件 {path}")
    try:
        report = import_file(migrated_engine(), path, errors_path=errors)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"共 {report.rows} 行：新增 {report.created}，更新 {report.updated}，未变 {report.unchanged}，"
               f"拒绝 {report.rejected}（原因见 {report.errors_file}）")
    if report.rejected:
        raise typer.Exit(1)
