"""Plot helpers: each takes a tidy table (as the analysis functions return it) and ``ax=None``,
draws on ``ax`` (a new figure when None) and returns ``ax``.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot (no global
state, no GUI backend): ``ax.figure.savefig(path)`` writes them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from stimuli.skeleton import STANDARD

from . import paper

__all__ = [
    "new_axes",
    "plot_shares",
    "plot_histogram",
    "plot_preference",
    "plot_bt",
    "plot_pairs",
    "plot_hit_fa",
    "plot_confusion",
    "plot_joint_map",
    "joint_maps_figure",
    "plot_joint_deviation",
    "joint_deviation_figure",
    "plot_success",
]

_SUBSET_COLOURS = {"all": "#999999", "analysed": "#1f77b4", "analysed+controls": "#2ca02c"}
_METHOD_COLOURS = {"smart": "#d62728", "l2": "#1f77b4", "l2-acc": "#2ca02c", "l2-bone": "#9467bd"}


def new_axes(width: float = 6.4, height: float = 4.0) -> Axes:
    """A fresh figure's single axes (no pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig.add_subplot()


def _ax(ax: Axes | None, width: float = 6.4, height: float = 4.0) -> Axes:
    return new_axes(width, height) if ax is None else ax


def plot_shares(
    table: pd.DataFrame, ax: Axes | None = None, title: str = "", xlabel: str = "share", chance: float | None = 0.5
) -> Axes:
    """Shares with two-way bootstrap (thick) and Wilson (thin) intervals per subset and group; the paper's as x."""
    ax = _ax(ax, 6.4, max(2.0, 0.32 * len(table) + 1.2))
    if table.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return ax
    y = np.arange(len(table))[::-1]
    for yi, r in zip(y, table.itertuples()):
        c = _SUBSET_COLOURS.get(r.subset, "k")
        ax.plot([r.wilson_low, r.wilson_high], [yi, yi], color=c, lw=1)
        ax.plot([r.boot_low, r.boot_high], [yi, yi], color=c, lw=4, alpha=0.5, solid_capstyle="butt")
        ax.plot(r.share, yi, "o", color=c)
        if np.isfinite(r.paper):
            ax.plot(r.paper, yi, "x", color="#d62728", ms=9, mew=2)
    labels = [f"{r.subset}: {r.level if r.breakdown != 'overall' else 'overall'}" for r in table.itertuples()]
    ax.set_yticks(y, labels, fontsize=8)
    if chance is not None:
        ax.axvline(chance, color="k", lw=0.5, ls=":")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{xlabel} (dot; thick: two-way bootstrap, thin: Wilson; x: paper)")
    ax.set_title(title)
    return ax


def plot_histogram(
    values: Sequence[float],
    ax: Axes | None = None,
    title: str = "",
    xlabel: str = "",
    threshold: float | None = None,
    bins: int = 20,
) -> Axes:
    """A histogram on [0, 1] (e.g. per-participant shares), with an optional threshold line."""
    ax = _ax(ax, 5.0, 3.2)
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    ax.hist(v, bins=np.linspace(0, 1, bins + 1), color="#1f77b4", alpha=0.8)
    if threshold is not None:
        ax.axvline(threshold, color="#d62728", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    return ax


def plot_preference(pref: pd.DataFrame, ax: Axes | None = None, title: str = "Normalised preference (Fig. 6)") -> Axes:
    """Bars of the normalised preference per method (one group's rows of ``naturalness_preference``)."""
    ax = _ax(ax, 5.0, 3.4)
    order = [m for m in paper.METHODS if m in set(pref["method"])] + sorted(set(pref["method"]) - set(paper.METHODS))
    p = pref.set_index("method").loc[order]
    ax.bar(order, 100 * p["normalised_preference"], color=[_METHOD_COLOURS.get(m, "#7f7f7f") for m in order])
    for i, m in enumerate(order):
        ax.text(
            i,
            100 * p.loc[m, "normalised_preference"],
            f"{100 * p.loc[m, 'normalised_preference']:.1f}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("preference (%)")
    ax.set_title(title + "\npaper: " + " > ".join(paper.NATURALNESS_ORDER), fontsize=9)
    return ax


def plot_bt(bt: pd.DataFrame, ax: Axes | None = None, title: str = "Bradley-Terry-Davidson scores") -> Axes:
    """Log-strengths with bootstrap intervals (one group's rows of ``naturalness_bt``)."""
    ax = _ax(ax, 5.0, 3.2)
    b = bt.sort_values("log_strength")
    y = np.arange(len(b))
    err = np.vstack([b["log_strength"] - b["ci_low"], b["ci_high"] - b["log_strength"]]).astype(float)
    # a percentile interval need not contain the estimate (few participants): draw what lies on each side
    err = np.clip(np.where(np.isfinite(err), err, 0.0), 0.0, None)
    ax.errorbar(b["log_strength"], y, xerr=err, fmt="o", color="k", capsize=3)
    ax.set_yticks(y, b["method"])
    ax.axvline(0, color="k", lw=0.5, ls=":")
    ax.set_xlabel("log strength (sum zero)")
    ax.set_title(title, fontsize=10)
    return ax


def plot_pairs(pairs: pd.DataFrame, ax: Axes | None = None, title: str = "Pairwise answers") -> Axes:
    """Stacked bars per pair: a preferred / can't tell / b preferred (one group's ``naturalness_pairs`` rows)."""
    ax = _ax(ax, 6.0, max(2.0, 0.4 * len(pairs) + 1))
    y = np.arange(len(pairs))[::-1]
    n = pairs["trials"].to_numpy(float)
    a, t, b = (pairs[c].to_numpy(float) / n for c in ("a_preferred", "cant_tell", "b_preferred"))
    ax.barh(y, a, color="#1f77b4", label="left-named preferred")
    ax.barh(y, t, left=a, color="#cccccc", label="can't tell")
    ax.barh(y, b, left=a + t, color="#ff7f0e", label="right-named preferred")
    ax.set_yticks(y, [f"{r.a} vs {r.b}" for r in pairs.itertuples()], fontsize=8)
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    return ax


def plot_hit_fa(
    part: pd.DataFrame, ax: Axes | None = None, title: str = "Hits and false alarms per participant"
) -> Axes:
    """False-alarm rate (sensitivity trials) against hit rate (attacked trials); excluded participants hollow."""
    ax = _ax(ax, 4.6, 4.2)
    rng = np.random.default_rng(0)

    def jit(n: int) -> np.ndarray:
        return rng.uniform(-0.006, 0.006, n)

    for excluded, style in ((False, dict(color="#1f77b4")), (True, dict(facecolors="none", edgecolors="#d62728"))):
        g = part[part["server_excluded"] == excluded]
        ax.scatter(
            g["false_alarms"] / g["sensitivity_trials"] + jit(len(g)),
            g["hit_rate"] + jit(len(g)),
            s=14,
            label="excluded" if excluded else "analysed",
            **style,
        )
    ax.plot([0, 1], [0, 1], color="k", lw=0.5, ls=":")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false-alarm rate (original | original)")
    ax.set_ylabel("hit rate (original | attacked)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return ax


def plot_confusion(matrix: pd.DataFrame, ax: Axes | None = None, title: str = "") -> Axes:
    """A row-normalised confusion matrix (darker: higher), as the paper's Fig. 2."""
    k = len(matrix)
    ax = _ax(ax, min(9, 2.5 + 0.25 * k), min(8.5, 2.2 + 0.25 * k))
    im = ax.imshow(matrix.to_numpy(float), cmap="Greys", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=90, fontsize=6)
        ax.set_yticks(range(k), matrix.index, fontsize=6)
    ax.set_xlabel("label after the attack")
    ax.set_ylabel("true label")
    ax.figure.colorbar(im, ax=ax, shrink=0.7)
    ax.set_title(title, fontsize=9)
    return ax


def plot_joint_map(
    corr: pd.DataFrame, ax: Axes | None = None, title: str = "", names: bool = True, colorbar: bool = True
) -> Axes:
    """A 25 x 25 joint correlation map (Fig. 4): brighter is higher; joint numbers on x, numbers and names on y."""
    ax = _ax(ax, 5.6, 5.0)
    im = ax.imshow(corr.to_numpy(float), cmap="viridis", vmin=-1, vmax=1)
    ax.set_xticks(range(corr.shape[1]), [str(j) for j in range(corr.shape[1])], fontsize=5)
    if names:
        ax.set_yticks(range(corr.shape[0]), [f"{n} {j}" for j, n in enumerate(corr.index)], fontsize=5)
        ax.set_ylabel(f"{corr.index.name or ''} (joint)")
    else:
        ax.set_yticks(range(corr.shape[0]), [])
    ax.set_xlabel(f"{corr.columns.name or ''} (joint)")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.7)
    ax.set_title(title, fontsize=9)
    return ax


def joint_maps_figure(maps: dict[str, pd.DataFrame], title: str = "") -> Figure:
    """Fig. 4's three maps side by side (displacement-displacement, -speed, -acceleration)."""
    fig = Figure(figsize=(12.5, 4.2))  # fixed margins: a layout engine would measure every tick label twice
    axes = fig.subplots(
        1, len(maps), gridspec_kw={"left": 0.1, "right": 0.97, "bottom": 0.11, "top": 0.9, "wspace": 0.06}
    )
    for k, (kind, m) in enumerate(maps.items()):
        plot_joint_map(m, ax=axes[k], title=f"displacement-{kind}", names=k == 0, colorbar=False)
    fig.colorbar(axes[0].images[0], ax=list(axes), shrink=0.8, pad=0.01)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_joint_deviation(
    dev: pd.DataFrame, stat: str = "mean", ax: Axes | None = None, title: str = "", names: bool = True
) -> Axes:
    """Grouped bars per joint of the deviation's ``stat`` (mean or std, cm) for each method (Fig. 7)."""
    ax = _ax(ax, 8.0, 3.2)
    methods = [m for m in paper.METHODS if m in set(dev["method"])] + sorted(set(dev["method"]) - set(paper.METHODS))
    w = 0.8 / max(len(methods), 1)
    x = np.arange(STANDARD.num_joints)
    for k, m in enumerate(methods):
        g = dev[dev["method"] == m].set_index("joint").reindex(x)
        ax.bar(x + (k - (len(methods) - 1) / 2) * w, 100 * g[stat], w, label=m, color=_METHOD_COLOURS.get(m))
    labels = [f"{j} {n}" for j, n in enumerate(STANDARD.joint_names)] if names else [str(j) for j in x]
    ax.set_xticks(x, labels, rotation=90 if names else 0, fontsize=6)
    ax.set_xlim(-0.6, len(x) - 0.4)
    ax.set_ylabel(f"{'mean' if stat == 'mean' else 'std'} deviation (cm)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, fontsize=10)
    return ax


def joint_deviation_figure(dev: pd.DataFrame, title: str = "") -> Figure:
    """Fig. 7: mean (top) and standard deviation (bottom) of the joint-wise deviation per method."""
    fig = Figure(figsize=(8.5, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    plot_joint_deviation(dev, "mean", ax=top, names=False)
    plot_joint_deviation(dev, "std", ax=bottom)
    bottom.get_legend().remove()
    fig.suptitle(title, fontsize=10)
    return fig


def plot_success(table: pd.DataFrame, ax: Axes | None = None, title: str = "Attack success") -> Axes:
    """Success rate per run with Wilson intervals, robust success as a hollow circle; the paper's rate as x."""
    ax = _ax(ax, 6.4, max(2.0, 0.35 * len(table) + 1.2))
    y = np.arange(len(table))[::-1]
    lab = table.get("label", pd.Series([""] * len(table)))
    for yi, r in zip(y, table.itertuples()):
        ax.plot([r.wilson_low, r.wilson_high], [yi, yi], color="#1f77b4")
        ax.plot(r.rate, yi, "o", color="#1f77b4")
        if np.isfinite(getattr(r, "robust_rate", np.nan)):
            ax.plot(r.robust_rate, yi, "o", mfc="none", color="#2ca02c", ms=9)
        if np.isfinite(getattr(r, "paper", np.nan)):
            ax.plot(r.paper, yi, "x", color="#d62728", ms=9, mew=2)
    ax.set_yticks(y, list(lab), fontsize=8)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("success rate (Wilson 95 %; open circle: robust; x: paper)")
    ax.set_title(title, fontsize=10)
    return ax
