"""The answer path: every answer stored exactly once, whatever races it, and nothing stored when it fails.

Behaviour only (a real SQLite file, Flask test clients in threads): concurrent duplicates
and conflicting answers, many participants at once, a commit that fails, a playback
failure through the same bookkeeping, and the answer API's CSRF protection (flask-wtf's
own) and session keys.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from support.server import PLAYED
from support.server import ParticipantActions
from support.server import at_once
from support.server import make_test_app

from study_server.extensions import db
from study_server.models import Attempt
from study_server.models import Participant
from study_server.models import Response
from study_server.models import Trial

STUDIES = [
    (
        "ind",
        "indistinguishability",
        {"trials": 3, "practice_trials": 0, "sensitivity_share": 0.34, "control_share": 0.0},
    )
]


@pytest.fixture
def app(tmp_path):
    return make_test_app(tmp_path / "study.sqlite3", STUDIES)


def join(app, pid: str) -> ParticipantActions:
    return ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID=pid)


def body(state: dict[str, Any], answer: str, key: str | None = None) -> dict[str, Any]:
    return {
        "attempt": state["attempt"],
        "key": key or uuid.uuid4().hex,
        "answer": answer,
        "rt_ms": 700.0,
        "playback_failed": False,
        "events": PLAYED,
    }


def stored(app) -> list[tuple[str, str | None, bool]]:
    """Every stored response as (participant recruiting id, answer, valid), in insertion order."""
    with app.app_context():
        rows = db.session.execute(
            select(Participant.recruit_id, Response.answer, Response.valid)
            .join(Response, Response.participant_pk == Participant.id)
            .order_by(Response.id)
        ).all()
        return [tuple(r) for r in rows]


def test_many_participants_answering_at_once_are_each_stored_once(app):
    people = [join(app, f"p{i}") for i in range(8)]
    states = [p.state() for p in people]
    rs = at_once([lambda p=p, s=s: p.post_answer(body(s, "unchanged")) for p, s in zip(people, states)])
    assert [r.status_code for r in rs] == [200] * 8
    assert sorted(pid for pid, _, _ in stored(app)) == sorted(f"p{i}" for i in range(8))
    assert all(p.state()["attempt"] != s["attempt"] for p, s in zip(people, states))  # each moved on


def test_a_retry_returns_the_stored_body_and_a_different_answer_is_refused(app):
    pa = join(app, "retry")
    s = pa.state()
    first = pa.post_answer(body(s, "changed", key="k" * 20))
    again = pa.post_answer(body(s, "changed", key="k" * 20))
    other = pa.post_answer(body(s, "unchanged", key="k" * 20))
    assert first.status_code == again.status_code == 200 and first.get_data() == again.get_data()
    assert other.status_code == 409
    assert stored(app) == [("retry", "changed", True)]


def test_a_failed_commit_stores_nothing_and_a_retry_with_the_same_key_stores_it_once(app, monkeypatch):
    app.config["PROPAGATE_EXCEPTIONS"] = False
    pa = join(app, "commit")
    s = pa.state()
    real_commit = db.session.commit
    calls = {"n": 0}

    def failing_commit() -> None:
        calls["n"] += 1
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(db.session, "commit", failing_commit)
    r = pa.post_answer(body(s, "changed", key="c" * 20))
    assert r.status_code == 500 and calls["n"] == 1
    monkeypatch.setattr(db.session, "commit", real_commit)
    assert stored(app) == []
    with app.app_context():  # nothing of the answer's bookkeeping either
        att = db.session.execute(select(Attempt).where(Attempt.ref == s["attempt"])).scalar_one()
        assert not att.closed and att.trial.status == "pending"
    assert pa.state()["attempt"] == s["attempt"]
    r = pa.post_answer(body(s, "changed", key="c" * 20))
    assert r.status_code == 200
    assert pa.post_answer(body(s, "changed", key="c" * 20)).get_data() == r.get_data()
    assert stored(app) == [("commit", "changed", True)]


def test_a_playback_failure_goes_through_the_same_bookkeeping(app):
    pa = join(app, "fail")
    s = pa.state()
    failure = {"attempt": s["attempt"], "key": "f" * 20, "answer": None, "rt_ms": None, "playback_failed": True,
               "reason": "decode", "events": []}  # fmt: skip
    rs = at_once([lambda: pa.post_answer(failure), lambda: pa.post_answer(failure)])
    assert [r.status_code for r in rs] == [200, 200] and rs[0].get_data() == rs[1].get_data()
    result = rs[0].get_json()
    assert result["valid"] is False and result["retry"] is True and result["done"] is False
    assert stored(app) == [("fail", None, False)]
    assert pa.post_answer(body(s, "changed")).status_code == 409  # that attempt is over
    again = pa.state()
    assert again["attempt"] != s["attempt"]
    with app.app_context():  # the trial comes again later with a new attempt; the others come first
        trial = db.session.execute(select(Attempt).where(Attempt.ref == s["attempt"])).scalar_one().trial
        assert trial.status == "pending" and trial.attempts == 1
        n = db.session.execute(select(func.count()).select_from(Trial).where(Trial.status == "pending")).scalar_one()
        assert n == 3


def test_the_answer_api_refuses_a_missing_bad_or_foreign_csrf_token(app):
    alice, bob = join(app, "alice"), join(app, "bob")
    s = alice.state()
    r = alice.post_answer(body(s, "changed"), csrf=False)
    assert r.status_code == 400 and "expired" in r.get_json()["error"]
    r = alice.client.post("/s/ind/api/answer", json=body(s, "changed"), headers={"X-CSRFToken": "not-a-token"})
    assert r.status_code == 400
    r = alice.client.post("/s/ind/api/answer", json=body(s, "changed"), headers={"X-CSRFToken": bob.csrf()})
    assert r.status_code == 400  # bob's token is signed by the server, but for another session
    assert stored(app) == []
    assert alice.post_answer(body(s, "changed")).status_code == 200


def test_sessions_survive_a_secret_key_rotation_with_the_old_key_as_fallback(app):
    pa = join(app, "rotate")
    s = pa.state()
    old = app.secret_key
    app.secret_key = app.config["SECRET_KEY"] = "a-new-secret"
    app.config["SECRET_KEY_FALLBACKS"] = [old]
    assert pa.client.get("/s/ind/api/state").status_code == 200  # the old cookie still names the participant
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert pa.client.get("/s/ind/api/state").status_code == 403  # without the fallback it no longer does
    app.secret_key = app.config["SECRET_KEY"] = old
    assert pa.client.get("/s/ind/api/state").get_json()["attempt"] == s["attempt"]
