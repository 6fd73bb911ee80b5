"""Level bands calibrated from data, without I/O: cut points on the overall score such that each
level's realised churn rate rises from excellent to critical and critical is a short list.

The calibrator tries band schedules (the share of live accounts below each cut, critical first) in
order and keeps the first whose churn rates rise strictly level by level with enough accounts in
each level; with too little data, or when no schedule gives rising rates, it keeps the fixed
default bands and says why (`fallback_reason_`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from db.models import HEALTH_LEVELS
from ml.health.estimator import LEVEL_THRESHOLDS, health_levels

LEVELS = HEALTH_LEVELS  # best first, as the schema allows them
DEFAULT_BANDS: dict[str, float] = dict(LEVEL_THRESHOLDS)
# Cumulative shares of live accounts below the poor, fair, good and excellent cuts: critical is the
# first share (a short list), excellent what is above the last. Tried in this order.
BAND_SCHEDULES: tuple[tuple[float, float, float, float], ...] = (
    (0.05, 0.20, 0.45, 0.75),
    (0.05, 0.25, 0.55, 0.80),
    (0.08, 0.25, 0.50, 0.75),
    (0.04, 0.15, 0.40, 0.70),
    (0.10, 0.30, 0.55, 0.80),
    (0.05, 0.30, 0.60, 0.85),
    (0.10, 0.35, 0.65, 0.90),
)
MIN_LABELLED = 200
MIN_PER_CLASS = 20
MIN_PER_LEVEL = 10


def levels_for(overall: np.ndarray, bands: dict[str, float]) -> np.ndarray:
    """The level of each overall score under `bands` (excellent >= bands['excellent'], ...)."""
    return health_levels(overall, tuple((level, bands[level]) for level in LEVELS[:-1]))


def band_table(overall: np.ndarray, churned: np.ndarray, bands: dict[str, float]) -> list[dict[str, Any]]:
    """Accounts, share, churned and churn rate per level (every level, excellent first)."""
    levels = levels_for(overall, bands)
    total = len(overall)
    rows = []
    for level in LEVELS:
        mask = levels == level
        n = int(mask.sum())
        lost = int(churned[mask].sum()) if n else 0
        rows.append({"level": level, "accounts": n, "share": round(n / total, 4) if total else 0.0,
                     "churned": lost, "churn_rate": round(lost / n, 4) if n else None})
    return rows


def rates_rise(rows: list[dict[str, Any]], min_per_level: int = 1) -> bool:
    """Whether the churn rate rises strictly from excellent to critical, each level with accounts."""
    rates = [r["churn_rate"] for r in rows]
    if any(r["accounts"] < min_per_level or r["churn_rate"] is None for r in rows):
        return False
    return all(lower < higher for lower, higher in zip(rates, rates[1:], strict=False))


class LevelBandCalibrator:
    """Fit cut points on overall scores against churn (1 = churned).

    Learned: `bands_` (lowest score of excellent, good, fair, poor), `table_` (accounts, share and
    churn rate per level in the fitted data), `schedule_` (the shares used, None on fallback),
    `n_samples_`, `churn_rate_`, `fallback_reason_` (None when calibrated).
    """

    def __init__(self, schedules=BAND_SCHEDULES, min_labelled: int = MIN_LABELLED,
                 min_per_class: int = MIN_PER_CLASS, min_per_level: int = MIN_PER_LEVEL):
        self.schedules = schedules
        self.min_labelled = min_labelled
        self.min_per_class = min_per_class
        self.min_per_level = min_per_level

    def fit(self, overall: np.ndarray, churned: np.ndarray) -> LevelBandCalibrator:
        overall = np.asarray(overall, dtype=float)
        churned = np.asarray(churned, dtype=int)
        keep = ~np.isnan(overall)
        overall, churned = overall[keep], churned[keep]
        self.n_samples_ = len(overall)
        self.churn_rate_ = round(float(churned.mean()), 4) if len(churned) else None
        self.schedule_: tuple[float, ...] | None = None
        lost = int(churned.sum())
        if len(overall) < self.min_labelled or min(lost, len(overall) - lost) < self.min_per_class:
            self.fallback_reason_: str | None = (
                f"too little data to calibrate: {len(overall)} live accounts, {lost} churned (need "
                f"{self.min_labelled} and {self.min_per_class} in each class); the default bands apply")
            self.bands_ = dict(DEFAULT_BANDS)
            self.table_ = band_table(overall, churned, self.bands_)
            return self
        for schedule in self.schedules:
            cuts = np.round(np.quantile(overall, list(schedule), method="higher"), 1)
            poor, fair, good, excellent = (float(c) for c in cuts)
            if not (0 < poor < fair < good < excellent <= 100):
                continue  # tied scores collapse two cuts: try the next schedule
            bands = {"excellent": excellent, "good": good, "fair": fair, "poor": poor}
            table = band_table(overall, churned, bands)
            if rates_rise(table, self.min_per_level):
                self.fallback_reason_ = None
                self.bands_, self.table_, self.schedule_ = bands, table, tuple(schedule)
                return self
        self.fallback_reason_ = "no band schedule gave churn rates rising level by level; the default bands apply"
        self.bands_ = dict(DEFAULT_BANDS)
        self.table_ = band_table(overall, churned, self.bands_)
        return self
