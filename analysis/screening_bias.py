"""The bias that the sensitivity screen introduces into d', by simulation.

The screen keeps a participant whose accuracy on identical pairs (1 - their false-alarm rate)
is at least the threshold. It selects on two things: a conservative criterion (a real property)
and a false-alarm count that came out low by chance (noise). The second biases d': among the
participants kept, the observed false-alarm rate is below their true one, so z(F) is too
low and d' = z(H) - z(F) too high; the fewer identical pairs per participant, the larger the
effect. Pooling over participants with different criteria adds a bias of its own (the pooled
rates are averages of rates, not of z-scores), with or without a screen.

:func:`screening_bias` simulates a population under the equal-variance model of the report
(criterion ``c_i ~ N(criterion, criterion_sd)``, d' ``d_i ~ N(dprime, dprime_sd)``, independent),
gives every participant the study's numbers of identical and attacked pairs, applies the screen
and estimates d' as the report does (pooled counts, log-linear correction; and the mean of the
per-participant estimates). The report runs it at the study's own trial counts and threshold,
with the criterion and d' estimated from every completed participant (unscreened).
"""

from __future__ import annotations

import math
from typing import Any
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

from .stats import dprime as dprime_from_counts

__all__ = ["screening_bias", "screening_bias_table"]


def screening_bias(
    dprime: float,
    criterion: float,
    sensitivity_trials: int,
    perceivability_trials: int,
    threshold: float,
    criterion_sd: float = 0.0,
    dprime_sd: float = 0.0,
    participants: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """One simulated population: the share passing the screen and d' without and with it.

    ``true_dprime``: the population's mean d' (what a reader wants); ``true_dprime_passed``: the mean
    true d' of those passing (differs only if d' and criterion were related; here they are not);
    ``pooled_all`` / ``pooled_passed``: the report's pooled estimate on everyone / on those passing;
    ``mean_passed``: the mean of the per-participant estimates among those passing; ``bias``:
    ``pooled_passed - true_dprime``; ``false_alarm_rate_passed`` (observed) and
    ``true_false_alarm_rate_passed`` (their true rates) show the selection on noise.
    """
    if sensitivity_trials < 1 or perceivability_trials < 1:
        raise ValueError("screening_bias needs at least one identical and one attacked pair per participant")
    rng = np.random.default_rng(seed)
    c = criterion + criterion_sd * rng.standard_normal(participants)
    d = dprime + dprime_sd * rng.standard_normal(participants)
    f_true, h_true = norm.sf(c), norm.sf(c - d)
    fa = rng.binomial(sensitivity_trials, f_true)
    hits = rng.binomial(perceivability_trials, h_true)
    passed = 1 - fa / sensitivity_trials >= threshold
    ns, np_ = sensitivity_trials, perceivability_trials

    def pooled(mask: np.ndarray) -> float:
        if not mask.any():
            return math.nan
        k = int(mask.sum())
        return float(dprime_from_counts(hits[mask].sum(), np_ * k, fa[mask].sum(), ns * k))

    per = dprime_from_counts(hits, np_, fa, ns)
    out = {
        "criterion": criterion,
        "criterion_sd": criterion_sd,
        "dprime_sd": dprime_sd,
        "pass_share": float(passed.mean()),
        "true_dprime": float(d.mean()),
        "true_dprime_passed": float(d[passed].mean()) if passed.any() else math.nan,
        "pooled_all": pooled(np.ones(participants, bool)),
        "pooled_passed": pooled(passed),
        "mean_passed": float(per[passed].mean()) if passed.any() else math.nan,
        "false_alarm_rate_passed": float(fa[passed].sum() / (ns * passed.sum())) if passed.any() else math.nan,
        "true_false_alarm_rate_passed": float(f_true[passed].mean()) if passed.any() else math.nan,
    }
    out["bias"] = out["pooled_passed"] - out["true_dprime"]
    return out


def screening_bias_table(
    dprime: float,
    criterion: float,
    sensitivity_trials: int,
    perceivability_trials: int,
    threshold: float,
    criterion_sds: Sequence[float] = (0.0, 0.25, 0.5),
    participants: int = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`screening_bias` for several criterion spreads (one row each, the same seed)."""
    return pd.DataFrame(
        [
            screening_bias(
                dprime,
                criterion,
                sensitivity_trials,
                perceivability_trials,
                threshold,
                criterion_sd=float(s),
                participants=participants,
                seed=seed,
            )
            for s in criterion_sds
        ]
    )
