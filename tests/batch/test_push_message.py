"""What a pushed message says (issue 10, item 8): each item is an answer — why this firm qualifies with
its own values, how to apply and who leads, the value where known, the source in the plan — only
entitlements and selective programmes are pushed, and the message says where the whole package is."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from matching.package import estimate_value
from policies.loader import Catalog
from profiles.features import derive
from profiles.fields import SIZES
from profiles.model import parse_profile
from service.batch.run import run_batch
from service.db.tables import Outbox
from tests.batch.conftest import AS_OF, make_settings, seed


def test_each_pushed_item_answers_why_how_who_and_where(engine: Engine, database_url: str, catalog: Catalog) -> None:
    settings = make_settings(database_url, batch_chunk_size=50, public_base_url="https://zhengce.example.gov.cn/")
    records = {r["uscc"]: r for r in seed(engine, 80, seed=21)}
    run = run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    assert run.status == "succeeded"
    with Session(engine) as session:
        messages = list(session.exec(select(Outbox)))
    assert messages
    quoted = 0
    for message in messages:
        payload = message.payload
        uscc = payload["uscc"]
        assert payload["package_url"] == f"https://zhengce.example.gov.cn/v1/enterprises/{uscc}/package"
        assert payload["package_url"] in payload["package_note"]
        record = derive(parse_profile(records[uscc]), AS_OF).record
        for item in payload["items"]:
            policy = catalog[item["policy_id"]]
            assert item["strength"] in ("entitlement", "selective")  # procedures and channels are never pushed
            assert item["strength_label"] in ("符合条件即可享受", "可申报（择优）")
            assert item["how_to_apply"] == policy.how_to_apply and item["lead_departments"]
            assert (item["source_task"], item["source_measure"]) == (policy.source.task_no,
                                                                     policy.source.measure_no)
            assert item["why"].startswith(("贵企业", "本政策面向所有市场主体"))
            assert item["needs_review"] is (policy.needs_review(AS_OF) or policy.lapsed(AS_OF))
            assert item["estimated_value_wan"] == estimate_value(policy, record, AS_OF)
            assert item["source_document"] == policy.source_document
            assert policy.title in item["line"] and policy.how_to_apply.rstrip("。；") in item["line"]
            # the why line quotes the firm's own values (e.g. 企业规模为小型 for a small firm)
            size = record.get("size")
            if "企业规模为" in item["why"]:
                assert size is not None and f"企业规模为{SIZES[size]}" in item["why"]
                quoted += 1
    assert quoted  # some message quoted a firm's own size


def test_without_a_public_address_the_message_gives_the_package_path(engine: Engine, database_url: str) -> None:
    settings = make_settings(database_url, batch_chunk_size=50)
    seed(engine, 30, seed=22)
    run_batch(engine, settings, as_of=AS_OF, echo=lambda _: None)
    with Session(engine) as session:
        message = session.exec(select(Outbox)).first()
    assert message is not None
    assert message.payload["package_url"] == f"/v1/enterprises/{message.payload['uscc']}/package"
