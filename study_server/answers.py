"""The answer path on the database driver: one read, then the writes, in as little time as can be.

Every participant posts an answer every few seconds, so this is the server's hot path
(``POST /s/<slug>/api/answer``, :func:`study_server.studies.record_answer`). It runs on a
DB-API connection checked out of the app's SQLAlchemy pool, with SQL written out below
and values encoded by SQLAlchemy's own type processors for the dialect (JSON,
DateTime, Boolean), so what it stores reads back through the ORM exactly as if the ORM
had written it. Through SQLAlchemy Core the same statements cost about 1 ms of CPU per
answer, most of it building execution contexts; here they cost a fraction of that, and,
on SQLite, the one-writer-at-a-time lock is held only for the writes themselves.

The protocol (what is checked, in what order, and how a concurrent duplicate is settled)
is :func:`study_server.studies.record_answer`'s; this module only runs its statements:

- ``_CONTEXT``: the attempt by its reference, with its participant, study, trial (the
  answer key), any answer already stored, and the participant's current trial and the
  block of the one after it, in one snapshot;
- the writes: the trial ``pending -> done`` (guarded: a concurrent duplicate finds 0
  rows), the attempt closed, its media tokens revoked, the answer inserted (the unique
  ``response.attempt_pk`` is the last guard); after the last answer the participant is
  completed and screened, or moved on to the next block's instructions.

The writes of concurrent answers in one server process are committed together
(:class:`GroupCommit`, leader and followers as in a database's group commit): the first
request to arrive writes every answer waiting at that moment in one transaction, each
in a savepoint of its own, and commits once; the others wait for it and return. Under
load this saves a commit (an fsync: about 0.35 ms of waiting and 0.15 ms of CPU here)
and a round of the writer lock per answer beyond the first; alone, an answer is
written as before. SQLite: the writes take the file lock of :mod:`study_server.sqlite_lock`
first and give it back right after the commit. PostgreSQL: the guarded update waits
for a concurrent writer of the same trial and then sees it done.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import Callable
from typing import Iterator
from typing import Mapping

from sqlalchemy import JSON
from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy.engine import Engine

from .sqlite_lock import give_back_writer_lock
from .sqlite_lock import take_writer_lock

__all__ = ["AnswerSQL", "AnswerContext", "AnswerWrite", "GroupCommit", "answer_sql", "SCREENED_ANSWERS"]

_CONTEXT = """
SELECT a.id, a.participant_pk, a.trial_pk, a.number, a.served, a.shown_at, a.closed,
       p.public_id, p.status, p.block, p.study_pk, s.slug,
       t.design, t.true_label, t.attacked_label, t.label_order,
       r.idempotency_key, r.choice, r.result,
       (SELECT q.id FROM trial q WHERE q.participant_pk = a.participant_pk AND q.status = 'pending'
        ORDER BY q.block, q.queue, q.position LIMIT 1 OFFSET 0),
       (SELECT q.block FROM trial q WHERE q.participant_pk = a.participant_pk AND q.status = 'pending'
        ORDER BY q.block, q.queue, q.position LIMIT 1 OFFSET 1),
       t.plays
FROM attempt a
JOIN participant p ON p.id = a.participant_pk
JOIN study s ON s.id = p.study_pk
JOIN trial t ON t.id = a.trial_pk
LEFT OUTER JOIN response r ON r.attempt_pk = a.id
WHERE a.ref = :ref
"""
_STORED = "SELECT idempotency_key, choice, result FROM response WHERE attempt_pk = :a"
_TRIAL_DONE = "UPDATE trial SET status = 'done' WHERE id = :t AND status = 'pending'"
_ATTEMPT_CLOSED = "UPDATE attempt SET closed = :yes WHERE id = :a"
_TOKENS_REVOKED = "UPDATE media_token SET revoked = :yes WHERE attempt_pk = :a"
_INSERT = """
INSERT INTO response (participant_pk, trial_pk, attempt, attempt_pk, idempotency_key, choice, answer, valid,
                      playback_failed, failure_reason, response_time_ms, events, client, shown_at, answered_at,
                      result)
VALUES (:participant_pk, :trial_pk, :attempt, :attempt_pk, :idempotency_key, :choice, :answer, :valid,
        :playback_failed, :failure_reason, :response_time_ms, :events, :client, :shown_at, :answered_at, :result)
"""
_TO_BLOCK = "UPDATE participant SET block = :to_block, status = 'instructions' WHERE id = :p"
_SCREENING_SETTINGS = "SELECT study_type, blocks, screening_threshold, control_hit_threshold FROM study WHERE id = :s"
SCREENED_ANSWERS = """
SELECT t.kind, r.answer FROM trial t JOIN response r ON r.trial_pk = t.id
WHERE t.participant_pk = :p AND t.practice = :no AND r.valid = :yes AND t.design = :design
"""
"""A participant's valid analysed answers of one design, as (trial kind, answer): what screening reads (also by
:func:`study_server.studies.complete`, through the ORM session's connection)."""
_COMPLETED = """
UPDATE participant SET status = 'completed', completed_at = :at, excluded = :excluded,
                       exclusion_reason = :reason, screening = :stats
WHERE id = :p
"""


@dataclass(frozen=True)
class AnswerContext:
    """One row of :data:`_CONTEXT`: what an answer is checked against (the attribute names
    :func:`study_server.studies._options` and ``_decode`` read on a trial)."""

    id: int
    participant_pk: int
    trial_pk: int
    number: int
    served: int
    shown_at: Any
    """As the driver returned it (stored again unchanged in the answer's row)."""
    closed: bool
    public_id: str
    participant_status: str
    participant_block: int
    study_pk: int
    slug: str
    design: str
    true_label: str | None
    attacked_label: str | None
    label_order: str | None
    idempotency_key: str | None
    choice: str | None
    result: dict[str, Any] | None
    current_trial_pk: int | None
    next_block: int | None
    plays: int


def _identity(value: Any) -> Any:
    return value


class AnswerSQL:
    """The answer path's statements and value encoders for one engine's dialect.

    The statements take a DB-API cursor of a connection from :meth:`connection`.
    """

    def __init__(self, engine: Engine):
        d = engine.dialect
        self.engine = engine
        self.sqlite = d.name == "sqlite"
        named = d.paramstyle in ("named", "qmark", "numeric")  # sqlite3 takes :name whatever its default
        if not named and d.paramstyle != "pyformat":
            raise RuntimeError(f"the answer path supports sqlite3 and psycopg, not paramstyle {d.paramstyle!r}")

        def sql(text: str) -> str:  # (the statements hold no ':' or '%' of their own)
            text = " ".join(text.split())
            return text if named else re.sub(r":(\w+)", r"%(\1)s", text)

        def bind(type_: Any) -> Callable[[Any], Any]:
            return type_.dialect_impl(d).bind_processor(d) or _identity

        self.context_sql = sql(_CONTEXT)
        self.stored_sql = sql(_STORED)
        self.trial_done_sql = sql(_TRIAL_DONE)
        self.attempt_closed_sql = sql(_ATTEMPT_CLOSED)
        self.tokens_revoked_sql = sql(_TOKENS_REVOKED)
        self.insert_sql = sql(_INSERT)
        self.to_block_sql = sql(_TO_BLOCK)
        self.screening_settings_sql = sql(_SCREENING_SETTINGS)
        self.screened_answers_sql = sql(SCREENED_ANSWERS)
        self.completed_sql = sql(_COMPLETED)
        self.json = bind(JSON())
        self.datetime = bind(DateTime())
        self.boolean = bind(Boolean())
        self._json_result = JSON().dialect_impl(d).result_processor(d, None) or _identity
        self.integrity_error: type[Exception] = d.dbapi.IntegrityError  # type: ignore[union-attr]
        self.yes, self.no = self.boolean(True), self.boolean(False)
        self.group = GroupCommit(self)

    def json_value(self, raw: Any) -> Any:
        """A JSON column's value as read by the driver, decoded."""
        return None if raw is None else self._json_result(raw)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A DB-API connection from the engine's pool; on leaving, back to the pool (rolled back if not
        committed; on SQLite the writer lock given back)."""
        raw = self.engine.raw_connection()
        try:
            yield raw
        finally:
            raw.close()

    # ---- the statements ------------------------------------------------------------------------
    def context(self, cur: Any, ref: str) -> AnswerContext | None:
        cur.execute(self.context_sql, {"ref": ref})
        row = cur.fetchone()
        if row is None:
            return None
        row = list(row)
        row[6] = bool(row[6])  # closed
        row[18] = self.json_value(row[18])  # result
        return AnswerContext(*row)

    def stored(self, cur: Any, attempt_pk: int) -> tuple[str, str | None, dict[str, Any]] | None:
        """The answer stored for ``attempt_pk``: (idempotency key, choice, result), or None."""
        cur.execute(self.stored_sql, {"a": attempt_pk})
        row = cur.fetchone()
        return None if row is None else (row[0], row[1], self.json_value(row[2]))

    def begin_writes(self, raw: Any) -> None:
        """Before the first write: on SQLite, wait for the one-writer lock (every process, every thread), then
        begin the transaction (psycopg begins one on the first statement)."""
        if self.sqlite:
            take_writer_lock(raw.info)
            raw.cursor().execute("BEGIN IMMEDIATE")

    def end_writes(self, raw: Any, commit: bool) -> None:
        """Commit (or roll back) the writes and give the writer lock back at once."""
        try:
            if commit:
                raw.commit()
            else:
                raw.rollback()
        finally:
            if self.sqlite:
                give_back_writer_lock(raw.info)

    def trial_done(self, cur: Any, trial_pk: int) -> bool:
        """``pending -> done``; False when another request got there first."""
        cur.execute(self.trial_done_sql, {"t": trial_pk})
        return cur.rowcount == 1

    def close_attempt(self, cur: Any, attempt_pk: int) -> None:
        cur.execute(self.attempt_closed_sql, {"a": attempt_pk, "yes": self.yes})
        cur.execute(self.tokens_revoked_sql, {"a": attempt_pk, "yes": self.yes})

    def insert_answer(self, cur: Any, row: Mapping[str, Any]) -> None:
        """``row``: every column of :data:`_INSERT` as Python values (encoded here)."""
        values = dict(row)
        for k in ("events", "client", "result"):
            values[k] = self.json(values[k])
        for k in ("valid", "playback_failed"):
            values[k] = self.boolean(values[k])
        values["answered_at"] = self.datetime(values["answered_at"])
        cur.execute(self.insert_sql, values)

    def to_block(self, cur: Any, participant_pk: int, block: int) -> None:
        cur.execute(self.to_block_sql, {"p": participant_pk, "to_block": block})

    def screening_settings(self, cur: Any, study_pk: int) -> tuple[str, Any, float, float | None]:
        cur.execute(self.screening_settings_sql, {"s": study_pk})
        study_type, blocks, threshold, control = cur.fetchone()
        return study_type, self.json_value(blocks), threshold, control

    def screened_answers(self, cur: Any, participant_pk: int, design: str) -> list[tuple[str, str | None]]:
        cur.execute(self.screened_answers_sql, {"p": participant_pk, "no": self.no, "yes": self.yes, "design": design})
        return [(kind, answer) for kind, answer in cur.fetchall()]

    def completed(
        self, cur: Any, participant_pk: int, at: datetime, excluded: bool, reason: str | None, stats: dict[str, Any]
    ) -> None:
        cur.execute(
            self.completed_sql,
            {
                "p": participant_pk,
                "at": self.datetime(at),
                "excluded": self.boolean(excluded),
                "reason": reason,
                "stats": self.json(stats),
            },
        )


@dataclass
class AnswerWrite:
    """One answer's writes, decided before any of them: run by :meth:`GroupCommit.submit`.

    ``write(store, cursor)`` returns False when the answer's guard fails (another request
    got there first) after writing nothing; an ``IntegrityError`` means the same.
    ``outcome``: None until written, then True (stored), False (someone else's answer is
    stored instead) or the exception that prevented it.
    """

    write: Callable[[AnswerSQL, Any], bool]
    order: int = 0
    """Where it goes in its group: the trial's key, so that every group takes its row locks in the same order
    (PostgreSQL: two groups of two processes holding answers to the same two trials cannot deadlock)."""
    outcome: bool | BaseException | None = None


class GroupCommit:
    """Commit the answers of concurrent requests of this process together (leader and followers).

    :meth:`submit` queues a write and then takes the leader's lock. Whoever holds it takes
    everything queued, writes it on its own connection in one transaction (each answer in
    a savepoint of its own when there are several, so one failed guard rolls back that
    answer only) and commits once. A request whose write an earlier leader took finds
    its outcome set when it gets the lock, and returns. A failed commit fails every
    answer of the group (each request answers 500, nothing of the group is stored, and
    the page retries with the same key).
    """

    def __init__(self, store: AnswerSQL):
        self.store = store
        self._queue: list[AnswerWrite] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        self.groups = 0
        """Transactions committed (with :attr:`written`: the mean group size, for the curious)."""
        self.written = 0

    @property
    def queued(self) -> int:
        """Writes waiting for a leader now."""
        with self._queue_lock:
            return len(self._queue)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Keep every writer of this process waiting meanwhile (they queue up and then go as one group)."""
        with self._leader:
            yield

    def submit(self, job: AnswerWrite, raw: Any) -> bool:
        """Write ``job`` (now, on the caller's connection ``raw``, or with the group it joins); True when stored,
        False when another answer to the same attempt was stored first. Raises what prevented it otherwise.

        On PostgreSQL ``raw`` may be inside the transaction of the caller's reads: the writes join it."""
        with self._queue_lock:
            self._queue.append(job)
        with self._leader:
            if job.outcome is None:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                group.sort(key=lambda j: j.order)
                self._write(group, raw)
        if isinstance(job.outcome, BaseException):
            raise job.outcome
        return bool(job.outcome)

    def _write(self, group: list[AnswerWrite], raw: Any) -> None:
        store = self.store
        try:
            store.begin_writes(raw)
            try:
                cur = raw.cursor()
                if len(group) == 1:
                    group[0].outcome = self._alone(cur, group[0])
                else:
                    for i, job in enumerate(group):
                        job.outcome = self._in_savepoint(cur, job, f"answer_{i}")
                stored = sum(job.outcome is True for job in group)
            except BaseException:
                store.end_writes(raw, commit=False)
                raise
            store.end_writes(raw, commit=stored > 0)
            self.groups += stored > 0
            self.written += stored
        except BaseException as e:  # the commit (or the connection) failed: nothing of the group is stored
            for job in group:
                job.outcome = e
            if not isinstance(e, Exception):
                raise

    def _alone(self, cur: Any, job: AnswerWrite) -> bool:
        try:
            return job.write(self.store, cur)
        except self.store.integrity_error:
            return False

    def _in_savepoint(self, cur: Any, job: AnswerWrite, name: str) -> bool | BaseException:
        cur.execute(f"SAVEPOINT {name}")
        outcome: bool | BaseException
        try:
            outcome = self._alone(cur, job)
        except Exception as e:  # this answer only: the others of the group go on
            outcome = e
        if outcome is not True:
            cur.execute(f"ROLLBACK TO SAVEPOINT {name}")
        cur.execute(f"RELEASE SAVEPOINT {name}")
        return outcome


_MADE = threading.Lock()


def answer_sql(engine: Engine, cache: dict[str, Any]) -> AnswerSQL:
    """The :class:`AnswerSQL` of ``engine``, made once (one :class:`GroupCommit` per process and engine) and kept
    in ``cache`` (the app's ``extensions``)."""
    found = cache.get("smart_study_answer_sql")
    if found is None or found.engine is not engine:
        with _MADE:
            found = cache.get("smart_study_answer_sql")
            if found is None or found.engine is not engine:
                found = cache["smart_study_answer_sql"] = AnswerSQL(engine)
    return found
