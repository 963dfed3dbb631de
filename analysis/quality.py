"""Data quality per participant: flags, and how far each flag's participants move the headline figures.

One row per study and participant, from their analysable trials (not practice, valid, answered). The flags and
their defaults (:class:`analysis.perceptual.Options`, ``analysis report --fast-ms`` etc.):

* ``too_fast``: at least ``fast_share`` (25 %) of the answers came within ``fast_ms`` (250 ms) of answering
  becoming possible. 250 ms is about a simple visual reaction time: an answer sooner than that is not a response to
  the question. ``fast_share = 0.5`` makes the rule "median answer time under ``fast_ms``". The study server's
  dashboard flags with the same values (``study_server.dashboard.FAST_MS`` / ``FAST_SHARE``), so the report names
  the participants the researcher saw flagged there.
* ``straight_lining``: one answer on at least ``same_share`` (90 %) of a participant's trials (at least
  :data:`MIN_TRIALS`): Deceitfulness the same label *position* (``label_order``, e.g. ``attacked,true``, is the
  order of the answer buttons: option 1 shows the first), Naturalness the same of left / right / can't tell.
  Indistinguishability only when every answer is the same: "unchanged" to most trials is what an invisible attack
  gives.
* ``side_bias``: exact two-sided binomial test of left vs right (Naturalness, decisive answers) or first vs second
  label position (Deceitfulness) against 1/2, Holm-adjusted over the participants of the study; flagged below
  ``side_alpha`` (0.05). (Indistinguishability has no sides: the original is always on the left.)
* ``tab_switches``: the page was hidden (another tab or window) during at least ``tab_trials`` (1) trials. Counted
  per trial, from the playback log's ``hidden`` events; the number of events is shown beside it, but the trial
  page may log one switch more than once, so trials are the measure.
* ``stalls``: the video waited for data (``waiting`` / ``stalled`` events) in at least ``stall_share`` (10 %) of
  the trials: those clips were not played as specified (smoothly, side by side in sync).

The playback flags need the export's ``playback_events`` read (:data:`analysis.readers.PLAYBACK_COUNTS`);
without it they are not computed. Flags are not exclusions (the server's screening decides those): the
sensitivity table gives, for each flag (and for any flag), each design's headline figures over the analysed
participants and again without the flagged ones.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .document import Fig
from .document import Section
from .document import Table
from .document import pct
from .items import DESIGNS
from .items import FIGURES
from .items import _bool
from .items import _text
from .items import design_trials
from .items import group_ids
from .items import headline_outcomes
from .perceptual import Options
from .perceptual import StudyResult
from .perceptual import analysable
from .readers import PLAYBACK_COUNTS
from .stats import holm
from .stats import wilson_ci

__all__ = ["FLAGS", "MIN_TRIALS", "binom_half_p", "participant_flags", "sensitivity", "data_quality"]

FLAGS = ("too_fast", "straight_lining", "side_bias", "tab_switches", "stalls")
FLAG_NAMES = {
    "too_fast": "too fast",
    "straight_lining": "straight-lining",
    "side_bias": "side bias",
    "tab_switches": "tab switches",
    "stalls": "stalls",
    "any": "any flag",
}
MIN_TRIALS = 6
"""Straight-lining is judged on at least this many trials (as the server's dashboard does)."""
ANSWERS = ("first label", "second label", "left", "right", "can't tell", "changed", "unchanged")
"""The answer categories straight-lining counts: label positions, sides, Indistinguishability's two answers."""
_KEYS = ["study", "study_type", "participant"]


def binom_half_p(k: Any, n: Any) -> np.ndarray:
    """Exact two-sided binomial test of ``k`` in ``n`` against 1/2, vectorised (NaN where ``n == 0``).

    The distribution is symmetric, so the two-sided p-value is twice the smaller tail, at most 1.
    """
    from scipy.stats import binom

    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(invalid="ignore"):
        p = 2 * np.minimum(binom.cdf(k, n, 0.5), binom.sf(k - 1, n, 0.5))
    return np.where(n > 0, np.minimum(p, 1.0), np.nan)


def _answer_codes(d: pd.DataFrame) -> np.ndarray:
    """Per trial, the index of its answer in :data:`ANSWERS` (-1: none of them)."""
    st, ans = _text(d["study_type"]), _text(d["answer"])
    # label_order: the labels top to bottom / option 1 first; the server shows 'true,attacked' when it is empty
    if "label_order" in d:
        order = (
            d["label_order"]
            if isinstance(d["label_order"].dtype, pd.CategoricalDtype)
            else d["label_order"].astype("category")
        )
        attacked_first = np.append(order.cat.categories.astype(str).str.startswith("attacked"), False)
        true_first = ~attacked_first[order.cat.codes.to_numpy()]  # (code -1, missing: the last, False)
    else:
        true_first = np.ones(len(d), bool)
    code = np.full(len(d), -1, np.int64)
    dec = (st == "deceitfulness") & np.isin(ans, ("true_label", "attacked_label"))
    code[dec] = np.where((ans[dec] == "true_label") == true_first[dec], 0, 1)
    nat = st == "naturalness"
    for k, a in ((2, "left"), (3, "right"), (4, "cant_tell")):
        code[nat & (ans == a)] = k
    ind = st == "indistinguishability"
    for k, a in ((5, "changed"), (6, "unchanged")):
        code[ind & (ans == a)] = k
    return code


def participant_flags(df: pd.DataFrame, opts: Options = Options()) -> pd.DataFrame:
    """One row per study and participant with answers: the measures behind each flag, the flags, their list.

    Sorted with the most flags first.
    """
    d = df[analysable(df).to_numpy()]
    if d.empty:
        return pd.DataFrame(columns=[*_KEYS, *FLAGS, "flags"])
    gid, part = group_ids(d, _KEYS)
    P = len(part)
    part["trials"] = np.bincount(gid, minlength=P)

    def total(v: np.ndarray) -> np.ndarray:
        return np.bincount(gid, weights=np.asarray(v, float), minlength=P)

    part["completed"] = total(_bool(d["participant_completed"])) > 0
    part["excluded"] = total(_bool(d["excluded"])) > 0
    part["analysed"] = part["completed"] & ~part["excluded"]
    trials = part["trials"].to_numpy(float)
    # too fast
    rt = d["response_time_ms"].to_numpy(dtype=float)
    timed = np.isfinite(rt)
    part["timed_answers"] = total(timed).astype(np.int64)
    part["median_response_ms"] = pd.Series(rt).groupby(gid).median().reindex(range(P)).to_numpy()
    part["fast_answers"] = total(timed & (rt < opts.fast_ms)).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        part["fast_share"] = part["fast_answers"] / part["timed_answers"].where(part["timed_answers"] > 0)
    part["too_fast"] = (part["fast_share"] >= opts.fast_share).to_numpy(dtype=bool)
    # straight-lining: the modal answer category
    code = _answer_codes(d)
    K = len(ANSWERS)
    ok = code >= 0
    per = np.bincount(gid[ok] * K + code[ok], minlength=P * K).reshape(P, K)
    modal = per.argmax(axis=1)
    counted = per.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        modal_share = np.where(counted > 0, per.max(axis=1) / np.maximum(counted, 1), np.nan)
    part["modal_answer"] = np.where(counted > 0, np.asarray(ANSWERS, dtype=object)[modal], None)
    part["modal_share"] = modal_share
    is_ind = part["study_type"].to_numpy() == "indistinguishability"
    need = np.where(is_ind, 1.0, opts.same_share)
    part["straight_lining"] = (counted >= MIN_TRIALS) & (np.nan_to_num(modal_share) >= need - 1e-12)
    # side bias: left vs right, first vs second label position
    first_side = per[:, 0] + per[:, 2]
    side_n = first_side + per[:, 1] + per[:, 3]
    part["side_trials"] = side_n
    part["first_side"] = first_side
    with np.errstate(invalid="ignore", divide="ignore"):
        part["share_first_side"] = np.where(side_n > 0, first_side / np.maximum(side_n, 1), np.nan)
    p = binom_half_p(first_side, side_n)
    part["p_side"] = p
    adj = np.full(P, np.nan)
    for _, idx in part.groupby("study", sort=False).indices.items():
        adj[idx] = holm(p[idx])
    part["p_side_holm"] = adj
    part["side_bias"] = np.nan_to_num(adj, nan=1.0) < opts.side_alpha
    # playback log: tab switches and stalls
    if all(c in d for c in PLAYBACK_COUNTS):
        hidden = d["hidden_events"].to_numpy(dtype=float)
        stall = d["stall_events"].to_numpy(dtype=float)
        part["hidden_trials"] = total(hidden > 0).astype(np.int64)
        part["hidden_events"] = total(hidden).astype(np.int64)
        part["stalled_trials"] = total(stall > 0).astype(np.int64)
        part["stall_events"] = total(stall).astype(np.int64)
        part["tab_switches"] = (part["hidden_trials"] >= max(1, opts.tab_trials)).to_numpy(dtype=bool)
        stalled = part["stalled_trials"].to_numpy(float)
        part["stalls"] = (stalled > 0) & (stalled / trials >= opts.stall_share - 1e-12)
    else:
        for c in ("hidden_trials", "hidden_events", "stalled_trials", "stall_events"):
            part[c] = np.nan
        part["tab_switches"] = False
        part["stalls"] = False
    flags = part[list(FLAGS)].to_numpy(dtype=bool)
    part["n_flags"] = flags.sum(axis=1)
    part["any"] = part["n_flags"] > 0
    part["flags"] = ["; ".join(FLAG_NAMES[f] for f, on in zip(FLAGS, row) if on) for row in flags]
    order = np.lexsort((part["participant"], part["study"], part["study_type"], -part["n_flags"].to_numpy()))
    return part.iloc[order].reset_index(drop=True)


def sensitivity(df: pd.DataFrame, part: pd.DataFrame, opts: Options = Options()) -> pd.DataFrame:
    """For each flag (and ``any``), each design's headline figures over the analysed participants: all of them,
    and without the flagged ones (``kept``); ``difference`` = kept - all."""
    rows: list[dict[str, Any]] = []
    if part.empty:
        return pd.DataFrame(rows)
    # a participant may answer several designs of one study: a row per study, design and participant
    index = pd.MultiIndex.from_arrays([part[k].astype(str) for k in _KEYS])
    for st in DESIGNS:
        d = design_trials(df, st)
        if d.empty:
            continue
        gid, groups = group_ids(d, _KEYS)  # few groups: look them up, not every trial
        pos = index.get_indexer(pd.MultiIndex.from_frame(groups))[gid]
        outcomes = headline_outcomes(d, st)
        n_part = len(np.unique(pos))
        for flag in (*FLAGS, "any"):
            fl = part[flag].to_numpy(dtype=bool)[pos]
            n_flagged = len(np.unique(pos[fl]))
            for fig, (m, y) in outcomes.items():
                n_all, k_all = int(m.sum()), int((m & y).sum())
                keep = m & ~fl
                n_kept, k_kept = int(keep.sum()), int((keep & y).sum())
                lo, hi = wilson_ci(k_all, n_all, opts.level)
                v_all = k_all / n_all if n_all else math.nan
                v_kept = k_kept / n_kept if n_kept else math.nan
                rows.append(
                    {
                        "flag": flag,
                        "study_type": st,
                        "figure": fig,
                        "participants": n_part,
                        "flagged": n_flagged,
                        "trials_all": n_all,
                        "value_all": v_all,
                        "wilson_low_all": float(lo),
                        "wilson_high_all": float(hi),
                        "trials_kept": n_kept,
                        "value_kept": v_kept,
                        "difference": v_kept - v_all,
                    }
                )
    return pd.DataFrame(rows)


def data_quality(df: pd.DataFrame, opts: Options = Options()) -> StudyResult:
    """Tables ``quality_participants`` (:func:`participant_flags`) and ``quality_sensitivity``
    (:func:`sensitivity`); the summary counts the flagged participants and the changes of the headlines."""
    res = StudyResult()
    part = participant_flags(df, opts)
    if part.empty:
        res.notes.append("no analysable trials: no data-quality flags")
        return res
    sens = sensitivity(df, part, opts)
    res.tables["quality_participants"] = part
    res.tables["quality_sensitivity"] = sens
    playback = all(c in df for c in PLAYBACK_COUNTS)
    if not playback:
        res.notes.append("the playback log (playback_events) was not read: no tab-switch or stall flags")
    res.summary = {
        "playback_log": playback,
        "participants": {st: int((part["study_type"] == st).sum()) for st in DESIGNS},
        "flagged": {
            f: {st: int((part[f] & (part["study_type"] == st)).sum()) for st in DESIGNS} for f in (*FLAGS, "any")
        },
        "flagged_analysed": {
            f: {st: int((part[f] & part["analysed"] & (part["study_type"] == st)).sum()) for st in DESIGNS}
            for f in (*FLAGS, "any")
        },
        "sensitivity": {
            f"{r.flag}:{r.study_type}:{r.figure}": {
                "all": r.value_all,
                "kept": r.value_kept,
                "difference": r.difference,
            }
            for r in sens.itertuples()
        },
    }
    return res


def _settings(opts: Options) -> list[str]:
    return [
        f"too fast: at least {pct(opts.fast_share, 0)} % of the answers within {opts.fast_ms:g} ms of answering "
        "becoming possible (about a simple reaction time: no judgement of the clip is that fast)",
        f"straight-lining: one answer on at least {pct(opts.same_share, 0)} % of at least {MIN_TRIALS} trials "
        "(Deceitfulness: the same label position; Naturalness: left, right or can't tell; Indistinguishability: "
        "the same answer to every trial)",
        f"side bias: exact binomial test of left vs right (Naturalness, decisive answers) or first vs second label "
        f"position (Deceitfulness) against 50 %, Holm-adjusted over the study's participants, p < {opts.side_alpha:g}",
        f"tab switches: the page was hidden during at least {max(1, opts.tab_trials)} trial(s) (playback log)",
        f"stalls: the video waited for data in at least {pct(opts.stall_share, 0)} % of the trials (playback log)",
    ]


def quality_section(res: StudyResult, opts: Options) -> Section:
    """The report's 'Data quality' section: the flags, their counts, the sensitivity table and the flag table."""
    s = Section("Data quality")
    if not res.tables:
        s.text += res.notes or ["No analysable trials."]
        return s
    part, sens = res.tables["quality_participants"], res.tables["quality_sensitivity"]
    s.text.append(
        "Flags per participant (analysable trials; flags, not exclusions): " + "; ".join(_settings(opts)) + "."
    )
    fl = res.summary["flagged"]
    an = res.summary["flagged_analysed"]
    for st in DESIGNS:
        n = res.summary["participants"][st]
        if not n:
            continue
        s.text.append(
            f"{st.capitalize()} ({n} participants with answers): "
            + ", ".join(f"{FLAG_NAMES[f]} {fl[f][st]} ({an[f][st]} analysed)" for f in (*FLAGS, "any"))
            + "."
        )
    s.text += res.notes
    if len(sens):
        hd = sens[(sens["flag"] == "any")]
        s.text.append(
            "Without the participants with any flag (analysed participants): "
            + "; ".join(
                f"{FIGURES[r.figure]} {pct(r.value_all)} % -> {pct(r.value_kept)} % "
                f"({'+' if r.difference >= 0 else ''}{pct(r.difference)} points, {r.flagged} of {r.participants} "
                "participants left out)"
                for r in hd.itertuples()
                if np.isfinite(r.value_all)
            )
            + "."
        )
        s.tables.append(
            Table(
                "quality_sensitivity",
                "Headline figures of the analysed participants, all and without each flag's participants "
                "(difference = kept - all)",
                sens,
            )
        )
    from . import figures

    s.figures.append(
        Fig(
            "quality_fast_answers",
            f"Share of answers faster than {opts.fast_ms:g} ms per participant; dashed: the too-fast flag",
            figures.plot_histogram(
                part["fast_share"],
                title="Fast answers per participant",
                xlabel=f"share of answers under {opts.fast_ms:g} ms",
                threshold=opts.fast_share,
            ).figure,
        )
    )
    s.tables.append(
        Table(
            "quality_participants",
            "Data-quality flags per participant (most flags first): answer times, the modal answer, the side test, "
            "tab switches and stalls",
            part,
        )
    )
    return s


def quality_console(res: StudyResult) -> list[str]:
    """One console line: participants flagged per flag (all designs)."""
    if not res.summary:
        return []
    fl = res.summary["flagged"]
    return [
        "data quality: "
        + ", ".join(f"{FLAG_NAMES[f]} {sum(fl[f].values())}" for f in (*FLAGS, "any"))
        + " participant(s) flagged"
    ]
