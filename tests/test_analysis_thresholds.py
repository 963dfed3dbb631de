"""``analysis thresholds``: simulated observers with known detection thresholds (by constant stimuli and by the
server's QUEST+) are recovered within their bootstrap intervals; the imperceptible-and-effective count is the
batch's own; the command writes its tables and figure, and says plainly when there is nothing graded to fit."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner

from analysis.cli import cli
from analysis.readers import attach_batches
from analysis.readers import load_batches
from analysis.readers import read_responses_frame
from analysis.thresholds import ThresholdSettings
from analysis.thresholds import analyse_thresholds
from analysis.thresholds import effective_below
from analysis.thresholds import simulate_threshold_study
from stimuli.responses import rows_to_csv
from tests.support.batches import server_batch
from tests.support.batches import threshold_batch

TRUE = {"smart": 10.0, "l2": 20.0}
"""The simulated observers' 50 % thresholds (mm); the threshold batch's levels are 4.6, 9.1, 13.7, 18.3 mm (smart)
and twice that (l2)."""
SIGMA = 0.3
Z75 = 0.6744897501960817  # Phi^-1(0.75)


def _analyse(tmp_path, rows, **kw):
    path = tmp_path / "r.csv"
    path.write_text(rows_to_csv(rows), encoding="utf-8")
    batches = load_batches([threshold_batch()])
    df = attach_batches(read_responses_frame(path), batches, str(path))
    return analyse_thresholds(df, batches, ThresholdSettings(n_boot=100, per_class=False, **kw))


@pytest.mark.parametrize("procedure", ["constant", "adaptive"])
def test_known_thresholds_are_recovered_within_their_intervals(tmp_path, procedure):
    batches = load_batches([threshold_batch()])
    rows = simulate_threshold_study(batches, 20, TRUE, sigma=SIGMA, procedure=procedure, trials=100, seed=3)
    fits = _analyse(tmp_path, rows)["fits"].set_index("method")
    assert set(fits.index) == {"smart", "l2"}
    for m, t in TRUE.items():
        f = fits.loc[m]
        assert f["converged"] and f["participants"] == 20
        assert f["t50_mm_low"] <= t <= f["t50_mm_high"], (m, f["t50_mm_low"], f["t50_mm_high"])
        t75 = t * math.exp(SIGMA * Z75)  # 12.2 mm (smart), 24.5 mm (l2)
        assert f["t75_mm_low"] <= t75 <= f["t75_mm_high"], (m, f["t75_mm_low"], f["t75_mm_high"])
        # and the intervals are narrow enough to tell the two methods apart
        other = TRUE["l2" if m == "smart" else "smart"]
        assert not f["t50_mm_low"] <= other <= f["t50_mm_high"]
        assert f["guess"] == pytest.approx(0.1, abs=0.04)


def test_adaptive_trials_carry_the_state_they_were_chosen_in():
    batches = load_batches([threshold_batch()])
    rows = simulate_threshold_study(batches, 2, TRUE, procedure="adaptive", trials=30, seed=0)
    graded = [r for r in rows if r["trial_kind"] == "perceivability"]
    assert graded and all(r["adaptive_state"]["procedure"] == "quest+" for r in graded)
    assert all(r["strength"] == r["adaptive_state"]["strength"] for r in graded)
    assert {r["strength"] for r in graded} <= {0.25, 0.5, 0.75, 1.0}


def test_imperceptible_and_effective_counts_the_batchs_clips():
    batches = load_batches([threshold_batch()])
    # smart's clips lie at 4.6, 9.1, 13.7, 18.3 mm per item (3 items); only strength 0.75 fools the model robustly
    # in this batch (its attack variants record no robust success). A 50 % threshold of 15 mm leaves the clips at
    # strengths 0.25, 0.5, 0.75 below it: 9 clips, 3 of them effective.
    fits = pd.DataFrame([{"method": "smart", "class": "all", "t50_mm": 15.0, "t50_mm_low": 10.0, "t50_mm_high": 20.0}])
    row = effective_below(fits, batches).iloc[0]
    assert (row["clips"], row["below"], row["below_and_effective"]) == (12, 9, 3)
    assert (row["below_at_low"], row["below_and_effective_at_low"]) == (6, 0)
    assert (row["below_at_high"], row["below_and_effective_at_high"]) == (12, 3)
    assert row["share_imperceptible_and_effective"] == pytest.approx(3 / 12)
    assert row["effective_share_of_below"] == pytest.approx(3 / 9)


def test_the_commands_simulate_and_fit_and_write_their_files(tmp_path):
    batch = str(threshold_batch())
    r = CliRunner().invoke(
        cli,
        ["simulate-thresholds", "--batch", batch, "--out", str(tmp_path / "r.json"), "--participants", "12"]
        + ["--threshold", "smart=10", "--threshold", "l2=20", "--procedure", "adaptive", "--trials", "60"],
    )
    assert r.exit_code == 0, r.output
    assert "12 simulated participants (adaptive)" in r.output
    out = tmp_path / "out"
    args = ["thresholds", "--responses", str(tmp_path / "r.json"), "--batch", batch, "--out", str(out)]
    r = CliRunner().invoke(cli, [*args, "--bootstrap", "50"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "12 participants, 576 graded and 144 identical-pair trials"
    assert "smart: 50 % detection at" in r.output and "l2: 50 % detection at" in r.output
    for name in ("thresholds.csv", "imperceptible_and_effective.csv", "thresholds.json", "thresholds.md"):
        assert (out / name).stat().st_size > 0
    assert (out / "thresholds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (out / "thresholds.svg").read_text(encoding="utf-8")
    summary = json.loads((out / "thresholds.json").read_text(encoding="utf-8"))
    assert set(summary["methods"]) == {"smart", "l2"}
    assert summary["graded_trials"] == 576
    fits = pd.read_csv(out / "thresholds.csv")
    assert set(fits["class"]) >= {"all"}
    # the general report pools the levels, and says where the thresholds are
    args = ["report", "--responses", str(tmp_path / "r.json"), "--batch", batch, "--out", str(tmp_path / "rep")]
    r = CliRunner().invoke(cli, [*args, "--no-glmm", "--bootstrap", "10"])
    assert r.exit_code == 0, r.output
    assert "indistinguishability: 720 trials of a threshold procedure (graded levels pooled above)" in r.output


def test_no_graded_trials_is_a_one_line_error(tmp_path):
    batches = load_batches([threshold_batch()])
    rows = simulate_threshold_study(batches, 3, TRUE, trials=40, seed=1)
    # keep only the identical pairs and the full-strength attacks: one strength per method, nothing to fit
    kept = [r for r in rows if r["trial_kind"] == "sensitivity" or r["variant"] in ("smart", "l2")]
    (tmp_path / "r.csv").write_text(rows_to_csv(kept), encoding="utf-8")
    args = ["thresholds", "--responses", str(tmp_path / "r.csv"), "--batch", str(threshold_batch())]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out")])
    assert r.exit_code == 1
    assert r.output.startswith("Error: no graded trials: no method was shown at two or more strengths")
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_simulating_needs_graded_levels_and_a_well_formed_threshold(tmp_path):
    out = str(tmp_path / "r.csv")
    r = CliRunner().invoke(
        cli, ["simulate-thresholds", "--batch", str(server_batch()), "--out", out, "--threshold", "smart=10"]
    )
    assert r.exit_code == 1 and r.output == "Error: method(s) smart have no graded levels in the batch\n"
    r = CliRunner().invoke(
        cli, ["simulate-thresholds", "--batch", str(threshold_batch()), "--out", out, "--threshold", "smart"]
    )
    assert r.exit_code == 1 and r.output == "Error: --threshold: expected METHOD=MM, got 'smart'\n"
    assert not (tmp_path / "r.csv").exists()
