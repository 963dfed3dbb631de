"""Study server, the app itself: configuration and secrets, SQLite WAL, migrations, CLI, error pages, no torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import text
from support.batches import server_batch
from support.server import make_test_app

from stimuli.paths import data_root
from study_server import ConfigError
from study_server import _database_url
from study_server import create_app
from study_server.extensions import db
from study_server.models import Batch
from study_server.models import Participant
from study_server.models import Study
from study_server.studies import StudyConfigError
from study_server.studies import create_study

ENV_KEYS = ("SECRET_KEY", "FLASK_SECRET_KEY", "STUDY_ENV", "DATABASE_URL", "FLASK_DEBUG")


@pytest.fixture
def clean_env(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


# ---- configuration ---------------------------------------------------------------------------------
def test_production_refuses_to_start_without_a_secret_key(clean_env):
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app()
    clean_env.setenv("SECRET_KEY", "s" * 32)
    app = create_app()
    assert app.config["SECRET_KEY"] == "s" * 32 and not app.debug and app.config["STUDY_ENV"] == "production"
    clean_env.setenv("FLASK_DEBUG", "1")
    with pytest.raises(ConfigError, match="debug mode"):
        create_app()


def test_development_makes_and_keeps_a_local_secret(clean_env):
    clean_env.setenv("STUDY_ENV", "development")
    a, b = create_app(), create_app()
    assert a.config["SECRET_KEY"] == b.config["SECRET_KEY"] and len(a.config["SECRET_KEY"]) == 64
    assert (data_root() / ".dev-secret-key").is_file()
    clean_env.setenv("STUDY_ENV", "staging")
    with pytest.raises(ConfigError, match="STUDY_ENV must be"):
        create_app()


def test_default_database_is_sqlite_in_wal_mode_under_the_data_root(clean_env, tmp_path):
    clean_env.setenv("STUDY_ENV", "development")
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{data_root() / 'study.sqlite3'}"
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    other = tmp_path / "elsewhere.sqlite3"
    clean_env.setenv("DATABASE_URL", f"sqlite:///{other}")
    assert create_app().config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{other}"
    # PostgreSQL goes through psycopg 3, whichever scheme the host hands out (not connected here)
    for given in (
        "postgres://u:p@db.example/study",
        "postgresql://u:p@db.example/study",
        "postgresql+psycopg://u:p@db.example/study",
    ):
        assert (
            _database_url(SimpleNamespace(config={"SQLALCHEMY_DATABASE_URI": given}))
            == "postgresql+psycopg://u:p@db.example/study"
        )


# ---- migrations --------------------------------------------------------------------------------------
def test_the_migration_builds_exactly_the_models_schema(tmp_path):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'm.sqlite3'}"})
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)
            tables = set(inspect(conn).get_table_names())
    assert diff == []
    assert tables == set(db.metadata.tables) | {"alembic_version"}
    with app.app_context():
        uniques = {c["name"] for c in inspect(db.engine).get_unique_constraints("response")}
        assert "uq_response_participant_pk_trial_pk_attempt" in uniques
        uniques = {c["name"] for c in inspect(db.engine).get_unique_constraints("participant")}
        assert "uq_participant_study_pk_platform_recruit_id" in uniques


def test_the_migration_moves_a_single_design_studys_settings_into_its_block(tmp_path):
    """Studies made before every study stored its blocks keep their settings, one block each, and back."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'old.sqlite3'}"})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade", "0003"]).exit_code == 0
    now = "2026-12-01 10:00:00"
    common = {"status": "open", "created_at": now, "screening_threshold": 0.8, "stall_limit_s": 10.0}
    common |= {"max_attempts": 3, "allow_anonymous": True, "prolific_redirect": True, "batch_pk": 1}
    old = {"trials": 40, "practice_trials": 3, "plays": 2, "seconds": 1.5, "slowdown": 2.0}
    old |= {"sensitivity_share": 0.25, "control_share": 0.05, "variants": '["smart", "l2"]'}
    combined = [{"study_type": "naturalness", "trials": 2, "practice_trials": 0, "plays": 2, "seconds": 1.0}]
    combined[0] |= {"slowdown": 1.0, "variants": ["smart"], "sensitivity_share": 0.2, "control_share": 0.1}
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO batch (id, batch_id, root, manifest_sha256, n_items, variants, clip_seconds, imported_at)"
                " VALUES (1, 'b', '/x', 'ab', 1, '{}', 2.0, :now)"
            ),
            {"now": now},
        )
        for slug, kind, settings, blocks in (
            ("one", "indistinguishability", old, None),
            ("two", "combined", {**old, "trials": 2, "practice_trials": 0}, json.dumps(combined)),
        ):
            row = {"slug": slug, "title": slug, "study_type": kind, **common, **settings, "blocks": blocks}
            conn.execute(text(f"INSERT INTO study ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"), row)
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        one, two = db.session.execute(select(Study).order_by(Study.slug)).scalars()
        assert one.blocks == [
            {
                "study_type": "indistinguishability",
                "trials": 40,
                "practice_trials": 3,
                "plays": 2,
                "seconds": 1.5,
                "slowdown": 2.0,
                "sensitivity_share": 0.25,
                "control_share": 0.05,
                "variants": ["smart", "l2"],
            }
        ]
        assert (one.trials, one.practice_trials) == (40, 3)
        assert two.blocks == combined
    assert runner.invoke(args=["db", "downgrade", "0003"]).exit_code == 0
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT slug, trials, plays, seconds, variants, blocks FROM study ORDER BY slug")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("one", 40, 2, 1.5, '["smart", "l2"]', None),
        ("two", 2, 2, 1.0, '["smart"]', json.dumps(combined)),
    ]


# ---- study creation ------------------------------------------------------------------------------
def test_create_study_checks_every_setting(tmp_path):
    app = make_test_app(tmp_path / "s.sqlite3")
    with app.app_context():
        batch = db.session.execute(select(Batch)).scalar_one()
        s = create_study("paper", batch, "naturalness")
        assert s.blocks == [
            {
                "study_type": "naturalness",
                "trials": 100,
                "practice_trials": 2,
                "plays": 2,
                "seconds": 1.0,
                "slowdown": 1.0,
                "variants": ["smart"],
                "sensitivity_share": 0.2,
                "control_share": 0.1,
                "procedure": "fixed",
                "practice_feedback": False,
            }
        ]
        assert (s.trials, s.practice_trials, s.screening_threshold, s.max_attempts, s.status) == (
            100,
            2,
            0.8,
            3,
            "open",
        )
        bad = [
            ({"slug": "Bad Slug"}, "slug must be"),
            ({"study_type": "memory"}, "study_type must be one of"),
            ({"slug": "paper"}, "exists already"),
            ({"trials": 0}, "trials must be"),
            ({"study_type": "naturalness", "trials": 5}, "must be even"),
            ({"seconds": 2.0}, "at most the batch's clip length 1"),
            ({"slowdown": 0}, "slowdown must be"),
            ({"sensitivity_share": 1.5}, r"sensitivity_share must be a number in \[0, 1\], got 1.5"),
            ({"sensitivity_share": 0.5, "control_share": 0.5}, "leave no perceivability trial"),
            ({"variants": ["control"]}, "not an attacked variant"),
            ({"study_type": "deceitfulness", "variants": ["smart", "l2"]}, "one attacked variant"),
            ({"completion_code": "has space"}, "completion_code must be"),
            ({"max_attempts": 11}, r"max_attempts must be an integer in 1\.\.10, got 11"),
            ({"stall_limit_s": 0.5}, r"stall_limit_s must be a number in \[1, 600\], got 0.5"),
            ({"seconds": 0}, r"seconds must be None or a number in \(0, 600\], got 0"),
            ({"control_hit_threshold": True}, "control_hit_threshold must be None or a number"),
            ({"status": "paused"}, "status must be one of open, pilot, closed"),
            ({"allow_anonymous": "yes"}, "allow_anonymous must be true or false"),
            ({"blocks": [{"study_type": "naturalness"}]}, "blocks are for combined sessions only"),
            ({"colour": "red"}, "unknown setting"),
            ({"batch": "batch-unknown"}, "no imported batch"),
        ]
        for change, message in bad:
            args = {"slug": "x", "batch": batch, "study_type": "indistinguishability", **change}
            with pytest.raises(StudyConfigError, match=message):
                create_study(args.pop("slug"), args.pop("batch"), args.pop("study_type"), **args)
        assert [x.slug for x in db.session.execute(select(Study)).scalars()] == ["paper"]


# ---- CLI -----------------------------------------------------------------------------------------------
def test_init_demo_imports_a_batch_and_creates_the_demo_studies(tmp_path):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'd.sqlite3'}"})
    runner = app.test_cli_runner()
    result = runner.invoke(args=["init-demo", "--batch", str(server_batch()), "--no-decode"])
    assert result.exit_code == 0, result.output
    assert "Participant URL: http://127.0.0.1:5000/s/demo" in result.output
    again = runner.invoke(args=["init-demo", "--batch", str(server_batch()), "--no-decode"])
    assert again.exit_code == 0 and "Participant URL" in again.output  # idempotent
    with app.app_context():
        studies = {s.slug: s.study_type for s in db.session.execute(select(Study)).scalars()}
        assert len(db.session.execute(select(Batch)).scalars().all()) == 1
        # each ends as a paid study would (a completion code) and still takes anyone who tries it
        rows = db.session.execute(select(Study)).scalars()
        assert {(s.completion_code, s.allow_anonymous) for s in rows} == {("DEMO-COMPLETE", True)}
    assert studies == {
        "demo": "indistinguishability",
        "demo-deceitfulness": "deceitfulness",
        "demo-naturalness": "naturalness",
    }
    client = app.test_client()
    assert client.get("/s/demo").headers["Location"] == "/s/demo/consent"


def test_init_demo_uses_the_demo_batch_and_names_the_command_when_absent(tmp_path):
    """The server does not build batches (that is attack_gen's job): it imports the one in the data root, and
    without one says, in one line, what builds it."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'd.sqlite3'}"})
    demo = data_root() / "batches" / "demo"
    shutil.rmtree(demo, ignore_errors=True)
    missing = app.test_cli_runner().invoke(args=["init-demo", "--no-decode"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert missing.output.strip() == (
        f"Error: no demo batch in {demo}: build it first with `attack-gen batch --demo` "
        "(a few minutes on a CPU), or pass --batch DIR"
    )
    demo.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(server_batch(), demo)
    result = app.test_cli_runner().invoke(args=["init-demo", "--no-decode"])
    assert result.exit_code == 0, result.output
    assert "/s/demo" in result.output


def test_create_study_command(tmp_path):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'c.sqlite3'}"})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    r = runner.invoke(
        args=[
            "create-study",
            "pilot",
            "--batch",
            str(server_batch()),
            "--type",
            "deceitfulness",
            "--trials",
            "4",
            "--no-decode",
            "--completion-code",
            "ABC",
        ]
    )
    assert r.exit_code == 0 and r.output.strip() == "/s/pilot"
    r = runner.invoke(
        args=["create-study", "pilot", "--batch", str(server_batch()), "--type", "deceitfulness", "--no-decode"]
    )
    assert r.exit_code == 1 and "exists already" in r.output and "Traceback" not in r.output


# ---- error pages -----------------------------------------------------------------------------------
def test_errors_are_short_pages_and_a_500_rolls_back(tmp_path, monkeypatch):
    app = make_test_app(tmp_path / "e.sqlite3", config={"PROPAGATE_EXCEPTIONS": False})
    rolled_back = []

    def boom():
        db.session.add(Participant(public_id="p-half", study_pk=1, platform="anonymous", recruit_id="half", seed=1))
        monkeypatch.setattr(db.session, "rollback", lambda: rolled_back.append(True))
        raise RuntimeError("secret internals")

    app.add_url_rule("/boom", view_func=boom)
    r = app.test_client().get("/boom")
    body = r.get_data(as_text=True)
    assert r.status_code == 500 and "Something went wrong on our side" in body
    assert "secret internals" not in body and "Traceback" not in body
    assert rolled_back == [True]
    r = app.test_client().get("/no/such/page")
    assert r.status_code == 404 and "Page not found" in r.get_data(as_text=True)
    r = app.test_client().get("/s/nope/api/state")
    assert r.status_code == 404 and r.is_json
    assert app.test_client().post("/").status_code == 405


# ---- torch stays out ---------------------------------------------------------------------------------
def test_the_server_never_imports_torch(tmp_path):
    db_file = tmp_path / "t.sqlite3"
    make_test_app(db_file, [("s", "indistinguishability", {"trials": 3})])  # the import is done here
    script = textwrap.dedent(f"""\
        import sys
        from study_server import create_app
        from support.server import ParticipantActions
        app = create_app({{"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite:///{db_file}"}})
        ParticipantActions(app.test_client(), "s").join(PROLIFIC_PID="t").finish(
            lambda t, s: s["options"][0]["value"])
        assert app.test_client().get("/s/s/done").status_code == 403  # (another browser)
        print(sorted(m for m in ("torch", "skia", "stimuli.render", "attack_gen") if m in sys.modules))
        """)
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent)  # the test support package
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # neither torch nor the renderer: a session runs on load_batch alone


def test_every_page_names_its_icon_and_the_icon_is_served(tmp_path):
    """No 404 for a favicon on every page: the base template links an SVG icon that the server serves."""
    app = make_test_app(tmp_path / "i.sqlite3", [("dec", "deceitfulness", {"trials": 2})])
    client = app.test_client()
    page = client.get("/s/dec?PROLIFIC_PID=icon", follow_redirects=True).get_data(as_text=True) + client.get(
        "/admin/login"
    ).get_data(as_text=True)
    assert page.count('rel="icon" href="/static/favicon.svg"') == 2
    with client.get("/static/favicon.svg") as r:
        assert r.status_code == 200 and r.mimetype == "image/svg+xml" and b"<svg" in r.data
