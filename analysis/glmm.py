"""Generalised linear mixed models by the Laplace approximation, with profile-likelihood intervals.

Two models, both with crossed participant and clip effects:

* deceitfulness, logit link: ``y ~ 1 + (1 | participant) + (1 | clip)``, where ``y`` is "chose
  the true label";
* indistinguishability, probit link, the equal-variance signal-detection model as a GLMM:
  ``said_changed ~ signal + (1 + signal || participant) + (1 + signal || clip)`` on the
  sensitivity (identical pair, ``signal = 0``) and perceivability (attacked pair, ``signal = 1``)
  trials. ``-intercept`` is the criterion and the slope is d' for a typical participant on a
  typical clip; the participant and clip effects on intercept and slope are the spreads of
  criterion and sensitivity. The effects are independent (no correlation terms).

The fit, as ``lme4::glmer(nAGQ = 1)`` does it: random effects ``b = sigma * u`` with standard
normal ``u``; for given fixed effects and log standard deviations, a damped Newton iteration
finds the mode of ``u`` (the Hessian is exact for both links); the Laplace log-likelihood is
``loglik(u) - |u|^2 / 2 - logdet(H) / 2``; L-BFGS-B maximises it over the fixed effects and the
log standard deviations (bounded to [-7, 3]). Intervals: for fixed effects the profile likelihood
(every other parameter re-optimised, the bound where twice the drop in log-likelihood reaches the
cutoff; the cutoff is F(1, m - 1) with m the fewest levels of any effect, the small-sample
correction that brings 20-30 participants to nominal coverage where the chi-square quantile
undercovers), for the standard deviations Wald intervals on the log scale from the
numerical Hessian (the profile of a standard deviation costs several times more; a lower bound
that reaches the boundary is reported as 0); a standard deviation estimated at 0 (the boundary,
where the curvature says nothing) gets the profile likelihood's upper bound and 0 as its lower.
The ``interval`` column names the method of each row.

The cost grows with trials x effects, so above ``max_participants`` the model is fitted on a
seeded random subset of the participants (reported). If the fit fails (every answer the same, no
effects to fit, an optimiser error, non-finite values) the result says so (``converged = False``
and the reason) and holds no estimates; the report then relies on the bootstrap intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field

import numpy as np
import pandas as pd

__all__ = ["MixedFit", "mixed_logistic", "mixed_sdt"]

_LOG_SD_BOUNDS = (-7.0, 3.0)
_COLUMNS = ["term", "scale", "estimate", "sd", "ci_low", "ci_high", "interval"]
_PROFILE = "profile likelihood (Laplace)"
_WALD = "Wald on log sd (Laplace Hessian); sd column: of log sd"
_AT_ZERO = "estimated at 0: upper bound from the profile likelihood, lower bound 0"


@dataclass
class MixedFit:
    """The fit's table (``term, scale, estimate, sd, ci_low, ci_high, interval``) and how it was obtained."""

    table: pd.DataFrame
    converged: bool
    method: str
    note: str
    participants_used: int
    participants_total: int
    trials: int
    extra: dict = field(default_factory=dict)


@dataclass
class _Effect:
    name: str
    codes: np.ndarray  # level index per trial, -1 where the effect does not apply
    covariate: np.ndarray  # the effect's multiplier per trial (1 for an intercept effect)


class _Laplace:
    """Laplace log-likelihood of a binary GLMM with independent variance components."""

    def __init__(self, k: np.ndarray, n_trials: np.ndarray, X: np.ndarray, effects: list[_Effect], link: str):
        from scipy import sparse

        self.k1, self.k0, self.X, self.link = k, n_trials - k, X, link
        n = len(k)
        rows, cols, vals, comp, off = [], [], [], [], 0
        for k, e in enumerate(effects):
            m = (e.codes >= 0) & (e.covariate != 0)
            size = int(e.codes.max() + 1)
            rows.append(np.flatnonzero(m))
            cols.append(e.codes[m] + off)
            vals.append(e.covariate[m])
            comp.append(np.full(size, k))
            off += size
        self.Z = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, off))
        self.ZtT = self.Z.T.tocsr()
        self.comp = np.concatenate(comp)
        self.q = off
        self.p = X.shape[1]
        self.k = len(effects)
        self.u = np.zeros(off)

    def _terms(self, eta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """Binomial log-likelihood of the cells; its first derivative in eta, minus its second, minus its third."""
        k1, k0 = self.k1, self.k0
        if self.link == "logit":
            from scipy.special import expit

            n, mu = k1 + k0, expit(eta)
            ll = float(k1 @ eta - n @ np.logaddexp(0, eta))
            w = n * mu * (1 - mu)
            return ll, k1 - n * mu, w, w * (1 - 2 * mu)
        from scipy.special import log_ndtr

        lp, lm = log_ndtr(eta), log_ndtr(-eta)
        logphi = -0.5 * eta * eta - 0.5 * math.log(2 * math.pi)
        rp, rm = np.exp(logphi - lp), np.exp(logphi - lm)  # phi / Phi(eta), phi / Phi(-eta)
        ap, am = eta + rp, rm - eta
        w = k1 * rp * ap + k0 * rm * am
        w3 = k1 * (rp * (1 - rp * ap) - rp * ap * ap) + k0 * (rm * am * am + rm * (rm * am - 1))
        return float(k1 @ lp + k0 @ lm), k1 * rp - k0 * rm, w, w3

    def _h(self, Zl, w: np.ndarray) -> np.ndarray:
        H = (Zl.T @ Zl.multiply(w[:, None])).toarray()
        H[np.diag_indices_from(H)] += 1
        return H

    def value(self, theta: np.ndarray, gradient: bool = False):
        """The Laplace log-likelihood at (fixed effects, log sds), and its gradient; updates the warm start.

        The gradient is exact: the envelope theorem for the mode's objective, and for the log
        determinant the mode's derivative from the implicit-function theorem.
        """
        from scipy import sparse
        from scipy.linalg import cho_factor
        from scipy.linalg import cho_solve

        beta, lam = theta[: self.p], np.exp(theta[self.p :])[self.comp]
        off = self.X @ beta
        Zl = (self.Z @ sparse.diags(lam)).tocsr()
        u = self.u.copy()

        def objective(u: np.ndarray):
            eta = off + Zl @ u
            ll, d1, w, w3 = self._terms(eta)
            return ll - 0.5 * float(u @ u), d1, w, w3

        g, d1, w, w3 = objective(u)
        for _ in range(100):
            step = cho_solve(cho_factor(self._h(Zl, w), lower=True, check_finite=False), Zl.T @ d1 - u)
            t = 1.0
            while True:
                new = objective(u + t * step)
                if new[0] >= g - 1e-12 or t < 1e-6:
                    break
                t /= 2
            u = u + t * step
            g, d1, w, w3 = new
            if float(np.max(np.abs(t * step), initial=0)) < 1e-8:
                break
        c = cho_factor(self._h(Zl, w), lower=True, check_finite=False)
        if np.all(np.isfinite(u)):
            self.u = u
        val = g - float(np.sum(np.log(np.diag(c[0]))))
        if not gradient:
            return val
        S = cho_solve(c, np.eye(self.q), check_finite=False)
        ZlS = np.asarray(Zl @ S)
        h = np.asarray(Zl.multiply(ZlS).sum(axis=1)).ravel()  # diag(Zl S Zl')
        zd = Zl.T @ d1
        D = np.zeros((self.q, self.k))
        D[np.arange(self.q), self.comp] = 1.0
        # derivative of the mode's gradient in each parameter (columns: beta, then log sds)
        wX = self.X * w[:, None]
        ZDu = Zl @ (D * u[:, None])  # d eta / d log sd at a fixed u
        R = np.hstack([-(Zl.T @ wX), D * zd[:, None] - Zl.T @ (ZDu * w[:, None])])
        dU = S @ R
        dEta = np.hstack([self.X, ZDu]) + Zl @ dU
        dlogdet = (h * w3) @ dEta
        dlogdet[self.p :] += 2 * (D * (1 - np.diag(S))[:, None]).sum(axis=0)
        dg = np.concatenate([self.X.T @ d1, (D * (zd * u)[:, None]).sum(axis=0)])
        return val, dg - 0.5 * dlogdet

    def bounds(self) -> list[tuple[float | None, float | None]]:
        return [(None, None)] * self.p + [_LOG_SD_BOUNDS] * self.k


def _maximise(model: _Laplace, start: np.ndarray, free: np.ndarray, fixed_value: dict[int, float]):
    """Maximise over the ``free`` coordinates with the others held at ``fixed_value`` (L-BFGS-B, exact gradient)."""
    from scipy.optimize import minimize

    theta = start.copy()
    for j, v in fixed_value.items():
        theta[j] = v
    idx = np.flatnonzero(free)

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        th = theta.copy()
        th[idx] = x
        val, grad = model.value(th, gradient=True)
        return -val, -grad[idx]

    b = [model.bounds()[i] for i in idx]
    x0 = np.clip(
        theta[idx],
        [lo if lo is not None else -np.inf for lo, _ in b],
        [hi if hi is not None else np.inf for _, hi in b],
    )
    res = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=b, options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-7})
    theta[idx] = res.x
    return theta, -float(res.fun), res


def _hessian(model: _Laplace, theta: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Hessian of the Laplace log-likelihood by central differences of its exact gradient."""
    k = len(theta)
    H = np.zeros((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h
        H[i] = (model.value(theta + e, gradient=True)[1] - model.value(theta - e, gradient=True)[1]) / (2 * h)
    return (H + H.T) / 2


def _profile(
    model: _Laplace,
    theta: np.ndarray,
    ell: float,
    j: int,
    se: float,
    crit: float,
    limits: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[float, float]:
    """Profile-likelihood interval of coordinate ``j``; a side whose drop stays below the quantile up to its
    ``limits`` is infinite."""
    from scipy.optimize import brentq

    free = np.ones(len(theta), bool)
    free[j] = False

    def drop(t: float) -> float:
        # each evaluation starts from the optimum (not from the previous one): the same t gives the same value,
        # which the root finder needs
        th, val, _ = _maximise(model, theta, free, {j: t})
        return 2 * (ell - val) - crit

    out = []
    d0 = math.sqrt(crit) * se if np.isfinite(se) and se > 0 else 0.5  # the Wald bound: usually close
    for sign, limit in ((-1, limits[0]), (1, limits[1])):
        lo_t, d = theta[j], d0
        hit = None
        for _ in range(12):
            t = theta[j] + sign * d
            t = max(t, limit) if sign < 0 else min(t, limit)
            if t == lo_t:
                break
            if drop(t) > 0:
                hit = t
                break
            lo_t, d = t, d * 1.5
        if hit is None:
            out.append(-math.inf if sign < 0 else math.inf)
            continue
        a, b = sorted((lo_t, hit))
        out.append(float(brentq(drop, a, b, xtol=1e-3)))
    model.value(theta)  # leave the warm start at the optimum
    return out[0], out[1]


def _fit(
    y: np.ndarray,
    X: np.ndarray,
    fixed: list[str],
    effects: list[_Effect],
    link: str,
    level: float,
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]], list[str], dict]:
    """Estimates, standard errors, intervals and the method of each (profile for fixed effects, Wald on log sd
    for the standard deviations, the profile's upper bound for one estimated at the boundary, 0)."""
    from scipy.stats import f as f_dist
    from scipy.stats import norm
    from threadpoolctl import threadpool_limits

    # trials with the same fixed-effect row and effect levels are one binomial cell (same likelihood, fewer rows)
    keys = np.column_stack([X] + [np.column_stack([e.codes, e.covariate]) for e in effects])
    _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inv = inv.ravel()
    cells = [_Effect(e.name, e.codes[first], e.covariate[first]) for e in effects]
    k = np.bincount(inv, weights=y).astype(float)
    model = _Laplace(k, np.bincount(inv).astype(float), X[first], cells, link)
    start = np.zeros(model.p + model.k)
    pbar = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    if link == "logit":
        start[0] = math.log(pbar / (1 - pbar))
    else:
        start[: model.p] = np.linalg.lstsq(X, np.full(len(y), norm.ppf(pbar)) + (y - pbar), rcond=None)[0]
    start[model.p :] = math.log(0.5)
    with threadpool_limits(limits=1, user_api="blas"):
        theta, ell, res = _maximise(model, start, np.ones(len(start), bool), {})
        if not res.success and "ABNORMAL" not in str(res.message):
            raise RuntimeError(f"the optimiser stopped: {res.message}")
        H = _hessian(model, theta)
        try:
            cov = np.linalg.inv(-H)
            se = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
        except np.linalg.LinAlgError:
            se = np.full(len(theta), np.nan)
        # small-sample cutoff: F(1, m - 1) for the fewest levels m of any effect (t squared on m - 1 degrees of
        # freedom) instead of chi-square(1): the variance components are estimated from m levels only
        m = min(int(e.codes.max() + 1) for e in effects)
        crit = float(f_dist.ppf(level, 1, max(m - 1, 1)))
        z = float(norm.ppf(0.5 + level / 2))
        ci, kinds = [], []
        for j in range(len(theta)):
            if j < model.p:
                ci.append(_profile(model, theta, ell, j, se[j], crit))
                kinds.append(_PROFILE)
            elif theta[j] <= _LOG_SD_BOUNDS[0] + 1e-3 or not np.isfinite(se[j]) or se[j] > 1:
                # at or near the boundary the curvature says little: the profile, within the bounds (a lower side
                # that stays flat down to the bound is 0)
                ci.append(_profile(model, theta, ell, j, math.nan, crit, _LOG_SD_BOUNDS))
                kinds.append(_AT_ZERO if theta[j] <= _LOG_SD_BOUNDS[0] + 1e-3 else _PROFILE)
            else:
                ci.append((theta[j] - z * se[j], theta[j] + z * se[j]))
                kinds.append(_WALD)
    return theta, se, ci, kinds, {"loglik": ell, "iterations": int(getattr(res, "nit", -1))}


def _subset(participant: np.ndarray, max_participants: int, seed: int) -> tuple[np.ndarray, int, int]:
    part = pd.factorize(np.asarray(participant))[0]
    n_total = int(part.max() + 1) if len(part) else 0
    keep = np.ones(len(part), bool)
    if n_total > max_participants:
        rng = np.random.default_rng(seed)
        chosen = np.zeros(n_total, bool)
        chosen[rng.choice(n_total, max_participants, replace=False)] = True
        keep = chosen[part]
        return keep, max_participants, n_total
    return keep, n_total, n_total


def _sd_row(term: str, scale: str, log_sd: float, se: float, ci: tuple[float, float], kind: str) -> dict:
    lo, hi = ci
    low = 0.0 if lo <= _LOG_SD_BOUNDS[0] + 1e-6 or not np.isfinite(lo) else math.exp(lo)
    return {
        "term": term,
        "scale": scale,
        "estimate": math.exp(log_sd) if log_sd > _LOG_SD_BOUNDS[0] + 1e-3 else 0.0,
        "sd": se,
        "ci_low": low,
        "ci_high": math.exp(hi) if hi < 50 else math.inf,  # exp(50): beyond any spread (and no overflow)
        "interval": kind,
    }


def _codes(x: np.ndarray) -> np.ndarray:
    return pd.factorize(np.asarray(x))[0]


def mixed_logistic(
    y: np.ndarray,
    participant: np.ndarray,
    clip: np.ndarray,
    *,
    max_participants: int = 100,
    seed: int = 0,
    level: float = 0.95,
) -> MixedFit:
    """``y ~ 1 + (1 | participant) + (1 | clip)`` on binary ``y`` (arrays of one length), logit link."""
    y = np.asarray(y, dtype=np.float64)
    keep, used, n_total = _subset(participant, max_participants, seed)
    note = f"fitted on a seeded random {used} of {n_total} participants (the fit's cost)" if used < n_total else ""
    y, part, clip_c = y[keep], _codes(np.asarray(participant)[keep]), _codes(np.asarray(clip)[keep])
    method = "Laplace (logit); profile-likelihood interval for the intercept"
    empty = pd.DataFrame(columns=_COLUMNS)

    def failed(reason: str) -> MixedFit:
        return MixedFit(empty, False, method, reason, used, n_total, int(len(y)))

    if len(y) == 0:
        return failed("no trials")
    pbar = float(y.mean())
    if pbar in (0.0, 1.0):
        return failed(f"every answer is the same (share {pbar:g}): the log-odds are infinite")
    ones = np.ones(len(y))
    effects = [_Effect(name, c, ones) for name, c in (("participant", part), ("clip", clip_c)) if c.max() > 0]
    if not effects:
        return failed("one participant and one clip: no random effects to fit")
    try:
        theta, se, ci, kinds, extra = _fit(y, ones[:, None], ["intercept"], effects, "logit", level)
    except (ValueError, RuntimeError, np.linalg.LinAlgError, FloatingPointError, OverflowError) as e:
        return failed(f"the fit failed ({type(e).__name__}: {e})")
    if not (np.isfinite(theta).all() and all(np.isfinite(ci[0]))):
        return failed("non-finite estimates")
    lo, hi = ci[0]
    prof = _PROFILE
    table = [
        {"term": "intercept", "scale": "log-odds", "estimate": theta[0], "sd": se[0], "ci_low": lo, "ci_high": hi,
         "interval": prof},
        {"term": "intercept", "scale": "probability", "estimate": _expit(theta[0]), "sd": math.nan,
         "ci_low": _expit(lo), "ci_high": _expit(hi), "interval": prof},
    ]  # fmt: skip
    for k, e in enumerate(effects):
        j = 1 + k
        table.append(_sd_row(f"sd({e.name})", "log-odds", theta[j], se[j], ci[j], kinds[j]))
    missing = {"participant", "clip"} - {e.name for e in effects}
    if missing:
        note = "; ".join(x for x in (note, f"only one level of {', '.join(sorted(missing))}: effect left out") if x)
    return MixedFit(pd.DataFrame(table, columns=_COLUMNS), True, method, note, used, n_total, int(len(y)), extra)


def mixed_sdt(
    said_changed: np.ndarray,
    signal: np.ndarray,
    participant: np.ndarray,
    clip: np.ndarray,
    *,
    max_participants: int = 100,
    seed: int = 0,
    level: float = 0.95,
) -> MixedFit:
    """Equal-variance signal detection as a probit GLMM (see the module text); ``signal`` is 1 on attacked pairs."""
    y = np.asarray(said_changed, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64)
    keep, used, n_total = _subset(participant, max_participants, seed)
    note = f"fitted on a seeded random {used} of {n_total} participants (the fit's cost)" if used < n_total else ""
    y, s = y[keep], s[keep]
    part, clip_c = _codes(np.asarray(participant)[keep]), _codes(np.asarray(clip)[keep])
    method = "Laplace (probit signal detection); profile-likelihood intervals for criterion and d'"
    empty = pd.DataFrame(columns=_COLUMNS)

    def failed(reason: str) -> MixedFit:
        return MixedFit(empty, False, method, reason, used, n_total, int(len(y)))

    if len(y) == 0:
        return failed("no trials")
    for name, m in (("identical pairs", s == 0), ("attacked pairs", s == 1)):
        if not m.any():
            return failed(f"no {name}: criterion and d' cannot be separated")
        share = float(y[m].mean())
        if share in (0.0, 1.0):
            return failed(f"every answer on {name} is the same (share changed {share:g}): the probit is infinite")
    ones = np.ones(len(y))
    sig_clip = np.full(len(y), -1)
    sig_clip[s == 1] = _codes(clip_c[s == 1])
    effects = []
    if part.max() > 0:
        effects += [_Effect("participant criterion", part, ones), _Effect("participant d'", part, s)]
    if clip_c.max() > 0:
        effects.append(_Effect("clip criterion", clip_c, ones))
    if sig_clip.max() > 0:
        effects.append(_Effect("clip d'", sig_clip, s))
    if not effects:
        return failed("one participant and one clip: no random effects to fit")
    X = np.column_stack([ones, s])
    try:
        theta, se, ci, kinds, extra = _fit(y, X, ["intercept", "signal"], effects, "probit", level)
    except (ValueError, RuntimeError, np.linalg.LinAlgError, FloatingPointError, OverflowError) as e:
        return failed(f"the fit failed ({type(e).__name__}: {e})")
    if not (np.isfinite(theta).all() and all(np.isfinite(ci[0])) and all(np.isfinite(ci[1]))):
        return failed("non-finite estimates")
    prof = _PROFILE
    (lo0, hi0), (lo1, hi1) = ci[0], ci[1]
    table = [
        {"term": "criterion", "scale": "z", "estimate": -theta[0], "sd": se[0], "ci_low": -hi0, "ci_high": -lo0,
         "interval": prof},
        {"term": "false-alarm rate", "scale": "probability", "estimate": _ndtr(theta[0]), "sd": math.nan,
         "ci_low": _ndtr(lo0), "ci_high": _ndtr(hi0), "interval": prof},
        {"term": "d'", "scale": "z", "estimate": theta[1], "sd": se[1], "ci_low": lo1, "ci_high": hi1,
         "interval": prof},
    ]  # fmt: skip
    for k, e in enumerate(effects):
        j = 2 + k
        table.append(_sd_row(f"sd({e.name})", "z", theta[j], se[j], ci[j], kinds[j]))
    return MixedFit(pd.DataFrame(table, columns=_COLUMNS), True, method, note, used, n_total, int(len(y)), extra)


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _ndtr(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))
