"""analysis.items: per-item and per-class tables of the three designs against hand counts, the leave-one-out
influence on constructed examples, and agreement with the headline figures of analysis.perceptual."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from support.batches import analysis_batch

from analysis.items import influence
from analysis.items import per_stimulus
from analysis.perceptual import Options
from analysis.perceptual import deceitfulness
from analysis.perceptual import indistinguishability
from analysis.perceptual import naturalness
from analysis.readers import REPORT_COLUMNS
from analysis.readers import attach_batches
from analysis.readers import load_batches
from analysis.readers import read_responses_frame
from analysis.readers import rows_to_frame
from analysis.simulate import Observer
from analysis.simulate import simulate
from analysis.simulate import write_responses
from stimuli.responses import make_row

OPTS = Options(n_boot=50, glmm=False, top_items=2)
LABEL = {"item-a": "walk", "item-b": "walk", "item-c": "run"}


def _row(participant: str, study_type: str, k: int, item: str, **kw) -> dict:
    base = dict(
        participant=participant,
        study=f"s-{study_type[:3]}",
        study_type=study_type,
        recruit_platform="anonymous",
        participant_completed=True,
        excluded=False,
        block=0,
        trial_index=k,
        practice=False,
        attempt=1,
        valid=True,
        batch_id="b1",
        item_id=item,
        true_label=LABEL[item],
        plays=1,
        seconds=6.0,
        slowdown=1.0,
        playback_failed=False,
        dataset="hdm05",
        model="agcn",
        strategy="ab",
    )
    base.update(kw)
    return make_row(**base)


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = rows_to_frame(rows)
    df["item_key"] = pd.Categorical(df["batch_id"].astype(str) + "\x1f" + df["item_id"].astype(str))
    return df


def _wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# ---- influence --------------------------------------------------------------------------------
def test_influence_orders_by_the_change_when_left_out():
    # pooled 21 / 50 = 0.42; leaving each out: 12/40, 19/40, 16/40, 16/30
    t = influence(np.array([9, 2, 5, 5]), np.array([10, 10, 10, 20]), top=2)
    expect = [12 / 40 - 0.42, 19 / 40 - 0.42, 16 / 40 - 0.42, 16 / 30 - 0.42]
    assert t["change_if_left_out"].tolist() == pytest.approx(expect)
    assert t["share_if_left_out"].tolist() == pytest.approx([0.3, 0.475, 0.4, 16 / 30])
    assert t["influence_rank"].tolist() == [1, 3, 4, 2]  # |-0.12| > |+0.113| > |+0.055| > |-0.02|
    assert t["drives"].tolist() == [True, False, False, True]


def test_influence_ties_zero_and_a_lone_item():
    t = influence(np.array([9, 1, 5]), np.array([10, 10, 10]), top=1)  # pooled 0.5: -0.2, +0.2, 0
    assert t["change_if_left_out"].tolist() == pytest.approx([-0.2, 0.2, 0.0])
    assert t["influence_rank"].tolist() == [1, 1, 3] and t["drives"].tolist() == [True, True, False]
    one = influence(np.array([3]), np.array([4]), top=3)  # nothing is left without it
    assert math.isnan(one["change_if_left_out"].iloc[0]) and not one["drives"].iloc[0]


# ---- per design -------------------------------------------------------------------------------
def _dec(participant: str, answers: list[tuple[str, bool]], **kw) -> list[dict]:
    return [
        _row(
            participant,
            "deceitfulness",
            k,
            item,
            variant="smart",
            attacked_label="jump" if item == "item-c" else "run",
            answer="true_label" if ok else "attacked_label",
            chose_true_label=ok,
            label_order="true,attacked",
            **kw,
        )
        for k, (item, ok) in enumerate(answers)
    ]


def test_deceitfulness_items_and_classes_by_hand():
    rows = _dec("p1", [("item-a", True), ("item-a", True), ("item-b", False), ("item-c", True)])
    rows += _dec("p2", [("item-a", False), ("item-b", True), ("item-c", True), ("item-c", True)])
    rows += _dec("p3", [("item-a", False)] * 4, excluded=True, exclusion_reason="x")  # not analysed
    rows += _dec("p4", [("item-b", False)] * 3, participant_completed=False)  # not analysed
    rows += [
        _row("p1", "deceitfulness", 9, "item-b", practice=True, answer="true_label", chose_true_label=True),
        _row("p2", "deceitfulness", 9, "item-b", valid=False, playback_failed=True),
    ]
    res = per_stimulus(_frame(rows), "deceitfulness", OPTS)
    items = res.tables["deceitfulness_items"].set_index("item_id")
    # item-a: 2 of 3; item-b: 1 of 2; item-c: 3 of 3; pooled 6 / 8
    assert items.loc[["item-a", "item-b", "item-c"], "trials"].tolist() == [3, 2, 3]
    assert items.loc[["item-a", "item-b", "item-c"], "chose_true"].tolist() == [2, 1, 3]
    assert items.loc["item-a", "share_true_label"] == pytest.approx(2 / 3)
    assert items.loc["item-c", "attacked_labels"] == "jump" and items.loc["item-a", "participants"] == 2
    lo, hi = _wilson(2, 3)
    assert (items.loc["item-a", "wilson_low"], items.loc["item-a", "wilson_high"]) == pytest.approx((lo, hi))
    change = {"item-a": 4 / 5 - 6 / 8, "item-b": 5 / 6 - 6 / 8, "item-c": 3 / 5 - 6 / 8}
    assert items["change_if_left_out"].to_dict() == pytest.approx(change)
    # sorted by |change|: item-c (-0.15), item-b (+0.083), item-a (+0.05); the top 2 drive it
    assert res.tables["deceitfulness_items"]["item_id"].tolist() == ["item-c", "item-b", "item-a"]
    assert items["drives"].to_dict() == {"item-c": True, "item-b": True, "item-a": False}
    classes = res.tables["deceitfulness_classes"].set_index("class")
    assert classes.loc["walk", ["items", "trials", "chose_true"]].tolist() == [2, 5, 3]
    assert classes.loc["run", "share_true_label"] == 1.0
    assert classes.loc["walk", "change_if_left_out"] == pytest.approx(3 / 3 - 6 / 8)
    assert res.summary["share"] == 6 / 8 and res.summary["n"] == 8
    assert [d["item"] for d in res.summary["drivers"]] == ["b1/item-c", "b1/item-b"]


def _nat(participant: str, trials: list[tuple[str, str, str, str]], **kw) -> list[dict]:
    out = []
    for k, (item, left, right, answer) in enumerate(trials):
        pref = {"left": left, "right": right}.get(answer)
        out.append(
            _row(
                participant,
                "naturalness",
                k,
                item,
                left_variant=left,
                right_variant=right,
                variant=right,
                answer=answer,
                preferred_variant=pref,
                **kw,
            )
        )
    return out


def test_naturalness_items_by_hand():
    rows = _nat(
        "p1",
        [
            ("item-a", "smart", "l2", "left"),  # SMART preferred
            ("item-a", "l2", "smart", "left"),  # the ablation preferred
            ("item-a", "l2", "l2-acc", "right"),  # no SMART: not in the headline
            ("item-b", "smart", "l2-acc", "cant_tell"),  # not decisive
            ("item-b", "l2-acc", "smart", "right"),  # SMART preferred
        ],
    )
    rows += _nat("p2", [("item-c", "smart", "l2", "left"), ("item-c", "smart", "l2-acc", "left")])
    res = per_stimulus(_frame(rows), "naturalness", OPTS)
    t = res.tables["naturalness_items"].set_index("item_id")
    cols = ["trials", "smart_trials", "smart_preferred", "ablation_preferred", "cant_tell", "decisive"]
    assert t.loc["item-a", cols].tolist() == [3, 2, 1, 1, 0, 2]
    assert t.loc["item-b", cols].tolist() == [2, 2, 1, 0, 1, 1]
    assert t.loc["item-c", cols].tolist() == [2, 2, 2, 0, 0, 2]
    assert t["share_smart_preferred"].to_dict() == pytest.approx({"item-a": 0.5, "item-b": 1.0, "item-c": 1.0})
    # pooled 4 of 5 decisive
    assert res.summary["share"] == pytest.approx(0.8)
    assert t.loc["item-a", "change_if_left_out"] == pytest.approx(3 / 3 - 0.8)
    assert t.loc["item-c", "change_if_left_out"] == pytest.approx(2 / 3 - 0.8)
    # the same pooled share as the sign tests (SMART's decisive wins over every ablation)
    st = naturalness(_frame(rows), OPTS).tables["naturalness_sign_tests"]
    st = st[(st["subset"] == "analysed") & (st["breakdown"] == "overall")]
    assert st["smart_preferred"].sum() / (st["smart_preferred"] + st["ablation_preferred"]).sum() == 0.8


def _ind(participant: str, trials: list[tuple[str, str, bool]], **kw) -> list[dict]:
    return [
        _row(
            participant,
            "indistinguishability",
            k,
            item,
            variant="original" if kind == "sensitivity" else "smart",
            left_variant="original",
            right_variant="original" if kind == "sensitivity" else "smart",
            trial_kind=kind,
            answer="changed" if changed else "unchanged",
            said_changed=changed,
            **kw,
        )
        for k, (item, kind, changed) in enumerate(trials)
    ]


def test_indistinguishability_items_hits_and_false_alarms_by_hand():
    rows = _ind(
        "p1",
        [
            ("item-a", "perceivability", False),
            ("item-a", "perceivability", True),
            ("item-a", "sensitivity", True),
            ("item-b", "perceivability", False),
            ("item-b", "sensitivity", False),
            ("item-b", "control", True),
        ],
    )
    rows += _ind("p2", [("item-a", "perceivability", False), ("item-c", "perceivability", True)])
    res = per_stimulus(_frame(rows), "indistinguishability", OPTS)
    t = res.tables["indistinguishability_items"].set_index("item_id")
    cols = ["perceivability_trials", "judged_unchanged", "hits", "sensitivity_trials", "false_alarms"]
    assert t.loc["item-a", cols].tolist() == [3, 2, 1, 1, 1]
    assert t.loc["item-b", cols].tolist() == [1, 1, 0, 1, 0]
    assert t.loc["item-b", ["control_trials", "control_hits", "control_hit_rate"]].tolist() == [1, 1, 1.0]
    assert t.loc["item-a", "false_alarm_rate"] == 1.0 and math.isnan(t.loc["item-c", "false_alarm_rate"])
    assert t["share_unchanged"].to_dict() == pytest.approx({"item-a": 2 / 3, "item-b": 1.0, "item-c": 0.0})
    assert res.summary["share"] == pytest.approx(3 / 5)
    assert t.loc["item-c", "change_if_left_out"] == pytest.approx(3 / 4 - 3 / 5)  # the largest: first
    assert res.tables["indistinguishability_items"]["item_id"].iloc[0] == "item-c"
    classes = res.tables["indistinguishability_classes"].set_index("class")
    assert classes.loc["walk", ["items", "perceivability_trials", "judged_unchanged"]].tolist() == [2, 4, 3]


def test_no_analysed_trials_gives_no_tables():
    rows = _dec("p1", [("item-a", True)] * 3, excluded=True, exclusion_reason="x")
    res = per_stimulus(_frame(rows), "deceitfulness", OPTS)
    assert not res.tables and res.notes
    assert not per_stimulus(_frame(rows), "naturalness", OPTS).tables
    with pytest.raises(ValueError, match="unknown study type"):
        per_stimulus(_frame(rows), "preference", OPTS)


# ---- against analysis.perceptual on a simulated study ---------------------------------------------
@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> pd.DataFrame:
    batch: Path = analysis_batch(5)
    batches = load_batches([batch])
    df = simulate(batches, 12, seed=4, observer=Observer(always_unchanged=0.2, dropout=0.2, playback_failure=0.05))
    path = write_responses(df, tmp_path_factory.mktemp("items") / "responses.csv")
    return attach_batches(read_responses_frame(path, REPORT_COLUMNS), batches)


def test_items_add_up_to_the_headline_figures(simulated):
    dec = deceitfulness(simulated, OPTS).summary["overall"]
    ind = indistinguishability(simulated, OPTS).summary["overall"]
    for st, head in (("deceitfulness", dec), ("indistinguishability", ind)):
        res = per_stimulus(simulated, st, OPTS)
        assert res.summary["share"] == pytest.approx(head["share"]) and res.summary["n"] == head["n"]
        items, classes = res.tables[f"{st}_items"], res.tables[f"{st}_classes"]
        n_col = "trials" if st == "deceitfulness" else "perceivability_trials"
        assert items[n_col].sum() == classes[n_col].sum() == head["n"]
        assert len(items) == 5 and items["drives"].sum() >= 2
        # leave-one-out by brute force for one item
        r = items.iloc[0]
        k_col = "chose_true" if st == "deceitfulness" else "judged_unchanged"
        rest = items.iloc[1:]
        assert r["change_if_left_out"] == pytest.approx(rest[k_col].sum() / rest[n_col].sum() - head["share"])
    nat = per_stimulus(simulated, "naturalness", OPTS)
    st = naturalness(simulated, OPTS).tables["naturalness_sign_tests"]
    st = st[(st["subset"] == "analysed") & (st["breakdown"] == "overall")]
    assert nat.summary["n"] == (st["smart_preferred"] + st["ablation_preferred"]).sum()
    assert nat.summary["share"] == pytest.approx(st["smart_preferred"].sum() / nat.summary["n"])
