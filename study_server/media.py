"""Stimulus media through opaque tokens: ``/m/<token>``.

A token is random, belongs to one participant and one attempt of one trial, and works
only with that participant's session cookie; it is revoked once the attempt is
answered. Responses carry ``Content-Type: video/mp4`` (or ``image/png`` for posters),
``Cache-Control: private``, an ETag derived from the token (never from the file, which
would link identical stimuli across participants), no ``Last-Modified`` and no
``Content-Disposition`` (the file names are descriptive), and support HTTP range
requests (Safari needs them to play video).

Still visible to a determined participant: the byte size of each file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import send_file

from .access import session_holds
from .extensions import db
from .models import MediaToken
from .models import Participant
from .models import Stimulus

bp = Blueprint("media", __name__)

MIMETYPES = {"video": "video/mp4", "poster": "image/png"}


def _etag(token: str) -> str:
    return hashlib.sha256(f"etag/{token}".encode()).hexdigest()[:24]


def stimulus_file(stim: Stimulus, kind: str) -> Path:
    """The video or poster (``kind``) of a stimulus, inside its batch folder; 404 when it is not there."""
    root = Path(stim.batch.root).resolve()
    path = (root / (stim.video_path if kind == "video" else stim.poster_path)).resolve()
    if root not in path.parents or not path.is_file():
        abort(404)
    return path


@bp.get("/m/<token>")
def serve(token: str) -> Any:
    """One video or poster, for the participant it was issued to."""
    if len(token) > 64:
        abort(404)
    mt = db.session.get(MediaToken, token)
    if mt is None or mt.revoked:
        abort(404)
    participant = db.session.get(Participant, mt.participant_pk)
    if participant is None or not session_holds(participant):
        abort(404)
    path = stimulus_file(mt.stimulus, mt.kind)
    rv = send_file(
        path,
        mimetype=MIMETYPES[mt.kind],
        conditional=True,
        etag=_etag(token),
        max_age=current_app.config["MEDIA_MAX_AGE"],
    )
    rv.headers.pop("Content-Disposition", None)
    rv.headers.pop("Last-Modified", None)
    rv.cache_control.public = False
    rv.cache_control.private = True
    return rv
