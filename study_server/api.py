"""The trial page's JSON API: the current trial, and answers stored exactly once.

``GET /s/<slug>/api/state`` - the current trial (opaque attempt reference, media URLs,
options; the next trial's media for preloading), or where to go instead.

``POST /s/<slug>/api/answer`` - JSON, with the CSRF token in the ``X-CSRFToken``
header::

    {"attempt": "<ref>", "key": "<idempotency key, 16-64 of [A-Za-z0-9_-]>",
     "answer": "<option value>" | null, "rt_ms": 812.5,
     "playback_failed": false, "reason": null, "events": [...], "client": {...}}

Status codes: 200 stored (a retry with the same key and answer returns the stored body
again, unchanged); 400 malformed; 403 no participant in this session; 404 the attempt
is unknown or another participant's (indistinguishable on purpose); 409 the attempt is
not the current trial, was already answered differently, or the participant is not at
the trials stage.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from .access import session_public_id
from .access import stage_url
from .access import study_and_participant
from .studies import AnswerRejected
from .studies import current_state
from .studies import record_answer

bp = Blueprint("api", __name__, url_prefix="/s/<slug>/api")
# CSRF: flask-wtf's CSRFProtect (the token in the X-CSRFToken header), as for every other POST

KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
REF = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_EVENTS = 2000
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def _num(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _events(raw: Any) -> list[dict[str, Any]] | None:
    """The playback events, reduced to known fields; None if malformed."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_EVENTS:
        return None
    out = []
    for e in raw:
        if not isinstance(e, dict) or not isinstance(e.get("type"), str) or not EVENT_TYPE.match(e["type"]):
            return None
        ev: dict[str, Any] = {"type": e["type"]}
        for k in ("t", "mt", "n", "code"):
            if k in e and e[k] is not None:
                if not _num(e[k]):
                    return None
                ev[k] = e[k]
        if isinstance(e.get("detail"), str):
            ev["detail"] = e["detail"][:120]
        out.append(ev)
    return out


def _client(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    return {k: raw[k] for k in ("width", "height", "dpr", "video_width", "video_height") if _num(raw.get(k))}


def _payload(data: Any) -> dict[str, Any] | None:
    """The validated answer payload, or None."""
    if not isinstance(data, dict):
        return None
    attempt, key, answer = data.get("attempt"), data.get("key"), data.get("answer")
    if not isinstance(attempt, str) or not REF.match(attempt) or not isinstance(key, str) or not KEY.match(key):
        return None
    if answer is not None and (not isinstance(answer, str) or len(answer) > 16):
        return None
    failed = data.get("playback_failed", False)
    if not isinstance(failed, bool):
        return None
    rt = data.get("rt_ms")
    if rt is not None and (not _num(rt) or not 0 <= rt < 1e8):
        return None
    reason = data.get("reason")
    if reason is not None and (not isinstance(reason, str) or not EVENT_TYPE.match(reason)):
        return None
    events = _events(data.get("events"))
    if events is None:
        return None
    return {
        "attempt": attempt,
        "key": key,
        "answer": answer,
        "rt_ms": rt,
        "playback_failed": failed,
        "reason": reason,
        "events": events,
        "client": _client(data.get("client")),
    }


def _json_body() -> Any:
    """The request's JSON body, or None (not JSON, not decodable); ``request.get_json(silent=True)`` without the
    detour through the MIME type parser and the JSON provider (this is the hot path)."""
    if request.mimetype != "application/json":
        return None
    try:  # the size is bounded by MAX_CONTENT_LENGTH, the nesting by the parser (RecursionError)
        return json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError):  # (UnicodeDecodeError and JSONDecodeError among them)
        return None


def _no_session() -> Any:
    return jsonify(error="no session for this study; open the study link again"), 403


@bp.get("/state")
def state(slug: str) -> Any:
    """The current trial, or where the participant belongs instead."""
    study, p = study_and_participant(slug)
    if p is None:
        return _no_session()
    if p.status not in ("trials", "completed"):
        return jsonify(status="redirect", url=stage_url(p))
    return jsonify(current_state(p))


@bp.post("/answer")
def answer(slug: str) -> Any:
    """Store one answer (see the module docstring for the protocol).

    The attempt is read together with its participant and study and checked against the
    session cookie; the participant is looked up on its own only when something is wrong,
    to tell a session without a participant (403) from a bad answer (400, 404).
    """
    public_id = session_public_id(slug)
    payload = _payload(_json_body())
    if public_id is None or payload is None:
        if study_and_participant(slug)[1] is None:
            return _no_session()
        return jsonify(error="malformed answer"), 400
    try:
        return Response(json.dumps(record_answer(slug, public_id, payload)), mimetype="application/json")
    except AnswerRejected as e:
        if e.status == 404 and study_and_participant(slug)[1] is None:
            return _no_session()
        return jsonify(error=e.message), e.status
