"""`analysis simulate`: the export format exactly, the paper's designs, determinism, the observer's extremes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from support.batches import analysis_batch

from analysis.cli import cli
from analysis.readers import load_batches
from analysis.simulate import Design
from analysis.simulate import Observer
from analysis.simulate import simulate
from stimuli.errors import DataError
from stimuli.responses import COLUMN_NAMES
from stimuli.responses import read_responses


@pytest.fixture(scope="module")
def batch() -> Path:
    return analysis_batch(5)


@pytest.fixture(scope="module")
def batches(batch):
    return load_batches([batch])


@pytest.fixture(scope="module")
def paper_design(batches) -> pd.DataFrame:
    """Four participants per study with the paper's trial counts and no drop-outs or failures."""
    return simulate(batches, 4, seed=5)


def test_cli_writes_the_export_format_read_by_the_official_reader(batch, tmp_path):
    for name in ("r.csv", "r.json"):
        res = CliRunner().invoke(
            cli,
            [
                "simulate",
                "--participants",
                "2",
                "--seed",
                "1",
                "--batch",
                str(batch),
                "--out",
                str(tmp_path / name),
                "--dropout",
                "0.5",
                "--playback-failure",
                "0.1",
            ],
        )
        assert res.exit_code == 0, res.output
        assert res.output.startswith(f"wrote {tmp_path / name}: ") and "implied: P(true label)" in res.output
        rows = read_responses(tmp_path / name)  # type-checks every row
        assert rows and all(list(r) == list(COLUMN_NAMES) for r in rows)
    with (tmp_path / "r.csv").open() as fh:
        assert next(csv.reader(fh)) == list(COLUMN_NAMES)
    assert read_responses(tmp_path / "r.csv") == read_responses(tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["format"] == "smart-study-responses" and doc["version"] == 1


def test_paper_designs(paper_design):
    df = paper_design[~paper_design["practice"]]
    per = df.groupby(["study_type", "participant"], observed=True).size()
    assert set(per["deceitfulness"]) == {100} and set(per["naturalness"]) == {100}
    assert set(per["indistinguishability"]) == {100}
    assert set(paper_design[paper_design["practice"]].groupby("participant", observed=True).size()) == {2}
    nat = df[df["study_type"] == "naturalness"]
    for _, g in nat.groupby("participant", observed=True):
        # 50 motions, each twice: SMART vs an ablation, and two different ablations
        assert set(g.groupby("item_id").size()) <= {20}  # 5 items, 50 motions cycled: each item 10 motions x 2
        assert (g["naturalness_pair"] == "smart-vs-ablation").sum() == 50
        abl = g[g["naturalness_pair"] == "ablation-vs-ablation"]
        assert not ((abl["left_variant"] == "smart") | (abl["right_variant"] == "smart")).any()
        assert (abl["left_variant"] != abl["right_variant"]).all()
    ind = df[df["study_type"] == "indistinguishability"]
    kinds = ind.groupby("participant", observed=True)["trial_kind"].value_counts().unstack()
    assert (
        (kinds["sensitivity"] == 30).all() and (kinds["perceivability"] == 60).all() and (kinds["control"] == 10).all()
    )
    assert (ind["left_variant"] == "original").all()
    assert set(ind.loc[ind["trial_kind"] == "sensitivity", "right_variant"]) == {"original"}
    dec = df[df["study_type"] == "deceitfulness"]
    assert (dec["chose_true_label"] == (dec["answer"] == "true_label")).all()
    assert set(dec["label_order"]) == {"true,attacked", "attacked,true"}
    assert df["participant"].nunique() == 12 and df.groupby("participant", observed=True)["study"].nunique().max() == 1


def test_deterministic_and_seeded(batches):
    a = simulate(batches, 3, seed=2, observer=Observer(dropout=0.3, playback_failure=0.05))
    b = simulate(batches, 3, seed=2, observer=Observer(dropout=0.3, playback_failure=0.05))
    c = simulate(batches, 3, seed=3, observer=Observer(dropout=0.3, playback_failure=0.05))
    pd.testing.assert_frame_equal(a, b)
    assert not a["answer"].equals(c["answer"])


def test_observer_extremes_and_screening(batches):
    design = Design(deceitfulness_trials=20, naturalness_motions=10, indistinguishability_trials=40)
    everyone_guesses = simulate(batches, 30, seed=1, observer=Observer(guessers=1.0, lapse=0.0), design=design)
    ind = everyone_guesses[everyone_guesses["study_type"] == "indistinguishability"]
    assert ind["excluded"].mean() > 0.8  # random answers fail the 80 % sensitivity screen
    reasons = ind.loc[ind["excluded"], "exclusion_reason"].unique()
    assert all(r.startswith("sensitivity accuracy ") and r.endswith(" < 0.80") for r in reasons)
    dec = everyone_guesses[(everyone_guesses["study_type"] == "deceitfulness") & ~everyone_guesses["practice"]]
    assert abs(dec["chose_true_label"].mean() - 0.5) < 0.1
    silent = simulate(batches, 5, seed=1, observer=Observer(always_unchanged=1.0), design=design)
    ind = silent[(silent["study_type"] == "indistinguishability")]
    assert not ind["said_changed"].any() and not ind["excluded"].any()  # passes the paper's screen
    screened = simulate(
        batches,
        5,
        seed=1,
        observer=Observer(always_unchanged=1.0),
        design=Design(**{**design.__dict__, "control_screen": 0.8}),
    )
    ind = screened[screened["study_type"] == "indistinguishability"]
    assert ind["excluded"].all() and ind["exclusion_reason"].str.contains("positive-control hit rate 0.00").all()
    drops = simulate(batches, 20, seed=4, observer=Observer(dropout=1.0), design=design)
    assert not drops["participant_completed"].any()
    fails = simulate(batches, 5, seed=4, observer=Observer(playback_failure=0.2), design=design)
    bad = fails[~fails["valid"]]
    assert len(bad) and bad["playback_failed"].all() and bad["answer"].isna().all()
    assert (fails["attempt"] == 2).sum() == len(bad)


def test_implied_values_by_hand():
    imp = Observer(p_true=0.9, participant_sd=0.0, clip_sd=0.0, lapse=0.0, dprime=1.0, criterion=1.0).implied()
    assert imp["p_true_marginal"] == pytest.approx(0.9)
    assert imp["hit_rate"] == pytest.approx(0.5) and imp["false_alarm_rate"] == pytest.approx(0.158655, abs=1e-6)
    assert imp["dprime"] == pytest.approx(1.0)
    lam = imp["log_strength"]
    assert sum(lam.values()) == pytest.approx(0.0) and lam["smart"] - lam["l2"] == pytest.approx(np.log(2.0))
    # lapses pull rates towards 1/2
    assert Observer(lapse=0.1, dprime=1.0, criterion=1.0, participant_sd=0, clip_sd=0).implied()[
        "hit_rate"
    ] == pytest.approx(0.5)


def test_bad_parameters_are_one_line_errors(batch, batches, tmp_path):
    base = ["simulate", "--participants", "2", "--batch", str(batch), "--out", str(tmp_path / "r.csv")]
    for extra, match in (
        (["--perceivability-variant", "nope"], "no attacked variant 'nope'"),
        (["--strength", "smart"], "expected NAME=VALUE"),
        (["--sensitivity-share", "0.6", "--control-share", "0.5"], "sum to less than 1"),
    ):
        res = CliRunner().invoke(cli, base + extra)
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert res.output.startswith("Error: ") and match in res.output, res.output
    res = CliRunner().invoke(
        cli, ["simulate", "--participants", "2", "--batch", str(batch), "--out", str(tmp_path / "r.txt")]
    )
    assert res.exit_code == 1 and "write responses to a .csv or .json file" in res.output
    with pytest.raises(DataError, match="no observer strength for"):
        simulate(batches, 2, observer=Observer(strengths=(("smart", 2.0), ("l2", 1.0))))
