"""``policyfit batch …``: the nightly run and its status. Mounted on the ``policyfit`` root by
:mod:`service.main`. Errors go to stderr in Chinese; exit 2 = bad input, 1 = the run failed."""

from __future__ import annotations

from typing import Annotated

import typer

from service.bootstrap import migrated_engine
from service.cmdline import JsonFlag, emit_json, fail, in_range, parse_as_of
from service.push.commands import migrated_writer_engine

app = typer.Typer(help="夜间批处理：为全部企业评分，找出新增推荐，写入待推送队列", no_args_is_help=True)


@app.command("run")
def batch_run(
    as_of: Annotated[str | None, typer.Option("--as-of", help="评估日期 YYYY-MM-DD，默认今天")] = None,
    engine: Annotated[str, typer.Option("--engine", help="评分引擎：local（本机，可多进程）或 spark（PySpark）")] = "local",
    workers: Annotated[int, typer.Option("--workers", help="评分进程数（spark：local[N]）")] = 1,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress",
                                                  help="进度条（默认：终端显示进度条，否则输出日志行）")] = None,
) -> None:
    """为全部企业评分（跳过画像与政策目录均未变化的企业），写入匹配快照和待推送消息，并打印运行报告。"""
    # the scoring stack (numpy, the matcher) is imported when a command runs, not when the CLI starts
    from service.batch.report import render_report
    from service.batch.run import ENGINES, BatchError, run_batch
    from service.settings import get_settings

    when = parse_as_of(as_of)
    if engine not in ENGINES:
        fail(f"--engine 应为 {'、'.join(ENGINES)} 之一，收到“{engine}”")
    in_range("--workers", workers, 1, 64)
    db = migrated_writer_engine()
    try:
        run = run_batch(db, get_settings(), as_of=when, engine_kind=engine, workers=workers, progress=progress,
                        echo=lambda line: typer.echo(line, err=True))
    except BatchError as exc:
        fail(str(exc), 1)
    typer.echo(render_report(run))


@app.command("status")
def batch_status(
    run_id: Annotated[int | None, typer.Option("--run", help="显示某次运行的完整报告")] = None,
    limit: Annotated[int, typer.Option("--limit", help="列出最近N次运行")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """列出最近的批处理运行（状态、时间、评分与推送数量）。"""
    from sqlmodel import Session

    from service.batch.report import STATUS_LABELS, quarantine_lines, recent_runs, render_report
    from service.db.tables import BatchRun

    in_range("--limit", limit, 1, 1000)
    db = migrated_engine()
    if run_id is not None:
        with Session(db) as session:
            run = session.get(BatchRun, run_id)
        if run is None:
            fail(f"--run：批处理 #{run_id} 不存在")
        if as_json:
            emit_json(run.model_dump(mode="json"))
        else:
            typer.echo(render_report(run))
        return
    runs = recent_runs(db, limit)
    if as_json:
        emit_json({"runs": [r.model_dump(mode="json") for r in runs]})
        return
    if not runs:
        typer.echo("还没有批处理运行记录。")
    for r in runs:
        rep = r.report or {}
        ent, items = rep.get("enterprises", {}), rep.get("items", {})
        finished = f"{r.finished_at:%Y-%m-%d %H:%M:%S}" if r.finished_at else "-"
        typer.echo(f"#{r.id}\t{STATUS_LABELS.get(r.status, r.status)}\t{r.started_at:%Y-%m-%d %H:%M:%S} → {finished}\t"
                   f"评估日 {r.as_of}\t评分 {ent.get('scored', 0)}/{ent.get('to_score', 0)}\t新增 {items.get('new', 0)}\t"
                   f"消息 {rep.get('messages', 0)}\t{rep.get('engine', '-')}")
        for line in quarantine_lines(r, limit=20):  # rows that could not be scored, with the reason
            typer.echo(f"    {line}")
