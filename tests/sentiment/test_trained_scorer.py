"""The shipped TF-IDF + logistic-regression sentiment model and its training command."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tracer.config import load_settings
from tracer.sentiment import trained
from tracer.sentiment.factory import make_scorer
from tracer.sentiment.scorer import CachedScorer, SentimentScorer
from tracer.sentiment.trained import (
    METRICS_FILE, MODEL_DIR, MODEL_FILE, TrainedScorer, file_sha256, lexicon_features, load_model,
    prepare, scores_from_proba, stratified_subset, train,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = [
    "Shares plunge after the company cuts its full-year guidance",
    "Stock soars after record quarterly profit beats estimates",
    "Company announces date of annual shareholder meeting",
    "Exchange hacked, $100M in tokens stolen",
    "SEC sues crypto lender over unregistered securities",
    "Bitcoin surges to a new all-time high",
]


@pytest.fixture(scope="module")
def shipped() -> TrainedScorer:
    return TrainedScorer()


def _keys(obj, prefix=""):
    """The set of key paths of a JSON object (lists: the keys of their first element)."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(prefix + k)
            out |= _keys(v, prefix + k + ".")
    elif isinstance(obj, list) and obj:
        out |= _keys(obj[0], prefix + "[].")
    return out


# --------------------------------------------------------------------------- pure functions

def test_prepare_drops_urls_and_case():
    assert prepare("$AAPL  Apple beats https://t.co/xyz\nestimates") == "$aapl apple beats estimates"


def test_scores_from_proba_is_p_pos_minus_p_neg():
    proba = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    value, labels = scores_from_proba(proba, ["negative", "neutral", "positive"])
    assert value == pytest.approx([0.6, -0.5])
    assert labels == ["positive", "negative"]


def test_lexicon_features_refuse_another_lexicon_version():
    f = lexicon_features(["bitcoin surges", "exchange hacked"])
    assert f.shape == (2, 3) and f[0, 0] > 0 > f[1, 0]
    with pytest.raises(RuntimeError, match="fitted with lexicon vader-0.0"):
        lexicon_features(["x"], lexicon_id="vader-0.0+other")


# ------------------------------------------------------------------------- the shipped model

def test_shipped_model_is_small_and_named_by_its_hash(shipped):
    path = MODEL_DIR / MODEL_FILE
    assert path.stat().st_size < 5_000_000
    assert isinstance(shipped, SentimentScorer)
    assert shipped.scorer_id == "tfidf-lr@" + file_sha256(path)[:12]


def test_loaded_once_per_process(shipped):
    assert TrainedScorer()._pipe is shipped._pipe
    assert load_model()[0] is shipped._pipe


def test_scores_in_range_and_in_the_right_direction(shipped):
    out = shipped.score(SAMPLE)
    assert [s.scorer_id for s in out] == [shipped.scorer_id] * len(SAMPLE)
    values = [s.value for s in out]
    assert all(-1.0 <= v <= 1.0 for v in values)
    labels = [s.label for s in out]
    assert labels[:3] == ["negative", "positive", "neutral"] and labels[4:] == ["negative", "positive"]
    assert labels[3] != "positive"
    assert values[0] < -0.3 and values[1] > 0.3 and abs(values[2]) < 0.3
    assert values[3] < -0.3 and values[4] < -0.3 and values[5] > 0.3
    assert shipped.score([]) == []


def test_shipped_metrics_match_the_shipped_model():
    m = json.loads((MODEL_DIR / METRICS_FILE).read_text())
    assert m["model_sha256"] == file_sha256(MODEL_DIR / MODEL_FILE)
    assert m["data"]["rows"] == 9543 and m["data"]["limit"] is None
    assert m["data"]["sha256"] == file_sha256(trained.DATA_PATH)
    cv = m["cross_validation"]
    assert cv["n_folds"] == 5 and len(cv["trained"]["folds"]) == 5
    # the trained model beats the lexicon on the same folds, in every fold
    for t, v in zip(cv["trained"]["folds"], cv["lexicon"]["folds"]):
        assert t["macro_f1"] > v["macro_f1"] + 0.1 and t["accuracy"] > v["accuracy"] + 0.1
    assert m["crypto_check"]["trained"]["direction_accuracy"] >= 0.8


def test_missing_model_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="tracer sentiment train"):
        TrainedScorer(tmp_path / "none.joblib")


def test_factory_default_is_the_trained_model(caplog):
    log = logging.getLogger("test.trained.factory")
    with caplog.at_level(logging.INFO, logger=log.name):
        s = make_scorer(load_settings(environ={}, dotenv_path=None), log)
    assert isinstance(s, CachedScorer) and isinstance(s.inner, TrainedScorer)
    assert "event=sentiment_scorer scorer=trained" in caplog.text


def test_factory_falls_back_to_the_lexicon_when_the_model_cannot_load(monkeypatch, caplog):
    def broken(*_a, **_k):
        raise RuntimeError("model.joblib was saved by scikit-learn 0.1")
    monkeypatch.setattr(trained, "load_model", broken)
    log = logging.getLogger("test.trained.fallback")
    with caplog.at_level(logging.INFO, logger=log.name):
        s = make_scorer(load_settings(environ={}, dotenv_path=None), log)
    assert s.scorer_id.startswith("vader")
    assert "wanted=trained" in caplog.text and "scikit-learn 0.1" in caplog.text


# ----------------------------------------------------------------------------- retraining

def test_stratified_subset_keeps_the_label_shares():
    texts, labels = trained.read_dataset()
    sub, sub_labels = stratified_subset(texts, labels, 1000)
    assert len(sub) == 1000 and len(set(sub)) > 990
    for c in set(labels):
        assert sub_labels.count(c) == pytest.approx(labels.count(c) * 1000 / len(labels), abs=1)


def test_retraining_is_reproducible_in_process_and_via_the_cli(tmp_path):
    m1 = train(out_dir=tmp_path / "a", n_folds=2, limit=1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env["TB_DB_PATH"] = str(tmp_path / "t.db")
    (tmp_path / "none.env").touch()        # an empty .env (a named one must exist)
    r = subprocess.run([sys.executable, "-m", "tracer.cli", "--env-file", str(tmp_path / "none.env"), "sentiment",
                        "train", "--limit", "1000", "--folds", "2", "--out", str(tmp_path / "b")],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "macro-F1" in r.stdout and "lexicon" in r.stdout and "wrote" in r.stdout
    m2 = json.loads((tmp_path / "b" / METRICS_FILE).read_text())
    a = TrainedScorer(tmp_path / "a" / MODEL_FILE)
    b = TrainedScorer(tmp_path / "b" / MODEL_FILE)
    assert a._pipe.predict_proba(SAMPLE) == pytest.approx(b._pipe.predict_proba(SAMPLE), abs=1e-12)
    assert m1["cross_validation"] == m2["cross_validation"]
    assert m1["data"]["rows"] == 1000 and m1["data"]["limit"] == 1000
    assert _keys(m1) == _keys(json.loads((MODEL_DIR / METRICS_FILE).read_text()))
    assert m2["scorer_id"] == b.scorer_id and m2["model_sha256"] == file_sha256(tmp_path / "b" / MODEL_FILE)
    # even on 1,000 rows the model beats the lexicon
    assert m1["cross_validation"]["trained"]["macro_f1_mean"] > m1["cross_validation"]["lexicon"]["macro_f1_mean"]
    # the shipped model was not touched
    assert json.loads((MODEL_DIR / METRICS_FILE).read_text())["data"]["rows"] == 9543


def test_cli_scores_with_the_trained_model_by_default(tmp_path, shipped):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TB_")}
    env["TB_DB_PATH"] = str(tmp_path / "t.db")
    (tmp_path / "none.env").touch()        # an empty .env (a named one must exist)
    r = subprocess.run([sys.executable, "-m", "tracer.cli", "--env-file", str(tmp_path / "none.env"), "sentiment"],
                       input="\n".join(SAMPLE) + "\n", capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["text"] for row in rows] == SAMPLE
    assert {row["scorer"] for row in rows} == {shipped.scorer_id}
    assert [row["label"] for row in rows] == [s.label for s in shipped.score(SAMPLE)]
