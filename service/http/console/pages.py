"""The console's and the calculator's templates (Jinja2, Chinese) and what they show: where an entry comes
from, the questions to ask, the titles of related entries. Every page carries protective headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from matching.results import MatchResult
from matching.search import search as search_entries
from policies.schema import STRENGTHS, Policy
from profiles.fields import FIELDS, PROFILE_FIELDS, SIZES, Kind
from profiles.labels import value_text, wan_text
from service.app.values import HOW_ESTIMATED, assumption_label, source_line, total_line, value_line
from service.app.values import provenance as plan_provenance
from service.http.console.forms import CALCULATOR_SKIPS, LONG_TEXT, NONE_OPTION

HTTP_DIR = Path(__file__).resolve().parent.parent
TEMPLATES = Jinja2Templates(directory=HTTP_DIR / "templates")
STATIC_DIR = HTTP_DIR / "static"

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'; object-src 'none'",
}

def provenance(entry: Any) -> str:
    """Where an entry comes from in the plan, as a person reads it: 《…重点任务》第63项 (never a bare number or id);
    '' for a national or provincial entry. Accepts an entry of a match result, a search hit or a catalog entry."""
    if isinstance(entry, Policy):
        entry = {"source_task": entry.source.task_no, "source_measure": entry.source.measure_no}
    return plan_provenance(entry)


def source_text(entry: Any) -> str:  # kept for templates written before provenance()
    return provenance(entry)


def question_groups(result: MatchResult) -> list[dict[str, Any]]:
    """The distinct questions of the possibly-eligible policies, those that concern most policies first:
    one answer from the caller often settles several of them."""
    groups: dict[str, list[str]] = {}
    for item in result.possibly_eligible:
        for question in item.questions:
            groups.setdefault(question, []).append(item.title)
    return [{"question": q, "titles": t} for q, t in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))]


def ask_list(result: MatchResult, console: bool) -> list[dict[str, Any]]:
    """The questions to put to the person in front of us, each once, in the matcher's order: phrased to the
    caller (请问…) in the console and to the firm (贵企业…) on the calculator."""
    if not result.questions:
        return question_groups(result)
    titles = {e.policy_id: e.title for e in result.possibly_eligible}
    return [{"question": a.ask_staff if console else a.ask_firm,
             "titles": [titles.get(pid, pid) for pid in a.settles]} for a in result.questions]


def words_answer(matcher: Any, words: str | None) -> dict[str, Any] | None:
    """What the firm's own words (诉求) find over the whole plan: None without words; otherwise the search
    answer, so that a page can say “未找到对应政策” and name the channel instead of pretending the package
    answers an off-topic request."""
    if not words or not words.strip():
        return None
    return search_entries(matcher, words, top=3)


def titles_of(result: MatchResult, ids: list[str]) -> list[str]:
    """Titles of package entries by id (exclusive groups name the other policy by its title)."""
    titles = {e.policy_id: e.title for e in result.package}
    return [f"“{titles[i]}”" if i in titles else "同类政策" for i in ids]


TEMPLATES.env.globals.update(question_groups=question_groups, ask_list=ask_list, provenance=provenance,
                             titles_of=titles_of, CALCULATOR_SKIPS=CALCULATOR_SKIPS, STRENGTHS=STRENGTHS,
                             FIELDS=FIELDS, PROFILE_FIELDS=PROFILE_FIELDS, Kind=Kind, SIZES=SIZES,
                             NONE_OPTION=NONE_OPTION, LONG_TEXT=LONG_TEXT, value_text=value_text,
                             source_text=source_text, wan_text=wan_text, value_line=value_line,
                             assumption_label=assumption_label, source_line=source_line, total_line=total_line,
                             HOW_ESTIMATED=HOW_ESTIMATED)


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response
