"""What makes a password acceptable: long, not common, not built from the username.

Rules, not a strength meter: at least MIN_PASSWORD_LENGTH characters, at least MIN_DISTINCT_CHARACTERS
different characters, not the username (or containing it), and not a common password from the
bundled list, alone, repeated, or with digits and symbols around it ("Password1234!").
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from crm_core.platform.errors import ValidationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MIN_DISTINCT_CHARACTERS = 5
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "data" / "common_passwords.txt"
_AROUND = re.compile(r"^[\W\d_]+|[\W\d_]+$")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def _is_common(password: str) -> bool:
    common = common_passwords()
    folded = password.lower()
    core = _AROUND.sub("", folded)
    candidates = {folded, core, core.replace(" ", ""), folded.replace(" ", "")}
    for text in list(candidates):
        for size in range(1, len(text) // 2 + 1):  # a word repeated: "passwordpassword"
            if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
                candidates.add(text[:size])
                break
    return any(c in common or (c.isdigit() and len(c) > 0) for c in candidates if c) or not core


def check_password(password: object, username: str = "") -> str:
    """`password` when the rules accept it; otherwise a ValidationError saying which rule it breaks."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(f"The password may have at most {MAX_PASSWORD_LENGTH} characters.")
    if len(set(password.strip())) < MIN_DISTINCT_CHARACTERS:
        raise ValidationError(f"The password must use at least {MIN_DISTINCT_CHARACTERS} different characters.")
    name = (username or "").strip().lower()
    if name and name in password.lower():
        raise ValidationError("The password must not contain the username.")
    if _is_common(password):
        raise ValidationError("This password is one of the most common passwords (or one with digits or symbols "
                              "added); choose a less guessable one, such as a few unrelated words.")
    return password
