"""The benchmarks that CI keeps working: the GPU attack script in its tiny CPU mode, the study scheduler."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))


def test_gpu_attack_runs_tiny_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    costs = tmp_path / "costs.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_attack.py"), "--tiny", "--json", "--costs-out", str(costs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out["runs"]) == {"stgcn", "agcn"} and out["device"] == "cpu"
    for run in out["runs"].values():
        assert run["clips"] == 4 and run["iterations_max"] == 3 and run["peak_gpu_memory_mib"] is None
        assert run["batched"]["clips_per_s"] > 0 and run["one_at_a_time"]["clips"] == 2
        # the engine and the plain loop agree on what happens to each looped clip
        assert run["same_outcome_share"] == 1.0
    written = json.loads(costs.read_text())
    assert written == out["costs"] and set(written["attack_shard_seconds"]) == {
        "agcn",
        "asgcn",
        "dgnn",
        "hrnn",
        "stgcn",
    }
    assert written["shard_size"] == 4 and all(s > 0 for s in written["attack_shard_seconds"].values())


def test_the_study_scheduler_is_longest_job_first() -> None:
    import batch_scale

    # by hand: 3 | 3, then each 2 to the less loaded worker: 5 | 5, then 7 | 5 (the optimum would be 6)
    assert batch_scale.makespan([2, 3, 2, 3, 2], 2) == 7
    assert batch_scale.makespan([2, 3, 2, 3, 2], 1) == 12 and batch_scale.makespan([5, 1], 8) == 5
    costs = {"attack_shard_seconds": dict.fromkeys(batch_scale.MODELS, 10.0), "render_item_seconds": 1.0}
    rows = batch_scale.simulate(costs, {"hdm05": 32, "mhad": 16, "ntu": 16}, 16, 2, [1, 4])
    # 4 shards x 5 models x 16 (loss, strategy) = 320 shards of 10 s; 3 x 5 x 4 batches x 2 items = 120 s
    assert rows[0] == {"workers": 1, "hours": (3200 + 120) / 3600, "efficiency": 1.0}
    assert rows[1]["hours"] == pytest.approx((800 + 30) / 3600) and rows[1]["efficiency"] == pytest.approx(1.0)
