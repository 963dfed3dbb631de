"""The answer path's group commit and its request checks (Flask test clients, a real SQLite file).

Answers that arrive while another is being written are written together: one
transaction, one commit, each answer in a savepoint of its own. These tests make a group
happen on purpose (they hold the writer's turn while requests queue up) and check what
the protocol promises inside one: every answer stored exactly once, a duplicate or a
conflicting answer settled as if they had come one after the other, one failing answer
not taking the others with it, and a failed commit storing nothing (and a retry with the
same key storing it once). Also the answer API's CSRF check and the kept session
serializer.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select
from support.server import ParticipantActions
from support.server import as_one_group
from support.server import make_test_app

from study_server.answers import AnswerSQL
from study_server.answers import answer_sql
from study_server.extensions import db
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


def store_of(app) -> AnswerSQL:
    with app.app_context():
        return answer_sql(db.engine, app.extensions)


def join(app, pid: str) -> ParticipantActions:
    return ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID=pid)


def body(state: dict[str, Any], answer: str, key: str | None = None) -> dict[str, Any]:
    return {
        "attempt": state["attempt"],
        "key": key or uuid.uuid4().hex,
        "answer": answer,
        "rt_ms": 700.0,
        "playback_failed": False,
        "events": [{"type": "play", "t": 1.0, "mt": 0.0}, {"type": "answerable", "t": 2.0}],
    }


def stored(app, **where: Any) -> list[Response]:
    with app.app_context():
        q = select(Response)
        for k, v in where.items():
            q = q.where(getattr(Response, k) == v)
        return list(db.session.execute(q).scalars())


def test_answers_of_different_participants_are_written_in_one_commit(app):
    store = store_of(app)
    people = [join(app, f"g{i}") for i in range(3)]
    states = [p.state() for p in people]
    groups, written = store.group.groups, store.group.written
    rs = as_one_group(app, [lambda p=p, s=s: p.post_answer(body(s, "changed")) for p, s in zip(people, states)])
    assert [r.status_code for r in rs] == [200, 200, 200]
    assert (store.group.groups - groups, store.group.written - written) == (1, 3)
    assert len(stored(app)) == 3
    # each is a whole answer: its trial done, its attempt's media revoked, and the next trial comes up
    with app.app_context():
        done = db.session.execute(select(func.count()).select_from(Trial).where(Trial.status == "done")).scalar_one()
    assert done == 3
    assert all(p.state()["attempt"] != s["attempt"] for p, s in zip(people, states))


def test_a_duplicate_inside_a_group_is_stored_once_and_both_get_the_same_body(app):
    pa = join(app, "dup")
    s = pa.state()
    key = uuid.uuid4().hex
    twin = ParticipantActions(app.test_client(), "ind")
    twin.client.set_cookie("session", pa.client.get_cookie("session").value)
    twin._csrf = pa.csrf()
    rs = as_one_group(
        app, [lambda: pa.post_answer(body(s, "unchanged", key)), lambda: twin.post_answer(body(s, "unchanged", key))]
    )
    assert [r.status_code for r in rs] == [200, 200]
    assert rs[0].get_json() == rs[1].get_json() and rs[0].get_json()["stored"] is True
    assert len(stored(app, idempotency_key=key)) == 1


def test_a_conflicting_answer_inside_a_group_is_refused_and_the_first_kept(app):
    pa = join(app, "conflict")
    s = pa.state()
    twin = ParticipantActions(app.test_client(), "ind")
    twin.client.set_cookie("session", pa.client.get_cookie("session").value)
    twin._csrf = pa.csrf()
    rs = as_one_group(app, [lambda: pa.post_answer(body(s, "changed")), lambda: twin.post_answer(body(s, "unchanged"))])
    assert sorted(r.status_code for r in rs) == [200, 409]
    winner = "changed" if rs[0].status_code == 200 else "unchanged"
    rows = stored(app)
    assert [r.answer for r in rows] == [winner]


def test_one_failing_answer_does_not_take_the_rest_of_its_group_with_it(app, monkeypatch):
    """An error while writing one answer (here: its insert refused by the database) rolls back that answer only."""
    people = [join(app, f"f{i}") for i in range(3)]
    states = [p.state() for p in people]
    bad_attempt = states[1]["attempt"]
    with app.app_context():
        from study_server.models import Attempt

        bad_pk = db.session.execute(select(Attempt.id).where(Attempt.ref == bad_attempt)).scalar_one()
    real_insert = AnswerSQL.insert_answer

    def insert(self: AnswerSQL, cur: Any, row: dict[str, Any]) -> None:
        if row["attempt_pk"] == bad_pk:
            cur.execute("SELECT no_such_column FROM response")  # a real error from SQLite
        real_insert(self, cur, row)

    monkeypatch.setattr(AnswerSQL, "insert_answer", insert)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    rs = as_one_group(app, [lambda p=p, s=s: p.post_answer(body(s, "changed")) for p, s in zip(people, states)])
    assert [r.status_code for r in rs] == [200, 500, 200]
    rows = stored(app)
    assert len(rows) == 2 and bad_pk not in {r.attempt_pk for r in rows}
    # the failed one wrote nothing: its trial is still pending and the same attempt is still current
    assert people[1].state()["attempt"] == bad_attempt
    monkeypatch.setattr(AnswerSQL, "insert_answer", real_insert)
    assert people[1].post_answer(body(states[1], "changed")).status_code == 200
    assert len(stored(app)) == 3


def test_a_failed_commit_stores_nothing_of_the_group_and_a_retry_stores_each_once(app, monkeypatch):
    people = [join(app, f"c{i}") for i in range(2)]
    states = [p.state() for p in people]
    bodies = [body(s, "unchanged") for s in states]
    real_end = AnswerSQL.end_writes

    def end_writes(self: AnswerSQL, raw: Any, commit: bool) -> None:
        real_end(self, raw, commit=False)  # what a commit that fails leaves: nothing
        if commit:
            raise self.engine.dialect.dbapi.OperationalError("disk I/O error")

    monkeypatch.setattr(AnswerSQL, "end_writes", end_writes)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    rs = as_one_group(app, [lambda p=p, b=b: p.post_answer(b) for p, b in zip(people, bodies)])
    assert [r.status_code for r in rs] == [500, 500]
    assert stored(app) == []
    monkeypatch.setattr(AnswerSQL, "end_writes", real_end)
    for p, b in zip(people, bodies):  # the page retries with the same key
        assert p.post_answer(b).status_code == 200
        assert p.post_answer(b).status_code == 200  # and once more: the stored body again
    assert sorted(r.idempotency_key for r in stored(app)) == sorted(b["key"] for b in bodies)


def test_the_writer_lock_is_held_for_the_writes_only(app):
    """SQLite: the one-writer lock is taken before the first write and given back right after the commit, while
    the connection is still checked out (not when it goes back to the pool)."""
    import fcntl

    store = store_of(app)
    with app.app_context():
        path = db.engine.url.database

    def free() -> bool:
        with open(f"{path}-writer.lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(f, fcntl.LOCK_UN)
            return True

    with store.connection() as raw:
        assert free()
        store.begin_writes(raw)
        assert not free()
        store.end_writes(raw, commit=True)
        assert free()
        store.begin_writes(raw)
        store.end_writes(raw, commit=False)
        assert free()


# ---- the answer API's CSRF check and the session serializer -------------------------------------------
def test_the_answer_api_refuses_a_bad_or_foreign_csrf_token(app):
    alice, bob = join(app, "alice"), join(app, "bob")
    s = alice.state()
    headers = {"X-CSRFToken": "not-a-token"}
    r = alice.client.post("/s/ind/api/answer", json=body(s, "changed"), headers=headers)
    assert r.status_code == 400 and "expired" in r.get_json()["error"]
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
