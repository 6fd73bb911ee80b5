"""Customer and order imports from CSV, Excel (.xlsx) and JSON: streamed, validated, deduplicated.

Reading. Files are read row by row, never whole: CSV with the csv module (UTF-8, a byte-order mark
allowed, the delimiter sniffed among `, ; tab |`), Excel with openpyxl in read-only mode (first
sheet, first row is the header), JSON incrementally with `json.JSONDecoder.raw_decode` over 64 KB
chunks. JSON is either an array of objects (`[{...}, {...}]`) or JSON Lines (one object per line).
Every value is kept as text exactly as written: identifiers keep their leading zeros, Unicode is not
normalized, JSON numbers keep their literal spelling. (An Excel cell that holds the number 123
has no leading zeros to keep; store identifiers as text cells.)

Row numbers in messages are what a person sees: for CSV and Excel the spreadsheet row (the header
is row 1, the first record row 2); for JSON the position of the object (the first object is 1).

Dates are accepted as ISO 8601 (`2024-03-01`, `2024-03-01T14:30:00`, `2024-03-01 14:30`), as
`YYYY/MM/DD`, and day first as `DD.MM.YYYY` or `DD/MM/YYYY`. Impossible dates (2023-02-30) are
rejected, never rolled over. A time may carry a UTC offset (`+01:00`, `+0100`, `Z`, also after a
space: `2024-03-05 14:22:10 +0100`); such times are stored as naive UTC, like every time here.

Duplicates are looked for in this order: the same external id, the same email (trimmed, case
ignored), the same phone number (normalized to E.164), and finally a similar name in the same
block (same country, same city, same first letter of the last name) scored with rapidfuzz
`token_sort_ratio` at or above the threshold; a name match is not taken when both records carry
different emails. Each chunk is written before the next is read, so later rows of the file meet
earlier ones in the database: one lookup finds duplicates within the file and against existing
customers alike.

Import functions write into the caller's session and never commit: the caller's unit of work makes
an import all or nothing.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import email_validator
import numpy as np
import pandas as pd
import phonenumbers
import pycountry
from rapidfuzz import fuzz, process
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from crm_core.imports import order_staging
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import ConflictError, NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.spreadsheet import neutralize
from crm_core.platform.transactions import check_version
from db import bulk
from db.models import ORDER_STATUSES, Customer, ImportMapping, ImportRun, utcnow

FORMATS = ("csv", "xlsx", "json")
DUPLICATE_POLICIES = ("skip", "update", "create")
DEFAULT_FUZZY_THRESHOLD = 90
CUSTOMER_CHUNK = 5_000
ORDER_CHUNK = 50_000
MAX_KEPT_ERRORS = 10_000  # errors kept in the report; the error file has all of them
MAX_KEPT_DUPLICATES = 10_000
MAX_JSON_OBJECT = 16 * 1024 * 1024
LOOKUP_BATCH = 900  # values per IN (...) list

# field -> label, in the order the mapping form shows them
CUSTOMER_FIELDS: dict[str, str] = {
    "external_id": "External id",
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "phone": "Phone",
    "company": "Company",
    "country": "Country",
    "city": "City",
    "signup_date": "Signup date",
    "date_of_birth": "Date of birth",
    "gender": "Gender",
}
STANDARD_COLUMNS = (
    "external_id", "first_name", "last_name", "email", "phone", "country", "city", "signup_date", "company",
)
COLUMN_ALIASES = {
    "id": "external_id", "customer_id": "external_id", "firstname": "first_name", "given_name": "first_name",
    "lastname": "last_name", "surname": "last_name", "family_name": "last_name", "e_mail": "email",
    "mail": "email", "telephone": "phone", "phone_number": "phone", "mobile": "phone",
    "country_code": "country", "signed_up_at": "signup_date", "signup": "signup_date",
    "dob": "date_of_birth", "birth_date": "date_of_birth", "birthday": "date_of_birth",
}
TEXT_LIMITS = {"external_id": 100, "first_name": 100, "last_name": 100, "email": 254, "company": 200, "city": 100}
COUNTRY_ALIASES = {"UK": "GB", "EL": "GR", "ENGLAND": "GB", "SCOTLAND": "GB", "WALES": "GB"}
GENDER_VALUES = {
    "f": "female", "female": "female", "w": "female", "woman": "female",
    "m": "male", "male": "male", "man": "male",
    "x": "non_binary", "d": "non_binary", "diverse": "non_binary", "non_binary": "non_binary",
    "non-binary": "non_binary", "nonbinary": "non_binary",
    "u": "unknown", "unknown": "unknown",
}
GONE_STATUSES = ("merged", "erased")  # never a duplicate target, though their external ids stay taken

Source = str | os.PathLike | IO[bytes]
Progress = Callable[[float | None, int], None]


# --------------------------------------------------------------------------- reading files


def detect_format(name: str | None, fmt: str = "auto") -> str:
    """The file format: `fmt` when given, else from the file name's extension."""
    if fmt and fmt != "auto":
        if fmt not in FORMATS:
            raise ValidationError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
        return fmt
    suffix = Path(name or "").suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "json"
    if suffix in ("txt", "tsv"):
        return "csv"
    if suffix in FORMATS:
        return suffix
    raise ValidationError(
        f"Cannot tell the format of {name or 'the file'} from its name; name it .csv, .xlsx or .json "
        "or choose the format."
    )


class _CountingRaw(io.RawIOBase):
    """A raw stream that counts the bytes read, for a progress fraction."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.consumed += n
        return n


def _cell_text(value: Any) -> str:
    """A spreadsheet or JSON value as the text a person would read in the cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _header(names: list[Any]) -> list[str]:
    columns = []
    for index, name in enumerate(names, start=1):
        text = _cell_text(name).strip() or f"column_{index}"
        if text in columns:
            raise ValidationError(f"The header names the column {text!r} twice; column names must be unique.")
        columns.append(text)
    if not columns:
        raise ValidationError("The file has no header row.")
    return columns


NUL_PROBLEM = "holds a NUL character (\\x00): the file is damaged or not text"


@dataclass
class RawRow:
    number: int
    values: dict[str, str]
    problem: str | None = None  # a structural problem with the row (too many values)


class TableReader:
    """Rows of a CSV, Excel or JSON file as text, one at a time. Use as a context manager."""

    def __init__(self, source: Source, fmt: str = "auto", name: str | None = None) -> None:
        self.name = name or (str(source) if isinstance(source, str | os.PathLike) else getattr(source, "name", None))
        self.format = detect_format(self.name, fmt)
        self._owned: IO[bytes] | None = None
        self._stream = self._open(source)
        self._total = self._size(self._stream)
        self._counter: _CountingRaw | None = None
        self._workbook = None
        self._xlsx_rows = 0
        self._xlsx_max: int | None = None
        self.columns: list[str] = []
        self._rows: Iterator[RawRow] = iter(())
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _open(self, source: Source) -> IO[bytes]:
        if isinstance(source, str | os.PathLike):
            try:
                self._owned = open(source, "rb")  # noqa: SIM115 - closed in close()
            except FileNotFoundError:
                raise ValidationError(f"File not found: {source}") from None
            except IsADirectoryError:
                raise ValidationError(f"{source} is a folder, not a file.") from None
            except OSError as exc:
                raise ValidationError(f"Cannot read {source}: {exc.strerror or exc}") from None
            return self._owned
        if hasattr(source, "seek"):
            source.seek(0)
        return source

    @staticmethod
    def _size(stream: IO[bytes]) -> int | None:
        try:
            position = stream.tell()
            size = stream.seek(0, os.SEEK_END)
            stream.seek(position)
            return size
        except (OSError, AttributeError, ValueError):
            return None

    def _start(self) -> None:
        if self._total == 0:
            raise ValidationError(f"{self.name or 'The file'} is empty.")
        if self.format == "xlsx":
            self._start_xlsx()
            return
        self._counter = _CountingRaw(self._stream)
        text = io.TextIOWrapper(io.BufferedReader(self._counter), encoding="utf-8-sig", newline="")
        if self.format == "csv":
            self._start_csv(text)
        else:
            self._start_json(text)

    def _decode_guard(self, rows: Iterator[RawRow]) -> Iterator[RawRow]:
        try:
            yield from rows
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"{self.name or 'The file'} is not UTF-8 text (an undecodable byte near byte {self.consumed:,}): "
                f"save it as UTF-8 and try again. ({exc.reason})"
            ) from None
        except csv.Error as exc:
            raise ValidationError(f"{self.name or 'The file'} is not a readable CSV file: {exc}.") from None

    # CSV
    def _start_csv(self, text: io.TextIOWrapper) -> None:
        try:
            sample = text.read(64 * 1024)
            sample += text.readline()
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"{self.name or 'The file'} is not UTF-8 text: save it as UTF-8 and try again. ({exc.reason})"
            ) from None
        if not sample.strip():
            raise ValidationError(f"{self.name or 'The file'} is empty.")
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","

        def lines() -> Iterator[str]:
            yield from io.StringIO(sample, newline="")
            yield from text

        reader = csv.reader(lines(), delimiter=delimiter)
        try:
            first = next(reader)
        except (StopIteration, csv.Error) as exc:
            raise ValidationError(f"{self.name or 'The file'} has no readable header row ({exc}).") from None
        self.columns = _header(first)
        width = len(self.columns)

        def rows() -> Iterator[RawRow]:
            number = 1
            for record in reader:
                number += 1
                if not any(v.strip() for v in record):
                    continue
                problem = None
                if len(record) > width and any(v.strip() for v in record[width:]):
                    problem = f"has {len(record)} values but the header has {width} columns"
                elif "\x00" in "".join(record):
                    problem = NUL_PROBLEM
                record = record[:width] + [""] * (width - len(record))
                yield RawRow(number, dict(zip(self.columns, record, strict=True)), problem)

        self._rows = self._decode_guard(rows())

    # Excel
    def _start_xlsx(self) -> None:
        import zipfile

        from openpyxl import load_workbook
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            self._workbook = load_workbook(self._stream, read_only=True, data_only=True)
            sheet = self._workbook.worksheets[0]
            rows = sheet.iter_rows(values_only=True)
            first = next(rows, None)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, IndexError) as exc:
            raise ValidationError(f"{self.name or 'The file'} is not a valid Excel (.xlsx) workbook ({exc}).") from None
        if first is None:
            raise ValidationError(f"{self.name or 'The file'} has an empty first sheet.")
        self.columns = _header(list(first))
        width = len(self.columns)
        try:
            self._xlsx_max = sheet.max_row
        except (TypeError, ValueError):
            self._xlsx_max = None

        def generate() -> Iterator[RawRow]:
            number = 1
            for values in rows:
                number += 1
                self._xlsx_rows = number
                texts = [_cell_text(v) for v in values]
                if not any(t.strip() for t in texts):
                    continue
                problem = None
                if len(texts) > width and any(t.strip() for t in texts[width:]):
                    problem = f"has values beyond the {width} named columns"
                texts = texts[:width] + [""] * (width - len(texts))
                yield RawRow(number, dict(zip(self.columns, texts, strict=True)), problem)

        self._rows = generate()

    # JSON
    def _start_json(self, text: io.TextIOWrapper) -> None:
        objects = self._decode_guard(_json_objects(text, self.name or "The file"))
        first = next(objects, None)
        if first is None:
            raise ValidationError(f"{self.name or 'The file'} holds no objects.")
        seen: list[str] = []
        for key in first[1]:
            if key not in seen:
                seen.append(key)
        self.columns = seen or ["value"]

        def row(number: int, obj: dict) -> RawRow:
            values = {str(k): _cell_text(v) for k, v in obj.items()}
            return RawRow(number, values, NUL_PROBLEM if "\x00" in "".join(values.values()) else None)

        def generate() -> Iterator[RawRow]:
            yield row(*first)
            for number, obj in objects:
                yield row(number, obj)

        self._rows = generate()

    @property
    def consumed(self) -> int:
        return self._counter.consumed if self._counter else 0

    def fraction(self) -> float | None:
        """How far through the file reading is, 0..1, when that can be told."""
        if self.format == "xlsx":
            if self._xlsx_max:
                return min(1.0, self._xlsx_rows / self._xlsx_max)
            return None
        if self._total:
            return min(1.0, self.consumed / self._total)
        return None

    def rows(self) -> Iterator[RawRow]:
        return self._rows

    def close(self) -> None:
        if self._workbook is not None:
            self._workbook.close()
            self._workbook = None
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _json_objects(text: IO[str], name: str) -> Iterator[tuple[int, dict]]:
    """(position, object) pairs from a JSON array of objects or JSON Lines, read in chunks."""
    decoder = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)
    buffer, position, eof = "", 0, False

    def fill() -> None:
        nonlocal buffer, position, eof
        chunk = text.read(64 * 1024)
        if not chunk:
            eof = True
        buffer = buffer[position:] + chunk
        position = 0

    def next_char() -> str:
        """The next non-blank character (not consumed), or '' at the end of the file."""
        nonlocal position
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n":
                position += 1
            if position < len(buffer):
                return buffer[position]
            if eof:
                return ""
            fill()

    fill()
    opening = next_char()
    if opening not in ("[", "{"):
        raise ValidationError(f"{name} is not JSON with customer objects: it must be an array of objects or JSON Lines.")
    in_array = opening == "["
    if in_array:
        position += 1
    count = 0
    while True:
        char = next_char()
        if in_array and char == "]":
            position += 1
            if next_char() != "":
                raise ValidationError(f"{name} has data after the closing ']' of its array.")
            return
        if char == "":
            if in_array:
                raise ValidationError(f"{name} ends before its array is closed with ']'.")
            return
        if count and in_array:
            if char != ",":
                raise ValidationError(f"{name}: expected ',' or ']' after object {count}, found {char!r}.")
            position += 1
            char = next_char()
        if char != "{":
            raise ValidationError(f"{name}: item {count + 1} is not an object (it starts with {char!r}).")
        while True:
            try:
                obj, end = decoder.raw_decode(buffer, position)
                break
            except json.JSONDecodeError as exc:
                if eof or len(buffer) - position > MAX_JSON_OBJECT:
                    raise ValidationError(f"{name}: object {count + 1} is not valid JSON ({exc.msg}).") from None
                fill()
        position = end
        count += 1
        yield count, obj


# --------------------------------------------------------------------------- mapping


def _normalized_name(column: str) -> str:
    return re.sub(r"[\s\-]+", "_", column.strip().lower())


def default_customer_mapping(columns: Iterable[str], fields: Iterable[str] = tuple(CUSTOMER_FIELDS)) -> dict[str, str]:
    """File column -> field for the columns whose names already say the field."""
    wanted = set(fields)
    mapping: dict[str, str] = {}
    for column in columns:
        name = _normalized_name(column)
        target = name if name in wanted else COLUMN_ALIASES.get(name)
        if target in wanted and target not in mapping.values():
            mapping[column] = target
    return mapping


def check_customer_mapping(mapping: dict[str, str], columns: list[str]) -> dict[str, str]:
    """A clean customer mapping, or a ValidationError naming what is wrong."""
    if not isinstance(mapping, dict):
        raise ValidationError("A column mapping is a list of file column -> field pairs.")
    clean: dict[str, str] = {}
    for column, target in mapping.items():
        if target in (None, "", "(ignore)"):
            continue
        if target not in CUSTOMER_FIELDS:
            raise ValidationError(f"{target!r} is not a customer field; use one of {', '.join(CUSTOMER_FIELDS)}.")
        if column not in columns:
            raise ValidationError(f"The file has no column {column!r} (its columns: {', '.join(columns)}).")
        if target in clean.values():
            raise ValidationError(f"Two columns are mapped to {CUSTOMER_FIELDS[target]}; map each field once.")
        clean[column] = target
    targets = set(clean.values())
    missing = [CUSTOMER_FIELDS[f] for f in ("first_name", "last_name") if f not in targets]
    if missing:
        raise ValidationError(f"Map a column to {' and '.join(missing)}: every customer needs a name.")
    if not targets & {"email", "phone"}:
        raise ValidationError("Map a column to Email or Phone: a customer needs a way to be reached.")
    return clean


# --------------------------------------------------------------------------- validating values

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
            moment = moment - offset
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


def validate_customer(values: dict[str, str], now: dt.datetime, default_country: str | None = None
                      ) -> tuple[dict[str, Any] | None, list[str]]:
    """A clean customer record from one row's field -> text, or the reasons it cannot be one."""
    reasons: list[str] = []
    record: dict[str, Any] = {}
    text = {f: (values.get(f) or "").strip() for f in CUSTOMER_FIELDS}
    for name, limit in TEXT_LIMITS.items():
        if len(text[name]) > limit:
            reasons.append(f"{CUSTOMER_FIELDS[name].lower()} is longer than {limit} characters")
    for name in ("first_name", "last_name"):
        if not text[name]:
            reasons.append(f"{CUSTOMER_FIELDS[name].lower()} is missing")
    record.update(external_id=text["external_id"] or None, first_name=text["first_name"],
                  last_name=text["last_name"], company=text["company"] or None, city=text["city"] or None)
    record["country_code"] = None
    if text["country"]:
        try:
            record["country_code"] = normalize_country(text["country"])
        except ValidationError as exc:
            reasons.append(str(exc))
    elif default_country:
        record["country_code"] = default_country
    record["email"] = None
    if text["email"]:
        try:
            record["email"] = normalize_email(text["email"])
        except ValidationError as exc:
            reasons.append(str(exc))
    record["phone"] = None
    if text["phone"]:
        try:
            record["phone"] = normalize_phone(text["phone"], record["country_code"])
        except ValidationError as exc:
            reasons.append(str(exc))
    if not text["email"] and not text["phone"]:
        reasons.append("email and phone are both missing")
    record["signed_up_at"] = None
    if text["signup_date"]:
        try:
            signed_up = parse_datetime(text["signup_date"])
            if signed_up > now + dt.timedelta(days=1):
                reasons.append(f"signup date {text['signup_date']!r} is in the future")
            elif signed_up.year < 1900:
                reasons.append(f"signup date {text['signup_date']!r} is before 1900")
            else:
                record["signed_up_at"] = signed_up
        except ValidationError as exc:
            reasons.append(f"signup date: {exc}")
    record["date_of_birth"] = None
    if text["date_of_birth"]:
        try:
            born = parse_datetime(text["date_of_birth"]).date()
            if born > now.date() or born.year < now.year - 150:
                reasons.append(f"date of birth {text['date_of_birth']!r} is not a plausible birth date")
            else:
                record["date_of_birth"] = born
        except ValidationError as exc:
            reasons.append(f"date of birth: {exc}")
    record["gender"] = None
    if text["gender"]:
        gender = GENDER_VALUES.get(text["gender"].lower())
        if gender is None:
            reasons.append(f"gender {text['gender']!r} is not one of female, male, non_binary, unknown")
        record["gender"] = gender
    return (None if reasons else record), reasons


def row_identifier(values: dict[str, str], number: int) -> str:
    """What a person can find the row by: its external id, email or name."""
    for name in ("external_id", "email"):
        if (values.get(name) or "").strip():
            return values[name].strip()
    full = f"{(values.get('first_name') or '').strip()} {(values.get('last_name') or '').strip()}".strip()
    return full or f"row {number}"


def mapped_values(raw: RawRow, mapping: dict[str, str]) -> dict[str, str]:
    return {target: raw.values.get(column, "") for column, target in mapping.items()}


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class RowError:
    row: int
    identifier: str
    reason: str


@dataclass(frozen=True)
class DuplicateMatch:
    row: int
    identifier: str
    matched: str  # "customer 42" or "row 7 of this file"
    match: str  # external_id, email, phone or name (with the score)
    action: str  # skipped, updated, created


ERROR_COLUMNS = ["row", "identifier", "reason"]


class ErrorSink:
    """Invalid rows: the first MAX_KEPT_ERRORS in memory, all of them in the error file if one is named."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.kept: list[RowError] = []
        self.count = 0
        self._file = None
        self._writer = None
        if path is not None:
            try:
                self._file = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise ValidationError(f"Cannot write the error file {path}: {exc.strerror or exc}") from None
            self._writer = csv.writer(self._file)
            self._writer.writerow(ERROR_COLUMNS)

    def add(self, row: int, identifier: str, reason: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_KEPT_ERRORS:
            self.kept.append(RowError(row, identifier, reason))
        if self._writer is not None:
            self._writer.writerow([row, neutralize(identifier), neutralize(reason)])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def errors_csv(errors: Iterable[RowError]) -> str:
    """The error file's text (row, identifier, reason), safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ERROR_COLUMNS)
    for error in errors:
        writer.writerow([error.row, neutralize(error.identifier), neutralize(error.reason)])
    return buffer.getvalue()


@dataclass
class ImportReport:
    entity: str
    file_name: str
    file_format: str
    on_duplicate: str | None = None
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0
    customers_created: int = 0  # orders import: customers that did not exist yet
    items_created: int = 0  # orders import: order lines
    products_created: int = 0
    currency: str | None = None  # orders import: the shop currency the orders were checked against
    currency_source: str | None = None
    other_currency: dict[str, int] = field(default_factory=dict)  # currency -> orders not imported
    errors: list[RowError] = field(default_factory=list)
    duplicates: list[DuplicateMatch] = field(default_factory=list)
    seconds: float = 0.0
    run_id: int | None = None

    def counts(self) -> dict[str, int]:
        counts = {"rows_read": self.rows_read, "created": self.created, "updated": self.updated,
                  "skipped": self.skipped, "invalid": self.invalid}
        if self.entity == "orders":
            counts.update(customers_created=self.customers_created, items_created=self.items_created,
                          products_created=self.products_created,
                          other_currency=sum(self.other_currency.values()))
        return counts

    def apply(self, loaded: order_staging.LoadResult) -> None:
        """Take the counts of the set-based load of staged orders."""
        self.created = loaded.orders
        self.skipped = loaded.skipped
        self.customers_created = loaded.customers_created
        self.items_created = loaded.items
        self.products_created = loaded.products_created
        self.currency, self.currency_source = loaded.currency, loaded.currency_source
        self.other_currency = dict(loaded.other_currency or {})

    def figures(self) -> list[tuple[str, int]]:
        """(label, value) of the summary, in the order a person reads them."""
        if self.entity == "orders":
            figures = [("rows read", self.rows_read), ("orders imported", self.created)]
            if self.items_created or self.products_created:
                figures += [("line items", self.items_created), ("products created", self.products_created)]
            figures += [("customers created", self.customers_created),
                        ("skipped (already imported)", self.skipped), ("invalid", self.invalid)]
            return figures
        return [("rows read", self.rows_read), ("imported (new)", self.created), ("updated", self.updated),
                ("skipped as duplicates", self.skipped), ("invalid", self.invalid)]

    def notes(self) -> list[str]:
        """Sentences that explain the figures (the shop currency and what was left out for it)."""
        if self.entity != "orders" or not self.currency:
            return []
        notes = [f"Shop currency {self.currency} ({self.currency_source})."]
        for currency, orders in sorted(self.other_currency.items()):
            notes.append(f"{orders:,} order{'s' if orders != 1 else ''} in {currency} not imported: revenue adds "
                         f"order totals without converting currencies (listed as invalid).")
        return notes

    def summary_lines(self) -> list[str]:
        return [f"{label:<28}{value:>12,}" for label, value in self.figures()]


# --------------------------------------------------------------------------- runs and mappings


def start_run(session: Session, actor, entity: str, reader: TableReader, on_duplicate: str | None) -> ImportRun:
    """The import run row of an import that starts (every importer records one)."""
    run = ImportRun(entity=entity, file_name=Path(reader.name or "upload").name[:255], file_format=reader.format,
                    on_duplicate=on_duplicate, status="completed", actor_id=getattr(actor, "id", None),
                    actor_username=getattr(actor, "username", "system"), started_at=utcnow())
    session.add(run)
    session.flush()
    return run


def finish_run(session: Session, actor, run: ImportRun, report: ImportReport, started: float) -> None:
    """Store the report's counts and notes on the run and write the import's audit row."""
    for name, value in report.counts().items():
        if hasattr(run, name):
            setattr(run, name, value)
    run.finished_at = utcnow()
    report.seconds = time.perf_counter() - started
    report.run_id = run.id
    if report.entity == "orders":
        run.message = " ".join([*report.notes(), f"{report.customers_created:,} customers created."])
    record_audit(session, actor, f"{report.entity}.import", "import_run", run.id,
                 after={"file": run.file_name, "format": run.file_format, "on_duplicate": run.on_duplicate,
                        **report.counts()})
    session.flush()


def record_failed_run(session: Session, actor, entity: str, file_name: str, file_format: str,
                      on_duplicate: str | None, message: str) -> ImportRun:
    """Log an import that failed and was rolled back (call in a fresh unit of work)."""
    run = ImportRun(entity=entity, file_name=Path(file_name).name[:255], file_format=file_format[:8],
                    on_duplicate=on_duplicate, status="failed", actor_id=getattr(actor, "id", None),
                    actor_username=getattr(actor, "username", "system"), started_at=utcnow(),
                    finished_at=utcnow(), message=message[:2000])
    session.add(run)
    record_audit(session, actor, f"{entity}.import_failed", "import_run", None,
                 after={"file": run.file_name, "reason": run.message})
    session.flush()
    return run


def recent_import_runs(session: Session, viewer, page: int = 1, page_size: int = 20) -> Page:
    require(viewer, "customers.import")
    total = session.scalar(select(func.count()).select_from(ImportRun)) or 0
    page = max(1, page)
    runs = session.scalars(
        select(ImportRun).order_by(ImportRun.started_at.desc(), ImportRun.id.desc())
        .limit(page_size).offset((page - 1) * page_size)
    ).all()
    rows = [{"started_at": r.started_at, "entity": r.entity, "file": r.file_name, "format": r.file_format,
             "by": r.actor_username, "status": r.status, "rows_read": r.rows_read, "created": r.created,
             "updated": r.updated, "skipped": r.skipped, "invalid": r.invalid, "message": r.message} for r in runs]
    return Page(rows=rows, total=total, page=page, page_size=page_size)


def list_mappings(session: Session, viewer, entity: str = "customers") -> list[dict[str, Any]]:
    """Shared mappings and the viewer's own, by name."""
    require(viewer, "customers.import")
    mine = ImportMapping.owner_id == getattr(viewer, "id", None)
    rows = session.scalars(
        select(ImportMapping).where(ImportMapping.entity == entity, ImportMapping.is_shared | mine)
        .order_by(ImportMapping.name)
    ).all()
    return [{"id": m.id, "name": m.name, "mapping": dict(m.mapping), "shared": m.is_shared,
             "owner_id": m.owner_id, "version": m.version} for m in rows]


def save_mapping(session: Session, actor, name: str, mapping: dict[str, str], shared: bool = False,
                 entity: str = "customers", expected_version: int | None = None) -> ImportMapping:
    """Create a named mapping, or replace the one of that name the actor owns (or a shared one)."""
    require(actor, "customers.import")
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A saved mapping needs a name.")
    name = name.strip()
    if len(name) > 120:
        raise ValidationError("A mapping name is at most 120 characters.")
    fields = mapping_fields(entity)
    if not isinstance(mapping, dict) or not mapping:
        raise ValidationError("Map at least one column before saving the mapping.")
    clean = {}
    for column, target in mapping.items():
        if target in (None, "", "(ignore)"):
            continue
        if target not in fields:
            raise ValidationError(f"{target!r} is not a field you can map to.")
        clean[str(column)] = target
    if not clean:
        raise ValidationError("Map at least one column before saving the mapping.")
    existing = session.scalar(select(ImportMapping).where(ImportMapping.entity == entity, ImportMapping.name == name))
    if existing is None:
        saved = ImportMapping(entity=entity, name=name, mapping=clean, is_shared=bool(shared),
                              owner_id=getattr(actor, "id", None))
        session.add(saved)
        session.flush()
        record_audit(session, actor, "import_mapping.create", "import_mapping", saved.id,
                     after={"name": name, "mapping": clean, "shared": bool(shared)})
        return saved
    if not existing.is_shared and existing.owner_id != getattr(actor, "id", None):
        raise ConflictError(f"Someone else keeps a private mapping named {name!r}; choose another name.")
    check_version(existing, expected_version, f"The mapping {name!r}")
    before = {"mapping": dict(existing.mapping), "shared": existing.is_shared}
    existing.mapping = clean
    existing.is_shared = bool(shared)
    session.flush()
    record_audit(session, actor, "import_mapping.update", "import_mapping", existing.id,
                 before=before, after={"mapping": clean, "shared": bool(shared)})
    return existing


def delete_mapping(session: Session, actor, mapping_id: int, expected_version: int | None = None) -> None:
    require(actor, "customers.import")
    saved = session.get(ImportMapping, mapping_id) if isinstance(mapping_id, int) else None
    if saved is None:
        raise NotFound(f"No saved mapping with id {mapping_id}.")
    if not saved.is_shared and saved.owner_id != getattr(actor, "id", None):
        raise NotFound(f"No saved mapping with id {mapping_id}.")
    check_version(saved, expected_version, f"The mapping {saved.name!r}")
    record_audit(session, actor, "import_mapping.delete", "import_mapping", saved.id,
                 before={"name": saved.name, "mapping": dict(saved.mapping)})
    session.delete(saved)
    session.flush()


# --------------------------------------------------------------------------- customers


@dataclass
class _Candidate:
    """A customer a row may duplicate: an existing one, or one this chunk is about to create."""

    id: int | None
    row: int | None
    external_id: str | None
    email: str | None
    block: tuple[str, str, str, str]
    name: str
    pending: dict[str, Any] | None = None  # values to write (a new customer, or an existing one's update)
    status: str = "active"

    def label(self) -> str:
        return f"customer {self.id}" if self.id is not None else f"row {self.row} of this file"


class _ChunkIndex:
    """Exact and fuzzy lookups over the candidates of one chunk."""

    def __init__(self) -> None:
        self.by_external: dict[str, _Candidate] = {}
        self.by_email: dict[str, _Candidate] = {}
        self.by_phone: dict[str, _Candidate] = {}
        self.by_block: dict[tuple[str, str, str, str], list[_Candidate]] = {}

    def add(self, candidate: _Candidate, phones: Iterable[str]) -> None:
        if candidate.external_id:
            self.by_external.setdefault(candidate.external_id, candidate)
        key = email_key(candidate.email)
        if key:
            self.by_email.setdefault(key, candidate)
        for phone in phones:
            if phone:
                self.by_phone.setdefault(phone, candidate)
        self.by_block.setdefault(candidate.block, []).append(candidate)

    def find(self, record: dict[str, Any], threshold: float | None) -> tuple[_Candidate, str] | None:
        if record["external_id"] and record["external_id"] in self.by_external:
            return self.by_external[record["external_id"]], "external_id"
        key = email_key(record["email"])
        if key and key in self.by_email:
            return self.by_email[key], "email"
        if record["phone"] and record["phone"] in self.by_phone:
            return self.by_phone[record["phone"]], "phone"
        if threshold:
            pool = [c for c in self.by_block.get(record["_block"], ())
                    if not (key and c.email and email_key(c.email) != key)]
            if pool:
                best = process.extractOne(record["_name"], [c.name for c in pool], scorer=fuzz.token_sort_ratio,
                                          score_cutoff=threshold)
                if best is not None:
                    return pool[best[2]], f"name ({best[1]:.0f}%)"
        return None


def _lower_variants(text: str) -> set[str]:
    ascii_only = "".join(ch.lower() if ch.isascii() else ch for ch in text)
    return {text.lower(), ascii_only}


def batches(values: list, size: int = LOOKUP_BATCH) -> Iterator[list]:
    """`values` in slices small enough for one IN (...) list."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _existing_candidates(session: Session, records: list[dict[str, Any]], threshold: float | None) -> _ChunkIndex:
    """Existing customers that share an exact key or a fuzzy block with a record of the chunk."""
    c = Customer.__table__.c
    columns = (c.id, c.external_id, c.email, c.phone, c.first_name, c.last_name, c.city, c.country_code)
    live = c.status.not_in(GONE_STATUSES)
    found: dict[int, Any] = {}

    def collect(condition, only_live: bool = True) -> None:
        query = select(*columns, c.status).where(condition)
        for row in session.execute(query.where(live) if only_live else query):
            found[row.id] = row

    # Each lookup only for the records the previous ones did not match.
    external_ids = sorted({r["external_id"] for r in records if r["external_id"]})
    for batch in batches(external_ids):
        collect(c.external_id.in_(batch), only_live=False)  # a merged record's id is still taken
    known = {row.external_id for row in found.values()}
    rest = [r for r in records if r["external_id"] not in known]
    emails = sorted({email_key(r["email"]) for r in rest if r["email"]})
    for batch in batches(emails):
        collect(func.lower(c.email).in_(batch))
    known_emails = {email_key(row.email) for row in found.values() if row.email}
    rest = [r for r in rest if email_key(r["email"]) not in known_emails]
    phones = sorted({v for r in rest if r["phone"] for v in phone_variants(r["phone"])})
    for batch in batches(phones):
        collect(c.phone.in_(batch))
    known_phones = {row.phone for row in found.values() if row.phone}
    rest = [r for r in rest if not (r["phone"] and set(phone_variants(r["phone"])) & known_phones)]
    if threshold and rest:
        # Rows of the chunk's blocks, fetched by the database's own lower(): spelled both as Python
        # folds case and as an ASCII-only lower() does, so SQLite and PostgreSQL find the same rows.
        sql_key = tuple_(func.coalesce(c.country_code, ""), func.coalesce(func.lower(c.city), ""),
                         func.lower(func.substr(c.last_name, 1, 2)))
        keys = sorted({(r["country_code"] or "", city, last)
                       for r in rest
                       for city in _lower_variants(r["city"] or "")
                       for last in _lower_variants(r["last_name"][:2])})
        for batch in batches(keys, LOOKUP_BATCH // 3):
            collect(sql_key.in_(batch))
    index = _ChunkIndex()
    for row in sorted(found.values(), key=lambda r: r.id):
        if row.status in GONE_STATUSES:
            index.by_external.setdefault(row.external_id, _Candidate(
                id=row.id, row=None, external_id=row.external_id, email=None, block=("", "", "", ""), name="",
                status=row.status))
            continue
        phones_of = [row.phone] if row.phone else []
        if row.phone:
            with contextlib.suppress(ValidationError):
                phones_of.append(normalize_phone(row.phone, row.country_code))
        index.add(_Candidate(id=row.id, row=None, external_id=row.external_id, email=row.email, status=row.status,
                             block=block_key(row.country_code, row.city, row.first_name, row.last_name),
                             name=name_key(row.first_name, row.last_name, row.city)), phones_of)
    return index


_UPDATABLE = ("first_name", "last_name", "email", "phone", "company", "country_code", "city", "signed_up_at",
              "date_of_birth", "gender")


def _merge(target: dict[str, Any], record: dict[str, Any]) -> None:
    """The row's non-empty values over the target's (an update never blanks a field)."""
    for name in (*_UPDATABLE, "external_id"):
        value = record.get(name)
        if value is None:
            continue
        if name == "external_id" and target.get("external_id"):
            continue
        target[name] = value


def _write_customers(session: Session, creates: list[dict[str, Any]], updates: dict[int, dict[str, Any]],
                     now: dt.datetime) -> None:
    """Bulk insert the new customers and apply the updates, in the session's transaction."""
    connection = session.connection()
    if creates:
        frame = pd.DataFrame({
            "external_id": [r.get("external_id") for r in creates],
            "first_name": [r["first_name"] for r in creates],
            "last_name": [r["last_name"] for r in creates],
            "email": [r.get("email") for r in creates],
            "phone": [r.get("phone") for r in creates],
            "company": [r.get("company") for r in creates],
            "country_code": [r.get("country_code") for r in creates],
            "city": [r.get("city") for r in creates],
            "date_of_birth": pd.Series([r.get("date_of_birth") for r in creates], dtype=object),
            "gender": [r.get("gender") for r in creates],
            "acquisition_channel": "import",
            "status": "active",
            "signed_up_at": pd.to_datetime([r.get("signed_up_at") or now for r in creates]),
            "created_at": pd.to_datetime([now] * len(creates)),
            "updated_at": pd.to_datetime([now] * len(creates)),
            "version": 1,
        })
        bulk.load(connection, Customer.__table__, frame)
    if updates:
        # The changes go to a temporary table in bulk (COPY on PostgreSQL), then one UPDATE ... FROM.
        c = Customer.__table__.c
        changed = ("external_id", *_UPDATABLE)
        staging = Table("import_customer_updates", MetaData(), Column("id", Integer),
                        *[Column(name, c[name].type) for name in changed], prefixes=["TEMPORARY"])
        staging.create(connection)
        ids = list(updates)
        frame = pd.DataFrame({"id": ids, **{name: [updates[i].get(name) for i in ids] for name in changed}})
        frame["signed_up_at"] = pd.to_datetime(frame["signed_up_at"])
        bulk.load(connection, staging, frame)
        u = staging.c
        values = {name: func.coalesce(u[name], c[name]) for name in _UPDATABLE}
        values["external_id"] = func.coalesce(c.external_id, u.external_id)
        connection.execute(update(Customer.__table__).where(c.id == u.id).values(
            **values, version=c.version + 1, updated_at=literal(now, DateTime)))
        staging.drop(connection)


def _apply_customer_chunk(session: Session, chunk: list[tuple[int, str, dict[str, Any]]], policy: str,
                          threshold: float | None, report: ImportReport, errors: ErrorSink, now: dt.datetime) -> None:
    records = [record for _, _, record in chunk]
    existing = _existing_candidates(session, records, threshold)
    in_chunk = _ChunkIndex()
    creates: list[dict[str, Any]] = []
    updates: dict[int, dict[str, Any]] = {}
    for number, identifier, record in chunk:
        match = in_chunk.find(record, threshold) or existing.find(record, threshold)
        if match is not None and match[0].status in GONE_STATUSES:
            errors.add(number, identifier, f"external id {record['external_id']!r} belongs to {match[0].label()}, "
                                           f"which is {match[0].status}")
            report.invalid += 1
            continue
        if match is not None and not (policy == "create" and match[1] != "external_id"):
            candidate, how = match
            if policy == "create":
                errors.add(number, identifier, f"external id {record['external_id']!r} already belongs to "
                                               f"{candidate.label()}; 'create' cannot add a second customer with it")
                report.invalid += 1
                continue
            if policy == "skip":
                report.skipped += 1
                action = "skipped"
            else:
                if candidate.pending is None:
                    candidate.pending = updates.setdefault(candidate.id, {})
                _merge(candidate.pending, record)
                report.updated += 1
                action = "updated"
                in_chunk.add(candidate, [record["phone"]])
            if len(report.duplicates) < MAX_KEPT_DUPLICATES:
                report.duplicates.append(DuplicateMatch(number, identifier, candidate.label(), how, action))
            continue
        pending = {k: v for k, v in record.items() if not k.startswith("_")}
        creates.append(pending)
        report.created += 1
        in_chunk.add(_Candidate(id=None, row=number, external_id=record["external_id"], email=record["email"],
                                block=record["_block"], name=record["_name"], pending=pending), [record["phone"]])
    _write_customers(session, creates, updates, now)


def import_customers(
    session: Session, actor, source: Source, *, fmt: str = "auto", file_name: str | None = None,
    mapping: dict[str, str] | None = None, on_duplicate: str = "skip",
    fuzzy_threshold: float | None = DEFAULT_FUZZY_THRESHOLD, default_country: str | None = None,
    errors_path: str | os.PathLike | None = None, chunk_size: int = CUSTOMER_CHUNK,
    progress: Progress | None = None, now: dt.datetime | None = None,
) -> ImportReport:
    """Import customers from a file; invalid rows are reported, duplicates handled by `on_duplicate`.

    `mapping` is file column -> field; unset, columns named like the fields (external_id, first_name,
    last_name, email, phone, country, city, signup_date, company, ...) are used. `fuzzy_threshold`
    0 or None turns name matching off. `progress(fraction or None, rows read)` is called per chunk.
    """
    require(actor, "customers.import")
    if on_duplicate not in DUPLICATE_POLICIES:
        raise ValidationError(f"On duplicate must be one of {', '.join(DUPLICATE_POLICIES)}, not {on_duplicate!r}.")
    if fuzzy_threshold is not None and (isinstance(fuzzy_threshold, bool)
                                        or not isinstance(fuzzy_threshold, int | float)
                                        or not 0 <= fuzzy_threshold <= 100):
        raise ValidationError("The fuzzy threshold is a number from 0 (off) to 100.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError("The chunk size must be a positive whole number.")
    region = normalize_country(default_country) if default_country else None
    now = now or utcnow()
    started = time.perf_counter()
    with TableReader(source, fmt, file_name) as reader:
        columns_map = check_customer_mapping(mapping if mapping is not None else default_customer_mapping(reader.columns),
                                    reader.columns)
        report = ImportReport("customers", Path(reader.name or "upload").name, reader.format, on_duplicate)
        run = start_run(session, actor, "customers", reader, on_duplicate)
        sink = ErrorSink(errors_path)
        try:
            chunk: list[tuple[int, str, dict[str, Any]]] = []
            for raw in reader.rows():
                report.rows_read += 1
                values = mapped_values(raw, columns_map)
                identifier = row_identifier(values, raw.number)
                record, reasons = validate_customer(values, now, region)
                if raw.problem:
                    reasons.insert(0, f"the row {raw.problem}")
                    record = None
                if record is None:
                    sink.add(raw.number, identifier, "; ".join(reasons))
                    report.invalid += 1
                    continue
                record["_block"] = block_key(record["country_code"], record["city"], record["first_name"], record["last_name"])
                record["_name"] = name_key(record["first_name"], record["last_name"], record["city"])
                chunk.append((raw.number, identifier, record))
                if len(chunk) >= chunk_size:
                    _apply_customer_chunk(session, chunk, on_duplicate, fuzzy_threshold or None, report, sink, now)
                    chunk = []
                    if progress:
                        progress(reader.fraction(), report.rows_read)
            if chunk:
                _apply_customer_chunk(session, chunk, on_duplicate, fuzzy_threshold or None, report, sink, now)
        finally:
            sink.close()
        report.errors = sink.kept
        finish_run(session, actor, run, report, started)
        if progress:
            progress(1.0, report.rows_read)
    return report


@dataclass
class PreviewRow:
    row: int
    values: dict[str, str]
    status: str  # "ok" or "invalid"
    reason: str


def preview_customers(source: Source, *, fmt: str = "auto", file_name: str | None = None,
            mapping: dict[str, str] | None = None, limit: int = 20, default_country: str | None = None
            ) -> tuple[list[str], list[PreviewRow]]:
    """The file's columns and its first `limit` rows with each row's validation status (no database)."""
    now = utcnow()
    region = normalize_country(default_country) if default_country else None
    with TableReader(source, fmt, file_name) as reader:
        columns = reader.columns
        chosen = mapping if mapping is not None else default_customer_mapping(columns)
        rows: list[PreviewRow] = []
        for raw in reader.rows():
            values = mapped_values(raw, {c: t for c, t in chosen.items() if t in CUSTOMER_FIELDS and c in columns})
            _, reasons = validate_customer(values, now, region)
            if raw.problem:
                reasons.insert(0, f"the row {raw.problem}")
            rows.append(PreviewRow(raw.number, raw.values, "invalid" if reasons else "ok", "; ".join(reasons)))
            if len(rows) >= limit:
                break
    return columns, rows


# --------------------------------------------------------------------------- orders

ORDER_FIELDS = {"customer": "Customer id", "date": "Order date", "amount": "Amount", "quantity": "Quantity",
                "order_number": "Order number", "email": "Customer email", "status": "Status",
                "product": "Product (SKU)", "currency": "Currency"}
# An order's status as written in a log -> ORDER_STATUSES. Shopify's financial statuses are accepted
# too, with the meaning `shop_imports` gives them (a pending or authorized payment is a placed order).
ORDER_STATUS_VALUES = {
    **{status: status for status in ORDER_STATUSES},
    "canceled": "cancelled", "voided": "cancelled", "void": "cancelled", "expired": "cancelled",
    "pending": "placed", "authorized": "placed", "partially_paid": "placed", "partially_refunded": "paid",
    "refund": "refunded", "return": "returned", "completed": "delivered", "complete": "delivered",
}
CURRENCY_CODE = re.compile(r"[A-Z]{3}")

# Tickets and communications (`service_imports`): field -> label; the field names are also the
# column names that need no mapping.
TICKET_FIELDS = {
    "ticket_id": "Ticket id", "customer_external_id": "Customer external id", "customer_email": "Customer email",
    "created_at": "Created at", "subject": "Subject", "description": "Description", "status": "Status",
    "priority": "Priority", "category": "Category", "channel": "Channel", "first_responded_at": "First responded at",
    "resolved_at": "Resolved at", "closed_at": "Closed at", "csat_rating": "CSAT rating",
}
COMMUNICATION_FIELDS = {
    "message_id": "Message id", "customer_external_id": "Customer external id", "customer_email": "Customer email",
    "channel": "Channel", "direction": "Direction", "status": "Status", "sent_at": "Sent at", "subject": "Subject",
    "campaign": "Campaign", "template": "Template", "body": "Body", "delivered_at": "Delivered at",
    "opened_at": "Opened at", "clicked_at": "Clicked at", "replied_at": "Replied at",
}


def mapping_fields(entity: str) -> dict[str, str]:
    """The fields a column of an import of this kind can be mapped to."""
    catalogue = {"customers": CUSTOMER_FIELDS, "orders": ORDER_FIELDS, "tickets": TICKET_FIELDS,
                 "communications": COMMUNICATION_FIELDS}
    if entity not in catalogue:
        raise ValidationError(f"Unknown import kind {entity!r}.")
    return catalogue[entity]


def _row_staging_table() -> Table:
    return Table(
        "import_order_rows", MetaData(),
        Column("row_number", Integer), Column("order_number", String(64)), Column("external_id", String(100)),
        Column("email", String(254)), Column("email_key", String(254)), Column("ordered_at", DateTime),
        Column("status", String(16)), Column("currency", String(3)), Column("total", Numeric(14, 2)),
        Column("quantity", Integer), Column("sku", String(64)), Column("unit_price", Numeric(14, 2)),
        prefixes=["TEMPORARY"],
    )


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




def _validated_orders(frame: pd.DataFrame, stem: str, now: dt.datetime, report: ImportReport,
                      sink: ErrorSink) -> pd.DataFrame:
    """The staging rows of a chunk; invalid rows go to the error sink.

    Vectorized for the common spellings (ISO dates, plain amounts and quantities); anything else
    goes through the same parsers as one row at a time, for the exact message. Optional columns
    (email, status, currency, product) are None in `frame` when the import has no such column.
    """
    size = len(frame)
    problems: dict[int, list[str]] = {}

    def add(i: int, reason: str) -> None:
        problems.setdefault(i, []).append(reason)

    def given(name: str) -> bool:
        return bool(frame[name].notna().any())

    for i in np.flatnonzero(frame["problem"].notna().to_numpy()):
        add(i, f"the row {frame['problem'].iat[i]}")
    customer = frame["customer"].fillna("").str.strip()
    lengths = customer.str.len().to_numpy()
    for i in np.flatnonzero(lengths > 100):
        add(i, "customer id is longer than 100 characters")
    emails = pd.Series([None] * size, index=frame.index, dtype=object)
    if given("email"):
        email_text = frame["email"].fillna("").str.strip()
        for i in np.flatnonzero(email_text.str.len().to_numpy() > 0):
            try:
                emails.iat[i] = cached_email(email_text.iat[i])
            except ValidationError as exc:
                add(i, str(exc))
        missing = (lengths == 0) & (email_text.str.len().to_numpy() == 0)
        with_ids = frame["customer"].notna().any()
        for i in np.flatnonzero(missing):
            add(i, "customer id and email are both missing" if with_ids else "email is missing")
    else:
        for i in np.flatnonzero(lengths == 0):
            add(i, "customer id is missing")

    when_text = frame["when"].str.strip()
    fast = when_text.str.fullmatch(ISO_DATE).to_numpy(dtype=bool)
    ordered = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us]")
    if fast.any():
        ordered[fast] = pd.to_datetime(when_text[fast], format="ISO8601", errors="coerce").astype("datetime64[us]")
    for i in np.flatnonzero(ordered.isna().to_numpy()):
        text = when_text.iat[i]
        if not text:
            add(i, "order date is missing")
            continue
        try:
            ordered.iat[i] = parse_datetime(text)
        except ValidationError as exc:
            add(i, f"order date: {exc}")
    for i in np.flatnonzero((ordered > pd.Timestamp(now + dt.timedelta(days=1))).to_numpy()):
        add(i, f"order date {when_text.iat[i]!r} is in the future")
    for i in np.flatnonzero((ordered < pd.Timestamp(1900, 1, 1)).to_numpy()):
        add(i, f"order date {when_text.iat[i]!r} is before 1900")

    amount_text = frame["amount"].str.strip()
    fast = amount_text.str.fullmatch(PLAIN_AMOUNT).to_numpy(dtype=bool)
    totals = amount_text.where(fast)
    for i in np.flatnonzero(~fast):
        text = amount_text.iat[i]
        if not text:
            add(i, "amount is missing")
            continue
        try:
            totals.iat[i] = str(parse_amount(text))
        except ValidationError as exc:
            add(i, str(exc))

    quantity_text = frame["quantity"].str.strip()
    fast = quantity_text.str.fullmatch(PLAIN_QUANTITY).to_numpy(dtype=bool)
    quantities = pd.to_numeric(quantity_text.where(fast), errors="coerce").fillna(0).astype("int64").to_numpy(copy=True)
    for i in np.flatnonzero(~fast | (quantities < 1) | (quantities > 1_000_000)):
        try:
            quantities[i] = parse_quantity(quantity_text.iat[i])
        except ValidationError as exc:
            add(i, str(exc))

    statuses = pd.Series("paid", index=frame.index, dtype=object)
    if given("status"):
        status_text = frame["status"].fillna("").str.strip()
        mapped = status_text.str.lower().str.replace(r"[\s-]+", "_", regex=True).map(ORDER_STATUS_VALUES)
        blank = (status_text == "").to_numpy()
        statuses = mapped.where(~blank, "paid")
        for i in np.flatnonzero(statuses.isna().to_numpy()):
            add(i, f"status {status_text.iat[i]!r} is not one of {', '.join(ORDER_STATUSES)}")

    currencies = pd.Series([None] * size, index=frame.index, dtype=object)
    if given("currency"):
        currency_text = frame["currency"].fillna("").str.strip().str.upper()
        valid_code = currency_text.str.fullmatch(CURRENCY_CODE.pattern).to_numpy(dtype=bool)
        currencies = currency_text.where(valid_code, None)
        for i in np.flatnonzero(~valid_code & (currency_text != "").to_numpy()):
            add(i, f"currency {frame['currency'].iat[i].strip()!r} is not a three-letter ISO 4217 code such as EUR")

    skus = pd.Series([None] * size, index=frame.index, dtype=object)
    unit_prices = pd.Series([None] * size, index=frame.index, dtype=object)
    if given("product"):
        skus = frame["product"].fillna("").str.strip()
        sku_lengths = skus.str.len().to_numpy()
        for i in np.flatnonzero(sku_lengths == 0):
            add(i, "product is missing")
        for i in np.flatnonzero(sku_lengths > 64):
            add(i, "product SKU is longer than 64 characters")

    if frame["order"].notna().any():
        numbers = frame["order"].fillna("").str.strip()
        lengths = numbers.str.len().to_numpy()
        for i in np.flatnonzero(lengths == 0):
            add(i, "order number is missing")
        for i in np.flatnonzero(lengths > 64):
            add(i, "order number is longer than 64 characters")
    else:
        # Deterministic: the same file imported again gives the same numbers, so nothing is doubled.
        content = customer + "|" + when_text + "|" + totals.fillna("")
        if given("email"):
            content = content + "|" + emails.fillna("")
        digest = pd.util.hash_pandas_object(content, index=False).to_numpy() & 0xFFFFFFFF
        numbers = (f"{stem}-" + frame["number"].astype(str) + "-"
                   + pd.Series([f"{d:08x}" for d in digest], index=frame.index))

    valid = np.ones(size, dtype=bool)
    numbered = frame["order"].notna().to_numpy()
    email_text = frame["email"].fillna("").str.strip()
    for i, reasons in sorted(problems.items()):
        valid[i] = False
        ident = (numbers.iat[i] if numbered[i] else "") or customer.iat[i] or email_text.iat[i]
        sink.add(int(frame["number"].iat[i]), ident or f"row {frame['number'].iat[i]}", "; ".join(reasons))
    report.invalid += int((~valid).sum())
    if given("product"):
        unit_prices = pd.Series(
            [str((Decimal(t) / q).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)) if ok else None
             for t, q, ok in zip(totals.fillna("0"), quantities, valid, strict=True)], index=frame.index, dtype=object)
    return pd.DataFrame({
        "row_number": frame["number"][valid].to_numpy(), "order_number": numbers[valid].to_numpy(),
        "external_id": customer.where(customer != "", None)[valid].to_numpy(),
        "email": emails[valid].to_numpy(), "email_key": emails.map(email_key)[valid].to_numpy(),
        "ordered_at": ordered[valid].to_numpy(), "status": statuses[valid].to_numpy(),
        "currency": currencies[valid].to_numpy(), "total": totals[valid].to_numpy(), "quantity": quantities[valid],
        "sku": skus[valid].to_numpy(), "unit_price": unit_prices[valid].to_numpy(),
    })


def import_orders(
    session: Session, actor, source: Source, customer_col: str | None, date_col: str, amount_col: str,
    quantity_col: str | None = None, *, order_col: str | None = None, email_col: str | None = None,
    status_col: str | None = None, product_col: str | None = None, currency_col: str | None = None,
    fmt: str = "auto", file_name: str | None = None, errors_path: str | os.PathLike | None = None,
    chunk_size: int = ORDER_CHUNK, progress: Progress | None = None, now: dt.datetime | None = None,
) -> ImportReport:
    """Load a plain transaction log: one order per row (or, with `product_col`, one order line per row).

    The customer is the `customer_col` id (a customer that does not exist is created with it as its
    external id) or, with `email_col`, found by email and else created with it. `status_col` holds
    an order status (default paid), `currency_col` a currency code (default the shop currency:
    orders in another one are refused, see `order_staging`). With `product_col`, each row is a line
    of the order `order_col` names, of the product with that SKU (created when unknown), its amount
    the line total; customer, date, status and currency come from the order's first row.

    Rows are validated a chunk at a time and copied in bulk (COPY on PostgreSQL) into a temporary
    staging table; customers, products, orders and items are then inserted set-based. Without
    `order_col`, order numbers are derived from the file name, row and content, so importing the
    same file twice adds nothing.
    """
    require(actor, "customers.import")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError("The chunk size must be a positive whole number.")
    if not customer_col and not email_col:
        raise ValidationError("Name the customer id column or the customer email column (one is required).")
    if product_col and not order_col:
        raise ValidationError("Rows of products are lines of an order: name the order number column too.")
    now = now or utcnow()
    started = time.perf_counter()
    with TableReader(source, fmt, file_name) as reader:
        named = {"customer": customer_col, "date": date_col, "amount": amount_col, "quantity": quantity_col,
                 "order number": order_col, "email": email_col, "status": status_col, "product": product_col,
                 "currency": currency_col}
        for label, column in named.items():
            if column is not None and column not in reader.columns:
                raise ValidationError(f"The file has no {label} column {column!r} "
                                      f"(its columns: {', '.join(reader.columns)}).")
        report = ImportReport("orders", Path(reader.name or "upload").name, reader.format)
        stem = re.sub(r"[^0-9A-Za-z_.-]+", "_", Path(report.file_name).stem)[:40] or "import"
        run = start_run(session, actor, "orders", reader, None)
        sink = ErrorSink(errors_path)
        connection = session.connection()
        rows_table = _row_staging_table()
        rows_table.create(connection)
        staging = order_staging.create_staging(connection)
        try:
            sources = {"customer": customer_col, "when": date_col, "amount": amount_col, "quantity": quantity_col,
                       "order": order_col, "email": email_col, "status": status_col, "product": product_col,
                       "currency": currency_col}
            chunk: dict[str, list] = {k: [] for k in ("number", "problem", *sources)}

            def flush() -> None:
                if chunk["number"]:
                    frame = _validated_orders(pd.DataFrame(chunk), stem, now, report, sink)
                    bulk.load(connection, rows_table, frame)
                    for values in chunk.values():
                        values.clear()

            for raw in reader.rows():
                report.rows_read += 1
                values = raw.values
                chunk["number"].append(raw.number)
                chunk["problem"].append(raw.problem)
                for key, column in sources.items():
                    if column:
                        chunk[key].append(values.get(column, ""))
                    else:
                        chunk[key].append("" if key in ("when", "amount", "quantity") else None)
                if len(chunk["number"]) >= chunk_size:
                    flush()
                    if progress:
                        progress(reader.fraction(), report.rows_read)
            flush()
            _stage_order_rows(connection, rows_table, staging, bool(product_col), report, sink)

            def reject(row: int, identifier: str, reason: str) -> None:
                sink.add(row, identifier, reason)
                report.invalid += 1

            loaded = order_staging.load_staged(connection, staging, now, reject)
            report.apply(loaded)
        finally:
            sink.close()
        rows_table.drop(connection)
        order_staging.drop_staging(connection, staging)
        report.errors = sink.kept
        finish_run(session, actor, run, report, started)
        if progress:
            progress(1.0, report.rows_read)
    return report


ORDER_ARGUMENTS = {"customer": "customer_col", "date": "date_col", "amount": "amount_col", "quantity": "quantity_col",
                   "order_number": "order_col", "email": "email_col", "status": "status_col", "product": "product_col",
                   "currency": "currency_col"}
ORDER_ALIASES = {"customer_id": "customer", "external_id": "customer", "order_date": "date", "ordered_at": "date",
                 "created_at": "date", "total": "amount", "qty": "quantity", "order": "order_number",
                 "order_id": "order_number", "invoice": "order_number", "e_mail": "email", "sku": "product",
                 "product_sku": "product"}


def default_order_mapping(columns: Iterable[str]) -> dict[str, str]:
    """File column -> order field for the columns named like a field (customer, date, amount, ...)."""
    mapping: dict[str, str] = {}
    for column in columns:
        name = _normalized_name(column)
        target = name if name in ORDER_FIELDS else ORDER_ALIASES.get(name)
        if target and target not in mapping.values():
            mapping[column] = target
    return mapping


def check_order_mapping(mapping: dict[str, str], columns: list[str]) -> dict[str, str]:
    """The `import_orders` column arguments of a file column -> field mapping, or what is missing."""
    chosen: dict[str, str] = {}
    for column, target in mapping.items():
        if target in (None, "", "(ignore)"):
            continue
        if target not in ORDER_FIELDS:
            raise ValidationError(f"{target!r} is not an order field; use one of {', '.join(ORDER_FIELDS)}.")
        if column not in columns:
            raise ValidationError(f"The file has no column {column!r} (its columns: {', '.join(columns)}).")
        if target in chosen:
            raise ValidationError(f"Two columns are mapped to {ORDER_FIELDS[target]}; map each field once.")
        chosen[target] = column
    missing = [ORDER_FIELDS[f] for f in ("date", "amount") if f not in chosen]
    if "customer" not in chosen and "email" not in chosen:
        missing.insert(0, f"{ORDER_FIELDS['customer']} or {ORDER_FIELDS['email']}")
    if missing:
        raise ValidationError(f"Map a column to {' and '.join(missing)}.")
    if "product" in chosen and "order_number" not in chosen:
        raise ValidationError("Rows of products are lines of an order: map a column to Order number too.")
    return {"customer_col": None, **{ORDER_ARGUMENTS[field]: column for field, column in chosen.items()}}


def file_columns(source: Source, *, fmt: str = "auto", file_name: str | None = None) -> list[str]:
    """The columns of a file (its header), or a ValidationError saying why it cannot be read."""
    with TableReader(source, fmt, file_name) as reader:
        return reader.columns


def preview_orders(source: Source, columns_map: dict[str, str], *, fmt: str = "auto", file_name: str | None = None,
                   limit: int = 20, now: dt.datetime | None = None) -> list[PreviewRow]:
    """The first `limit` rows of a transaction log with their status, checked as `import_orders` checks them.

    `columns_map` holds `import_orders`' column arguments (see `check_order_mapping`); no database is
    read, so the shop currency and orders imported before are only checked on import.
    """
    now = now or utcnow()
    with TableReader(source, fmt, file_name) as reader:
        raws = []
        for raw in reader.rows():
            raws.append(raw)
            if len(raws) >= limit:
                break
    sources = {"customer": "customer_col", "when": "date_col", "amount": "amount_col", "quantity": "quantity_col",
               "order": "order_col", "email": "email_col", "status": "status_col", "product": "product_col",
               "currency": "currency_col"}
    chunk: dict[str, list] = {"number": [r.number for r in raws], "problem": [r.problem for r in raws]}
    for key, argument in sources.items():
        column = columns_map.get(argument)
        blank = "" if key in ("when", "amount", "quantity") else None
        chunk[key] = [r.values.get(column, "") if column else blank for r in raws]
    report = ImportReport("orders", file_name or "upload", "csv")
    sink = ErrorSink(None)
    if raws:
        _validated_orders(pd.DataFrame(chunk), "preview", now, report, sink)
    reasons = {error.row: error.reason for error in sink.kept}
    return [PreviewRow(r.number, r.values, "invalid" if r.number in reasons else "ok", reasons.get(r.number, ""))
            for r in raws]


def _stage_order_rows(connection, rows: Table, staging: order_staging.Staging, lines: bool, report: ImportReport,
                      sink: ErrorSink) -> None:
    """From validated rows to staged orders (and lines): repeated order numbers are errors, or lines."""
    Index("ix_import_order_rows_number", rows.c.order_number, rows.c.row_number).create(connection)
    Index("ix_import_order_rows_row", rows.c.row_number).create(connection)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {rows.name}")  # temporary tables have no statistics otherwise
    first = (select(rows.c.order_number, func.min(rows.c.row_number).label("first_row"))
             .group_by(rows.c.order_number).subquery())
    head = rows.alias("head")
    joined = (rows.join(first, first.c.order_number == rows.c.order_number)
              .join(head, head.c.row_number == first.c.first_row))
    later = rows.c.row_number != first.c.first_row
    if lines:
        other = ((func.coalesce(rows.c.external_id, "") != func.coalesce(head.c.external_id, ""))
                 | (func.coalesce(rows.c.email_key, "") != func.coalesce(head.c.email_key, "")))
        conflicts = connection.execute(select(rows.c.row_number, rows.c.order_number, head.c.row_number)
                                       .select_from(joined).where(later, other).order_by(rows.c.row_number)).all()
        for row_number, number, first_row in conflicts:
            sink.add(row_number, number, f"order {number!r} belongs to another customer on row {first_row}")
    else:
        conflicts = connection.execute(select(rows.c.row_number, rows.c.order_number, head.c.row_number)
                                       .select_from(joined).where(later).order_by(rows.c.row_number)).all()
        for row_number, number, _ in conflicts:
            sink.add(row_number, number, f"order number {number!r} appears earlier in the file")
    report.invalid += len(conflicts)
    for batch in batches([row_number for row_number, _, _ in conflicts]):
        connection.execute(rows.delete().where(rows.c.row_number.in_(batch)))
    totals = (select(rows.c.order_number, func.min(rows.c.row_number).label("first_row"),
                     func.sum(rows.c.total).label("total"), func.sum(rows.c.quantity).label("item_count"))
              .group_by(rows.c.order_number).subquery())
    connection.execute(insert(staging.orders).from_select(
        ["row_number", "order_number", "external_id", "email", "email_key", "ordered_at", "status", "channel",
         "currency", "subtotal", "discount", "shipping", "total", "item_count"],
        select(totals.c.first_row, totals.c.order_number, rows.c.external_id, rows.c.email, rows.c.email_key,
               rows.c.ordered_at, rows.c.status, literal("web"), rows.c.currency, totals.c.total, literal(0),
               literal(0), totals.c.total, totals.c.item_count)
        .select_from(totals.join(rows, rows.c.row_number == totals.c.first_row)),
    ))
    if lines:
        connection.execute(insert(staging.lines).from_select(
            ["row_number", "order_number", "sku", "product_name", "brand", "quantity", "unit_price", "line_total"],
            select(rows.c.row_number, rows.c.order_number, rows.c.sku, rows.c.sku, literal(""), rows.c.quantity,
                   rows.c.unit_price, rows.c.total),
        ))
