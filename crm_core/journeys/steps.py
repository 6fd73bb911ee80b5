"""The journey vocabulary: which touchpoints are steps, what they are called, and how long a path is.

Touchpoints come from the sign-up, web sessions (by source), communications (outbound by channel,
inbound as one step), support tickets, lifecycle stage changes and revenue orders (the first one is
the goal of the path to purchase; later ones are repeat purchases). Consecutive repeats of a step
count once ("Visit · organic" three times in a row is one step). A path keeps its first step and its
last `PATH_TAIL` steps, so the step that started a journey and the ones right before its end are
both seen without thousands of one-off paths.
"""

from __future__ import annotations

from db.models import COMM_CHANNELS, LIFECYCLE_STAGES, SESSION_SOURCES

# A path to purchase shows its first touchpoint and the last three before the purchase; a path from
# the first purchase shows that purchase and the last four steps before its end.
PATH_TAIL = 3
CHURN_PATH_TAIL = 4
TOP_PATHS = 25  # paths kept per segment and cohort; the rest are summed up as OTHER_PATHS
OTHER_PATHS = "(other paths)"
ALL_PATHS = "(all paths)"  # the rollup row of every path together
NO_TOUCHPOINT = "(no touchpoint recorded)"
PURCHASED = "First purchase"
NOT_PURCHASED = "No purchase yet"
CHURNED = "Churned"
# Where a journey from the first purchase stands when it has not (yet) churned, by the lifecycle rules.
STANDING = ("Inactive", "At risk", "Active")

SOURCE_LABELS = {"direct": "direct", "organic": "organic search", "paid_search": "paid search", "social": "social",
                 "email": "email", "referral": "referral"}
CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "call": "Call", "chat": "Chat", "push": "Push",
                  "in_app": "In-app message"}

SIGNUP = 0
VISITS = {source: 1 + i for i, source in enumerate(SESSION_SOURCES)}
MESSAGES = {channel: 1 + len(VISITS) + i for i, channel in enumerate(COMM_CHANNELS)}
INBOUND = 1 + len(VISITS) + len(MESSAGES)
TICKET = INBOUND + 1
STAGES = {stage: TICKET + 1 + i for i, stage in enumerate(LIFECYCLE_STAGES)}
FIRST_PURCHASE = TICKET + 1 + len(STAGES)
REPEAT_PURCHASE = FIRST_PURCHASE + 1
ORDER = REPEAT_PURCHASE + 1  # an order as loaded, before it is known to be the first or a repeat

STEP_LABELS: dict[int, str] = {
    SIGNUP: "Sign-up",
    **{code: f"Visit · {SOURCE_LABELS.get(source, source)}" for source, code in VISITS.items()},
    **{code: CHANNEL_LABELS.get(channel, channel) for channel, code in MESSAGES.items()},
    INBOUND: "Inbound message",
    TICKET: "Support ticket",
    **{code: f"Stage · {stage.replace('_', ' ')}" for stage, code in STAGES.items()},
    FIRST_PURCHASE: PURCHASED,
    REPEAT_PURCHASE: "Repeat purchase",
}
PATH_BASE = 64  # a path is a number: the sum of (step code + 1) * 64 ** position
assert ORDER < PATH_BASE - 1

# First-touch channels: a session's source or a message's channel, or else the customer's
# acquisition channel, named alike whichever it comes from.
FIRST_TOUCH_LABELS = {
    **{code: {"organic": "Organic search"}.get(source, source.replace("_", " ").capitalize())
       for source, code in VISITS.items()},
    **{code: CHANNEL_LABELS.get(channel, channel) for channel, code in MESSAGES.items()},
    INBOUND: "Inbound message", TICKET: "Support",
}
ACQUISITION_LABELS = {"organic_search": "Organic search", "paid_search": "Paid search", "social": "Social",
                      "email": "Email", "referral": "Referral", "affiliate": "Affiliate", "direct": "Direct",
                      "marketplace": "Marketplace", "import": "Unknown (imported)"}
CHANNEL_STEPS = frozenset({*VISITS.values(), *MESSAGES.values(), INBOUND, TICKET})

# The touchpoint sources, as the page names them when a shop has none.
SOURCES = {"signups": "sign-ups", "orders": "orders", "web_sessions": "web sessions",
           "communications": "communications", "tickets": "support tickets",
           "lifecycle_changes": "lifecycle stage changes"}


def path_labels(code: int) -> list[str]:
    """The step names of a path number, in order."""
    labels = []
    while code:
        code, step = divmod(code, PATH_BASE)
        labels.append(STEP_LABELS.get(step - 1, "?"))
    return labels
