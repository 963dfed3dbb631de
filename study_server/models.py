"""The database: stimulus batches, studies, participants, their trials, attempts and answers.

One row per thing a researcher or the export needs; the answer key (variants, kinds,
labels) lives here and never reaches the browser, which only sees opaque references
(``Attempt.ref``, ``MediaToken.token``).

Key constraints (the integrity promises of the study):

* ``participant (study_pk, platform, recruit_id)`` unique: one participation per
  recruiting id (Prolific PID, MTurk workerId, or an anonymous id kept in a cookie).
* ``trial (participant_pk, position)`` unique: the sequence decided at enrolment.
* ``attempt (trial_pk, number)`` unique: each showing of a trial; a trial whose video
  failed gets a new attempt (and new media tokens) later in the session.
* ``response (participant_pk, trial_pk, attempt)`` unique, and ``response.attempt_pk``
  unique: at most one stored answer per attempt, so a retried POST can never add a row.

Times are naive UTC (:func:`utcnow`).
"""

from __future__ import annotations

from datetime import datetime
from datetime import timezone
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import false
from sqlalchemy import true
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from .extensions import db

__all__ = [
    "utcnow",
    "Batch",
    "Stimulus",
    "Study",
    "Participant",
    "Trial",
    "Attempt",
    "MediaToken",
    "Response",
    "Researcher",
    "LoginAttempt",
    "AuditEvent",
    "ProlificLink",
    "ProlificAction",
]


def utcnow() -> datetime:
    """Now, as naive UTC (what every DateTime column holds)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Batch(db.Model):
    """An imported stimulus batch (the folder stays where it is; the server serves its files)."""

    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(128), unique=True)
    root: Mapped[str] = mapped_column(String(1024))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(128))
    strategy: Mapped[str | None] = mapped_column(String(32))
    n_items: Mapped[int] = mapped_column(Integer)
    variants: Mapped[dict[str, str]] = mapped_column(JSON)
    """Variant name -> role (original / attack / control)."""
    clip_seconds: Mapped[float] = mapped_column(Float)
    imported_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    label_names: Mapped[dict[str, str] | None] = mapped_column(JSON)
    """Class name -> the words participants read (from the manifest's labels)."""

    stimuli: Mapped[list["Stimulus"]] = relationship(back_populates="batch", cascade="all, delete-orphan")
    studies: Mapped[list["Study"]] = relationship(back_populates="batch")


class Stimulus(db.Model):
    """One video of a batch with its poster: a variant (``key`` = its name) or a composite (``left|right``)."""

    __tablename__ = "stimulus"
    __table_args__ = (UniqueConstraint("batch_pk", "item_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_pk: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(80))
    left: Mapped[str | None] = mapped_column(String(32))
    right: Mapped[str | None] = mapped_column(String(32))
    video_path: Mapped[str] = mapped_column(String(512))
    video_bytes: Mapped[int] = mapped_column(Integer)
    poster_path: Mapped[str] = mapped_column(String(512))
    duration: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)

    batch: Mapped[Batch] = relationship(back_populates="stimuli")


class Study(db.Model):
    """A study: its design, its settings (all of them, so tests can run short studies), and its state."""

    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    header: Mapped[str | None] = mapped_column(String(100))
    """The header participants see (None: the standard one)."""
    consent_text: Mapped[str | None] = mapped_column(Text)
    """The information and consent text participants read (None: the standard one)."""
    study_type: Mapped[str] = mapped_column(String(32))
    """One of the three designs, or ``combined``: a session of blocks (see ``blocks``)."""
    batch_pk: Mapped[int] = mapped_column(ForeignKey("batch.id"))
    status: Mapped[str] = mapped_column(String(16), default="open")
    """``open`` (taking participants), ``pilot`` (taking pilot participants) or ``closed``."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    blocks: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """The blocks in order (one for a single design), each a design with its trial settings: the fields of
    :class:`study_server.settings.Block`."""
    screening_threshold: Mapped[float] = mapped_column(Float)
    control_hit_threshold: Mapped[float | None] = mapped_column(Float)
    """Minimum positive-control hit rate; None: misses are recorded but do not exclude."""
    stall_limit_s: Mapped[float] = mapped_column(Float)
    max_attempts: Mapped[int] = mapped_column(Integer)
    allow_anonymous: Mapped[bool] = mapped_column(Boolean, default=True)
    completion_code: Mapped[str | None] = mapped_column(String(64))
    target_participants: Mapped[int | None] = mapped_column(Integer)
    prolific_redirect: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    """Prolific participants are sent back to Prolific with the completion code when done."""

    batch: Mapped[Batch] = relationship(back_populates="studies")
    participants: Mapped[list["Participant"]] = relationship(back_populates="study")

    @property
    def trials(self) -> int:
        """Analysed trials per participant, over every block."""
        return sum(b["trials"] for b in self.blocks)

    @property
    def practice_trials(self) -> int:
        return sum(b["practice_trials"] for b in self.blocks)


class Participant(db.Model):
    """One participation: who (recruiting id, kept server-side), where they are, and their screening."""

    __tablename__ = "participant"
    __table_args__ = (UniqueConstraint("study_pk", "platform", "recruit_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    """Opaque id used in exports and the session cookie (never the recruiting id)."""
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    """``prolific``, ``mturk`` or ``anonymous``."""
    recruit_id: Mapped[str] = mapped_column(String(128))
    recruit_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Prolific STUDY_ID / SESSION_ID, MTurk assignmentId / hitId / turkSubmitTo."""
    seed: Mapped[int] = mapped_column(BigInteger)
    pilot: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Entered while the study ran as a pilot: kept and exported, flagged, left out of balancing and counts."""
    status: Mapped[str] = mapped_column(String(16), default="consent")
    """``consent`` -> ``about`` -> ``instructions`` -> ``trials`` -> ``completed``; or ``declined``."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    consented_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    age: Mapped[int | None] = mapped_column(Integer)
    demographics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    exclusion_reason: Mapped[str | None] = mapped_column(String(255))
    screening: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    block: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The block whose instructions the participant is at or has passed (0 for single-design studies)."""

    study: Mapped[Study] = relationship(back_populates="participants")
    trials: Mapped[list["Trial"]] = relationship(
        back_populates="participant", order_by="Trial.position", cascade="all, delete-orphan"
    )
    responses: Mapped[list["Response"]] = relationship(back_populates="participant", cascade="all, delete-orphan")


class Trial(db.Model):
    """One trial of a participant's sequence, decided at enrolment: what is shown and the answer key."""

    __tablename__ = "trial"
    __table_args__ = (
        UniqueConstraint("participant_pk", "position"),
        Index("ix_trial_queue", "participant_pk", "status", "queue"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_pk: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    """0-based place in the sequence as planned (practice first)."""
    queue: Mapped[int] = mapped_column(Integer)
    """Order of presentation: starts as ``position``; a failed trial moves to the end."""
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """``pending``, ``done`` (a valid answer stored) or ``failed`` (playback failed every attempt)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    block: Mapped[int] = mapped_column(Integer, default=0)
    practice: Mapped[bool] = mapped_column(Boolean, default=False)
    design: Mapped[str] = mapped_column(String(32))
    """The trial's study type (a combined session may mix them in blocks)."""
    kind: Mapped[str] = mapped_column(String(32))
    """deceitfulness; naturalness; or sensitivity / perceivability / control."""
    cell: Mapped[str] = mapped_column(String(255))
    """Balancing cell (stimulus and condition), counted across usable participants."""
    item_id: Mapped[str] = mapped_column(String(128))
    stimulus_pk: Mapped[int] = mapped_column(ForeignKey("stimulus.id"))
    variant: Mapped[str | None] = mapped_column(String(32))
    left_variant: Mapped[str | None] = mapped_column(String(32))
    right_variant: Mapped[str | None] = mapped_column(String(32))
    true_label: Mapped[str] = mapped_column(String(128))
    attacked_label: Mapped[str | None] = mapped_column(String(128))
    label_order: Mapped[str | None] = mapped_column(String(32))
    naturalness_pair: Mapped[str | None] = mapped_column(String(32))
    method: Mapped[str | None] = mapped_column(String(32))
    """Graded (threshold) trials: the attack method of the right-hand clip."""
    strength: Mapped[float | None] = mapped_column(Float)
    """Graded trials: its strength s of the blend q + s (q^ - q); an adaptive trial's is set when it comes up."""
    adaptive: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Adaptive trials: ``{"procedure": "quest+", "pending": true}`` until the level is chosen, then the state it
    was chosen in (:meth:`stimuli.adaptive.Choice.to_dict`)."""
    plays: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    slowdown: Mapped[float] = mapped_column(Float)

    participant: Mapped[Participant] = relationship(back_populates="trials")
    stimulus: Mapped[Stimulus] = relationship()
    attempt_rows: Mapped[list["Attempt"]] = relationship(
        back_populates="trial", order_by="Attempt.number", cascade="all, delete-orphan"
    )


class Attempt(db.Model):
    """One showing of a trial; the page knows it only by ``ref``."""

    __tablename__ = "attempt"
    __table_args__ = (UniqueConstraint("trial_pk", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_pk: Mapped[int] = mapped_column(ForeignKey("trial.id", ondelete="CASCADE"))
    participant_pk: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime)
    served: Mapped[int] = mapped_column(Integer, default=0)
    """Times the page was given this attempt as the current trial (more than 1: reloads)."""
    closed: Mapped[bool] = mapped_column(Boolean, default=False)

    trial: Mapped[Trial] = relationship(back_populates="attempt_rows")
    tokens: Mapped[list["MediaToken"]] = relationship(back_populates="attempt", cascade="all, delete-orphan")


class MediaToken(db.Model):
    """A random, per-participant, per-attempt media URL (``/m/<token>``) for a video or its poster."""

    __tablename__ = "media_token"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempt_pk: Mapped[int] = mapped_column(ForeignKey("attempt.id", ondelete="CASCADE"), index=True)
    participant_pk: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"))
    stimulus_pk: Mapped[int] = mapped_column(ForeignKey("stimulus.id"))
    kind: Mapped[str] = mapped_column(String(8))
    """``video`` or ``poster``."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    attempt: Mapped[Attempt] = relationship(back_populates="tokens")
    stimulus: Mapped[Stimulus] = relationship()


class Response(db.Model):
    """The stored outcome of one attempt: an answer, or a playback failure (``valid`` false)."""

    __tablename__ = "response"
    __table_args__ = (
        UniqueConstraint("participant_pk", "trial_pk", "attempt"),
        Index("ix_response_trial_pk", "trial_pk"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_pk: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"), index=True)
    trial_pk: Mapped[int] = mapped_column(ForeignKey("trial.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    attempt_pk: Mapped[int] = mapped_column(ForeignKey("attempt.id", ondelete="CASCADE"), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    choice: Mapped[str | None] = mapped_column(String(16))
    """What the page sent (an option value: '1'/'2', 'left'/'right'/'cant_tell', 'changed'/'unchanged')."""
    answer: Mapped[str | None] = mapped_column(String(32))
    """The answer decoded with the key: true_label/attacked_label, left/right/cant_tell, changed/unchanged."""
    valid: Mapped[bool] = mapped_column(Boolean)
    playback_failed: Mapped[bool] = mapped_column(Boolean, default=False)
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    response_time_ms: Mapped[float | None] = mapped_column(Float)
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    client: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime)
    answered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The JSON body returned for this POST, returned again to a retry with the same key."""

    participant: Mapped[Participant] = relationship(back_populates="responses")
    trial: Mapped[Trial] = relationship()


class Researcher(db.Model):
    """A researcher account for ``/admin`` (created with ``flask --app study_server create-researcher``)."""

    __tablename__ = "researcher"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    """Lower-cased."""
    password_hash: Mapped[str] = mapped_column(String(255))
    """``werkzeug.security.generate_password_hash`` (scrypt, salted)."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)


class LoginAttempt(db.Model):
    """One sign-in attempt, kept for the rate limit (in the database, so every server process sees it)."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_ip_at", "ip", "at"), Index("ix_login_attempt_email_at", "email", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    ip: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)


class AuditEvent(db.Model):
    """What a researcher (or the CLI) did that changes data: imports, studies, withdrawals."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(254))
    """The researcher's email, or ``cli``."""
    action: Mapped[str] = mapped_column(String(32))
    study: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProlificLink(db.Model):
    """A study's counterpart on Prolific: created through the API, with the settings it was created with."""

    __tablename__ = "prolific_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"), unique=True)
    internal_name: Mapped[str] = mapped_column(String(100), unique=True)
    """Prolific's internal name of the study, chosen here before it is created (so a rerun finds it)."""
    prolific_id: Mapped[str | None] = mapped_column(String(64))
    """None until Prolific answered the creation."""
    status: Mapped[str] = mapped_column(String(32))
    """Prolific's status as last seen (``UNPUBLISHED``, ``ACTIVE``, ``PAUSED``, ...), or ``creating``."""
    reward_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    minutes: Mapped[int] = mapped_column(Integer)
    places: Mapped[int] = mapped_column(Integer)
    screened_out_code: Mapped[str] = mapped_column(String(64))
    """The code participants who fail the screening are given (they are paid or asked to return, by the policy)."""
    exclusion_policy: Mapped[str] = mapped_column(String(16))
    """``approve`` (pay and flag in the data) or ``return`` (ask the participant to return, with the reason)."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    study: Mapped[Study] = relationship()


class ProlificAction(db.Model):
    """One thing done to one Prolific submission (approved, asked to return, bonus): never done twice."""

    __tablename__ = "prolific_action"
    __table_args__ = (UniqueConstraint("link_pk", "submission_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    link_pk: Mapped[int] = mapped_column(ForeignKey("prolific_link.id"), index=True)
    submission_id: Mapped[str] = mapped_column(String(64))
    participant_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    """``approve``, ``return`` or ``bonus``."""
    state: Mapped[str] = mapped_column(String(16))
    """``done``; for a bonus also ``set-up`` (created, not paid) or ``unknown`` (paying, answer lost)."""
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
