"""The study server under gunicorn, as deployed (``gunicorn -c python:study_server.gunicorn_conf
'study_server:create_app()'``): configured from the environment, a participant's session over real HTTP,
media with range requests and private cache headers, and ``serve-demo`` handing over to gunicorn."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from support.batches import server_batch
from support.server import make_test_app

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browserish:
    """Just enough of a browser: one connection, the session cookie kept; a context manager that closes it."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        self.cookie = ""

    def __enter__(self) -> "Browserish":
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def go(self, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, dict, bytes]:
        if self.cookie:
            headers["Cookie"] = f"session={self.cookie}"
        self.conn.request(method, path, body=body, headers=headers)
        with self.conn.getresponse() as r:
            data = r.read()
        for value in r.headers.get_all("Set-Cookie") or []:
            m = re.match(r"session=([^;]*)", value)
            if m:
                self.cookie = m.group(1)
        return r.status, dict(r.headers), data


def gunicorn(db_file: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.update(
        {
            "SECRET_KEY": "gunicorn-test-" + "x" * 20,
            "DATABASE_URL": f"sqlite:///{db_file}",
            "STUDY_ENV": "production",
            "WEB_WORKERS": "1",
            "WEB_THREADS": "2",
        }
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:study_server.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "study_server:create_app()",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_gunicorn_serves_a_participant_and_media_with_ranges(tmp_path):
    db_file = tmp_path / "g.sqlite3"
    make_test_app(db_file, [("g", "deceitfulness", {"trials": 2, "practice_trials": 0})])
    port = free_port()
    proc = gunicorn(db_file, port)
    try:
        for _ in range(300):
            try:
                with Browserish(port) as probe:
                    if probe.go("GET", "/healthz")[0] == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start: " + proc.stdout.read(4000).decode() if proc.stdout else "")
        with Browserish(port) as b, Browserish(port) as other:
            _participant_session(b, other)
        # each worker listens on a socket of its own (SO_REUSEPORT); a second server on the same address must not
        # quietly share the port, but stop and say why
        second = gunicorn(db_file, port)
        out, _ = second.communicate(timeout=60)
        assert second.returncode != 0 and f"127.0.0.1:{port} is already in use" in out.decode()
        with Browserish(port) as b:
            assert b.go("GET", "/healthz")[0] == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        if proc.stdout:
            proc.stdout.close()


def _participant_session(b: Browserish, other: Browserish) -> None:
    """Enrol through consent, fetch the first video whole and in part, answer it."""
    status, h, _ = b.go("GET", "/s/g?" + urlencode({"PROLIFIC_PID": "gunicorn-1"}))
    assert status == 302 and h["Location"].endswith("/s/g/consent")
    html = b.go("GET", "/s/g/consent")[2].decode()
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for page, data in (("consent", {"agree": "1"}), ("about", {"age": "40"}), ("instructions", {"submit": "S"})):
        assert b.go("POST", f"/s/g/{page}", urlencode({"csrf_token": token, **data}).encode(), **form)[0] == 302
    state = json.loads(b.go("GET", "/s/g/api/state")[2])
    status, h, full = b.go("GET", state["video"])
    assert status == 200 and h["Content-Type"] == "video/mp4" and h["Accept-Ranges"] == "bytes"
    assert "private" in h["Cache-Control"] and "max-age=3600" in h["Cache-Control"]
    status, h, part = b.go("GET", state["video"], Range="bytes=10-109")
    assert status == 206 and part == full[10:110] and h["Content-Range"] == f"bytes 10-109/{len(full)}"
    # another browser: the token is not theirs
    assert other.go("GET", state["video"])[0] == 404
    body = json.dumps(
        {
            "attempt": state["attempt"],
            "key": "g" * 20,
            "answer": "1",
            "rt_ms": 600.0,
            "events": [{"type": "answerable", "t": 600.0}],
        }
    ).encode()
    status, _, data = b.go(
        "POST", "/s/g/api/answer", body, **{"Content-Type": "application/json", "X-CSRFToken": token}
    )
    assert status == 200 and json.loads(data)["stored"] is True


def test_serve_demo_prepares_the_demo_then_hands_over_to_gunicorn(tmp_path, monkeypatch):
    from study_server import create_app

    monkeypatch.setenv("STUDY_ENV", "development")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    calls = []

    def fake_execv(path: str, args: list[str]) -> None:
        calls.append(args)
        raise SystemExit(0)

    monkeypatch.setattr("study_server.cli.os.execv", fake_execv)
    app = create_app()
    r = app.test_cli_runner().invoke(
        args=["serve-demo", "--batch", str(server_batch()), "--no-decode", "--port", "5055"]
    )
    assert r.exit_code == 0, r.output
    assert "Participant URL: http://127.0.0.1:5055/s/demo" in r.output
    assert "Admin URL: http://127.0.0.1:5055/admin/" in r.output
    assert "Admin sign-in: demo@example.org / demo-password" in r.output
    assert calls and calls[0][1:] == [
        "-m",
        "gunicorn",
        "-c",
        "python:study_server.gunicorn_conf",
        "--bind",
        "127.0.0.1:5055",
        "study_server:create_app()",
    ]


def test_the_address_check_refuses_a_listener_but_not_connections_in_time_wait(monkeypatch):
    """``on_starting``: a socket listening on the address (even one sharing it with SO_REUSEPORT) stops the start;
    connections of a server just killed, left in TIME_WAIT, do not (the load benchmark restarts right after a
    SIGKILL)."""
    from types import SimpleNamespace

    from study_server import gunicorn_conf

    monkeypatch.setenv("STUDY_ENV", "development")  # settings that run: only the address is checked here
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    arbiter = SimpleNamespace(cfg=SimpleNamespace(reuse_port=True, bind=[f"127.0.0.1:{port}"]))
    with pytest.raises(SystemExit, match="already in use"):
        gunicorn_conf.on_starting(arbiter)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end of the connection stays in TIME_WAIT
    client.close()
    listener.close()
    # /proc/net/tcp: local address hex "0100007F:PORT", state 06 = TIME_WAIT
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    assert any(r[1] == f"0100007F:{port:04X}" and r[3] == "06" for r in rows)
    gunicorn_conf.on_starting(arbiter)  # no exception: the address is free to listen on
    arbiter.cfg.reuse_port = False
    with socket.socket() as again:  # and without reuse_port nothing is checked
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
        gunicorn_conf.on_starting(arbiter)
