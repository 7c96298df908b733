"""The outbox and its governance: push items and messages, written by the nightly batch inside each
chunk's transaction and sent by :mod:`service.push.delivery`.

- An item is one policy version offered to one firm, keyed ``<uscc>:<policy>:<version>``: unique, so the
  same offer (e.g. lost and regained) is never news twice.
- A message bundles a firm's unsent items, keyed ``pkg:<uscc>:<run>`` (also the ``Idempotency-Key``
  header of the send): at most one per firm per run.
- The weekly cap (``push_weekly_cap`` messages per firm in seven days): a firm at the cap gets no message;
  its new items are recorded without one (held) and go out with a later message, once the cap allows.
- Opt-out: a firm that refused pushes gets no items and no messages.
- Reminders (a certificate ending soon) are items keyed ``<uscc>:reminder:<code>:<YYYYMMDD>``: once per firm,
  qualification and last valid day, under the same cap and opt-out, in the firm's message of the run.
- Outcomes (:mod:`service.push.outcomes`): a policy granted to or refused for a firm is never pushed to it again
  (a held item of it is dropped instead of released); a firm told of a policy long enough ago that has not
  acted gets one uptake reminder, keyed ``<uscc>:uptake:<policy>:<YYYYMMDD>``, under the same cap and opt-out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from service.db.bulk import IN_LIST, bulk_insert, table_of
from service.db.tables import Enterprise, Outbox, PushItem
from service.push.outcomes import DROPPED, decided_mask, decided_pairs, drop_items

if TYPE_CHECKING:  # (the message content is the batch's to pass in; opt-out alone must import light)
    from service.push.message import Composer

ITEM_COLUMNS = ["id", "uscc", "idempotency_key", "policy_id", "policy_version", "score"]
CAP_DAYS = 7


def item_keys(items: pd.DataFrame) -> pd.Series:
    """The idempotency key of each item (columns uscc, policy_id, policy_version)."""
    return items["uscc"] + ":" + items["policy_id"] + ":" + items["policy_version"].astype(str)


def message_key(uscc: str, run_id: int) -> str:
    return f"pkg:{uscc}:{run_id}"


def set_opt_out(engine: Engine, *, uscc: str, opted_out: bool) -> bool:
    """Record an enterprise's choice to receive pushes or not; False when the enterprise is unknown."""
    e = table_of(Enterprise)
    with engine.begin() as conn:
        return bool(conn.execute(sa.update(e).where(e.c.uscc == uscc).values(opted_out=opted_out)).rowcount)


@dataclass
class OutboxWriter:
    """The items and messages of one batch run (``composer`` writes what a message says)."""

    composer: Composer
    run_id: int
    now: dt.datetime
    weekly_cap: int

    def queue_chunk(self, conn: Connection, usccs: Sequence[str], new: pd.DataFrame, opted: set[str],
                    names: dict[str, str], reminders: pd.DataFrame | None = None
                    ) -> tuple[pd.DataFrame, int, int, int]:
        """Record the chunk's new offers (columns uscc, policy_id, policy_version, score) and reminders
        (:func:`service.push.reminders.reminder_items`) of firms that did not opt out, and queue one message
        per firm. An item whose key exists already is not news again. Returns (items recorded, messages
        queued, items held by the cap, held items released)."""
        lo, hi = min(usccs), max(usccs)
        t = table_of(PushItem)
        if reminders is not None and not reminders.empty:
            new = pd.concat([new[["uscc", "policy_id", "policy_version", "score"]], reminders], ignore_index=True)
        pushable = new[~new["uscc"].isin(opted)]
        pushable = pushable.assign(idempotency_key=item_keys(pushable).to_numpy())
        existing = set(conn.execute(sa.select(t.c.idempotency_key).where(t.c.uscc >= lo, t.c.uscc <= hi)).scalars())
        fresh = pushable[~pushable["idempotency_key"].isin(existing)]
        waiting = pd.DataFrame(conn.execute(
            sa.select(t.c.id, t.c.uscc, t.c.idempotency_key, t.c.policy_id, t.c.policy_version, t.c.score)
            .where(t.c.uscc >= lo, t.c.uscc <= hi, t.c.outbox_id.is_(None))).all(), columns=ITEM_COLUMNS)
        waiting = self._drop_decided(conn, waiting[waiting["uscc"].isin(set(usccs))])
        queued, held, released = self._messages(conn, fresh, waiting, names)
        return fresh, queued, held, released

    def release_held(self, conn: Connection, scored: Any) -> tuple[int, int]:
        """Items held back by the cap go out now where the cap allows, except for the firms in ``scored``
        (a select of USCCs: the firms this run scores, whose chunk bundles held and new items together).
        Returns (messages queued, items released)."""
        t = table_of(PushItem).c
        waiting = pd.DataFrame(conn.execute(
            sa.select(t.id, t.uscc, t.idempotency_key, t.policy_id, t.policy_version, t.score)
            .where(t.outbox_id.is_(None), t.uscc.not_in(scored))).all(), columns=ITEM_COLUMNS)
        waiting = self._drop_decided(conn, waiting)
        if waiting.empty:
            return 0, 0
        queued, _, released = self._messages(conn, waiting.iloc[0:0], waiting, self._names(conn, waiting))
        return queued, released

    def queue_uptake(self, conn: Connection, due: pd.DataFrame) -> tuple[int, int, int]:
        """Record uptake reminders (:func:`service.push.outcomes.due_uptake`) and queue one message per firm
        within the cap (the others' reminders are held). Returns (reminders recorded, messages, held)."""
        if due.empty:
            return 0, 0, 0
        t = table_of(PushItem).c
        due = due.assign(idempotency_key=item_keys(due).to_numpy())
        existing: set[str] = set()
        keys = due["idempotency_key"].tolist()
        for i in range(0, len(keys), IN_LIST):
            existing.update(conn.execute(sa.select(t.idempotency_key).where(
                t.idempotency_key.in_(keys[i:i + IN_LIST]))).scalars())
        fresh = due[~due["idempotency_key"].isin(existing)]
        queued, held, _ = self._messages(conn, fresh, fresh.iloc[0:0].assign(id=pd.Series(dtype="int64")),
                                         self._names(conn, fresh))
        return len(fresh), queued, held

    @staticmethod
    def _names(conn: Connection, items: pd.DataFrame) -> dict[str, str]:
        e = table_of(Enterprise).c
        firms = sorted(set(items["uscc"]))
        names: dict[str, str] = {}
        for i in range(0, len(firms), IN_LIST):
            names.update(dict(conn.execute(sa.select(e.uscc, e.name).where(
                e.uscc.in_(firms[i:i + IN_LIST]))).all()))
        return names

    def _drop_decided(self, conn: Connection, waiting: pd.DataFrame) -> pd.DataFrame:
        """Held items whose policy has been decided for the firm are dropped instead of released."""
        if waiting.empty:
            return waiting
        gone = decided_mask(waiting, decided_pairs(conn, waiting["uscc"].tolist()))
        for uscc, part in waiting[gone].groupby("uscc"):
            drop_items(conn, str(uscc), part["idempotency_key"].tolist(),
                       [{"idempotency_key": k, "policy_id": p, "policy_version": int(v)} for k, p, v in zip(
                           part["idempotency_key"], part["policy_id"], part["policy_version"], strict=True)],
                       now=self.now, run_id=self.run_id)
        return waiting[~gone]

    def _within_cap(self, conn: Connection, firms: list[str]) -> set[str]:
        """The firms that may get a message in this run: none yet in this run, and (with a cap) fewer
        than ``weekly_cap`` messages in the last seven days."""
        lo, hi = firms[0], firms[-1]
        o = table_of(Outbox).c
        since = self.now - dt.timedelta(days=CAP_DAYS)
        recent: dict[str, int] = dict(conn.execute(sa.select(o.uscc, sa.func.count()).where(
            o.uscc >= lo, o.uscc <= hi, o.created_at >= since, o.status != DROPPED).group_by(o.uscc)).all())
        taken = set(conn.execute(sa.select(o.uscc).where(o.run_id == self.run_id, o.uscc >= lo, o.uscc <= hi,
                                                         o.status != DROPPED)).scalars())
        cap = self.weekly_cap
        return {f for f in firms if f not in taken and (not cap or recent.get(f, 0) < cap)}

    def _messages(self, conn: Connection, fresh: pd.DataFrame, waiting: pd.DataFrame,
                  names: dict[str, str]) -> tuple[int, int, int]:
        """One message per firm with unsent items (new ones, and ones held back before), unless the
        firm reached the weekly cap; new items are recorded with their message (none = held)."""
        firms = sorted(set(fresh["uscc"]) | set(waiting["uscc"]))
        if not firms:
            return 0, 0, 0
        lo, hi = firms[0], firms[-1]
        o, t = table_of(Outbox), table_of(PushItem)
        send = self._within_cap(conn, firms)
        items = pd.concat([fresh[ITEM_COLUMNS[1:]], waiting[ITEM_COLUMNS[1:]]], ignore_index=True)
        messages = self.composer.messages(conn, items[items["uscc"].isin(send)], names)
        ids: dict[str, int] = {}
        if messages:
            bulk_insert(conn, o, {"idempotency_key": [message_key(u, self.run_id) for u, _ in messages],
                                  "uscc": [u for u, _ in messages], "payload": [p for _, p in messages]},
                        {"status": "pending", "attempts": 0, "next_attempt_at": self.now, "run_id": self.run_id,
                         "created_at": self.now})
            ids = dict(conn.execute(sa.select(o.c.uscc, o.c.id).where(
                o.c.run_id == self.run_id, o.c.uscc >= lo, o.c.uscc <= hi, o.c.status != DROPPED)).all())
        if not fresh.empty:
            usccs = fresh["uscc"].tolist()
            bulk_insert(conn, t, {
                "idempotency_key": fresh["idempotency_key"].tolist(), "uscc": usccs,
                "policy_id": fresh["policy_id"].tolist(), "policy_version": fresh["policy_version"].tolist(),
                "score": fresh["score"].tolist(), "outbox_id": [ids.get(u) if u in send else None for u in usccs]},
                {"run_id": self.run_id, "created_at": self.now})
        attach = waiting[waiting["uscc"].isin(send)]
        if not attach.empty:
            conn.execute(sa.update(t).where(t.c.id == sa.bindparam("item_id")).values(outbox_id=sa.bindparam("oid")),
                         [{"item_id": int(i), "oid": ids[u]} for i, u in zip(attach["id"], attach["uscc"], strict=True)])
        held = int((~fresh["uscc"].isin(send)).sum())
        return len(messages), held, len(attach)
