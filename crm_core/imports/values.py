"""Reading the values of an import file: dates, countries, phones, emails, amounts and quantities.

Dates are accepted as ISO 8601 (`2024-03-01`, `2024-03-01T14:30:00`, `2024-03-01 14:30`), as
`YYYY/MM/DD`, and day first as `DD.MM.YYYY` or `DD/MM/YYYY`. Impossible dates (2023-02-30) are
rejected, never rolled over. A time may carry a UTC offset (`+01:00`, `+0100`, `Z`, also after a
space: `2024-03-05 14:22:10 +0100`); such times are stored as naive UTC, like every time here.
Each parser raises a ValidationError whose message names the value and what is wrong with it.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

import email_validator
import phonenumbers
import pycountry

from crm_core.platform.errors import ValidationError

COUNTRY_ALIASES = {"UK": "GB", "EL": "GR", "ENGLAND": "GB", "SCOTLAND": "GB", "WALES": "GB"}


_DATE_PATTERNS = (
    (re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"), ("y", "m", "d")),
    (re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})"), ("y", "m", "d")),
    (re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})"), ("d", "m", "y")),
    (re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})"), ("d", "m", "y")),
)
# A time may carry a UTC offset, directly or after a space as Shopify writes it (14:22:10 +0100).
_TIME = re.compile(r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?(?: ?(Z|UTC|[+-]\d{2}:?\d{2}))?")


def parse_datetime(text: str) -> dt.datetime:
    """A date or date-time in one of the accepted forms (see the module docstring), as naive UTC."""
    value = text.strip()
    for pattern, order in _DATE_PATTERNS:
        match = pattern.match(value)
        if not match:
            continue
        rest = _TIME.fullmatch(value[match.end():])
        if rest is None:
            break
        parts = dict(zip(order, (int(g) for g in match.groups()), strict=True))
        hour, minute, second, fraction, zone = rest.groups()
        try:
            moment = dt.datetime(
                parts["y"], parts["m"], parts["d"], int(hour or 0), int(minute or 0), int(second or 0),
                int((fraction or "0").ljust(6, "0")),
            )
        except ValueError:
            raise ValidationError(f"{value!r} is not a real date") from None
        if zone:
            offset = dt.datetime.fromisoformat("2000-01-01T00:00" + ("+00:00" if zone in ("Z", "UTC") else zone)).utcoffset()
            moment = moment - (offset or dt.timedelta())
        return moment
    raise ValidationError(f"{value!r} is not a date in a known form (use YYYY-MM-DD)")


@lru_cache(maxsize=2048)
def normalize_country(text: str) -> str:
    """ISO 3166 alpha-2 for an alpha-2 or alpha-3 code or an English country name."""
    value = text.strip()
    try:
        return pycountry.countries.lookup(COUNTRY_ALIASES.get(value.upper(), value)).alpha_2
    except LookupError:
        raise ValidationError(f"unknown country {value!r} (use an ISO 3166 code such as DE or DEU)") from None


def normalize_phone(text: str, region: str | None) -> str:
    """E.164 (+4930123456) for a valid number; a number without + needs the country to read it."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        if not text.strip().startswith("+") and not region:
            raise ValidationError(f"phone {text!r} needs an international prefix (+...) or a country") from None
        raise ValidationError(f"phone {text!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(f"phone {text!r} is not a valid number{' for ' + region if region else ''}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_variants(e164: str) -> list[str]:
    """Spellings of a normalized number that existing records may hold."""
    number = phonenumbers.parse(e164)
    national = str(number.national_number)
    return list(dict.fromkeys([
        e164, f"+{number.country_code} {national}",
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
    ]))


def normalize_email(text: str) -> str:
    try:
        return email_validator.validate_email(text.strip(), check_deliverability=False).normalized
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(f"email {text.strip()!r} is not valid: {exc}") from None


def email_key(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def fold(text: str | None) -> str:
    """Text for comparing names: accents dropped, case folded (Müller -> muller)."""
    text = (text or "").strip()
    if text.isascii():
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def name_key(first: str, last: str, city: str | None) -> str:
    return f"{fold(first)} {fold(last)} {fold(city)}".strip()


def block_key(country: str | None, city: str | None, first: str, last: str) -> tuple[str, str, str, str]:
    """Fuzzy candidates share a block: country, city, two letters of the last name, first initial."""
    return (country or "", fold(city), fold(last)[:2], fold(first)[:1])
CURRENCY_CODE = re.compile(r"[A-Z]{3}")


ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?"
PLAIN_AMOUNT = r"\d{1,12}(?:\.\d{1,2})?"
PLAIN_QUANTITY = r"\d{1,7}"
_PLAIN_AMOUNT = re.compile(PLAIN_AMOUNT)


def parse_amount(text: str) -> Decimal:
    if _PLAIN_AMOUNT.fullmatch(text):  # the common spelling, without the clean-up below
        return Decimal(text).quantize(Decimal("0.01"))
    value = re.sub(r"[\s€$£]", "", text)
    if "," in value and "." in value:
        value = value.replace(",", "")
    elif "," in value:
        value = value.replace(",", ".")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValidationError(f"amount {text!r} is not a number") from None
    if not amount.is_finite():
        raise ValidationError(f"amount {text!r} is not a number")
    if amount < 0:
        raise ValidationError(f"amount {text!r} is negative")
    if amount >= Decimal("1e12"):
        raise ValidationError(f"amount {text!r} is too large")
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def parse_quantity(text: str) -> int:
    if not text.strip():
        return 1
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise ValidationError(f"quantity {text!r} is not a whole number") from None
    if not number.is_finite() or number != number.to_integral_value() or not 1 <= number <= 1_000_000:
        raise ValidationError(f"quantity {text!r} is not a whole number from 1 to 1,000,000")
    return int(number)


@lru_cache(maxsize=65_536)
def cached_email(text: str) -> str:
    """normalize_email for logs where each customer's email comes back on every order."""
    return normalize_email(text)
