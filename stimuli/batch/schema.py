"""The manifest of a stimulus batch: pydantic dataclasses, their JSON Schema, and the rules across fields.

Types, ranges and fields are declared once, on the dataclasses below. pydantic checks
them when a manifest is read (:meth:`Batch.from_dict`) and when the writer builds one,
and :func:`json_schema` gives them as a JSON Schema, written into every batch as
``manifest.schema.json`` and kept in ``docs/batch-manifest.schema.json`` for readers in
other languages. What a JSON Schema cannot say is plain code in :func:`batch_rules`: one
``original`` per item, the same variants in every item, the composites the plan asks
for, video sizes and frame counts that follow the render config, unique file paths.

Every problem is collected, not raised one at a time, and names its JSON path on one
line, e.g. ``items[3].variants.smart.video.sha256: expected 64 hex chars (lower-case
SHA-256), got 'abc'``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Iterator
from typing import Literal
from typing import Mapping
from typing import Sequence

from pydantic import AfterValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import StrictBool
from pydantic import StrictInt
from pydantic import StrictStr
from pydantic import TypeAdapter
from pydantic import ValidationError
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic.dataclasses import dataclass

from ..errors import DataError

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "MANIFEST",
    "SCHEMA_FILE",
    "ORIGINAL",
    "ATTACK_VARIANTS",
    "CONTROL",
    "ROLES",
    "STUDIES",
    "NATURALNESS",
    "INDISTINGUISHABILITY",
    "VIDEO_CODEC",
    "VIDEO_PIX_FMT",
    "ID_PATTERN",
    "VARIANT_PATTERN",
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
    "batch_rules",
    "build",
    "check_value",
    "Metrics",
    "Positive",
    "composite_id",
    "json_schema",
]

FORMAT = "smart-study-stimulus-batch"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SCHEMA_FILE = "manifest.schema.json"
"""The manifest's JSON Schema, written beside it in every batch (a copy for other tools; not hashed)."""

ORIGINAL = "original"
ATTACK_VARIANTS = ("smart", "l2", "l2-acc", "l2-bone")
"""The attacked variants of the paper: SMART and its three ablations (SPEC §2)."""
CONTROL = "control"
ROLES = ("original", "attack", "level", "control")
"""``level``: an attacked variant at a graded strength below the attack's own (``info.method``,
``info.strength``: the blend ``q + s (q^ - q)``), for threshold studies; its ``success`` says whether it still
fools the model."""
JUDGED = ("attack", "level")
"""The roles whose ``success`` is true or false (the model judged them)."""
NATURALNESS = "naturalness"
INDISTINGUISHABILITY = "indistinguishability"
STUDIES = (NATURALNESS, INDISTINGUISHABILITY)
VIDEO_CODEC = "h264"
VIDEO_PIX_FMT = "yuv420p"

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
VARIANT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
HEX64 = r"^[0-9a-f]{64}$"
_PATTERN_WORDS = {
    ID_PATTERN: "an id of letters, digits, '.', '_' or '-' (at most 128)",
    VARIANT_PATTERN: "a variant name of lower-case letters, digits and '-' (at most 32)",
    HEX64: "64 hex chars (lower-case SHA-256)",
}


# ---- problems ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
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


def _tname(v: Any) -> str:
    names = {dict: "an object", list: "an array", tuple: "an array", str: "a string", bool: "a boolean"}
    names |= {type(None): "null", int: "an integer", float: "a number"}
    return names.get(type(v), type(v).__name__)


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _message(err: Mapping[str, Any]) -> str:
    """pydantic's error in the words of this format (one line, with the value that was found)."""
    kind, ctx, got = err["type"], err.get("ctx") or {}, err.get("input")
    if kind in ("missing", "missing_argument", "missing_keyword_only_argument"):
        return "missing field"
    if kind in ("unexpected_keyword_argument", "extra_forbidden", "unexpected_positional_argument"):
        return f"unknown field (not in the batch format, schema version {SCHEMA_VERSION})"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"]))
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        return f"expected {_PATTERN_WORDS.get(pattern, 'a string matching ' + pattern)}, got {got!r}"
    if kind in ("dataclass_type", "dict_type", "model_type", "dataclass_exact_type"):
        return f"expected an object, got {_tname(got)}"
    if kind in ("list_type", "tuple_type"):
        return f"expected an array, got {_tname(got)}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} entries, got {_tname(got)} of {len(got)}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "expected a non-empty string, got an empty string"
    words = {"bool_type": "true or false", "int_type": "an integer", "float_type": "a number"}
    words |= {"string_type": "a string", "finite_number": "a finite number", "int_from_float": "an integer"}
    if kind in words:
        return f"expected {words[kind]}, got {got!r}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {got!r}"
    bounds = {"greater_than_equal": ">= {ge}", "greater_than": "> {gt}", "less_than_equal": "<= {le}"}
    if kind in bounds:
        return f"expected a number {bounds[kind].format(**ctx)}, got {got!r}"
    msg = str(err["msg"])
    return f"{msg[0].lower()}{msg[1:]}, got {got!r}" if msg else f"invalid value {got!r}"


def _problems(e: ValidationError, where: str = "") -> list[Problem]:
    out = []
    for err in e.errors(include_url=False):
        path = where
        for part in err["loc"]:
            if part != "[key]":  # a bad mapping key: the key itself is the place
                path = _join(path, part)
        out.append(Problem(path, _message(err)))
    return out


@functools.cache
def _adapter(cls: type) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


class _Model:
    """``from_dict`` (raises :class:`BatchError` with every problem, paths relative to ``d``) and ``to_dict``."""

    @classmethod
    def from_dict(cls, d: Any, where: str = ""):  # type: ignore[no-untyped-def]
        try:
            return _adapter(cls).validate_python(d)
        except ValidationError as e:
            raise BatchError(_problems(e, where)) from None

    def to_dict(self) -> dict[str, Any]:
        return _adapter(type(self)).dump_python(self, mode="json", by_alias=True)


def build(cls: type, where: str, problems: list[Problem], /, **kwargs: Any) -> Any:
    """``cls(**kwargs)``, or None with its problems appended (paths under ``where``)."""
    try:
        return cls(**kwargs)
    except ValidationError as e:
        problems += _problems(e, where)
        return None


def check_value(adapter: TypeAdapter[Any], value: Any, where: str, problems: list[Problem]) -> Any:
    """``value`` checked by ``adapter`` (a ``TypeAdapter`` of one of the field types below), or None with its
    problems appended."""
    try:
        return adapter.validate_python(value)
    except ValidationError as e:
        problems += _problems(e, where)
        return None


# ---- field types ---------------------------------------------------------------------------
def _inside_batch(v: str) -> str:
    """A relative POSIX path inside the batch: no absolute path, no ``..``, no backslash."""
    parts = v.split("/")
    if (
        v.startswith("/")
        or "\\" in v
        or ":" in v
        or any(p in ("", ".", "..") for p in parts)
        or v in (MANIFEST, SCHEMA_FILE)
        or any(ord(c) < 32 for c in v)
    ):
        raise ValueError(
            f"expected a relative path inside the batch (no leading '/', no '..', backslash or ':'), got {v!r}"
        )
    return v


def _utc(v: str) -> str:
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        t = None
    if t is None or t.utcoffset() != timedelta(0):
        raise ValueError(f"expected an ISO 8601 UTC time such as '2026-01-31T12:00:00+00:00', got {v!r}")
    return v


def _unique(v: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(v)) != len(v):
        raise ValueError(f"names an entry twice: {list(v)}")
    return v


Id = Annotated[StrictStr, Field(pattern=ID_PATTERN)]
VariantName = Annotated[StrictStr, Field(pattern=VARIANT_PATTERN)]
Sha256 = Annotated[StrictStr, Field(pattern=HEX64)]
Text = Annotated[StrictStr, Field(min_length=1)]
Index = Annotated[StrictInt, Field(ge=0)]
Count = Annotated[StrictInt, Field(ge=1)]
Pixels = Annotated[StrictInt, Field(ge=2)]
Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
RelPath = Annotated[StrictStr, Field(min_length=1, max_length=255), AfterValidator(_inside_batch)]
UtcTime = Annotated[StrictStr, AfterValidator(_utc), Field(json_schema_extra={"format": "date-time"})]
Names = Annotated[tuple[VariantName, ...], AfterValidator(_unique)]
Json = dict[str, Any]
Metrics = dict[Text, Finite | None]
_FORBID = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def composite_id(left: str, right: str) -> str:
    """``"left|right"``: how a composite is named in the manifest and looked up."""
    return f"{left}|{right}"


# ---- the dataclasses -----------------------------------------------------------------------
@dataclass(frozen=True, config=_FORBID)
class Label(_Model):
    """A class label: its name, where known its 0-based index in the dataset's class list, and the words a
    participant reads for it (``display``; :func:`stimuli.labels.display_name` when not given)."""

    name: Text
    index: Index | None = None
    display: Text | None = None

    @property
    def text(self) -> str:
        from ..labels import display_name

        return self.display or display_name(self.name)

    @classmethod
    def coerce(cls, v: "Label | str | Mapping[str, Any]") -> "Label":
        """A label from a Label, a bare name or a mapping (pydantic's ``ValidationError`` when bad)."""
        if isinstance(v, Label):
            return v
        if isinstance(v, str):
            return cls(v)
        return _adapter(cls).validate_python(v)


@dataclass(frozen=True, config=_FORBID)
class SourceClip(_Model):
    """Where a motion came from: the dataset (path or name), the window index in it, the recording file."""

    dataset: Text
    window: Index | None = None
    file: Text | None = None
    info: Json = field(default_factory=dict)
    """Anything else worth keeping (subject, frame range, ...): free-form JSON."""


@dataclass(frozen=True, config=_FORBID)
class FileRef(_Model):
    """A file of the batch: its path relative to the batch folder, SHA-256 and size in bytes."""

    path: RelPath
    sha256: Sha256
    bytes: Count


@dataclass(frozen=True, config=_FORBID)
class MotionFile(FileRef):
    """A ``.npy`` motion array: float32 ``(frames, 25, 3)`` metres, Y up."""

    frames: Count


@dataclass(frozen=True, config=_FORBID)
class VideoFile(FileRef):
    """An H.264 (yuv420p) MP4 and what it holds."""

    codec: Literal["h264"]
    pix_fmt: Literal["yuv420p"]
    fps: Positive
    frames: Count
    duration: Positive
    width: Pixels
    height: Pixels


@dataclass(frozen=True, config=_FORBID)
class ImageFile(FileRef):
    """A PNG image (a video's poster)."""

    width: Count
    height: Count


@dataclass(frozen=True, config=_FORBID)
class Variant(_Model):
    """One version of an item's motion: the original, an attacked one, or a positive control.

    ``success`` is the attack's (true/false) for roles ``attack`` and ``level`` and null otherwise;
    ``final_label`` is the label the target model gives the variant (null where not
    classified, e.g. controls); ``metrics`` are perceptual measures against the original
    (e.g. ``mean_joint_displacement_m``); ``info`` is free-form (e.g. the control's seed).
    """

    role: Literal["original", "attack", "level", "control"]
    final_label: Label | None
    success: StrictBool | None
    motion: MotionFile
    video: VideoFile
    poster: ImageFile
    metrics: Metrics = field(default_factory=dict)
    info: Json = field(default_factory=dict)

    @field_validator("success")
    @classmethod
    def _success_follows_role(cls, v: bool | None, info: ValidationInfo) -> bool | None:
        role = info.data.get("role")
        if role in JUDGED and v is None:
            raise ValueError("expected true or false for an attacked variant")
        if role in ("original", "control") and v is not None:
            raise ValueError(f"expected null for a variant of role {role!r}")
        return v

    def files(self, where: str) -> Iterator[tuple[str, FileRef]]:
        yield f"{where}.motion", self.motion
        yield f"{where}.video", self.video
        yield f"{where}.poster", self.poster


@dataclass(frozen=True, config=_FORBID)
class Composite(_Model):
    """A side-by-side video ``left | right`` of two variants of one item, frame-exact in sync."""

    left: VariantName
    right: VariantName
    studies: Annotated[tuple[Literal["naturalness", "indistinguishability"], ...], Field(min_length=1)]
    video: VideoFile
    poster: ImageFile

    @property
    def id(self) -> str:
        return composite_id(self.left, self.right)

    @field_validator("studies")
    @classmethod
    def _studies_once(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(v)


@dataclass(frozen=True, config=_FORBID)
class Item(_Model):
    """One motion and everything made from it: its variants and their composites, one camera."""

    id: Id
    source: SourceClip
    true_label: Label
    attacked_label: Label | None
    """The label the main attack (SMART) gave the motion: the Deceitfulness study's second choice."""
    motion_fps: Positive
    camera: Json
    """The renderer's :class:`stimuli.render.Camera` as a dict (``Camera.from_dict`` restores it)."""
    variants: Annotated[
        dict[VariantName, Variant],
        Field(min_length=1, json_schema_extra={"propertyNames": {"pattern": VARIANT_PATTERN}}),
    ]
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

    def files(self, where: str) -> Iterator[tuple[str, FileRef]]:
        for name, v in self.variants.items():
            yield from v.files(f"{where}.variants.{name}")
        for k, c in enumerate(self.composites):
            yield f"{where}.composites[{k}].video", c.video
            yield f"{where}.composites[{k}].poster", c.poster


@dataclass(frozen=True, config=_FORBID)
class Provenance(_Model):
    """How the motions were made: dataset, model (checkpoint SHA-256, ...) and attack settings (free-form)."""

    dataset: Json = field(default_factory=dict)
    model: Json = field(default_factory=dict)
    attack: Json = field(default_factory=dict)

    @field_validator("model")
    @classmethod
    def _checkpoint_hash(cls, v: dict[str, Any]) -> dict[str, Any]:
        h = v.get("checkpoint_sha256")
        if h is not None and not (isinstance(h, str) and re.match(HEX64, h)):
            raise ValueError(f"checkpoint_sha256: expected {_PATTERN_WORDS[HEX64]} or null, got {h!r}")
        return v

    @classmethod
    def coerce(cls, v: "Provenance | Mapping[str, Any] | None") -> "Provenance":
        if v is None:
            return cls()
        if isinstance(v, Provenance):
            return v
        return cls.from_dict(dict(v), "provenance")


@dataclass(frozen=True, config=_FORBID)
class CompositePlan(_Model):
    """Which side-by-side composites every item gets (the writer's choice, saved in the manifest).

    * ``naturalness``: variants paired with each other, every unordered pair in both
      orders (``a|b`` and ``b|a``). ``None``: every attacked variant (by default
      ``smart``, ``l2``, ``l2-acc``, ``l2-bone``: 6 pairs, 12 composites), which covers
      the Naturalness study's SMART-vs-ablation and ablation-vs-ablation trials.
    * ``indistinguishability``: the right-hand sides of ``original|X`` composites (left is
      always the original). ``None``: the original itself (sensitivity trials), every
      attacked variant and every control. Name fewer (e.g. ``("original", "smart",
      "control")``) to render less.

    A manifest always holds the resolved plan (lists of names).
    """

    naturalness: Names | None = None
    indistinguishability: Names | None = None

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


@dataclass(frozen=True, config=ConfigDict(extra="ignore"))
class _Geometry:
    """The render config's fields that fix every video's size, frame rate and length."""

    width: Pixels
    height: Pixels
    fps: Positive
    duration: Positive
    separator_px: Annotated[StrictInt, Field(ge=0)]


@dataclass(kw_only=True, config=_FORBID | ConfigDict(validate_by_name=True, validate_by_alias=True))
class Batch(_Model):
    """A stimulus batch: the manifest, and (once loaded) the folder it describes.

    ``path(ref)`` gives the absolute path of any :class:`FileRef` of the batch.
    """

    format: Literal["smart-study-stimulus-batch"] = FORMAT
    schema_version: Literal[1] = SCHEMA_VERSION
    batch_id: Id
    created_utc: UtcTime
    generator: Json
    """The generator's full configuration (free-form JSON)."""
    provenance: Provenance
    render_config: Json
    """:class:`stimuli.render.RenderConfig` as a dict (``RenderConfig.from_dict`` restores it)."""
    composite_plan: Annotated[CompositePlan, Field(alias="composites")]
    items: Annotated[list[Item], Field(min_length=1)]

    _root = None  # not a field (no annotation): the folder the batch was loaded from, see ``root``

    @property
    def root(self) -> Path | None:
        return self._root

    @root.setter
    def root(self, value: str | Path | None) -> None:
        self._root = None if value is None else Path(value)

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

    def to_json(self) -> str:
        """The manifest's text (indented, one trailing newline)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, d: Any, root: str | Path | None = None) -> "Batch":  # type: ignore[override]
        """Parse a manifest and check the rules across its fields; raises :class:`BatchError` listing every problem."""
        if not isinstance(d, dict):
            raise BatchError([Problem(MANIFEST, "expected a JSON object at the top level")], root)
        if d.get("format") != FORMAT:  # not a batch manifest: any further check would only add noise
            raise BatchError([Problem("format", f"expected {FORMAT!r}, got {d.get('format')!r}")], root)
        version = d.get("schema_version")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            msg = f"schema version {version!r} is not supported (this code reads version {SCHEMA_VERSION})"
            raise BatchError([Problem("schema_version", msg)], root)
        try:
            batch = _adapter(cls).validate_python(d)
        except ValidationError as e:
            raise BatchError(_problems(e), root) from None
        problems = batch_rules(batch)
        if problems:
            raise BatchError(problems, root)
        batch.root = root
        return batch


def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12), generated from the dataclasses."""
    schema = _adapter(Batch).json_schema(by_alias=True, mode="validation")
    head = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://smart-study.invalid/schemas/stimulus-batch/v{SCHEMA_VERSION}",
        "title": "smart-study stimulus batch manifest",
        "description": (
            f"manifest.json of a stimulus batch, schema version {SCHEMA_VERSION}. Rules across fields "
            "(one original per item, the same variants in every item, the composites the plan asks for, "
            "video sizes from the render config, unique paths) are checked by stimuli.batch.check_batch."
        ),
    }
    return head | {k: v for k, v in schema.items() if k not in ("title", "description")}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


# ---- the rules across fields ---------------------------------------------------------------
def batch_rules(batch: Batch) -> list[Problem]:
    """Rules across fields: ids, variant sets, the plan, sizes and frame counts, unique paths."""
    problems: list[Problem] = []
    try:
        geo = _adapter(_Geometry).validate_python(batch.render_config)
    except ValidationError as e:
        problems += _problems(e, "render_config")
        geo = None
    first = batch.items[0]
    roles0 = {n: v.role for n, v in first.variants.items()}
    try:
        expected = batch.composite_plan.resolve(roles0).expected()
        if batch.composite_plan != batch.composite_plan.resolve(roles0):
            problems.append(Problem("composites", "expected an explicit plan (lists of variant names)"))
    except BatchError as e:
        problems += e.problems
        expected = None
    seen_ids: dict[str, int] = {}
    for k, it in enumerate(batch.items):
        where = f"items[{k}]"
        if it.id in seen_ids:
            problems.append(Problem(f"{where}.id", f"item id {it.id!r} already used by items[{seen_ids[it.id]}]"))
        seen_ids.setdefault(it.id, k)
        problems += _item_rules(it, where)
        roles = {n: v.role for n, v in it.variants.items()}
        if roles != roles0:
            problems.append(
                Problem(
                    f"{where}.variants",
                    f"has variants {_roles(roles)}; every item must have those of items[0]: {_roles(roles0)}",
                )
            )
        if expected is not None:
            got = {c.id: c.studies for c in it.composites}
            for cid, studies in expected.items():
                if cid not in got:
                    problems.append(Problem(f"{where}.composites", f"missing composite {cid!r} (the plan asks for it)"))
                elif sorted(got[cid]) != sorted(studies):
                    problems.append(
                        Problem(
                            f"{where}.composites",
                            f"composite {cid!r} has studies {list(got[cid])}, expected {list(studies)}",
                        )
                    )
            problems += [
                Problem(f"{where}.composites", f"composite {cid!r} is not in the plan")
                for cid in got
                if cid not in expected
            ]
        if geo is not None:
            problems += _media_rules(it, where, geo)
    paths: dict[str, str] = {}
    for where, ref in batch.files():
        if ref.path in paths:
            problems.append(Problem(f"{where}.path", f"file {ref.path!r} is already used by {paths[ref.path]}"))
        paths.setdefault(ref.path, where)
    for where, ref in batch.files():
        parent = ref.path.rsplit("/", 1)[0] if "/" in ref.path else None
        if parent is not None and parent in paths:
            problems.append(Problem(f"{where}.path", f"{ref.path!r} lies inside the file {parent!r}"))
    return problems


def _item_rules(it: Item, where: str) -> list[Problem]:
    problems = []
    vwhere = f"{where}.variants"
    if ORIGINAL not in it.variants:
        problems.append(Problem(vwhere, f"no {ORIGINAL!r} variant; every item needs one"))
    for name, v in it.variants.items():
        if (name == ORIGINAL) != (v.role == "original"):
            problems.append(
                Problem(
                    f"{vwhere}.{name}.role",
                    f"the variant named {ORIGINAL!r} and only it has role 'original', got {v.role!r}",
                )
            )
    seen: set[str] = set()
    for k, c in enumerate(it.composites):
        cw = f"{where}.composites[{k}]"
        if c.id in seen:
            problems.append(Problem(cw, f"composite {c.id!r} appears twice"))
        seen.add(c.id)
        for side in ("left", "right"):
            if getattr(c, side) not in it.variants:
                problems.append(Problem(f"{cw}.{side}", f"names no variant of this item: {getattr(c, side)!r}"))
        if INDISTINGUISHABILITY in c.studies and c.left != ORIGINAL:
            problems.append(
                Problem(
                    f"{cw}.left", f"an {INDISTINGUISHABILITY} composite has the original on the left, got {c.left!r}"
                )
            )
    return problems


def _media_rules(it: Item, where: str, geo: _Geometry) -> list[Problem]:
    problems = []
    for n, v in it.variants.items():
        problems += _video_rules(v.video, f"{where}.variants.{n}.video", geo.width, geo)
        problems += _image_rules(v.poster, f"{where}.variants.{n}.poster", geo.width, geo.height)
    w2 = 2 * geo.width + geo.separator_px
    for k, c in enumerate(it.composites):
        problems += _video_rules(c.video, f"{where}.composites[{k}].video", w2, geo)
        problems += _image_rules(c.poster, f"{where}.composites[{k}].poster", w2, geo.height)
    for key in ("width", "height"):
        if it.camera.get(key) != getattr(geo, key):
            problems.append(
                Problem(
                    f"{where}.camera.{key}",
                    f"expected {getattr(geo, key)} (the render config's), got {it.camera.get(key)!r}",
                )
            )
    return problems


def _roles(roles: Mapping[str, str]) -> str:
    return "[" + ", ".join(f"{n} ({r})" for n, r in roles.items()) + "]"


def _video_rules(v: VideoFile, where: str, width: int, geo: _Geometry) -> list[Problem]:
    problems = []
    want = {"width": width, "height": geo.height, "frames": int(round(geo.duration * geo.fps))}
    for key, value in want.items():
        if getattr(v, key) != value:
            problems.append(
                Problem(f"{where}.{key}", f"expected {value} (from the render config), got {getattr(v, key)}")
            )
    if abs(v.fps - geo.fps) > 1e-9:
        problems.append(Problem(f"{where}.fps", f"expected {geo.fps} (from the render config), got {v.fps}"))
    if abs(v.duration - v.frames / v.fps) > 1e-6:
        problems.append(Problem(f"{where}.duration", f"expected frames / fps = {v.frames / v.fps:g}, got {v.duration}"))
    return problems


def _image_rules(p: ImageFile, where: str, width: int, height: int) -> list[Problem]:
    if (p.width, p.height) != (width, height):
        return [Problem(where, f"expected a {width}x{height} poster, got {p.width}x{p.height}")]
    return []
