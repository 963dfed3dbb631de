"""The study server plus the load benchmark's floor endpoint, served by gunicorn as ``bench.floor_app:create()``.

``POST /bench/floor`` (JSON ``{"key": ...}``, CSRF token in ``X-CSRFToken``, the
participant's session cookie) stores one row through Flask-SQLAlchemy and commits: the
least a Flask app with CSRF protection and a database write can do per answer. The
answer path is measured against it in the same app and run (``bench/load_study.py``).
The table lives in a metadata of its own (the study server's schema is untouched).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import Flask
from flask import jsonify
from flask import request
from sqlalchemy import Column
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import insert

from study_server import create_app
from study_server.extensions import db

FLOOR = Table(
    "bench_floor",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("key", String(64), unique=True, nullable=False),
)

bp = Blueprint("bench", __name__, url_prefix="/bench")


@bp.post("/floor")
def floor() -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        return jsonify(error="malformed"), 400
    db.session.execute(insert(FLOOR).values(key=data["key"][:64]))
    db.session.commit()
    return jsonify(stored=True)


def create() -> Flask:
    app = create_app()
    app.register_blueprint(bp)
    with app.app_context():
        FLOOR.create(db.engine, checkfirst=True)
    return app
