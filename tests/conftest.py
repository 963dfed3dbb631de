"""Shared fixtures.

Real motion data is read from ``../shared/data`` (or ``$SMART_STUDY_SHARED_DATA``).
Tests that need it use the ``shared_data`` fixture: it skips when the folder is absent
on a developer machine, but under ``CI=true`` a missing folder fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stimuli.paths import shared_data_dir


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI", "").lower() == "true" and not shared_data_dir().is_dir():
        raise pytest.UsageError(
            f"CI=true but the real motion data folder {shared_data_dir()} is missing "
            "(set SMART_STUDY_SHARED_DATA to its location)"
        )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real motion data missing at {path} (CI=true)")
        pytest.skip(f"real motion data not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test writes generated files under its own temporary data root."""
    monkeypatch.setenv("SMART_STUDY_DATA", str(tmp_path_factory.mktemp("data_root")))
