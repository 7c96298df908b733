"""The has_union field (是否建立工会; absent = unknown) through every entry point: JSON, CSV, the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from profiles.model import ProfileError
from service.app.importer import check_json_types, import_file
from service.bootstrap import ServiceState
from tests.service.conftest import make_uscc, sample
from tests.service.test_import import _csv_line, stored, usccs


def test_json_types_take_booleans_only() -> None:
    check_json_types({"has_union": True})
    check_json_types({"has_union": None})
    for wrong in ("true", 1, "是"):
        with pytest.raises(ProfileError, match="has_union（是否建立工会）"):
            check_json_types({"has_union": wrong})


def test_csv_cells_say_yes_or_no_in_chinese_or_english(state: ServiceState, tmp_path: Path) -> None:
    codes = usccs(4)
    lines = [_csv_line(["uscc", "name", "industry_code", "has_union"])]
    for code, answer in zip(codes, ["是", "否", "", "也许"], strict=True):
        lines.append(_csv_line([code, f"工会测试{code[-6:]}有限公司", "C3411", answer]))
    path = tmp_path / "union.csv"
    path.write_text("".join(lines), encoding="utf-8")
    report = import_file(state.engine, path)
    rows = stored(state.engine, codes)
    assert rows[codes[0]].profile["has_union"] is True
    assert rows[codes[1]].profile["has_union"] is False
    assert "has_union" not in rows[codes[2]].profile  # empty cell = unknown
    assert codes[3] not in rows and report.rejected == 1  # 也许 is no answer


def test_match_api_reads_has_union(client: TestClient) -> None:
    profile = {**sample(0), "uscc": make_uscc(8801, "91320311"), "has_union": False}
    answer = client.post("/v1/match", json={"profile": profile})
    assert answer.status_code == 200
    assert answer.json()["enterprise"]["has_union"] is False
    wrong = client.post("/v1/match", json={"profile": {**profile, "has_union": "yes"}})
    assert wrong.status_code == 422 and "has_union" in wrong.json()["field"]
