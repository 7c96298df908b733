"""Rate limits that hold across workers and hosts: a sliding-window counter in the database.

Every limited call is counted in the ``rate_limit_window`` table (SQLite by default, PostgreSQL in
production), one row per (bucket, 10-second slot). A bucket is what is limited, e.g.
``match|ip:203.0.113.7`` or ``search|token:12``. A call is allowed when the calls of the last 60 s —
the five latest slots and this one in full, the slot that is half out of the window weighted by the
part still inside — stay within the limit, so a burst is held to exactly the limit and nobody doubles
an allowance by straddling a minute boundary. Deciding and counting is one atomic
``INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE`` statement: concurrent workers can never accept more
than the limit between them. Refused calls are not counted.

Who a client is: the socket peer's address, or — only when that peer is one of the configured
trusted proxies (``POLICYFIT_TRUSTED_PROXIES``, none by default) — the address that the nearest
untrusted hop of ``X-Forwarded-For`` names. IPv6 clients are counted per /64 (one subscriber's
prefix), so rotating addresses inside it does not escape the limit.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from service.db.tables import RateLimitWindow
from service.settings import Network

WINDOW_SECONDS = 60
SLOT_SECONDS = 10  # the window is counted in slots of this length (60 must be a multiple)
SLOTS = WINDOW_SECONDS // SLOT_SECONDS

def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(text: str, networks: Iterable[Network]) -> bool:
    address = _ip(text)
    return address is not None and any(address in net for net in networks)


def client_address(peer: str, forwarded_for: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The address a request is counted for.

    ``peer`` is the socket's remote address; ``forwarded_for`` the values of every X-Forwarded-For
    header in order. The header is believed only while walking back through trusted proxies: from the
    right, each hop that is a trusted proxy passes the question to the hop before it; the first hop
    that is not trusted is the client. With no trusted proxies (the default) the header is ignored.
    """
    if not trusted or not in_networks(peer, trusted):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",")]
    client = peer
    for hop in reversed([h for h in hops if h]):
        if _ip(hop) is None:
            break  # garbage a client wrote: the last trusted hop is all we know
        client = hop
        if not in_networks(hop, trusted):
            break
    return client


def client_key(address: str) -> str:
    """The bucket part for an address: IPv4 as is, IPv6 per /64, anything else (a test client) as is."""
    ip = _ip(address)
    if ip is None:
        return f"ip:{address[:60]}"
    if isinstance(ip, ipaddress.IPv6Address):
        return f"ip:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"ip:{ip}"


def recent_calls(counts: dict[int, int], now: float) -> float:
    """Calls of the last 60 s at ``now``, from per-slot counts (the oldest slot weighted)."""
    slot = math.floor(now / SLOT_SECONDS)
    oldest = slot - SLOTS
    weight = 1 - (now - slot * SLOT_SECONDS) / SLOT_SECONDS  # the part of the oldest slot still inside
    return sum(hits * (weight if n == oldest else 1.0) for n, hits in counts.items() if oldest <= n <= slot)


def retry_after(counts: dict[int, int], limit: int, now: float) -> int:
    """Whole seconds until one more call fits, assuming no other call is accepted meanwhile."""
    for wait in range(1, WINDOW_SECONDS + SLOT_SECONDS + 1):
        if recent_calls(counts, now + wait) + 1 <= limit:
            return wait
    return WINDOW_SECONDS + SLOT_SECONDS


@dataclass
class Decision:
    allowed: bool
    retry_after: int = 0


@dataclass
class RateLimiter:
    """The shared counter over ``engine``. ``clock`` is wall-clock seconds (the same on every worker of
    a host; hosts sharing a PostgreSQL database should keep their clocks in sync, as NTP does)."""

    engine: Engine
    clock: Callable[[], float] = time.time
    _purged: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, bucket: str, limit: int) -> Decision:
        """Count one call in ``bucket`` if it fits ``limit`` per minute; otherwise refuse it (uncounted).

        One statement decides and counts (the recent slots are read inside it); only a refusal costs a
        second query, for Retry-After. On PostgreSQL the commit does not wait for the disk
        (``synchronous_commit off`` for this transaction only): a counter lost in a crash costs nothing."""
        now = self.clock()
        slot = math.floor(now / SLOT_SECONDS)
        weight = 1 - (now - slot * SLOT_SECONDS) / SLOT_SECONDS
        params = {"bucket": bucket, "slot": slot, "oldest": slot - SLOTS, "weight": weight, "room": limit - 1}
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(_NO_FSYNC)
            accepted = conn.execute(_COUNT, params).first() is not None
            conn.commit()
            if not accepted:
                counts = {int(n): int(h) for n, h in conn.execute(_COUNTS, params).all()}
                conn.commit()
            self._purge(conn, slot)
        if accepted:
            return Decision(True)
        return Decision(False, retry_after(counts, limit, now))

    def _purge(self, conn: Connection, slot: int) -> None:
        """Drop slots that left the window (once per slot per worker)."""
        with self._lock:
            if self._purged == slot:
                return
            self._purged = slot
        conn.execute(delete(RateLimitWindow).where(col(RateLimitWindow.window_no) < slot - SLOTS))
        conn.commit()

    def reset(self) -> None:
        """Forget every count (tests, or an operator lifting a block)."""
        with self.engine.begin() as conn:
            conn.execute(delete(RateLimitWindow))


# explicit types: PostgreSQL cannot infer a parameter used both as a value and in a comparison
_B, _S, _O = "CAST(:bucket AS VARCHAR(120))", "CAST(:slot AS INTEGER)", "CAST(:oldest AS INTEGER)"
_WEIGHT, _ROOM = "CAST(:weight AS DOUBLE PRECISION)", "CAST(:room AS DOUBLE PRECISION)"
_RECENT = (f"(SELECT coalesce(sum(CASE WHEN p.window_no = {_O} THEN p.hits * {_WEIGHT} ELSE p.hits END), 0) "
           f"FROM rate_limit_window AS p WHERE p.bucket = {_B} AND p.window_no BETWEEN {_O} AND {_S})")
#: Insert or increment this slot's row only if the calls of the last 60 s (this slot's included) leave
#: room for one more. Same SQL on SQLite (>= 3.35) and PostgreSQL; a row comes back only when counted.
_COUNT = text(
    "INSERT INTO rate_limit_window (bucket, window_no, hits) "
    f"SELECT {_B}, {_S}, 1 WHERE {_RECENT} <= {_ROOM} "
    "ON CONFLICT (bucket, window_no) DO UPDATE SET hits = rate_limit_window.hits + 1 "
    f"WHERE {_RECENT} <= {_ROOM} "
    "RETURNING hits")
_COUNTS = text(f"SELECT window_no, hits FROM rate_limit_window "
               f"WHERE bucket = {_B} AND window_no BETWEEN {_O} AND {_S}")
_NO_FSYNC = text("SET LOCAL synchronous_commit TO OFF")
