"""``analysis report`` on thin or odd data: it says what cannot be estimated and goes on, and refuses
responses an export cannot produce."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from support.batches import analysis_batch

from analysis.bt import comparison_groups
from analysis.cli import cli


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    batch = analysis_batch(5)
    d = tmp_path_factory.mktemp("thin")
    res = CliRunner().invoke(
        cli, ["simulate", "--participants", "6", "--seed", "3", "--batch", str(batch), "--out", str(d / "r.csv")]
    )
    assert res.exit_code == 0, res.output
    return batch, pd.read_csv(d / "r.csv")


def report(batch: Path, df: pd.DataFrame, tmp_path: Path) -> tuple[int, str, dict | None]:
    df.to_csv(tmp_path / "r.csv", index=False)
    res = CliRunner().invoke(
        cli, ["report", "--responses", str(tmp_path / "r.csv"), "--batch", str(batch), "--out", str(tmp_path / "out")]
    )
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    summary = (
        json.loads((tmp_path / "out" / "summary.json").read_text())
        if (tmp_path / "out" / "summary.json").is_file()
        else None
    )
    md = (tmp_path / "out" / "report.md").read_text() if (tmp_path / "out" / "report.md").is_file() else ""
    return res.exit_code, res.output + md, summary


def test_no_analysable_participant_says_so_and_goes_on(sim, tmp_path) -> None:
    batch, df = sim
    x = df.copy()
    x.loc[x.study_type.isin(["deceitfulness", "indistinguishability"]), "participant_completed"] = 0
    code, text, _ = report(batch, x, tmp_path)
    assert code == 0, text
    assert "deceitfulness: 0 analysed participants: no share" in text
    assert "indistinguishability: 0 analysed participants: no share, no d'" in text
    assert "nan" not in text.split("## Methods")[0].lower().replace("nanosecond", "")
    assert "naturalness: " in text  # the other design is reported as before


def test_one_participant_has_no_participant_level_interval(sim, tmp_path) -> None:
    batch, df = sim
    code, text, _ = report(batch, df[df.participant == df.participant.iloc[0]], tmp_path)
    assert code == 0, text
    assert "(no participant-level interval: 1 participant)" in text
    assert "1 participant: no participant-level interval can be formed; Wilson" in text


def test_bradley_terry_gives_no_order_without_decisive_or_connected_comparisons(sim, tmp_path) -> None:
    batch, df = sim
    x = df.copy()
    m = x.study_type == "naturalness"
    x.loc[m, "answer"], x.loc[m, "preferred_variant"] = "cant_tell", np.nan
    code, text, _ = report(batch, x, tmp_path)
    assert code == 0 and "naturalness: no Bradley-Terry order (every comparison was a tie ('can't tell'))" in text
    pair = df.left_variant.astype(str) + "|" + df.right_variant.astype(str)
    keep = (df.study_type != "naturalness") | pair.isin(["smart|l2", "l2|smart", "l2-acc|l2-bone", "l2-bone|l2-acc"])
    code, text, _ = report(batch, df[keep], tmp_path)
    assert (
        code == 0
        and (
            "naturalness: no Bradley-Terry order (methods {smart, l2} and {l2-acc, l2-bone} were "
            "never compared with each other)"
        )
        in text
    )


def test_comparison_groups_by_hand() -> None:
    counts = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 1]])
    assert comparison_groups(5, [(0, 1), (1, 2), (3, 4)], counts) == [[0, 1], [3, 4]]
    assert comparison_groups(3, [(0, 1), (1, 2)], counts[[0, 2]]) == [[0, 1, 2]]


def test_repeated_trials_and_contradicting_answers_are_refused(sim, tmp_path) -> None:
    batch, df = sim
    code, text, _ = report(batch, pd.concat([df, df.iloc[:5]]), tmp_path)
    assert code == 1 and f"row {len(df) + 1} repeats participant sim-dec-00000's trial 0" in text
    assert len(text.strip().splitlines()) == 1
    x = df.copy()
    i = x.index[(x.study_type == "deceitfulness") & x.answer.notna()][:3]
    x.loc[i, "chose_true_label"] = 1 - x.loc[i, "chose_true_label"]
    code, text, _ = report(batch, x, tmp_path)
    assert code == 1 and "but chose_true_label is" in text and "(3 such rows)" in text


def test_label_prior_baseline_by_hand() -> None:
    from analysis.perceptual import label_prior_accuracy

    def trials(pairs, who=None):
        return pd.DataFrame(
            {
                "true_label": [t for t, _ in pairs],
                "attacked_label": [a for _, a in pairs],
                "participant": who or ["p"] * len(pairs),
            }
        )

    # 'squat' is only ever the attacked label: 'not squat' is always right
    assert label_prior_accuracy(trials([("walk", "squat")] * 3 + [("bow", "squat")])) == 1.0
    # balanced: walk and run as often true as attacked: every trial a tie, half right
    assert label_prior_accuracy(trials([("walk", "run"), ("run", "walk")])) == 0.5
    # walk true twice, attacked once (2/3) against run true once, attacked twice (1/3): the two walk->run trials
    # are right, the run->walk one wrong
    assert label_prior_accuracy(trials([("walk", "run"), ("walk", "run"), ("run", "walk")])) == pytest.approx(2 / 3)
    # per participant: each participant's own trials are balanced, though the pool is not
    pairs = [("walk", "run"), ("run", "walk"), ("walk", "run"), ("walk", "run")]
    df = trials(pairs, ["a", "a", "b", "b"])
    assert label_prior_accuracy(df) == 0.75 and label_prior_accuracy(df, "participant") == 0.75
    df = trials([("walk", "run"), ("run", "walk"), ("kick", "bow"), ("bow", "kick")], ["a", "a", "b", "b"])
    assert label_prior_accuracy(df, "participant") == 0.5
