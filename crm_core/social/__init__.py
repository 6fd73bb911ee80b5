"""Social listening: customers' social accounts, brand mentions imported and matched by handle,
their sentiment (VADER or a local model), what the Social page reads, and tickets from mentions.
"""

from crm_core.social.accounts import (
    customer_accounts,
    link_account,
    normalize_handle,
    normalize_platform,
    unlink_account,
)
from crm_core.social.mentions import (
    MENTION_FIELDS,
    MentionReport,
    default_mention_mapping,
    documented_mention_columns,
    import_mentions,
    preview_mentions,
)
from crm_core.social.reports import (
    MentionFilter,
    by_platform,
    grain_for,
    mention_dates,
    mention_summary,
    top_negative_mentions,
    topic_counts,
    volume_over_time,
)
from crm_core.social.responses import MENTION_TICKET_PRIORITY, open_ticket_from_mention
from crm_core.social.sentiment import (
    SCORER_ENV,
    SentimentScorer,
    VaderScorer,
    current_scorer,
    load_scorer,
    score_texts,
    sentiment_label,
)
from crm_core.social.topics import TOPIC_KEYWORDS, tag_mentions, topic_terms

__all__ = [
    "MENTION_FIELDS",
    "MENTION_TICKET_PRIORITY",
    "SCORER_ENV",
    "TOPIC_KEYWORDS",
    "MentionFilter",
    "MentionReport",
    "SentimentScorer",
    "VaderScorer",
    "by_platform",
    "current_scorer",
    "customer_accounts",
    "default_mention_mapping",
    "documented_mention_columns",
    "grain_for",
    "import_mentions",
    "link_account",
    "load_scorer",
    "mention_dates",
    "mention_summary",
    "normalize_handle",
    "normalize_platform",
    "open_ticket_from_mention",
    "preview_mentions",
    "score_texts",
    "sentiment_label",
    "tag_mentions",
    "topic_terms",
    "top_negative_mentions",
    "topic_counts",
    "unlink_account",
    "volume_over_time",
]
