"""The package of one enterprise: a profile from outside validated, matched against the published catalog,
and (for the JSON API) its JSON computed once per content, catalog revision, date, query and cut.

No HTTP here: a profile that does not validate is :class:`~service.app.errors.AppError` ``invalid_profile``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from matching.results import MatchResult
from profiles.features import derive
from profiles.model import EnterpriseProfile, ProfileError, parse_profile
from service.app.errors import AppError, ErrorCode
from service.app.importer import check_json_types
from service.bootstrap import ServiceState
from service.store.values import canonical_hash


def parse_profile_json(data: Any, field_prefix: str = "", *, as_of: dt.date | None = None) -> EnterpriseProfile:
    """A profile from JSON: JSON types checked strictly, then the model (founding date not after
    ``as_of`` when given); ``invalid_profile`` naming the field (``field_prefix`` + the profile's field)."""
    try:
        check_json_types(data)
        return parse_profile(data, as_of=as_of)
    except ProfileError as exc:
        raise AppError(ErrorCode.INVALID_PROFILE, str(exc), f"{field_prefix}{exc.field}") from None


Provenance = dict[str, Any] | None  # a stored firm's {field: {source, as_of}} (None: a profile of unknown origin)


def match_profile(state: ServiceState, session: Session, profile_data: Any, *, query: str | None,
                  top: int | None, as_of: dt.date, provenance: Provenance = None) -> MatchResult:
    """The package for a profile given as JSON (validated here). With the stored firm's ``provenance``, a
    value older than its field's maximum age counts as unknown on ``as_of`` (asked again: 请核实…)."""
    profile = parse_profile_json(profile_data, "profile.")
    return state.matcher(session).match(derive(profile, as_of, provenance=provenance), query=query, top=top)


ProfileSource = EnterpriseProfile | Callable[[], EnterpriseProfile]


def package_json(state: ServiceState, session: Session, content_hash: str, profile: ProfileSource, *,
                 query: str | None, top: int | None, as_of: dt.date, provenance: Provenance = None) -> bytes:
    """The package as JSON, computed once per (content, catalog revision, date, query, cut) per worker.

    ``profile`` is a validated :class:`EnterpriseProfile` or a callable that gives one (parsed only
    when the answer is not cached yet). ``provenance`` is the stored firm's (see :func:`match_profile`); the
    firm's content hash covers the dates that make a value age, so the cache key needs nothing more.
    """
    revision, matcher = state.current(session)
    query = query.strip() if query else None

    def compute() -> bytes:
        portrait = derive(profile() if callable(profile) else profile, as_of, provenance=provenance)
        return matcher.match(portrait, query=query or None, top=top).model_dump_json().encode()

    return state.package((content_hash, revision, matcher.model_id, as_of, query, top), compute)


def match_json(state: ServiceState, session: Session, profile_data: Any, *, query: str | None, top: int | None,
               as_of: dt.date) -> bytes:
    """The policy calculator: the package of a profile that is not stored (nothing is written)."""
    profile = parse_profile_json(profile_data, "profile.", as_of=as_of)
    return package_json(state, session, canonical_hash(profile.stated()), profile, query=query, top=top,
                        as_of=as_of)
