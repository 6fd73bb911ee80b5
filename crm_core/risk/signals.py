"""Risk signals: one row per customer as of a date, computed in bulk from whatever the shop has.

Every signal reads only rows before the end of the as-of date. A signal whose source table has no
rows before then (no sign-ins, no chargebacks, no identity checks on a shop that only imported
orders and customers) is left out of the frame and listed in `SignalFrame.left_out` with the
reason; rules over it simply do not fire.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import and_, case, distinct, exists, func, literal, select, true
from sqlalchemy.orm import Session, aliased

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.actors import Actor
from crm_core.platform.dates import end_of
from crm_core.platform.permissions import require
from crm_core.platform.sql import days_between
from db.models import (
    UNDONE_ORDER_STATUSES,
    AccountChange,
    Chargeback,
    Customer,
    CustomerAddress,
    CustomerPaymentMethod,
    IdentityCheck,
    Order,
    SignInEvent,
    address_key,
    phone_digits,
)


@dataclass(frozen=True)
class Signal:
    name: str
    label: str
    source: str  # the table it needs, as a person would name it
    types: tuple[str, ...]  # the risk types it speaks to


SIGNALS: tuple[Signal, ...] = (
    Signal("orders_7d", "Orders in the last 7 days", "orders", ("fraud",)),
    Signal("velocity_ratio", "Orders in the last 7 days against the customer's usual week", "orders", ("fraud",)),
    Signal("amount_ratio", "Largest order in 30 days against the customer's average before", "orders", ("fraud",)),
    Signal("orders_365d", "Orders in the last 365 days", "orders", ("credit",)),
    Signal("refund_ratio", "Share of the year's orders cancelled, returned or refunded", "orders", ("credit",)),
    Signal("country_mismatch", "Billing and shipping countries differ (1 = yes)", "addresses", ("fraud",)),
    Signal("shared_address_accounts", "Other accounts with the same shipping address", "addresses", ("fraud",)),
    Signal("shared_phone_accounts", "Other accounts with the same phone number", "customers", ("fraud",)),
    Signal("cards_added_30d", "Payment methods added in the last 30 days", "payment methods", ("fraud", "credit")),
    Signal("shared_card_accounts", "Other accounts with the same card (payment fingerprint)", "payment methods",
           ("fraud",)),
    Signal("shared_device_accounts", "Other accounts that signed in on the same device", "sign-ins", ("fraud",)),
    Signal("new_device_new_ip_14d", "A sign-in from a new device and a new IP in 14 days (1 = yes)", "sign-ins",
           ("account_takeover",)),
    Signal("impossible_travel_30d", "Two sign-ins too far apart for the time between them in 30 days (1 = yes)",
           "sign-ins", ("account_takeover",)),
    Signal("credential_then_payout_change", "A password or e-mail change, then within 3 days an address or payout "
           "change, in 30 days (1 = yes)", "account changes", ("account_takeover",)),
    Signal("chargebacks_365d", "Chargebacks in the last 365 days", "chargebacks", ("credit", "fraud")),
    Signal("chargeback_ratio", "Chargebacks per order in the last 365 days", "chargebacks", ("credit",)),
    Signal("identity_failed", "The latest identity check failed (1 = yes)", "identity checks", ("credit", "fraud")),
)
SIGNALS_BY_NAME = {signal.name: signal for signal in SIGNALS}
SOURCE_TABLES = {
    "orders": Order, "addresses": CustomerAddress, "customers": Customer, "payment methods": CustomerPaymentMethod,
    "sign-ins": SignInEvent, "account changes": AccountChange, "chargebacks": Chargeback,
    "identity checks": IdentityCheck,
}
SOURCE_TIME = {
    "orders": Order.ordered_at, "addresses": CustomerAddress.created_at, "customers": Customer.signed_up_at,
    "payment methods": CustomerPaymentMethod.created_at, "sign-ins": SignInEvent.signed_in_at,
    "account changes": AccountChange.changed_at, "chargebacks": Chargeback.opened_at,
    "identity checks": IdentityCheck.checked_at,
}
# Faster than an airliner between two sign-ins at least this far apart is impossible travel.
IMPOSSIBLE_SPEED_KMH = 900.0
IMPOSSIBLE_MIN_KM = 300.0
CHANGE_FOLLOW_DAYS = 3


@dataclass
class SignalFrame:
    as_of: dt.date
    frame: pd.DataFrame  # index customer_id, one column per available signal
    left_out: dict[str, str] = field(default_factory=dict)  # signal -> why it is missing


def _has_rows(session: Session, source: str, end: dt.datetime) -> bool:
    column = SOURCE_TIME[source]
    query = select(literal(1)).where(column < end).limit(1)
    if any(list(index.columns)[:1] == [column] for index in column.table.indexes):
        query = query.order_by(column)  # one step down the index, never a pass over the table
    return session.execute(query).first() is not None


def _series(session: Session, query, name: str) -> pd.Series:
    rows = session.execute(query).all()
    if not rows:
        return pd.Series(dtype=float, name=name)
    ids, values = zip(*rows, strict=True)
    return pd.Series(np.asarray(values, dtype=float), index=np.asarray(ids, dtype=np.int64), name=name)


def _shared(session: Session, key_query, name: str, customer_ids: list[int] | None = None) -> pd.Series:
    """Per customer: how many other customers share one of their keys (max over their keys).
    `key_query` selects (customer id, key). With `customer_ids`, only their keys are counted (a case
    view of one customer stays cheap): their keys first, then everyone holding one of them, both
    filtered inside the key query so an index on the customer or the key serves them."""
    if customer_ids is not None:
        customer_column, key_column = list(key_query.selected_columns)[:2]
        mine = list(session.scalars(select(key_query.where(customer_column.in_(customer_ids)).subquery().c[1])
                                    .distinct()))
        if not mine:
            return pd.Series(dtype=float, name=name)
        key_query = key_query.where(key_column.in_(mine))
    keys = key_query.subquery()
    per_key = (select(keys.c.key, func.count(distinct(keys.c.customer_id)).label("n")).group_by(keys.c.key)
               .having(func.count(distinct(keys.c.customer_id)) > 1).subquery())
    query = select(keys.c.customer_id, func.max(per_key.c.n) - 1).join(per_key, per_key.c.key == keys.c.key) \
        .group_by(keys.c.customer_id)
    return _series(session, query, name)


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=float)) for a in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def impossible_travel(sign_ins: pd.DataFrame) -> pd.Series:
    """1 for each customer with two consecutive sign-ins too far apart for the time between them.

    `sign_ins` has customer_id, signed_in_at, latitude, longitude (rows without a place are skipped).
    """
    located = sign_ins.dropna(subset=["latitude", "longitude"]).sort_values(["customer_id", "signed_in_at"])
    if located.empty:
        return pd.Series(dtype=float)
    same = located["customer_id"].to_numpy()[1:] == located["customer_id"].to_numpy()[:-1]
    km = haversine_km(located["latitude"].to_numpy()[:-1], located["longitude"].to_numpy()[:-1],
                      located["latitude"].to_numpy()[1:], located["longitude"].to_numpy()[1:])
    seconds = np.diff(pd.to_datetime(located["signed_in_at"]).to_numpy().astype("datetime64[s]").astype(np.int64))
    hours = np.maximum(seconds, 60) / 3600.0
    flag = same & (km >= IMPOSSIBLE_MIN_KM) & (km / hours > IMPOSSIBLE_SPEED_KMH)
    customers = located["customer_id"].to_numpy()[1:][flag]
    return pd.Series(1.0, index=np.unique(customers).astype(np.int64))


def compute_signals(session: Session, as_of: dt.date, customer_ids: list[int] | None = None) -> SignalFrame:
    """Every available signal for every counted customer who signed up by the end of `as_of`."""
    end = end_of(as_of)
    day = dt.timedelta(days=1)
    base = select(Customer.id).where(COUNTED_CUSTOMER, Customer.signed_up_at < end)
    if customer_ids is not None:
        base = base.where(Customer.id.in_(customer_ids))
    ids = np.asarray(session.scalars(base.order_by(Customer.id)).all(), dtype=np.int64)
    frame = pd.DataFrame(index=pd.Index(ids, name="customer_id"))
    result = SignalFrame(as_of, frame)
    available = {source: _has_rows(session, source, end) for source in SOURCE_TABLES}
    for signal in SIGNALS:
        if not available[signal.source]:
            result.left_out[signal.name] = f"no {signal.source} before {end:%Y-%m-%d}"
    scope = (lambda column: column.in_(customer_ids)) if customer_ids is not None else (lambda column: true())

    def put(name: str, values: pd.Series, fill: float | None = 0.0) -> None:
        if name in result.left_out:
            return
        column = values.reindex(ids)
        frame[name] = column.fillna(fill) if fill is not None else column

    if available["orders"]:
        year = end - 365 * day
        week = end - 7 * day
        month = end - 30 * day
        in_year = and_(Order.ordered_at >= year, Order.ordered_at < end, scope(Order.customer_id))
        orders = session.execute(
            select(Order.customer_id,
                   func.count().label("orders_365d"),
                   func.sum(case((Order.ordered_at >= week, 1), else_=0)).label("orders_7d"),
                   func.sum(case((Order.status.in_(UNDONE_ORDER_STATUSES), 1), else_=0)).label("undone"),
                   func.max(case((Order.ordered_at >= month, Order.total))).label("max_30d"),
                   func.avg(case((Order.ordered_at < month, Order.total))).label("avg_before"))
            .where(in_year).group_by(Order.customer_id)).all()
        agg = pd.DataFrame(orders, columns=["customer_id", "orders_365d", "orders_7d", "undone", "max_30d",
                                            "avg_before"]).set_index("customer_id").astype(float)
        put("orders_7d", agg["orders_7d"])
        put("orders_365d", agg["orders_365d"])
        usual_week = (agg["orders_365d"] - agg["orders_7d"]) / 51.0
        put("velocity_ratio", agg["orders_7d"] / usual_week.clip(lower=1 / 52))
        put("amount_ratio", (agg["max_30d"] / agg["avg_before"].where(agg["avg_before"] > 0)), fill=None)
        put("refund_ratio", agg["undone"] / agg["orders_365d"])
    if available["addresses"]:
        billing = aliased(CustomerAddress)
        shipping = aliased(CustomerAddress)
        mismatch = select(shipping.customer_id, literal(1.0)).join(
            billing, and_(billing.customer_id == shipping.customer_id, billing.kind == "billing",
                          billing.created_at < end)).where(
            shipping.kind == "shipping", shipping.created_at < end, billing.country_code != shipping.country_code,
            scope(shipping.customer_id)).distinct()
        put("country_mismatch", _series(session, mismatch, "country_mismatch"))
        key = address_key(CustomerAddress.line1, CustomerAddress.postal_code, CustomerAddress.country_code)
        keys = select(CustomerAddress.customer_id, key.label("key")).where(
            CustomerAddress.kind == "shipping", CustomerAddress.created_at < end)
        put("shared_address_accounts", _shared(session, keys, "shared_address_accounts", customer_ids).reindex(ids))
    phones = select(Customer.id.label("customer_id"), phone_digits(Customer.phone).label("key")).where(
        Customer.phone.is_not(None), func.length(Customer.phone) >= 6, Customer.signed_up_at < end, COUNTED_CUSTOMER)
    put("shared_phone_accounts", _shared(session, phones, "shared_phone_accounts", customer_ids))
    if available["payment methods"]:
        added = select(CustomerPaymentMethod.customer_id, func.count()).where(
            CustomerPaymentMethod.created_at >= end - 30 * day, CustomerPaymentMethod.created_at < end,
            scope(CustomerPaymentMethod.customer_id)).group_by(CustomerPaymentMethod.customer_id)
        put("cards_added_30d", _series(session, added, "cards_added_30d"))
        cards = select(CustomerPaymentMethod.customer_id, CustomerPaymentMethod.fingerprint.label("key")).where(
            CustomerPaymentMethod.fingerprint.is_not(None), CustomerPaymentMethod.created_at < end)
        put("shared_card_accounts", _shared(session, cards, "shared_card_accounts", customer_ids))
    if available["sign-ins"]:
        devices = select(SignInEvent.customer_id, SignInEvent.device_id.label("key")).where(
            SignInEvent.signed_in_at >= end - 365 * day, SignInEvent.signed_in_at < end).distinct()
        put("shared_device_accounts", _shared(session, devices, "shared_device_accounts", customer_ids))
        recent = aliased(SignInEvent)
        earlier = aliased(SignInEvent)
        before = and_(earlier.customer_id == recent.customer_id, earlier.signed_in_at < recent.signed_in_at)
        new_both = select(recent.customer_id, literal(1.0)).where(
            recent.signed_in_at >= end - 14 * day, recent.signed_in_at < end, scope(recent.customer_id),
            exists().where(before),
            ~exists().where(before, earlier.device_id == recent.device_id),
            ~exists().where(before, earlier.ip_address == recent.ip_address)).distinct()
        put("new_device_new_ip_14d", _series(session, new_both, "new_device_new_ip_14d"))
        rows = session.execute(select(SignInEvent.customer_id, SignInEvent.signed_in_at, SignInEvent.latitude,
                                      SignInEvent.longitude).where(
            SignInEvent.signed_in_at >= end - 30 * day, SignInEvent.signed_in_at < end,
            scope(SignInEvent.customer_id))).all()
        travel = impossible_travel(pd.DataFrame(rows, columns=["customer_id", "signed_in_at", "latitude", "longitude"]))
        put("impossible_travel_30d", travel)
    if available["account changes"]:
        first = aliased(AccountChange)
        then = aliased(AccountChange)
        followed = select(first.customer_id, literal(1.0)).join(then, and_(
            then.customer_id == first.customer_id, then.kind.in_(("address", "payout")),
            then.changed_at >= first.changed_at,
            days_between(then.changed_at, first.changed_at) <= CHANGE_FOLLOW_DAYS, then.changed_at < end)).where(
            first.kind.in_(("password", "email")), first.changed_at >= end - 30 * day, first.changed_at < end,
            scope(first.customer_id)).distinct()
        put("credential_then_payout_change", _series(session, followed, "credential_then_payout_change"))
    if available["chargebacks"]:
        charged = select(Chargeback.customer_id, func.count()).where(
            Chargeback.opened_at >= end - 365 * day, Chargeback.opened_at < end,
            scope(Chargeback.customer_id)).group_by(Chargeback.customer_id)
        count = _series(session, charged, "chargebacks_365d")
        put("chargebacks_365d", count)
        orders_year = frame["orders_365d"] if "orders_365d" in frame else pd.Series(0.0, index=ids)
        put("chargeback_ratio", count.reindex(ids).fillna(0) / orders_year.clip(lower=1))
    if available["identity checks"]:
        latest = select(IdentityCheck.customer_id, func.max(IdentityCheck.id).label("id")).where(
            IdentityCheck.checked_at < end, scope(IdentityCheck.customer_id)).group_by(IdentityCheck.customer_id) \
            .subquery()
        failed = select(IdentityCheck.customer_id, literal(1.0)).join(latest, latest.c.id == IdentityCheck.id).where(
            IdentityCheck.status == "failed")
        put("identity_failed", _series(session, failed, "identity_failed"))
    return result


def signals_left_out(session: Session, viewer: Actor, as_of: dt.date) -> dict[str, str]:
    """The signals this shop has no source for as of the date, with the reason."""
    require(viewer, "risk.view")
    end = end_of(as_of)
    return {signal.name: f"no {signal.source} before {end:%Y-%m-%d}" for signal in SIGNALS
            if not _has_rows(session, signal.source, end)}


def signal_catalogue(left_out: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The signals a rule may use, with their source and whether this shop has it."""
    left_out = left_out or {}
    return [{"signal": s.name, "label": s.label, "source": s.source, "types": ", ".join(s.types),
             "available": "no: " + left_out[s.name] if s.name in left_out else "yes"} for s in SIGNALS]

