"""Mixed-effects logistic regression with crossed participant and clip effects (statsmodels).

``y ~ 1 + (1 | participant) + (1 | clip)`` fitted by ``BinomialBayesMixedGLM.fit_vb``
(variational Bayes, mean-field). The design is built directly as a sparse matrix
(``from_formula`` would build a dense one: a million trials by thousands of participants
does not fit in memory), the fit starts from the pooled log-odds, and BLAS runs on one
thread (the tiny products of the fit are several times slower with threads fighting
over shared cores).

What it gives: the intercept (the log-odds for a typical participant on a typical
clip) with its posterior mean and standard deviation, and the two random-effect
standard deviations. The mean-field posterior ignores the correlation between the
intercept and the random effects, so its standard deviations are known to be too small
(often by a factor of 2-4): the report labels them as such and gives the two-way
bootstrap interval of the share as the primary interval. The variational fit costs
more than linear time in the number of participants, so above ``max_participants`` it
is fitted on a seeded random subset of them (reported).

If the fit raises, warns that it did not converge or gives non-finite values, the
result says so (``converged = False`` and the reason) and holds no estimates; the
report then relies on the bootstrap intervals.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from dataclasses import field

import numpy as np
import pandas as pd

__all__ = ["MixedFit", "mixed_logistic"]


@dataclass
class MixedFit:
    """The fit's table (``term, scale, estimate, sd, ci_low, ci_high``) and how it was obtained."""

    table: pd.DataFrame
    converged: bool
    method: str
    note: str
    participants_used: int
    participants_total: int
    trials: int
    extra: dict = field(default_factory=dict)


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mixed_logistic(
    y: np.ndarray,
    participant: np.ndarray,
    clip: np.ndarray,
    *,
    max_participants: int = 100,
    seed: int = 0,
    level: float = 0.95,
) -> MixedFit:
    """Fit the model to binary outcomes ``y`` with group labels ``participant`` and ``clip`` (arrays of one length)."""
    from scipy import sparse
    from scipy.stats import norm

    y = np.asarray(y, dtype=np.float64)
    part = pd.factorize(np.asarray(participant))[0]
    n_total = int(part.max() + 1) if len(part) else 0
    used = n_total
    note = ""
    if n_total > max_participants:
        rng = np.random.default_rng(seed)
        keep = np.zeros(n_total, bool)
        keep[rng.choice(n_total, max_participants, replace=False)] = True
        sel = keep[part]
        y, part, clip = y[sel], part[sel], np.asarray(clip)[sel]
        part = pd.factorize(part)[0]
        used = max_participants
        note = f"fitted on a seeded random {used} of {n_total} participants (the variational fit's cost)"
    clip_codes = pd.factorize(np.asarray(clip))[0]
    empty = pd.DataFrame(columns=["term", "scale", "estimate", "sd", "ci_low", "ci_high"])

    def failed(reason: str) -> MixedFit:
        return MixedFit(empty, False, "BinomialBayesMixedGLM.fit_vb", reason, used, n_total, int(len(y)))

    n = len(y)
    if n == 0:
        return failed("no trials")
    pbar = float(y.mean())
    if pbar in (0.0, 1.0):
        return failed(f"every answer is the same (share {pbar:g}): the log-odds are infinite")
    comps = []
    n_p, n_c = int(part.max() + 1), int(clip_codes.max() + 1)
    if n_p > 1:
        comps.append(("participant", part, n_p))
    if n_c > 1:
        comps.append(("clip", clip_codes, n_c))
    if not comps:
        return failed("one participant and one clip: no random effects to fit")
    rows = np.concatenate([np.arange(n)] * len(comps))
    cols, ident, offset = [], [], 0
    for k, (_, codes, size) in enumerate(comps):
        cols.append(codes + offset)
        ident.append(np.full(size, k))
        offset += size
    z = sparse.csr_matrix((np.ones(len(rows)), (rows, np.concatenate(cols))), shape=(n, offset))
    ident_a = np.concatenate(ident)

    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM
    from threadpoolctl import threadpool_limits

    names = [c[0] for c in comps]
    model = BinomialBayesMixedGLM(
        y,
        np.ones((n, 1)),
        z,
        ident_a,
        fep_names=["Intercept"],
        vcp_names=names,
        vc_names=[f"re{i}" for i in range(offset)],
    )
    k_all = 1 + len(comps) + offset
    mean = np.zeros(k_all)
    mean[0] = math.log(pbar / (1 - pbar))
    mean[1 : 1 + len(comps)] = math.log(0.5)
    sd = np.full(k_all, 0.3)
    sd[0] = 0.1
    sd[1 : 1 + len(comps)] = 0.5
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("always")
        try:
            res = model.fit_vb(mean=mean, sd=sd, fit_method="L-BFGS-B", minim_opts={"maxiter": 2000})
        except (ValueError, np.linalg.LinAlgError, FloatingPointError, OverflowError) as e:
            return failed(f"the fit raised {type(e).__name__}: {e}")
    msgs = [str(w.message) for w in caught if "converge" in str(w.message).lower()]
    if msgs:
        return failed(f"did not converge ({msgs[0]})")
    fe, fe_sd = float(res.fe_mean[0]), float(res.fe_sd[0])
    vcp, vcp_sd = np.asarray(res.vcp_mean, float), np.asarray(res.vcp_sd, float)
    if not (np.isfinite([fe, fe_sd]).all() and np.isfinite(vcp).all() and np.isfinite(vcp_sd).all()):
        return failed("non-finite estimates")
    z975 = float(norm.ppf(0.5 + level / 2))
    lo, hi = fe - z975 * fe_sd, fe + z975 * fe_sd
    table = [
        {"term": "intercept", "scale": "log-odds", "estimate": fe, "sd": fe_sd, "ci_low": lo, "ci_high": hi},
        {
            "term": "intercept",
            "scale": "probability",
            "estimate": _expit(fe),
            "sd": math.nan,
            "ci_low": _expit(lo),
            "ci_high": _expit(hi),
        },
    ]
    for name, m, s in zip(names, vcp, vcp_sd):
        table.append(
            {
                "term": f"sd({name})",
                "scale": "log-odds",
                "estimate": math.exp(m),
                "sd": math.nan,
                "ci_low": math.exp(m - z975 * s),
                "ci_high": math.exp(m + z975 * s),
            }
        )
    missing = {"participant", "clip"} - set(names)
    if missing:
        note = "; ".join(x for x in (note, f"only one level of {', '.join(sorted(missing))}: effect left out") if x)
    return MixedFit(
        pd.DataFrame(table),
        True,
        "BinomialBayesMixedGLM.fit_vb (mean-field VB)",
        note,
        used,
        n_total,
        int(n),
        {"iterations": int(getattr(res.optim_retvals, "nit", -1))},
    )
