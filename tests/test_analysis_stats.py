"""analysis.stats: intervals, exact tests, Holm and d' against values worked out by hand or from tables."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from analysis.stats import binom_test
from analysis.stats import bootstrap_weights
from analysis.stats import clopper_pearson_ci
from analysis.stats import cluster_bootstrap_ratio
from analysis.stats import dprime
from analysis.stats import holm
from analysis.stats import loglinear_rate
from analysis.stats import pigeonhole_bootstrap_ratio
from analysis.stats import sign_test
from analysis.stats import spread
from analysis.stats import wilson_ci


def test_wilson_textbook_values():
    # 8/10, 95 %: centre (8 + 1.92) / 13.84 = 0.7167, half-width 1.96 / 13.84 * sqrt(1.6 + 0.96) = 0.2266
    lo, hi = wilson_ci(8, 10)
    assert (float(lo), float(hi)) == pytest.approx((0.4902, 0.9433), abs=5e-4)
    # 0/10: [0, 3.84 / 13.84] = [0, 0.2775]
    lo, hi = wilson_ci(0, 10)
    assert (float(lo), float(hi)) == pytest.approx((0.0, 0.2775), abs=5e-4)
    # vectorised, and NaN for an empty group
    lo, hi = wilson_ci(np.array([8, 0, 0]), np.array([10, 10, 0]))
    assert np.isnan(lo[2]) and np.isnan(hi[2]) and lo[0] == pytest.approx(0.4902, abs=5e-4)


def test_clopper_pearson_textbook_values():
    lo, hi = clopper_pearson_ci(8, 10)
    assert (float(lo), float(hi)) == pytest.approx((0.4439, 0.9748), abs=5e-4)
    # at the ends the interval is closed-form: 1 - 0.025 ** (1/10) = 0.3085 and 0.025 ** (1/10) = 0.6915
    assert float(clopper_pearson_ci(0, 10)[1]) == pytest.approx(1 - 0.025**0.1, abs=1e-9)
    assert float(clopper_pearson_ci(0, 10)[0]) == 0.0
    assert float(clopper_pearson_ci(10, 10)[0]) == pytest.approx(0.025**0.1, abs=1e-9)
    assert float(clopper_pearson_ci(10, 10)[1]) == 1.0


def test_exact_binomial_and_sign_tests_by_hand():
    # P(X >= 8 | 10, 1/2) = (45 + 10 + 1) / 1024; two-sided doubles it
    assert float(binom_test(8, 10)) == pytest.approx(112 / 1024, abs=1e-12)
    assert float(binom_test(10, 10)) == pytest.approx(2 / 1024, abs=1e-12)
    assert float(binom_test(5, 10)) == pytest.approx(1.0)
    # P(X >= 6 | 10) = (210 + 120 + 45 + 10 + 1) / 1024 = 386 / 1024
    assert float(binom_test(6, 10)) == pytest.approx(772 / 1024, abs=1e-12)
    # sign test 7 vs 2: P(X >= 7 | 9) = (36 + 9 + 1) / 512
    assert float(sign_test(7, 2)) == pytest.approx(92 / 512, abs=1e-12)
    assert math.isnan(float(binom_test(0, 0)))


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.005, 0.011, 0.02, 0.04, 0.13]) == pytest.approx([0.025, 0.044, 0.06, 0.08, 0.13])
    out = holm([0.02, np.nan, 0.04])  # NaN neither counted nor changed
    assert out[0] == pytest.approx(0.04) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert holm([0.6, 0.9]).tolist() == [1.0, 1.0]  # 1.2 capped at 1; the running max carries it to 0.9


def test_dprime_by_hand():
    z = NormalDist().inv_cdf  # an implementation independent of scipy's
    # uncorrected: H = 0.8, F = 0.2 -> 2 * z(0.8) = 2 * 0.8416 = 1.6832
    assert float(dprime(8, 10, 2, 10, correction=None)) == pytest.approx(1.6832, abs=1e-4)
    # log-linear: H = 8.5 / 11 = 0.7727, F = 2.5 / 11 = 0.2273 -> 2 * z(0.7727) = 2 * 0.7479 = 1.4957
    assert float(dprime(8, 10, 2, 10)) == pytest.approx(1.4957, abs=1e-3)
    assert float(dprime(8, 10, 2, 10)) == pytest.approx(z(8.5 / 11) - z(2.5 / 11), abs=1e-9)
    # perfect performance stays finite: H = 10.5 / 11, F = 0.5 / 11 -> 2 * 1.6906 = 3.381
    assert float(dprime(10, 10, 0, 10)) == pytest.approx(3.381, abs=2e-3)
    assert math.isinf(float(dprime(10, 10, 0, 10, correction=None)))
    assert loglinear_rate(0, 10) == pytest.approx(0.5 / 11)
    assert np.isnan(dprime(1, 0, 1, 5))
    with pytest.raises(ValueError, match="unknown d' correction"):
        dprime(1, 2, 1, 2, correction="hautus")


def test_bootstraps():
    rng = np.random.default_rng(0)
    w = bootstrap_weights(7, 50, rng)
    assert w.shape == (50, 7) and np.all(w.sum(1) == 7)
    # every cluster with the same ratio: every replicate gives it
    lo, hi = cluster_bootstrap_ratio([3, 6, 9], [4, 8, 12], 200, rng=rng)
    assert lo == pytest.approx(0.75) and hi == pytest.approx(0.75)
    num = np.array([[1.0, 2.0], [3.0, 4.0]])
    lo, hi = pigeonhole_bootstrap_ratio(num, 2 * num, 200, rng=rng)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    # heterogeneous clusters: the interval contains the point estimate and is wider than nothing
    num, den = np.array([1, 9, 5, 2, 8]), np.full(5, 10)
    lo, hi = cluster_bootstrap_ratio(num, den, 2000, rng=rng)
    assert lo < 0.5 < hi and hi - lo > 0.1


def test_spread():
    s = spread([0.2, 0.4, 0.6, 0.8, np.nan])
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.5) and s["min"] == 0.2 and s["max"] == 0.8
    assert s["median"] == pytest.approx(0.5) and s["sd"] == pytest.approx(np.std([0.2, 0.4, 0.6, 0.8], ddof=1))
    assert spread([])["n"] == 0
