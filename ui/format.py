"""Number formats pages share."""

from __future__ import annotations


def compact_euros(amount: float) -> str:
    """€3.8M rather than €3,815,402, for metrics that share a row."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(amount) >= limit:
            return f"€{amount / limit:,.1f}{suffix}"
    return f"€{amount:,.0f}"
