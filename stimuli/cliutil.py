"""Helpers every command line (``attack-gen``, ``analysis``) shares: one-line errors, ``--json`` output, logs."""

from __future__ import annotations

import functools
import json
from typing import Any
from typing import Callable
from typing import TypeVar

import click

from .errors import SmartStudyError
from .fileio import json_default

__all__ = ["user_errors", "json_default", "emit", "log"]

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Report user-facing errors as one line (``Error: ...``) and exit 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SmartStudyError as exc:
            raise click.ClickException(str(exc).replace("\n", " ")) from None

    return wrapper  # type: ignore[return-value]


def emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    """Print exactly one JSON object (``--json``) or the human-readable text, on stdout."""
    click.echo(json.dumps(payload, default=json_default) if as_json else text)


def log(msg: str) -> None:
    """Progress and notes go to stderr, so stdout stays one JSON object."""
    click.echo(msg, err=True)
