"""Study server on a real PostgreSQL server (psycopg 3): migrations, import, enrolment, answers exactly once
(concurrent duplicates included), combined sessions, the dashboard, sign-in, export and withdrawal.

The server is found at ``postgresql+psycopg://smart:smart@127.0.0.1:5432/smart_test``
(``.ci/setup-system`` installs and starts it and creates that role and database), or at
``$SMART_STUDY_TEST_PG``. Each test gets a database of its own, created next to that one
and dropped afterwards, so runs on a shared machine do not meet. Without a server these
tests skip on a developer machine and FAIL under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any
from typing import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.engine import make_url
from support.batches import server_batch
from support.server import PLAYED
from support.server import RESEARCHER
from support.server import ParticipantActions
from support.server import ResearcherActions
from support.server import at_once

from study_server import create_app
from study_server.accounts import create_researcher
from study_server.dashboard import summary
from study_server.export import response_rows
from study_server.extensions import db
from study_server.models import Participant
from study_server.models import Response
from study_server.models import Study
from study_server.studies import create_study
from study_server.studies import import_batch

CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("SMART_STUDY_TEST_PG", "postgresql+psycopg://smart:smart@127.0.0.1:5432/smart_test")


def _plain(url: Any) -> str:
    """A libpq connection string for psycopg itself."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def pg_server() -> Any:
    try:
        import psycopg
    except ImportError:
        pytest.fail("psycopg is not installed") if CI else pytest.skip("psycopg is not installed")
    url = make_url(PG_URL)
    try:
        psycopg.connect(_plain(url), connect_timeout=5, autocommit=True).close()
    except psycopg.OperationalError as e:
        why = f"no PostgreSQL server at {url.render_as_string(hide_password=True)}: {str(e).strip()}"
        if CI:
            pytest.fail(f"{why} (CI=true: .ci/setup-system installs and starts it)")
        pytest.skip(f"{why} (run .ci/setup-system, or set SMART_STUDY_TEST_PG)")
    return url


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    """A fresh, empty database for one test (dropped afterwards); its URL in the plain ``postgresql://`` form."""
    import psycopg

    name = f"smart_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_plain(pg_server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _plain(pg_server.set(database=name))
    finally:
        with psycopg.connect(_plain(pg_server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_app(url: str) -> Any:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    r = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert r.exit_code == 0, r.output
    return app


def export_rows(url: str, slug: str | None, tmp_path: Any) -> list[dict[str, Any]]:
    """The rows `flask --app study_server export [SLUG]` prints for the database at ``url``."""
    from stimuli.responses import read_responses

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "x", "STUDY_ENV": "production"})
    out = tmp_path / "export.csv"
    out.write_text(app.test_cli_runner().invoke(args=["export", *([slug] if slug else [])]).output)
    with app.app_context():
        db.engine.dispose()
    return read_responses(out)


def test_migrations_build_exactly_the_models_schema_on_postgresql(pg_url):
    app = pg_app(pg_url)
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    with app.app_context():
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)
        assert diff == []
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        db.engine.dispose()


def attentive(trial, state):
    if trial.design == "indistinguishability":
        return "unchanged" if trial.kind == "sensitivity" else "changed"
    return state["options"][0]["value"]


def test_core_flows_on_postgresql(pg_url, tmp_path):
    app = pg_app(pg_url)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["import-batch", str(server_batch()), "--no-decode", "--json"])
    assert first.exit_code == 0 and json.loads(first.output)["created"] is True, first.output
    again = runner.invoke(args=["import-batch", str(server_batch()), "--no-decode", "--json"])
    assert json.loads(again.output)["created"] is False
    with app.app_context():
        batch_id = json.loads(first.output)["batch_id"]
        create_study(
            "ind",
            batch_id,
            "indistinguishability",
            trials=5,
            practice_trials=1,
            sensitivity_share=0.4,
            control_share=0.2,
            target_participants=5,
        )
        create_study(
            "all",
            batch_id,
            "combined",
            practice_trials=0,
            blocks=[{"study_type": "deceitfulness", "trials": 2}, {"study_type": "naturalness", "trials": 2}],
        )
        create_researcher(*RESEARCHER)
    # enrolment, answers, screening
    ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="pg-good").finish(attentive)
    ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="pg-lazy").finish(lambda t, s: "changed")
    racer = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="pg-race")
    racer.race_duplicate_answers()
    racer.finish(attentive)
    combined = ParticipantActions(app.test_client(), "all").join(PROLIFIC_PID="pg-blocks")
    combined.finish(attentive)
    combined.start()
    combined.finish(attentive)
    assert combined.participant().status == "completed"
    # one participation per recruiting id, also when two entries race
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def enter() -> None:
        c = app.test_client()
        barrier.wait()
        codes.append(c.get("/s/ind?PROLIFIC_PID=pg-twice").status_code)

    threads = [threading.Thread(target=enter) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [302, 302]
    # the researcher side
    ra = ResearcherActions(app.test_client())
    assert ra.login(password="wrong-password").status_code == 401
    assert ra.login().status_code == 302
    data = ra.client.get("/admin/studies/ind/live.json").get_json()
    raced_excluded = int(racer.participant().excluded)  # its raced answers may have said "changed" to an original
    assert data["participants"]["completed"] == 3 and data["participants"]["excluded"] == 1 + raced_excluded
    assert data["participants"]["entered"] == 4
    with app.app_context():
        study = db.session.execute(select(Study).where(Study.slug == "ind")).scalar_one()
        assert summary(study)["participants"] == data["participants"]
        expected = response_rows(study)
        assert db.session.execute(select(func.count()).select_from(Response)).scalar_one() == 3 * 6 + 4
        db.session.remove()
        db.engine.dispose()
    # the export command on the URL alone, any PostgreSQL scheme
    assert export_rows(pg_url, "ind", tmp_path) == expected
    assert export_rows(pg_url.replace("postgresql://", "postgres://", 1), "ind", tmp_path) == expected
    assert len(export_rows(pg_url, None, tmp_path)) == len(expected) + 4
    # withdrawal, in one transaction
    lazy = db_participant(app, "pg-lazy")
    r = runner.invoke(args=["withdraw", "ind", lazy, "--yes", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["responses"] == 6
    assert len(export_rows(pg_url, "ind", tmp_path)) == len(expected) - 6
    with app.app_context():
        db.engine.dispose()


def test_concurrent_answers_are_stored_once_on_postgresql(pg_url):
    """On PostgreSQL at the same moment: answers of different participants, a duplicate and a conflicting answer;
    every answer stored once (the second closer of an attempt waits for the first, then finds it closed)."""
    app = pg_app(pg_url)
    with app.app_context():
        batch = import_batch(server_batch(), decode=False)
        create_study(
            "ind", batch, "indistinguishability", trials=3, practice_trials=0, sensitivity_share=0.34, control_share=0.0
        )
    people = [ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID=f"pg-g{i}") for i in range(3)]
    states = [p.state() for p in people]

    def twin(p: ParticipantActions) -> ParticipantActions:
        t = ParticipantActions(app.test_client(), "ind")
        t.client.set_cookie("session", p.client.get_cookie("session").value)
        t._csrf = p.csrf()
        return t

    def body(s: dict[str, Any], answer: str, key: str) -> dict[str, Any]:
        return {
            "attempt": s["attempt"],
            "key": key,
            "answer": answer,
            "rt_ms": 600.0,
            "playback_failed": False,
            "events": PLAYED,
        }

    keys = [uuid.uuid4().hex for _ in range(4)]
    posts = [
        lambda: people[0].post_answer(body(states[0], "changed", keys[0])),
        lambda: twin(people[0]).post_answer(body(states[0], "changed", keys[0])),  # the same answer again
        lambda: people[1].post_answer(body(states[1], "unchanged", keys[1])),
        lambda: twin(people[1]).post_answer(body(states[1], "changed", keys[2])),  # a conflicting one
        lambda: people[2].post_answer(body(states[2], "changed", keys[3])),
    ]
    rs = at_once(posts)
    codes = [r.status_code for r in rs]
    assert codes[:2] == [200, 200] and rs[0].get_json() == rs[1].get_json()
    assert sorted(codes[2:4]) == [200, 409] and codes[4] == 200
    with app.app_context():
        rows = db.session.execute(select(Response.idempotency_key)).scalars().all()
        db.session.remove()
        db.engine.dispose()
    winner = keys[1] if codes[2] == 200 else keys[2]
    assert sorted(rows) == sorted([keys[0], winner, keys[3]])


def db_participant(app: Any, recruit_id: str) -> str:
    with app.app_context():
        return db.session.execute(
            select(Participant.public_id).where(Participant.recruit_id == recruit_id)
        ).scalar_one()
