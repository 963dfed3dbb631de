"""The manifest of a stimulus batch: typed dataclasses, ``to_dict`` / ``from_dict``.

Every check here is on the JSON alone (no file is opened, nothing heavy is imported):
types, ranges, unknown and missing fields, and the cross-field rules of the format
(one ``original`` per item, the same variants in every item, the composites the
plan asks for, video sizes and frame counts that follow the render config, safe
relative file paths). Problems are collected, not raised one at a time, and each
names its JSON path, e.g. ``items[3].variants.smart.video.sha256: expected 64 hex chars``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Iterator
from typing import Mapping
from typing import Sequence

from ..errors import DataError

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "MANIFEST",
    "ORIGINAL",
    "ATTACK_VARIANTS",
    "CONTROL",
    "ROLES",
    "STUDIES",
    "NATURALNESS",
    "INDISTINGUISHABILITY",
    "VIDEO_CODEC",
    "VIDEO_PIX_FMT",
    "Problem",
    "BatchError",
    "Label",
    "SourceClip",
    "FileRef",
    "MotionFile",
    "VideoFile",
    "ImageFile",
    "Variant",
    "Composite",
    "Item",
    "Provenance",
    "CompositePlan",
    "Batch",
    "composite_id",
]

FORMAT = "smart-study-stimulus-batch"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

ORIGINAL = "original"
ATTACK_VARIANTS = ("smart", "l2", "l2-acc", "l2-bone")
"""The attacked variants of the paper: SMART and its three ablations (SPEC §2)."""
CONTROL = "control"
ROLES = ("original", "attack", "control")
NATURALNESS = "naturalness"
INDISTINGUISHABILITY = "indistinguishability"
STUDIES = (NATURALNESS, INDISTINGUISHABILITY)
VIDEO_CODEC = "h264"
VIDEO_PIX_FMT = "yuv420p"

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ---- problems ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One thing wrong with a batch: where (a JSON path or a file) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "message": self.message}


class BatchError(DataError):
    """A stimulus batch is malformed, incomplete or altered; ``problems`` lists everything found."""

    def __init__(self, problems: Sequence[Problem], root: str | Path | None = None):
        self.problems = list(problems)
        self.root = None if root is None else Path(root)
        head = f"stimulus batch {self.root}" if self.root is not None else "stimulus batch"
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        n = len(self.problems)
        super().__init__(f"{head}: {shown}{more}" if n == 1 else f"{head}: {n} problems: {shown}{more}")


# ---- field parsing helpers -----------------------------------------------------------------
def _tname(v: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "an integer",
        float: "a number",
    }.get(type(v), type(v).__name__)


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


_MISSING = object()


class _Obj:
    """Reads one JSON object's fields, recording a :class:`Problem` per bad, missing or unknown field."""

    def __init__(
        self, d: Any, where: str, problems: list[Problem], fields: Sequence[str], optional: Sequence[str] = ()
    ):
        self.where, self.problems = where, problems
        self.ok = isinstance(d, dict)
        self.d: dict[str, Any] = d if self.ok else {}
        if not self.ok:
            problems.append(Problem(where, f"expected an object, got {_tname(d)}"))
            return
        known = list(fields) + list(optional)
        for k in d:
            if k not in known:
                problems.append(Problem(_join(where, k), f"unknown field; expected fields: {', '.join(known)}"))
        self.optional = set(optional)

    def get(self, key: str, check: Callable[[Any], tuple[Any, str | None]], default: Any = None) -> Any:
        if not self.ok:
            return default
        if key not in self.d:
            if key not in getattr(self, "optional", ()):
                self.problems.append(Problem(_join(self.where, key), "missing field"))
            return default
        value, err = check(self.d[key])
        if err is not None:
            self.problems.append(Problem(_join(self.where, key), err))
            return default
        return value

    def raw(self, key: str) -> Any:
        """The field's value for a nested parser (``_MISSING`` recorded as missing)."""
        if not self.ok:
            return _MISSING
        if key not in self.d:
            self.problems.append(Problem(_join(self.where, key), "missing field"))
            return _MISSING
        return self.d[key]


def _str(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, str) or not v:
        return None, f"expected a non-empty string, got {_tname(v) if not isinstance(v, str) else 'an empty string'}"
    return v, None


def _opt_str(v: Any) -> tuple[Any, str | None]:
    return (None, None) if v is None else _str(v)


def _pattern(rx: re.Pattern[str], want: str) -> Callable[[Any], tuple[Any, str | None]]:
    def check(v: Any) -> tuple[Any, str | None]:
        if not isinstance(v, str) or not rx.match(v):
            return None, f"expected {want}, got {v!r}"
        return v, None

    return check


def _int(lo: int = 0) -> Callable[[Any], tuple[Any, str | None]]:
    def check(v: Any) -> tuple[Any, str | None]:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            return None, f"expected an integer >= {lo}, got {v!r}"
        return v, None

    return check


def _opt_int(lo: int = 0) -> Callable[[Any], tuple[Any, str | None]]:
    inner = _int(lo)
    return lambda v: (None, None) if v is None else inner(v)


def _num(positive: bool = True) -> Callable[[Any], tuple[Any, str | None]]:
    def check(v: Any) -> tuple[Any, str | None]:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
            return None, f"expected a finite number{' > 0' if positive else ''}, got {v!r}"
        return float(v), None

    return check


def _opt_bool(v: Any) -> tuple[Any, str | None]:
    if v is not None and not isinstance(v, bool):
        return None, f"expected true, false or null, got {v!r}"
    return v, None


def _dict(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, dict):
        return None, f"expected an object, got {_tname(v)}"
    return v, None


def _hex64(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, str) or not _HEX64.match(v):
        return None, f"expected 64 hex chars (lower-case SHA-256), got {v!r}"
    return v, None


def _rel_path(v: Any) -> tuple[Any, str | None]:
    """A relative POSIX path inside the batch: no absolute path, no ``..``, no backslash."""
    if not isinstance(v, str) or not v:
        return None, f"expected a relative file path, got {v!r}"
    parts = v.split("/")
    if (
        v.startswith("/")
        or "\\" in v
        or ":" in v
        or any(p in ("", ".", "..") for p in parts)
        or len(v) > 255
        or v == MANIFEST
        or any(ord(c) < 32 for c in v)
    ):
        return None, f"expected a relative path inside the batch (no leading '/', no '..', backslash or ':'), got {v!r}"
    return v, None


def _exact(value: Any) -> Callable[[Any], tuple[Any, str | None]]:
    def check(v: Any) -> tuple[Any, str | None]:
        if v != value or isinstance(v, bool) != isinstance(value, bool):
            return None, f"expected {value!r}, got {v!r}"
        return v, None

    return check


def _utc_time(v: Any) -> tuple[Any, str | None]:
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            t = None
        if t is not None and t.utcoffset() == timedelta(0):
            return v, None
    return None, f"expected an ISO 8601 UTC time such as '2026-01-31T12:00:00+00:00', got {v!r}"


def _metrics(v: Any) -> tuple[Any, str | None]:
    if not isinstance(v, dict):
        return None, f"expected an object of name: number, got {_tname(v)}"
    for k, x in v.items():
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)):
            return None, f"metric {k!r}: expected a finite number or null, got {x!r}"
    return {k: (None if x is None else float(x)) for k, x in v.items()}, None


def _str_list(
    allowed: Sequence[str] | None, rx: re.Pattern[str] | None = None, nonempty: bool = False
) -> Callable[[Any], tuple[Any, str | None]]:
    def check(v: Any) -> tuple[Any, str | None]:
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            return None, f"expected an array of strings, got {v!r}"
        if nonempty and not v:
            return None, "expected a non-empty array"
        if len(set(v)) != len(v):
            return None, f"names an entry twice: {v!r}"
        for s in v:
            if allowed is not None and s not in allowed:
                return None, f"unknown entry {s!r}; expected some of {', '.join(allowed)}"
            if rx is not None and not rx.match(s):
                return None, f"bad name {s!r}"
        return tuple(v), None

    return check


def composite_id(left: str, right: str) -> str:
    """``"left|right"``: how a composite is named in the manifest and looked up."""
    return f"{left}|{right}"


# ---- the dataclasses -----------------------------------------------------------------------
class _FromDict:
    """``from_dict(d)``: ``parse`` that raises :class:`BatchError` with every problem (paths relative to ``d``)."""

    @classmethod
    def from_dict(cls, d: Any, where: str = ""):  # type: ignore[no-untyped-def]
        problems: list[Problem] = []
        obj = cls.parse(d, where, problems)  # type: ignore[attr-defined]
        if problems or obj is None:
            raise BatchError(problems)
        return obj


@dataclass(frozen=True)
class Label(_FromDict):
    """A class label: its name, where known its 0-based index in the dataset's class list, and the words a
    participant reads for it (``display``; :func:`stimuli.labels.display_name` when not given)."""

    name: str
    index: int | None = None
    display: str | None = None

    @property
    def text(self) -> str:
        from ..labels import display_name

        return self.display or display_name(self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "index": self.index, "display": self.display}

    @classmethod
    def parse(cls, d: Any, where: str, problems: list[Problem]) -> "Label | None":
        o = _Obj(d, where, problems, ("name", "index"), optional=("display",))
        name, index, display = o.get("name", _str), o.get("index", _opt_int(0)), o.get("display", _opt_str)
        return cls(name, index, display) if o.ok and name is not None else None

    @classmethod
    def coerce(cls, v: "Label | str | Mapping[str, Any]") -> "Label":
        if isinstance(v, Label):
            return v
        if isinstance(v, str):
            return cls(v)
        if isinstance(v, Mapping):
            return cls(str(v["name"]), v.get("index"), v.get("display"))
        raise TypeError(f"expected a Label, a name or a mapping, got {type(v).__name__}")


@dataclass(frozen=True)
class SourceClip(_FromDict):
    """Where a motion came from: the dataset (path or name), the window index in it, the recording file."""

    dataset: str
    window: int | None = None
    file: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (subject, frame range, ...): free-form JSON."""

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "window": self.window, "file": self.file, "info": dict(self.info)}

    @classmethod
    def parse(cls, d: Any, where: str, problems: list[Problem]) -> "SourceClip | None":
        o = _Obj(d, where, problems, ("dataset", "window", "file", "info"))
        v = (o.get("dataset", _str), o.get("window", _opt_int(0)), o.get("file", _opt_str), o.get("info", _dict, {}))
        return cls(v[0], v[1], v[2], v[3]) if o.ok and v[0] is not None else None


@dataclass(frozen=True)
class FileRef:
    """A file of the batch: its path relative to the batch folder, SHA-256 and size in bytes."""

    path: str
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes}

    @staticmethod
    def _base(o: _Obj) -> tuple[Any, Any, Any]:
        return o.get("path", _rel_path), o.get("sha256", _hex64), o.get("bytes", _int(1))


@dataclass(frozen=True)
class MotionFile(FileRef, _FromDict):
    """A ``.npy`` motion array: float32 ``(frames, 25, 3)`` metres, Y up."""

    frames: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**FileRef.to_dict(self), "frames": self.frames}

    @classmethod
    def parse(cls, d: Any, where: str, problems: list[Problem]) -> "MotionFile | None":
        o = _Obj(d, where, problems, ("path", "sha256", "bytes", "frames"))
        vals = (*FileRef._base(o), o.get("frames", _int(1)))
        return cls(*vals) if o.ok and None not in vals else None


@dataclass(frozen=True)
class VideoFile(FileRef, _FromDict):
    """An H.264 (yuv420p) MP4 and what it holds."""

    codec: str = VIDEO_CODEC
    pix_fmt: str = VIDEO_PIX_FMT
    fps: float = 0.0
    frames: int = 0
    duration: float = 0.0
    width: int = 0
    height: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            **FileRef.to_dict(self),
            "codec": self.codec,
            "pix_fmt": self.pix_fmt,
            "fps": self.fps,
            "frames": self.frames,
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def parse(cls, d: Any, where: str, problems: list[Problem]) -> "VideoFile | None":
        o = _Obj(
            d,
            where,
            problems,
            ("path", "sha256", "bytes", "codec", "pix_fmt", "fps", "frames", "duration", "width", "height"),
        )
        vals = (
            *FileRef._base(o),
            o.get("codec", _exact(VIDEO_CODEC)),
            o.get("pix_fmt", _exact(VIDEO_PIX_FMT)),
            o.get("fps", _num()),
            o.get("frames", _int(1)),
            o.get("duration", _num()),
            o.get("width", _int(2)),
            o.get("height", _int(2)),
        )
        return cls(*vals) if o.ok and None not in vals else None


@dataclass(frozen=True)
class ImageFile(FileRef, _FromDict):
    """A PNG image (a video's poster)."""

    width: int = 0
    height: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**FileRef.to_dict(self), "width": self.width, "height": self.height}

    @classmethod
    def parse(cls, d: Any, where: str, problems: list[Problem]) -> "ImageFile | None":
        o = _Obj(d, where, problems, ("path", "sha256", "bytes", "width", "height"))
        vals = (*FileRef._base(o), o.get("width", _int(1)), o.get("height", _int(1)))
        return cls(*vals) if o.ok and None not in vals else None


@dataclass(frozen=True)
class Variant:
    """One version of an item's motion: the original, an attacked one, or a positive control.

    ``success`` is the attack's (true/false) for ``role == "attack"`` and null otherwise;
    ``final_label`` is the label the target model gives the variant (null where not
    classified, e.g. controls); ``metrics`` are perceptual measures against the original
    (e.g. ``mean_joint_displacement_m``); ``info`` is free-form (e.g. the control's seed).
    """

    name: str
    role: str
    final_label: Label | None
    success: bool | None
    metrics: dict[str, float | None]
    motion: MotionFile
    video: VideoFile
    poster: ImageFile
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "final_label": None if self.final_label is None else self.final_label.to_dict(),
            "success": self.success,
            "metrics": dict(self.metrics),
            "info": dict(self.info),
            "motion": self.motion.to_dict(),
            "video": self.video.to_dict(),
            "poster": self.poster.to_dict(),
        }

    @classmethod
    def from_dict(cls, name: str, d: Any, where: str = "") -> "Variant":
        problems: list[Problem] = []
        v = cls.parse(name, d, where or name, problems)
        if problems or v is None:
            raise BatchError(problems)
        return v

    def files(self, where: str) -> Iterator[tuple[str, FileRef]]:
        yield f"{where}.motion", self.motion
        yield f"{where}.video", self.video
        yield f"{where}.poster", self.poster

    @classmethod
    def parse(cls, name: str, d: Any, where: str, problems: list[Problem]) -> "Variant | None":
        n0 = len(problems)
        o = _Obj(d, where, problems, ("role", "final_label", "success", "metrics", "info", "motion", "video", "poster"))
        role = o.get("role", _pattern(re.compile(f"^({'|'.join(ROLES)})$"), f"one of {', '.join(ROLES)}"))
        fl = o.raw("final_label")
        final_label = None if fl is None or fl is _MISSING else Label.parse(fl, _join(where, "final_label"), problems)
        success = o.get("success", _opt_bool)
        metrics = o.get("metrics", _metrics, {})
        info = o.get("info", _dict, {})
        motion = _sub(o, "motion", MotionFile.parse, where, problems)
        video = _sub(o, "video", VideoFile.parse, where, problems)
        poster = _sub(o, "poster", ImageFile.parse, where, problems)
        if role is not None:
            if (name == ORIGINAL) != (role == "original"):
                problems.append(
                    Problem(
                        _join(where, "role"),
                        f"the variant named {ORIGINAL!r} and only it has role 'original', got {role!r}",
                    )
                )
            if role == "attack" and o.ok and "success" in o.d and not isinstance(o.d["success"], bool):
                problems.append(Problem(_join(where, "success"), "expected true or false for an attacked variant"))
            if role != "attack" and success is not None:
                problems.append(Problem(_join(where, "success"), f"expected null for a variant of role {role!r}"))
        if len(problems) > n0:
            return None
        return cls(name, role, final_label, success, metrics, motion, video, poster, info)


def _sub(o: _Obj, key: str, parse: Callable[..., Any], where: str, problems: list[Problem]) -> Any:
    raw = o.raw(key)
    return None if raw is _MISSING else parse(raw, _join(where, key), problems)


@dataclass(frozen=True)
class Composite(_FromDict):
    """A side-by-side video ``left | right`` of two variants of one item, frame-exact in sync."""

    left: str
    right: str
    studies: tuple[str, ...]
    video: VideoFile
    poster: ImageFile

    @property
    def id(self) -> str:
        return composite_id(self.left, self.right)

    def to_dict(self) -> dict[str, Any]:
        return {
            "left": self.left,
            "right": self.right,
            "studies": list(self.studies),
            "video": self.video.to_dict(),
            "poster": self.poster.to_dict(),
        }

    @classmethod
    def parse(cls, d: Any, where: str, problems: list[Problem]) -> "Composite | None":
        n0 = len(problems)
        o = _Obj(d, where, problems, ("left", "right", "studies", "video", "poster"))
        name = _pattern(_VARIANT, "a variant name")
        left, right = o.get("left", name), o.get("right", name)
        studies = o.get("studies", _str_list(STUDIES, nonempty=True))
        video = _sub(o, "video", VideoFile.parse, where, problems)
        poster = _sub(o, "poster", ImageFile.parse, where, problems)
        if len(problems) > n0:
            return None
        return cls(left, right, studies, video, poster)


@dataclass(frozen=True)
class Item(_FromDict):
    """One motion and everything made from it: its variants and their composites, one camera."""

    id: str
    source: SourceClip
    true_label: Label
    attacked_label: Label | None
    """The label the main attack (SMART) gave the motion: the Deceitfulness study's second choice."""
    motion_fps: float
    camera: dict[str, Any]
    """The renderer's :class:`stimuli.render.Camera` as a dict (``Camera.from_dict`` restores it)."""
    variants: dict[str, Variant]
    composites: tuple[Composite, ...] = ()

    def variant(self, name: str) -> Variant:
        try:
            return self.variants[name]
        except KeyError:
            raise KeyError(f"item {self.id!r} has no variant {name!r}; it has {', '.join(self.variants)}") from None

    def composite(self, left: str, right: str) -> Composite:
        for c in self.composites:
            if c.left == left and c.right == right:
                return c
        raise KeyError(f"item {self.id!r} has no composite {composite_id(left, right)!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source.to_dict(),
            "true_label": self.true_label.to_dict(),
            "attacked_label": None if self.attacked_label is None else self.attacked_label.to_dict(),
            "motion_fps": self.motion_fps,
            "camera": dict(self.camera),
            "variants": {name: v.to_dict() for name, v in self.variants.items()},
            "composites": [c.to_dict() for c in self.composites],
        }

    def files(self, where: str) -> Iterator[tuple[str, FileRef]]:
        for name, v in self.variants.items():
            yield from v.files(f"{where}.variants.{name}")
        for k, c in enumerate(self.composites):
            yield f"{where}.composites[{k}].video", c.video
            yield f"{where}.composites[{k}].poster", c.poster

    @classmethod
    def parse(cls, d: Any, where: str, problems: list[Problem]) -> "Item | None":
        n0 = len(problems)
        o = _Obj(
            d,
            where,
            problems,
            ("id", "source", "true_label", "attacked_label", "motion_fps", "camera", "variants", "composites"),
        )
        item_id = o.get("id", _pattern(_ID, "an id of letters, digits, '.', '_' or '-' (at most 128)"))
        source = _sub(o, "source", SourceClip.parse, where, problems)
        true_label = _sub(o, "true_label", Label.parse, where, problems)
        al = o.raw("attacked_label")
        attacked = None if al is None or al is _MISSING else Label.parse(al, _join(where, "attacked_label"), problems)
        fps = o.get("motion_fps", _num())
        camera = o.get("camera", _dict)
        variants: dict[str, Variant] = {}
        raw = o.raw("variants")
        vwhere = _join(where, "variants")
        if raw is not _MISSING:
            if not isinstance(raw, dict) or not raw:
                problems.append(Problem(vwhere, f"expected a non-empty object of variants, got {_tname(raw)}"))
            else:
                for name, vd in raw.items():
                    if not _VARIANT.match(name):
                        problems.append(
                            Problem(
                                _join(vwhere, name),
                                "bad variant name; expected lower-case letters, digits and '-' (at most 32)",
                            )
                        )
                        continue
                    v = Variant.parse(name, vd, _join(vwhere, name), problems)
                    if v is not None:
                        variants[name] = v
                if ORIGINAL not in raw:
                    problems.append(Problem(vwhere, f"no {ORIGINAL!r} variant; every item needs one"))
        composites: list[Composite] = []
        raw = o.raw("composites")
        cwhere = _join(where, "composites")
        if raw is not _MISSING:
            if not isinstance(raw, list):
                problems.append(Problem(cwhere, f"expected an array, got {_tname(raw)}"))
            else:
                seen: set[str] = set()
                for k, cd in enumerate(raw):
                    c = Composite.parse(cd, f"{cwhere}[{k}]", problems)
                    if c is None:
                        continue
                    if c.id in seen:
                        problems.append(Problem(f"{cwhere}[{k}]", f"composite {c.id!r} appears twice"))
                    seen.add(c.id)
                    names = o.d.get("variants")
                    for side in ("left", "right"):
                        if isinstance(names, dict) and getattr(c, side) not in names:
                            problems.append(
                                Problem(f"{cwhere}[{k}].{side}", f"names no variant of this item: {getattr(c, side)!r}")
                            )
                    if INDISTINGUISHABILITY in c.studies and c.left != ORIGINAL:
                        problems.append(
                            Problem(
                                f"{cwhere}[{k}].left",
                                f"an {INDISTINGUISHABILITY} composite has the original on the left, got {c.left!r}",
                            )
                        )
                    composites.append(c)
        if len(problems) > n0:
            return None
        return cls(item_id, source, true_label, attacked, fps, camera, variants, tuple(composites))


@dataclass(frozen=True)
class Provenance(_FromDict):
    """How the motions were made: dataset, model (checkpoint SHA-256, ...) and attack settings (free-form)."""

    dataset: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    attack: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": dict(self.dataset), "model": dict(self.model), "attack": dict(self.attack)}

    @classmethod
    def coerce(cls, v: "Provenance | Mapping[str, Any] | None") -> "Provenance":
        if v is None:
            return cls()
        if isinstance(v, Provenance):
            return v
        problems: list[Problem] = []
        p = cls.parse(dict(v), "provenance", problems)
        if p is None:
            raise BatchError(problems)
        return p

    @classmethod
    def parse(cls, d: Any, where: str, problems: list[Problem]) -> "Provenance | None":
        o = _Obj(d, where, problems, ("dataset", "model", "attack"))
        vals = (o.get("dataset", _dict), o.get("model", _dict), o.get("attack", _dict))
        if o.ok and isinstance(vals[1], dict) and "checkpoint_sha256" in vals[1]:
            if _hex64(vals[1]["checkpoint_sha256"])[1] is not None and vals[1]["checkpoint_sha256"] is not None:
                problems.append(
                    Problem(
                        f"{where}.model.checkpoint_sha256",
                        f"expected 64 hex chars, got {vals[1]['checkpoint_sha256']!r}",
                    )
                )
        return cls(*vals) if o.ok and None not in vals else None


@dataclass(frozen=True)
class CompositePlan(_FromDict):
    """Which side-by-side composites every item gets (the writer's choice, saved in the manifest).

    * ``naturalness``: variants paired with each other, every unordered pair in both
      orders (``a|b`` and ``b|a``). ``None``: every attacked variant (by default
      ``smart``, ``l2``, ``l2-acc``, ``l2-bone``: 6 pairs, 12 composites), which covers
      the Naturalness study's SMART-vs-ablation and ablation-vs-ablation trials.
    * ``indistinguishability``: the right-hand sides of ``original|X`` composites (left is
      always the original). ``None``: the original itself (sensitivity trials), every
      attacked variant and every control. Name fewer (e.g. ``("original", "smart",
      "control")``) to render less.
    """

    naturalness: tuple[str, ...] | None = None
    indistinguishability: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        nat, ind = self.naturalness, self.indistinguishability
        return {
            NATURALNESS: None if nat is None else list(nat),
            INDISTINGUISHABILITY: None if ind is None else list(ind),
        }

    def resolve(self, roles: Mapping[str, str]) -> "CompositePlan":
        """The explicit plan for variants with these roles (``name -> role``); unknown names raise ``BatchError``."""
        problems = []
        nat = self.naturalness
        if nat is None:
            nat = tuple(n for n, r in roles.items() if r == "attack")
        ind = self.indistinguishability
        if ind is None:
            ind = (ORIGINAL,) + tuple(n for n, r in roles.items() if r != "original")
        for key, names in ((NATURALNESS, nat), (INDISTINGUISHABILITY, ind)):
            if len(set(names)) != len(names):
                problems.append(Problem(f"composites.{key}", f"names a variant twice: {list(names)}"))
            for n in names:
                if n not in roles:
                    problems.append(
                        Problem(
                            f"composites.{key}", f"names no variant of the items: {n!r}; variants: {', '.join(roles)}"
                        )
                    )
        if ORIGINAL in nat:
            problems.append(Problem(f"composites.{NATURALNESS}", f"pairs attacked variants; {ORIGINAL!r} is not one"))
        if problems:
            raise BatchError(problems)
        return CompositePlan(tuple(nat), tuple(ind))

    def pairs(self) -> list[tuple[str, str, str]]:
        """``(left, right, study)`` of every composite of a resolved plan, in order (naturalness pairs adjacent)."""
        assert self.naturalness is not None and self.indistinguishability is not None
        out = []
        nat = self.naturalness
        for i, a in enumerate(nat):
            for b in nat[i + 1 :]:
                out += [(a, b, NATURALNESS), (b, a, NATURALNESS)]
        out += [(ORIGINAL, r, INDISTINGUISHABILITY) for r in self.indistinguishability]
        return out

    def expected(self) -> dict[str, tuple[str, ...]]:
        """``"left|right" -> studies`` of a resolved plan."""
        out: dict[str, list[str]] = {}
        for left, right, study in self.pairs():
            out.setdefault(composite_id(left, right), []).append(study)
        return {k: tuple(v) for k, v in out.items()}

    @classmethod
    def parse(cls, d: Any, where: str, problems: list[Problem]) -> "CompositePlan | None":
        o = _Obj(d, where, problems, (NATURALNESS, INDISTINGUISHABILITY))
        names = _str_list(None, _VARIANT)
        nat, ind = o.get(NATURALNESS, names), o.get(INDISTINGUISHABILITY, names)
        return cls(nat, ind) if o.ok and nat is not None and ind is not None else None


@dataclass
class Batch:
    """A stimulus batch: the manifest, and (once loaded) the folder it describes.

    ``path(ref)`` gives the absolute path of any :class:`FileRef` of the batch.
    """

    batch_id: str
    created_utc: str
    generator: dict[str, Any]
    provenance: Provenance
    render_config: dict[str, Any]
    """:class:`stimuli.render.RenderConfig` as a dict (``RenderConfig.from_dict`` restores it)."""
    composite_plan: CompositePlan
    items: list[Item]
    schema_version: int = SCHEMA_VERSION
    root: Path | None = field(default=None, compare=False)

    # ---- queries ---------------------------------------------------------------------------
    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(self.items[0].variants) if self.items else ()

    def variant_roles(self) -> dict[str, str]:
        return {n: v.role for n, v in self.items[0].variants.items()} if self.items else {}

    def item(self, item_id: str) -> Item:
        for it in self.items:
            if it.id == item_id:
                return it
        raise KeyError(f"batch {self.batch_id!r} has no item {item_id!r}")

    def path(self, ref: FileRef) -> Path:
        if self.root is None:
            raise ValueError("this batch was not loaded from a folder; its files have no location")
        return self.root / ref.path

    def files(self) -> Iterator[tuple[str, FileRef]]:
        """``(json path, file)`` for every file the manifest names."""
        for k, it in enumerate(self.items):
            yield from it.files(f"items[{k}]")

    # ---- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": self.schema_version,
            "batch_id": self.batch_id,
            "created_utc": self.created_utc,
            "generator": dict(self.generator),
            "provenance": self.provenance.to_dict(),
            "render_config": dict(self.render_config),
            "composites": self.composite_plan.to_dict(),
            "items": [it.to_dict() for it in self.items],
        }

    @classmethod
    def from_dict(cls, d: Any, root: str | Path | None = None) -> "Batch":
        """Parse a manifest; raises :class:`BatchError` listing every problem found."""
        problems: list[Problem] = []
        batch = cls.parse(d, problems)
        if problems or batch is None:
            raise BatchError(problems, root)
        batch.root = None if root is None else Path(root)
        return batch

    @classmethod
    def parse(cls, d: Any, problems: list[Problem]) -> "Batch | None":
        n0 = len(problems)
        o = _Obj(
            d,
            "",
            problems,
            (
                "format",
                "schema_version",
                "batch_id",
                "created_utc",
                "generator",
                "provenance",
                "render_config",
                "composites",
                "items",
            ),
        )
        if not o.ok:
            problems[-1] = Problem("manifest.json", "expected a JSON object at the top level")
            return None
        if o.get("format", _exact(FORMAT)) is None:
            return None  # not a batch manifest: the remaining checks would only add noise
        version = o.d.get("schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            problems.append(
                Problem(
                    "schema_version",
                    f"schema version {version!r} is not supported (this code reads version {SCHEMA_VERSION})",
                )
            )
            return None
        batch_id = o.get("batch_id", _pattern(_ID, "an id of letters, digits, '.', '_' or '-' (at most 128)"))
        created = o.get("created_utc", _utc_time)
        generator = o.get("generator", _dict)
        provenance = _sub(o, "provenance", Provenance.parse, "", problems)
        render = o.get("render_config", _dict)
        plan = _sub(o, "composites", CompositePlan.parse, "", problems)
        items: list[Item] = []
        raw = o.raw("items")
        if raw is not _MISSING:
            if not isinstance(raw, list) or not raw:
                problems.append(Problem("items", f"expected a non-empty array of items, got {_tname(raw)}"))
            else:
                for k, idict in enumerate(raw):
                    it = Item.parse(idict, f"items[{k}]", problems)
                    if it is not None:
                        items.append(it)
        if len(problems) > n0:
            return None
        batch = cls(batch_id, created, generator, provenance, render, plan, items)
        batch._check_consistency(problems)
        return None if len(problems) > n0 else batch

    def _check_consistency(self, problems: list[Problem]) -> None:
        """Rules across fields: ids, variant sets, the plan, sizes and frame counts, unique paths."""
        rc = _Obj(self.render_config, "render_config", [], ())
        geo: dict[str, Any] = {}
        for key, check in (
            ("width", _int(2)),
            ("height", _int(2)),
            ("fps", _num()),
            ("duration", _num()),
            ("separator_px", _int(0)),
        ):
            if key not in rc.d:
                problems.append(Problem(f"render_config.{key}", "missing field"))
                continue
            geo[key], err = check(rc.d[key])
            if err:
                problems.append(Problem(f"render_config.{key}", err))
        seen_ids: dict[str, int] = {}
        first = self.items[0]
        roles0 = {n: v.role for n, v in first.variants.items()}
        try:
            expected = self.composite_plan.resolve(roles0).expected()
            plan_ok = True
        except BatchError as e:
            problems += e.problems
            plan_ok, expected = False, {}
        if plan_ok and self.composite_plan != self.composite_plan.resolve(roles0):
            problems.append(Problem("composites", "expected an explicit plan (lists of variant names)"))
        paths: dict[str, str] = {}
        for k, it in enumerate(self.items):
            where = f"items[{k}]"
            if it.id in seen_ids:
                problems.append(Problem(f"{where}.id", f"item id {it.id!r} already used by items[{seen_ids[it.id]}]"))
            seen_ids.setdefault(it.id, k)
            roles = {n: v.role for n, v in it.variants.items()}
            if roles != roles0:
                problems.append(
                    Problem(
                        f"{where}.variants",
                        f"has variants {_roles(roles)}; every item must have those of items[0]: {_roles(roles0)}",
                    )
                )
            if plan_ok:
                got = {c.id: c.studies for c in it.composites}
                for cid, studies in expected.items():
                    if cid not in got:
                        problems.append(
                            Problem(f"{where}.composites", f"missing composite {cid!r} (the plan asks for it)")
                        )
                    elif tuple(sorted(got[cid])) != tuple(sorted(studies)):
                        problems.append(
                            Problem(
                                f"{where}.composites",
                                f"composite {cid!r} has studies {list(got[cid])}, expected {list(studies)}",
                            )
                        )
                for cid in got:
                    if cid not in expected:
                        problems.append(Problem(f"{where}.composites", f"composite {cid!r} is not in the plan"))
            for n, v in it.variants.items():
                vw = f"{where}.variants.{n}"
                if geo.keys() >= {"width", "height", "fps", "duration"}:
                    _check_video(v.video, f"{vw}.video", geo["width"], geo, problems)
                    _check_image(v.poster, f"{vw}.poster", geo["width"], geo["height"], problems)
            for c_k, c in enumerate(it.composites):
                cw = f"{where}.composites[{c_k}]"
                if geo.keys() >= {"width", "height", "fps", "duration", "separator_px"}:
                    w2 = 2 * geo["width"] + geo["separator_px"]
                    _check_video(c.video, f"{cw}.video", w2, geo, problems)
                    _check_image(c.poster, f"{cw}.poster", w2, geo["height"], problems)
            for key in ("width", "height"):
                if key in geo and it.camera.get(key) != geo[key]:
                    problems.append(
                        Problem(
                            f"{where}.camera.{key}",
                            f"expected {geo[key]} (the render config's), got {it.camera.get(key)!r}",
                        )
                    )
        for where, ref in self.files():
            if ref.path in paths:
                problems.append(Problem(f"{where}.path", f"file {ref.path!r} is already used by {paths[ref.path]}"))
            paths.setdefault(ref.path, where)
        for where, ref in self.files():
            parent = ref.path.rsplit("/", 1)[0] if "/" in ref.path else None
            if parent is not None and parent in paths:
                problems.append(Problem(f"{where}.path", f"{ref.path!r} lies inside the file {parent!r}"))


def _roles(roles: Mapping[str, str]) -> str:
    return "[" + ", ".join(f"{n} ({r})" for n, r in roles.items()) + "]"


def _check_video(v: VideoFile, where: str, width: int, geo: Mapping[str, Any], problems: list[Problem]) -> None:
    frames = int(round(geo["duration"] * geo["fps"]))
    want = {"width": width, "height": geo["height"], "frames": frames}
    for key, value in want.items():
        if getattr(v, key) != value:
            problems.append(
                Problem(f"{where}.{key}", f"expected {value} (from the render config), got {getattr(v, key)}")
            )
    if abs(v.fps - geo["fps"]) > 1e-9:
        problems.append(Problem(f"{where}.fps", f"expected {geo['fps']} (from the render config), got {v.fps}"))
    if abs(v.duration - v.frames / v.fps) > 1e-6:
        problems.append(Problem(f"{where}.duration", f"expected frames / fps = {v.frames / v.fps:g}, got {v.duration}"))


def _check_image(p: ImageFile, where: str, width: int, height: int, problems: list[Problem]) -> None:
    if (p.width, p.height) != (width, height):
        problems.append(Problem(where, f"expected a {width}x{height} poster, got {p.width}x{p.height}"))
