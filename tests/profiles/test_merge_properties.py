"""Properties of merge and as_seen under hypothesis: the order of the documents never matters, merging the
merged profile as the firm's own statement gives it back, an authoritative value is never overridden and
every disagreement is a conflict, as_seen never adds a field, and nothing changes before next_change."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.merge import as_seen, merge, same_value
from profiles.model import parse_profile, qualification_code
from profiles.sources import PER_CODE, rules, source, source_names

USCC = "91110000600037341L"
FIRST, LAST = dt.date(2020, 1, 1), dt.date(2027, 12, 31)
days = st.dates(min_value=FIRST, max_value=LAST)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["徐州甲机械有限公司", "徐州乙科技有限公司"]),
    "employees": st.integers(0, 60),
    "tax_credit_grade": st.sampled_from(["A", "B", "M"]),
    "rd_expense_wan": st.sampled_from([0.0, 12.5, 80.0]),
    "annual_revenue_wan": st.sampled_from([300.0, 1800.0]),
    "financing_need_wan": st.sampled_from([100.0, 500.0]),
    "trade": st.lists(st.sampled_from(["importer", "exporter"]), unique=True),
}
settings.register_profile("merge", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])


@st.composite
def items(draw: st.DrawFn, name: str, codes: list[str]) -> list[Any]:
    chosen = draw(st.lists(st.sampled_from(codes), unique=True, max_size=4)) if codes else []
    out: list[Any] = []
    for code in chosen:
        if name == "qualifications" and draw(st.booleans()):
            start, end = sorted((draw(days), draw(days)))
            item: dict[str, Any] = {"code": code}
            if draw(st.booleans()):
                item["valid_from"] = start.isoformat()
            if draw(st.booleans()):
                item["valid_to"] = end.isoformat()
            out.append(item)
        else:
            out.append(code)
    return out


@st.composite
def source_docs(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for name in draw(st.lists(st.sampled_from(source_names()), unique=True, min_size=1, max_size=5)):
        spec = source(name)
        values: dict[str, Any] = {}
        for field, strategy in SCALARS.items():
            if spec.may_give(field) and draw(st.booleans()):
                values[field] = draw(strategy)
        for field in PER_CODE:
            if spec.may_give(field) and draw(st.booleans()):
                values[field] = draw(items(field, sorted(spec.codes[field])))
        docs[name] = {"values": values, "as_of": {f: draw(days).isoformat() for f in values}}
    return docs


@settings(settings.get_profile("merge"))
@given(source_docs(), st.randoms(use_true_random=False))
def test_the_order_of_the_documents_does_not_matter(docs: dict[str, dict[str, Any]], rnd: Any) -> None:
    names = list(docs)
    rnd.shuffle(names)
    assert merge({n: docs[n] for n in names}) == merge(docs)


@settings(settings.get_profile("merge"))
@given(source_docs(), days)
def test_merging_the_merged_profile_as_the_firm_alone_gives_it_back(docs: dict[str, dict[str, Any]],
                                                                    day: dt.date) -> None:
    merged = merge(docs)
    again = merge({"self": {"values": merged.profile, "as_of": day.isoformat()}})
    assert again.profile == merged.profile and again.conflicts == []
    parse_profile({"uscc": USCC, "name": "x", **merged.profile})  # always a valid profile


@settings(settings.get_profile("merge"))
@given(source_docs())
def test_an_authority_is_never_overridden_and_every_disagreement_is_kept(docs: dict[str, dict[str, Any]]) -> None:
    merged, table = merge(docs), rules()
    for field in SCALARS:
        given_by = {s: d["values"][field] for s, d in docs.items() if field in d["values"]}
        if not given_by:
            assert field not in merged.profile
            continue
        winner = merged.provenance[field]["source"]
        authorities = {s for rank in table.ranks(field) for s in rank}
        if authorities & set(given_by):
            assert winner in authorities
        disagreeing = {s for s, v in given_by.items() if not same_value(v, merged.profile[field])}
        listed = {o["source"] for c in merged.conflicts if c["field"] == field for o in c["others"]}
        assert listed == disagreeing
    for field in PER_CODE:
        if not any(field in d["values"] for d in docs.values()):
            continue
        for code in {qualification_code(i) for i in merged.profile[field]}:
            authorities = {s for rank in table.ranks(field, code) for s in rank}
            if authorities & {s for s, d in docs.items() if field in d["values"]}:
                assert merged.provenance[f"{field}.{code}"]["source"] in authorities


@st.composite
def seen_cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dt.date]:
    merged = merge(draw(source_docs()))
    return {"uscc": USCC, "name": "x", **merged.profile}, merged.provenance, draw(days)


@settings(settings.get_profile("merge"))
@given(seen_cases(), st.integers(0, 800))
def test_as_seen_never_adds_a_field_and_nothing_changes_before_next_change(
        case: tuple[dict[str, Any], dict[str, Any], dt.date], step: int) -> None:
    profile, provenance, day = case
    seen = as_seen(profile, provenance, day)
    assert set(seen.profile) <= set(profile) and set(seen.profile) | set(seen.stale) == set(profile)
    for field, value in seen.profile.items():
        if field != "qualifications":
            assert value == profile[field]
    assert set(seen.profile.get("qualifications") or []) <= {qualification_code(i) for i in
                                                              profile.get("qualifications") or []}
    assert seen.next_change is None or seen.next_change > day
    later = day + dt.timedelta(days=step)
    if seen.next_change is None or later < seen.next_change:
        other = as_seen(profile, provenance, later)
        assert other.profile == seen.profile and set(other.stale) == set(seen.stale)
        assert [(e["code"], e["valid_to"]) for e in other.expiring] == [(e["code"], e["valid_to"])
                                                                          for e in seen.expiring]
    with_codes = as_seen(profile, None, day)  # without provenance only the certificates' dates apply
    assert set(with_codes.profile) == set(profile) and with_codes.stale == {}
