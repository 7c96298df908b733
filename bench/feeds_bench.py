"""Departments' feeds at scale: ``python bench/feeds_bench.py [--n 100000] [--changed 1000] [--database-url URL]``.

In one process, over a fresh database (SQLite in a temporary directory, or an empty PostgreSQL schema of
``--database-url``):

1. the register's feed names ``n`` synthetic firms (Chinese headers, every firm created) — rows/s;
2. the tax bureau's feed of the same ``n`` firms (GBK, Chinese headers and wording; every firm updated) — rows/s;
3. the nightly batch scores everyone (:func:`service.batch.run.run_batch`): the full run;
4. the same tax file again — rows/s, nothing written — and the batch scores nobody;
5. the tax bureau's corrected file for the same day, in which ``changed`` firms have another 纳税信用级别 — rows/s —
   and the batch re-scores only those firms: the re-score time against the full run's;
6. a newer delta file (only those firms, a later date): the same firms again.

The catalog, matcher and scorer are prepared once (``prepare_s``) and shared by every run, so the runs compare
what they score and write.

Prints one JSON document (stdout) and a Chinese summary (stderr). ``--data-dir`` reuses an embedding cache.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("matching") is None:  # not installed: the tree this script is in
    sys.path.insert(0, str(ROOT))

AS_OF = dt.date(2026, 6, 30)  # the batch's day
REGISTERED_ON, TAX_ON, TAX_LATER_ON = dt.date(2026, 3, 1), dt.date(2026, 4, 15), dt.date(2026, 5, 15)
ENTITY = {"enterprise": "有限责任公司", "individual_business": "个体", "farmer_coop": "农民合作社", "branch": "分公司",
          "other": "其他"}
TAXPAYER = {"general": "增值税一般纳税人", "small_scale": "小规模纳税人"}
GRADES = ["A", "B", "M", "C", "D"]


def csv_line(cells: list[Any]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if c is None else c for c in cells])
    return buf.getvalue()


def write_feeds(records: list[dict[str, Any]], folder: Path, changed: int) -> dict[str, Path]:
    """The register's file (UTF-8), the tax file (GBK) and the later tax file with ``changed`` new grades."""
    reg = folder / "registration.csv"
    with reg.open("w", encoding="utf-8") as fh:
        fh.write(csv_line(["序号", "统一社会信用代码", "企业名称", "市场主体类型", "国民经济行业代码", "成立日期", "所属区县",
                           "经营范围", "登记机关"]))
        for i, r in enumerate(records, start=1):
            fh.write(csv_line([i, r["uscc"], r["name"], ENTITY[r.get("entity_type", "enterprise")],
                               r.get("industry_code"), r.get("established_on"), r.get("region"),
                               r.get("business_scope"), "徐州市市场监督管理局"]))

    def tax_file(path: Path, grades: list[str | None]) -> Path:
        with path.open("w", encoding="gbk") as fh:
            fh.write(csv_line(["纳税人识别号", "纳税人名称", "纳税人资格", "纳税信用级别", "月均销售额（万元）", "营业收入（万元）",
                               "主管税务机关"]))
            for r, grade in zip(records, grades, strict=True):
                fh.write(csv_line([r["uscc"], r["name"], TAXPAYER.get(r.get("taxpayer_type") or "", None),
                                   f"{grade}级" if grade else None, r.get("monthly_sales_wan"),
                                   r.get("annual_revenue_wan"), "国家税务总局徐州市税务局"]))
        return path

    grades = [r.get("tax_credit_grade") for r in records]
    later = list(grades)
    step = max(1, len(records) // max(1, changed))
    for i in range(0, len(records), step)[:changed]:
        later[i] = GRADES[(GRADES.index(later[i]) + 1) % len(GRADES)] if later[i] else "B"
    touched = [i for i, (a, b) in enumerate(zip(grades, later, strict=True)) if a != b]
    delta = folder / "tax_delta.csv"
    with delta.open("w", encoding="gbk") as fh:
        fh.write(csv_line(["纳税人识别号", "纳税信用级别"]))
        for i in touched:
            fh.write(csv_line([records[i]["uscc"], f"{grades[i] or 'A'}级"]))
    return {"registration": reg, "tax": tax_file(folder / "tax.csv", grades),
            "tax_corrected": tax_file(folder / "tax_corrected.csv", later), "tax_delta": delta}


@contextmanager
def database(url: str | None, folder: Path) -> Iterator[str]:
    if not url:
        yield f"sqlite:///{folder / 'feeds.db'}"
        return
    from service.db.tables import postgres_schema

    with postgres_schema(url, f"pf_feeds_bench_{os.getpid()}") as scoped:
        yield scoped


def timed_import(engine: Any, path: Path, source: str, as_of: dt.date) -> dict[str, Any]:
    from service.app.feeds import import_feed

    t0 = time.perf_counter()
    report = import_feed(engine, path, source=source, as_of=as_of, errors_path=path.with_suffix(".errors.jsonl"))
    wall = time.perf_counter() - t0
    return {"rows": report.rows, "created": report.created, "updated": report.updated, "unchanged": report.unchanged,
            "rejected": report.rejected, "facts_changed": report.facts_changed, "encoding": report.encoding,
            "wall_s": round(wall, 2), "rows_per_s": round(report.rows / wall) if wall else None}


def timed_batch(engine: Any, settings: Any, prepared: Any) -> dict[str, Any]:
    from service.batch.run import run_batch

    t0 = time.perf_counter()
    run = run_batch(engine, settings, as_of=AS_OF, progress=False, echo=lambda line: None, prepared=prepared)
    wall = time.perf_counter() - t0
    rep = run.report
    return {"status": run.status, "wall_s": round(wall, 2), "scored": rep["enterprises"]["scored"],
            "skipped": rep["enterprises"]["skipped"], "timings_s": rep["timings"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=100_000, help="firms in each feed (default 100000)")
    parser.add_argument("--changed", type=int, default=1_000, help="firms whose grade the later tax file changes")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--database-url", default=None, help="PostgreSQL server (an empty schema is used)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the service's data dir (embedding cache)")
    args = parser.parse_args(argv)

    from profiles.synth import synthesize
    from service.batch.candidates import prepare
    from service.db.migrate import upgrade
    from service.db.tables import make_engine
    from service.settings import Settings

    with tempfile.TemporaryDirectory(prefix="feeds-bench-") as tmp:
        folder = Path(tmp)
        records = list(synthesize(args.n, args.seed).records())
        paths = write_feeds(records, folder, args.changed)
        with database(args.database_url, folder) as url:
            extra = {"data_dir": args.data_dir} if args.data_dir else {}
            settings = Settings(database_url=url, **extra)
            engine = make_engine(url)
            upgrade(engine)
            out: dict[str, Any] = {"n": args.n, "changed": args.changed, "backend": engine.dialect.name,
                                   "load_avg_before": os.getloadavg()}
            out["registration"] = timed_import(engine, paths["registration"], "registration", REGISTERED_ON)
            out["tax"] = timed_import(engine, paths["tax"], "tax", TAX_ON)
            t0 = time.perf_counter()
            prepared = prepare(engine, settings, AS_OF)
            out["prepare_s"] = round(time.perf_counter() - t0, 2)
            out["full_run"] = timed_batch(engine, settings, prepared)
            out["tax_again"] = timed_import(engine, paths["tax"], "tax", TAX_ON)
            out["run_after_same_feed"] = timed_batch(engine, settings, prepared)
            out["tax_corrected"] = timed_import(engine, paths["tax_corrected"], "tax", TAX_ON)
            out["rescore_run"] = timed_batch(engine, settings, prepared)
            out["tax_delta"] = timed_import(engine, paths["tax_delta"], "tax", TAX_LATER_ON)
            out["delta_run"] = timed_batch(engine, settings, prepared)
            out["load_avg_after"] = os.getloadavg()
            engine.dispose()
    full, rescore = out["full_run"]["wall_s"], out["rescore_run"]["wall_s"]
    out["rescore_vs_full"] = round(rescore / full, 4) if full else None
    summary(out)
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return out


def summary(out: dict[str, Any]) -> None:
    def imp(label: str, key: str) -> str:
        r = out[key]
        return (f"{label}：{r['rows']} 行，{r['wall_s']} 秒，{r['rows_per_s']} 行/秒（新增 {r['created']}，更新 {r['updated']}，"
                f"未变 {r['unchanged']}，拒绝 {r['rejected']}）")

    def run(label: str, key: str) -> str:
        r = out[key]
        return f"{label}：评分 {r['scored']} 家，跳过 {r['skipped']} 家，{r['wall_s']} 秒"

    lines = [f"数据来源导入基准（{out['n']} 家企业，{out['backend']}，负载 {out['load_avg_before']}）",
             imp("市场监管（新建企业）", "registration"), imp("税务（GBK，更新每家企业）", "tax"),
             run("夜间批处理全量", "full_run"), imp("同一税务文件再导入", "tax_again"),
             run("再导入后的批处理", "run_after_same_feed"),
             imp(f"同日更正的税务文件（{out['changed']} 家信用级别变化）", "tax_corrected"),
             run("只重评变化的企业", "rescore_run"), f"重评耗时 / 全量耗时 = {out['rescore_vs_full']}",
             imp("较新日期的增量文件（同一批企业）", "tax_delta"), run("增量后的批处理", "delta_run"),
             f"（目录、匹配器与评分器准备一次：{out['prepare_s']} 秒，各次批处理共用）"]
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
