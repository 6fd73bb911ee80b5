"""Number and text formats pages share."""

from __future__ import annotations

import re

import pandas as pd


def compact_euros(amount: float) -> str:
    """€3.8M rather than €3,815,402, for metrics that share a row."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(amount) >= limit:
            return f"€{amount / limit:,.1f}{suffix}"
    return f"€{amount:,.0f}"


# Every character Markdown (CommonMark, GitHub extensions and Streamlit's own :color[...] and
# :emoji: directives) gives a meaning; a backslash before each makes it a literal character.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")


def plain(text: object) -> str:
    """User-supplied text (a name, a subject, a file name) made safe to put inside Markdown: it
    shows as the characters typed, never as an image, a link, a heading or formatting."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def words(name: object) -> str:
    """An internal snake_case name (a stage, a column, a level) as words for people to read:
    "at_risk" -> "At risk", "signed_up_at" -> "Signed up at". The stored value stays as it is."""
    text = " ".join(str(name).replace("_", " ").split())
    return text[:1].upper() + text[1:]


def readable(frame: pd.DataFrame, *value_columns: str, **names: str) -> pd.DataFrame:
    """A data frame to show: every column named in words (or as `names` says, by column), and the
    values of `value_columns` (internal names such as stages) in words too."""
    shown = frame.copy()
    for column in value_columns:
        if column in shown:
            shown[column] = shown[column].map(lambda v: v if v is None or pd.isna(v) else words(v))
    return shown.rename(columns=lambda c: names.get(c, words(c)) if isinstance(c, str) else c)
