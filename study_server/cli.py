"""Flask CLI commands (``flask --app study_server COMMAND``).

* ``init-demo`` - database, demo batch (built when absent), demo studies, demo researcher;
* ``serve-demo`` - ``init-demo``, then gunicorn on http://127.0.0.1:5000;
* ``create-researcher EMAIL`` - a researcher account for ``/admin``;
* ``import-batch DIR`` - validate and record a stimulus batch (idempotent);
* ``create-study SLUG`` - a study on a batch; ``create-study --from study.toml`` - one from a study file;
* ``export-study SLUG --out study.toml`` - a study's every setting as a study file;
* ``summary SLUG`` - the dashboard's figures; ``set-status SLUG open|closed``;
* ``export SLUG --format csv|json --out FILE`` - the responses, one row per trial;
* ``export-psych-ds [SLUG...] --out DIR`` - the same rows as a Psych-DS dataset;
* ``withdraw SLUG PARTICIPANT`` - delete one participant's data;
* ``prolific create|publish|pause|resume|review|bonus|status SLUG`` - run the study on Prolific through its API
  (see :mod:`study_server.prolific`);

Every command that reports figures takes ``--json`` (one JSON object on stdout).
Errors are one line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import or_
from sqlalchemy import select

from stimuli.batch import BatchError
from stimuli.errors import SmartStudyError
from stimuli.fileio import atomic_write_bytes
from stimuli.paths import data_root
from stimuli.responses import rows_to_csv
from stimuli.responses import rows_to_json

from . import MIGRATIONS
from . import design
from . import prolific
from .accounts import AccountError
from .accounts import create_researcher
from .accounts import new_password
from .dashboard import summary
from .export import FORMATS
from .export import export_psych_ds
from .export import response_rows
from .extensions import db
from .models import Batch
from .models import Participant
from .models import Researcher
from .models import Study
from .settings import STATUSES
from .settings import block_fields
from .settings import spec
from .settings import study_fields
from .studies import StudyConfigError
from .studies import audit
from .studies import create_study
from .studies import import_batch
from .studies import import_batch_result
from .studies import withdraw
from .study_file import StudyFileError
from .study_file import read_study_file
from .study_file import study_file_text

__all__ = [
    "COMMANDS",
    "DEMO_STUDIES",
    "DEMO_EMAIL",
    "DEMO_PASSWORD",
    "init_demo",
    "serve_demo",
    "create_researcher_command",
    "import_batch_command",
    "create_study_command",
    "summary_command",
    "set_status_command",
    "export_command",
    "export_psych_ds_command",
    "withdraw_command",
]

DEMO_STUDIES = (
    (
        "",
        design.INDISTINGUISHABILITY,
        {"trials": 10, "practice_trials": 2, "sensitivity_share": 0.2, "control_share": 0.2, "target_participants": 20},
    ),
    ("-deceitfulness", design.DECEITFULNESS, {"trials": 8, "practice_trials": 1, "target_participants": 20}),
    ("-naturalness", design.NATURALNESS, {"trials": 6, "practice_trials": 1, "target_participants": 20}),
    (
        "-threshold",
        design.INDISTINGUISHABILITY,
        {
            "trials": 12,
            "practice_trials": 1,
            "sensitivity_share": 0.25,
            "control_share": 0.1,
            "variants": ("smart", "l2"),
            "procedure": "adaptive",
            "target_participants": 20,
        },
    ),
)
"""The demo studies: ``/s/demo`` (indistinguishability), one of each other design, and a threshold study
(``/s/demo-threshold``: QUEST+ chooses the strength of SMART and l2 per participant; skipped for a batch without
graded levels), all short."""
DEMO_CODE = "DEMO-COMPLETE"
"""The demo studies' completion code (shown at the end, as a paid study's would be)."""
DEMO_EMAIL = "demo@example.org"
DEMO_PASSWORD = "demo-password"
"""The demo researcher's password in development mode only (elsewhere a random one is printed once)."""


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, default=str) if as_json else text)


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e))


def _upgrade() -> None:
    """Create or update the database schema (idempotent; quick when up to date)."""
    upgrade(directory=str(MIGRATIONS))


def _studies(slugs: tuple[str, ...]) -> list[Study]:
    """The studies named (each once, in order), or every study by slug when none is named."""
    if slugs:
        return [_study(slug) for slug in dict.fromkeys(slugs)]
    return list(db.session.execute(select(Study).order_by(Study.slug)).scalars())


def _study(slug: str) -> Study:
    study = db.session.execute(select(Study).where(Study.slug == slug)).scalar_one_or_none()
    if study is None:
        known = ", ".join(db.session.execute(select(Study.slug).order_by(Study.slug)).scalars()) or "none"
        raise click.ClickException(f"no study {slug!r} (studies: {known})")
    return study


# ---- demo --------------------------------------------------------------------------------------
def _demo_researcher() -> tuple[str, str | None, bool]:
    """The demo account: ``(email, password to print or None, created)``.

    Development mode: the documented fixed password (set again each time, so what is
    printed always works). Otherwise a random password, printed once when the account is
    created.
    """
    dev = current_app.config["STUDY_ENV"] == "development"
    exists = db.session.execute(select(Researcher.id).where(Researcher.email == DEMO_EMAIL)).first() is not None
    if dev:
        create_researcher(DEMO_EMAIL, DEMO_PASSWORD, reset=True)
        return DEMO_EMAIL, DEMO_PASSWORD, not exists
    if exists:
        return DEMO_EMAIL, None, False
    password = new_password()
    create_researcher(DEMO_EMAIL, password)
    return DEMO_EMAIL, password, True


def _init_demo(batch_dir: Path | None, slug: str, base_url: str, decode: bool) -> dict[str, Any]:
    _upgrade()
    if batch_dir is None:
        batch_dir = data_root(create=True) / "batches" / "demo"
        if not (batch_dir / "manifest.json").is_file():
            raise click.ClickException(
                f"no demo batch in {batch_dir}: build it first with `attack-gen batch --demo` "
                "(a few minutes on a CPU), or pass --batch DIR"
            )
    base = base_url.rstrip("/")
    studies = {}
    try:
        batch = import_batch(batch_dir, decode=decode)
        for suffix, study_type, config in DEMO_STUDIES:
            name = f"{slug}{suffix}"
            if db.session.execute(select(Study.id).where(Study.slug == name)).first() is None:
                config = dict(config)
                if study_type == design.NATURALNESS:
                    config["trials"] = 2 * min(config["trials"] // 2, batch.n_items)
                try:
                    create_study(
                        name,
                        batch,
                        study_type,
                        title=f"Demo: {_demo_label(suffix, study_type)}",
                        completion_code=DEMO_CODE,  # so the demo shows the hand-back with a code
                        allow_anonymous=True,  # and anyone can try it without a recruiting id
                        **config,
                    )
                except StudyConfigError as e:
                    if not suffix:
                        raise
                    click.echo(f"skipped {name}: {e}", err=True)
                    continue
            studies[_demo_label(suffix, study_type)] = f"{base}/s/{name}"
        email, password, created = _demo_researcher()
    except SmartStudyError as e:
        raise _fail(e) from None
    return {
        "participant_url": f"{base}/s/{slug}",
        "admin_url": f"{base}/admin/",
        "studies": studies,
        "researcher": {"email": email, "password": password, "created": created},
        "batch": str(batch_dir),
    }


def _demo_label(suffix: str, study_type: str) -> str:
    return "threshold (adaptive)" if suffix == "-threshold" else study_type


def _print_demo(info: dict[str, Any]) -> None:
    for label, url in info["studies"].items():
        click.echo(f"{label:>22}: {url}")
    r = info["researcher"]
    click.echo(f"Participant URL: {info['participant_url']}")
    click.echo(f"Admin URL: {info['admin_url']}")
    if r["password"]:
        click.echo(f"Admin sign-in: {r['email']} / {r['password']}")
    else:
        click.echo(
            f"Admin sign-in: {r['email']} (password printed when the account was created; set a new one "
            f"with `flask --app study_server create-researcher {r['email']} --reset`)"
        )


_DEMO_OPTIONS = [
    click.option(
        "--batch",
        "batch_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Use this stimulus batch (default: <data root>/batches/demo, from `attack-gen batch --demo`).",
    ),
    click.option("--slug", default="demo", show_default=True, help="Slug of the main demo study (/s/SLUG)."),
    click.option(
        "--decode/--no-decode", default=True, show_default=True, help="Decode every video while validating the batch."
    ),
]


def _demo_options(fn: Any) -> Any:
    for option in reversed(_DEMO_OPTIONS):
        fn = option(fn)
    return fn


@click.command("init-demo")
@_demo_options
@click.option("--base-url", default="http://127.0.0.1:5000", show_default=True, help="Server URL to print.")
@click.option("--json", "as_json", is_flag=True, help="Print the URLs and the sign-in as JSON.")
@with_appcontext
def init_demo(batch_dir: Path | None, slug: str, base_url: str, decode: bool, as_json: bool) -> None:
    """Create the database, import the demo stimulus batch (`attack-gen batch --demo` builds it), create the demo
    studies and
    the demo researcher account; print the participant URL, the admin URL and the sign-in."""
    info = _init_demo(batch_dir, slug, base_url, decode)
    if as_json:
        click.echo(json.dumps(info))
    else:
        _print_demo(info)


@click.command("serve-demo")
@_demo_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@with_appcontext
def serve_demo(batch_dir: Path | None, slug: str, decode: bool, host: str, port: int) -> None:
    """Run init-demo, then serve the app with gunicorn on http://HOST:PORT until Ctrl-C.

    Run it in development mode (``STUDY_ENV=development``) for the fixed demo sign-in.
    """
    info = _init_demo(batch_dir, slug, f"http://{host}:{port}", decode)
    db.session.remove()
    db.engine.dispose()
    click.echo(f"Serving the demo study on http://{host}:{port} (gunicorn; Ctrl-C stops it)")
    _print_demo(info)
    sys.stdout.flush()
    sys.stderr.flush()
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:study_server.gunicorn_conf",
        "--bind",
        f"{host}:{port}",
        "study_server:create_app()",
    ]
    os.execv(sys.executable, args)


# ---- accounts ----------------------------------------------------------------------------------
@click.command("create-researcher")
@click.argument("email")
@click.option("--password", default=None, help="The password (at least 10 characters); asked for when absent.")
@click.option("--generate", is_flag=True, help="Generate a random password and print it.")
@click.option("--reset", is_flag=True, help="The account exists: set this new password.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@with_appcontext
def create_researcher_command(email: str, password: str | None, generate: bool, reset: bool, as_json: bool) -> None:
    """Create a researcher account for /admin (the password is stored hashed).

    Without --password or --generate the password is asked for (twice; from a pipe,
    two lines).
    """
    if password is not None and generate:
        raise click.UsageError("give --password or --generate, not both")
    if generate:
        password = new_password()
    elif password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    _upgrade()
    try:
        r, created = create_researcher(email, password or "", reset=reset)
    except AccountError as e:
        raise _fail(e) from None
    data = {"email": r.email, "created": created, **({"password": password} if generate else {})}
    text = f"{'created' if created else 'new password set for'} researcher {r.email}" + (
        f"; password: {password}" if generate else ""
    )
    _emit(as_json, data, text)


# ---- batches and studies -----------------------------------------------------------------------
@click.command("import-batch")
@click.argument("batch_dir", type=click.Path(path_type=Path))
@click.option(
    "--decode/--no-decode",
    default=True,
    show_default=True,
    help="Decode every video while validating (thorough; slower).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@with_appcontext
def import_batch_command(batch_dir: Path, decode: bool, as_json: bool) -> None:
    """Validate a stimulus batch against its manifest and hashes and record it, in one transaction.

    Importing the same batch again changes nothing and says so; an invalid batch is
    refused with every problem listed (on stderr) and exit status 1.
    """
    _upgrade()
    try:
        result = import_batch_result(batch_dir, decode=decode)
    except BatchError as e:
        for p in e.problems[:50]:
            click.echo(f"  {p}", err=True)
        raise click.ClickException(
            f"not imported: {batch_dir} is not a valid stimulus batch ({len(e.problems)} problem(s), listed above)"
        ) from None
    except SmartStudyError as e:
        raise click.ClickException(f"not imported: {e}") from None
    if result.created or result.moved:
        audit("cli", "import-batch", None, **result.to_dict())
        db.session.commit()
    _emit(as_json, result.to_dict(), result.message)


def setting_options(fn: Any) -> Any:
    """One option per setting of :mod:`study_server.settings` (``--trials``, ...), each with its help and
    default; an option not given is passed as None (the setting's default)."""
    for f in reversed((*block_fields(), *study_fields())):
        s = spec(f)
        flag = "--" + (s.cli or f.name.replace("_", "-"))
        default = "the paper's" if s.paper else ("none" if f.default is None else f.default)
        if isinstance(default, tuple):
            default = ", ".join(default)
        text = " ".join(filter(None, [f"{s.label[0].upper()}{s.label[1:]}.", s.help, f"[default: {default}]"]))
        if s.type is bool:
            option = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=text)
        elif s.type is tuple:
            option = click.option(flag, f.name, multiple=True, help=text + " Repeat for several.")
        elif s.choices:
            option = click.option(flag, f.name, type=click.Choice(s.choices), default=None, help=text)
        else:
            option = click.option(flag, f.name, type=s.type, default=None, help=text)
        fn = option(fn)
    return fn


@click.command("create-study")
@click.argument("slug", required=False)
@click.option(
    "--batch",
    "batch_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Stimulus batch folder (imported first; importing again changes nothing). With --from it may be "
    "left out when the file's batch is imported already.",
)
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A study file (export-study): the study it describes, every setting included (SLUG renames it).",
)
@click.option("--type", "study_type", type=click.Choice(design.DESIGNS))
@click.option(
    "--block",
    "blocks",
    multiple=True,
    type=click.Choice(design.STUDY_TYPES),
    help="Combined sessions: a block of this design (repeat, in order; paper defaults per design).",
)
@setting_options
@click.option("--no-decode", is_flag=True, help="Do not decode every video while validating the batch.")
@with_appcontext
def create_study_command(
    slug: str | None,
    batch_dir: Path | None,
    from_file: Path | None,
    study_type: str | None,
    blocks: tuple[str, ...],
    no_decode: bool,
    **config: Any,
) -> None:
    """Import a stimulus batch if needed and create a study on it; prints its entry path.

    Settings not given take their defaults (the paper's); for a combined session, the block settings given
    apply to every block. With --from, the study file says everything (setting options are refused).
    """
    config = {k: v for k, v in config.items() if v is not None and v != ()}
    if from_file is not None:
        if config or blocks or study_type:
            raise click.UsageError("--from takes every setting from the file: give no --type, --block or settings")
        _create_from_file(from_file, slug, batch_dir, not no_decode)
        return
    if slug is None or batch_dir is None or study_type is None:
        raise click.UsageError("create-study needs SLUG, --batch and --type (or --from FILE)")
    if study_type == design.COMBINED:
        if not blocks:
            raise click.UsageError("a combined session needs --block DESIGN (repeat, in order)")
        config["blocks"] = [{"study_type": b} for b in blocks]
    elif blocks:
        raise click.UsageError("--block is for --type combined")
    try:
        batch = import_batch(batch_dir, decode=not no_decode)
        create_study(slug, batch, study_type, **config)
        audit("cli", "create-study", slug, study_type=study_type, batch=batch.batch_id)
        db.session.commit()
    except SmartStudyError as e:
        raise _fail(e) from None
    click.echo(f"/s/{slug}")


def _create_from_file(path: Path, slug: str | None, batch_dir: Path | None, decode: bool) -> None:
    try:
        plan = read_study_file(path)
    except StudyFileError as e:
        raise _fail(e) from None
    try:
        batch: Batch | str = import_batch(batch_dir, decode=decode) if batch_dir is not None else plan.batch_id
    except SmartStudyError as e:
        raise _fail(e) from None
    if isinstance(batch, Batch) and batch.batch_id != plan.batch_id:
        raise click.ClickException(
            f"{plan.where('batch', None)}: the file's batch is {plan.batch_id}, but {batch_dir} holds {batch.batch_id}"
        )
    slug = slug or plan.slug
    try:
        create_study(slug, batch, plan.study_type, **plan.keywords())
    except StudyConfigError as e:
        if e.field == "batch":
            raise click.ClickException(f"{plan.where('batch', None)}: {e} (give --batch DIR to import it)") from None
        raise click.ClickException(f"{plan.where(e.field, e.block)}: {e}") from None
    except SmartStudyError as e:
        raise _fail(e) from None
    audit("cli", "create-study", slug, study_type=plan.study_type, batch=plan.batch_id, study_file=str(path))
    db.session.commit()
    click.echo(f"/s/{slug}")


@click.command("export-study")
@click.argument("slug")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (atomically); default: standard output.",
)
@with_appcontext
def export_study_command(slug: str, out: Path | None) -> None:
    """Write a study's every setting as a study file (TOML), to recreate it with create-study --from."""
    text = study_file_text(_study(slug))
    if out is None:
        click.echo(text, nl=False)
    else:
        atomic_write_bytes(out, text.encode("utf-8"))
        click.echo(f"wrote {out}", err=True)


@click.command("summary")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@with_appcontext
def summary_command(slug: str, as_json: bool) -> None:
    """A study's figures, as on its dashboard: participants, exclusions, duration, playback, balance."""
    data = summary(_study(slug))
    n = data["participants"]
    lines = [
        f"{data['study']} ({data['study_type']}, {data['status']}): started {n['started']}, completed "
        f"{n['completed']}, excluded {n['excluded']}, analysed {n['analysed']}"
        + (f" of {data['target_participants']}" if data["target_participants"] else "")
    ]
    lines += [f"  excluded {e['participants']}: {e['reason']}" for e in data["exclusions"]]
    lines.append(f"  median duration {data['median_duration_s']} s; playback failures {data['playback']['failures']}")
    lines += [
        f"  {c['condition']}: {c['trials']} trials" + (f" of {c['target']}" if c["target"] is not None else "")
        for c in data["conditions"]
    ]
    _emit(as_json, data, "\n".join(lines))


@click.command("set-status")
@click.argument("slug")
@click.argument("status", type=click.Choice(STATUSES))
@with_appcontext
def set_status_command(slug: str, status: str) -> None:
    """Open a study to new participants, run it as a pilot (its participants flagged and left out of balancing and,
    unless asked, of the analysis), or close it (those already in it can finish)."""
    study = _study(slug)
    if study.status != status:
        study.status = status
        audit("cli", "set-status", slug, status=status)
        db.session.commit()
    click.echo(f"{slug}: {status}")


# ---- data --------------------------------------------------------------------------------------
@click.command("export")
@click.argument("slugs", nargs=-1)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="csv or json (default: from the --out file's suffix, else csv).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (atomically); default: standard output.",
)
@click.option("--json", "as_json", is_flag=True, help="Report the counts as JSON (needs --out).")
@with_appcontext
def export_command(slugs: tuple[str, ...], fmt: str | None, out: Path | None, as_json: bool) -> None:
    """Export the responses of the studies SLUG... (default: every study), one row per stored attempt (the
    columns of stimuli.responses), as CSV or JSON.

    Without --out the export goes to standard output, so that
    `flask --app study_server export | analysis report --responses - --batch DIR --out DIR`
    turns a study's database into its report.
    """
    studies = _studies(slugs)
    if fmt is None:
        fmt = "json" if out is not None and out.suffix.lower() == ".json" else "csv"
    if out is None and as_json:
        raise click.UsageError("--json reports on a written file: give --out FILE")
    rows = [row for study in studies for row in response_rows(study)]
    names = [s.slug for s in studies]
    body = (
        rows_to_csv(rows)
        if fmt == "csv"
        else rows_to_json(
            rows,
            **({"study": names[0]} if len(names) == 1 else {}),
            studies=names,
            study_files={s.slug: study_file_text(s) for s in studies},  # the plan each study's answers were taken under
        )
    )
    if out is None:
        click.echo(body, nl=False)
        return
    atomic_write_bytes(out, body.encode("utf-8"))
    for name in names:
        audit("cli", "export", name, format=fmt, out=str(out))
    db.session.commit()
    participants = len({(r["study"], r["participant"]) for r in rows})
    _emit(
        as_json,
        {"studies": names, "format": fmt, "out": str(out), "rows": len(rows), "participants": participants},
        f"wrote {out}: {len(rows)} rows from {participants} participants ({fmt})",
    )


@click.command("export-psych-ds")
@click.argument("slugs", nargs=-1)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="A new folder for the dataset."
)
@click.option("--json", "as_json", is_flag=True, help="Report what was written as JSON.")
@with_appcontext
def export_psych_ds_command(slugs: tuple[str, ...], out: Path, as_json: bool) -> None:
    """Export the responses of the studies SLUG... (default: every study) as a Psych-DS dataset: the same rows as
    `export`, in data/study-<slug>_data.csv, described by dataset_description.json."""
    studies = _studies(slugs)
    try:
        done = export_psych_ds(studies, out)
    except SmartStudyError as e:
        raise _fail(e) from None
    for s in studies:
        audit("cli", "export", s.slug, format="psych-ds", out=str(out))
    db.session.commit()
    _emit(
        as_json, done, f"wrote {out}: {done['rows']} rows in {len(studies)} data file(s) and dataset_description.json"
    )


@click.command("withdraw")
@click.argument("slug")
@click.argument("participant")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Report what was deleted as JSON.")
@with_appcontext
def withdraw_command(slug: str, participant: str, yes: bool, as_json: bool) -> None:
    """Delete every record of one participant (by participant id or recruiting id), in one transaction; logged."""
    study = _study(slug)
    p = (
        db.session.execute(
            select(Participant).where(
                Participant.study_pk == study.id,
                or_(Participant.public_id == participant, Participant.recruit_id == participant),
            )
        )
        .scalars()
        .all()
    )
    if not p:
        raise click.ClickException(f"no participant {participant!r} in study {slug!r}")
    if len(p) > 1:
        raise click.ClickException(
            f"{participant!r} matches {len(p)} participants (one per platform): "
            f"give the participant id ({', '.join(x.public_id for x in p)})"
        )
    target = p[0]
    if not yes:
        click.confirm(
            f"Delete every record of participant {target.public_id} ({target.platform} "
            f"{target.recruit_id}, {target.status}) in study {slug}? This cannot be undone",
            abort=True,
        )
    done = withdraw(target, "cli")
    _emit(
        as_json,
        done,
        f"withdrew {done['participant']} from {slug}: {done['responses']} answers, {done['trials']} trials deleted",
    )


COMMANDS = (
    init_demo,
    serve_demo,
    create_researcher_command,
    import_batch_command,
    create_study_command,
    export_study_command,
    summary_command,
    set_status_command,
    export_command,
    export_psych_ds_command,
    withdraw_command,
)


# ---- Prolific ------------------------------------------------------------------------------------
@click.group("prolific")
def prolific_group() -> None:
    """Run a study on Prolific through its API (token in PROLIFIC_TOKEN). Every step can be rerun safely."""


def _prolific(fn: Any) -> Any:
    """Run ``fn`` turning Prolific's failures into one-line errors."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except prolific.ProlificError as e:
            db.session.rollback()
            raise _fail(e) from None

    return run


@prolific_group.command("create")
@click.argument("slug")
@click.option("--server-url", envvar="SERVER_URL", required=True, help="This server's public https:// URL.")
@click.option("--reward", required=True, help="Pay per participant in the currency, e.g. 1.50.")
@click.option(
    "--minutes", type=int, default=None, help="Estimated time (default: the pilots' median, else an estimate)."
)
@click.option("--currency", type=click.Choice(sorted(prolific.MIN_HOURLY)), default="GBP", show_default=True)
@click.option("--places", type=int, default=None, help="Participants to recruit (default: the study's target).")
@click.option(
    "--exclusions",
    "policy",
    type=click.Choice(prolific.POLICIES),
    default="approve",
    show_default=True,
    help="Excluded participants: approve (paid, flagged in the data) or ask them to return.",
)
@click.option("--description", default=None, help="What participants read on Prolific (default: a plain summary).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def prolific_create(
    slug: str,
    server_url: str,
    reward: str,
    minutes: int | None,
    currency: str,
    places: int | None,
    policy: str,
    description: str | None,
    as_json: bool,
) -> None:
    """Create the study on Prolific as a draft (a rerun finds the one already made)."""
    study = _study(slug)
    minutes = minutes or prolific.estimated_minutes(study)
    link = _prolific(prolific.create)(
        study,
        base_url=server_url,
        reward=reward,
        minutes=minutes,
        currency=currency,
        places=places,
        policy=policy,
        description=description,
    )
    info = prolific.overview(study)
    _emit(
        as_json,
        info,
        f"{slug}: Prolific study {link.prolific_id} ({link.status}), {info['reward']} {link.currency} for "
        f"{link.minutes} min, {link.places} places; screened-out code {link.screened_out_code}, "
        f"exclusions: {link.exclusion_policy}",
    )


def _transition_command(verb: str) -> Any:
    @prolific_group.command(verb)
    @click.argument("slug")
    @with_appcontext
    def command(slug: str) -> None:
        status = _prolific(prolific.transition)(_study(slug), verb)
        click.echo(f"{slug}: {status} on Prolific")

    command.__doc__ = {
        "publish": "Publish the study on Prolific (it must be open or a pilot here).",
        "pause": "Pause the study on Prolific: no new participants until resumed.",
        "resume": "Resume a paused study on Prolific.",
    }[verb]
    return command


for _verb in prolific.TRANSITIONS:
    _transition_command(_verb)


@prolific_group.command("review")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def prolific_review(slug: str, as_json: bool) -> None:
    """Approve completed submissions; excluded participants by the study's policy (approve-and-flag or return)."""
    got = _prolific(prolific.review)(_study(slug))
    _emit(as_json, got.__dict__, f"{slug}: {got.text()}")


@prolific_group.command("bonus")
@click.argument("slug")
@click.option("--amount", required=True, help="Bonus per participant in the study's currency, e.g. 0.50.")
@click.option("--participant", "participants", multiple=True, help="Only these Prolific ids (default: every analysed).")
@click.option("--pay-unconfirmed", is_flag=True, help="Pay again a payment whose answer was lost and not yet shown.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def prolific_bonus(slug: str, amount: str, participants: tuple[str, ...], pay_unconfirmed: bool, as_json: bool) -> None:
    """Pay a bonus to every approved, analysed participant (each once, however often this runs)."""
    got = _prolific(prolific.bonus)(
        _study(slug), amount, participant_ids=list(participants) or None, pay_unconfirmed=pay_unconfirmed
    )
    text = f"{slug}: paid {got['paid']} bonuses, {got['earlier']} paid before, {got['checked']} confirmed as paid"
    if got["unconfirmed"]:
        text += (
            f"; payments {', '.join(got['unconfirmed'])} are not confirmed: look at the study on Prolific, "
            "then rerun with --pay-unconfirmed only if they were not paid"
        )
    _emit(as_json, got, text)


@prolific_group.command("status")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def prolific_status(slug: str, as_json: bool) -> None:
    """The study's Prolific link and what was done to its submissions (no call to Prolific)."""
    info = prolific.overview(_study(slug))
    if info is None:
        _emit(as_json, None, f"{slug}: not on Prolific")
        return
    done = ", ".join(f"{k} {v}" for k, v in sorted(info["done"].items())) or "nothing yet"
    _emit(as_json, info, f"{slug}: Prolific study {info['prolific_id']} ({info['status']}); done: {done}")


COMMANDS = (*COMMANDS, prolific_group)
