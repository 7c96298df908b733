"""What every command group of the ``policyfit`` command line shares, whichever adapter it drives
(cli, batch, push, http): errors on stderr in Chinese (exit 2 = bad input), dates, ranges and USCCs of
arguments, JSON output. Imports no adapter."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Annotated, Any, NoReturn

import typer

JsonFlag = Annotated[bool, typer.Option("--json", help="输出JSON（SPEC §2.3）")]


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit (2 = invalid input)."""
    typer.echo(f"错误：{message}", err=True)
    raise typer.Exit(code)


def parse_as_of(value: str | None) -> dt.date:
    """``--as-of``: an ISO date, today when not given."""
    if value is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"--as-of 日期格式应为 YYYY-MM-DD，收到“{value}”")


def in_range(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        fail(f"{option} 应为 {low}–{high} 之间的整数，收到 {value}")


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def uscc_arg(value: str, name: str = "USCC") -> str:
    """A USCC given on the command line, normalised; exit 2 naming the argument when invalid."""
    from profiles.uscc import UsccError, normalize_uscc

    try:
        return normalize_uscc(value)
    except UsccError as exc:
        fail(f"{name}（统一社会信用代码）：{exc}")


def say(line: str) -> None:
    """Progress and notes on stderr (stdout stays the command's answer, e.g. its JSON)."""
    typer.echo(line, err=True)
