"""Where generated things and the real datasets live.

- The **data root** holds everything smart-study generates (datasets, checkpoints,
  stimulus batches, the SQLite database). It is ``$SMART_STUDY_DATA`` when set, else
  ``data/`` in the repository checkout (git-ignored), else ``~/.smart-study``.
- The **shared data** folder holds the real motion files we read but never copy:
  ``$SMART_STUDY_SHARED_DATA`` when set, else ``../shared/data`` beside the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "shared_data_dir", "REPO_ROOT"]

_PKG_PARENT = Path(__file__).resolve().parent.parent
REPO_ROOT: Path | None = _PKG_PARENT if (_PKG_PARENT / "pyproject.toml").is_file() else None


def data_root(create: bool = False) -> Path:
    """The folder for generated data (see module docstring)."""
    env = os.environ.get("SMART_STUDY_DATA")
    if env:
        root = Path(env).expanduser()
    elif REPO_ROOT is not None:
        root = REPO_ROOT / "data"
    else:
        root = Path.home() / ".smart-study"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def shared_data_dir() -> Path:
    """The folder with the real motion data (may not exist on every machine)."""
    env = os.environ.get("SMART_STUDY_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    base = REPO_ROOT if REPO_ROOT is not None else Path.cwd()
    return (base / ".." / "shared" / "data").resolve()
