"""The server against bad input: malformed answers never give a 500 or store anything; production
cookies are Secure with HSTS; a missing secret is one line; one database URL means one file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func
from sqlalchemy import select
from support.server import ParticipantActions
from support.server import make_test_app

from study_server import create_app
from study_server import database_url
from study_server.extensions import db
from study_server.models import Response

ROOT = Path(__file__).resolve().parent.parent
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


def count(app) -> int:
    with app.app_context():
        return int(db.session.execute(select(func.count()).select_from(Response)).scalar())


def _malformed(rng: np.random.Generator, attempt: str) -> bytes:
    good = {
        "attempt": attempt,
        "key": uuid.uuid4().hex,
        "answer": "changed",
        "rt_ms": 700.0,
        "playback_failed": False,
        "events": [{"type": "play", "t": 1.0, "mt": 0.0}, {"type": "answerable", "t": 2.0}],
    }
    kind = int(rng.integers(9))
    if kind == 0:
        depth = int(rng.integers(100, 5000))
        return b"[" * depth + b"]" * depth
    if kind == 1:
        return json.dumps({**good, "events": json.loads("[" * 500 + "]" * 500)}).encode()
    if kind == 2:
        key = list(good)[int(rng.integers(len(good)))]
        odd = [None, True, 1e308, -1, "x" * 5000, [], {}, "\u0000", float("nan"), "١٢", 10**30]
        return json.dumps({**good, key: odd[int(rng.integers(len(odd)))]}).encode()
    if kind == 3:
        raw = bytearray(json.dumps(good).encode())
        for _ in range(int(rng.integers(1, 6))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        return bytes(raw)
    if kind == 4:
        return json.dumps({**good, "events": [{"type": "play", "t": float(i)} for i in range(2001)]}).encode()
    if kind == 5:
        return json.dumps({**good, "attempt": "../" * int(rng.integers(1, 20))}).encode()
    if kind == 6:
        return b'{"attempt": "' + bytes(rng.integers(0, 256, 40).astype(np.uint8)) + b'"}'
    if kind == 7:
        return json.dumps({**good, "events": [{"type": "play", "t": "1e999"}]}).encode().replace(b'"1e999"', b"1e999")
    return json.dumps([good]).encode()


def test_malformed_answers_are_4xx_and_store_nothing(app) -> None:
    p = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="fuzz")
    state = p.state()
    rng = np.random.default_rng(0)
    codes = {}
    token = p.csrf()
    for _ in range(300):
        r = p.client.post(
            "/s/ind/api/answer",
            data=_malformed(rng, state["attempt"]),
            headers={"X-CSRFToken": token, "Content-Type": "application/json"},
        )
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:200])
        codes[r.status_code] = codes.get(r.status_code, 0) + 1
        assert count(app) == min(codes.get(200, 0), 1)  # a refusal stores nothing; the attempt takes one answer
    assert set(codes) <= {200, 400, 404, 409, 413} and sum(v for k, v in codes.items() if k != 200) > 250
    # and the participant can still answer normally afterwards
    before = count(app)
    assert p.answer(p.state(), "unchanged").status_code == 200 and count(app) == before + 1


def test_json_nested_a_thousand_deep_is_a_400(app) -> None:
    p = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="deep")
    r = p.client.post(
        "/s/ind/api/answer",
        data=b"[" * 1000 + b"]" * 1000,
        headers={"X-CSRFToken": p.csrf(), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.get_json() == {"error": "malformed answer"}


def test_production_cookies_are_secure_with_hsts(tmp_path, monkeypatch) -> None:
    for key in ("SECRET_KEY", "STUDY_ENV", "DATABASE_URL", "SESSION_COOKIE_SECURE", "FLASK_SESSION_COOKIE_SECURE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SECRET_KEY", "s" * 32)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'p.sqlite3'}")
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    r = app.test_client().get("/healthz")
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "0")  # the documented switch for a plain-HTTP trial
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert "Strict-Transport-Security" not in app.test_client().get("/healthz").headers
    monkeypatch.delenv("SESSION_COOKIE_SECURE")
    monkeypatch.setenv("STUDY_ENV", "development")
    assert create_app().config["SESSION_COOKIE_SECURE"] is False
    # the session cookie itself carries the flag in production
    monkeypatch.setenv("STUDY_ENV", "production")
    secure = make_test_app(tmp_path / "s.sqlite3", STUDIES, config={"SESSION_COOKIE_SECURE": True})
    r = secure.test_client().get("/s/ind/?PROLIFIC_PID=abc", base_url="https://localhost")
    assert any("Secure" in v for v in r.headers.get_all("Set-Cookie"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_") and k not in ("SECRET_KEY", "STUDY_ENV")}
    return {**env, **extra}


def test_a_missing_secret_key_is_one_line_and_a_non_zero_exit(tmp_path) -> None:
    env = _env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}")
    r = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "study_server", "summary", "x"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[0]]
    assert r.stderr.startswith("Error: SECRET_KEY is not set")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:study_server.gunicorn_conf",
            "--bind",
            "127.0.0.1:0",
            "study_server:create_app()",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "Traceback" not in r.stdout + r.stderr
    errors = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("Error")]
    assert errors == [errors[0]] and "SECRET_KEY is not set" in errors[0]


def test_a_relative_sqlite_url_means_the_file_from_the_current_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert database_url("sqlite:///data/study.sqlite3") == f"sqlite:///{tmp_path / 'data' / 'study.sqlite3'}"
    assert database_url("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert database_url("sqlite:///:memory:") == "sqlite:///:memory:"
    # the server and the analysis open the same file for the README's relative URL
    (tmp_path / "data").mkdir()
    app = make_test_app(tmp_path / "data" / "study.sqlite3", STUDIES)
    p = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="rel")
    assert p.answer(p.state(), "unchanged").status_code == 200
    from stimuli.responses import read_responses
    from study_server import create_app

    other = create_app(
        {"SQLALCHEMY_DATABASE_URI": "sqlite:///data/study.sqlite3", "SECRET_KEY": "x", "STUDY_ENV": "production"}
    )
    (tmp_path / "out.csv").write_text(other.test_cli_runner().invoke(args=["export", "ind"]).output)
    rows = read_responses(tmp_path / "out.csv")
    assert rows and {r["study"] for r in rows} == {"ind"}


def test_a_trial_is_answered_only_after_it_was_shown_and_played(app) -> None:
    from study_server.models import Attempt

    p = ParticipantActions(app.test_client(), "ind").join(PROLIFIC_PID="unseen")
    first = p.state()
    assert first["next"] is not None  # the next trial's media handed out for preloading
    # no report that the clip played to the end: refused, nothing stored
    body = {
        "attempt": first["attempt"],
        "key": uuid.uuid4().hex,
        "answer": "unchanged",
        "rt_ms": 700.0,
        "events": [{"type": "play", "t": 1.0, "mt": 0.0}],
    }
    r = p.post_answer(body)
    assert r.status_code == 400 and "played to the end" in r.get_json()["error"] and count(app) == 0
    assert p.answer(first, "unchanged").status_code == 200 and count(app) == 1
    # the preloaded trial's attempt, answered before any page showed it: refused, nothing stored
    with app.app_context():
        nxt = db.session.execute(select(Attempt).where(Attempt.closed.is_(False), Attempt.served == 0)).scalar_one()
        ref = nxt.ref
    r = p.post_answer({**body, "attempt": ref, "key": uuid.uuid4().hex, "events": [{"type": "answerable", "t": 1.0}]})
    assert r.status_code == 409 and r.get_json()["error"] == "this trial has not been shown yet" and count(app) == 1
    shown = p.state()
    assert shown["attempt"] == ref and p.answer(shown, "unchanged").status_code == 200 and count(app) == 2
