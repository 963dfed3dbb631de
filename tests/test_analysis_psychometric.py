"""Psychometric functions: exact recovery from expected counts, simulated observers with known thresholds
recovered within their bootstrap intervals, and clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from analysis.psychometric import detection_probability
from analysis.psychometric import fit_psychometric

TRUE = {"mu": math.log(10.0), "sigma": 0.4, "guess": 0.05, "lapse": 0.02}
LEVELS = np.array([0.0, 4.0, 7.0, 10.0, 14.0, 20.0])  # mm of mean joint displacement; 0: identical pairs


def _simulate(participants: int, trials: int, seed: int, spread: float = 0.1):
    """Participants whose own mu varies by ``spread`` around the true one; ``trials`` per level each."""
    rng = np.random.default_rng(seed)
    x = np.tile(np.repeat(LEVELS, trials), participants)
    who = np.repeat(np.arange(participants), len(LEVELS) * trials)
    mu = TRUE["mu"] + spread * rng.standard_normal(participants)
    p = detection_probability(x, mu[who], TRUE["sigma"], TRUE["guess"], TRUE["lapse"])
    return x, (rng.random(len(x)) < p).astype(float), who


def test_the_formula_and_its_thresholds():
    # worked by hand: at x = e^mu, F = 1/2, so P = g + (1 - g - l) / 2
    assert detection_probability(np.array([10.0]), math.log(10), 0.4, 0.05, 0.02)[0] == pytest.approx(0.515)
    assert detection_probability(np.array([0.0]), math.log(10), 0.4, 0.05, 0.02)[0] == pytest.approx(0.05)


def test_expected_counts_give_back_the_true_parameters_exactly():
    n = np.full(len(LEVELS), 1000.0)
    k = n * detection_probability(LEVELS, **TRUE)
    # the expected counts (rounded down) of 1000 trials per level: the maximum lies within rounding of the truth
    x = np.repeat(LEVELS, 1000)
    y = np.concatenate([np.r_[np.ones(int(kk)), np.zeros(1000 - int(kk))] for kk in np.floor(k)])
    fit = fit_psychometric(x, y, n_boot=0)
    assert fit.converged
    assert fit.mu == pytest.approx(TRUE["mu"], abs=0.01) and fit.sigma == pytest.approx(TRUE["sigma"], abs=0.02)
    assert fit.guess == pytest.approx(TRUE["guess"], abs=0.002)
    # the 75 % threshold: exp(mu + sigma z(0.75)) = 10 e^(0.4 * 0.6745) = 13.096 mm
    assert fit.thresholds[0.75] == pytest.approx(10 * math.exp(0.4 * norm.ppf(0.75)), rel=0.02)
    assert fit.thresholds[0.5] == pytest.approx(10.0, rel=0.01)


def test_simulated_observers_thresholds_are_recovered_within_their_intervals():
    covered = {0.5: 0, 0.75: 0}
    runs = 12
    for seed in range(runs):
        x, y, who = _simulate(participants=20, trials=10, seed=seed)
        fit = fit_psychometric(x, y, who, n_boot=150, seed=seed)
        assert fit.converged and fit.n_boot >= 140
        for p, truth in ((0.5, 10.0), (0.75, 10 * math.exp(0.4 * norm.ppf(0.75)))):
            lo, hi = fit.intervals[p]
            assert lo < fit.thresholds[p] < hi
            covered[p] += lo <= truth <= hi
    # nominal 95 %: with 12 studies, at most 2 misses is well within chance (P(>= 3 misses) ~ 2 %)
    assert covered[0.5] >= runs - 2 and covered[0.75] >= runs - 2, covered


def test_bad_input_is_a_clear_error_and_no_positive_strength_is_no_fit():
    with pytest.raises(ValueError, match="strengths must be finite and >= 0"):
        fit_psychometric(np.array([0.0, -1.0]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="same length"):
        fit_psychometric(np.array([0.0, 1.0]), np.array([0.0]))
    fit = fit_psychometric(np.zeros(10), np.zeros(10))
    assert not fit.converged and "no trials at a strength above 0" in fit.note
