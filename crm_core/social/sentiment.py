"""Sentiment of a mention: a scorer gives each text a score from -1 (negative) to 1 (positive).

VADER (vaderSentiment, a lexicon and rules tuned for social media) is the default. A local model
plugs in through `CRM_SENTIMENT_SCORER="package.module:factory"`: the factory returns an object
with a `name` and `score(texts) -> list[float]` (the `SentimentScorer` protocol), for example a
fine-tuned transformer served on the machine. Labels follow VADER's published cut-offs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol, runtime_checkable

from crm_core.platform.errors import ValidationError
from crm_core.service.communications import sentiment as vader_compound

# VADER's documented thresholds on the compound score.
POSITIVE_FROM = 0.05
NEGATIVE_BELOW = -0.05
SCORER_ENV = "CRM_SENTIMENT_SCORER"


@runtime_checkable
class SentimentScorer(Protocol):
    name: str

    def score(self, texts: Sequence[str]) -> list[float]:
        """One score in [-1, 1] per text, in order."""
        ...


class VaderScorer:
    """VADER's compound score (the same scorer as inbound messages)."""

    name = "vader"

    def score(self, texts: Sequence[str]) -> list[float]:
        return [vader_compound(text) for text in texts]


def sentiment_label(score: float | None) -> str | None:
    """positive, neutral or negative by VADER's cut-offs (None without a score)."""
    if score is None:
        return None
    if score >= POSITIVE_FROM:
        return "positive"
    if score <= NEGATIVE_BELOW:
        return "negative"
    return "neutral"


def load_scorer(spec: str) -> SentimentScorer:
    """The scorer a `module:factory` spec names, checked to have a name and a score method."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValidationError(f"{SCORER_ENV} must look like 'package.module:factory', not {spec!r}.")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValidationError(f"Cannot load the sentiment scorer {spec!r}: {exc}") from None
    scorer = factory()
    if not isinstance(scorer, SentimentScorer) or not isinstance(getattr(scorer, "name", None), str):
        raise ValidationError(f"The sentiment scorer {spec!r} needs a name and a score(texts) method.")
    return scorer


@lru_cache(maxsize=4)
def _configured(spec: str) -> SentimentScorer:
    return load_scorer(spec) if spec else VaderScorer()


def current_scorer() -> SentimentScorer:
    """The configured scorer (VADER unless CRM_SENTIMENT_SCORER names another)."""
    return _configured(os.environ.get(SCORER_ENV, "").strip())


def score_texts(texts: Sequence[str], scorer: SentimentScorer | None = None) -> tuple[list[float], str]:
    """Scores of the texts, clipped to [-1, 1] and rounded, and the scorer's name."""
    chosen = scorer or current_scorer()
    scores = chosen.score(list(texts))
    if len(scores) != len(texts):
        raise ValidationError(f"The sentiment scorer {chosen.name!r} gave {len(scores)} scores for {len(texts)} texts.")
    return [round(min(1.0, max(-1.0, float(s))), 4) for s in scores], chosen.name[:32]
