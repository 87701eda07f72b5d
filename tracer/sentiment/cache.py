"""A persistent sentiment-score cache in SQLite: a headline is scored once in its life per model.

Key: ``(model_id, sha256(normalise_text(text)))`` in the ``sentiment_cache`` table of the
project DB (schema v3). ``normalise_text`` is Unicode NFKC, whitespace runs collapsed to one
space, stripped; case is kept (a cased model may read "US" and "us" differently). The wrapped
scorer is given the *normalised* text, so a cached score is exactly what the model would give.

:class:`ScoreCache` is the SQL shell (one table, no logic); :class:`PersistentScorer` wraps any
:class:`~tracer.sentiment.scorer.SentimentScorer`: texts found in the DB are not sent to the
model, the rest are scored in one batch and written. Put a
:class:`~tracer.sentiment.scorer.CachedScorer` in front of it for an in-memory layer.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime, timezone
from typing import Iterable, Sequence

from tracer.models import Score
from tracer.sentiment.scorer import LABELS, SentimentScorer

_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """NFKC, whitespace collapsed to single spaces, stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def text_hash(text: str) -> str:
    """sha256 hex digest of the UTF-8 bytes of :func:`normalise_text` (text)."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


class ScoreCache:
    """Reads and writes the ``sentiment_cache`` table through a :class:`tracer.store.Store`."""

    def __init__(self, store) -> None:
        self._store = store

    def get_many(self, model_id: str, hashes: Sequence[str]) -> dict[str, tuple[float, str]]:
        """{text_hash: (score, label)} for the hashes stored under ``model_id``."""
        return self._store.sentiment_scores(model_id, hashes)

    def put_many(self, model_id: str, rows: Iterable[tuple[str, float, str]]) -> int:
        """Store (text_hash, score, label) rows; a key already stored is kept. Returns rows given."""
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        data = [(model_id, h, float(v), lab, now) for h, v, lab in rows]
        if data:
            with self._store.transaction():
                self._store.put_sentiment_scores(data)
        return len(data)

    def count(self, model_id: str | None = None) -> int:
        return self._store.sentiment_count(model_id)


class PersistentScorer:
    """A :class:`SentimentScorer` that asks the DB before the model.

    ``hits`` / ``misses`` count distinct normalised texts per call found / not found in the DB;
    only misses reach ``inner.score`` (in one call, in first-seen order).
    """

    def __init__(self, inner: SentimentScorer, cache: ScoreCache) -> None:
        self.inner = inner
        self.cache = cache
        self.hits = 0
        self.misses = 0

    @property
    def scorer_id(self) -> str:
        return self.inner.scorer_id

    def score(self, texts: Sequence[str]) -> list[Score]:
        model_id = self.inner.scorer_id
        norm = [normalise_text(t) for t in texts]
        keys = [hashlib.sha256(n.encode("utf-8")).hexdigest() for n in norm]
        unique: dict[str, str] = dict(zip(keys, norm))          # hash -> normalised text, first seen
        known = self.cache.get_many(model_id, list(unique))
        todo = [h for h in unique if h not in known]
        self.hits += len(unique) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = self.inner.score([unique[h] for h in todo])
            if len(fresh) != len(todo):
                raise RuntimeError(f"scorer {model_id!r} returned {len(fresh)} scores for {len(todo)} texts")
            for sc in fresh:
                if sc.label not in LABELS or not -1.0 <= sc.value <= 1.0:
                    raise RuntimeError(f"scorer {model_id!r} returned an invalid score {sc!r}")
            self.cache.put_many(model_id, [(h, sc.value, sc.label) for h, sc in zip(todo, fresh)])
            known.update({h: (sc.value, sc.label) for h, sc in zip(todo, fresh)})
        return [Score(value=known[h][0], label=known[h][1], scorer_id=model_id) for h in keys]


_SCORER_SOURCES = ("scorer.py", "lexicon.py", "trained.py", "finbert.py")


def scorer_code_fingerprint() -> str:
    """sha256 (first 16 hex) of the scorers' source files and the installed vaderSentiment version: what,
    besides a model file, decides a score."""
    from importlib import metadata
    from pathlib import Path

    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _SCORER_SOURCES:
        try:
            h.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
        except OSError:
            h.update(name.encode() + b"\0missing\0")
    try:
        h.update(metadata.version("vaderSentiment").encode())
    except metadata.PackageNotFoundError:
        h.update(b"no-vader")
    return h.hexdigest()[:16]


class ScoreFile:
    """Scores by exact text for one scorer, in a JSON file of a cache directory (the backtest's cache).

    File ``<directory>/<scorer_id, sanitised>-<sha256(scorer_id)[:8]>.json`` holding
    ``{"scorer_id": ..., "code": ..., "scores": {text: [value, label]}}``; values are written with ``repr``
    precision, so a cached score is the float the model gave. :meth:`score` sends the texts the file lacks
    to the scorer in one batch, then rewrites the file atomically (a temp file renamed over it).

    Stale scores are ruled out twice: the scorer id names the model and its version (the trained model's
    carries its file's hash), and ``code`` is :func:`scorer_code_fingerprint` (the scorers' source files and
    the VADER package version), so an edited lexicon or scorer empties the file even if nobody bumped an id.
    A file that cannot be read counts as empty; one that cannot be written leaves the scores uncached.
    """

    def __init__(self, directory) -> None:
        from pathlib import Path

        self.directory = Path(directory)
        self.code = scorer_code_fingerprint()
        self.hits = 0
        self.misses = 0

    def path(self, scorer_id: str):
        safe = re.sub(r"[^A-Za-z0-9._@+-]", "_", scorer_id)[:80]
        return self.directory / f"{safe}-{hashlib.sha256(scorer_id.encode('utf-8')).hexdigest()[:8]}.json"

    def load(self, scorer_id: str) -> dict[str, tuple[float, str]]:
        import json

        try:
            data = json.loads(self.path(scorer_id).read_text(encoding="utf-8"))
            if data.get("scorer_id") != scorer_id or data.get("code") != self.code:
                return {}
            return {str(t): (float(v), str(lab)) for t, (v, lab) in data["scores"].items()
                    if lab in LABELS and -1.0 <= float(v) <= 1.0}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def save(self, scorer_id: str, scores: dict[str, tuple[float, str]]) -> bool:
        import json
        import os

        path = self.path(scorer_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            from tracer.logs import private_write_text
            private_write_text(tmp, json.dumps({"scorer_id": scorer_id, "code": self.code,
                                                "scores": {t: [v, lab] for t, (v, lab) in scores.items()}}))
            os.replace(tmp, path)
            return True
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass
            return False

    def score(self, scorer: SentimentScorer, texts: Sequence[str]) -> list[Score]:
        """One Score per text, in order, as ``scorer.score`` gives them; only texts the file lacks
        reach the scorer (in one call, each distinct text once, in first-seen order). A score outside
        [-1, 1] or with an unknown label is passed on but not stored."""
        model_id = scorer.scorer_id
        known = self.load(model_id)
        todo = list(dict.fromkeys(t for t in texts if t not in known))
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        out = {t: Score(value=v, label=lab, scorer_id=model_id) for t, (v, lab) in known.items()}
        if todo:
            fresh = scorer.score(todo)
            if len(fresh) != len(todo):
                raise RuntimeError(f"scorer {model_id!r} returned {len(fresh)} scores for {len(todo)} texts")
            for t, sc in zip(todo, fresh):
                sc = Score(value=float(sc.value), label=sc.label, scorer_id=model_id)
                out[t] = sc
                if sc.label in LABELS and -1.0 <= sc.value <= 1.0:
                    known[t] = (sc.value, sc.label)
            self.save(model_id, known)
        return [out[t] for t in texts]
