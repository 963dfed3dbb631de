"""Study server, pure parts: balanced assignment, the three trial designs, screening (hand-worked cases)."""

from __future__ import annotations

from collections import Counter

import pytest

from stimuli.screening import Answer
from stimuli.screening import screen
from study_server.design import ItemInfo
from study_server.design import balanced_pick
from study_server.design import design_deceitfulness
from study_server.design import design_indistinguishability
from study_server.design import design_naturalness
from study_server.design import kinds_count
from study_server.design import split_counts

ABLATIONS = ["l2", "l2-acc", "l2-bone"]
VARIANTS = ["smart", *ABLATIONS]


def items(n: int = 3, failed: tuple[str, str] | None = None) -> list[ItemInfo]:
    out = []
    for item_id in "abcd"[:n]:
        ok = {v: (item_id, v) != failed for v in VARIANTS}
        out.append(ItemInfo(item_id, "walk", {v: "jog" if ok[v] else "walk" for v in VARIANTS}, ok))
    return out


# ---- balancing ---------------------------------------------------------------------------------
def test_balanced_pick_takes_the_least_filled_cells_first():
    assert balanced_pick(["a", "b", "c"], 2, {"a": 2, "c": 1}, seed=0) == ["b", "c"]


def test_balanced_pick_uses_every_cell_once_before_any_twice():
    # round 1: b (0), c (1), a (2); then every cell used once; totals a 3, b 1, c 2 -> b
    assert balanced_pick(["a", "b", "c"], 4, {"a": 2, "c": 1}, seed=0) == ["b", "c", "a", "b"]


def test_balanced_pick_breaks_ties_by_the_seed_only():
    orders = {tuple(balanced_pick(["a", "b", "c"], 3, {}, seed=s)) for s in range(20)}
    assert all(sorted(o) == ["a", "b", "c"] for o in orders)
    assert len(orders) > 1  # different seeds, different tie-breaks
    assert balanced_pick(["a", "b", "c"], 3, {}, seed=7) == balanced_pick(["c", "b", "a"], 3, {}, seed=7)
    assert balanced_pick(["a", "b", "c"], 3, {}, seed=7) == balanced_pick(["a", "b", "c"], 3, {}, seed=7)


def test_balanced_pick_refuses_nonsense():
    assert balanced_pick(["a"], 0, {}, seed=0) == []
    with pytest.raises(ValueError, match="k must be >= 0"):
        balanced_pick(["a"], -1, {}, seed=0)
    with pytest.raises(ValueError, match="no cells"):
        balanced_pick([], 1, {}, seed=0)


def test_split_counts_rounds_half_up_and_keeps_the_rest():
    assert split_counts(10, [0.2, 0.1]) == [2, 1, 7]
    assert split_counts(5, [0.2, 0.1]) == [1, 1, 3]  # 0.5 rounds up
    assert split_counts(100, [0.2, 0.1]) == [20, 10, 70]
    with pytest.raises(ValueError, match="leave no room"):
        split_counts(10, [0.6, 0.6])


# ---- naturalness -------------------------------------------------------------------------------
def test_naturalness_three_motions_give_six_trials_of_the_papers_two_kinds():
    specs = design_naturalness(items(3), 6, 0, {}, seed=1, ablations=ABLATIONS)
    assert len(specs) == 6
    per_item = {i: [s for s in specs if s.item_id == i] for i in "abc"}
    for trials in per_item.values():
        assert sorted(s.naturalness_pair for s in trials) == ["ablation-vs-ablation", "smart-vs-ablation"]
        for s in trials:
            pair = {s.left_variant, s.right_variant}
            assert len(pair) == 2 and s.stimulus == f"{s.left_variant}|{s.right_variant}"
            if s.naturalness_pair == "smart-vs-ablation":
                assert "smart" in pair and (pair - {"smart"}) <= set(ABLATIONS)
            else:
                assert pair <= set(ABLATIONS)  # two different ablations


def test_naturalness_balances_the_ablation_and_the_motions():
    counts = {"a|smart~l2": 5, "a|smart~l2-acc": 5, "a|l2~l2-acc": 1, "a|l2~l2-bone": 1}
    specs = design_naturalness(items(1), 2, 0, counts, seed=3, ablations=ABLATIONS)
    smart = next(s for s in specs if s.naturalness_pair == "smart-vs-ablation")
    other = next(s for s in specs if s.naturalness_pair == "ablation-vs-ablation")
    assert {smart.left_variant, smart.right_variant} == {"smart", "l2-bone"}  # the one never shown
    assert {other.left_variant, other.right_variant} == {"l2-acc", "l2-bone"}  # the pair never shown
    # motions: a has been shown (its SMART trials count 10), so two motions out of three are b and c
    specs = design_naturalness(items(3), 4, 0, counts, seed=3, ablations=ABLATIONS)
    assert {s.item_id for s in specs} == {"b", "c"}


def test_naturalness_sides_are_random_across_seeds():
    lefts = Counter()
    for seed in range(30):
        for s in design_naturalness(items(3), 6, 0, {}, seed=seed, ablations=ABLATIONS):
            if s.naturalness_pair == "smart-vs-ablation":
                lefts[s.left_variant == "smart"] += 1
    assert lefts[True] > 15 and lefts[False] > 15


def test_naturalness_refuses_odd_counts_and_too_few_ablations():
    with pytest.raises(ValueError, match="even"):
        design_naturalness(items(3), 5, 0, {}, seed=0, ablations=ABLATIONS)
    with pytest.raises(ValueError, match="at least two ablations"):
        design_naturalness(items(3), 4, 0, {}, seed=0, ablations=["l2"])


# ---- indistinguishability ----------------------------------------------------------------------
def test_indistinguishability_composition_follows_the_shares():
    specs = design_indistinguishability(
        items(3), 10, 2, {}, seed=5, variants=["smart"], controls=["control"], sensitivity_share=0.2, control_share=0.1
    )
    assert len(specs) == 12
    assert [s.practice for s in specs[:2]] == [True, True] and not any(s.practice for s in specs[2:])
    assert kinds_count(specs) == {"sensitivity": 2, "control": 1, "perceivability": 7}
    for s in specs:
        assert s.left_variant == "original" and s.stimulus == f"original|{s.right_variant}"
        assert s.right_variant == {"sensitivity": "original", "control": "control", "perceivability": "smart"}[s.kind]
    # practice: a clear change first, then an unchanged pair
    assert [s.kind for s in specs[:2]] == ["control", "sensitivity"]


def test_indistinguishability_fills_the_least_filled_items():
    # 7 perceivability trials over 3 cells, 'a' already seen 10 times: rounds b,c,a / b,c,a / then b or c
    specs = design_indistinguishability(
        items(3),
        7,
        0,
        {"perceivability|a|smart": 10},
        seed=2,
        variants=["smart"],
        controls=["control"],
        sensitivity_share=0,
        control_share=0,
    )
    per_item = Counter(s.item_id for s in specs)
    assert per_item["a"] == 2 and sorted([per_item["b"], per_item["c"]]) == [2, 3]


def test_indistinguishability_several_attacked_variants_are_balanced_cells():
    specs = design_indistinguishability(
        items(2), 8, 0, {}, seed=2, variants=["smart", "l2"], controls=["control"], sensitivity_share=0, control_share=0
    )
    assert Counter((s.item_id, s.right_variant) for s in specs) == {
        ("a", "smart"): 2,
        ("a", "l2"): 2,
        ("b", "smart"): 2,
        ("b", "l2"): 2,
    }


def test_main_trials_are_shuffled_by_the_seed():
    a = design_indistinguishability(
        items(3), 10, 0, {}, seed=1, variants=["smart"], controls=["control"], sensitivity_share=0.2, control_share=0.1
    )
    b = design_indistinguishability(
        items(3), 10, 0, {}, seed=1, variants=["smart"], controls=["control"], sensitivity_share=0.2, control_share=0.1
    )
    assert a == b
    orders = {
        tuple(
            s.kind
            for s in design_indistinguishability(
                items(3),
                10,
                0,
                {},
                seed=k,
                variants=["smart"],
                controls=["control"],
                sensitivity_share=0.2,
                control_share=0.1,
            )
        )
        for k in range(10)
    }
    assert len(orders) > 1


# ---- deceitfulness -----------------------------------------------------------------------------
def test_deceitfulness_shows_only_clips_that_fooled_the_model_with_both_labels():
    specs = design_deceitfulness(items(3, failed=("b", "smart")), 4, 1, {}, seed=4)
    assert len(specs) == 5 and specs[0].practice
    assert {s.item_id for s in specs} == {"a", "c"}
    for s in specs:
        assert s.variant == "smart" and s.stimulus == "smart"
        assert s.true_label == "walk" and s.attacked_label == "jog"
        assert s.label_order in ("true,attacked", "attacked,true")
    main = [s for s in specs if not s.practice]
    assert Counter(s.item_id for s in main) == {"a": 2, "c": 2}
    orders = {s.label_order for k in range(10) for s in design_deceitfulness(items(3), 4, 0, {}, seed=k)}
    assert orders == {"true,attacked", "attacked,true"}


def test_deceitfulness_without_a_successful_attack_is_refused():
    none = [ItemInfo("a", "walk", {"smart": "walk"}, {"smart": False})]
    with pytest.raises(ValueError, match="changed the label"):
        design_deceitfulness(none, 2, 0, {}, seed=0)


# ---- screening ---------------------------------------------------------------------------------
def answers(**kinds: tuple[int, int]) -> list[Answer]:
    """``kind=(said_changed, said_unchanged)`` counts."""
    out = []
    for kind, (changed, unchanged) in kinds.items():
        out += [Answer(kind, True)] * changed + [Answer(kind, False)] * unchanged
    return out


def test_always_unchanged_passes_sensitivity_but_misses_every_control():
    s = screen(answers(sensitivity=(0, 2), control=(0, 2), perceivability=(0, 6)))
    assert not s.excluded and s.reason is None
    assert s.stats["sensitivity_accuracy"] == 1.0
    assert s.stats["control_misses"] == 2 and s.stats["control_hit_rate"] == 0.0
    assert "always_unchanged" in s.stats["flags"] and "missed_every_control" in s.stats["flags"]
    s = screen(answers(sensitivity=(0, 2), control=(0, 2), perceivability=(0, 6)), control_hit_threshold=0.5)
    assert s.excluded and s.reason == "positive-control hit rate 0.00 < 0.50"


def test_sensitivity_below_threshold_excludes_with_the_reason():
    s = screen(answers(sensitivity=(3, 7), control=(2, 0)))
    assert s.excluded and s.reason == "sensitivity accuracy 0.70 < 0.80"
    assert s.stats["false_alarms"] == 3 and s.stats["control_hits"] == 2
    assert not screen(answers(sensitivity=(1, 4))).excluded  # 0.80 is not below 0.80
    both = screen(answers(sensitivity=(5, 5), control=(0, 1)), control_hit_threshold=1.0)
    assert both.reason == "sensitivity accuracy 0.50 < 0.80; positive-control hit rate 0.00 < 1.00"


def test_screening_without_catch_trials_excludes_nobody():
    s = screen([])
    assert not s.excluded and s.stats["sensitivity_accuracy"] is None and s.stats["flags"] == []


def _label_items() -> list[ItemInfo]:
    """Two pairs that balance each other (walk <-> run, kick <-> punch) and four attacks that all say 'squat'."""
    edges = [
        ("w1", "walk", "run"),
        ("r1", "run", "walk"),
        ("k1", "kick", "punch"),
        ("p1", "punch", "kick"),
        ("x1", "bow", "squat"),
        ("x2", "clap", "squat"),
        ("x3", "wave", "squat"),
        ("x4", "jump", "squat"),
    ]
    return [ItemInfo(i, t, {"smart": a}, {"smart": True}) for i, t, a in edges]


def _balance(specs) -> Counter:
    b: Counter = Counter()
    for s in specs:
        if not s.practice:
            b[s.true_label] += 1
            b[s.attacked_label] -= 1
    return b


@pytest.mark.parametrize("seed", range(6))
def test_deceitfulness_shows_each_label_as_often_true_as_attacked_where_the_batch_allows(seed):
    # 4 trials: the two balancing pairs, whatever the seed: no label's frequency tells the answer
    specs = design_deceitfulness(_label_items(), 4, 0, {}, seed)
    assert {s.item_id for s in specs} == {"w1", "r1", "k1", "p1"}
    assert all(v == 0 for v in _balance(specs).values())
    # 6 trials: the balanced four, then two that cannot be balanced (squat is never a true label)
    specs = design_deceitfulness(_label_items(), 6, 0, {}, seed)
    assert {"w1", "r1", "k1", "p1"} <= {s.item_id for s in specs}
    assert sum(abs(v) for v in _balance(specs).values()) == 4
