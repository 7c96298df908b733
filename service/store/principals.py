"""Who a bearer token is: the one check of a token row (not revoked, not expired), shared by the token
lookup and the console sessions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from service.db.tables import ApiToken, utcnow
from service.store.values import as_utc

ROLES = ("enterprise", "staff", "admin")


@dataclass(frozen=True)
class Principal:
    token_id: int | None
    role: str  # anonymous | enterprise | staff | admin
    label: str
    uscc: str | None = None
    expires_at: dt.datetime | None = field(default=None, compare=False, repr=False)

    @property
    def is_staff(self) -> bool:
        return self.role in ("staff", "admin")

    def expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires_at is not None and as_utc(self.expires_at) <= (now or utcnow())


ANONYMOUS = Principal(None, "anonymous", "anonymous")


def principal_of(row: ApiToken | None, *, now: dt.datetime | None = None) -> Principal | None:
    """The principal of a token row, or None when there is no row or it is revoked or expired."""
    if row is None or row.revoked_at is not None:
        return None
    principal = Principal(row.id, row.role, row.label, row.uscc, row.expires_at)
    return None if principal.expired(now) else principal
