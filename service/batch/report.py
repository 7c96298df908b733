"""The run report (accumulated chunk by chunk, saved with each chunk) and its text for ``batch run`` /
``batch status``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from matching.batch import POSSIBLE
from profiles.columns import code_table
from service.batch.scoring import Quarantined
from service.db.tables import BatchRun

QUARANTINE_LISTED = 1000  # quarantined rows listed by USCC and reason in a run report; more are counted


@dataclass
class Report:
    """The run report, accumulated chunk by chunk and saved with each chunk."""

    data: dict[str, Any]

    @classmethod
    def start(cls, *, engine_kind: str, workers: int, total: int, todo: int) -> Report:
        return cls({"engine": engine_kind, "workers": workers,
                    "enterprises": {"stored": total, "to_score": todo, "scored": 0, "skipped": total - todo,
                                    "opted_out": 0, "quarantined": 0},
                    "quarantined": [],
                    "items": {"offered": 0, "new": 0, "repeated": 0, "held": 0, "released": 0, "possible": 0,
                              "reminders": 0},
                    "messages": 0, "chunks": 0, "by_policy": {}, "by_region": {}, "by_size": {},
                    "value": {"value_wan": 0.0, "firms_valued": 0},
                    "timings": {"load": 0.0, "rules": 0.0, "ranking": 0.0, "write": 0.0}})

    def add_timings(self, timings: dict[str, float]) -> None:
        for k, v in timings.items():
            self.data["timings"][k] = round(self.data["timings"].get(k, 0.0) + v, 3)

    def quarantine(self, rows: Quarantined) -> None:
        """Rows skipped because they cannot be scored: counted, and listed (up to QUARANTINE_LISTED)."""
        if not rows:
            return
        self.data["enterprises"]["quarantined"] += len(rows)
        listed = self.data["quarantined"]
        listed.extend(rows[:max(0, QUARANTINE_LISTED - len(listed))])

    def released(self, queued: int, released: int) -> None:
        """Held items sent before the chunks (:meth:`service.push.outbox.OutboxWriter.release_held`)."""
        self.data["messages"] += queued
        self.data["items"]["released"] += released

    def reminded(self, n: int) -> None:
        """Reminders recorded in a chunk (certificates ending soon: once per firm, code and last day)."""
        self.data["items"]["reminders"] = self.data["items"].get("reminders", 0) + n

    def uptake(self, recorded: int, queued: int, held: int) -> None:
        """Uptake reminders recorded after the chunks (应享未享: told, not acted on), their messages, and how
        many of them the weekly cap (or this run's own message) held back."""
        items = self.data["items"]
        items["uptake_reminders"] = items.get("uptake_reminders", 0) + recorded
        items["held"] += held
        self.data["messages"] += queued

    def _bump(self, section: str, key: str, field_name: str, by: int) -> None:
        if by:
            entry = self.data[section].setdefault(key, {})
            entry[field_name] = entry.get(field_name, 0) + int(by)

    def _add_value(self, section: dict[str, Any], key: str | None, cents: int, firms: int) -> None:
        """Add ``cents`` (0.01 万元) and ``firms`` valued to ``section[key]`` (the run's total when key is None):
        whole hundredths, so the totals are exact sums of the pairs' two-decimal values in any chunking."""
        if not cents and not firms:
            return
        entry = section if key is None else section.setdefault(key, {})
        entry["value_wan"] = round((round(entry.get("value_wan", 0.0) * 100) + int(cents)) / 100, 2)
        entry["firms_valued"] = entry.get("firms_valued", 0) + int(firms)

    def _account_value(self, offered: pd.DataFrame, region: pd.Series, size: pd.Series) -> None:
        """The counted yearly value (``value_wan`` of the offered pairs: savings only, one per exclusive group and
        firm, as :func:`matching.batch.score_batch` emits it) by policy, region and size; a firm is *valued*
        when its offered items count some value (> 0)."""
        if "value_wan" not in offered.columns or offered.empty:
            return
        value = offered["value_wan"].to_numpy(dtype=np.float64, na_value=np.nan)
        has = np.isfinite(value) & (value > 0)
        if not has.any():
            return
        pairs = pd.DataFrame({"uscc": offered["uscc"].to_numpy()[has], "policy_id": offered["policy_id"].to_numpy()[has],
                              "cents": np.rint(value[has] * 100).astype(np.int64)})
        for pid, part in pairs.groupby("policy_id", sort=False)["cents"]:
            self._add_value(self.data["by_policy"], str(pid), int(part.sum()), len(part))
        firms = pairs.groupby("uscc", sort=False)["cents"].sum()
        self._add_value(self.data["value"], None, int(firms.sum()), len(firms))
        for key, series in (("by_region", region), ("by_size", size)):
            labels = series.reindex(firms.index).fillna("未知").to_numpy()
            for label, part in firms.groupby(labels):
                self._add_value(self.data[key], str(label), int(part.sum()), len(part))

    def account(self, meta: pd.DataFrame, results: pd.DataFrame, offered: pd.DataFrame, inserted: pd.DataFrame,
                opted: set[str], queued: int, held: int, released: int, withheld: pd.DataFrame | None = None) -> None:
        """One written chunk: firms scored, items offered / new / repeated / held / released / withheld
        (news of a policy already granted or refused for the firm: not pushed), messages, by policy, region and
        size."""
        d = self.data
        if withheld is not None and not withheld.empty:
            d["items"]["decided"] = d["items"].get("decided", 0) + len(withheld)
            for pid, n in withheld["policy_id"].value_counts().items():
                self._bump("by_policy", str(pid), "decided", int(n))
        d["chunks"] += 1
        d["messages"] += queued
        d["enterprises"]["scored"] += len(meta)
        d["enterprises"]["opted_out"] += len(opted)
        d["items"]["offered"] += len(offered)
        d["items"]["new"] += len(inserted)
        d["items"]["repeated"] += len(offered) - len(inserted) - (0 if withheld is None else len(withheld))
        d["items"]["held"] += held
        d["items"]["released"] += released
        d["items"]["possible"] += int((results["status"] == POSSIBLE).sum())
        for pid, n in offered["policy_id"].value_counts().items():
            self._bump("by_policy", str(pid), "offered", int(n))
        for pid, n in inserted["policy_id"].value_counts().items():
            self._bump("by_policy", str(pid), "new", int(n))
        told = inserted if withheld is None or withheld.empty else pd.concat([inserted, withheld])
        repeated = offered[~offered.set_index(["uscc", "policy_id"]).index.isin(
            told.set_index(["uscc", "policy_id"]).index)] if not told.empty else offered
        for pid, n in repeated["policy_id"].value_counts().items():
            self._bump("by_policy", str(pid), "repeated", int(n))
        region = meta.set_index("uscc")["region"].fillna("未知")
        sizes = results.drop_duplicates("uscc").set_index("uscc")["size"]
        size_names = code_table("size", unknown="未知", labels=True)
        size_of = pd.Series([size_names[int(s) + 1] for s in sizes.to_numpy()], index=sizes.index, dtype=object)
        size_all = size_of.reindex(meta["uscc"]).fillna("未知")
        new_firms = inserted["uscc"].value_counts()
        for key, series in (("by_region", region), ("by_size", size_all)):
            for label, n in series.value_counts().items():
                self._bump(key, str(label), "scored", int(n))
            for label, n in series.reindex(new_firms.index).value_counts().items():
                self._bump(key, str(label), "firms_with_new", int(n))
            for label, n in new_firms.groupby(series.reindex(new_firms.index).to_numpy()).sum().items():
                self._bump(key, str(label), "new_items", int(n))
        self._account_value(offered, region, size_all)


# ---- status and report text ---------------------------------------------------------------------------------
def recent_runs(engine: Engine, limit: int = 10) -> list[BatchRun]:
    with Session(engine) as session:
        return list(session.exec(select(BatchRun).order_by(col(BatchRun.id).desc()).limit(limit)))


STATUS_LABELS = {"running": "运行中", "succeeded": "成功", "failed": "失败", "interrupted": "中断"}


def quarantine_lines(run: BatchRun, *, limit: int | None = None) -> list[str]:
    """The run's quarantined rows (USCC and reason), for ``batch run`` / ``batch status``; none = no lines."""
    d = run.report or {}
    count = int(d.get("enterprises", {}).get("quarantined", 0))
    if not count:
        return []
    listed: list[dict[str, str]] = d.get("quarantined", [])
    shown = listed if limit is None else listed[:limit]
    lines = [f"隔离（画像无法评分，本次跳过，修正后下次运行自动评分）：{count} 家"]
    lines += [f"  {q.get('uscc', '')}  {q.get('reason', '')}" for q in shown]
    if count > len(shown):
        more = f"，完整列表见 policyfit batch status --run {run.id}" if len(listed) > len(shown) else ""
        lines.append(f"  ……另有 {count - len(shown)} 家未列出{more}")
    return lines


def render_report(run: BatchRun, *, top: int = 10) -> str:
    d = run.report or {}
    ent, items = d.get("enterprises", {}), d.get("items", {})
    lines = [
        f"批处理 #{run.id}（{STATUS_LABELS.get(run.status, run.status)}）评估日期 {run.as_of} · 目录 {run.catalog_version}"
        f" · 引擎 {d.get('engine', '-')}",
        f"企业：共 {ent.get('stored', 0)}，评分 {ent.get('scored', 0)}，未变跳过 {ent.get('skipped', 0)}，"
        f"拒收推送 {ent.get('opted_out', 0)}",
        f"推荐：在套餐中 {items.get('offered', 0)}，新增 {items.get('new', 0)}，重复（已推送过）{items.get('repeated', 0)}，"
        f"因每周上限暂缓 {items.get('held', 0)}，释放暂缓 {items.get('released', 0)}；可能符合 {items.get('possible', 0)}"
        + (f"；资质到期提醒 {items['reminders']}" if items.get("reminders") else "")
        + (f"；已有办理结果不再推送 {items['decided']}" if items.get("decided") else "")
        + (f"；应享未享提醒 {items['uptake_reminders']}" if items.get("uptake_reminders") else ""),
        f"消息：{d.get('messages', 0)} 条（每家企业每次最多一条）",
        *quarantine_lines(run),
    ]
    timings = d.get("timings", {})
    if timings:
        lines.append("用时（秒）：" + "，".join(f"{k} {v:.1f}" for k, v in timings.items()))
    by_policy = d.get("by_policy", {})
    if by_policy:
        lines.append(f"按政策（新增最多的前{top}项）：")
        ranked = sorted(by_policy.items(), key=lambda kv: (-kv[1].get("new", 0), -kv[1].get("offered", 0), kv[0]))
        for pid, c in ranked[:top]:
            lines.append(f"  {pid:<40} 新增 {c.get('new', 0):>7}  重复 {c.get('repeated', 0):>7}  套餐 {c.get('offered', 0):>7}"
                         + (f"  估计价值 {_wan(c['value_wan'])} 万元" if c.get("value_wan") else ""))
    lines += value_lines(d, top=top)
    for key, title in (("by_region", "按区县"), ("by_size", "按规模")):
        part = d.get(key, {})
        if part:
            lines.append(f"{title}：" + "；".join(
                f"{k} 评分{v.get('scored', 0)}/新增{v.get('new_items', 0)}/估计价值{_wan(v.get('value_wan', 0.0))}万元"
                for k, v in sorted(part.items(), key=lambda kv: -kv[1].get("scored", 0))))
    return "\n".join(lines)


def _wan(value: float) -> str:
    return f"{value:,.2f}"


def value_lines(d: dict[str, Any], *, top: int = 10) -> list[str]:
    """The estimated yearly value of what this run's scored firms are offered (估计价值): the total and per policy
    (largest first); per region and size it is on the 按区县 / 按规模 lines. Only savings count (a deferral, 缓缴, is no saving; an advantage that is no
    money has no number), each exclusive group once per firm — as a package's summary.estimated_value_wan."""
    total = d.get("value")
    if total is None:  # a report written before values were counted
        return []
    lines = [f"估计价值（本次评分企业，年，万元；仅计可估算的减免与补贴，同一互斥组每家只计一次，缓缴不计）：合计 "
             f"{_wan(total.get('value_wan', 0.0))} 万元，{total.get('firms_valued', 0)} 家企业有估值"]
    valued = [(pid, c) for pid, c in d.get("by_policy", {}).items() if c.get("value_wan")]
    if valued:
        lines.append(f"按政策估计价值（前{top}项）：")
        for pid, c in sorted(valued, key=lambda kv: (-kv[1]["value_wan"], kv[0]))[:top]:
            lines.append(f"  {pid:<40} 估计价值 {_wan(c['value_wan']):>14} 万元  {c.get('firms_valued', 0):>7} 家")
    return lines
