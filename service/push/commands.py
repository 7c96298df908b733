"""``policyfit push …``: deliver the outbox, retry dead letters, the queue's state, opt-out and opt-in.
Mounted on the ``policyfit`` root by :mod:`service.main`. Errors go to stderr in Chinese; exit 2 = bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import Engine

from service.bootstrap import migrated_engine
from service.cmdline import fail, uscc_arg
from service.push.channels import PushConfigError, make_channel
from service.push.delivery import dead_letters, deliver, outbox_counts, retry_dead, writer_engine
from service.push.outbox import set_opt_out
from service.settings import get_settings

app = typer.Typer(help="推送：投递待推送消息（webhook / JSONL 文件），死信重试，拒收设置", no_args_is_help=True)


def migrated_writer_engine() -> Engine:
    """The schema migrated, then an engine whose SQLite transactions take the write lock up front (the
    engine of every command that writes the outbox: ``push …`` and ``batch run``)."""
    migrated_engine().dispose()
    return writer_engine(get_settings().database_url)


@app.command("deliver")
def push_deliver(
    channel: Annotated[str | None, typer.Option("--channel", help="webhook 或 file（默认 POLICYFIT_PUSH_CHANNEL）")] = None,
    url: Annotated[str | None, typer.Option("--url", help="webhook 地址（默认 POLICYFIT_PUSH_WEBHOOK_URL）")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="file 渠道的 JSONL 文件（默认 POLICYFIT_PUSH_EXPORT_PATH）")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="等待退避与租约，直到没有待投递消息")] = False,
) -> None:
    """投递待推送消息：租约认领，幂等键，失败指数退避，多次失败转为死信。"""
    settings = get_settings()
    try:
        sender = make_channel(settings, channel=channel, url=url, out=out)
    except PushConfigError as exc:
        fail(str(exc))
    db = migrated_writer_engine()
    report = deliver(db, settings, sender, wait=wait, say=lambda line: typer.echo(line, err=True))
    counts = outbox_counts(db)
    withdrawn = f"，因政策已有办理结果撤回 {report.dropped}" if report.dropped else ""
    typer.echo(f"已投递 {report.delivered}，失败 {report.failed}（其中转为死信 {report.dead}）{withdrawn}；"
               f"队列：待投递 {counts.get('pending', 0)}，已投递 {counts.get('delivered', 0)}，死信 {counts.get('dead', 0)}")


@app.command("retry-dead")
def push_retry_dead(
    uscc: Annotated[str | None, typer.Option("--uscc", help="只重试这家企业的死信")] = None,
) -> None:
    """把死信重新放回待投递队列（尝试次数清零）。"""
    code = uscc_arg(uscc, "--uscc") if uscc is not None else None
    n = retry_dead(migrated_writer_engine(), uscc=code)
    typer.echo(f"已将 {n} 条死信放回待投递队列")


@app.command("status")
def push_status() -> None:
    """待推送队列：各状态数量与最近的死信。"""
    db = migrated_engine()
    counts = outbox_counts(db)
    typer.echo(f"待投递 {counts.get('pending', 0)}，已投递 {counts.get('delivered', 0)}，死信 {counts.get('dead', 0)}，"
               f"已撤回（政策已有办理结果）{counts.get('dropped', 0)}")
    for key, attempts, error in dead_letters(db):
        typer.echo(f"  死信 {key}：尝试 {attempts} 次，最后错误：{error or '-'}")


def _opt(uscc: str, opted_out: bool) -> None:
    code = uscc_arg(uscc)
    if not set_opt_out(migrated_writer_engine(), uscc=code, opted_out=opted_out):
        fail(f"企业 {code} 不存在")
    typer.echo(f"企业 {code} {'已拒收推送' if opted_out else '已恢复接收推送'}")


@app.command("opt-out")
def push_opt_out(uscc: Annotated[str, typer.Argument(help="统一社会信用代码")]) -> None:
    """企业拒收推送：此后批处理不再为其生成消息。"""
    _opt(uscc, True)


@app.command("opt-in")
def push_opt_in(uscc: Annotated[str, typer.Argument(help="统一社会信用代码")]) -> None:
    """企业恢复接收推送。"""
    _opt(uscc, False)
