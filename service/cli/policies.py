"""``policyfit policies …``: check the catalog files, write the coverage table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.cmdline import fail

app = typer.Typer(help="政策目录：校验、覆盖表", no_args_is_help=True)


@app.command("lint")
def policies_lint(
    directory: Annotated[Path | None, typer.Argument(help="目录，默认 policies/catalog")] = None,
) -> None:
    """校验政策目录（字段、规则、任务编号、重复ID）。"""
    from policies.lint import main as lint_main

    code = lint_main([str(directory)] if directory else [])
    raise typer.Exit(code)


@app.command("coverage")
def policies_coverage(
    write: Annotated[bool, typer.Option("--write", help="写入 policies/COVERAGE.md")] = False,
    check: Annotated[bool, typer.Option("--check", help="COVERAGE.md 与目录不一致时退出1")] = False,
) -> None:
    """生成160项任务与10项举措的覆盖表。"""
    from policies.coverage import COVERAGE_FILE, CoverageError, render_coverage
    from service.bootstrap import get_catalog

    try:
        text = render_coverage(get_catalog())
    except CoverageError as exc:
        fail(str(exc), 1)
    if check:
        current = COVERAGE_FILE.read_text(encoding="utf-8") if COVERAGE_FILE.exists() else ""
        if current != text:
            fail("policies/COVERAGE.md 已过期，请运行 policyfit policies coverage --write", 1)
        typer.echo("COVERAGE.md 与目录一致")
    elif write:
        COVERAGE_FILE.write_text(text, encoding="utf-8")
        typer.echo(f"已写入 {COVERAGE_FILE}")
    else:
        typer.echo(text)
