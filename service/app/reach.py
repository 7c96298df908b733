"""Reverse matching: which stored enterprises a policy reaches (the government's proactive list), and what a
draft would change before it is published. Every firm shown to staff is audited (committed here).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from sqlmodel import Session

from matching.relevance import dense_passage
from matching.reverse import rank_eligible
from matching.rules import ELIGIBLE, UNKNOWN, RuleEngine
from policies.schema import Policy
from profiles.columns import code_table, decode
from service.app.catalog_admin import version_of
from service.app.enterprises import Access, audit
from service.app.errors import AppError, ErrorCode, not_found
from service.bootstrap import Population, ServiceState
from service.store.catalog import policy_versions


def reach_status(state: ServiceState, session: Session, policy: Policy,
                 as_of: dt.date) -> tuple[np.ndarray, Population]:
    """The rule's status (eligible / unknown / failed) for every stored enterprise, and that population."""
    if not policy.offered:  # a commitment or plan work has no rule: it reaches no firm
        raise AppError(ErrorCode.NOT_A_POLICY,
                       f"“{policy.title}”是{policy.kind_label}，不是企业申请享受的政策，没有适用企业名单")
    population = state.population(session, as_of)
    result = RuleEngine([policy]).evaluate(population.batch, as_of, near_misses=False)
    return result.status[0], population


def policy_enterprises(state: ServiceState, session: Session, access: Access, policy_id: str, *, page: int,
                       size: int, as_of: dt.date) -> dict[str, Any]:
    """The firms a published policy should be told to, best-fitting first (one page), with counts by region
    and size."""
    matcher = state.matcher(session)
    entry = matcher.catalog.entries.get(policy_id)
    if entry is not None and not entry.offered:  # a commitment or plan work: findable, never matched to firms
        reach_status(state, session, entry, as_of)  # says so (not_a_policy)
    if policy_id not in matcher.catalog.policies:
        raise not_found(f"未找到现行政策“{policy_id}”")
    policy = matcher.catalog[policy_id]
    status, population = reach_status(state, session, policy, as_of)
    eligible = status == ELIGIBLE
    rows = np.flatnonzero(eligible)
    sim = None
    if matcher.retriever.embedder is not None and len(rows):
        index = state.enterprise_index(population)
        sim = index.similarity(matcher.retriever.embedder.embed([dense_passage(policy)], "query"))
        rows = rank_eligible(eligible, sim, population.usccs)
    counts = sizes_and_regions(population, np.flatnonzero(eligible))
    start = (page - 1) * size
    columns = population.batch.columns
    items = [{"uscc": population.usccs[i], "name": population.names[i],
              "region": decode("region", columns["region"][i]),
              "size": decode("size", columns["size"][i]),
              "similarity": None if sim is None else round(float(sim[i]), 4)} for i in rows[start:start + size]]
    audit(session, access, [item["uscc"] for item in items])
    session.commit()
    return {"policy_id": policy_id, "version": policy.version, "eligible": int(eligible.sum()),
            "possibly_eligible": int((status == UNKNOWN).sum()), "by_region": counts["region"],
            "by_size": counts["size"], "page": page, "size": size, "items": items,
            "catalog_version": matcher.catalog.version, "model_id": matcher.model_id}


def preview(state: ServiceState, session: Session, access: Access, policy_id: str, *, version: int | None,
            as_of: dt.date) -> dict[str, Any]:
    """Before publishing: which firms the draft (or ``version``) reaches against the version in force."""
    draft_row = version_of(session, policy_id, version, None if version is not None else "draft")
    draft = Policy.model_validate({**draft_row.data, "status": "published"})
    draft_status, population = reach_status(state, session, draft, as_of)
    published_rows = [r for r in policy_versions(session, policy_id=policy_id) if r.status == "published"]
    if published_rows:
        current = Policy.model_validate(published_rows[-1].data)
        current_status, _ = reach_status(state, session, current, as_of)
    else:
        current_status = np.zeros_like(draft_status)
    new = np.flatnonzero((draft_status == ELIGIBLE) & (current_status != ELIGIBLE))
    lost = np.flatnonzero((draft_status != ELIGIBLE) & (current_status == ELIGIBLE))

    def counts(s: np.ndarray) -> dict[str, int]:
        return {"eligible": int((s == ELIGIBLE).sum()), "possibly_eligible": int((s == UNKNOWN).sum())}

    regions = population.batch.columns["region"]

    def sample(rows: np.ndarray) -> list[dict[str, Any]]:
        return [{"uscc": population.usccs[i], "name": population.names[i],
                 "region": decode("region", regions[i])} for i in rows[:20]]

    audit(session, access, [population.usccs[i] for i in [*new[:20], *lost[:20]]])
    session.commit()
    return {"policy_id": policy_id, "draft_version": draft_row.version,
            "published_version": published_rows[-1].version if published_rows else None,
            "draft": counts(draft_status), "published": counts(current_status), "newly_reached": len(new),
            "no_longer_reached": len(lost), "sample_newly_reached": sample(new), "sample_no_longer_reached": sample(lost)}


def sizes_and_regions(population: Population, rows: np.ndarray) -> dict[str, dict[str, int]]:
    """The firms at ``rows`` counted by region and by size, under their Chinese labels."""
    out: dict[str, dict[str, int]] = {}
    for field_name in ("region", "size"):
        codes = population.batch.columns[field_name][rows]
        names = code_table(field_name, unknown="未知")
        counts = np.bincount(codes.astype(np.int64) + 1, minlength=len(names))
        out[field_name] = {names[i]: int(c) for i, c in enumerate(counts) if c}
    return out
