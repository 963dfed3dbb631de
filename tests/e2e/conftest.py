"""Browser tests: real Chromium (Debian's ``/usr/bin/chromium``) through Playwright, against a live server.

The server is the app on a temporary SQLite file and the fixture batch (real H.264
clips, 1 s at 10 fps), served by werkzeug in a thread. ``admin_server`` is the same
with no batch imported yet, a researcher account (:data:`study_server.testing.RESEARCHER`)
and the fixture batch's folder allowed for import. Without Chromium these tests
skip on a developer machine and FAIL under ``CI=true`` (CI installs it with
``apt-get install chromium``). ``$CHROMIUM`` overrides the browser's path.

``faults`` lets a test break things: the first attempt at the trial with a given
position gets garbage bytes instead of its video (``Content-Type: video/mp4``, status
200: what a truncated or corrupted file looks like to the browser); and the responses
to the next ``drop_answers`` answer POSTs are lost after the server has stored them (a
503 reaches the browser instead, as when a connection breaks at the wrong moment).
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Iterator

import pytest
from sqlalchemy import select
from support.batches import server_batch
from support.batches import threshold_batch
from support.server import make_test_app
from werkzeug.serving import make_server

from study_server.extensions import db
from study_server.models import MediaToken

CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

E2E_STUDIES = [
    ("dec", "deceitfulness", {"trials": 3, "practice_trials": 1, "completion_code": "E2E-DONE"}),
    ("nat", "naturalness", {"trials": 4, "practice_trials": 1}),
    (
        "ind",
        "indistinguishability",
        {"trials": 5, "practice_trials": 1, "sensitivity_share": 0.4, "control_share": 0.2, "slowdown": 1.5},
    ),
    (
        "fb",
        "indistinguishability",
        {"trials": 1, "practice_trials": 2, "sensitivity_share": 0.0, "control_share": 0.0, "practice_feedback": True},
    ),
    (
        "flaky",
        "indistinguishability",
        {"trials": 3, "practice_trials": 0, "sensitivity_share": 0.34, "control_share": 0.0, "stall_limit_s": 4.0},
    ),
    (
        "combo",
        "combined",
        {
            "practice_trials": 0,
            "completion_code": "COMBO-DONE",
            "blocks": [
                {"study_type": "deceitfulness", "trials": 1},
                {"study_type": "naturalness", "trials": 2},
                {"study_type": "indistinguishability", "trials": 2, "sensitivity_share": 0.5, "control_share": 0.0},
            ],
        },
    ),
]


def _unavailable(why: str) -> None:
    if CI:
        pytest.fail(f"browser tests cannot run: {why} (CI=true; install it with `apt-get install chromium`)")
    pytest.skip(why)


@dataclass
class Faults:
    """Which media to break: ``(trial position, attempt number)`` pairs, video only."""

    broken: set[tuple[int, int]] = field(default_factory=set)
    served: list[str] = field(default_factory=list)
    drop_answers: int = 0
    dropped: int = 0


@dataclass
class LiveServer:
    url: str
    app: Any
    faults: Faults


class _FaultyMedia:
    """WSGI middleware: garbage instead of the video for ``faults.broken``; lost answer responses."""

    def __init__(self, app: Any, faults: Faults):
        self.app, self.wsgi, self.faults = app, app.wsgi_app, faults

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/m/") and self.faults.broken:
            with self.app.app_context():
                mt = db.session.execute(select(MediaToken).where(MediaToken.token == path[3:])).scalar_one_or_none()
                hit = (
                    mt is not None
                    and mt.kind == "video"
                    and (mt.attempt.trial.position, mt.attempt.number) in self.faults.broken
                )
            if hit:
                self.faults.served.append(path)
                body = b"\x00\x00\x00\x18ftypmp42" + b"\xde\xad\xbe\xef" * 2048
                start_response(
                    "200 OK",
                    [
                        ("Content-Type", "video/mp4"),
                        ("Content-Length", str(len(body))),
                        ("Cache-Control", "private, no-store"),
                    ],
                )
                return [body]
        if path.endswith("/api/answer") and self.faults.drop_answers > 0:
            self.faults.drop_answers -= 1
            self.faults.dropped += 1
            b"".join(self.wsgi(environ, lambda status, headers, exc_info=None: None))  # stored, then lost
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Retry-After", "1")])
            return [b"connection lost"]
        return self.wsgi(environ, start_response)


@contextmanager
def _serving(app: Any, faults: Faults) -> Iterator[LiveServer]:
    """``app`` served by werkzeug in a thread on a free port, until the block ends."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", app, faults)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    app = make_test_app(tmp_path / "e2e.sqlite3", E2E_STUDIES, researcher=True)
    faults = Faults()
    app.wsgi_app = _FaultyMedia(app, faults)  # type: ignore[method-assign]
    with _serving(app, faults) as live:
        yield live


THRESHOLD_STUDIES = [
    (
        "thr",
        "indistinguishability",
        {
            "trials": 10,
            "practice_trials": 1,
            "sensitivity_share": 0.2,
            "control_share": 0.1,
            "variants": ["smart", "l2"],
            "procedure": "adaptive",
        },
    )
]


@pytest.fixture
def threshold_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The threshold batch (SMART and l2 at strengths 0.25, 0.5, 0.75, 1) and an adaptive study ``thr``: 2
    identical pairs, 1 control, 7 trials whose level QUEST+ chooses."""
    app = make_test_app(tmp_path / "thr.sqlite3", THRESHOLD_STUDIES, batch=threshold_batch(3))
    with _serving(app, Faults()) as live:
        yield live


@pytest.fixture
def admin_server(tmp_path: Path) -> Iterator[LiveServer]:
    """An empty study server (no batch yet) with a researcher account; the dashboard refreshes every 0.5 s."""
    app = make_test_app(
        tmp_path / "admin.sqlite3",
        with_batch=False,
        researcher=True,
        config={"BATCH_ROOTS": [str(server_batch().parent)], "ADMIN_REFRESH_MS": 500},
    )
    with _serving(app, Faults()) as live:
        yield live


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    with sync_playwright() as pw:
        # Playwright gives every launch a fresh temporary profile (user-data dir)
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh browser context (no cookies); JS errors and CSP violations are collected."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1000, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.js_errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.js_errors.append(str(e)))  # type: ignore[attr-defined]
    pg.on(
        "console",
        lambda m: (
            pg.js_errors.append(m.text)  # type: ignore[attr-defined]
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    try:
        yield pg
    finally:
        context.close()
