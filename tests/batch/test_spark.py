"""The Spark engine runs the same pure scorer: identical results to the local engine.

Marked ``xdist_group("spark")`` so that under ``pytest -n 2 --dist loadgroup`` the JVM starts in one
worker only, and its tests run there one after the other.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from matching.batch import BatchScorer, score_batch, text_signals
from matching.package import Matcher
from profiles.columns import text_keys
from profiles.synth import synthesize
from service.batch.run import run_batch
from service.batch.spark import score_parquet, spark_session
from service.db.tables import MatchSnapshot, PushItem
from service.settings import Settings
from tests.batch.conftest import AS_OF, expected_items, expected_scores, make_settings, seed

pytestmark = [pytest.mark.xdist_group("spark"), pytest.mark.slow]
N = 20_000


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["uscc", "policy_id", "policy_version", "status", "score", "size", "value_wan"]
    out = frame[cols].sort_values(["uscc", "policy_id"]).reset_index(drop=True)
    return out.astype({"uscc": str, "policy_id": str, "policy_version": "int32", "status": "int8",
                       "score": "float64", "size": "int8", "value_wan": "float64"})


def _value_total(engine: Engine, settings: Settings) -> dict[str, object]:
    """The report's value total computed straight from the stored profiles by the pure scorer."""
    out, _ = expected_scores(engine, settings)
    offered = out[out["status"] == 1]
    cents = (offered["value_wan"].fillna(0.0) * 100).round().astype("int64").groupby(offered["uscc"]).sum()
    return {"value_wan": round(int(cents.sum()) / 100, 2), "firms_valued": int((cents > 0).sum())}


def test_spark_scores_20000_enterprises_exactly_as_the_local_engine(tmp_path, matcher: Matcher) -> None:
    population = synthesize(N, 77)
    frame = population.batch.to_frame()
    frame["uscc"] = population.uscc
    keys = text_keys(population.needs, population.business_scope)
    rows, texts = pd.factorize(pd.Series(keys, dtype=object), sort=True)  # distinct texts, embedded once
    frame["text_row"] = rows.astype("int64")
    scorer = BatchScorer.build(matcher.catalog)
    signals = text_signals([str(t) for t in texts], matcher.retriever, list(matcher.catalog), scorer.ranking)
    local = score_batch(frame, scorer, signals, AS_OF)
    assert len(local) > N  # several offers per firm
    assert local["value_wan"].notna().any()  # the counted values travel through Spark too

    frame["chunk"] = (frame.index // 2500).astype("int32")
    source, target = tmp_path / "enterprises.parquet", tmp_path / "results"
    frame.to_parquet(source, index=False, row_group_size=2500)
    score_parquet(spark_session(2), source, target, scorer, signals, AS_OF)
    distributed = pd.read_parquet(target)
    assert len(distributed) == len(local)
    pd.testing.assert_frame_equal(_sorted(distributed), _sorted(local), check_exact=True)


def test_batch_run_with_the_spark_engine_queues_what_the_local_engine_would(engine: Engine,
                                                                            database_url: str) -> None:
    settings = make_settings(database_url, batch_chunk_size=25)
    seed(engine, 80, seed=13)
    run = run_batch(engine, settings, as_of=AS_OF, engine_kind="spark", workers=2, echo=lambda _: None)
    assert run.status == "succeeded" and run.report["engine"] == "spark"
    assert run.report["enterprises"]["scored"] == 80 and run.report["chunks"] == 4
    with Session(engine) as session:
        keys = {i.idempotency_key for i in session.exec(select(PushItem))}
        snapshot = len(session.exec(select(MatchSnapshot)).all())
    assert keys == expected_items(engine, settings)
    assert snapshot == run.report["items"]["offered"]
    assert run.report["value"]["firms_valued"] > 0
    assert run.report["value"] == _value_total(engine, settings)
    again = run_batch(engine, settings, as_of=AS_OF, engine_kind="spark", workers=2, echo=lambda _: None)
    assert again.report["enterprises"]["scored"] == 0 and again.report["items"]["new"] == 0
