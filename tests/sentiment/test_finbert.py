"""FinBERT scorer: the real transformers code path on a tiny randomly initialised BERT classifier.

The model and its tokenizer are built here and saved to a temp dir (no download); loading,
batching, label mapping, quantisation, the SQLite cache, the factory fallback and the CLI run
exactly as they would with ProsusAI/finbert.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tracer.config import load_settings  # noqa: E402
from tracer.store import Store  # noqa: E402
from tracer.sentiment.cache import PersistentScorer, ScoreCache, normalise_text, text_hash  # noqa: E402
from tracer.sentiment.factory import make_scorer  # noqa: E402
from tracer.sentiment.finbert import FinBertScorer, is_local_path, label_indices, scores_from_probs  # noqa: E402
from tracer.sentiment.scorer import CachedScorer, SentimentScorer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("bitcoin ether solana price surges plunges rallies crashes exchange hacked sec sues "
         "record high low after the a to of as on in is new funds stolen bullish bearish market "
         "partnership launches outage withdrawals halts token whale buys sells etf approval").split()
TEXTS = [
    "Bitcoin surges to a record high",
    "Exchange hacked, funds stolen",
    "SEC sues exchange",
    "Solana outage halts withdrawals",
    "Ether price rallies after ETF approval",
    "whale sells",
    "bearish",
    "Bitcoin price plunges as the market crashes after a new token launches on the exchange",
    "partnership",
    "A whale buys bitcoin",
]
LABELS_A = {0: "positive", 1: "negative", 2: "neutral"}


def _build(dst: Path, id2label: dict[int, str], seed: int = 1) -> Path:
    """Save a tiny random BERT classifier + a tokenizer from our own vocab to ``dst``."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)   # NOT vocab_file=: ignored in transformers 5
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, initializer_range=0.1,
                     num_labels=len(id2label), id2label=id2label,
                     label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg)
    model.eval()
    tok.save_pretrained(dst)
    model.save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("tiny_bert"), LABELS_A)


@pytest.fixture(scope="module")
def scorer(model_dir) -> FinBertScorer:
    return FinBertScorer(str(model_dir), batch_size=4)


def _settings(**env):
    return load_settings(environ={k: str(v) for k, v in env.items()}, dotenv_path=None)


# ------------------------------------------------------------------------------ pure helpers

def test_label_indices_read_from_config_case_insensitively():
    assert label_indices({0: "Positive", 1: "NEGATIVE", 2: "neutral"}) == {"positive": 0, "negative": 1, "neutral": 2}
    assert label_indices({"0": "bearish", "1": "Bullish"}) == {"negative": 0, "positive": 1}
    with pytest.raises(ValueError, match="LABEL_0"):
        label_indices({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    with pytest.raises(ValueError, match="no positive"):
        label_indices({0: "negative", 1: "neutral"})
    with pytest.raises(ValueError, match="two model labels"):
        label_indices({0: "pos", 1: "positive", 2: "negative"})


def test_scores_from_probs_is_p_pos_minus_p_neg():
    probs = np.array([[0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])       # columns: neutral, positive, negative
    value, labels = scores_from_probs(probs, {"neutral": 0, "positive": 1, "negative": 2})
    assert value == pytest.approx([0.6, -0.3])
    assert labels == ["positive", "neutral"]


def test_hub_ids_and_paths_are_told_apart(tmp_path):
    assert not is_local_path("ProsusAI/finbert")
    assert is_local_path(str(tmp_path / "finbert"))
    assert is_local_path("./models/finbert")


def test_normalised_text_hash():
    assert normalise_text("  Bitcoin\u00a0surges \n today ") == "Bitcoin surges today"
    assert text_hash("Bitcoin  surges") == text_hash(" Bitcoin surges\n")
    assert text_hash("Bitcoin surges") != text_hash("bitcoin surges")      # case kept (cased models)


# ---------------------------------------------------------------------------- the real model

def test_tokenizer_knows_the_vocab(scorer):
    ids = scorer.tokenizer("bitcoin surges after sec approval")["input_ids"]
    unk = scorer.tokenizer.unk_token_id
    assert unk not in ids
    assert len(ids) == 5 + 2                                        # [CLS] ... [SEP]
    assert scorer.tokenizer.convert_tokens_to_ids("bitcoin") == len(SPECIAL) + WORDS.index("bitcoin")


def test_scores_are_valid_and_vary(scorer):
    assert isinstance(scorer, SentimentScorer)
    assert scorer.scorer_id.startswith("finbert:tiny_bert")
    out = scorer.score(TEXTS)
    assert len(out) == len(TEXTS)
    values = np.array([s.value for s in out])
    assert ((values >= -1) & (values <= 1)).all()
    assert {s.label for s in out} <= {"positive", "negative", "neutral"}
    assert values.std() > 0.01                       # a real model, not a constant
    probs = scorer.probabilities(TEXTS)
    assert probs.sum(axis=1) == pytest.approx(np.ones(len(TEXTS)))
    assert values == pytest.approx(probs[:, 0] - probs[:, 1])        # LABELS_A: 0 pos, 1 neg


def test_batching_gives_the_same_scores_as_one_by_one(model_dir, scorer):
    one = FinBertScorer(str(model_dir), batch_size=1)
    batched = scorer.probabilities(TEXTS)
    single = np.vstack([one.probabilities([t]) for t in TEXTS])
    assert batched == pytest.approx(single, abs=1e-5)
    calls = scorer.calls
    scorer.probabilities(TEXTS)
    assert scorer.calls - calls == 3                                  # ceil(10 / 4) forward passes


def test_truncates_to_64_tokens(scorer):
    long = " ".join(["bitcoin surges"] * 40)                          # 80 words
    a, b = scorer.score([long, long + " crashes plunges hacked"])
    assert a.value == pytest.approx(b.value, abs=1e-6)                # words past 64 tokens are cut


def test_label_order_comes_from_the_config(tmp_path, scorer):
    # same weights (same seed), positive and negative swapped in id2label: score flips sign
    swapped = _build(tmp_path / "swapped", {0: "negative", 1: "positive", 2: "neutral"})
    other = FinBertScorer(str(swapped), batch_size=4)
    a = np.array([s.value for s in scorer.score(TEXTS)])
    b = np.array([s.value for s in other.score(TEXTS)])
    assert np.abs(a).max() > 0.01
    assert b == pytest.approx(-a, abs=1e-6)
    flip = {"positive": "negative", "negative": "positive", "neutral": "neutral"}
    assert [s.label for s in other.score(TEXTS)] == [flip[s.label] for s in scorer.score(TEXTS)]
    assert other.scorer_id != scorer.scorer_id                        # config differs -> fingerprint differs


def test_unmappable_labels_are_refused(tmp_path):
    d = _build(tmp_path / "generic", {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    with pytest.raises(ValueError, match="LABEL_0"):
        FinBertScorer(str(d))


def test_int8_quantisation_stays_within_001_of_fp32(model_dir, scorer):
    q = FinBertScorer(str(model_dir), batch_size=4, quantize=True)
    assert q.scorer_id.endswith("+int8") and q.scorer_id != scorer.scorer_id
    assert any("quantized.dynamic" in type(m).__module__ for m in q.model.modules())
    assert not any("quantized" in type(m).__module__ for m in scorer.model.modules())
    p32 = scorer.probabilities(TEXTS)
    p8 = q.probabilities(TEXTS)
    assert np.ptp(p32[:, 0]) > 0.02                                   # outputs differ across texts
    assert np.abs(p8 - p32).max() < 0.01
    assert np.abs(p8 - p32).max() > 0                                 # it really ran in int8


def test_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FinBertScorer(str(tmp_path / "nope"))


# --------------------------------------------------------------------------------- caching

def test_sqlite_cache_scores_a_headline_once_across_restarts(tmp_path, model_dir):
    db = tmp_path / "tracer.db"
    store = Store(db)
    first = FinBertScorer(str(model_dir), batch_size=8)
    s1 = PersistentScorer(first, ScoreCache(store))
    out1 = s1.score(TEXTS + TEXTS[:2])                                # duplicates scored once
    assert first.texts_scored == len(TEXTS)
    assert ScoreCache(store).count(first.scorer_id) == len(TEXTS)
    store.close()

    store2 = Store(db)                                                # a restart: new DB handle, new model
    second = FinBertScorer(str(model_dir), batch_size=8)
    s2 = CachedScorer(PersistentScorer(second, ScoreCache(store2)))
    spaced = ["  " + t.replace(" ", "  ") + "\n" for t in TEXTS]     # same normalised text
    out2 = s2.score(spaced)
    assert second.calls == 0 and second.texts_scored == 0
    assert [s.value for s in out2] == pytest.approx([s.value for s in out1[:len(TEXTS)]])
    assert all(s.scorer_id == second.scorer_id for s in out2)

    s2.score(spaced + ["whale buys ether"])                           # one new text -> one model text
    assert second.texts_scored == 1
    s2.score(["whale buys ether"])                                    # in-memory layer: no DB, no model
    assert second.texts_scored == 1 and s2.hits >= 1
    store2.close()


def test_cache_keys_include_the_model_id(tmp_path, model_dir):
    store = Store(tmp_path / "t.db")
    fp32 = FinBertScorer(str(model_dir))
    int8 = FinBertScorer(str(model_dir), quantize=True)
    PersistentScorer(fp32, ScoreCache(store)).score(TEXTS[:3])
    PersistentScorer(int8, ScoreCache(store)).score(TEXTS[:3])
    assert int8.texts_scored == 3                                     # another model id: scored again
    assert ScoreCache(store).count() == 6
    store.close()


# --------------------------------------------------------------------------------- factory

def test_factory_uses_finbert_with_sqlite_cache(tmp_path, model_dir, caplog):
    store = Store(tmp_path / "t.db")
    log = logging.getLogger("test.finbert.factory")
    with caplog.at_level(logging.INFO, logger=log.name):
        s = make_scorer(_settings(TB_FINBERT_MODEL=model_dir, TB_FINBERT_BATCH=4), log, store)
    assert isinstance(s, CachedScorer) and isinstance(s.inner, PersistentScorer)
    assert s.scorer_id.startswith("finbert:")
    assert "scorer=finbert" in caplog.text and "fallback" not in caplog.text
    s.score(TEXTS[:2])
    assert ScoreCache(store).count(s.scorer_id) == 2
    store.close()


def test_factory_falls_back_to_the_trained_model_when_the_dir_is_missing(tmp_path, caplog):
    store = Store(tmp_path / "t.db")
    log = logging.getLogger("test.finbert.fallback")
    missing = tmp_path / "no_such_model"
    with caplog.at_level(logging.INFO, logger=log.name):
        s = make_scorer(_settings(TB_FINBERT_MODEL=missing), log, store)
    assert s.scorer_id.startswith("tfidf-lr@")
    fallbacks = [r for r in caplog.records if "sentiment_scorer_fallback" in r.getMessage()]
    assert len(fallbacks) == 1 and fallbacks[0].levelno == logging.WARNING
    assert "does not exist" in fallbacks[0].getMessage() and "wanted=finbert" in fallbacks[0].getMessage()
    assert "scorer=trained" in caplog.text
    values = [x.value for x in s.score(["Exchange hacked, funds stolen", "Bitcoin surges to a record high"])]
    assert values[0] < 0 < values[1]                                  # a real scorer, not a constant
    store.close()


def test_factory_explicit_choices(tmp_path, model_dir, caplog):
    log = logging.getLogger("test.finbert.choices")
    assert make_scorer(_settings(TB_SENTIMENT_SCORER="lexicon", TB_FINBERT_MODEL=model_dir), log).scorer_id \
        .startswith("vader")
    assert make_scorer(_settings(TB_SENTIMENT_SCORER="trained", TB_FINBERT_MODEL=model_dir), log).scorer_id \
        .startswith("tfidf-lr@")
    with caplog.at_level(logging.WARNING, logger=log.name):
        s = make_scorer(_settings(TB_SENTIMENT_SCORER="finbert"), log)
    assert s.scorer_id.startswith("tfidf-lr@") and "TB_FINBERT_MODEL is empty" in caplog.text


# -------------------------------------------------------------------------------------- CLI

def _cli(tmp_path: Path, stdin: str, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    e.update({"TB_DB_PATH": str(tmp_path / "cli.db"), "TB_LOG_DIR": str(tmp_path / "logs")})
    e.update({k: str(v) for k, v in env.items()})
    (tmp_path / "none.env").touch()        # an empty .env (a named one must exist)
    return subprocess.run([sys.executable, "-m", "tracer.cli", "--env-file", str(tmp_path / "none.env"),
                           "sentiment"], input=stdin, capture_output=True, text=True, env=e, cwd=REPO,
                          timeout=120)


def test_cli_scores_stdin_as_json_lines(tmp_path, model_dir, scorer):
    stdin = "Bitcoin surges to a record high\n\nExchange hacked, funds stolen\nSEC sues exchange\n"
    r = _cli(tmp_path, stdin, TB_FINBERT_MODEL=model_dir)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["text"] for row in rows] == ["Bitcoin surges to a record high", "Exchange hacked, funds stolen",
                                            "SEC sues exchange"]
    assert all(set(row) == {"text", "score", "label", "scorer"} for row in rows)
    assert {row["scorer"] for row in rows} == {scorer.scorer_id}
    want = scorer.score([row["text"] for row in rows])
    assert [row["score"] for row in rows] == pytest.approx([w.value for w in want], abs=1e-6)
    assert [row["label"] for row in rows] == [w.label for w in want]
    assert "scorer=finbert" in r.stderr
    # a second run reads the scores from the SQLite cache written by the first
    store = Store(tmp_path / "cli.db")
    assert ScoreCache(store).count(scorer.scorer_id) == 3
    store.close()
