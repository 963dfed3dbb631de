"""``analysis``: the researcher's command line for results (``report`` and ``simulate``
arrive with the analysis issue; the group exists so the entry point is stable)."""

from __future__ import annotations

import click

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="analysis")
def cli() -> None:
    """Turn study responses and attack results into the paper's tables and figures."""
