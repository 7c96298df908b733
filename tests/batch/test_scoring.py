"""The pure batch scorer (matching/batch.py) against the one-enterprise matcher — the two callers of the one
ranking (matching/ranking.py) — and the stored-profile encoder against the record encoder (profiles/columns.py)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from matching.batch import (
    IN_PACKAGE,
    POSSIBLE,
    BatchScorer,
    age_thresholds,
    recheck_days,
    text_signals,
)
from matching.embeddings import Embedder, Kind, Vectors
from matching.package import Matcher
from matching.relevance import PolicyRetriever
from profiles.columns import ProfileBatch, encode_profiles
from profiles.features import derive
from profiles.model import parse_profile
from profiles.synth import synthesize
from tests.batch.conftest import AS_OF, score_records

PUSHED = ("entitlement", "selective")
SAMPLE_FILES = sorted((Path(__file__).resolve().parents[2] / "profiles" / "samples").glob("*.json"))


def test_encoding_stored_json_equals_the_record_encoder() -> None:
    records = list(synthesize(3000, 5).records())
    records += [json.loads(p.read_text(encoding="utf-8")) for p in SAMPLE_FILES]
    frame = encode_profiles([json.dumps(r, ensure_ascii=False) for r in records])
    reference = ProfileBatch.from_records([parse_profile(r).model_dump() for r in records])
    for name, col in reference.columns.items():
        got = frame[name].to_numpy()
        if col.dtype.kind == "f":
            np.testing.assert_array_equal(col, got.astype(np.float64), err_msg=name)
        elif col.dtype == object:
            assert [None if v is None else str(v) for v in col] == [None if v is None else str(v) for v in got], name
        else:
            np.testing.assert_array_equal(col, got, err_msg=name)


def test_batch_packages_equal_the_matcher_for_firms_that_state_their_needs(matcher: Matcher) -> None:
    population = synthesize(4000, 11)
    chosen = np.flatnonzero(population.needs != "")[:120]
    records = [population.record(int(i)) for i in chosen]
    out = score_records(records, matcher)
    for record in records:
        answer = matcher.match(derive(parse_profile(record), AS_OF)).model_dump(mode="json")
        mine = out[out["uscc"] == record["uscc"]]
        offered = mine[mine["status"] == IN_PACKAGE]
        # only entitlements and selective programmes are pushed (issue 10); the interactive package adds the
        # procedures the firm's words or situation call for
        assert dict(zip(offered["policy_id"], offered["score"], strict=True)) == {
            e["policy_id"]: e["score"] for e in answer["package"] if e["strength"] in PUSHED}, record["uscc"]
        assert set(mine.loc[mine["status"] == POSSIBLE, "policy_id"]) >= {
            e["policy_id"] for e in answer["possibly_eligible"]
            if e["strength"] in PUSHED and matcher.catalog[e["policy_id"]].delivery == "proactive"}


def test_offers_are_eligible_and_on_request_policies_need_a_trigger(matcher: Matcher) -> None:
    records = list(synthesize(2000, 12).records())
    out = score_records(records, matcher)
    batch = ProfileBatch.from_records([parse_profile(r).model_dump() for r in records]).with_derived(AS_OF)
    status = matcher.engine.evaluate(batch, AS_OF, near_misses=False).status
    row = {r["uscc"]: i for i, r in enumerate(records)}
    index = matcher.engine.index
    offered = out[out["status"] == IN_PACKAGE]
    assert (status[offered["policy_id"].map(index), offered["uscc"].map(row)] == 1).all()
    on_trigger = {p.id for p in matcher.catalog if p.delivery == "on_trigger"}
    scope_only = {r["uscc"] for r in records if not r.get("needs")}
    assert not offered[offered["policy_id"].isin(on_trigger) & offered["uscc"].isin(scope_only)].shape[0]
    never_pushed = {p.id for p in matcher.catalog if p.strength not in PUSHED}  # procedures and channels
    assert never_pushed and not offered["policy_id"].isin(never_pushed).any()
    assert not out.duplicated(["uscc", "policy_id"]).any()


class CountingEmbedder:
    """The real embedder, recording every text it is asked for."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str], kind: Kind) -> Vectors:
        if kind == "query":
            self.texts.extend(texts)
        return self.inner.embed(texts, kind)


def test_enterprise_texts_are_embedded_once_per_distinct_wording(matcher: Matcher, embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    retriever = PolicyRetriever(matcher.retriever.ids, matcher.retriever.lexical, matcher.retriever.dense,
                                counting, matcher.retriever.fusion, matcher.retriever.owners)
    population = synthesize(20_000, 13)
    frame = encode_profiles([json.dumps(population.record(i), ensure_ascii=False) for i in range(2000)])
    keys = np.unique(frame["text_key"].to_numpy().astype(str))
    text_signals(list(keys), retriever, list(matcher.catalog), BatchScorer.build(matcher.catalog).ranking)
    distinct = {k[2:] for k in keys if k}
    assert set(counting.texts) == distinct
    assert len(counting.texts) <= 2 * len(distinct) < 200  # 2,000 firms, a few dozen wordings


def test_recheck_day_is_the_day_before_an_age_threshold_is_crossed(matcher: Matcher) -> None:
    thresholds = age_thresholds(matcher.catalog)
    assert len(thresholds) and (thresholds > 0).all()
    today = (AS_OF - dt.date(1970, 1, 1)).days
    t = float(thresholds[0])
    founded = np.array([today - t * 365.25 + 10, np.nan, today - 200 * 365.25])
    day = recheck_days(founded, AS_OF, np.array([t]))
    assert today < day[0] <= today + 10
    assert np.isnan(day[1]) and np.isnan(day[2])  # unknown founding date; threshold long passed
