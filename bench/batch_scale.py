"""The same stimulus batch with ``--backend local`` and ``--backend ray``, and how a paper-size study would spread.

Part 1, measured on this machine: one ``attack-gen batch`` (a small ST-GCN trained once on
the synthetic data; ``--motions`` motions, every loss, the demo's 360x360 video) made
three ways in one run, each repeated ``--repeats`` times in turn:

- ``local, 1 worker``: every job in this process, one after another (the baseline);
- ``local, N workers``: a process pool on the machine's N cores;
- ``ray, N CPUs``: a local Ray started by the command itself (``ray.init()``), N actors.

Whole commands are timed (Ray's start-up included). Printed: the wall times (median),
Ray's overhead over the local pool (goal <= 15 %), and the job-level parallel efficiency
of each (``T(1 worker) / (N x T(N))``). The batches are checked to be equal file by file.

Part 2, on paper: the work of a paper-size study (5 models x 4 losses x 4 strategies x 3
datasets, each attacked in shards of ``--shard-size`` clips, then one batch per dataset,
model and strategy rendered) spread over N workers by longest-job-first list scheduling,
from per-job costs: measured here (each model at paper size, forward and input-gradient of
one shard, one CPU thread, times 300 iterations: a lower bound of the engine's cost; a
rendering job per item at the default 480x480, 30 fps, 6 s), or read from ``--costs FILE``
(the JSON ``bench/gpu_attack.py`` writes on a GPU). The attack-set sizes are assumptions
(``--clips-per-dataset``), printed with the figure.

    python bench/batch_scale.py                  # about 10 minutes on two idle cores
    python bench/batch_scale.py --motions 4 --repeats 1 --skip-costs   # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ("stgcn", "agcn", "asgcn", "dgnn", "hrnn")
LOSSES = 4
STRATEGIES = 4
DATASETS = ("hdm05", "mhad", "ntu")


def _cli(*args: str, env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "attack_gen.cli", *args, "--json"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"attack-gen {' '.join(args[:1])} failed: {res.stderr.strip()[-2000:]}")
    return seconds, json.loads(res.stdout.strip().splitlines()[-1])


def _digest(batch: Path) -> str:
    """SHA-256 over every file's path and bytes, the manifest without its creation time and backend."""
    h = hashlib.sha256()
    for p in sorted(batch.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if p.name == "manifest.json":
            m = json.loads(data)
            m.pop("created_utc", None)
            data = json.dumps(m, sort_keys=True).encode()
        h.update(str(p.relative_to(batch)).encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def measure_backends(args: argparse.Namespace, work: Path) -> dict:
    env = {**os.environ, "SMART_STUDY_DATA": str(work / "data"), "PYTHONPATH": str(ROOT)}
    t_train, _ = _cli("demo", "--epochs", "6", env=env)
    ckpt = work / "data" / "checkpoints" / "demo-stgcn.pt"
    clips = work / "data" / "clips" / "demo-stgcn.npz"
    n = args.workers
    ways = {
        "local, 1 worker": ["--backend", "local", "--workers", "1"],
        f"local, {n} workers": ["--backend", "local", "--workers", str(n)],
        f"ray, {n} CPUs": ["--backend", "ray", "--workers", str(n)],
    }
    base = [
        "batch",
        "--checkpoint",
        str(ckpt),
        "--clips",
        str(clips),
        "--motions",
        str(args.motions),
        "--width",
        "360",
        "--height",
        "360",
        "--fps",
        "20",
        "--indist",
        "original,smart,control",
    ]
    times: dict[str, list[float]] = {w: [] for w in ways}
    digests: dict[str, set[str]] = {w: set() for w in ways}
    for rep in range(args.repeats):
        order = list(ways) if rep % 2 == 0 else list(reversed(ways))  # alternate, so drift hits all alike
        for way in order:
            out = work / "batches" / f"run-{rep}-{list(ways).index(way)}"
            # one path for every batch (paths are in the manifest): each run is made at ``same`` and moved away
            same = work / "batches" / "same"
            seconds, summary = _cli(*base, "--out", str(same), *ways[way], env=env)
            digests[way].add(_digest(same))
            same.rename(out)
            same.with_name("same.attacks").rename(out.with_name(out.name + ".attacks"))
            times[way].append(seconds)
            print(
                f"  {way:>18}: {seconds:6.1f} s  (attack jobs run {summary['jobs']['attack']['ran']}, "
                f"render jobs {summary['jobs']['render']['total']}; load {os.getloadavg()[0]:.2f})",
                file=sys.stderr,
            )
    med = {w: statistics.median(t) for w, t in times.items()}
    serial, local_n, ray_n = (med[w] for w in ways)
    return {
        "train_seconds": t_train,
        "motions": args.motions,
        "workers": n,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": med,
        "ray_over_local": ray_n / local_n,
        "efficiency": {list(ways)[1]: serial / (n * local_n), list(ways)[2]: serial / (n * ray_n)},
        "same_batch": len(set().union(*digests.values())) == 1,
    }


# ---- part 2: a paper-size study on paper -------------------------------------------------------------
def measure_costs(shard: int) -> dict:
    """Seconds per shard (300 iterations, forward + input gradient, one thread) per model; seconds per rendered item."""
    import numpy as np
    import torch

    from attack_gen.models.registry import build_model
    from attack_gen.recognizer import Recognizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(shard, 60, 25, 3)
    per_iteration = {}
    for name in MODELS:
        model = Recognizer(build_model(name, 65, "paper"), np.zeros((25, 3), np.float32), 1.0).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        z = x.clone().requires_grad_(True)
        model(z).sum().backward()  # warm-up
        t0 = time.perf_counter()
        for _ in range(2):
            z.grad = None
            model(z).sum().backward()
        per_iteration[name] = (time.perf_counter() - t0) / 2
        print(f"  {name:>6} paper size: {per_iteration[name]:.2f} s per iteration of {shard} clips", file=sys.stderr)
    return {
        "source": "this machine's CPU, one thread per job",
        "shard_size": shard,
        "attack_shard_seconds": {m: 300 * s for m, s in per_iteration.items()},
    }


def render_cost() -> float:
    """Seconds to render one item on one CPU thread, as a batch does, at the default video settings."""
    import numpy as np

    from attack_gen.data.synthetic import generate_motion
    from stimuli.render import Camera
    from stimuli.render import RenderConfig
    from stimuli.render import VideoOutput
    from stimuli.render import render_many

    # one item as a batch renders it: 6 variants, 6 naturalness composites (3 pairs x 2 orders), 3 side by side
    cfg = RenderConfig()
    rng = np.random.default_rng(0)
    base = generate_motion("wave_right", seed=0, num_frames=60).positions
    names = ["original", "smart", "l2", "l2-acc", "l2-bone", "control"]
    motions = {n: base + 0.01 * k * rng.standard_normal(base.shape).astype(np.float32) for k, n in enumerate(names)}
    cam = Camera.fit(list(motions.values()), cfg)
    pairs = [("smart", "l2"), ("smart", "l2-acc"), ("smart", "l2-bone")]
    videos = [(n, None) for n in names]
    videos += [p for a, b in pairs for p in ((a, b), (b, a))]
    videos += [("original", "original"), ("original", "smart"), ("original", "control")]
    with tempfile.TemporaryDirectory() as d:
        outs = [VideoOutput(Path(d) / f"{i}.mp4", a, b, Path(d) / f"{i}.png") for i, (a, b) in enumerate(videos)]
        t0 = time.perf_counter()
        render_many(motions, outs, cam, cfg, 30.0)
        render_item = time.perf_counter() - t0
    print(f"  render: {render_item:.1f} s per item at {cfg.width}x{cfg.height}, {cfg.fps:g} fps", file=sys.stderr)
    return render_item


def makespan(costs: list[float], workers: int) -> float:
    """Longest-processing-time-first list scheduling on ``workers`` identical workers."""
    finish = [0.0] * workers
    heapq.heapify(finish)
    for c in sorted(costs, reverse=True):
        heapq.heappush(finish, heapq.heappop(finish) + c)
    return max(finish)


def simulate(costs: dict, clips: dict[str, int], shard: int, motions: int, ns: list[int]) -> list[dict]:
    attack = [
        costs["attack_shard_seconds"][m] * min(shard, clips[d] - k * shard) / shard
        for d in DATASETS
        for m in MODELS
        for _ in range(LOSSES * STRATEGIES)
        for k in range(math.ceil(clips[d] / shard))
    ]
    render = [costs["render_item_seconds"]] * (len(DATASETS) * len(MODELS) * STRATEGIES * motions)
    total = sum(attack) + sum(render)
    rows = []
    for n in ns:
        span = makespan(attack, n) + makespan(render, n)  # rendering after the attacks: an upper bound
        rows.append({"workers": n, "hours": span / 3600, "efficiency": total / (n * span)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--motions", type=int, default=12, help="Motions in the measured batch.")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--shard-size", type=int, default=16)
    p.add_argument("--study-motions", type=int, default=50, help="Motions per rendered batch of the paper study.")
    p.add_argument(
        "--clips-per-dataset",
        default="hdm05=1000,mhad=500,ntu=2000",
        help="Assumed attack-set sizes (correctly recognised test clips) of the paper study.",
    )
    p.add_argument("--costs", type=Path, help="Per-job costs JSON (from bench/gpu_attack.py --costs-out).")
    p.add_argument("--skip-backends", action="store_true")
    p.add_argument("--skip-costs", action="store_true", help="Part 2 with --costs only (or not at all).")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    res: dict = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="batch-scale-") as d:
        if not args.skip_backends:
            res["backends"] = b = measure_backends(args, Path(d))
            if not args.json:
                print(f"\nthe same batch ({b['motions']} motions, all four losses), median of {b['repeats']}:")
                for way, s in b["median_seconds"].items():
                    print(f"  {way:>18}: {s:6.1f} s")
                print(f"  Ray over the local pool: {b['ray_over_local']:.3f}x (goal <= 1.15)")
                for way, e in b["efficiency"].items():
                    print(f"  parallel efficiency, {way}: {e:.0%}")
                print(f"  the batches are equal file by file: {b['same_batch']}")
    costs = json.loads(args.costs.read_text()) if args.costs else None
    if costs is None and not args.skip_costs:
        costs = measure_costs(args.shard_size)
    if costs is not None:
        costs.setdefault("render_item_seconds", render_cost())  # rendering is CPU work on any cluster
        args.shard_size = costs.get("shard_size", args.shard_size)
        clips = {k: int(v) for k, v in (kv.split("=") for kv in args.clips_per_dataset.split(","))}
        ns = [1, 2, 4, 8, 16, 32, 64, 256, 1024]
        res["costs"] = costs
        res["study"] = rows = simulate(costs, clips, args.shard_size, args.study_motions, ns)
        if not args.json:
            jobs = sum(math.ceil(c / args.shard_size) for c in clips.values()) * len(MODELS) * LOSSES * STRATEGIES
            print(
                f"\na paper-size study on paper: {jobs} attack shards ({args.shard_size} clips, 300 iterations; "
                f"attack sets assumed {clips}) + "
                f"{len(DATASETS) * len(MODELS) * STRATEGIES * args.study_motions} rendered items; costs from "
                f"{costs['source']}"
            )
            print("  " + ", ".join(f"{m} {s:.0f} s" for m, s in costs["attack_shard_seconds"].items()), "per shard;")
            print(f"  {costs['render_item_seconds']:.1f} s per rendered item")
            for r in rows:
                print(f"  {r['workers']:>3} workers: {r['hours']:8.1f} h   efficiency {r['efficiency']:.0%}")
    print(f"load average after: {os.getloadavg()}", file=sys.stderr)
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
