"""FinBERT (or any BERT-like sequence classifier) as a :class:`SentimentScorer`.

Loads ``AutoTokenizer`` / ``AutoModelForSequenceClassification`` from a local directory or a
hub id (e.g. ``ProsusAI/finbert``, which needs the network once, then the local HF cache), once
per instance. For a batch of texts::

    logits = model(tokenizer(texts, truncation, max_length=64, padding to the batch's longest))
    p      = softmax(logits)                     per text, over the model's labels
    score  = p[positive] - p[negative]           in [-1, 1]
    label  = positive / negative / neutral of argmax p

The positions of positive / negative / neutral are read from ``model.config.id2label``
(names matched case-insensitively, with bullish/bearish as synonyms), never assumed: FinBERT
itself orders them positive, negative, neutral. Speed on a CPU: texts are sorted by length and
cut into batches of ``batch_size`` (less padding), run under ``torch.inference_mode``, with
``torch.set_num_threads(threads)`` when ``threads > 0``. ``quantize=True`` converts the Linear
layers to dynamic int8 (``torch.ao.quantization.quantize_dynamic``); the tests check it stays
within 0.01 in probability of fp32 on the same model.

``scorer_id`` is ``finbert:<name>@<fingerprint>`` (``+int8`` when quantised): ``name`` is the
directory's name or the hub id; ``fingerprint`` is the first 12 hex of a sha256 over the
config and the weight files' names, sizes and first and last MiB (local dir) or the hub commit
hash, so the score cache never mixes two models.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tracer.models import Score

MAX_LENGTH = 64

_SYNONYMS = {
    "positive": "positive", "pos": "positive", "bullish": "positive",
    "negative": "negative", "neg": "negative", "bearish": "negative",
    "neutral": "neutral", "neu": "neutral",
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_MIB = 1 << 20


def label_indices(id2label: Mapping[int | str, str]) -> dict[str, int]:
    """{"positive": i, "negative": j[, "neutral": k]} from a model config's ``id2label``.

    Names are matched case-insensitively (``Positive``, ``bullish``, ``NEG`` ...). Raises
    ValueError when positive or negative is missing, a name is unknown (e.g. ``LABEL_0``: the
    order would have to be guessed) or two indices map to the same sentiment.
    """
    out: dict[str, int] = {}
    for idx, name in id2label.items():
        key = _SYNONYMS.get(str(name).strip().lower())
        if key is None:
            raise ValueError(f"model label {name!r} (index {idx}) is not positive/negative/neutral; "
                             f"id2label={dict(id2label)}")
        if key in out:
            raise ValueError(f"two model labels map to {key}: id2label={dict(id2label)}")
        out[key] = int(idx)
    missing = {"positive", "negative"} - set(out)
    if missing:
        raise ValueError(f"model has no {'/'.join(sorted(missing))} label: id2label={dict(id2label)}")
    return out


def scores_from_probs(probs: np.ndarray, index: Mapping[str, int]) -> tuple[np.ndarray, list[str]]:
    """(p[positive] - p[negative], label of the argmax) per row of a probability matrix."""
    value = np.clip(probs[:, index["positive"]] - probs[:, index["negative"]], -1.0, 1.0)
    by_index = {i: name for name, i in index.items()}
    labels = [by_index[int(i)] for i in np.argmax(probs, axis=1)]
    return value, labels


def is_local_path(source: str) -> bool:
    """True when ``source`` names a filesystem path rather than a hub id like ``org/name``."""
    return (source.startswith(("/", "./", "../", "~", ".\\")) or "\\" in source or source.count("/") > 1
            or Path(source).expanduser().exists())


def fingerprint(model_dir: Path) -> str:
    """sha256 hex over config.json and each weight file's name, size, first and last MiB."""
    h = hashlib.sha256()
    cfg = model_dir / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES:
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(_MIB))
                if size > _MIB:
                    fh.seek(max(_MIB, size - _MIB))
                    h.update(fh.read(_MIB))
    return h.hexdigest()


class FinBertScorer:
    """Transformers sequence classifier scored as p(positive) - p(negative); see the module docstring.

    ``calls`` counts forward passes and ``texts_scored`` the texts sent to the model (for tests
    and benchmarks). Raises FileNotFoundError for a missing local directory and ValueError for a
    model whose labels cannot be mapped; any loading error of transformers propagates.
    """

    def __init__(self, source: str, batch_size: int = 16, threads: int = 0, quantize: bool = False,
                 max_length: int = MAX_LENGTH) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not source:
            raise ValueError("no FinBERT model given (TB_FINBERT_MODEL is empty)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        local = is_local_path(source)
        if local:
            path = Path(source).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"FinBERT model directory {path} does not exist")
            load_from = str(path)
        else:
            load_from = source
        if threads > 0:
            torch.set_num_threads(threads)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(load_from)
        model = AutoModelForSequenceClassification.from_pretrained(load_from)
        model.eval()
        self.index = label_indices(model.config.id2label)
        if quantize:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")      # torch.ao.quantization is deprecated, still works
                from torch.ao.quantization import quantize_dynamic
                model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model
        self.batch_size = batch_size
        self.max_length = max_length
        self.quantized = quantize
        if local:
            name, fp = Path(load_from).resolve().name, fingerprint(Path(load_from))
        else:
            commit = getattr(model.config, "_commit_hash", None) or ""
            name = source
            fp = commit or hashlib.sha256(model.config.to_json_string().encode()).hexdigest()
        self.scorer_id: str = f"finbert:{name}@{fp[:12]}" + ("+int8" if quantize else "")
        self.calls = 0
        self.texts_scored = 0

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax probabilities, one row per text in input order, columns in the model's label order."""
        torch = self._torch
        n = len(texts)
        out = np.zeros((n, len(self.model.config.id2label)), dtype=np.float64)
        if n == 0:
            return out
        order = sorted(range(n), key=lambda i: len(texts[i]))      # similar lengths share a batch
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                logits = self.model(**enc).logits
                out[idx] = torch.softmax(logits.float(), dim=-1).double().numpy()
                self.calls += 1
        self.texts_scored += n
        return out

    def score(self, texts: Sequence[str]) -> list[Score]:
        if not texts:
            return []
        values, labels = scores_from_probs(self.probabilities(list(texts)), self.index)
        return [Score(value=float(v), label=lab, scorer_id=self.scorer_id) for v, lab in zip(values, labels)]


def default_threads() -> int:
    """Cores available to this process (for the benchmark's table)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1
