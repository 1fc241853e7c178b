"""Answer-chunk retrieval metrics: is a chunk that holds the answer among the first hits?

``metrics.retrieval_hit_at_k`` asks only whether a hit comes from a gold source; a long
reference page has dozens of chunks, most of which do not hold the answer. Here a hit counts
when it comes from one of the question's sources *and* contains an accepted answer, judged with
the same normalisation as correctness (``metrics.contains_answer``), so a retrieval figure and
an answer figure speak about the same span.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from evaluation.metrics import contains_answer, source_matches
from evaluation.qa import QAItem


def holds_answer(item: QAItem, chunk: Any) -> bool:
    """True if ``chunk`` (anything with ``source`` and ``text``) comes from a gold source and contains an
    accepted answer; without ``sources`` on the item, any chunk containing an accepted answer counts."""
    from_source = not item.sources or any(source_matches(chunk.source, gold) for gold in item.sources)
    return from_source and any(contains_answer(chunk.text, answer) for answer in item.answers)


def answer_chunk_rank(item: QAItem, chunks: Sequence[Any]) -> int | None:
    """1-based rank of the first of ``chunks`` (in ranked order) that holds the answer; None if none does."""
    for rank, chunk in enumerate(chunks, start=1):
        if holds_answer(item, chunk):
            return rank
    return None


def share_within(ranks: Iterable[int | None], k: int) -> float | None:
    """Share of questions whose answer chunk is ranked k or better (rank-1 for k=1, recall@k); None for no questions."""
    ranks = list(ranks)
    if not ranks:
        return None
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)
