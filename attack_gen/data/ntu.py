"""NTU RGB+D ``.skeleton`` files (Kinect v2 skeletons), numpy only.

File format (as read by ``Matlab/read_skeleton_file.m`` in shahroudy/NTURGB-D), one item a line::

    <frame count>
    per frame:   <body count>                      (may be 0)
      per body:  bodyID clipedEdges handLeftConfidence handLeftState handRightConfidence
                 handRightState isResticted leanX leanY trackingState     (10 values)
                 <joint count>                     (25)
                 25 x: x y z depthX depthY colorX colorY
                       orientationW orientationX orientationY orientationZ trackingState  (12 values)

``x y z`` are Kinect v2 camera-space coordinates in metres. File names look like
``S001C001P001R001A001.skeleton``: setup, camera, performer (the subject), replication and
action (1-based; the class index is ``action - 1``).

Coordinates
-----------
Kinect camera space has X to the sensor's left, Y up and Z pointing away from the sensor, in
metres, origin at the sensor. That frame is already right-handed (X x Y = Z), so no mirror is
needed. We apply one proper rotation, 180 degrees about the vertical axis::

    (x, y, z)_ours = (-x, y, -z)_kinect        (matrix diag(-1, 1, -1), det = +1)

A person facing the sensor then faces +Z (the direction the SMART/BEAT pre-processing
turns every clip to), with Y up and their left side towards +X. The origin stays at the
sensor (Y = 0 is the sensor's height, not the floor); nothing is centred or re-oriented.

Errors are :class:`stimuli.errors.DataError` with the file, the line and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Iterator

import numpy as np

from stimuli.errors import DataError
from stimuli.motion import Motion
from stimuli.skeleton import KINECT_V2
from stimuli.skeleton import kinect_to_standard

from .limits import DECIMAL_CHARS
from .limits import MAX_POSITION_M
from .limits import metres
from .limits import number

__all__ = [
    "KINECT_CAMERA_TO_OURS",
    "kinect_camera_to_ours",
    "NtuBody",
    "NtuRecording",
    "parse_ntu_name",
    "read_ntu_skeleton",
    "load_ntu_skeleton",
    "select_main_body",
    "fill_gaps",
    "NTU_FPS",
]

NTU_FPS = 30.0
NUM_KINECT_JOINTS = KINECT_V2.num_joints  # 25

KINECT_CAMERA_TO_OURS = np.diag([-1.0, 1.0, -1.0])
"""Rotation (180 degrees about Y) from Kinect camera space to our frame: ``p_ours = R @ p``."""

BODY_FIELDS = (
    "bodyID clipedEdges handLeftConfidence handLeftState handRightConfidence "
    "handRightState isResticted leanX leanY trackingState"
)
JOINT_FIELDS = "x y z depthX depthY colorX colorY orientationW orientationX orientationY orientationZ trackingState"

COORDINATES_NOTE = "Kinect camera space rotated 180 deg about Y: (x, y, z) -> (-x, y, -z); metres; origin at the sensor"

# bodies seen in fewer than this fraction of the frames of the longest-tracked body are
# not considered by body="auto" (short spurious detections), unless no other body exists
MIN_FRAMES_FRACTION = 0.5

_NAME_RE = re.compile(r"S(\d+)C(\d+)P(\d+)R(\d+)A(\d+)", re.IGNORECASE)


def kinect_camera_to_ours(positions: np.ndarray) -> np.ndarray:
    """Kinect camera-space points ``(..., 3)`` to our frame: ``(x, y, z) -> (-x, y, -z)``.

    A 180-degree rotation about Y (proper, not a mirror): left joints stay on the left.
    """
    p = np.asarray(positions)
    out = p.copy()
    out[..., 0] = -p[..., 0]
    out[..., 2] = -p[..., 2]
    return out


@dataclass
class NtuBody:
    """One tracked body of a recording, on the recording's full frame axis."""

    body_id: int
    """Kinect tracking id (first value of the body line)."""
    frames: np.ndarray
    """``(F,)`` int64, the frame indices (0-based) where this body is present."""
    positions: np.ndarray
    """``(T_total, 25, 3)`` float32 Kinect camera-space positions (Kinect joint order), NaN where absent."""
    joint_tracking: np.ndarray
    """``(T_total, 25)`` int8 joint tracking states (0 not tracked, 1 inferred, 2 tracked);
    -1 where absent."""

    @property
    def num_present(self) -> int:
        return int(self.frames.size)


@dataclass
class NtuRecording:
    """Everything :func:`read_ntu_skeleton` reads from one file."""

    path: Path
    num_frames: int
    bodies: dict[int, NtuBody]
    """By body id, in order of first appearance."""
    body_counts: np.ndarray
    """``(T_total,)`` number of bodies in each frame."""
    setup: int | None = None
    camera: int | None = None
    subject: str | None = None
    """``"P001"`` style performer id, from the file name."""
    replication: int | None = None
    action: int | None = None
    """1-based NTU action number, from the file name."""
    name_fields: dict[str, object] = field(default_factory=dict)

    @property
    def class_index(self) -> int | None:
        return None if self.action is None else self.action - 1

    @property
    def body_list(self) -> list[NtuBody]:
        return list(self.bodies.values())


def parse_ntu_name(path: str | Path) -> dict[str, object]:
    """Fields of an NTU file name ``SsssCcccPpppRrrrAaaa``; empty dict when it does not match."""
    stem = Path(path).name.split(".")[0]
    m = _NAME_RE.fullmatch(stem)
    if m is None:
        return {}
    s, c, p, r, a = m.groups()
    return {
        "setup": int(s),
        "camera": int(c),
        "subject": f"P{int(p):03d}",
        "replication": int(r),
        "action": int(a),
    }


class _Lines:
    """Non-blank lines of a text file with their 1-based line numbers."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.i = 0  # index of the next line to look at

    def _skip_blank(self) -> None:
        while self.i < len(self.lines) and not self.lines[self.i].strip():
            self.i += 1

    def at_end(self) -> bool:
        self._skip_blank()
        return self.i >= len(self.lines)

    def next(self, expected: str) -> tuple[int, list[str]]:
        self._skip_blank()
        if self.i >= len(self.lines):
            raise DataError(
                f"{self.path}: line {len(self.lines) + 1}: file ends early (truncated?); expected {expected}"
            )
        lineno = self.i + 1
        tokens = self.lines[self.i].split()
        self.i += 1
        return lineno, tokens

    def next_block(self, n: int, expected: str) -> Iterator[tuple[int, list[str]]]:
        for _ in range(n):
            yield self.next(expected)

    def error(self, lineno: int, msg: str) -> DataError:
        return DataError(f"{self.path}: line {lineno}: {msg}")


def _int(tok: str) -> int:
    """An integer in plain ASCII digits (``int`` also takes '1_0'); ValueError otherwise."""
    if not (tok.isascii() and tok.lstrip("+-").isdigit() and len(tok) - len(tok.lstrip("+-")) <= 1):
        raise ValueError(tok)
    return int(tok)


def _one_int(src: _Lines, what: str, minimum: int = 0) -> tuple[int, int]:
    lineno, tok = src.next(what)
    if len(tok) != 1:
        got = " ".join(tok)[:60]
        raise src.error(lineno, f"expected {what} (one integer), got {len(tok)} values: {got!r}")
    try:
        value = _int(tok[0])
    except ValueError:
        raise src.error(lineno, f"expected {what} (an integer), got {tok[0]!r}") from None
    if value < minimum:
        raise src.error(lineno, f"expected {what} >= {minimum}, got {value}")
    return lineno, value


def _body_line(src: _Lines, frame: int) -> tuple[int, int]:
    what = f"a body line of 10 values ({BODY_FIELDS}) in frame {frame}"
    lineno, tok = src.next(what)
    if len(tok) != 10:
        raise src.error(lineno, f"expected {what}, got {len(tok)} values")
    try:
        body_id = _int(tok[0])
        for t in tok[1:7] + tok[9:10]:
            _int(t)
        for t in tok[7:9]:
            if number(t) is None:
                raise ValueError(t)
    except ValueError:
        raise src.error(lineno, f"expected {what} (integers, leanX/leanY numbers), got non-numeric values") from None
    return lineno, body_id


def _joint_block(src: _Lines, frame: int) -> tuple[np.ndarray, np.ndarray]:
    what = f"a joint line of 12 values ({JOINT_FIELDS}) in frame {frame}"
    rows: list[list[str]] = []
    linenos: list[int] = []
    for lineno, tok in src.next_block(NUM_KINECT_JOINTS, what):
        if len(tok) != 12:
            raise src.error(lineno, f"expected {what}, got {len(tok)} values")
        rows.append(tok)
        linenos.append(lineno)
    try:
        arr = np.array(rows, dtype=np.float64)
    except ValueError:
        arr = None
    if arr is None or not set("".join("".join(t) for t in rows)) <= DECIMAL_CHARS:  # numpy also takes '1_0'
        for lineno, tok in zip(linenos, rows):
            for t in tok:
                if number(t) is None and t.lower() not in ("nan", "inf", "-inf", "+inf"):
                    raise src.error(lineno, f"expected {what}, got non-numeric {t!r}")
        if arr is None:  # pragma: no cover - numpy failed although every token converts
            raise src.error(linenos[0], f"expected {what}")
    finite = np.isfinite(arr)
    if not finite.all():
        r = int(np.argwhere(~finite)[0, 0])
        raise src.error(linenos[r], f"expected {what}, got a NaN or infinite value")
    far = np.abs(arr[:, :3]) > MAX_POSITION_M
    if far.any():
        r = int(np.argwhere(far)[0, 0])
        raise src.error(linenos[r], f"joint position {np.abs(arr[r, :3]).max():g} m is beyond {MAX_POSITION_M:g} m")
    odd = ~np.isin(arr[:, 11], (0.0, 1.0, 2.0))
    if odd.any():
        r = int(np.flatnonzero(odd)[0])
        raise src.error(linenos[r], f"tracking state {rows[r][11]!r}; expected 0, 1 or 2")
    return arr[:, :3], arr[:, 11]


def read_ntu_skeleton(path: str | Path) -> NtuRecording:
    """Read every body of an NTU RGB+D ``.skeleton`` file (raw Kinect camera space).

    Raises :class:`DataError` naming the file, the line and what was expected for a
    missing/unreadable file, a truncated file, a non-numeric value, a wrong number of values
    on a line, a joint count other than 25, the same body twice in one frame, or content
    after the last frame.
    """
    path = Path(path)
    try:
        text = path.read_bytes().removeprefix(b"\xef\xbb\xbf").decode("ascii", errors="strict")  # a BOM is accepted
    except FileNotFoundError:
        raise DataError(f"{path}: NTU skeleton file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not an NTU .skeleton text file (non-ASCII byte at offset {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read NTU skeleton file ({e.strerror or e})") from None

    src = _Lines(path, text)
    if src.at_end():
        raise DataError(f"{path}: line 1: file is empty; expected the frame count")
    _, num_frames = _one_int(src, "the frame count")

    body_counts = np.zeros(num_frames, dtype=np.int64)
    per_body: dict[int, tuple[list[int], list[np.ndarray], list[np.ndarray]]] = {}
    for f in range(num_frames):
        _, nb = _one_int(src, f"the body count of frame {f + 1} of {num_frames}")
        body_counts[f] = nb
        seen: set[int] = set()
        for _ in range(nb):
            lineno, body_id = _body_line(src, f + 1)
            if body_id in seen:
                raise src.error(lineno, f"body {body_id} appears twice in frame {f + 1}; expected distinct body ids")
            seen.add(body_id)
            where = f"body {body_id} in frame {f + 1}"
            jl, nj = _one_int(src, f"the joint count ({NUM_KINECT_JOINTS}) of {where}")
            if nj != NUM_KINECT_JOINTS:
                raise src.error(jl, f"expected {NUM_KINECT_JOINTS} joints (Kinect v2) for {where}, got {nj}")
            xyz, state = _joint_block(src, f + 1)
            entry = per_body.setdefault(body_id, ([], [], []))
            entry[0].append(f)
            entry[1].append(xyz)
            entry[2].append(state)
    if not src.at_end():
        lineno, tok = src.next("")
        got = " ".join(tok)[:60]
        raise src.error(lineno, f"unexpected content after the last of {num_frames} frames: {got!r}")

    bodies: dict[int, NtuBody] = {}
    for body_id, (frames, xyzs, states) in per_body.items():
        idx = np.asarray(frames, dtype=np.int64)
        pos = np.full((num_frames, NUM_KINECT_JOINTS, 3), np.nan, dtype=np.float32)
        pos[idx] = np.stack(xyzs)
        trk = np.full((num_frames, NUM_KINECT_JOINTS), -1, dtype=np.int8)
        trk[idx] = np.rint(np.stack(states)).astype(np.int8)
        bodies[body_id] = NtuBody(body_id=body_id, frames=idx, positions=pos, joint_tracking=trk)

    fields = parse_ntu_name(path)
    return NtuRecording(
        path=path,
        num_frames=num_frames,
        bodies=bodies,
        body_counts=body_counts,
        setup=fields.get("setup"),  # type: ignore[arg-type]
        camera=fields.get("camera"),  # type: ignore[arg-type]
        subject=fields.get("subject"),  # type: ignore[arg-type]
        replication=fields.get("replication"),  # type: ignore[arg-type]
        action=fields.get("action"),  # type: ignore[arg-type]
        name_fields=fields,
    )


def _no_body(rec: NtuRecording) -> DataError:
    return DataError(f"{rec.path}: no body in any of its {rec.num_frames} frames; expected at least one skeleton")


def body_energy(body: NtuBody) -> float:
    """Motion energy as in the 2s-AGCN / MS-G3D NTU pre-processing (``get_nonzero_std``).

    Over the frames where the body is present: std of all x values (over frames and joints)
    + std of all y + std of all z. Large for a moving, extended body; small for a static
    or collapsed spurious detection.
    """
    p = body.positions[body.frames].astype(np.float64)
    if p.shape[0] == 0:
        return 0.0
    return float(sum(p[..., c].std() for c in range(3)))


def select_main_body(rec: NtuRecording) -> int:
    """Index (order of first appearance) of the main actor of a recording.

    Rule: bodies present in fewer than ``MIN_FRAMES_FRACTION`` (0.5) of the frames of the
    longest-tracked body are discarded as short spurious detections (as the SGN/CTR-GCN
    denoising drops short bodies); among the rest the one with the highest motion energy
    (:func:`body_energy`, the 2s-AGCN rule for ranking bodies) is chosen. Ties go to the
    body that appeared first.
    """
    blist = rec.body_list
    if not blist:
        raise _no_body(rec)
    longest = max(b.num_present for b in blist)
    candidates = [i for i, b in enumerate(blist) if b.num_present >= MIN_FRAMES_FRACTION * longest]
    energies = [body_energy(blist[i]) for i in candidates]
    return candidates[int(np.argmax(energies))]


def fill_gaps(positions: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """Trim leading/trailing all-NaN frames and interpolate interior gaps linearly.

    ``positions`` is ``(T, V, 3)`` with whole frames NaN where the body is absent.
    Returns ``(filled, first, last, frames_filled)``: the kept frames are ``first..last``
    (inclusive) of the input; each missing interior frame is the linear interpolation (in
    time, per joint coordinate) between the nearest present frames before and after it.
    """
    present = np.isfinite(positions).all(axis=(1, 2))
    idx = np.flatnonzero(present)
    if idx.size == 0:
        raise ValueError("no present frame")
    first, last = int(idx[0]), int(idx[-1])
    out = positions[first : last + 1].astype(np.float64, copy=True)
    rel = idx - first
    missing = np.flatnonzero(~present[first : last + 1])
    if missing.size:
        flat = out.reshape(out.shape[0], -1)
        known = flat[rel]
        for k in range(flat.shape[1]):
            flat[missing, k] = np.interp(missing, rel, known[:, k])
    return out.astype(np.float32), first, last, int(missing.size)


def load_ntu_skeleton(path: str | Path, body: str | int = "auto") -> Motion:
    """One body of an NTU ``.skeleton`` file as a :class:`Motion` on the STANDARD skeleton.

    ``body``: ``"auto"`` picks the main actor with :func:`select_main_body` (longest-tracked
    bodies first, then the highest 2s-AGCN motion energy); an int picks a body by its index
    in order of first appearance (0 = the first body seen).

    Frames where the chosen body is missing: leading and trailing ones are dropped, interior
    ones are filled by linear interpolation (:func:`fill_gaps`; ``meta["frames_filled"]``
    counts them, ``meta["first_frame"]`` is the file frame the motion starts at).
    Positions are rotated into our frame with :func:`kinect_camera_to_ours` and mapped with
    :func:`stimuli.skeleton.kinect_to_standard`. ``fps`` is 30 (Kinect v2).
    """
    rec = read_ntu_skeleton(path)
    blist = rec.body_list
    if not blist:
        raise _no_body(rec)
    if isinstance(body, str):
        if body != "auto":
            raise DataError(f"{rec.path}: body must be 'auto' or a body index, got {body!r}")
        chosen = select_main_body(rec)
    elif isinstance(body, (int, np.integer)) and not isinstance(body, bool):
        if not 0 <= int(body) < len(blist):
            raise DataError(
                f"{rec.path}: body index {body} out of range; the file has {len(blist)} bodies (0..{len(blist) - 1})"
            )
        chosen = int(body)
    else:
        raise DataError(f"{rec.path}: body must be 'auto' or a body index, got {body!r}")
    b = blist[chosen]
    filled, first, last, n_filled = fill_gaps(b.positions)
    positions = kinect_to_standard(kinect_camera_to_ours(filled))
    meta = {
        "source": str(rec.path),
        "format": "ntu_skeleton",
        "subject": rec.subject,
        "action": rec.action,
        "class_index": rec.class_index,
        "setup": rec.setup,
        "camera": rec.camera,
        "replication": rec.replication,
        "num_bodies": len(blist),
        "body": chosen,
        "body_id": b.body_id,
        "body_selection": "auto" if isinstance(body, str) else "index",
        "frames_in_file": rec.num_frames,
        "first_frame": first,
        "frames_trimmed": rec.num_frames - (last - first + 1),
        "frames_filled": n_filled,
        "coordinates": COORDINATES_NOTE,
    }
    return Motion(positions=metres(positions, str(rec.path)), fps=NTU_FPS, meta=meta)
