"""Lexicon sentiment: VADER with a small crypto/finance lexicon update.

VADER (Hutto & Gilbert 2014) is a rule-based scorer; its ``compound`` score is already
normalised to [-1, 1]. We use it as shipped (rules, boosters, negation, the standard
lexicon) except for :data:`CRYPTO_LEXICON`, a **tuned lexicon**: a few market words VADER
lacks (``bullish``, ``surges``, ``plunges``, ``liquidation`` ...) or rates for everyday
English rather than for markets (``exploit`` -0.4, i.e. "make use of", is a hack here).
Valences are on VADER's -4..+4 scale; the entries are set by hand, not fitted.

Labels use VADER's documented thresholds: positive if compound >= 0.05, negative if
compound <= -0.05, else neutral.
"""
from __future__ import annotations

from importlib import metadata
from types import MappingProxyType
from typing import Mapping, Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from tracer.models import Score

POS_THRESHOLD = 0.05
NEG_THRESHOLD = -0.05

#: Tuned crypto/finance entries merged into VADER's lexicon (overrides the standard value where
#: VADER already has the word: crash -1.7, dump -1.6, ban -2.6, exploit -0.4, lawsuit -0.9 ...).
CRYPTO_LEXICON: Mapping[str, float] = MappingProxyType({
    # positive
    "bullish": 2.0,
    "surge": 1.5, "surges": 1.5, "surged": 1.5, "surging": 1.5,
    "soar": 2.0, "soars": 2.0, "soared": 2.0, "soaring": 2.0,
    "rally": 1.5, "rallies": 1.5, "rallied": 1.5, "rallying": 1.5,
    # negative
    "bearish": -2.0,
    "plunge": -2.0, "plunges": -2.0, "plunged": -2.0, "plunging": -2.0,
    "crash": -2.0, "crashes": -2.0, "crashed": -2.0, "crashing": -2.0,
    "dump": -1.5, "dumps": -1.5, "dumped": -1.5, "dumping": -1.5,
    "hack": -2.0, "hacks": -2.0, "hacked": -2.0, "hacker": -1.5, "hackers": -1.5,
    "exploit": -2.0, "exploits": -2.0, "exploited": -2.0,
    "liquidation": -1.5, "liquidations": -1.5, "liquidated": -1.5,
    "sue": -1.5, "sues": -1.5, "sued": -1.5, "lawsuit": -1.5, "lawsuits": -1.5,
    "ban": -2.0, "bans": -2.0, "banned": -2.0,
    "bankrupt": -2.5, "bankruptcy": -2.5,
    "collapse": -2.2, "collapses": -2.2, "collapsed": -2.2,
})


def _vader_version() -> str:
    try:
        return "vader-" + metadata.version("vaderSentiment")
    except metadata.PackageNotFoundError:
        return "vader"


def label_for(compound: float) -> str:
    if compound >= POS_THRESHOLD:
        return "positive"
    if compound <= NEG_THRESHOLD:
        return "negative"
    return "neutral"


class VaderScorer:
    """:class:`~tracer.sentiment.scorer.SentimentScorer` backed by VADER's compound score.

    The analyzer is built once per instance (it parses the lexicon file) and its lexicon is
    updated with ``lexicon_update`` (default :data:`CRYPTO_LEXICON`; pass ``{}`` for plain
    VADER). The update is local to this instance.
    """

    def __init__(self, lexicon_update: Mapping[str, float] | None = None) -> None:
        # The lexicon version is part of the id, so scores from different lexicons never mix.
        self.scorer_id: str = _vader_version() + ("+crypto1" if lexicon_update is None else
                                                  ("" if not lexicon_update else "+custom"))
        self._analyzer = SentimentIntensityAnalyzer()
        update = CRYPTO_LEXICON if lexicon_update is None else lexicon_update
        self._analyzer.lexicon.update({w.lower(): float(v) for w, v in update.items()})

    def score(self, texts: Sequence[str]) -> list[Score]:
        out: list[Score] = []
        for text in texts:
            compound = float(self._analyzer.polarity_scores(text)["compound"])
            compound = min(1.0, max(-1.0, compound))
            out.append(Score(value=compound, label=label_for(compound), scorer_id=self.scorer_id))
        return out
