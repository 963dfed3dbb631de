"""The researchers' pages, ``/admin``: sign-in, batch import, study set-up, live dashboards, export, withdrawal.

Every route but ``/admin/login`` needs a signed-in researcher (:func:`require_login`
runs before each of them): a page asked for without one redirects to the sign-in page,
anything else (a form sent, the dashboard's JSON) is answered 401. Accounts come from
``flask --app study_server create-researcher``; the sign-in is rate limited
(:mod:`study_server.accounts`).

Routes:

* ``/admin/`` - the studies (with their counts) and the batches;
* ``/admin/batches`` - import a stimulus batch from a folder on the server (under
  ``BATCH_ROOTS``; the batches found there are listed with an import button);
* ``/admin/studies/new`` - create a study (one design, or a combined session of blocks);
* ``/admin/studies/<slug>`` - the live dashboard, refreshed from ``.../live.json``;
* ``/admin/studies/<slug>/status`` - open or close it (POST);
* ``/admin/studies/<slug>/export.csv`` / ``.json`` - the responses, one row per trial;
* ``/admin/studies/<slug>/participants`` - the participants, searchable by id;
* ``/admin/studies/<slug>/participants/<id>/withdraw`` - delete one participant's data
  after typing their id to confirm;
* ``/admin/log`` - the audit log (imports, studies, status changes, exports, withdrawals).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import g
from flask import jsonify
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import send_file
from flask import session
from flask import url_for
from flask_wtf import FlaskForm
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from wtforms import BooleanField
from wtforms import EmailField
from wtforms import FloatField
from wtforms import HiddenField
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import SelectChoice
from wtforms import SelectField
from wtforms import StringField
from wtforms import SubmitField
from wtforms import TextAreaField
from wtforms.validators import InputRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional

from stimuli.batch import BatchError
from stimuli.errors import DataError
from stimuli.paths import data_root

from . import design
from . import prolific
from .accounts import LoginRefused
from .accounts import authenticate
from .accounts import session_fingerprint
from .dashboard import charts
from .dashboard import participant_counts
from .dashboard import quality_flags
from .dashboard import summary
from .export import FORMATS
from .export import export_csv
from .export import export_json
from .extensions import db
from .media import MIMETYPES
from .media import stimulus_file
from .models import AuditEvent
from .models import Batch
from .models import Participant
from .models import Researcher
from .models import Response as ResponseRow
from .models import Stimulus
from .models import Study
from .settings import BLOCK_SETTINGS
from .settings import STATUSES
from .settings import block_fields
from .settings import paper_default
from .settings import spec
from .settings import study_fields
from .studies import StudyConfigError
from .studies import audit
from .studies import create_study
from .studies import import_batch_result
from .studies import preview as preview_trials
from .studies import study_blocks
from .studies import withdraw as withdraw_participant
from .study_file import study_file_text

bp = Blueprint("admin", __name__, url_prefix="/admin")

PUBLIC = {"admin.login"}
"""Endpoints that do not need a signed-in researcher."""
ADMIN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DESIGN_LABELS = {
    design.DECEITFULNESS: "Deceitfulness (which label?)",
    design.NATURALNESS: "Naturalness (which looks more natural?)",
    design.INDISTINGUISHABILITY: "Indistinguishability (changed or not?)",
    design.COMBINED: "Combined session: the designs in blocks",
}


# ---- who is signed in ----------------------------------------------------------------------------
def current_researcher() -> Researcher | None:
    """The researcher this session is signed in as (None if none, expired, or the password changed since)."""
    info = session.get("researcher")
    if not isinstance(info, dict) or not isinstance(info.get("id"), int):
        return None
    if time.time() - float(info.get("at") or 0) > float(current_app.config["ADMIN_SESSION_HOURS"]) * 3600:
        return None
    r = db.session.get(Researcher, info["id"])
    if r is None or info.get("fp") != session_fingerprint(r):
        return None
    return r


@bp.before_request
def require_login() -> Any:
    """Every admin route but the sign-in page needs a signed-in researcher."""
    if request.endpoint in PUBLIC:
        return None
    r = current_researcher()
    if r is None:
        if request.path.endswith(".json"):
            return jsonify(error="not signed in"), 401
        if request.method == "GET":
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
        return render_template(
            "admin/message.html", title="Signed out", text="Your sign-in has expired. Please sign in again."
        ), 401
    g.researcher = r
    return None


@bp.after_request
def admin_headers(response: Response) -> Response:
    """No framing of researcher pages (participants' pages may sit in MTurk's frame; these never)."""
    response.headers["Content-Security-Policy"] = ADMIN_CSP
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _safe_next(target: str | None) -> str | None:
    """Only a path on this server's /admin (no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin") or target.startswith("//"):
        return None
    return target


def _actor() -> str:
    return g.researcher.email


# ---- sign-in -------------------------------------------------------------------------------------
class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired("Please enter your email."), Length(max=254)])
    password = PasswordField("Password", validators=[InputRequired("Please enter your password."), Length(max=1024)])
    submit = SubmitField("Sign in")


class LogoutForm(FlaskForm):
    submit = SubmitField("Sign out")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Sign in (rate limited: too many failures answer 429 with the minutes to wait)."""
    if request.method == "GET" and current_researcher() is not None:
        return redirect(url_for(".index"))
    form = LoginForm()
    status = 200
    retry_after = None
    if form.validate_on_submit():
        try:
            r = authenticate(form.email.data or "", form.password.data or "", request.remote_addr or "")
        except LoginRefused as e:
            flash(e.message, "error")
            status, retry_after = e.status, e.retry_after_s
        else:
            session.clear()  # a fresh session (and CSRF token) for the signed-in researcher
            session["researcher"] = {"id": r.id, "fp": session_fingerprint(r), "at": time.time()}
            session.permanent = True
            current_app.logger.info("admin sign-in: %s from %s", r.email, request.remote_addr)
            return redirect(_safe_next(request.args.get("next")) or url_for(".index"))
    elif form.is_submitted():
        status = 400
    rv = make_response(render_template("admin/login.html", form=form), status)
    if retry_after:
        rv.headers["Retry-After"] = str(retry_after)
    return rv


@bp.post("/logout")
def logout() -> Any:
    """Sign out."""
    session.pop("researcher", None)
    flash("You are signed out.", "ok")
    return redirect(url_for(".login"))


@bp.context_processor
def admin_context() -> dict[str, Any]:
    return {"logout_form": LogoutForm(), "researcher": g.get("researcher"), "design_labels": DESIGN_LABELS}


# ---- overview ------------------------------------------------------------------------------------
@bp.get("/")
def index() -> Any:
    """The studies with their counts, and the imported batches."""
    studies = list(db.session.execute(select(Study).order_by(Study.created_at.desc(), Study.id.desc())).scalars())
    counts = {s.id: participant_counts(s) for s in studies}
    batches = list(db.session.execute(select(Batch).order_by(Batch.imported_at.desc())).scalars())
    return render_template("admin/index.html", studies=studies, counts=counts, batches=batches)


# ---- batches -------------------------------------------------------------------------------------
class ImportForm(FlaskForm):
    path = StringField(
        "Batch folder on the server", validators=[InputRequired("Please give the batch's folder."), Length(max=1024)]
    )
    decode = BooleanField("Decode every video while checking (slower, thorough)", default=True)
    submit = SubmitField("Import")


def batch_roots() -> list[Path]:
    """The folders the import form may read batches from (``BATCH_ROOTS``, default ``<data root>/batches``)."""
    roots = current_app.config.get("BATCH_ROOTS") or [data_root() / "batches"]
    if isinstance(roots, (str, Path)):
        roots = [roots]
    return [Path(r).expanduser().resolve() for r in roots]


def _outside_roots(path: Path) -> str | None:
    roots = batch_roots()
    if any(path == r or r in path.parents for r in roots):
        return None
    return (
        f"{path} is outside the folders batches may be imported from here ({', '.join(map(str, roots))}); "
        f"use `flask --app study_server import-batch {path}` on the server instead"
    )


def _candidates(imported: dict[str, Batch]) -> list[dict[str, Any]]:
    """Batch folders (with a manifest.json) at most two levels below the roots."""
    found = []
    for root in batch_roots():
        if not root.is_dir():
            continue
        for manifest in sorted(
            [*root.glob("manifest.json"), *root.glob("*/manifest.json"), *root.glob("*/*/manifest.json")]
        ):
            folder = manifest.parent
            found.append({"path": str(folder), "imported": imported.get(str(folder))})
    return found[:200]


@bp.route("/batches", methods=["GET", "POST"])
def batches() -> Any:
    """Import a stimulus batch: validated against its manifest and hashes, in one transaction, idempotent."""
    form = ImportForm()
    status = 200
    problems: list[str] = []
    if form.validate_on_submit():
        path = Path((form.path.data or "").strip()).expanduser().resolve()
        error = _outside_roots(path)
        result = None
        if error is None:
            try:
                result = import_batch_result(path, decode=bool(form.decode.data))
            except BatchError as e:
                error = f"Not imported: {path} is not a valid stimulus batch ({len(e.problems)} problem(s) below)."
                problems = [str(p) for p in e.problems[:100]]
            except DataError as e:
                error = f"Not imported: {e}"
        if result is not None:
            if result.created or result.moved:
                audit(_actor(), "import-batch", None, **result.to_dict())
                db.session.commit()
            flash(result.message[0].upper() + result.message[1:] + ".", "ok")
            return redirect(url_for(".batches"))
        flash(error or "Not imported.", "error")
        status = 400
    elif form.is_submitted():
        status = 400
    rows = list(db.session.execute(select(Batch).order_by(Batch.imported_at.desc())).scalars())
    imported = {b.root: b for b in rows}
    return render_template(
        "admin/batches.html",
        form=form,
        batches=rows,
        candidates=_candidates(imported),
        roots=batch_roots(),
        problems=problems,
    ), status


# ---- creating a study ----------------------------------------------------------------------------
def _form_field(f: Any, label: str, default: Any) -> Any:
    """The form field of setting ``f`` (its type, range and optionality from its :class:`Spec`)."""
    s = spec(f)
    checks: list[Any] = [Optional()] if s.optional else [InputRequired(f"Please give {label.lower()}.")]
    if s.type is bool:
        return BooleanField(label, default=default)
    if s.choices:
        return SelectField(label, choices=[SelectChoice(c, c.capitalize()) for c in s.choices], default=default)
    if s.type in (int, float):
        lo, hi = s.lo, s.hi
        what = "a whole number" if s.type is int else "a number"
        span = f" from {lo:g} to {hi:g}." if hi is not None else f" of at least {lo:g}."
        checks.append(NumberRange(lo, hi, f"{label} must be {what}{span}"))
        return (IntegerField if s.type is int else FloatField)(label, default=default, validators=checks)
    if s.type is tuple:
        return StringField(label, default=",".join(default), validators=[*checks, Length(max=200)])
    if s.max_length and s.max_length > 200:
        return TextAreaField(label, default=default, validators=[Optional(), Length(max=s.max_length)])
    return StringField(label, default=default, validators=[Optional(), Length(max=s.max_length or 200)])


DESIGN_NAMES = {k: k.capitalize() for k in design.STUDY_TYPES}


class StudyForm(FlaskForm):
    """The new-study form: the study's identity, then every setting of :mod:`study_server.settings`, the block
    settings once per design (``deceitfulness_trials``, ...)."""

    slug = StringField(
        "Study link name (participants open /s/NAME)",
        validators=[InputRequired("Please give the link name."), Length(max=64)],
    )
    batch = SelectField("Stimulus batch", validate_choice=False)
    study_type = SelectField(
        "Design", choices=[SelectChoice(k, v) for k, v in DESIGN_LABELS.items()], default=design.INDISTINGUISHABILITY
    )
    order = StringField(
        "Blocks of a combined session, in order (comma-separated designs)",
        default=",".join(design.STUDY_TYPES),
        validators=[Length(max=200)],
    )
    submit = SubmitField("Create the study")


BLOCK_FORM = {kind: [f for f in block_fields() if kind in spec(f).designs] for kind in design.STUDY_TYPES}
"""The block settings the form asks for, per design (in the order they are declared)."""


def _add_setting_fields() -> None:
    for kind, settings in BLOCK_FORM.items():
        for f in settings:
            label = f"{DESIGN_NAMES[kind]} {spec(f).label}"
            setattr(StudyForm, f"{kind}_{f.name}", _form_field(f, label, paper_default(f, kind)))
    for f in study_fields():
        setattr(StudyForm, f.name, _form_field(f, spec(f).label, f.default))


_add_setting_fields()
FORM_SECTIONS = [
    *((DESIGN_NAMES[k], k, [(f"{k}_{f.name}", spec(f).help) for f in fs]) for k, fs in BLOCK_FORM.items()),
    ("Screening, running and recruiting", None, [(f.name, spec(f).help) for f in study_fields() if f.name != "title"]),
]
"""What the new-study page shows: per fieldset, its legend, its design (None: every design) and each field's
name and hint."""


def _variants(text: str | None) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


def _value(f: Any, data: Any) -> Any:
    """A submitted value as create_study takes it: names as a list, blank text as None."""
    if spec(f).type is tuple:
        return _variants(data)
    if isinstance(data, str):
        return data.strip() or None
    return data


def _block_settings(form: StudyForm, kind: str) -> dict[str, Any]:
    return {f.name: _value(f, form[f"{kind}_{f.name}"].data) for f in BLOCK_FORM[kind]}


def _order(form: StudyForm) -> list[str]:
    """The blocks of a combined session; errors go on the ``order`` field."""
    names = _variants(form.order.data)
    bad = [n for n in names if n not in design.STUDY_TYPES]
    if not names or bad or len(set(names)) != len(names):
        raise StudyConfigError(
            f"give each design at most once, separated by commas, from "
            f"{', '.join(design.STUDY_TYPES)}" + (f" (unknown: {', '.join(bad)})" if bad else ""),
            "order",
        )
    return names


def _create_from(form: StudyForm) -> tuple[Study, list[str]]:
    """Create the study the form describes; :class:`StudyConfigError` names the setting at fault."""
    kind = form.study_type.data
    kwargs: dict[str, Any] = {f.name: _value(f, form[f.name].data) for f in study_fields()}
    if kind == design.COMBINED:
        order = _order(form)
        kwargs["blocks"] = [{"study_type": k, **_block_settings(form, k)} for k in order]
    else:
        order = [kind]
        kwargs.update(_block_settings(form, kind))
    batch = db.session.execute(select(Batch).where(Batch.batch_id == form.batch.data)).scalar_one_or_none()
    if batch is None:
        raise StudyConfigError("please choose an imported batch", "batch")
    return create_study((form.slug.data or "").strip(), batch, kind, **kwargs), order


def _field_for(form: StudyForm, e: StudyConfigError, order: list[str]) -> Any:
    if e.field is None:
        return None
    kind = form.study_type.data if e.block is None or e.block >= len(order) else order[e.block]
    name = e.field
    if name in BLOCK_SETTINGS:
        name = f"{kind}_{name}"
    elif name == "blocks" or (name == "study_type" and e.block is not None):
        name = "order"
    return form._fields.get(name)


@bp.route("/studies/new", methods=["GET", "POST"])
def new_study() -> Any:
    """Create a study from an imported batch (every setting checked, with a message on the field at fault)."""
    form = StudyForm()
    batches = list(db.session.execute(select(Batch).order_by(Batch.imported_at.desc())).scalars())
    form.batch.choices = [
        SelectChoice(b.batch_id, f"{b.batch_id} ({b.n_items} motions; {b.dataset or '?'}, {b.model or '?'})")
        for b in batches
    ]
    if request.method == "GET" and request.args.get("batch"):
        form.batch.data = request.args["batch"]
    status = 200
    if not batches:
        flash("Import a stimulus batch first.", "error")
    if form.validate_on_submit():
        order = _variants(form.order.data) if form.study_type.data == design.COMBINED else [form.study_type.data]
        try:
            study, order = _create_from(form)
        except StudyConfigError as e:
            db.session.rollback()
            field = _field_for(form, e, order)
            message = str(e)
            if field is not None:
                field.errors = [*field.errors, message[0].upper() + message[1:] + "."]
            flash("The study was not created: " + message + ".", "error")
            status = 400
        else:
            audit(
                _actor(),
                "create-study",
                study.slug,
                study_type=study.study_type,
                batch=study.batch.batch_id,
                blocks=[b.study_type for b in study_blocks(study)],
            )
            db.session.commit()
            flash(f"Study {study.slug!r} created; participants enter at /s/{study.slug}.", "ok")
            return redirect(url_for(".study", slug=study.slug))
    elif form.is_submitted():
        flash("The study was not created: please correct the fields marked below.", "error")
        status = 400
    return render_template("admin/new_study.html", form=form, has_batches=bool(batches), sections=FORM_SECTIONS), status


# ---- one study -----------------------------------------------------------------------------------
STATUS_WORDS = {
    "open": "open to new participants",
    "pilot": "running as a pilot (its participants are flagged and left out of balancing and the analysis)",
    "closed": "closed to new participants",
}


class StatusForm(FlaskForm):
    status = HiddenField()
    submit = SubmitField()


def _study(slug: str) -> Study:
    return db.first_or_404(select(Study).where(Study.slug == slug), description=f"No study {slug!r}.")


@bp.get("/studies/<slug>")
def study(slug: str) -> Any:
    """The live dashboard of a study."""
    return _dashboard(_study(slug))


def _dashboard(s: Study, prolific_form: Any = None) -> Any:
    form = StatusForm()
    entry = url_for("participant.entry", slug=s.slug, _external=True)
    data = summary(s)
    return render_template(
        "admin/study.html",
        study=s,
        data=data,
        charts=charts(s, data),
        status_form=form,
        entry=entry,
        blocks=study_blocks(s),
        flags=quality_flags(s),
        **_prolific_forms(s, prolific_form),
    )


@bp.get("/studies/<slug>/live.json")
def live(slug: str) -> Any:
    """The dashboard's figures (polled by admin.js every few seconds)."""
    return jsonify(summary(_study(slug)))


@bp.post("/studies/<slug>/status")
def set_status(slug: str) -> Any:
    """Open or close a study to new participants (those already in it can finish)."""
    s = _study(slug)
    form = StatusForm()
    if not form.validate_on_submit() or form.status.data not in STATUSES:
        flash("Status must be open, pilot or closed.", "error")
        return redirect(url_for(".study", slug=slug))
    if s.status != form.status.data:
        s.status = form.status.data
        audit(_actor(), "set-status", s.slug, status=s.status)
        db.session.commit()
    flash(f"Study {slug!r} is {STATUS_WORDS[s.status]}.", "ok")
    return redirect(url_for(".study", slug=slug))


# ---- Prolific ------------------------------------------------------------------------------------
class ProlificForm(FlaskForm):
    """Create the study on Prolific (see :func:`study_server.prolific.create`)."""

    server_url = StringField("This server's public URL", validators=[InputRequired(), Length(max=300)])
    reward = StringField("Reward per participant", validators=[InputRequired(), Length(max=12)])
    currency = SelectField("Currency", choices=[SelectChoice(c, c) for c in sorted(prolific.MIN_HOURLY)])
    minutes = IntegerField("Estimated minutes", validators=[InputRequired(), NumberRange(min=1, max=600)])
    places = IntegerField("Places", validators=[InputRequired(), NumberRange(min=1, max=100000)])
    policy = SelectField(
        "Excluded participants",
        choices=[
            SelectChoice("approve", "Approve (paid), flagged in the data"),
            SelectChoice("return", "Ask them to return, with the reason"),
        ],
    )
    submit = SubmitField("Create the study on Prolific (a draft)")


class BonusForm(FlaskForm):
    amount = StringField("Bonus per analysed participant", validators=[InputRequired(), Length(max=12)])
    submit = SubmitField("Pay the bonus")


def _prolific_forms(s: Study, form: ProlificForm | None) -> dict[str, Any]:
    """The dashboard's Prolific forms: creation prefilled (or as the researcher sent it, after an error)."""
    if form is None:
        form = ProlificForm(formdata=None)
        form.server_url.data = request.url_root.rstrip("/")
        form.minutes.data = prolific.estimated_minutes(s)
        form.places.data = s.target_participants
    return {"prolific_form": form, "bonus_form": BonusForm(formdata=None), "prolific": prolific.overview(s)}


@bp.post("/studies/<slug>/prolific/<verb>")
def prolific_action(slug: str, verb: str) -> Any:
    """One Prolific step from the dashboard: create, publish / pause / resume, review, bonus."""
    s = _study(slug)
    actor = _actor()
    if verb == "create":  # an error shows the form again as sent
        form = ProlificForm()
        try:
            if not form.validate_on_submit():
                fields = "; ".join(f"{form[k].label.text}: {' '.join(v)}" for k, v in form.errors.items())
                raise prolific.ProlificError(f"not created: {fields}")
            link = prolific.create(
                s,
                base_url=form.server_url.data,
                reward=form.reward.data,
                minutes=form.minutes.data,
                currency=form.currency.data,
                places=form.places.data,
                policy=form.policy.data,
                actor=actor,
            )
        except prolific.ProlificError as e:
            db.session.rollback()
            flash(f"Prolific: {e}.", "error")
            return _dashboard(s, form), 400
        flash(f"Created on Prolific as a draft: study {link.prolific_id}.", "ok")
        return redirect(url_for(".study", slug=slug) + "#prolific")
    try:
        if not StatusForm().validate_on_submit() and verb != "bonus":
            raise prolific.ProlificError("the form expired: reload the page and try again")
        elif verb in prolific.TRANSITIONS:
            flash(f"On Prolific the study is now {prolific.transition(s, verb, actor)}.", "ok")
        elif verb == "review":
            flash("Review: " + prolific.review(s, actor).text() + ".", "ok")
        elif verb == "bonus":
            form = BonusForm()
            if not form.validate_on_submit():
                raise prolific.ProlificError("give the bonus as an amount, e.g. 0.50")
            got = prolific.bonus(s, form.amount.data, actor)
            text = f"Bonuses: paid {got['paid']}, {got['earlier']} paid before, {got['checked']} confirmed as paid."
            if got["unconfirmed"]:
                text += f" Not confirmed: {', '.join(got['unconfirmed'])} (look on Prolific; the CLI can pay again)."
            flash(text, "ok")
        else:
            abort(404)
    except prolific.ProlificError as e:
        db.session.rollback()
        flash(f"Prolific: {e}.", "error")
    return redirect(url_for(".study", slug=slug) + "#prolific")


@bp.get("/studies/<slug>/export.<fmt>")
def export(slug: str, fmt: str) -> Any:
    """Download the responses (one row per trial, the columns of ``stimuli.responses``) as CSV or JSON."""
    s = _study(slug)
    if fmt not in FORMATS:
        return render_template(
            "admin/message.html", title="Unknown format", text=f"Export as {' or '.join(FORMATS)}."
        ), 404
    body = export_csv(s) if fmt == "csv" else export_json(s)
    audit(_actor(), "export", s.slug, format=fmt)
    db.session.commit()
    rv = Response(body, mimetype="text/csv" if fmt == "csv" else "application/json")
    rv.headers["Content-Disposition"] = f'attachment; filename="{s.slug}-responses.{fmt}"'
    rv.headers["Cache-Control"] = "no-store"
    return rv


@bp.get("/studies/<slug>/preview")
def preview(slug: str) -> Any:
    """Take the study as a participant would see it, trial by trial (``?trial=N``, ``?seed=S``), with each
    trial's condition shown to the researcher; nothing is recorded and balancing is untouched."""
    s = _study(slug)
    seed = request.args.get("seed", default=1, type=int)
    trials = preview_trials(s, seed)
    index = min(max(request.args.get("trial", default=0, type=int), 0), len(trials) - 1)
    return render_template("admin/preview.html", study=s, trials=trials, t=trials[index], seed=seed)


@bp.get("/studies/<slug>/preview/media/<int:stimulus_pk>.<kind>")
def preview_media(slug: str, stimulus_pk: int, kind: str) -> Any:
    """A video or poster of the study's batch, for the signed-in researcher's preview."""
    s = _study(slug)
    stim = db.session.get(Stimulus, stimulus_pk)
    media = {"mp4": "video", "png": "poster"}.get(kind)
    if stim is None or stim.batch_pk != s.batch_pk or media is None:
        abort(404)
    return send_file(stimulus_file(stim, media), mimetype=MIMETYPES[media], conditional=True)


@bp.get("/studies/<slug>/study.toml")
def study_file(slug: str) -> Any:
    """Download the study file: every setting, as ``export-study`` writes it (``create-study --from`` reads it)."""
    s = _study(slug)
    rv = Response(study_file_text(s), mimetype="application/toml")
    rv.headers["Content-Disposition"] = f'attachment; filename="{s.slug}-study.toml"'
    rv.headers["Cache-Control"] = "no-store"
    return rv


@bp.get("/studies/<slug>/participants")
def participants(slug: str) -> Any:
    """The participants (newest first, at most 200), or those whose participant or recruiting id matches ``q``."""
    s = _study(slug)
    q = (request.args.get("q") or "").strip()[:128]
    query = select(Participant).where(Participant.study_pk == s.id)
    if q:
        query = query.where(or_(Participant.public_id == q, Participant.recruit_id == q))
    rows = list(
        db.session.execute(query.order_by(Participant.created_at.desc(), Participant.id.desc()).limit(200)).scalars()
    )
    answers = (
        dict(
            db.session.execute(
                select(ResponseRow.participant_pk, func.count())
                .where(ResponseRow.participant_pk.in_([p.id for p in rows]), ResponseRow.valid.is_(True))
                .group_by(ResponseRow.participant_pk)
            ).all()
        )
        if rows
        else {}
    )
    return render_template(
        "admin/participants.html",
        study=s,
        participants=rows,
        answers=answers,
        q=q,
        flags=quality_flags(s, [p.id for p in rows]) if rows else {},
    )


class WithdrawForm(FlaskForm):
    confirm = StringField(
        "Type the participant id to confirm", validators=[InputRequired("Type the id to confirm."), Length(max=64)]
    )
    submit = SubmitField("Delete this participant's data")


@bp.route("/studies/<slug>/participants/<pid>/withdraw", methods=["GET", "POST"])
def withdraw(slug: str, pid: str) -> Any:
    """Withdraw a participant: every record of them deleted in one transaction, after confirmation; logged."""
    s = _study(slug)
    p = db.first_or_404(
        select(Participant).where(Participant.study_pk == s.id, Participant.public_id == pid),
        description=f"No participant {pid!r} in study {slug!r}.",
    )
    form = WithdrawForm()
    status = 200
    if form.validate_on_submit():
        if (form.confirm.data or "").strip() == p.public_id:
            done = withdraw_participant(p, _actor())
            flash(
                f"Participant {done['participant']} withdrawn: {done['responses']} answers and {done['trials']} "
                f"trials deleted.",
                "ok",
            )
            return redirect(url_for(".participants", slug=slug))
        form.confirm.errors = [*form.confirm.errors, f"Type {p.public_id} exactly to confirm."]
        status = 400
    elif form.is_submitted():
        status = 400
    n = db.session.execute(
        select(func.count()).select_from(ResponseRow).where(ResponseRow.participant_pk == p.id)
    ).scalar_one()
    return render_template("admin/withdraw.html", study=s, participant=p, form=form, responses=n), status


@bp.get("/log")
def log() -> Any:
    """The audit log, newest first (the last 500 events)."""
    events = list(db.session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(500)).scalars())
    return render_template("admin/log.html", events=events)
