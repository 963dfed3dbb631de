"""Motion data: loaders for real formats, preprocessing, and the dataset file.

``load_motion(path)`` reads one recording in any supported format onto the standard
25-joint skeleton (``stimuli.skeleton.STANDARD``) as a :class:`stimuli.motion.Motion`:
positions ``(T, 25, 3)`` float32 in metres (Y up), its frame rate, and metadata.

Formats (by extension, else by content):

- Acclaim ``.amc`` (HDM05 "cut" files, CMU), with its ``.asf`` found by subject in the
  same or a sibling folder, or given as ``asf=``;
- ``.bvh`` (HDM05/CMU conversions, Bandai Namco's 22-joint skeleton);
- NTU RGB+D ``.skeleton`` text files (Kinect v2 joints, mapped to the standard skeleton);
- Kinect v2 ``.csv`` gesture captures (same joint order as NTU).

The SMART authors' pre-processed ``.npz`` clips are windows already; see
:mod:`attack_gen.data.smart_npz`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stimuli.errors import DataError
from stimuli.errors import MotionFormatError
from stimuli.motion import Motion

__all__ = ["load_motion", "MOTION_EXTENSIONS", "sniff_format"]

MOTION_EXTENSIONS = {".amc": "amc", ".bvh": "bvh", ".skeleton": "ntu_skeleton", ".csv": "kinect_csv"}


def _first_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                line = raw.decode("utf-8", errors="replace").removeprefix("\ufeff").strip()
                if line:
                    return line
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return ""


def sniff_format(path: str | Path) -> str:
    """The motion format of ``path``: from its extension, else from its first line."""
    path = Path(path)
    fmt = MOTION_EXTENSIONS.get(path.suffix.lower())
    if fmt:
        return fmt
    line = _first_line(path)
    if not line:
        raise DataError(f"{path}: empty file")
    if line.upper().startswith("HIERARCHY"):
        return "bvh"
    if line.startswith((":FULLY-SPECIFIED", "#!OML", ":DEGREES", ":RADIANS")):
        return "amc"
    if line.isdigit():
        return "ntu_skeleton"
    fields = line.rstrip(",").split(",")
    if len(fields) == 101:
        return "kinect_csv"
    raise DataError(
        f"{path}: unknown motion format (extension {path.suffix or 'none'}; expected "
        f"{', '.join(MOTION_EXTENSIONS)} or recognisable content)"
    )


def load_motion(path: str | Path, **kwargs: Any) -> Motion:
    """Load one recording onto the standard 25-joint skeleton.

    Keyword arguments go to the format's loader (``asf=`` and ``fps=`` for AMC,
    ``scale=`` for BVH, ``body=`` for NTU). Bad files raise :class:`DataError` naming the
    file and the line or frame, and so does a recording outside :mod:`.limits`.
    """
    from .limits import check_motion_limits

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: motion file not found")
    fmt = sniff_format(path)
    if fmt == "amc":
        from .acclaim import load_amc as load
    elif fmt == "bvh":
        from .bvh import load_bvh as load
    elif fmt == "ntu_skeleton":
        from .ntu import load_ntu_skeleton as load
    else:
        from .kinect_csv import load_kinect_csv as load
    try:
        motion = load(path, **kwargs)
    except MotionFormatError as exc:  # e.g. NaN from a degenerate pose, named by the loader's array check
        raise DataError(f"{path}: {str(exc).split(': ', 1)[-1]}") from None
    check_motion_limits(motion.positions, motion.fps, str(path))
    return motion
