"""Who is asking: the study from the URL, the participant from the session cookie, and where they belong.

The session cookie (signed, HttpOnly, SameSite=Lax, permanent for
``PERMANENT_SESSION_LIFETIME``) holds only ``{"p": {study slug: participant public
id}}``: no recruiting id, nothing about trials.
"""

from __future__ import annotations

from flask import abort
from flask import session
from flask import url_for
from sqlalchemy import select

from .extensions import db
from .models import Participant
from .models import Study

__all__ = [
    "get_study",
    "session_public_id",
    "session_participant",
    "study_and_participant",
    "session_holds",
    "bind",
    "stage_url",
    "STAGES",
]

STAGES = {
    "consent": "participant.consent",
    "about": "participant.about",
    "instructions": "participant.instructions",
    "trials": "participant.trials",
    "completed": "participant.done",
    "declined": "participant.declined",
}
"""Participant status -> the page they belong on."""


def get_study(slug: str) -> Study:
    """The study with this slug, or 404."""
    study = db.session.execute(select(Study).where(Study.slug == slug)).scalar_one_or_none()
    if study is None:
        abort(404)
    return study


def session_public_id(slug: str) -> str | None:
    """The public id of the participant this browser's session names for study ``slug`` (no database read)."""
    ids = session.get("p")
    public_id = ids.get(slug) if isinstance(ids, dict) else None
    return public_id if isinstance(public_id, str) else None


def session_participant(study: Study) -> Participant | None:
    """The participant this browser's session holds for ``study`` (None if none)."""
    public_id = session_public_id(study.slug)
    if public_id is None:
        return None
    return db.session.execute(
        select(Participant).where(Participant.public_id == public_id, Participant.study_pk == study.id)
    ).scalar_one_or_none()


def study_and_participant(slug: str) -> tuple[Study, Participant | None]:
    """The study (404 if none) and this browser's participant in it, in one query when there is one."""
    public_id = session_public_id(slug)
    if public_id is not None:
        row = db.session.execute(
            select(Study, Participant)
            .join(Participant, Participant.study_pk == Study.id)
            .where(Study.slug == slug, Participant.public_id == public_id)
        ).first()
        if row is not None:
            return row[0], row[1]
    return get_study(slug), None


def session_holds(participant: Participant) -> bool:
    """This browser's session belongs to ``participant``."""
    ids = session.get("p")
    return isinstance(ids, dict) and participant.public_id in ids.values()


def bind(study: Study, participant: Participant) -> None:
    """Remember in the session cookie that this browser is ``participant`` in ``study``."""
    ids = dict(session.get("p") or {})
    ids[study.slug] = participant.public_id
    session["p"] = ids
    session.permanent = True


def stage_url(participant: Participant) -> str:
    return url_for(STAGES[participant.status], slug=participant.study.slug)
