"""Ranking pieces the knowledge base combines: FTS5 query building, rank fusion, MMR.

Dense search ranks by cosine (inner product of normalized vectors), BM25 by SQLite FTS5's
``bm25()``; hybrid fuses the two rankings with reciprocal rank fusion (Cormack et al. 2009),
which needs no score calibration between them. Every score is higher-is-better.
"""

from __future__ import annotations

import re

import numpy as np

MODES = ("dense", "bm25", "hybrid")
RRF_K = 60
_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_TERMS = 64


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression for free text: each word quoted, OR-ed, so no input is FTS syntax.

    BM25 then ranks documents matching more (and rarer) words higher. Returns "" if no words.
    """
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        seen.setdefault(word, None)
    return " OR ".join(f'"{w}"' for w in list(seen)[:_MAX_TERMS])


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse rankings of ids: score(id) = sum over rankings of 1 / (k + rank), rank 1-based; best first."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    # ties keep the order of first appearance (dense first), so results are deterministic
    return sorted(scores.items(), key=lambda kv: -kv[1])


def maximal_marginal_relevance(query: np.ndarray, candidates: np.ndarray, k: int, lambda_: float) -> list[int]:
    """Indices into ``candidates`` (rows of normalized vectors) picked greedily by MMR.

    Each pick maximises ``lambda_ * sim(query, c) - (1 - lambda_) * max sim(c, picked)``:
    1.0 is pure relevance, 0.0 pure diversity.
    """
    n = len(candidates)
    if n == 0 or k <= 0:
        return []
    relevance = candidates @ query
    similarity = candidates @ candidates.T
    picked = [int(np.argmax(relevance))]
    redundancy = similarity[picked[0]].copy()
    available = np.ones(n, dtype=bool)
    available[picked[0]] = False
    while len(picked) < min(k, n):
        objective = lambda_ * relevance - (1.0 - lambda_) * redundancy
        objective[~available] = -np.inf
        best = int(np.argmax(objective))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, similarity[best])
    return picked
