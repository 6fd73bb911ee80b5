"""Churn risk levels: the one set of bands that the churn model's scores, the customer search, the
lifecycle rules and the pages all use.

A probability p of no order within the horizon is at the highest level whose floor it reaches:
low < 0.25 <= medium < 0.5 <= high < 0.75 <= critical. A customer "at risk" is at high or critical.
"""

from __future__ import annotations

from db.models import RISK_LEVELS

# level -> the lowest probability at that level, in order
RISK_FLOORS: dict[str, float] = {"low": 0.0, "medium": 0.25, "high": 0.5, "critical": 0.75}
AT_RISK_LEVELS: tuple[str, ...] = ("high", "critical")
# The probability from which a customer is at risk: the floor of the lowest at-risk level.
AT_RISK_PROBABILITY = RISK_FLOORS[AT_RISK_LEVELS[0]]

assert tuple(RISK_FLOORS) == RISK_LEVELS, "the bands name the levels the schema allows, in order"


def risk_band(level: str) -> tuple[float, float]:
    """[low, high) of a level's probabilities; the top level's band ends above 1."""
    levels = list(RISK_FLOORS)
    upper = RISK_FLOORS[levels[levels.index(level) + 1]] if level != levels[-1] else 1.01
    return RISK_FLOORS[level], upper


def risk_level(probability: float) -> str:
    """The level of one probability."""
    found = "low"
    for level, floor in RISK_FLOORS.items():
        if probability >= floor:
            found = level
    return found
