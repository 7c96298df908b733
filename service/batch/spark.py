"""``policyfit batch run --engine spark``: the same pure scorer, run by PySpark over a Parquet export.

1. The enterprises that need scoring are exported chunk by chunk (encoded columns, a ``chunk`` number
   and each firm's row in the text table) to ``<export dir>/run-<id>/enterprises.parquet``; the chunk
   metadata the write needs goes beside it.
2. Spark reads the export and runs :func:`matching.batch.score_batch` in ``mapInPandas``; the scorer
   and the (small, deduplicated) text table travel in the task closure. Results are written as Parquet
   partitioned by chunk.
3. Each chunk's results go back through the same write path as the local engine (snapshot, push items,
   messages, cursor and report in one transaction per chunk).

Rows that cannot be scored are quarantined as with the local engine: invalid profiles while exporting,
and rows the scorer fails on inside the Spark task (the partition is split until they are found; each
comes back as a row with status :data:`QUARANTINED` and the reason in ``policy_id``).

Locally Spark runs as ``local[N]``; under ``spark-submit`` the master of the submission is used and the
export directory must be a path every executor can read (``POLICYFIT_BATCH_EXPORT_DIR``).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from matching.batch import BatchScorer, TextSignals, result_schema
from service.batch.candidates import Prepared, iter_candidates
from service.batch.scoring import Quarantined, TextTable, encode_chunk, no_results, score_isolating, without
from service.settings import Settings

QUARANTINED = -1  # status of a result row that stands for a row the scorer failed on (reason in policy_id)


def spark_result_schema() -> str:
    return ", ".join(f"{k} {v}" for k, v in {**result_schema(), "chunk": "int"}.items())


def spark_session(workers: int) -> Any:
    """The active session, or a new one: ``local[workers]`` unless a master is configured (spark-submit)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.appName("policyfit-batch")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", str(max(2, workers)))
               .config("spark.driver.memory", os.environ.get("POLICYFIT_SPARK_DRIVER_MEMORY", "2g")))
    if not SparkConf().contains("spark.master"):
        builder = builder.master(f"local[{workers}]")
    return builder.getOrCreate()


def score_parquet(spark: Any, source: Path | str, target: Path | str, scorer: BatchScorer, signals: TextSignals,
                  as_of: dt.date) -> None:
    """Score every row of the Parquet export ``source`` with Spark; results to ``target`` by chunk."""

    def score_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in batches:
            out, failed = score_isolating(frame, scorer, signals, as_of)
            if failed:
                out = pd.concat([out, pd.DataFrame({
                    "uscc": [f["uscc"] for f in failed], "policy_id": [f["reason"] for f in failed],
                    "policy_version": 0, "status": QUARANTINED, "score": 0.0, "size": -1,
                    "value_wan": float("nan")})], ignore_index=True)
                out = out.astype({"policy_version": "int32", "status": "int8", "size": "int8"})
            chunk_of = pd.Series(frame["chunk"].to_numpy(), index=frame["uscc"].to_numpy())
            out["chunk"] = chunk_of.reindex(out["uscc"].to_numpy()).to_numpy(dtype="int32")
            yield out

    frame = spark.read.parquet(str(source))
    (frame.mapInPandas(score_partition, schema=spark_result_schema())
     .write.mode("overwrite").partitionBy("chunk").parquet(str(target)))


def score_with_spark(engine: Engine, settings: Settings, prep: Prepared, *, as_of: dt.date, run_id: int,
                     workers: int, chunk: int
                     ) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, dict[str, float], Quarantined]]:
    """Export, score with Spark, then yield (chunk metadata, results, timings, quarantined rows) chunk by
    chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = Path(settings.batch_export_dir) if settings.batch_export_dir else settings.data_dir / "batch"
    run_dir = base / f"run-{run_id}"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "meta").mkdir(parents=True)
    export, results_dir = run_dir / "enterprises.parquet", run_dir / "results"
    texts = TextTable(prep.matcher, prep.scorer)
    t0 = time.perf_counter()
    writer: Any = None
    chunks = 0
    quarantined: list[Quarantined] = []  # per chunk, found while exporting
    try:
        for k, raw in enumerate(iter_candidates(engine, prep.catalog_key, as_of, chunk)):
            frame, meta, bad = encode_chunk(raw, prep, as_of)
            quarantined.append(bad)
            frame["text_row"] = texts.rows_for(frame.pop("text_key").to_numpy())
            frame["chunk"] = k
            if len(frame):  # (a chunk quarantined whole has nothing to export, only its metadata)
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(export, table.schema)
                writer.write_table(table)
            meta.to_parquet(run_dir / "meta" / f"{k}.parquet", index=False)
            chunks += 1
    finally:
        if writer is not None:
            writer.close()
    load = time.perf_counter() - t0
    if not chunks:
        return
    if writer is None:  # every row was quarantined: nothing for Spark to score
        for k in range(chunks):
            meta = pd.read_parquet(run_dir / "meta" / f"{k}.parquet")
            yield meta.iloc[0:0], no_results(), {"load": load} if k == 0 else {}, quarantined[k]
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    t1 = time.perf_counter()
    score_parquet(spark_session(workers), export, results_dir, prep.scorer, texts.signals(), as_of)
    scoring = time.perf_counter() - t1
    for k in range(chunks):
        meta = pd.read_parquet(run_dir / "meta" / f"{k}.parquet")
        part = results_dir / f"chunk={k}"
        results = pd.read_parquet(part) if part.exists() else no_results()
        lost = results["status"] == QUARANTINED
        failed = [{"uscc": str(u), "reason": str(r)} for u, r in
                  zip(results.loc[lost, "uscc"], results.loc[lost, "policy_id"], strict=True)]
        results = results[~lost].reset_index(drop=True)
        timings = {"load": load, "rules": scoring} if k == 0 else {}  # Spark's time counts as rules + ranking
        yield without(meta, failed), results, timings, quarantined[k] + failed
    shutil.rmtree(run_dir, ignore_errors=True)
