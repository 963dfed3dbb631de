"""Power by simulation: how many participants (trials, stimuli) a study needs, with the report's own estimators.

For every *cell* of a sweep (design x trials per participant x stimuli x participants),
:func:`run_power` simulates ``replicates`` studies with :func:`analysis.simulate.simulate`
(the observer model there), analyses each exactly as ``analysis report`` does
(:func:`analysis.perceptual.deceitfulness`, :func:`~analysis.perceptual.naturalness`,
:func:`~analysis.perceptual.indistinguishability`; no mixed model) and counts how often
each hypothesis is rejected at ``alpha``:

* **deceitfulness** ``true-label>label-prior``: the share of analysed trials where the
  ground-truth label was chosen exceeds the label-prior baseline (the report's pooled
  :func:`~analysis.perceptual.label_prior_accuracy` of the same trials): exact binomial test
  against the baseline;
* **naturalness** ``smart>ABLATION`` (one per ablation): SMART is chosen in more than half
  of the decisive SMART-vs-ablation answers: sign test, Holm-adjusted over the ablations;
  ``smart>all-ablations``: every one of those rejected;
* **indistinguishability** ``unchanged>LEVEL``: the share of attacked pairs judged
  unchanged exceeds ``unchanged_level``: exact binomial test against it.

Tests are one-sided (``sided="one"``, as the preregistration plans them) or the report's
two-sided p-values counted only in the hypothesised direction (``sided="two"``). Power is
the share of replicates rejected, with a Wilson interval on the replicate count; the
half-width is that of the headline figure's interval, averaged over replicates: the
report's two-way (participants x clips) bootstrap when ``n_boot > 0``, else its Wilson
interval (trials as independent: too narrow when participants or clips differ); for the
naturalness shares, Wilson on the decisive answers (the report gives them no interval).

Every replicate draws from its own generator, seeded from ``(seed, cell, replicate)`` by
:class:`numpy.random.SeedSequence`, so the results are the same for any number of worker
processes and a cell's results do not depend on which other cells the sweep holds.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import as_completed
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Sequence

import numpy as np
import pandas as pd

from stimuli.errors import DataError
from stimuli.responses import STUDY_TYPES
from stimuli.screening import SENSITIVITY_THRESHOLD

from .readers import Batches
from .simulate import Design
from .simulate import Observer

__all__ = ["PowerSettings", "Cell", "parse_counts", "designs_in", "run_power", "write_power", "POWER_FORMAT"]

POWER_FORMAT = "smart-study-power"
COLUMNS = (
    "design",
    "hypothesis",
    "participants",
    "trials",
    "stimuli",
    "replicates",
    "power",
    "power_ci_low",
    "power_ci_high",
    "mean_half_width",
    "mean_estimate",
    "null",
    "interval",
)


@dataclass(frozen=True)
class PowerSettings:
    """Everything a replicate depends on besides its cell: the observer, the tests and the analysis settings."""

    observer: Observer = Observer()
    seed: int = 0
    alpha: float = 0.05
    level: float = 0.95
    unchanged_level: float = 0.5
    sided: str = "one"
    n_boot: int = 1000
    sensitivity_share: float = 0.3
    control_share: float = 0.1
    screen_threshold: float = SENSITIVITY_THRESHOLD

    def __post_init__(self) -> None:
        if self.sided not in ("one", "two"):
            raise DataError(f"power: sided must be 'one' or 'two', got {self.sided!r}")
        if not 0 < self.alpha < 1:
            raise DataError(f"power: alpha must be in (0, 1), got {self.alpha!r}")
        if self.seed < 0:
            raise DataError(f"power: seed must be >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class Cell:
    """One point of the sweep."""

    design: str
    participants: int
    trials: int
    stimuli: int

    def seed(self, base: int, replicate: int) -> int:
        """The replicate's seed, from (base seed, cell, replicate) only."""
        key = [base, STUDY_TYPES.index(self.design), self.participants, self.trials, self.stimuli, replicate]
        return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0])


def parse_counts(text: str, option: str) -> list[int]:
    """``"10,20,40"`` -> ``[10, 20, 40]`` (sorted, distinct); anything but positive integers is a :class:`DataError`."""
    out = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            raise DataError(f"{option}: expected positive integers separated by commas, got {text!r}") from None
        if value < 1:
            raise DataError(f"{option}: every value must be >= 1, got {value} in {text!r}")
        out.add(value)
    return sorted(out)


def designs_in(batches: Batches) -> list[str]:
    """The designs the batch can serve: deceitfulness and indistinguishability need a 'smart' variant,
    naturalness also two ablations (other attacked variants)."""
    roles = dict(zip(batches.variants["variant"].astype(str), batches.variants["role"].astype(str)))
    attacks = [v for v, r in roles.items() if r == "attack"]
    if "smart" not in attacks:
        return []
    out = ["deceitfulness", "indistinguishability"]
    if len([a for a in attacks if a != "smart"]) >= 2:
        out.append("naturalness")
    return [s for s in STUDY_TYPES if s in out]


def _has_controls(batches: Batches) -> bool:
    return bool((batches.variants["role"].astype(str) == "control").any())


def _subset(batches: Batches, stimuli: int) -> Batches:
    """The batch with only its first ``stimuli`` items (in the batches' order)."""
    items = batches.items.iloc[:stimuli].reset_index(drop=True)
    keys = set(zip(items["batch_id"], items["item_id"]))
    v = batches.variants
    mask = np.array([k in keys for k in zip(v["batch_id"], v["item_id"])], bool)
    return Batches(batches.batches, batches.roots, items, v[mask].reset_index(drop=True))


def _design(cell: Cell, settings: PowerSettings, controls: bool) -> Design:
    if cell.design == "naturalness" and cell.trials % 2:
        raise DataError(f"naturalness: --trials must be even (two trials per motion), got {cell.trials}")
    return Design(
        studies=(cell.design,),
        deceitfulness_trials=cell.trials,
        naturalness_motions=max(cell.trials // 2, 1),
        indistinguishability_trials=cell.trials,
        sensitivity_share=settings.sensitivity_share,
        control_share=settings.control_share if controls else 0.0,
        practice_trials=0,
        screen_threshold=settings.screen_threshold,
    )


def hypotheses(design: str, batches: Batches, settings: PowerSettings) -> list[str]:
    """The hypothesis ids a design tests (in the table's order)."""
    if design == "deceitfulness":
        return ["true-label>label-prior"]
    if design == "indistinguishability":
        return [f"unchanged>{settings.unchanged_level:g}"]
    roles = dict(zip(batches.variants["variant"].astype(str), batches.variants["role"].astype(str)))
    from .perceptual import method_order

    ablations = [m for m in method_order(v for v, r in roles.items() if r == "attack") if m != "smart"]
    return [f"smart>{a}" for a in ablations] + ["smart>all-ablations"]


# ---- one replicate ---------------------------------------------------------------------------
def _binomial(k: int, n: int, p0: float, settings: PowerSettings) -> bool:
    """Whether ``k`` of ``n`` rejects 'share <= p0' at alpha (one-sided, or the report's two-sided test)."""
    from scipy.stats import binomtest

    from .stats import binom_test

    if n <= 0 or not 0 <= p0 < 1 or not k / n > p0:
        return False
    if settings.sided == "one":
        return bool(binomtest(k, n, p0, alternative="greater").pvalue < settings.alpha)
    return bool(binom_test(k, n, p0) < settings.alpha)


def _half(low: float, high: float) -> float:
    return (high - low) / 2 if np.isfinite(low) and np.isfinite(high) else math.nan


def _overall(table: pd.DataFrame) -> pd.Series | None:
    if table is None or table.empty:
        return None
    o = table[(table["subset"] == "analysed") & (table["breakdown"] == "overall")]
    return o.iloc[0] if len(o) else None


def _share_result(r: pd.Series | None, p0: float, settings: PowerSettings) -> tuple[bool, float, float]:
    if r is None or not r["trials"]:
        return False, math.nan, math.nan
    if settings.n_boot > 0:
        hw = _half(r["boot_low"], r["boot_high"])
    else:
        hw = _half(r["wilson_low"], r["wilson_high"])
    return _binomial(int(r["count"]), int(r["trials"]), p0, settings), float(r["share"]), hw


def replicate(df: pd.DataFrame, cell: Cell, names: list[str], settings: PowerSettings, seed: int) -> list[tuple]:
    """Analyse one simulated study as the report does: per hypothesis (rejected, estimate, half-width, null)."""
    from .perceptual import Options
    from .perceptual import deceitfulness
    from .perceptual import indistinguishability
    from .perceptual import naturalness
    from .stats import holm
    from .stats import wilson_ci

    opts = Options(n_boot=settings.n_boot, seed=seed, level=settings.level, glmm=False)
    if cell.design == "deceitfulness":
        res = deceitfulness(df, opts)
        base = res.summary.get("label_prior_baseline", {}).get("pooled", math.nan) if res.tables else math.nan
        rej, est, hw = _share_result(_overall(res.tables.get("deceitfulness_rates")), base, settings)
        return [(names[0], rej, est, hw, base)]
    if cell.design == "indistinguishability":
        res = indistinguishability(df, opts)
        level = settings.unchanged_level
        rej, est, hw = _share_result(_overall(res.tables.get("indistinguishability_rates")), level, settings)
        return [(names[0], rej, est, hw, level)]
    res = naturalness(df, replace(opts, n_boot=0))  # the Bradley-Terry bootstrap is not needed here
    st = res.tables.get("naturalness_sign_tests")
    rows = {}
    if st is not None and len(st):
        st = st[(st["subset"] == "analysed") & (st["breakdown"] == "overall")]
        rows = {f"smart>{r.ablation}": r for r in st.itertuples()}
    if settings.sided == "one":
        from scipy.stats import binomtest

        p = [
            binomtest(int(r.smart_preferred), int(r.smart_preferred + r.ablation_preferred), 0.5, "greater").pvalue
            if r.smart_preferred + r.ablation_preferred
            else math.nan
            for r in rows.values()
        ]
        adjusted = dict(zip(rows, holm(p)))
    else:
        adjusted = {k: r.p_holm for k, r in rows.items()}
    out = []
    for name in names[:-1]:
        r = rows.get(name)
        if r is None:
            out.append((name, False, math.nan, math.nan, 0.5))
            continue
        sw, aw = int(r.smart_preferred), int(r.ablation_preferred)
        p_adj = adjusted[name]
        rej = bool(sw > aw and np.isfinite(p_adj) and p_adj < settings.alpha)
        lo, hi = wilson_ci(sw, sw + aw, settings.level)
        out.append((name, rej, sw / (sw + aw) if sw + aw else math.nan, _half(float(lo), float(hi)), 0.5))
    out.append((names[-1], all(o[1] for o in out), math.nan, math.nan, 0.5))
    return out


# ---- workers ---------------------------------------------------------------------------------
_STATE: dict[str, Any] = {}


def _init(batch_dirs: Sequence[str], settings: PowerSettings, single_thread: bool = True) -> None:
    from .readers import load_batches

    if single_thread:
        from threadpoolctl import threadpool_limits

        _STATE["limits"] = threadpool_limits(1)  # one BLAS thread per process: the processes are the parallelism
    batches = load_batches(batch_dirs)
    _STATE.update(batches=batches, settings=settings, subsets={}, controls=_has_controls(batches))


def _run_chunk(tasks: Sequence[tuple[Cell, int]]) -> list[list[tuple]]:
    from .readers import attach_batches
    from .simulate import simulate

    settings: PowerSettings = _STATE["settings"]
    out = []
    for cell, rep in tasks:
        if cell.stimuli not in _STATE["subsets"]:
            _STATE["subsets"][cell.stimuli] = _subset(_STATE["batches"], cell.stimuli)
        sub = _STATE["subsets"][cell.stimuli]
        seed = cell.seed(settings.seed, rep)
        df = simulate(sub, cell.participants, seed, settings.observer, _design(cell, settings, _STATE["controls"]))
        df = attach_batches(df, sub, "simulated responses")
        out.append(replicate(df, cell, hypotheses(cell.design, sub, settings), settings, seed))
    return out


# ---- the sweep -------------------------------------------------------------------------------
def run_power(
    batch_dirs: Sequence[str | Path],
    settings: PowerSettings,
    participants: Sequence[int],
    trials: Sequence[int] = (100,),
    stimuli: Sequence[int] | None = None,
    designs: Sequence[str] | None = None,
    replicates: int = 200,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Simulate and analyse every cell; the tidy table (``table``), the settings and notes, JSON-ready.

    ``on_start(n)`` is told the number of simulated studies, ``progress(k)`` each time ``k`` more are done.
    """
    from stimuli.batch import MANIFEST
    from stimuli.fileio import file_sha256

    from .readers import load_batches
    from .stats import wilson_ci

    t0 = time.perf_counter()
    dirs = [str(d) for d in batch_dirs]
    batches = load_batches(dirs)
    n_items = len(batches.items)
    stimuli = sorted(set(stimuli)) if stimuli else [n_items]
    if replicates < 1:
        raise DataError(f"--replicates must be >= 1, got {replicates}")
    if not participants or min(participants) < 1 or not trials or min(trials) < 1 or min(stimuli) < 1:
        raise DataError("participants, trials and stimuli must be positive")
    if max(stimuli) > n_items:
        raise DataError(f"--stimuli: the batch has {n_items} items, asked for {max(stimuli)}")
    present = designs_in(batches)
    if not present:
        raise DataError("the batch has no attacked variant 'smart': no design to plan")
    designs = list(designs) if designs else present
    missing = [d for d in designs if d not in present]
    if missing:
        raise DataError(
            f"the batch cannot serve {', '.join(missing)} (it needs 'smart' and, for naturalness, two ablations); "
            f"it serves {', '.join(present)}"
        )
    designs = [s for s in STUDY_TYPES if s in designs]
    notes = []
    controls = _has_controls(batches)
    if "indistinguishability" in designs and settings.control_share > 0 and not controls:
        notes.append("the batch has no positive-control variant: indistinguishability simulated without controls")
    cells = [
        Cell(d, p, t, s)
        for d in designs
        for t in sorted(set(trials))
        for s in stimuli
        for p in sorted(set(participants))
    ]
    for c in cells:
        _design(c, settings, controls)  # validate every design before any work
    tasks = [(c, r) for c in cells for r in range(replicates)]
    if on_start:
        on_start(len(tasks))
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    chunk = max(1, min(16, len(tasks) // (workers * 4)))
    chunks = [tasks[i : i + chunk] for i in range(0, len(tasks), chunk)]
    results: list[list[list[tuple]] | None] = [None] * len(chunks)
    if workers == 1:
        saved = dict(_STATE)
        try:
            _init(dirs, settings, single_thread=False)
            for i, ch in enumerate(chunks):
                results[i] = _run_chunk(ch)
                if progress:
                    progress(len(ch))
        finally:
            _STATE.clear()
            _STATE.update(saved)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(dirs, settings)) as pool:
            futures = {pool.submit(_run_chunk, ch): i for i, ch in enumerate(chunks)}
            try:
                for f in as_completed(futures):
                    i = futures[f]
                    results[i] = f.result()
                    if progress:
                        progress(len(chunks[i]))
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # no more work after an error or Ctrl-C
                raise
    flat = [r for ch in results for r in ch]  # type: ignore[union-attr]
    interval = "two-way bootstrap (participants x clips)" if settings.n_boot > 0 else "Wilson (trials as independent)"
    rows = []
    for ci, cell in enumerate(cells):
        reps = flat[ci * replicates : (ci + 1) * replicates]
        for h, name in enumerate(r[0] for r in reps[0]):
            rej = np.array([r[h][1] for r in reps], bool)
            est = np.array([r[h][2] for r in reps], float)
            hw = np.array([r[h][3] for r in reps], float)
            null = np.array([r[h][4] for r in reps], float)
            lo, hi = wilson_ci(int(rej.sum()), replicates, settings.level)
            rows.append(
                {
                    "design": cell.design,
                    "hypothesis": name,
                    "participants": cell.participants,
                    "trials": cell.trials,
                    "stimuli": cell.stimuli,
                    "replicates": replicates,
                    "power": float(rej.mean()),
                    "power_ci_low": float(lo),
                    "power_ci_high": float(hi),
                    "mean_half_width": _nanmean(hw),
                    "mean_estimate": _nanmean(est),
                    "null": _nanmean(null),
                    "interval": (
                        "none (conjunction)"
                        if name == "smart>all-ablations"
                        else ("Wilson (decisive answers)" if cell.design == "naturalness" else interval)
                    ),
                }
            )
    tests = (
        "one-sided exact binomial / sign tests (Holm over the ablations)"
        if settings.sided == "one"
        else "the report's two-sided exact binomial / sign tests (Holm over the ablations), in the hypothesised "
        "direction only"
    )
    return {
        "format": POWER_FORMAT,
        "version": 1,
        "table": rows,
        "settings": {
            "seed": settings.seed,
            "alpha": settings.alpha,
            "level": settings.level,
            "unchanged_level": settings.unchanged_level,
            "tests": tests,
            "sided": settings.sided,
            "bootstrap": settings.n_boot,
            "interval": interval,
            "replicates": replicates,
            "designs": designs,
            "participants": sorted(set(participants)),
            "trials": sorted(set(trials)),
            "stimuli": stimuli,
            "stimuli_selection": "the first N items of the batch(es), in manifest order",
            "sensitivity_share": settings.sensitivity_share,
            "control_share": settings.control_share if controls else 0.0,
            "screen_threshold": settings.screen_threshold,
            "mixed_model": False,
        },
        "observer": asdict(settings.observer),
        "implied": settings.observer.implied(),
        "batches": {
            bid: {
                "manifest_sha256": file_sha256(batches.roots[bid] / MANIFEST),
                "items": int((batches.items["batch_id"] == bid).sum()),
            }
            for bid in batches.batches
        },
        "notes": notes,
        "workers": workers,
        "seconds": time.perf_counter() - t0,
    }


def _nanmean(x: np.ndarray) -> float:
    return float(np.mean(x[np.isfinite(x)])) if np.isfinite(x).any() else math.nan


# ---- output ----------------------------------------------------------------------------------
def table_frame(result: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(result["table"], columns=list(COLUMNS))


def format_table(result: dict[str, Any]) -> str:
    """The table as printed: one row per cell and hypothesis."""
    t = table_frame(result).drop(columns=["replicates", "interval"])
    return t.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")


def plot_power(result: dict[str, Any], ax=None):
    """Power against participants, one line per hypothesis (and trials / stimuli where swept); 80 % dashed."""
    from matplotlib.figure import Figure

    t = table_frame(result)
    if ax is None:
        fig = Figure(figsize=(9.0, 4.5), layout="constrained")
        ax = fig.add_subplot()
    several_t, several_s = t["trials"].nunique() > 1, t["stimuli"].nunique() > 1
    for (h, tr, st), g in t.groupby(["hypothesis", "trials", "stimuli"], sort=False):
        label = f"{g['design'].iloc[0]}: {h}"
        if several_t or several_s:
            label += " (" + ", ".join(
                ([f"{tr} trials"] if several_t else []) + ([f"{st} stimuli"] if several_s else [])
            )
            label += ")"
        g = g.sort_values("participants")
        (line,) = ax.plot(g["participants"], g["power"], marker="o", label=label)
        ax.fill_between(g["participants"], g["power_ci_low"], g["power_ci_high"], color=line.get_color(), alpha=0.15)
    ax.axhline(0.8, color="0.3", linestyle="--", linewidth=1, label="80 % power")
    ax.set_xscale("log")
    ps = sorted(t["participants"].unique())
    ax.set_xticks(ps, [str(p) for p in ps])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("participants per study")
    ax.set_ylabel(f"power (alpha = {result['settings']['alpha']:g})")
    ax.set_title(f"Simulated power, {result['settings']['replicates']} replicates per point")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    return ax


def write_power(result: dict[str, Any], out: str | Path) -> dict[str, str]:
    """Write power.csv, power.json, power.png and power.svg into ``out``; their paths."""
    import json

    from stimuli.fileio import json_default

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / f"power.{k}" for k in ("csv", "json", "png", "svg")}
    table_frame(result).to_csv(files["csv"], index=False, lineterminator="\n", float_format="%.6g")
    doc = {k: v for k, v in result.items() if k not in ("seconds", "workers")}  # the same for any run of it
    text = json.dumps(_clean(doc), indent=2, sort_keys=True, default=json_default, allow_nan=False)
    files["json"].write_text(text + "\n", encoding="utf-8")
    fig = plot_power(result).figure
    fig.savefig(files["png"], dpi=120)
    fig.savefig(files["svg"], metadata={"Date": None})
    return {k: str(v) for k, v in files.items()}


def _clean(o: Any) -> Any:
    """NaN -> None, numpy scalars -> Python (JSON has no NaN)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def read_power(path: str | Path) -> dict[str, Any]:
    """A power.json written by :func:`write_power` (checked for the format; errors name the file)."""
    import json

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: power file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != POWER_FORMAT or not isinstance(doc.get("table"), list):
        raise DataError(f"{path}: not a power.json written by analysis power")
    return doc
