"""The three perceptual studies (SPEC §5): counts, deceitfulness, naturalness, indistinguishability.

Every function takes the long table of trials (one row per trial, the export's columns,
as :func:`analysis.readers.attach_batches` returns it) and returns tidy DataFrames.
Results come for every *subset* and *breakdown*:

* subsets: ``all`` (every participant's analysable trials: not practice, valid, answered),
  ``analysed`` (participants who completed and were not excluded by the server's
  screening) and, for Indistinguishability, ``analysed+controls`` (also a positive-control
  hit rate of at least ``control_threshold``);
* breakdowns: ``overall`` and, where the column has two or more values, per ``dataset``,
  ``model``, ``strategy`` and shown ``variant``.

Aggregation is vectorised (group sums, ``bincount``); bootstrap intervals resample
participants (and clips) on per-cluster sums, so the cost grows with the number of
participants, not trials. The paper's value (``paper``, a share) is given where the
setting matches: the dataset(s) of the group map onto the paper's (HDM05, MHAD or both)
and the attacked variant shown is SMART.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Iterator

import numpy as np
import pandas as pd
from scipy.stats import norm

from stimuli.errors import DataError
from stimuli.screening import CONTROL_HIT_THRESHOLD
from stimuli.screening import SENSITIVITY_THRESHOLD
from stimuli.screening import exclusion_reasons

from . import paper
from .bt import comparison_groups
from .bt import fit_btd
from .bt import fit_btd_many
from .stats import binom_test
from .stats import bootstrap_weights
from .stats import clopper_pearson_ci
from .stats import cluster_bootstrap_ratio
from .stats import cohens_h
from .stats import dprime
from .stats import holm
from .stats import loglinear_rate
from .stats import percentile_interval
from .stats import pigeonhole_bootstrap_ratio
from .stats import sign_test
from .stats import spread
from .stats import wilson_ci

__all__ = [
    "Options",
    "StudyResult",
    "analysable",
    "counts",
    "deceitfulness",
    "label_prior_accuracy",
    "naturalness",
    "indistinguishability",
    "method_order",
]

BREAKDOWNS = ("dataset", "model", "strategy")
_TWO_WAY_MAX = 20_000_000
"""Largest participants x clips table for the two-way bootstrap; beyond it, participants only."""


@dataclass(frozen=True)
class Options:
    """Analysis settings: bootstrap replicates, seed, confidence level, screening thresholds, GLMM cap."""

    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    sensitivity_threshold: float = SENSITIVITY_THRESHOLD
    control_threshold: float = CONTROL_HIT_THRESHOLD
    glmm: bool = True
    glmm_max_participants: int = 100
    # per stimulus and data quality (analysis.items, analysis.quality; defaults and reasons there)
    top_items: int = 3
    fast_ms: float = 250.0
    fast_share: float = 0.25
    same_share: float = 0.9
    side_alpha: float = 0.05
    tab_trials: int = 1
    stall_share: float = 0.1

    def rng(self, *salt: Any) -> np.random.Generator:
        """A generator for one table, independent of the order the tables are computed in."""
        key = [self.seed] + [sum(map(ord, str(s))) for s in salt]
        return np.random.default_rng(key)


@dataclass
class StudyResult:
    """Tables (name -> DataFrame), headline numbers (JSON-ready) and notes for one study."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# ---- helpers ---------------------------------------------------------------------------------
def analysable(df: pd.DataFrame) -> pd.Series:
    """Trials that count: not practice, playback valid, answered."""
    return ~df["practice"] & df["valid"] & df["answer"].notna()


def _analysed(df: pd.DataFrame) -> pd.Series:
    return df["participant_completed"] & ~df["excluded"]


def _groups(df: pd.DataFrame, extra: tuple[str, ...] = ()) -> Iterator[tuple[str, str, pd.DataFrame]]:
    yield "overall", "all", df
    for col in (*BREAKDOWNS, *extra):
        s = df[col]
        if not isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype("category")
        names = s.cat.categories.astype(str)
        codes = s.cat.codes.to_numpy()
        present = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(names)))
        if len(present) < 2:
            continue
        for k in sorted(present, key=lambda k: names[k]):
            yield col, str(names[k]), df[codes == k]


def _paper_value(table: Any, g: pd.DataFrame, variant_col: str = "variant") -> float:
    """The paper's share for this group: datasets map onto HDM05/MHAD and the variant shown is SMART."""
    variants = set(g[variant_col].dropna().astype(str).unique())
    if variants != {"smart"}:
        return math.nan
    ds = {paper.paper_dataset(d) for d in g["dataset"].dropna().astype(str).unique()}
    if ds == {"HDM05"}:
        return table["HDM05"] / 100
    if ds == {"MHAD"}:
        return table["MHAD"] / 100
    if ds == {"HDM05", "MHAD"}:
        return table["overall"] / 100
    return math.nan


def _two_way(g: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    pc, _ = pd.factorize(g["participant"].to_numpy())
    cc, _ = pd.factorize(g["item_key"].to_numpy())
    P, C = int(pc.max() + 1) if len(pc) else 0, int(cc.max() + 1) if len(cc) else 0
    if P * C == 0:
        return np.zeros((0, 0)), np.zeros((0, 0)), P, C
    if P * C > _TWO_WAY_MAX:
        num = np.bincount(pc, weights=y, minlength=P)[:, None]
        den = np.bincount(pc, minlength=P).astype(float)[:, None]
        return num, den, P, C
    flat = pc * C + cc
    num = np.bincount(flat, weights=y, minlength=P * C).reshape(P, C)
    den = np.bincount(flat, minlength=P * C).astype(float).reshape(P, C)
    return num, den, P, C


def _share_row(g: pd.DataFrame, y: np.ndarray, opts: Options, salt: tuple) -> dict[str, Any]:
    """Counts, share, Wilson / Clopper-Pearson / two-way bootstrap intervals, the exact test against 1/2 and
    Cohen's h against 1/2 (its interval: the bootstrap interval mapped through h, Wilson's without a bootstrap)."""
    n, k = len(y), float(y.sum())
    num, den, P, C = _two_way(g, y)
    if n == 0:
        nan = math.nan
        return {
            "participants": 0,
            "clips": 0,
            "trials": 0,
            "count": 0,
            "share": nan,
            "wilson_low": nan,
            "wilson_high": nan,
            "cp_low": nan,
            "cp_high": nan,
            "boot_low": nan,
            "boot_high": nan,
            "p_value": nan,
            "cohens_h": nan,
            "h_low": nan,
            "h_high": nan,
        }
    wl, wh = wilson_ci(k, n, opts.level)
    cl, ch = clopper_pearson_ci(k, n, opts.level)
    if P < 2:  # resampling one participant says nothing about other participants
        bl = bh = math.nan
    elif num.shape[1] == C and C > 0:
        bl, bh = pigeonhole_bootstrap_ratio(num, den, opts.n_boot, opts.level, opts.rng(*salt))
    else:
        bl, bh = cluster_bootstrap_ratio(num[:, 0], den[:, 0], opts.n_boot, opts.level, opts.rng(*salt))
    return {
        "participants": P,
        "clips": C,
        "trials": n,
        "count": int(k),
        "share": k / n if n else math.nan,
        "wilson_low": float(wl),
        "wilson_high": float(wh),
        "cp_low": float(cl),
        "cp_high": float(ch),
        "boot_low": bl,
        "boot_high": bh,
        "p_value": float(binom_test(int(k), n)) if n else math.nan,
        **_h_columns(k / n, (bl, bh) if np.isfinite(bl) and np.isfinite(bh) else (float(wl), float(wh)), 0.5),
    }


def _h_columns(share: float, interval: tuple[float, float], p0: float) -> dict[str, float]:
    """Cohen's h of ``share`` against ``p0`` and its interval (the share's interval mapped through h)."""
    h, lo, hi = (float(cohens_h(v, p0)) for v in (share, *interval))
    return {"cohens_h": h, "h_low": lo, "h_high": hi}


def _reason_category(reason: pd.Series) -> pd.Series:
    return reason.astype(str).str.replace(r"[-+]?\d+(?:\.\d+)?", "#", regex=True)


def method_order(names: Any) -> list[str]:
    """SMART and the ablations in the paper's order, then any other variant names sorted."""
    names = {str(n) for n in names}
    return [m for m in paper.METHODS if m in names] + sorted(names - set(paper.METHODS))


# ---- counts ---------------------------------------------------------------------------------
def counts(df: pd.DataFrame) -> StudyResult:
    """Counts first: recruited, started, completed, excluded (by reason) and analysed participants; trials.

    ``recruited`` counts the participants the export lists (it has rows only for those
    who were shown at least one trial); ``started`` those with at least one analysable
    trial; ``analysed`` those who completed and were not excluded.
    """
    ok = analysable(df)
    keys = ["study", "study_type", "participant"]
    p = (
        df.assign(_ok=ok, _reason=df["exclusion_reason"].astype(object))
        .groupby(keys, observed=True, sort=False)
        .agg(
            completed=("participant_completed", "max"),
            excluded=("excluded", "max"),
            started=("_ok", "max"),
            reason=("_reason", "first"),
        )
        .reset_index()
    )
    p["analysed"] = p["completed"] & ~p["excluded"]
    c = (
        p.groupby(["study", "study_type"], observed=True)
        .agg(
            recruited=("participant", "size"),
            started=("started", "sum"),
            completed=("completed", "sum"),
            excluded=("excluded", "sum"),
            analysed=("analysed", "sum"),
        )
        .reset_index()
    )
    ex = p[p["excluded"]].copy()
    ex["reason"] = ex["reason"].fillna("(no reason given)")
    ex["reason_kind"] = _reason_category(ex["reason"])
    exclusions = (
        ex.groupby(["study", "study_type", "reason_kind"], observed=True)
        .agg(participants=("participant", "size"), completed=("completed", "sum"), example=("reason", "first"))
        .reset_index()
    )
    t = df.assign(
        _ok=ok, _an=ok & _analysed(df), _rep=df["attempt"] > 1, _inv=~df["valid"], _rt=df["response_time_ms"].where(ok)
    )
    trials = (
        t.groupby(["study", "study_type"], observed=True)
        .agg(
            rows=("participant", "size"),
            practice=("practice", "sum"),
            invalid=("_inv", "sum"),
            playback_failed=("playback_failed", "sum"),
            repeated=("_rep", "sum"),
            analysable=("_ok", "sum"),
            analysed=("_an", "sum"),
            median_response_ms=("_rt", "median"),
        )
        .reset_index()
    )
    for tab in (c, trials, exclusions):
        for col in ("study", "study_type"):
            tab[col] = tab[col].astype(str)
    res = StudyResult({"counts": c, "exclusions": exclusions, "trials": trials})
    res.summary = {
        f"{r.study_type}:{r.study}": {
            k: int(getattr(r, k)) for k in ("recruited", "started", "completed", "excluded", "analysed")
        }
        for r in c.itertuples()
    }
    return res


# ---- deceitfulness ----------------------------------------------------------------------------
def deceitfulness(df: pd.DataFrame, opts: Options = Options()) -> StudyResult:
    """Share of trials where the ground-truth label was chosen, with intervals, tests, spreads and a GLMM."""
    d = df[(df["study_type"] == "deceitfulness") & analysable(df)]
    res = StudyResult()
    if d.empty:
        res.notes.append("no analysable deceitfulness trials")
        return res
    if d["chose_true_label"].isna().any():
        raise DataError("deceitfulness: answered trials without chose_true_label")
    analysed = _analysed(d).to_numpy()
    d = d.assign(_y=d["chose_true_label"].astype(bool).to_numpy(dtype=float), _analysed=analysed)
    rows, spreads = [], []
    for subset, mask in (("all", np.ones(len(d), bool)), ("analysed", analysed)):
        sub = d[mask]
        for bd, lv, g in _groups(sub, extra=("variant",)):
            rows.append(
                {
                    "subset": subset,
                    "breakdown": bd,
                    "level": lv,
                    **_share_row(g, g["_y"].to_numpy(), opts, ("dec", subset, bd, lv)),
                    "paper": _paper_value(paper.DECEITFULNESS, g),
                }
            )
        if len(sub):
            for unit, col in (("participant", "participant"), ("clip", "item_key")):
                r = sub.groupby(col, observed=True)["_y"].mean()
                spreads.append({"subset": subset, "unit": unit, **spread(r.to_numpy())})
    res.tables["deceitfulness_rates"] = pd.DataFrame(rows)
    res.tables["deceitfulness_spread"] = pd.DataFrame(spreads)
    tmp = d
    part = (
        tmp.groupby(["study", "participant"], observed=True)
        .agg(
            trials=("_y", "size"),
            chose_true=("_y", "sum"),
            completed=("participant_completed", "max"),
            excluded=("excluded", "max"),
            analysed=("_analysed", "max"),
        )
        .reset_index()
    )
    part["share"] = part["chose_true"] / part["trials"]
    res.tables["deceitfulness_participants"] = part
    an = tmp[tmp["_analysed"]]
    clips = (
        an.groupby(["batch_id", "item_id", "true_label", "attacked_label"], observed=True)
        .agg(trials=("_y", "size"), chose_true=("_y", "sum"), participants=("participant", "nunique"))
        .reset_index()
    )
    clips["share"] = clips["chose_true"] / clips["trials"]
    res.tables["deceitfulness_clips"] = clips.sort_values("share").reset_index(drop=True)
    prior = []
    top = next((r for r in rows if r["subset"] == "analysed" and r["breakdown"] == "overall"), None)
    for scope, by in (("pooled", None), ("within participant", "participant")):
        acc = label_prior_accuracy(an, by) if len(an) else math.nan
        row = {"subset": "analysed", "frequencies": scope, "trials": len(an), "accuracy": acc}
        if top is not None:  # the effect that matters: the measured share against this baseline
            iv = (top["boot_low"], top["boot_high"])
            iv = iv if all(np.isfinite(iv)) else (top["wilson_low"], top["wilson_high"])
            row |= {"share": top["share"], **_h_columns(top["share"], iv, acc)}
        prior.append(row)
    res.tables["deceitfulness_label_prior"] = pd.DataFrame(prior)
    if opts.glmm and len(an):
        from .glmm import mixed_logistic

        fit = mixed_logistic(
            an["_y"].to_numpy(),
            an["participant"].astype(str).to_numpy(),
            an["item_key"].astype(str).to_numpy(),
            max_participants=opts.glmm_max_participants,
            seed=opts.seed,
            level=opts.level,
        )
        tab = fit.table.copy()
        tab.insert(0, "subset", "analysed")
        res.tables["deceitfulness_glmm"] = tab
        res.extra["glmm"] = fit
        if fit.converged:
            res.notes.append(
                f"mixed logistic model ({fit.method}) on {fit.trials} trials of "
                f"{fit.participants_used} participants: the share of a typical participant on a typical clip "
                "(the model's intercept), which is not the pooled share; the two-way bootstrap interval of the "
                "pooled share stays the primary one" + (f"; {fit.note}" if fit.note else "")
            )
        else:
            res.notes.append(
                f"mixed logistic model: {fit.note}; falling back on the two-way (participants x "
                "clips) bootstrap interval of the share"
            )
    over = res.tables["deceitfulness_rates"]
    res.summary = _headline(over, "share", "analysed")
    res.summary["label_prior_baseline"] = {r["frequencies"]: r["accuracy"] for r in prior}
    res.summary["cohens_h_vs_label_prior"] = {
        r["frequencies"]: {"h": r["cohens_h"], "ci": [r["h_low"], r["h_high"]]} for r in prior if "cohens_h" in r
    }
    return res


def label_prior_accuracy(trials: pd.DataFrame, by: str | None = None) -> float:
    """The share a participant would get right by ignoring the motion and picking, of the two labels, the one that
    is more often the true label (ties: half right), the frequencies counted over all ``trials`` (``by=None``) or over
    each ``by`` group's own trials (e.g. a participant's).

    50 % when every class is as often the true label as the attacked one; the measured share is only evidence about
    the motion as far as it exceeds this baseline.
    """
    if not len(trials):
        return math.nan
    t = trials["true_label"].astype(str).to_numpy()
    a = trials["attacked_label"].astype(str).to_numpy()
    g = np.zeros(len(t), dtype=np.int64) if by is None else pd.factorize(trials[by].to_numpy())[0]
    as_true = pd.Series(1.0, index=pd.MultiIndex.from_arrays([g, t])).groupby(level=[0, 1]).sum()
    as_attacked = pd.Series(1.0, index=pd.MultiIndex.from_arrays([g, a])).groupby(level=[0, 1]).sum()
    shown = as_true.add(as_attacked, fill_value=0.0)
    share = as_true.reindex(shown.index, fill_value=0.0) / shown  # per group and label: how often it is the true one
    p_t = share.reindex(pd.MultiIndex.from_arrays([g, t])).to_numpy()
    p_a = share.reindex(pd.MultiIndex.from_arrays([g, a])).to_numpy()
    return float(np.mean(np.where(p_t > p_a, 1.0, np.where(p_t == p_a, 0.5, 0.0))))


def _headline(table: pd.DataFrame, col: str, subset: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sel = table[(table["subset"] == subset)]
    for r in sel.itertuples():
        key = "overall" if r.breakdown == "overall" else f"{r.breakdown}={r.level}"
        out[key] = {
            "share": getattr(r, col),
            "ci_wilson": [r.wilson_low, r.wilson_high],
            "ci_bootstrap": [r.boot_low, r.boot_high],
            "n": r.trials,
            "participants": r.participants,
            "paper": r.paper,
        }
    return out


# ---- naturalness ------------------------------------------------------------------------------
def _codes(s: pd.Series, values: list[str]) -> np.ndarray:
    """Index of each value in ``values`` (-1 if absent), through the categorical codes (fast)."""
    cat = s.astype("category") if not isinstance(s.dtype, pd.CategoricalDtype) else s
    lut = np.append(pd.Index(values).get_indexer(cat.cat.categories.astype(str)), -1)
    return lut[cat.cat.codes.to_numpy()]


def _nat_codes(g: pd.DataFrame, methods: list[str]) -> tuple[np.ndarray, ...]:
    """Per trial: method index of the left and right clip, the answer (0 left, 1 right, 2 can't tell),
    the canonical pair ``a * K + b`` (a before b in method order) and the outcome (0 a, 1 b, 2 tie)."""
    li, ri = _codes(g["left_variant"], methods), _codes(g["right_variant"], methods)
    ans = _codes(g["answer"], ["left", "right", "cant_tell"])
    side = np.where(ans == 0, 0, np.where(ans == 1, 1, 2))
    pref = np.where(side == 0, li, np.where(side == 1, ri, -1))
    a, b = np.minimum(li, ri), np.maximum(li, ri)
    outcome = np.where(pref < 0, 2, np.where(pref == a, 0, 1))
    return li, ri, side, a * len(methods) + b, outcome


def naturalness(df: pd.DataFrame, opts: Options = Options()) -> StudyResult:
    """Pair counts, normalised preference (Fig. 6), Bradley-Terry-Davidson scores, sign tests SMART vs ablations."""
    d = df[(df["study_type"] == "naturalness") & analysable(df)]
    res = StudyResult()
    if d.empty:
        res.notes.append("no analysable naturalness trials")
        return res
    ans = d["answer"].astype(str)
    odd = sorted(set(ans.unique()) - {"left", "right", "cant_tell"})
    if odd:
        raise DataError(f"naturalness: unknown answer(s) {', '.join(map(repr, odd))}; expected left, right, cant_tell")
    if d["left_variant"].isna().any() or d["right_variant"].isna().any():
        raise DataError("naturalness: trials without left_variant or right_variant")
    same = d["left_variant"].astype(str) == d["right_variant"].astype(str)
    if same.any():
        raise DataError(f"naturalness: {int(same.sum())} trials show the same variant on both sides")
    methods = method_order(pd.concat([d["left_variant"].astype(str), d["right_variant"].astype(str)]).unique())
    K = len(methods)
    analysed = _analysed(d).to_numpy()
    t_ord, t_pairs, t_pref, t_bt, t_sign, t_pos = [], [], [], [], [], []
    for subset, mask in (("all", np.ones(len(d), bool)), ("analysed", analysed)):
        sub = d[mask]
        for bd, lv, g in _groups(sub):
            if g.empty:
                continue
            tag = {"subset": subset, "breakdown": bd, "level": lv}
            li, ri, side, q, outcome = _nat_codes(g, methods)
            # ordered pairs: left / right / can't tell
            flat = np.bincount((li * K + ri) * 3 + side, minlength=K * K * 3).reshape(K, K, 3)
            for i in range(K):
                for j in range(K):
                    if flat[i, j].sum():
                        t_ord.append(
                            {
                                **tag,
                                "left": methods[i],
                                "right": methods[j],
                                "trials": int(flat[i, j].sum()),
                                "left_chosen": int(flat[i, j, 0]),
                                "right_chosen": int(flat[i, j, 1]),
                                "cant_tell": int(flat[i, j, 2]),
                            }
                        )
            dec = side < 2
            nl = int((side[dec] == 0).sum())
            t_pos.append(
                {
                    **tag,
                    "decisive": int(dec.sum()),
                    "left_chosen": nl,
                    "share_left": nl / dec.sum() if dec.sum() else math.nan,
                    "p_value": float(binom_test(nl, int(dec.sum()))) if dec.sum() else math.nan,
                }
            )
            # unordered pairs (a before b in method order)
            tot = np.bincount(q * 3 + outcome, minlength=K * K * 3).reshape(K * K, 3)
            pairs = [(i, j) for i in range(K) for j in range(i + 1, K) if tot[i * K + j].sum()]
            cnt = np.array([tot[i * K + j] for i, j in pairs], float).reshape(-1, 3)
            for (i, j), c in zip(pairs, cnt):
                dec_n = c[0] + c[1]
                t_pairs.append(
                    {
                        **tag,
                        "a": methods[i],
                        "b": methods[j],
                        "trials": int(c.sum()),
                        "a_preferred": int(c[0]),
                        "b_preferred": int(c[1]),
                        "cant_tell": int(c[2]),
                        "share_a_decisive": c[0] / dec_n if dec_n else math.nan,
                        "share_cant_tell": c[2] / c.sum(),
                    }
                )
            # normalised preference (Fig. 6): chosen / shown per method, normalised to sum 1
            shown = np.bincount(li, minlength=K) + np.bincount(ri, minlength=K)
            pref_idx = np.where(side == 0, li, np.where(side == 1, ri, -1))
            chosen = np.bincount(pref_idx[pref_idx >= 0], minlength=K)
            tied = np.bincount(li[side == 2], minlength=K) + np.bincount(ri[side == 2], minlength=K)
            with np.errstate(invalid="ignore", divide="ignore"):
                win = chosen / shown
            total = np.nansum(win)
            pc, _ = pd.factorize(g["participant"].to_numpy())
            P = int(pc.max() + 1)
            plo, phi = _preference_interval(pc, P, K, li, ri, pref_idx, opts, ("pref", subset, bd, lv))
            for m in range(K):
                if shown[m]:
                    t_pref.append(
                        {
                            **tag,
                            "method": methods[m],
                            "shown": int(shown[m]),
                            "chosen": int(chosen[m]),
                            "cant_tell": int(tied[m]),
                            "win_rate": float(win[m]),
                            "normalised_preference": float(win[m] / total) if total else math.nan,
                            "ci_low": float(plo[m]),
                            "ci_high": float(phi[m]),
                            "paper_rank": (
                                paper.NATURALNESS_ORDER.index(methods[m]) + 1
                                if methods[m] in paper.NATURALNESS_ORDER
                                else None
                            ),
                        }
                    )
            # Bradley-Terry-Davidson with a cluster bootstrap over participants
            t_bt += _bt_rows(g, methods, pairs, cnt, q, outcome, tag, opts)
            # sign tests: SMART vs each ablation, Holm across ablations
            if "smart" in methods:
                s = methods.index("smart")
                srows = []
                for (i, j), c in zip(pairs, cnt):
                    if s not in (i, j):
                        continue
                    sw, aw = (c[0], c[1]) if i == s else (c[1], c[0])
                    abl = methods[j] if i == s else methods[i]
                    m = q == i * K + j
                    won = (outcome[m] == (0 if i == s else 1)).astype(float)
                    sw_p = np.bincount(pc[m], weights=won, minlength=P)
                    dec_p = np.bincount(pc[m], weights=(outcome[m] < 2).astype(float), minlength=P)
                    wl, wh = wilson_ci(sw, sw + aw, opts.level) if sw + aw else (math.nan, math.nan)
                    if P > 1 and sw + aw:
                        rng = opts.rng("sign", subset, bd, lv, abl)
                        bl, bh = cluster_bootstrap_ratio(sw_p, dec_p, opts.n_boot, opts.level, rng)
                    else:
                        bl = bh = math.nan
                    share = sw / (sw + aw) if sw + aw else math.nan
                    iv = (bl, bh) if np.isfinite(bl) and np.isfinite(bh) else (float(wl), float(wh))
                    srows.append(
                        {
                            **tag,
                            "ablation": abl,
                            "trials": int(c.sum()),
                            "smart_preferred": int(sw),
                            "ablation_preferred": int(aw),
                            "cant_tell": int(c[2]),
                            "share_smart_decisive": share,
                            "wilson_low": float(wl),
                            "wilson_high": float(wh),
                            "boot_low": bl,
                            "boot_high": bh,
                            **_h_columns(share, iv, 0.5),
                            "p_value": float(sign_test(int(sw), int(aw))) if sw + aw else math.nan,
                        }
                    )
                adj = holm([r["p_value"] for r in srows])
                for r, a in zip(srows, adj):
                    r["p_holm"] = float(a)
                t_sign += srows
    res.tables["naturalness_pairs_lr"] = pd.DataFrame(t_ord)
    res.tables["naturalness_pairs"] = pd.DataFrame(t_pairs)
    res.tables["naturalness_preference"] = pd.DataFrame(t_pref)
    res.tables["naturalness_bt"] = pd.DataFrame(t_bt)
    res.tables["naturalness_sign_tests"] = pd.DataFrame(t_sign)
    res.tables["naturalness_position"] = pd.DataFrame(t_pos)
    bt = res.tables["naturalness_bt"]
    sel = bt[(bt["subset"] == "analysed") & (bt["breakdown"] == "overall")] if len(bt) else bt
    sel = sel.sort_values("log_strength", ascending=False) if len(sel) else sel
    order = sel.loc[np.isfinite(sel["log_strength"].astype(float)), "method"].tolist() if len(sel) else []
    res.summary = {
        "order_bt": order,
        "paper_order": list(paper.NATURALNESS_ORDER),
        "matches_paper": order == [m for m in paper.NATURALNESS_ORDER if m in order],
        "bt": {r.method: {"log_strength": r.log_strength, "ci": [r.ci_low, r.ci_high]} for r in sel.itertuples()},
        "nu": float(sel["nu"].iloc[0]) if len(sel) else None,
        "nu_ci": [float(sel["nu_low"].iloc[0]), float(sel["nu_high"].iloc[0])] if len(sel) else None,
    }
    if len(sel) and not order and "no_order" in sel:
        res.summary["no_order"] = str(sel["no_order"].dropna().iloc[0])
        res.notes.append(f"Bradley-Terry: no order: {res.summary['no_order']}")
    st = res.tables["naturalness_sign_tests"]
    if len(st):
        s0 = st[(st["subset"] == "analysed") & (st["breakdown"] == "overall")]
        res.summary["sign_tests"] = {
            r.ablation: {
                "smart_share": r.share_smart_decisive,
                "ci_bootstrap": [r.boot_low, r.boot_high],
                "ci_wilson": [r.wilson_low, r.wilson_high],
                "cohens_h": r.cohens_h,
                "cohens_h_ci": [r.h_low, r.h_high],
                "p_holm": r.p_holm,
            }
            for r in s0.itertuples()
        }
    return res


def _preference_interval(
    pc: np.ndarray,
    P: int,
    K: int,
    li: np.ndarray,
    ri: np.ndarray,
    pref_idx: np.ndarray,
    opts: Options,
    salt: tuple,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each method's normalised preference, resampling participants (NaN: no bootstrap)."""
    if opts.n_boot <= 0 or P < 2:
        return np.full(K, math.nan), np.full(K, math.nan)
    shown = (np.bincount(pc * K + li, minlength=P * K) + np.bincount(pc * K + ri, minlength=P * K)).reshape(P, K)
    d = pref_idx >= 0
    chosen = np.bincount(pc[d] * K + pref_idx[d], minlength=P * K).reshape(P, K)
    w = bootstrap_weights(P, opts.n_boot, opts.rng(*salt)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        win = (w @ chosen) / (w @ shown)
        normed = win / np.nansum(win, axis=1, keepdims=True)
    return percentile_interval(normed, opts.level)


def _bt_rows(
    g: pd.DataFrame,
    methods: list[str],
    pairs: list[tuple[int, int]],
    cnt: np.ndarray,
    q: np.ndarray,
    outcome: np.ndarray,
    tag: dict[str, Any],
    opts: Options,
) -> list[dict[str, Any]]:
    if len(pairs) == 0:
        return []
    K = len(methods)
    groups = comparison_groups(K, pairs, cnt)
    if len(groups) > 1 or cnt[:, :2].sum() == 0:
        why = (
            "every comparison was a tie ('can't tell')"
            if cnt[:, :2].sum() == 0
            else "methods "
            + " and ".join("{" + ", ".join(methods[i] for i in g) + "}" for g in groups)
            + " were never compared with each other"
        )
        return [
            {
                **tag,
                "method": methods[m],
                "log_strength": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "strength_share": math.nan,
                "rank": None,
                "nu": math.nan,
                "nu_low": math.nan,
                "nu_high": math.nan,
                "converged": False,
                "participants": int(g["participant"].nunique()),
                "no_order": why,
                "paper_rank": (
                    paper.NATURALNESS_ORDER.index(methods[m]) + 1 if methods[m] in paper.NATURALNESS_ORDER else None
                ),
            }
            for m in range(K)
        ]
    fit = fit_btd(methods, pairs, cnt)
    # per-participant counts (participants, pairs, outcomes), then multinomial resampling of participants
    pc, _ = pd.factorize(g["participant"].to_numpy())
    P = int(pc.max() + 1)
    lut = np.full(K * K, -1)
    lut[[i * K + j for i, j in pairs]] = np.arange(len(pairs))
    cell = lut[q]
    per = np.bincount((pc * len(pairs) + cell) * 3 + outcome, minlength=P * len(pairs) * 3)
    per = per.reshape(P, len(pairs), 3).astype(float)
    lo = hi = np.full(K, np.nan)
    nlo = nhi = math.nan
    if opts.n_boot > 0 and P > 1:
        w = bootstrap_weights(P, opts.n_boot, opts.rng("bt", *tag.values()))
        boot = np.einsum("bp,pqo->bqo", w, per)
        lam, nu = fit_btd_many(methods, pairs, boot, ties=fit.nu > 0)
        lo, hi = percentile_interval(lam, opts.level)
        nlo, nhi = (float(x) for x in percentile_interval(nu, opts.level))
    theta = np.exp(fit.log_strength)
    share = theta / np.nansum(theta)
    ranks = pd.Series(-fit.log_strength).rank(method="min").to_numpy()
    rows = []
    for m in range(K):
        rows.append(
            {
                **tag,
                "method": methods[m],
                "log_strength": float(fit.log_strength[m]),
                "ci_low": float(lo[m]),
                "ci_high": float(hi[m]),
                "strength_share": float(share[m]),
                "rank": int(ranks[m]) if np.isfinite(ranks[m]) else None,
                "nu": fit.nu,
                "nu_low": nlo,
                "nu_high": nhi,
                "converged": fit.converged,
                "participants": P,
                "paper_rank": (
                    paper.NATURALNESS_ORDER.index(methods[m]) + 1 if methods[m] in paper.NATURALNESS_ORDER else None
                ),
            }
        )
    return rows


# ---- indistinguishability -----------------------------------------------------------------------
_KINDS = ("sensitivity", "perceivability", "control")


def _kind_counts(g: pd.DataFrame, y: np.ndarray, pc: np.ndarray, P: int) -> dict[str, np.ndarray]:
    kind = g["trial_kind"].astype(str).to_numpy()
    out = {}
    for k in _KINDS:
        m = kind == k
        out[f"{k}_n"] = np.bincount(pc[m], minlength=P).astype(float)
        out[f"{k}_changed"] = np.bincount(pc[m], weights=y[m], minlength=P)
    return out


def indistinguishability(df: pd.DataFrame, opts: Options = Options()) -> StudyResult:
    """Screening, share of attacked trials judged unchanged, hit / false-alarm rates and d', positive controls."""
    d = df[(df["study_type"] == "indistinguishability") & analysable(df)]
    res = StudyResult()
    if d.empty:
        res.notes.append("no analysable indistinguishability trials")
        return res
    kinds = d["trial_kind"].astype(str)
    odd = sorted(set(kinds.unique()) - set(_KINDS))
    if odd:
        raise DataError(
            f"indistinguishability: unknown trial_kind {', '.join(map(repr, odd))}; expected {', '.join(_KINDS)}"
        )
    if d["said_changed"].isna().any():
        raise DataError("indistinguishability: answered trials without said_changed")
    d = d.assign(_y=d["said_changed"].astype(bool).to_numpy(dtype=float))
    y = d["_y"].to_numpy()
    # per participant (every analysable trial)
    pc, puniq = pd.factorize(d["participant"].to_numpy())
    P = len(puniq)
    kc = _kind_counts(d, y, pc, P)
    first = d.groupby(pc, sort=True).agg(
        study=("study", "first"),
        completed=("participant_completed", "max"),
        server_excluded=("excluded", "max"),
        reason=("exclusion_reason", "first"),
    )
    part = pd.DataFrame(
        {
            "participant": np.asarray(puniq).astype(str),
            "study": first["study"].astype(str).to_numpy(),
            "completed": first["completed"].to_numpy(),
            "server_excluded": first["server_excluded"].to_numpy(),
            "reason": first["reason"].astype(object).to_numpy(),
        }
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        part["sensitivity_trials"] = kc["sensitivity_n"].astype(int)
        part["false_alarms"] = kc["sensitivity_changed"].astype(int)
        part["sensitivity_accuracy"] = 1 - kc["sensitivity_changed"] / kc["sensitivity_n"]
        part["perceivability_trials"] = kc["perceivability_n"].astype(int)
        part["hits"] = kc["perceivability_changed"].astype(int)
        part["hit_rate"] = kc["perceivability_changed"] / kc["perceivability_n"]
        part["control_trials"] = kc["control_n"].astype(int)
        part["control_hits"] = kc["control_changed"].astype(int)
        part["control_hit_rate"] = kc["control_changed"] / kc["control_n"]
    part["dprime"] = dprime(
        part["hits"], part["perceivability_trials"], part["false_alarms"], part["sensitivity_trials"]
    )
    part["dprime_control"] = dprime(
        part["control_hits"], part["control_trials"], part["false_alarms"], part["sensitivity_trials"]
    )
    part["passes_sensitivity"] = [
        not exclusion_reasons(a, None, opts.sensitivity_threshold) for a in part["sensitivity_accuracy"]
    ]
    part["passes_control"] = [
        not exclusion_reasons(None, r, control_hit_threshold=opts.control_threshold) for r in part["control_hit_rate"]
    ]
    total_changed = kc["sensitivity_changed"] + kc["perceivability_changed"] + kc["control_changed"]
    part["always_unchanged"] = total_changed == 0
    part["analysed"] = part["completed"] & ~part["server_excluded"]
    res.tables["indistinguishability_participants"] = part
    disagree = part["completed"] & (part["server_excluded"] == part["passes_sensitivity"])
    if disagree.any():
        res.notes.append(
            f"{int(disagree.sum())} completed participants where the server's exclusion differs from "
            f"the paper's rule recomputed here (sensitivity accuracy >= {opts.sensitivity_threshold:.2f}); "
            "the server may screen on positive controls too"
        )
    has_ctrl = bool(kc["control_n"].sum() > 0)
    if not has_ctrl:
        res.notes.append("no positive-control trials: the control screen and control d' are not available")
    an = part["analysed"].to_numpy()[pc]
    ctl = (part["analysed"] & part["passes_control"]).to_numpy()[pc]
    subsets = [("all", np.ones(len(d), bool)), ("analysed", an)]
    if has_ctrl:
        subsets.append(("analysed+controls", ctl))
    rates, dps = [], []
    for subset, mask in subsets:
        sub = d[mask]
        perc = (sub["trial_kind"] == "perceivability").to_numpy()
        perc_variants = set(sub.loc[perc, "variant"].dropna().astype(str).unique())
        for bd, lv, g in _groups(sub, extra=("variant",)):
            if bd == "variant" and (len(perc_variants) < 2 or lv not in perc_variants):
                continue
            yg = g["_y"].to_numpy()
            gp = (g["trial_kind"] == "perceivability").to_numpy()
            if gp.any():
                gg = g[gp]
                unchanged = 1 - yg[gp]
                rates.append(
                    {
                        "subset": subset,
                        "breakdown": bd,
                        "level": lv,
                        **_share_row(gg, unchanged, opts, ("ind", subset, bd, lv)),
                        "paper": _paper_value(paper.INDISTINGUISHABILITY, gg),
                    }
                )
            # d': signal = this group's perceivability trials; noise = sensitivity trials (all variants)
            if bd == "variant":
                g2 = sub[~perc | (sub["variant"].astype(str) == lv).to_numpy()]
                y2 = g2["_y"].to_numpy()
            else:
                g2, y2 = g, yg
            dps.append({"subset": subset, "breakdown": bd, "level": lv, **_dprime_row(g2, y2, opts, (subset, bd, lv))})
    res.tables["indistinguishability_rates"] = pd.DataFrame(rates)
    res.tables["indistinguishability_dprime"] = pd.DataFrame(dps)
    res.summary = _headline(res.tables["indistinguishability_rates"], "share", "analysed")
    if has_ctrl:
        res.summary["with_control_screen"] = _headline(
            res.tables["indistinguishability_rates"], "share", "analysed+controls"
        ).get("overall")
    dp = res.tables["indistinguishability_dprime"]
    o = dp[(dp["subset"] == "analysed") & (dp["breakdown"] == "overall")]
    if len(o):
        r = o.iloc[0]
        res.summary["dprime"] = {
            "pooled": r["dprime"],
            "ci": [r["dprime_low"], r["dprime_high"]],
            "hit_rate": r["hit_rate"],
            "false_alarm_rate": r["false_alarm_rate"],
            "control_hit_rate": r["control_hit_rate"],
        }
    if opts.glmm:
        _sdt_glmm(d, an, opts, res)
    _screening_bias(part, opts, res)
    sc = part[part["completed"]]
    res.summary["screening"] = {
        "completed": int(len(sc)),
        "server_excluded": int(sc["server_excluded"].sum()),
        "fail_sensitivity": int((~sc["passes_sensitivity"]).sum()),
        "fail_control": int((~sc["passes_control"]).sum()) if has_ctrl else None,
        "always_unchanged": int(sc["always_unchanged"].sum()),
        "always_unchanged_passing_sensitivity": int((sc["always_unchanged"] & sc["passes_sensitivity"]).sum()),
    }
    return res


def _screening_bias(part: pd.DataFrame, opts: Options, res: StudyResult) -> None:
    """How much the sensitivity screen biases d' at this study's trial counts and threshold, by simulation
    (:mod:`analysis.screening_bias`), with criterion and d' pooled over every completed participant."""
    from .screening_bias import screening_bias_table

    c = part[part["completed"] & (part["sensitivity_trials"] > 0) & (part["perceivability_trials"] > 0)]
    if not len(c):
        return
    fa, ns = int(c["false_alarms"].sum()), int(c["sensitivity_trials"].sum())
    hits, np_ = int(c["hits"].sum()), int(c["perceivability_trials"].sum())
    f, h = loglinear_rate(fa, ns), loglinear_rate(hits, np_)
    crit, dp = float(-norm.ppf(f)), float(norm.ppf(h) - norm.ppf(f))
    tab = screening_bias_table(
        dp,
        crit,
        int(round(float(c["sensitivity_trials"].median()))),
        int(round(float(c["perceivability_trials"].median()))),
        opts.sensitivity_threshold,
        seed=opts.seed,
    )
    res.tables["indistinguishability_screening_bias"] = tab
    res.summary["screening_bias"] = {
        "criterion": crit,
        "dprime": dp,
        "sensitivity_trials": int(round(float(c["sensitivity_trials"].median()))),
        "perceivability_trials": int(round(float(c["perceivability_trials"].median()))),
        "threshold": opts.sensitivity_threshold,
        "rows": tab.to_dict("records"),
    }


def _sdt_glmm(d: pd.DataFrame, analysed: np.ndarray, opts: Options, res: StudyResult) -> None:
    """The signal-detection GLMM (:func:`analysis.glmm.mixed_sdt`) on the analysed participants' identical
    (sensitivity) and attacked (perceivability) pairs; positive controls are left out (another signal)."""
    from .glmm import mixed_sdt

    kind = d["trial_kind"].astype(str).to_numpy()
    a = d[analysed & np.isin(kind, ("sensitivity", "perceivability"))]
    if not len(a):
        return
    fit = mixed_sdt(
        a["_y"].to_numpy(),
        (a["trial_kind"].astype(str) == "perceivability").to_numpy(dtype=float),
        a["participant"].astype(str).to_numpy(),
        a["item_key"].astype(str).to_numpy(),
        max_participants=opts.glmm_max_participants,
        seed=opts.seed,
        level=opts.level,
    )
    tab = fit.table.copy()
    tab.insert(0, "subset", "analysed")
    res.tables["indistinguishability_glmm"] = tab
    res.extra["glmm"] = fit
    if fit.converged:
        t = tab.set_index("term")
        res.summary["glmm"] = {
            term: {"estimate": float(t.loc[term, "estimate"]), "ci": [float(t.loc[term, "ci_low"]),
                                                                       float(t.loc[term, "ci_high"])]}
            for term in ("criterion", "d'")
        }  # fmt: skip
        res.notes.append(
            f"signal-detection mixed model ({fit.method}) on {fit.trials} identical and attacked pairs of "
            f"{fit.participants_used} participants: d' and criterion of a typical participant on a typical clip, "
            "with participant and clip spreads of both" + (f"; {fit.note}" if fit.note else "")
        )
    else:
        res.notes.append(f"signal-detection mixed model: {fit.note}; the pooled d' and its bootstrap interval stand")


def _dprime_row(g: pd.DataFrame, y: np.ndarray, opts: Options, salt: tuple) -> dict[str, Any]:
    pc, uniq = pd.factorize(g["participant"].to_numpy())
    P = len(uniq)
    kc = _kind_counts(g, y, pc, P)
    S = {k: float(v.sum()) for k, v in kc.items()}
    with np.errstate(invalid="ignore", divide="ignore"):
        h_raw = S["perceivability_changed"] / S["perceivability_n"] if S["perceivability_n"] else math.nan
        f_raw = S["sensitivity_changed"] / S["sensitivity_n"] if S["sensitivity_n"] else math.nan
        c_raw = S["control_changed"] / S["control_n"] if S["control_n"] else math.nan
    d = float(dprime(S["perceivability_changed"], S["perceivability_n"], S["sensitivity_changed"], S["sensitivity_n"]))
    dc = float(dprime(S["control_changed"], S["control_n"], S["sensitivity_changed"], S["sensitivity_n"]))
    per = dprime(kc["perceivability_changed"], kc["perceivability_n"], kc["sensitivity_changed"], kc["sensitivity_n"])
    lo = hi = clo = chi = math.nan
    if opts.n_boot > 0 and P > 1:
        w = bootstrap_weights(P, opts.n_boot, opts.rng("dp", *salt))
        B = {k: w @ v for k, v in kc.items()}
        db = dprime(B["perceivability_changed"], B["perceivability_n"], B["sensitivity_changed"], B["sensitivity_n"])
        lo, hi = (float(x) for x in percentile_interval(db, opts.level))
        if S["control_n"]:
            with np.errstate(invalid="ignore", divide="ignore"):
                cb = B["control_changed"] / B["control_n"]
            clo, chi = (float(x) for x in percentile_interval(cb, opts.level))
    cwl, cwh = wilson_ci(S["control_changed"], S["control_n"], opts.level)
    return {
        "participants": P,
        "signal_trials": int(S["perceivability_n"]),
        "hits": int(S["perceivability_changed"]),
        "noise_trials": int(S["sensitivity_n"]),
        "false_alarms": int(S["sensitivity_changed"]),
        "hit_rate": h_raw,
        "false_alarm_rate": f_raw,
        "dprime": d,
        "dprime_low": lo,
        "dprime_high": hi,
        "dprime_participant_mean": float(np.nanmean(per)) if np.isfinite(per).any() else math.nan,
        "dprime_participant_median": float(np.nanmedian(per)) if np.isfinite(per).any() else math.nan,
        "control_trials": int(S["control_n"]),
        "control_hits": int(S["control_changed"]),
        "control_hit_rate": c_raw,
        "control_wilson_low": float(cwl),
        "control_wilson_high": float(cwh),
        "control_boot_low": clo,
        "control_boot_high": chi,
        "dprime_control": dc,
    }
