"""gunicorn settings for the study server (production and ``serve-demo``).

Use::

    SECRET_KEY=... DATABASE_URL=postgresql://user:pass@host/db \\
        gunicorn -c python:study_server.gunicorn_conf 'study_server:create_app()'

Every setting can be overridden on the command line or with ``GUNICORN_*``-style
environment variables read here: ``PORT`` / ``BIND`` (default ``127.0.0.1:5000``; put
a TLS-terminating reverse proxy in front and set ``TRUSTED_PROXIES=1``),
``WEB_WORKERS`` (default: on PostgreSQL one process per CPU core, at least 2; on SQLite
one) and ``WEB_THREADS`` (default 4 threads per process; on SQLite 8).

Why these: answers are small, short database transactions and media goes out with
``sendfile``, so a few processes with a few threads each keep every core busy without
holding many database connections (SQLite: one writer at a time anyway; PostgreSQL:
workers x threads connections at most). The app is loaded
in each worker after the fork (no ``preload_app``), so no database connection is ever
shared between processes.

``reuse_port`` (Linux; ``REUSE_PORT=0`` turns it off): every worker listens on a socket
of its own and the kernel spreads new connections over them. With one shared socket,
whichever worker wakes first accepts a whole burst of connections and keeps them
(keep-alive): in the load benchmark one of two workers held all 16 of the client's
connections and the other idled, so the server ran on one core. As a port shared this
way would also let a second server started on the same address quietly take half the
traffic, :func:`on_starting` refuses to start when the address is in use.

``timeout`` is long enough for a researcher's batch import, which checks every file's
hash (and decodes every video) inside the request.
"""

from __future__ import annotations

import os
import sys
from typing import Any

bind = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT', '5000')}"
_sqlite = (os.environ.get("DATABASE_URL") or "sqlite").startswith("sqlite")
workers = int(os.environ.get("WEB_WORKERS") or (1 if _sqlite else max(2, os.cpu_count() or 1)))
"""One process on SQLite (one writer at a time: its threads then queue for the one connection instead of
processes contending for SQLite's lock), one per core on PostgreSQL."""
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS") or (8 if _sqlite else 4))
timeout = 300
graceful_timeout = 30
keepalive = 5
reuse_port = sys.platform.startswith("linux") and os.environ.get("REUSE_PORT", "1") != "0"
preload_app = False
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
control_socket_disable = True
"""No gunicorn control socket (gunicorn 24+): nothing here uses it, and its default path is one per user, which
several servers on one machine (the demo, the tests, the load benchmark) would fight over."""


def on_starting(server: Any) -> None:
    """Stop with one clear line, before any worker starts, when the app's settings are wrong (e.g. no
    ``SECRET_KEY``) or, with ``reuse_port``, another server already listens on a bound address
    (``server``: gunicorn's arbiter; its ``cfg`` holds the settings in force, command line included)."""
    import errno
    import socket

    from study_server import ConfigError
    from study_server import check_config

    try:
        check_config()
    except ConfigError as e:
        raise SystemExit(f"Error: {e.message}") from None

    if not server.cfg.reuse_port:
        return
    for address in server.cfg.bind:
        if address.startswith(("unix:", "fd://")):
            continue
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR and not SO_REUSEPORT: closed connections still in TIME_WAIT (a server just killed and
            # restarted) do not count, a socket listening there does
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, int(port)))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise SystemExit(f"gunicorn: {address} is already in use by another server") from None
                raise
