"""The bootstrap and the paired tests against textbook examples."""

import numpy as np
import pytest
from scipy import stats

from evaluation.statistics import (binomial_two_sided_p, bootstrap_ci, compare_modes, holm, mcnemar_exact,
                                   paired_bootstrap)


def _pairs(both_right, a_only, b_only, both_wrong):
    a = [1] * both_right + [1] * a_only + [0] * b_only + [0] * both_wrong
    b = [1] * both_right + [0] * a_only + [1] * b_only + [0] * both_wrong
    return a, b


def test_exact_mcnemar_on_a_small_table_is_the_binomial_tail():
    # discordant 1 vs 6: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 0.125
    a, b = _pairs(10, 1, 6, 3)
    result = mcnemar_exact(a, b)
    assert result.p_value == pytest.approx(0.125)
    assert (result.b_better, result.a_better) == (6, 1)
    assert result.delta == pytest.approx(5 / 20)


def test_exact_mcnemar_matches_scipy_binomtest_on_the_wikipedia_table():
    # Wikipedia's McNemar example: a=101, b=121, c=59, d=33
    a, b = _pairs(101, 121, 59, 33)
    expected = stats.binomtest(59, 180, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(a, b).p_value == pytest.approx(expected, rel=1e-9)


def test_binomial_p_is_one_without_discordant_pairs():
    assert binomial_two_sided_p(0, 0) == 1.0


def test_bootstrap_ci_of_a_normal_mean_matches_the_z_interval():
    x = np.random.default_rng(1).normal(5.0, 1.0, size=400)
    mean, (lo, hi) = bootstrap_ci(x.tolist(), seed=0)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert mean == pytest.approx(x.mean())
    assert lo == pytest.approx(x.mean() - half, abs=0.02)
    assert hi == pytest.approx(x.mean() + half, abs=0.02)


def test_bootstrap_ci_of_half_right_answers_is_about_point_one_wide_each_side():
    mean, (lo, hi) = bootstrap_ci([1, 0] * 50, seed=0)
    assert mean == 0.5
    assert lo == pytest.approx(0.40, abs=0.015) and hi == pytest.approx(0.60, abs=0.015)


def test_bootstrap_is_reproducible_with_a_seed_and_ignores_none():
    assert bootstrap_ci([1, 0, None, 1], seed=3) == bootstrap_ci([1, 0, 1], seed=3)
    assert bootstrap_ci([None]) == (None, (None, None))


def test_paired_bootstrap_finds_a_consistent_improvement_and_not_noise():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 200)
    better = paired_bootstrap(a.tolist(), (a + 0.1).tolist())
    assert better.delta == pytest.approx(0.1)
    assert better.ci95[0] == pytest.approx(0.1) and better.p_value < 0.001
    same = paired_bootstrap(a.tolist(), rng.permutation(a).tolist())
    assert same.ci95[0] < 0 < same.ci95[1] and same.p_value > 0.05


def test_holm_matches_the_step_down_textbook_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_compare_modes_names_pairs_later_vs_earlier_and_corrects_per_metric():
    a, b = _pairs(10, 1, 6, 3)
    scores = {"rag": {"correctness": a, "token_f1": a}, "hybrid": {"correctness": b, "token_f1": b},
              "prompt": {"correctness": [0] * 20, "token_f1": [0] * 20}}
    pairs = compare_modes(scores, ["correctness", "token_f1"], resamples=2000)
    assert set(pairs) == {"hybrid-vs-rag", "prompt-vs-rag", "prompt-vs-hybrid"}
    row = pairs["hybrid-vs-rag"]["correctness"]
    assert row["test"] == "mcnemar-exact" and row["p_raw"] == pytest.approx(0.125)
    assert row["p_value"] >= row["p_raw"]
    assert pairs["hybrid-vs-rag"]["token_f1"]["test"] == "paired-bootstrap"
