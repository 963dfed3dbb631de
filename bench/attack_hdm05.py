"""White-box SMART on real data: the paper's Tables 1-3 layout with robust success, SMART vs l2,
the paper-literal optimiser, the raw threat model beside the canonical one, and transfer.

For each trained checkpoint (e.g. from ``bench/train_hdm05.py``): collect the correctly
recognised test clips, then attack every one of them with

- ``AB.smart``, ``AB3.smart``, ``AB5.smart``, ``SA.smart``: the four strategies, SMART loss,
  canonical threat model (the default);
- ``AB.l2``: the l2 ablation, for the perceptual comparison;
- ``AB.smart.literal``: the paper read literally (``--precondition none --temperature 1``);
- ``AB.smart.raw``: the raw threat model (the paper's code), to show the gap between success
  and robust success;

and print per model success / robust success, iterations, how often ABN's stop rule fired,
SMART's vs l2's perceptual deviations on the clips both fooled, and (with two or more
checkpoints) the canonical AB transfer matrix. Result files are resumable, so a killed run
continues.

    python bench/attack_hdm05.py --dataset hdm05_xsub.npz --checkpoint a.pt --checkpoint b.pt \\
        [--runs AB.smart,AB.l2] [--limit N] [--iterations 300] [--threads 1] [--out-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attack_gen.attack import AttackConfig  # noqa: E402
from attack_gen.attack.results import MODEL_DISPLAY  # noqa: E402
from attack_gen.attack.results import load_result  # noqa: E402
from attack_gen.attack.runs import run_attack  # noqa: E402
from attack_gen.attack.runs import transfer_cell  # noqa: E402
from attack_gen.cli import run_collect  # noqa: E402
from attack_gen.recognizer import load_checkpoint  # noqa: E402
from stimuli.paths import data_root  # noqa: E402

RUNS = {
    "AB.smart": dict(strategy="ab", loss="smart"),
    "AB3.smart": dict(strategy="abn", top_n=3, loss="smart"),
    "AB5.smart": dict(strategy="abn", top_n=5, loss="smart"),
    "SA.smart": dict(strategy="sa", loss="smart"),
    "AB.l2": dict(strategy="ab", loss="l2"),
    "AB.smart.literal": dict(strategy="ab", loss="smart", precondition="none", temperature=1.0),
    "AB.smart.raw": dict(strategy="ab", loss="smart", threat_model="raw"),
}
METRICS = ("mean_joint_displacement_m", "acceleration_deviation", "bone_length_deviation_m")


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, action="append", required=True)
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated run names (default: all)")
    ap.add_argument("--limit", type=int, help="attack at most this many clips per run (default: every clip)")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        raise SystemExit(f"unknown run(s) {', '.join(unknown)}; known: {', '.join(RUNS)}")
    out_dir = args.out_dir or data_root(create=True) / "attacks" / args.dataset.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)

    report: dict[str, dict] = {}
    results: dict[tuple[str, str], object] = {}
    clip_files = {}
    for ckpt in args.checkpoint:
        clips = out_dir / f"{ckpt.stem}.clips.npz"
        if not clips.is_file():
            run_collect(ckpt, args.dataset, clips, "test", None, True)
        clip_files[ckpt] = clips
        per = report.setdefault(ckpt.stem, {})
        for name in runs:
            config = AttackConfig(iterations=args.iterations, **RUNS[name])
            out = out_dir / f"{ckpt.stem}.{name}.npz"
            s, r = run_attack(ckpt, clips, config, out, limit=args.limit, progress=False)
            results[(ckpt.stem, name)] = r
            per[name] = {
                k: s[k]
                for k in (
                    "model",
                    "attacked",
                    "succeeded",
                    "robust_succeeded",
                    "success_rate",
                    "robust_success_rate",
                    "iterations",
                    "perceptual",
                    "threat_model",
                )
            }
            print(
                f"{ckpt.stem}: {name:17s} success {pct(s['success_rate'])} % / robust "
                f"{pct(s['robust_success_rate'])} % of {s['attacked']} clips; mean iterations to success "
                f"{s['iterations']['mean_success']}",
                flush=True,
            )
        # ABN's stop rule: clips that stopped early had the true label out of the top N
        for name in ("AB3.smart", "AB5.smart"):
            if name in runs:
                r = results[(ckpt.stem, name)]
                n = RUNS[name]["top_n"]
                fired = np.asarray(r["success"]) & (np.asarray(r["iterations"]) < args.iterations)
                left = [int(r["true_label"][i]) not in r["final_topk"][i, :n].tolist() for i in np.flatnonzero(fired)]
                per[name]["stop_rule"] = {"stopped_early": int(fired.sum()), "true_label_out_of_top_n": int(sum(left))}
        # SMART vs l2 on the clips both fooled (robustly)
        if {"AB.smart", "AB.l2"} <= set(runs):
            sm, l2 = results[(ckpt.stem, "AB.smart")], results[(ckpt.stem, "AB.l2")]
            both = np.asarray(sm["robust_success"]) & np.asarray(l2["robust_success"])
            per["smart_vs_l2"] = {
                "clips": int(both.sum()),
                **{k: {"smart": float(np.mean(sm[k][both])), "l2": float(np.mean(l2[k][both]))} for k in METRICS},
            }

    print(f"\nload average {os.getloadavg()[0]:.2f}")
    print("\nsuccess / robust success (%), every correctly recognised test clip; canonical threat model unless marked")
    head = f"{'model':8s} " + " ".join(f"{n:>17s}" for n in runs)
    print(head + "\n" + "-" * len(head))
    for stem, per in report.items():
        model = MODEL_DISPLAY.get(str(per[runs[0]]["model"]), stem)
        print(
            f"{model:8s} "
            + " ".join(f"{pct(per[n]['success_rate']) + ' / ' + pct(per[n]['robust_success_rate']):>17s}" for n in runs)
        )
    print("\nmean iterations to success")
    for stem, per in report.items():
        model = MODEL_DISPLAY.get(str(per[runs[0]]["model"]), stem)
        its = [per[n]["iterations"]["mean_success"] for n in runs]
        print(f"{model:8s} " + " ".join(f"{'-' if v is None else f'{v:.1f}':>17s}" for v in its))
    print("\nSMART vs l2 (AB, canonical) on the clips both fooled: displacement mm, acceleration m/s^2, bone mm")
    for stem, per in report.items():
        c = per.get("smart_vs_l2")
        if c:
            model = MODEL_DISPLAY.get(str(per[runs[0]]["model"]), stem)
            d, a, b = (c[k] for k in METRICS)
            print(
                f"{model:8s} ({c['clips']:3d})  {1e3 * d['smart']:6.2f} / {1e3 * d['l2']:6.2f}   "
                f"{a['smart']:.4f} / {a['l2']:.3f}   {1e3 * b['smart']:.3f} / {1e3 * b['l2']:.3f}   "
                f"acc below: {a['smart'] < a['l2']}, bone below: {b['smart'] < b['l2']}"
            )
    for name in ("AB3.smart", "AB5.smart"):
        for stem, per in report.items():
            if name in per and "stop_rule" in per[name]:
                print(f"{stem} {name} stop rule: {per[name]['stop_rule']}")

    transfer = None
    if len(args.checkpoint) > 1 and "AB.smart" in runs:
        strat = AttackConfig().build_strategy()
        names = [c.stem for c in args.checkpoint]
        transfer = {}
        for t_ckpt in args.checkpoint:
            t_model, _ = load_checkpoint(t_ckpt, "cpu")
            for s_ckpt in args.checkpoint:
                r = results[(s_ckpt.stem, "AB.smart")]
                if s_ckpt == t_ckpt:
                    s = report[s_ckpt.stem]["AB.smart"]
                    cell = {"rate": s["success_rate"], "robust_rate": s["robust_success_rate"]}
                else:
                    cell = transfer_cell(strat, t_model, load_result(r.path), "canonical")
                transfer.setdefault(s_ckpt.stem, {})[t_ckpt.stem] = cell
        print(
            "\ntransfer, AB SMART, canonical (rows surrogate, columns target; success / robust %; diagonal white-box)"
        )
        print(f"{'':28s}" + "".join(f"{n[-12:]:>16s}" for n in names))
        for s in names:
            print(
                f"{s[-28:]:28s}"
                + "".join(
                    f"{pct(transfer[s][t]['rate']) + ' / ' + pct(transfer[s][t]['robust_rate']):>16s}" for t in names
                )
            )
    if args.json:
        args.json.write_text(json.dumps({"report": report, "transfer": transfer}, indent=1, default=str))


if __name__ == "__main__":
    main()
