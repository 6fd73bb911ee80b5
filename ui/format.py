"""Number and text formats pages share."""

from __future__ import annotations

import re


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
