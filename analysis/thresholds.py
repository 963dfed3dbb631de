"""``analysis thresholds``: where people start to see an attack, in physical units, and whether it still works there.

From the indistinguishability answers of a threshold study (graded levels of each method,
shown by constant stimuli or chosen adaptively; any study whose perceivability trials show
graded variants counts) and the stimulus batch:

* each graded trial's strength is the clip's **mean joint displacement** from the original in
  mm (the batch's metric of that item at that level), so items and methods share one axis;
  identical pairs (sensitivity trials) are strength 0 and fix the guess (false-alarm) rate;
* per method, and per method and true class where a class has enough trials, the
  psychometric function of :mod:`analysis.psychometric` is fitted by maximum likelihood, and
  its 50 % and 75 % detection thresholds are given with percentile bootstrap intervals over
  participants;
* **imperceptible and effective**: of the method's graded clips in the batch, those whose
  displacement lies below the 50 % threshold (most people do not see them), and how many of
  these still fool the model robustly (after its own preprocessing), at the threshold and at
  the ends of its interval;
* a figure: per method the observed share of 'changed' at each level and the fitted curve,
  thresholds marked with their intervals.

Analysed trials are those of completed, non-excluded participants (pilots only when asked),
valid and not practice, as in ``analysis report``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Sequence

import matplotlib
import numpy as np
import pandas as pd

from stimuli.errors import DataError

from .psychometric import THRESHOLDS
from .psychometric import detection_probability
from .psychometric import fit_psychometric
from .readers import Batches

__all__ = [
    "ThresholdSettings",
    "threshold_trials",
    "fit_thresholds",
    "effective_below",
    "threshold_figure",
    "analyse_thresholds",
    "simulate_threshold_study",
]

DISPLACEMENT = "metric:mean_joint_displacement_m"
MIN_CLASS_TRIALS = 40
"""A class gets its own fit with at least this many graded trials of the method."""


@dataclass(frozen=True)
class ThresholdSettings:
    n_boot: int = 200
    level: float = 0.95
    seed: int = 0
    include_pilot: bool = False
    per_class: bool = True


def threshold_trials(df: pd.DataFrame, batches: Batches, include_pilot: bool = False) -> pd.DataFrame:
    """The analysed trials of a threshold analysis: one row per graded or sensitivity trial.

    Columns: ``participant``, ``study``, ``kind`` (perceivability / sensitivity), ``method`` (None for
    sensitivity), ``variant``, ``strength`` (the blend's s), ``x_mm`` (mean joint displacement, 0 for identical
    clips), ``said_changed`` (0/1), ``true_label``, ``item_id``, ``success`` and ``robust_success`` (the model's
    verdict on the clip).
    """
    keep = (
        (df["study_type"].astype(str) == "indistinguishability")
        & df["valid"].astype(bool)
        & ~df["practice"].astype(bool)
        & df["participant_completed"].astype(bool)
        & ~df["excluded"].astype(bool)
        & df["trial_kind"].astype(str).isin(["perceivability", "sensitivity"])
    )
    if not include_pilot:
        keep &= ~df["pilot"].fillna(False).astype(bool)
    d = df[keep]
    v = batches.variants
    if DISPLACEMENT not in v:
        raise DataError("the batch records no mean joint displacement (metric mean_joint_displacement_m)")
    info = v[["batch_id", "item_id", "variant", "role", "method", "strength", DISPLACEMENT, "success"]].copy()
    info["robust_success"] = v["robust_success"]
    right = d["right_variant"].astype(str)
    sens = d["trial_kind"].astype(str) == "sensitivity"
    frame = pd.DataFrame(
        {
            "participant": d["participant"].astype(str).to_numpy(),
            "study": d["study"].astype(str).to_numpy(),
            "kind": d["trial_kind"].astype(str).to_numpy(),
            "batch_id": d["batch_id"].astype(str).to_numpy(),
            "item_id": d["item_id"].astype(str).to_numpy(),
            "variant": right.to_numpy(),
            "true_label": d["true_label"].astype(str).to_numpy(),
            "said_changed": d["said_changed"].astype(float).to_numpy(),
        }
    )
    frame = frame.merge(
        info.astype({"batch_id": str, "item_id": str, "variant": str}),
        on=["batch_id", "item_id", "variant"],
        how="left",
    )
    is_sens = sens.to_numpy()
    frame.loc[is_sens, ["method", "strength"]] = [None, 0.0]
    frame["x_mm"] = np.where(is_sens, 0.0, pd.to_numeric(frame[DISPLACEMENT], errors="coerce") * 1e3)
    frame = frame.drop(columns=[DISPLACEMENT])
    graded = frame[~is_sens]
    per_method = graded.groupby("method")["strength"].nunique()
    methods = set(per_method[per_method >= 2].index)
    out = frame[is_sens | frame["method"].isin(methods)].reset_index(drop=True)
    if not methods:
        raise DataError(
            "no graded trials: no method was shown at two or more strengths (a threshold study shows graded "
            "levels: attack-gen batch --levels, and an indistinguishability study with procedure constant or "
            "adaptive)"
        )
    return out


def _fit_row(trials: pd.DataFrame, method: str, cls: str, s: ThresholdSettings) -> dict[str, Any]:
    fit = fit_psychometric(
        trials["x_mm"].to_numpy(),
        trials["said_changed"].to_numpy(),
        trials["participant"].to_numpy(),
        n_boot=s.n_boot,
        level=s.level,
        seed=s.seed,
    )
    graded = trials[trials["kind"] == "perceivability"]
    row: dict[str, Any] = {
        "method": method,
        "class": cls,
        "participants": int(graded["participant"].nunique()),
        "graded_trials": len(graded),
        "sensitivity_trials": int((trials["kind"] == "sensitivity").sum()),
        "levels": int(graded["strength"].nunique()),
        "converged": fit.converged,
        "note": fit.note,
        "mu": fit.mu,
        "sigma": fit.sigma,
        "guess": fit.guess,
        "lapse": fit.lapse,
        "bootstrap_fits": fit.n_boot,
    }
    for p in THRESHOLDS:
        lo, hi = fit.intervals.get(p, (math.nan, math.nan))
        tag = f"t{round(p * 100)}_mm"
        row[tag], row[f"{tag}_low"], row[f"{tag}_high"] = fit.thresholds.get(p, math.nan), lo, hi
    return row


def fit_thresholds(trials: pd.DataFrame, settings: ThresholdSettings = ThresholdSettings()) -> pd.DataFrame:
    """One row per method (class ``all``) and per method and class with enough trials: the fit and its thresholds
    (``t50_mm``, ``t75_mm`` with ``_low`` / ``_high`` interval ends)."""
    rows = []
    sens = trials[trials["kind"] == "sensitivity"]
    for method in sorted(trials["method"].dropna().unique()):
        graded = trials[trials["method"] == method]
        who = set(graded["participant"])
        rows.append(_fit_row(pd.concat([graded, sens[sens["participant"].isin(who)]]), method, "all", settings))
        if not settings.per_class:
            continue
        for cls, g in graded.groupby("true_label"):
            if len(g) < MIN_CLASS_TRIALS or g["strength"].nunique() < 2:
                continue
            own = sens[sens["participant"].isin(set(g["participant"])) & (sens["true_label"] == cls)]
            rows.append(_fit_row(pd.concat([g, own]), method, str(cls), settings))
    return pd.DataFrame(rows)


def effective_below(fits: pd.DataFrame, batches: Batches) -> pd.DataFrame:
    """Per method: of its graded clips in the batch, those below the 50 % detection threshold (mean joint
    displacement) and how many of them fool the model robustly; at the threshold and its interval's ends."""
    v = batches.variants
    rows = []
    for _, f in fits[fits["class"] == "all"].iterrows():
        clips = v[(v["method"] == f["method"]) & v["role"].isin(["attack", "level"])]
        x = pd.to_numeric(clips[DISPLACEMENT], errors="coerce").to_numpy() * 1e3
        fooled = clips["robust_success"].fillna(False).astype(bool).to_numpy()
        row: dict[str, Any] = {"method": f["method"], "clips": len(clips), "robust_success_rate": float(fooled.mean())}
        for tag, t in (("", f["t50_mm"]), ("_at_low", f["t50_mm_low"]), ("_at_high", f["t50_mm_high"])):
            below = x < t if math.isfinite(t) else np.zeros(len(x), bool)
            row[f"below{tag}"] = int(below.sum())
            row[f"below_and_effective{tag}"] = int((below & fooled).sum())
            row[f"share_imperceptible_and_effective{tag}"] = float((below & fooled).mean()) if len(x) else math.nan
        row["effective_share_of_below"] = row["below_and_effective"] / row["below"] if row["below"] else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


BINS = 8
"""The figure's observed shares: each method's graded trials in this many bins of equal count along the log of
the displacement (clips of one level differ in displacement from item to item, so levels are not points)."""


def threshold_figure(trials: pd.DataFrame, fits: pd.DataFrame) -> Any:
    """Per method: the share of 'changed' in bins of displacement (dot area: trials) and the fitted curve; the
    50 % threshold marked with its interval; the false-alarm rate (identical clips) dotted."""
    from .figures import _METHOD_COLOURS
    from .figures import STYLE
    from .figures import _legend_below
    from .figures import new_axes

    with matplotlib.rc_context(STYLE):
        ax = new_axes(height=3.0)
        graded = trials[(trials["kind"] == "perceivability") & (trials["x_mm"] > 0)]
        sens = trials[trials["kind"] == "sensitivity"]
        lo, hi = np.quantile(graded["x_mm"], [0.01, 0.99]) * np.array([0.8, 1.25])
        grid = np.geomspace(lo, hi, 200)
        palette = ["#8c564b", "#e377c2", "#17becf", "#bcbd22"]
        for k, (_, f) in enumerate(fits[fits["class"] == "all"].iterrows()):
            m = f["method"]
            colour = _METHOD_COLOURS.get(m, palette[k % len(palette)])
            g = graded[graded["method"] == m]
            bins = pd.qcut(np.log(g["x_mm"]), min(BINS, g["x_mm"].nunique()), duplicates="drop")
            b = g.groupby(bins, observed=True).agg(x=("x_mm", "median"), p=("said_changed", "mean"), n=("x_mm", "size"))
            ax.scatter(b["x"], b["p"], s=4 + 30 * b["n"] / b["n"].max(), color=colour, alpha=0.7, linewidths=0)
            label = f"{m}: no fit"
            if f["converged"]:
                ax.plot(grid, detection_probability(grid, f["mu"], f["sigma"], f["guess"], f["lapse"]), color=colour)
                y50 = f["guess"] + (1 - f["guess"] - f["lapse"]) / 2
                ax.plot([f["t50_mm"]], [y50], marker="|", ms=9, mew=1.5, color=colour)
                if math.isfinite(f["t50_mm_low"]):
                    ax.plot([f["t50_mm_low"], f["t50_mm_high"]], [y50, y50], color=colour, lw=3, alpha=0.45)
                label = f"{m}: 50 % at {f['t50_mm']:.3g} mm"
            ax.plot([], [], color=colour, marker="o", ms=3, label=label)
        if len(sens):
            ax.axhline(float(sens["said_changed"].mean()), color="#777777", ls=":", lw=0.8, label="identical clips")
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean joint displacement (mm, log scale)")
        ax.set_ylabel("share answering 'changed'")
        ax.set_title("Detection of graded attacks")
        _legend_below(ax, ncol=2)
        return ax.figure


def analyse_thresholds(
    df: pd.DataFrame, batches: Batches, settings: ThresholdSettings = ThresholdSettings()
) -> dict[str, Any]:
    """Everything ``analysis thresholds`` writes: the trials, the fits, the imperceptible-and-effective table
    and the figure."""
    trials = threshold_trials(df, batches, settings.include_pilot)
    fits = fit_thresholds(trials, settings)
    return {"trials": trials, "fits": fits, "effective": effective_below(fits, batches)}


# ---- simulated threshold studies ---------------------------------------------------------------
def simulate_threshold_study(
    batches: Batches,
    participants: int,
    thresholds_mm: dict[str, float],
    *,
    sigma: float = 0.3,
    guess: float = 0.1,
    lapse: float = 0.02,
    trials: int = 100,
    sensitivity_share: float = 0.2,
    procedure: str = "constant",
    seed: int = 0,
    study: str = "threshold-sim",
) -> list[dict[str, Any]]:
    """Response rows (the export format) of simulated observers with known thresholds: observer answers
    'changed' to a clip of displacement ``x`` mm with ``guess + (1 - guess - lapse) Phi(ln(x / T) / sigma)``,
    ``T`` the method's 50 % threshold; to identical clips with ``guess``. ``procedure``: ``constant`` (every
    level of each method equally often, items at random) or ``adaptive`` (QUEST+ of :mod:`stimuli.adaptive`,
    as the server runs it)."""
    from scipy.stats import norm

    from stimuli.adaptive import choose
    from stimuli.responses import make_row

    if procedure not in ("constant", "adaptive"):
        raise DataError(f"procedure must be constant or adaptive, got {procedure!r}")
    v = batches.variants
    graded = v[v["method"].isin(list(thresholds_mm)) & v["role"].isin(["attack", "level"])]
    missing = [m for m in thresholds_mm if graded[graded["method"] == m]["strength"].nunique() < 2]
    if missing:
        raise DataError(f"method(s) {', '.join(missing)} have no graded levels in the batch")
    batch_id = str(graded["batch_id"].iloc[0])
    items = batches.items[batches.items["batch_id"] == batch_id]
    true_of = dict(zip(items["item_id"].astype(str), items["true_label"].astype(str)))
    ids = sorted(true_of)
    x_of = {
        (str(i), str(n)): float(x) * 1e3 for i, n, x in zip(graded["item_id"], graded["variant"], graded[DISPLACEMENT])
    }
    levels: dict[str, list[tuple[float, str]]] = {}
    for m in thresholds_mm:
        g = graded[graded["method"] == m]
        levels[m] = sorted({(float(s), str(n)) for n, s in zip(g["variant"], g["strength"])})
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    n_sens = int(math.floor(trials * sensitivity_share + 0.5))
    methods = list(thresholds_mm)

    def p_yes(m: str | None, x: float) -> float:
        if m is None:
            return guess
        return guess + (1 - guess - lapse) * float(norm.cdf(math.log(x / thresholds_mm[m]) / sigma))

    for p in range(participants):
        pid = f"sim-{p:04d}"
        plan: list[tuple[str | None, int | None]] = [(None, None)] * n_sens
        rest = trials - n_sens
        if procedure == "constant":
            cells = [(m, k) for m in methods for k in range(len(levels[m]))]
            plan += [cells[i % len(cells)] for i in range(rest)]
        else:
            plan += [(methods[i % len(methods)], None) for i in range(rest)]
        order = rng.permutation(len(plan))
        history: dict[str, list[tuple[float, bool]]] = {m: [] for m in methods}
        for pos, j in enumerate(order):
            m, k = plan[j]
            item = ids[int(rng.integers(len(ids)))]
            state = None
            if m is None:
                variant, x, kind = "original", 0.0, "sensitivity"
            else:
                if k is None:
                    c = choose([s for s, _ in levels[m]], history[m])
                    k, state = c.index, c.to_dict()
                strength, variant = levels[m][k]
                x, kind = x_of[(item, variant)], "perceivability"
            yes = bool(rng.random() < p_yes(m, x))
            if m is None:
                for h in history.values():
                    h.append((0.0, yes))
            elif procedure == "adaptive":
                history[m].append((levels[m][k][0], yes))
            rows.append(
                make_row(
                    participant=pid,
                    study=study,
                    study_type="indistinguishability",
                    recruit_platform="anonymous",
                    participant_completed=True,
                    excluded=False,
                    block=0,
                    trial_index=pos,
                    practice=False,
                    attempt=1,
                    valid=True,
                    batch_id=batch_id,
                    item_id=item,
                    true_label=true_of[item],
                    variant=variant,
                    left_variant="original",
                    right_variant=variant,
                    procedure=procedure,
                    method=m,
                    strength=None if m is None else levels[m][k][0],
                    adaptive_state=state,
                    plays=1,
                    seconds=6.0,
                    slowdown=1.0,
                    answer="changed" if yes else "unchanged",
                    trial_kind=kind,
                    said_changed=yes,
                    correct=yes == (kind != "sensitivity"),
                    playback_failed=False,
                )
            )
    return rows


def write_thresholds(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write the tables (CSV), the figure (PNG, SVG) and a summary (JSON, Markdown) into ``out``; the summary."""
    from .document import save_figure
    from .readers import dumps

    out.mkdir(parents=True, exist_ok=True)
    fits, eff, trials = result["fits"], result["effective"], result["trials"]
    fits.to_csv(out / "thresholds.csv", index=False)
    eff.to_csv(out / "imperceptible_and_effective.csv", index=False)
    fig = threshold_figure(trials, fits)
    for fmt in ("png", "svg"):
        (out / f"thresholds.{fmt}").write_bytes(save_figure(fig, fmt))
    summary = {
        "participants": int(trials["participant"].nunique()),
        "graded_trials": int((trials["kind"] == "perceivability").sum()),
        "sensitivity_trials": int((trials["kind"] == "sensitivity").sum()),
        "methods": {
            str(f["method"]): {
                "t50_mm": f["t50_mm"],
                "t50_mm_interval": [f["t50_mm_low"], f["t50_mm_high"]],
                "t75_mm": f["t75_mm"],
                "t75_mm_interval": [f["t75_mm_low"], f["t75_mm_high"]],
                "guess": f["guess"],
                "lapse": f["lapse"],
                "converged": bool(f["converged"]),
            }
            for _, f in fits[fits["class"] == "all"].iterrows()
        },
        "imperceptible_and_effective": eff.to_dict(orient="records"),
        "files": ["thresholds.csv", "imperceptible_and_effective.csv", "thresholds.png", "thresholds.svg"],
    }
    (out / "thresholds.json").write_text(dumps(summary) + "\n", encoding="utf-8")
    (out / "thresholds.md").write_text(_markdown(summary), encoding="utf-8")
    summary["files"] += ["thresholds.json", "thresholds.md"]
    return summary


def _markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Detection thresholds",
        "",
        f"{summary['participants']} participants, {summary['graded_trials']} graded trials, "
        f"{summary['sensitivity_trials']} identical-pair trials.",
        "",
        "![Detection of graded attacks](thresholds.svg)",
        "",
    ]
    eff = {r["method"]: r for r in summary["imperceptible_and_effective"]}
    for m, s in summary["methods"].items():
        lo, hi = s["t50_mm_interval"]
        e = eff.get(m, {})
        lines.append(
            f"- **{m}**: 50 % detection at {s['t50_mm']:.3g} mm mean joint displacement "
            f"[{lo:.3g}, {hi:.3g}], 75 % at {s['t75_mm']:.3g} mm; "
            f"{e.get('below_and_effective', 0)} of {e.get('clips', 0)} graded clips lie below the 50 % threshold "
            f"and still fool the model robustly ({100 * e.get('share_imperceptible_and_effective', math.nan):.1f} %)."
        )
    return "\n".join(lines) + "\n"


def parse_thresholds(values: Sequence[str]) -> dict[str, float]:
    """``["smart=12", "l2=9"]`` -> {"smart": 12.0, "l2": 9.0} (mm, > 0)."""
    out = {}
    for v in values:
        name, _, val = v.partition("=")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            raise DataError(f"--threshold: expected METHOD=MM, got {v!r}") from None
        if not out[name.strip()] > 0 or not name.strip():
            raise DataError(f"--threshold: expected METHOD=MM with MM > 0, got {v!r}")
    return out
