"""`policies lint` warns (without failing) about entries whose review date is missing or has passed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from policies.lint import main
from policies.loader import CATALOG_DIR

POLICY = "union-fee-refund-small-micro.yaml"
COMMITMENT = "sme-telecom-fee-reduction.yaml"


def _copy(tmp_path: Path, *names: str) -> Path:
    for name in names:
        shutil.copy(CATALOG_DIR / name, tmp_path / name)
    return tmp_path


def _line(path: Path, key: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1)
                if line.startswith(f"{key}:"))


def test_no_warning_before_the_review_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _copy(tmp_path, POLICY, COMMITMENT)
    assert main([str(directory), "--as-of", "2027-05-31"]) == 0  # review_by itself is still in time
    out, err = capsys.readouterr()
    assert "警告" not in err and "需复核" not in out
    assert out.startswith("目录校验通过：1 条政策，服务承诺 1 条")


def test_a_passed_review_date_warns_with_file_and_line_but_does_not_fail(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _copy(tmp_path, POLICY, COMMITMENT)
    assert main([str(directory), "--as-of=2027-06-01"]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if "警告" in line]
    assert len(warnings) == 2  # every kind of entry is reviewed, not only policies
    line = _line(directory / POLICY, "review_by")
    assert f"{POLICY}:{line}: review_by: 警告：复核期限 2027-05-31 已过（今天 2027-06-01，上次复核 2026-11-30）" \
        in err
    assert "警告 2 条（需复核的条目或到期的参数，不影响通过）" in out


def test_a_missing_review_date_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _copy(tmp_path, COMMITMENT)
    text = (CATALOG_DIR / POLICY).read_text(encoding="utf-8")
    (directory / POLICY).write_text(text.replace("review_by: 2027-05-31\n", ""), encoding="utf-8")
    assert main([str(directory), "--as-of", "2027-01-01"]) == 0
    _, err = capsys.readouterr()
    assert err.splitlines() == [f"{POLICY}:1: review_by: 警告：缺少复核期限 review_by（复核日期 reviewed_on：2026-11-30），"
                                "请对照计划原文和所引规定复核后填写"]


def test_problems_still_fail_and_a_bad_date_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _copy(tmp_path, POLICY)
    text = (directory / POLICY).read_text(encoding="utf-8")
    (directory / POLICY).write_text(text.replace("category: tax_fee", "category: tax"), encoding="utf-8")
    assert main([str(directory), "--as-of", "2030-01-01"]) == 1
    _, err = capsys.readouterr()
    assert "目录校验失败：1 处问题" in err and "警告" not in err
    with pytest.raises(SystemExit, match="--as-of 应为日期"):
        main([str(directory), "--as-of", "明年"])


def test_the_real_catalog_is_in_review_today(capsys: pytest.CaptureFixture[str]) -> None:
    """Every entry was reviewed on 2026-11-30 and is due by 2027-05-31: no review warning on the review day (the
    parameters that have ended — 稳岗返还 2025, 工惠贷 2023 — are warned about, as designed)."""
    assert main(["--as-of", "2026-11-30"]) == 0
    _, err = capsys.readouterr()
    assert "review_by: 警告" not in err
    assert "unemployment.refund_rate_sme: 警告：参数已于2025-12-31到期" in err
