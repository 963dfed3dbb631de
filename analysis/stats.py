"""Intervals, tests and signal-detection measures (vectorised numpy; no pandas).

Conventions (``reference/study_platforms.md`` §3):

* binomial intervals: Wilson score and Clopper-Pearson ("exact", beta quantiles);
* tests: exact two-sided binomial test (``scipy.stats.binomtest``: the two-sided p-value
  sums the probabilities no larger than that of the observed count); sign test = the
  same on the decisive (non-tied) answers against 1/2;
* multiple comparisons: Holm's step-down adjustment;
* d' = z(H) - z(F) with the log-linear correction (Hautus 1995): H = (hits + 0.5) /
  (signal trials + 1), F = (false alarms + 0.5) / (noise trials + 1), so rates of 0 and
  1 give finite values;
* effect sizes: Cohen's h = 2 asin(sqrt(p)) - 2 asin(sqrt(p0)) for a share against a reference share
  (0.2 small, 0.5 medium, 0.8 large); monotone in ``p``, so an interval of the share maps onto one of h;
* clustered data: percentile intervals from a cluster bootstrap over participants, or a
  two-way "pigeonhole" bootstrap over participants and clips at once (Owen 2007), both
  on per-cluster sums so that a million trials cost no more than their clusters.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats as _st

__all__ = [
    "wilson_ci",
    "clopper_pearson_ci",
    "binom_test",
    "sign_test",
    "holm",
    "cohens_h",
    "loglinear_rate",
    "dprime",
    "bootstrap_weights",
    "cluster_bootstrap_ratio",
    "pigeonhole_bootstrap_ratio",
    "percentile_interval",
    "spread",
]


def cohens_h(p, p0) -> np.ndarray:
    """Cohen's h of share ``p`` against the reference share ``p0`` (vectorised; NaN stays NaN)."""
    p, p0 = np.asarray(p, dtype=np.float64), np.asarray(p0, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return 2 * np.arcsin(np.sqrt(np.clip(p, 0, 1))) - 2 * np.arcsin(np.sqrt(np.clip(p0, 0, 1)))


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level!r}")
    return float(_st.norm.ppf(0.5 + level / 2))


def wilson_ci(k, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes in ``n`` trials (arrays broadcast; NaN where ``n == 0``).

    >>> lo, hi = wilson_ci(8, 10)
    >>> round(float(lo), 3), round(float(hi), 3)
    (0.49, 0.943)
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    z = _z(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (k + z * z / 2) / (n + z * z)
        half = z / (n + z * z) * np.sqrt(np.maximum(k * (n - k) / n, 0) + z * z / 4)
        lo, hi = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    bad = n <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def clopper_pearson_ci(k, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson ("exact") interval from beta quantiles; 0 and 1 at the ends; NaN where ``n == 0``.

    >>> lo, hi = clopper_pearson_ci(8, 10)
    >>> round(float(lo), 3), round(float(hi), 3)
    (0.444, 0.975)
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    a = (1 - level) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, _st.beta.ppf(a, np.maximum(k, 1e-300), n - k + 1), 0.0)
        hi = np.where(k < n, _st.beta.ppf(1 - a, k + 1, np.maximum(n - k, 1e-300)), 1.0)
    bad = n <= 0
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def binom_test(k, n, p: float = 0.5) -> np.ndarray:
    """Exact two-sided binomial test p-value of ``k`` in ``n`` against ``p`` (element-wise; NaN where ``n == 0``)."""
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64))
    out = np.full(k.shape, np.nan)
    for idx in np.ndindex(k.shape):
        if n[idx] > 0:
            out[idx] = _st.binomtest(int(k[idx]), int(n[idx]), p).pvalue
    return out if out.ndim else out[()]


def sign_test(a_wins, b_wins) -> np.ndarray:
    """Two-sided sign test: exact binomial test of ``a_wins`` in ``a_wins + b_wins`` decisive answers against 1/2."""
    a = np.asarray(a_wins, dtype=np.int64)
    return binom_test(a, a + np.asarray(b_wins, dtype=np.int64), 0.5)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (NaNs are kept and not counted).

    >>> holm([0.01, 0.04, 0.03]).round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adj, 1.0)
    return out


def loglinear_rate(k, n) -> np.ndarray:
    """The log-linear corrected rate ``(k + 0.5) / (n + 1)`` (Hautus 1995)."""
    return (np.asarray(k, dtype=float) + 0.5) / (np.asarray(n, dtype=float) + 1.0)


def dprime(hits, n_signal, false_alarms, n_noise, correction: str | None = "loglinear") -> np.ndarray:
    """d' = z(H) - z(F) from counts; ``correction="loglinear"`` (default) or None (raw rates, may be infinite).

    NaN where a group has no signal or no noise trials.
    """
    n_signal, n_noise = np.asarray(n_signal, dtype=float), np.asarray(n_noise, dtype=float)
    if correction == "loglinear":
        h, f = loglinear_rate(hits, n_signal), loglinear_rate(false_alarms, n_noise)
    elif correction is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            h, f = np.asarray(hits, float) / n_signal, np.asarray(false_alarms, float) / n_noise
    else:
        raise ValueError(f"unknown d' correction {correction!r}; known: 'loglinear', None")
    with np.errstate(invalid="ignore", divide="ignore"):
        d = _st.norm.ppf(h) - _st.norm.ppf(f)
    return np.where((n_signal > 0) & (n_noise > 0), d, np.nan)


def bootstrap_weights(n_clusters: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n_clusters)`` resampling counts: each row draws ``n_clusters`` clusters with replacement."""
    if n_clusters <= 0 or n_boot <= 0:
        return np.zeros((max(n_boot, 0), max(n_clusters, 0)), dtype=np.float32)
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    draws += np.arange(n_boot)[:, None] * n_clusters
    counts = np.bincount(draws.ravel(), minlength=n_boot * n_clusters)
    return counts.reshape(n_boot, n_clusters).astype(np.float32)


def percentile_interval(samples: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval, ignoring non-finite replicates (NaN if none are finite)."""
    s = np.where(np.isfinite(samples), samples, np.nan)
    a = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice gives NaN, as wanted
        lo, hi = np.nanquantile(s, [a, 1 - a], axis=axis)
    return lo, hi


def cluster_bootstrap_ratio(
    num, den, n_boot: int = 1000, level: float = 0.95, rng: np.random.Generator | None = None
) -> tuple[float, float]:
    """Percentile interval of ``sum(num) / sum(den)`` resampling clusters (e.g. participants) with replacement.

    ``num`` and ``den`` are per-cluster sums (e.g. successes and trials of each participant).
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if len(num) == 0 or n_boot <= 0:
        return math.nan, math.nan
    rng = rng if rng is not None else np.random.default_rng(0)
    w = bootstrap_weights(len(num), n_boot, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w @ num) / (w @ den)
    lo, hi = percentile_interval(r, level)
    return float(lo), float(hi)


def pigeonhole_bootstrap_ratio(
    num: np.ndarray, den: np.ndarray, n_boot: int = 1000, level: float = 0.95, rng: np.random.Generator | None = None
) -> tuple[float, float]:
    """Two-way (participants x clips) bootstrap interval of ``num.sum() / den.sum()``.

    ``num`` and ``den`` are ``(participants, clips)`` tables of sums. Each replicate
    resamples rows and columns independently (Owen 2007, "the pigeonhole bootstrap"),
    which accounts for both crossed random effects and errs on the conservative side.
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if num.size == 0 or n_boot <= 0:
        return math.nan, math.nan
    rng = rng if rng is not None else np.random.default_rng(0)
    wr = bootstrap_weights(num.shape[0], n_boot, rng)
    wc = bootstrap_weights(num.shape[1], n_boot, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("bc,bc->b", wr @ num, wc) / np.einsum("bc,bc->b", wr @ den, wc)
    lo, hi = percentile_interval(r, level)
    return float(lo), float(hi)


def spread(values) -> dict[str, float]:
    """Summary of a spread (e.g. per-participant rates): n, mean, sd, min, quartiles, max (NaNs dropped)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return {k: math.nan for k in ("n", "mean", "sd", "min", "q1", "median", "q3", "max")} | {"n": 0}
    q = np.quantile(v, [0, 0.25, 0.5, 0.75, 1])
    return {
        "n": int(len(v)),
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
        "min": float(q[0]),
        "q1": float(q[1]),
        "median": float(q[2]),
        "q3": float(q[3]),
        "max": float(q[4]),
    }
