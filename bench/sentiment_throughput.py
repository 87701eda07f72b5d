"""Headlines per second of the sentiment scorers on this CPU.

    .venv/bin/python bench/sentiment_throughput.py [--threads 2] [--n 256] [--no-int8]

FinBERT is stood in for by a **BERT-base-sized random model** (12 layers, hidden 768, 12 heads,
intermediate 3072, 3 labels in FinBERT's order) built in a temp dir, with a WordPiece vocab
trained on the bundled headlines so token counts are realistic; no download. Same code path
as the real model (``FinBertScorer``); only the weights are random, which does not change the
cost. Rows:

* ``pipeline, one at a time``: a plain transformers ``pipeline("text-classification")`` called
  once per headline (the naive baseline);
* ``FinBertScorer batch B``: our scorer, length-sorted batches of B, ``inference_mode``, 64 tokens;
* ``FinBertScorer int8 batch 32``: the same with dynamic int8 Linear layers (TB_FINBERT_QUANTIZE);
* ``cached cycle``: a cycle whose headlines were all scored before: in-memory layer, and the
  SQLite layer alone (as after a restart);
* the lexicon (VADER) and trained (TF-IDF + LR) scorers on all bundled headlines.

Timings are wall-clock over the whole set after one warm-up batch, best of ``--repeats`` runs.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def headlines() -> list[str]:
    with open(REPO / "tracer/data/bundled/headlines.csv", newline="", encoding="utf-8") as fh:
        return list(dict.fromkeys(row["title"] for row in csv.DictReader(fh)))


def build_base_model(dst: Path, corpus: list[str]) -> None:
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(corpus, vocab_size=30522, min_frequency=1, show_progress=False)
    tok = BertTokenizerFast(vocab=wp.get_vocab(), do_lower_case=True)
    assert tok.unk_token_id not in tok("bitcoin price")["input_ids"], "tokenizer lost its vocab"
    labels = {0: "positive", 1: "negative", 2: "neutral"}          # ProsusAI/finbert's order
    cfg = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, num_labels=3, id2label=labels,
                     label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).eval().save_pretrained(dst)
    tok.save_pretrained(dst)


REPEATS = 3


def rate(fn, items: list[str], warmup: list[str], repeats: int | None = None) -> float:
    """Items per second of ``fn(items)`` after ``fn(warmup)``: the best of ``repeats`` runs
    (like ``timeit``: on a shared machine the fastest run is the least disturbed one)."""
    fn(warmup)
    best = min(_timed(fn, items) for _ in range(repeats or REPEATS))
    return len(items) / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2, a laptop-ish CPU)")
    ap.add_argument("--n", type=int, default=256, help="headlines for the batched FinBERT rows")
    ap.add_argument("--n-single", type=int, default=48, help="headlines for the one-at-a-time rows")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 row")
    ap.add_argument("--repeats", type=int, default=3, help="runs per row; the best one counts")
    args = ap.parse_args()
    global REPEATS
    REPEATS = args.repeats
    warnings.filterwarnings("ignore")

    try:
        import torch
        from transformers import pipeline
    except ImportError as e:
        print(f"sentiment_throughput: needs the FinBERT extra ({e.name} is not installed): "
              f".venv/bin/python -m pip install -e '.[finbert]'", file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging

    from tracer.store import Store
    from tracer.sentiment.cache import PersistentScorer, ScoreCache
    from tracer.sentiment.finbert import FinBertScorer, default_threads
    from tracer.sentiment.lexicon import VaderScorer
    from tracer.sentiment.scorer import CachedScorer
    from tracer.sentiment.trained import TrainedScorer

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    corpus = headlines()
    texts = corpus[1000:1000 + args.n]
    single = corpus[2000:2000 + args.n_single]
    warm = corpus[:8]
    rows: list[tuple[str, str, str]] = []

    def add(name: str, hps: float, note: str = "") -> None:
        rows.append((name, f"{hps:,.1f}", note))
        print(f"  {name:<38} {hps:>10,.1f} /s  {note}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "bert-base-random"
        t0 = time.perf_counter()
        build_base_model(model_dir, corpus)
        print(f"built BERT-base-sized model in {time.perf_counter() - t0:.0f}s; torch {torch.__version__}, "
              f"{args.threads} threads of {default_threads()} cores", file=sys.stderr, flush=True)

        clf = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir), device=-1, top_k=None)
        base = rate(lambda xs, c=clf: [c(x) for x in xs], single, warm[:2])
        add("pipeline, one at a time", base, "baseline")
        del clf

        scorer = FinBertScorer(str(model_dir), batch_size=1)
        b1 = rate(scorer.score, single, warm[:2])
        add("FinBertScorer batch 1", b1, f"{b1 / base:.1f}x")
        best = 0.0
        for bs in (8, 32):
            scorer.batch_size = bs
            r = rate(scorer.score, texts, warm)
            best = max(best, r)
            add(f"FinBertScorer batch {bs}", r, f"{r / base:.1f}x")
        if not args.no_int8:
            q = FinBertScorer(str(model_dir), batch_size=32, quantize=True)
            r = rate(q.score, texts, warm)
            add("FinBertScorer int8 batch 32", r, f"{r / base:.1f}x")
            del q

        # cached cycles: every headline of the cycle was scored before
        store = Store(Path(tmp) / "bench.db")
        scorer.batch_size = 32
        persistent = PersistentScorer(scorer, ScoreCache(store))
        layered = CachedScorer(persistent)
        layered.score(texts)                                    # prime both layers
        before = scorer.texts_scored
        mem_ms = statistics.median(_timed(layered.score, texts) for _ in range(20)) * 1e3
        db_ms = statistics.median(_timed(CachedScorer(persistent).score, texts) for _ in range(20)) * 1e3
        assert scorer.texts_scored == before, "a cached cycle reached the model"
        add(f"cached cycle, memory ({len(texts)} headlines)", len(texts) / (mem_ms / 1e3), f"{mem_ms:.2f} ms/cycle")
        add(f"cached cycle, SQLite ({len(texts)} headlines)", len(texts) / (db_ms / 1e3), f"{db_ms:.2f} ms/cycle")
        store.close()

    vader = VaderScorer()
    add(f"lexicon (VADER), {len(corpus)} headlines", rate(vader.score, corpus, warm), vader.scorer_id)
    trained = TrainedScorer()
    add(f"trained (TF-IDF + LR), {len(corpus)} headlines", rate(trained.score, corpus, warm), trained.scorer_id)

    print()
    print(f"| scorer (BERT-base random weights, {args.threads} torch threads) | headlines/s | note |")
    print("|---|---:|---|")
    for name, hps, note in rows:
        print(f"| {name} | {hps} | {note} |")
    print(f"\nbest batched FinBERT vs one-at-a-time pipeline: {best / base:.1f}x")
    return 0


def _timed(fn, items) -> float:
    t0 = time.perf_counter()
    fn(items)
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
