"""The query-side linear adapter: it learns a KB's questions, leaves document vectors alone, and is
kept only when held-out questions find their chunk more often."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval import query_adapter
from retrieval.query_adapter import QueryAdapterSettings, fit_query_adapter

from .conftest import write_docs


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _skewed_questions(seed=0, n_chunks=60, per_chunk=6, d=16):
    """Questions that sit near their chunk only after a fixed rotation of the space: what W must learn."""
    rng = np.random.default_rng(seed)
    chunks = _unit(rng.normal(size=(n_chunks, d)))
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    targets = np.repeat(np.arange(n_chunks), per_chunk)
    questions = _unit((chunks[targets] + 0.35 * rng.normal(size=(len(targets), d))) @ rotation.T)
    return questions.astype(np.float32), targets, chunks.astype(np.float32)


def test_a_fit_on_skewed_questions_ranks_held_out_ones_better_and_is_kept():
    questions, targets, chunks = _skewed_questions()
    w, report = fit_query_adapter(questions, targets, chunks, QueryAdapterSettings(steps=300, lr=1e-2, reg=1e-4))
    assert report.kept and report.rank1_after > report.rank1_before + 0.2
    assert w.shape == (16, 16) and w.dtype == np.float32


def test_questions_already_aligned_with_their_chunks_keep_no_adapter():
    rng = np.random.default_rng(1)
    chunks = _unit(rng.normal(size=(40, 16))).astype(np.float32)
    targets = np.repeat(np.arange(40), 3)
    questions = chunks[targets]  # every question is its chunk: nothing to gain
    _, report = fit_query_adapter(questions, targets, chunks, QueryAdapterSettings(steps=20))
    assert report.rank1_before == 1.0 and not report.kept


def test_the_kb_applies_its_adapter_to_queries_only_and_forgets_it_when_removed(kb):
    write_docs(kb, {"a.md": ["Kilns fire clay at high heat.", "Glaze melts into glass."],
                    "b.md": ["The port opens at dawn.", "Ferries leave every hour."]})
    before = kb._embed_query("when does the port open")
    dimension = before.shape[0]
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(dimension, dimension)))
    query_adapter.save(kb.path, rotation.astype(np.float32), query_adapter.QueryAdapterReport(10, 2, 0.5, 1.0, True), 4)
    after = kb._embed_query("when does the port open")
    assert np.allclose(after, query_adapter.apply(rotation.astype(np.float32), before), atol=1e-5)
    assert not np.allclose(after, before, atol=1e-3)
    hits = kb.search("Glaze melts into glass.", k=4, mode="dense")
    assert len(hits) == 4  # document vectors untouched: every chunk still searchable
    query_adapter.remove(kb.path)
    assert np.allclose(kb._embed_query("when does the port open"), before, atol=1e-6)


def test_tuning_a_kb_with_too_few_questions_is_a_clear_error(kb):
    from retrieval.errors import RetrievalError

    write_docs(kb, {"a.md": ["One sentence."]})
    with pytest.raises(RetrievalError, match="at least 10: ingest more documents"):
        kb.fit_query_adapter([("What is it?", "nope")])
