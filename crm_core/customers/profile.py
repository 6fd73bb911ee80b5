"""The Customer 360 profile: key facts and scores, one timeline, the tabs' data, and edits.

Edits are validated at this edge:

* email with email-validator (syntax only, `check_deliverability=False`), stored normalized;
* phone with phonenumbers, using the customer's (or address's) country as the region for
  numbers without a "+" prefix, stored in E.164;
* country codes with pycountry (ISO 3166-1 alpha-2);
* postal codes against `POSTAL_CODE_PATTERNS`, a regex per country for the shop's markets and
  other common countries (patterns after the Universal Postal Union address formats); a country
  without a pattern accepts any 2-10 letters, digits, spaces and hyphens.

Only fields that change are validated, so an old record with a legacy value can still be edited
elsewhere. Customer edits use optimistic locking on `customers.version`.

Addresses are geocoded offline from `data/cities.csv` (the demo simulator's cities plus about a
thousand GeoNames places shipped with Faker) by country and city name, accents and case ignored;
an unknown city leaves the coordinates empty and is not an error.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import re
import unicodedata
from pathlib import Path
from typing import Any

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import String, bindparam, case, cast, func, literal, select, true, union_all, update
from sqlalchemy.orm import Session

from crm_core.customers.rules import TEXT_LIMITS, display_name
from crm_core.customers.search import risk_level_expr
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.ids import is_record_id
from crm_core.platform.paging import Page, SortKey, fetch_rows
from crm_core.platform.permissions import require
from crm_core.platform.sql import year_month
from crm_core.platform.transactions import check_version
from crm_core.risk.decisions import enforce, record_account_change
from db.models import (
    ACQUISITION_CHANNELS,
    ADDRESS_KINDS,
    CONSENT_PURPOSES,
    GENDERS,
    REVENUE_ORDER_STATUSES,
    AccountHealthScore,
    ChurnPrediction,
    Complaint,
    ConsentRecord,
    Customer,
    CustomerAddress,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerLifecycleHistory,
    CustomerLifecycleStage,
    CustomerMerge,
    CustomerPaymentMethod,
    CustomerPreferenceCenter,
    CustomerSegment,
    CustomerSegmentMembership,
    LoyaltyAccount,
    LoyaltyTransaction,
    Order,
    SocialMention,
    SupportTicket,
    utcnow,
)

GAZETTEER = Path(__file__).resolve().parent / "data" / "cities.csv"

POSTAL_CODE_PATTERNS: dict[str, str] = {
    "DE": r"\d{5}", "FR": r"\d{5}", "NL": r"\d{4} ?[A-Z]{2}", "GB": r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}",
    "ES": r"\d{5}", "IT": r"\d{5}", "AT": r"\d{4}", "BE": r"\d{4}", "PL": r"\d{2}-\d{3}",
    "US": r"\d{5}(-\d{4})?", "CH": r"\d{4}", "LI": r"\d{4}", "LU": r"(L-)?\d{4}", "DK": r"\d{4}",
    "SE": r"\d{3} ?\d{2}", "NO": r"\d{4}", "FI": r"\d{5}", "IE": r"[A-Z]\d[\dW] ?[A-Z\d]{4}",
    "PT": r"\d{4}-\d{3}", "CZ": r"\d{3} ?\d{2}", "SK": r"\d{3} ?\d{2}", "HU": r"\d{4}", "GR": r"\d{3} ?\d{2}",
    "RO": r"\d{6}", "BG": r"\d{4}", "HR": r"\d{5}", "SI": r"\d{4}", "EE": r"\d{5}", "LV": r"(LV-)?\d{4}",
    "LT": r"(LT-)?\d{5}", "CA": r"[A-Z]\d[A-Z] ?\d[A-Z]\d", "AU": r"\d{4}", "NZ": r"\d{4}", "JP": r"\d{3}-?\d{4}",
    "IN": r"\d{6}", "BR": r"\d{5}-?\d{3}", "MX": r"\d{5}", "CN": r"\d{6}", "RU": r"\d{6}", "TR": r"\d{5}",
    "ZA": r"\d{4}", "KR": r"\d{5}", "SG": r"\d{6}",
}
EDITABLE = ("first_name", "last_name", "email", "phone", "company", "country_code", "city",
            "preferred_language", "date_of_birth", "gender", "notes")
CREATE_ONLY = ("external_id", "acquisition_channel")
ADDRESS_FIELDS = ("kind", "line1", "line2", "city", "region", "postal_code", "country_code", "is_default")
TIMELINE_KINDS = ("order", "communication", "ticket", "complaint", "lifecycle", "loyalty", "segment_enter",
                  "segment_leave", "merge", "mention")


# --------------------------------------------------------------------------- validation


def country(code: Any, label: str = "Country") -> str:
    """An ISO 3166-1 alpha-2 code, upper case; raises ValidationError otherwise."""
    if not isinstance(code, str) or not code.strip():
        raise ValidationError(f"{label} is required (a two-letter code such as DE).")
    code = code.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValidationError(f"{label} {code!r} is not an ISO country code; use two letters such as DE, FR or GB.")
    return code


def email(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Email is required here; leave it unchanged to keep the current one.")
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValidationError(f"Email {value.strip()!r} is not valid: {exc}") from exc


def phone(value: Any, region: str | None) -> str:
    """A phone number in E.164, read with `region` when it has no international prefix."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Phone must be text such as +49 30 1234567.")
    try:
        number = phonenumbers.parse(value.strip(), region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if region else " Give it with the international prefix, e.g. +49."
        raise ValidationError(f"Phone {value.strip()!r} is not a phone number ({exc}).{hint}") from exc
    if not phonenumbers.is_valid_number(number):
        where = f" for {region}" if region and not value.strip().startswith("+") else ""
        raise ValidationError(f"Phone {value.strip()!r} is not a valid number{where}.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def postal_code(value: Any, country_code: str) -> str:
    """A postal code in the format of its country (see POSTAL_CODE_PATTERNS), upper case, spaces collapsed."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("Postal code is required.")
    code = " ".join(value.strip().upper().split())
    pattern = POSTAL_CODE_PATTERNS.get(country_code, r"[A-Z\d][A-Z\d -]{0,8}[A-Z\d]|[A-Z\d]")
    if not re.fullmatch(pattern, code):
        raise ValidationError(f"Postal code {code!r} does not have the format used in {country_code}.")
    return code


def _text(name: str, value: Any, required: bool = False) -> str | None:
    label = name.replace("_", " ").capitalize()
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(f"{label} is required.")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{label} must be text.")
    value = value.strip() if name == "notes" else " ".join(value.split())
    if len(value) > TEXT_LIMITS[name]:
        raise ValidationError(f"{label} has at most {TEXT_LIMITS[name]} characters (got {len(value)}).")
    return value


def _date_of_birth(value: Any, today: dt.date) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(f"Date of birth {value!r} is not a date (YYYY-MM-DD).") from exc
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ValidationError("Date of birth must be a date.")
    if not dt.date(1900, 1, 1) <= value <= today:
        raise ValidationError("Date of birth must be between 1900 and today.")
    return value


def _language(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[a-z]{2}(-[A-Z]{2})?", value.strip()):
        raise ValidationError("Preferred language is a language code such as de, en or pt-BR.")
    if pycountry.languages.get(alpha_2=value.strip()[:2]) is None:
        raise ValidationError(f"Preferred language {value!r} is not an ISO 639-1 language.")
    return value.strip()


# --------------------------------------------------------------------------- geocoding


def _fold(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[-'.,]", " ", plain).casefold().split())


@functools.lru_cache(maxsize=1)
def _gazetteer() -> dict[tuple[str, str], tuple[float, float]]:
    with GAZETTEER.open(encoding="utf-8") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return {(r["country_code"], _fold(r["city"])): (float(r["latitude"]), float(r["longitude"])) for r in rows}


def geocode(country_code: str, city: str | None) -> tuple[float, float] | None:
    """Coordinates of a known city in a country, from the offline gazetteer; None when unknown."""
    if not city:
        return None
    return _gazetteer().get((country_code.upper(), _fold(city)))


# --------------------------------------------------------------------------- reads


def _customer(session: Session, customer_id: Any) -> Customer:
    found = session.get(Customer, customer_id) if is_record_id(customer_id) else None
    if found is None:
        raise NotFound(f"No customer with id {customer_id}.")
    return found


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@functools.cache
def _profile_statement() -> Any:
    """The one SELECT of a customer's profile, built once (the customer is a parameter; the latest
    prediction date a subquery the database runs once): building a 45-column statement costs more
    than running it."""
    c, a, stage, loyalty = Customer, CustomerAnalytics, CustomerLifecycleStage, LoyaltyAccount
    def newest_health(column) -> Any:  # the latest scoring's value (the unique (customer, as_of) index)
        return (select(column).where(AccountHealthScore.customer_id == c.id).order_by(AccountHealthScore.as_of.desc())
                .limit(1).correlate(c).scalar_subquery())

    health_columns = [newest_health(AccountHealthScore.overall).label("health_overall"),
                      newest_health(AccountHealthScore.level).label("health_level_now")]
    # Orders and revenue as they are now, not as of the last refresh: an order recorded, a merge or a
    # split since then shows at once (one customer's orders, read through its index).
    live = (select(func.count().label("order_count"), func.sum(Order.total).label("total_revenue"),
                   func.min(Order.ordered_at).label("first_order_at"), func.max(Order.ordered_at).label("last_order_at"))
            .where(Order.customer_id == bindparam("customer_id"), Order.status.in_(REVENUE_ORDER_STATUSES))
            .subquery("live_orders"))
    query = (
        select(c.id, c.external_id, c.first_name, c.last_name, c.email, c.phone, c.company, c.country_code, c.city,
               c.preferred_language, c.date_of_birth, c.gender, c.notes, c.status, c.merged_into_id,
               c.acquisition_channel, c.signed_up_at, c.version,
               stage.stage, stage.entered_at.label("stage_since"), stage.reason.label("stage_reason"),
               stage.engagement_score, stage.loyalty_score,
               loyalty.tier, loyalty.points_balance,
               a.customer_id.label("scored"), live.c.order_count, live.c.total_revenue, live.c.first_order_at,
               live.c.last_order_at, a.as_of, a.clv_12m, a.historic_clv, a.churn_probability,
               a.prob_alive, a.health_score, a.health_level, a.rfm_segment, a.recency_score, a.frequency_score,
               a.monetary_score, a.open_tickets, a.last_nps,
               risk_level_expr(select(func.max(ChurnPrediction.as_of)).scalar_subquery()).label("risk_level"), *health_columns)
        .select_from(c).outerjoin(a, a.customer_id == c.id).outerjoin(stage, stage.customer_id == c.id)
        .outerjoin(loyalty, loyalty.customer_id == c.id).join(live, true())
    )
    return query.where(c.id == bindparam("customer_id"))


def customer_profile(session: Session, viewer: Actor, customer_id: int) -> dict[str, Any]:
    """Key facts and the latest scores of one customer, in one query (the API's customer read)."""
    require(viewer, "customers.view")
    if not is_record_id(customer_id):
        raise NotFound(f"No customer with id {customer_id}.")
    r = session.execute(_profile_statement(), {"customer_id": customer_id}).mappings().first()
    if r is None:
        raise NotFound(f"No customer with id {customer_id}.")
    scored = r["scored"] is not None
    orders, revenue, last = int(r["order_count"] or 0), float(r["total_revenue"] or 0), r["last_order_at"]
    facts = {
        "id": r["id"], "external_id": r["external_id"],
        "name": display_name(r["first_name"], r["last_name"], r["id"], r["external_id"]),
        **{k: r[k] for k in ("first_name", "last_name", "email", "phone", "company", "country_code", "city",
                             "preferred_language", "date_of_birth", "gender", "notes", "status", "merged_into_id",
                             "acquisition_channel", "signed_up_at", "version")},
        "stage": r["stage"], "stage_since": r["stage_since"], "stage_reason": r["stage_reason"],
        "tier": r["tier"], "points": r["points_balance"],
        "orders": orders, "revenue": revenue, "avg_order_value": round(revenue / orders, 2) if orders else None,
        "first_order_at": r["first_order_at"], "last_order_at": r["last_order_at"],
        "days_since_last_order": None if last is None else max(0, ((r["as_of"] or dt.date.today()) - last.date()).days),
    }
    has_health = r["health_overall"] is not None or r["health_level_now"] is not None
    scores = {
        "as_of": r["as_of"], "clv_12m": _float(r["clv_12m"]), "historic_clv": _float(r["historic_clv"]),
        "churn_probability": r["churn_probability"], "risk_level": r["risk_level"], "prob_alive": r["prob_alive"],
        "health_score": r["health_overall"] if has_health else r["health_score"],
        "health_level": r["health_level_now"] if has_health else r["health_level"],
        "rfm_segment": r["rfm_segment"],
        "rfm": (f"{r['recency_score']}{r['frequency_score']}{r['monetary_score']}"
                if r["recency_score"] is not None else None),
        "engagement_score": r["engagement_score"], "loyalty_score": r["loyalty_score"],
        "open_tickets": r["open_tickets"] if scored else 0, "last_nps": r["last_nps"],
    }
    return {"facts": facts, "scores": scores}


def _s(column) -> Any:
    return cast(column, String)


def _timeline_sources(customer_id: int) -> dict[str, Any]:
    """One SELECT per kind, all with the columns (at, kind, ref, a, b, c)."""
    def kind(name: str):
        return literal(name, String).label("kind")

    def at(column):
        return column.label("at")

    empty = literal("", String)
    ms = CustomerSegmentMembership
    seg_join = (select().select_from(ms).join(CustomerSegment, CustomerSegment.id == ms.segment_id))
    return {
        "order": select(at(Order.ordered_at), kind("order"), _s(Order.order_number).label("ref"),
                        _s(Order.status).label("a"), _s(Order.total).label("b"), _s(Order.currency).label("c"))
        .where(Order.customer_id == customer_id),
        "communication": select(
            at(CustomerCommunication.sent_at), kind("communication"), _s(CustomerCommunication.id),
            _s(CustomerCommunication.channel).concat(literal(" ", String)).concat(CustomerCommunication.direction),
            _s(CustomerCommunication.status),
            func.coalesce(CustomerCommunication.subject, CustomerCommunication.campaign,
                          CustomerCommunication.template, empty),
        ).where(CustomerCommunication.customer_id == customer_id),
        "ticket": select(at(SupportTicket.created_at), kind("ticket"), _s(SupportTicket.ticket_number),
                         _s(SupportTicket.subject), _s(SupportTicket.status), _s(SupportTicket.priority))
        .where(SupportTicket.customer_id == customer_id),
        "complaint": select(at(Complaint.created_at), kind("complaint"), _s(Complaint.id), _s(Complaint.category),
                            _s(Complaint.severity), _s(Complaint.status))
        .where(Complaint.customer_id == customer_id),
        "lifecycle": select(at(CustomerLifecycleHistory.changed_at), kind("lifecycle"),
                            _s(CustomerLifecycleHistory.id),
                            func.coalesce(CustomerLifecycleHistory.from_stage, empty),
                            _s(CustomerLifecycleHistory.to_stage), _s(CustomerLifecycleHistory.reason))
        .where(CustomerLifecycleHistory.customer_id == customer_id),
        "loyalty": select(at(LoyaltyTransaction.created_at), kind("loyalty"), _s(LoyaltyTransaction.id),
                          _s(LoyaltyTransaction.kind), _s(LoyaltyTransaction.points),
                          func.coalesce(LoyaltyTransaction.reason, empty))
        .where(LoyaltyTransaction.customer_id == customer_id),
        "segment_enter": seg_join.add_columns(at(ms.entered_at), kind("segment_enter"), _s(ms.segment_id),
                                              _s(CustomerSegment.name), _s(ms.assignment), empty)
        .where(ms.customer_id == customer_id),
        "segment_leave": seg_join.add_columns(at(ms.left_at), kind("segment_leave"), _s(ms.segment_id),
                                              _s(CustomerSegment.name), _s(ms.assignment), empty)
        .where(ms.customer_id == customer_id, ms.left_at.is_not(None)),
        "merge": select(at(CustomerMerge.merged_at), kind("merge"), _s(CustomerMerge.id),
                        _s(CustomerMerge.kind), _s(CustomerMerge.survivor_id), _s(CustomerMerge.merged_id))
        .where((CustomerMerge.survivor_id == customer_id) | (CustomerMerge.merged_id == customer_id)),
        "mention": select(at(SocialMention.posted_at), kind("mention"), _s(SocialMention.id).label("ref"),
                          _s(SocialMention.platform).label("a"),
                          func.coalesce(SocialMention.sentiment_label, empty).label("b"),
                          func.substr(SocialMention.text, 1, 300).label("c"))
        .where(SocialMention.customer_id == customer_id),
    }


def _describe_event(kind: str, ref: str, a: str, b: str, c: str, customer_id: int) -> tuple[str, str]:
    if kind == "order":
        return f"Order {ref}", f"{a}, {float(b):,.2f} {c}"
    if kind == "communication":
        return f"{a.capitalize()} message", f"{c} ({b})" if c else b
    if kind == "ticket":
        return f"Ticket {ref}: {a}", f"{b}, priority {c}"
    if kind == "complaint":
        return f"Complaint about {a}", f"severity {b}, {c}"
    if kind == "lifecycle":
        return f"Stage {a or '(none)'} → {b}", c
    if kind == "loyalty":
        points = int(float(b))
        return f"Loyalty {a} {points:+,} points", c
    if kind == "mention":
        return f"{a.capitalize()} mention" + (f" ({b})" if b else ""), c
    if kind == "segment_enter":
        return f"Entered segment {a}", f"{b} assignment"
    if kind == "segment_leave":
        return f"Left segment {a}", f"{b} assignment"
    survivor, merged = int(float(b)), int(float(c))
    if survivor == customer_id:
        return f"Customer {merged} merged into this one", f"{a} #{ref}"
    return f"Merged into customer {survivor}", f"{a} #{ref}"


def timeline(session: Session, viewer: Actor, customer_id: int, page: int = 1, page_size: int = 25,
             kinds: list[str] | tuple[str, ...] | None = None) -> Page:
    """One chronological feed (newest first) across orders, messages, tickets, complaints, stage
    changes, loyalty entries, segment entries and exits, and merges; paginated in the database."""
    require(viewer, "customers.view")
    customer = _customer(session, customer_id)
    if not 1 <= page_size <= 500:
        raise ValidationError("Page size must be between 1 and 500.")
    chosen = tuple(kinds) if kinds else TIMELINE_KINDS
    unknown = [k for k in chosen if k not in TIMELINE_KINDS]
    if unknown:
        raise ValidationError(f"Unknown timeline kind {unknown[0]!r}; choose from: {', '.join(TIMELINE_KINDS)}.")
    sources = _timeline_sources(customer.id)
    feed = union_all(*[sources[k] for k in chosen]).subquery("feed")
    # By position: a union takes its column names from its first SELECT, and only some are labelled.
    at, kind, ref = list(feed.c)[:3]
    total = session.scalar(select(func.count()).select_from(feed)) or 0
    page = max(1, page)
    result = session.execute(
        select(*feed.c).order_by(at.desc(), kind, ref.desc()).limit(page_size).offset((page - 1) * page_size)
    )
    rows = []
    for r_at, r_kind, r_ref, a, b, c in result:
        title, detail = _describe_event(r_kind, r_ref, a or "", b or "", c or "", customer.id)
        rows.append({"at": r_at, "kind": r_kind, "event": title, "detail": detail, "ref": r_ref})
    return Page(rows=rows, total=total, page=page, page_size=page_size)


def orders(session: Session, viewer: Actor, customer_id: int, page: int = 1, page_size: int = 25,
           after: str | None = None) -> Page:
    """A customer's orders, newest first; a numbered page, or with `after` (a cursor, FIRST for the
    start) the next `page_size` by keyset."""
    require(viewer, "customers.view")
    customer = _customer(session, customer_id)
    if not 1 <= page_size <= 500:
        raise ValidationError("Page size must be between 1 and 500.")
    condition = Order.customer_id == customer.id
    total = None if after is not None else session.scalar(select(func.count()).select_from(Order).where(condition)) or 0
    page = 0 if after is not None else max(1, page)
    found, next_after = fetch_rows(
        session, select(Order.order_number, Order.ordered_at, Order.status, Order.channel, Order.item_count,
                        Order.discount, Order.total, Order.currency).where(condition),
        (SortKey(Order.ordered_at, descending=True), SortKey(Order.id, descending=True)), "customer_orders",
        page=page, page_size=page_size, after=after)
    rows = [{"order_number": o.order_number, "ordered_at": o.ordered_at, "status": o.status, "channel": o.channel,
             "items": o.item_count, "discount": float(o.discount), "total": float(o.total), "currency": o.currency}
            for o in found]
    return Page(rows=rows, total=total, page=page, page_size=page_size, next_after=next_after)


def monthly_orders(session: Session, viewer: Actor, customer_id: int, months: int = 24) -> list[dict[str, Any]]:
    """Orders and revenue (revenue statuses only) per calendar month, the last `months` months with orders."""
    require(viewer, "customers.view")
    customer = _customer(session, customer_id)
    month = year_month(Order.ordered_at)
    revenue = func.sum(case((Order.status.in_(REVENUE_ORDER_STATUSES), Order.total), else_=0))
    rows = session.execute(
        select(month.label("month"), func.count().label("orders"), revenue.label("revenue"))
        .where(Order.customer_id == customer.id).group_by(month).order_by(month.desc()).limit(months)
    ).all()
    return [{"month": r.month, "orders": r.orders, "revenue": float(r.revenue or 0)} for r in rows[::-1]]


def addresses(session: Session, viewer: Actor, customer_id: int) -> list[dict[str, Any]]:
    require(viewer, "customers.view")
    customer = _customer(session, customer_id)
    found = session.scalars(select(CustomerAddress).where(CustomerAddress.customer_id == customer.id)
                            .order_by(CustomerAddress.is_default.desc(), CustomerAddress.kind,
                                      CustomerAddress.id)).all()
    return [_address_row(a) for a in found]


def _address_row(a: CustomerAddress) -> dict[str, Any]:
    return {"id": a.id, "kind": a.kind, "line1": a.line1, "line2": a.line2, "postal_code": a.postal_code,
            "city": a.city, "region": a.region, "country_code": a.country_code, "is_default": a.is_default,
            "validation_status": a.validation_status, "latitude": a.latitude, "longitude": a.longitude}


def is_expired(exp_month: int | None, exp_year: int | None, today: dt.date) -> bool:
    """A card is valid through the last day of its expiry month."""
    if exp_month is None or exp_year is None:
        return False
    return (exp_year, exp_month) < (today.year, today.month)


def payment_methods(session: Session, viewer: Actor, customer_id: int, today: dt.date | None = None) -> list[dict[str, Any]]:
    """Tokens' display facts only (brand, last 4 digits, expiry), each flagged when expired as of today."""
    require(viewer, "customers.view")
    customer = _customer(session, customer_id)
    today = today or dt.date.today()
    found = session.scalars(select(CustomerPaymentMethod).where(CustomerPaymentMethod.customer_id == customer.id)
                            .order_by(CustomerPaymentMethod.is_default.desc(), CustomerPaymentMethod.id)).all()
    return [{
        "id": p.id, "brand": p.brand, "last4": p.last4, "processor": p.processor,
        "expires": f"{p.exp_month:02d}/{p.exp_year}" if p.exp_month and p.exp_year else None,
        "expired": is_expired(p.exp_month, p.exp_year, today), "is_default": p.is_default, "status": p.status,
    } for p in found]


def preferences(session: Session, viewer: Actor, customer_id: int) -> dict[str, Any]:
    """The preference centre and the current consent per purpose (the latest ledger entry wins)."""
    require(viewer, "customers.view")
    customer = _customer(session, customer_id)
    pref = session.get(CustomerPreferenceCenter, customer.id)
    ranked = select(
        ConsentRecord.purpose, ConsentRecord.granted, ConsentRecord.source, ConsentRecord.legal_basis,
        ConsentRecord.recorded_at,
        func.row_number().over(partition_by=ConsentRecord.purpose,
                               order_by=(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())).label("n"),
    ).where(ConsentRecord.customer_id == customer.id).subquery()
    latest = {r.purpose: r for r in session.execute(select(ranked).where(ranked.c.n == 1))}
    consents = [
        {"purpose": p, "granted": bool(latest[p].granted) if p in latest else None,
         "source": latest[p].source if p in latest else None,
         "legal_basis": latest[p].legal_basis if p in latest else None,
         "recorded_at": latest[p].recorded_at if p in latest else None}
        for p in CONSENT_PURPOSES
    ]
    prefs = None
    if pref is not None:
        prefs = {"email_opt_in": pref.email_opt_in, "sms_opt_in": pref.sms_opt_in, "push_opt_in": pref.push_opt_in,
                 "phone_opt_in": pref.phone_opt_in, "contact_frequency": pref.contact_frequency,
                 "preferred_channel": pref.preferred_channel, "preferred_language": pref.preferred_language,
                 "interests": pref.interests or [], "updated_at": pref.updated_at}
    return {"preferences": prefs, "consents": consents}


def segments_of(session: Session, viewer: Actor, customer_id: int) -> list[dict[str, Any]]:
    """Every segment membership of the customer, current ones first."""
    require(viewer, "customers.view")
    customer = _customer(session, customer_id)
    ms = CustomerSegmentMembership
    rows = session.execute(
        select(CustomerSegment.name, CustomerSegment.segment_type, CustomerSegment.kind, ms.assignment,
               ms.confidence, ms.is_active, ms.entered_at, ms.left_at)
        .join(CustomerSegment, CustomerSegment.id == ms.segment_id)
        .where(ms.customer_id == customer.id)
        .order_by(ms.is_active.desc(), ms.entered_at.desc())
    ).all()
    return [{"segment": r.name, "type": r.segment_type, "kind": r.kind, "assignment": r.assignment,
             "confidence": r.confidence, "active": bool(r.is_active), "entered_at": r.entered_at,
             "left_at": r.left_at} for r in rows]


def score_history(session: Session, viewer: Actor, customer_id: int, limit: int = 60) -> dict[str, list[dict[str, Any]]]:
    """Churn predictions and health scores over time, oldest first (the latest `limit` of each)."""
    require(viewer, "customers.view")
    customer = _customer(session, customer_id)
    churn = session.execute(
        select(ChurnPrediction.as_of, ChurnPrediction.probability, ChurnPrediction.risk_level)
        .where(ChurnPrediction.customer_id == customer.id).order_by(ChurnPrediction.as_of.desc()).limit(limit)
    ).all()
    health = session.execute(
        select(AccountHealthScore.as_of, AccountHealthScore.overall, AccountHealthScore.level)
        .where(AccountHealthScore.customer_id == customer.id).order_by(AccountHealthScore.as_of.desc()).limit(limit)
    ).all()
    return {
        "churn": [{"as_of": r.as_of, "probability": r.probability, "risk_level": r.risk_level} for r in churn[::-1]],
        "health": [{"as_of": r.as_of, "score": r.overall, "level": r.level} for r in health[::-1]],
    }


# --------------------------------------------------------------------------- edits


def _editable(customer: Customer) -> None:
    if customer.status == "erased":
        raise ValidationError(f"Customer {customer.id} was erased; the record cannot be edited.")
    if customer.status == "merged":
        raise ValidationError(
            f"Customer {customer.id} was merged into customer {customer.merged_into_id}; edit that record instead."
        )


def _clean_changes(customer: Customer, changes: dict[str, Any], today: dt.date) -> dict[str, Any]:
    """Validated new values of the fields that differ from the record; all problems in one message."""
    if not isinstance(changes, dict):
        raise ValidationError("Changes must be a mapping of field to new value.")
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ValidationError(f"Cannot change {', '.join(unknown)}; editable: {', '.join(EDITABLE)}.")
    cleaned: dict[str, Any] = {}
    problems: list[str] = []

    def attempt(name: str, fn, *args) -> None:
        try:
            cleaned[name] = fn(*args)
        except ValidationError as exc:
            problems.append(str(exc))

    for name in ("first_name", "last_name", "company", "city", "notes"):
        if name in changes:
            attempt(name, _text, name, changes[name])
    if "country_code" in changes:
        if changes["country_code"] in (None, ""):
            cleaned["country_code"] = None
        else:
            attempt("country_code", country, changes["country_code"])
    if "email" in changes:
        if changes["email"] in (None, ""):
            cleaned["email"] = None
        elif changes["email"] != customer.email:
            attempt("email", email, changes["email"])
    if "phone" in changes:
        if changes["phone"] in (None, ""):
            cleaned["phone"] = None
        elif changes["phone"] != customer.phone:
            region = cleaned.get("country_code", customer.country_code)
            attempt("phone", phone, changes["phone"], region)
    if "preferred_language" in changes:
        attempt("preferred_language", _language, changes["preferred_language"])
    if "date_of_birth" in changes:
        attempt("date_of_birth", _date_of_birth, changes["date_of_birth"], today)
    if "gender" in changes:
        if changes["gender"] not in (None, *GENDERS):
            problems.append(f"Gender must be one of: {', '.join(GENDERS)}.")
        else:
            cleaned["gender"] = changes["gender"]
    first = cleaned.get("first_name", customer.first_name)
    last = cleaned.get("last_name", customer.last_name)
    if not problems and not (first or last):
        problems.append("A customer needs a first or a last name.")
    if problems:
        raise ValidationError(" ".join(problems))
    for key in ("first_name", "last_name"):
        if key in cleaned and cleaned[key] is None:
            cleaned[key] = ""
    return {k: v for k, v in cleaned.items() if getattr(customer, k) != v}


def update_customer(session: Session, actor: Actor, customer_id: int, expected_version: int | None,
                    changes: dict[str, Any], today: dt.date | None = None) -> Customer:
    """Validate and apply profile changes; refuses an edit made against an older version."""
    require(actor, "customers.edit")
    customer = _customer(session, customer_id)
    _editable(customer)
    check_version(customer, expected_version, f"Customer {customer.id}")
    cleaned = _clean_changes(customer, changes, today or dt.date.today())
    if not cleaned:
        return customer
    enforce(session, customer.id, "profile_edit")
    if "email" in cleaned:
        enforce(session, customer.id, "email_change")
        record_account_change(session, customer.id, "email")
    before = {k: getattr(customer, k) for k in cleaned}
    for key, value in cleaned.items():
        setattr(customer, key, value)
    session.flush()  # the versioned UPDATE: a concurrent writer makes this raise StaleDataError
    record_audit(session, actor, "customer.update", "customer", customer.id, before=before, after=cleaned)
    return customer


def create_customer(session: Session, actor: Actor, fields: dict[str, Any], today: dt.date | None = None) -> Customer:
    """A new active customer from the editable profile fields (validated like an edit), optionally with
    the id another system knows it by (`external_id`, unique) and an acquisition channel."""
    require(actor, "customers.edit")
    if not isinstance(fields, dict):
        raise ValidationError("A customer is a mapping of field to value.")
    extra = {k: fields[k] for k in CREATE_ONLY if k in fields}
    cleaned = _clean_changes(Customer(), {k: v for k, v in fields.items() if k not in CREATE_ONLY},
                             today or dt.date.today())
    external_id = extra.get("external_id")
    if external_id is not None:
        external_id = _text("external_id", external_id, required=True)
        if session.scalar(select(Customer.id).where(Customer.external_id == external_id)) is not None:
            raise ValidationError(f"A customer with external_id {external_id!r} exists already.")
    channel = extra.get("acquisition_channel") or "direct"
    if channel not in ACQUISITION_CHANNELS:
        raise ValidationError(f"acquisition_channel must be one of: {', '.join(ACQUISITION_CHANNELS)}.")
    customer = Customer(**{"first_name": "", "last_name": "", **cleaned}, external_id=external_id,
                        acquisition_channel=channel, status="active", signed_up_at=utcnow())
    session.add(customer)
    session.flush()
    record_audit(session, actor, "customer.create", "customer", customer.id,
                 after={**cleaned, "external_id": external_id, "acquisition_channel": channel})
    return customer


def _clean_address(fields: dict[str, Any], current: CustomerAddress | None) -> dict[str, Any]:
    if not isinstance(fields, dict):
        raise ValidationError("Address fields must be a mapping.")
    unknown = sorted(set(fields) - set(ADDRESS_FIELDS))
    if unknown:
        raise ValidationError(f"Unknown address field(s): {', '.join(unknown)}.")
    merged = {k: fields.get(k, getattr(current, k) if current else None) for k in ADDRESS_FIELDS}
    problems: list[str] = []
    out: dict[str, Any] = {}
    kind = merged["kind"] or "shipping"
    if kind not in ADDRESS_KINDS:
        problems.append(f"Address kind must be one of: {', '.join(ADDRESS_KINDS)}.")
    out["kind"] = kind
    for name, required in (("line1", True), ("line2", False), ("city", True), ("region", False)):
        try:
            out[name] = _text(name, merged[name], required=required)
        except ValidationError as exc:
            problems.append(str(exc).replace("Line1", "Street and number").replace("Line2", "Address line 2"))
    try:
        out["country_code"] = country(merged["country_code"])
    except ValidationError as exc:
        problems.append(str(exc))
    if "country_code" in out:
        try:
            out["postal_code"] = postal_code(merged["postal_code"], out["country_code"])
        except ValidationError as exc:
            problems.append(str(exc))
    if problems:
        raise ValidationError(" ".join(problems))
    out["is_default"] = bool(merged["is_default"])
    coordinates = geocode(out["country_code"], out["city"])
    out["latitude"], out["longitude"] = coordinates if coordinates else (None, None)
    out["validation_status"] = "valid"
    return out


def _unset_other_defaults(session: Session, address: CustomerAddress) -> None:
    if address.is_default:
        session.execute(
            update(CustomerAddress)
            .where(CustomerAddress.customer_id == address.customer_id, CustomerAddress.kind == address.kind,
                   CustomerAddress.id != address.id, CustomerAddress.is_default.is_(True))
            .values(is_default=False).execution_options(synchronize_session="fetch")
        )


def add_address(session: Session, actor: Actor, customer_id: int, fields: dict[str, Any]) -> CustomerAddress:
    """Validate, geocode (offline) and store a new address; a default replaces the previous default."""
    require(actor, "customers.edit")
    customer = _customer(session, customer_id)
    _editable(customer)
    cleaned = _clean_address(fields, None)
    enforce(session, customer.id, "profile_edit")
    record_account_change(session, customer.id, "address")
    address = CustomerAddress(customer_id=customer.id, **cleaned)
    session.add(address)
    session.flush()
    _unset_other_defaults(session, address)
    record_audit(session, actor, "customer.address.add", "customer", customer.id, after={"address_id": address.id,
                 **cleaned})
    return address


def update_address(session: Session, actor: Actor, address_id: int, fields: dict[str, Any]) -> CustomerAddress:
    """Change an address; it is validated and geocoded again as a whole."""
    require(actor, "customers.edit")
    address = session.get(CustomerAddress, address_id) if isinstance(address_id, int) else None
    if address is None:
        raise NotFound(f"No address with id {address_id}.")
    _editable(_customer(session, address.customer_id))
    before = _address_row(address)
    cleaned = _clean_address(fields, address)
    enforce(session, address.customer_id, "profile_edit")
    record_account_change(session, address.customer_id, "address")
    for key, value in cleaned.items():
        setattr(address, key, value)
    session.flush()
    _unset_other_defaults(session, address)
    after = _address_row(address)
    changed = [k for k in after if after[k] != before[k]]
    record_audit(session, actor, "customer.address.update", "customer", address.customer_id,
                 before={"address_id": address.id, **{k: before[k] for k in changed}},
                 after={"address_id": address.id, **{k: after[k] for k in changed}})
    return address
