"""gunicorn settings for the study server (production and ``serve-demo``).

Use::

    SECRET_KEY=... DATABASE_URL=postgresql://user:pass@host/db \\
        gunicorn -c python:study_server.gunicorn_conf 'study_server:create_app()'

Every setting can be overridden on the command line or with ``GUNICORN_*``-style
environment variables read here: ``PORT`` / ``BIND`` (default ``127.0.0.1:5000``; put
a TLS-terminating reverse proxy in front and set ``TRUSTED_PROXIES=1``),
``WEB_WORKERS`` (default: one process per CPU core, at least 2) and ``WEB_THREADS``
(default 4 threads per process).

Why these: answers are small, short database transactions and media goes out with
``sendfile``, so a few processes with a few threads each keep every core busy without
holding many database connections (SQLite: one writer at a time anyway; PostgreSQL:
workers x threads connections at most). The app is loaded in each worker after the
fork (no ``preload_app``), so no database connection is ever shared between
processes. ``timeout`` is long enough for a researcher's batch import, which checks
every file's hash (and decodes every video) inside the request.
"""

from __future__ import annotations

import os

bind = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_WORKERS") or max(2, os.cpu_count() or 1))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS") or 4)
timeout = 300
graceful_timeout = 30
keepalive = 5
preload_app = False
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
control_socket_disable = True
"""No gunicorn control socket (gunicorn 24+): nothing here uses it, and its default path is one per user, which
several servers on one machine (the demo, the tests, the load benchmark) would fight over."""
