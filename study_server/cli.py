"""Flask CLI commands: ``init-demo``, ``create-study`` and ``rescreen`` (``flask --app study_server ...``).

Errors are one line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import select

from stimuli.errors import SmartStudyError
from stimuli.paths import data_root

from . import design
from .extensions import db
from .models import Study
from .studies import StudyConfigError
from .studies import create_study
from .studies import import_batch
from .studies import rescreen

__all__ = ["init_demo", "create_study_command", "rescreen_command", "DEMO_STUDIES"]

DEMO_STUDIES = (
    ("", design.INDISTINGUISHABILITY, {"trials": 10, "practice_trials": 2, "sensitivity_share": 0.2,
                                       "control_share": 0.2}),
    ("-deceitfulness", design.DECEITFULNESS, {"trials": 8, "practice_trials": 1}),
    ("-naturalness", design.NATURALNESS, {"trials": 6, "practice_trials": 1}),
)  # fmt: skip
"""The demo studies: ``/s/demo`` (indistinguishability) and one of each other design, short."""


def _attack_gen() -> str:
    sibling = Path(sys.executable).with_name("attack-gen")
    exe = str(sibling) if sibling.is_file() else shutil.which("attack-gen")
    if exe is None:
        raise click.ClickException("attack-gen not found: build the demo batch with "
                                   "`attack-gen batch --demo --out DIR`, then pass --batch DIR")  # fmt: skip
    return exe


def _build_demo_batch(out: Path) -> None:
    click.echo(f"building the demo stimulus batch in {out} (attack-gen batch --demo) ...", err=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([_attack_gen(), "batch", "--demo", "--out", str(out)])
    if proc.returncode != 0 or not out.is_dir():
        raise click.ClickException(f"`attack-gen batch --demo --out {out}` failed (exit {proc.returncode})")


@click.command("init-demo")
@click.option("--batch", "batch_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Use this stimulus batch (default: <data root>/batches/demo, built when absent).")
@click.option("--slug", default="demo", show_default=True, help="Slug of the main demo study (/s/SLUG).")
@click.option("--base-url", default="http://127.0.0.1:5000", show_default=True, help="Server URL to print.")
@click.option("--decode/--no-decode", default=True, show_default=True,
              help="Decode every video while validating the batch.")
@with_appcontext
def init_demo(batch_dir: Path | None, slug: str, base_url: str, decode: bool) -> None:
    """Create the database, import the demo stimulus batch (building it if needed) and create the demo studies."""
    upgrade(directory=str(Path(__file__).parent / "migrations"))
    if batch_dir is None:
        batch_dir = data_root(create=True) / "batches" / "demo"
        if not batch_dir.exists():
            _build_demo_batch(batch_dir)
    try:
        batch = import_batch(batch_dir, decode=decode)
        for suffix, study_type, config in DEMO_STUDIES:
            name = f"{slug}{suffix}"
            if db.session.execute(select(Study.id).where(Study.slug == name)).first() is None:
                config = dict(config)
                if study_type == design.NATURALNESS:
                    config["trials"] = 2 * min(config["trials"] // 2, batch.n_items)
                try:
                    create_study(name, batch, study_type, title=f"Demo: {study_type}", **config)
                except StudyConfigError as e:
                    if not suffix:
                        raise
                    click.echo(f"skipped {name}: {e}", err=True)
                    continue
            click.echo(f"{study_type:>22}: {base_url.rstrip('/')}/s/{name}")
    except SmartStudyError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Participant URL: {base_url.rstrip('/')}/s/{slug}")


@click.command("create-study")
@click.argument("slug")
@click.option("--batch", "batch_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Stimulus batch folder (imported first; importing again changes nothing).")
@click.option("--type", "study_type", required=True, type=click.Choice(design.STUDY_TYPES))
@click.option("--trials", type=int, default=None, help="Analysed trials per participant (paper: 100).")
@click.option("--practice", "practice_trials", type=int, default=2, show_default=True)
@click.option("--plays", type=int, default=None, help="Plays per trial (paper: naturalness 2, others 1).")
@click.option("--slowdown", type=float, default=1.0, show_default=True)
@click.option("--sensitivity-share", type=float, default=0.2, show_default=True)
@click.option("--control-share", type=float, default=0.1, show_default=True)
@click.option("--threshold", "screening_threshold", type=float, default=0.8, show_default=True)
@click.option("--control-threshold", "control_hit_threshold", type=float, default=None)
@click.option("--variant", "variants", multiple=True, help="Attacked variant(s) shown (default smart).")
@click.option("--completion-code", default=None)
@click.option("--no-decode", is_flag=True, help="Do not decode every video while validating the batch.")
@with_appcontext
def create_study_command(slug: str, batch_dir: Path, study_type: str, no_decode: bool, **config: object) -> None:
    """Import a stimulus batch if needed and create a study on it; prints its entry path."""
    if not config["variants"]:
        config["variants"] = None
    else:
        config["variants"] = list(config["variants"])  # type: ignore[arg-type]
    try:
        batch = import_batch(batch_dir, decode=not no_decode)
        create_study(slug, batch, study_type, **config)  # type: ignore[arg-type]
    except SmartStudyError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"/s/{slug}")


@click.command("rescreen")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@with_appcontext
def rescreen_command(slug: str, as_json: bool) -> None:
    """Screen every completed participant of a study again (e.g. after changing its thresholds)."""
    study = db.session.execute(select(Study).where(Study.slug == slug)).scalar_one_or_none()
    if study is None:
        raise click.ClickException(f"no study {slug!r}")
    counts = rescreen(study)
    if as_json:
        click.echo(json.dumps(counts))
    else:
        click.echo(", ".join(f"{k} {v}" for k, v in counts.items()))
