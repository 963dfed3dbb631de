"""The attack side of the paper: Tables 1-4, the confusion of attacked labels (Fig. 2), joint
correlations (Fig. 4) and per-joint deviations, SMART vs l2 (Fig. 7).

Inputs are attack result files (:mod:`stimuli.attack_results`) or, without them, the
stimulus batch itself (its manifest's success flags and labels, its motions). Functions
return tidy DataFrames; ``*_layout`` functions arrange them as the paper prints them,
with the paper's number in brackets where the setting matches (SMART loss, the same
model, dataset and strategy).

Definitions (per clip ``n``, joint ``j``, frame ``t``; ``q`` original, ``q^`` adversarial):

* deviation ``d[n, t, j] = |q^[n, t, j] - q[n, t, j]|`` (metres);
* Fig. 4: displacement ``D[n, j]`` = mean over frames of ``d``; speed ``S[n, j]`` = mean
  over frames of ``|q[t+1] - q[t]| * fps``; acceleration ``A[n, j]`` = mean of
  ``|q[t+2] - 2 q[t+1] + q[t]| * fps^2``; each map is the Pearson correlation across
  clips of ``D[:, i]`` with ``D[:, j]``, ``S[:, j]`` or ``A[:, j]`` (NaN for a joint that
  does not vary);
* Fig. 7: per joint the mean and standard deviation of ``d`` over all clips and frames.
"""

from __future__ import annotations

import math
from typing import Any
from typing import Iterable
from typing import Sequence

import numpy as np
import pandas as pd

from stimuli.attack_results import AttackRun
from stimuli.attack_results import TransferRun
from stimuli.skeleton import STANDARD

from . import paper
from .stats import wilson_ci

__all__ = [
    "success_table",
    "success_layout",
    "TABLES",
    "transfer_table",
    "transfer_layout",
    "confusion",
    "clip_summaries",
    "joint_correlations",
    "joint_deviation",
    "batch_success",
]

TABLES = {"table1": ("AB",), "table2": ("AB3", "AB5"), "table3": ("SA",)}
"""The paper's success tables by strategy."""


def _pct(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.2f}"


def success_table(runs: Sequence[AttackRun], level: float = 0.95) -> pd.DataFrame:
    """One row per run: counts of clips by status, success and robust success with Wilson intervals, the paper's rate.

    The paper's rate is given for runs under the ``raw`` threat model only (its setting).
    """
    rows = []
    for r in runs:
        att = r.attacked
        n, k = int(att.sum()), int((r.status == "success").sum())
        kr = int((r.robust_success & (r.status == "success")).sum())
        lo, hi = wilson_ci(k, n, level)
        rlo, rhi = wilson_ci(kr, n, level)
        pm, pd_, ps = paper.paper_model(r.model), paper.paper_dataset(r.dataset), paper.paper_strategy(r.label)
        pv = paper.WHITE_BOX.get((pm, pd_, ps)) if r.loss == "smart" and r.threat_model == "raw" else None
        why = ""
        if pv is None:
            why = (
                f"loss {r.loss}: the paper's tables are the SMART loss"
                if r.loss != "smart"
                else "canonical threat model: the paper attacked unpreprocessed input"
                if r.threat_model != "raw"
                else f"dataset {r.dataset!r} is not one of the paper's"
                if pd_ is None
                else f"model {r.model!r} is not one of the paper's"
                if pm is None
                else f"strategy {r.label!r} is not one of the paper's"
                if ps is None
                else "the paper gives no number for this model, dataset and strategy"
            )
        rows.append(
            {
                "file": r.path.name,
                "model": paper.display_model(r.model),
                "dataset": pd_ or r.dataset,
                "strategy": ps or r.label,
                "loss": r.loss,
                "threat_model": r.threat_model,
                "clips": len(r.status),
                "attacked": n,
                "succeeded": k,
                "robust_succeeded": kr,
                "failed": int((r.status == "failed").sum()),
                "nonfinite": int((r.status == "nonfinite").sum()),
                "skipped": int((r.status == "skipped").sum()),
                "pending": int((r.status == "pending").sum()),
                "rate": k / n if n else math.nan,
                "wilson_low": float(lo),
                "wilson_high": float(hi),
                "robust_rate": kr / n if n else math.nan,
                "robust_wilson_low": float(rlo),
                "robust_wilson_high": float(rhi),
                "paper": pv / 100 if pv is not None else math.nan,
                "no_paper_figure_because": why,
            }
        )
    return pd.DataFrame(rows)


def success_layout(
    table: pd.DataFrame, strategies: Sequence[str], loss: str = "smart", threat_model: str = "canonical"
) -> pd.DataFrame:
    """The paper's layout for one threat model: rows models (paper order, then others, then the mean),
    columns ``dataset strategy``.

    Cells read ``success / robust success`` in percent, then ``(paper)`` under the ``raw`` threat
    model (the paper's setting); ``-`` where we have no run.
    """
    t = table[(table["loss"] == loss) & table["strategy"].isin(strategies) & (table["threat_model"] == threat_model)]
    if t.empty:
        return pd.DataFrame()
    datasets = [d for d in paper.DATASETS if d in set(t["dataset"])] + sorted(set(t["dataset"]) - set(paper.DATASETS))
    models = [m for m in paper.MODELS if m in set(t["model"])] + sorted(set(t["model"]) - set(paper.MODELS))
    out = []
    for m in [*models, "mean"]:
        row: dict[str, Any] = {"model": m}
        for d in datasets:
            for s in strategies:
                col = f"{d} {s}" if len(strategies) > 1 else d
                if m == "mean":
                    sel = t[(t["dataset"] == d) & (t["strategy"] == s)]
                    ours = float(sel["rate"].mean()) if len(sel) > 1 else math.nan
                    robust = float(sel["robust_rate"].mean()) if len(sel) > 1 else math.nan
                else:
                    sel = t[(t["model"] == m) & (t["dataset"] == d) & (t["strategy"] == s)]
                    ours = float(sel["rate"].iloc[-1]) if len(sel) else math.nan
                    robust = float(sel["robust_rate"].iloc[-1]) if len(sel) else math.nan
                pv = paper.WHITE_BOX.get((m, d, s)) if threat_model == "raw" else None
                if m == "mean" and not set(paper.MODELS) <= set(models):
                    pv = None  # the paper's mean is over its five models: not comparable with a mean over fewer
                cell = _pct(ours) if not np.isfinite(ours) else f"{_pct(ours)} / {_pct(robust)}"
                if pv is not None:
                    cell += f" ({pv:g})"
                row[col] = cell
        out.append(row)
    df = pd.DataFrame(out)
    return df if len(models) > 1 else df[df["model"] != "mean"].reset_index(drop=True)


def transfer_table(transfers: Sequence[TransferRun]) -> pd.DataFrame:
    """One row per (file, surrogate, target): eligible, fooled, rate, and the paper's Table 4 rate on NTU."""
    rows = []
    for tr in transfers:
        ntu = paper.paper_dataset(tr.dataset) == "NTU"
        for s in tr.models:
            for t in tr.models:
                c = tr.matrix[s][t]
                ps, pt = paper.display_model(s), paper.display_model(t)
                pv = (
                    paper.TRANSFER.get((ps, pt, paper.paper_strategy(tr.label)))
                    if ntu and tr.loss == "smart" and tr.threat_model == "raw"
                    else None
                )
                rows.append(
                    {
                        "file": tr.path.name,
                        "strategy": tr.label,
                        "loss": tr.loss,
                        "threat_model": tr.threat_model,
                        "dataset": paper.paper_dataset(tr.dataset) or tr.dataset,
                        "surrogate": ps,
                        "target": pt,
                        "white_box": s == t,
                        "eligible": c.get("eligible"),
                        "fooled": c.get("fooled"),
                        "rate": c["rate"] if c.get("rate") is not None else math.nan,
                        "robust_fooled": c.get("robust_fooled"),
                        "robust_rate": c["robust_rate"] if c.get("robust_rate") is not None else math.nan,
                        "paper": pv / 100 if pv is not None else math.nan,
                    }
                )
    return pd.DataFrame(rows)


def transfer_layout(table: pd.DataFrame) -> pd.DataFrame:
    """Table 4: rows surrogate, columns target, cells ``AB success / robust success (paper)`` per strategy,
    diagonal white-box in brackets; the paper's numbers beside ``raw`` runs only (its setting)."""
    if table.empty:
        return pd.DataFrame()
    out = []
    models = list(dict.fromkeys(table["surrogate"]))
    for s in models:
        row: dict[str, Any] = {"surrogate \\ target": s}
        for t in models:
            parts = []
            for strat, g in table[(table["surrogate"] == s) & (table["target"] == t)].groupby("strategy", sort=False):
                r = g.iloc[-1]
                both = f"{_pct(r['rate'])} / {_pct(r['robust_rate'])}"
                txt = f"[{both}]" if s == t else both
                if np.isfinite(r["paper"]):
                    txt += f" ({100 * r['paper']:g})"
                parts.append(f"{strat}: {txt}")
            row[t] = "; ".join(parts) if s != t else (parts[0].split(": ", 1)[1] + " white-box" if parts else "-")
        out.append(row)
    return pd.DataFrame(out)


def confusion(
    true: np.ndarray, final: np.ndarray, names: Sequence[str] | None = None, normalise: bool = True
) -> pd.DataFrame:
    """Confusion matrix of attacked labels: rows true class, columns the class the attacked clip got.

    Rows are normalised to sum to 1 (``normalise``), as in the paper's Fig. 2; classes that
    appear in neither are left out.
    """
    true, final = np.asarray(true), np.asarray(final)
    labels = sorted(set(true.tolist()) | set(final.tolist()), key=lambda x: (str(type(x)), x))
    idx = {v: i for i, v in enumerate(labels)}
    k = len(labels)
    m = (
        np.bincount(pd.Series(true).map(idx).to_numpy() * k + pd.Series(final).map(idx).to_numpy(), minlength=k * k)
        .reshape(k, k)
        .astype(float)
    )
    if normalise:
        with np.errstate(invalid="ignore", divide="ignore"):
            m = m / m.sum(1, keepdims=True)
    show = [
        names[v] if names is not None and isinstance(v, (int, np.integer)) and 0 <= v < len(names) else str(v)
        for v in labels
    ]
    return pd.DataFrame(m, index=pd.Index(show, name="true"), columns=pd.Index(show, name="attacked"))


def clip_summaries(
    original: Iterable[np.ndarray], adversarial: Iterable[np.ndarray], fps: float | Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per clip and joint: mean displacement, original speed and original acceleration magnitude ``(N, 25)`` each."""
    D, S, A = [], [], []
    fps_list = list(fps) if isinstance(fps, (list, tuple, np.ndarray)) else None
    for n, (q, qa) in enumerate(zip(original, adversarial)):
        f = float(fps_list[n] if fps_list is not None else fps)
        q, qa = np.asarray(q, np.float64), np.asarray(qa, np.float64)
        D.append(np.linalg.norm(qa - q, axis=-1).mean(0))
        v = np.diff(q, axis=0) * f
        S.append(np.linalg.norm(v, axis=-1).mean(0) if len(v) else np.full(q.shape[1], np.nan))
        a = np.diff(q, n=2, axis=0) * f * f
        A.append(np.linalg.norm(a, axis=-1).mean(0) if len(a) else np.full(q.shape[1], np.nan))
    return np.array(D), np.array(S), np.array(A)


def _corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc, yc = x - x.mean(0), y - y.mean(0)
    sx, sy = np.sqrt((xc**2).sum(0)), np.sqrt((yc**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (xc.T @ yc) / np.outer(sx, sy)
    c[~np.isfinite(c)] = np.nan
    return np.clip(c, -1, 1)


def joint_correlations(D: np.ndarray, S: np.ndarray, A: np.ndarray) -> dict[str, pd.DataFrame]:
    """Fig. 4's three maps: displacement-displacement, -speed and -acceleration (rows: displacement's joint)."""
    names = list(STANDARD.joint_names)
    idx = pd.Index(names, name="displacement")
    return {
        kind: pd.DataFrame(_corr(D, other), index=idx, columns=pd.Index(names, name=kind))
        for kind, other in (("displacement", D), ("speed", S), ("acceleration", A))
    }


def joint_deviation(pairs: dict[str, tuple[Iterable[np.ndarray], Iterable[np.ndarray]]]) -> pd.DataFrame:
    """Fig. 7: per method and joint, mean and std of the deviation over all clips and frames (metres).

    ``pairs[method] = (originals, adversarials)`` (sequences of ``(T, 25, 3)`` clips).
    """
    rows = []
    for method, (orig, adv) in pairs.items():
        d = [np.linalg.norm(np.asarray(a, np.float64) - np.asarray(o, np.float64), axis=-1) for o, a in zip(orig, adv)]
        if not d:
            continue
        n_clips = len(d)
        d = np.concatenate(d, axis=0)  # (frames of all clips, 25)
        for j, name in enumerate(STANDARD.joint_names):
            rows.append(
                {
                    "method": method,
                    "joint": j,
                    "joint_name": name,
                    "clips": n_clips,
                    "frames": int(d.shape[0]),
                    "mean": float(d[:, j].mean()),
                    "std": float(d[:, j].std(ddof=0)),
                }
            )
    return pd.DataFrame(rows)


def batch_success(variants: pd.DataFrame, items: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Attack success of each attacked variant in the batch manifest, with the mean of each perceptual metric."""
    v = variants[variants["role"] == "attack"]
    rows = []
    for name, g in v.groupby("variant", sort=False):
        ok = g["success"].astype(bool).to_numpy()
        n, k = len(g), int(ok.sum())
        robust = g["robust_success"] if "robust_success" in g else pd.Series([None] * n)
        kr = int((ok & robust.fillna(False).astype(bool).to_numpy()).sum()) if robust.notna().all() else None
        lo, hi = wilson_ci(k, n, level)
        row = {
            "variant": name,
            "items": n,
            "succeeded": k,
            "rate": k / n if n else math.nan,
            "wilson_low": float(lo),
            "wilson_high": float(hi),
            "robust_succeeded": kr,
            "robust_rate": kr / n if n and kr is not None else math.nan,
        }
        for c in g.columns:
            if c.startswith("metric:"):
                row[c.split(":", 1)[1]] = float(pd.to_numeric(g[c], errors="coerce").mean())
        rows.append(row)
    out = pd.DataFrame(rows)
    ds = sorted({str(x) for x in items["dataset"].dropna()})
    ms = sorted({str(x) for x in items["model"].dropna()})
    out.insert(0, "dataset", ", ".join(ds))
    out.insert(1, "model", ", ".join(paper.display_model(m) for m in ms))
    tms = sorted({str(x) for x in items["threat_model"].dropna()}) if "threat_model" in items else []
    out.insert(2, "threat_model", ", ".join(tms) or "unknown")
    return out
