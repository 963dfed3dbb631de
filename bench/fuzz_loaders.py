"""Fuzz every motion loader on short real files and print tried / clean error / accepted per format.

    python bench/fuzz_loaders.py [--mutations 1000] [--seed 0]

The same mutations and judgement as ``tests/test_loader_fuzz.py`` (``tests/fuzzing.py``), more
of them: a run fails (exit 1) on the first mutation that gives anything but the loader's own
one-line error or a plausible motion.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fuzzing import base_files  # noqa: E402
from fuzzing import judge  # noqa: E402
from fuzzing import mutate  # noqa: E402

from stimuli.paths import shared_data_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutations", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "base").mkdir()
        files = base_files(shared_data_dir(), tmp / "base")
        print(f"{'format':14s} {'tried':>6s} {'clean error':>12s} {'accepted':>9s}")
        for fmt, (target, beside) in files.items():
            work = tmp / fmt
            work.mkdir()
            for extra in beside:
                shutil.copy(extra, work / extra.name)
            rng = np.random.default_rng(args.seed + sum(map(ord, fmt)))
            original = target.read_bytes()
            counts = {"error": 0, "accepted": 0}
            for _ in range(args.mutations):
                mutated = work / target.name
                mutated.write_bytes(mutate(original, rng))
                load = work / files["amc"][0].name if fmt == "asf" else mutated
                counts[judge(load, mutated)] += 1
            print(f"{fmt:14s} {args.mutations:6d} {counts['error']:12d} {counts['accepted']:9d}", flush=True)


if __name__ == "__main__":
    main()
