"""Cross-subject HDM05: train each of the five recognizers and report window accuracy and time.

The foundation issue's bar: on ``hdm05_cut_amc`` (actors bd + bk train, dg test), each
model in its CPU configuration reaches >= 80 % window accuracy. This is a long run
(minutes per model on 2 cores), so it lives here rather than in the test suite, which
checks HRNN only.

    python bench/train_hdm05.py [--models hrnn,stgcn,...] [--size small] [--epochs 200] [--patience 15]
        [--threads 1] [--out results.json]

Training stops when validation has not improved for ``--patience`` epochs (at most
``--epochs``); the epochs used are printed and kept in the checkpoint.

Prints one line per model and a table; ``--out`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attack_gen.data.dataset import load_dataset  # noqa: E402
from attack_gen.data.dataset import save_dataset  # noqa: E402
from attack_gen.data.prepare import SplitSpec  # noqa: E402
from attack_gen.data.prepare import prepare_dataset  # noqa: E402
from attack_gen.models import list_models  # noqa: E402
from attack_gen.train import TrainConfig  # noqa: E402
from attack_gen.train import evaluate  # noqa: E402
from attack_gen.train import train_model  # noqa: E402
from stimuli.paths import data_root  # noqa: E402
from stimuli.paths import shared_data_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(["hrnn", "stgcn", "asgcn", "dgnn", "agcn"]))
    ap.add_argument("--size", default="small")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=15)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dataset", type=Path, help="a prepared dataset (default: prepare it under the data root)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ds_path = args.dataset or data_root(create=True) / "datasets" / "hdm05_xsub.npz"
    if not ds_path.is_file():
        t = time.perf_counter()
        ds = prepare_dataset([shared_data_dir() / "hdm05_cut_amc"], SplitSpec(test_subjects=["dg"]), name="hdm05_xsub")
        save_dataset(ds, ds_path)
        print(f"prepared {ds_path} in {time.perf_counter() - t:.1f} s", flush=True)
    ds = load_dataset(ds_path)
    n_train, n_test = int((ds.split == 0).sum()), int((ds.split == 1).sum())
    print(f"dataset: {n_train} train / {n_test} test windows, {ds.num_classes} classes", flush=True)

    rows = []
    for name in args.models.split(","):
        if name not in list_models():
            raise SystemExit(f"unknown model {name!r}; known: {', '.join(list_models())}")
        cfg = TrainConfig(
            model=name, size=args.size, epochs=args.epochs, lr=args.lr, seed=args.seed, patience=args.patience
        )
        suffix = "" if args.seed == 0 else f"-seed{args.seed}"
        ckpt = data_root() / "checkpoints" / f"{ds_path.stem}-{name}-{args.size}{suffix}.pt"
        model, info = train_model(ds, cfg, out=ckpt, dataset_path=ds_path, progress=False)
        res = evaluate(model, ds.part("test"))
        params = sum(p.numel() for p in model.backbone.parameters())
        row = {
            "model": name,
            "size": args.size,
            "test_accuracy": res.accuracy,
            "best_epoch": info["train"]["best_epoch"],
            "epochs_run": info["train"]["epochs_run"],
            "stopped": info["train"]["stopped"],
            "train_seconds": info["train"]["seconds"],
            "params": params,
            "checkpoint": str(ckpt),
        }
        rows.append(row)
        print(
            f"{name:6s} accuracy {res.accuracy:6.2%}  best epoch {row['best_epoch']:3d} of {row['epochs_run']:3d} "
            f"({row['stopped']})  {row['train_seconds']:7.1f} s  {params:,} params",
            flush=True,
        )

    print(f"\nload average {os.getloadavg()[0]:.2f}")
    print("model   accuracy  >=80%   best/run epochs  train s")
    for r in rows:
        print(
            f"{r['model']:6s}  {r['test_accuracy']:7.2%}  {'yes' if r['test_accuracy'] >= 0.8 else 'NO':5s}  "
            f"{r['best_epoch']:4d}/{r['epochs_run']:<4d}  {r['train_seconds']:8.1f}"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"dataset": str(ds_path), "epochs": args.epochs, "threads": args.threads, "results": rows}, indent=1
            )
        )


if __name__ == "__main__":
    main()
