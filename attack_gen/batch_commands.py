"""``attack-gen validate-batch``: check a stimulus batch folder (torch-free; registered on the main group)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stimuli.batch import BatchError
from stimuli.batch import Problem
from stimuli.batch import read_manifest
from stimuli.batch import validate_batch as _validate_batch
from stimuli.errors import SmartStudyError

__all__ = ["validate_batch"]


@click.command("validate-batch")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path, file_okay=True, dir_okay=True))
@click.option("--no-decode", is_flag=True, help="Skip decoding the videos (schema, files and hashes only).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def validate_batch(directory: Path, no_decode: bool, as_json: bool) -> None:
    """Check the stimulus batch in DIR: manifest schema, every file present with its SHA-256,
    nothing unexpected, motion arrays, posters, and every video decodable as H.264 yuv420p
    with the declared size, frame rate, duration and frame count.

    Exit status 0 only when the batch is valid; otherwise each problem is printed on its
    own line (with --json: a "problems" list) and the exit status is 1.
    """
    try:
        problems = _validate_batch(directory, decode=not no_decode)
    except SmartStudyError as e:  # e.g. ffmpeg missing
        problems = e.problems if isinstance(e, BatchError) else [Problem("", str(e))]
    summary = _summary(directory) if not problems else {}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(directory),
                    "valid": not problems,
                    "decoded": not no_decode,
                    "problems": [p.to_dict() for p in problems],
                    **summary,
                }
            )
        )
    elif not problems:
        click.echo(
            f"{directory}: valid stimulus batch {summary['batch_id']}: {summary['items']} items x "
            f"{len(summary['variants'])} variants ({', '.join(summary['variants'])}), "
            f"{summary['videos']} videos"
        )
    else:
        for p in problems:
            click.echo(f"Error: {directory}: {p}", err=True)
        if len(problems) > 1:
            click.echo(f"Error: {directory}: not a valid stimulus batch ({len(problems)} problems)", err=True)
    if problems:
        click.get_current_context().exit(1)


def _summary(directory: Path) -> dict[str, object]:
    from stimuli.batch import Batch

    batch = Batch.from_dict(read_manifest(directory), directory)
    videos = sum(1 for _, ref in batch.files() if ref.path.endswith(".mp4"))
    return {
        "batch_id": batch.batch_id,
        "items": len(batch.items),
        "variants": list(batch.variant_names),
        "composites": len(batch.items[0].composites),
        "videos": videos,
    }
