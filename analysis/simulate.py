"""Synthetic participants: responses in the export format from a simple observer model.

For power analysis ("how many participants for an interval of +-x?") and for tests:
``simulate`` draws every trial of every participant with numpy (no per-row Python), so
a million rows take seconds. The designs follow the paper (SPEC §5) and the study
server (``study_server.design``); each study type has its own participants, as on the
server (one study per participant).

Observer model (:class:`Observer`):

* **Deceitfulness**: ``logit P(true label) = logit(p_true) + u_participant + v_clip``,
  ``u ~ N(0, participant_sd)``, ``v ~ N(0, clip_sd)``; so ``p_true`` is the probability
  for a typical participant on a typical clip (the mixed model's intercept).
* **Naturalness**: Davidson's Bradley-Terry model with ties (:mod:`analysis.bt`):
  method strengths ``strengths`` and tie parameter ``tie``.
* **Indistinguishability**: equal-variance signal detection. The right clip evokes
  ``N(mu, 1)``: ``mu = 0`` for the original (sensitivity trials), ``dprime`` (plus a
  participant's ``N(0, dprime_sd)``) for an attacked clip and ``control_dprime`` for a
  positive control; "changed" when above ``criterion``.
* Every study: with probability ``lapse`` a trial is answered uniformly at random; a
  share ``guessers`` of participants answers everything at random; a share
  ``always_unchanged`` answers "unchanged" to every indistinguishability trial; a share
  ``dropout`` stops at a random trial (not completed); each trial's video fails with
  probability ``playback_failure`` and is shown again (attempt 2).

Screening by the one rule (``stimuli.screening``): a completed participant whose
sensitivity accuracy is below ``screen_threshold`` (and, if set, whose positive-control
hit rate is below ``control_screen``) is excluded, with the server's reason text.
:meth:`Observer.implied` gives the population values the report should recover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from pathlib import Path
from typing import Any
from typing import Mapping
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

from stimuli.errors import DataError
from stimuli.responses import COLUMN_NAMES
from stimuli.responses import COLUMNS
from stimuli.responses import RESPONSES_FORMAT
from stimuli.responses import STUDY_TYPES
from stimuli.screening import SENSITIVITY_THRESHOLD
from stimuli.screening import exclusion_reasons

from .readers import Batches

__all__ = ["Observer", "Design", "simulate", "write_responses", "DEFAULT_STRENGTHS"]

DEFAULT_STRENGTHS = (("smart", 2.0), ("l2-acc", 1.3), ("l2", 1.0), ("l2-bone", 0.8))
"""The paper's order (Fig. 6): SMART > l2-acc > l2 > l2-bone; the values are ours."""


@dataclass(frozen=True)
class Observer:
    """Parameters of the simulated participants (see the module docstring)."""

    p_true: float = 0.93
    participant_sd: float = 0.5
    clip_sd: float = 0.3
    strengths: tuple[tuple[str, float], ...] = DEFAULT_STRENGTHS
    tie: float = 0.5
    dprime: float = 0.75
    dprime_sd: float = 0.0
    control_dprime: float = 4.0
    criterion: float = 1.645
    lapse: float = 0.02
    guessers: float = 0.0
    always_unchanged: float = 0.0
    dropout: float = 0.0
    playback_failure: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p_true", "lapse", "guessers", "always_unchanged", "dropout", "playback_failure"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise DataError(f"observer: {name} must be in [0, 1], got {v!r}")
        if not 0 < self.p_true < 1:
            raise DataError(f"observer: p_true must be in (0, 1), got {self.p_true!r}")
        for name in ("participant_sd", "clip_sd", "dprime_sd", "tie"):
            if getattr(self, name) < 0:
                raise DataError(f"observer: {name} must be >= 0, got {getattr(self, name)!r}")
        for m, s in self.strengths:
            if not s > 0:
                raise DataError(f"observer: strength of {m!r} must be > 0, got {s!r}")
        if self.guessers + self.always_unchanged > 1:
            raise DataError("observer: guessers + always_unchanged must not exceed 1")

    @property
    def strength(self) -> dict[str, float]:
        return dict(self.strengths)

    def implied(self) -> dict[str, Any]:
        """Population values for an attentive participant (no guessers or always-unchanged), lapses included."""
        lam = self.lapse
        # marginal P(true label) over participant and clip effects (Gauss-Hermite, 40 x 40 nodes)
        x, w = np.polynomial.hermite_e.hermegauss(40)
        w = w / w.sum()
        sd = math.hypot(self.participant_sd, self.clip_sd)
        eta = math.log(self.p_true / (1 - self.p_true)) + sd * x
        marginal = float(np.sum(w / (1 + np.exp(-eta))))
        h = float(norm.sf(self.criterion - self.dprime))
        f = float(norm.sf(self.criterion))
        c = float(norm.sf(self.criterion - self.control_dprime))
        h_obs, f_obs, c_obs = ((1 - lam) * v + lam / 2 for v in (h, f, c))
        logs = {m: math.log(s) for m, s in self.strengths}
        mean = sum(logs.values()) / len(logs)
        return {
            "p_true_typical": self.p_true,
            "p_true_marginal": (1 - lam) * marginal + lam / 2,
            "hit_rate": h_obs,
            "false_alarm_rate": f_obs,
            "control_hit_rate": c_obs,
            "share_unchanged": 1 - h_obs,
            "dprime": float(norm.ppf(h_obs) - norm.ppf(f_obs)),
            "sensitivity_accuracy": 1 - f_obs,
            "log_strength": {m: v - mean for m, v in logs.items()},
            "tie": self.tie,
        }


@dataclass(frozen=True)
class Design:
    """The three study designs (defaults: the paper's trial counts)."""

    studies: tuple[str, ...] = STUDY_TYPES
    deceitfulness_trials: int = 100
    naturalness_motions: int = 50
    indistinguishability_trials: int = 100
    sensitivity_share: float = 0.3
    control_share: float = 0.1
    practice_trials: int = 2
    deceit_variant: str = "smart"
    perceivability_variants: tuple[str, ...] = ("smart",)
    screen_threshold: float = SENSITIVITY_THRESHOLD
    control_screen: float | None = None
    slowdown: float = 1.0
    platform: str = "prolific"
    study_prefix: str = "sim"

    def __post_init__(self) -> None:
        odd = [s for s in self.studies if s not in STUDY_TYPES]
        if odd or not self.studies:
            raise DataError(f"design: studies must be among {', '.join(STUDY_TYPES)}, got {list(self.studies)}")
        for name in ("deceitfulness_trials", "naturalness_motions", "indistinguishability_trials"):
            if getattr(self, name) < 1:
                raise DataError(f"design: {name} must be >= 1, got {getattr(self, name)!r}")
        if self.practice_trials < 0:
            raise DataError(f"design: practice_trials must be >= 0, got {self.practice_trials!r}")
        if not (
            0 <= self.sensitivity_share and 0 <= self.control_share and self.sensitivity_share + self.control_share < 1
        ):
            raise DataError("design: sensitivity_share and control_share must be >= 0 and sum to less than 1")


# ---- helpers ---------------------------------------------------------------------------------
def _cycle(rng: np.random.Generator, P: int, n: int, pool: int) -> np.ndarray:
    """``(P, n)`` indices into a pool: each participant sees every element once before any twice."""
    reps = -(-n // pool)
    perms = np.argsort(rng.random((P, reps, pool)), axis=2).reshape(P, reps * pool)
    return perms[:, :n]


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class _Pool:
    batch_id: np.ndarray
    item_id: np.ndarray
    dataset: np.ndarray
    model: np.ndarray
    strategy: np.ndarray
    true_label: np.ndarray
    attacked_label: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # variant -> final label
    success: dict[str, np.ndarray] = field(default_factory=dict)


def _pool(batches: Batches) -> tuple[_Pool, dict[str, str]]:
    it = batches.items
    v = batches.variants
    pool = _Pool(
        *(
            it[c].astype(object).to_numpy()
            for c in ("batch_id", "item_id", "dataset", "model", "strategy", "true_label", "attacked_label")
        )
    )
    key_it = it["batch_id"] + "\x1f" + it["item_id"]
    key_v = v["batch_id"] + "\x1f" + v["item_id"]
    roles = dict(zip(v["variant"], v["role"]))
    for name in roles:
        sel = v[v["variant"] == name].set_index(key_v[v["variant"] == name])
        pool.labels[name] = sel["final_label"].reindex(key_it).astype(object).to_numpy()
        pool.success[name] = sel["success"].reindex(key_it).astype(object).to_numpy()
    return pool, roles


def _empty_columns(n: int) -> dict[str, Any]:
    return {c.name: np.full(n, None, dtype=object) for c in COLUMNS}


# ---- the three studies -----------------------------------------------------------------------
def _deceitfulness(rng, P, n, pool, roles, obs: Observer, des: Design, kind_of: np.ndarray) -> dict[str, np.ndarray]:
    v = des.deceit_variant
    if roles.get(v) != "attack":
        raise DataError(f"deceitfulness: the batch has no attacked variant {v!r} (variants: {', '.join(roles)})")
    ok = np.flatnonzero([s is True for s in pool.success[v]])  # per item: the variant fooled the model
    candidates = ok if len(ok) else np.arange(len(pool.item_id))
    items = candidates[_cycle(rng, P, n, len(candidates))]
    u = rng.normal(0, obs.participant_sd, P)[:, None]
    clip_eff = rng.normal(0, obs.clip_sd, len(pool.item_id))
    p = _expit(math.log(obs.p_true / (1 - obs.p_true)) + u + clip_eff[items])
    p = np.where(kind_of[:, None] == 1, 0.5, p)  # guessers
    p = np.where(rng.random((P, n)) < obs.lapse, 0.5, p)
    chose = rng.random((P, n)) < p
    attacked = pool.labels[v][items]
    attacked = np.where(pd.isna(attacked), None, attacked)
    order = np.where(rng.random((P, n)) < 0.5, "true,attacked", "attacked,true")
    return {
        "item": items,
        "variant": np.full((P, n), v, dtype=object),
        "attacked_label": attacked,
        "answer": np.where(chose, "true_label", "attacked_label"),
        "label_order": order,
        "chose_true_label": chose,
        "plays": np.full((P, n), 1),
    }


def _naturalness(rng, P, n_motions, pool, roles, obs: Observer, des: Design, kind_of) -> dict[str, np.ndarray]:
    attacks = [name for name, r in roles.items() if r == "attack"]
    if "smart" not in attacks:
        raise DataError(f"naturalness: the batch has no 'smart' variant (attacked variants: {', '.join(attacks)})")
    abl = np.array(sorted(a for a in attacks if a != "smart"), dtype=object)
    if len(abl) < 2:
        raise DataError(f"naturalness: needs at least two ablations besides 'smart', the batch has {list(abl)}")
    strengths = obs.strength
    missing = [m for m in ("smart", *abl) if m not in strengths]
    if missing:
        raise DataError(f"naturalness: no observer strength for {', '.join(missing)} (give --strength NAME=VALUE)")
    n = 2 * n_motions
    motions = _cycle(rng, P, n_motions, len(pool.item_id))
    one = rng.integers(0, len(abl), (P, n_motions))
    pair_a = rng.integers(0, len(abl), (P, n_motions))
    pair_b = (pair_a + 1 + rng.integers(0, len(abl) - 1, (P, n_motions))) % len(abl)
    first_l = np.full((P, n_motions), "smart", dtype=object)
    first_r = abl[one]
    a_l, a_r = abl[pair_a], abl[pair_b]
    left = np.concatenate([first_l, a_l], axis=1)
    right = np.concatenate([first_r, a_r], axis=1)
    kind = np.concatenate(
        [np.full((P, n_motions), "smart-vs-ablation"), np.full((P, n_motions), "ablation-vs-ablation")], axis=1
    )
    items = np.concatenate([motions, motions], axis=1)
    swap = rng.random((P, n)) < 0.5
    left, right = np.where(swap, right, left), np.where(swap, left, right)
    order = np.argsort(rng.random((P, n)), axis=1)  # each participant's trials in a random order
    left, right, kind, items = (np.take_along_axis(a, order, axis=1) for a in (left, right, kind, items))
    names = list(strengths)
    values = np.array([strengths[m] for m in names])
    codes = pd.Index(names)
    tl = values[codes.get_indexer(left.ravel())].reshape(P, n)
    tr = values[codes.get_indexer(right.ravel())].reshape(P, n)
    tie = obs.tie * np.sqrt(tl * tr)
    den = tl + tr + tie
    pl, pr = tl / den, tr / den
    rand = (kind_of[:, None] == 1) | (rng.random((P, n)) < obs.lapse)
    pl, pr = np.where(rand, 1 / 3, pl), np.where(rand, 1 / 3, pr)
    u = rng.random((P, n))
    ans = np.where(u < pl, "left", np.where(u < pl + pr, "right", "cant_tell"))
    pref = np.where(ans == "left", left, np.where(ans == "right", right, None))
    return {
        "item": items,
        "left_variant": left,
        "right_variant": right,
        "variant": right,
        "answer": ans,
        "naturalness_pair": kind,
        "preferred_variant": pref,
        "plays": np.full((P, n), 2),
    }


def _indistinguishability(rng, P, n, pool, roles, obs: Observer, des: Design, kind_of) -> dict[str, np.ndarray]:
    controls = sorted(name for name, r in roles.items() if r == "control")
    variants = list(des.perceivability_variants)
    bad = [v for v in variants if roles.get(v) != "attack"]
    if bad:
        raise DataError(f"indistinguishability: the batch has no attacked variant {', '.join(map(repr, bad))}")
    n_sens = _round_half_up(n * des.sensitivity_share)
    n_ctrl = _round_half_up(n * des.control_share)
    if n_ctrl and not controls:
        raise DataError("indistinguishability: the batch has no positive-control variant; set the control share to 0")
    base = np.array(["sensitivity"] * n_sens + ["control"] * n_ctrl + ["perceivability"] * (n - n_sens - n_ctrl))
    kinds = np.take_along_axis(np.broadcast_to(base, (P, n)), np.argsort(rng.random((P, n)), axis=1), axis=1)
    items = _cycle(rng, P, n, len(pool.item_id))
    var_arr = np.array(variants, dtype=object)[rng.integers(0, len(variants), (P, n))]
    ctrl_arr = np.array(controls or ["control"], dtype=object)[rng.integers(0, max(len(controls), 1), (P, n))]
    right = np.where(kinds == "sensitivity", "original", np.where(kinds == "control", ctrl_arr, var_arr))
    dp = obs.dprime + obs.dprime_sd * rng.normal(size=(P, 1))
    mu = np.where(kinds == "sensitivity", 0.0, np.where(kinds == "control", obs.control_dprime, dp))
    changed = rng.normal(mu, 1.0) > obs.criterion
    changed = np.where((kind_of[:, None] == 1) | (rng.random((P, n)) < obs.lapse), rng.random((P, n)) < 0.5, changed)
    changed = np.where(kind_of[:, None] == 2, False, changed)
    return {
        "item": items,
        "left_variant": np.full((P, n), "original", dtype=object),
        "right_variant": right,
        "variant": right,
        "trial_kind": kinds,
        "answer": np.where(changed, "changed", "unchanged"),
        "said_changed": changed,
        "correct": changed == (kinds != "sensitivity"),
        "plays": np.full((P, n), 1),
    }


_GENERATORS = {
    "deceitfulness": _deceitfulness,
    "naturalness": _naturalness,
    "indistinguishability": _indistinguishability,
}


def _study(
    rng,
    study_type: str,
    participants: int,
    pool: _Pool,
    roles,
    obs: Observer,
    des: Design,
    seconds: float,
    t0: np.datetime64,
) -> pd.DataFrame:
    P = participants
    gen = _GENERATORS[study_type]
    u = rng.random(P)
    kind_of = np.where(u < obs.guessers, 1, np.where(u < obs.guessers + obs.always_unchanged, 2, 0))
    if study_type != "indistinguishability":
        kind_of = np.where(kind_of == 2, 0, kind_of)
    size = {
        "deceitfulness": des.deceitfulness_trials,
        "naturalness": des.naturalness_motions,
        "indistinguishability": des.indistinguishability_trials,
    }[study_type]
    main = gen(rng, P, size, pool, roles, obs, des, kind_of)
    R = des.practice_trials
    if R:
        prac = gen(rng, P, -(-R // 2) if study_type == "naturalness" else R, pool, roles, obs, des, kind_of)
        cols = {k: np.concatenate([prac[k][:, :R], main[k]], axis=1) for k in main}
    else:
        cols = main
    L = cols["item"].shape[1]
    practice = np.zeros((P, L), bool)
    practice[:, :R] = True
    # drop-outs stop at a random trial; everyone else completes
    drop = rng.random(P) < obs.dropout
    stop = np.where(drop, rng.integers(1, max(L, 2), P), L)
    keep = np.arange(L)[None, :] < stop[:, None]
    completed = ~drop
    # screening on the server's rule (indistinguishability only)
    excluded = np.zeros(P, bool)
    reason = np.full(P, None, dtype=object)
    if study_type == "indistinguishability":
        main_k = keep & ~practice
        sens = main_k & (cols["trial_kind"] == "sensitivity")
        ctrl = main_k & (cols["trial_kind"] == "control")
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = (sens & ~cols["said_changed"]).sum(1) / sens.sum(1)
            hit = (ctrl & cols["said_changed"]).sum(1) / ctrl.sum(1)
        for p in np.flatnonzero(completed):
            why = exclusion_reasons(float(acc[p]), float(hit[p]), des.screen_threshold, des.control_screen)
            excluded[p], reason[p] = bool(why), "; ".join(why) or None
    # flatten the kept trials
    pi, ti = np.nonzero(keep)
    n = len(pi)
    out = _empty_columns(n)
    item = cols["item"][pi, ti]
    for k, v in cols.items():
        if k != "item" and k in out:
            out[k] = v[pi, ti]
    slug = f"{des.study_prefix}-{study_type}"
    tag = study_type[:3]
    out["participant"] = pd.Categorical.from_codes(pi, [f"{des.study_prefix}-{tag}-{i:05d}" for i in range(P)])
    out["study"] = np.full(n, slug)
    out["study_type"] = np.full(n, study_type)
    out["recruit_platform"] = np.full(n, des.platform)
    out["age"] = rng.integers(18, 38, P)[pi]
    out["participant_completed"] = completed[pi]
    out["excluded"] = excluded[pi]
    out["exclusion_reason"] = reason[pi]
    out["block"] = np.zeros(n, np.int64)
    out["trial_index"] = ti.astype(np.int64)
    out["practice"] = practice[pi, ti]
    out["attempt"] = np.ones(n, np.int64)
    out["valid"] = np.ones(n, bool)
    for k in ("batch_id", "item_id", "dataset", "model", "strategy", "true_label"):
        out[k] = getattr(pool, k)[item]
    if "attacked_label" not in cols:
        out["attacked_label"] = pool.attacked_label[item]
    out["seconds"] = np.full(n, float(seconds))
    out["slowdown"] = np.full(n, float(des.slowdown if study_type == "indistinguishability" else 1.0))
    out["playback_failed"] = np.zeros(n, bool)
    rt = rng.lognormal(math.log(2500.0), 0.5, n).round(1)
    out["response_time_ms"] = rt
    per_trial = (out["plays"].astype(float) * seconds * out["slowdown"] * 1000 + rt + 1000).astype(np.int64)
    start = np.cumsum(per_trial) - per_trial
    firsts = start[np.flatnonzero(np.r_[True, pi[1:] != pi[:-1]])]  # every participant has >= 1 trial
    shown = t0 + ((start - firsts[pi]) + pi.astype(np.int64) * 60_000).astype("timedelta64[ms]")
    answered = shown + (out["plays"].astype(float) * seconds * out["slowdown"] * 1000 + rt).astype("timedelta64[ms]")
    out["shown_at"] = np.datetime_as_string(shown, unit="ms", timezone="UTC")
    out["answered_at"] = np.datetime_as_string(answered, unit="ms", timezone="UTC")
    frame = pd.DataFrame(out, columns=list(COLUMN_NAMES))
    # playback failures: the failed attempt, then the trial again (attempt 2)
    fail = rng.random(n) < obs.playback_failure
    if fail.any():
        bad = frame[fail].copy()
        for c in (
            "answer",
            "label_order",
            "chose_true_label",
            "preferred_variant",
            "said_changed",
            "correct",
            "response_time_ms",
            "answered_at",
        ):
            bad[c] = None
        bad["valid"] = False
        bad["playback_failed"] = True
        frame.loc[fail, "attempt"] = 2
        frame = pd.concat([frame, bad], ignore_index=True)
        frame = frame.sort_values(["participant", "trial_index", "attempt"], kind="stable").reset_index(drop=True)
    return frame


def simulate(
    batches: Batches, participants: int, seed: int = 0, observer: Observer = Observer(), design: Design = Design()
) -> pd.DataFrame:
    """Responses of ``participants`` simulated people per study type, one row per trial (export columns).

    Deterministic for a given seed, batch and parameters.
    """
    if participants < 1:
        raise DataError(f"simulate: participants must be >= 1, got {participants!r}")
    rng = np.random.default_rng(seed)
    pool, roles = _pool(batches)
    first = next(iter(batches.batches.values()))
    seconds = float(first.render_config.get("duration", 6.0))
    t0 = np.datetime64("2026-01-01T09:00:00.000")
    frames = [_study(rng, st, participants, pool, roles, observer, design, seconds, t0) for st in design.studies]
    df = pd.concat(frames, ignore_index=True)
    return df[list(COLUMN_NAMES)]


# ---- writing ---------------------------------------------------------------------------------
def _typed(df: pd.DataFrame, for_csv: bool) -> pd.DataFrame:
    out = {}
    for c in COLUMNS:
        s = df[c.name]
        if c.type == "bool":
            s = s.astype("boolean")
            out[c.name] = s.astype("Int8") if for_csv else s
        elif c.type == "int":
            out[c.name] = s.astype("Int64")
        elif c.type == "float":
            out[c.name] = s.astype("float64")
        else:
            out[c.name] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(out)


def write_responses(df: pd.DataFrame, path: str | Path) -> Path:
    """Write responses as the server exports them: CSV (``.csv``) or JSON (``.json``), by suffix."""
    path = Path(path)
    missing = [c for c in COLUMN_NAMES if c not in df.columns]
    if missing:
        raise DataError(f"responses lack column(s) {', '.join(missing)}")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise DataError(f"{path}: write responses to a .csv or .json file")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".csv":
        _typed(df, True).to_csv(tmp, index=False, lineterminator="\n")
    else:
        rows = _typed(df, False).to_json(orient="records")
        tmp.write_text(f'{{"format": "{RESPONSES_FORMAT}", "version": 1, "rows": {rows}}}', encoding="utf-8")
    tmp.replace(path)
    return path


def observer_from_options(
    base: Observer = Observer(), strengths: Mapping[str, float] | None = None, **values: Any
) -> Observer:
    """An :class:`Observer` with the given fields replaced (None values keep the default)."""
    kw = {k: v for k, v in values.items() if v is not None}
    if strengths:
        merged = dict(base.strengths)
        merged.update(strengths)
        kw["strengths"] = tuple(merged.items())
    return replace(base, **kw)


def parse_strengths(items: Sequence[str]) -> dict[str, float]:
    """``["smart=2", "l2=1"]`` -> ``{"smart": 2.0, "l2": 1.0}``; a bad item is a :class:`DataError`."""
    out = {}
    for it in items:
        name, sep, val = it.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name.strip()] = float(val)
        except ValueError:
            raise DataError(f"--strength: expected NAME=VALUE (e.g. smart=2.0), got {it!r}") from None
    return out
