"""analysis.bt: Davidson's Bradley-Terry model with ties, on tables whose MLE is derived by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.bt import btd_probabilities
from analysis.bt import fit_btd
from analysis.bt import fit_btd_many

PAIRS3 = [(0, 1), (0, 2), (1, 2)]


def test_two_methods_with_ties_reproduce_the_shares():
    # saturated: theta_a / theta_b = wins_a / wins_b = 6 / 2 = 3 and nu = ties / sqrt(wins_a * wins_b) = 4 / sqrt(12)
    fit = fit_btd(["a", "b"], [(0, 1)], [[6, 2, 4]])
    assert fit.log_strength == pytest.approx([math.log(3) / 2, -math.log(3) / 2], abs=1e-6)
    assert fit.nu == pytest.approx(4 / math.sqrt(12), abs=1e-6)
    assert fit.converged and fit.n_comparisons == 12
    p = fit.probabilities("a", "b")
    assert p == pytest.approx((0.5, 1 / 6, 1 / 3), abs=1e-6)  # the observed shares 6/12, 2/12, 4/12


def test_two_methods_without_ties_is_plain_bradley_terry():
    fit = fit_btd(["a", "b"], [(0, 1)], [[3, 1, 0]])
    assert fit.nu == 0.0
    assert fit.log_strength[0] - fit.log_strength[1] == pytest.approx(math.log(3), abs=1e-6)


def test_three_methods_counts_proportional_to_the_model():
    # theta = (4, 1, 1/4), nu = 1: pair (a, b) D = 4 + 1 + 2 -> 4/7, 1/7, 2/7; (a, c) D = 4 + 1/4 + 1 -> 16/21, 1/21,
    # 4/21; (b, c) D = 1 + 1/4 + 1/2 -> 4/7, 1/7, 2/7. Counts exactly proportional: the MLE is the generating value.
    counts = [[40, 10, 20], [160, 10, 40], [40, 10, 20]]
    fit = fit_btd(["a", "b", "c"], PAIRS3, counts)
    assert fit.log_strength == pytest.approx([math.log(4), 0.0, -math.log(4)], abs=1e-5)
    assert fit.nu == pytest.approx(1.0, abs=1e-5)
    # without ties: theta = (4, 2, 1) -> 2/3, 4/5, 2/3
    fit = fit_btd(["a", "b", "c"], PAIRS3, [[20, 10, 0], [40, 10, 0], [20, 10, 0]])
    assert fit.log_strength == pytest.approx(np.log([4, 2, 1]) - np.log([4, 2, 1]).mean(), abs=1e-5)


def test_batched_newton_agrees_with_scipy():
    rng = np.random.default_rng(1)
    base = np.array([[40, 10, 20], [160, 10, 40], [40, 10, 20]], float)
    tables = rng.poisson(base, size=(20, 3, 3)).astype(float)
    lam, nu = fit_btd_many(["a", "b", "c"], PAIRS3, tables)
    for k in range(len(tables)):
        ref = fit_btd(["a", "b", "c"], PAIRS3, tables[k])
        assert lam[k] == pytest.approx(ref.log_strength, abs=1e-5)
        assert nu[k] == pytest.approx(ref.nu, abs=1e-5)


def test_probabilities_and_uncompared_methods():
    p = btd_probabilities(0.3, -0.2, 0.7)
    assert sum(p) == pytest.approx(1.0) and p[0] > p[1]
    fit = fit_btd(["a", "b", "c"], PAIRS3, [[5, 3, 1], [0, 0, 0], [0, 0, 0]])
    assert np.isnan(fit.log_strength[2]) and np.isfinite(fit.log_strength[:2]).all()
    lam, nu = fit_btd_many(["a", "b", "c"], PAIRS3, np.array([[[5, 3, 1], [0, 0, 0], [0, 0, 0]]], float))
    assert np.isnan(lam[0, 2]) and lam[0, 0] - lam[0, 1] == pytest.approx(
        fit.log_strength[0] - fit.log_strength[1], abs=1e-5
    )
    with pytest.raises(ValueError, match="counts must have shape"):
        fit_btd(["a", "b"], [(0, 1)], [[1, 2]])
    with pytest.raises(ValueError, match="two different methods"):
        fit_btd(["a", "b"], [(0, 0)], [[1, 2, 0]])
