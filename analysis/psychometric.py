"""Psychometric functions for the detection threshold of an attack (issue: human detection thresholds).

A yes/no detection ("changed?") at physical strength ``x`` (e.g. the mean joint displacement in
mm; ``x = 0`` is an identical pair):

    P(changed | x) = guess + (1 - guess - lapse) * F(x),   F(x) = Phi((ln x - mu) / sigma),  F(0) = 0

``guess`` is the false-alarm rate (identical pairs estimate it), ``lapse`` the share of attention
lapses at high strength. The ``p`` detection threshold is where ``F`` reaches ``p`` (corrected for
guessing and lapses): ``exp(mu + sigma * Phi^-1(p))``; 50 % and 75 % are reported. Fitted by
maximum likelihood (scipy L-BFGS-B on ``mu``, ``ln sigma``, and ``guess`` in [0, 0.5], ``lapse`` in
[0, ``max_lapse``]); intervals by a percentile bootstrap over participants (each resample refitted),
so the clustering of trials in participants is allowed for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm

__all__ = ["Psychometric", "fit_psychometric", "detection_probability"]

THRESHOLDS = (0.5, 0.75)
"""The detection levels reported (of F, the guess- and lapse-corrected share)."""


def detection_probability(x: np.ndarray, mu: float, sigma: float, guess: float = 0.0, lapse: float = 0.0) -> np.ndarray:
    """P(changed | x) of the model above (``x <= 0``: the guess rate)."""
    x = np.asarray(x, float)
    with np.errstate(divide="ignore"):
        f = np.where(x > 0, norm.cdf((np.log(np.where(x > 0, x, 1.0)) - mu) / sigma), 0.0)
    return guess + (1.0 - guess - lapse) * f


@dataclass
class Psychometric:
    converged: bool
    note: str = ""
    mu: float = math.nan
    sigma: float = math.nan
    guess: float = math.nan
    lapse: float = math.nan
    thresholds: dict[float, float] = field(default_factory=dict)
    """Detection level p -> strength where F(x) = p."""
    intervals: dict[float, tuple[float, float]] = field(default_factory=dict)
    """Detection level p -> percentile bootstrap interval over participants (empty without a bootstrap)."""
    n_boot: int = 0

    def threshold(self, p: float) -> float:
        return float(math.exp(self.mu + self.sigma * norm.ppf(p)))


def _counts(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    levels, inv = np.unique(x, return_inverse=True)
    return levels, np.bincount(inv, weights=w * y), np.bincount(inv, weights=w)


def _fit_counts(levels: np.ndarray, k: np.ndarray, n: np.ndarray, max_lapse: float) -> tuple[np.ndarray, bool, str]:
    pos = levels > 0
    if not pos.any() or n[pos].sum() == 0:
        return np.full(4, np.nan), False, "no trials at a strength above 0"
    lx = np.log(levels[pos])
    # start: the median positive strength, a spread of the log range, the observed rate at x = 0
    spread = float(np.ptp(lx)) / 2 if len(lx) > 1 else 0.5
    g0 = float(np.clip(k[~pos].sum() / n[~pos].sum(), 0.01, 0.4)) if n[~pos].sum() else 0.05
    start = np.array([float(np.median(lx)), math.log(max(spread, 0.05)), g0, min(0.02, max_lapse / 2)])

    def nll(t: np.ndarray) -> float:
        mu, sigma, g, lam = t[0], math.exp(t[1]), t[2], t[3]
        p = np.clip(detection_probability(levels, mu, sigma, g, lam), 1e-12, 1 - 1e-12)
        return -float(np.sum(k * np.log(p) + (n - k) * np.log1p(-p)))

    bounds = [(None, None), (math.log(1e-3), math.log(20.0)), (0.0, 0.5), (0.0, max_lapse)]
    res = minimize(nll, start, method="L-BFGS-B", bounds=bounds)
    ok = bool(res.success) and np.isfinite(res.x).all()
    return res.x, ok, "" if ok else f"optimiser: {res.message}"


def fit_psychometric(
    x: np.ndarray,
    y: np.ndarray,
    participant: np.ndarray | None = None,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    max_lapse: float = 0.1,
) -> Psychometric:
    """Fit the model to trials (strength ``x``, ``y`` 1 = said changed); bootstrap over ``participant``.

    Without ``participant`` (or with ``n_boot = 0``) no intervals are given.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("fit_psychometric: x and y must be 1-D arrays of the same length")
    if not np.isfinite(x).all() or (x < 0).any():
        raise ValueError("fit_psychometric: strengths must be finite and >= 0")
    levels, k, n = _counts(x, y, np.ones(len(x)))
    t, ok, note = _fit_counts(levels, k, n, max_lapse)
    if not ok:
        return Psychometric(False, note)
    out = Psychometric(True, "", float(t[0]), float(math.exp(t[1])), float(t[2]), float(t[3]))
    out.thresholds = {p: out.threshold(p) for p in THRESHOLDS}
    if participant is None or n_boot <= 0:
        return out
    pc, uniq = np.unique(np.asarray(participant).astype(str), return_inverse=True)
    P = len(pc)
    rng = np.random.default_rng(seed)
    lv_index = np.searchsorted(levels, x)
    # per participant x level counts, then each resample's counts are a weighted sum over participants
    kk = np.zeros((P, len(levels)))
    nn = np.zeros((P, len(levels)))
    np.add.at(kk, (uniq, lv_index), y)
    np.add.at(nn, (uniq, lv_index), 1.0)
    boots = []
    for _ in range(n_boot):
        wts = np.bincount(rng.integers(0, P, P), minlength=P).astype(float)
        tb, okb, _ = _fit_counts(levels, wts @ kk, wts @ nn, max_lapse)
        if okb:
            boots.append([math.exp(tb[0] + math.exp(tb[1]) * norm.ppf(p)) for p in THRESHOLDS])
    if boots:
        b = np.asarray(boots)
        a = (1 - level) / 2
        out.intervals = {
            p: (float(np.quantile(b[:, j], a)), float(np.quantile(b[:, j], 1 - a))) for j, p in enumerate(THRESHOLDS)
        }
        out.n_boot = len(boots)
    return out
