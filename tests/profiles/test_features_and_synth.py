from __future__ import annotations

import datetime as dt
import json

import numpy as np
from typer.testing import CliRunner

from profiles.columns import values
from profiles.features import derive
from profiles.model import parse_profile
from profiles.synth import synthesize
from service.main import app

AS_OF = dt.date(2024, 6, 1)


def test_portrait_tags_and_derived_fields() -> None:
    p = parse_profile({
        "uscc": "91110000600037341L", "name": "x", "industry_code": "I6510", "employees": 8,
        "annual_revenue_wan": 40, "established_on": "2024-01-10", "qualifications": ["tech_sme"],
        "tax_credit_grade": "A", "taxpayer_type": "small_scale", "flags": [],
    })
    portrait = derive(p, AS_OF)
    r = portrait.record
    assert (r["size"], r["is_sme"], r["industry_section"], r["industry_division"]) == ("micro", True, "I", "I65")
    assert r["size_category"] == "software" and r["age_years"] < 1
    assert portrait.tags[:3] == ["小微企业", "科技型中小企业", "新办企业"]
    assert "A级纳税人" in portrait.tags and "小规模纳税人" in portrait.tags
    out = portrait.to_json()
    assert out["size"] == "micro" and out["size_source"] == "derived" and out["industry_name"] == "软件开发"


def test_age_in_years() -> None:
    def age(founded: str) -> float:
        profile = parse_profile({"uscc": "91110000600037341L", "name": "x", "established_on": founded})
        return derive(profile, AS_OF).record["age_years"]

    assert age("2020-06-01") == 4.0
    assert age("2025-01-01") == 0.0  # founded after the evaluation date: never negative


def test_synthetic_population_is_seeded_valid_and_labelled() -> None:
    a, b = synthesize(2000, seed=5), synthesize(2000, seed=5)
    assert [a.record(i) for i in range(50)] == [b.record(i) for i in range(50)]
    assert synthesize(50, seed=6).record(0) != a.record(0)
    for i in range(2000):
        record = a.record(i)
        assert record["name"].endswith("（合成）")
        parse_profile(record)  # every synthetic record is a valid EnterpriseProfile v1
    assert len(set(a.uscc)) == 2000


def test_synthetic_mix_looks_like_a_prefecture_register() -> None:
    pop = synthesize(20000, seed=3)
    batch = pop.batch.with_derived(AS_OF)
    entity = np.array(values("entity_type"))[batch.columns["entity_type"]]
    size = batch.columns["size"]
    assert 0.55 < (entity == "individual_business").mean() < 0.75
    micro_small = np.isin(size, [values("size").index("micro"), values("size").index("small")]).mean()
    assert micro_small > 0.9
    assert (size == values("size").index("large")).mean() < 0.005
    regions = set(np.array(values("region"))[batch.columns["region"]])
    assert len(regions) == 14


def test_profiles_synth_cli_writes_jsonl(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pop.jsonl"
    result = CliRunner().invoke(app, ["profiles", "synth", "--n", "25", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0 and "合成数据" in result.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 25 and all(parse_profile(json.loads(line)) for line in lines)
    bad = CliRunner().invoke(app, ["profiles", "synth", "--n", "0"])
    assert bad.exit_code == 2
