"""Study server, participant flow and integrity (Flask test client on a temporary SQLite file).

Enrolment from Prolific / MTurk / anonymous links, consent, age, the trial sequences of
the three designs, exactly-once answers (retries, conflicts, concurrent duplicates),
4xx for trials that are not yours or not current, resume, one participation per id,
playback failures given again, screening, balance counts and the export rows.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import func
from sqlalchemy import select
from support.server import ParticipantActions
from support.server import make_test_app

from stimuli.responses import read_responses
from stimuli.responses import rows_to_csv
from study_server.export import response_rows
from study_server.extensions import db
from study_server.models import Attempt
from study_server.models import Participant
from study_server.models import Response
from study_server.models import Study
from study_server.models import Trial
from study_server.studies import cell_counts

STUDIES = [
    # 5 analysed trials: round(5 * 0.4) = 2 sensitivity, round(5 * 0.2) = 1 control, 2 perceivability
    (
        "ind",
        "indistinguishability",
        {
            "trials": 5,
            "practice_trials": 1,
            "sensitivity_share": 0.4,
            "control_share": 0.2,
            "completion_code": "C0DE-123",
        },
    ),
    ("dec", "deceitfulness", {"trials": 3, "practice_trials": 1}),
    ("nat", "naturalness", {"trials": 6, "practice_trials": 1}),
    ("nat1", "naturalness", {"trials": 2, "practice_trials": 0}),
    (
        "strict",
        "indistinguishability",
        {
            "trials": 5,
            "practice_trials": 0,
            "sensitivity_share": 0.4,
            "control_share": 0.2,
            "control_hit_threshold": 0.5,
        },
    ),
    ("closed", "deceitfulness", {"trials": 2, "status": "closed"}),
    ("named", "deceitfulness", {"trials": 2, "allow_anonymous": False}),
]


@pytest.fixture
def app(tmp_path):
    return make_test_app(tmp_path / "study.sqlite3", STUDIES)


@pytest.fixture
def client(app):
    return app.test_client()


def actions(app, slug: str) -> ParticipantActions:
    return ParticipantActions(app.test_client(), slug)


def first_option(trial, state):
    return state["options"][0]["value"]


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


# ---- entry -------------------------------------------------------------------------------------
def test_prolific_entry_keeps_the_ids_server_side(app):
    pa = actions(app, "ind")
    r = pa.enter(PROLIFIC_PID="5f1a2b3c4d", STUDY_ID="st-9", SESSION_ID="se-7")
    assert r.status_code == 302 and r.headers["Location"] == "/s/ind/consent"
    p = pa.participant()
    assert (p.platform, p.recruit_id, p.recruit_info) == (
        "prolific",
        "5f1a2b3c4d",
        {"STUDY_ID": "st-9", "SESSION_ID": "se-7"},
    )
    assert p.status == "consent" and p.public_id != p.recruit_id
    cookie = pa.client.get_cookie("session")
    data = app.session_interface.get_signing_serializer(app).loads(cookie.value)
    assert data["p"] == {"ind": p.public_id} and set(data) <= {"p", "_permanent", "csrf_token"}
    assert "5f1a2b3c4d" not in str(data) and "st-9" not in str(data)  # never the recruiting ids
    assert cookie.http_only and cookie.same_site == "Lax"


def test_mturk_entry_preview_and_frame(app):
    pa = actions(app, "dec")
    r = pa.enter(assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE", hitId="H1")
    assert r.status_code == 200 and "Accept the HIT to begin" in r.get_data(as_text=True)
    assert count(app, Participant) == 0
    framed = pa.client.get(
        "/s/dec",
        query_string={"workerId": "W1", "assignmentId": "A1", "hitId": "H1"},
        headers={"Sec-Fetch-Dest": "iframe"},
    )
    html = framed.get_data(as_text=True)
    assert framed.status_code == 200 and 'target="_blank"' in html and "workerId=W1" in html
    assert count(app, Participant) == 0
    r = pa.enter(workerId="W1", assignmentId="A1", hitId="H1", turkSubmitTo="https://workersandbox.mturk.com")
    assert r.status_code == 302
    p = pa.participant()
    assert (p.platform, p.recruit_id, p.recruit_info["assignmentId"]) == ("mturk", "W1", "A1")
    bad = actions(app, "dec").enter(workerId="W2", assignmentId="A2", turkSubmitTo="https://evil.example")
    assert bad.status_code == 400
    assert actions(app, "dec").enter(PROLIFIC_PID="has spaces").status_code == 400


def test_anonymous_entry_resumes_with_the_cookie(app):
    pa = actions(app, "dec")
    assert pa.enter().headers["Location"] == "/s/dec/consent"
    p = pa.participant()
    assert p.platform == "anonymous" and p.recruit_id.startswith("anon-")
    pa.consent()
    assert pa.enter().headers["Location"] == "/s/dec/about"  # same browser: resumes
    assert count(app, Participant) == 1
    r = actions(app, "named").enter()
    assert r.status_code == 400 and "missing the id" in r.get_data(as_text=True)


def test_closed_and_unknown_studies(app):
    assert actions(app, "closed").enter(PROLIFIC_PID="abc").status_code == 410
    r = actions(app, "nope").enter()
    assert r.status_code == 404 and "Traceback" not in r.get_data(as_text=True)


def test_declining_consent_ends_politely_and_counts_as_the_participation(app):
    pa = actions(app, "ind")
    pa.enter(PROLIFIC_PID="decliner")
    r = pa.consent(agree=False)
    assert r.headers["Location"] == "/s/ind/declined"
    page = pa.client.get("/s/ind/declined").get_data(as_text=True)
    assert "chose not to take part" in page and "return the study on Prolific" in page
    p = pa.participant()
    assert p.status == "declined" and count(app, Trial) == 0
    again = actions(app, "ind").enter(PROLIFIC_PID="decliner")
    assert again.status_code == 200 and "already taken part" in again.get_data(as_text=True)
    assert count(app, Participant) == 1


def test_age_is_validated_and_demographics_are_optional(app):
    pa = actions(app, "dec")
    pa.enter(PROLIFIC_PID="age-test")
    pa.consent()
    r = pa.about(age="abc")
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and 'aria-invalid="true"' in html and "Please correct" in html
    r = pa.about(age=12)
    assert r.status_code == 400 and "between 18 and 100" in r.get_data(as_text=True)
    assert pa.about(age=30, gender="nonsense").status_code == 400
    assert pa.participant().status == "about"
    r = pa.about(age=34, gender="woman", vision="")
    assert r.status_code == 302 and r.headers["Location"] == "/s/dec/instructions"
    p = pa.participant()
    assert (p.age, p.demographics, p.status) == (34, {"gender": "woman"}, "instructions")


def test_pages_redirect_to_where_the_participant_is(app):
    pa = actions(app, "dec")
    assert pa.client.get("/s/dec/about").status_code == 403  # no session at all
    pa.enter(PROLIFIC_PID="order")
    assert pa.client.get("/s/dec/about").headers["Location"] == "/s/dec/consent"
    assert pa.client.get("/s/dec/trials").headers["Location"] == "/s/dec/consent"
    assert pa.client.get("/s/dec/done").headers["Location"] == "/s/dec/consent"
    assert pa.client.get("/s/dec/api/state").get_json() == {"status": "redirect", "url": "/s/dec/consent"}


# ---- the designs, as enrolled ------------------------------------------------------------------
def trials_of(app, pa) -> list[Trial]:
    p = pa.participant()
    with app.app_context():
        return list(
            db.session.execute(select(Trial).where(Trial.participant_pk == p.id).order_by(Trial.position)).scalars()
        )


def test_enrolment_decides_each_design(app):
    ind = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="i1")
    t = trials_of(app, ind)
    assert [x.practice for x in t] == [True] + [False] * 5
    assert Counter(x.kind for x in t if not x.practice) == {"sensitivity": 2, "control": 1, "perceivability": 2}
    assert all(x.left_variant == "original" for x in t)

    dec = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="d1")
    t = trials_of(app, dec)
    assert len(t) == 4 and all(x.variant == "smart" and x.attacked_label == "jog" for x in t)
    assert {x.item_id for x in t if not x.practice} == {"item-000", "item-001", "item-002"}

    nat = ParticipantActions(app.test_client(), "nat").join(PROLIFIC_PID="n1")
    main = [x for x in trials_of(app, nat) if not x.practice]
    assert len(main) == 6
    for item in ("item-000", "item-001", "item-002"):
        pairs = sorted(x.naturalness_pair for x in main if x.item_id == item)
        assert pairs == ["ablation-vs-ablation", "smart-vs-ablation"]
    assert all(x.plays == 2 for x in main)


def test_the_page_gets_opaque_references_and_the_options_only(app):
    pa = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="opaque")
    s = pa.state()
    assert s["status"] == "trial" and s["phase"] == "practice"
    assert s["video"].startswith("/m/") and s["poster"].startswith("/m/") and s["next"]["video"].startswith("/m/")
    trial = pa.trial(s)
    labels = {o["value"]: o["label"] for o in s["options"]}
    order = trial.label_order.split(",")
    # labels as words, not identifiers (worked out by hand for the fixture's classes)
    words = {
        "walk": "walk",
        "wave_right": "wave (right)",
        "squat": "squat",
        "jumping_jack": "jumping jack",
        "jog": "jog",
    }
    names = {"true": words[trial.true_label], "attacked": words[trial.attacked_label]}
    assert labels == {"1": names[order[0]], "2": names[order[1]]}
    assert set(s) == {
        "status",
        "attempt",
        "phase",
        "progress",
        "question",
        "prompt",
        "options",
        "layout",
        "captions",
        "video",
        "poster",
        "plays",
        "seconds",
        "rate",
        "stall_limit_s",
        "notice",
        "next",
    }


# ---- exactly once --------------------------------------------------------------------------------
def test_a_retried_answer_is_stored_once_and_a_different_one_refused(app):
    pa = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="retry")
    s = pa.state()
    key = uuid.uuid4().hex
    first = pa.answer(s, "1", key=key)
    again = pa.answer(s, "1", key=key)
    assert first.status_code == again.status_code == 200
    assert first.get_data() == again.get_data()  # the very same body
    assert count(app, Response) == 1
    other = pa.answer(s, "2", key=uuid.uuid4().hex)
    assert other.status_code == 409 and "already been answered" in other.get_json()["error"]
    same_key_other_answer = pa.answer(s, "2", key=key)
    assert same_key_other_answer.status_code == 409
    assert count(app, Response) == 1


def test_concurrent_duplicate_posts_store_one_row(app):
    pa = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="race")
    pa.race_duplicate_answers(identical_rounds=2)


def test_answers_to_trials_not_yours_or_not_current_are_refused(app):
    alice = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="alice")
    bob = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="bob")
    s_alice = alice.state()
    r = bob.answer(s_alice, "1")
    assert r.status_code == 404  # another participant's attempt looks like no attempt at all
    s_bob = bob.state()
    # the next trial's attempt exists (its media are preloading) but is not current
    with app.app_context():
        p = db.session.execute(select(Participant).where(Participant.recruit_id == "bob")).scalar_one()
        nxt = db.session.execute(
            select(Attempt).where(Attempt.participant_pk == p.id).where(Attempt.ref != s_bob["attempt"])
        ).scalar_one()
        next_ref = nxt.ref
    r = bob.answer({"attempt": next_ref}, "1")
    assert r.status_code == 409 and r.get_json()["error"] == "not the current trial"
    anonymous = app.test_client()
    anon = ParticipantActions(anonymous, "dec")
    r = anon.post_answer({"attempt": s_bob["attempt"], "key": "x" * 20, "answer": "1", "rt_ms": 1.0})
    assert r.status_code == 403
    assert bob.post_answer({"attempt": s_bob["attempt"], "key": "short", "answer": "1"}).status_code == 400
    assert bob.answer(s_bob, "7").status_code == 400  # not one of the options
    assert count(app, Response) == 0


def test_missing_csrf_header_is_refused(app):
    pa = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="csrf")
    s = pa.state()
    body = {"attempt": s["attempt"], "key": "y" * 20, "answer": "1", "rt_ms": 1.0}
    r = pa.post_answer(body, csrf=False)
    assert r.status_code == 400 and "expired" in r.get_json()["error"]
    r = pa.client.post("/s/dec/about", data={"age": 30})
    assert r.status_code == 400 and "Traceback" not in r.get_data(as_text=True)
    assert count(app, Response) == 0


# ---- resume, completion, one participation ---------------------------------------------------------
def test_reload_and_browser_restart_resume_at_the_next_unanswered_trial(app):
    pa = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="resume")
    s1 = pa.state()
    assert pa.state()["attempt"] == s1["attempt"]  # a reload shows the same attempt again
    pa.answer(s1, "1")
    s2 = pa.state()
    assert s2["attempt"] != s1["attempt"] and s2["phase"] == "main" and s2["notice"] == "practice-over"
    pa.answer(s2, "2")
    s3 = pa.state()
    assert s3["progress"] == {"practice_done": 1, "practice_total": 1, "done": 1, "total": 3}
    # a new browser (no cookie) with the same Prolific id lands on the same trial
    other = ParticipantActions(app.test_client(), "dec")
    assert other.enter(PROLIFIC_PID="resume").headers["Location"] == "/s/dec/trials"
    assert other.state()["attempt"] == s3["attempt"]
    with app.app_context():
        att = db.session.execute(select(Attempt).where(Attempt.ref == s1["attempt"])).scalar_one()
        assert att.served == 2


def test_completion_only_after_the_last_answer_and_once_per_id(app):
    pa = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="done-once")
    assert pa.client.get("/s/ind/done").headers["Location"] == "/s/ind/trials"
    results = pa.finish(first_option)
    assert [r["done"] for r in results] == [False] * 5 + [True] and results[-1]["redirect"] == "/s/ind/done"
    page = pa.client.get("/s/ind/done").get_data(as_text=True)
    assert "C0DE-123" in page and "https://app.prolific.com/submissions/complete?cc=C0DE-123" in page
    assert pa.state() == {"status": "done", "url": "/s/ind/done"}
    assert pa.client.get("/s/ind/trials").headers["Location"] == "/s/ind/done"
    again = actions(app, "ind").enter(PROLIFIC_PID="done-once")
    html = again.get_data(as_text=True)
    assert again.status_code == 200 and "already taken part" in html and "C0DE-123" in html
    assert count(app, Participant) == 1


def test_mturk_completion_submits_the_assignment(app):
    pa = ParticipantActions(app.test_client(), "dec").join(
        workerId="W9", assignmentId="A9", hitId="H9", turkSubmitTo="https://workersandbox.mturk.com"
    )
    pa.finish(first_option)
    html = pa.client.get("/s/dec/done").get_data(as_text=True)
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in html
    assert 'name="assignmentId" value="A9"' in html


# ---- playback failures ---------------------------------------------------------------------------
def test_a_failed_video_is_stored_invalid_and_given_again_later(app):
    pa = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="fails")
    pa.answer(pa.state(), "unchanged")  # practice
    s = pa.state()
    failed_trial = pa.trial(s).id
    r = pa.answer(s, None, failed=True, reason="stall")
    assert r.status_code == 200 and r.get_json() == {
        "stored": True,
        "valid": False,
        "retry": True,
        "done": False,
        "redirect": None,
    }
    seen = []
    while (s := pa.state())["status"] == "trial":
        seen.append((pa.trial(s).id, s["attempt"], s["video"]))
        pa.answer(s, "unchanged")
    assert seen[-1][0] == failed_trial  # at the end, with a new attempt and a new media token
    assert [t for t, _, _ in seen].count(failed_trial) == 1
    with app.app_context():
        rows = (
            db.session.execute(select(Response).where(Response.trial_pk == failed_trial).order_by(Response.attempt))
            .scalars()
            .all()
        )
        assert [(x.attempt, x.valid, x.playback_failed, x.failure_reason) for x in rows] == [
            (1, False, True, "stall"),
            (2, True, False, None),
        ]
        study = db.session.execute(select(Study).where(Study.slug == "ind")).scalar_one()
        export = [x for x in response_rows(study) if x["playback_failed"]]
        assert len(export) == 1 and export[0]["valid"] is False and export[0]["attempt"] == 1


def test_a_trial_failing_every_attempt_is_given_up_and_the_session_still_ends(app):
    pa = ParticipantActions(app.test_client(), "nat1").join(PROLIFIC_PID="always-fails")
    for _ in range(3):  # max_attempts = 3; two trials, the failing one keeps coming back
        s = pa.state()
        if pa.trial(s).position == 0:
            pa.answer(s, None, failed=True)
        else:
            pa.answer(s, "left")
    s = pa.state()
    if s["status"] == "trial":
        pa.answer(s, None, failed=True)
    assert pa.state()["status"] == "done"
    p = pa.participant()
    assert p.status == "completed"
    with app.app_context():
        t = db.session.execute(select(Trial).where(Trial.participant_pk == p.id, Trial.position == 0)).scalar_one()
        assert (t.status, t.attempts) == ("failed", 3)


def test_a_failed_practice_trial_is_not_repeated(app):
    pa = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="practice-fail")
    r = pa.answer(pa.state(), None, failed=True)
    assert r.get_json()["retry"] is False
    assert pa.state()["phase"] == "main"


# ---- screening ---------------------------------------------------------------------------------------
def test_always_unchanged_passes_sensitivity_and_shows_in_control_misses(app):
    pa = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="lazy")
    pa.finish(lambda t, s: "unchanged")
    p = pa.participant()
    assert not p.excluded and p.exclusion_reason is None
    assert p.screening["sensitivity_accuracy"] == 1.0
    assert p.screening["control_misses"] == 1 and p.screening["control_hit_rate"] == 0.0
    assert "always_unchanged" in p.screening["flags"]
    strict = ParticipantActions(app.test_client(), "strict").join(PROLIFIC_PID="lazy")
    strict.finish(lambda t, s: "unchanged")
    p = strict.participant()
    assert p.excluded and p.exclusion_reason == "positive-control hit rate 0.00 < 0.50"


def test_sensitivity_under_the_threshold_excludes_with_the_reason_and_keeps_the_data(app):
    pa = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="jumpy")
    # wrong on both sensitivity trials, right on everything else
    pa.finish(lambda t, s: "changed" if t.kind in ("sensitivity", "control", "perceivability") else "unchanged")
    p = pa.participant()
    assert p.excluded and p.exclusion_reason == "sensitivity accuracy 0.00 < 0.80"
    assert p.screening["false_alarms"] == 2 and p.screening["control_hits"] == 1
    with app.app_context():
        study = db.session.execute(select(Study).where(Study.slug == "ind")).scalar_one()
        rows = [r for r in response_rows(study) if not r["practice"]]
    assert len(rows) == 5 and all(r["excluded"] and r["exclusion_reason"] == p.exclusion_reason for r in rows)


# ---- balance across participants ------------------------------------------------------------------
def test_balance_counts_only_completed_non_excluded_participants(app):
    # one motion per participant; each completes before the next enrols: three different motions
    seen = []
    for k in range(3):
        pa = ParticipantActions(app.test_client(), "nat1").join(PROLIFIC_PID=f"bal{k}")
        seen.append({t.item_id for t in trials_of(app, pa)})
        pa.finish(first_option)
    assert [len(s) for s in seen] == [1, 1, 1] and len(set.union(*seen)) == 3
    with app.app_context():
        study = db.session.execute(select(Study).where(Study.slug == "ind")).scalar_one()
        assert cell_counts(study) == {}
    unfinished = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="unfinished")
    unfinished.answer(unfinished.state(), "unchanged")
    excluded = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="excluded")
    excluded.finish(lambda t, s: "changed")
    good = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="good")
    good.finish(lambda t, s: "changed" if t.kind != "sensitivity" else "unchanged")
    assert excluded.participant().excluded and not good.participant().excluded
    with app.app_context():
        study = db.session.execute(select(Study).where(Study.slug == "ind")).scalar_one()
        counts = cell_counts(study)
        p = db.session.execute(select(Participant).where(Participant.recruit_id == "good")).scalar_one()
        mine = Counter(t.cell for t in p.trials if not t.practice)
    assert counts == dict(mine) and sum(counts.values()) == 5


# ---- export ------------------------------------------------------------------------------------------
def test_export_rows_follow_the_response_format(app, tmp_path):
    for slug in ("dec", "nat", "ind"):
        ParticipantActions(app.test_client(), slug).join(PROLIFIC_PID="exp", STUDY_ID="s").finish(first_option)
    with app.app_context():
        rows = []
        for slug in ("dec", "nat", "ind"):
            rows += response_rows(db.session.execute(select(Study).where(Study.slug == slug)).scalar_one())
    assert len(rows) == 4 + 7 + 6
    path = tmp_path / "responses.csv"
    path.write_text(rows_to_csv(rows))
    back = read_responses(path)
    assert len(back) == len(rows)
    dec = [r for r in back if r["study_type"] == "deceitfulness"]
    for r in dec:
        first = r["label_order"].split(",")[0]
        assert r["answer"] == f"{first}_label" and r["chose_true_label"] == (first == "true")
        assert r["variant"] == "smart" and r["response_time_ms"] == 900.0 and r["recruit_platform"] == "prolific"
    nat = [r for r in back if r["study_type"] == "naturalness"]
    assert all(r["answer"] == "left" and r["preferred_variant"] == r["left_variant"] for r in nat)
    ind = [r for r in back if r["study_type"] == "indistinguishability" and not r["practice"]]
    assert Counter(r["trial_kind"] for r in ind) == {"sensitivity": 2, "control": 1, "perceivability": 2}
    assert all(r["said_changed"] and r["correct"] == (r["trial_kind"] != "sensitivity") for r in ind)
    assert all(r["batch_id"].startswith("batch-") and r["dataset"] == "synthetic" for r in back)
    assert all(r["playback_events"][-1] == {"type": "server-served", "n": 1} for r in back)


def test_deceitfulness_labels_are_shown_as_words(app):
    pa = ParticipantActions(app.test_client(), "dec").join(PROLIFIC_PID="words")
    seen = set()
    for _ in range(12):
        s = pa.state()
        if s["status"] != "trial":
            break
        seen |= {o["label"] for o in s["options"]}
        assert pa.answer(s, s["options"][0]["value"]).status_code == 200
    assert seen and not any("_" in text for text in seen)
    with app.app_context():
        from study_server.models import Batch

        names = db.session.execute(select(Batch.label_names)).scalar_one()
    assert names == {"walk": "walk", "wave_right": "wave (right)", "squat": "squat", "jog": "jog"}


def test_practice_feedback_says_whether_a_practice_answer_with_a_right_answer_was_right(tmp_path):
    studies = [
        (
            "fb",
            "indistinguishability",
            {
                "trials": 2,
                "practice_trials": 3,
                "sensitivity_share": 0.5,
                "control_share": 0.0,
                "practice_feedback": True,
            },
        ),
        ("nofb", "indistinguishability", {"trials": 2, "practice_trials": 3, "sensitivity_share": 0.5}),
    ]
    app = make_test_app(tmp_path / "fb.sqlite3", studies)
    pa = ParticipantActions(app.test_client(), "fb").join(PROLIFIC_PID="fb1")
    seen = []
    for _ in range(5):
        s = pa.state()
        t = pa.trial(s)
        r = pa.answer(s, "unchanged").get_json()
        seen.append((t.practice, t.kind, r.get("feedback")))
    # practice: a clear change first (answered wrongly), then an identical pair (rightly), then an attacked pair
    assert seen[:3] == [
        (True, "control", {"right": False, "answer": "changed"}),
        (True, "sensitivity", {"right": True, "answer": "unchanged"}),
        (True, "perceivability", None),
    ]
    assert all(not practice and fb is None for practice, _, fb in seen[3:])  # none on analysed trials
    other = ParticipantActions(app.test_client(), "nofb").join(PROLIFIC_PID="fb2")
    s = other.state()
    assert "feedback" not in other.answer(s, "unchanged").get_json()
