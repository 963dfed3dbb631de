"""Researcher accounts and sign-in with a rate limit.

Accounts are created from the command line (``flask --app study_server
create-researcher EMAIL``); passwords are stored salted and hashed with
:func:`werkzeug.security.generate_password_hash` (scrypt).

The rate limit lives in the database (table ``login_attempt``), so every server
process and thread sees the same counts and a restart does not reset them. Within
``LOGIN_WINDOW_S`` (default 15 minutes):

* an account with ``LOGIN_MAX_FAILURES_PER_ACCOUNT`` (5) failed sign-ins since its last
  successful one is locked;
* an address (the client IP as the WSGI server sees it; behind a reverse proxy set
  ``TRUSTED_PROXIES``) with ``LOGIN_MAX_FAILURES_PER_IP`` (20) failures is locked.

A locked sign-in is answered 429 with the minutes left, without looking at the password
(and is not counted, so the lock ends on time). Unknown emails cost the same hash check
as known ones, and both failures read the same, so the form does not tell which emails
have accounts. Attempts older than a day are deleted.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from stimuli.errors import SmartStudyError

from .extensions import db
from .models import LoginAttempt
from .models import Researcher
from .models import utcnow

__all__ = [
    "AccountError",
    "LoginRefused",
    "MIN_PASSWORD",
    "normalise_email",
    "create_researcher",
    "set_password",
    "authenticate",
    "session_fingerprint",
    "new_password",
]

MIN_PASSWORD = 10
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class AccountError(SmartStudyError, ValueError):
    """An account cannot be created or changed as asked (the message says why)."""


class LoginRefused(Exception):
    """A sign-in failed: ``status`` 401 (wrong email or password) or 429 (rate limited), and a message."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


def normalise_email(email: str) -> str:
    """The email as stored (trimmed, lower-case); :class:`AccountError` if it is not an address."""
    e = (email or "").strip().lower()
    if len(e) > 254 or not EMAIL.match(e):
        raise AccountError(f"not an email address: {email!r}")
    return e


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("the password is too long (at most 1024 characters)")


def new_password() -> str:
    """A random password (16 URL-safe characters)."""
    return secrets.token_urlsafe(12)


def create_researcher(email: str, password: str, *, reset: bool = False) -> tuple[Researcher, bool]:
    """Create the account (commits); with ``reset`` an existing account gets the new password instead.

    Returns ``(researcher, created)``. An existing email without ``reset`` raises :class:`AccountError`.
    """
    email = normalise_email(email)
    _check_password(password)
    r = db.session.execute(select(Researcher).where(Researcher.email == email)).scalar_one_or_none()
    if r is not None:
        if not reset:
            raise AccountError(f"an account for {email} exists already (use --reset to set a new password)")
        r.password_hash = generate_password_hash(password)
        db.session.commit()
        return r, False
    r = Researcher(email=email, password_hash=generate_password_hash(password), created_at=utcnow())
    db.session.add(r)
    db.session.commit()
    return r, True


def set_password(r: Researcher, password: str) -> None:
    _check_password(password)
    r.password_hash = generate_password_hash(password)
    db.session.commit()


def session_fingerprint(r: Researcher) -> str:
    """Kept in the session next to the account id: a new password signs every old session out."""
    return hashlib.sha256(f"session/{r.id}/{r.password_hash}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class _Limits:
    window: timedelta
    per_account: int
    per_ip: int


def _limits() -> _Limits:
    c = current_app.config
    return _Limits(
        timedelta(seconds=float(c["LOGIN_WINDOW_S"])),
        int(c["LOGIN_MAX_FAILURES_PER_ACCOUNT"]),
        int(c["LOGIN_MAX_FAILURES_PER_IP"]),
    )


def _blocked(ip: str, email: str, lim: _Limits) -> LoginRefused | None:
    now = utcnow()
    since = now - lim.window
    last_ok = db.session.execute(
        select(func.max(LoginAttempt.at)).where(LoginAttempt.email == email, LoginAttempt.ok.is_(True))
    ).scalar()
    acct_since = max(since, last_ok) if last_ok is not None else since
    acct = db.session.execute(
        select(func.count(), func.min(LoginAttempt.at)).where(
            LoginAttempt.email == email, LoginAttempt.ok.is_(False), LoginAttempt.at > acct_since
        )
    ).one()
    by_ip = db.session.execute(
        select(func.count(), func.min(LoginAttempt.at)).where(
            LoginAttempt.ip == ip, LoginAttempt.ok.is_(False), LoginAttempt.at > since
        )
    ).one()
    for (n, oldest), limit, what in (
        (acct, lim.per_account, "for this account"),
        (by_ip, lim.per_ip, "from your address"),
    ):
        if n >= limit:
            wait = max(1, math.ceil((oldest + lim.window - now).total_seconds()))
            minutes = max(1, math.ceil(wait / 60))
            return LoginRefused(
                429,
                f"Too many failed sign-ins {what}: {n} in the last "
                f"{round(lim.window.total_seconds() / 60)} minutes. Try again in "
                f"{minutes} minute{'s' if minutes != 1 else ''}.",
                wait,
            )
    return None


def authenticate(email: str, password: str, ip: str) -> Researcher:
    """The researcher with this email and password, or :class:`LoginRefused` (401, or 429 when rate limited).

    Every checked attempt is recorded (committed) for the rate limit.
    """
    lim = _limits()
    ip = (ip or "unknown")[:64]
    key = (email or "").strip().lower()[:254]
    refused = _blocked(ip, key, lim)
    if refused is not None:
        raise refused
    r = db.session.execute(select(Researcher).where(Researcher.email == key)).scalar_one_or_none()
    ok = check_password_hash(r.password_hash if r is not None else _DUMMY_HASH, password or "") and r is not None
    db.session.execute(delete(LoginAttempt).where(LoginAttempt.at < utcnow() - timedelta(days=1)))
    db.session.add(LoginAttempt(ip=ip, email=key, at=utcnow(), ok=ok))
    if ok:
        assert r is not None
        r.last_login_at = utcnow()
    db.session.commit()
    if not ok:
        raise LoginRefused(401, "Email or password is wrong.")
    assert r is not None
    return r


def describe(r: Researcher) -> dict[str, Any]:
    return {"email": r.email, "created_at": r.created_at.isoformat(timespec="seconds") + "Z"}
