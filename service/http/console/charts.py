"""Charts drawn on the server as inline SVG: no script, no CDN, readable with JavaScript off and in a
screenshot. Every chart has a title (``<title>`` and a visible caption), its number printed beside every bar,
and its labels in Chinese as given. Only presentation attributes are used (the console's Content-Security-Policy
allows no inline style). Pure functions: text in, markup out.

>>> svg = bar_chart("兑现漏斗", [("符合条件", 12), ("已兑现", 3)])
>>> "兑现漏斗" in svg and ">12<" in svg and ">3<" in svg
True
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from itertools import count

from markupsafe import Markup

#: Bar colours, one per series (and per bar of a one-series chart when ``colours`` is given).
PALETTE = ("#1f5fa8", "#2e8b57", "#d98e04", "#b03a2e", "#6c4f9e", "#5c6b73", "#0f7c8c")
TEXT = "#1b1b1b"
MUTED = "#5c6b73"
FONT = "'Noto Sans CJK SC','WenQuanYi Micro Hei','Microsoft YaHei','PingFang SC',sans-serif"
_ids = count(1)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _text_width(text: str, size: float) -> float:
    """Approximate width of a label: a CJK character is about one em wide, a Latin one about half."""
    return sum(size if ord(ch) > 0x2E7F else size * 0.58 for ch in text)


def _open(title: str, width: float, height: float, desc: str) -> tuple[str, list[str]]:
    uid = f"chart-{next(_ids)}"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width:.0f} {height:.0f}" '
             f'width="{width:.0f}" height="{height:.0f}" preserveAspectRatio="xMinYMin meet" aria-labelledby="{uid}-t {uid}-d" '
             f'font-family="{escape(FONT)}" font-size="14">',
             f'<title id="{uid}-t">{escape(title)}</title><desc id="{uid}-d">{escape(desc)}</desc>',
             f'<text x="0" y="20" font-size="16" font-weight="bold" fill="{TEXT}">{escape(title)}</text>']
    return uid, parts


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, unit: str = "家", colours: Sequence[str] = (),
              width: int = 640, empty: str = "暂无数据") -> Markup:
    """Horizontal bars, one per (label, value), the value printed after each bar (``unit`` appended)."""
    bars = list(bars)
    size, row = 14, 30
    label_w = max([_text_width(label, size) for label, _ in bars] + [56.0]) + 12
    value_w = max([_text_width(_number(v) + unit, size) for _, v in bars] + [40.0]) + 10
    top = 36
    height = top + max(1, len(bars)) * row + 8
    desc = "；".join(f"{label} {_number(v)}{unit}" for label, v in bars) or empty
    _, parts = _open(title, width, height, desc)
    if not bars:
        parts.append(f'<text x="0" y="{top + 18}" fill="{MUTED}">{escape(empty)}</text>')
    top_value = max([v for _, v in bars] + [0.0])
    span = max(10.0, width - label_w - value_w)
    for i, (label, value) in enumerate(bars):
        y = top + i * row
        w = 0.0 if top_value <= 0 else max(0.0, value) / top_value * span
        colour = colours[i % len(colours)] if colours else PALETTE[0]
        parts.append(f'<text x="{label_w - 8:.0f}" y="{y + 19}" text-anchor="end" fill="{TEXT}">{escape(label)}</text>')
        parts.append(f'<rect x="{label_w:.0f}" y="{y + 5}" width="{w:.1f}" height="20" rx="2" fill="{colour}"/>')
        parts.append(f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 19}" fill="{TEXT}">'
                     f'{escape(_number(value))}{escape(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def grouped_bar_chart(title: str, groups: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], *,
                      unit: str = "家", width: int = 640, empty: str = "暂无数据") -> Markup:
    """Horizontal bars in groups: per (group label, one value per series), one bar per series with its value
    beside it; a legend names the series."""
    groups = [(label, list(values)) for label, values in groups]
    size, bar, gap = 14, 18, 12
    label_w = max([_text_width(label, size) for label, _ in groups] + [56.0]) + 12
    value_w = max([_text_width(_number(v) + unit, size) for _, vs in groups for v in vs] + [40.0]) + 10
    legend_y = 40
    top = legend_y + 18
    block = len(series) * bar + gap
    height = top + max(1, len(groups)) * block + 4
    desc = "；".join(f"{label}：" + "，".join(f"{s} {_number(v)}{unit}" for s, v in zip(series, vs, strict=True))
                    for label, vs in groups) or empty
    _, parts = _open(title, width, height, desc)
    x = 0.0
    for j, name in enumerate(series):
        parts.append(f'<rect x="{x:.0f}" y="{legend_y - 11}" width="12" height="12" fill="{PALETTE[j % len(PALETTE)]}"/>')
        parts.append(f'<text x="{x + 16:.0f}" y="{legend_y}" fill="{TEXT}">{escape(name)}</text>')
        x += 16 + _text_width(name, size) + 18
    if not groups:
        parts.append(f'<text x="0" y="{top + 18}" fill="{MUTED}">{escape(empty)}</text>')
    top_value = max([v for _, vs in groups for v in vs] + [0.0])
    span = max(10.0, width - label_w - value_w)
    for i, (label, values) in enumerate(groups):
        y0 = top + i * block
        parts.append(f'<text x="{label_w - 8:.0f}" y="{y0 + block / 2 + 2:.0f}" text-anchor="end" fill="{TEXT}">'
                     f'{escape(label)}</text>')
        for j, value in enumerate(values):
            y = y0 + j * bar
            w = 0.0 if top_value <= 0 else max(0.0, value) / top_value * span
            parts.append(f'<rect x="{label_w:.0f}" y="{y + 2}" width="{w:.1f}" height="{bar - 4}" rx="2" '
                         f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(series[j])}</title></rect>')
            parts.append(f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + bar - 5}" font-size="13" '
                         f'fill="{TEXT}">{escape(_number(value))}{escape(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(title: str, columns: Sequence[tuple[str, float]], *, unit: str = "家", width: int = 640,
                 height: int = 240, empty: str = "暂无数据") -> Markup:
    """Vertical columns over time (label under each, e.g. a week), the value printed above every column."""
    columns = list(columns)
    top, bottom = 52, 40
    desc = "；".join(f"{label} {_number(v)}{unit}" for label, v in columns) or empty
    _, parts = _open(title, width, height, desc)
    base = height - bottom
    parts.append(f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="{MUTED}" stroke-width="1"/>')
    if not columns:
        parts.append(f'<text x="0" y="{top + 18}" fill="{MUTED}">{escape(empty)}</text>')
    slot = width / max(1, len(columns))
    top_value = max([v for _, v in columns] + [0.0])
    for i, (label, value) in enumerate(columns):
        h = 0.0 if top_value <= 0 else max(0.0, value) / top_value * (base - top)
        x = i * slot + slot * 0.2
        cx = i * slot + slot / 2
        parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{slot * 0.6:.1f}" height="{h:.1f}" rx="2" '
                     f'fill="{PALETTE[1]}"/>')
        parts.append(f'<text class="value" x="{cx:.1f}" y="{base - h - 6:.1f}" text-anchor="middle" font-size="13" '
                     f'fill="{TEXT}">{escape(_number(value))}</text>')
        parts.append(f'<text x="{cx:.1f}" y="{base + 18}" text-anchor="middle" font-size="12" fill="{MUTED}">'
                     f'{escape(label)}</text>')
    parts.append(f'<text x="{width}" y="{height - 4}" text-anchor="end" font-size="12" fill="{MUTED}">'
                 f'单位：{escape(unit)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
