"""Helpers for tests of the study server: a test app and a scripted participant and researcher.

* :func:`make_test_app` - a testing app on a fresh SQLite file with the server test batch
  (:func:`support.batches.server_batch`) imported and the given studies created.
* :class:`ParticipantActions` - drives a Flask test client through a study like a
  participant (entry, consent, about you, instructions, trials), flaskr's
  ``AuthActions`` style; ``trial()`` looks the current trial up in the database (the
  answer key) so a test can answer as a given kind of participant would.
* :class:`ResearcherActions` - signs a test client in to ``/admin`` and sends its forms
  (``make_test_app(..., researcher=True)`` creates the account :data:`RESEARCHER`).
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Iterable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from study_server.extensions import db
from study_server.models import Attempt
from study_server.models import Participant
from study_server.models import Trial

from .batches import server_batch

__all__ = [
    "make_test_app",
    "at_once",
    "ParticipantActions",
    "ResearcherActions",
    "RESEARCHER",
    "PLAYED",
    "csrf_token",
]

RESEARCHER = ("researcher@example.org", "correct-horse-battery")
"""The researcher account ``make_test_app(..., researcher=True)`` creates: (email, password)."""
PLAYED = [{"type": "play", "t": 1.0, "mt": 0.0}, {"type": "answerable", "t": 1001.0, "mt": 1.0}]
"""Playback events of a clip watched to the end (what the page reports with an answer)."""


def make_test_app(
    db_path: str | Path,
    studies: Iterable[tuple[str, str, dict[str, Any]]] = (),
    *,
    config: dict[str, Any] | None = None,
    n_items: int = 3,
    batch: str | Path | None = None,
    with_batch: bool = True,
    researcher: bool = False,
) -> Flask:
    """A testing app on a fresh SQLite file, a batch imported (default: the fixture batch) and these studies.

    ``studies``: ``(slug, study type, create_study settings)``; ``with_batch=False``: no
    batch imported (and so no study); ``researcher``: the account :data:`RESEARCHER`
    exists. The database is built once per distinct set-up and copied for every later
    call (tests stay fast).
    """
    from study_server import create_app

    studies = [(slug, kind, dict(settings)) for slug, kind, settings in studies]
    batch_dir = server_batch(n_items) if batch is None and with_batch else (Path(batch) if batch else None)
    key = repr((studies, str(batch_dir), researcher))
    if key not in _TEMPLATES:
        _TEMPLATES[key] = _build_template(batch_dir, studies, researcher)
    shutil.copyfile(_TEMPLATES[key], db_path)
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}", **(config or {})})


_TEMPLATES: dict[str, Path] = {}


def _build_template(batch_dir: Path | None, studies: list[tuple[str, str, dict[str, Any]]], researcher: bool) -> Path:
    from flask_migrate import stamp
    from sqlalchemy import text

    from study_server import MIGRATIONS
    from study_server import create_app
    from study_server.accounts import create_researcher
    from study_server.studies import create_study
    from study_server.studies import import_batch

    tmp = Path(tempfile.mkdtemp(prefix="study-test-db-"))
    atexit.register(shutil.rmtree, tmp, True)
    path = tmp / "template.sqlite3"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    with app.app_context():
        db.create_all()
        stamp(directory=str(MIGRATIONS))  # at the newest migration, as `flask db upgrade` would leave it
        if batch_dir is not None:
            row = import_batch(batch_dir, decode=False)
            for slug, study_type, settings in studies:
                create_study(slug, row, study_type, **settings)
        if researcher:
            create_researcher(*RESEARCHER)
        db.session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return path


_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def csrf_token(html: str) -> str:
    m = _META_CSRF.search(html)
    if m is None:
        raise AssertionError("no CSRF token in the page")
    return m.group(1)


class ParticipantActions:
    """A participant driving ``client`` through study ``slug``."""

    def __init__(self, client: FlaskClient, slug: str):
        self.client = client
        self.slug = slug
        self._csrf: str | None = None

    @property
    def base(self) -> str:
        return f"/s/{self.slug}"

    def csrf(self) -> str:
        """The session's CSRF token (as the pages' ``<meta name="csrf-token">`` gives it)."""
        if self._csrf is None:
            self._csrf = csrf_token(self.client.get("/").get_data(as_text=True))
        return self._csrf

    def enter(self, **params: str) -> Any:
        return self.client.get(self.base, query_string=params)

    def _post_form(self, page: str, data: dict[str, Any]) -> Any:
        token = csrf_token(self.client.get(f"{self.base}/{page}").get_data(as_text=True))
        return self.client.post(f"{self.base}/{page}", data={"csrf_token": token, **data})

    def consent(self, agree: bool = True) -> Any:
        return self._post_form("consent", {"agree" if agree else "decline": "1"})

    def about(self, age: Any = 30, **extra: Any) -> Any:
        return self._post_form("about", {"age": age, **extra})

    def start(self) -> Any:
        return self._post_form("instructions", {"submit": "Start"})

    def join(self, **params: str) -> "ParticipantActions":
        """Enter, consent, give an age and start: now at the trials."""
        assert self.enter(**params).status_code == 302
        assert self.consent().status_code == 302
        assert self.about().status_code == 302
        assert self.start().status_code == 302
        return self

    def state(self) -> dict[str, Any]:
        r = self.client.get(f"{self.base}/api/state")
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()

    def post_answer(self, body: dict[str, Any], csrf: bool = True) -> Any:
        headers = {"X-CSRFToken": self.csrf()} if csrf else {}
        return self.client.post(f"{self.base}/api/answer", json=body, headers=headers)

    def post_at_once(self, bodies: list[dict[str, Any]]) -> list[Any]:
        """POST these answer bodies at the same moment, each from its own client sharing this session (a
        double-click, a retry racing the original); the responses, in the order of ``bodies``."""
        token = self.csrf()
        cookie = self.client.get_cookie("session")
        assert cookie is not None, "join the study first"
        clients = [self.client.application.test_client() for _ in bodies]
        for c in clients:
            c.set_cookie("session", cookie.value)
        barrier = threading.Barrier(len(bodies))
        results: list[Any] = [None] * len(bodies)

        def post(i: int) -> None:
            barrier.wait()
            results[i] = clients[i].post(f"{self.base}/api/answer", json=bodies[i], headers={"X-CSRFToken": token})

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def race_duplicate_answers(self, identical_rounds: int = 1) -> None:
        """Answer the next trials with two POSTs at once: ``identical_rounds`` trials the same answer with the same
        key (both get the same 200 body), then one trial two different answers (one 200, one 409). Every one of
        these trials must store exactly one answer."""
        from sqlalchemy import func

        from study_server.models import Response

        for round_ in range(identical_rounds + 1):
            s = self.state()
            same = round_ < identical_rounds
            key = uuid.uuid4().hex
            bodies = [
                {
                    "attempt": s["attempt"],
                    "key": key if same else f"{key}-{i}",
                    "answer": "unchanged" if same else ("changed", "unchanged")[i],
                    "rt_ms": 500.0,
                    "playback_failed": False,
                    "events": PLAYED,
                }
                for i in range(2)
            ]
            results = self.post_at_once(bodies)
            codes = sorted(r.status_code for r in results)
            assert codes == ([200, 200] if same else [200, 409]), codes
            if same:
                assert results[0].get_data() == results[1].get_data()
            with self.client.application.app_context():
                att = db.session.execute(select(Attempt).where(Attempt.ref == s["attempt"])).scalar_one()
                stored = db.session.execute(
                    select(func.count()).select_from(Response).where(Response.attempt_pk == att.id)
                ).scalar_one()
            assert stored == 1

    def answer(
        self,
        state: dict[str, Any],
        answer: str | None,
        *,
        key: str | None = None,
        rt_ms: float = 900.0,
        failed: bool = False,
        reason: str | None = None,
        extra_events: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> Any:
        body = {
            "attempt": state["attempt"],
            "key": key or uuid.uuid4().hex,
            "answer": None if failed else answer,
            "rt_ms": None if failed else rt_ms,
            "playback_failed": failed,
            "reason": reason or ("error" if failed else None),
            "events": [
                {"type": "play", "t": 1.0, "mt": 0.0},
                {"type": "play-end", "t": 1001.0, "mt": 1.0, "n": 1},
                {"type": "answerable", "t": 1001.5, "mt": 1.0},
                *extra_events,
            ],
        }
        return self.post_answer(body)

    def participant(self) -> Participant:
        """This participant's row, read afresh (detached: loaded columns only)."""
        with self.client.session_transaction() as sess:
            public_id = sess["p"][self.slug]
        with self.client.application.app_context():
            return db.session.execute(select(Participant).where(Participant.public_id == public_id)).scalar_one()

    def trial(self, state: dict[str, Any]) -> Trial:
        """The trial behind a state's opaque attempt reference: the answer key (tests only; detached)."""
        with self.client.application.app_context():
            att = db.session.execute(select(Attempt).where(Attempt.ref == state["attempt"])).scalar_one()
            return att.trial

    def finish(self, choose: Callable[[Trial, dict[str, Any]], str]) -> list[dict[str, Any]]:
        """Answer every remaining trial with ``choose(trial, state)``; returns the answer results."""
        results = []
        for _ in range(1000):
            s = self.state()
            if s["status"] != "trial":
                return results
            r = self.answer(s, choose(self.trial(s), s))
            assert r.status_code == 200, r.get_data(as_text=True)
            results.append(r.get_json())
        raise AssertionError("the study did not end")


def at_once(posts: list[Callable[[], Any]], timeout_s: float = 60.0) -> list[Any]:
    """Run the callables (answer POSTs, say) at the same moment, each in a thread of its own; their results, in
    order."""
    barrier = threading.Barrier(len(posts))
    results: list[Any] = [None] * len(posts)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = posts[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(posts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    return results


class ResearcherActions:
    """A researcher driving ``client`` through ``/admin`` (flaskr's ``AuthActions``)."""

    def __init__(self, client: FlaskClient, email: str = RESEARCHER[0], password: str = RESEARCHER[1]):
        self.client = client
        self.email = email
        self.password = password

    def csrf(self, page: str = "/admin/login") -> str:
        return csrf_token(self.client.get(page, follow_redirects=True).get_data(as_text=True))

    def login(self, email: str | None = None, password: str | None = None, next: str | None = None) -> Any:
        token = self.csrf("/admin/login")
        url = "/admin/login" + (f"?next={next}" if next else "")
        return self.client.post(
            url,
            data={
                "csrf_token": token,
                "email": email or self.email,
                "password": self.password if password is None else password,
            },
        )

    def logout(self) -> Any:
        return self.client.post("/admin/logout", data={"csrf_token": self.csrf("/admin/")})

    def post(self, path: str, data: dict[str, Any], page: str | None = None) -> Any:
        """POST a form to ``path`` with the CSRF token of ``page`` (default: ``path`` itself, or /admin/)."""
        token = self.csrf(page or (path if not path.endswith(("/status", "/logout")) else "/admin/"))
        return self.client.post(path, data={"csrf_token": token, **data})

    def study_form(self, **fields: Any) -> dict[str, Any]:
        """The new-study form's defaults (as the page fills them in), with ``fields`` changed."""
        html = self.client.get("/admin/studies/new").get_data(as_text=True)
        values: dict[str, Any] = {}
        names = set()
        for m in re.finditer(r"<input([^>]*)>", html):
            attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', m.group(1)))
            name, kind = attrs.get("name"), attrs.get("type", "text")
            if not name or name == "csrf_token" or kind == "submit":
                continue
            names.add(name)
            if kind == "checkbox":
                if "checked" in m.group(1):
                    values[name] = "y"
            else:
                values[name] = attrs.get("value", "")
        for m in re.finditer(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
            chosen = re.search(r'<option selected value="([^"]*)"', m.group(2)) or re.search(
                r'<option value="([^"]*)"', m.group(2)
            )
            values[m.group(1)] = chosen.group(1) if chosen else ""
            names.add(m.group(1))
        unknown = set(fields) - names
        assert not unknown, f"the form has no field(s) {sorted(unknown)}"
        for k, v in fields.items():
            if v is None or v is False:
                values.pop(k, None)
            else:
                values[k] = "y" if v is True else v
        return values
