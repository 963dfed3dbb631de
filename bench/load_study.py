"""Load and fault benchmark of the study server: N simulated participants against gunicorn on SQLite.

Run from the repository root::

    .venv/bin/python bench/load_study.py [--participants 1000] [--trials 6] [--concurrency 16] [--kill] [--json]

What it does:

1. builds the small server test batch (``tests/support/batches.py``) in a temporary data root,
   creates the database (migrations) and an indistinguishability study of ``--trials``
   trials per participant, and starts ``gunicorn -c python:study_server.gunicorn_conf
   'bench.floor_app:create()'`` (the app and the floor endpoint) on a free port (``--workers`` / ``--threads``);
2. enrols every participant as a browser would: entry link with a Prolific id, consent,
   age, instructions (5 requests each, cookies and CSRF tokens kept per participant);
3. round after round (one per trial):

   - every participant asks for their current trial (``GET .../api/state``, not timed)
     and has the answer's body ready (so the timed phase is only the request);
   - **bare**: as many ``GET /healthz`` requests as there are participants, through the
     same client at the same concurrency: what the server and this client manage when
     the app does nothing (no database, no session);
   - **floor**: every participant posts once to ``/bench/floor`` (:mod:`bench.floor_app`,
     served by the same app): a CSRF-protected endpoint storing one row through
     Flask-SQLAlchemy, the least an answer can cost;
   - **answers**: every participant posts their answer (``POST .../api/answer``):
     throughput, p50 and p99 of the answer path.

   The timed phases alternate, so a machine whose speed drifts during the run (a
   shared one does) slows both alike and the ratio holds;
4. checks the database against what the clients believe: every answer a client got a
   200 for must be stored with its idempotency key (else *lost*), and no trial may have
   two answers (*duplicated*); every participant must have completed.

``--kill``: during the middle round the whole gunicorn process group gets SIGKILL once
a third of that round's answers are in, is started again at once, and the clients retry
whatever failed with the same idempotency key (as the trial page does); the check of
step 4 covers the answers sent across the crash. Latencies of the kill round (they
include the outage) are reported apart.

Requests go through Python's ``http.client`` from ``--concurrency`` threads, each
with a keep-alive connection; the client shares the machine's cores with the server, so
both throughputs are lower than on a machine of their own (the load average before and
after is printed). The CPU time the server's processes and this client spent in the bare
and the answer phases is given per request (server: Linux only): it tells a path that
burns CPU from one that waits (the disk's fsync, the one SQLite writer at a time). Goals: answer
path >= 0.5 x the floor's throughput, p99 < 100 ms at 1,000 participants, 0 lost, 0 duplicated, also across
the kill.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from functools import partial
from pathlib import Path
from typing import Any
from typing import Callable
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SLUG = "bench"
SECRET = "load-benchmark-" + uuid.uuid4().hex
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class Transport(Exception):
    """The request did not get an HTTP response (connection refused, reset, timed out)."""


# ---- the server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn serving the app, in a process group of its own (so SIGKILL reaches every worker)."""

    def __init__(self, port: int, env: dict[str, str], workers: int, threads: int, log: Path):
        self.port, self.env, self.workers, self.threads, self.log = port, env, workers, threads, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> float:
        """Start gunicorn and wait until /healthz answers; the seconds that took."""
        t0 = time.perf_counter()
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:study_server.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{self.port}",
            *(["--workers", str(self.workers)] if self.workers else []),
            *(["--threads", str(self.threads)] if self.threads else []),
            "--log-level",
            "warning",
            "bench.floor_app:create()",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        self.starts += 1
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log}")
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return time.perf_counter() - t0
            except OSError:
                time.sleep(0.05)
            finally:
                c.close()
        raise RuntimeError(f"gunicorn did not answer within {timeout} s; see {self.log}")

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user and system) gunicorn's master and workers have used so far; None without Linux /proc."""
        if self.proc is None or not Path("/proc/self/stat").is_file():
            return None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == self.proc.pid or ppid == self.proc.pid:
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once, as a crash would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def prepare(tmp: Path, database_url: str | None, trials: int, batch: Path | None) -> tuple[str, dict[str, str]]:
    """Fixture batch, database, study; the database URL and the environment for gunicorn."""
    from flask_migrate import upgrade
    from support.batches import build_batch

    from study_server import MIGRATIONS
    from study_server import create_app
    from study_server.extensions import db
    from study_server.studies import create_study
    from study_server.studies import import_batch

    if batch is None:
        print("building the fixture batch ...", file=sys.stderr)
        batch = build_batch(tmp / "batch", 3, preset="server")
    url = database_url or f"sqlite:///{tmp / 'bench.sqlite3'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS))
        b = import_batch(batch, decode=False)
        create_study(
            SLUG,
            b,
            "indistinguishability",
            trials=trials,
            practice_trials=0,
            sensitivity_share=0.2,
            control_share=0.1,
            completion_code="BENCH",
        )
        db.session.remove()
        db.engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "GUNICORN"))}
    env.update(
        {
            "SECRET_KEY": SECRET,
            "DATABASE_URL": url,
            "STUDY_ENV": "production",
            "SMART_STUDY_DATA": str(tmp / "data"),
            "SESSION_COOKIE_SECURE": "0",  # plain HTTP on the loopback
            "PYTHONPATH": str(ROOT),  # bench.floor_app
        }
    )
    return url, env


# ---- the clients ---------------------------------------------------------------------------------
class Client:
    """HTTP/1.1 with one keep-alive connection per thread."""

    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()
        self.transport_errors = 0
        self.lock = threading.Lock()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.local.conn = conn
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                self.local.conn = None
            return resp.status, resp.headers, data
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.local.conn = None
            with self.lock:
                self.transport_errors += 1
            raise Transport(str(e)) from None

    def retrying(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        deadline_s: float = 120.0,
    ) -> tuple[int, http.client.HTTPMessage, bytes, int]:
        """Send until an HTTP response (or a 5xx) is no longer a transport failure; (status, headers, body, tries)."""
        t_end = time.monotonic() + deadline_s
        delay, tries = 0.02, 0
        while True:
            tries += 1
            try:
                status, h, data = self.request(method, path, body, headers)
                if status < 500:
                    return status, h, data, tries
            except Transport:
                pass
            if time.monotonic() > t_end:
                raise RuntimeError(f"{method} {path}: no answer within {deadline_s} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


@dataclass
class Participant:
    pid: str
    cookie: str = ""
    csrf: str = ""
    acked: list[tuple[str, str, str]] = field(default_factory=list)
    """(attempt reference, idempotency key, answer) for every answer a 200 came back for."""
    attempt: str | None = None
    options: list[str] = field(default_factory=list)
    done: bool = False
    ready: tuple[str, str, bytes, dict[str, str]] | None = None
    """The next answer, built before the timed phase: (key, choice, body, headers)."""

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Cookie": f"session={self.cookie}", **extra} if self.cookie else dict(extra)

    def keep_cookie(self, h: http.client.HTTPMessage) -> None:
        for value in h.get_all("Set-Cookie") or []:
            m = re.match(r"session=([^;]*)", value)
            if m:
                self.cookie = m.group(1)


def enrol(client: Client, p: Participant) -> None:
    base = f"/s/{SLUG}"
    status, h, _, _ = client.retrying("GET", f"{base}?{urlencode({'PROLIFIC_PID': p.pid})}")
    assert status == 302, status
    p.keep_cookie(h)
    status, h, body, _ = client.retrying("GET", f"{base}/consent", headers=p.headers())
    p.keep_cookie(h)
    m = CSRF.search(body.decode())
    assert status == 200 and m, status
    p.csrf = m.group(1)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for page, data in (("consent", {"agree": "1"}), ("about", {"age": "30"}), ("instructions", {"submit": "Start"})):
        status, h, _, _ = client.retrying(
            "POST", f"{base}/{page}", urlencode({"csrf_token": p.csrf, **data}).encode(), p.headers(**form)
        )
        assert status == 302, (page, status)
        p.keep_cookie(h)


def fetch_state(client: Client, p: Participant) -> None:
    status, h, body, _ = client.retrying("GET", f"/s/{SLUG}/api/state", headers=p.headers(Accept="application/json"))
    assert status == 200, (status, body[:200])
    p.keep_cookie(h)
    s = json.loads(body)
    if s["status"] != "trial":
        p.done, p.attempt = True, None
        return
    p.attempt, p.options = s["attempt"], [o["value"] for o in s["options"]]


EVENTS = [
    {"type": "play", "t": 12.0, "mt": 0.0},
    {"type": "play-end", "t": 1010.0, "mt": 1.0, "n": 1},
    {"type": "ended", "t": 1011.0, "mt": 1.0},
    {"type": "answerable", "t": 1012.0},
    {"type": "answer", "t": 1800.0},
]


def prepare_answer(p: Participant, i: int) -> None:
    """Build the current trial's answer (body and headers) ahead of sending it."""
    assert p.attempt is not None
    choice = p.options[i % len(p.options)]
    key = uuid.uuid4().hex
    body = json.dumps(
        {
            "attempt": p.attempt,
            "key": key,
            "answer": choice,
            "rt_ms": 790.0 + i % 400,
            "playback_failed": False,
            "events": EVENTS,
            "client": {"width": 1280, "height": 800, "dpr": 1},
        }
    ).encode()
    headers = p.headers(**{"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": p.csrf})
    p.ready = (key, choice, body, headers)


def answer(client: Client, p: Participant, i: int) -> tuple[float, int]:
    """Post the current trial's answer (:func:`prepare_answer`) until it is stored; (seconds from the first send,
    tries)."""
    assert p.attempt is not None and p.ready is not None
    key, choice, body, headers = p.ready
    t0 = time.perf_counter()
    status, h, data, tries = client.retrying("POST", f"/s/{SLUG}/api/answer", body, headers)
    dt = time.perf_counter() - t0
    assert status == 200, (status, data[:200])
    p.keep_cookie(h)
    p.acked.append((p.attempt, key, choice))
    return dt, tries


def floor(client: Client, p: Participant) -> float:
    """One row stored by the floor endpoint (:mod:`bench.floor_app`) with this participant's session and token."""
    body = json.dumps({"key": uuid.uuid4().hex}).encode()
    headers = p.headers(**{"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": p.csrf})
    t0 = time.perf_counter()
    status, _, data, _ = client.retrying("POST", "/bench/floor", body, headers)
    assert status == 200, (status, data[:200])
    return time.perf_counter() - t0


def healthz(client: Client) -> float:
    t0 = time.perf_counter()
    status, _, _, _ = client.retrying("GET", "/healthz")
    assert status == 200
    return time.perf_counter() - t0


def pmap(pool: ThreadPoolExecutor, fn: Callable[..., Any], *iterables: Any) -> tuple[list[Any], float]:
    t0 = time.perf_counter()
    out = list(pool.map(fn, *iterables))
    return out, time.perf_counter() - t0


class CPU:
    """CPU seconds spent by the server (all its processes) and by this client during the measured phases."""

    def __init__(self, server: Server):
        self.server = server
        self.server_s: float | None = 0.0
        self.client_s = 0.0

    def measure(self, work: Callable[[], Any]) -> Any:
        s0, c0 = self.server.cpu_seconds(), time.process_time()
        out = work()
        s1, c1 = self.server.cpu_seconds(), time.process_time()
        self.client_s += c1 - c0
        self.server_s = None if s0 is None or s1 is None or self.server_s is None else self.server_s + s1 - s0
        return out

    def per_request_ms(self, n: int) -> dict[str, float | None]:
        return {
            "server_cpu_ms": None if self.server_s is None else round(1000 * self.server_s / n, 3),
            "client_cpu_ms": round(1000 * self.client_s / n, 3),
        }


def stats(latencies: list[float], wall: float, cpu: CPU | None = None) -> dict[str, Any]:
    qs = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    out = {
        "requests": len(latencies),
        "seconds": round(wall, 3),
        "throughput_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(qs[49] * 1000, 2),
        "p99_ms": round(qs[98] * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
    }
    if cpu is not None:
        out.update(cpu.per_request_ms(len(latencies)))
    return out


# ---- checking the database -----------------------------------------------------------------------
def check(url: str, participants: list[Participant], trials: int) -> dict[str, int]:
    from sqlalchemy import create_engine
    from sqlalchemy import text

    from study_server import database_url

    engine = create_engine(database_url(url))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.recruit_id, a.ref, r.idempotency_key, r.answer, r.trial_pk, r.valid FROM response r "
                "JOIN attempt a ON a.id = r.attempt_pk JOIN participant p ON p.id = r.participant_pk"
            )
        ).all()
        completed = conn.execute(text("SELECT count(*) FROM participant WHERE status = 'completed'")).scalar_one()
    engine.dispose()
    stored = {(pid, ref): (key, ans) for pid, ref, key, ans, _, _ in rows}
    per_trial: dict[int, int] = {}
    for *_, trial_pk, valid in rows:
        if valid:
            per_trial[trial_pk] = per_trial.get(trial_pk, 0) + 1
    acked = {(p.pid, ref): (key, ans) for p in participants for ref, key, ans in p.acked}
    lost = sum(1 for k, v in acked.items() if stored.get(k) != v)
    duplicated = sum(n - 1 for n in per_trial.values() if n > 1) + (len(rows) - len(stored))
    return {
        "answers_acked": len(acked),
        "answers_stored": len(rows),
        "lost": lost,
        "duplicated": duplicated,
        "stored_not_acked": len(set(stored) - set(acked)),
        "participants_completed": completed,
        "expected_answers": len(participants) * trials,
    }


# ---- the run -------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="load-study-"))
    server: Server | None = None
    try:
        url, env = prepare(tmp, args.database_url, args.trials, args.batch)
        if args.sqlite_synchronous:
            env["FLASK_SQLITE_SYNCHRONOUS"] = args.sqlite_synchronous
        server = Server(free_port(), env, args.workers, args.threads, tmp / "gunicorn.log")
        server.start()
        client = Client(server.port)
        people = [Participant(f"bench{i:05d}") for i in range(args.participants)]
        load_before = os.getloadavg()
        with ThreadPoolExecutor(args.concurrency) as pool:
            print(f"enrolling {len(people)} participants ...", file=sys.stderr)
            _, t_enrol = pmap(pool, lambda p: enrol(client, p), people)
            bare_cpu, floor_cpu, answer_cpu = CPU(server), CPU(server), CPU(server)
            bare_lat: list[float] = []
            floor_lat: list[float] = []
            t_bare = t_floor = 0.0
            answer_lat: list[float] = []
            kill_lat: list[float] = []
            t_answers = t_kill_round = 0.0
            retries = 0
            kill: dict[str, Any] | None = None
            kill_round = args.trials // 2 if args.kill else -1
            for r in range(args.trials):
                print(f"round {r + 1} of {args.trials}: state, bare, floor, answers ...", file=sys.stderr)
                pmap(pool, lambda p: fetch_state(client, p), people)
                for i, p in enumerate(people):
                    prepare_answer(p, i)
                lat, wall = bare_cpu.measure(lambda: pmap(pool, lambda _: healthz(client), range(len(people))))
                bare_lat += lat
                t_bare += wall
                lat, wall = floor_cpu.measure(lambda: pmap(pool, partial(floor, client), people))
                floor_lat += lat
                t_floor += wall
                if r == kill_round:
                    kill = {"round": r + 1}
                    started = threading.Event()
                    counter = {"n": 0}
                    lock = threading.Lock()

                    def killer(kill: dict[str, Any] = kill, counter: dict[str, int] = counter, started=started) -> None:
                        started.wait()
                        while counter["n"] < len(people) // 3:
                            time.sleep(0.001)
                        t0 = time.perf_counter()
                        assert server is not None
                        server.kill()
                        kill["answers_in_before_kill"] = counter["n"]
                        kill["restart_s"] = round(server.start(), 3)
                        kill["downtime_s"] = round(time.perf_counter() - t0, 3)

                    def counted(
                        p: Participant,
                        i: int,
                        counter: dict[str, int] = counter,
                        lock: threading.Lock = lock,
                        started=started,
                    ) -> tuple[float, int]:
                        started.set()
                        out = answer(client, p, i)
                        with lock:
                            counter["n"] += 1
                        return out

                    th = threading.Thread(target=killer)
                    th.start()
                    res, wall = pmap(pool, counted, people, range(len(people)))
                    th.join()
                    kill_lat += [dt for dt, _ in res]
                    t_kill_round += wall
                else:
                    res, wall = answer_cpu.measure(
                        lambda people=people: pmap(pool, partial(answer, client), people, range(len(people)))
                    )
                    answer_lat += [dt for dt, _ in res]
                    t_answers += wall
                retries += sum(t - 1 for _, t in res)
            pmap(pool, lambda p: fetch_state(client, p), people)  # everyone is done now
        load_after = os.getloadavg()
        server.stop()
        integrity = check(url, people, args.trials)
        bare = stats(bare_lat, t_bare, bare_cpu)
        floor_ = stats(floor_lat, t_floor, floor_cpu)
        answers = stats(answer_lat, t_answers, answer_cpu)
        result: dict[str, Any] = {
            "participants": len(people),
            "trials": args.trials,
            "concurrency": args.concurrency,
            "gunicorn": {
                "workers": args.workers or "gunicorn_conf default",
                "threads": args.threads or "gunicorn_conf default",
                "starts": server.starts,
            },
            "database": "sqlite" if url.startswith("sqlite") else url.split(":", 1)[0],
            "sqlite_synchronous": args.sqlite_synchronous or "FULL (default)",
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
            "enrol": {"participants": len(people), "seconds": round(t_enrol, 2)},
            "bare": bare,
            "floor": floor_,
            "answer": answers,
            "answer_vs_bare": round(answers["throughput_per_s"] / bare["throughput_per_s"], 3),
            "answer_vs_floor": round(answers["throughput_per_s"] / floor_["throughput_per_s"], 3),
            "retries": retries,
            "transport_errors": client.transport_errors,
            "integrity": integrity,
        }
        if kill is not None:
            kill["round_latency"] = stats(kill_lat, t_kill_round)
            result["kill"] = kill
        result["goals"] = {
            "answer_vs_floor_ge_0.5": result["answer_vs_floor"] >= 0.5,
            "p99_lt_100ms": answers["p99_ms"] < 100,
            "lost_0": integrity["lost"] == 0,
            "duplicated_0": integrity["duplicated"] == 0,
            "all_completed": integrity["participants_completed"] == len(people)
            and integrity["answers_stored"] == integrity["expected_answers"],
        }
        return result
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict[str, Any]) -> str:
    b, f, a = r["bare"], r["floor"], r["answer"]

    def cpu(x: dict[str, Any]) -> str:
        server = "?" if x.get("server_cpu_ms") is None else f"{x['server_cpu_ms']:.2f}"
        return f"   CPU/request: server {server} ms, client {x['client_cpu_ms']:.2f} ms"

    lines = [
        f"{r['participants']} participants x {r['trials']} trials, {r['concurrency']} client threads; gunicorn "
        f"{r['gunicorn']['workers']} workers x {r['gunicorn']['threads']} threads on {r['database']} "
        f"(synchronous {r['sqlite_synchronous']}); "
        f"{r['cpus']} CPUs, load {r['load_before'][0]} before, {r['load_after'][0]} after",
        f"enrol:   {r['enrol']['participants']} participants in {r['enrol']['seconds']} s (5 requests each)",
        f"bare:    {b['requests']} GET /healthz    {b['throughput_per_s']:8.1f}/s  p50 {b['p50_ms']:6.2f} ms  "
        f"p99 {b['p99_ms']:6.2f} ms" + cpu(b),
        f"floor:   {f['requests']} POST /bench/floor {f['throughput_per_s']:8.1f}/s  p50 {f['p50_ms']:6.2f} ms  "
        f"p99 {f['p99_ms']:6.2f} ms" + cpu(f),
        f"answer:  {a['requests']} POST answer      {a['throughput_per_s']:8.1f}/s  p50 {a['p50_ms']:6.2f} ms  "
        f"p99 {a['p99_ms']:6.2f} ms   ({r['answer_vs_floor']:.2f} x floor, {r['answer_vs_bare']:.2f} x bare)" + cpu(a),
    ]
    if "kill" in r:
        k = r["kill"]
        kl = k["round_latency"]
        lines.append(
            f"kill:    SIGKILL in round {k['round']} after {k['answers_in_before_kill']} answers; back in "
            f"{k['downtime_s']} s; that round p50 {kl['p50_ms']} ms, p99 {kl['p99_ms']} ms, max "
            f"{kl['max_ms']} ms"
        )
    i = r["integrity"]
    lines.append(
        f"integrity: {i['answers_acked']} acknowledged, {i['answers_stored']} stored of "
        f"{i['expected_answers']} expected; lost {i['lost']}, duplicated {i['duplicated']}; "
        f"{i['participants_completed']} completed; {r['retries']} retried requests, "
        f"{r['transport_errors']} transport errors"
    )
    lines.append("goals: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["goals"].items()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=6, help="Answers per participant.")
    ap.add_argument("--concurrency", type=int, default=16, help="Client threads (requests in flight at most).")
    ap.add_argument("--workers", type=int, help="gunicorn worker processes (default: gunicorn_conf's).")
    ap.add_argument("--threads", type=int, help="Threads per gunicorn worker (default: gunicorn_conf's).")
    ap.add_argument("--kill", action="store_true", help="SIGKILL the server mid-run, restart it, let clients retry.")
    ap.add_argument(
        "--sqlite-synchronous",
        choices=["FULL", "NORMAL"],
        default=None,
        help="The server's SQLITE_SYNCHRONOUS (default: the server's default, FULL).",
    )
    ap.add_argument("--database-url", help="Another database (e.g. PostgreSQL) instead of a fresh SQLite file.")
    ap.add_argument("--batch", type=Path, help="Use this stimulus batch instead of building the fixture batch.")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary folder (database, gunicorn log).")
    ap.add_argument("--json", action="store_true", help="Print the result as JSON.")
    args = ap.parse_args()
    if args.participants < 1 or args.trials < 1 or args.concurrency < 1:
        ap.error("--participants, --trials and --concurrency must be >= 1")
    result = run(args)
    print(json.dumps(result, indent=1) if args.json else report(result))
    sys.exit(0 if all(v for k, v in result["goals"].items() if k in ("lost_0", "duplicated_0", "all_completed")) else 1)


if __name__ == "__main__":
    main()
