"""Participant and researcher web app of smart-study (Flask). Never imports torch.

``create_app(test_config=None)`` builds the app. Settings, lowest precedence first: the
defaults below; ``instance/config.py``; ``FLASK_*`` environment variables (e.g.
``FLASK_SECRET_KEY``, ``FLASK_SESSION_COOKIE_SECURE=true``); ``SECRET_KEY``,
``DATABASE_URL`` (any SQLAlchemy URL; default SQLite in WAL mode at
``data_root()/study.sqlite3``; ``postgres://`` and ``postgresql://`` URLs use psycopg 3)
and ``STUDY_ENV`` (``production``, the default, or ``development``). Tests pass
``test_config`` instead of reading the environment.

Researcher side: ``BATCH_ROOTS`` (folders the web form may import stimulus batches
from; default ``data_root()/batches``; the CLI imports from anywhere),
``LOGIN_WINDOW_S`` / ``LOGIN_MAX_FAILURES_PER_ACCOUNT`` / ``LOGIN_MAX_FAILURES_PER_IP``
(the sign-in rate limit, see :mod:`study_server.accounts`), ``ADMIN_SESSION_HOURS``
(a researcher's sign-in lasts this long), ``TRUSTED_PROXIES`` (the number of reverse
proxies in front of the server whose ``X-Forwarded-*`` headers to trust; 0 by default).

Production: ``gunicorn -c python:study_server.gunicorn_conf 'study_server:create_app()'``
(see :mod:`study_server.gunicorn_conf`).

Outside development and testing a ``SECRET_KEY`` is required and debug mode is refused
(:class:`ConfigError`, with a message saying what to set; the ``flask`` command and
gunicorn print it as one line and exit non-zero). In production the session cookie is
``Secure`` and every response carries ``Strict-Transport-Security``: serve over HTTPS (a
TLS-terminating proxy). ``SESSION_COOKIE_SECURE=0`` turns both off for a plain-HTTP
trial; development and testing default to off.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import Mapping

import click
from flask import Flask
from flask import Response
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from stimuli.errors import SmartStudyError
from stimuli.paths import data_root

from .extensions import csrf
from .extensions import db
from .extensions import migrate

__all__ = ["create_app", "check_config", "database_url", "ConfigError", "TEMPLATES", "MIGRATIONS"]

PACKAGE = Path(__file__).resolve().parent
TEMPLATES = PACKAGE.parent / "templates"
MIGRATIONS = PACKAGE / "migrations"

# No inline script or style anywhere; MTurk shows studies in a frame on its own pages.
MTURK_ORIGINS = "https://www.mturk.com https://workersandbox.mturk.com"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; "
    f"form-action 'self' {MTURK_ORIGINS}; frame-ancestors 'self' {MTURK_ORIGINS}"
)


class ConfigError(SmartStudyError, click.ClickException):
    """The app cannot start with this configuration (the message says what to set).

    A ``ClickException``, so that the ``flask`` command prints it as ``Error: ...`` and exits 1.
    """


def _defaults() -> dict[str, Any]:
    return {
        "SECRET_KEY": None,
        "STUDY_ENV": "production",
        "DEBUG": False,
        "SQLALCHEMY_DATABASE_URI": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": None,  # None: True in production, False in development and testing
        "HSTS_MAX_AGE": 365 * 24 * 3600,
        "PERMANENT_SESSION_LIFETIME": timedelta(days=14),
        "WTF_CSRF_TIME_LIMIT": None,  # valid for the session: a long study must not expire mid-way
        "WTF_CSRF_SSL_STRICT": False,  # the Referer check cannot work with Referrer-Policy: no-referrer
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "MEDIA_MAX_AGE": 3600,
        "SQLITE_BUSY_TIMEOUT_S": 30.0,
        "SQLITE_SYNCHRONOUS": "FULL",
        "SESSION_REFRESH_EACH_REQUEST": False,  # the cookie is re-sent when it changes, not on every request
        "BATCH_ROOTS": None,
        "LOGIN_WINDOW_S": 900,
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": 5,
        "LOGIN_MAX_FAILURES_PER_IP": 20,
        "ADMIN_SESSION_HOURS": 12,
        "TRUSTED_PROXIES": 0,
        "ADMIN_REFRESH_MS": 5000,
    }


def database_url(url: str | None) -> str:
    """The SQLAlchemy URL the server uses for ``url`` (default: the SQLite file under the data root).

    PostgreSQL goes through psycopg 3: ``postgres://`` (the old scheme some hosts still
    hand out) and ``postgresql://`` become ``postgresql+psycopg://``. A relative SQLite path
    (``sqlite:///data/study.sqlite3``) means that file from the current folder, for the
    server and the analysis alike (Flask-SQLAlchemy would otherwise take it from the
    instance folder).
    """
    if not url:
        return f"sqlite:///{data_root(create=True) / 'study.sqlite3'}"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rest = url[len("sqlite:///") :]
        path, sep, query = rest.partition("?")
        if path and path != ":memory:" and not path.startswith("file:"):
            return f"sqlite:///{Path(path).resolve()}{sep}{query}"
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _database_url(app: Flask) -> str:
    return database_url(app.config.get("SQLALCHEMY_DATABASE_URI"))


def _dev_secret() -> str:
    path = data_root(create=True) / ".dev-secret-key"
    if not path.is_file():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _check_security(app: Flask) -> None:
    env = app.config["STUDY_ENV"]
    if env not in ("production", "development"):
        raise ConfigError(f"STUDY_ENV must be 'production' or 'development', got {env!r}")
    if app.config["SESSION_COOKIE_SECURE"] is None:
        app.config["SESSION_COOKIE_SECURE"] = env == "production" and not app.testing
    if app.testing:
        app.config["SECRET_KEY"] = app.config["SECRET_KEY"] or "testing"
        return
    if env == "development":
        app.config["SECRET_KEY"] = app.config["SECRET_KEY"] or _dev_secret()
        return
    if not app.config["SECRET_KEY"]:
        raise ConfigError(
            "SECRET_KEY is not set: set the environment variable SECRET_KEY (e.g. to the output of "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`), or STUDY_ENV=development for a local trial"
        )
    if app.debug:
        raise ConfigError(
            "debug mode is on (FLASK_DEBUG) but STUDY_ENV is 'production': "
            "never debug a production server; set STUDY_ENV=development to debug locally"
        )


def _sqlite_pragmas(synchronous: str) -> Any:
    """Every SQLite connection: WAL (readers never block the writer), foreign keys enforced, and ``synchronous``.

    ``FULL`` (the default, ``SQLITE_SYNCHRONOUS``): every commit is on disk before the
    answer is acknowledged, even across a power loss. ``NORMAL``: in WAL mode still safe
    across a crash of the server process (what the load benchmark's SIGKILL tests), but a
    power loss may take back the last commits; it saves an fsync per commit.
    """
    if synchronous not in ("FULL", "NORMAL", "EXTRA"):
        raise ConfigError(f"SQLITE_SYNCHRONOUS must be FULL, NORMAL or EXTRA, got {synchronous!r}")

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.close()

    return on_connect


def check_config() -> None:
    """Read the settings from the environment as :func:`create_app` does and raise :class:`ConfigError` if they
    cannot run (gunicorn calls this before starting any worker)."""
    _configured(None)


def _configured(test_config: Mapping[str, Any] | None) -> Flask:
    app = Flask(__name__, instance_relative_config=True, template_folder=str(TEMPLATES), static_folder="static")
    app.config.from_mapping(_defaults())
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env()
        for key in ("SECRET_KEY", "STUDY_ENV"):
            if os.environ.get(key):
                app.config[key] = os.environ[key]
        secure = os.environ.get("SESSION_COOKIE_SECURE", "").strip().lower()
        if secure:
            if secure not in ("0", "1", "true", "false"):
                raise ConfigError(f"SESSION_COOKIE_SECURE must be 0 or 1, got {secure!r}")
            app.config["SESSION_COOKIE_SECURE"] = secure in ("1", "true")
        if os.environ.get("DATABASE_URL"):
            app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    else:
        app.config.from_mapping(test_config)
    _check_security(app)
    return app


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The study server (see the module docstring for its settings)."""
    app = _configured(test_config)
    url = _database_url(app)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    opts = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if url.startswith("sqlite"):
        opts.setdefault("connect_args", {"timeout": float(app.config["SQLITE_BUSY_TIMEOUT_S"])})
        if ":memory:" not in url and "mode=memory" not in url:
            # One connection per process: SQLite writes one at a time anyway, and a thread waiting for the
            # pool wakes as soon as it is free, where a connection waiting for SQLite's lock sleeps and retries
            # (1, 2, 5 ... 100 ms): that sleeping made the slowest answers slow (bench/load_study.py).
            opts.setdefault("pool_size", 1)
            opts.setdefault("max_overflow", 0)
            opts.setdefault("pool_timeout", float(app.config["SQLITE_BUSY_TIMEOUT_S"]))
    else:
        opts.setdefault("pool_pre_ping", True)  # survive a database restart
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = opts
    if int(app.config["TRUSTED_PROXIES"] or 0) > 0:
        n = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    csrf.init_app(app)
    if url.startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _sqlite_pragmas(str(app.config["SQLITE_SYNCHRONOUS"]).upper()))

    from . import admin
    from . import api
    from . import errors
    from . import media
    from . import participant
    from .cli import COMMANDS

    app.register_blueprint(participant.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(errors.bp)
    for command in COMMANDS:
        app.cli.add_command(command)

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness: the process answers (no database, no session; the load benchmark's baseline)."""
        return Response("ok\n", mimetype="text/plain")

    @app.after_request
    def security_headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
        h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        if response.mimetype in ("text/html", "application/json") and "Cache-Control" not in h:
            h["Cache-Control"] = "no-store"
        if app.config["SESSION_COOKIE_SECURE"] and app.config["HSTS_MAX_AGE"]:
            h.setdefault("Strict-Transport-Security", f"max-age={int(app.config['HSTS_MAX_AGE'])}")
        return response

    return app
