"""Plot helpers: each takes a tidy table (as the analysis functions return it) and ``ax=None``,
draws on ``ax`` (a new figure when None) and returns ``ax``.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot (no global
state, no GUI backend): ``ax.figure.savefig(path)`` writes them. They are sized as a
paper prints them: :data:`SINGLE` (3.5 in, one column) or :data:`DOUBLE` (7.0 in, the
page) wide, in the 7-9 pt fonts of :data:`STYLE` (applied while a helper draws; wrap
``savefig`` in ``matplotlib.rc_context(STYLE)`` too, as :mod:`analysis.document` does).
Every axis is labelled, and legends stand outside the axes (below or to the right), never
over the data.
"""

from __future__ import annotations

import functools
from typing import Any
from typing import Callable
from typing import Sequence
from typing import TypeVar

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import transforms
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from stimuli.skeleton import STANDARD

from . import paper
from .stats import wilson_ci

__all__ = [
    "SINGLE",
    "DOUBLE",
    "STYLE",
    "new_axes",
    "plot_shares",
    "plot_histogram",
    "plot_dot_intervals",
    "deceitfulness_figure",
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

SINGLE = 3.5
"""Width (inches) of a one-column figure."""
DOUBLE = 7.0
"""Width (inches) of a figure across the page."""

STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 9,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.0,
    "lines.markersize": 4,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "legend.frameon": False,
    "pdf.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "smart-study",
}
"""rcParams of every figure: a paper's font sizes and line weights; TrueType fonts in the PDF."""

_SUBSET_COLOURS = {"all": "#999999", "analysed": "#1f77b4", "analysed+controls": "#2ca02c"}
_METHOD_COLOURS = {"smart": "#d62728", "l2": "#1f77b4", "l2-acc": "#2ca02c", "l2-bone": "#9467bd"}
_PAPER = dict(marker="x", color="#d62728", ms=5, mew=1.2, ls="none")

F = TypeVar("F", bound=Callable[..., Any])


def _styled(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@_styled
def new_axes(width: float = SINGLE, height: float = 2.4) -> Axes:
    """A fresh figure's single axes (no pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig.add_subplot()


def _ax(ax: Axes | None, width: float = SINGLE, height: float = 2.4) -> Axes:
    return new_axes(width, height) if ax is None else ax


def _legend_below(ax: Axes, handles: Sequence[Any] | None = None, ncol: int = 2, drop: float = 26.0) -> Any:
    """A legend centred under the axes' x label (``drop`` points below the axes), outside the data."""
    below = transforms.offset_copy(ax.transAxes, fig=ax.figure, y=-drop, units="points")
    kw: dict[str, Any] = {} if handles is None else {"handles": list(handles)}
    return ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncol=ncol, borderaxespad=0, **kw
    )


@_styled
def plot_shares(
    table: pd.DataFrame, ax: Axes | None = None, title: str = "", xlabel: str = "share", chance: float | None = 0.5
) -> Axes:
    """Shares with two-way bootstrap (thick) and Wilson (thin) intervals per subset and group; the paper's as x."""
    ax = _ax(ax, SINGLE, max(1.6, 0.17 * len(table) + 1.4))
    if table.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(xlabel)
        return ax
    y = np.arange(len(table))[::-1]
    any_paper = False
    for yi, r in zip(y, table.itertuples()):
        c = _SUBSET_COLOURS.get(r.subset, "k")
        ax.plot([r.wilson_low, r.wilson_high], [yi, yi], color=c, lw=0.8)
        ax.plot([r.boot_low, r.boot_high], [yi, yi], color=c, lw=3.5, alpha=0.45, solid_capstyle="butt")
        ax.plot(r.share, yi, "o", color=c, ms=3.5)
        if np.isfinite(r.paper):
            ax.plot(r.paper, yi, **_PAPER)
            any_paper = True
    labels = [f"{r.subset}: {r.level if r.breakdown != 'overall' else 'overall'}" for r in table.itertuples()]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.6, len(table) - 0.4)
    if chance is not None:
        ax.axvline(chance, color="k", lw=0.5, ls=":")
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("subset: group")
    ax.set_title(title)
    grey = "#555555"
    handles = [
        Line2D([], [], marker="o", ls="none", color=grey, ms=3.5, label="share"),
        Line2D([], [], color=grey, lw=3.5, alpha=0.45, solid_capstyle="butt", label="two-way bootstrap CI"),
        Line2D([], [], color=grey, lw=0.8, label="Wilson CI"),
    ]
    if any_paper:
        handles.append(Line2D([], [], label="paper", **_PAPER))
    _legend_below(ax, handles, ncol=2)
    return ax


@_styled
def plot_histogram(
    values: Sequence[float],
    ax: Axes | None = None,
    title: str = "",
    xlabel: str = "",
    threshold: float | None = None,
    bins: int = 20,
) -> Axes:
    """A histogram on [0, 1] (e.g. per-participant shares), with an optional threshold line."""
    ax = _ax(ax, SINGLE, 2.2)
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    ax.hist(v, bins=np.linspace(0, 1, bins + 1), color="#1f77b4", alpha=0.8)
    if threshold is not None:
        ax.axvline(threshold, color="#d62728", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel or "value")
    ax.set_ylabel("count")
    ax.set_title(title)
    return ax


@_styled
def plot_dot_intervals(
    table: pd.DataFrame,
    ax: Axes | None = None,
    label: str = "label",
    title: str = "",
    xlabel: str = "share",
    ylabel: str = "",
    reference: float | None = None,
    chance: float | None = 0.5,
) -> Axes:
    """One row per ``table[label]``: ``share`` as a dot, ``[low, high]`` as a line; highest share on top.

    ``reference`` (e.g. the overall share) is drawn as a dashed line, ``chance`` dotted.
    """
    t = table.sort_values("share", kind="stable").reset_index(drop=True)
    ax = _ax(ax, SINGLE, max(1.4, 0.15 * len(t) + 1.0))
    y = np.arange(len(t))
    ax.hlines(y, t["low"].to_numpy(float), t["high"].to_numpy(float), color="#1f77b4", lw=1)
    ax.plot(t["share"].to_numpy(float), y, "o", color="#1f77b4", ms=3.5)
    ax.set_yticks(y, [str(v) for v in t[label]])
    ax.set_ylim(-0.6, len(t) - 0.4)
    if reference is not None and np.isfinite(reference):
        ax.axvline(reference, color="k", lw=0.6, ls="--")
    if chance is not None:
        ax.axvline(chance, color="k", lw=0.5, ls=":")
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or label)
    ax.set_title(title)
    return ax


@_styled
def deceitfulness_figure(
    classes: pd.DataFrame,
    participant_shares: Sequence[float],
    overall: float | None = None,
    title: str = "",
    level: float = 0.95,
) -> Figure:
    """Deceitfulness, densely: share choosing the true label per class (dot, Wilson interval; dashed: the
    overall share) above a strip of the per-participant shares (one dot each), on one x axis.

    ``classes``: columns ``label``, ``trials``, ``chose_true`` (one row per true class).
    """
    c = classes.copy()
    c["share"] = c["chose_true"] / c["trials"]
    c["low"], c["high"] = wilson_ci(c["chose_true"], c["trials"], level)
    fig = Figure(figsize=(SINGLE, 0.15 * len(c) + 2.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[max(len(c), 2), 1.6])
    plot_dot_intervals(
        c,
        ax=top,
        label="label",
        xlabel="",
        ylabel="true class",
        reference=overall,
        title=title,
    )
    top.tick_params(labelbottom=True)
    top.set_xlabel(f"share choosing the true label (Wilson {100 * level:g} %)")
    v = np.asarray(participant_shares, float)
    v = v[np.isfinite(v)]
    rng = np.random.default_rng(0)
    bottom.plot(v, rng.uniform(-0.3, 0.3, len(v)), "o", ms=2.5, alpha=0.6, mew=0, color="#1f77b4")
    if overall is not None and np.isfinite(overall):
        bottom.axvline(overall, color="k", lw=0.6, ls="--")
    bottom.axvline(0.5, color="k", lw=0.5, ls=":")
    bottom.set_ylim(-0.6, 0.6)
    bottom.set_yticks([])
    bottom.set_ylabel("partici-\npants")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("share per participant (one dot each)")
    return fig


@_styled
def plot_preference(
    pref: pd.DataFrame,
    ax: Axes | None = None,
    title: str = "Normalised preference (Fig. 6)",
    level: float = 0.95,
    paper_order: bool = True,
) -> Axes:
    """Bars of the normalised preference per method (one group's rows of ``naturalness_preference``), with
    intervals.

    The interval is ``ci_low`` / ``ci_high`` (normalised scale) where the table has them; else the Wilson
    interval of the method's win rate (chosen / shown) divided by the sum of the win rates (the normaliser
    held fixed: an approximation that ignores its own uncertainty). ``paper_order``: name Fig. 6's order.
    """
    ax = _ax(ax, SINGLE, 2.4)
    order = [m for m in paper.METHODS if m in set(pref["method"])] + sorted(set(pref["method"]) - set(paper.METHODS))
    p = pref.set_index("method").loc[order]
    val = 100 * p["normalised_preference"].to_numpy(float)
    if {"ci_low", "ci_high"} <= set(p.columns):
        lo, hi = 100 * p["ci_low"].to_numpy(float), 100 * p["ci_high"].to_numpy(float)
        what = "interval"
    else:
        total = float(np.nansum(p["chosen"] / p["shown"]))
        wl, wh = wilson_ci(p["chosen"].to_numpy(float), p["shown"].to_numpy(float), level)
        lo, hi = (100 * wl / total, 100 * wh / total) if total > 0 else (np.full(len(p), np.nan),) * 2
        what = f"Wilson {100 * level:g} % of the win rate, scaled"
    x = np.arange(len(order))
    ax.bar(x, val, width=0.6, color=[_METHOD_COLOURS.get(m, "#7f7f7f") for m in order])
    err = np.clip(np.nan_to_num(np.vstack([val - lo, hi - val])), 0, None)
    ax.errorbar(x, val, yerr=err, fmt="none", ecolor="k", elinewidth=0.8, capsize=2)
    top = np.where(np.isfinite(hi), hi, val)
    for i in range(len(order)):
        ax.text(x[i], top[i] + 0.8, f"{val[i]:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, order)
    ax.set_ylim(0, max(float(np.nanmax(top)) * 1.18 if np.isfinite(top).any() else 1.0, 1.0))
    ax.set_xlabel(f"method (error bars: {what})")
    ax.set_ylabel("normalised preference (%)")
    ax.set_title(title + ("\npaper: " + " > ".join(paper.NATURALNESS_ORDER) if paper_order else ""))
    return ax


@_styled
def plot_bt(bt: pd.DataFrame, ax: Axes | None = None, title: str = "Bradley-Terry-Davidson scores") -> Axes:
    """Log-strengths with bootstrap intervals (one group's rows of ``naturalness_bt``)."""
    ax = _ax(ax, SINGLE, 2.0)
    b = bt.sort_values("log_strength")
    y = np.arange(len(b))
    err = np.vstack([b["log_strength"] - b["ci_low"], b["ci_high"] - b["log_strength"]]).astype(float)
    # a percentile interval need not contain the estimate (few participants): draw what lies on each side
    err = np.clip(np.where(np.isfinite(err), err, 0.0), 0.0, None)
    ax.errorbar(b["log_strength"], y, xerr=err, fmt="o", color="k", capsize=2, ms=3.5, elinewidth=0.8)
    ax.set_yticks(y, b["method"])
    ax.set_ylim(-0.6, len(b) - 0.4)
    ax.axvline(0, color="k", lw=0.5, ls=":")
    ax.set_xlabel("log strength (sum zero; bootstrap interval)")
    ax.set_ylabel("method")
    ax.set_title(title)
    return ax


@_styled
def plot_pairs(pairs: pd.DataFrame, ax: Axes | None = None, title: str = "Pairwise answers") -> Axes:
    """Stacked bars per pair: a preferred / can't tell / b preferred (one group's ``naturalness_pairs`` rows)."""
    ax = _ax(ax, SINGLE, max(1.6, 0.22 * len(pairs) + 1.3))
    y = np.arange(len(pairs))[::-1]
    n = pairs["trials"].to_numpy(float)
    a, t, b = (pairs[c].to_numpy(float) / n for c in ("a_preferred", "cant_tell", "b_preferred"))
    ax.barh(y, a, color="#1f77b4", label="first preferred", height=0.7)
    ax.barh(y, t, left=a, color="#cccccc", label="can't tell", height=0.7)
    ax.barh(y, b, left=a + t, color="#ff7f0e", label="second preferred", height=0.7)
    ax.set_yticks(y, [f"{r.a} vs {r.b}" for r in pairs.itertuples()])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of answers")
    ax.set_ylabel("pair of methods")
    _legend_below(ax, ncol=2)
    ax.set_title(title)
    return ax


@_styled
def plot_hit_fa(
    part: pd.DataFrame, ax: Axes | None = None, title: str = "Hits and false alarms per participant"
) -> Axes:
    """False-alarm rate (sensitivity trials) against hit rate (attacked trials); excluded participants hollow."""
    ax = _ax(ax, SINGLE, 3.3)
    rng = np.random.default_rng(0)

    def jit(n: int) -> np.ndarray:
        return rng.uniform(-0.006, 0.006, n)

    for excluded, style in ((False, dict(color="#1f77b4")), (True, dict(facecolors="none", edgecolors="#d62728"))):
        g = part[part["server_excluded"] == excluded]
        ax.scatter(
            g["false_alarms"] / g["sensitivity_trials"] + jit(len(g)),
            g["hit_rate"] + jit(len(g)),
            s=9,
            lw=0.6,
            label="excluded" if excluded else "analysed",
            **style,
        )
    ax.plot([0, 1], [0, 1], color="k", lw=0.5, ls=":")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("false-alarm rate (original | original)")
    ax.set_ylabel("hit rate (original | attacked)")
    _legend_below(ax, ncol=2)
    ax.set_title(title)
    return ax


@_styled
def plot_confusion(matrix: pd.DataFrame, ax: Axes | None = None, title: str = "") -> Axes:
    """A row-normalised confusion matrix (darker: higher), as the paper's Fig. 2."""
    k = len(matrix)
    ax = _ax(ax, min(DOUBLE, 2.0 + 0.12 * k), min(0.9 * DOUBLE, 1.8 + 0.12 * k))
    im = ax.imshow(matrix.to_numpy(float), cmap="Greys", vmin=0, vmax=1)
    if k <= 60:
        ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=90, fontsize=6)
        ax.set_yticks(range(k), matrix.index, fontsize=6)
    ax.set_xlabel("label after the attack")
    ax.set_ylabel("true label")
    cb = ax.figure.colorbar(im, ax=ax, shrink=0.7)
    cb.set_label("share of the true label's clips")
    ax.set_title(title)
    return ax


@_styled
def plot_joint_map(
    corr: pd.DataFrame, ax: Axes | None = None, title: str = "", names: bool = True, colorbar: bool = True
) -> Axes:
    """A 25 x 25 joint correlation map (Fig. 4): brighter is higher; joint numbers on x, numbers and names on y."""
    ax = _ax(ax, SINGLE, 3.0)
    im = ax.imshow(corr.to_numpy(float), cmap="viridis", vmin=-1, vmax=1)
    ax.set_xticks(range(corr.shape[1]), [str(j) for j in range(corr.shape[1])], fontsize=4.5, rotation=90)
    if names:
        ax.set_yticks(range(corr.shape[0]), [f"{n} {j}" for j, n in enumerate(corr.index)], fontsize=4.5)
        ax.set_ylabel(f"{corr.index.name or 'displaced'} (joint)")
    else:
        ax.set_yticks(range(corr.shape[0]), [])
    ax.tick_params(length=1.5, pad=1)
    ax.set_xlabel(f"{corr.columns.name or ''} (joint)")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.7, label="correlation")
    ax.set_title(title)
    return ax


@_styled
def joint_maps_figure(maps: dict[str, pd.DataFrame], title: str = "") -> Figure:
    """Fig. 4's three maps side by side (displacement-displacement, -speed, -acceleration), across the page."""
    fig = Figure(figsize=(DOUBLE, 2.9))  # fixed margins: a layout engine would measure every tick label twice
    axes = fig.subplots(
        1, len(maps), gridspec_kw={"left": 0.125, "right": 0.9, "bottom": 0.13, "top": 0.88, "wspace": 0.08}
    )
    axes = np.atleast_1d(axes)
    for k, (kind, m) in enumerate(maps.items()):
        plot_joint_map(m, ax=axes[k], title=f"displacement-{kind}", names=k == 0, colorbar=False)
    cax = fig.add_axes((0.915, 0.2, 0.012, 0.6))
    fig.colorbar(axes[0].images[0], cax=cax, label="correlation")
    fig.suptitle(title)
    return fig


@_styled
def plot_joint_deviation(
    dev: pd.DataFrame, stat: str = "mean", ax: Axes | None = None, title: str = "", names: bool = True
) -> Axes:
    """Grouped bars per joint of the deviation's ``stat`` (mean or std, cm) for each method (Fig. 7)."""
    ax = _ax(ax, DOUBLE, 2.2)
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
    if names:
        ax.set_xlabel("joint")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="method")
    ax.set_title(title)
    return ax


@_styled
def joint_deviation_figure(dev: pd.DataFrame, title: str = "") -> Figure:
    """Fig. 7: mean (top) and standard deviation (bottom) of the joint-wise deviation per method."""
    fig = Figure(figsize=(DOUBLE, 3.8), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    plot_joint_deviation(dev, "mean", ax=top, names=False)
    plot_joint_deviation(dev, "std", ax=bottom)
    bottom.get_legend().remove()
    fig.suptitle(title)
    return fig


@_styled
def plot_success(table: pd.DataFrame, ax: Axes | None = None, title: str = "Attack success") -> Axes:
    """Success rate per run with Wilson intervals, robust success as a hollow circle; the paper's rate as x."""
    ax = _ax(ax, SINGLE, max(1.6, 0.2 * len(table) + 1.4))
    y = np.arange(len(table))[::-1]
    lab = table.get("label", pd.Series([""] * len(table)))
    any_robust = any_paper = False
    for yi, r in zip(y, table.itertuples()):
        ax.plot([r.wilson_low, r.wilson_high], [yi, yi], color="#1f77b4", lw=1)
        ax.plot(r.rate, yi, "o", color="#1f77b4", ms=3.5)
        if np.isfinite(getattr(r, "robust_rate", np.nan)):
            ax.plot(r.robust_rate, yi, "o", mfc="none", color="#2ca02c", ms=6, mew=0.8)
            any_robust = True
        if np.isfinite(getattr(r, "paper", np.nan)):
            ax.plot(r.paper, yi, **_PAPER)
            any_paper = True
    ax.set_yticks(y, list(lab))
    ax.set_ylim(-0.6, len(table) - 0.4)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("success rate")
    ax.set_ylabel("attack run")
    handles = [
        Line2D([], [], marker="o", color="#1f77b4", ms=3.5, label="success (Wilson 95 %)"),
    ]
    if any_robust:
        handles.append(
            Line2D([], [], marker="o", mfc="none", color="#2ca02c", ms=6, mew=0.8, ls="none", label="robust")
        )
    if any_paper:
        handles.append(Line2D([], [], label="paper", **_PAPER))
    _legend_below(ax, handles, ncol=2)
    ax.set_title(title)
    return ax
