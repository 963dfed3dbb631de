"""Kinect v2 skeleton CSV files (Microsoft LabanotationSuite ``KinectReader`` format), numpy only.

One frame per line, comma-separated: the Kinect timestamp in 100 ns units, then for each of
the 25 Kinect v2 joints (``stimuli.skeleton.KINECT_V2`` order) X, Y, Z in metres (Kinect
camera space) and a tracking state (0 not tracked, 1 inferred, 2 tracked). Lines end with a
trailing comma: 102 fields, the last empty (a line without the trailing comma, 101 fields,
is accepted too).

Coordinates get the same proper rotation as NTU files,
:func:`attack_gen.data.ntu.kinect_camera_to_ours`: ``(x, y, z) -> (-x, y, -z)``, so a person
facing the sensor faces +Z, Y up, their left towards +X; metres, origin at the sensor.

Frame rate. Kinect v2 runs at 30 Hz, but the timestamps are quantised: consecutive
intervals cycle through about 32.9, 33.0 and 34.1 ms, so the *median* interval (33.0 ms)
overstates the rate (30.30 fps). The rate used is the number of nominal intervals over the
recording's duration, where each measured interval counts as ``round(interval / median)``
nominal ones (a 67 ms interval is one dropped frame): about 30.0 fps for the LabanotationSuite
files. Both values are in ``meta`` (``fps``, ``fps_median_interval``). With
``fill_dropped=True`` (default) each dropped frame is re-inserted by linear interpolation so
that the frames are evenly spaced at ``fps``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stimuli.errors import DataError
from stimuli.motion import Motion
from stimuli.skeleton import KINECT_V2
from stimuli.skeleton import kinect_to_standard

from .limits import DECIMAL_CHARS
from .limits import MAX_POSITION_M
from .limits import check_fps
from .limits import metres
from .limits import number
from .ntu import COORDINATES_NOTE
from .ntu import kinect_camera_to_ours

__all__ = ["load_kinect_csv", "read_kinect_csv", "KinectCsv", "gesture_from_filename"]

NUM_JOINTS = KINECT_V2.num_joints
NUM_FIELDS = 1 + 4 * NUM_JOINTS  # 101 values (+ the empty field after the trailing comma)
TICKS_PER_SECOND = 10_000_000  # Kinect timestamps are in 100 ns units
EXPECTED = f"{NUM_FIELDS + 1} comma-separated fields (timestamp, 25 x (X,Y,Z,trackingState), trailing empty field)"


@dataclass
class KinectCsv:
    """The raw content of a Kinect CSV file."""

    path: Path
    timestamps: np.ndarray
    """``(T,)`` int64, 100 ns units, strictly increasing."""
    positions: np.ndarray
    """``(T, 25, 3)`` float64 Kinect camera-space positions, Kinect joint order."""
    tracking: np.ndarray
    """``(T, 25)`` int8 tracking states 0/1/2."""
    lines: np.ndarray
    """``(T,)`` 1-based line number of each frame in the file."""


MAX_GAP_FRAMES = 30
"""Dropped frames filled by interpolation at most in one gap (1 s at 30 fps); a longer jump of the
timestamps is a corrupt or spliced file."""


def gesture_from_filename(path: str | Path) -> str:
    """``Ges01_wavehand.csv -> "wavehand"``: the stem after a leading ``<prefix><digits>_``."""
    stem = Path(path).stem
    head, sep, tail = stem.partition("_")
    if sep and tail and head.rstrip("0123456789") != head:
        return tail
    return stem


def _label_from_labels_csv(path: Path) -> str | None:
    """The gesture label for ``path`` from a ``labels.csv`` (``file,gesture``) beside it, if any."""
    labels = path.parent / "labels.csv"
    if not labels.is_file():
        return None
    try:
        with labels.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("file") == path.name and row.get("gesture"):
                    return row["gesture"]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def read_kinect_csv(path: str | Path) -> KinectCsv:
    """Parse a Kinect v2 CSV file; :class:`DataError` names the file and line on bad input."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a UTF-8 byte-order mark is accepted
    except FileNotFoundError:
        raise DataError(f"{path}: Kinect CSV file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a Kinect CSV text file (invalid byte at offset {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read Kinect CSV file ({e.strerror or e})") from None

    rows: list[list[str]] = []
    linenos: list[int] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) == NUM_FIELDS + 1 and not fields[-1].strip():
            fields.pop()
        if len(fields) != NUM_FIELDS:
            raise DataError(f"{path}: line {i}: expected {EXPECTED}, got {len(line.split(','))}")
        rows.append(fields)
        linenos.append(i)
    if not rows:
        raise DataError(f"{path}: line 1: file has no frames; expected lines of {EXPECTED}")

    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        values = None
    plain = set("".join("".join(f) for f in rows)) <= DECIMAL_CHARS | {" ", "\t"}  # numpy takes '1_0', '١٢'
    if values is None or not plain or not np.isfinite(values).all():
        for lineno, fields in zip(linenos, rows):
            for k, t in enumerate(fields):
                if number(t.strip()) is None:
                    got = t.strip()[:30]
                    raise DataError(
                        f"{path}: line {lineno}, field {k + 1}: expected a finite number, got {got!r}"
                    ) from None
        raise DataError(f"{path}: could not parse numbers")  # pragma: no cover

    lines = np.asarray(linenos, dtype=np.int64)
    for k in range(len(rows)):
        t = rows[k][0].strip()
        if not (t.isascii() and t.lstrip("+-").isdigit() and len(t) <= 18):
            raise DataError(
                f"{path}: line {linenos[k]}, field 1: expected an integer timestamp (100 ns units), got {t[:30]!r}"
            )
    timestamps = np.array([int(r[0]) for r in rows], dtype=np.int64)
    body = values[:, 1:].reshape(-1, NUM_JOINTS, 4)
    far = np.abs(body[..., :3]) > MAX_POSITION_M
    if far.any():
        f, j, c = (int(x) for x in np.argwhere(far)[0])
        raise DataError(
            f"{path}: line {linenos[f]}, field {2 + 4 * j + c}: {rows[f][1 + 4 * j + c].strip()[:30]!r} "
            f"m is beyond {MAX_POSITION_M:g} m"
        )
    state = body[..., 3]
    bad_state = ~np.isin(state, (0.0, 1.0, 2.0))
    if bad_state.any():
        f, j = (int(x) for x in np.argwhere(bad_state)[0])
        raise DataError(
            f"{path}: line {linenos[f]}, field {2 + 4 * j + 3}: expected a tracking state 0, 1 or 2 "
            f"for joint {KINECT_V2.joint_names[j]}, got {state[f, j]:g}"
        )
    d = np.diff(timestamps)
    if (d <= 0).any():
        k = int(np.flatnonzero(d <= 0)[0])
        raise DataError(
            f"{path}: line {linenos[k + 1]}: timestamp {timestamps[k + 1]} is not after the previous frame's "
            f"{timestamps[k]} (line {linenos[k]}); expected strictly increasing timestamps"
        )
    return KinectCsv(
        path=path,
        timestamps=timestamps,
        positions=body[..., :3].copy(),
        tracking=state.astype(np.int8),
        lines=lines,
    )


def load_kinect_csv(path: str | Path, *, fill_dropped: bool = True) -> Motion:
    """A Kinect v2 CSV recording as a :class:`Motion` on the STANDARD skeleton.

    Coordinates: rotated with :func:`kinect_camera_to_ours` then mapped with
    :func:`kinect_to_standard`. ``fps`` and dropped frames: see the module docstring.
    Untracked joints (state 0) are kept as recorded; their share is
    ``meta["untracked_fraction"]`` (``meta["inferred_fraction"]`` for state 1).
    Needs at least two frames (to measure the frame rate).
    """
    raw = read_kinect_csv(path)
    path = raw.path
    n = raw.timestamps.size
    if n < 2:
        raise DataError(f"{path}: line {raw.lines[0]}: only one frame; expected at least 2 to measure the frame rate")
    d = np.diff(raw.timestamps).astype(np.float64)
    median = float(np.median(d))
    steps = np.maximum(np.rint(d / median), 1)
    if steps.max() > MAX_GAP_FRAMES:
        k = int(steps.argmax())
        raise DataError(
            f"{path}: line {raw.lines[k + 1]}: the timestamp jumps {d[k] / TICKS_PER_SECOND:.3g} s after "
            f"line {raw.lines[k]}, {steps[k]:.0f} frame intervals; expected gaps of at most "
            f"{MAX_GAP_FRAMES} dropped frames"
        )
    steps = steps.astype(np.int64)
    n_intervals = int(steps.sum())
    duration = float(raw.timestamps[-1] - raw.timestamps[0])
    fps = n_intervals * TICKS_PER_SECOND / duration
    dropped = int((steps - 1).sum())

    pos = raw.positions
    if fill_dropped and dropped:
        grid_of_frame = np.concatenate([[0], np.cumsum(steps)])
        grid = np.arange(n_intervals + 1)
        flat = pos.reshape(n, -1)
        pos = np.stack([np.interp(grid, grid_of_frame, flat[:, k]) for k in range(flat.shape[1])], axis=1)
        pos = pos.reshape(-1, NUM_JOINTS, 3)
    positions = kinect_to_standard(kinect_camera_to_ours(pos)).astype(np.float32)

    meta = {
        "source": str(path),
        "format": "kinect_csv",
        "subject": None,
        "gesture": gesture_from_filename(path),
        "label": _label_from_labels_csv(path),
        "frames_in_file": n,
        "fps_median_interval": TICKS_PER_SECOND / median,
        "median_interval_ms": median / 1e4,
        "dropped_frames": dropped,
        "frames_filled": dropped if fill_dropped else 0,
        "untracked_fraction": float(np.mean(raw.tracking == 0)),
        "inferred_fraction": float(np.mean(raw.tracking == 1)),
        "start_timestamp": int(raw.timestamps[0]),
        "coordinates": COORDINATES_NOTE,
    }
    return Motion(positions=metres(positions, str(path)), fps=check_fps(fps, str(path)), meta=meta)
