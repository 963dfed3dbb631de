"""Throughput of the batched SMART engine against a one-clip-at-a-time loop.

Same model, same clips, same settings, in one run:

- **batched**: :func:`attack_gen.attack.attack` with all clips in one batch (clips
  leave as they succeed);
- **one at a time**: a plain loop, one clip after another, each with its own
  ``torch.optim.Adam`` and the same losses, stopping as soon as the clip succeeds.

Both stop early, so both do the same number of clip-iterations; the ratio is what
batching buys. The loop also cross-checks the engine: the share of clips with the same
outcome and iteration count is printed. So is the bound on any batched engine: the model's
forward and input-gradient pass alone, per clip, one clip at a time and all clips at once.
The loop's time per clip-iteration over the latter is the largest speed-up batching could
give on this device (on a CPU, where a convolution costs about the same per clip at any
batch size, it is small).

CPU (default): a small model trained for a few epochs on the embedded synthetic data::

    python bench/attack_throughput.py                       # ST-GCN small, 64 clips, 100 iterations
    python bench/attack_throughput.py --checkpoint C.pt --clips CLIPS.npz

GPU: ``--gpu`` uses ST-GCN at paper size, 300 iterations, on CUDA, and times the loop on
a subset of ``--loop-clips`` clips (its time per clip is the same for every clip count).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attack_gen.attack import AttackConfig  # noqa: E402
from attack_gen.attack import attack  # noqa: E402
from attack_gen.attack.engine import _frozen  # noqa: E402
from attack_gen.attack.engine import dof_projection  # noqa: E402
from attack_gen.attack.engine import project  # noqa: E402
from attack_gen.attack.engine import resolve_targets  # noqa: E402
from attack_gen.attack.losses import apply_in_space  # noqa: E402
from attack_gen.attack.losses import apply_in_time  # noqa: E402
from attack_gen.attack.losses import bone_lengths  # noqa: E402
from attack_gen.attack.losses import bone_preconditioner  # noqa: E402
from attack_gen.attack.losses import dynamics_preconditioner  # noqa: E402
from attack_gen.attack.losses import joint_weights  # noqa: E402
from attack_gen.attack.losses import perceptual_loss  # noqa: E402
from attack_gen.attack.losses import perceptual_terms  # noqa: E402
from attack_gen.recognizer import Recognizer  # noqa: E402
from attack_gen.recognizer import pipeline_logits  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def one_at_a_time(
    model: Recognizer, x: np.ndarray, y: np.ndarray, targets: np.ndarray, fps: float, cfg: AttackConfig
) -> list[tuple[str, int]]:
    """The reference loop: one clip, ``torch.optim.Adam``, early stop. Returns (status, iterations) per clip.

    The same optimisation as the engine: Adam on ``u`` with ``z = z0 + T P S u`` when the config
    preconditions (``S`` within frames, then ``P`` along time; ``T`` the canonical threat
    model's degrees of freedom), the class loss on ``logits / temperature``, and under the
    canonical threat model the model's own preprocessing and the re-preprocessed check of a
    success.
    """
    canonical = cfg.threat_model == "canonical"
    proj = dof_projection(model.spec, model.mean.device) if canonical else None
    device = model.mean.device
    strategy = cfg.build_strategy()
    weights = cfg.term_weights()
    precond = (
        dynamics_preconditioner(x.shape[1], fps, weights, device=device)
        if cfg.precondition in ("perceptual", "dynamics")
        else None
    )
    temperature = float(cfg.temperature or 1.0)
    gamma = joint_weights(spine=cfg.gamma_spine, other=cfg.gamma_other, device=device)
    offset = model.mean / model.std
    out = []
    from attack_gen.attack.strategies import ClassContext

    for i in range(len(x)):
        q = torch.as_tensor(x[i : i + 1], device=device)
        if canonical:
            q = model.canonical(q)
        z0 = model.normalise(q)
        g0 = z0 + offset
        bl0 = bone_lengths(g0)
        s = bone_preconditioner(g0, weights, gamma) if cfg.precondition == "perceptual" else None
        changed = precond is not None or s is not None or proj is not None
        u = (torch.zeros_like(z0) if changed else z0.clone()).requires_grad_(True)
        opt = torch.optim.Adam([u], lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)
        t = torch.as_tensor(y[i : i + 1], device=device)
        ctx = ClassContext(t, t, torch.zeros(1, 1, device=device), torch.as_tensor(targets[i : i + 1], device=device))
        status, step = "failed", cfg.iterations
        for k in range(cfg.iterations + 1):
            z = z0 + project(proj, apply_in_time(precond, apply_in_space(s, u, gamma))) if changed else u
            logits = model.classify(model.unnormalise(z)) if canonical else model(z)
            if k == 0:
                ctx.original = logits.argmax(-1).detach()
                if int(ctx.original) != int(t):
                    status, step = "skipped", 0
                    break
            if bool(strategy.success(logits, ctx)) and (
                not canonical
                or bool(
                    strategy.success(
                        pipeline_logits(model, model.unnormalise(z).detach().cpu().numpy()).to(device), ctx
                    )
                )
            ):
                status, step = "success", k
                break
            if k == cfg.iterations:
                break
            lp = perceptual_loss(perceptual_terms(g0, z + offset, fps, gamma=gamma, bone_reference=bl0), weights)
            lc = strategy.class_loss(logits / temperature, ctx)
            loss = cfg.class_weight * lc + (1 - cfg.class_weight) * lp
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        out.append((status, step))
    return out


def model_only_ms(model: Recognizer, x: np.ndarray, batch: int, device: torch.device, reps: int = 3) -> float:
    """Milliseconds per clip of the model's forward and input-gradient backward pass alone, ``batch`` clips at once.

    What any engine pays per clip-iteration at that batch size; the loop's time per
    clip-iteration over the batched one of this at the full batch bounds what batching can buy.
    """
    xb = torch.as_tensor(np.ascontiguousarray(x[:batch]), device=device)
    with _frozen(model):  # eval mode, no parameter gradients, as in the engine
        z = model.normalise(xb).detach().requires_grad_(True)
        model(z).sum().backward()  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            z.grad = None
            model(z).sum().backward()
        _sync(device)
    return (time.perf_counter() - t0) / reps / len(xb) * 1000


def prepare(args: argparse.Namespace, device: torch.device) -> tuple[Recognizer, np.ndarray, np.ndarray, float, str]:
    """The model and the clips: given files, or a quickly trained model on synthetic data."""
    from attack_gen.data.clips import load_clips
    from attack_gen.recognizer import load_checkpoint

    if args.checkpoint:
        model, info = load_checkpoint(args.checkpoint, device)
        clips = load_clips(args.clips)
        x, y, fps = clips.motions, clips.labels, float(clips.meta["fps"])
        what = f"{info['model']} ({info.get('size')}) from {args.checkpoint}"
    else:
        from attack_gen.data.prepare import prepare_synthetic
        from attack_gen.train import TrainConfig
        from attack_gen.train import predict
        from attack_gen.train import train_model

        ds = prepare_synthetic(samples_per_class=args.samples_per_class, seed=0)
        t0 = time.perf_counter()
        cfg = TrainConfig(model=args.model, size=args.size, epochs=args.epochs, batch_size=32, val_fraction=0.0)
        out = Path(args.work_dir) / f"bench-{args.model}-{args.size}.pt"
        model, _ = train_model(ds, cfg, out=out, device=str(device), progress=False)
        test = ds.part("test")
        pred = predict(model, test.motions).argmax(1)
        ok = pred == test.labels
        x, y, fps = test.motions[ok], test.labels[ok], ds.fps
        what = (
            f"{args.model} ({args.size}) trained {args.epochs} epochs on synthetic data in "
            f"{time.perf_counter() - t0:.0f} s; test accuracy {ok.mean():.0%}"
        )
    if len(x) == 0:
        raise SystemExit("no correctly recognised clips to attack")
    reps = int(np.ceil(args.num_clips / len(x)))
    x = np.concatenate([x] * reps)[: args.num_clips]
    y = np.concatenate([y] * reps)[: args.num_clips]
    return model, x, y, fps, what


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true", help="CUDA, ST-GCN paper size, 300 iterations.")
    p.add_argument("--model", default="stgcn")
    p.add_argument("--size", default=None, help="Model size (default: small on CPU, paper with --gpu).")
    p.add_argument("--epochs", type=int, default=None, help="Training epochs (default: 4 CPU, 10 GPU).")
    p.add_argument("--samples-per-class", type=int, default=10)
    p.add_argument("--checkpoint", help="Use this checkpoint (with --clips) instead of training one.")
    p.add_argument("--clips")
    p.add_argument("--num-clips", type=int, default=None, help="Default 64 (CPU), 256 (GPU).")
    p.add_argument(
        "--loop-clips",
        type=int,
        default=None,
        help="Clips timed in the one-at-a-time loop (default: all on CPU, 16 on GPU).",
    )
    p.add_argument("--iterations", type=int, default=None, help="Default 100 (CPU), 300 (GPU).")
    p.add_argument("--strategy", default="ab")
    p.add_argument("--loss", default="smart")
    p.add_argument("--threat-model", choices=("canonical", "raw"), default="canonical")
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    p.add_argument("--work-dir", default="/tmp")
    p.add_argument("--json", action="store_true")
    return p


def measure(args: argparse.Namespace) -> dict:
    """Run the benchmark for ``args`` (see :func:`parser`); returns the figures (also the peak GPU memory)."""
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: CUDA is not available on this machine")
    device = torch.device("cuda" if args.gpu else "cpu")
    args.size = args.size or ("paper" if args.gpu else "small")
    args.epochs = args.epochs if args.epochs is not None else (10 if args.gpu else 4)
    args.num_clips = args.num_clips or (256 if args.gpu else 64)
    args.iterations = args.iterations or (300 if args.gpu else 100)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model, x, y, fps, what = prepare(args, device)
    cfg = AttackConfig(
        strategy=args.strategy,
        loss=args.loss,
        iterations=args.iterations,
        lr=args.lr,
        threat_model=args.threat_model,
        batch_size=len(x),
    )
    targets = resolve_targets(cfg, y, len(model(model.normalise(torch.as_tensor(x[:1], device=device)))[0]))
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    log(f"model: {what}; device {device}; torch threads {torch.get_num_threads()}")
    log(f"{len(x)} clips x {x.shape[1]} frames, {cfg.strategy} / {cfg.loss}, at most {cfg.iterations} iterations")

    # warm-up (allocator, kernels), not timed
    attack(model, x[:2], y[:2], fps=fps, config=AttackConfig(**{**cfg.to_json(), "iterations": 2}), targets=targets[:2])
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    batched = attack(model, x, y, fps=fps, config=cfg, targets=targets)
    _sync(device)
    t_batched = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None

    n_loop = min(args.loop_clips or (16 if args.gpu else len(x)), len(x))
    t0 = time.perf_counter()
    loop = one_at_a_time(model, x[:n_loop], y[:n_loop], targets[:n_loop], fps, cfg)
    _sync(device)
    t_loop = time.perf_counter() - t0

    ms_one = model_only_ms(model, x, 1, device, reps=16)
    ms_all = model_only_ms(model, x, len(x), device)
    its_b = int(sum(r.iterations for r in batched))
    its_b_sub = int(sum(r.iterations for r in batched[:n_loop]))
    its_l = int(sum(k for _, k in loop))
    same = float(np.mean([(r.status, r.iterations) == s for r, s in zip(batched, loop)]))
    per_clip_loop = t_loop / n_loop
    per_clip_batched = t_batched / len(x)
    # time per clip-iteration makes the loop comparable when it ran on a subset
    ratio_clip_its = (t_loop / max(its_l, 1)) / (t_batched / max(its_b, 1))
    res = {
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "model": what,
        "clips": len(x),
        "frames": int(x.shape[1]),
        "iterations_max": cfg.iterations,
        "strategy": cfg.strategy,
        "loss": cfg.loss,
        "batched": {
            "seconds": t_batched,
            "clips_per_s": len(x) / t_batched,
            "clip_iterations": its_b,
            "successes": sum(r.success for r in batched),
        },
        "one_at_a_time": {
            "clips": n_loop,
            "seconds": t_loop,
            "clips_per_s": n_loop / t_loop,
            "clip_iterations": its_l,
            "successes": sum(s == "success" for s, _ in loop),
        },
        "speedup_per_clip": per_clip_loop / per_clip_batched,
        "speedup_per_clip_iteration": ratio_clip_its,
        "same_outcome_share": same,
        "model_only_ms_per_clip": {"batch_1": ms_one, f"batch_{len(x)}": ms_all},
        "speedup_bound_per_clip_iteration": (t_loop / max(its_l, 1) * 1000) / ms_all,
        "clip_iterations_batched_on_loop_subset": its_b_sub,
        "peak_gpu_memory_mib": peak,
    }
    return res


def main() -> None:
    args = parser().parse_args()
    res = measure(args)
    t_batched, t_loop, n_loop = (
        res["batched"]["seconds"],
        res["one_at_a_time"]["seconds"],
        res["one_at_a_time"]["clips"],
    )
    its_b, its_l, same = (
        res["batched"]["clip_iterations"],
        res["one_at_a_time"]["clip_iterations"],
        res["same_outcome_share"],
    )
    ratio_clip_its = res["speedup_per_clip_iteration"]
    ms_one, ms_all = res["model_only_ms_per_clip"].values()
    x_len = res["clips"]
    if args.json:
        print(json.dumps(res))
        return
    print(
        f"batched:        {t_batched:8.2f} s  {res['batched']['clips_per_s']:8.2f} clips/s  "
        f"({its_b} clip-iterations, {res['batched']['successes']}/{x_len} succeeded)"
    )
    print(
        f"one at a time:  {t_loop:8.2f} s  {res['one_at_a_time']['clips_per_s']:8.2f} clips/s  "
        f"({its_l} clip-iterations on {n_loop} clips, {res['one_at_a_time']['successes']}/{n_loop} succeeded)"
    )
    print(
        f"speed-up: {res['speedup_per_clip']:.1f}x per clip, {ratio_clip_its:.1f}x per clip-iteration; "
        f"same outcome and iteration count for {same:.0%} of the looped clips"
    )
    print(
        f"model alone (forward + input gradient): {ms_one:.2f} ms per clip one at a time, {ms_all:.2f} ms per clip "
        f"{x_len} at a time; the loop's {t_loop / max(its_l, 1) * 1000:.2f} ms per clip-iteration over the latter "
        f"bounds any batched engine's speed-up here at {res['speedup_bound_per_clip_iteration']:.1f}x"
    )


if __name__ == "__main__":
    main()
