"""``python -m policies.lint [DIR] [--as-of YYYY-MM-DD]``: validate the catalog; exit 1 listing every problem.

Besides the problems that make the catalog fail, lint warns (without failing) about every entry whose
review date ``review_by`` is missing or has passed on ``--as-of`` (default: today): an answer citing such an
entry says it needs review, so the entry should be checked against its sources and its dates moved on.

The dated parameters (``policies/parameters/``) are checked too: a file that does not load fails lint, every
parameter a rule or formula names must exist (checked while loading the catalog), and lint warns about every
parameter that has ended or ends within 90 days of ``--as-of``, naming the policies that read it and what
happens to them (withdrawn, or shown "延续与否以主管部门公布为准" under ``lapse: pending_notice``).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from policies.loader import CATALOG_DIR, Catalog, CatalogError, line_of, load_catalog, read_yaml
from policies.params import ParameterError, parameters

ENDING_SOON_DAYS = 90


def review_warnings(catalog: Catalog, as_of: dt.date) -> list[str]:
    """``file:line: review_by: message`` for every entry (any kind) not reviewed in time on ``as_of``."""
    out: list[str] = []
    for entry in catalog.all_entries():
        name = f"{entry.id}.yaml"
        if entry.review_by is not None and not entry.needs_review(as_of):
            continue
        try:
            data, _ = read_yaml(catalog.directory / name)
            line = line_of(data, ["review_by"] if entry.review_by is not None else [])
        except (OSError, ValueError):
            line = 1
        if entry.review_by is None:
            out.append(f"{name}:{line}: review_by: 警告：缺少复核期限 review_by（复核日期 reviewed_on："
                       f"{entry.reviewed_on or '未填写'}），请对照计划原文和所引规定复核后填写")
        else:
            out.append(f"{name}:{line}: review_by: 警告：复核期限 {entry.review_by} 已过（今天 {as_of}，"
                       f"上次复核 {entry.reviewed_on or '未填写'}），引用本条的答复会提示“需复核”；"
                       "请对照计划原文和所引规定复核后更新 reviewed_on 和 review_by")
    return out


def parameter_warnings(catalog: Catalog, as_of: dt.date) -> list[str]:
    """``parameters/<file>.yaml: <name>: message`` for every parameter read by the catalog that has ended, or ends
    within :data:`ENDING_SOON_DAYS` days, on ``as_of``: which policies read it and what happens to them."""
    readers: dict[str, list[str]] = {}
    for policy in catalog:
        for name in policy.params:
            readers.setdefault(name, []).append(policy.id)
    out: list[str] = []
    for name, ids in sorted(readers.items()):
        param = parameters()[name]
        end = param.last_day
        if end is None or (end - as_of).days > ENDING_SOON_DAYS:
            continue
        fates = "；".join(
            f"{pid}（{'显示“延续与否以主管部门公布为准”，不估值' if catalog[pid].lapse == 'pending_notice' else '不再提供'}）"
            for pid in ids)
        when = f"已于{end}到期" if as_of > end else f"将于{end}到期"
        out.append(f"parameters/{name.split('.', 1)[0]}.yaml: {name}: 警告：参数{when}，读取它的政策：{fates}；"
                   "主管部门公布延续政策后，请在 values 中补上新的生效日期和取值（含文号）")
    return out


def _parse_args(args: list[str]) -> tuple[Path, dt.date]:
    directory, as_of = CATALOG_DIR, dt.date.today()
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--as-of" or arg.startswith("--as-of="):
            value = arg.split("=", 1)[1] if "=" in arg else (rest.pop(0) if rest else "")
            try:
                as_of = dt.date.fromisoformat(value)
            except ValueError:
                raise SystemExit(f"--as-of 应为日期（YYYY-MM-DD），实际为“{value}”") from None
        else:
            directory = Path(arg)
    return directory, as_of


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory, as_of = _parse_args(args)
    try:
        parameters()
    except ParameterError as exc:
        print(f"parameters/{exc}", file=sys.stderr)
        print("参数校验失败", file=sys.stderr)
        return 1
    try:
        catalog = load_catalog(directory)
    except CatalogError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"目录校验失败：{len(exc.problems)} 处问题", file=sys.stderr)
        return 1
    warnings = review_warnings(catalog, as_of) + parameter_warnings(catalog, as_of)
    for warning in warnings:
        print(warning, file=sys.stderr)
    kinds: dict[str, int] = {}
    for entry in catalog.all_entries():
        kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
    others = "，".join(f"{label} {kinds[k]} 条" for k, label in (("commitment", "服务承诺"), ("plan_work", "政府工作任务"))
                      if kinds.get(k))
    tail = f"；警告 {len(warnings)} 条（需复核的条目或到期的参数，不影响通过）" if warnings else ""
    print(f"目录校验通过：{len(catalog)} 条政策{('，' + others) if others else ''}（{catalog.version}）{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
