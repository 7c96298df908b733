"""``policyfit tokens …``: bearer tokens (only their hash is stored)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from service.cmdline import fail, in_range, uscc_arg

app = typer.Typer(help="访问令牌：创建、吊销、列表", no_args_is_help=True)


@app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option("--role", help="enterprise / staff / admin")],
    label: Annotated[str, typer.Option("--label", help="令牌用途或持有人，如“12345坐席01”")],
    uscc: Annotated[str | None, typer.Option("--uscc", help="企业令牌绑定的统一社会信用代码")] = None,
    days: Annotated[int | None, typer.Option("--days", help="有效天数，默认长期有效")] = None,
) -> None:
    """创建访问令牌（只显示一次，库中仅存哈希）。"""
    from sqlmodel import Session

    from service.bootstrap import migrated_engine
    from service.store.tokens import create_token
    from service.store.values import unstorable

    if uscc is not None:
        uscc = uscc_arg(uscc, "--uscc")
    if days is not None:
        in_range("--days", days, 1, 3650)
    if not label.strip() or len(label) > 80:
        fail("--label 不能为空，且不超过80字")
    problem = unstorable(label)  # bytes that are not UTF-8 in argv arrive as lone surrogates
    if problem:
        fail(f"--label：{problem[1]}")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days) if days else None
    with Session(migrated_engine()) as session:
        try:
            secret, row = create_token(session, role=role, label=label.strip(), uscc=uscc, expires_at=expires)
        except ValueError as exc:
            fail(str(exc))
        session.commit()
        typer.echo(f"令牌 #{row.id}（{role}{'，绑定' + uscc if uscc else ''}）：{secret}")
        typer.echo("请妥善保存：令牌只显示这一次。", err=True)


@app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="令牌编号（tokens list 可查）")]) -> None:
    """吊销令牌，立即失效。"""
    from sqlmodel import Session

    from service.bootstrap import migrated_engine
    from service.store.tokens import revoke_token

    with Session(migrated_engine()) as session:
        if not revoke_token(session, token_id=token_id):
            fail(f"令牌 #{token_id} 不存在或已吊销")
        session.commit()
    typer.echo(f"令牌 #{token_id} 已吊销")


@app.command("list")
def tokens_list() -> None:
    """列出令牌（不显示令牌本身）。"""
    from sqlmodel import Session

    from service.bootstrap import migrated_engine
    from service.store.tokens import list_tokens

    with Session(migrated_engine()) as session:
        for t in list_tokens(session):
            state = "已吊销" if t.revoked_at else ("长期有效" if not t.expires_at else f"有效至{t.expires_at:%Y-%m-%d}")
            typer.echo(f"#{t.id}\t{t.role}\t{t.uscc or '-'}\t{t.label}\t{state}")
