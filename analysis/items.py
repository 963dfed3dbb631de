"""Per stimulus: each design's headline figure per item (motion) and per class, and the items that drive it.

Every table counts the analysable trials (:func:`analysis.perceptual.analysable`) of the analysed participants
(completed, not excluded by the server), as the headline figures of the report do, so the rows of a table add up
to the headline. The headline figure of each design (:func:`headline_outcomes`):

* Deceitfulness: the share of trials where the ground-truth label was chosen;
* Naturalness: the share of decisive answers (left or right, not "can't tell") to SMART-vs-ablation trials that
  prefer SMART;
* Indistinguishability: the share of attacked (perceivability) trials judged unchanged; beside it, hits (attacked
  judged changed), false alarms (the original judged changed) and positive-control hits per item.

Which items drive a result: the *influence* of an item (or a class) is the change in the headline figure when its
trials are left out (``change_if_left_out``, positive when leaving it out raises the figure); the tables are sorted
by its absolute value and the ``top_items`` largest are marked in ``drives``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .document import Section
from .document import Table
from .document import pct
from .perceptual import Options
from .perceptual import StudyResult
from .perceptual import _analysed
from .perceptual import analysable
from .stats import wilson_ci

__all__ = ["DESIGNS", "HEADLINES", "headline_outcomes", "design_trials", "influence", "per_stimulus", "items_sections"]

DESIGNS = ("deceitfulness", "naturalness", "indistinguishability")
SMART = "smart"
HEADLINES = {
    "deceitfulness": ("share_true_label", "share of trials choosing the ground-truth label"),
    "naturalness": ("share_smart_preferred", "share of decisive SMART-vs-ablation answers preferring SMART"),
    "indistinguishability": ("share_unchanged", "share of attacked (perceivability) trials judged unchanged"),
}
"""Design -> (figure name, what it is): the headline figure the per-stimulus tables break down."""
FIGURES = {name: what for name, what in HEADLINES.values()}
FIGURES["false_alarm_rate"] = "share of sensitivity trials (original | original) judged changed"
"""Figure name -> what it is, for every figure :func:`headline_outcomes` gives."""


_HEAD = {
    "deceitfulness": ("share_true_label", "chose_true", "trials"),
    "naturalness": ("share_smart_preferred", "smart_preferred", "decisive"),
    "indistinguishability": ("share_unchanged", "judged_unchanged", "perceivability_trials"),
}
"""Design -> (headline column, its successes column, its trials column) of the per-stimulus tables."""


def _bool(s: pd.Series) -> np.ndarray:
    return s.astype("boolean").fillna(False).to_numpy(dtype=bool)


def _text(s: pd.Series) -> np.ndarray:
    """The values as strings ('' where missing); through the category codes when there are (fast)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        names = np.append(np.asarray(s.cat.categories.astype(str), dtype=object), "")
        return names[s.cat.codes.to_numpy()]  # code -1 (missing) picks the last: ''
    return s.astype(object).where(s.notna(), "").astype(str).to_numpy()


def headline_outcomes(d: pd.DataFrame, study_type: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per figure of the design: (the trials it counts, 1 where the trial is a success), both boolean arrays.

    ``d``: analysable trials of ``study_type``. The first figure is the design's headline (:data:`HEADLINES`);
    Indistinguishability also gives ``false_alarm_rate``.
    """
    n = len(d)
    if study_type == "deceitfulness":
        return {"share_true_label": (np.ones(n, bool), _bool(d["chose_true_label"]))}
    if study_type == "naturalness":
        left, right, ans = _text(d["left_variant"]), _text(d["right_variant"]), _text(d["answer"])
        smart_shown = (left == SMART) ^ (right == SMART)
        decisive = (ans == "left") | (ans == "right")
        chose = ((ans == "left") & (left == SMART)) | ((ans == "right") & (right == SMART))
        return {"share_smart_preferred": (smart_shown & decisive, chose)}
    if study_type == "indistinguishability":
        kind, changed = _text(d["trial_kind"]), _bool(d["said_changed"])
        return {
            "share_unchanged": (kind == "perceivability", ~changed),
            "false_alarm_rate": (kind == "sensitivity", changed),
        }
    raise ValueError(f"unknown study type {study_type!r}; expected one of {', '.join(DESIGNS)}")


def design_trials(df: pd.DataFrame, study_type: str) -> pd.DataFrame:
    """The trials the headline counts: analysable trials of ``study_type`` of the analysed participants."""
    d = df[(df["study_type"] == study_type).to_numpy() & analysable(df).to_numpy()]
    return d[_analysed(d).to_numpy()]


def influence(k: np.ndarray, n: np.ndarray, top: int) -> pd.DataFrame:
    """Leave-one-out influence of each group (``k`` successes of ``n``) on the pooled share ``sum(k) / sum(n)``.

    Columns: ``share_if_left_out``, ``change_if_left_out`` (that minus the pooled share; NaN when nothing would be
    left), ``influence_rank`` (1 = largest absolute change; ties share the rank) and ``drives`` (rank at most
    ``top`` and a non-zero change).
    """
    k, n = np.asarray(k, float), np.asarray(n, float)
    K, N = k.sum(), n.sum()
    rest = N - n
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = np.where(rest > 0, (K - k) / rest, np.nan)
    change = loo - (K / N if N else np.nan)
    change = np.where(np.abs(change) < 1e-12, 0.0, change)  # rounding: an item at the pooled share changes nothing
    size = pd.Series(np.round(np.abs(change), 12))  # equal changes (up to rounding) share a rank
    rank = size.rank(method="min", ascending=False).to_numpy()
    drives = np.isfinite(change) & (change != 0) & (np.nan_to_num(rank, nan=np.inf) <= top)
    return pd.DataFrame(
        {
            "share_if_left_out": loo,
            "change_if_left_out": change,
            "influence_rank": pd.array([int(r) if np.isfinite(r) else None for r in rank], dtype="Int64"),
            "drives": drives,
        }
    )


def group_ids(d: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Each row's group of ``keys`` (0, 1, ... in the order of the key values) and the groups' key values.

    Works on category codes (a million rows cost one ``np.unique`` of integers); missing values read ''.
    """
    key = np.zeros(len(d), np.int64)
    names = []
    for k in keys:
        s = d[k] if isinstance(d[k].dtype, pd.CategoricalDtype) else d[k].astype("category")
        cat = np.append("", np.asarray(s.cat.categories.astype(str), dtype=object))
        names.append(cat)
        key = key * len(cat) + (s.cat.codes.to_numpy().astype(np.int64) + 1)
    uniq, inv = np.unique(key, return_inverse=True)
    values = {}
    rest = uniq
    for k, cat in zip(reversed(keys), reversed(names)):
        values[k] = cat[rest % len(cat)]
        rest = rest // len(cat)
    table = pd.DataFrame({k: values[k] for k in keys})
    perm = table.sort_values(keys, kind="stable").index.to_numpy()
    rank = np.empty(len(perm), np.int64)
    rank[perm] = np.arange(len(perm))
    return rank[inv.reshape(-1)], table.iloc[perm].reset_index(drop=True)


def distinct_per_group(gid: np.ndarray, s: pd.Series, groups: int) -> np.ndarray:
    """How many distinct non-missing values of ``s`` each group holds (integer codes: fast)."""
    s = s if isinstance(s.dtype, pd.CategoricalDtype) else s.astype("category")
    code = s.cat.codes.to_numpy().astype(np.int64)
    ok = code >= 0
    pairs = np.unique(gid[ok] * (len(s.cat.categories) + 1) + code[ok])
    return np.bincount(pairs // (len(s.cat.categories) + 1), minlength=groups)


def distinct_values(gid: np.ndarray, s: pd.Series, groups: int) -> list[str]:
    """The distinct non-missing values of ``s`` in each group, sorted and joined by ', '."""
    s = s if isinstance(s.dtype, pd.CategoricalDtype) else s.astype("category")
    names = s.cat.categories.astype(str)
    code = s.cat.codes.to_numpy().astype(np.int64)
    ok = code >= 0
    per: list[list[str]] = [[] for _ in range(groups)]
    for pair in np.unique(gid[ok] * (len(names) + 1) + code[ok]):  # few: (group, value) pairs
        per[pair // (len(names) + 1)].append(names[pair % (len(names) + 1)])
    return [", ".join(sorted(v)) for v in per]


def _table(
    d: pd.DataFrame,
    keys: list[str],
    counts: dict[str, np.ndarray],
    head: tuple[str, str, str],
    rates: dict[str, tuple[str, str]],
    opts: Options,
    lists: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Sums of ``counts`` per group of ``keys``, rates, the headline's Wilson interval and influence, sorted.

    ``head``: (headline column, its successes column, its trials column); ``rates``: more columns, name ->
    (numerator, denominator); ``lists``: name -> a column whose distinct values each group lists.
    """
    share, k_col, n_col = head
    gid, tab = group_ids(d, keys)
    G = len(tab)
    tab["participants"] = distinct_per_group(gid, d["participant"], G)
    if "item_id" not in keys:
        tab["items"] = distinct_per_group(gid, d["item_key"], G)
    for c, v in counts.items():
        tab[c] = np.bincount(gid, weights=np.asarray(v, float), minlength=G).astype(np.int64)
    for name, col in (lists or {}).items():
        tab[name] = distinct_values(gid, d[col], G)
    k, n = tab[k_col].to_numpy(float), tab[n_col].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tab[share] = np.where(n > 0, k / n, np.nan)
    lo, hi = wilson_ci(k, n, opts.level)
    tab["wilson_low"], tab["wilson_high"] = lo, hi
    for name, (kc, nc) in rates.items():
        den = tab[nc].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            tab[name] = np.where(den > 0, tab[kc].to_numpy(float) / den, np.nan)
    tab = pd.concat([tab, influence(k, n, opts.top_items)], axis=1)
    order = np.lexsort((np.arange(len(tab)), -np.nan_to_num(np.abs(tab["change_if_left_out"].to_numpy()), nan=-1.0)))
    return tab.iloc[order].reset_index(drop=True)


def _deceit(d: pd.DataFrame, keys: list[str], opts: Options) -> pd.DataFrame:
    _, y = headline_outcomes(d, "deceitfulness")["share_true_label"]
    counts = {"trials": np.ones(len(d), np.int64), "chose_true": y}
    lists = {"attacked_labels": "attacked_label"} if "item_id" in keys else None
    return _table(d, keys, counts, _HEAD["deceitfulness"], {}, opts, lists)


def _nat(d: pd.DataFrame, keys: list[str], opts: Options) -> pd.DataFrame:
    left, right, ans = _text(d["left_variant"]), _text(d["right_variant"]), _text(d["answer"])
    smart = (left == SMART) ^ (right == SMART)
    decisive, chose = headline_outcomes(d, "naturalness")["share_smart_preferred"]
    counts = {
        "trials": np.ones(len(d), np.int64),
        "smart_trials": smart,
        "smart_preferred": decisive & chose,
        "ablation_preferred": decisive & ~chose,
        "cant_tell": smart & (ans == "cant_tell"),
        "decisive": decisive,
    }
    return _table(d, keys, counts, _HEAD["naturalness"], {}, opts)


def _ind(d: pd.DataFrame, keys: list[str], opts: Options) -> pd.DataFrame:
    o = headline_outcomes(d, "indistinguishability")
    perc, unchanged = o["share_unchanged"]
    sens, changed = o["false_alarm_rate"]
    ctrl = _text(d["trial_kind"]) == "control"
    counts = {
        "perceivability_trials": perc,
        "judged_unchanged": perc & unchanged,
        "hits": perc & ~unchanged,
        "sensitivity_trials": sens,
        "false_alarms": sens & changed,
        "control_trials": ctrl,
        "control_hits": ctrl & _bool(d["said_changed"]),
    }
    rates = {
        "false_alarm_rate": ("false_alarms", "sensitivity_trials"),
        "control_hit_rate": ("control_hits", "control_trials"),
    }
    return _table(d, keys, counts, _HEAD["indistinguishability"], rates, opts)


_BUILD = {"deceitfulness": _deceit, "naturalness": _nat, "indistinguishability": _ind}
ITEM_KEYS = ["batch_id", "item_id", "true_label"]
CLASS_KEYS = ["true_label"]


def per_stimulus(df: pd.DataFrame, study_type: str, opts: Options = Options()) -> StudyResult:
    """Tables ``<design>_items`` (one row per item) and ``<design>_classes`` (one row per true class).

    The summary holds the pooled headline and the items marked as driving it.
    """
    if study_type not in _BUILD:
        raise ValueError(f"unknown study type {study_type!r}; expected one of {', '.join(DESIGNS)}")
    d = design_trials(df, study_type)
    res = StudyResult()
    if d.empty:
        res.notes.append(f"no analysed {study_type} trials")
        return res
    items = _BUILD[study_type](d, ITEM_KEYS, opts)
    classes = _BUILD[study_type](d, CLASS_KEYS, opts).rename(columns={"true_label": "class"})
    res.tables[f"{study_type}_items"] = items
    res.tables[f"{study_type}_classes"] = classes
    name, what = HEADLINES[study_type]
    _, k_col, n_col = _HEAD[study_type]
    K, N = int(items[k_col].sum()), int(items[n_col].sum())
    res.summary = {
        "figure": name,
        "share": K / N if N else math.nan,
        "n": N,
        "items": int(len(items)),
        "classes": int(len(classes)),
        "drivers": [
            {"item": f"{r.batch_id}/{r.item_id}", "class": r.true_label, "change_if_left_out": r.change_if_left_out}
            for r in items[items["drives"]].itertuples()
        ],
        "class_drivers": [
            {"class": r[1], "change_if_left_out": r.change_if_left_out} for r in classes[classes["drives"]].itertuples()
        ],
    }
    if not N:
        res.notes.append(f"no trial counts toward the {what}")
    return res


def _drivers_text(t: pd.DataFrame, label: Any) -> str:
    top = t[t["drives"]]
    if not len(top):
        return "no single one changes the figure when left out"
    return "; ".join(
        f"{label(r)}: {'+' if r.change_if_left_out > 0 else '-'}{pct(abs(r.change_if_left_out), 2)} points if left out"
        for r in top.itertuples()
    )


def items_sections(res: StudyResult, study_type: str, opts: Options) -> list[Section]:
    """A level-3 section '<Design>: per stimulus' with the item and class tables; none without analysed trials."""
    if not res.tables:
        return []
    s = Section(f"{study_type.capitalize()}: per stimulus", level=3)
    sm = res.summary
    what = HEADLINES[study_type][1]
    items, classes = res.tables[f"{study_type}_items"], res.tables[f"{study_type}_classes"]
    s.text.append(
        f"The {what}, per item and per class (analysed participants): {pct(sm['share'])} % of {sm['n']} trials over "
        f"{sm['items']} items and {sm['classes']} classes. Influence: the change in the figure when an item's (a "
        f"class's) trials are left out; tables sorted by its size, the {opts.top_items} largest marked in 'drives'. "
        f"Wilson {100 * opts.level:g} % intervals treat trials as independent."
    )
    s.text.append(
        "Items that drive it: "
        + _drivers_text(items, lambda r: f"{r.item_id} ({r.true_label})")
        + ". Classes: "
        + _drivers_text(classes, lambda r: str(r[1]))
        + "."
    )
    s.text += res.notes
    s.tables.append(Table(f"{study_type}_items", f"{study_type.capitalize()} per item, by influence", items))
    s.tables.append(Table(f"{study_type}_classes", f"{study_type.capitalize()} per class, by influence", classes))
    return [s]
