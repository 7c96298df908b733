"""The dashboard's server-side SVG charts (service/http/console/charts.py): well-formed, titled, every number
beside its bar, bars proportional to their values, Chinese labels escaped, nothing the console's
Content-Security-Policy would block (no script, no style attribute or element)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.http.console.charts import bar_chart, column_chart, grouped_bar_chart

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg" and root.get("role") == "img"
    assert "<script" not in svg and "style=" not in svg and "<style" not in svg
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{NS}text")]


def bar_widths(root: ET.Element) -> list[float]:
    return [float(r.get("width", "0")) for r in root.iter(f"{NS}rect")]


def test_bar_chart_has_a_title_labels_and_every_number() -> None:
    root = parse(bar_chart("兑现漏斗", [("符合条件", 120), ("已推送", 90), ("已兑现", 30), ("未获批准", 0)]))
    assert root.find(f"{NS}title").text == "兑现漏斗"  # type: ignore[union-attr]
    shown = texts(root)
    assert shown[0] == "兑现漏斗"  # the visible title
    for label, value in (("符合条件", "120家"), ("已推送", "90家"), ("已兑现", "30家"), ("未获批准", "0家")):
        assert label in shown and value in shown
    widths = bar_widths(root)
    assert widths[0] > widths[1] > widths[2] > widths[3] == 0
    assert widths[1] / widths[0] == pytest.approx(0.75, rel=1e-3) and widths[2] / widths[0] == pytest.approx(0.25, rel=1e-3)
    assert "符合条件 120家" in root.find(f"{NS}desc").text  # type: ignore[operator,union-attr]


def test_labels_are_escaped_and_thousands_grouped() -> None:
    svg = bar_chart("<b>标题</b> & 图", [("A&B<政策>", 1234567)])
    root = parse(svg)
    assert "<b>" not in svg and texts(root)[0] == "<b>标题</b> & 图"
    assert "A&B<政策>" in texts(root) and "1,234,567家" in texts(root)


def test_empty_charts_say_so() -> None:
    for svg in (bar_chart("空", []), grouped_bar_chart("空", [], ["甲"]), column_chart("空", [])):
        assert "暂无数据" in texts(parse(svg))


def test_grouped_chart_has_a_legend_and_a_number_per_bar() -> None:
    root = parse(grouped_bar_chart("按地区", [("鼓楼区", [10, 4, 6]), ("云龙区", [5, 5, 0])],
                                   ["符合条件", "已兑现", "应享未享"]))
    shown = texts(root)
    assert {"符合条件", "已兑现", "应享未享", "鼓楼区", "云龙区"} <= set(shown)
    assert [t for t in shown if t.endswith("家")] == ["10家", "4家", "6家", "5家", "5家", "0家"]
    widths = bar_widths(root)[3:]  # after the legend's three swatches
    assert widths[0] == max(widths) and widths[1] == pytest.approx(widths[0] * 0.4) and widths[5] == 0


def test_column_chart_prints_each_week_and_its_number() -> None:
    root = parse(column_chart("每周新增兑现", [("5/6", 3), ("5/13", 0), ("5/20", 7)], unit="项"))
    shown = texts(root)
    assert {"5/6", "5/13", "5/20", "3", "0", "7", "单位：项"} <= set(shown)
    heights = [float(r.get("height", "0")) for r in root.iter(f"{NS}rect")]
    assert heights[1] == 0 and heights[2] > heights[0] > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
                                  max_size=12), st.integers(0, 10**7)), max_size=12))
def test_any_bars_make_a_well_formed_chart_with_every_value(bars: list[tuple[str, int]]) -> None:
    root = parse(bar_chart("图", bars))
    shown = texts(root)
    for label, value in bars:
        assert label in shown and f"{value:,}家" in shown
    widths = bar_widths(root)
    assert len(widths) == len(bars) and all(w >= 0 for w in widths)
    if bars and max(v for _, v in bars) > 0:
        assert max(widths) == pytest.approx(max(widths[i] for i, (_, v) in enumerate(bars) if v == max(x for _, x in bars)))
    assert not re.search(r"\bnan\b|\binf\b", ET.tostring(root, encoding="unicode"))
