"""The funnel of one policy, as pure arithmetic over per-firm facts (no database): what ``GET
/v1/policies/{id}/uptake`` and ``policyfit outcomes report`` count, and the per-record reference the SQL that
produces the facts is tested against.

Each stage counts firms by its own fact (a firm no longer eligible that was told or granted still counts where
it was told or granted; the stages are not nested):

- eligible: the latest nightly snapshot offers the policy to the firm;
- pushed: a push item of the policy reached the firm (its message was delivered);
- viewed: the firm said it viewed the policy (feedback ``viewed``);
- applied / granted / refused: the firm's latest outcome — its latest event among the outcomes recorded for it
  (applied, granted, refused) and its own feedback ``applied`` (an application on the day it was given, in the
  service's time zone), latest by day; on one day a decision comes after an application, and of two decisions the one recorded
  last counts. ``applied`` is thus an application still undecided;
- not_yet_granted (应享未享): eligible, and neither granted nor refused with a decision day within the period
  (``POLICYFIT_UPTAKE_PERIOD_DAYS``, default 365) ending on the day asked — a firm waiting on its application is
  still 应享未享, and so is a firm whose last grant is older than the period (a yearly benefit is due again).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from profiles.fields import FIELDS

#: The outcomes a department (or the firm's own application) records, with their Chinese names.
OUTCOMES: dict[str, str] = {"applied": "已申请", "granted": "已兑现", "refused": "未获批准"}
DECIDED = ("granted", "refused")
#: The counts of a funnel, in order.
STAGES = ("eligible", "pushed", "viewed", "applied", "granted", "refused", "not_yet_granted")
UNKNOWN = "未知"


@dataclass(frozen=True)
class FirmFacts:
    """What the funnel needs to know of one firm and one policy."""

    region: str | None
    size: str | None  # large | medium | small | micro, None unknown
    eligible: bool
    pushed: bool
    viewed: bool
    state: str | None  # the latest outcome: applied | granted | refused; None when there is none
    decided_recently: bool  # granted or refused with a decision day within the period

    def stages(self) -> dict[str, bool]:
        return {"eligible": self.eligible, "pushed": self.pushed, "viewed": self.viewed,
                "applied": self.state == "applied", "granted": self.state == "granted",
                "refused": self.state == "refused", "not_yet_granted": self.eligible and not self.decided_recently}


def _zero() -> dict[str, int]:
    return dict.fromkeys(STAGES, 0)


def region_label(region: str | None) -> str:
    return region or UNKNOWN


def size_label(size: str | None) -> str:
    return FIELDS["size"].vocabulary.get(size or "", UNKNOWN)


def _ordered(counts: dict[str, dict[str, int]], order: Sequence[str]) -> dict[str, dict[str, int]]:
    rank = {label: i for i, label in enumerate(order)}
    return {k: counts[k] for k in sorted(counts, key=lambda k: (rank.get(k, len(rank)), k))}


def funnel(groups: Iterable[tuple[FirmFacts, int]]) -> dict[str, Any]:
    """The stage counts of firms given as (facts, how many firms share them), in total and by region and size
    (Chinese labels, 未知 for unknown; a region or size appears when one of its firms counts in any stage)."""
    cells: dict[tuple[str | None, str | None], dict[str, int]] = {}
    for facts, n in groups:
        cell = cells.setdefault((facts.region, facts.size), _zero())
        for stage, yes in facts.stages().items():
            cell[stage] += n if yes and n > 0 else 0
    return _rolled_up((region, size, cell) for (region, size), cell in cells.items())


def funnel_from_stages(rows: Iterable[tuple[str, str | None, str | None, int]]) -> dict[str, Any]:
    """The same answer as :func:`funnel` from per-stage counts — (stage, region, size, firms), the stages of
    :data:`STAGES` but ``not_yet_granted``, plus ``eligible_decided`` (eligible, and granted or refused within the
    period) — as the database counts them: not_yet_granted = eligible − eligible_decided, per region and size."""
    cells: dict[tuple[str | None, str | None], dict[str, int]] = {}
    for stage, region, size, n in rows:
        cell = cells.setdefault((region, size), {**_zero(), "eligible_decided": 0})
        cell[stage] += n
    groups = []
    for (region, size), cell in cells.items():
        cell["not_yet_granted"] = cell["eligible"] - cell.pop("eligible_decided")
        groups.append((region, size, cell))
    return _rolled_up(groups)


def _rolled_up(groups: Iterable[tuple[str | None, str | None, dict[str, int]]]) -> dict[str, Any]:
    total = _zero()
    by_region: dict[str, dict[str, int]] = {}
    by_size: dict[str, dict[str, int]] = {}
    for region, size, counts in groups:
        if not any(counts.values()):
            continue
        for target in (total, by_region.setdefault(region_label(region), _zero()),
                       by_size.setdefault(size_label(size), _zero())):
            for stage in STAGES:
                target[stage] += counts[stage]
    return {**total, "by_region": _ordered(by_region, [*FIELDS["region"].vocabulary, UNKNOWN]),
            "by_size": _ordered(by_size, [*FIELDS["size"].vocabulary.values(), UNKNOWN])}


def stage_rows(groups: Iterable[tuple[FirmFacts, int]]) -> list[tuple[str, str | None, str | None, int]]:
    """Per-firm facts as the per-stage counts the database gives (for tests: the two roads must agree)."""
    out: dict[tuple[str, str | None, str | None], int] = {}
    for facts, n in groups:
        stages = facts.stages()
        stages["eligible_decided"] = facts.eligible and facts.decided_recently
        for stage, yes in stages.items():
            if yes and stage != "not_yet_granted":
                key = (stage, facts.region, facts.size)
                out[key] = out.get(key, 0) + n
    return [(stage, region, size, n) for (stage, region, size), n in out.items()]


# ---- the per-record reference: the definitions above, one firm at a time -----------------------------
@dataclass(frozen=True)
class Event:
    """An outcome row, or a feedback ``applied`` (``outcome`` applied, ``day`` its local day)."""

    uscc: str
    outcome: str
    day: dt.date
    recorded_at: dt.datetime
    seq: int = 0  # the row's id: the last tie-breaker


def event_order(event: Event) -> tuple[Any, ...]:
    """Later events sort last: by day, a decision after an application, then recorded later, then the id."""
    return (event.day, event.outcome in DECIDED, event.recorded_at, event.seq)


def latest_state(events: Iterable[Event]) -> str | None:
    """The firm's latest outcome (applied | granted | refused), None without any event."""
    last = max(events, key=event_order, default=None)
    return None if last is None else last.outcome


def decided_within(events: Iterable[Event], as_of: dt.date, period_days: int) -> bool:
    """Granted or refused with a decision day in [as_of − period_days, as_of]."""
    since = as_of - dt.timedelta(days=period_days)
    return any(e.outcome in DECIDED and since <= e.day <= as_of for e in events)


def facts_from_records(*, eligible: Iterable[str], delivered: Iterable[str], viewed: Iterable[str],
                       events: Iterable[Event], classes: Mapping[str, tuple[str | None, str | None]],
                       as_of: dt.date, period_days: int) -> dict[str, FirmFacts]:
    """Each firm's facts from plain records (one policy): the eligible firms, the firms a push item was
    delivered to, the firms that viewed it, the events (those after ``as_of`` ignored), and each firm's (region,
    size). A loop over firms — the reference, not the way the service counts."""
    eligible, delivered, viewed = set(eligible), set(delivered), set(viewed)
    per_firm: dict[str, list[Event]] = {}
    for event in events:
        if event.day <= as_of:
            per_firm.setdefault(event.uscc, []).append(event)
    out = {}
    for uscc in eligible | delivered | viewed | set(per_firm):
        mine = per_firm.get(uscc, [])
        region, size = classes.get(uscc, (None, None))
        out[uscc] = FirmFacts(region, size, uscc in eligible, uscc in delivered, uscc in viewed,
                              latest_state(mine), decided_within(mine, as_of, period_days))
    return out
