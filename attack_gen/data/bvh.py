"""BVH (Biovision hierarchy) files onto the standard 25-joint skeleton.

:func:`parse_bvh` reads any hierarchy (one ``ROOT``, nested ``JOINT``s and ``End Site``s,
``CHANNELS`` with any order of position and rotation channels on any joint) and the
``MOTION`` block; :meth:`BvhData.positions` runs forward kinematics over frames for every
joint; :func:`load_bvh` picks the 25 standard joints by name (see
:mod:`attack_gen.data.retarget` for the naming schemes and the joints placed by rule),
converts to metres and returns a :class:`stimuli.motion.Motion`.

Conventions:

- Rotation channels compose in the order listed: ``Zrotation Yrotation Xrotation`` is
  ``Rz @ Ry @ Rx`` (column vectors, child to parent), angles in degrees.
- Position channels *replace* the matching component of the joint's ``OFFSET`` (the usual
  reading; in Bandai Namco's files every joint has position channels equal to its offset).
- A joint's global position is ``parent position + parent rotation @ local translation``;
  an ``End Site`` becomes the joint ``"<parent name>.end"``.
- Y is up (all supported files are). There is no unit field: the unit is detected from
  the leg length (:func:`attack_gen.data.retarget.detect_unit`) unless ``scale=`` (metres
  per file unit) is given; ``meta["unit"]``/``meta["unit_to_m"]`` record it.
- Frame rate: ``1 / Frame Time``, rounded to the nearest integer when within 0.1% of it
  (``0.008333`` s -> 120 fps, ``0.0333333`` s -> 30 fps).

Notes on the real files: ``cmu_mocap/bvh/01_01.bvh`` starts with one extra rest-pose
(T-pose) frame before the 2751 frames of ``01_01.amc``; it is kept (nothing in the file
marks it). ``hdm05_bvh_basar/ntu_rest.bvh`` writes the standard names, in order, onto a
Kinect-shaped tree (its ``RightToeBase`` is the spine, its ``Neck`` a shoulder): it loads,
but its joints are not where their names say.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import numpy as np

from stimuli.errors import DataError
from stimuli.motion import Motion

from .kinematics import euler_to_matrix
from .limits import DECIMAL_CHARS as _DECIMAL_CHARS
from .limits import MAX_ANGLE_DEG
from .limits import MAX_RAW_VALUE
from .limits import check_fps
from .limits import metres
from .limits import number
from .retarget import resolve_unit
from .retarget import select_standard
from .retarget import subject_from_name

__all__ = ["BvhData", "parse_bvh", "load_bvh", "fps_from_frame_time"]

_CHANNELS = {
    "xposition": ("p", 0),
    "yposition": ("p", 1),
    "zposition": ("p", 2),
    "xrotation": ("r", 0),
    "yrotation": ("r", 1),
    "zrotation": ("r", 2),
}
_AXES = "XYZ"


@dataclass
class BvhData:
    """A parsed BVH file: the joint tree, its channels and the motion values.

    ``names``/``parents``/``offsets`` cover every joint *and* End Site (``is_end_site``
    marks the latter; they are named ``"<parent>.end"``). ``channels[j]`` lists joint
    ``j``'s channel names as written and ``channel_start[j]`` the column of its first
    channel in ``motion`` ``(T, num_channels)``.
    """

    path: Path
    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    channel_start: np.ndarray
    is_end_site: np.ndarray
    frame_time: float
    motion: np.ndarray
    lines: dict[str, int] = field(default_factory=dict)
    """Line numbers of landmarks (``MOTION``, ``first_frame``), for messages."""

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def num_channels(self) -> int:
        return int(self.motion.shape[1])

    @property
    def fps(self) -> float:
        return fps_from_frame_time(self.frame_time)

    @property
    def joint_names(self) -> list[str]:
        """Names of the real joints (End Sites left out)."""
        return [n for n, e in zip(self.names, self.is_end_site) if not e]

    def positions(self) -> np.ndarray:
        """Global positions ``(T, J, 3)`` (file units) of every joint and End Site."""
        T, J = self.num_frames, len(self.names)
        pos = np.empty((T, J, 3))
        glob: list[np.ndarray | None] = [None] * J  # global rotation (T,3,3); None = identity
        for j in range(J):
            local_t = np.broadcast_to(self.offsets[j], (T, 3)).copy()
            axes, cols = [], []
            for k, ch in enumerate(self.channels[j]):
                kind, axis = _CHANNELS[ch.lower()]
                col = self.motion[:, self.channel_start[j] + k]
                if kind == "p":
                    local_t[:, axis] = col
                else:
                    axes.append(_AXES[axis])
                    cols.append(col)
            local_r = euler_to_matrix(np.stack(cols, axis=-1), "".join(axes)) if axes else None
            p = int(self.parents[j])
            if p < 0:
                pos[:, j] = local_t
                glob[j] = local_r
                continue
            parent_r = glob[p]
            if parent_r is None:
                pos[:, j] = pos[:, p] + local_t
            else:
                pos[:, j] = pos[:, p] + np.einsum("tij,tj->ti", parent_r, local_t)
            if local_r is None:
                glob[j] = parent_r
            else:
                glob[j] = local_r if parent_r is None else parent_r @ local_r
        return pos


def fps_from_frame_time(frame_time: float) -> float:
    """``1 / frame_time``, snapped to the nearest integer when within 0.1% of it."""
    fps = 1.0 / frame_time
    nearest = round(fps)
    if nearest > 0 and abs(fps - nearest) <= 1e-3 * fps:
        return float(nearest)
    return fps


class _Tokens:
    """Whitespace tokens of the hierarchy part, each with its 1-based line number."""

    def __init__(self, path: Path, lines: list[str], stop: int) -> None:
        self.path = path
        self.items: list[tuple[str, int]] = []
        for ln in range(stop):
            for tok in lines[ln].replace("{", " { ").replace("}", " } ").split():
                self.items.append((tok, ln + 1))
        self.i = 0
        self.last_line = stop if stop > 0 else 1

    def error(self, msg: str, line: int | None = None) -> DataError:
        return DataError(f"{self.path} line {line if line is not None else self.last_line}: {msg}")

    def peek(self) -> tuple[str, int] | None:
        return self.items[self.i] if self.i < len(self.items) else None

    def next(self, what: str) -> tuple[str, int]:
        if self.i >= len(self.items):
            raise self.error(f"hierarchy ends early: expected {what} before MOTION")
        tok = self.items[self.i]
        self.i += 1
        return tok

    def expect(self, word: str) -> int:
        tok, ln = self.next(repr(word))
        if tok.upper() != word.upper():
            raise self.error(f"expected {word!r}, got {tok!r}", ln)
        return ln

    def number(self, what: str) -> float:
        tok, ln = self.next(what)
        val = number(tok)
        if val is None:
            raise self.error(f"expected a finite number in plain decimal notation for {what}, got {tok!r}", ln)
        if abs(val) > MAX_RAW_VALUE:
            raise self.error(f"{what} is {tok}; beyond {MAX_RAW_VALUE:g} in any unit the file is corrupt", ln)
        return val


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return raw.decode("utf-8-sig", errors="replace")  # a byte-order mark is accepted


def parse_bvh(path: str | Path) -> BvhData:
    """Parse a BVH file; every problem raises :class:`DataError` naming the file and line."""
    path = Path(path)
    lines = _read_text(path).splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: empty file")
    motion_line = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if motion_line is None:
        raise DataError(f"{path} line {len(lines)}: no MOTION section (expected a line 'MOTION' after the hierarchy)")
    toks = _Tokens(path, lines, motion_line)

    names: list[str] = []
    parents: list[int] = []
    offsets: list[tuple[float, float, float]] = []
    channels: list[tuple[str, ...]] = []
    is_end: list[bool] = []

    def parse_node(name: str, parent: int, end_site: bool) -> None:
        j = len(names)
        names.append(name)
        parents.append(parent)
        offsets.append((0.0, 0.0, 0.0))
        channels.append(())
        is_end.append(end_site)
        toks.expect("{")
        seen_offset = False
        while True:
            tok, ln = toks.next("'}'")
            key = tok.upper()
            if key == "}":
                break
            if key == "OFFSET":
                offsets[j] = (
                    toks.number(f"{name} OFFSET x"),
                    toks.number(f"{name} OFFSET y"),
                    toks.number(f"{name} OFFSET z"),
                )
                seen_offset = True
            elif key == "CHANNELS" and not end_site:
                n_tok, n_ln = toks.next("the channel count")
                if not n_tok.isdigit():
                    raise toks.error(f"expected a channel count after CHANNELS for joint {name}, got {n_tok!r}", n_ln)
                chans = []
                for _ in range(int(n_tok)):
                    ch, ch_ln = toks.next(f"{n_tok} channel names for joint {name}")
                    if ch.lower() not in _CHANNELS:
                        raise toks.error(
                            f"unknown channel {ch!r} for joint {name} (expected Xposition, Yposition, Zposition, "
                            "Xrotation, Yrotation or Zrotation)",
                            ch_ln,
                        )
                    chans.append(ch)
                channels[j] = tuple(chans)
            elif key == "JOINT" and not end_site:
                child, _ = toks.next("a joint name")
                parse_node(child, j, False)
            elif key == "END" and not end_site:
                toks.expect("Site")
                k = sum(1 for p, e in zip(parents, is_end) if e and p == j)
                parse_node(f"{name}.end" if k == 0 else f"{name}.end{k + 1}", j, True)
            else:
                raise toks.error(f"unexpected {tok!r} in {'End Site of ' if end_site else 'joint '}{name}", ln)
        if not seen_offset:
            raise toks.error(f"{'End Site of ' if end_site else 'joint '}{name} has no OFFSET")

    toks.expect("HIERARCHY")
    tok, ln = toks.next("ROOT")
    if tok.upper() != "ROOT":
        raise toks.error(f"expected 'ROOT', got {tok!r}", ln)
    root_name, _ = toks.next("the root's name")
    parse_node(root_name, -1, False)
    extra = toks.peek()
    if extra is not None:
        what = (
            "a second ROOT (only one skeleton per file is supported)" if extra[0].upper() == "ROOT" else repr(extra[0])
        )
        raise toks.error(f"unexpected {what} after the root joint's closing brace", extra[1])

    counts = [len(c) for c in channels]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n_channels = int(sum(counts))
    if n_channels == 0:
        raise DataError(f"{path} line {motion_line + 1}: the hierarchy declares no CHANNELS")

    # ---- MOTION header: "Frames: N" and "Frame Time: t"
    def header(start: int, label: str) -> tuple[str, int]:
        ln = start
        while ln < len(lines) and not lines[ln].strip():
            ln += 1
        if ln >= len(lines):
            raise DataError(f"{path} line {ln}: file ends before '{label}' in the MOTION section")
        text = lines[ln].strip()
        if not text.lower().replace(" ", "").replace("\t", "").startswith(label.lower().replace(" ", "")):
            raise DataError(f"{path} line {ln + 1}: expected '{label} ...', got {text[:60]!r}")
        return text.split(":", 1)[1].strip() if ":" in text else "", ln

    value, frames_ln = header(motion_line + 1, "Frames:")
    if not (value.isascii() and value.isdigit()):
        raise DataError(f"{path} line {frames_ln + 1}: expected an integer frame count after 'Frames:', got {value!r}")
    n_frames = int(value)
    if n_frames <= 0:
        raise DataError(f"{path} line {frames_ln + 1}: 'Frames: {n_frames}' - expected at least one frame")
    value, time_ln = header(frames_ln + 1, "Frame Time:")
    frame_time = number(value)
    if frame_time is None:
        raise DataError(f"{path} line {time_ln + 1}: expected a number after 'Frame Time:', got {value!r}")
    if not frame_time > 0:
        raise DataError(f"{path} line {time_ln + 1}: Frame Time must be > 0 seconds, got {value!r}")
    check_fps(1.0 / frame_time, f"{path} line {time_ln + 1}: Frame Time {value}")

    # ---- frame lines
    rows: list[list[str]] = []
    row_lines: list[int] = []
    for ln in range(time_ln + 1, len(lines)):
        fields = lines[ln].split()
        if not fields:
            continue
        if len(fields) != n_channels:
            raise DataError(
                f"{path} line {ln + 1} (frame {len(rows) + 1}): expected {n_channels} channel values, got {len(fields)}"
            )
        rows.append(fields)
        row_lines.append(ln + 1)
    if len(rows) != n_frames:
        raise DataError(
            f"{path} line {len(lines)}: 'Frames: {n_frames}' (line {frames_ln + 1}) but the file has "
            f"{len(rows)} frame line(s)"
        )
    try:
        motion = np.array(rows, dtype=np.float64)
    except ValueError:
        for r, fields in enumerate(rows):
            for c, tok in enumerate(fields):
                try:
                    float(tok)
                except ValueError:
                    raise DataError(
                        f"{path} line {row_lines[r]} (frame {r + 1}): value {c + 1} is {tok!r}, expected a number"
                    ) from None
        raise  # pragma: no cover
    bad = ~np.isfinite(motion)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(
            f"{path} line {row_lines[r]} (frame {r + 1}): value {c + 1} is {rows[r][c]!r}, expected a finite number"
        )
    if not set("".join("".join(f) for f in rows)) <= _DECIMAL_CHARS:  # numpy also takes '1_0' and other digits
        for r, fields in enumerate(rows):
            for c, tok in enumerate(fields):
                if number(tok) is None:
                    raise DataError(
                        f"{path} line {row_lines[r]} (frame {r + 1}): value {c + 1} is {tok!r}, "
                        "expected a number in plain decimal notation"
                    )
    big = (np.abs(motion) > MAX_RAW_VALUE).any(axis=1)
    if big.any():
        r = int(np.flatnonzero(big)[0])
        raise DataError(
            f"{path} line {row_lines[r]} (frame {r + 1}): value {float(np.abs(motion[r]).max()):g} is "
            f"beyond {MAX_RAW_VALUE:g}: implausible in any unit"
        )
    rot = [int(s) + k for s, chans in zip(starts, channels) for k, ch in enumerate(chans) if "rotation" in ch.lower()]
    if rot:
        big = (np.abs(motion[:, rot]) > MAX_ANGLE_DEG).any(axis=1)
        if big.any():
            r = int(np.flatnonzero(big)[0])
            raise DataError(
                f"{path} line {row_lines[r]} (frame {r + 1}): rotation "
                f"{float(np.abs(motion[r, rot]).max()):g} degrees exceeds {MAX_ANGLE_DEG:g}"
            )
    return BvhData(
        path=path,
        names=names,
        parents=np.asarray(parents, dtype=np.int64),
        offsets=np.asarray(offsets, dtype=np.float64),
        channels=channels,
        channel_start=starts,
        is_end_site=np.asarray(is_end, dtype=bool),
        frame_time=frame_time,
        motion=motion,
        lines={"MOTION": motion_line + 1, "first_frame": row_lines[0]},
    )


def load_bvh(path: str | Path, *, scale: float | None = None, fps: float | None = None) -> Motion:
    """Load a BVH file onto the standard 25-joint skeleton, in metres.

    ``scale`` (metres per file unit) overrides the unit detection; ``fps`` overrides the
    frame rate from ``Frame Time``. ``meta`` has ``source``, ``format`` ("bvh"),
    ``subject`` (HDM05 actor or CMU subject from the file name, else ``None``),
    ``num_source_joints`` (End Sites not counted), ``unit``, ``unit_to_m``, ``naming``
    (the naming scheme matched) and ``synthesised_joints``.
    """
    path = Path(path)
    data = parse_bvh(path)
    pos = data.positions()
    std, scheme, synth = select_standard(pos, data.names, source=str(path))
    unit, unit_to_m = resolve_unit(std, scale, source=str(path))
    if any(rule.startswith("~") for rule in synth.values()):
        std, scheme, synth = select_standard(pos, data.names, unit_to_m=unit_to_m, scheme=scheme, source=str(path))
    rate = data.fps if fps is None else float(fps)
    meta = {
        "source": str(path),
        "format": "bvh",
        "subject": subject_from_name(path.stem),
        "num_source_joints": int((~data.is_end_site).sum()),
        "unit": unit,
        "unit_to_m": unit_to_m,
        "naming": scheme,
        "synthesised_joints": synth,
        "frame_time": data.frame_time,
    }
    return Motion(positions=metres(std * unit_to_m, str(path)), fps=rate, meta=meta)
