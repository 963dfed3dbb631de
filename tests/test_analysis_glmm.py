"""The Laplace mixed models of ``analysis.glmm``: their intervals cover the true values at the nominal rate in
simulated studies (the check the variational intervals failed), and a spread estimated at 0 gets a usable interval.

The studies are simulated here with numpy, independently of ``analysis.simulate``: crossed participant and clip
effects, every participant sees every clip.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit
from scipy.special import ndtr

from analysis.glmm import mixed_logistic
from analysis.glmm import mixed_sdt

B0 = math.log(9)  # the typical participant on the typical clip chooses the true label with probability 0.9


def _logistic_study(seed: int, participants: int = 30, clips: int = 20, sd_p: float = 0.5, sd_c: float = 0.3):
    rng = np.random.default_rng([2026, seed])
    up, uc = rng.normal(0, sd_p, participants), rng.normal(0, sd_c, clips)
    p = np.repeat(np.arange(participants), clips)
    c = np.tile(np.arange(clips), participants)
    return rng.random(len(p)) < expit(B0 + up[p] + uc[c]), p, c


def _sdt_study(seed: int, participants: int = 20, clips: int = 12, criterion: float = 1.0, d: float = 1.0):
    """Every clip once as an identical pair (signal 0) and once attacked (signal 1); spreads 0.3 / 0.3 / 0.2 / 0.3
    of participant criterion, participant d', clip criterion, clip d'."""
    rng = np.random.default_rng([2027, seed])
    pc, pd_, cc, cd = (rng.normal(0, s, n) for s, n in ((0.3, participants), (0.3, participants), (0.2, clips),
                                                          (0.3, clips)))  # fmt: skip
    p = np.repeat(np.arange(participants), 2 * clips)
    c = np.tile(np.repeat(np.arange(clips), 2), participants)
    s = np.tile([0, 1], participants * clips)
    eta = -(criterion + pc[p] + cc[c]) + s * (d + pd_[p] + cd[c])
    return rng.random(len(p)) < ndtr(eta), s, p, c


def test_the_intercept_interval_covers_the_true_value_at_the_nominal_rate():
    covered, estimates = 0, []
    for seed in range(200):
        y, p, c = _logistic_study(seed)
        fit = mixed_logistic(y, p, c)
        assert fit.converged, fit.note
        row = fit.table.iloc[0]
        assert row.term == "intercept" and row.scale == "log-odds" and row.interval.startswith("profile")
        covered += row.ci_low <= B0 <= row.ci_high
        estimates.append(row.estimate)
    assert 0.90 <= covered / 200 <= 0.99, covered
    assert abs(np.mean(estimates) - B0) < 0.1  # nearly unbiased


def test_criterion_and_dprime_intervals_cover_the_true_values():
    n, hits = 60, {"criterion": 0, "d'": 0}
    for seed in range(n):
        y, s, p, c = _sdt_study(seed)
        fit = mixed_sdt(y, s, p, c)
        assert fit.converged, fit.note
        t = fit.table.set_index("term")
        for term in hits:
            hits[term] += t.loc[term, "ci_low"] <= 1.0 <= t.loc[term, "ci_high"]
    for term, k in hits.items():
        assert 0.85 <= k / n <= 1.0, (term, k)


def test_the_sdt_model_recovers_a_large_study_and_names_its_terms():
    y, s, p, c = _sdt_study(0, participants=60, clips=30, criterion=1.645, d=0.75)
    fit = mixed_sdt(y, s, p, c)
    t = fit.table.set_index("term")
    assert list(t.index) == [
        "criterion",
        "false-alarm rate",
        "d'",
        "sd(participant criterion)",
        "sd(participant d')",
        "sd(clip criterion)",
        "sd(clip d')",
    ]
    assert t.loc["criterion", "ci_low"] < 1.645 < t.loc["criterion", "ci_high"]
    assert t.loc["d'", "ci_low"] < 0.75 < t.loc["d'", "ci_high"]
    assert t.loc["false-alarm rate", "estimate"] == pytest.approx(ndtr(-t.loc["criterion", "estimate"]))


def test_a_spread_estimated_at_zero_gets_zero_and_a_finite_profile_bound():
    # no clip effect at all: sd(clip) is estimated at (or next to) 0, where a Wald interval on log sd is useless
    y, p, c = _logistic_study(3, participants=40, clips=20, sd_c=0.0)
    fit = mixed_logistic(y, p, c)
    row = fit.table.set_index("term").loc["sd(clip)"]
    assert row.ci_low == 0.0 and 0 < row.ci_high < 1.0, row
    assert "profile" in row.interval
