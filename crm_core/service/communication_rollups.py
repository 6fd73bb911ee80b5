"""The communications rollup: outbound messages per calendar day, channel, campaign and template, by
the furthest funnel stage each reached.

The batch refresh keeps it (`refresh_communication_rollup`), recomputing the last LOOKBACK_DAYS
before what it covered (opens, clicks and replies arrive days after the send), or every day after
messages were imported with past dates. Readers (`funnel_rows`, `campaign_rows`, `filter_options`)
take the days the rollup covers from it and the messages sent after its cutoff live, over the index
on the send time, with the same stage definition (`stage_columns`), so the Communications page sums
a few thousand rows instead of every message. Until a refresh has built it, or after an import the
refresh has not yet folded in, readers count the messages themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import RowMapping, and_, case, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from crm_core.platform.dates import end_of, midnight
from crm_core.platform.rollup_state import Coverage, coverage, mark_built
from crm_core.platform.sql import calendar_day
from db.models import CustomerCommunication, ImportRun, RollupDailyCommunications

ROLLUP = "communications"
# Days before the covered day that every refresh recomputes: a message's stage moves for weeks.
LOOKBACK_DAYS = 35
FUNNEL_STAGES = ("sent", "delivered", "opened", "clicked", "replied")
COUNTS = (*FUNNEL_STAGES, "bounced", "failed")
NONE = ""  # what the rollup stores for "no campaign" or "no template"


def stage_columns() -> list:
    """sent, delivered, opened, clicked, replied, bounced, failed: one definition for the rollup and
    for every live count."""
    c = CustomerCommunication
    failed = c.status.in_(("bounced", "failed"))
    reached = {
        "delivered": and_(~failed, or_(c.delivered_at.is_not(None), c.status.in_(FUNNEL_STAGES[1:]))),
        "opened": or_(c.opened_at.is_not(None), c.status.in_(FUNNEL_STAGES[2:])),
        "clicked": or_(c.clicked_at.is_not(None), c.status.in_(FUNNEL_STAGES[3:])),
        "replied": or_(c.replied_at.is_not(None), c.status == "replied"),
    }
    return [
        func.count().label("sent"),
        *[func.sum(case((cond, 1), else_=0)).label(name) for name, cond in reached.items()],
        func.sum(case((c.status == "bounced", 1), else_=0)).label("bounced"),
        func.sum(case((c.status == "failed", 1), else_=0)).label("failed"),
    ]


def outbound() -> list:
    """The messages the funnel counts: sent by us, not calls or notes logged by hand."""
    c = CustomerCommunication
    return [c.direction == "outbound", c.status != "logged"]


def _day(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def _moment(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def refresh_communication_rollup(session: Session, as_of: dt.date, now: dt.datetime) -> dict[str, Any]:
    """Recompute the days that can have changed up to as_of (all of them the first time, or after an
    import of messages), counting what was sent before a cutoff (the end of as_of, or `now` when the day
    is not over): readers add what came after it."""
    c = CustomerCommunication
    state = coverage(session, ROLLUP)
    full = state is None or _imported_since(session, state)
    stop = min(end_of(as_of), now)
    start: dt.datetime | None = None
    cutoff = stop
    if not full and state is not None:
        previous = state.cutoff or end_of(state.covered_through)
        start = midnight(min(previous.date(), as_of) - dt.timedelta(days=LOOKBACK_DAYS))
        cutoff = max(stop, previous)  # a run as of an earlier date keeps the later days it does not redo
    day = calendar_day(c.sent_at)
    conditions = [*outbound(), c.sent_at < stop]
    if start is not None:
        conditions.append(c.sent_at >= start)
    rows = session.execute(
        select(day.label("day"), c.channel, func.coalesce(c.campaign, NONE).label("campaign"),
               func.coalesce(c.template, NONE).label("template"), *stage_columns(),
               func.min(c.sent_at).label("first_sent"), func.max(c.sent_at).label("last_sent"))
        .where(*conditions).group_by(day, c.channel, func.coalesce(c.campaign, NONE), func.coalesce(c.template, NONE))
    ).mappings().all()
    if start is None:
        session.execute(delete(RollupDailyCommunications))
    else:
        last_day = (stop - dt.timedelta(microseconds=1)).date()
        session.execute(delete(RollupDailyCommunications).where(RollupDailyCommunications.day >= start.date(),
                                                                RollupDailyCommunications.day <= last_day))
    if rows:
        session.execute(insert(RollupDailyCommunications), [
            {**{k: int(row[k] or 0) for k in COUNTS}, "day": _day(row["day"]), "channel": row["channel"],
             "campaign": row["campaign"], "template": row["template"],
             "first_sent": _moment(row["first_sent"]), "last_sent": _moment(row["last_sent"])}
            for row in rows])
    mark_built(session, ROLLUP, as_of, (cutoff - dt.timedelta(microseconds=1)).date(), full, cutoff=cutoff)
    return {"rows": len(rows), "messages": sum(int(r["sent"]) for r in rows),
            "from": "the first message" if start is None else start.date().isoformat()}


def _imported_since(session: Session, state: Coverage) -> bool:
    """Messages imported since the rollup was built may carry any past date."""
    imported = session.scalar(select(func.max(ImportRun.started_at)).where(ImportRun.entity == "communications"))
    return imported is not None and imported >= state.built_at


def usable_coverage(session: Session) -> dt.datetime | None:
    """The cutoff before which the rollup holds every outbound message, or None when readers must
    count the messages themselves (no refresh has built it, or messages were imported since)."""
    state = coverage(session, ROLLUP)
    if state is None or _imported_since(session, state):
        return None
    return state.cutoff or end_of(state.covered_through)


def _stored(session: Session, keys: Sequence[str], date_from: dt.date | None, date_to: dt.date | None,
            equal: dict[str, str | None], cutoff: dt.datetime) -> Iterable[RowMapping]:
    r = RollupDailyCommunications
    # The rollup holds what was sent before the cutoff: whole days before it, and the cutoff's own day up
    # to it when a refresh ran while that day was not over (the rest of that day comes live).
    conditions = [r.day <= cutoff.date()]
    if date_from:
        conditions.append(r.day >= date_from)
    if date_to:
        conditions.append(r.day <= date_to)
    for name, value in equal.items():
        if value:
            conditions.append(getattr(r, name) == value)
    groups = [getattr(r, k) for k in keys]
    return session.execute(
        select(*groups, *[func.sum(getattr(r, k)).label(k) for k in COUNTS],
               func.min(r.first_sent).label("first_sent"), func.max(r.last_sent).label("last_sent"))
        .where(*conditions).group_by(*groups)
    ).mappings()


def _live(session: Session, keys: Sequence[str], since: dt.datetime | None, live_conditions: list) -> Iterable[RowMapping]:
    c = CustomerCommunication
    columns = {"channel": c.channel, "campaign": func.coalesce(c.campaign, NONE),
               "template": func.coalesce(c.template, NONE)}
    groups = [columns[k] for k in keys]
    conditions = [*outbound(), *live_conditions]
    if since is not None:
        conditions.append(c.sent_at >= since)
    return session.execute(
        select(*[g.label(k) for g, k in zip(groups, keys, strict=True)], *stage_columns(),
               func.min(c.sent_at).label("first_sent"), func.max(c.sent_at).label("last_sent"))
        .where(*conditions).group_by(*groups)
    ).mappings()


def grouped_counts(session: Session, keys: Sequence[str], date_from: dt.date | None, date_to: dt.date | None,
                   equal: dict[str, str | None], live_conditions: list) -> list[dict[str, Any]]:
    """Outbound messages grouped by `keys` (channel, campaign, template; '' for none) with their stage
    counts and first and last send, over [date_from, date_to] and the `equal` filters: from the rollup up to
    its cutoff and live after it, or live throughout when the rollup cannot be used. `live_conditions`
    say the same filters over the messages table."""
    cutoff = usable_coverage(session)
    parts: list[Iterable[RowMapping]] = []
    if cutoff is not None and (date_from is None or midnight(date_from) < cutoff):
        parts.append(_stored(session, keys, date_from, date_to, equal, cutoff))
    parts.append(_live(session, keys, cutoff, live_conditions))
    merged: dict[tuple, dict[str, Any]] = {}
    for part in parts:
        for row in part:
            key = tuple(row[k] for k in keys)
            into = merged.setdefault(key, {**{k: row[k] for k in keys}, **dict.fromkeys(COUNTS, 0),
                                           "first_sent": None, "last_sent": None})
            for k in COUNTS:
                into[k] += int(row[k] or 0)
            first, last = row["first_sent"], row["last_sent"]
            if first is not None:
                first = _moment(first)
                into["first_sent"] = first if into["first_sent"] is None else min(into["first_sent"], first)
            if last is not None:
                last = _moment(last)
                into["last_sent"] = last if into["last_sent"] is None else max(into["last_sent"], last)
    return [row for row in merged.values() if row["sent"]]
