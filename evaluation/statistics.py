"""Confidence intervals and paired tests for comparing answer modes on the same questions.

- ``bootstrap_ci``: percentile bootstrap of a mean (seeded, numpy), 95% by default.
- ``mcnemar_exact``: the exact McNemar test on paired 0/1 outcomes (a two-sided binomial test
  on the discordant pairs), the right test for "is mode B more often correct than mode A".
- ``paired_bootstrap``: the difference of means over resampled question sets, for scores that
  are not 0/1 (token F1, ROUGE-L, groundedness...).
- ``holm``: Holm's step-down correction over a family of p-values.
- ``compare_modes``: every pair of modes on every metric, Holm-corrected per metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RESAMPLES = 10_000


def bootstrap_ci(values: Sequence[float | None], confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> tuple[float | None, tuple[float | None, float | None]]:
    """The mean of ``values`` (None ignored) and its percentile-bootstrap interval."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return None, (None, None)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(x.mean()), (float(lo), float(hi))


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (doubling the smaller tail)."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedResult:
    """One paired comparison: B minus A on the questions both answered."""

    delta: float | None
    ci95: tuple[float | None, float | None]
    p_value: float
    test: str
    n: int
    b_better: int = 0  # McNemar only: questions B got right and A wrong
    a_better: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ci95"] = list(self.ci95)
        return out


def mcnemar_exact(a: Sequence[float | None], b: Sequence[float | None], resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0) -> PairedResult:
    """Exact McNemar test of paired 0/1 outcomes; delta = mean(b) - mean(a) with a paired bootstrap CI."""
    pairs = [(bool(x), bool(y)) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    b_better = sum(1 for x, y in pairs if y and not x)
    a_better = sum(1 for x, y in pairs if x and not y)
    p = binomial_two_sided_p(b_better, b_better + a_better)
    delta, ci = _paired_delta_ci([float(x) for x, _ in pairs], [float(y) for _, y in pairs], resamples, seed)
    return PairedResult(delta, ci, p, "mcnemar-exact", len(pairs), b_better, a_better)


def paired_bootstrap(a: Sequence[float | None], b: Sequence[float | None], resamples: int = DEFAULT_RESAMPLES,
                     seed: int = 0) -> PairedResult:
    """Paired bootstrap of mean(b) - mean(a) over questions both scored.

    The p-value is twice the smaller share of resampled differences on either side of zero
    (the percentile-interval test: p < 0.05 exactly when the 95% interval excludes zero).
    """
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not pairs:
        return PairedResult(None, (None, None), 1.0, "paired-bootstrap", 0)
    x = np.asarray([p[0] for p in pairs])
    y = np.asarray([p[1] for p in pairs])
    diffs = _resampled_diffs(x, y, resamples, seed)
    if np.all(diffs == 0):
        p = 1.0
    else:
        p = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
        p = max(p, 1.0 / resamples)  # the resolution of the bootstrap
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return PairedResult(float(y.mean() - x.mean()), (float(lo), float(hi)), p, "paired-bootstrap", len(pairs))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare_modes(scores: dict[str, dict[str, list[float | None]]], metrics: Sequence[str],
                  binary: Sequence[str] = ("correctness",), resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0) -> dict[str, dict[str, dict]]:
    """Every pair of modes on every metric: ``{"B-vs-A": {metric: result dict with p_value (Holm) and p_raw}}``.

    ``scores[mode][metric]`` lists per-question scores aligned across modes. Pairs are named
    later-vs-earlier in the order of ``scores`` ("hybrid-vs-rag" when rag comes first); delta
    is later minus earlier. Holm's correction runs over the pairs of each metric.
    """
    modes = list(scores)
    pairs = [(a, b) for i, a in enumerate(modes) for b in modes[i + 1:]]
    out: dict[str, dict[str, dict]] = {f"{b}-vs-{a}": {} for a, b in pairs}
    for metric in metrics:
        results = []
        for a, b in pairs:
            test = mcnemar_exact if metric in binary else paired_bootstrap
            results.append(test(scores[a][metric], scores[b][metric], resamples, seed))
        adjusted = holm([r.p_value for r in results])
        for (a, b), result, p_adj in zip(pairs, results, adjusted):
            row = result.to_dict()
            row["p_raw"] = row.pop("p_value")
            row["p_value"] = p_adj
            out[f"{b}-vs-{a}"][metric] = row
    return out


def _resampled_diffs(x: np.ndarray, y: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    return y[idx].mean(axis=1) - x[idx].mean(axis=1)


def _paired_delta_ci(x: list[float], y: list[float], resamples: int, seed: int):
    if not x:
        return None, (None, None)
    xa, ya = np.asarray(x), np.asarray(y)
    diffs = _resampled_diffs(xa, ya, resamples, seed)
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(ya.mean() - xa.mean()), (float(lo), float(hi))
