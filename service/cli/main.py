"""The ``policyfit`` command line (typer). Errors go to stderr in Chinese; exit 2 = bad input."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

app = typer.Typer(help="policyfit — 惠企政策双向适配（徐委办〔2023〕37号）", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
policies_app = typer.Typer(help="政策目录：校验、覆盖表", no_args_is_help=True)
profiles_app = typer.Typer(help="企业画像：合成样本", no_args_is_help=True)
app.add_typer(policies_app, name="policies")
app.add_typer(profiles_app, name="profiles")

JsonFlag = Annotated[bool, typer.Option("--json", help="输出JSON（SPEC §2.3）")]


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit (2 = invalid input)."""
    typer.echo(f"错误：{message}", err=True)
    raise typer.Exit(code)


def _as_of(value: str | None) -> dt.date:
    if value is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        fail(f"--as-of 日期格式应为 YYYY-MM-DD，收到“{value}”")


def _in_range(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        fail(f"{option} 应为 {low}–{high} 之间的整数，收到 {value}")


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


@app.command()
def match(
    profile: Annotated[Path, typer.Option("--profile", help="企业画像JSON文件（EnterpriseProfile v1）")],
    query: Annotated[str | None, typer.Option("--query", help="补充诉求，如“想贷款”")] = None,
    top: Annotated[int | None, typer.Option("--top", help="只显示得分最高的N项")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="评估日期 YYYY-MM-DD，默认今天")] = None,
    as_json: JsonFlag = False,
) -> None:
    """为一家企业匹配政策套餐。"""
    from profiles.features import derive
    from profiles.model import ProfileError, parse_profile
    from service.bootstrap import get_matcher

    try:
        raw = json.loads(profile.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"找不到企业画像文件 {profile}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(f"企业画像文件不是有效的JSON（{exc}）")
    from service.app.importer import check_json_types
    from service.store import unstorable

    problem = unstorable(raw)  # the one screening predicate the API, console and importer use
    if problem:
        fail(f"{problem[0] or '企业画像'}：{problem[1]}")
    when = _as_of(as_of)
    try:
        check_json_types(raw)  # JSON types strictly, as the API and the importer do (true is no number)
        parsed = parse_profile(raw, as_of=when)  # founding date not after the evaluation day
    except ProfileError as exc:
        fail(str(exc))
    if top is not None:
        _in_range("--top", top, 1, 1000)
    result = get_matcher().match(derive(parsed, when), query=query, top=top)
    if as_json:
        _emit(result)
    else:
        from service.cli.report import render_match

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
    _in_range("--top", top, 1, 200)
    matcher = get_matcher()
    answer = search_answer(matcher, text, top=top)
    if as_json:
        _emit(answer)
        return
    if answer["no_match"]:
        typer.echo(answer["fallback"]["message"])
        return
    for i, r in enumerate(answer["results"], 1):
        src = f"任务{r['source_task']}" if r["source_task"] else f"举措{r['source_measure']}"
        kind = matcher.catalog[r["policy_id"]].kind_label
        depts = "、".join(r["lead_departments"])
        typer.echo(f"{i:>2}. {r['title']}  [{kind} · {src} · {depts}]  相关度 {r['score']:.2f}  ({r['policy_id']})")
    typer.echo(answer["fallback"]["message"])


@app.command("eval")
def evaluate(as_json: JsonFlag = False) -> None:
    """相关性评测：Recall@5、MRR、nDCG@5（词法、向量、混合、原文检索对照）与拒答率。"""
    from matching.evaluation.run import ROWS, run
    from service.bootstrap import get_matcher

    report = run(get_matcher())
    if as_json:
        _emit(report)
        return
    names = {"lexical": "仅词法(TF-IDF)", "dense": "仅向量(e5)", "hybrid": "混合(校准)", "naive_plan_hybrid": "原文检索(对照)"}
    typer.echo(f"模型 {report['model_id']} · 目录 {report['catalog_version']} · 条目 {report['entries']}")
    parts = (("queries", "热线口语查询（政策）→ 重点任务"), ("plan", "热线口语查询（承诺事项、政府工作）→ 重点任务"),
             ("profiles", "企业画像+诉求 → 套餐前5"), ("fresh", "复核集（未用于任何决定）→ 重点任务"))
    for part, title in parts:
        typer.echo(f"\n{title}（{report[part]['n']} 条）")
        typer.echo(f"  {'':<16}{'Recall@5':>10}{'MRR':>10}{'nDCG@5':>10}")
        for row in ROWS:
            m = report[part][row]
            typer.echo(f"  {names[row]:<14}{m['recall@5']:>10.4f}{m['mrr']:>10.4f}{m['ndcg@5']:>10.4f}")
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


@policies_app.command("lint")
def policies_lint(
    directory: Annotated[Path | None, typer.Argument(help="目录，默认 policies/catalog")] = None,
) -> None:
    """校验政策目录（字段、规则、任务编号、重复ID）。"""
    from policies.lint import main as lint_main

    code = lint_main([str(directory)] if directory else [])
    raise typer.Exit(code)


@policies_app.command("coverage")
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


@profiles_app.command("synth")
def profiles_synth(
    n: Annotated[int, typer.Option("--n", help="企业数量（1–5,000,000）")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="随机种子（相同种子结果相同）")] = 20230419,
    out: Annotated[Path | None, typer.Option("--out", help="输出JSONL文件，默认标准输出")] = None,
) -> None:
    """生成合成企业画像（JSONL，名称带“（合成）”标记，非真实企业）。"""
    from profiles.synth import SYNTHETIC_LABEL, synthesize

    _in_range("--n", n, 1, 5_000_000)
    population = synthesize(n, seed)
    stream = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        for record in population.records():
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out:
            stream.close()
            typer.echo(f"已生成 {n} 家{SYNTHETIC_LABEL} → {out}", err=True)


demo_app = typer.Typer(help="演示：示例企业的政策套餐；demo seed 载入合成样本和试用令牌", invoke_without_command=True)
app.add_typer(demo_app, name="demo")


@demo_app.command("seed")
def demo_seed(
    n: Annotated[int, typer.Option("--n", help="合成企业数量")] = 5000,
    seed: Annotated[int, typer.Option("--seed")] = 20230419,
) -> None:
    """载入合成企业样本和试用令牌（企业名称带“（合成）”，非真实企业）。"""
    import json as _json

    from sqlmodel import Session, select

    from profiles.model import parse_profile
    from profiles.synth import SYNTHETIC_LABEL, synthesize
    from service import store
    from service.db.tables import ApiToken

    _in_range("--n", n, 1, 2_000_000)
    engine = _engine()
    population = synthesize(n, seed)
    samples = sorted((Path(__file__).resolve().parent.parent / "profiles" / "samples").glob("*.json"))
    with Session(engine) as session:
        created = 0
        for i, record in enumerate(population.records()):
            _, changed = store.upsert_enterprise(session, profile=parse_profile(record))
            created += changed
            if i % 1000 == 999:
                session.commit()
        for path in samples:
            _, changed = store.upsert_enterprise(session, profile=parse_profile(_json.loads(path.read_text("utf-8"))))
            created += changed
        session.commit()
        lines = []
        if not session.exec(select(ApiToken).where(ApiToken.label.startswith("演示"))).first():  # type: ignore[attr-defined]
            first = parse_profile(_json.loads(samples[0].read_text("utf-8"))).uscc
            for role, label, uscc in (("admin", "演示管理员", None), ("staff", "演示坐席", None),
                                      ("enterprise", "演示企业", first)):
                secret, _ = store.create_token(session, role=role, label=label, uscc=uscc)
                lines.append(f"  {label}（{role}{'，' + uscc if uscc else ''}）：{secret}")
            session.commit()
    typer.echo(f"已载入 {n} 家{SYNTHETIC_LABEL}和 {len(samples)} 家示例企业（{created} 条有变化）")
    if lines:
        typer.echo("演示令牌（只显示这一次）：\n" + "\n".join(lines))
        token_file = Path(get_settings_data_dir()) / "demo-tokens.txt"
        token_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        typer.echo(f"（已保存到 {token_file}）")


def get_settings_data_dir() -> Path:
    from service.settings import get_settings

    return get_settings().data_dir


@demo_app.callback()
def demo(
    ctx: typer.Context,
    as_of: Annotated[str | None, typer.Option("--as-of", help="评估日期 YYYY-MM-DD")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="每家企业只列前5项")] = False,
) -> None:
    """演示：为 profiles/samples/ 中的示例企业匹配政策套餐。"""
    if ctx.invoked_subcommand is not None:
        return
    from profiles.features import derive
    from profiles.model import parse_profile
    from service.bootstrap import get_catalog, get_matcher
    from service.cli.report import render_match

    samples = sorted((Path(__file__).resolve().parent.parent / "profiles" / "samples").glob("*.json"))
    when = _as_of(as_of)
    typer.echo(f"政策目录：{len(get_catalog())} 条政策（{get_catalog().version}），评估日期 {when}")
    typer.echo("以下示例企业为虚构样本，仅用于演示。\n")
    for path in samples:
        profile = parse_profile(json.loads(path.read_text(encoding="utf-8")))
        result = get_matcher().match(derive(profile, when), top=5 if brief else 8)
        if brief:
            ent = result["enterprise"]
            titles = "；".join(e["title"] for e in result["package"])
            typer.echo(f"■ {ent['name']}（{', '.join(ent['tags'][:3])}）→ {titles}")
        else:
            typer.echo(render_match(result))
            typer.echo("")


tokens_app = typer.Typer(help="访问令牌：创建、吊销、列表", no_args_is_help=True)
enterprises_app = typer.Typer(help="企业画像：批量导入", no_args_is_help=True)
db_app = typer.Typer(help="数据库：迁移", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
app.add_typer(enterprises_app, name="enterprises")
app.add_typer(db_app, name="db")


def _engine():  # type: ignore[no-untyped-def]
    from service.db.migrate import upgrade
    from service.db.tables import make_engine
    from service.settings import get_settings

    engine = make_engine(get_settings().database_url)
    upgrade(engine)
    return engine


@db_app.command("upgrade")
def db_upgrade() -> None:
    """把数据库结构迁移到最新版本（Alembic）。"""
    from service.settings import get_settings

    _engine()
    typer.echo(f"数据库已是最新结构：{get_settings().database_url.split('@')[-1]}")


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option("--role", help="enterprise / staff / admin")],
    label: Annotated[str, typer.Option("--label", help="令牌用途或持有人，如“12345坐席01”")],
    uscc: Annotated[str | None, typer.Option("--uscc", help="企业令牌绑定的统一社会信用代码")] = None,
    days: Annotated[int | None, typer.Option("--days", help="有效天数，默认长期有效")] = None,
) -> None:
    """创建访问令牌（只显示一次，库中仅存哈希）。"""
    import datetime as dt

    from sqlmodel import Session

    from profiles.uscc import UsccError, normalize_uscc
    from service import store

    if uscc is not None:
        try:
            uscc = normalize_uscc(uscc)
        except UsccError as exc:
            fail(f"--uscc：{exc}")
    if days is not None:
        _in_range("--days", days, 1, 3650)
    if not label.strip() or len(label) > 80:
        fail("--label 不能为空，且不超过80字")
    if store.unstorable(label):  # bytes that are not UTF-8 in argv arrive as lone surrogates
        fail(f"--label：{store.unstorable(label)[1]}")  # type: ignore[index]
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days) if days else None
    with Session(_engine()) as session:
        try:
            secret, row = store.create_token(session, role=role, label=label.strip(), uscc=uscc, expires_at=expires)
        except ValueError as exc:
            fail(str(exc))
        session.commit()
        typer.echo(f"令牌 #{row.id}（{role}{'，绑定' + uscc if uscc else ''}）：{secret}")
        typer.echo("请妥善保存：令牌只显示这一次。", err=True)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="令牌编号（tokens list 可查）")]) -> None:
    """吊销令牌，立即失效。"""
    from sqlmodel import Session

    from service import store

    with Session(_engine()) as session:
        if not store.revoke_token(session, token_id=token_id):
            fail(f"令牌 #{token_id} 不存在或已吊销")
        session.commit()
    typer.echo(f"令牌 #{token_id} 已吊销")


@tokens_app.command("list")
def tokens_list() -> None:
    """列出令牌（不显示令牌本身）。"""
    from sqlmodel import Session

    from service import store

    with Session(_engine()) as session:
        for t in store.list_tokens(session):
            state = "已吊销" if t.revoked_at else ("长期有效" if not t.expires_at else f"有效至{t.expires_at:%Y-%m-%d}")
            typer.echo(f"#{t.id}\t{t.role}\t{t.uscc or '-'}\t{t.label}\t{state}")


@enterprises_app.command("import")
def enterprises_import(
    path: Annotated[Path, typer.Argument(help="CSV（表头为字段名）或 JSONL 文件")],
    errors: Annotated[Path | None, typer.Option("--errors", help="被拒行及原因的输出文件")] = None,
) -> None:
    """批量导入企业画像：逐行校验，有效行入库，无效行连同原因写入错误文件。"""
    from service.app.importer import import_file

    if not path.exists():
        fail(f"找不到文件 {path}")
    try:
        report = import_file(_engine(), path, errors_path=errors)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(f"共 {report.rows} 行：新增 {report.created}，更新 {report.updated}，未变 {report.unchanged}，"
               f"拒绝 {report.rejected}（原因见 {report.errors_file}）")
    if report.rejected:
        raise typer.Exit(1)


batch_app = typer.Typer(help="夜间批处理：为全部企业评分，找出新增推荐，写入待推送队列", no_args_is_help=True)
push_app = typer.Typer(help="推送：投递待推送消息（webhook / JSONL 文件），死信重试，拒收设置", no_args_is_help=True)
app.add_typer(batch_app, name="batch")
app.add_typer(push_app, name="push")


def _writer_engine():  # type: ignore[no-untyped-def]
    """The schema migrated, then an engine whose SQLite transactions take the write lock up front."""
    from service.push.delivery import writer_engine
    from service.settings import get_settings

    _engine().dispose()
    return writer_engine(get_settings().database_url)


@batch_app.command("run")
def batch_run(
    as_of: Annotated[str | None, typer.Option("--as-of", help="评估日期 YYYY-MM-DD，默认今天")] = None,
    engine: Annotated[str, typer.Option("--engine", help="评分引擎：local（本机，可多进程）或 spark（PySpark）")] = "local",
    workers: Annotated[int, typer.Option("--workers", help="评分进程数（spark：local[N]）")] = 1,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress",
                                                  help="进度条（默认：终端显示进度条，否则输出日志行）")] = None,
) -> None:
    """为全部企业评分（跳过画像与政策目录均未变化的企业），写入匹配快照和待推送消息，并打印运行报告。"""
    from service.batch.run import ENGINES, BatchError, render_report, run_batch
    from service.settings import get_settings

    when = _as_of(as_of)
    if engine not in ENGINES:
        fail(f"--engine 应为 {'、'.join(ENGINES)} 之一，收到“{engine}”")
    _in_range("--workers", workers, 1, 64)
    db = _writer_engine()
    try:
        run = run_batch(db, get_settings(), as_of=when, engine_kind=engine, workers=workers, progress=progress,
                        echo=lambda line: typer.echo(line, err=True))
    except BatchError as exc:
        fail(str(exc), 1)
    typer.echo(render_report(run))


@batch_app.command("status")
def batch_status(
    run_id: Annotated[int | None, typer.Option("--run", help="显示某次运行的完整报告")] = None,
    limit: Annotated[int, typer.Option("--limit", help="列出最近N次运行")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """列出最近的批处理运行（状态、时间、评分与推送数量）。"""
    from sqlmodel import Session

    from service.batch.run import STATUS_LABELS, quarantine_lines, recent_runs, render_report
    from service.db.tables import BatchRun

    _in_range("--limit", limit, 1, 1000)
    db = _engine()
    if run_id is not None:
        with Session(db) as session:
            run = session.get(BatchRun, run_id)
        if run is None:
            fail(f"--run：批处理 #{run_id} 不存在")
        if as_json:
            _emit(run.model_dump(mode="json"))
        else:
            typer.echo(render_report(run))
        return
    runs = recent_runs(db, limit)
    if as_json:
        _emit({"runs": [r.model_dump(mode="json") for r in runs]})
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


@push_app.command("deliver")
def push_deliver(
    channel: Annotated[str | None, typer.Option("--channel", help="webhook 或 file（默认 POLICYFIT_PUSH_CHANNEL）")] = None,
    url: Annotated[str | None, typer.Option("--url", help="webhook 地址（默认 POLICYFIT_PUSH_WEBHOOK_URL）")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="file 渠道的 JSONL 文件（默认 POLICYFIT_PUSH_EXPORT_PATH）")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="等待退避与租约，直到没有待投递消息")] = False,
) -> None:
    """投递待推送消息：租约认领，幂等键，失败指数退避，多次失败转为死信。"""
    from service.push.delivery import PushConfigError, deliver, make_channel, outbox_counts
    from service.settings import get_settings

    settings = get_settings()
    try:
        sender = make_channel(settings, channel=channel, url=url, out=out)
    except PushConfigError as exc:
        fail(str(exc))
    db = _writer_engine()
    report = deliver(db, settings, sender, wait=wait, say=lambda line: typer.echo(line, err=True))
    counts = outbox_counts(db)
    typer.echo(f"已投递 {report.delivered}，失败 {report.failed}（其中转为死信 {report.dead}）；"
               f"队列：待投递 {counts.get('pending', 0)}，已投递 {counts.get('delivered', 0)}，死信 {counts.get('dead', 0)}")


@push_app.command("retry-dead")
def push_retry_dead(
    uscc: Annotated[str | None, typer.Option("--uscc", help="只重试这家企业的死信")] = None,
) -> None:
    """把死信重新放回待投递队列（尝试次数清零）。"""
    from service.push.delivery import retry_dead

    code = _uscc_arg(uscc, "--uscc") if uscc is not None else None
    n = retry_dead(_writer_engine(), uscc=code)
    typer.echo(f"已将 {n} 条死信放回待投递队列")


@push_app.command("status")
def push_status() -> None:
    """待推送队列：各状态数量与最近的死信。"""
    from service.push.delivery import dead_letters, outbox_counts

    db = _engine()
    counts = outbox_counts(db)
    typer.echo(f"待投递 {counts.get('pending', 0)}，已投递 {counts.get('delivered', 0)}，死信 {counts.get('dead', 0)}")
    for key, attempts, error in dead_letters(db):
        typer.echo(f"  死信 {key}：尝试 {attempts} 次，最后错误：{error or '-'}")


def _uscc_arg(value: str, name: str = "USCC") -> str:
    """A USCC given on the command line, normalised; exit 2 naming the argument when invalid."""
    from profiles.uscc import UsccError, normalize_uscc

    try:
        return normalize_uscc(value)
    except UsccError as exc:
        fail(f"{name}（统一社会信用代码）：{exc}")


def _opt(uscc: str, opted_out: bool) -> None:
    from service.push.delivery import set_opt_out

    code = _uscc_arg(uscc)
    if not set_opt_out(_writer_engine(), uscc=code, opted_out=opted_out):
        fail(f"企业 {code} 不存在")
    typer.echo(f"企业 {code} {'已拒收推送' if opted_out else '已恢复接收推送'}")


@push_app.command("opt-out")
def push_opt_out(uscc: Annotated[str, typer.Argument(help="统一社会信用代码")]) -> None:
    """企业拒收推送：此后批处理不再为其生成消息。"""
    _opt(uscc, True)


@push_app.command("opt-in")
def push_opt_in(uscc: Annotated[str, typer.Argument(help="统一社会信用代码")]) -> None:
    """企业恢复接收推送。"""
    _opt(uscc, False)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="工作进程数")] = 2,
) -> None:
    """启动 HTTP 服务（uvicorn）。超时与连接上限见 README “Timeouts and slow clients”（POLICYFIT_HEADER_TIMEOUT_SECONDS 等）。"""
    _in_range("--port", port, 1, 65535)
    _in_range("--workers", workers, 1, 16)
    # first of all: the workers' Prometheus counters go to files in a shared directory (multiprocess
    # mode), which prometheus_client only honours if the variable is set before it is imported
    from service.http.serving import metrics_directory, uvicorn_options

    with metrics_directory():
        import uvicorn

        from service.bootstrap import sync_catalog
        from service.settings import get_settings

        settings = get_settings()
        engine = _engine()  # migrate once, before the workers start
        sync_catalog(engine, settings)  # and load the catalog once: workers then find nothing to write
        engine.dispose()
        base = f"http://{host}:{port}"
        typer.echo(f"policyfit 服务已启动（{workers}个工作进程）：\n"
                   f"  热线工作台  {base}/console（用工作人员令牌登录）\n"
                   f"  政策计算器  {base}/calculator（无需登录）\n"
                   f"  接口文档    {base}/docs\n"
                   f"  运维        {base}/readyz · {base}/metrics")
        uvicorn.run("service.asgi:app", host=host, port=port, workers=workers, log_level="warning",
                    **uvicorn_options(settings))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
