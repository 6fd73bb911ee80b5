"""Allow- and block-lists over e-mail, e-mail domain, phone, device, IP, payment fingerprint and
country. Values are normalised on the way in and matched against what customers have."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Any

import pycountry
from sqlalchemy import CompoundSelect, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from db.models import (
    RISK_LIST_FIELDS,
    RISK_LIST_KINDS,
    Customer,
    CustomerAddress,
    CustomerPaymentMethod,
    RiskListEntry,
    SignInEvent,
    utcnow,
)

FIELD_LABELS = {
    "email": "E-mail", "email_domain": "E-mail domain", "phone": "Phone", "device": "Device id",
    "ip": "IP address", "payment_fingerprint": "Payment fingerprint", "country": "Country",
}
REASON_LIMIT = 255
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DOMAIN = re.compile(r"^(?=.{3,253}$)([a-z0-9-]+\.)+[a-z0-9-]{2,}$")
TOKEN = re.compile(r"^[A-Za-z0-9._:-]{3,128}$")
# Devices and IPs a customer used this long before the as-of date still match a list.
DEVICE_MEMORY_DAYS = 365


def phone_digits(value: str) -> str:
    return re.sub(r"\D", "", value or "")


def normalise(field: str, value: str) -> str:
    """The value as lists store and match it; a ValidationError says why it cannot be one."""
    if field not in RISK_LIST_FIELDS:
        raise ValidationError(f"Unknown list field {field!r}; use one of {', '.join(RISK_LIST_FIELDS)}.")
    text = (value or "").strip()
    if not text:
        raise ValidationError(f"Enter the {FIELD_LABELS[field].lower()} to list.")
    if field == "email":
        if not EMAIL.match(text):
            raise ValidationError(f"{text!r} is not an e-mail address.")
        return text.lower()
    if field == "email_domain":
        domain = text.lower().lstrip("@")
        if not DOMAIN.match(domain):
            raise ValidationError(f"{text!r} is not an e-mail domain such as example.com.")
        return domain
    if field == "phone":
        digits = phone_digits(text)
        if not 6 <= len(digits) <= 15:
            raise ValidationError(f"{text!r} is not a phone number (6 to 15 digits).")
        return digits
    if field == "ip":
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise ValidationError(f"{text!r} is not an IPv4 or IPv6 address.") from None
    if field == "country":
        code = text.upper()
        if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
            raise ValidationError(f"{text!r} is not an ISO country code such as DE.")
        return code
    if not TOKEN.match(text):
        raise ValidationError(f"{text!r} is not a {FIELD_LABELS[field].lower()} (3-128 letters, digits, . _ : -).")
    return text


def add_entry(session: Session, actor: Actor, *, list_kind: str, field: str, value: str, reason: str,
              expires_at: dt.datetime | None = None) -> RiskListEntry:
    require(actor, "risk.lists")
    if list_kind not in RISK_LIST_KINDS:
        raise ValidationError(f"Unknown list {list_kind!r}; use allow or block.")
    normalised = normalise(field, value)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the value is listed.")
    if len(reason) > REASON_LIMIT:
        raise ValidationError(f"The reason has at most {REASON_LIMIT} characters.")
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationError("The expiry must be in the future.")
    duplicate = session.scalar(select(RiskListEntry.id).where(
        RiskListEntry.list_kind == list_kind, RiskListEntry.field == field, RiskListEntry.value == normalised))
    if duplicate is not None:
        raise ValidationError(f"{normalised} is already on the {list_kind} list.")
    entry = RiskListEntry(list_kind=list_kind, field=field, value=normalised, reason=reason, expires_at=expires_at,
                          created_by_id=actor.id)
    session.add(entry)
    session.flush()
    record_audit(session, actor, "risk.list_add", "risk_list_entry", entry.id,
                 after={"list": list_kind, "field": field, "value": normalised, "reason": reason})
    return entry


def remove_entry(session: Session, actor: Actor, entry_id: int) -> None:
    require(actor, "risk.lists")
    entry = session.get(RiskListEntry, entry_id)
    if entry is None:
        raise NotFound(f"List entry {entry_id} does not exist.")
    record_audit(session, actor, "risk.list_remove", "risk_list_entry", entry.id,
                 before={"list": entry.list_kind, "field": entry.field, "value": entry.value, "reason": entry.reason})
    session.delete(entry)


def list_entries(session: Session, viewer: Actor, list_kind: str | None = None, page: int = 1,
                 page_size: int = 50) -> Page:
    require(viewer, "risk.view")
    query = select(RiskListEntry)
    if list_kind:
        query = query.where(RiskListEntry.list_kind == list_kind)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(RiskListEntry.created_at.desc(), RiskListEntry.id.desc())
                           .limit(page_size).offset((max(page, 1) - 1) * page_size))
    return Page([{"id": e.id, "list": e.list_kind, "field": e.field, "value": e.value, "reason": e.reason,
                  "expires_at": e.expires_at, "added_at": e.created_at} for e in rows], total, page, page_size)


def _customers_matching(field: str, values: list[str], now: dt.datetime) -> Select[Any] | CompoundSelect[Any]:
    if field == "email":
        return select(Customer.id).where(func.lower(Customer.email).in_(values))
    if field == "email_domain":
        return select(Customer.id).where(or_(*[func.lower(Customer.email).like(f"%@{v}") for v in values]))
    if field == "phone":
        digits: Any = Customer.phone
        for char in (" ", "-", "+", "(", ")", "."):
            digits = func.replace(digits, char, "")
        return select(Customer.id).where(digits.in_(values))
    if field == "country":
        return select(Customer.id).where(Customer.country_code.in_(values)).union(
            select(CustomerAddress.customer_id).where(CustomerAddress.country_code.in_(values)))
    if field == "payment_fingerprint":
        return select(CustomerPaymentMethod.customer_id).where(
            CustomerPaymentMethod.fingerprint.in_(values), CustomerPaymentMethod.created_at < now)
    column = SignInEvent.device_id if field == "device" else SignInEvent.ip_address
    return select(SignInEvent.customer_id).where(
        column.in_(values), SignInEvent.signed_in_at < now,
        SignInEvent.signed_in_at >= now - dt.timedelta(days=DEVICE_MEMORY_DAYS))


def list_matches(session: Session, now: dt.datetime, customer_ids: list[int] | None = None
                 ) -> dict[str, dict[int, str]]:
    """{"allow" | "block": {customer_id: "why"}} for the entries in force today (lists are today's
    policy, also when scoring a historical as-of `now`; devices and cards count up to `now`)."""
    entries = session.scalars(select(RiskListEntry).where(
        or_(RiskListEntry.expires_at.is_(None), RiskListEntry.expires_at > utcnow())))
    grouped: dict[tuple[str, str], list[str]] = {}
    for entry in entries:
        grouped.setdefault((entry.list_kind, entry.field), []).append(entry.value)
    found: dict[str, dict[int, str]] = {"allow": {}, "block": {}}
    for (kind, field), values in grouped.items():
        query = _customers_matching(field, values, now)
        if customer_ids is not None:
            sub = query.subquery()
            query = select(sub.c[0]).where(and_(sub.c[0].in_(customer_ids)))
        for customer_id in session.scalars(query):
            found[kind].setdefault(int(customer_id), f"{FIELD_LABELS[field]} on the {kind} list")
    return found
