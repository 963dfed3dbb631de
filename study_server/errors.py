"""Error pages participants may see: short, polite, no traceback; JSON for the API.

The 500 handler rolls the database session back, so a failed request leaves nothing
half-written behind for the next one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import render_template
from flask import request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import InternalServerError

from .extensions import db

bp = Blueprint("errors", __name__)

MESSAGES = {
    400: ("Something went wrong", "The request could not be understood. Please go back and try again."),
    403: ("Not allowed", "This page is not available to you."),
    404: ("Page not found", "There is nothing at this address. Please check the link you were given."),
    405: ("Not allowed", "This page cannot be used that way."),
    409: ("Already done", "This step has already been completed."),
    410: ("No longer available", "This page is no longer available."),
    413: ("Too large", "What was sent is too large."),
    429: ("Please slow down", "Too many requests. Please wait a moment and try again."),
    500: ("Something went wrong on our side", "Your answers so far are saved. Please reload the page in a moment."),
}


def _wants_json() -> bool:
    return "/api/" in request.path


def _render(code: int, title: str | None = None, text: str | None = None) -> Any:
    default_title, default_text = MESSAGES.get(code, MESSAGES[400 if code < 500 else 500])
    if _wants_json():
        return jsonify(error=(text or default_text)), code
    return render_template("participant/message.html", title=title or default_title, text=text or default_text), code


@bp.app_errorhandler(CSRFError)
def csrf_error(e: CSRFError) -> Any:
    return _render(
        400, "Page expired", "This form has expired or was sent from elsewhere. Please reload the page and try again."
    )


@bp.app_errorhandler(InternalServerError)
def internal_error(e: InternalServerError) -> Any:
    db.session.rollback()
    return _render(500)


@bp.app_errorhandler(HTTPException)
def http_error(e: HTTPException) -> Any:
    return _render(e.code or 500)
