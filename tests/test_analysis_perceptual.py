"""analysis.perceptual on small hand-made response tables (no batch needed): counts, deceitfulness,
naturalness (normalised preference, sign tests) and indistinguishability (screens, d')."""

from __future__ import annotations

import math
from statistics import NormalDist

import pandas as pd
import pytest

from analysis.perceptual import Options
from analysis.perceptual import counts
from analysis.perceptual import deceitfulness
from analysis.perceptual import indistinguishability
from analysis.perceptual import naturalness
from analysis.readers import rows_to_frame
from stimuli.responses import make_row

OPTS = Options(n_boot=200, glmm=False)


def _row(participant: str, study_type: str, k: int, **kw) -> dict:
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
        item_id=f"item-{k % 3}",
        true_label="walk",
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


def _deceit(participant: str, n_true: int, n: int, **kw) -> list[dict]:
    return [
        _row(
            participant,
            "deceitfulness",
            k,
            variant="smart",
            attacked_label="run",
            answer="true_label" if k < n_true else "attacked_label",
            chose_true_label=k < n_true,
            **kw,
        )
        for k in range(n)
    ]


def test_deceitfulness_hand_table():
    rows = _deceit("p1", 4, 5) + _deceit("p2", 2, 5)
    rows += _deceit("p3", 5, 5, excluded=True, exclusion_reason="sensitivity accuracy 0.50 < 0.80")
    rows += [
        _row("p1", "deceitfulness", 9, practice=True, variant="smart", answer="attacked_label", chose_true_label=False)
    ]  # practice: not analysed
    res = deceitfulness(_frame(rows), OPTS)
    t = res.tables["deceitfulness_rates"].set_index("subset")
    # analysed: p1 and p2 -> 6 of 10; all: 11 of 15
    assert t.loc["analysed", "count"] == 6 and t.loc["analysed", "trials"] == 10
    assert t.loc["analysed", "share"] == pytest.approx(0.6)
    assert t.loc["analysed", "p_value"] == pytest.approx(772 / 1024)  # exact two-sided, by hand
    assert t.loc["analysed", "wilson_low"] < 0.6 < t.loc["analysed", "wilson_high"]
    assert t.loc["all", "share"] == pytest.approx(11 / 15)
    # the paper's deceitfulness on HDM05 with the SMART variant
    assert t.loc["analysed", "paper"] == pytest.approx(0.8677)
    sp = res.tables["deceitfulness_spread"].set_index(["subset", "unit"])
    assert sp.loc[("analysed", "participant"), "mean"] == pytest.approx(0.6)
    assert sp.loc[("analysed", "participant"), "min"] == pytest.approx(0.4)
    assert sp.loc[("analysed", "participant"), "max"] == pytest.approx(0.8)
    part = res.tables["deceitfulness_participants"].set_index("participant")
    assert part.loc["p3", "share"] == 1.0 and not part.loc["p3", "analysed"]


def test_counts_first():
    rows = _deceit("p1", 3, 3) + _deceit("p2", 1, 2, participant_completed=False)
    rows += [
        _row(
            "p3",
            "deceitfulness",
            0,
            practice=True,
            variant="smart",
            answer="true_label",
            chose_true_label=True,
            participant_completed=False,
        )
    ]  # only practice: recruited, not started
    rows += _deceit("p4", 2, 2, excluded=True, exclusion_reason="sensitivity accuracy 0.70 < 0.80")
    rows += _deceit("p5", 2, 2, excluded=True, exclusion_reason="sensitivity accuracy 0.60 < 0.80")
    res = counts(_frame(rows))
    c = res.tables["counts"].iloc[0]
    assert (c.recruited, c.started, c.completed, c.excluded, c.analysed) == (5, 4, 3, 2, 1)
    ex = res.tables["exclusions"]
    assert ex["reason_kind"].tolist() == ["sensitivity accuracy # < #"] and ex["participants"].tolist() == [2]


def _nat(participant: str, k: int, left: str, right: str, answer: str, **kw) -> dict:
    pref = {"left": left, "right": right}.get(answer)
    pair = "smart-vs-ablation" if "smart" in (left, right) else "ablation-vs-ablation"
    return _row(
        participant,
        "naturalness",
        k,
        left_variant=left,
        right_variant=right,
        variant=right,
        answer=answer,
        preferred_variant=pref,
        naturalness_pair=pair,
        plays=2,
        **kw,
    )


def test_naturalness_normalised_preference_and_sign_test_by_hand():
    rows = [
        _nat("p1", 0, "smart", "l2", "left"),
        _nat("p1", 1, "smart", "l2", "left"),
        _nat("p2", 0, "smart", "l2", "left"),
        _nat("p2", 1, "smart", "l2", "right"),
        _nat("p2", 2, "smart", "l2", "cant_tell"),
        _nat("p1", 2, "l2", "l2-acc", "left"),
        _nat("p1", 3, "l2-acc", "l2", "right"),
        _nat("p2", 3, "l2", "l2-acc", "right"),
        _nat("p2", 4, "l2-acc", "l2", "left"),
    ]
    res = naturalness(_frame(rows), OPTS)
    pref = res.tables["naturalness_preference"]
    pref = pref[pref["subset"] == "analysed"].set_index("method")
    # shown: smart 5, l2 9, l2-acc 4; chosen: smart 3, l2 3, l2-acc 2 -> 0.6, 1/3, 0.5, normalised by 43/30
    assert pref.loc[["smart", "l2", "l2-acc"], "shown"].tolist() == [5, 9, 4]
    assert pref.loc[["smart", "l2", "l2-acc"], "chosen"].tolist() == [3, 3, 2]
    assert pref.loc["smart", "win_rate"] == pytest.approx(0.6)
    total = 0.6 + 1 / 3 + 0.5
    assert pref.loc[["smart", "l2", "l2-acc"], "normalised_preference"].tolist() == pytest.approx(
        [0.6 / total, (1 / 3) / total, 0.5 / total]
    )
    lr = res.tables["naturalness_pairs_lr"]
    r = lr[(lr["subset"] == "analysed") & (lr["left"] == "smart") & (lr["right"] == "l2")].iloc[0]
    assert (r.left_chosen, r.right_chosen, r.cant_tell) == (3, 1, 1)
    # sign test SMART vs l2: 3 vs 1 decisive -> P(X >= 3 | 4) = 5/16, two-sided 10/16; one ablation: Holm = raw
    st = res.tables["naturalness_sign_tests"]
    st = st[st["subset"] == "analysed"].iloc[0]
    assert st.ablation == "l2" and st.p_value == pytest.approx(10 / 16) and st.p_holm == pytest.approx(10 / 16)
    bt = res.tables["naturalness_bt"]
    assert set(bt["method"]) == {"smart", "l2", "l2-acc"}
    assert bt.groupby("subset")["log_strength"].sum().abs().max() < 1e-9  # sum-zero scores


def _ind(participant: str, k: int, kind: str, changed: bool, **kw) -> dict:
    right = {"sensitivity": "original", "control": "control", "perceivability": "smart"}[kind]
    return _row(
        participant,
        "indistinguishability",
        k,
        left_variant="original",
        right_variant=right,
        variant=right,
        trial_kind=kind,
        answer="changed" if changed else "unchanged",
        said_changed=changed,
        correct=changed == (kind != "sensitivity"),
        **kw,
    )


def test_indistinguishability_screens_and_dprime_by_hand():
    rows, k = [], 0
    # A: 2 false alarms in 10 sensitivity trials, 8 hits in 10 attacked, 5 of 5 controls
    for kind, n, yes in (("sensitivity", 10, 2), ("perceivability", 10, 8), ("control", 5, 5)):
        for i in range(n):
            rows.append(_ind("A", k, kind, i < yes))
            k += 1
    # B answers "unchanged" to everything: passes the paper's screen, misses every control
    for kind, n in (("sensitivity", 10), ("perceivability", 10), ("control", 5)):
        for _ in range(n):
            rows.append(_ind("B", k, kind, False))
            k += 1
    res = indistinguishability(_frame(rows), OPTS)
    part = res.tables["indistinguishability_participants"].set_index("participant")
    assert part.loc["A", "sensitivity_accuracy"] == pytest.approx(0.8) and part.loc["A", "passes_sensitivity"]
    assert part.loc["A", "dprime"] == pytest.approx(1.4957, abs=1e-3)  # H = 8.5/11, F = 2.5/11
    assert part.loc["B", "passes_sensitivity"] and not part.loc["B", "passes_control"]
    assert part.loc["B", "always_unchanged"]
    rates = res.tables["indistinguishability_rates"].set_index("subset")
    assert rates.loc["analysed", "share"] == pytest.approx(12 / 20)  # A 2 + B 10 unchanged of 20
    assert rates.loc["analysed+controls", "share"] == pytest.approx(2 / 10)  # B screened out by the controls
    assert rates.loc["analysed", "paper"] == pytest.approx(0.8083)  # HDM05, SMART
    dp = res.tables["indistinguishability_dprime"].set_index("subset")
    z = NormalDist().inv_cdf
    assert dp.loc["analysed", "dprime"] == pytest.approx(z(8.5 / 21) - z(2.5 / 21), abs=1e-9)
    assert dp.loc["analysed", "control_hit_rate"] == pytest.approx(0.5)
    assert dp.loc["analysed+controls", "control_hit_rate"] == pytest.approx(1.0)
    sc = res.summary["screening"]
    assert sc["always_unchanged"] == 1 and sc["always_unchanged_passing_sensitivity"] == 1 and sc["fail_control"] == 1


def test_breakdown_per_dataset_and_paper_values():
    rows = _deceit("p1", 9, 10) + _deceit("p2", 7, 10, dataset="berkeley_mhad", batch_id="b2")
    t = deceitfulness(_frame(rows), OPTS).tables["deceitfulness_rates"]
    t = t[t["subset"] == "analysed"].set_index(["breakdown", "level"])
    assert t.loc[("overall", "all"), "paper"] == pytest.approx(0.9332)  # HDM05 and MHAD together
    assert t.loc[("dataset", "hdm05"), "share"] == pytest.approx(0.9)
    assert t.loc[("dataset", "hdm05"), "paper"] == pytest.approx(0.8677)
    assert t.loc[("dataset", "berkeley_mhad"), "paper"] == pytest.approx(0.9638)
    assert ("model", "agcn") not in t.index  # one model: no breakdown beyond overall


def test_bad_answers_are_refused():
    from stimuli.errors import DataError

    rows = [_nat("p1", 0, "smart", "l2", "left"), _nat("p1", 1, "smart", "l2", "maybe")]
    with pytest.raises(DataError, match="unknown answer"):
        naturalness(_frame(rows), OPTS)
    rows = [_ind("p1", 0, "sensitivity", False), {**_ind("p1", 1, "perceivability", True), "trial_kind": "catch"}]
    with pytest.raises(DataError, match="unknown trial_kind 'catch'"):
        indistinguishability(_frame(rows), OPTS)


def test_mixed_model_falls_back_clearly():
    rows = _deceit("p1", 5, 5) + _deceit("p2", 5, 5)  # every answer the same: infinite log-odds
    res = deceitfulness(_frame(rows), Options(n_boot=100))
    fit = res.extra["glmm"]
    assert not fit.converged and "every answer is the same" in fit.note
    assert any("falling back on the two-way" in n for n in res.notes)
    assert res.tables["deceitfulness_glmm"].empty


def test_every_analysis_module_is_torch_free():
    import pkgutil
    import subprocess
    import sys

    import analysis

    mods = ", ".join(f"analysis.{m.name}" for m in pkgutil.iter_modules(analysis.__path__))
    code = f"import sys, {mods}; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_effect_sizes_and_intervals_of_preferences_by_hand():
    # two participants: a participant bootstrap has three outcomes ({p1, p1}, {p2, p2}, {p1, p2} with probabilities
    # 1/4, 1/4, 1/2), so a 95 % percentile interval runs from the one-participant value to the other
    rows = [
        _nat("p1", 0, "smart", "l2", "left"),
        _nat("p1", 1, "smart", "l2", "left"),
        _nat("p2", 0, "smart", "l2", "left"),
        _nat("p2", 1, "smart", "l2", "right"),
        _nat("p2", 2, "smart", "l2", "cant_tell"),
        _nat("p1", 2, "l2", "l2-acc", "left"),
        _nat("p1", 3, "l2-acc", "l2", "right"),
        _nat("p2", 3, "l2", "l2-acc", "right"),
        _nat("p2", 4, "l2-acc", "l2", "left"),
    ]
    res = naturalness(_frame(rows), Options(n_boot=4000, glmm=False))
    st = res.tables["naturalness_sign_tests"]
    st = st[(st["subset"] == "analysed") & (st["breakdown"] == "overall")].iloc[0]
    # SMART vs l2, decisive answers: p1 2 of 2, p2 1 of 2, both 3 of 4
    assert st.share_smart_decisive == pytest.approx(0.75)
    assert (st.boot_low, st.boot_high) == (pytest.approx(0.5), pytest.approx(1.0))
    assert st.cohens_h == pytest.approx(math.pi / 6)  # 2 asin(sqrt(3/4)) - 2 asin(sqrt(1/2)) = 2 pi/3 - pi/2
    assert (st.h_low, st.h_high) == (pytest.approx(0.0), pytest.approx(math.pi / 2))
    assert st.wilson_low < 0.75 < st.wilson_high
    pref = res.tables["naturalness_preference"]
    smart = pref[(pref["subset"] == "analysed") & (pref["method"] == "smart")].iloc[0]
    # p1 alone: win rates smart 2/2, l2 2/4, l2-acc 0/2 -> smart 1 / 1.5; p2 alone: 1/3, 1/5, 2/2 -> (1/3) / (23/15)
    assert (smart.ci_low, smart.ci_high) == (pytest.approx((1 / 3) / (23 / 15)), pytest.approx(2 / 3))
    assert smart.ci_low < smart.normalised_preference < smart.ci_high


def test_cohens_h_of_shares_against_their_references():
    rows = _deceit("p1", 4, 5) + _deceit("p2", 2, 5)
    res = deceitfulness(_frame(rows), Options(n_boot=0, glmm=False))
    t = res.tables["deceitfulness_rates"].set_index("subset")
    # 6 of 10 against 1/2; without a bootstrap the interval is Wilson's, mapped through h
    h = 2 * math.asin(math.sqrt(0.6)) - math.pi / 2
    assert t.loc["analysed", "cohens_h"] == pytest.approx(h) and h == pytest.approx(0.2013579)
    lo, hi = t.loc["analysed", ["wilson_low", "wilson_high"]]
    assert t.loc["analysed", "h_low"] == pytest.approx(2 * math.asin(math.sqrt(lo)) - math.pi / 2)
    assert t.loc["analysed", "h_high"] == pytest.approx(2 * math.asin(math.sqrt(hi)) - math.pi / 2)
    # the true label is always 'walk', the attacked one 'run': the label prior alone gets every trial right
    prior = res.tables["deceitfulness_label_prior"].set_index("frequencies")
    assert prior.loc["pooled", "accuracy"] == 1.0
    assert prior.loc["pooled", "cohens_h"] == pytest.approx(2 * math.asin(math.sqrt(0.6)) - math.pi)
    assert res.summary["cohens_h_vs_label_prior"]["pooled"]["h"] == pytest.approx(-1.369438, abs=1e-6)
