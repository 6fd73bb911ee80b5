"""Record ids from outside (a URL, a form, a command line): whole numbers a database can hold."""

from __future__ import annotations

import secrets
from typing import Any

from crm_core.platform.errors import ValidationError

# The largest id anything accepts: every id column is a 64-bit integer, and a browser's number
# field holds whole numbers exactly only up to 2**53 - 1.
MAX_RECORD_ID = 2**53 - 1
# Codes people read out or type (referral codes, vouchers): no 0/O or 1/I to confuse.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def is_record_id(value: Any) -> bool:
    """Whether `value` is an int a record of any table could have."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_RECORD_ID


def parse_record_id(text: Any, label: str = "The id") -> int:
    """A record id written as text (`?id=42`), or a ValidationError that says what an id looks like."""
    raw = str(text).strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(MAX_RECORD_ID)) or not is_record_id(int(raw)):
        shown = raw if len(raw) <= 30 else raw[:30] + "…"
        raise ValidationError(f"{label} {shown!r} is not an id: ids are whole numbers from 1 to {MAX_RECORD_ID:,}.")
    return int(raw)


def readable_code(length: int) -> str:
    """An unguessable code of `length` characters from CODE_ALPHABET (32**length possibilities)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
