"""``analysis power``: power 1 for a huge effect, the exact test size under the null, the same numbers for any
number of workers, one-line errors, and the table carried into a preregistration bundle (``prereg --power``)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.batches import analysis_batch
from support.batches import server_batch
from support.server import make_test_app

from analysis.cli import cli
from analysis.power import PowerSettings
from analysis.power import run_power
from analysis.simulate import Observer

Z95 = 1.959963984540054


@pytest.fixture(scope="module")
def batch() -> Path:
    return analysis_batch(5)


def power_cli(*args: str):
    return CliRunner().invoke(cli, ["power", *args])


def tail(k: int, n: int, q: float) -> float:
    """P(X >= k) for X ~ Binomial(n, q), summed here."""
    return sum(math.comb(n, j) * q**j * (1 - q) ** (n - j) for j in range(k, n + 1))


def test_a_huge_effect_is_found_in_every_replicate(batch):
    obs = Observer(
        p_true=0.999,
        participant_sd=0.0,
        clip_sd=0.0,
        lapse=0.0,
        strengths=(("smart", 1000.0), ("l2-acc", 1.0), ("l2", 1.0), ("l2-bone", 1.0)),
        tie=0.01,
        dprime=-6.0,
        criterion=3.0,
    )
    res = run_power([batch], PowerSettings(observer=obs, n_boot=0), [4], [20], replicates=5, workers=1)
    rows = {r["hypothesis"]: r for r in res["table"]}
    assert list(rows) == [
        "true-label>label-prior",
        "smart>l2",
        "smart>l2-acc",
        "smart>l2-bone",
        "smart>all-ablations",
        "unchanged>0.5",
    ]
    for r in rows.values():
        assert r["power"] == 1.0 and r["replicates"] == 5
        assert r["power_ci_low"] == pytest.approx(5 / (5 + Z95**2)) and r["power_ci_high"] == pytest.approx(1.0)
    # the label-prior baseline of the 5-item batch, worked out by hand: item i is attacked to item i+1's class, so
    # the first and the last item's label pairs give the answer away, the middle three do not: (1+.5+.5+.5+1)/5
    assert rows["true-label>label-prior"]["null"] == pytest.approx(0.7)
    assert rows["true-label>label-prior"]["mean_estimate"] > 0.99
    assert rows["unchanged>0.5"]["mean_estimate"] > 0.99
    assert math.isnan(rows["smart>all-ablations"]["mean_half_width"])


def test_under_the_null_power_is_the_exact_size_of_the_test(batch):
    # P(true label) = 0.7 on every trial, and every participant sees each of the 5 items 4 times, so the baseline
    # is 0.7 exactly and the 5 x 20 = 100 trials are Bernoulli(0.7): the one-sided test rejects with probability
    # P(X >= k*) where k* is the smallest count with that tail <= alpha
    obs = Observer(p_true=0.7, participant_sd=0.0, clip_sd=0.0, lapse=0.0)
    R = 300
    res = run_power(
        [batch], PowerSettings(observer=obs, n_boot=0), [5], [20], designs=["deceitfulness"], replicates=R, workers=2
    )
    [row] = res["table"]
    n = 100
    k = next(k for k in range(n + 1) if tail(k, n, 0.7) <= 0.05)
    size = tail(k, n, 0.7)
    assert 0.03 < size <= 0.05
    assert row["null"] == pytest.approx(0.7) and row["mean_estimate"] == pytest.approx(0.7, abs=0.01)
    assert abs(row["power"] - size) <= 4 * math.sqrt(size * (1 - size) / R)
    # the Wilson interval of the replicate count, computed here
    c = int(round(row["power"] * R))
    centre = (c + Z95**2 / 2) / (R + Z95**2)
    half = Z95 / (R + Z95**2) * math.sqrt(c * (R - c) / R + Z95**2 / 4)
    assert (row["power_ci_low"], row["power_ci_high"]) == (pytest.approx(centre - half), pytest.approx(centre + half))
    # mean Wilson half-width of the share at about 0.7 of 100 trials
    assert row["mean_half_width"] == pytest.approx(Z95 * math.sqrt(0.21 / n), rel=0.1)


def test_the_same_seed_gives_the_same_files_for_any_number_of_workers(batch, tmp_path):
    common = ["--batch", str(batch), "--participants", "3,6", "--trials", "10", "--replicates", "3"]
    common += ["--bootstrap", "20", "--seed", "7"]
    r1 = power_cli(*common, "--workers", "1", "--out", str(tmp_path / "w1"))
    r2 = power_cli(*common, "--workers", "2", "--out", str(tmp_path / "w2"))
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    for name in ("power.csv", "power.json"):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()
    for name in ("power.png", "power.svg"):
        assert (tmp_path / "w1" / name).stat().st_size > 1000
    assert (tmp_path / "w1" / "power.svg").read_text().lstrip().startswith("<?xml")
    lines = (tmp_path / "w1" / "power.csv").read_text().splitlines()
    assert lines[0].startswith(
        "design,hypothesis,participants,trials,stimuli,replicates,power,power_ci_low,power_ci_high,mean_half_width"
    )
    assert len(lines) == 1 + 2 * 6  # two participant counts x six hypotheses
    assert "design" in r1.stdout and "smart>l2-bone" in r1.stdout and "wrote" in r1.stdout
    doc = json.loads((tmp_path / "w1" / "power.json").read_text())
    assert doc["format"] == "smart-study-power" and doc["observer"]["p_true"] == 0.93
    assert doc["settings"]["interval"].startswith("two-way bootstrap") and len(doc["table"]) == 12
    # a cell's replicates are seeded from (seed, cell, replicate): a sweep of one cell gives that cell's rows
    r3 = power_cli(*common[:3], "6", *common[4:], "--workers", "1", "--out", str(tmp_path / "one"))
    assert r3.exit_code == 0, r3.output
    six = [r for r in doc["table"] if r["participants"] == 6]
    assert json.loads((tmp_path / "one" / "power.json").read_text())["table"] == six
    r4 = power_cli(*common[:-1], "8", "--workers", "1", "--out", str(tmp_path / "other"))
    assert r4.exit_code == 0, r4.output
    assert (tmp_path / "other" / "power.csv").read_bytes() != (tmp_path / "w1" / "power.csv").read_bytes()


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--participants", "0"], "--participants: every value must be >= 1"),
        (["--participants", "abc"], "--participants: expected positive integers"),
        (["--trials", "10,x"], "--trials: expected positive integers"),
        (["--stimuli", "9"], "the batch has 5 items, asked for 9"),
        (["--replicates", "0"], "--replicates must be >= 1"),
        (["--trials", "9", "--study", "naturalness"], "--trials must be even"),
        (["--alpha", "1.5"], "--alpha must be in (0, 1)"),
    ],
)
def test_bad_options_are_one_line_errors(batch, tmp_path, bad, message):
    r = power_cli("--batch", str(batch), "--out", str(tmp_path / "out"), *bad)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert r.output.strip().splitlines() == [r.output.strip()] and r.output.startswith("Error: ")
    assert message in r.output and not (tmp_path / "out").exists()


def test_prereg_puts_the_simulated_power_table_into_the_bundle(tmp_path):
    app = make_test_app(
        tmp_path / "p.sqlite3",
        [("ind", "indistinguishability", {"trials": 5, "practice_trials": 0, "target_participants": 40})],
    )
    study = tmp_path / "study.toml"
    assert app.test_cli_runner().invoke(args=["export-study", "ind", "--out", str(study)]).exit_code == 0
    r = power_cli(
        "--batch",
        str(server_batch()),
        "--out",
        str(tmp_path / "power"),
        "--study",
        "indistinguishability",
        "--participants",
        "4,8",
        "--trials",
        "10",
        "--replicates",
        "2",
        "--bootstrap",
        "0",
    )
    assert r.exit_code == 0, r.output
    power_json = tmp_path / "power" / "power.json"

    def prereg(out: str, *extra: str):
        args = ["prereg", "--study", str(study), "--batch", str(server_batch()), "--out", str(tmp_path / out)]
        return CliRunner().invoke(cli, [*args, *extra])

    with_power, without = prereg("with", "--power", str(power_json)), prereg("without")
    assert with_power.exit_code == 0 and without.exit_code == 0, with_power.output
    assert f"simulated power: 2 rows from {power_json}" in with_power.output
    b = tmp_path / "with"
    assert (b / "power_simulated.json").read_bytes() == power_json.read_bytes()
    sums = dict(line.split("  ")[::-1] for line in (b / "SHA256SUMS").read_text().splitlines())
    assert sums["power_simulated.json"] == hashlib.sha256(power_json.read_bytes()).hexdigest()
    assert (b / "DIGEST").read_text().strip() == "sha256:" + hashlib.sha256((b / "SHA256SUMS").read_bytes()).hexdigest()
    assert (b / "DIGEST").read_text() != (tmp_path / "without" / "DIGEST").read_text()
    plan = json.loads((b / "plan.json").read_text())["simulated_power"]
    assert plan["table"] == json.loads(power_json.read_text())["table"] and plan["same_batch"] is True
    assert "simulated_power" not in json.loads((tmp_path / "without" / "plan.json").read_text())
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    r = prereg("bad", "--power", str(bad))
    assert r.exit_code == 1 and "not a power.json written by analysis power" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
