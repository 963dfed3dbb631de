"""analysis.quality: per-participant data-quality flags on a hand-made study where we know who is too fast,
straight-lining, side-biased, switching tabs or stalled; the sensitivity table against hand counts; the playback
log read from the CSV export; the CLI settings end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from support.batches import analysis_batch

from analysis.cli import cli
from analysis.perceptual import Options
from analysis.quality import binom_half_p
from analysis.quality import data_quality
from analysis.quality import participant_flags
from analysis.readers import REPORT_COLUMNS
from analysis.readers import playback_counts
from analysis.readers import read_responses_frame
from analysis.readers import rows_to_frame
from analysis.stats import binom_test
from stimuli.responses import make_row
from stimuli.responses import rows_to_csv

OPTS = Options(n_boot=50, glmm=False)


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
        response_time_ms=2000.0,
    )
    base.update(kw)
    return make_row(**base)


def _dec(participant: str, n: int, first: list[bool] | None = None, true: list[bool] | None = None, **kw):
    """Deceitfulness trials; the labels' order alternates (true first on even trials). ``first``: the answer is the
    label shown first; ``true``: the answer is the true label (give one of the two)."""
    rows = []
    for k in range(n):
        true_first = k % 2 == 0
        ok = true[k] if true is not None else (first[k] == true_first)
        extra = {key: (v[k] if isinstance(v, list) else v) for key, v in kw.items()}
        rows.append(
            _row(
                participant,
                "deceitfulness",
                k,
                variant="smart",
                attacked_label="run",
                label_order="true,attacked" if true_first else "attacked,true",
                answer="true_label" if ok else "attacked_label",
                chose_true_label=ok,
                **extra,
            )
        )
    return rows


def _events(n: int, at: dict[int, list[str]]) -> list:
    return [[{"type": t, "t": 1.0} for t in at[k]] if k in at else None for k in range(n)]


def _nat(participant: str, answers: list[str]) -> list[dict]:
    """Even trials SMART vs l2 (SMART left when k % 4 == 0), odd trials l2 vs l2-acc."""
    rows = []
    for k, a in enumerate(answers):
        left, right = (("smart", "l2") if k % 4 == 0 else ("l2", "smart")) if k % 2 == 0 else ("l2", "l2-acc")
        pref = {"left": left, "right": right}.get(a)
        rows.append(
            _row(
                participant,
                "naturalness",
                k,
                left_variant=left,
                right_variant=right,
                variant=right,
                answer=a,
                preferred_variant=pref,
            )
        )
    return rows


def _ind(participant: str, changed: list[bool]) -> list[dict]:
    """Trials 0-2 sensitivity, 3-8 perceivability, 9 a positive control."""
    rows = []
    for k, c in enumerate(changed):
        kind = "sensitivity" if k < 3 else ("perceivability" if k < 9 else "control")
        rows.append(
            _row(
                participant,
                "indistinguishability",
                k,
                variant="original" if kind == "sensitivity" else "smart",
                trial_kind=kind,
                answer="changed" if c else "unchanged",
                said_changed=c,
            )
        )
    return rows


def _rows() -> list[dict]:
    rows = []
    ok_events = _events(20, {0: ["waiting"], 1: ["start"]})
    ok_events[1][0]["detail"] = "hidden"  # a detail that says 'hidden' is not a hidden event
    # the true label every time (so the positions alternate); 1 stalled trial of 20: 5 %
    rows += _dec("d-ok", 20, true=[True] * 20, playback_events=ok_events)
    rows += _dec("d-fast", 10, true=[k < 6 for k in range(10)], response_time_ms=[100.0] * 3 + [2000.0] * 7)
    rows += _dec("d-first", 10, first=[True] * 10)  # always the label shown first
    rows += _dec(
        "d-tab", 10, true=[True] * 10, playback_events=_events(10, {0: ["play", "hidden", "hidden"], 1: ["hidden"]})
    )
    rows += _dec(
        "d-stall", 10, true=[True] * 10, playback_events=_events(10, {3: ["waiting", "stalled"], 5: ["stalled"]})
    )
    rows += _dec("d-side", 40, first=[k < 34 for k in range(40)])  # 34 first, 6 second: 85 %, not straight
    rows += _dec("d-excl", 10, true=[True] * 10, response_time_ms=100.0, excluded=True, exclusion_reason="x")
    rows += _nat("n-left", ["left"] * 10)
    rows += _nat("n-cant", ["cant_tell"] * 10)
    # SMART chosen on even trials, right on odd ones: positions L R R R L R R R L R (3 left of 10)
    rows += _nat("n-ok", [("left" if k % 4 == 0 else "right") for k in range(10)])
    rows += _ind("i-unch", [False] * 10)  # 'unchanged' to everything
    rows += _ind("i-ok", [False, False, False, True, True, False, False, False, False, True])
    rows += _ind("i-most", [False] * 9 + [True])  # 90 % the same answer: not straight-lining here
    return rows


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = rows_to_frame(_rows())
    df["item_key"] = pd.Categorical(df["batch_id"].astype(str) + "\x1f" + df["item_id"].astype(str))
    return df


def _flags(part: pd.DataFrame, flag: str) -> set[str]:
    return set(part.loc[part[flag], "participant"])


def _p_half(k: int, n: int) -> float:
    """Two-sided exact binomial p-value against 1/2, by summing the binomial coefficients."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_flags_name_the_participants_built_to_have_them(frame):
    part = participant_flags(frame, OPTS)
    assert _flags(part, "too_fast") == {"d-fast", "d-excl"}
    assert _flags(part, "straight_lining") == {"d-first", "n-left", "n-cant", "i-unch"}
    assert _flags(part, "side_bias") == {"d-first", "d-side", "n-left"}
    assert _flags(part, "tab_switches") == {"d-tab"}
    assert _flags(part, "stalls") == {"d-stall"}
    p = part.set_index("participant")
    assert p.loc["d-first", "flags"] == "straight-lining; side bias" and p.loc["d-ok", "flags"] == ""
    assert part["n_flags"].is_monotonic_decreasing
    assert not p.loc["d-excl", "analysed"] and p.loc["d-ok", "analysed"]


def test_the_measures_behind_the_flags_by_hand(frame):
    p = participant_flags(frame, OPTS).set_index("participant")
    # too fast: 3 of 10 answers under 250 ms
    assert p.loc["d-fast", ["fast_answers", "timed_answers"]].tolist() == [3, 10]
    assert p.loc["d-fast", "fast_share"] == 0.3 and p.loc["d-fast", "median_response_ms"] == 2000.0
    assert p.loc["d-excl", "median_response_ms"] == 100.0
    # label positions: d-ok alternates, d-first always first, d-side 34 of 40 first
    assert p.loc["d-ok", ["modal_share", "side_trials", "first_side"]].tolist() == [0.5, 20, 10]
    assert p.loc["d-first", ["modal_answer", "modal_share"]].tolist() == ["first label", 1.0]
    assert p.loc["d-side", ["modal_share", "first_side", "side_trials"]].tolist() == [0.85, 34, 40]
    assert p.loc["n-left", ["modal_answer", "first_side", "side_trials"]].tolist() == ["left", 10, 10]
    assert p.loc["n-cant", "modal_answer"] == "can't tell" and p.loc["n-cant", "side_trials"] == 0
    assert p.loc["n-ok", ["first_side", "side_trials", "modal_share"]].tolist() == [3, 10, 0.7]
    assert p.loc["i-most", ["modal_answer", "modal_share"]].tolist() == ["unchanged", 0.9]
    # the side test against sums of binomial coefficients, Holm over the 7 deceitfulness participants by hand
    assert p.loc["d-side", "p_side"] == pytest.approx(_p_half(34, 40))
    assert p.loc["d-first", "p_side"] == pytest.approx(2 / 2**10)
    assert p.loc["n-ok", "p_side"] == pytest.approx(2 * (1 + 10 + 45 + 120) / 1024)
    dec = p[p["study_type"] == "deceitfulness"]
    raw = sorted(dec["p_side"])  # 2 small ones, then 5 ones
    assert raw[2:] == [1.0] * 5
    assert p.loc["d-side", "p_side_holm"] == pytest.approx(7 * _p_half(34, 40))
    assert p.loc["d-first", "p_side_holm"] == pytest.approx(6 * 2 / 2**10)
    assert math.isnan(p.loc["n-cant", "p_side"]) and math.isnan(p.loc["i-ok", "p_side"])
    # playback log: trials with a hidden event (d-tab: 2 trials, 3 events) and with a stall
    assert p.loc["d-tab", ["hidden_trials", "hidden_events"]].tolist() == [2, 3]
    assert p.loc["d-stall", ["stalled_trials", "stall_events"]].tolist() == [2, 3]
    assert p.loc["d-ok", ["hidden_trials", "stalled_trials"]].tolist() == [0, 1]


def test_vectorised_binomial_test_agrees_with_scipy():
    k = np.array([0, 3, 5, 10, 34, 17, 0])
    n = np.array([10, 10, 10, 10, 40, 33, 1])
    assert binom_half_p(k, n) == pytest.approx(binom_test(k, n), rel=1e-9)
    assert math.isnan(binom_half_p(0, 0))


def test_thresholds_are_settings(frame):
    lax = participant_flags(frame, Options(fast_share=0.5, same_share=0.8, stall_share=0.05, tab_trials=3))
    assert _flags(lax, "too_fast") == {"d-excl"}  # d-fast's median answer is 2 s
    assert _flags(lax, "straight_lining") == {"d-first", "d-side", "n-left", "n-cant", "i-unch"}
    assert _flags(lax, "stalls") == {"d-stall", "d-ok"} and not _flags(lax, "tab_switches")
    slow = participant_flags(frame, Options(fast_ms=50.0))
    assert not _flags(slow, "too_fast")
    strict = participant_flags(frame, Options(side_alpha=1e-4))
    assert _flags(strict, "side_bias") == {"d-side"}


def test_sensitivity_table_by_hand(frame):
    res = data_quality(frame, OPTS)
    s = res.tables["quality_sensitivity"].set_index(["flag", "figure"])
    # Deceitfulness, analysed (d-excl is not): d-ok 20/20, d-fast 6/10, d-first 5/10, d-tab 10/10,
    # d-stall 10/10, d-side 20/40 (17 of the first 34, 3 of the last 6) -> 71 / 100
    dec = {
        "too_fast": (65, 90, 1),  # without d-fast (d-excl is flagged too, but not analysed)
        "straight_lining": (66, 90, 1),
        "side_bias": (46, 50, 2),
        "tab_switches": (61, 90, 1),
        "stalls": (61, 90, 1),
        "any": (20, 20, 5),
    }
    for flag, (k, n, flagged) in dec.items():
        r = s.loc[(flag, "share_true_label")]
        assert (r["trials_all"], r["value_all"], r["participants"]) == (100, 0.71, 6)
        assert (r["trials_kept"], r["flagged"]) == (n, flagged)
        assert r["value_kept"] == pytest.approx(k / n) and r["difference"] == pytest.approx(k / n - 0.71)
    # Naturalness: SMART preferred in 3 of n-left's 5 decisive SMART trials, 5 of n-ok's 5 -> 8 / 10
    r = s.loc[("straight_lining", "share_smart_preferred")]
    assert (r["value_all"], r["trials_all"], r["value_kept"], r["trials_kept"]) == (0.8, 10, 1.0, 5)
    r = s.loc[("side_bias", "share_smart_preferred")]
    assert (r["value_kept"], r["flagged"]) == (1.0, 1)
    # Indistinguishability: unchanged on i-unch 6/6, i-ok 4/6, i-most 6/6 -> 16/18; without i-unch 10/12
    r = s.loc[("straight_lining", "share_unchanged")]
    assert r["value_all"] == pytest.approx(16 / 18) and r["value_kept"] == pytest.approx(10 / 12)
    r = s.loc[("straight_lining", "false_alarm_rate")]
    assert (r["value_all"], r["trials_all"], r["value_kept"], r["trials_kept"]) == (0.0, 9, 0.0, 6)
    assert res.summary["flagged"]["straight_lining"] == {
        "deceitfulness": 1,
        "naturalness": 2,
        "indistinguishability": 1,
    }
    assert res.summary["flagged_analysed"]["too_fast"]["deceitfulness"] == 1


def test_one_participant_in_two_designs_of_one_study_is_flagged_per_design():
    # the same participant answers deceitfulness (always the label shown first) and naturalness (SMART every time)
    rows = _dec("p", 10, first=[True] * 10) + _nat("p", [("left" if k % 4 == 0 else "right") for k in range(10)])
    rows += _dec("q", 10, true=[True] * 10) + _nat("q", ["left"] * 10)
    for r in rows:
        r["study"], r["block"] = "s-both", int(r["study_type"] == "naturalness")
    res = data_quality(rows_to_frame(rows), OPTS)
    part = res.tables["quality_participants"].set_index(["participant", "study_type"])
    assert bool(part.loc[("p", "deceitfulness"), "straight_lining"])
    assert not part.loc[("p", "naturalness"), "straight_lining"]
    assert bool(part.loc[("q", "naturalness"), "straight_lining"])
    s = res.tables["quality_sensitivity"].set_index(["flag", "figure"])
    r = s.loc[("straight_lining", "share_true_label")]  # p: 5 of 10 true; q: 10 of 10; without p
    assert (r["participants"], r["flagged"], r["value_all"], r["value_kept"]) == (2, 1, 0.75, 1.0)
    r = s.loc[("straight_lining", "share_smart_preferred")]  # p: 5 of 5 decisive SMART; q: left 3 of 5; without q
    assert (r["flagged"], r["value_all"], r["value_kept"]) == (1, 0.8, 1.0)


def test_the_csv_export_gives_the_same_playback_counts(frame, tmp_path):
    path = tmp_path / "responses.csv"
    path.write_text(rows_to_csv(_rows()), encoding="utf-8")
    df = read_responses_frame(path, REPORT_COLUMNS)
    assert "playback_events" not in df and {"hidden_events", "stall_events", "label_order"} <= set(df.columns)
    for c in ("hidden_events", "stall_events"):
        assert df[c].tolist() == frame[c].tolist()
    assert int(df["hidden_events"].sum()) == 3 and int(df["stall_events"].sum()) == 4
    a = participant_flags(df, OPTS)
    b = participant_flags(frame, OPTS)
    pd.testing.assert_frame_equal(a, b)


def test_playback_counts_of_json_text_and_of_lists():
    text = pd.Series(
        [
            '[{"type":"hidden","t":1},{"type":"visible"},{"type": "hidden"}]',  # any JSON spacing
            None,
            '[{"type":"waiting"},{"type":"start","detail":"{\\"type\\":\\"stalled\\"}"}]',  # escaped: no event
            "[]",
            '[{"type":"stalled"},{"type":"stall-limit"},{"type":"waiting"}]',
        ],
        dtype=object,
    )
    counts = playback_counts(text)
    assert counts["hidden_events"].tolist() == [2, 0, 0, 0, 0]
    assert counts["stall_events"].tolist() == [0, 0, 1, 0, 2]
    lists = pd.Series([[{"type": "hidden"}], None, [{"type": "waiting"}, "odd", {"type": "stalled"}]], dtype=object)
    counts = playback_counts(lists)
    assert counts["hidden_events"].tolist() == [1, 0, 0] and counts["stall_events"].tolist() == [0, 0, 2]


def test_without_the_playback_log_no_playback_flags(frame):
    res = data_quality(frame.drop(columns=["hidden_events", "stall_events"]), OPTS)
    part = res.tables["quality_participants"]
    assert not part["tab_switches"].any() and not part["stalls"].any() and part["hidden_trials"].isna().all()
    assert any("playback" in n for n in res.notes)


def test_report_cli_settings_and_section(tmp_path):
    batch = analysis_batch(5)
    sim = CliRunner().invoke(
        cli, ["simulate", "--participants", "3", "--seed", "2", "--batch", str(batch), "--out", str(tmp_path / "r.csv")]
    )
    assert sim.exit_code == 0, sim.output
    out = tmp_path / "report"
    args = ["report", "--responses", str(tmp_path / "r.csv"), "--batch", str(batch), "--out", str(out)]
    res = CliRunner().invoke(cli, [*args, "--no-glmm", "--bootstrap", "20", "--fast-ms", "1e6", "--fast-share", "0.5"])
    assert res.exit_code == 0, res.output
    part = pd.read_csv(out / "tables" / "quality_participants.csv")
    assert len(part) == 9 and part["too_fast"].all()  # every median answer (about 2.5 s) is under 1000 s
    assert "data quality: too fast 9" in res.output
    md = (out / "report.md").read_text()
    assert "\n## Data quality\n" in md and "\n### Deceitfulness: per stimulus\n" in md
    for name in ("deceitfulness_items", "naturalness_classes", "indistinguishability_items", "quality_sensitivity"):
        assert (out / "tables" / f"{name}.csv").is_file()
