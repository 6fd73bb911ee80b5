"""The experiment's arithmetic: power and holdout size, differences with confidence intervals and
CUPED, all from a few sums per group so the database does the per-customer work."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from crm_core.campaigns.rules import ALPHA, MAX_CONTROL_SHARE, MIN_CONTROL_SHARE, POWER

_NORMAL = NormalDist()


def z(quantile: float) -> float:
    return _NORMAL.inv_cdf(quantile)


def power_of(audience: int, control_share: float, baseline: float, lift: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided two-proportion z-test to detect an absolute `lift` over `baseline`."""
    n_control = audience * control_share
    n_treatment = audience - n_control
    if n_control < 1 or n_treatment < 1 or lift == 0:
        return 0.0
    treated = min(max(baseline + lift, 0.0), 1.0)
    se = math.sqrt(baseline * (1 - baseline) / n_control + treated * (1 - treated) / n_treatment)
    if se == 0:
        return 1.0
    return _NORMAL.cdf(abs(lift) / se - z(1 - alpha / 2))


def minimum_detectable_lift(audience: int, control_share: float, baseline: float,
                            alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest absolute lift detected with `power` (bisection on power_of); None if none below 1."""
    if audience * control_share < 1 or audience * (1 - control_share) < 1:
        return None
    low, high = 0.0, 1.0 - baseline
    if high <= 0 or power_of(audience, control_share, baseline, high, alpha) < power:
        return None
    for _ in range(60):
        mid = (low + high) / 2
        if power_of(audience, control_share, baseline, mid, alpha) >= power:
            high = mid
        else:
            low = mid
    return high


@dataclass(frozen=True)
class HoldoutPlan:
    control_share: float
    power: float
    minimum_detectable_lift: float | None
    enough: bool  # whether the planned share reaches the target power for the expected lift
    message: str


def plan_holdout(audience: int, baseline: float, lift: float, alpha: float = ALPHA,
                 power: float = POWER) -> HoldoutPlan:
    """The smallest control share (between the bounds) that detects `lift` with `power`: every
    customer held out is one not contacted, so the holdout is no bigger than the test needs."""
    share = MIN_CONTROL_SHARE
    steps = round((MAX_CONTROL_SHARE - MIN_CONTROL_SHARE) / 0.01)
    for k in range(steps + 1):
        share = round(MIN_CONTROL_SHARE + k * 0.01, 2)
        if power_of(audience, share, baseline, lift, alpha) >= power:
            mde = minimum_detectable_lift(audience, share, baseline, alpha, power)
            return HoldoutPlan(share, power_of(audience, share, baseline, lift, alpha), mde, True,
                               f"A {share:.0%} holdout detects a {lift:.1%} lift over a {baseline:.1%} "
                               f"conversion rate with {power:.0%} power among {audience:,} customers.")
    share = MAX_CONTROL_SHARE
    mde = minimum_detectable_lift(audience, share, baseline, alpha, power)
    detectable = f"the smallest detectable lift is {mde:.1%}" if mde is not None else "no lift is detectable"
    return HoldoutPlan(share, power_of(audience, share, baseline, lift, alpha), mde, False,
                       f"{audience:,} customers are too few to detect a {lift:.1%} lift with {power:.0%} power "
                       f"even with a {share:.0%} holdout: {detectable}.")


def check_holdout(audience: int, share: float, baseline: float, lift: float, alpha: float = ALPHA,
                  power: float = POWER) -> HoldoutPlan:
    """What a holdout share set by hand gives: its power for `lift` and the smallest lift it detects."""
    reached = power_of(audience, share, baseline, lift, alpha)
    mde = minimum_detectable_lift(audience, share, baseline, alpha, power)
    if reached >= power:
        message = (f"The {share:.0%} holdout set by hand detects a {lift:.1%} lift over a {baseline:.1%} "
                   f"conversion rate with {reached:.0%} power among {audience:,} customers.")
    else:
        detectable = f"the smallest lift it detects is {mde:.1%}" if mde is not None else "no lift is detectable"
        message = (f"The {share:.0%} holdout set by hand has {reached:.0%} power for a {lift:.1%} lift among "
                   f"{audience:,} customers (the aim is {power:.0%}): {detectable}.")
    return HoldoutPlan(share, reached, mde, reached >= power, message)


@dataclass(frozen=True)
class GroupSums:
    """Per group: customers, converters, and the sums of outcome y (revenue), covariate x
    (pre-period spend), their squares and product."""

    n: int
    conversions: int
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float

    @property
    def rate(self) -> float:
        return self.conversions / self.n if self.n else 0.0

    @property
    def mean_y(self) -> float:
        return self.sum_y / self.n if self.n else 0.0

    @property
    def mean_x(self) -> float:
        return self.sum_x / self.n if self.n else 0.0

    def var_y(self) -> float:
        return _variance(self.n, self.sum_y, self.sum_y2)

    def var_x(self) -> float:
        return _variance(self.n, self.sum_x, self.sum_x2)

    def cov_xy(self) -> float:
        if self.n < 2:
            return 0.0
        return (self.sum_xy - self.sum_x * self.sum_y / self.n) / (self.n - 1)


def _variance(n: int, total: float, squares: float) -> float:
    if n < 2:
        return 0.0
    return max((squares - total * total / n) / (n - 1), 0.0)


@dataclass(frozen=True)
class Difference:
    estimate: float
    low: float
    high: float
    standard_error: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def _difference(estimate: float, se: float, alpha: float = ALPHA) -> Difference:
    half = z(1 - alpha / 2) * se
    return Difference(estimate, estimate - half, estimate + half, se)


def rate_difference(treatment: GroupSums, control: GroupSums, alpha: float = ALPHA) -> Difference:
    """Conversion rate treatment − control, with a Wald interval."""
    pt, pc = treatment.rate, control.rate
    if not treatment.n or not control.n:
        return _difference(0.0, math.inf, alpha)
    se = math.sqrt(pt * (1 - pt) / treatment.n + pc * (1 - pc) / control.n)
    return _difference(pt - pc, se, alpha)


def mean_difference(treatment: GroupSums, control: GroupSums, alpha: float = ALPHA) -> Difference:
    """Revenue per customer treatment − control (Welch's standard error)."""
    if not treatment.n or not control.n:
        return _difference(0.0, math.inf, alpha)
    se = math.sqrt(treatment.var_y() / treatment.n + control.var_y() / control.n)
    return _difference(treatment.mean_y - control.mean_y, se, alpha)


def cuped_theta(treatment: GroupSums, control: GroupSums) -> float:
    """θ = cov(y, x) / var(x) over both groups pooled (Deng et al. 2013)."""
    n = treatment.n + control.n
    if n < 2:
        return 0.0
    pooled = GroupSums(n, 0, treatment.sum_y + control.sum_y, treatment.sum_y2 + control.sum_y2,
                       treatment.sum_x + control.sum_x, treatment.sum_x2 + control.sum_x2,
                       treatment.sum_xy + control.sum_xy)
    var_x = pooled.var_x()
    return pooled.cov_xy() / var_x if var_x > 0 else 0.0


def cuped_difference(treatment: GroupSums, control: GroupSums, alpha: float = ALPHA) -> tuple[Difference, float]:
    """Revenue per customer treatment − control after CUPED: y − θ(x − x̄). Returns the difference
    and the share of the variance it removed."""
    if not treatment.n or not control.n:
        return _difference(0.0, math.inf, alpha), 0.0
    theta = cuped_theta(treatment, control)
    n = treatment.n + control.n
    grand_x = (treatment.sum_x + control.sum_x) / n

    def adjusted(group: GroupSums) -> tuple[float, float]:
        mean = group.mean_y - theta * (group.mean_x - grand_x)
        var = max(group.var_y() - 2 * theta * group.cov_xy() + theta * theta * group.var_x(), 0.0)
        return mean, var

    mean_t, var_t = adjusted(treatment)
    mean_c, var_c = adjusted(control)
    se = math.sqrt(var_t / treatment.n + var_c / control.n)
    plain = treatment.var_y() / treatment.n + control.var_y() / control.n
    reduction = 1 - (se * se) / plain if plain > 0 else 0.0
    return _difference(mean_t - mean_c, se, alpha), reduction
