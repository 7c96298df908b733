"""What is offered to a firm, and what is only listed for when it needs it (``matching/data/offering.yaml``).

- :func:`proactive` — entitlements (应享) and selective programmes (择优): offered to every eligible firm and
  pushed. Procedures and channels are offered only when called for: the firm's words trigger them, or
  :func:`situation` finds the firm in a situation they serve (破产 → bankruptcy procedures, 外贸 → customs) or
  their own rule is aimed at its industry (制造业 → 制造业贷款).
- :func:`on_request` — the eligible procedures that were not called for, filtered by the firm's entity type,
  industry, flags and words, at most ``limit``, each with a one-line Chinese reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from matching.reference import evaluate
from policies.rules import Leaf, Rule, leaves, parse_rule
from policies.schema import CATEGORIES, Policy
from profiles.fields import FIELDS
from profiles.labels import vocabulary

DATA = Path(__file__).with_name("data") / "offering.yaml"
PROACTIVE_STRENGTHS = ("entitlement", "selective")
INDUSTRY_FIELDS = ("industry_section", "industry_division", "industry_group")


@dataclass(frozen=True)
class Occasion:
    id: str
    who: Rule
    categories: frozenset[str]
    tags: frozenset[str]
    text: str  # situations: why (贵企业处于破产程序中); lines: reason prefix (贵企业属于{industry_section})
    only: bool = False

    def matches(self, policy: Policy) -> bool:
        return policy.category in self.categories or bool(self.tags & set(policy.tags))

    def fits(self, record: dict[str, Any]) -> bool:
        return evaluate(self.who, record) is True

    def render(self, record: dict[str, Any]) -> str:
        """The text with the firm's own values (industry by its name, no codes)."""
        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            raw = record.get(name)
            if name.startswith("industry_"):
                return vocabulary(name).get(str(raw), str(raw))
            return FIELDS[name].value_label(raw)

        return re.sub(r"\{(\w+)\}", value, self.text)


@dataclass(frozen=True)
class OfferingTable:
    limit: int
    per_category: int
    situations: tuple[Occasion, ...]
    lines: tuple[Occasion, ...]
    when: dict[str, str]  # category -> occasion
    entries: dict[str, str]  # policy id -> its own occasion, where the category's would be wrong
    _claims: dict[tuple[Any, ...], tuple[tuple[Occasion, ...], tuple[Occasion, ...]]] = field(
        default_factory=dict, compare=False, repr=False)

    def claims(self, policy: Policy) -> tuple[tuple[Occasion, ...], tuple[Occasion, ...]]:
        """(situations, lines) that match the policy, remembered per policy version."""
        key = (policy.id, policy.version, policy.category, policy.tags)
        hit = self._claims.get(key)
        if hit is None:
            hit = self._claims[key] = (tuple(s for s in self.situations if s.matches(policy)),
                                       tuple(o for o in self.lines if o.matches(policy)))
        return hit

    def when_for(self, policy: Policy) -> str:
        """The one-line occasion in which this procedure helps: its own, else its category's."""
        return self.entries.get(policy.id) or self.when[policy.category]

    def rank(self, category: str) -> int:
        order = list(self.when)
        return order.index(category) if category in order else len(order)


def _occasion(raw: dict[str, Any], text_key: str) -> Occasion:
    unknown = set(raw.get("categories", ())) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"{DATA.name}: {raw['id']}: unknown categories {sorted(unknown)}")
    return Occasion(raw["id"], parse_rule(raw["who"], raw["id"]), frozenset(raw.get("categories", ())),
                    frozenset(raw.get("tags", ())), raw[text_key], bool(raw.get("only", False)))


@cache
def table() -> OfferingTable:
    raw = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    when = dict(raw["when"])
    if set(when) != set(CATEGORIES):
        raise ValueError(f"{DATA.name}: when: every category needs an occasion, and only those: "
                         f"{sorted(set(CATEGORIES) ^ set(when))}")
    return OfferingTable(int(raw["limit"]), int(raw["per_category"]),
                         tuple(_occasion(s, "why") for s in raw["situations"]),
                         tuple(_occasion(s, "reason") for s in raw["lines"]), when,
                         {str(k): str(v) for k, v in (raw.get("entries") or {}).items()})


def proactive(policy: Policy) -> bool:
    """Offered to every eligible firm (and pushed): an entitlement or a selective programme."""
    return policy.strength in PROACTIVE_STRENGTHS


def situation(policy: Policy, record: dict[str, Any]) -> Occasion | None:
    """The situation of the firm that calls for this procedure now, if any: a ``situations`` entry, or the
    policy's own rule aimed at a flag or a trade line the firm has (被拖欠账款 → 拖欠账款投诉) or at its
    industry (制造业 → 制造业贷款)."""
    found = next((s for s in table().claims(policy)[0] if s.fits(record)), None)
    if found is not None:
        return found
    for leaf in leaves(policy.rule):
        if not isinstance(leaf, Leaf):
            continue
        if leaf.field in ("flags", "trade") and leaf.op in ("has_any", "has_all"):
            have = [v for v in leaf.value if v in (record.get(leaf.field) or ())]
            if have:
                labels = "、".join(FIELDS[leaf.field].value_label(v) for v in have)
                return Occasion(f"rule:{leaf.field}", leaf, frozenset(), frozenset(),
                                f"贵企业{labels}" if leaf.field == "flags" else f"贵企业为{labels}")
        if leaf.field in INDUSTRY_FIELDS and leaf.op in ("eq", "in"):
            value = record.get(leaf.field)
            wanted = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
            if value is not None and value in wanted:
                name = vocabulary(leaf.field).get(str(value), str(value))
                return Occasion(f"rule:{leaf.field}", leaf, frozenset(), frozenset(), f"贵企业属于{name}")
    return None


def aimed_entity_type(policy: Policy, record: dict[str, Any]) -> bool:
    """The policy's rule names the firm's own entity type, and it is not an ordinary enterprise
    (个体工商户简易注销 for a 个体工商户)."""
    kind = record.get("entity_type")
    if kind in (None, "enterprise"):
        return False
    return any(isinstance(leaf, Leaf) and leaf.field == "entity_type" and leaf.op in ("eq", "in")
               and kind in (leaf.value if isinstance(leaf.value, tuple) else (leaf.value,))
               for leaf in leaves(policy.rule))


def on_request(candidates: list[tuple[Policy, float]], record: dict[str, Any], *, about: dict[str, str],
               asked: set[str] | None) -> list[dict[str, Any]]:
    """The eligible procedures not offered, as a short list a person can read: ``candidates`` are
    (policy, calibrated score of the firm's words); returns entries with ``reason``, best first, at most
    ``limit`` (a maximum, not a target).

    Order: those the firm's words are about (``about``: policy id -> the phrase of the firm's that is about
    it), those its line of business makes likely (``lines``, in the table's order), those aimed at its entity
    type, then procedures any firm may need (commoner occasions first); beyond the firm's words at most
    ``per_category`` per category. A policy that a ``lines`` entry or an ``only`` situation claims is listed
    only when that entry fits the firm (or its words are about it). ``asked``: the categories the firm's words
    point to; when given, procedures "any firm may need" are listed only in those categories (a shop that
    says it is closing is not offered recruitment or new utility connections to fill the list).
    Each reason ends with the procedure's own occasion (``entries``), else its category's (``when``).
    """
    t = table()
    ranked: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    per_category: dict[str, int] = {}
    t_category = {policy.id: policy.category for policy, _ in candidates}
    for policy, relevance in sorted(candidates, key=lambda c: (t.rank(c[0].category), c[0].id)):
        when = t.when_for(policy)
        situations, lines = t.claims(policy)
        claims = [*lines, *(s for s in situations if s.only)]
        fitting = next((o for o in claims if o.fits(record)), None)
        if policy.id in about:
            tier, sub, reason = 0, 0, f"与您提到的“{short(about[policy.id])}”有关，{when}"
        elif fitting is not None:
            tier, sub, reason = 1, t.lines.index(fitting) if fitting in t.lines else 0, f"{fitting.render(record)}，{when}"
        elif claims:
            continue  # meant for another kind of firm
        elif aimed_entity_type(policy, record):
            kind = FIELDS["entity_type"].value_label(record["entity_type"])
            tier, sub, reason = 2, 0, f"贵企业为{kind}，{when}"
        elif asked is not None and policy.category not in asked:
            continue  # the firm's words point elsewhere: no padding with what any firm might need some day
        else:
            tier, sub, reason = 3, 0, f"各类市场主体均可办理，{when}"
        key = (tier, -round(relevance, 6) if tier == 0 else 0.0, sub, t.rank(policy.category), policy.id)
        ranked.append((key, {"policy_id": policy.id, "title": policy.title, "reason": reason,
                             "triggers": list(policy.triggers)}))
    ranked.sort(key=lambda r: r[0])
    out: list[dict[str, Any]] = []
    for key, entry in ranked:
        category = t_category[entry["policy_id"]]
        if key[0] > 0:  # beyond the firm's words: a few per category, so that the list covers different needs
            if per_category.get(category, 0) >= t.per_category:
                continue
            per_category[category] = per_category.get(category, 0) + 1
        out.append(entry)
        if len(out) == t.limit:
            break
    return out


def short(text: str, limit: int = 16) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
