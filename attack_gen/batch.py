"""``attack-gen batch``: from a dataset and a model to a rendered stimulus batch, end to end.

Steps (each reused when its output already exists, so a killed run resumes):

1. the dataset (default: the embedded synthetic one) and a trained model (a given
   checkpoint, or the small model trained once and cached under the data root);
2. the correctly recognised test clips (the attack set);
3. ``motions`` clips in a seeded order stratified by class (round robin over the
   classes in a seeded order, clips shuffled within each class);
4. every clip attacked with SMART and each ablation (same clips, same strategy, same
   threat model), resumable result files in ``<out>.attacks/``; a clip whose attack fails
   for any loss is replaced by the next candidate, so every item's attacked variants all
   fool the model (the naturalness study compares attacks that work);
5. every variant drawn on the original's trajectory (``trajectory="original"``: the
   window's root path, which the canonical motions lack, added to every variant alike, so
   a walk moves through space and nothing but the motion tells the variants apart;
   ``"in-place"`` draws the canonical motions as they are), then the positive control
   and the composites rendered
   (:func:`stimuli.batch.write_batch`, parallel processes, resumable) and the manifest
   written; the attack result files stay beside the batch for ``analysis``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Callable

import numpy as np

from stimuli.batch import BatchItemInput
from stimuli.batch import CompositePlan
from stimuli.batch import ControlSpec
from stimuli.batch import Label
from stimuli.batch import VariantInput
from stimuli.batch import write_batch
from stimuli.batch.schema import ATTACK_VARIANTS
from stimuli.batch.schema import ORIGINAL
from stimuli.errors import DataError
from stimuli.fileio import file_sha256
from stimuli.labels import display_names

from .attack.runs import SHARD_SIZE
from .data.clips import ClipSet
from .data.clips import load_clips
from .data.clips import save_clips
from .jobs import RayExecutor
from .jobs import Runner
from .levels import METRICS
from .levels import grade
from .levels import level_name

__all__ = ["BatchJob", "DEMO_RENDER", "TRAJECTORIES", "stratified_order", "balanced_selection", "build_batch"]

TRAJECTORIES = ("original", "in-place")

# The demo renders at the study's length (6 s) but at 360x360 and 20 fps, and makes only
# the composites the demo study uses (SMART for indistinguishability): about 0.45x the
# pixels of the 480x480, 25 fps setting, so a 20-motion batch renders in about two
# minutes on 2 idle cores.
DEMO_RENDER: dict[str, Any] = {"width": 360, "height": 360, "fps": 20.0, "duration": 6.0}
DEMO_INDIST: tuple[str, ...] = ("original", "smart", "control")
DEMO_LEVELS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
DEMO_LEVEL_METHODS: tuple[str, ...] = ("smart", "l2")
"""The demo's threshold study: SMART and l2 at five strengths each (the composites original|level rendered)."""


@dataclass
class BatchJob:
    """Everything that decides a batch; saved as the manifest's generator config."""

    motions: int = 20
    strategy: str = "ab"
    top_n: int = 3
    losses: tuple[str, ...] = ATTACK_VARIANTS
    iterations: int = 300
    lr: float | None = None
    seed: int = 0
    render: dict[str, Any] = field(default_factory=dict)
    indistinguishability: tuple[str, ...] | None = None
    """Right-hand variants of the original|X composites (None: all)."""
    threat_model: str = "canonical"
    """See :data:`attack_gen.attack.engine.THREAT_MODELS`."""
    trajectory: str = "original"
    """``original``: every variant drawn on the original's root path; ``in-place``: as attacked."""
    balance_labels: bool = True
    """Choose the motions so that each class is as often the true as the SMART-attacked label (label cycles)."""
    display_names: dict[str, str] = field(default_factory=dict)
    """Class name -> the words participants read (overrides :func:`stimuli.labels.display_name`)."""
    levels: tuple[float, ...] = ()
    """Graded strengths in (0, 1] (:mod:`attack_gen.levels`); each below 1 adds a variant per level method."""
    level_methods: tuple[str, ...] | None = None
    """The losses graded (None: every loss)."""
    class_weights: tuple[float, ...] = ()
    """The second strength family: each graded method rerun on the chosen motions at these class weights ``w``
    (``L = w Lc + (1 - w) Lp``), variants ``smart-cw20`` ... of the method ``smart-cw`` (strength ``w``)."""

    def __post_init__(self) -> None:
        if self.trajectory not in TRAJECTORIES:
            raise DataError(f"--trajectory must be one of {', '.join(TRAJECTORIES)}, got {self.trajectory!r}")
        if self.motions < 1:
            raise DataError(f"--motions must be >= 1, got {self.motions}")
        unknown = [loss for loss in self.losses if loss not in ATTACK_VARIANTS]
        if unknown or "smart" not in self.losses:
            raise DataError(
                f"--losses must include smart and come from {', '.join(ATTACK_VARIANTS)}, got {', '.join(self.losses)}"
            )
        self.levels = tuple(float(s) for s in self.levels)
        if any(not 0 < s <= 1 for s in self.levels):
            raise DataError(f"--levels: strengths must be in (0, 1], got {list(self.levels)}")
        self.class_weights = tuple(sorted(float(w) for w in self.class_weights))
        if any(not 0 < w <= 1 for w in self.class_weights) or len(set(self.class_weights)) < len(self.class_weights):
            raise DataError(f"--class-weights: weights must be distinct and in (0, 1], got {list(self.class_weights)}")
        if self.class_weights and not self.levels and not self.level_methods:
            raise DataError("--class-weights: name the methods rerun with --level-methods (or grade them: --levels)")
        stray = [m for m in self.level_methods or () if m not in self.losses]
        if stray:
            raise DataError(f"--level-methods: {', '.join(stray)} not among --losses ({', '.join(self.losses)})")

    @property
    def graded(self) -> dict[str, tuple[float, ...]]:
        """Method -> its strengths below 1 (each a variant of its own; strength 1 is the method's variant)."""
        if not self.levels:
            return {}
        below = tuple(s for s in self.levels if s < 1)
        return {m: below for m in (self.level_methods or self.losses)}

    @property
    def reweighted(self) -> tuple[str, ...]:
        """The methods rerun at :attr:`class_weights`."""
        return tuple(self.level_methods or self.losses) if self.class_weights else ()


def weight_method(method: str) -> str:
    """The class-weight family of ``method`` (``smart`` -> ``smart-cw``)."""
    return f"{method}-cw"


def weight_name(method: str, w: float) -> str:
    """The variant of ``method`` rerun at class weight ``w`` (``smart-cw20`` for 0.2)."""
    return f"{method}-cw{round(w * 100):d}"


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices of ``labels`` in a seeded order that takes one clip per class in turn.

    The classes are visited in a seeded random order, and the clips of each class in a
    seeded random order, so any prefix is as balanced across classes as possible.
    """
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    order: list[int] = []
    while any(queues):
        for q in queues:
            if q:
                order.append(int(q.pop(0)))
    return np.asarray(order, dtype=np.int64)


BALANCE_CANDIDATES = 4
"""Balancing labels, at most this many times ``motions`` candidates are attacked to find label cycles."""


def balanced_selection(true: np.ndarray, attacked: np.ndarray, k: int) -> tuple[list[int], int]:
    """Up to ``k`` of the rows (in priority order) whose labels are balanced: every class as often true as attacked.

    The rows are edges ``true -> attacked`` of the class graph; a balanced set is a union of
    cycles. Greedy: the earliest unused row, closed by the shortest path of the earliest
    unused rows back to its true label, while the cycle fits in ``k``. The rest, if any, are
    the earliest remaining rows (not balanced). Returns the chosen rows in priority order
    and how many of them lie on cycles.
    """
    true, attacked = [int(v) for v in true], [int(v) for v in attacked]
    used = [False] * len(true)
    chosen: list[int] = []
    for start in range(len(true)):
        if used[start] or len(chosen) >= k:
            continue
        path = _path(attacked[start], true[start], true, attacked, used, exclude=start)
        if path is None or len(chosen) + 1 + len(path) > k:
            continue
        for r in [start, *path]:
            used[r] = True
            chosen.append(r)
    on_cycles = len(chosen)
    chosen += [r for r in range(len(true)) if not used[r]][: k - len(chosen)]
    return sorted(chosen), on_cycles


def _path(src: int, dst: int, true: list[int], attacked: list[int], used: list[bool], exclude: int) -> list[int] | None:
    """Rows forming the shortest path of unused rows from class ``src`` to class ``dst`` (earliest rows first)."""
    if src == dst:
        return []
    prev: dict[int, int] = {}
    frontier, seen = [src], {src}
    while frontier:
        nxt = []
        for c in frontier:
            for r in range(len(true)):
                if used[r] or r == exclude or true[r] != c or attacked[r] in seen:
                    continue
                prev[attacked[r]] = r
                if attacked[r] == dst:
                    out, node = [], dst
                    while node != src:
                        out.append(prev[node])
                        node = true[prev[node]]
                    return out[::-1]
                seen.add(attacked[r])
                nxt.append(attacked[r])
        frontier = nxt
    return None


def _label_balance(smart: Any, chosen: list[int], on_cycles: int) -> dict[str, Any]:
    """How far the chosen items' labels are from balance (0: every class as often true as attacked)."""
    b: dict[int, int] = {}
    for k in chosen:
        t, a = int(smart["true_label"][k]), int(smart["final_label"][k])
        b[t] = b.get(t, 0) + 1
        b[a] = b.get(a, 0) - 1
    return {"imbalance": int(sum(abs(v) for v in b.values())), "items_on_cycles": int(on_cycles), "items": len(chosen)}


def _subset(clips: ClipSet, rows: np.ndarray) -> ClipSet:
    meta = dict(clips.meta)
    for key in ("sources", "subjects"):
        if key in meta:
            meta[key] = [meta[key][i] for i in rows]
    return ClipSet(
        clips.motions[rows],
        clips.labels[rows],
        clips.predictions[rows],
        clips.index[rows],
        meta,
        clips.trajectory[rows],
    )


def build_batch(
    out: Path,
    *,
    checkpoint: Path,
    clips_path: Path,
    job: BatchJob,
    workers: int | None = None,
    device: str | None = None,
    progress: bool = True,
    runner: Runner | None = None,
    shard_size: int = SHARD_SIZE,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Attack, render and write the batch at ``out``; returns a summary (see module docstring).

    ``runner`` runs the attack jobs (default: in this process) and, with the ``ray``
    backend, the rendering jobs too; the batch is the same whichever backend made it.
    """
    from .attack import AttackConfig
    from .attack.runs import AttackRun
    from .attack.runs import run_attacks
    from .recognizer import load_checkpoint

    runner = runner or Runner(progress=progress)

    out = Path(out)
    if out.exists():
        raise DataError(f"{out}: already exists (choose another --out or delete it)")
    clips = load_clips(clips_path)
    if len(clips) == 0:
        raise DataError(f"{clips_path}: no correctly recognised clips to attack")
    work = out.parent / f"{out.name}.attacks"
    work.mkdir(parents=True, exist_ok=True)
    order = stratified_order(clips.labels, job.seed)
    candidates_path = work / "candidates.npz"
    save_clips(_subset(clips, order), candidates_path)

    base = {
        "strategy": job.strategy,
        "top_n": job.top_n,
        "iterations": job.iterations,
        "seed": job.seed,
        "threat_model": job.threat_model,
    }
    if job.lr is not None:
        base["lr"] = job.lr
    configs = {loss: AttackConfig(**base, loss=loss) for loss in job.losses}
    tag = "" if job.threat_model == "canonical" else f".{job.threat_model}"
    paths = {loss: work / f"{c.label}.{loss}{tag}.npz" for loss, c in configs.items()}
    results: dict[str, Any] = {}
    summaries: dict[str, Any] = {}
    attack_jobs = {"reused": 0, "ran": 0}
    chosen: list[int] = []
    balanced = 0 if job.balance_labels else job.motions
    target = 0
    cap = len(order) if not job.balance_labels else min(len(order), BALANCE_CANDIDATES * job.motions)
    # attack the candidates in order until `motions` of them are fooled by every loss (and, balancing labels,
    # until as many of them form cycles of true -> attacked labels, or BALANCE_CANDIDATES x motions were tried)
    while (len(chosen) < job.motions and target < len(order)) or (balanced < job.motions and target < cap):
        target = min(len(order), target + max(job.motions - (balanced if job.balance_labels else len(chosen)), 1))
        # every loss's shards in one go, so a cluster attacks them all at once
        runs = [AttackRun(checkpoint, candidates_path, config, paths[loss]) for loss, config in configs.items()]
        done = _attacked(paths[job.losses[0]])
        for (summary, result), loss in zip(
            run_attacks(runs, device=device, limit=max(target - done, 0), runner=runner, shard_size=shard_size),
            configs,
        ):
            summaries[loss], results[loss] = summary, result
        for key in ("reused", "ran"):
            attack_jobs[key] += summary["jobs"][key]
        ok = np.ones(target, dtype=bool)
        for r in results.values():
            ok &= np.asarray(r["success"][:target], dtype=bool)
        fooled = np.flatnonzero(ok)
        if job.balance_labels:
            smart_res = results["smart"]
            chosen, balanced = balanced_selection(
                np.asarray(smart_res["true_label"])[fooled], np.asarray(smart_res["final_label"])[fooled], job.motions
            )
            chosen = fooled[chosen].tolist()
        else:
            chosen = fooled[: job.motions].tolist()
        log(
            f"{len(chosen)} of {job.motions} motions fooled the model under every loss ({target} tried"
            + (f"; {balanced} of them on label cycles)" if job.balance_labels else ")")
        )
    if len(chosen) < job.motions:
        raise DataError(
            f"only {len(chosen)} of {len(order)} clips were fooled under every loss; ask for fewer --motions "
            "or more --iterations"
        )

    reruns = _reweighted(job, base, checkpoint, candidates_path, chosen, work, tag, device, runner, shard_size)
    runner.close()  # the attack workers (and their models) are not needed for rendering
    label_balance = _label_balance(results["smart"], chosen, balanced)
    model, info = load_checkpoint(checkpoint, device)
    cand = load_clips(candidates_path)
    graded = _grade(model, job, configs, results, chosen, float(cand.meta["fps"]))
    del model
    names = cand.class_names
    unknown = sorted(set(job.display_names) - set(names))
    if unknown:
        raise DataError(
            f"--display-names: no class {', '.join(map(repr, unknown))} in the dataset (classes: {', '.join(names)})"
        )
    shown = display_names(names, job.display_names)

    def label(k: int) -> Label:
        return Label(names[k], k, shown[names[k]])

    items = []
    for k in chosen:
        smart = results["smart"]
        # one root path for every variant of the item (zeros in place): it tells no variant apart
        path = cand.trajectory[k][:, None, :] if job.trajectory == "original" else 0.0
        variants: dict[str, VariantInput] = {
            ORIGINAL: VariantInput(cand.motions[k] + path, final_label=label(int(cand.labels[k])), success=None)
        }
        for loss, r in results.items():
            variants[loss] = VariantInput(
                r["adversarial"][k] + path,
                final_label=label(int(r["final_label"][k])),
                success=bool(r["success"][k]),
                metrics={m: float(r[m][k]) for m in METRICS},
                info={
                    "iterations": int(r["iterations"][k]),
                    "robust_success": bool(r["robust_success"][k]),
                    "threat_model": job.threat_model,
                    "method": loss,
                    "strength": 1.0,
                },
            )
        for (loss, w), r in reruns.items():
            j = chosen.index(k)
            variants[weight_name(loss, w)] = VariantInput(
                r["adversarial"][j] + path,
                role="level",
                final_label=label(int(r["final_label"][j])),
                success=bool(r["success"][j]),
                metrics={m: float(r[m][j]) for m in METRICS},
                info={
                    "iterations": int(r["iterations"][j]),
                    "robust_success": bool(r["robust_success"][j]),
                    "threat_model": job.threat_model,
                    "method": weight_method(loss),
                    "strength": w,
                    "class_weight": w,
                },
            )
        for (loss, s), g in graded.items():
            j = chosen.index(k)
            variants[level_name(loss, s)] = VariantInput(
                g["adversarial"][j] + path,
                role="level",
                final_label=label(int(g["final_label"][j])),
                success=bool(g["success"][j]),
                metrics={m: float(g[m][j]) for m in METRICS},
                info={
                    "robust_success": bool(g["robust_success"][j]),
                    "threat_model": job.threat_model,
                    "method": loss,
                    "strength": s,
                },
            )
        items.append(
            BatchItemInput(
                variants=variants,
                true_label=label(int(cand.labels[k])),
                attacked_label=label(int(smart["final_label"][k])),
                source={
                    "dataset": str(cand.meta.get("dataset", {}).get("path")),
                    "window": int(cand.index[k]),
                    "file": str((cand.meta.get("sources") or [None] * len(cand))[k]),
                    "info": {"subject": (cand.meta.get("subjects") or [None] * len(cand))[k]},
                },
                motion_fps=float(cand.meta["fps"]),
            )
        )
    provenance = {
        "dataset": dict(cand.meta.get("dataset", {})),
        "model": {
            "name": info["model"],
            "size": info.get("size"),
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": info["sha256"],
            "class_names": names,
        },
        "attack": {
            "threat_model": job.threat_model,
            "canonical": info.get("canonical"),
            "trajectory": job.trajectory,
            "strategy": job.strategy,
            "label": next(iter(summaries.values()))["label"],
            "losses": list(job.losses),
            "config": {loss: results[loss].record.get("config") for loss in job.losses},
            "result_files": {loss: str(results[loss].path) for loss in job.losses},
            "success_rates": {loss: summaries[loss]["success_rate"] for loss in job.losses},
            "robust_success_rates": {loss: summaries[loss]["robust_success_rate"] for loss in job.losses},
            "label_balance": label_balance,
            "levels": _levels_summary(job, graded, results, chosen, reruns),
        },
    }
    plan = None
    if job.indistinguishability:  # every level gets its original|level composite (naturalness: attacks only)
        levels = [level_name(m, s) for m, s in graded] + [weight_name(m, w) for m, w in reruns]
        graded_methods = [m for m in job.graded if m not in job.indistinguishability]
        plan = CompositePlan(indistinguishability=(*job.indistinguishability, *graded_methods, *levels))
    render_jobs: dict[str, int] = {}
    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if not render_jobs:
            render_jobs.update(total=total, reused=done)
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, initial=done, desc=f"rendering {out.name}", unit="job", file=sys.stderr)
        elif bar is not None:
            bar.update(done - bar.n)

    try:
        batch = write_batch(
            out,
            items,
            render_config=job.render or None,
            generator_config={"job": asdict(job), "clips": str(clips_path), "clips_sha256": file_sha256(clips_path)},
            provenance=provenance,
            composites=plan,
            controls=ControlSpec(seed=job.seed),
            workers=workers,
            executor=RayExecutor(runner.address, runner.num_cpus, runner.retries) if runner.backend == "ray" else None,
            progress=report,
        )
    finally:
        if bar is not None:
            bar.close()
    return {
        "out": str(out),
        "batch_id": batch.batch_id,
        "items": len(batch.items),
        "variants": [
            ORIGINAL,
            *job.losses,
            *(level_name(m, s) for m, s in graded),
            *(weight_name(m, w) for m, w in reruns),
            "control",
        ],
        "levels": provenance["attack"]["levels"],
        "attacks_dir": str(work),
        "threat_model": job.threat_model,
        "trajectory": job.trajectory,
        "success_rates": provenance["attack"]["success_rates"],
        "robust_success_rates": provenance["attack"]["robust_success_rates"],
        "tried": target,
        "model": info["model"],
        "backend": runner.backend,
        "jobs": {"attack": attack_jobs, "render": render_jobs},
    }


def _grade(
    model: Any, job: BatchJob, configs: dict[str, Any], results: dict[str, Any], chosen: list[int], fps: float
) -> dict[tuple[str, float], dict[str, np.ndarray]]:
    """(method, strength) -> the graded blends of the chosen clips (:func:`attack_gen.levels.grade`)."""
    out: dict[tuple[str, float], dict[str, np.ndarray]] = {}
    rows = np.asarray(chosen, dtype=np.int64)
    for loss, strengths in job.graded.items():
        if not strengths:
            continue
        r = results[loss]
        levels = grade(
            model,
            configs[loss].build_strategy(),
            np.asarray(r["original"])[rows],
            np.asarray(r["adversarial"])[rows],
            np.asarray(r["true_label"])[rows],
            np.asarray(r["target"])[rows],
            strengths,
            fps,
            job.threat_model,
        )
        out.update({(loss, s): g for s, g in levels.items()})
    return out


def _reweighted(
    job: BatchJob,
    base: dict[str, Any],
    checkpoint: Path,
    candidates_path: Path,
    chosen: list[int],
    work: Path,
    tag: str,
    device: str | None,
    runner: Runner,
    shard_size: int,
) -> dict[tuple[str, float], Any]:
    """(method, class weight) -> the attack rerun at that weight on the chosen motions (in ``chosen`` order)."""
    from .attack import AttackConfig
    from .attack.runs import AttackRun
    from .attack.runs import run_attacks

    if not job.reweighted:
        return {}
    chosen_path = work / "chosen.npz"
    save_clips(_subset(load_clips(candidates_path), np.asarray(chosen, dtype=np.int64)), chosen_path)
    keys, runs = [], []
    for loss in job.reweighted:
        for w in job.class_weights:
            config = AttackConfig(**base, loss=loss, class_weight=w)
            keys.append((loss, w))
            runs.append(
                AttackRun(checkpoint, chosen_path, config, work / f"{config.label}.{weight_name(loss, w)}{tag}.npz")
            )
    done = run_attacks(runs, device=device, runner=runner, shard_size=shard_size)
    return {key: result for key, (_, result) in zip(keys, done)}


def _levels_summary(
    job: BatchJob,
    graded: dict[tuple[str, float], dict[str, np.ndarray]],
    results: dict[str, Any],
    chosen: list[int],
    reruns: dict[tuple[str, float], Any] | None = None,
) -> dict[str, Any] | None:
    """Per graded method and strength (1 included): its variant, success and robust success rates over the items
    and mean perceptual metrics; the same per class weight for the reruns (method ``smart-cw``)."""
    if not graded and not reruns:
        return None
    rows = np.asarray(chosen, dtype=np.int64)
    out: dict[str, Any] = {"strengths": list(job.levels), "family": "blend q + s (q^ - q)", "methods": {}}
    if reruns:
        out["class_weights"] = list(job.class_weights)
        out["weight_family"] = "the attack rerun at class weight w (strength w)"
        for loss in job.reweighted:
            out["methods"][weight_method(loss)] = [
                {
                    "strength": w,
                    "class_weight": w,
                    "variant": weight_name(loss, w),
                    "success_rate": float(np.mean(reruns[(loss, w)]["success"])),
                    "robust_success_rate": float(np.mean(reruns[(loss, w)]["robust_success"])),
                    **{f"mean_{m}": float(np.mean(reruns[(loss, w)][m])) for m in METRICS},
                }
                for w in job.class_weights
            ]
    for loss in job.graded:
        full = {key: np.asarray(results[loss][key])[rows] for key in ("success", "robust_success", *METRICS)}
        per = []
        for s in sorted({*job.graded[loss], 1.0}):
            g = full if s == 1.0 else graded[(loss, s)]
            per.append(
                {
                    "strength": s,
                    "variant": level_name(loss, s),
                    "success_rate": float(np.mean(g["success"])),
                    "robust_success_rate": float(np.mean(g["robust_success"])),
                    **{f"mean_{m}": float(np.mean(g[m])) for m in METRICS},
                }
            )
        out["methods"][loss] = per
    return out


def _attacked(path: Path) -> int:
    """Clips already attacked in a result file (0 when there is none yet)."""
    from .attack.results import load_result

    return int(load_result(path).done.sum()) if path.exists() else 0
