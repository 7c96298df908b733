"""The plan itself (徐委办〔2023〕37号): its 160 tasks (附件1) and ten measures (附件2), parsed.

Used for the coverage table, for checking that catalog wording quotes the plan, and as the
raw-document baseline of the relevance evaluation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PLAN_FILE = Path(__file__).with_name("source") / "xuzhou-2023-business-environment-tasks.txt"
_CJK_GAP = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef])\s+(?=[\u3000-\u9fff\uff00-\uffef])")
_NUMERALS = "一二三四五六七八九十"


def tidy(text: str) -> str:
    """Remove the spaces the PDF conversion left between Chinese characters."""
    return _CJK_GAP.sub("", text.strip())


@dataclass(frozen=True)
class Task:
    no: int
    title: str
    text: str
    lead: str
    partners: str
    chapter: str  # 一、塑造一流政务服务品牌…
    section: str  # (十一) 落实各类减税降费政策


@dataclass(frozen=True)
class Measure:
    no: int
    title: str
    text: str


@cache
def tasks() -> tuple[Task, ...]:
    lines = PLAN_FILE.read_text(encoding="utf-8").split("\n")
    start = lines.index("附件 1")
    out: list[dict[str, str | int]] = []
    chapter = section = ""
    for line in lines[start:]:
        if line.strip() == "徐州市 2023 年优化营商环境十项举措":
            break
        if re.match(rf"^[{_NUMERALS}]+、", line):
            chapter = tidy(line)
            continue
        if re.match(rf"^[（(][{_NUMERALS}]+[)）]", line):
            section = tidy(line)
            continue
        if re.match(r"^\d+\t", line):
            no, title, text, lead, partners = (line.split("\t") + [""] * 5)[:5]
            out.append(dict(no=int(no), title=title, text=text, lead=lead, partners=partners,
                            chapter=chapter, section=section))
        elif line.startswith("\t\t") and out:
            out[-1]["text"] = str(out[-1]["text"]) + line.split("\t")[2]
    return tuple(
        Task(no=int(t["no"]), title=tidy(str(t["title"])), text=tidy(str(t["text"])),
             lead=tidy(str(t["lead"])), partners=tidy(str(t["partners"])), chapter=str(t["chapter"]),
             section=str(t["section"]))
        for t in out
    )


@cache
def measures() -> tuple[Measure, ...]:
    text = PLAN_FILE.read_text(encoding="utf-8")
    body = text.split("徐州市 2023 年优化营商环境十项举措")[-1]
    body = re.sub(r"\n\s*\n", "", body)  # paragraphs broken across pages
    out = []
    for i, numeral in enumerate(["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"], 1):
        m = re.search(rf"{numeral}是([^。]+)。(.*?)(?=\n?[{_NUMERALS}]是|\Z)", body, re.S)
        if m is None:
            raise ValueError(f"measure {i} not found in the plan text")
        out.append(Measure(i, tidy(m.group(1)), tidy(f"{numeral}是{m.group(1)}。{m.group(2)}")))
    return tuple(out)
