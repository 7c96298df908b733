"""The value the nightly batch counts (issue 13): ``value_wan`` per offered pair from the pure scorer, and the run
report's totals per policy, region and size, against the one-enterprise matcher (:class:`matching.package.Matcher`)
as the oracle: a firm's counted value is the sum of its package entries with ``counted_in_total`` — on the
entitlements and selective programmes only, the strengths the batch pushes (issue 10)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from matching.batch import IN_PACKAGE, counted_values
from matching.package import Matcher
from profiles.features import derive
from profiles.labels import value_text
from profiles.model import parse_profile
from profiles.synth import synthesize
from service.batch.candidates import prepare
from service.batch.report import render_report
from service.batch.run import run_batch
from service.store.enterprises import upsert_enterprise
from tests.batch.conftest import AS_OF, expected_scores, make_settings, score_records

PUSHED = ("entitlement", "selective")
SAMPLE_SEED = 11


def _firms_with_needs(n: int, seed: int, take: int) -> list[dict[str, Any]]:
    """Synthetic firms that state their needs: for them the interactive package and the nightly one call the same
    policies (without needs the interactive package also reads portrait tags, which the batch leaves out)."""
    population = synthesize(n, seed)
    return [population.record(int(i)) for i in np.flatnonzero(population.needs != "")[:take]]


def _cents(value: float | None) -> int:
    return 0 if value is None or not np.isfinite(value) else int(round(value * 100))


def _oracle(matcher: Matcher, records: list[dict[str, Any]], as_of: dt.date = AS_OF) -> dict[str, dict[str, int]]:
    """uscc → {policy: counted value in hundredths of 万元} from the matcher's package (pushable entries only)."""
    out: dict[str, dict[str, int]] = {}
    for record in records:
        answer = matcher.match(derive(parse_profile(record), as_of)).model_dump(mode="json")
        out[record["uscc"]] = {e["policy_id"]: _cents(e["estimated_value_wan"]) for e in answer["package"]
                               if e["strength"] in PUSHED and e["counted_in_total"] and e["estimated_value_wan"]}
        # the summary's total is the sum of the counted entries; the pushable ones are part of it
        assert sum(out[record["uscc"]].values()) <= _cents(answer["summary"]["estimated_value_wan"])
    return out


def _per_firm(out: pd.DataFrame) -> dict[str, int]:
    offered = out[out["status"] == IN_PACKAGE]
    cents = np.rint(offered["value_wan"].fillna(0.0).to_numpy() * 100).astype(np.int64)
    return {str(u): int(c) for u, c in pd.Series(cents, index=offered["uscc"].to_numpy()).groupby(level=0).sum().items()}


def _agree(mine: dict[str, int], oracle: dict[str, dict[str, int]], *, exact: bool) -> list[str]:
    """Firms whose counted value differs from the matcher's; not ``exact``: a difference of at most one hundredth
    per counted pair is let through (see test_values_are_rounded_as_the_matcher_rounds_them)."""
    return [u for u, values in oracle.items()
            if abs(mine.get(u, 0) - sum(values.values())) > (0 if exact else len(values))]


def test_batch_values_equal_the_matchers_counted_entries(matcher: Matcher) -> None:
    records = _firms_with_needs(4000, SAMPLE_SEED, 150)
    out = score_records(records, matcher)
    oracle = _oracle(matcher, records)
    valued = sum(1 for v in oracle.values() if v)
    assert valued, "some firms of the sample have a counted value (else the test proves nothing)"
    assert not _agree(_per_firm(out), oracle, exact=False)
    # which policies count: the same pairs (exclusive groups: the largest value, the others not counted)
    offered = out[(out["status"] == IN_PACKAGE) & (out["value_wan"] > 0)]
    assert set(zip(offered["uscc"], offered["policy_id"], strict=True)) == {
        (u, p) for u, values in oracle.items() for p in values}
    # only offered pairs carry a value; never negative
    assert out.loc[out["status"] != IN_PACKAGE, "value_wan"].isna().all()
    assert (out["value_wan"].dropna() >= 0).all()


def test_values_are_rounded_as_the_matcher_rounds_them(matcher: Matcher) -> None:
    records = _firms_with_needs(4000, SAMPLE_SEED, 150)
    assert not _agree(_per_firm(score_records(records, matcher)), _oracle(matcher, records), exact=True)


def test_an_exclusive_group_counts_once_per_firm_its_largest_value() -> None:
    money = np.array([[1.0, np.nan, 2.0, np.nan],
                      [3.0, 4.0, 2.0, np.nan],
                      [5.0, 6.0, np.nan, 7.0]])
    got = counted_values(money, ["g", "g", None])
    np.testing.assert_array_equal(got, np.array([[np.nan, np.nan, 2.0, np.nan],
                                                 [3.0, 4.0, np.nan, np.nan],
                                                 [5.0, 6.0, np.nan, 7.0]]))


def _store(engine: Engine, records: list[dict[str, Any]]) -> None:
    with Session(engine) as session:
        for record in records:
            upsert_enterprise(session, profile=parse_profile(record))
        session.commit()


def test_run_report_totals_value_per_policy_region_and_size(engine: Engine, database_url: str) -> None:
    records = _firms_with_needs(3000, SAMPLE_SEED, 90)
    settings = make_settings(database_url, batch_chunk_size=25)  # four chunks: the totals add up across chunks
    _store(engine, records)
    run = run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    assert run.status == "succeeded" and run.report["chunks"] == 4
    report = run.report

    def got(section: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
        return {k: [_cents(v["value_wan"]), v["firms_valued"]] for k, v in section.items() if v.get("value_wan")}

    def totals(values_of: dict[str, dict[str, int]]) -> tuple[dict[str, list[int]], ...]:
        by_policy: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_region: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_size: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for record in records:
            values = values_of.get(record["uscc"], {})
            for pid, cents in values.items():
                by_policy[pid][0] += cents
                by_policy[pid][1] += 1
            total = sum(values.values())
            if total:
                size = derive(parse_profile(record), AS_OF).record["size"]
                for table, key in ((by_region, record.get("region") or "未知"),
                                   (by_size, value_text("size", size) if size else "未知")):
                    table[key][0] += total
                    table[key][1] += 1
        return dict(by_policy), dict(by_region), dict(by_size)

    # exact: the report is the sum of the pure scorer's values over the scored pairs, in any chunking
    scores, _ = expected_scores(engine, settings)
    offered = scores[(scores["status"] == IN_PACKAGE) & (scores["value_wan"] > 0)]
    scored: dict[str, dict[str, int]] = defaultdict(dict)
    for u, p, v in zip(offered["uscc"], offered["policy_id"], offered["value_wan"], strict=True):
        scored[u][p] = _cents(v)
    by_policy, by_region, by_size = totals(scored)
    assert by_policy, "the sample has counted values"
    assert (got(report["by_policy"]), got(report["by_region"]), got(report["by_size"])) == (
        by_policy, by_region, by_size)
    total = report["value"]
    assert _cents(total["value_wan"]) == sum(c for c, _ in by_policy.values())
    assert total["firms_valued"] == sum(1 for v in scored.values() if sum(v.values()))

    # the oracle: the one-enterprise matcher's counted pushable entries (to a hundredth per pair, see above)
    oracle = _oracle(prepare(engine, settings, AS_OF).matcher, records)
    m_policy, m_region, _ = totals(oracle)
    assert set(m_policy) == set(by_policy) and set(m_region) == set(by_region)
    for mine, theirs in ((by_policy, m_policy), (by_region, m_region)):
        for key, (cents, firms) in theirs.items():
            assert mine[key][1] == firms and abs(mine[key][0] - cents) <= firms * len(m_policy), key

    text = render_report(run)
    assert "估计价值" in text and f"合计 {total['value_wan']:,.2f} 万元" in text
    top = max(by_policy, key=lambda p: by_policy[p][0])
    assert f"{top:<40} 估计价值" in text

    again = run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)  # nothing changed: nothing scored
    assert again.report["value"] == {"value_wan": 0.0, "firms_valued": 0}


def test_report_of_a_run_without_values_still_renders() -> None:
    from service.db.tables import BatchRun

    run = BatchRun(id=1, as_of=AS_OF, catalog_version="catalog-x", status="succeeded",
                   report={"enterprises": {}, "items": {}, "by_policy": {"p": {"new": 1, "offered": 1}}})
    text = render_report(run)
    assert "估计价值" not in text and "p" in text


@pytest.mark.parametrize("seed", [3, 5])
def test_synthetic_money_fields_are_valid_and_plausible(seed: int) -> None:
    population = synthesize(5000, seed)
    cols = population.batch.columns
    for i in range(0, 5000, 25):
        parse_profile(population.record(i))
    for name in ("taxable_income_wan", "rd_expense_wan", "unemployment_insurance_paid_wan", "layoff_rate_pct",
                 "disabled_employees", "deductible_input_vat_wan"):
        col = cols[name]
        known = col[~np.isnan(col)]
        assert 0.1 < np.isnan(col).mean() < 0.95, name  # often unknown, as in a real register
        assert (known >= 0).all(), name
    pct = cols["layoff_rate_pct"]
    assert np.nanmax(pct) <= 100
    payroll, ui = cols["annual_payroll_wan"], cols["unemployment_insurance_paid_wan"]
    both = ~np.isnan(payroll) & ~np.isnan(ui)
    assert (ui[both] <= payroll[both] * 0.01 + 0.01).all()  # at most payroll × 1% (the premium rate assumed)
    assert (cols["vat_filing_period"] >= -1).all() and (cols["vat_filing_period"] == -1).mean() < 0.6
