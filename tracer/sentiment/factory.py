"""Builds the sentiment scorer from the settings, saying in the log which one is in use."""
from __future__ import annotations

import logging

from tracer.config import Settings
from tracer.logs import kv
from tracer.sentiment.lexicon import VaderScorer
from tracer.sentiment.scorer import CachedScorer, SentimentScorer


def make_scorer(settings: Settings, log: logging.Logger, store=None) -> SentimentScorer:
    scorer = CachedScorer(VaderScorer())
    log.info(kv("sentiment_scorer", scorer_id=scorer.scorer_id, note="lexicon scorer (FinBERT not configured)"))
    return scorer
