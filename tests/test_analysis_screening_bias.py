"""The d' bias from the sensitivity screen: the simulation against exact binomial values, and in the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom
from scipy.stats import norm

from analysis.screening_bias import screening_bias
from analysis.screening_bias import screening_bias_table


def _exact(dprime: float, criterion: float, ns: int, threshold: float) -> tuple[float, float]:
    """Without a criterion spread: the share passing (P(false alarms <= ns (1 - threshold))) and the limit of the
    pooled d' among those passing, z(H) - z(E[false alarms | passing] / ns), from the binomial directly."""
    f, h = norm.sf(criterion), norm.sf(criterion - dprime)
    top = math.floor(ns * (1 - threshold) + 1e-9)
    k = np.arange(top + 1)
    p = binom.pmf(k, ns, f)
    return float(p.sum()), float(norm.ppf(h) - norm.ppf((k * p).sum() / p.sum() / ns))


@pytest.mark.parametrize(("criterion", "ns"), [(0.8, 30), (0.8, 10), (1.0, 20)])
def test_the_simulated_bias_matches_the_exact_binomial_values(criterion, ns):
    r = screening_bias(0.75, criterion, ns, 60, 0.8, participants=200_000, seed=1)
    share, limit = _exact(0.75, criterion, ns, 0.8)
    assert r["pass_share"] == pytest.approx(share, abs=0.005)
    assert r["pooled_passed"] == pytest.approx(limit, abs=0.02)
    assert r["bias"] > 0.1  # a liberal criterion: the screen bites and d' comes out too high
    assert r["false_alarm_rate_passed"] < r["true_false_alarm_rate_passed"]  # selection on noise


def test_no_screen_no_bias_and_a_conservative_criterion_almost_none():
    r = screening_bias(0.75, 0.8, 30, 60, 0.0, participants=200_000, seed=2)
    assert r["pass_share"] == 1.0 and r["pooled_passed"] == pytest.approx(0.75, abs=0.02)
    t = screening_bias_table(0.75, 1.645, 30, 60, 0.8, participants=100_000)
    assert list(t["criterion_sd"]) == [0.0, 0.25, 0.5]
    assert (t["bias"].abs() < 0.05).all() and t.loc[
        0, "pass_share"
    ] > 0.99  # the paper's F = 5 %: the screen rarely bites
    assert (np.diff(t["pass_share"]) < 0).all()  # a wider spread of criteria: more liberal participants screened out
