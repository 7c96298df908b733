"""What a pushed message says (issue 10, item 8): one message per firm, its items best first.

Each item says why the firm qualifies with its own values (the package's own why-line facts,
:func:`matching.package.leaf_facts`), how to apply, who leads, the estimated value where known and the
source in the plan; the message says where the firm reads its whole package.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from matching.freshness import reminder, seen_rows
from matching.package import benefit_of, estimate_value, leaf_facts, review_fields, value_fields
from matching.rules import LeafCache, trace_rule
from policies.rules import fields_of
from policies.schema import STRENGTHS, Policy
from profiles.columns import ProfileBatch, encode_profiles
from service.db.bulk import IN_LIST, table_of
from service.db.tables import Enterprise
from service.push.outcomes import UPTAKE_KIND, uptake_of
from service.push.reminders import reminder_of
from service.settings import Settings

log = logging.getLogger("policyfit.push")
PACKAGE_PATH = "/v1/enterprises/{uscc}/package"


def package_link(settings: Settings, uscc: str, *, news: bool = True) -> dict[str, str]:
    """Where the firm sees its whole package: ``POLICYFIT_PUBLIC_BASE_URL`` + the package path (the
    enterprise reads it with its own token), and one Chinese line saying so (``news``: the message lists new
    policies above the line; a reminder alone does not)."""
    path = PACKAGE_PATH.format(uscc=uscc)
    url = settings.public_base_url.rstrip("/") + path if settings.public_base_url else path
    above = "以上为新增政策；" if news else ""
    return {"package_url": url, "package_note": f"{above}贵企业的全部政策套餐（含需补充信息和差一个条件的政策）请查看：{url}"}


@dataclass(frozen=True)
class Firm:
    """One firm's rule record (stated and derived fields) and its row in an encoded batch (for traces)."""

    record: dict[str, Any]
    cache: LeafCache
    row: int

    @property
    def as_of(self) -> dt.date:
        day = self.cache.batch.as_of
        assert day is not None  # firm_records derives every batch for its day
        return day


def firm_records(conn: Connection, usccs: list[str], as_of: dt.date) -> dict[str, Firm]:
    """Each firm's rule record, read from its stored profile: what a message quotes as the firm's own
    values. Column-wise encoding; a profile that cannot be encoded is left out (its items then say why
    without values)."""
    e = table_of(Enterprise).c
    rows: list[tuple[str, str, str | None]] = []
    for i in range(0, len(usccs), IN_LIST):
        rows += [(str(u), p, v) for u, p, v in conn.execute(
            sa.select(e.uscc, sa.cast(e.profile, sa.Text), sa.cast(e.provenance, sa.Text))
            .where(e.uscc.in_(usccs[i:i + IN_LIST]))).all()]

    def encode(part: list[tuple[str, str, str | None]]) -> dict[str, Firm]:
        # as matching saw them on the day: a stale value or an expired certificate is never quoted
        seen = seen_rows([p for _, p, _ in part], [v for _, _, v in part], as_of)
        batch = ProfileBatch.from_frame(encode_profiles(seen.documents)).with_derived(as_of)
        cache = LeafCache(batch)
        return {u: Firm(batch.record(j), cache, j) for j, (u, _, _) in enumerate(part)}

    try:
        return encode(rows) if rows else {}
    except Exception:  # noqa: BLE001 (one bad profile must not silence the others' values)
        out: dict[str, Firm] = {}
        for row in rows:
            try:
                out.update(encode([row]))
            except Exception:  # noqa: BLE001
                log.warning("profile of %s could not be encoded for its message", row[0])
        return out


def item_text(policy: Policy) -> dict[str, Any]:
    """What every firm's item of this policy says: title, benefit, strength, how to apply, who leads, source."""
    return {"title": policy.title, "benefit": benefit_of(policy).description, "strength": policy.strength,
            "strength_label": STRENGTHS.get(policy.strength or "", None), "how_to_apply": policy.how_to_apply,
            "lead_departments": list(policy.lead_departments), "source_task": policy.source.task_no,
            "source_measure": policy.source.measure_no, "source_document": policy.source_document}


def item_for_firm(policy: Policy, firm: Firm | None) -> dict[str, Any]:
    """What this firm's item adds: one line on why it qualifies (its own values), the estimated yearly
    value where the catalog gives a formula and the firm's inputs are known, and one line to act on."""
    record = firm.record if firm is not None else None
    facts = _facts(policy, firm) if firm is not None else []
    if facts:
        why = f"贵企业{'，'.join(facts[:3])}，符合条件"
    elif record is not None:
        why = "本政策面向所有市场主体，贵企业符合条件"
    else:
        why = "按贵企业登记的画像判断符合条件"
    value = estimate_value(policy, firm.record, firm.as_of) if firm is not None else None
    kind = est.kind if (est := benefit_of(policy).estimate) else None
    assumption = value_fields(policy, value, firm.as_of)["value_assumption"] if value is not None and firm else None
    lead = "、".join(policy.lead_departments)
    worth = ""
    if value:
        worth = f"，可缓缴约{value:g}万元/年" if kind == "cash_flow" else f"，估算约{value:g}万元/年"
    line = f"{policy.title}：{why}{worth}。办理：{policy.how_to_apply.rstrip('。；')}（牵头部门：{lead}）。"
    return {"why": why, "estimated_value_wan": value, "value_kind": kind, "value_assumption": assumption,
            "line": line}


_FACTS: dict[tuple[Any, ...], list[str]] = {}


def _facts(policy: Policy, firm: Firm) -> list[str]:
    """The firm's own values that make the policy's rule hold (:func:`leaf_facts` of its trace),
    remembered per policy version and the values of the fields its rule reads (firms share them: a
    night's messages reuse a few thousand distinct lines)."""
    key = (policy.id, policy.version, firm.as_of if policy.params else None, *(_frozen(firm.record.get(f)) for f in fields_of(policy.rule)))
    hit = _FACTS.get(key)
    if hit is None:
        if len(_FACTS) > 200_000:
            _FACTS.clear()
        trace = trace_rule(policy.rule_at(firm.as_of), firm.cache, firm.row, firm.record)
        hit = _FACTS[key] = list(dict.fromkeys(leaf_facts(trace)))
    return hit


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass
class Composer:
    """Builds the messages of one batch run (``policies`` by id: the run's catalog)."""

    policies: dict[str, Policy]
    settings: Settings
    run_id: int
    as_of: dt.date
    catalog_version: str
    _texts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def messages(self, conn: Connection, items: pd.DataFrame,
                 names: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
        """(firm, its message payload) for every firm with items (columns uscc, idempotency_key,
        policy_id, policy_version, score)."""
        if items.empty:
            return []
        firms = firm_records(conn, sorted(set(items["uscc"])), self.as_of)
        return [(uscc, self.payload(uscc, names.get(uscc), entries)) for uscc, entries in self.entries(items, firms)]

    def entries(self, items: pd.DataFrame, firms: dict[str, Firm] | None = None,
                ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(firm, its message entries best first), firm by firm — one sort, no per-firm frames."""
        items = items.sort_values(["uscc", "score", "policy_id"], ascending=[True, False, True])
        current: str | None = None
        entries: list[dict[str, Any]] = []
        for uscc, key, pid, version, score in zip(items["uscc"].tolist(), items["idempotency_key"].tolist(),
                                                   items["policy_id"].tolist(), items["policy_version"].tolist(),
                                                   items["score"].tolist(), strict=True):
            if uscc != current:
                if current is not None:
                    yield current, entries
                current, entries = str(uscc), []
            found = reminder_of(str(pid), int(version))
            if found is not None:
                entries.append({"idempotency_key": key, **self.reminder_text(*found)})
                continue
            told = uptake_of(str(pid), int(version))
            if told is not None:
                entries.append({"idempotency_key": key, **self.uptake_text(*told)})
                continue
            entry: dict[str, Any] = {"idempotency_key": key, "policy_id": pid, "policy_version": int(version),
                                     "score": round(float(score), 6)}
            entry.update(self._policy_text(pid))
            policy = self.policies.get(pid)
            if policy is not None:
                entry.update(item_for_firm(policy, (firms or {}).get(str(uscc))))
            entries.append(entry)
        if current is not None:
            yield current, entries

    def _policy_text(self, policy_id: str) -> dict[str, Any]:
        hit = self._texts.get(policy_id)
        if hit is None:
            policy = self.policies.get(policy_id)
            if policy is None:
                hit = {}
            else:
                hit = {**item_text(policy), **review_fields(policy, self.as_of)}
            self._texts[policy_id] = hit
        return hit

    def reminder_text(self, code: str, valid_to: dt.date) -> dict[str, Any]:
        """A reminder entry: kind, code, label, valid_to, days_left (on this run's day), message and line."""
        item = reminder(code, valid_to, (valid_to - self.as_of).days)
        return {**item, "line": item["message"] + "。"}

    def uptake_text(self, policy_id: str, first_pushed: dt.date) -> dict[str, Any]:
        """An uptake reminder entry (应享未享: told on ``first_pushed``, no application since): kind, the policy,
        the day it was first pushed, message, how to apply, who leads, and one line."""
        policy = self.policies.get(policy_id)
        title = policy.title if policy is not None else policy_id
        message = (f"贵企业符合“{title}”的条件，{first_pushed.isoformat()}已推送告知，至今未见申请记录；"
                   "如已申请或不需要，请忽略本提醒")
        entry: dict[str, Any] = {"kind": UPTAKE_KIND, "policy_id": policy_id, "title": title,
                                 "first_pushed": first_pushed.isoformat(), "message": message}
        if policy is None:
            return {**entry, "line": message + "。"}
        lead = "、".join(policy.lead_departments)
        return {**entry, "policy_version": policy.version, "how_to_apply": policy.how_to_apply,
                "lead_departments": list(policy.lead_departments),
                "line": f"{message}。办理：{policy.how_to_apply.rstrip('。；')}（牵头部门：{lead}）。"}

    def payload(self, uscc: str, name: str | None, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """The message: its policy items (``items``) and, apart, its reminders (``reminders``: certificates
        ending soon; ``uptake_reminders``: policies told before and not yet taken up), with where the firm reads
        its whole package."""
        items = [e for e in entries if "kind" not in e]
        reminders = [e for e in entries if "kind" in e and e["kind"] != UPTAKE_KIND]
        uptake = [e for e in entries if e.get("kind") == UPTAKE_KIND]
        return {"type": "policy_package", "uscc": uscc, "name": name, "run_id": self.run_id,
                "as_of": self.as_of.isoformat(), "catalog_version": self.catalog_version, "items": items,
                "reminders": reminders, "uptake_reminders": uptake,
                **package_link(self.settings, uscc, news=bool(items))}
