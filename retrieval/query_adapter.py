"""A query-side linear adapter: retrieval tuned to one knowledge base without touching its vectors.

Questions are embedded, multiplied by a d x d matrix ``W`` (identity at the start) and normalised;
chunk vectors stay as they were, so adding a document still takes seconds and needs no refit.
``W`` is fitted on (question, chunk) pairs made from the KB's own sentences (``ragtune adapt``
makes them) with a softmax over the chunk vectors, as LlamaIndex's linear adapter does for
all-MiniLM-L6-v2, and pulled towards the identity so it can only bend the embedder, not replace it.
It is kept only when it ranks the right chunk first more often on pairs held out of the fit.

Written with numpy: a 384 x 384 map and its gradient are a few matrix products, and numpy keeps the
fit off the process's single torch compute thread (ragtune/compute.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MATRIX_FILE = "query_adapter.npy"
MANIFEST_FILE = "query_adapter.json"


@dataclass(frozen=True)
class QueryAdapterSettings:
    """How ``fit_query_adapter`` fits ``W``."""

    max_pairs: int = 4000  # (question, chunk) pairs used at most; more cost time, not accuracy
    negatives: int = 4096  # chunk vectors each softmax runs over (all of them in a smaller KB)
    steps: int = 200
    lr: float = 1e-3
    reg: float = 0.01  # pull towards the identity; 0.1 left W unchanged on a 1,300-chunk KB, 0.01 moved it
    temperature: float = 0.05
    val_share: float = 0.2  # pairs held out of the fit to decide whether ``W`` is kept
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.val_share < 1:
            raise ValueError(f"val_share must be between 0 and 1, got {self.val_share}")
        if self.steps < 1 or self.max_pairs < 10 or self.negatives < 2:
            raise ValueError("steps must be >= 1, max_pairs >= 10 and negatives >= 2")


@dataclass(frozen=True)
class QueryAdapterReport:
    """What a fit found: rank-1 of the right chunk on held-out pairs, before and after, and whether ``W`` was kept."""

    pairs: int
    held_out: int
    rank1_before: float
    rank1_after: float
    kept: bool

    def summary_line(self) -> str:
        verdict = "kept" if self.kept else "not kept (no gain on held-out questions)"
        return (f"query adapter: right chunk first for {self.rank1_before:.2f} -> {self.rank1_after:.2f} of "
                f"{self.held_out} held-out questions ({self.pairs} fitted); {verdict}")


def fit_query_adapter(questions: np.ndarray, targets: np.ndarray, chunks: np.ndarray,
                      settings: QueryAdapterSettings = QueryAdapterSettings()) -> tuple[np.ndarray, QueryAdapterReport]:
    """Fit ``W`` on question vectors and the row in ``chunks`` each should retrieve; returns (W, report).

    questions: (n, d) normalised question vectors; targets: (n,) row indices into ``chunks`` (m, d).
    """
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(questions))[: settings.max_pairs]
    n_val = max(1, int(len(order) * settings.val_share))
    val, fit = order[:n_val], order[n_val:]
    d = questions.shape[1]
    w = np.eye(d, dtype=np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    x, y = questions[fit].astype(np.float64), targets[fit]
    for step in range(1, settings.steps + 1):
        pool, labels = _negatives(chunks, y, settings.negatives, rng)
        grad = _gradient(w, x, pool, labels, settings)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad ** 2
        w -= settings.lr * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
    before = _rank1(questions[val], targets[val], chunks, np.eye(d))
    after = _rank1(questions[val], targets[val], chunks, w)
    report = QueryAdapterReport(len(fit), len(val), before, after, kept=after > before)
    return w.astype(np.float32), report


def apply(w: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The adapted, normalised query vector."""
    q = query @ w
    return (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)


def save(folder: Path, w: np.ndarray, report: QueryAdapterReport, chunks: int) -> None:
    """Write ``W`` and its readable manifest into a KB folder (the matrix last replaced, atomically)."""
    manifest = {**asdict(report), "chunks_at_fit": chunks, "dimension": int(w.shape[0]),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = folder / f".{MATRIX_FILE}.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, w)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(folder / MATRIX_FILE)


def remove(folder: Path) -> None:
    """Forget a KB's query adapter (queries are embedded as they are)."""
    (folder / MATRIX_FILE).unlink(missing_ok=True)
    (folder / MANIFEST_FILE).unlink(missing_ok=True)


def load(folder: Path, dimension: int) -> np.ndarray | None:
    """The KB's ``W``, or None when it has none (or one of another dimension, which is ignored)."""
    path = folder / MATRIX_FILE
    if not path.is_file():
        return None
    w = np.load(path, allow_pickle=False)
    if w.shape != (dimension, dimension):
        log.warning("%s has shape %s, not (%d, %d): ignored", path, w.shape, dimension, dimension)
        return None
    return w


def _negatives(chunks: np.ndarray, targets: np.ndarray, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """The chunk rows one step's softmax runs over (every target among them) and each pair's label in it."""
    if len(chunks) <= n:
        return chunks, targets
    rows = np.unique(np.concatenate([targets, rng.choice(len(chunks), n, replace=False)]))
    return chunks[rows], np.searchsorted(rows, targets)


def _gradient(w, x, pool, labels, settings: QueryAdapterSettings) -> np.ndarray:
    """d/dW of mean softmax cross-entropy over ``pool`` (through the query's normalisation) plus the pull to I."""
    q = x @ w
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    qn = q / norm
    logits = qn @ pool.T / settings.temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    d_qn = p @ pool / settings.temperature / len(labels)
    d_q = (d_qn - qn * (qn * d_qn).sum(axis=1, keepdims=True)) / norm
    return x.T @ d_q + 2 * settings.reg * (w - np.eye(len(w)))


def _rank1(questions: np.ndarray, targets: np.ndarray, chunks: np.ndarray, w: np.ndarray) -> float:
    q = questions @ w
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return float(np.mean(np.argmax(q @ chunks.T, axis=1) == targets))
