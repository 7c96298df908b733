"""Property-based fuzzing of every operation in the OpenAPI schema (schemathesis, in-process ASGI).

Each operation gets schema-valid (positive) and schema-violating (negative) requests, authenticated
as an admin so the protected handlers run too; every response must be no 5xx, carry a documented
status and content type, match its documented schema, and negative data must be refused. Destructive
admin calls (publish, retire, new versions, overwriting a stored firm) are redirected to sandbox
records of this test, so the catalog and the firms the other tests rely on stay as they are.

The number of generated cases is counted per operation and asserted against a floor; the floors sum
to well over 1000 (checked below), so the run is known to have generated at least that many.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import Session

from policies.schema import Policy
from profiles.uscc import UsccError, normalize_uscc
from service.bootstrap import ServiceState
from service.http.app import create_app
from service.settings import Settings
from service.store.catalog import add_draft, latest_versions, policy_versions, set_status
from tests.service.conftest import Population, Tokens, make_uscc, policy_body

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]

# the schema the app serves (a bare app: no lifespan, no database needed to describe the routes)
OPENAPI = create_app(Settings(database_url="sqlite:///:memory:")).openapi()
OPERATIONS = sorted((method.upper(), path) for path, item in OPENAPI["paths"].items() for method in item)

#: examples hypothesis is asked for per operation, and the floor each must reach. Operations without
#: any input have exactly one distinct request; the others have unbounded input spaces.
MAX_EXAMPLES = 90
FLOOR_WITH_INPUT = 75


def _has_input(method: str, path: str) -> bool:
    op = OPENAPI["paths"][path][method.lower()]
    return bool(op.get("parameters") or op.get("requestBody"))


def floor(method: str, path: str) -> int:
    return FLOOR_WITH_INPUT if _has_input(method, path) else 1


SANDBOX_POLICY = "fuzz-sandbox"
SANDBOX_USCC = make_uscc(777_777, prefix="91320399")


@pytest.fixture(scope="module")
def fuzz_schema(app: FastAPI, client: Any) -> Any:
    """The served schema, bound to the worker's (already started) app for in-process calls."""
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    schema.app = app
    return schema


@pytest.fixture(scope="module")
def guard(state: ServiceState, population: Population) -> Callable[[Any], None]:
    """Keep destructive admin calls away from the catalog and the stored firms other tests read."""
    with Session(state.engine) as session:
        if not policy_versions(session, policy_id=SANDBOX_POLICY):
            policy = Policy.model_validate({**policy_body(SANDBOX_POLICY, {"all": [{"field": "employees", "ge": 50}]}),
                                            "version": 1})
            first = add_draft(session, policy=policy, author="fuzz")
            session.flush()
            set_status(session, row=first, status="published")
            add_draft(session, policy=policy, author="fuzz")
            session.commit()
        protected_policies = {r.policy_id for r in latest_versions(session)} - {SANDBOX_POLICY}
    protected_firms = {f.uscc for f in population.all}

    def apply(case: Any) -> None:
        params = case.path_parameters or {}
        if case.method in ("PUT", "POST") and params.get("policy_id") in protected_policies:
            params["policy_id"] = SANDBOX_POLICY
        if case.method == "PUT" and "uscc" in params:
            try:
                code = normalize_uscc(str(params["uscc"]))
            except UsccError:
                return
            if code in protected_firms:
                params["uscc"] = SANDBOX_USCC
                if isinstance(case.body, dict) and "uscc" in case.body:
                    case.body["uscc"] = SANDBOX_USCC

    return apply


RULES = [{"all": []}, {"all": [{"field": "size", "in": ["small", "micro"]}]},
         {"any": [{"field": "employees", "ge": 100}, {"not": {"field": "flags", "has_any": ["bankruptcy"]}}]}]


@pytest.fixture(scope="module")
def known(population: Population) -> dict[str, list[Any]]:
    """Real identifiers to splice into generated requests, so a share of them reaches past validation."""
    firms = [population.firm_a.uscc, population.samples[3].uscc, population.synthetic[0].uscc, SANDBOX_USCC]
    return {"uscc": firms, "policy_id": ["union-fee-refund-small-micro", SANDBOX_POLICY, "bank-fee-reduction"],
            "version": [1, 2], "rule": RULES}


def enrich(case: Any, known: dict[str, list[Any]], pick: int) -> None:
    """Replace generated identifiers in a schema-valid case with real ones (``pick`` chooses which);
    the rest of the case — query, body, dates, numbers — stays as generated."""
    def choose(name: str) -> Any:
        return known[name][pick % len(known[name])]

    params = case.path_parameters or {}
    for name in ("uscc", "policy_id", "version"):
        if name in params:
            params[name] = choose(name)
    body = case.body
    if isinstance(body, dict):
        if "profile" in body and isinstance(body["profile"], dict):
            body["profile"]["uscc"] = choose("uscc")
        if "uscc" in body:
            body["uscc"] = params.get("uscc", choose("uscc"))
        if "policy_id" in body:
            body["policy_id"] = choose("policy_id")
        if "eligibility" in body:
            body["eligibility"] = choose("rule")
        if isinstance(body.get("source"), dict):  # exactly one of task_no / measure_no: not in the schema
            body["source"] = {"section": "（十一）测试", **({"task_no": 1 + pick * 13} if pick % 2 else {"measure_no": 1 + pick % 10})}


def _record(method: str, path: str, count: int, statuses: Counter[int]) -> None:
    """Counts per operation, for the report (one file per operation in the run's data dir)."""
    out = Path(os.environ["POLICYFIT_DATA_DIR"]) / "schemathesis-cases"
    out.mkdir(parents=True, exist_ok=True)
    name = f"{method} {path}".replace("/", "_").replace(" ", "_").replace("{", "").replace("}", "")
    (out / f"{name}.json").write_text(json.dumps({"operation": f"{method} {path}", "cases": count,
                                                  "statuses": dict(sorted(statuses.items()))}))


def test_the_floors_add_up_to_at_least_1000_cases() -> None:
    assert len(OPERATIONS) >= 15
    assert sum(floor(m, p) for m, p in OPERATIONS) >= 1000


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_operation(fuzz_schema: Any, guard: Callable[[Any], None], known: dict[str, list[Any]],
                        tokens: Tokens, fresh_limiter: None, method: str, path: str) -> None:
    operation = fuzz_schema[path][method]
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if _has_input(method, path):
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    headers = {"Authorization": f"Bearer {tokens.admin}"}
    seen: list[int] = []
    statuses: Counter[int] = Counter()

    @hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                         phases=[Phase.explicit, Phase.generate, Phase.shrink],
                         suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies), pick=st.integers(-1, 11))
    def run(case: Any, pick: int) -> None:
        if pick >= 0 and case.meta is not None and case.meta.generation.mode.is_positive:
            enrich(case, known, pick)
        guard(case)
        seen.append(1)
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses[response.status_code] += 1

    run()
    _record(method, path, len(seen), statuses)
    assert len(seen) >= floor(method, path), f"{method} {path}: only {len(seen)} cases generated"
