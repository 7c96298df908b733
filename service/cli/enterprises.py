"""``policyfit enterprises …``: bulk import of enterprise profiles, and of the departments' feeds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from service.cmdline import fail, parse_as_of

app = typer.Typer(help="企业画像：批量导入（企业自报的完整画像，或各部门的数据）", no_args_is_help=True)

SOURCES_HELP = ("数据来源：registration（市场监管）、tax（税务）、social_insurance（人社）、science（科技）、"
                "industry（工信）、self（企业自报）、hotline（热线坐席）；不给时按企业自报的完整画像导入")


@app.command("import")
def enterprises_import(
    path: Annotated[Path, typer.Argument(help="CSV（UTF-8；给出 --source 时也可为 GBK）或 JSONL 文件")],
    source: Annotated[str | None, typer.Option("--source", help=SOURCES_HELP)] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="数据日期 YYYY-MM-DD（默认今天，不能晚于今天）")] = None,
    errors: Annotated[Path | None, typer.Option("--errors", help="被拒行及原因的输出文件")] = None,
) -> None:
    """批量导入：逐行校验，有效行入库，无效行连同行号和原因写入错误文件；同一文件重复导入不改变任何数据。"""
    from service.app.feeds import check_as_of, import_feed, parse_source
    from service.app.importer import import_file
    from service.bootstrap import migrated_engine

    if as_of is not None and not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", as_of.strip()):
        fail(f"--as-of 日期格式应为 YYYY-MM-DD，收到“{as_of}”")
    day = parse_as_of(as_of.strip() if as_of else None)
    try:
        check_as_of(day)
        if source is not None:
            parse_source(source.strip())
    except ValueError as exc:
        fail(str(exc))
    if not path.exists():
        fail(f"找不到文件 {path}")
    try:
        if source is None:
            report = import_file(migrated_engine(), path, errors_path=errors, as_of=day)
            head = ""
        else:
            feed = import_feed(migrated_engine(), path, source=source.strip(), as_of=day, errors_path=errors)
            report = feed
            head = f"来源 {feed.source_label}（{feed.source}，数据日期 {day.isoformat()}）："
    except ValueError as exc:
        fail(str(exc))
    line = (f"{head}共 {report.rows} 行：新增 {report.created}，更新 {report.updated}，未变 {report.unchanged}，"
            f"拒绝 {report.rejected}（原因见 {report.errors_file}）")
    if source is not None:
        line += f"；待补充登记信息 {feed.waiting}，存在来源冲突的企业 {feed.conflicted}"
    typer.echo(line)
    if report.rejected:
        raise typer.Exit(1)
