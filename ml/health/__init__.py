"""Account health: five component scores, an overall score with fitted weights, levels and advice.

Everything is computed as of the end of a date (`as_of`): no row dated after it is read. The
inputs come from one aggregated SQL query (`inputs.health_inputs`: one row per counted customer
who signed up by then) and are turned into scores with vectorised numpy; nothing loops over customers.
"Last N days" means the N days up to the end of `as_of`.

Components (each 0-100)
-----------------------
A component is the weighted mean of the sub-scores that have inputs, minus penalties, clipped to
0-100. A component with no input for a customer is "no data" (NULL), never a neutral score that
looks real; a source the shop does not have at all (no web sessions, no helpdesk, no surveys, no
loyalty programme) gives no input to anyone (`available_sources`). The overall score is the
weighted mean of the components that have data, and a customer with none is not scored.

engagement   sessions: 100 x min(web sessions in the last 90 days, 12) / 12 (weight 0.4; when the
             shop records web sessions, no session counts as 0);
             email: 100 x min(1, open rate + 0.5 x click rate) over outbound emails sent in the
             last 180 days, opens and clicks counted when they happened by the cutoff (weight 0.3;
             only with at least one email);
             recency: 100 x max(0, 1 - days since the last revenue order / 365) (weight 0.3;
             buyers only).
satisfaction NPS: 10 x the latest NPS answer in the last 365 days (weight 0.6);
             CSAT: 25 x (mean CSAT - 1) over CSAT survey answers in the last 365 days and the
             ratings of tickets resolved in the last 365 days (weight 0.4);
             no NPS and no CSAT: 50 when there are complaints to penalise, else no data.
             Penalties: 15 per complaint filed in the last 365 days (25 for high or critical
             severity), at most 60 in all, and 15 more while a complaint is open at the cutoff
             (filed before it, not resolved by it).
loyalty      frequency: 100 x min(revenue orders in the last 365 days, 6) / 6 (weight 0.4, buyers);
             tenure: 100 x min(days since the first revenue order, 730) / 730 (weight 0.2, buyers);
             tier: bronze 20, silver 40, gold 60, platinum 80, diamond 100, the tier after the
             latest tier change before the cutoff (bronze when none), for members enrolled by then
             (weight 0.2);
             points: 100 x min(points earned in the last 365 days, 2000) / 2000, plus 25 when
             points were redeemed in that year, capped at 100 (weight 0.2, members).
payment      100 for anyone with a payment method (not removed), an order or a risk assessment by
             the cutoff, else no data; minus 40 when every payment method has expired (expiry month
             before as_of's month) or 15 when some have; minus 60 x the share of the last 365
             days' orders that are cancelled, returned or refunded; minus 10 / 30 / 50 for the
             highest medium / high / critical risk assessment made before the cutoff and not
             cleared by then.
support      100 minus 15 per ticket open at the cutoff (at most 3 counted), 10 more when one of
             them is urgent or critical, 5 per ticket opened in the last 90 days (at most 6), and
             10 per SLA breach in the last 365 days (at most 3): a first-response or resolution
             due time before the cutoff that was missed. When the shop records tickets, no ticket
             is no friction: 100; without a helpdesk at all, no data.

Order statuses, payment-method removal and risk review status are their current values (the
schema keeps no history of them); every other input is filtered on its own timestamp.

Overall, levels, trend
----------------------
overall = sum of weight x component over the components with data, divided by their weights'
sum, with the weights in the app setting "health_weights" (they sum to 1). The default weights are fitted by `fit_weights`: each component's strength is
its AUC for churn (lower component = more churn, ml.labels.churn_labels, over the customers it
has data for) minus 0.5, clipped at 0 (0 for a component without data),
and the weights are the strengths normalised to sum 1; with fewer than `MIN_LABELLED` labelled
customers, fewer than `MIN_PER_CLASS` in either class, or no component better than chance, the
weights are equal and the reason is stored. `score_health` refits first when the weights were never
fitted or the last fit is 30 days or more older than the date it scores. An admin may set the
weights by hand (`save_weights`); fitting then keeps the admin's weights in force until
`reset_weights`.

Who is scored: live accounts only. A customer who never placed a revenue order ("never bought") or
whose last one is more than the lifecycle rule's `churned_days` (365 by default) before the cutoff
("churned") is counted apart in `account_health_runs`, not scored: they are not accounts in poor
health, and scoring them made half the demo shop "critical".

Levels: bands of the overall score, in the app setting "health_level_bands". By default they are
calibrated from data (`level_bands.calibrate_bands`, whenever the weights are refitted): the live
accounts of a sample are scored at as_of - 180 days with the weights in force, and cut at the
shares of `bands.BAND_SCHEDULES` (critical the lowest 5%, poor the next 15%, fair 25%, good 30%,
excellent the top 25% in the first schedule) so that the churn rate over the next 90 days rises
strictly from excellent to critical, with at least 10 accounts per level; the first schedule that
does is kept. The bands are then checked on a later period (scores at as_of - 90 days against churn
up to as_of), and the check says whether the rates still rise. With too little data (under 200
labelled live accounts or 20 in either class), or when no schedule gives rising rates, the fixed
bands excellent >= 80, good >= 65, fair >= 50, poor >= 35 apply, with the reason. An admin may set
the bands by hand (`save_bands`); calibration then keeps them until `reset_bands`.
trend = overall - the overall stored for the same customer at the stored as_of date nearest to
as_of - 30 days (within 15 days either side, before as_of); null when there is none.
"""

from ml.health.bands import BAND_SCHEDULES, DEFAULT_BANDS, LevelBandCalibrator, band_table, levels_for, rates_rise
from ml.health.estimator import (
    COMPONENTS,
    CRITICAL_ACTION,
    HEALTHY_RECOMMENDATION,
    INDICATORS,
    LEVEL_THRESHOLDS,
    RECOMMENDATIONS,
    RELATIONSHIPS,
    HealthScorer,
    HealthWeightFitter,
    components_from_inputs,
    equal_weights,
    health_levels,
    overall_score,
    relationships,
)
from ml.health.inputs import available_sources, component_scores, health_inputs
from ml.health.level_bands import (
    BANDS_KEY,
    calibrate_bands,
    calibration_describes,
    current_bands,
    get_bands,
    last_calibration_as_of,
    reset_bands,
    save_bands,
    validate_bands,
)
from ml.health.scoring import REFIT_AFTER_DAYS, backtest_levels, score_health
from ml.health.weights import (
    WEIGHTS_KEY,
    current_weights,
    fit_weights,
    get_weights,
    last_fit_as_of,
    reset_weights,
    save_weights,
    validate_weights,
)

__all__ = [
    "BANDS_KEY",
    "BAND_SCHEDULES",
    "COMPONENTS",
    "DEFAULT_BANDS",
    "LevelBandCalibrator",
    "RELATIONSHIPS",
    "band_table",
    "calibrate_bands",
    "calibration_describes",
    "current_bands",
    "get_bands",
    "last_calibration_as_of",
    "levels_for",
    "rates_rise",
    "relationships",
    "reset_bands",
    "save_bands",
    "validate_bands",
    "CRITICAL_ACTION",
    "HEALTHY_RECOMMENDATION",
    "INDICATORS",
    "LEVEL_THRESHOLDS",
    "RECOMMENDATIONS",
    "REFIT_AFTER_DAYS",
    "WEIGHTS_KEY",
    "HealthScorer",
    "HealthWeightFitter",
    "available_sources",
    "backtest_levels",
    "component_scores",
    "components_from_inputs",
    "current_weights",
    "equal_weights",
    "fit_weights",
    "get_weights",
    "health_inputs",
    "health_levels",
    "last_fit_as_of",
    "overall_score",
    "reset_weights",
    "save_weights",
    "score_health",
    "validate_weights",
]
