"""``policyfit profiles synth`` and ``policyfit demo [seed]``: synthetic enterprises and the demonstration."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from service.cmdline import in_range, parse_as_of, say

#: the fictitious sample enterprises shipped with the profiles package
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "profiles" / "samples"


def samples() -> list[Path]:
    return sorted(SAMPLES_DIR.glob("*.json"))

app = typer.Typer(help="企业画像：合成样本", no_args_is_help=True)
demo_app = typer.Typer(help="演示：示例企业的政策套餐；demo seed 载入合成样本和试用令牌", invoke_without_command=True)


@app.command("synth")
def profiles_synth(
    n: Annotated[int, typer.Option("--n", help="企业数量（1–5,000,000）")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="随机种子（相同种子结果相同）")] = 20230419,
    out: Annotated[Path | None, typer.Option("--out", help="输出JSONL文件，默认标准输出")] = None,
) -> None:
    """生成合成企业画像（JSONL，名称带“（合成）”标记，非真实企业）。"""
    from profiles.synth import SYNTHETIC_LABEL, synthesize

    in_range("--n", n, 1, 5_000_000)
    population = synthesize(n, seed)
    stream = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        for record in population.records():
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out:
            stream.close()
            typer.echo(f"已生成 {n} 家{SYNTHETIC_LABEL} → {out}", err=True)


@demo_app.command("seed")
def demo_seed(
    n: Annotated[int, typer.Option("--n", help="合成企业数量")] = 5000,
    seed: Annotated[int, typer.Option("--seed")] = 20230419,
) -> None:
    """载入合成企业样本和试用令牌（企业名称带“（合成）”，非真实企业）。"""
    from sqlmodel import Session

    from profiles.model import parse_profile
    from profiles.synth import SYNTHETIC_LABEL, synthesize
    from service.bootstrap import migrated_engine
    from service.settings import get_settings
    from service.store.enterprises import upsert_enterprise
    from service.store.tokens import create_token, has_token_labelled

    in_range("--n", n, 1, 2_000_000)
    engine = migrated_engine()
    population = synthesize(n, seed)
    paths = samples()
    with Session(engine) as session:
        created = 0
        for i, record in enumerate(population.records()):
            _, changed = upsert_enterprise(session, profile=parse_profile(record))
            created += changed
            if i % 1000 == 999:
                session.commit()
        for path in paths:
            _, changed = upsert_enterprise(session, profile=parse_profile(json.loads(path.read_text("utf-8"))))
            created += changed
        session.commit()
        lines = []
        if not has_token_labelled(session, prefix="演示"):
            first = parse_profile(json.loads(paths[0].read_text("utf-8"))).uscc
            for role, label, uscc in (("admin", "演示管理员", None), ("staff", "演示坐席", None),
                                      ("enterprise", "演示企业", first)):
                secret, _ = create_token(session, role=role, label=label, uscc=uscc)
                lines.append(f"  {label}（{role}{'，' + uscc if uscc else ''}）：{secret}")
            session.commit()
    typer.echo(f"已载入 {n} 家{SYNTHETIC_LABEL}和 {len(paths)} 家示例企业（{created} 条有变化）")
    if lines:
        typer.echo("演示令牌（只显示这一次）：\n" + "\n".join(lines))
        token_file = get_settings().data_dir / "demo-tokens.txt"
        token_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        typer.echo(f"（已保存到 {token_file}）")


@demo_app.callback()
def demo(
    ctx: typer.Context,
    as_of_: Annotated[str | None, typer.Option("--as-of", help="评估日期 YYYY-MM-DD")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="每家企业只列前5项")] = False,
) -> None:
    """演示：为 profiles/samples/ 中的示例企业匹配政策套餐。"""
    if ctx.invoked_subcommand is not None:
        return
    from profiles.features import derive
    from profiles.model import parse_profile
    from service.bootstrap import catalog_version, get_catalog, get_matcher
    from service.cli.report import render_match

    when = parse_as_of(as_of_)
    catalog = get_catalog()
    matcher = get_matcher(say=say)
    typer.echo(f"政策目录：{len(catalog)} 条政策（{catalog_version(catalog)}），评估日期 {when}")
    typer.echo("以下示例企业为虚构样本，仅用于演示。\n")
    for path in samples():
        profile = parse_profile(json.loads(path.read_text(encoding="utf-8")))
        result = matcher.match(derive(profile, when), top=5 if brief else 8)
        if brief:
            ent = result.enterprise
            titles = "；".join(e.title for e in result.package)
            typer.echo(f"■ {ent['name']}（{', '.join(ent['tags'][:3])}）→ {titles}")
        else:
            typer.echo(render_match(result))
            typer.echo("")
