"""Planning a stimulus batch: the writer's inputs, their checks, the cameras and the rendering jobs.

:func:`plan_batch` turns the caller's items into a :class:`BatchPlan` without writing
anything: every input is checked (with the manifest's own field types, so a bad label
or frame rate is refused here, with its path, before anything is rendered), controls
are added, one camera is fitted per item, and the rendering jobs are listed, each with
a key, the SHA-256 of everything its output depends on (job kind, output names, render
config, camera, motion fps and the motions' bytes), which is what makes a rerun resume.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any
from typing import Mapping
from typing import Sequence

import numpy as np
from pydantic import TypeAdapter

from ..errors import DataError
from ..errors import MotionFormatError
from ..motion import check_clip
from .schema import CONTROL
from .schema import ID_PATTERN
from .schema import JUDGED
from .schema import NATURALNESS
from .schema import ORIGINAL
from .schema import ROLES
from .schema import VARIANT_PATTERN
from .schema import BatchError
from .schema import CompositePlan
from .schema import Label
from .schema import Metrics
from .schema import Positive
from .schema import Problem
from .schema import Provenance
from .schema import SourceClip
from .schema import build
from .schema import check_value

if TYPE_CHECKING:
    from ..render import Camera
    from ..render import RenderConfig

__all__ = ["VariantInput", "BatchItemInput", "ControlSpec", "BatchPlan", "Job", "PlannedItem", "plan_batch"]

WRITER_VERSION = 1
"""Part of every job key and of the default batch id: bump it when a job's output changes for the same inputs."""

_POSITIVE: TypeAdapter[float] = TypeAdapter(Positive)
_METRICS: TypeAdapter[dict[str, float | None]] = TypeAdapter(Metrics)


# ---- inputs ----------------------------------------------------------------------------------
@dataclass
class VariantInput:
    """One variant of an item: its motion ``(T, 25, 3)`` metres and what the attack says about it.

    ``role`` defaults from the name: ``original`` -> ``"original"``, a name starting with
    ``control`` -> ``"control"``, anything else -> ``"attack"``. ``success`` is required
    (True/False) for attacked variants and must be None otherwise.
    """

    motion: Any
    final_label: Label | str | None = None
    success: bool | None = None
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)
    role: str | None = None


@dataclass
class BatchItemInput:
    """One motion item: its source, labels, frame rate, and its variants by name (``original`` required).

    ``motion_fps`` (the frame rate of the motions, which sets the videos' speed) has no
    default: a forgotten one would give videos at the wrong speed without a word.
    A variant may be given as a bare ``(T, 25, 3)`` array (no label, success or metrics).
    ``item_id`` defaults to ``item-000``, ``item-001``, ... in list order.
    """

    variants: Mapping[str, VariantInput | Any]
    true_label: Label | str
    source: SourceClip | Mapping[str, Any]
    motion_fps: float
    attacked_label: Label | str | None = None
    item_id: str | None = None


@dataclass(frozen=True)
class ControlSpec:
    """The positive control each item gets when it has none (:func:`stimuli.controls.make_control`).

    The control's seed is derived from ``seed`` and the item id, so it is the same
    whatever the item's position or the number of workers.
    """

    name: str = CONTROL
    seed: int = 0
    strength: float = 1.0

    def item_seed(self, item_id: str) -> int:
        h = hashlib.sha256(f"{self.seed}:{item_id}".encode()).digest()
        return int.from_bytes(h[:4], "little")


# ---- the plan --------------------------------------------------------------------------------
@dataclass
class PlannedVariant:
    role: str
    motion: np.ndarray  # float32 (T, 25, 3), C-contiguous
    final_label: Label | None
    success: bool | None
    metrics: dict[str, float | None]
    info: dict[str, Any]


@dataclass
class PlannedItem:
    item_id: str
    source: SourceClip
    true_label: Label
    attacked_label: Label | None
    fps: float
    variants: dict[str, PlannedVariant]
    camera: "Camera | None" = None

    @property
    def folder(self) -> str:
        return f"items/{self.item_id}"


@dataclass
class Job:
    """The rendering job of one item: every video of it (each variant alone, and each composite), with a poster
    each, drawn from one drawing of each variant (see :func:`stimuli.render.render_many`)."""

    item: int
    videos: tuple[tuple[str, str | None], ...]  # (variant, None) or (left, right) per video
    outputs: tuple[str, ...]  # paths relative to the batch: each video's mp4 and png, in order
    cost: float
    key: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """The variants the videos show."""
        return tuple(sorted({n for video in self.videos for n in video if n is not None}))

    def describe(self, item_id: str) -> str:
        return f"{item_id} ({len(self.videos)} videos)"


@dataclass
class BatchPlan:
    """Everything a batch will hold, decided: checked items with their cameras, the composites, the jobs."""

    batch_id: str
    config: "RenderConfig"
    generator: dict[str, Any]
    provenance: Provenance
    composites: CompositePlan  # resolved: explicit lists of names
    items: list[PlannedItem]
    jobs: list[Job]


def plan_batch(
    items: Sequence[BatchItemInput],
    *,
    render_config: "RenderConfig | Mapping[str, Any] | None" = None,
    generator_config: Mapping[str, Any] | None = None,
    provenance: Provenance | Mapping[str, Any] | None = None,
    composites: CompositePlan | None = None,
    controls: ControlSpec | None = ControlSpec(),
    batch_id: str | None = None,
) -> BatchPlan:
    """Check the inputs and decide the batch (see :func:`stimuli.batch.write_batch` for the arguments).

    Raises :class:`BatchError` listing every bad input, or :class:`DataError` for a bad argument.
    """
    from ..render import Camera
    from ..render import RenderConfig

    cfg = (
        render_config
        if isinstance(render_config, RenderConfig)
        else (RenderConfig() if render_config is None else RenderConfig.from_dict(render_config))
    )
    prov = Provenance.coerce(provenance)
    generator = dict(generator_config or {})
    try:
        json.dumps(generator, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise DataError(f"write_batch: generator_config is not JSON-serialisable: {e}") from None
    planned = _check_items(items, controls)
    roles = {n: v.role for n, v in planned[0].variants.items()}
    plan = (composites or CompositePlan()).resolve(roles)
    for p in planned:
        # controls are filmed by the same camera but do not move it: an exaggerated control
        # cannot change how the real stimuli are framed
        p.camera = Camera.fit([v.motion for v in p.variants.values() if v.role != "control"], cfg)
    if batch_id is None:
        batch_id = f"batch-{_inputs_digest(cfg, plan, generator, prov, controls, planned)[:16]}"
    elif not isinstance(batch_id, str) or not re.match(ID_PATTERN, batch_id):
        raise DataError(f"write_batch: batch_id must be letters, digits, '.', '_' or '-', got {batch_id!r}")
    jobs = _jobs(planned, plan)
    cfg_dict = cfg.to_dict()
    for job in jobs:
        p = planned[job.item]
        job.key = _sha(
            {
                "v": WRITER_VERSION,
                "videos": list(job.videos),
                "outputs": list(job.outputs),
                "config": cfg_dict,
                "camera": p.camera.to_dict(),
                "fps": p.fps,
                "motions": [sha_array(p.variants[n].motion) for n in job.names],
            }
        )
    return BatchPlan(batch_id, cfg, generator, prov, plan, planned, jobs)


def _jobs(planned: list[PlannedItem], plan: CompositePlan) -> list[Job]:
    """One job per item: a video per variant, one per composite (a naturalness pair in both orders)."""
    jobs: list[Job] = []
    for k, p in enumerate(planned):
        videos: list[tuple[str, str | None]] = [(name, None) for name in p.variants]
        for left, right, study in plan.pairs():
            orders = [(left, right), (right, left)] if study == NATURALNESS else [(left, right)]
            videos += [o for o in orders if o not in videos]
        outs = tuple(
            f"{p.folder}/{left if right is None else f'{left}_vs_{right}'}.{ext}"
            for left, right in videos
            for ext in ("mp4", "png")
        )
        cost = sum(1.0 if right is None else 2.0 for _, right in videos)  # a composite is twice as wide
        jobs.append(Job(k, tuple(videos), outs, cost))
    return jobs


# ---- input checks ---------------------------------------------------------------------------
def _default_role(name: str) -> str:
    if name == ORIGINAL:
        return "original"
    return "control" if name.startswith(CONTROL) else "attack"


def _label(v: Any, where: str, problems: list[Problem]) -> Label | None:
    if isinstance(v, Label):
        return v
    if isinstance(v, str):
        return build(Label, where, problems, name=v)
    if isinstance(v, Mapping):
        return build(Label, where, problems, **{str(k): x for k, x in v.items()})
    problems.append(Problem(where, f"expected a Label, a name or a mapping, got {type(v).__name__}"))
    return None


def _check_items(items: Sequence[BatchItemInput], controls: ControlSpec | None) -> list[PlannedItem]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise DataError("write_batch: expected a non-empty list of BatchItemInput")
    out: list[PlannedItem] = []
    problems: list[Problem] = []
    ids: set[str] = set()
    for k, it in enumerate(items):
        where = f"items[{k}]"
        if not isinstance(it, BatchItemInput):
            raise DataError(f"write_batch: {where}: expected a BatchItemInput, got {type(it).__name__}")
        n0 = len(problems)
        item_id = it.item_id if it.item_id is not None else f"item-{k:03d}"
        if not isinstance(item_id, str) or not re.match(ID_PATTERN, item_id):
            problems.append(Problem(f"{where}.item_id", f"expected letters, digits, '.', '_' or '-', got {item_id!r}"))
        elif item_id.lower() in ids:  # item ids name folders: unique even where case is ignored
            problems.append(Problem(f"{where}.item_id", f"item id {item_id!r} is used twice (ignoring case)"))
        ids.add(str(item_id).lower())
        fps = check_value(_POSITIVE, it.motion_fps, f"{where}.motion_fps", problems)
        true_label = _label(it.true_label, f"{where}.true_label", problems)
        attacked = None if it.attacked_label is None else _label(it.attacked_label, f"{where}.attacked_label", problems)
        source = it.source
        if not isinstance(source, SourceClip):
            if isinstance(source, Mapping):
                source = build(SourceClip, f"{where}.source", problems, **{str(k): x for k, x in source.items()})
            else:
                problems.append(Problem(f"{where}.source", f"expected a SourceClip or a mapping, got {source!r}"))
        if not isinstance(it.variants, Mapping) or ORIGINAL not in it.variants:
            problems.append(
                Problem(f"{where}.variants", f"expected a mapping of variant name to motion with an {ORIGINAL!r} entry")
            )
            continue
        variants = {}
        for name, v in it.variants.items():
            pv = _check_variant(name, v, f"{where}.variants.{name}", problems)
            if pv is not None:
                variants[name] = pv
        if len(problems) > n0:
            continue
        if controls is not None and not any(v.role == "control" for v in variants.values()):
            variants[controls.name] = _control(variants[ORIGINAL].motion, controls, str(item_id), fps)
        out.append(PlannedItem(str(item_id), source, true_label, attacked, fps, variants))
    if not problems and out:
        roles0 = {n: v.role for n, v in out[0].variants.items()}
        for k, p in enumerate(out[1:], 1):
            roles = {n: v.role for n, v in p.variants.items()}
            if roles != roles0:
                problems.append(
                    Problem(
                        f"items[{k}].variants",
                        f"has variants {sorted(roles)}; every item needs the same as items[0]: {sorted(roles0)}",
                    )
                )
    if problems:
        raise BatchError(problems, "(input)")
    return out


def _check_variant(name: Any, v: Any, vw: str, problems: list[Problem]) -> PlannedVariant | None:
    n0 = len(problems)
    if not isinstance(name, str) or not re.match(VARIANT_PATTERN, name):
        problems.append(Problem(vw, "bad variant name; expected lower-case letters, digits and '-'"))
        return None
    vi = v if isinstance(v, VariantInput) else VariantInput(motion=v)
    role = vi.role if vi.role is not None else _default_role(name)
    if role not in ROLES:
        problems.append(Problem(f"{vw}.role", f"expected one of {', '.join(ROLES)}, got {role!r}"))
        return None
    if (name == ORIGINAL) != (role == "original"):
        problems.append(Problem(f"{vw}.role", f"only the variant named {ORIGINAL!r} has role 'original'"))
    if role in JUDGED and not isinstance(vi.success, bool):
        problems.append(Problem(f"{vw}.success", f"expected True or False for an attacked variant, got {vi.success!r}"))
    if role not in JUDGED and vi.success is not None:
        problems.append(Problem(f"{vw}.success", f"expected None for role {role!r}, got {vi.success!r}"))
    final = None if vi.final_label is None else _label(vi.final_label, f"{vw}.final_label", problems)
    raw = dict(vi.metrics) if isinstance(vi.metrics, Mapping) else vi.metrics
    if isinstance(raw, dict):  # NumPy scalars are numbers too
        raw = {mk: float(mv) if isinstance(mv, (np.floating, np.integer)) else mv for mk, mv in raw.items()}
    metrics = check_value(_METRICS, raw, f"{vw}.metrics", problems)
    try:
        info = dict(vi.info)
        json.dumps(info, allow_nan=False)
    except (TypeError, ValueError) as e:
        problems.append(Problem(f"{vw}.info", f"not JSON-serialisable: {e}"))
    try:
        arr = check_clip(vi.motion, name=vw)
    except MotionFormatError as e:
        problems.append(Problem(vw, str(e).removeprefix(f"{vw}: ")))
    if len(problems) > n0:
        return None
    motion = np.ascontiguousarray(arr, dtype=np.float32)
    return PlannedVariant(role, motion, final, vi.success, metrics, info)


def _control(orig: np.ndarray, controls: ControlSpec, item_id: str, fps: float) -> PlannedVariant:
    from ..controls import CONTROL_METHOD
    from ..controls import deviation_metrics
    from ..controls import make_control

    seed = controls.item_seed(item_id)
    ctl = np.ascontiguousarray(make_control(orig, seed=seed, strength=controls.strength, fps=fps), dtype=np.float32)
    info = {"method": CONTROL_METHOD, "seed": seed, "strength": controls.strength, "base_seed": controls.seed}
    return PlannedVariant("control", ctl, None, None, deviation_metrics(orig, ctl, fps), info)


# ---- digests ---------------------------------------------------------------------------------
def sha_array(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def _inputs_digest(
    cfg: "RenderConfig",
    plan: CompositePlan,
    generator: dict[str, Any],
    prov: Provenance,
    controls: ControlSpec | None,
    planned: list[PlannedItem],
) -> str:
    """A digest of everything the batch depends on: the same inputs give the same default batch id."""
    head = {
        "v": WRITER_VERSION,
        "config": cfg.to_dict(),
        "plan": plan.to_dict(),
        "generator": generator,
        "provenance": prov.to_dict(),
        "controls": None if controls is None else vars(controls),
    }
    items = [
        {
            "id": p.item_id,
            "source": p.source.to_dict(),
            "true": p.true_label.to_dict(),
            "attacked": None if p.attacked_label is None else p.attacked_label.to_dict(),
            "fps": p.fps,
            "variants": {
                n: [
                    v.role,
                    sha_array(v.motion),
                    {
                        "label": None if v.final_label is None else v.final_label.to_dict(),
                        "success": v.success,
                        "metrics": v.metrics,
                        "info": v.info,
                    },
                ]
                for n, v in p.variants.items()
            },
        }
        for p in planned
    ]
    return _sha({"head": head, "items": items})
