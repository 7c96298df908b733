"""``policyfit outcomes …``: record what became of firms and policies (import), the 应享未享 report, and the
免申即享 hand-off of a ``delivery: automatic`` policy."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from service.cmdline import fail, say

app = typer.Typer(help="申请与兑现结果：导入结果、应享未享名单、免申即享清单", no_args_is_help=True)

#: The 应享未享 report's columns: (key of a listed firm, Chinese header).
REPORT_COLUMNS = [("policy_id", "政策编号"), ("title", "政策名称"), ("uscc", "统一社会信用代码"), ("name", "企业名称"),
                  ("region", "所在地区"), ("size", "企业规模"), ("contact", "联系渠道"), ("state", "当前状态"),
                  ("why", "符合条件的依据"), ("clauses", "条件明细"), ("estimated_value_wan", "估算金额（万元）"),
                  ("eligible_since", "应享起始日期"), ("lead_departments", "牵头部门")]
#: The hand-off's columns: the outcome fields first (the department fills 结果, 金额 and 决定日期, then imports the
#: file as it is), then what it needs to decide.
HANDOFF_COLUMNS = [("uscc", "统一社会信用代码"), ("policy_id", "政策编号"), ("outcome", "结果"),
                   ("amount_wan", "金额（万元）"), ("decided_on", "决定日期"), ("department", "部门"),
                   ("name", "企业名称"), ("region", "所在地区"), ("size", "企业规模"), ("title", "政策名称"),
                   ("why", "符合条件的依据"), ("clauses", "条件明细"), ("estimated_value_wan", "估算金额（万元）"),
                   ("eligible_since", "应享起始日期"), ("state", "当前状态"), ("contact", "联系渠道")]


def _session() -> Any:
    from sqlmodel import Session

    from service.bootstrap import migrated_engine, sync_catalog
    from service.settings import get_settings

    engine = migrated_engine()
    sync_catalog(engine, get_settings())  # outcomes name policies: the catalog files are loaded first
    return Session(engine)


@app.command("import")
def outcomes_import(
    path: Annotated[Path, typer.Argument(help="CSV（UTF-8 或 GBK）或 JSONL 文件：uscc, policy_id, outcome, amount_wan, "
                                              "decided_on, department（CSV 表头也可用中文：统一社会信用代码、政策编号、"
                                              "结果、金额（万元）、决定日期、部门）")],
    errors: Annotated[Path | None, typer.Option("--errors", help="被拒行及原因的输出文件（默认 FILE.errors.jsonl）")] = None,
) -> None:
    """导入部门的申请与兑现结果：逐行校验，有效行入库，被拒行连同行号和原因写入错误文件；同一结果重复导入不改变任何数据。"""
    from service.app.outcomes import import_outcomes

    if not path.exists():
        fail(f"找不到文件 {path}")
    with _session() as session:
        engine = session.get_bind()
    try:
        report = import_outcomes(engine, path, errors_path=errors)
    except ValueError as exc:
        fail(str(exc))
    encoding = "" if report.encoding == "utf-8" else f"（按{report.encoding.upper()}编码读取）"
    typer.echo(f"共 {report.rows} 行{encoding}：新增 {report.created}，更新 {report.updated}，未变 {report.unchanged}，"
               f"拒绝 {report.rejected}（原因见 {report.errors_file}）；空行 {report.blank}，"
               f"合计 {report.lines} 个物理行")
    if report.rejected:
        raise typer.Exit(1)


def _cell(key: str, value: Any) -> str:
    from service.app.uptake import clauses_text

    if value is None:
        return ""
    if key == "clauses":
        return clauses_text(value)
    if isinstance(value, float):
        return f"{value:g}"
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _write(out: Path, columns: list[tuple[str, str]], items: Iterable[dict[str, Any]]) -> int:
    """Write ``items`` as CSV (UTF-8 with a byte order mark, which Excel needs to read Chinese) or JSONL."""
    from service.app.uptake import json_line

    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if out.suffix.lower() == ".jsonl":
        with out.open("w", encoding="utf-8") as fh:
            for item in items:
                fh.write(json_line({k: item.get(k) for k, _ in columns}) + "\n")
                n += 1
        return n
    with out.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([h for _, h in columns])
        for item in items:
            writer.writerow([_cell(k, item.get(k)) for k, _ in columns])
            n += 1
    return n


def _period(days: int | None) -> int:
    from service.settings import get_settings

    value = get_settings().uptake_period_days if days is None else days
    if not 1 <= value <= 3650:
        fail(f"--period-days 应为 1–3650 之间的整数，收到 {value}")
    return value


def _funnel_line(counts: dict[str, Any]) -> str:
    return (f"符合条件 {counts['eligible']}，已推送送达 {counts['pushed']}，已查看 {counts['viewed']}，"
            f"已申请待决定 {counts['applied']}，已兑现 {counts['granted']}，未获批准 {counts['refused']}，"
            f"应享未享 {counts['not_yet_granted']}")


@app.command("report")
def outcomes_report(
    policy: Annotated[str | None, typer.Option("--policy", help="政策编号；不给时列出最新快照中有符合条件企业的全部政策")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="应享未享企业名单的输出文件（.csv，或 .jsonl）")] = None,
    period_days: Annotated[int | None, typer.Option("--period-days", help="多少天内未兑现也未被拒即为应享未享"
                                                                          "（默认 POLICYFIT_UPTAKE_PERIOD_DAYS，365）")] = None,
) -> None:
    """应享未享：每项政策的兑现漏斗，以及符合条件却尚未兑现的企业名单（名称、地区、规模、联系渠道、符合条件的依据、应享起始日期）。"""
    from service.app.errors import AppError
    from service.app.uptake import Listing, funnel_policy, not_yet_granted_firms, offered_policies, uptake

    days, today = _period(period_days), dt.date.today()
    with _session() as session:
        try:
            ids = [policy] if policy else offered_policies(session)
            policies = [funnel_policy(session, pid) for pid in ids]
        except AppError as exc:
            fail(exc.message)
        listings: list[Listing] = []
        for p in policies:
            typer.echo(f"{p.id}（{p.title}）：{_funnel_line(uptake(session, p.id, as_of=today, period_days=days))}")

        def firms() -> Iterator[dict[str, Any]]:
            for p in policies:
                listings.append(Listing(p))
                yield from not_yet_granted_firms(session, p, as_of=today, period_days=days, listing=listings[-1])

        if csv_path is not None:
            n = _write(csv_path, REPORT_COLUMNS, firms())
            typer.echo(f"应享未享企业 {n} 家次，名单已写入 {csv_path}")
        elif policy:
            for i, item in enumerate(firms()):
                if i == 20:
                    typer.echo("……（完整名单请加 --csv FILE）")
                    break
                typer.echo(f"  {item['uscc']} {item['name']}（{item['region']}，{item['size']}）{item['state']}；"
                           f"{item['why']}；{item['contact']}；应享起始 {item['eligible_since']}")
        changed = sum(x.changed for x in listings)
        if changed:
            say(f"另有 {changed} 家企业的画像在最近一次夜间批处理后已变化、今天不再满足条件，未列入（下次批处理复核）")


@app.command("handoff")
def outcomes_handoff(
    policy: Annotated[str, typer.Option("--policy", help="免申即享（delivery: automatic）政策的编号")],
    out: Annotated[Path, typer.Option("--out", help="免申即享清单的输出文件（.csv，或 .jsonl）")],
    period_days: Annotated[int | None, typer.Option("--period-days", help="多少天内已兑现或被拒的企业不再列入（默认 365）")] = None,
) -> None:
    """免申即享清单：符合条件、尚未兑现的企业及使其符合条件的条款，供主管部门无需企业申请直接兑现；部门填好“结果”“金额”
    “决定日期”后用 outcomes import 导入该文件，已兑现的企业即从应享未享中关闭。"""
    from service.app.errors import AppError
    from service.app.uptake import Listing, funnel_policy, not_yet_granted_firms

    days, today = _period(period_days), dt.date.today()
    with _session() as session:
        try:
            found = funnel_policy(session, policy)
        except AppError as exc:
            fail(exc.message)
        if not found.automatic:
            fail(f"“{found.title}”（{policy}）不是免申即享政策（目录中未标注 delivery: automatic），没有免申即享清单；"
                 "应享未享名单请用 policyfit outcomes report --policy")
        listing = Listing(found)
        department = found.lead_departments[0]
        items = ({**item, "department": department}
                 for item in not_yet_granted_firms(session, found, as_of=today, period_days=days, listing=listing))
        n = _write(out, HANDOFF_COLUMNS, items)
    typer.echo(f"“{found.title}”免申即享清单：{n} 家企业，已写入 {out}。请填写“结果”（已兑现 / 未获批准）、“金额（万元）”"
               f"和“决定日期”后导入：policyfit outcomes import {out}")
    if listing.changed:
        say(f"另有 {listing.changed} 家企业的画像在最近一次夜间批处理后已变化、今天不再满足条件，未列入（下次批处理复核）")
