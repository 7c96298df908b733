"""The one write path of enterprise profiles: what a source states about a firm is recorded as that source's
document (``enterprise_source``), every source's document about the firm is merged (:func:`profiles.merge.merge`)
and the merged profile, its provenance and its conflicts are stored on ``enterprise`` — only when something
changed, so a restatement writes nothing and the nightly batch re-scores nothing.

Callers: the departments' feeds (:mod:`service.app.feeds`), the import of whole profiles
(:mod:`service.app.importer`, the firm's own statement) and ``PUT /v1/enterprises/{uscc}`` and the console's
form (:mod:`service.app.enterprises`: the firm or a hotline operator). Nothing here commits: the caller's
transaction holds a chunk of statements, all in or all out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlmodel import Session

from profiles.merge import aging_provenance, merge
from profiles.model import EnterpriseProfile, ProfileError, parse_profile, qualification_code
from profiles.sources import OPEN_SOURCES, SELF
from service.db.tables import Enterprise, EnterpriseSource
from service.store.enterprises import enterprises_of, write_merged
from service.store.sources import put_source_doc, source_docs
from service.store.values import canonical_hash

Outcome = Literal["created", "updated", "unchanged", "waiting"]


@dataclass(frozen=True)
class Statement:
    """What ``source`` says of firm ``uscc`` on ``as_of``: ``values`` are validated stated values (JSON form,
    without ``uscc``). ``whole``: the source's whole statement, replacing its document (the firm's own
    profile, a hotline operator's record); otherwise a feed row, updating the fields it names."""

    uscc: str
    source: str
    as_of: dt.date
    values: dict[str, Any]
    whole: bool = False


@dataclass
class Recorded:
    """What recording one statement did: the firm's row (None while it is waiting for a name) and whether
    the source's document changed."""

    outcome: Outcome
    row: Enterprise | None
    doc_changed: bool = False
    conflicts: list[dict[str, Any]] = field(default_factory=list)


def _updated_doc(doc: dict[str, Any] | None, statement: Statement) -> dict[str, Any]:
    """The source's document after ``statement``. A feed row changes a field only when its date is not older
    than the stored one (an old file imported late never overrides a newer fact); a whole statement replaces
    the document, keeping the newer date of a value it restates unchanged. Qualifications are certificates:
    a row names the ones it knows (one replaces the stored certificate of the same code, the others stay) and
    an explicit empty list clears them."""
    values = dict((doc or {}).get("values", {}))
    dates = dict((doc or {}).get("as_of", {}))
    day = statement.as_of.isoformat()
    if statement.whole:
        new_dates = {}
        for name, value in statement.values.items():
            old = dates.get(name)
            new_dates[name] = max(old, day) if old is not None and values.get(name) == value else day
        return {"values": dict(statement.values), "as_of": new_dates}
    for name, value in statement.values.items():
        old = dates.get(name)
        if old is not None and day < old:
            continue
        if name == "qualifications" and value and values.get(name):
            given = {qualification_code(item) for item in value}
            value = [item for item in values[name] if qualification_code(item) not in given] + list(value)
        values[name], dates[name] = value, day
    return {"values": values, "as_of": dates}


def _legacy_doc(row: Enterprise) -> dict[str, Any]:
    """A profile stored before any feed, as the firm's own statement dated the day it was last saved."""
    day = row.updated_at.date().isoformat()
    values = {k: v for k, v in row.profile.items() if k != "uscc"}
    return {"values": values, "as_of": dict.fromkeys(values, day)}


def merged_hash(profile: dict[str, Any], provenance: dict[str, Any] | None) -> str:
    """The content hash of what matching reads: the profile and, for every field that ages, the date its
    value was observed (a re-confirmed value moves the day it turns stale; a date of a field that never ages
    changes nothing). Without such dates (a legacy profile), the profile's own hash."""
    dated = aging_provenance(provenance)
    return canonical_hash({"profile": profile, "as_of": dated}) if dated else canonical_hash(profile)


def _stored_form(uscc: str, merged: dict[str, Any]) -> tuple[EnterpriseProfile, dict[str, Any]]:
    profile = parse_profile({**merged, "uscc": uscc})
    return profile, profile.stated()


def record(session: Session, statements: list[Statement]) -> list[Recorded | ProfileError]:
    """Record ``statements`` (at most one per firm) and re-merge their firms; per statement what it did, or
    the ProfileError refusing it (nothing of it written: the merged profile would not be valid)."""
    codes = [s.uscc for s in statements]
    assert len(set(codes)) == len(codes), "one statement per firm in a batch"
    stored_docs = source_docs(session, usccs=codes)
    rows = enterprises_of(session, usccs=codes)
    out: list[Recorded | ProfileError] = []
    for statement in statements:
        try:
            out.append(_record_one(session, statement, stored_docs.get(statement.uscc, {}),
                                   rows.get(statement.uscc)))
        except ProfileError as exc:
            out.append(exc)
    return out


def _record_one(session: Session, statement: Statement, stored: dict[str, EnterpriseSource],
                row: Enterprise | None) -> Recorded:
    docs = {source: r.doc for source, r in stored.items()}
    # A profile stored before any feed (no documents) is of unknown origin. A whole statement of the firm's
    # word (its own, or a hotline operator's: the console's form shows that profile and saves it edited)
    # supersedes it, as a save always did; a department's row keeps it as the firm's own statement.
    legacy = row is not None and not docs and row.provenance is None
    if legacy and statement.whole and statement.source in OPEN_SOURCES:
        legacy = False
        if statement.source == SELF and row is not None and \
                statement.values == {k: v for k, v in row.profile.items() if k != "uscc"}:
            return Recorded("unchanged", row)  # the firm restates that profile: nothing to write
    if legacy and row is not None:
        docs[SELF] = _legacy_doc(row)
    doc = _updated_doc(docs.get(statement.source), statement)
    docs[statement.source] = doc
    merged = merge(docs)
    try:
        profile, data = _stored_form(statement.uscc, merged.profile)
    except ProfileError as exc:
        if row is None and "name" not in merged.profile:
            profile = None  # facts about a firm not registered here yet: kept, waiting for its name
        else:
            raise ProfileError(exc.field, f"与其他来源合并后的画像无效：{exc}", exc.errors) from None
    # from here on nothing can refuse the statement: write the documents, then the merged row (a legacy
    # profile is kept as the firm's own statement; a statement of the firm itself was built on it)
    if legacy and statement.source != SELF:
        put_source_doc(session, uscc=statement.uscc, source=SELF, doc=docs[SELF], stored=None)
    changed = put_source_doc(session, uscc=statement.uscc, source=statement.source, doc=doc,
                             stored=stored.get(statement.source))
    if profile is None:
        return Recorded("waiting", None, changed)
    provenance = merged.provenance
    conflicts = merged.conflicts
    written, did = write_merged(session, uscc=statement.uscc, row=row, profile=profile, stored=data,
                                provenance=provenance, conflicts=conflicts,
                                content_hash=merged_hash(data, provenance))
    outcome: Outcome = "unchanged" if not did else ("created" if row is None else "updated")
    return Recorded(outcome, written, changed, conflicts)
