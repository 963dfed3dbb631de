"""Threshold designs on the study server: constant stimuli, and QUEST+ chosen server-side, resumable, stored."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from sqlalchemy import select
from support.batches import threshold_batch
from support.server import ParticipantActions
from support.server import make_test_app

from stimuli.adaptive import choose
from study_server.export import response_rows
from study_server.extensions import db
from study_server.models import Batch
from study_server.models import Study
from study_server.models import Trial
from study_server.studies import StudyConfigError
from study_server.studies import create_study

LEVELS = {"smart": [0.25, 0.5, 0.75, 1.0], "l2": [0.25, 0.5, 0.75, 1.0]}
NAMES = {0.25: "-s25", 0.5: "-s50", 0.75: "-s75", 1.0: ""}
# 40 analysed trials: 8 sensitivity, 4 controls, 28 graded
BASE = {"trials": 40, "practice_trials": 2, "sensitivity_share": 0.2, "control_share": 0.1, "variants": ["smart", "l2"]}
STUDIES = [
    ("constant", "indistinguishability", {**BASE, "procedure": "constant"}),
    ("adaptive", "indistinguishability", {**BASE, "procedure": "adaptive"}),
]


@pytest.fixture
def app(tmp_path):
    return make_test_app(tmp_path / "study.sqlite3", STUDIES, batch=threshold_batch(3))


def trials_of(app, pa) -> list[Trial]:
    p = pa.participant()
    with app.app_context():
        return list(
            db.session.execute(select(Trial).where(Trial.participant_pk == p.id).order_by(Trial.position)).scalars()
        )


def _observer(threshold: float, seed: int):
    """Says 'changed' with P = 0.1 + 0.88 Phi(ln(s / threshold) / 0.3); identical clips: 0.1; controls: 0.98."""
    rng = random.Random(seed)

    def answer(t: Trial, state) -> str:
        if t.kind == "sensitivity":
            p = 0.1
        elif t.kind == "control" or t.strength is None:
            p = 0.98
        else:
            p = 0.1 + 0.88 * 0.5 * (1 + math.erf(math.log(t.strength / threshold) / 0.3 / math.sqrt(2)))
        return "changed" if rng.random() < p else "unchanged"

    return answer


def test_constant_stimuli_show_every_level_as_often_per_participant(app):
    for k in range(3):
        pa = ParticipantActions(app.test_client(), "constant").join(PROLIFIC_PID=f"c{k}")
        assert pa.state()["next"] is not None  # constant stimuli: the next trial is preloaded as usual
        main = [t for t in trials_of(app, pa) if not t.practice]
        assert Counter(t.kind for t in main) == {"sensitivity": 8, "control": 4, "perceivability": 28}
        graded = [t for t in main if t.kind == "perceivability"]
        per_level = Counter((t.method, t.strength) for t in graded)
        # 28 trials over 8 levels: 3 or 4 each, and the variant shown is the level's
        assert set(per_level) == {(m, s) for m, ss in LEVELS.items() for s in ss}
        assert set(per_level.values()) <= {3, 4} and sum(per_level.values()) == 28
        for t in graded:
            assert t.right_variant == t.method + NAMES[t.strength] and t.left_variant == "original"
        # items balanced within each level (3 items: a level shown 3 times shows each item once)
        for m, s in per_level:
            items = Counter(t.item_id for t in graded if (t.method, t.strength) == (m, s))
            assert max(items.values()) - min(items.values()) <= 1
        pa.finish(_observer(0.5, k))
    with app.app_context():
        study = db.session.execute(select(Study).where(Study.slug == "constant")).scalar_one()
        rows = [r for r in response_rows(study) if r["trial_kind"] == "perceivability" and not r["practice"]]
    assert len(rows) == 3 * 28
    assert {r["procedure"] for r in rows} == {"constant"}
    assert {(r["method"], r["strength"]) for r in rows} == {(m, s) for m, ss in LEVELS.items() for s in ss}


def test_adaptive_levels_are_chosen_by_quest_plus_from_the_stored_answers(app):
    pa = ParticipantActions(app.test_client(), "adaptive").join(PROLIFIC_PID="a1")
    before = [t for t in trials_of(app, pa) if not t.practice and t.kind == "perceivability"]
    assert len(before) == 28 and Counter(t.method for t in before) == {"smart": 14, "l2": 14}
    assert all(t.adaptive == {"procedure": "quest+", "pending": True} and t.strength is None for t in before)
    observer = _observer(0.5, 7)
    unpreloaded = 0
    for _ in range(200):
        s = pa.state()
        if s["status"] != "trial":
            break
        t = pa.trial(s)
        if t.adaptive is not None:  # chosen when it came up; a reload shows the same clip
            assert t.adaptive["procedure"] == "quest+" and "pending" not in t.adaptive
            again = pa.state()
            assert again["attempt"] == s["attempt"] and again["video"] == s["video"]
        # nothing is preloaded in an adaptive block: an unchosen trial cannot be, and were the others, the
        # graded trials would be the ones that start late
        assert s["next"] is None
        unpreloaded += 1
        assert pa.answer(s, observer(t, s)).status_code == 200
    rows = response_rows_of(app, "adaptive")
    # recompute every choice independently from the answers before it (same block, analysed, valid)
    history: dict[str, list[tuple[float, bool]]] = {"smart": [], "l2": []}
    order = sorted((r for r in rows if not r["practice"]), key=lambda r: r["answered_at"])
    seen = 0
    for r in order:
        if r["trial_kind"] == "sensitivity":
            for h in history.values():
                h.append((0.0, r["said_changed"]))
        elif r["trial_kind"] == "perceivability":
            m = r["method"]
            expected = choose(LEVELS[m], history[m])
            assert r["strength"] == expected.strength and r["adaptive_state"]["answers"] == len(history[m])
            assert r["adaptive_state"]["threshold"] == pytest.approx(expected.threshold, rel=1e-5)
            assert r["right_variant"] == m + NAMES[r["strength"]] and r["procedure"] == "adaptive"
            history[m].append((r["strength"], r["said_changed"]))
            seen += 1
    assert seen == 28 and unpreloaded == 40 + 2
    # the procedure moved: not every trial at one level
    assert len({r["strength"] for r in order if r["trial_kind"] == "perceivability"}) >= 2


def test_adaptive_session_resumes_with_a_new_client(app):
    pa = ParticipantActions(app.test_client(), "adaptive").join(PROLIFIC_PID="a2")
    observer = _observer(0.5, 3)
    for _ in range(10):
        s = pa.state()
        assert pa.answer(s, observer(pa.trial(s), s)).status_code == 200
    s = pa.state()
    # the same participant on another device (a new Prolific entry): the same trial, the same clip
    other = ParticipantActions(app.test_client(), "adaptive")
    assert other.enter(PROLIFIC_PID="a2").status_code == 302
    s2 = other.state()
    assert s2["attempt"] == s["attempt"]
    assert pa.trial(s).strength == other.trial(s2).strength


def response_rows_of(app, slug: str):
    with app.app_context():
        study = db.session.execute(select(Study).where(Study.slug == slug)).scalar_one()
        return response_rows(study)


def test_a_threshold_procedure_needs_graded_levels(tmp_path):
    app = make_test_app(tmp_path / "s.sqlite3", [])  # the server batch: no graded levels
    with app.app_context():
        bid = db.session.execute(select(Batch.batch_id)).scalar_one()
        with pytest.raises(StudyConfigError, match="procedure adaptive: variant 'smart' has no graded levels"):
            create_study("x", bid, "indistinguishability", procedure="adaptive")
        with pytest.raises(StudyConfigError, match="procedure must be one of fixed, constant, adaptive"):
            create_study("y", bid, "indistinguishability", procedure="staircase")
        create_study("z", bid, "indistinguishability", procedure="fixed")  # the default design still works


def test_the_demo_has_a_threshold_study_when_the_batch_is_graded(tmp_path):
    from study_server import create_app

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'd.sqlite3'}"})
    r = app.test_cli_runner().invoke(args=["init-demo", "--batch", str(threshold_batch(3)), "--no-decode"])
    assert r.exit_code == 0, r.output
    assert "threshold (adaptive): http://127.0.0.1:5000/s/demo-threshold" in r.output
    with app.app_context():
        s = db.session.execute(select(Study).where(Study.slug == "demo-threshold")).scalar_one()
        assert s.study_type == "indistinguishability" and s.title == "Demo: threshold (adaptive)"
        assert s.blocks[0]["procedure"] == "adaptive" and s.blocks[0]["variants"] == ["smart", "l2"]


def test_a_class_weight_family_is_a_method_of_its_own(tmp_path):
    """The reruns at class weights 0.2 and 0.8 (variants smart-cw20, smart-cw80, method smart-cw) are shown by
    constant stimuli like the blends, though the family has no variant of role 'attack'."""
    cw = [("cw", "indistinguishability", {**BASE, "variants": ["smart-cw"], "procedure": "constant"})]
    app = make_test_app(tmp_path / "cw.sqlite3", cw, batch=threshold_batch(3))
    pa = ParticipantActions(app.test_client(), "cw").join(PROLIFIC_PID="w1")
    graded = [t for t in trials_of(app, pa) if not t.practice and t.kind == "perceivability"]
    assert Counter((t.method, t.strength, t.right_variant) for t in graded) == {
        ("smart-cw", 0.2, "smart-cw20"): 14,
        ("smart-cw", 0.8, "smart-cw80"): 14,
    }
    with app.app_context():
        bid = db.session.execute(select(Batch.batch_id)).scalar_one()
        with pytest.raises(StudyConfigError, match="variant 'smart-cw' is not an attacked variant"):
            create_study("cw-fixed", bid, "indistinguishability", variants=["smart-cw"])
