import numpy as np
import pytest

from retrieval.search import fts_query, fusion_window, maximal_marginal_relevance, reciprocal_rank_fusion


def test_fts_query_quotes_each_word_once_and_ors_them():
    assert fts_query('Refund "policy" AND refund* NEAR(x)') == '"refund" OR "policy" OR "near" OR "x"'


def test_fts_query_drops_english_function_words_unless_nothing_else_is_left():
    assert fts_query("How do I get a refund?") == '"get" OR "refund"'
    assert fts_query("to be or not to be") == '"to" OR "be" OR "or" OR "not"'


def test_fusion_window_is_twice_k_but_at_least_ten():
    assert (fusion_window(3), fusion_window(5), fusion_window(12)) == (10, 10, 24)


def test_fts_query_of_punctuation_is_empty():
    assert fts_query('()"*^:-') == ""


def test_rrf_scores_are_summed_reciprocal_ranks_best_first():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert [i for i, _ in fused] == [1, 3, 2]
    assert dict(fused)[1] == pytest.approx(1 / 61 + 1 / 62)
    assert dict(fused)[2] == pytest.approx(1 / 62)


def test_mmr_with_lambda_one_is_plain_relevance_order():
    rng = np.random.default_rng(0)
    cands = rng.standard_normal((8, 4))
    cands /= np.linalg.norm(cands, axis=1, keepdims=True)
    query = cands[2]
    assert maximal_marginal_relevance(query, cands, 5, 1.0) == list(np.argsort(-(cands @ query))[:5])


def test_mmr_with_low_lambda_skips_a_duplicate():
    cands = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8]])
    assert maximal_marginal_relevance(np.array([1.0, 0.0]), cands, 2, 0.3) == [0, 2]
