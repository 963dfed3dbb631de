"""Acclaim ASF/AMC motion (HDM05 "cut" files, CMU) onto the standard 25-joint skeleton.

:func:`parse_asf` reads the skeleton, :func:`parse_amc` the per-frame channel values,
:func:`forward_kinematics` places every bone, and :func:`load_amc` picks the 25 standard
joints and returns a :class:`stimuli.motion.Motion` in metres.

Forward kinematics (the Acclaim/Vicon definition, as in the CMU ``amc_to_matrix`` code):

- Angles of an ``axis a b c XYZ`` line or of a ``dof rx ry rz`` list are applied in the
  order written, about fixed axes: ``XYZ`` gives ``Rz(c) @ Ry(b) @ Rx(a)``.
- Each bone has ``C`` (from ``axis``) and, per frame, ``M`` (from its AMC dof values; a
  missing dof is 0); its local rotation is ``L = C @ M @ C^-1`` and its global rotation
  ``G = G_parent @ L``. The root's ``C`` comes from its ``orientation`` and ``axis``;
  its position is the AMC ``TX TY TZ`` (the ASF ``position`` is the rest pose only).
- The bone ends at ``start + G @ (direction * length)``; it starts where its parent ends
  (root children start at the root position).
- Translation dofs of a bone (``tx ty tz``, rare) move its end by ``G_parent @ C @ t``,
  and ``l`` adds to its length.

Joint positions: the joint named after bone ``X`` is the *start* of bone ``X``, the same
convention as a BVH converted from the ASF (see :mod:`attack_gen.data.retarget`), so
``lfemur`` is the hip, ``ltibia`` the knee, ``lowerneck`` the base of the neck. The root
is joint ``root``; a leaf bone's end is ``"<bone>.end"``.

By default :func:`load_amc` also gives the ``thorax``, ``lwrist`` and ``rwrist`` bones zero
length (:data:`CMU_BVH_COLLAPSED`; their rotations still apply), as the CMU 31-joint BVH
conversions and the SMART authors' data do: ``Neck`` then sits on ``Spine1`` and the
thumb joint on the wrist, and ``cmu_mocap/asf_amc/01_01.amc`` reproduces
``cmu_mocap/bvh/01_01.bvh`` (frames 2..) to 1e-4 ASF units in all 31 joints. With
``collapse=()`` the geometry is the ASF's own, but then the wrist-to-finger bone
(18-17, 23-22) spans two rotating bones (``lwrist`` + ``lhand``) and its length varies by
up to ~10%.

Units: ``:units length L`` means 1 unit = 1/L inch (0.45 -> 0.05644 m); ``angle deg`` or
``rad`` (the AMC's ``:DEGREES``/``:RADIANS`` takes precedence). Y is up.

The ASF is found by subject when not given: the file name prefix before the take
(``HDM_bd_..._120.amc`` -> ``HDM_bd.asf``, ``01_01.amc`` -> ``01.asf``), looked for in
the AMC's folder and then in its sibling folders (e.g. ``../asf/HDM_bd.asf``).
Frame rate: 120 (HDM05 and CMU capture rate, also the ``_120`` in HDM05 names; another
``_<n>`` suffix gives ``n``) unless ``fps=`` is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import numpy as np

from stimuli.errors import DataError
from stimuli.motion import Motion

from .kinematics import euler_to_matrix
from .limits import DECIMAL_CHARS as _DECIMAL_CHARS
from .limits import MAX_ANGLE_DEG
from .limits import MAX_BONE_M
from .limits import MAX_RAW_VALUE
from .limits import check_angles
from .limits import metres
from .limits import number
from .retarget import asf_unit_to_m
from .retarget import select_standard
from .retarget import subject_from_name

__all__ = [
    "AsfBone",
    "AsfSkeleton",
    "AmcData",
    "parse_asf",
    "parse_amc",
    "forward_kinematics",
    "find_asf",
    "load_amc",
    "DEFAULT_FPS",
    "CMU_BVH_COLLAPSED",
]

DEFAULT_FPS = 120.0
CMU_BVH_COLLAPSED: tuple[str, ...] = ("thorax", "lwrist", "rwrist")
"""Bones the CMU 31-joint BVH conversions give zero length (see the module docstring)."""
_ROT_DOFS = ("rx", "ry", "rz")
_TRANS_DOFS = ("tx", "ty", "tz")
_ALL_DOFS = _ROT_DOFS + _TRANS_DOFS + ("l",)


@dataclass
class AsfBone:
    """One ASF bone: unit ``direction`` (global rest frame), ``length``, axis, dofs."""

    name: str
    direction: np.ndarray
    length: float
    axis: np.ndarray
    axis_order: str
    dofs: tuple[str, ...]
    id: int | None = None


@dataclass
class AsfSkeleton:
    """A parsed ASF: ``bones`` (root excluded) in depth-first order of the hierarchy.

    ``parent[name]`` is the parent bone's name (``"root"`` for the root's children);
    ``root_order`` the root's AMC channels (e.g. ``("tx","ty","tz","rx","ry","rz")``).
    """

    path: Path
    name: str
    length_unit: float
    angle_unit: str
    root_order: tuple[str, ...]
    root_axis: str
    root_position: np.ndarray
    root_orientation: np.ndarray
    bones: dict[str, AsfBone]
    parent: dict[str, str]

    @property
    def unit_to_m(self) -> float:
        """Metres per ASF length unit."""
        return asf_unit_to_m(self.length_unit)

    @property
    def joint_names(self) -> list[str]:
        """``["root", *bones]``: the joints at the root and at each bone's start."""
        return ["root", *self.bones]

    def num_values(self, bone: str) -> int:
        """How many values bone ``bone`` (or ``"root"``) has on an AMC line."""
        return len(self.root_order) if bone == "root" else len(self.bones[bone].dofs)


@dataclass
class AmcData:
    """AMC channel values: ``values[bone]`` is ``(T, n)`` in the bone's dof order
    (``"root"`` in the ASF root order); ``frame_numbers`` ``(T,)`` as written."""

    path: Path
    frame_numbers: np.ndarray
    values: dict[str, np.ndarray]
    angle_unit: str = "deg"
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frame_numbers.shape[0])


# ------------------------------------------------------------------------- helpers


def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    lines = raw.decode("utf-8-sig", errors="replace").splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: empty file")
    return lines


def _floats(path: Path, ln: int, fields: list[str], what: str) -> np.ndarray:
    out = []
    for tok in fields:
        v = number(tok)
        if v is None:
            raise DataError(f"{path} line {ln}: {what}: {tok!r} is not a finite number in plain decimal notation")
        if abs(v) > MAX_RAW_VALUE:
            raise DataError(f"{path} line {ln}: {what}: {tok} is beyond {MAX_RAW_VALUE:g}: implausible in any unit")
        out.append(v)
    return np.asarray(out, dtype=np.float64)


def _is_count(tok: str) -> bool:
    """A frame number: at most 9 ASCII digits (``str.isdigit`` also takes other scripts' digits)."""
    return tok.isascii() and tok.isdigit() and len(tok) <= 9


def acclaim_rotation(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Rotations ``(..., 3, 3)`` applying ``angles_deg[..., k]`` about ``order[k]`` in turn.

    Acclaim lists rotations in the order they are applied (fixed axes), so ``"XYZ"``
    gives ``Rz @ Ry @ Rx``.
    """
    angles = np.asarray(angles_deg, dtype=np.float64)
    return euler_to_matrix(angles[..., ::-1], order[::-1].upper())


# --------------------------------------------------------------------------- ASF


def parse_asf(path: str | Path) -> AsfSkeleton:
    """Parse an Acclaim ASF skeleton; problems raise :class:`DataError` with file and line."""
    path = Path(path)
    lines = _read_lines(path)
    section = None
    name = path.stem
    length_unit, angle_unit = 1.0, "deg"
    root_order: tuple[str, ...] = ("tx", "ty", "tz", "rx", "ry", "rz")
    root_axis = "XYZ"
    root_position = np.zeros(3)
    root_orientation = np.zeros(3)
    bones: dict[str, AsfBone] = {}
    bone_lines: dict[str, int] = {}
    children: dict[str, list[str]] = {}
    child_lines: dict[str, int] = {}
    cur: dict | None = None
    cur_line = 0
    seen_bonedata = seen_hierarchy = False

    def finish_bone(ln: int) -> None:
        nonlocal cur
        assert cur is not None
        for key in ("name", "direction", "length"):
            if key not in cur:
                raise DataError(f"{path} line {cur_line}: bone block (begin at line {cur_line}) has no '{key}'")
        bname = cur["name"]
        if bname in bones or bname == "root":
            raise DataError(f"{path} line {cur_line}: bone {bname!r} defined twice")
        direction = cur["direction"]
        norm = float(np.linalg.norm(direction))
        if norm > 0:
            direction = direction / norm
        bones[bname] = AsfBone(
            name=bname,
            direction=direction,
            length=cur["length"],
            axis=cur.get("axis", np.zeros(3)),
            axis_order=cur.get("axis_order", "XYZ"),
            dofs=cur.get("dofs", ()),
            id=cur.get("id"),
        )
        bone_lines[bname] = cur_line
        cur = None

    for i, raw in enumerate(lines):
        ln = i + 1
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        key = fields[0].lower()
        if key.startswith(":"):
            if cur is not None:
                raise DataError(f"{path} line {ln}: bone block from line {cur_line} has no 'end'")
            section = key
            if key == ":name" and len(fields) > 1:
                name = fields[1]
            elif key == ":units" and len(fields) > 1:  # ":units length 0.45" on one line
                fields, key = fields[1:], fields[1].lower()
                section = ":units"
            elif key == ":bonedata":
                seen_bonedata = True
                continue
            elif key == ":hierarchy":
                seen_hierarchy = True
                continue
            else:
                continue
        if section == ":units":
            if key == "length" and len(fields) >= 2:
                length_unit = float(_floats(path, ln, fields[1:2], "length unit")[0])
                if length_unit <= 0:
                    raise DataError(f"{path} line {ln}: length unit must be > 0, got {fields[1]!r}")
            elif key == "angle" and len(fields) >= 2:
                angle_unit = fields[1].lower()
                if angle_unit not in ("deg", "rad"):
                    raise DataError(f"{path} line {ln}: angle unit must be 'deg' or 'rad', got {fields[1]!r}")
        elif section == ":root":
            if key == "order":
                order = tuple(f.lower() for f in fields[1:])
                bad = [f for f in order if f not in _ROT_DOFS + _TRANS_DOFS]
                if bad or not order:
                    raise DataError(f"{path} line {ln}: root order must list TX TY TZ RX RY RZ channels, got {line!r}")
                root_order = order
            elif key == "axis":
                if len(fields) != 2 or sorted(fields[1].upper()) != ["X", "Y", "Z"]:
                    raise DataError(f"{path} line {ln}: root axis must be an order like XYZ, got {line!r}")
                root_axis = fields[1].upper()
            elif key == "position":
                root_position = _floats(path, ln, fields[1:4], "root position")
            elif key == "orientation":
                root_orientation = _floats(path, ln, fields[1:4], "root orientation")
                if root_orientation.shape != (3,):
                    raise DataError(f"{path} line {ln}: root orientation needs 3 angles, got {line!r}")
                check_angles(root_orientation * (180 / np.pi if angle_unit == "rad" else 1.0), f"{path} line {ln}")
        elif section == ":bonedata":
            if key == "begin":
                if cur is not None:
                    raise DataError(f"{path} line {ln}: 'begin' inside the bone block from line {cur_line}")
                cur, cur_line = {}, ln
            elif key == "end":
                if cur is None:
                    raise DataError(f"{path} line {ln}: 'end' without 'begin'")
                finish_bone(ln)
            elif cur is None:
                raise DataError(f"{path} line {ln}: {fields[0]!r} outside a begin/end bone block")
            elif key == "id":
                cur["id"] = int(_floats(path, ln, fields[1:2], "bone id")[0]) if len(fields) > 1 else None
            elif key == "name":
                if len(fields) != 2:
                    raise DataError(f"{path} line {ln}: expected 'name <bone>', got {line!r}")
                cur["name"] = fields[1]
            elif key == "direction":
                d = _floats(path, ln, fields[1:], "bone direction")
                if d.shape != (3,):
                    raise DataError(f"{path} line {ln}: direction needs 3 numbers, got {line!r}")
                if np.abs(d).max() > 1e6:  # a direction is normalised: only its ratios count
                    raise DataError(
                        f"{path} line {ln}: direction component {np.abs(d).max():g} is implausible "
                        "(expected a vector of order 1)"
                    )
                cur["direction"] = d
            elif key == "length":
                v = _floats(path, ln, fields[1:2], "bone length")
                if v.shape != (1,) or v[0] < 0:
                    raise DataError(f"{path} line {ln}: length needs one number >= 0, got {line!r}")
                metres = v[0] * asf_unit_to_m(length_unit)
                if metres > MAX_BONE_M:
                    raise DataError(
                        f"{path} line {ln}: bone length {fields[1]} ({metres:.3g} m) exceeds {MAX_BONE_M:g} m"
                    )
                cur["length"] = float(v[0])
            elif key == "axis":
                if len(fields) != 5 or sorted(fields[4].upper()) != ["X", "Y", "Z"]:
                    raise DataError(f"{path} line {ln}: expected 'axis a b c XYZ', got {line!r}")
                cur["axis"] = _floats(path, ln, fields[1:4], "bone axis")
                check_angles(cur["axis"] * (180 / np.pi if angle_unit == "rad" else 1.0), f"{path} line {ln}")
                cur["axis_order"] = fields[4].upper()
            elif key == "dof":
                dofs = tuple(f.lower() for f in fields[1:])
                bad = [f for f in dofs if f not in _ALL_DOFS]
                if bad:
                    raise DataError(f"{path} line {ln}: unknown dof(s) {', '.join(bad)} (expected rx ry rz tx ty tz l)")
                cur["dofs"] = dofs
            # limits, bodymass, cofmass and limit continuation lines "(a b)" are ignored
        elif section == ":hierarchy":
            if key in ("begin", "end"):
                continue
            parent = fields[0]
            if len(fields) < 2:
                raise DataError(f"{path} line {ln}: hierarchy line lists no children: {line!r}")
            for child in fields[1:]:
                if child in child_lines:
                    raise DataError(
                        f"{path} line {ln}: bone {child!r} has two parents (also line {child_lines[child]})"
                    )
                child_lines[child] = ln
            children.setdefault(parent, []).extend(fields[1:])
            child_lines.setdefault(parent, ln)
    if cur is not None:
        raise DataError(f"{path} line {len(lines)}: file ends inside the bone block from line {cur_line}")
    if not seen_bonedata or not bones:
        raise DataError(f"{path} line {len(lines)}: no bones (expected a :bonedata section with begin/end blocks)")
    if not seen_hierarchy or "root" not in children:
        raise DataError(f"{path} line {len(lines)}: no :hierarchy section listing the root's children")
    for parent, kids in children.items():
        for b in [parent, *kids]:
            if b != "root" and b not in bones:
                raise DataError(f"{path} line {child_lines.get(b, len(lines))}: hierarchy names unknown bone {b!r}")
    # depth-first order from the root, children in the order listed
    order: list[str] = []
    parent_of: dict[str, str] = {}
    stack = [("root", kid) for kid in reversed(children["root"])]
    while stack:
        par, b = stack.pop()
        if b in parent_of:
            raise DataError(f"{path} line {child_lines[b]}: bone {b!r} is on a cycle in the hierarchy")
        parent_of[b] = par
        order.append(b)
        stack.extend((b, kid) for kid in reversed(children.get(b, [])))
    unplaced = [b for b in bones if b not in parent_of]
    if unplaced:
        raise DataError(
            f"{path} line {bone_lines[unplaced[0]]}: bone(s) {', '.join(unplaced)} "
            "not reachable from the root in :hierarchy"
        )
    return AsfSkeleton(
        path=path,
        name=name,
        length_unit=length_unit,
        angle_unit=angle_unit,
        root_order=root_order,
        root_axis=root_axis,
        root_position=root_position,
        root_orientation=root_orientation,
        bones={b: bones[b] for b in order},
        parent=parent_of,
    )


# --------------------------------------------------------------------------- AMC


def parse_amc(path: str | Path, skeleton: AsfSkeleton) -> AmcData:
    """Per-frame channel values of an AMC file, checked against ``skeleton``.

    Every frame must give every bone that has dofs (and the root) exactly its number of
    values; problems raise :class:`DataError` naming the file, line and frame.
    """
    path = Path(path)
    lines = _read_lines(path)
    expected = {"root": len(skeleton.root_order)}
    expected.update({b: len(bone.dofs) for b, bone in skeleton.bones.items()})
    fast = _parse_amc_fast(path, lines, skeleton, expected)
    if fast is not None:
        return fast
    return _parse_amc_checked(path, lines, skeleton, expected)


def _header_end(lines: list[str]) -> tuple[int, str | None]:
    """Index of the first frame-number line, and the angle unit the header sets."""
    unit = None
    for i, raw in enumerate(lines):
        s = raw.strip()
        if _is_count(s):
            return i, unit
        if s.upper().startswith(":DEGREES"):
            unit = "deg"
        elif s.upper().startswith(":RADIANS"):
            unit = "rad"
        elif s and not s.startswith(("#", ":")):
            return i, unit
    return len(lines), unit


def _parse_amc_fast(path: Path, lines: list[str], skeleton: AsfSkeleton, expected: dict[str, int]) -> AmcData | None:
    """The common case in C-speed list operations: every frame lists the same bones in the
    same order, one line each. Returns ``None`` whenever anything differs, and the
    line-by-line parser then accepts the file or reports the exact problem."""
    h, unit = _header_end(lines)
    body = lines[h:]
    # bones of the first frame, in order
    layout: list[str] = []
    for raw in body[1:]:
        f = raw.split()
        if not f:
            continue
        if _is_count(f[0]) and len(f) == 1:
            break
        layout.append(f[0])
    required = {b for b, n in expected.items() if n > 0}
    if not layout or len(set(layout)) != len(layout) or not required <= set(layout):
        return None
    if any(b not in expected for b in layout):
        return None
    width = 1 + sum(1 + expected[b] for b in layout)
    text = " ".join(body)
    # only plain ASCII decimals (float() and int() also take other scripts' digits and underscores)
    if not text.isascii():
        return None
    tokens = text.split()
    if not tokens or len(tokens) % width:
        return None
    T = len(tokens) // width
    if len(body) != T * (1 + len(layout)) and sum(1 for raw in body if raw.strip()) != T * (1 + len(layout)):
        return None
    if not all(map(_is_count, tokens[0::width])):
        return None
    frame_numbers = np.array(list(map(int, tokens[0::width])), dtype=np.int64)
    values: dict[str, np.ndarray] = {}
    off = 1
    try:
        for b in layout:
            if tokens[off::width] != [b] * T:
                return None
            n = expected[b]
            if n:
                chunk = [tokens[off + 1 + k :: width] for k in range(n)]
                if not set("".join("".join(c) for c in chunk)) <= _DECIMAL_CHARS:
                    return None
                cols = [list(map(float, c)) for c in chunk]
                arr = np.array(cols, dtype=np.float64).T
                if not np.isfinite(arr).all():
                    return None
                values[b] = arr
            off += 1 + n
    except ValueError:
        return None
    return AmcData(
        path=path,
        frame_numbers=frame_numbers,
        values=values,
        angle_unit=unit or skeleton.angle_unit,
        lines={"first_frame": h + 1},
    )


def _parse_amc_checked(path: Path, lines: list[str], skeleton: AsfSkeleton, expected: dict[str, int]) -> AmcData:
    """Line-by-line AMC parser with exact error messages."""
    angle_unit = skeleton.angle_unit
    required = [b for b, n in expected.items() if n > 0]
    tokens: dict[str, list[str]] = {b: [] for b in required}
    first_line: dict[str, list[int]] = {b: [] for b in required}
    frame_numbers: list[int] = []
    frame_lines: list[int] = []
    seen: set[str] = set()

    def close_frame(ln: int) -> None:
        if not frame_numbers:
            return
        missing = [b for b in required if b not in seen]
        if missing:
            raise DataError(
                f"{path} line {ln}: frame {frame_numbers[-1]} (from line {frame_lines[-1]}) is missing "
                f"bone(s) {', '.join(missing)}" + (" (file truncated?)" if ln >= len(lines) else "")
            )

    for i, raw in enumerate(lines):
        ln = i + 1
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        head = fields[0]
        if head.startswith(":"):
            key = head.upper()
            if key == ":DEGREES":
                angle_unit = "deg"
            elif key == ":RADIANS":
                angle_unit = "rad"
            if frame_numbers:
                raise DataError(f"{path} line {ln}: header keyword {head!r} after the first frame")
            continue
        if len(fields) == 1 and _is_count(head):
            close_frame(ln - 1)
            frame_numbers.append(int(head))
            frame_lines.append(ln)
            seen = set()
            continue
        if not frame_numbers:
            raise DataError(f"{path} line {ln}: expected a frame number before bone values, got {raw.strip()[:60]!r}")
        if head not in expected:
            raise DataError(
                f"{path} line {ln} (frame {frame_numbers[-1]}): unknown bone {head!r} (not in {skeleton.path.name})"
            )
        n = expected[head]
        if len(fields) - 1 != n:
            raise DataError(
                f"{path} line {ln} (frame {frame_numbers[-1]}): bone {head} needs {n} value(s), got {len(fields) - 1}"
            )
        if head in seen:
            raise DataError(f"{path} line {ln} (frame {frame_numbers[-1]}): bone {head} given twice in one frame")
        seen.add(head)
        if n:
            tokens[head].extend(fields[1:])
            first_line[head].append(ln)
    if not frame_numbers:
        raise DataError(f"{path} line {len(lines)}: no frames (expected a frame number line, then one line per bone)")
    close_frame(len(lines))

    T = len(frame_numbers)
    values: dict[str, np.ndarray] = {}
    for b in required:
        try:
            arr = np.array(tokens[b], dtype=np.float64).reshape(T, expected[b])
        except ValueError:
            arr = None
        if arr is None or not np.isfinite(arr).all():
            for f, ln in enumerate(first_line[b]):
                chunk = tokens[b][f * expected[b] : (f + 1) * expected[b]]
                for tok in chunk:
                    if number(tok) is None:
                        raise DataError(
                            f"{path} line {ln} (frame {frame_numbers[f]}): bone {b} value {tok!r} "
                            "is not a finite number"
                        )
        if any(number(tok) is None for tok in tokens[b]):  # e.g. '1_0' or other scripts' digits, which numpy takes
            for f, ln in enumerate(first_line[b]):
                for tok in tokens[b][f * expected[b] : (f + 1) * expected[b]]:
                    if number(tok) is None:
                        raise DataError(
                            f"{path} line {ln} (frame {frame_numbers[f]}): bone {b} value {tok!r} is not "
                            "a finite number in plain decimal notation"
                        )
        values[b] = arr  # type: ignore[assignment]
    return AmcData(
        path=path,
        frame_numbers=np.asarray(frame_numbers, dtype=np.int64),
        values=values,
        angle_unit=angle_unit,
        lines={"first_frame": frame_lines[0]},
    )


# --------------------------------------------------------------------- kinematics


def _dof_rotation(vals: np.ndarray, names: tuple[str, ...], angle_unit: str, T: int) -> np.ndarray | None:
    """Rotation ``(T,3,3)`` of the rotational dofs among ``names`` (in their order)."""
    idx = [k for k, d in enumerate(names) if d in _ROT_DOFS]
    if not idx:
        return None
    ang = vals[:, idx]
    if angle_unit == "rad":
        ang = np.rad2deg(ang)
    return acclaim_rotation(ang, "".join(names[k][1].upper() for k in idx))


def forward_kinematics(
    skeleton: AsfSkeleton, amc: AmcData, *, collapse: tuple[str, ...] = ()
) -> tuple[np.ndarray, list[str]]:
    """Positions ``(T, J, 3)`` (ASF length units) of every joint, and their names.

    Joints: ``root`` (the root translation), then each bone's start in the ASF's
    depth-first order, then ``"<bone>.end"`` for every leaf bone. Bones named in
    ``collapse`` get length 0 (their rotation still applies to their children; see
    :data:`CMU_BVH_COLLAPSED`). Vectorised over frames.
    """
    T = amc.num_frames
    unit = amc.angle_unit
    deg = (lambda a: np.rad2deg(a)) if skeleton.angle_unit == "rad" else (lambda a: a)
    root_vals = amc.values["root"]
    order = skeleton.root_order
    root_pos = np.zeros((T, 3))
    for k, ch in enumerate(order):
        if ch in _TRANS_DOFS:
            root_pos[:, _TRANS_DOFS.index(ch)] = root_vals[:, k]
    C = acclaim_rotation(deg(skeleton.root_orientation), skeleton.root_axis)
    M = _dof_rotation(root_vals, order, unit, T)
    root_rot = np.broadcast_to(C @ C.T, (T, 3, 3)) if M is None else C @ M @ C.T

    glob: dict[str, np.ndarray] = {"root": root_rot}
    start: dict[str, np.ndarray] = {}
    end: dict[str, np.ndarray] = {"root": root_pos}
    for b, bone in skeleton.bones.items():
        par = skeleton.parent[b]
        C = acclaim_rotation(deg(bone.axis), bone.axis_order)
        vals = amc.values.get(b)
        M = _dof_rotation(vals, bone.dofs, unit, T) if vals is not None else None
        parent_rot = glob[par]
        G = parent_rot @ (C @ C.T) if M is None else parent_rot @ (C @ M @ C.T)
        glob[b] = G
        length = np.full(T, 0.0 if b in collapse else bone.length)
        trans = np.zeros((T, 3))
        if vals is not None:
            for k, d in enumerate(bone.dofs):
                if d == "l":
                    length = length + vals[:, k]
                elif d in _TRANS_DOFS:
                    trans[:, _TRANS_DOFS.index(d)] = vals[:, k]
        s = end[par]
        vec = np.einsum("tij,j->ti", G, bone.direction) * length[:, None]
        if trans.any():
            vec = vec + np.einsum("tij,tj->ti", parent_rot @ C, trans)
        start[b] = s
        end[b] = s + vec
    has_child = set(skeleton.parent.values())
    leaves = [b for b in skeleton.bones if b not in has_child]
    names = ["root", *skeleton.bones, *(f"{b}.end" for b in leaves)]
    pos = np.stack([root_pos, *(start[b] for b in skeleton.bones), *(end[b] for b in leaves)], axis=1)
    return pos, names


# --------------------------------------------------------------------------- load


_TAKE_SUFFIX = re.compile(r"_(\d+)$")


def _asf_candidates(amc_path: Path) -> list[str]:
    """ASF file names to look for: the subject's (``HDM_bd``, ``01``), then the AMC's own stem."""
    parts = amc_path.stem.split("_")
    names = []
    if len(parts) >= 2 and parts[0].upper() == "HDM":
        names.append(f"{parts[0]}_{parts[1]}.asf")
    elif len(parts) >= 2:
        names.append(f"{parts[0]}.asf")
    names.append(amc_path.stem + ".asf")
    return names


def find_asf(amc_path: str | Path) -> Path:
    """The ASF of an AMC file: its subject's ``.asf`` in the same folder, else a sibling
    folder (``../asf/HDM_bd.asf``), else the parent folder."""
    amc_path = Path(amc_path)
    names = _asf_candidates(amc_path)
    folder = amc_path.parent
    here = folder.resolve()
    try:
        siblings = sorted(p for p in here.parent.iterdir() if p.is_dir() and p != here)
    except OSError:
        siblings = []
    for name in names:
        for d in [folder, *siblings, here.parent]:
            for cand in (d / name, d / (name[:-4] + ".ASF")):
                if cand.is_file():
                    return cand
    raise DataError(
        f"{amc_path}: no ASF skeleton found: looked for {' or '.join(names)} in {folder}, its sibling "
        f"folders and its parent folder; pass asf= explicitly"
    )


def _default_fps(path: Path) -> float:
    m = _TAKE_SUFFIX.search(path.stem)
    if m and path.stem.upper().startswith("HDM_"):
        rate = float(m.group(1))
        if rate > 0:
            return rate
    return DEFAULT_FPS


def _check_amc_angles(path: Path, skeleton: AsfSkeleton, amc: AmcData) -> None:
    """A one-line error naming the frame and bone where a rotation exceeds :data:`.limits.MAX_ANGLE_DEG`."""
    to_deg = 180 / np.pi if amc.angle_unit == "rad" else 1.0
    dofs = {"root": skeleton.root_order, **{b: bone.dofs for b, bone in skeleton.bones.items()}}
    for b, vals in amc.values.items():
        huge = (np.abs(vals) > MAX_RAW_VALUE).any(axis=1)
        if huge.any():
            f = int(np.flatnonzero(huge)[0])
            raise DataError(
                f"{path} (frame {int(amc.frame_numbers[f])}): bone {b} value "
                f"{float(np.abs(vals[f]).max()):g} is beyond {MAX_RAW_VALUE:g}: implausible in any unit"
            )
        idx = [k for k, d in enumerate(dofs.get(b, ())) if d in _ROT_DOFS]
        if not idx:
            continue
        bad = (np.abs(vals[:, idx] * to_deg) > MAX_ANGLE_DEG).any(axis=1)
        if bad.any():
            f = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path} (frame {int(amc.frame_numbers[f])}): bone {b} rotation "
                f"{float(np.abs(vals[f, idx]).max() * to_deg):g} degrees exceeds {MAX_ANGLE_DEG:g}"
            )


def load_amc(
    path: str | Path,
    asf: str | Path | AsfSkeleton | None = None,
    *,
    fps: float | None = None,
    collapse: tuple[str, ...] = CMU_BVH_COLLAPSED,
) -> Motion:
    """Load an AMC file onto the standard 25-joint skeleton, in metres, Y up.

    ``asf`` is the skeleton (path or parsed); when ``None`` it is found with
    :func:`find_asf`. ``fps`` overrides the frame rate (default: 120, or the ``_<n>``
    suffix of an HDM05 file name). ``meta``: ``source``, ``format`` ("amc"), ``subject``
    (HDM05 actor such as "bd", CMU subject such as "01"), ``asf``, ``num_source_joints``
    (root + bones), ``unit`` ("asf_<L>"), ``unit_to_m``, ``frame_numbers`` (first, last).
    """
    path = Path(path)
    if asf is None:
        skeleton = parse_asf(find_asf(path))
    elif isinstance(asf, AsfSkeleton):
        skeleton = asf
    else:
        skeleton = parse_asf(asf)
    amc = parse_amc(path, skeleton)
    _check_amc_angles(path, skeleton, amc)
    pos, names = forward_kinematics(skeleton, amc, collapse=tuple(collapse))
    std, scheme, _ = select_standard(pos, names, unit_to_m=skeleton.unit_to_m, scheme="asf", source=str(path))
    rate = _default_fps(path) if fps is None else float(fps)
    meta = {
        "source": str(path),
        "format": "amc",
        "subject": subject_from_name(path.stem),
        "asf": str(skeleton.path),
        "num_source_joints": 1 + len(skeleton.bones),
        "unit": f"asf_{skeleton.length_unit:g}",
        "unit_to_m": skeleton.unit_to_m,
        "naming": scheme,
        "frame_numbers": (int(amc.frame_numbers[0]), int(amc.frame_numbers[-1])),
    }
    return Motion(positions=metres(std * skeleton.unit_to_m, str(path)), fps=rate, meta=meta)
