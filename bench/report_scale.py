"""How long `analysis report` takes for 10k, 100k and 1M simulated responses (goal: 1M in under 20 s).

For each size: simulate that many response rows on a tiny real stimulus batch (5 synthetic
motions; every study type, the paper's designs; 5 % drop-outs, 1 % failed videos, 5 %
always-'unchanged' responders), write them as the server's CSV export, then time the
report exactly as the command runs it: read and check the CSV, attach it to the batch,
every analysis (bootstraps with 1000 replicates, Bradley-Terry fits, the mixed model on
at most 100 participants), every figure, and the HTML / Markdown / CSV / PNG output.
Simulating and writing the CSV are timed apart (they are not part of the report).

    python bench/report_scale.py                     # 10k, 100k, 1M
    python bench/report_scale.py --sizes 1000000 --batch BATCH_DIR --keep /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "tests")]

from support.batches import build_batch  # noqa: E402

from analysis.perceptual import Options  # noqa: E402
from analysis.readers import REPORT_COLUMNS  # noqa: E402
from analysis.readers import attach_batches  # noqa: E402
from analysis.readers import load_batches  # noqa: E402
from analysis.readers import read_responses_frame  # noqa: E402
from analysis.report import build_report  # noqa: E402
from analysis.report import write_report  # noqa: E402
from analysis.simulate import Observer  # noqa: E402
from analysis.simulate import simulate  # noqa: E402
from analysis.simulate import write_responses  # noqa: E402
from stimuli.attack_results import read_attack_files  # noqa: E402

ROWS_PER_PARTICIPANT = 3 * 102.5
"""Rows of one participant in each of the three studies (100 trials + 2 practice + repeats after failures)."""


def run(size: int, batch_dir: Path, work: Path) -> dict[str, float]:
    batches = load_batches([batch_dir])
    participants = max(1, round(size / ROWS_PER_PARTICIPANT))
    t = time.perf_counter()
    df = simulate(
        batches, participants, seed=0, observer=Observer(dropout=0.05, playback_failure=0.01, always_unchanged=0.05)
    )
    t_sim = time.perf_counter() - t
    rows = len(df)
    csv_path = work / f"responses_{size}.csv"
    t = time.perf_counter()
    write_responses(df, csv_path)
    t_csv = time.perf_counter() - t
    del df
    # the report, as `analysis report --responses CSV --batch DIR --out OUT` runs it
    t0, c0 = time.perf_counter(), time.process_time()
    b = load_batches([batch_dir])
    frame = read_responses_frame(csv_path, REPORT_COLUMNS)
    t_read = time.perf_counter() - t0
    t = time.perf_counter()
    frame = attach_batches(frame, b, str(csv_path))
    runs, transfers = read_attack_files([])
    rep = build_report(frame, b, runs, transfers, Options(), {"responses": str(csv_path), "rows": rows})
    t_analyse = time.perf_counter() - t
    t = time.perf_counter()
    files = write_report(rep, work / f"report_{size}")
    t_write = time.perf_counter() - t
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "size": size,
        "rows": rows,
        "participants_per_study": participants,
        "simulate_s": t_sim,
        "write_csv_s": t_csv,
        "csv_mb": csv_path.stat().st_size / 1e6,
        "read_s": t_read,
        "analyse_s": t_analyse,
        "write_report_s": t_write,
        "report_s": total,
        "report_cpu_s": cpu,
        "figures": len(files["figures"]),
        "tables": len(files["tables"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--batch", type=Path, help="Stimulus batch to draw trials from (default: a tiny one, built here).")
    ap.add_argument("--keep", type=Path, help="Keep the CSVs and reports in this folder.")
    ap.add_argument("--json", action="store_true", help="Print the results as JSON lines.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="report-scale-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        batch_dir = args.batch
        if batch_dir is None:
            batch_dir = work / "batch"
            if not batch_dir.exists():
                build_batch(
                    batch_dir, 5, preset="analysis", dataset="hdm05", model="agcn", workers=min(2, os.cpu_count() or 1)
                )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"{os.cpu_count()} CPUs, load average {load:.1f} at the start (other processes slow the wall times; "
            "cpu = this process's CPU time)"
        )
        print(
            f"{'responses':>10} {'rows':>9} {'people':>7} | {'report':>7} {'cpu':>6} {'read':>6} {'analyse':>8} "
            f"{'write':>6} | {'simulate':>8} {'csv':>6}"
        )
        for size in args.sizes:
            r = run(size, batch_dir, work)
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                ok = (
                    " (goal < 20 s: met)"
                    if size >= 1_000_000 and r["report_s"] < 20
                    else (" (goal < 20 s: MISSED)" if size >= 1_000_000 else "")
                )
                print(
                    f"{size:>10,} {r['rows']:>9,} {r['participants_per_study']:>7} | {r['report_s']:6.1f}s "
                    f"{r['report_cpu_s']:5.1f}s {r['read_s']:5.1f}s {r['analyse_s']:7.1f}s "
                    f"{r['write_report_s']:5.1f}s | "
                    f"{r['simulate_s']:7.1f}s {r['write_csv_s']:5.1f}s{ok}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
