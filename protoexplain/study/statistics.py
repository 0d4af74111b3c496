"""The statistics of a study, vectorised with NumPy and seeded.

- Accuracy per condition with a *cluster* bootstrap 95 % interval: participants are resampled
  with replacement within their list (the design's strata), all their trials with them, and
  the pooled accuracy is recomputed per draw; the interval is the 2.5th and 97.5th
  percentile of the draws (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
  ch. 13; resampling the independent units, the participants, because answers of one person
  are correlated). A difference between conditions takes its interval from the same draws.
- A permutation test of a difference (Good, *Permutation, Parametric and Bootstrap Tests of
  Hypotheses*, 2005): condition labels are shuffled within exchangeability blocks, the
  participants' own trials in a within-subject comparison, whole participants in a
  between-subject one; two-sided p = (1 + #{|d*| >= |d|}) / (1 + R) (Phipson & Smyth, 2010,
  never zero). Holm's step-down adjustment (Holm, 1979) covers the several pairs of one task.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

CONFIDENCE_LEVEL = 0.95


@dataclass
class Bootstrap:
    """Per condition: the estimate (C,), the interval bounds (C,), the draws (R, C); NaN
    where a condition has no trial."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    draws: np.ndarray


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def interval(draws: np.ndarray, level: float = CONFIDENCE_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap draws along axis 0 (NaN draws ignored)."""
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():  # all-NaN columns: a condition without trials
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nanpercentile(draws, tail, axis=0),
                np.nanpercentile(draws, 100 - tail, axis=0))


def cluster_bootstrap(correct: np.ndarray, total: np.ndarray, groups: np.ndarray, *,
                      rounds: int, rng: np.random.Generator) -> Bootstrap:
    """Accuracy per condition from per-participant counts.

    Args:
        correct: (N, C) accurate answers of participant n under condition c.
        total: (N, C) answers of participant n under condition c.
        groups: (N,) each participant's list; participants are resampled within lists.
        rounds: bootstrap draws R.
        rng: the seeded generator.
    """
    estimate = _ratio(correct.sum(axis=0), total.sum(axis=0))
    draws = np.empty((rounds, correct.shape[1]))
    if len(correct) == 0:
        draws[:] = np.nan
    else:
        picks = []
        for group in np.unique(groups):
            members = np.flatnonzero(groups == group)
            picks.append(members[rng.integers(0, len(members), (rounds, len(members)))])
        chosen = np.concatenate(picks, axis=1)  # (R, N)
        draws = _ratio(correct[chosen].sum(axis=1), total[chosen].sum(axis=1))
    low, high = interval(draws)
    return Bootstrap(estimate=estimate, low=low, high=high, draws=draws)


def permutation_test(accurate: np.ndarray, total: np.ndarray, labels: np.ndarray,
                     blocks: np.ndarray, *, rounds: int, rng: np.random.Generator
                     ) -> tuple[float, float]:
    """The difference of pooled accuracies, label 1 minus label 0, and its two-sided
    permutation p-value.

    Args:
        accurate: (U,) accurate answers of each unit (a trial: 0 or 1; a whole participant
            of a between-subject comparison: a count).
        total: (U,) answers of each unit.
        labels: (U,) 0 or 1, the condition of each unit.
        blocks: (U,) exchangeability blocks: labels are shuffled only within a block.
        rounds: permutations R.
        rng: the seeded generator.
    """
    order = np.argsort(blocks, kind="stable")
    accurate, total = accurate[order].astype(float), total[order].astype(float)
    labels, blocks = labels[order].astype(bool), blocks[order]

    def difference(chosen: np.ndarray) -> np.ndarray:
        one = _ratio((accurate * chosen).sum(axis=-1), (total * chosen).sum(axis=-1))
        zero = _ratio((accurate * ~chosen).sum(axis=-1), (total * ~chosen).sum(axis=-1))
        return one - zero

    observed = float(difference(labels))
    if not np.isfinite(observed):
        return observed, float("nan")
    rank = np.unique(blocks, return_inverse=True)[1].astype(float)
    shuffled = np.argsort(rank[None, :] + rng.random((rounds, len(labels))), axis=1)
    permuted = difference(labels[shuffled])
    extreme = np.count_nonzero(np.abs(permuted) >= abs(observed) - 1e-12)
    return observed, float((1 + extreme) / (1 + rounds))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN)."""
    values = np.asarray(p_values, dtype=float)
    finite = np.flatnonzero(np.isfinite(values))
    adjusted = values.copy()
    if len(finite) == 0:
        return adjusted.tolist()
    order = finite[np.argsort(values[finite], kind="stable")]
    scaled = values[order] * (len(order) - np.arange(len(order)))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted.tolist()
