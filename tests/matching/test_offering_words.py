"""What the firm's words call for, and the on-request list's reasons (issue 10, items 3 and 5).

The words are judged on the calibrated score search uses (absolute, comparable across texts): words that
search would answer with no_match call nothing, whatever ranks first among the policies for them. The
firm's stated needs and the operator's query are scored apart, each whole."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from matching import offering
from matching.package import Matcher
from matching.ranking import phrases_of
from profiles.features import derive
from profiles.model import parse_profile
from tests.matching.test_package import _ids, _match

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "profiles" / "samples").glob("*.json"))
AS_OF = dt.date(2026, 11, 30)
OFF_TOPIC = ["我想移民加拿大", "孩子数学成绩太差，哪里有好的辅导班？", "今天天气怎么样"]
GENERIC = "各类市场主体均可办理"


def _sample(matcher: Matcher, path: Path, query: str | None) -> dict[str, Any]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return matcher.match(derive(parse_profile(raw, as_of=AS_OF), AS_OF), query=query).model_dump(mode="json")


def _said(answer: dict[str, Any]) -> list[str]:
    return [e.get("why_you", "") for e in answer["package"]] + [e["reason"] for e in answer["available_on_request"]]


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem[:2] for p in SAMPLES])
@pytest.mark.parametrize("query", OFF_TOPIC)
def test_off_topic_words_add_nothing_to_the_answer(matcher: Matcher, path: Path, query: str) -> None:
    quiet, asked = _sample(matcher, path, None), _sample(matcher, path, query)
    assert _ids(asked["package"]) == _ids(quiet["package"])
    assert _ids(asked["available_on_request"]) == _ids(quiet["available_on_request"])
    assert _ids(asked["near_misses"]) == _ids(quiet["near_misses"])
    assert not any("与您提到" in text and query[:4] in text for text in _said(asked))


def test_an_off_topic_query_alone_is_about_nothing(matcher: Matcher) -> None:
    out = _match(matcher, "我想移民加拿大")
    assert not any("与您提到" in text for text in _said(out))
    assert _ids(out["package"]) == _ids(_match(matcher)["package"])


@pytest.mark.parametrize(("words", "policy", "patch"), [
    ("要注销", "simplified-deregistration", {}),
    ("想迁到外地", "tax-migration-cross-province-ab", {}),
    ("被拖欠工程款", "sme-overdue-payment-complaint", {"flags": ["unpaid_receivables"], "industry_code": "E4710"}),
    ("我们的专利能不能拿去质押", "ip-pledge-financing-xuzhidai", {"patents": 2}),
])
def test_on_topic_words_still_call_their_procedure(matcher: Matcher, words: str, policy: str,
                                                   patch: dict[str, Any]) -> None:
    out = _match(matcher, words, **patch)
    assert policy in _ids(out["package"])
    # and as the firm's stated needs, with an off-topic query beside them
    both = _match(matcher, "我想移民加拿大", needs=words, **patch)
    assert policy in _ids(both["package"])


def test_a_weak_meaning_does_not_call_a_procedure(matcher: Matcher) -> None:
    # 带押转移 (real-estate transfer under mortgage) is not what a manufacturer asking for a loan means
    out = _match(matcher, "想贷款扩大生产线")
    assert "property-transfer-with-mortgage" not in _ids(out["package"])


def test_the_needs_and_the_query_are_each_scored_whole() -> None:
    assert phrases_of("  要注销 ") == ["要注销"]
    assert phrases_of("  ") == [] and phrases_of(None) == []
    # a clause out of its context is not scored alone (哪里有好的辅导班 would look like 上市辅导)
    assert phrases_of("孩子数学成绩太差，哪里有好的辅导班？") == ["孩子数学成绩太差，哪里有好的辅导班？"]


def test_on_request_occasions_are_the_entries_own_where_given(matcher: Matcher) -> None:
    table = offering.table()
    unknown = set(table.entries) - set(matcher.catalog.policies)
    assert not unknown, f"offering.yaml entries: not catalog policies: {sorted(unknown)}"
    for pid in table.entries:
        policy = matcher.catalog[pid]
        assert policy.strength in ("procedure", "channel"), pid  # only procedures are listed on request
        assert table.when_for(policy) == table.entries[pid]
    exchange, coaching = matcher.catalog["huaihai-data-exchange"], matcher.catalog["key-firm-compliance-coaching"]
    assert "数据交易" in table.when_for(exchange) and "诉求" not in table.when_for(exchange)
    assert "资本运作" in table.when_for(coaching) and "纠纷" not in table.when_for(coaching)
    # a procedure without its own line falls back on its category's
    plain = next(p for p in matcher.catalog if p.strength == "procedure" and p.id not in table.entries)
    assert table.when_for(plain) == table.when[plain.category]


def test_a_closing_shop_is_not_padded_with_what_any_firm_might_need(matcher: Matcher) -> None:
    shop = next(p for p in SAMPLES if p.stem.startswith("03"))
    out = _sample(matcher, shop, None)
    assert {"individual-business-simplified-deregistration"} <= _ids(out["package"])
    listed = out["available_on_request"]
    assert len(listed) <= offering.table().limit
    assert not any(e["reason"].startswith(GENERIC) for e in listed), [e["reason"] for e in listed]
    # a firm that says nothing still sees procedures any firm may need (the list covers different needs)
    silent = _match(matcher)
    assert any(e["reason"].startswith(GENERIC) for e in silent["available_on_request"])


def test_generic_items_follow_the_words_when_there_are_words(matcher: Matcher) -> None:
    out = _match(matcher, "公司不做了，想注销")
    called = {matcher.catalog[e["policy_id"]].category for e in out["package"]
              if e["strength"] in ("procedure", "channel")}
    generic = [e for e in out["available_on_request"] if e["reason"].startswith(GENERIC)]
    assert all(matcher.catalog[e["policy_id"]].category in called | {"exit"} for e in generic)
