"""The participant's pages: entry, consent, about you, instructions, the trial page, completion.

Entry ``/s/<slug>`` takes Prolific's ``PROLIFIC_PID`` / ``STUDY_ID`` / ``SESSION_ID``,
MTurk's ``workerId`` / ``assignmentId`` / ``hitId`` / ``turkSubmitTo``, or nothing (an
anonymous id kept in the session cookie, when the study allows it). One participation
per recruiting id: coming back resumes an unfinished one, a finished one is told so
politely (MTurk preview shows a preview page only). Every page after the entry checks
the participant's status and redirects to the page they belong on, so a reload or a
browser restart lands where they left off.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlencode
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import IntegerField
from wtforms import SelectChoice
from wtforms import SelectField
from wtforms import SubmitField
from wtforms.validators import InputRequired
from wtforms.validators import NumberRange

from .access import bind
from .access import get_study
from .access import session_participant
from .access import stage_url
from .design import DECEITFULNESS
from .design import NATURALNESS
from .extensions import db
from .models import Participant
from .models import ProlificLink
from .models import Study
from .models import utcnow
from .settings import TAKING
from .studies import enrol
from .studies import find_participant
from .studies import new_participant
from .studies import study_blocks

bp = Blueprint("participant", __name__)

RECRUIT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
MTURK_HOSTS = ("www.mturk.com", "workersandbox.mturk.com")
PROLIFIC_APP = "https://app.prolific.com"
"""Where Prolific participants hand their code back (``PROLIFIC_APP_URL`` overrides it, for tests)."""


class ConsentForm(FlaskForm):
    agree = SubmitField("I agree to take part")
    decline = SubmitField("I do not agree")


class AboutForm(FlaskForm):
    age = IntegerField(
        "Your age in years",
        validators=[
            InputRequired("Please enter your age."),
            NumberRange(18, 100, "Please enter an age between 18 and 100 (the study is for adults)."),
        ],
    )
    gender = SelectField(
        "Gender (optional)",
        default="",
        choices=[
            SelectChoice("", "Prefer not to say"),
            SelectChoice("woman", "Woman"),
            SelectChoice("man", "Man"),
            SelectChoice("non-binary", "Non-binary"),
            SelectChoice("other", "Another gender"),
        ],
    )
    vision = SelectField(
        "Is your vision normal or corrected to normal (glasses, lenses)? (optional)",
        default="",
        choices=[SelectChoice("", "Prefer not to say"), SelectChoice("yes", "Yes"), SelectChoice("no", "No")],
    )
    submit = SubmitField("Continue")


class StartForm(FlaskForm):
    submit = SubmitField("Start")


def _message(title: str, text: str, status: int = 200, **extra: Any) -> tuple[str, int]:
    return render_template("participant/message.html", title=title, text=text, **extra), status


def _recruit(args: Any) -> tuple[str, str, dict[str, str]] | None:
    """``(platform, recruiting id, extra ids)`` from the entry URL; None for an anonymous entry; 400 if malformed."""
    if args.get("PROLIFIC_PID"):
        platform, rid, keys = "prolific", args["PROLIFIC_PID"], ("STUDY_ID", "SESSION_ID")
    elif args.get("workerId"):
        platform, rid, keys = "mturk", args["workerId"], ("assignmentId", "hitId", "turkSubmitTo")
    else:
        return None
    info = {k: args[k] for k in keys if args.get(k)}
    bad = not RECRUIT_ID.match(rid) or any(len(v) > 256 for v in info.values())
    submit_to = info.get("turkSubmitTo")
    if submit_to is not None:
        parts = urlsplit(submit_to)
        bad = bad or parts.scheme != "https" or parts.hostname not in MTURK_HOSTS
    if bad:
        abort(400)
    return platform, rid, info


def _require(slug: str, status: str) -> tuple[Study, Participant] | Response:
    """The study and this browser's participant at ``status``; else a redirect to their page or a 403 page."""
    study = get_study(slug)
    p = session_participant(study)
    if p is None:
        return make_response(_expired())
    if p.status != status:
        return redirect(stage_url(p))
    return study, p


def _expired() -> tuple[str, int]:
    return _message(
        "Session not found",
        "We could not find your session. If you came from Prolific or MTurk, "
        "please open the study link there again; your progress is kept.",
        403,
    )


@bp.get("/")
def index() -> tuple[str, int]:
    """A neutral landing page."""
    return _message("Study server", "This server runs research studies. Please use the link you were given.")


@bp.get("/s/<slug>")
def entry(slug: str) -> Any:
    """Enter a study from a recruiting platform's link (or anonymously)."""
    study = get_study(slug)
    if request.args.get("assignmentId") == MTURK_PREVIEW:
        return render_template("participant/preview.html", study=study)
    recruit = _recruit(request.args)
    if recruit is None:
        p = session_participant(study)
        if p is not None:
            return redirect(stage_url(p))
        if not study.allow_anonymous:
            return _message(
                "Link incomplete",
                "This link is missing the id from the recruiting platform. "
                "Please open the study from Prolific or MTurk.",
                400,
            )
        recruit = ("anonymous", f"anon-{secrets.token_hex(8)}", {})
    else:
        p = find_participant(study, recruit[0], recruit[1])
        if p is not None:
            if p.status in ("completed", "declined"):
                return render_template("participant/already.html", study=study, participant=p), 200
            bind(study, p)
            return redirect(stage_url(p))
    if study.status not in TAKING:
        return _message("Study closed", "This study is not taking new participants. Thank you for your interest.", 410)
    if recruit[0] == "mturk" and request.headers.get("Sec-Fetch-Dest") == "iframe":
        # cookies are not kept inside MTurk's frame: continue in a window of its own
        return render_template(
            "participant/new_window.html", url=url_for(".entry", slug=slug) + "?" + urlencode(request.args)
        )
    p = new_participant(study, *recruit)
    bind(study, p)
    return redirect(stage_url(p))


@bp.route("/s/<slug>/consent", methods=["GET", "POST"])
def consent(slug: str) -> Any:
    """Consent: agreeing enrols (the whole trial sequence is decided now); declining ends politely."""
    got = _require(slug, "consent")
    if not isinstance(got, tuple):
        return got
    study, p = got
    form = ConsentForm()
    if form.validate_on_submit():
        if form.decline.data:
            p.status = "declined"
            db.session.commit()
            return redirect(url_for(".declined", slug=slug))
        enrol(p)
        return redirect(stage_url(p))
    return render_template("participant/consent.html", study=study, form=form)


@bp.get("/s/<slug>/declined")
def declined(slug: str) -> Any:
    """After declining consent."""
    got = _require(slug, "declined")
    if not isinstance(got, tuple):
        return got
    study, p = got
    return render_template("participant/declined.html", study=study, participant=p)


@bp.route("/s/<slug>/about", methods=["GET", "POST"])
def about(slug: str) -> Any:
    """Age (required: the paper reports ages) and optional demographics."""
    got = _require(slug, "about")
    if not isinstance(got, tuple):
        return got
    study, p = got
    form = AboutForm()
    if form.validate_on_submit():
        p.age = form.age.data
        p.demographics = {k: v for k, v in (("gender", form.gender.data), ("vision", form.vision.data)) if v}
        p.status = "instructions"
        db.session.commit()
        return redirect(stage_url(p))
    status = 400 if form.errors else 200
    return render_template("participant/about.html", study=study, form=form), status


@bp.route("/s/<slug>/instructions", methods=["GET", "POST"])
def instructions(slug: str) -> Any:
    """What to do, the keys, and the practice trials to come; in a combined session, before every block."""
    got = _require(slug, "instructions")
    if not isinstance(got, tuple):
        return got
    study, p = got
    form = StartForm()
    if form.validate_on_submit():
        p.status = "trials"
        if p.started_at is None:
            p.started_at = utcnow()
        db.session.commit()
        return redirect(stage_url(p))
    blocks = study_blocks(study)
    block = blocks[min(p.block, len(blocks) - 1)]
    template = {DECEITFULNESS: "deceitfulness", NATURALNESS: "naturalness"}.get(
        block.study_type, "indistinguishability"
    )
    return render_template(
        f"participant/instructions_{template}.html",
        study=study,
        form=form,
        block=block,
        part=p.block + 1,
        parts=len(blocks),
    )


@bp.get("/s/<slug>/trials")
def trials(slug: str) -> Any:
    """The trial page: a shell; trial.js asks the API for the current trial."""
    got = _require(slug, "trials")
    if not isinstance(got, tuple):
        return got
    study, p = got
    return render_template("participant/trials.html", study=study)


@bp.get("/s/<slug>/done")
def done(slug: str) -> Any:
    """Completion: shown only once the last answer is stored (the status says so)."""
    got = _require(slug, "completed")
    if not isinstance(got, tuple):
        return got
    study, p = got
    return render_template("participant/done.html", study=study, participant=p, **completion(study, p))


def completion(study: Study, p: Participant) -> dict[str, Any]:
    """How to hand the participant back: Prolific redirect URL, MTurk submit form, or just the code."""
    code = study.completion_code
    if p.platform == "prolific" and code and study.prolific_redirect:
        if p.excluded:  # a study run through Prolific's API has a code for those the screening excluded
            link = db.session.execute(
                select(ProlificLink).where(ProlificLink.study_pk == study.id)
            ).scalar_one_or_none()
            code = link.screened_out_code if link is not None else code
        app = (current_app.config.get("PROLIFIC_APP_URL") or PROLIFIC_APP).rstrip("/")
        return {"code": code, "prolific_url": f"{app}/submissions/complete?{urlencode({'cc': code})}"}
    if p.platform == "mturk" and p.recruit_info.get("assignmentId"):
        base = p.recruit_info.get("turkSubmitTo") or "https://www.mturk.com"
        return {
            "code": code,
            "mturk_submit": base.rstrip("/") + "/mturk/externalSubmit",
            "assignment_id": p.recruit_info["assignmentId"],
        }
    return {"code": code}
