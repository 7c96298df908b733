"""``policyfit match | search | eval``: one enterprise's package, the hotline's search, the relevance report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from service.cmdline import JsonFlag, emit_json, fail, in_range, parse_as_of, say

app = typer.Typer()


@app.command()
def match(
    profile: Annotated[Path, typer.Option("--profile", help="企业画像JSON文件（EnterpriseProfile v1）")],
    query: Annotated[str | None, typer.Option("--query", help="补充诉求，如“想贷款”")] = None,
    top: Annotated[int | None, typer.Option("--top", help="只显示得分最高的N项")] = None,
    as_of_: Annotated[str | None, typer.Option("--as-of", help="评估日期 YYYY-MM-DD，默认今天")] = None,
    as_json: JsonFlag = False,
) -> None:
    """为一家企业匹配政策套餐。"""
    # the matching stack (numpy, the embedder) is imported when a command runs, not when the CLI starts
    from profiles.features import derive
    from profiles.model import ProfileError, parse_profile
    from service.app.importer import check_json_types
    from service.bootstrap import get_matcher
    from service.cli.report import render_match
    from service.store.values import unstorable

    try:
        raw = json.loads(profile.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"找不到企业画像文件 {profile}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(f"企业画像文件不是有效的JSON（{exc}）")
    problem = unstorable(raw)  # the one screening predicate the API, console and importer use
    if problem:
        fail(f"{problem[0] or '企业画像'}：{problem[1]}")
    when = parse_as_of(as_of_)
    try:
        check_json_types(raw)  # JSON types strictly, as the API and the importer do (true is no number)
        parsed = parse_profile(raw, as_of=when)  # founding date not after the evaluation day
    except ProfileError as exc:
        fail(str(exc))
    if top is not None:
        in_range("--top", top, 1, 1000)
    result = get_matcher(say=say).match(derive(parsed, when), query=query, top=top)
    if as_json:
        emit_json(result.model_dump(mode="json"))
    else:
        typer.echo(render_match(result))


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="查询内容，如“贷款利息太高”")],
    top: Annotated[int, typer.Option("--top", help="返回条数")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """按来电人的话检索全计划条目（政策、承诺事项、政府工作），没有对应条目时如实说明并给出求助渠道。"""
    from matching.search import search as search_answer
    from service.bootstrap import get_matcher

    if not text.strip():
        fail("查询内容不能为空")
    in_range("--top", top, 1, 200)
    matcher = get_matcher(say=say)
    answer = search_answer(matcher, text, top=top)
    if as_json:
        emit_json(answer)
        return
    if answer["no_match"]:
        typer.echo(answer["fallback"]["message"])
        return
    for i, r in enumerate(answer["results"], 1):
        src = (f"任务{r['source_task']}" if r["source_task"] else f"举措{r['source_measure']}" if r["source_measure"]
               else r["source_document"])
        kind = matcher.catalog[r["policy_id"]].kind_label
        depts = "、".join(r["lead_departments"])
        typer.echo(f"{i:>2}. {r['title']}  [{kind} · {src} · {depts}]  相关度 {r['score']:.2f}  ({r['policy_id']})")
    typer.echo(answer["fallback"]["message"])


_ROW_NAMES = {"lexical": "仅词法(TF-IDF)", "dense": "仅向量(e5)", "hybrid": "混合(校准)", "naive_plan_hybrid": "原文检索(对照)"}
_PARTS = (("queries", "热线口语查询（政策）→ 重点任务"), ("plan", "热线口语查询（承诺事项、政府工作）→ 重点任务"),
          ("profiles", "企业画像+诉求 → 套餐前5"), ("fresh", "复核集（未用于任何决定）→ 重点任务"))


@app.command("eval")
def evaluate(as_json: JsonFlag = False) -> None:
    """相关性评测：Recall@5、MRR、nDCG@5（词法、向量、混合、原文检索对照）与拒答率。"""
    from matching.evaluation.run import ROWS, run
    from service.bootstrap import get_matcher

    report = run(get_matcher(say=say))
    if as_json:
        emit_json(report)
        return
    typer.echo(f"模型 {report['model_id']} · 目录 {report['catalog_version']} · 条目 {report['entries']}")
    for part, title in _PARTS:
        typer.echo(f"\n{title}（{report[part]['n']} 条）")
        typer.echo(f"  {'':<16}{'Recall@5':>10}{'MRR':>10}{'nDCG@5':>10}")
        for row in ROWS:
            m = report[part][row]
            typer.echo(f"  {_ROW_NAMES[row]:<14}{m['recall@5']:>10.4f}{m['mrr']:>10.4f}{m['ndcg@5']:>10.4f}")
    for key, title in (("abstention", "拒答（queries + plan / 题外集）"), ("abstention_fresh", "拒答（复核集）")):
        a = report[key]
        typer.echo(f"\n{title}：阈值 {a['floor']}")
        typer.echo(f"  题外问题被拒答 {a['off_topic_refused']:.1%}（{a['n_off_topic']} 条）；"
                   f"范围内问题被误拒 {a['in_scope_refused']:.1%}（{a['n_in_scope']} 条）")
    cal = report["calibration"]
    if cal:
        t = cal["train"]
        typer.echo(f"\n校准（训练数据：目录常见问法留一 {cal['positives']} 条、训练题外问题 {cal['negatives']} 条）：")
        typer.echo("  " + "，".join(f"{k} {v}" for k, v in t.items()))
