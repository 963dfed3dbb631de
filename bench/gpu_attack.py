"""GPU readiness: ST-GCN and 2s-AGCN at paper size, 300 iterations, the batched engine against a one-clip loop.

For each model, one run of ``bench/attack_throughput.py``'s measurement: a model at paper
size trained briefly on the synthetic data (the attack's cost does not depend on how well
it is trained, only on its size), then SMART / AB on ``--clips`` clips, batched, against
the plain one-clip loop on a subset; clips/s of each, the ratio, the peak GPU memory of the
batched run, and the share of looped clips with the same outcome and iteration count.

Then the forward and input-gradient pass alone of all five models at paper size, per clip
at the batch size used, so that ``bench/batch_scale.py --costs`` can spread a paper-size
study over GPUs from measured costs (``--costs-out``): a model's shard cost is its
model-only time times the engine's own overhead over it, measured on the two models above.

Full precision throughout: neither mixed precision nor ``torch.compile`` is used by the
engine, so there is no tolerance to state.

    python bench/gpu_attack.py                       # on a CUDA machine: about 3-4 minutes
    python bench/gpu_attack.py --tiny                # CPU, tiny settings: keeps the script working
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attack_throughput  # noqa: E402

from attack_gen.models.registry import build_model  # noqa: E402
from attack_gen.models.registry import list_models  # noqa: E402
from attack_gen.recognizer import Recognizer  # noqa: E402

MODELS = ("stgcn", "agcn")


def model_only_ms(name: str, size: str, clips: int, device: torch.device) -> float:
    """Milliseconds per clip of one forward and input-gradient pass, ``clips`` at once, untrained weights."""
    torch.manual_seed(0)
    model = Recognizer(build_model(name, 65, size), np.zeros((25, 3), np.float32), 1.0).to(device)
    x = np.random.default_rng(0).standard_normal((clips, 60, 25, 3)).astype(np.float32)
    return attack_throughput.model_only_ms(model, x, clips, device, reps=3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU, tiny models, a few clips and iterations.")
    p.add_argument("--clips", type=int, default=None, help="Clips attacked (default 256; tiny 4).")
    p.add_argument("--loop-clips", type=int, default=None, help="Clips in the one-clip loop (default 16; tiny 2).")
    p.add_argument("--costs-out", type=Path, help="Write per-job costs for bench/batch_scale.py --costs.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or with --tiny on the CPU")
    t_start = time.perf_counter()
    device = torch.device("cpu" if args.tiny else "cuda")
    size = "tiny" if args.tiny else "paper"
    clips = args.clips or (4 if args.tiny else 256)
    runs = {}
    for name in MODELS:
        ns = attack_throughput.parser().parse_args([])
        ns.gpu = not args.tiny
        ns.model, ns.size = name, size
        ns.epochs = 3 if args.tiny else 4
        ns.samples_per_class = 6 if args.tiny else 10
        ns.num_clips = clips
        ns.loop_clips = args.loop_clips or (2 if args.tiny else 16)
        ns.iterations = 3 if args.tiny else 300
        ns.json = True
        print(f"{name}: training and attacking ...", file=sys.stderr)
        runs[name] = attack_throughput.measure(ns)
    alone = {m: model_only_ms(m, size, clips, device) for m in list_models()}
    # the engine's work beyond the model's pass, per clip-iteration, on the models run in full
    overhead = float(
        np.mean(
            [
                r["batched"]["seconds"] / max(r["batched"]["clip_iterations"], 1) * 1000 / alone[m]
                for m, r in runs.items()
            ]
        )
    )
    shard = clips
    costs = {
        "source": f"{torch.cuda.get_device_name(0) if device.type == 'cuda' else 'CPU'} ({size} models, "
        f"{shard}-clip shards, model-only time x engine overhead {overhead:.2f})",
        "shard_size": shard,
        "attack_shard_seconds": {m: 300 * shard * ms * overhead / 1000 for m, ms in alone.items()},
    }
    res = {
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "size": size,
        "runs": runs,
        "model_only_ms_per_clip": alone,
        "engine_overhead": overhead,
        "costs": costs,
        "seconds": time.perf_counter() - t_start,
    }
    if args.costs_out:
        args.costs_out.write_text(json.dumps(costs, indent=2))
    if args.json:
        print(json.dumps(res))
        return
    print(
        f"device {res['gpu_name'] or 'cpu'}; {size} models; {clips} clips; at most {runs['stgcn']['iterations_max']} it"
    )
    for m, r in runs.items():
        b, lp = r["batched"], r["one_at_a_time"]
        mem = f"{r['peak_gpu_memory_mib']:.0f} MiB peak" if r["peak_gpu_memory_mib"] is not None else "no GPU"
        print(
            f"  {m:>6}: batched {b['clips_per_s']:8.2f} clips/s, one at a time {lp['clips_per_s']:8.2f} clips/s "
            f"-> {r['speedup_per_clip']:.1f}x per clip ({r['speedup_per_clip_iteration']:.1f}x per clip-iteration); "
            f"{mem}; same outcome {r['same_outcome_share']:.0%}; success {b['successes']}/{r['clips']}"
        )
    print("  model alone, ms per clip at this batch: " + ", ".join(f"{m} {v:.2f}" for m, v in alone.items()))
    print(f"  engine overhead over the model alone: {overhead:.2f}x; whole script {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
