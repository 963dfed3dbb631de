"""White-box SMART on real data: the paper's Tables 1-3 layout plus the SMART-vs-l2 comparison.

For each trained checkpoint (e.g. from ``bench/train_hdm05.py``): collect the correctly
recognised test clips, then attack them with AB, AB3, AB5 and SA (``smart`` loss) and AB
with the ``l2`` loss, and print the success table (rows models, columns AB / AB3 / AB5 /
SA), iterations, how often ABN's stop rule fired, and SMART's vs l2's perceptual
deviations on the same clips. Result files are resumable, so a killed run continues.

    python bench/attack_hdm05.py --dataset hdm05_xsub.npz --checkpoint a.pt --checkpoint b.pt \\
        [--limit 32] [--full AB.smart] [--iterations 300] [--threads 1] [--out-dir DIR] [--json FILE]

``--limit`` attacks the first N clips of each run; ``--full LABEL.LOSS`` (repeatable, e.g.
``AB.smart``) attacks every clip in that run all the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attack_gen.attack import AttackConfig  # noqa: E402
from attack_gen.attack.commands import run_attack  # noqa: E402
from attack_gen.attack.results import success_table  # noqa: E402
from attack_gen.cli import run_collect  # noqa: E402
from stimuli.paths import data_root  # noqa: E402

RUNS = (("ab", 3, "smart"), ("abn", 3, "smart"), ("abn", 5, "smart"), ("sa", 3, "smart"), ("ab", 3, "l2"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, action="append", required=True)
    ap.add_argument("--limit", type=int, help="attack at most this many clips per run")
    ap.add_argument("--full", action="append", default=[], metavar="LABEL.LOSS",
                    help="a run (e.g. AB.smart) that attacks every clip despite --limit")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out_dir = args.out_dir or data_root(create=True) / "attacks" / args.dataset.stem
    out_dir.mkdir(parents=True, exist_ok=True)

    summaries, report = [], []
    for ckpt in args.checkpoint:
        clips = out_dir / f"{ckpt.stem}.clips.npz"
        if not clips.is_file():
            run_collect(ckpt, args.dataset, clips, "test", None, True)
        per_model = {}
        for strategy, top_n, loss in RUNS:
            config = AttackConfig(strategy=strategy, top_n=top_n, loss=loss, iterations=args.iterations)
            out = out_dir / f"{ckpt.stem}.{config.label}.{loss}.npz"
            limit = None if f"{config.label}.{loss}" in args.full else args.limit
            s, r = run_attack(ckpt, clips, config, out, limit=limit, progress=False)
            per_model[f"{config.label}.{loss}"] = (s, r)
            if loss == "smart":
                summaries.append(s)
            done = r.done & (r["status"] != "skipped")
            line = (f"{ckpt.stem}: {config.label:4s} {loss:6s} success {s['success_rate']:.2%} of "
                    f"{int(done.sum())} clips, mean iterations to success {s['iterations']['mean_success']}")
            print(line, flush=True)
        # SMART vs l2 on the clips both fooled
        s_res, l_res = per_model["AB.smart"][1], per_model["AB.l2"][1]
        both = np.asarray(s_res["success"]) & np.asarray(l_res["success"])
        cmp = {}
        for key in ("mean_joint_displacement_m", "acceleration_deviation", "bone_length_deviation_m"):
            cmp[key] = {"smart": float(np.mean(s_res[key][both])), "l2": float(np.mean(l_res[key][both]))}
        # ABN's stop rule: clips that stopped early because the true label left the top N
        abn = {}
        for label in ("AB3", "AB5"):
            r = per_model[f"{label}.smart"][1]
            fired = np.asarray(r["success"]) & (np.asarray(r["iterations"]) < args.iterations)
            n = int(label[2:])
            left = [int(r["true_label"][i]) not in r["final_topk"][i, :n].tolist() for i in np.flatnonzero(fired)]
            abn[label] = {"stopped_early": int(fired.sum()), "true_label_out_of_top_n": int(sum(left))}
        report.append({"checkpoint": str(ckpt), "smart_vs_l2_on_common_successes": cmp, "abn_stop_rule": abn,
                       "n_common": int(both.sum())})
        print(f"{ckpt.stem}: SMART vs l2 on {int(both.sum())} clips both fooled: " + "; ".join(
            f"{k} {v['smart']:.4g} vs {v['l2']:.4g}" for k, v in cmp.items()), flush=True)
        print(f"{ckpt.stem}: ABN stop rule: {abn}", flush=True)

    print()
    print(success_table(summaries))
    if args.json:
        args.json.write_text(json.dumps({"summaries": summaries, "report": report}, indent=1, default=str))


if __name__ == "__main__":
    main()
