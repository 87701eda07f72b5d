"""``tracer sentiment``: score texts from stdin; ``tracer sentiment train``: retrain the shipped model.

Scoring reads one text per line (blank lines skipped) and writes one JSON line per text,
``{"text", "score", "label", "scorer"}``, in input order, flushed after each batch of
:data:`BATCH` lines so it works in a pipe. The scorer is the one the agents use
(:func:`tracer.sentiment.factory.make_scorer`); log lines go to stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from itertools import islice
from pathlib import Path
from typing import IO, Iterable, Iterator

from tracer.logs import RedactingFormatter
from tracer.sentiment.scorer import SentimentScorer

BATCH = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("score", "train"), default="score",
                   help="score (default): texts on stdin -> JSON lines; train: refit the shipped model")
    p.add_argument("--folds", type=int, default=5, help="train: cross-validation folds (0 = skip)")
    p.add_argument("--limit", type=int, default=None, help="train: use a stratified subset of N rows")
    p.add_argument("--out", type=Path, default=None, help="train: output directory (default: the package's)")
    p.add_argument("--data", type=Path, default=None, help="train: text,label CSV (default: the shipped one)")


def _texts(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        text = line.rstrip("\r\n")
        if text.strip():
            yield text


def score_lines(scorer: SentimentScorer, lines: Iterable[str], out: IO[str]) -> int:
    """Write one JSON line per non-blank input line; returns the number of texts scored."""
    n = 0
    it = _texts(lines)
    while batch := list(islice(it, BATCH)):
        for text, sc in zip(batch, scorer.score(batch)):
            out.write(json.dumps({"text": text, "score": round(sc.value, 6), "label": sc.label,
                                  "scorer": sc.scorer_id}, ensure_ascii=False) + "\n")
        out.flush()
        n += len(batch)
    return n


def _stderr_logger(settings) -> logging.Logger:
    log = logging.getLogger("tracer.sentiment")
    log.setLevel(settings.log_level)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(RedactingFormatter(settings.secret_values()))
    log.addHandler(h)
    return log


def run(args: argparse.Namespace, settings, store) -> int:
    log = _stderr_logger(settings)
    if args.action == "train":
        from tracer.sentiment import trained

        m = trained.train(data_path=args.data or trained.DATA_PATH, out_dir=args.out or trained.MODEL_DIR,
                          n_folds=args.folds, limit=args.limit, progress=lambda msg: print(msg, file=sys.stderr))
        cv = m["cross_validation"]
        if cv:
            for name in ("trained", "lexicon"):
                r = cv[name]
                print(f"{name:8s} accuracy {r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}   "
                      f"macro-F1 {r['macro_f1_mean']:.4f} ± {r['macro_f1_std']:.4f}   ({cv['n_folds']}-fold)")
        for name in ("trained", "lexicon"):
            print(f"{name:8s} crypto headline direction {m['crypto_check'][name]['direction_accuracy']:.3f} "
                  f"(n={m['crypto_check'][name]['n']})")
        out_dir = args.out or trained.MODEL_DIR
        print(f"wrote {out_dir / trained.MODEL_FILE} ({m['model_bytes']:,} bytes, {m['scorer_id']}) "
              f"and {out_dir / trained.METRICS_FILE}")
        return 0
    from tracer.sentiment.factory import make_scorer

    scorer = make_scorer(settings, log, store)
    score_lines(scorer, sys.stdin, sys.stdout)
    return 0
