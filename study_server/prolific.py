"""Running a study on Prolific through its REST API (docs.prolific.com/api-reference).

The token comes from ``PROLIFIC_TOKEN``; the API from ``PROLIFIC_API_URL`` (default
``https://api.prolific.com``; tests point it at a local server implementing the documented
endpoints). What a researcher does, from the CLI (``flask --app study_server prolific ...``) or
the study's admin page:

* :func:`create` - a draft study on Prolific from a study here: its title, a description, the
  entry URL with ``{{%PROLIFIC_PID%}}``, ``{{%STUDY_ID%}}``, ``{{%SESSION_ID%}}``, the estimated
  time, the reward (refused below Prolific's minimum hourly rate), places = the target, and two
  completion codes: the study's code for those who completed, and a screened-out code for those
  the screening excluded (both reviewed here, see :func:`review`);
* :func:`transition` - publish, pause, resume;
* :func:`review` - approve the completed submissions; for excluded participants follow the study's
  policy: ``approve`` (paid, flagged in the data: they are excluded here) or ``return`` (asked to
  return the submission, with the reason); a submission with no completed participant here is left
  for the researcher to review on Prolific;
* :func:`bonus` - a bonus to every approved, analysed participant (or to the ids given).

Every call is idempotent and written to the audit log. Each step is stored as soon as Prolific
answers (:class:`ProlificAction`, one row per submission and kind), so a network failure leaves
nothing half-done: the error says what was done, and a rerun does the rest, never anything twice.
Creating a study names it first (``internal_name``), so a rerun after a lost answer finds the
study Prolific made instead of making a second; paying bonuses is not idempotent on Prolific's
side, so a payment whose answer was lost is checked against the submissions' paid bonuses before
anything is paid again.
"""

from __future__ import annotations

import math
import os
import secrets
import statistics
from dataclasses import dataclass
from decimal import ROUND_CEILING
from decimal import Decimal
from decimal import InvalidOperation
from typing import Any

import requests
import urllib3
from flask import current_app
from sqlalchemy import select

from stimuli.errors import SmartStudyError

from .extensions import db
from .models import Participant
from .models import ProlificAction
from .models import ProlificLink
from .models import Study
from .settings import TAKING
from .studies import audit

__all__ = [
    "ProlificError",
    "Client",
    "MIN_HOURLY",
    "POLICIES",
    "client",
    "link_of",
    "parse_money",
    "create",
    "estimated_minutes",
    "transition",
    "review",
    "bonus",
    "overview",
]

MIN_HOURLY = {"GBP": Decimal("6.00"), "USD": Decimal("8.00")}
"""Prolific's minimum reward per hour by study currency (its guidance)."""
POLICIES = ("approve", "return")
TRANSITIONS = {"publish": ("PUBLISH", "ACTIVE"), "pause": ("PAUSE", "PAUSED"), "resume": ("START", "ACTIVE")}
"""Our verb: (Prolific's action, the status it leads to)."""
TIMEOUT_S = 30


class ProlificError(SmartStudyError):
    """A Prolific call failed or was refused; the message is one line. ``sent``: it may have been done (the request
    went out and no answer came back); False when it certainly was not (refused, or never sent)."""

    def __init__(self, message: str, sent: bool = True):
        super().__init__(message)
        self.sent = sent


# ---- the client ----------------------------------------------------------------------------------
class Client:
    """Prolific's REST API: token authentication, JSON in and out, one-line errors."""

    def __init__(self, base_url: str, token: str, timeout_s: float = TIMEOUT_S):
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Token {token}", "Content-Type": "application/json"})
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None) -> Any:
        url = path if path.startswith("http") else f"{self.base}/api/v1/{path.lstrip('/')}"
        try:
            r = self.http.request(method, url, json=body, timeout=self.timeout_s)
        except requests.RequestException as e:
            reason = getattr(e.args[0], "reason", None) if e.args else None
            sent = not (
                isinstance(e, requests.ConnectTimeout) or isinstance(reason, urllib3.exceptions.NewConnectionError)
            )
            raise ProlificError(f"could not reach Prolific at {self.base} ({type(e).__name__})", sent=sent) from None
        if r.status_code >= 400:
            # it answered: refused, not done
            raise ProlificError(f"Prolific refused {method} {path} (HTTP {r.status_code}): {_detail(r)}", sent=False)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text

    def list_studies(self) -> list[dict[str, Any]]:
        return self.all("studies/")

    def all(self, path: str) -> list[dict[str, Any]]:
        """Every result of a listing, following its ``_links.next`` pages."""
        out: list[dict[str, Any]] = []
        page: str | None = path
        while page:
            got = self.call("GET", page)
            out.extend(got.get("results", []))
            page = ((got.get("_links") or {}).get("next") or {}).get("href")
        return out


def _detail(r: requests.Response) -> str:
    """Prolific's error answer in one line: ``{"error": {"title", "detail"}}`` or ``{"detail"}``, else the text."""
    try:
        body = r.json()
    except ValueError:
        return " ".join(r.text.split())[:300] or r.reason
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        detail = err.get("detail", err.get("title", err))
        if isinstance(detail, dict):
            detail = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in detail.items())
        elif isinstance(detail, list):
            detail = " ".join(map(str, detail))
        return " ".join(str(detail).split())[:300]
    return " ".join(str(err).split())[:300]


def client() -> Client:
    """The client for this app: ``PROLIFIC_API_URL`` and ``PROLIFIC_TOKEN`` (app config, else environment)."""
    cfg = current_app.config
    token = cfg.get("PROLIFIC_TOKEN") or os.environ.get("PROLIFIC_TOKEN")
    if not token:
        raise ProlificError("PROLIFIC_TOKEN is not set: create an API token in Prolific's settings and set it")
    base = cfg.get("PROLIFIC_API_URL") or os.environ.get("PROLIFIC_API_URL") or "https://api.prolific.com"
    return Client(base, token, float(cfg.get("PROLIFIC_TIMEOUT_S") or TIMEOUT_S))


# ---- creating and running the study --------------------------------------------------------------
def link_of(study: Study) -> ProlificLink | None:
    return db.session.execute(select(ProlificLink).where(ProlificLink.study_pk == study.id)).scalar_one_or_none()


def _linked(study: Study) -> ProlificLink:
    link = link_of(study)
    if link is None or link.prolific_id is None:
        raise ProlificError(f"study {study.slug!r} is not on Prolific yet: create it first (prolific create)")
    return link


def parse_money(text: str | Decimal, what: str = "amount") -> Decimal:
    """A positive amount with at most two decimals (``1.50``)."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ProlificError(f"{what} {text!r} is not an amount (e.g. 1.50)") from None
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")):
        raise ProlificError(f"{what} {text!r} must be positive with at most two decimals (e.g. 1.50)")
    return value


def entry_url(study: Study, base_url: str) -> str:
    """The URL Prolific sends participants to, with its placeholders."""
    return (
        f"{base_url.rstrip('/')}/s/{study.slug}"
        "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )


def _description(study: Study, minutes: int) -> str:
    return (
        f"A study of how people see human movement. You watch {study.trials + study.practice_trials} short "
        "silent animations of a stick figure and answer one question about each, by clicking or with the keyboard. "
        f"About {minutes} minutes on a computer with a keyboard."
    )


def estimated_minutes(study: Study) -> int:
    """The time to quote: the completed pilots' median (consent to the end) when there are any; otherwise each
    clip's length times its plays and slow-down plus 6 s to answer, for every trial, and 3 min for the pages."""
    rows = db.session.execute(
        select(Participant.consented_at, Participant.completed_at).where(
            Participant.study_pk == study.id,
            Participant.pilot.is_(True),
            Participant.status == "completed",
            Participant.consented_at.is_not(None),
        )
    ).all()
    if rows:
        return max(1, math.ceil(statistics.median((b - a).total_seconds() for a, b in rows) / 60))
    clip = statistics.fmean(s.duration for s in study.batch.stimuli) if study.batch.stimuli else 6.0
    seconds = 180 + sum(
        (b["trials"] + b["practice_trials"]) * (clip * b["plays"] * b["slowdown"] + 6) for b in study.blocks
    )
    return max(1, math.ceil(seconds / 60))


def create(
    study: Study,
    *,
    base_url: str,
    reward: str | Decimal,
    minutes: int,
    currency: str = "GBP",
    places: int | None = None,
    policy: str = "approve",
    description: str | None = None,
    actor: str = "cli",
) -> ProlificLink:
    """Create the study on Prolific as a draft (once: a rerun returns the study already made)."""
    link = link_of(study)
    if link is not None and link.prolific_id is not None:
        return link
    api = client()
    if link is None:
        link = _new_link(study, base_url, reward, minutes, currency, places, policy)
    else:  # an earlier try named it and may have created it before its answer was lost
        found = [s for s in api.list_studies() if s.get("internal_name") == link.internal_name]
        if found:
            _created(link, found[0], actor, adopted=True)
            return link
    body = {
        "name": study.title,
        "internal_name": link.internal_name,
        "description": description or _description(study, link.minutes),
        "external_study_url": entry_url(study, base_url),
        "prolific_id_option": "url_parameters",
        "completion_option": "url",
        "completion_codes": [
            {"code": study.completion_code, "code_type": "COMPLETED", "actions": [{"action": "MANUALLY_REVIEW"}]},
            {"code": link.screened_out_code, "code_type": "OTHER", "actions": [{"action": "MANUALLY_REVIEW"}]},
        ],
        "total_available_places": link.places,
        "estimated_completion_time": link.minutes,
        "reward": link.reward_cents,
        "currency": link.currency,
        "device_compatibility": ["desktop"],
    }
    made = api.call("POST", "studies/", body)
    _created(link, made, actor, adopted=False)
    return link


def _new_link(
    study: Study, base_url: str, reward: str | Decimal, minutes: int, currency: str, places: int | None, policy: str
) -> ProlificLink:
    """Check the settings and store the link, named, before anything is sent."""
    if not study.completion_code:
        raise ProlificError(f"study {study.slug!r} has no completion code: set one (participants hand it to Prolific)")
    if not base_url.startswith(("https://", "http://")):
        raise ProlificError(f"the server URL {base_url!r} must start with https:// (participants are sent there)")
    currency = currency.upper()
    if currency not in MIN_HOURLY:
        raise ProlificError(f"currency {currency!r} is not one of {', '.join(MIN_HOURLY)}")
    if policy not in POLICIES:
        raise ProlificError(f"exclusion policy {policy!r} is not one of {', '.join(POLICIES)}")
    if not isinstance(minutes, int) or minutes < 1:
        raise ProlificError(f"estimated time {minutes!r} must be a whole number of minutes, at least 1")
    places = places or study.target_participants
    if not places or places < 1:
        raise ProlificError(f"study {study.slug!r} has no target number of participants: give the places")
    amount = parse_money(reward, "reward")
    least = (MIN_HOURLY[currency] * minutes / 60).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    if amount < least:
        rate = (amount * 60 / minutes).quantize(Decimal("0.01"))
        raise ProlificError(
            f"reward {amount} {currency} for {minutes} min is {rate} {currency}/h, below Prolific's minimum of "
            f"{MIN_HOURLY[currency]} {currency}/h: offer at least {least} {currency}"
        )
    link = ProlificLink(
        study_pk=study.id,
        internal_name=f"smart-study {study.slug} {secrets.token_hex(4)}",
        status="creating",
        reward_cents=int(amount * 100),
        currency=currency,
        minutes=minutes,
        places=places,
        screened_out_code="SO-" + secrets.token_hex(4).upper(),
        exclusion_policy=policy,
    )
    db.session.add(link)
    db.session.commit()
    return link


def _created(link: ProlificLink, made: dict[str, Any], actor: str, adopted: bool) -> None:
    link.prolific_id, link.status = str(made["id"]), str(made.get("status") or "UNPUBLISHED")
    audit(
        actor,
        "prolific-create",
        link.study.slug,
        prolific_id=link.prolific_id,
        reward_cents=link.reward_cents,
        currency=link.currency,
        minutes=link.minutes,
        places=link.places,
        policy=link.exclusion_policy,
        found_after_lost_answer=adopted,
    )
    db.session.commit()


def transition(study: Study, verb: str, actor: str = "cli") -> str:
    """Publish, pause or resume the study on Prolific; nothing is sent when it is already there. Its new status."""
    action, goal = TRANSITIONS[verb]
    link = _linked(study)
    if verb in ("publish", "resume") and study.status not in TAKING:
        raise ProlificError(f"study {study.slug!r} is {study.status} here: open it before you {verb} it on Prolific")
    api = client()
    now = str(api.call("GET", f"studies/{link.prolific_id}/").get("status"))
    if now != goal:
        got = api.call("POST", f"studies/{link.prolific_id}/transition/", {"action": action})
        now = str((got or {}).get("status") or goal)
        audit(actor, f"prolific-{verb}", study.slug, prolific_id=link.prolific_id, status=now)
    link.status = now
    db.session.commit()
    return now


# ---- submissions ---------------------------------------------------------------------------------
def _done(link: ProlificLink) -> dict[tuple[str, str], ProlificAction]:
    rows = db.session.execute(select(ProlificAction).where(ProlificAction.link_pk == link.id)).scalars()
    return {(a.submission_id, a.kind): a for a in rows}


def _participants(study: Study) -> dict[str, Participant]:
    rows = db.session.execute(
        select(Participant).where(Participant.study_pk == study.id, Participant.platform == "prolific")
    ).scalars()
    return {p.recruit_id: p for p in rows}


def _pid(sub: dict[str, Any]) -> str:
    return str(sub.get("participant_id") or sub.get("participant") or "")


RETURN_REASON = (
    "Thank you for taking part. Your answers did not pass the study's quality check ({reason}), which was set "
    "before the study started, so we cannot use them. Please return your submission."
)


@dataclass
class Review:
    approved: int = 0
    flagged: int = 0
    """Approved although excluded here (policy ``approve``)."""
    returned: int = 0
    """Asked to return (policy ``return``)."""
    earlier: int = 0
    """Handled by an earlier run."""
    left: list[str] | None = None
    """Submissions awaiting review with no completed participant here: for the researcher to review."""

    def text(self) -> str:
        s = (
            f"approved {self.approved} (of them {self.flagged} excluded here, flagged), asked {self.returned} to "
            f"return, {self.earlier} done before"
        )
        if self.left:
            s += (
                f"; {len(self.left)} left to review on Prolific (no completed participant here): {', '.join(self.left)}"
            )
        return s


def review(study: Study, actor: str = "cli") -> Review:
    """Approve completed submissions; excluded participants by the study's policy. Resumable (see the module)."""
    link = _linked(study)
    api = client()
    done = _done(link)
    people = _participants(study)
    out = Review(left=[])
    for sub in api.all(f"studies/{link.prolific_id}/submissions/"):
        sid, pid = str(sub["id"]), _pid(sub)
        if (sid, "approve") in done or (sid, "return") in done:
            out.earlier += 1
            continue
        if str(sub.get("status", "")).replace("_", " ") != "AWAITING REVIEW":
            continue  # still taking part, returned, or reviewed on Prolific's site
        p = people.get(pid)
        if p is None or p.status != "completed":
            out.left.append(sid)
            continue
        excluded = bool(p.excluded)
        try:
            if excluded and link.exclusion_policy == "return":
                reason = RETURN_REASON.format(reason=p.exclusion_reason or "screening")
                api.call("POST", f"submissions/{sid}/request-return/", {"request_return_reasons": [reason]})
                kind, detail = "return", {"reason": reason}
                out.returned += 1
            else:
                api.call("POST", f"submissions/{sid}/transition/", {"action": "APPROVE"})
                kind, detail = "approve", {"excluded": excluded, "reason": p.exclusion_reason}
                out.approved += 1
                out.flagged += excluded
        except ProlificError as e:
            raise ProlificError(f"{e}; before that: {out.text()}; run the review again to finish the rest") from None
        db.session.add(
            ProlificAction(
                link_pk=link.id,
                submission_id=sid,
                participant_id=pid,
                kind=kind,
                state="done",
                detail={**detail, "participant": p.public_id},
            )
        )
        audit(actor, f"prolific-{kind}", study.slug, submission=sid, participant=p.public_id, excluded=excluded)
        db.session.commit()
    return out


def bonus(
    study: Study,
    amount: str | Decimal,
    actor: str = "cli",
    participant_ids: list[str] | None = None,
    pay_unconfirmed: bool = False,
) -> dict[str, Any]:
    """Pay ``amount`` to every approved, analysed participant (or to these Prolific ids), each once.

    Two calls on Prolific: set up (stored as ``set-up``), then pay (``done``). A payment whose answer was lost is
    ``unknown``: the next run reads those submissions' paid bonuses and marks them paid; one still not shown as
    paid is reported and paid again only with ``pay_unconfirmed`` (Prolific pays asynchronously: look first).
    """
    value = parse_money(amount, "bonus")
    link = _linked(study)
    api = client()
    done = _done(link)
    report: dict[str, Any] = {"paid": 0, "earlier": 0, "checked": 0, "unconfirmed": []}
    pending = [a for a in done.values() if a.kind == "bonus" and a.state != "done"]
    for bulk in sorted({a.detail["bulk"] for a in pending}):
        rows = [a for a in pending if a.detail["bulk"] == bulk]
        if all(a.state == "unknown" for a in rows) and _paid_already(api, rows):
            _mark(rows, "done", actor, study, bulk)
            report["checked"] += len(rows)
            continue
        if rows[0].state == "unknown" and not pay_unconfirmed:
            report["unconfirmed"].append(bulk)
            continue
        _pay(api, rows, bulk, actor, study)
        report["paid"] += len(rows)
    done = _done(link)
    targets = []
    for (sid, kind), a in sorted(done.items()):
        if kind != "approve" or a.detail.get("excluded"):
            continue
        if participant_ids is not None and a.participant_id not in participant_ids:
            continue
        if (sid, "bonus") in done:
            report["earlier"] += 1
            continue
        targets.append(a)
    if participant_ids is not None:
        unknown = sorted(set(participant_ids) - {a.participant_id for (_, k), a in done.items() if k == "approve"})
        if unknown:
            raise ProlificError(
                f"no approved, analysed submission of {', '.join(unknown)}: approve them first (review)"
            )
    if targets:
        csv = "".join(f"{a.submission_id},{value}\n" for a in targets)
        made = api.call("POST", "submissions/bonus-payments/", {"study_id": link.prolific_id, "csv_bonuses": csv})
        bulk = str(made["id"])
        rows = [
            ProlificAction(
                link_pk=link.id,
                submission_id=a.submission_id,
                participant_id=a.participant_id,
                kind="bonus",
                state="set-up",
                detail={"bulk": bulk, "amount": str(value)},
            )
            for a in targets
        ]
        db.session.add_all(rows)
        audit(actor, "prolific-bonus-set-up", study.slug, bulk=bulk, amount=str(value), submissions=len(rows))
        db.session.commit()
        _pay(api, rows, bulk, actor, study)
        report["paid"] += len(rows)
    return report


def _pay(api: Client, rows: list[ProlificAction], bulk: str, actor: str, study: Study) -> None:
    try:
        api.call("POST", f"bulk-bonus-payments/{bulk}/pay/", {})
    except ProlificError as e:
        if e.sent:
            for a in rows:
                a.state = "unknown"
            db.session.commit()
            raise ProlificError(
                f"{e}; the payment of bonus {bulk} may have gone through: run the bonus again, it checks the "
                "submissions before paying anything again"
            ) from None
        raise ProlificError(f"{e}; bonus {bulk} is set up, not paid: run the bonus again to pay it") from None
    _mark(rows, "done", actor, study, bulk)


def _paid_already(api: Client, rows: list[ProlificAction]) -> bool:
    """Whether Prolific shows these bonuses as paid (the submissions' ``bonus_payments``, in cents)."""
    for a in rows:
        got = api.call("GET", f"submissions/{a.submission_id}/")
        cents = int(Decimal(a.detail["amount"]) * 100)
        if cents not in [int(x) for x in (got.get("bonus_payments") or [])]:
            return False
    return True


def _mark(rows: list[ProlificAction], state: str, actor: str, study: Study, bulk: str) -> None:
    for a in rows:
        a.state = state
    audit(actor, "prolific-bonus-paid", study.slug, bulk=bulk, submissions=len(rows), amount=rows[0].detail["amount"])
    db.session.commit()


def overview(study: Study) -> dict[str, Any] | None:
    """What the admin page and ``prolific status`` show (no call to Prolific)."""
    link = link_of(study)
    if link is None:
        return None
    counts: dict[str, int] = {}
    for a in _done(link).values():
        key = f"{a.kind}-{a.state}" if a.state != "done" else a.kind
        counts[key] = counts.get(key, 0) + 1
    return {
        "prolific_id": link.prolific_id,
        "status": link.status,
        "internal_name": link.internal_name,
        "reward": f"{Decimal(link.reward_cents) / 100:.2f}",
        "currency": link.currency,
        "minutes": link.minutes,
        "places": link.places,
        "screened_out_code": link.screened_out_code,
        "policy": link.exclusion_policy,
        "done": counts,
    }
