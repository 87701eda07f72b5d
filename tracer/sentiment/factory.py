"""Builds the sentiment scorer from the settings, saying in the log which one is in use.

``TB_SENTIMENT_SCORER``:

* ``auto`` (default): FinBERT when ``TB_FINBERT_MODEL`` is set and loads, else the shipped
  trained model (:mod:`tracer.sentiment.trained`), else the VADER lexicon;
* ``finbert``: the same chain, but an empty ``TB_FINBERT_MODEL`` is reported as a warning;
* ``trained``: the trained model, else VADER;
* ``lexicon``: VADER.

A scorer that fails to load is logged once, with the reason, at the moment of the fallback
(``event=sentiment_scorer_fallback``); the scorer in use is logged as ``event=sentiment_scorer``
and its ``scorer_id`` goes with every stored score. There is no fake or constant scorer: the
lexicon is always available. FinBERT scores are cached in SQLite when a ``store`` is given
(:mod:`tracer.sentiment.cache`); every scorer gets the in-memory
:class:`~tracer.sentiment.scorer.CachedScorer` in front.
"""
from __future__ import annotations

import logging

from tracer.config import Settings
from tracer.logs import kv
from tracer.sentiment.lexicon import VaderScorer
from tracer.sentiment.scorer import CachedScorer, SentimentScorer


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:300]


def _finbert(settings: Settings, log: logging.Logger, store) -> SentimentScorer | None:
    if not settings.finbert_model:
        if settings.sentiment_scorer == "finbert":
            log.warning(kv("sentiment_scorer_fallback", wanted="finbert", reason="TB_FINBERT_MODEL is empty"))
        return None
    try:
        from tracer.sentiment.finbert import FinBertScorer

        scorer: SentimentScorer = FinBertScorer(settings.finbert_model, batch_size=settings.finbert_batch,
                                                threads=settings.finbert_threads,
                                                quantize=settings.finbert_quantize)
    except Exception as err:          # any load failure (missing dir, offline hub id, bad labels) falls back
        log.warning(kv("sentiment_scorer_fallback", wanted="finbert", model=settings.finbert_model,
                       reason=_reason(err)))
        return None
    if store is not None:
        from tracer.sentiment.cache import PersistentScorer, ScoreCache

        scorer = PersistentScorer(scorer, ScoreCache(store))
    return scorer


def _trained(log: logging.Logger) -> SentimentScorer | None:
    try:
        from tracer.sentiment.trained import TrainedScorer

        return TrainedScorer()
    except Exception as err:
        log.warning(kv("sentiment_scorer_fallback", wanted="trained", reason=_reason(err)))
        return None


def make_scorer(settings: Settings, log: logging.Logger, store=None) -> SentimentScorer:
    """The configured scorer (see the module docstring), wrapped in an in-memory cache."""
    choice = settings.sentiment_scorer
    inner: SentimentScorer | None = None
    kind = "lexicon"
    if choice in ("auto", "finbert"):
        inner, kind = _finbert(settings, log, store), "finbert"
    if inner is None and choice in ("auto", "finbert", "trained"):
        inner, kind = _trained(log), "trained"
    if inner is None:
        inner, kind = VaderScorer(), "lexicon"
    scorer = CachedScorer(inner)
    log.info(kv("sentiment_scorer", scorer=kind, scorer_id=scorer.scorer_id, requested=choice,
                sqlite_cache=type(inner).__name__ == "PersistentScorer"))
    return scorer
