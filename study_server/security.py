"""Signed-cookie sessions and the answer API's CSRF check, with their serializers made once.

Flask makes a new ``URLSafeTimedSerializer`` (and derives its key) for every request that
carries a session cookie, and flask-wtf does the same for every CSRF check. Neither
depends on anything but the app's settings, so here they are made once per settings and
kept. Nothing else changes: the same cookie format, salts, key derivation and token
format, the same ``SECRET_KEY_FALLBACKS`` rotation, the same errors.

* :class:`CachedSessionInterface` - Flask's :class:`~flask.sessions.SecureCookieSessionInterface`
  with a kept serializer (``create_app`` installs it).
* :func:`check_api_csrf` - flask-wtf's check of a POST's token (the ``X-CSRFToken``
  header of the JSON API against the session's raw token) for the answer API, which is
  exempt from :class:`flask_wtf.csrf.CSRFProtect`'s own check so that the token is not
  looked for in a form the JSON body does not have.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Flask
from flask import current_app
from flask import request
from flask import session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from itsdangerous import BadData
from itsdangerous import SignatureExpired
from itsdangerous import URLSafeTimedSerializer

__all__ = ["CachedSessionInterface", "check_api_csrf"]

CSRF_SALT = "wtf-csrf-token"
"""flask-wtf's salt for its tokens (``flask_wtf.csrf.generate_csrf``)."""


class CachedSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions; the signing serializer is made once per secret key (and fallbacks)."""

    def __init__(self) -> None:
        self._serializers: dict[tuple[Any, ...], URLSafeTimedSerializer] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        found = self._serializers.get(key)
        if found is None:
            found = super().get_signing_serializer(app)
            assert found is not None
            self._serializers = {key: found}  # one entry: the keys of a running app change only in tests
        return found


def _csrf_serializer(app: Flask) -> URLSafeTimedSerializer:
    secret = app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key
    cache = app.extensions.setdefault("smart_study_csrf", {})
    found = cache.get(secret)
    if found is None:
        found = URLSafeTimedSerializer(secret, salt=CSRF_SALT)
        cache.clear()
        cache[secret] = found
    return found


def check_api_csrf() -> None:
    """Raise :class:`~flask_wtf.csrf.CSRFError` unless the request's CSRF header carries a valid token for this
    session (as ``CSRFProtect`` checks it: ``WTF_CSRF_ENABLED``, ``WTF_CSRF_METHODS``, ``WTF_CSRF_HEADERS``,
    ``WTF_CSRF_FIELD_NAME``, ``WTF_CSRF_TIME_LIMIT``)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    if not config["WTF_CSRF_ENABLED"] or request.method not in config["WTF_CSRF_METHODS"]:
        return
    token = None
    for header in config["WTF_CSRF_HEADERS"]:
        token = request.headers.get(header)
        if token:
            break
    if not token:
        raise CSRFError("The CSRF token is missing.")
    field = config["WTF_CSRF_FIELD_NAME"]
    if field not in session:
        raise CSRFError("The CSRF session token is missing.")
    try:
        raw = _csrf_serializer(app).loads(token, max_age=config["WTF_CSRF_TIME_LIMIT"])
    except SignatureExpired:
        raise CSRFError("The CSRF token has expired.") from None
    except BadData:
        raise CSRFError("The CSRF token is invalid.") from None
    if not isinstance(raw, str) or not hmac.compare_digest(session[field], raw):
        raise CSRFError("The CSRF tokens do not match.")
