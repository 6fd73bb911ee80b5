"""Advanced customer search: typo-tolerant text, filters, sorting, paging and saved searches.

A search is a `CustomerQuery` (plain data, storable as JSON) compiled to SQLAlchemy expressions
against whitelists of filters and sort columns; nothing the user types becomes SQL text.

Text search matches name, email, phone and company, and ranks exact matches of a customer id,
an email address or a phone number first. Typo tolerance applies to names and companies; text
with an "@" or without letters is matched as an email / phone / id (exactly or as a substring).

* PostgreSQL: pg_trgm. A customer matches when the name or company is trigram-similar to the text
  (`%` with the similarity threshold lowered to `TRIGRAM_THRESHOLD` for the transaction), or a
  field contains the text; the GIN trigram indexes of migration 0007 serve every one of these
  conditions (a BitmapOr). Rank = best trigram similarity, plus `EXACT_BOOST` for exact matches.
* SQLite (development and demo databases): candidates are customers with a word starting with
  the first two letters of a query word, or a field containing the text (at most
  `CANDIDATE_LIMIT`, after the filters); RapidFuzz scores each candidate word by word and keeps
  those scoring at least `FUZZY_THRESHOLD` (at most `MATCH_LIMIT`, best first). So "Jonh Smiht"
  finds "John Smith", but on SQLite a typo in the first two letters of every word is not forgiven.

Merged and erased customers are left out unless the status filter asks for them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import ColumnElement, Float, and_, case, cast, func, literal, literal_column, or_, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER, GONE_STATUSES, display_name
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.dates import midnight
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.transactions import check_version
from crm_core.reporting.sales_rollups import counted_customers
from crm_core.segmentation.churn_levels import RISK_FLOORS, risk_band
from crm_core.segmentation.segment_stats import BASE as BASE_PROFILE
from crm_core.segmentation.segment_stats import NONE_VALUE as NO_VALUE
from crm_core.segmentation.segment_stats import stored_profile
from db.models import (
    CUSTOMER_STATUSES,
    LIFECYCLE_STAGES,
    LOYALTY_TIERS,
    RISK_LEVELS,
    ChurnPrediction,
    Customer,
    CustomerAnalytics,
    CustomerLifecycleStage,
    CustomerSegment,
    CustomerSegmentMembership,
    LoyaltyAccount,
    SavedSearch,
    utcnow,
)

TRIGRAM_THRESHOLD = 0.2
FUZZY_THRESHOLD = 70.0
CANDIDATE_LIMIT = 20_000
MATCH_LIMIT = 5_000
EXACT_BOOST = 10.0
MAX_TEXT = 200
ID_BATCH = 5_000
# Churn probability bands used when no churn-model predictions are stored yet: [low, high) per level.

A = CustomerAnalytics
STAGE = CustomerLifecycleStage
LOYALTY = LoyaltyAccount

# The expressions below must match the trigram indexes of migration 0007 character for character.
name_text = func.lower(Customer.first_name.concat(literal_column("' '")).concat(Customer.last_name))
email_text = func.lower(func.coalesce(Customer.email, literal_column("''")))
company_text = func.lower(func.coalesce(Customer.company, literal_column("''")))
phone_text = func.replace(
    func.replace(func.coalesce(Customer.phone, literal_column("''")), literal_column("' '"), literal_column("''")),
    literal_column("'-'"), literal_column("''"),
)

SORTS: dict[str, tuple[Any, ...]] = {
    "relevance": (),
    "name": (Customer.last_name, Customer.first_name),
    "email": (Customer.email,),
    "country": (Customer.country_code,),
    "signed_up_at": (Customer.signed_up_at,),
    "last_order_at": (A.last_order_at,),
    "orders": (A.order_count,),
    "revenue": (A.total_revenue,),
    "clv_12m": (A.clv_12m,),
    "churn_probability": (A.churn_probability,),
    "id": (Customer.id,),
}
SORT_LABELS = {
    "relevance": "Relevance", "name": "Name", "email": "Email", "country": "Country",
    "signed_up_at": "Signup date", "last_order_at": "Last order", "orders": "Orders", "revenue": "Revenue",
    "clv_12m": "CLV (12 months)", "churn_probability": "Churn probability", "id": "Customer id",
}


# --------------------------------------------------------------------------- the query


@dataclass(frozen=True)
class CustomerQuery:
    """What to search for; every field is optional and all given filters must hold."""

    text: str = ""
    segment_ids: tuple[int, ...] = ()
    stages: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    risk_levels: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    signup_from: dt.date | None = None
    signup_to: dt.date | None = None
    last_order_from: dt.date | None = None
    last_order_to: dt.date | None = None
    revenue_min: float | None = None
    revenue_max: float | None = None
    clv_min: float | None = None
    clv_max: float | None = None
    sort: str = "relevance"
    direction: str = "desc"

    def to_dict(self) -> dict[str, Any]:
        data = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dt.date):
                value = value.isoformat()
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomerQuery:
        """Build and validate a query from JSON-like data (a saved search, a form)."""
        if not isinstance(data, dict):
            raise ValidationError("A search must be a mapping of field to value.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"Unknown search field(s): {', '.join(unknown)}.")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if value is None:
                continue
            if name in ("segment_ids", "stages", "tiers", "risk_levels", "countries", "statuses"):
                if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
                    raise ValidationError(f"{name} must be a list.")
                value = tuple(value)
            elif name in ("signup_from", "signup_to", "last_order_from", "last_order_to"):
                value = _date(name, value)
            values[name] = value
        return validate_query(cls(**values))


def _date(name: str, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError(f"{name} must be a date (YYYY-MM-DD), not {value!r}.")


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValidationError(f"{name} must be a number, not {value!r}.")
    return float(value)


def validate_query(query: CustomerQuery) -> CustomerQuery:
    """Check every field against its whitelist and range; returns a normalized copy."""
    if not isinstance(query, CustomerQuery):
        raise ValidationError("Expected a customer search.")
    if not isinstance(query.text, str):
        raise ValidationError("The search text must be text.")
    text = " ".join(query.text.split())
    if len(text) > MAX_TEXT:
        raise ValidationError(f"The search text has at most {MAX_TEXT} characters.")

    def choices(name: str, values: tuple, allowed: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValidationError(f"Unknown {name} {bad[0]!r}; choose from: {', '.join(allowed)}.")
        return tuple(dict.fromkeys(values))

    if any(isinstance(i, bool) or not isinstance(i, int) for i in query.segment_ids):
        raise ValidationError("Segment ids are whole numbers.")
    countries = tuple(dict.fromkeys(str(c).strip().upper() for c in query.countries))
    if any(not re.fullmatch(r"[A-Z]{2}", c) for c in countries):
        raise ValidationError("Countries are two-letter ISO codes such as DE or FR.")
    for low, high in (("signup_from", "signup_to"), ("last_order_from", "last_order_to")):
        for name in (low, high):
            value = getattr(query, name)
            if value is not None and not isinstance(value, dt.date):
                raise ValidationError(f"{name} must be a date.")
        if getattr(query, low) and getattr(query, high) and getattr(query, low) > getattr(query, high):
            raise ValidationError(f"{low.replace('_', ' ')} is after {high.replace('_', ' ')}.")
    numbers: dict[str, Any] = {}
    for low, high in (("revenue_min", "revenue_max"), ("clv_min", "clv_max")):
        numbers[low], numbers[high] = _number(low, getattr(query, low)), _number(high, getattr(query, high))
        if numbers[low] is not None and numbers[high] is not None and numbers[low] > numbers[high]:
            raise ValidationError(f"{low.replace('_', ' ')} is above {high.replace('_', ' ')}.")
    if query.sort not in SORTS:
        raise ValidationError(f"Cannot sort by {query.sort!r}; choose from: {', '.join(SORTS)}.")
    if query.direction not in ("asc", "desc"):
        raise ValidationError("The sort direction is asc or desc.")
    return dataclasses.replace(
        query, text=text, segment_ids=tuple(dict.fromkeys(query.segment_ids)),
        stages=choices("stage", query.stages, LIFECYCLE_STAGES), tiers=choices("tier", query.tiers, LOYALTY_TIERS),
        risk_levels=choices("risk level", query.risk_levels, RISK_LEVELS), countries=countries,
        statuses=choices("status", query.statuses, CUSTOMER_STATUSES), **numbers,
    )


# --------------------------------------------------------------------------- compilation


def _latest_prediction_date(session: Session) -> dt.date | None:
    return session.scalar(select(func.max(ChurnPrediction.as_of)))


def risk_level_expr(latest: dt.date | ColumnElement[dt.date] | None):
    """The customer's churn risk level: the latest stored prediction (of the date `latest`, a value or a
    parameter), else a band of the snapshot probability."""
    bands = case(
        *[(A.churn_probability < risk_band(level)[1], literal(level)) for level in RISK_FLOORS],
        else_=literal(None),
    )
    if latest is None:
        return bands
    predicted = (
        select(ChurnPrediction.risk_level)
        .where(ChurnPrediction.customer_id == Customer.id, ChurnPrediction.as_of == latest)
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(predicted, bands)


def _filters(query: CustomerQuery, latest: dt.date | None) -> list[Any]:
    conditions: list[Any] = []
    if query.statuses:
        conditions.append(Customer.status.in_(query.statuses))
    else:
        conditions.append(Customer.status.not_in(GONE_STATUSES))
    if query.segment_ids:
        m = CustomerSegmentMembership
        conditions.append(Customer.id.in_(
            select(m.customer_id).where(m.segment_id.in_(query.segment_ids), m.is_active.is_(True))
        ))
    if query.stages:
        conditions.append(STAGE.stage.in_(query.stages))
    if query.tiers:
        conditions.append(LOYALTY.tier.in_(query.tiers))
    if query.risk_levels:
        if latest is not None:
            p = ChurnPrediction
            conditions.append(Customer.id.in_(
                select(p.customer_id).where(p.as_of == latest, p.risk_level.in_(query.risk_levels))
            ))
        else:
            conditions.append(or_(*[
                and_(A.churn_probability >= risk_band(level)[0], A.churn_probability < risk_band(level)[1])
                for level in query.risk_levels
            ]))
    if query.countries:
        conditions.append(Customer.country_code.in_(query.countries))
    if query.signup_from:
        conditions.append(Customer.signed_up_at >= midnight(query.signup_from))
    if query.signup_to:
        conditions.append(Customer.signed_up_at < midnight(query.signup_to + dt.timedelta(days=1)))
    if query.last_order_from:
        conditions.append(A.last_order_at >= midnight(query.last_order_from))
    if query.last_order_to:
        conditions.append(A.last_order_at < midnight(query.last_order_to + dt.timedelta(days=1)))
    for column, low, high in ((A.total_revenue, query.revenue_min, query.revenue_max),
                              (A.clv_12m, query.clv_min, query.clv_max)):
        if low is not None:
            conditions.append(column >= low)
        if high is not None:
            conditions.append(column <= high)
    return conditions


def _joined(statement):
    return (statement.select_from(Customer)
            .outerjoin(A, A.customer_id == Customer.id)
            .outerjoin(STAGE, STAGE.customer_id == Customer.id)
            .outerjoin(LOYALTY, LOYALTY.customer_id == Customer.id))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _exact(text: str):
    """Conditions for an exact id, email or phone match (ranked first)."""
    exact = [email_text == text.lower()]
    if text.isdigit() and len(text) <= 9:
        exact.append(Customer.id == int(text))
    digits = _digits(text)
    if len(digits) >= 6:
        exact.append(phone_text == ("+" + digits if text.strip().startswith("+") else digits))
        exact.append(phone_text == "+" + digits)
    return or_(*exact)


def _contains(text: str):
    pattern = f"%{_like_escape(text.lower())}%"
    conditions = [name_text.like(pattern, escape="\\"), email_text.like(pattern, escape="\\"),
                  company_text.like(pattern, escape="\\")]
    digits = _digits(text)
    if len(digits) >= 4 and not any(ch.isalpha() for ch in text):
        conditions.append(phone_text.like(f"%{digits}%"))
    return conditions


def _fuzzy(text: str) -> bool:
    """Typo tolerance is for names and companies: not for text with an @ (an email) or without letters."""
    return "@" not in text and any(ch.isalpha() for ch in text)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _postgres_text(session: Session, text: str):
    """Match condition and relevance for PostgreSQL trigram search."""
    session.execute(select(func.set_config("pg_trgm.similarity_threshold", str(TRIGRAM_THRESHOLD), True)))
    lowered = text.lower()
    fuzzy = [name_text.op("%")(lowered), company_text.op("%")(lowered)] if _fuzzy(text) else []
    match = or_(_exact(text), *fuzzy, *_contains(text))
    relevance = func.greatest(
        func.similarity(name_text, lowered), func.similarity(email_text, lowered),
        func.similarity(company_text, lowered),
    ) + case((_exact(text), EXACT_BOOST), else_=0.0)
    return match, cast(relevance, Float)


def _words(value: str | None) -> list[str]:
    return re.findall(r"[^\W_]+", (value or "").lower())


def fuzzy_score(text: str, name: str, email: str | None, company: str | None, phone: str | None = None) -> float:
    """0-100: each query word's best RapidFuzz ratio against the customer's words, averaged;
    100 when a field contains the text or the phone number contains its (4 or more) digits."""
    query_words = _words(text)
    if not query_words:
        return 0.0
    digits = _digits(text)
    if len(digits) >= 4 and digits in _digits(phone or ""):
        return 100.0
    haystack = " ".join(x for x in (name, email or "", company or "") if x).lower()
    if text.lower() in haystack:
        return 100.0
    words = _words(name) + _words((email or "").split("@")[0]) + _words(company)
    if not words:
        return 0.0
    return sum(max(fuzz.ratio(q, w) for w in words) for q in query_words) / len(query_words)


def _sqlite_matches(session: Session, text: str, conditions: list[Any]) -> dict[int, float]:
    """Customer id -> score for SQLite: bounded candidates re-ranked with RapidFuzz, best first."""
    prefixes = []
    for word in _words(text) if _fuzzy(text) else []:
        if len(word) >= 2:
            pattern = f"{_like_escape(word[:2])}%"
            prefixes += [func.lower(Customer.first_name).like(pattern, escape="\\"),
                         func.lower(Customer.last_name).like(pattern, escape="\\"),
                         email_text.like(pattern, escape="\\"), company_text.like(pattern, escape="\\"),
                         company_text.like(f"% {pattern}", escape="\\")]
    exact_ids = set(session.scalars(_joined(select(Customer.id)).where(*conditions, _exact(text))))
    candidates = session.execute(
        _joined(select(Customer.id, Customer.first_name, Customer.last_name, Customer.email, Customer.company,
                       Customer.phone))
        .where(*conditions, or_(*prefixes, *_contains(text)))
        .limit(CANDIDATE_LIMIT)
    ).all()
    scores: dict[int, float] = {i: 100.0 + EXACT_BOOST * 10 for i in exact_ids}
    for row in candidates:
        if row.id in scores:
            continue
        score = fuzzy_score(text, f"{row.first_name} {row.last_name}", row.email, row.company, row.phone)
        if score >= FUZZY_THRESHOLD:
            scores[row.id] = score
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:MATCH_LIMIT]
    return dict(best)


def _row_columns(risk):
    return (
        Customer.id,
        (Customer.first_name.concat(literal_column("' '")).concat(Customer.last_name)).label("name"),
        Customer.email, Customer.phone, Customer.company, Customer.country_code.label("country"), Customer.city,
        Customer.status, STAGE.stage.label("stage"), LOYALTY.tier.label("tier"),
        Customer.signed_up_at, A.last_order_at, A.order_count.label("orders"), A.total_revenue.label("revenue"),
        A.clv_12m, A.churn_probability, risk.label("risk_level"),
    )


def _order_by(query: CustomerQuery, relevance=None) -> list[Any]:
    columns = SORTS[query.sort]
    if query.sort == "relevance":
        if relevance is None:
            columns = (Customer.signed_up_at,)  # no text: newest customers first
        else:
            return [relevance.desc(), Customer.id]
    # NULLS LAST only where a value can be missing: on a column that is never NULL (the sign-up time of the
    # default order) the plain order is the same and an index on it can serve it.
    ordered = [(c.desc() if query.direction == "desc" else c.asc()) if _never_null(c) else
               (c.desc().nulls_last() if query.direction == "desc" else c.asc().nulls_last()) for c in columns]
    return [*ordered, Customer.id]


def _never_null(column: Any) -> bool:
    return getattr(column, "table", None) is Customer.__table__ and getattr(column, "nullable", True) is False


def _as_row(row, score: float | None = None) -> dict[str, Any]:
    data = dict(row._mapping)
    for key in ("revenue", "clv_12m"):
        if data.get(key) is not None:
            data[key] = float(data[key])
    if score is not None:
        data["relevance"] = round(float(score), 3)
    return data


def _check_paging(page: int, page_size: int) -> int:
    if isinstance(page, bool) or not isinstance(page, int) or isinstance(page_size, bool) \
            or not isinstance(page_size, int):
        raise ValidationError("Page and page size are whole numbers.")
    if not 1 <= page_size <= 1000:
        raise ValidationError("Page size must be between 1 and 1000.")
    return max(1, page)


def search_customers(session: Session, viewer: Actor, query: CustomerQuery, page: int = 1, page_size: int = 50) -> Page:
    """One page of customers matching the query, with the total count."""
    require(viewer, "customers.view")
    query = validate_query(query)
    page = _check_paging(page, page_size)
    latest = _latest_prediction_date(session)
    conditions = _filters(query, latest)
    columns = _row_columns(risk_level_expr(latest))
    offset = (page - 1) * page_size

    if query.text and not _is_postgres(session):
        scores = _sqlite_matches(session, query.text, conditions)
        if query.sort == "relevance":
            ids = list(scores)[offset:offset + page_size]
            found = {r.id: r for r in session.execute(_joined(select(*columns)).where(Customer.id.in_(ids)))}
            rows = [_as_row(found[i], scores[i]) for i in ids if i in found]
        else:
            rows = [
                _as_row(r, scores.get(r.id))
                for r in session.execute(
                    _joined(select(*columns)).where(Customer.id.in_(list(scores)))
                    .order_by(*_order_by(query)).limit(page_size).offset(offset)
                )
            ]
        return Page(rows=rows, total=len(scores), page=page, page_size=page_size)

    if not query.text:
        unfiltered = query == CustomerQuery(sort=query.sort, direction=query.direction)
        stored = counted_customers(session) if unfiltered else None
        total = stored if stored is not None else session.scalar(_joined(select(func.count())).where(*conditions)) or 0
        result = session.execute(
            _joined(select(*columns)).where(*conditions).order_by(*_order_by(query)).limit(page_size).offset(offset)
        )
        return Page(rows=[_as_row(r) for r in result], total=total, page=page, page_size=page_size)

    # Text: every match must be found (and ranked) anyway, so count them in the same pass.
    match, relevance = _postgres_text(session, query.text)
    conditions = [*conditions, match]
    ranked = session.execute(
        _joined(select(*columns, relevance.label("relevance"), func.count().over().label("matches")))
        .where(*conditions).order_by(*_order_by(query, relevance)).limit(page_size).offset(offset)
    ).all()
    # Past the last page there is no row to carry the count: count separately.
    total = ranked[0].matches if ranked else session.scalar(_joined(select(func.count())).where(*conditions)) or 0
    rows = [{k: v for k, v in _as_row(r).items() if k != "matches"} for r in ranked]
    return Page(rows=rows, total=total, page=page, page_size=page_size)


def count_matches(session: Session, viewer: Actor, query: CustomerQuery) -> int:
    """How many customers the query matches (for confirmations)."""
    return search_customers(session, viewer, query, page=1, page_size=1).total or 0


def search_ids(session: Session, viewer: Actor, query: CustomerQuery, batch: int = ID_BATCH) -> Iterator[list[int]]:
    """Every matching customer id, in chunks of `batch`, by keyset on id (for bulk actions)."""
    require(viewer, "customers.view")
    query = validate_query(query)
    latest = _latest_prediction_date(session)
    conditions = _filters(query, latest)
    if query.text and not _is_postgres(session):
        ids = sorted(_sqlite_matches(session, query.text, conditions))
        for start in range(0, len(ids), batch):
            yield ids[start:start + batch]
        return
    if query.text:
        match, _ = _postgres_text(session, query.text)
        conditions = [*conditions, match]
    last = 0
    while True:
        chunk = list(session.scalars(
            _joined(select(Customer.id)).where(*conditions, Customer.id > last).order_by(Customer.id).limit(batch)
        ))
        if not chunk:
            return
        yield chunk
        last = chunk[-1]


def search_filter_options(session: Session, viewer: Actor) -> dict[str, Any]:
    """Choices for the filter pickers: segments (id, name) and the countries present."""
    require(viewer, "customers.view")
    segments = session.execute(
        select(CustomerSegment.id, CustomerSegment.name, CustomerSegment.kind, CustomerSegment.is_system)
        .where(CustomerSegment.is_active.is_(True)).order_by(CustomerSegment.name)
    ).all()
    base = stored_profile(session, BASE_PROFILE)  # the countries of every counted customer, as of the refresh
    countries = sorted(entry["value"] for entry in base["country"] if entry["value"] != NO_VALUE) if base else \
        session.scalars(select(Customer.country_code).where(Customer.country_code.is_not(None)).distinct()
                        .order_by(Customer.country_code)).all()
    return {
        "segments": [{"id": s.id, "name": s.name, "kind": s.kind,
                      "editable": s.kind == "static" and not s.is_system} for s in segments],
        "countries": list(countries),
        "stages": list(LIFECYCLE_STAGES), "tiers": list(LOYALTY_TIERS), "risk_levels": list(RISK_LEVELS),
        "statuses": list(CUSTOMER_STATUSES), "sorts": dict(SORT_LABELS),
    }


# --------------------------------------------------------------------------- saved searches


def _clean_search_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A saved search needs a name.")
    name = " ".join(name.split())
    if len(name) > 120:
        raise ValidationError("A saved search name has at most 120 characters.")
    return name


def _own_search(session: Session, user, search_id: int) -> SavedSearch:
    found = session.get(SavedSearch, search_id) if isinstance(search_id, int) else None
    if found is None or found.user_id != user.id:
        raise NotFound(f"You have no saved search with id {search_id}.")
    return found


def _name_taken(session: Session, user_id: int | None, name: str, except_id: int | None = None) -> bool:
    clash = session.scalar(select(SavedSearch.id).where(
        SavedSearch.user_id == user_id, func.lower(SavedSearch.name) == name.lower()))
    return clash is not None and clash != except_id


def save_search(session: Session, actor: Actor, name: str, query: CustomerQuery) -> SavedSearch:
    """Store a search under a name unique for this user."""
    require(actor, "customers.view")
    if actor.id is None:
        raise ValidationError("Saved searches belong to a signed-in user.")
    name = _clean_search_name(name)
    data = validate_query(query).to_dict()
    if _name_taken(session, actor.id, name):
        raise ValidationError(f"You already have a saved search named {name!r}; choose another name.")
    saved = SavedSearch(user_id=actor.id, name=name, query=data, updated_at=utcnow())
    session.add(saved)
    session.flush()
    record_audit(session, actor, "saved_search.create", "saved_search", saved.id, after={"name": name, "query": data})
    return saved


def update_search(session: Session, actor: Actor, search_id: int, expected_version: int | None,
                  name: str | None = None, query: CustomerQuery | None = None) -> SavedSearch:
    """Rename a saved search or replace its query; refused if it changed since it was read."""
    require(actor, "customers.view")
    saved = _own_search(session, actor, search_id)
    check_version(saved, expected_version, f"Saved search {saved.name}")
    before = {"name": saved.name, "query": saved.query}
    if name is not None:
        name = _clean_search_name(name)
        if _name_taken(session, actor.id, name, saved.id):
            raise ValidationError(f"You already have a saved search named {name!r}; choose another name.")
        saved.name = name
    if query is not None:
        saved.query = validate_query(query).to_dict()
    saved.updated_at = utcnow()
    session.flush()
    record_audit(session, actor, "saved_search.update", "saved_search", saved.id, before=before,
                 after={"name": saved.name, "query": saved.query})
    return saved


def delete_search(session: Session, actor: Actor, search_id: int) -> str:
    """Delete one of the actor's saved searches; returns its name."""
    require(actor, "customers.view")
    saved = _own_search(session, actor, search_id)
    record_audit(session, actor, "saved_search.delete", "saved_search", saved.id,
                 before={"name": saved.name, "query": saved.query})
    session.delete(saved)
    session.flush()
    return saved.name


def list_searches(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    """The viewer's own saved searches, by name."""
    require(viewer, "customers.view")
    rows = session.scalars(
        select(SavedSearch).where(SavedSearch.user_id == viewer.id).order_by(SavedSearch.name)
    ).all()
    return [{"id": s.id, "name": s.name, "query": s.query, "version": s.version, "updated_at": s.updated_at}
            for s in rows]


def load_search(session: Session, viewer: Actor, search_id: int) -> CustomerQuery:
    require(viewer, "customers.view")
    return CustomerQuery.from_dict(_own_search(session, viewer, search_id).query)


# --------------------------------------------------------------------------- filter groups, keyset pages


def filter_customers(session: Session, viewer: Actor, rules: dict[str, Any] | None, as_of: dt.date,
                     limit: int = 100, after: int | None = None, include_gone: bool = False) -> dict[str, Any]:
    """One page of the customers matching segment-style rules (an OR of ANDs, or any nesting of
    `{"all"|"any": [...]}` groups over the segment rule fields), in id order after the id `after`.

    Keyset paging has no cap and costs the same on the last page as on the first; `next_after` is
    the id to continue after, None on the last page. Merged and erased customers are left out
    unless `include_gone`.
    """
    from crm_core.segmentation.rules import _customer_from, compile_rules  # segmentation imports customers

    require(viewer, "customers.view")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValidationError("limit must be a whole number between 1 and 1000.")
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
        raise ValidationError("after must be a customer id from a previous page.")
    conditions: list[Any] = [] if include_gone else [COUNTED_CUSTOMER]
    if rules:
        conditions.append(compile_rules(rules, as_of))
    if after is not None:
        conditions.append(Customer.id > after)
    # The page's ids first: joined tables a rule does not name drop out of that query, and the columns
    # shown are then read for those ids alone (one query over every join would merge-join each joined
    # table from its first row up to `after`).
    ids = list(session.scalars(select(Customer.id).select_from(_customer_from()).where(*conditions)
                               .order_by(Customer.id).limit(limit + 1)))
    rows = session.execute(
        select(Customer.id, Customer.external_id, Customer.first_name, Customer.last_name, Customer.email,
               Customer.country_code, Customer.status, Customer.signed_up_at, Customer.version,
               CustomerLifecycleStage.stage, LoyaltyAccount.tier, CustomerAnalytics.order_count,
               CustomerAnalytics.total_revenue, CustomerAnalytics.last_order_at, CustomerAnalytics.clv_12m,
               CustomerAnalytics.churn_probability)
        .select_from(_customer_from()).where(Customer.id.in_(ids)).order_by(Customer.id)
    ).all() if ids else []
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "rows": [
            {"id": r.id, "external_id": r.external_id,
             "name": display_name(r.first_name, r.last_name, r.id, r.external_id), "email": r.email,
             "country": r.country_code, "status": r.status, "signed_up_at": r.signed_up_at, "version": r.version,
             "stage": r.stage, "tier": r.tier, "orders": r.order_count or 0,
             "revenue": float(r.total_revenue) if r.total_revenue is not None else 0.0,
             "last_order_at": r.last_order_at,
             "clv_12m": float(r.clv_12m) if r.clv_12m is not None else None,
             "churn_probability": r.churn_probability}
            for r in rows
        ],
        "next_after": rows[-1].id if more else None,
    }
