"""A finance-tuned offline sentiment scorer: TF-IDF n-grams + logistic regression (scikit-learn).

The default scorer when FinBERT is not available. Trained on ``data/sentiment_train.csv``
(Twitter Financial News Sentiment, 9,543 labelled finance texts; see ``data/PROVENANCE.md``)
by ``tracer sentiment train``, which writes the fitted pipeline (``models/sentiment_tfidf_lr.joblib``)
and its cross-validated metrics (``models/metrics.json``) into the package.

Model::

    x      = prepare(text)                       (URLs dropped, whitespace collapsed, lower case)
    phi(x) = [tfidf_word_1-2grams(x), tfidf_char_wb_2-5grams(x),    (sublinear tf, min_df 2)
              vader_compound(text), vader_pos(text), vader_neg(text)]  (lexicon scorer, see below)
    p(c|x) = softmax_c(W phi(x) + b)             multinomial logistic regression, C = 4,
                                                 balanced class weights, newton-cg, random_state 0
    score  = p(positive|x) - p(negative|x)       in [-1, 1], as FinBERT's
    label  = argmax_c p(c|x)

The three lexicon features are VADER with the crypto lexicon of
:mod:`tracer.sentiment.lexicon`, so the regression learns how far to trust the hand-set market
words ("bearish", "hacked", "sues") that the mostly-equities training set rarely shows; on the
same 5 folds they raise accuracy and macro-F1 a little (see ``metrics.json``). The lexicon's
``scorer_id`` is stored in the model; loading it under another lexicon version fails (and the
factory falls back), so a changed lexicon never silently changes the model.

The model is loaded once per process (:func:`load_model` is memoised by path), and only when a text
is scored if the metrics JSON saved with it vouches for the file and the installed scikit-learn
(:class:`LazyPipeline`: a run whose headlines all come from a score cache never imports
scikit-learn); no network.
``scorer_id`` is ``tfidf-lr@<first 12 hex of the model file's sha256>`` so scores of
different fits never mix in the DB.

Training is a pure function of the CSV and the seed (:func:`train`): the same data and seed
give the same predictions. Cross-validation uses stratified 5-fold splits and reports the
lexicon scorer (:class:`~tracer.sentiment.lexicon.VaderScorer`, labelled by its documented
thresholds) on the same folds.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tracer.models import Score

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_PATH = PACKAGE_DIR / "data" / "sentiment_train.csv"
MODEL_DIR = PACKAGE_DIR / "models"
MODEL_FILE = "sentiment_tfidf_lr.joblib"
METRICS_FILE = "metrics.json"
LABELS = ("negative", "neutral", "positive")
SEED = 0

_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_SPACE = re.compile(r"\s+")

#: Crypto headlines with the sign a trader would give them (+1 / -1 / 0). The first four are the
#: short phrases the lexicon scorer was known to miss; the rest are real titles from the bundled
#: ``tracer/data/bundled/headlines.csv``. Used only to report how the model, trained mostly on
#: equities news, transfers to crypto (``crypto_check`` in the metrics JSON).
CRYPTO_CHECK: tuple[tuple[str, int], ...] = (
    ("Exchange hacked", -1),
    ("SEC sues crypto exchange", -1),
    ("Analysts turn bearish on Bitcoin", -1),
    ("Bitcoin surges", +1),
    ("Celsius Crashes 50% As the Platform Halts Withdrawals due to 'Extreme Market Conditions'", -1),
    ("Terra Founder Do Kwon's Twitter Goes Private as LUNA Plunges 20%", -1),
    ("Reliably unreliable: Solana price dives after latest network outage", -1),
    ("DeFiance Capital founder loses $1.6M in hot wallet hack", -1),
    ("Hacker Steals USD 15M from Crypto.com, Say Analysts", -1),
    ("Terra Co-Founders Face Lawsuit from Korean UST and LUNA Investors", -1),
    ("WeChat Bans All Crypto-Related Content Following ToS Update", -1),
    ("Bearish chart pattern hints at $70 Solana (SOL) price before a possible oversold bounce", -1),
    ("BTC price falls to $34K as Bitcoin RSI reaches most 'oversold' since March 2020 crash", -1),
    ("Immutable X (IMX) price soars after GameStop partnership and new project launches", +1),
    ("Unique Cardano (ADA) Wallets Surge to Record High Above 3 Million", +1),
    ("Fantom Rallies as TVL Reaches All-Time High, Key Price Level in Sight", +1),
    ("Ethereum Scaling Platform Loopring Soars on New GameStop NFT Partnership", +1),
    ("Bitcoin Hash Rate Recovers to New All-Time Highs", +1),
    ("SOL price eyes 75% rally as Solana paints a bullish reversal pattern", +1),
    ("CRO Rallies as Crypto.com Scores USD 700M Arena Deal", +1),
    ("Solana Pay Launches Into Crowded Digital Payments Space", 0),
    ("Dogecoin Themed Burger Joint Launches In Dubai", 0),
)


def prepare(text: str) -> str:
    """The text the model sees: URLs removed, whitespace collapsed, lower case."""
    return _SPACE.sub(" ", _URL.sub(" ", text)).strip().lower()


def read_dataset(path: Path = DATA_PATH) -> tuple[list[str], list[str]]:
    """(texts, labels) from a ``text,label`` CSV (a real CSV parser: texts may hold newlines)."""
    texts: list[str] = []
    labels: list[str] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            label = row["label"].strip().lower()
            if label not in LABELS:
                raise ValueError(f"{path}: unknown label {row['label']!r}")
            texts.append(row["text"])
            labels.append(label)
    return texts, labels


_LEXICON: Any = None


def _lexicon():
    global _LEXICON
    if _LEXICON is None:
        from tracer.sentiment.lexicon import VaderScorer

        _LEXICON = VaderScorer()
    return _LEXICON


def lexicon_features(texts: Sequence[str], lexicon_id: str = "") -> np.ndarray:
    """(n, 3) array of VADER's compound, pos and neg scores (crypto lexicon) of the raw texts.

    ``lexicon_id`` is the lexicon scorer's id when the model was fitted; another id raises
    RuntimeError (the model would silently change meaning).
    """
    vader = _lexicon()
    if lexicon_id and lexicon_id != vader.scorer_id:
        raise RuntimeError(f"the model was fitted with lexicon {lexicon_id}, this is {vader.scorer_id}: "
                           f"run `tracer sentiment train`")
    rows = []
    for t in texts:
        d = vader._analyzer.polarity_scores(t)
        rows.append((d["compound"], d["pos"], d["neg"]))
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 3)


def build_pipeline(seed: int = SEED):
    """The unfitted scikit-learn pipeline (see the module docstring for the formula)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.preprocessing import FunctionTransformer

    features = FeatureUnion([
        ("word", TfidfVectorizer(preprocessor=prepare, analyzer="word", ngram_range=(1, 2), min_df=2,
                                 sublinear_tf=True, token_pattern=r"(?u)\$?\b\w+\b", dtype=np.float32)),
        ("char", TfidfVectorizer(preprocessor=prepare, analyzer="char_wb", ngram_range=(2, 5), min_df=2,
                                 sublinear_tf=True, max_features=100_000, dtype=np.float32)),
        ("lexicon", FunctionTransformer(lexicon_features, kw_args={"lexicon_id": _lexicon().scorer_id})),
    ])
    clf = LogisticRegression(C=4.0, class_weight="balanced", solver="newton-cg", max_iter=1000,
                             random_state=seed)
    return Pipeline([("features", features), ("clf", clf)])


def fit(texts: Sequence[str], labels: Sequence[str], seed: int = SEED):
    """A fitted pipeline. The vectorisers' ``stop_words_`` (pruned terms, only kept for
    introspection) are dropped so the saved model stays small."""
    pipe = build_pipeline(seed)
    pipe.fit(list(texts), list(labels))
    for _, vec in pipe.named_steps["features"].transformer_list:
        if getattr(vec, "stop_words_", None) is not None:
            del vec.stop_words_
    return pipe


def scores_from_proba(proba: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(p(positive) - p(negative), argmax label) per row of a class-probability matrix."""
    idx = {c: i for i, c in enumerate(classes)}
    value = np.clip(proba[:, idx["positive"]] - proba[:, idx["negative"]], -1.0, 1.0)
    labels = [str(classes[i]) for i in np.argmax(proba, axis=1)]
    return value, labels


# --- evaluation --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FoldScores:
    accuracy: float
    macro_f1: float


def _summary(folds: list[FoldScores]) -> dict[str, Any]:
    acc = np.array([f.accuracy for f in folds])
    f1 = np.array([f.macro_f1 for f in folds])
    return {"accuracy_mean": round(float(acc.mean()), 4), "accuracy_std": round(float(acc.std()), 4),
            "macro_f1_mean": round(float(f1.mean()), 4), "macro_f1_std": round(float(f1.std()), 4),
            "folds": [{"accuracy": round(f.accuracy, 4), "macro_f1": round(f.macro_f1, 4)} for f in folds]}


def cross_validate(texts: Sequence[str], labels: Sequence[str], n_folds: int = 5,
                   seed: int = SEED) -> dict[str, Any]:
    """Stratified k-fold accuracy and macro-F1 of the trained model and of VADER on the same folds."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    from tracer.sentiment.lexicon import VaderScorer

    x = np.array(texts, dtype=object)
    y = np.array(labels, dtype=object)
    vader = VaderScorer()
    vader_labels = np.array([s.label for s in vader.score(list(x))], dtype=object)
    model_folds: list[FoldScores] = []
    vader_folds: list[FoldScores] = []
    for train_idx, test_idx in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(x, y):
        pipe = fit(x[train_idx], y[train_idx], seed)
        pred = pipe.predict(list(x[test_idx]))
        model_folds.append(FoldScores(float(accuracy_score(y[test_idx], pred)),
                                      float(f1_score(y[test_idx], pred, average="macro"))))
        vpred = vader_labels[test_idx]
        vader_folds.append(FoldScores(float(accuracy_score(y[test_idx], vpred)),
                                      float(f1_score(y[test_idx], vpred, average="macro"))))
    return {"n_folds": n_folds, "seed": seed, "trained": _summary(model_folds),
            "lexicon": {"scorer_id": vader.scorer_id, **_summary(vader_folds)}}


_DIRECTION_MIN = 0.05     # |score| that counts as a direction (VADER's own label threshold)


def crypto_check(score_fn, cases: Sequence[tuple[str, int]] = CRYPTO_CHECK) -> dict[str, Any]:
    """Share of ``cases`` scored the expected way: sign(score) = expected with |score| >= 0.05,
    or the label ``neutral`` where 0 is expected."""
    scores = score_fn([t for t, _ in cases])
    rows = []
    hits = 0
    for (text, want), sc in zip(cases, scores):
        ok = (sc.label == "neutral") if want == 0 else (want * sc.value >= _DIRECTION_MIN)
        hits += bool(ok)
        rows.append({"text": text, "expected": want, "score": round(sc.value, 4), "label": sc.label,
                     "ok": bool(ok)})
    return {"n": len(cases), "direction_accuracy": round(hits / len(cases), 4), "cases": rows}


# --- training shell ---------------------------------------------------------------------------
def stratified_subset(texts: Sequence[str], labels: Sequence[str], n: int,
                      seed: int = SEED) -> tuple[list[str], list[str]]:
    """A stratified sample of ``n`` rows (the whole set when n >= its size)."""
    if n >= len(texts):
        return list(texts), list(labels)
    from sklearn.model_selection import train_test_split

    xs, _, ys, _ = train_test_split(list(texts), list(labels), train_size=n, stratify=list(labels),
                                    random_state=seed)
    return list(xs), list(ys)


def train(data_path: Path = DATA_PATH, out_dir: Path = MODEL_DIR, n_folds: int = 5, seed: int = SEED,
          limit: int | None = None, progress=None) -> dict[str, Any]:
    """Cross-validate, fit on all rows, save model + metrics JSON into ``out_dir``; returns the metrics.

    ``limit`` trains on a stratified subset of that many rows (for quick checks); ``n_folds=0``
    skips cross-validation. ``progress`` (optional callable) receives one-line status strings.
    """
    import joblib

    say = progress or (lambda _msg: None)
    texts, labels = read_dataset(data_path)
    if limit is not None:
        texts, labels = stratified_subset(texts, labels, limit, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cv = None
    if n_folds:
        say(f"cross-validating on {len(texts)} texts, {n_folds} folds")
        cv = cross_validate(texts, labels, n_folds, seed)
    say(f"fitting on all {len(texts)} texts")
    pipe = fit(texts, labels, seed)
    model_path = out_dir / MODEL_FILE
    tmp = model_path.with_suffix(".tmp")
    joblib.dump(pipe, tmp, compress=3)
    tmp.replace(model_path)
    forget_loaded_models()
    scorer = TrainedScorer(model_path)
    with open(data_path, "rb") as fh:
        data_sha = hashlib.sha256(fh.read()).hexdigest()
    counts = {c: labels.count(c) for c in LABELS}
    features = pipe.named_steps["features"].transformer_list
    metrics = {
        "scorer_id": scorer.scorer_id,
        "model_file": MODEL_FILE,
        "model_bytes": model_path.stat().st_size,
        "model_sha256": file_sha256(model_path),
        "trained_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sklearn_version": metadata.version("scikit-learn"),
        "data": {"file": data_path.name, "sha256": data_sha, "rows": len(texts), "labels": counts,
                 "limit": limit},
        "model": {"features": {name: len(vec.vocabulary_) if hasattr(vec, "vocabulary_") else 3
                               for name, vec in features},
                  "lexicon_id": _lexicon().scorer_id,
                  "classifier": "LogisticRegression(C=4, class_weight=balanced, solver=newton-cg)",
                  "seed": seed},
        "cross_validation": cv,
        "crypto_check": {"trained": crypto_check(scorer.score),
                         "lexicon": crypto_check(_vader_score)},
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def _vader_score(texts: Sequence[str]) -> list[Score]:
    from tracer.sentiment.lexicon import VaderScorer

    return VaderScorer().score(texts)


# --- the scorer ---------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_LOAD_LOCK = threading.Lock()
_LOADED: dict[Path, tuple[Any, str]] = {}


def _unpickle(path: Path) -> Any:
    """The fitted pipeline from ``path``; RuntimeError when another scikit-learn version saved it."""
    import joblib
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            return joblib.load(path)
        except InconsistentVersionWarning as w:
            raise RuntimeError(f"{path} was saved by scikit-learn {w.original_sklearn_version}, "
                               f"this is {w.current_sklearn_version}: run `tracer sentiment train`") from None


class LazyPipeline:
    """The fitted pipeline of a model file, unpickled on first use (attribute access is delegated).

    Importing scikit-learn and unpickling the model take about 1.5 s; a process whose headlines are all
    in a score cache (a repeated backtest) never needs either. Used only for a file that
    :func:`_vouched_classes` vouches for, so the deferred load cannot fail on the version check.
    """

    __slots__ = ("path", "known_classes", "_pipe", "_lock")

    def __init__(self, path: Path, known_classes: Sequence[str]) -> None:
        self.path, self.known_classes = path, list(known_classes)
        self._pipe: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    def pipeline(self) -> Any:
        if self._pipe is None:
            with self._lock:
                if self._pipe is None:
                    self._pipe = _unpickle(self.path)
        return self._pipe

    def __getattr__(self, name: str) -> Any:
        if name in LazyPipeline.__slots__ or name.startswith("__"):      # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.pipeline(), name)


def _vouched_classes(path: Path, sha: str) -> list[str] | None:
    """The model's classes when the metrics JSON written with it (by :func:`train`) names this very file
    (its sha256) and the installed scikit-learn version; else None (then the model is loaded eagerly)."""
    try:
        m = json.loads((path.parent / METRICS_FILE).read_text(encoding="utf-8"))
        labels = sorted(m["data"]["labels"])
        ok = (m["model_sha256"] == sha and m["sklearn_version"] == metadata.version("scikit-learn")
              and labels == sorted(LABELS))
    except (OSError, ValueError, KeyError, TypeError, metadata.PackageNotFoundError):
        return None
    return labels if ok else None


def load_model(path: Path = MODEL_DIR / MODEL_FILE) -> tuple[Any, str]:
    """(fitted pipeline, sha256 of the file), loaded once per process and path.

    Raises FileNotFoundError when the file is missing, RuntimeError when it was saved by another
    scikit-learn minor version (a pickle is only reliable within one version). When the metrics JSON
    saved with the model vouches for the file and the installed scikit-learn, the pipeline is a
    :class:`LazyPipeline`, unpickled on first use.
    """
    path = Path(path).resolve()
    with _LOAD_LOCK:
        if path not in _LOADED:
            if not path.is_file():
                raise FileNotFoundError(f"sentiment model {path} not found (run `tracer sentiment train`)")
            sha = file_sha256(path)
            classes = _vouched_classes(path, sha)
            _LOADED[path] = (LazyPipeline(path, classes) if classes else _unpickle(path), sha)
        return _LOADED[path]


def forget_loaded_models() -> None:
    """Drop the per-process model memo (after a retrain wrote a new file)."""
    with _LOAD_LOCK:
        _LOADED.clear()


class TrainedScorer:
    """:class:`~tracer.sentiment.scorer.SentimentScorer` backed by the shipped TF-IDF + LR model.

    score = p(positive) - p(negative); label = the most probable class.
    """

    def __init__(self, path: Path = MODEL_DIR / MODEL_FILE) -> None:
        self._pipe, sha = load_model(path)
        known = self._pipe.known_classes if isinstance(self._pipe, LazyPipeline) else None
        classes = known or [str(c) for c in self._pipe.classes_]
        if sorted(classes) != sorted(LABELS):
            raise RuntimeError(f"{path}: model classes {classes} are not {list(LABELS)}")
        self._classes: list[str] | None = None if known else classes
        self.scorer_id: str = f"tfidf-lr@{sha[:12]}"

    def score(self, texts: Sequence[str]) -> list[Score]:
        if not texts:
            return []
        if self._classes is None:
            self._classes = [str(c) for c in self._pipe.classes_]
        proba = self._pipe.predict_proba(list(texts))
        values, labels = scores_from_proba(proba, self._classes)
        return [Score(value=float(v), label=lab, scorer_id=self.scorer_id) for v, lab in zip(values, labels)]
