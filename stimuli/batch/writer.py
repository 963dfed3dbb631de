"""Writing a stimulus batch: motions in, a complete, hashed, validated batch folder out.

Atomic: everything is built in a work folder beside the target, ``.<name>.partial``, and
renamed to ``<name>`` only once the manifest is written and the folder checked, so a
batch is either complete or absent.

Resumable: each rendering job (one variant's video + poster, one pair of composites in
both orders, or one ``original|X`` composite) has a key, the SHA-256 of everything its
output depends on (job kind, output names, render config, camera, motion fps and the
motions' bytes). When a job finishes, the main process appends one line to
``.<name>.partial/.journal.jsonl``: the key and the SHA-256 and size of each output file
(written and fsynced only after the renderer has renamed its files into place). A re-run
with a work folder present reads the journal (a torn last line is ignored), and skips
every job whose key is recorded and whose files are still there with the recorded hash;
everything else is rendered again, and leftovers (stale files, temporary files of an
interrupted ffmpeg) are removed before the rename. Same inputs therefore give the same
batch after any number of kills, byte for byte (the renderer is deterministic with its
default ``threads=1``), apart from the manifest's creation time.

The work folder is locked (``flock``) while a writer uses it, so two writers cannot
interleave; rendering runs in ``workers`` processes (forked when the caller is
single-threaded, else from a fork server), which die with their parent on Linux.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import signal
import sys
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import Future
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable
from typing import Iterable
from typing import Mapping
from typing import Sequence

import numpy as np

from ..errors import DataError
from ..errors import MotionFormatError
from ..fileio import atomic_write
from ..fileio import atomic_write_bytes
from ..fileio import file_sha256
from ..motion import check_clip
from .padding import item_groups
from .padding import pad_group
from .schema import _ID
from .schema import _VARIANT
from .schema import CONTROL
from .schema import MANIFEST
from .schema import ORIGINAL
from .schema import ROLES
from .schema import VIDEO_CODEC
from .schema import VIDEO_PIX_FMT
from .schema import Batch
from .schema import BatchError
from .schema import Composite
from .schema import CompositePlan
from .schema import ImageFile
from .schema import Item
from .schema import Label
from .schema import MotionFile
from .schema import Problem
from .schema import Provenance
from .schema import SourceClip
from .schema import Variant
from .schema import VideoFile

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ..render import Camera
    from ..render import RenderConfig

__all__ = ["VariantInput", "BatchItemInput", "ControlSpec", "write_batch", "work_dir_for", "JOURNAL"]

JOURNAL = ".journal.jsonl"
_WRITER_VERSION = 1
"""Part of every job key: bump it when the output of a job changes for the same inputs."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: jobs finished (reused ones included) out of all jobs."""


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


def _default_role(name: str) -> str:
    if name == ORIGINAL:
        return "original"
    return "control" if name.startswith(CONTROL) else "attack"


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


# ---- jobs --------------------------------------------------------------------------------------
@dataclass
class _Job:
    kind: str  # "video" | "pair" | "side"
    item: int
    names: tuple[str, ...]  # video: (v,); pair: (a, b); side: (left, right)
    outputs: tuple[str, ...]  # relative paths
    key: str = ""
    cost: float = 1.0

    def describe(self, item_id: str) -> str:
        return f"{item_id}: {' | '.join(self.names)}"


def _sha_array(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def _canon(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


def work_dir_for(out_dir: str | Path) -> Path:
    """The work folder of a batch being written to ``out_dir``: ``.<name>.partial`` beside it."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.partial"


def _run_job(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Render one job in a worker (or in-process): returns ``relpath -> {sha256, bytes}``."""
    from ..render import render_pair
    from ..render import render_side_by_side
    from ..render import render_video

    root = Path(payload["root"])
    cfg, cam, fps = payload["config"], payload["camera"], payload["fps"]
    out = [root / p for p in payload["outputs"]]
    m = payload["motions"]
    if payload["kind"] == "video":
        render_video(m[0], out[0], cam, cfg, motion_fps=fps, poster=out[1])
    elif payload["kind"] == "pair":
        render_pair(m[0], m[1], out[0], out[2], cam, cfg, motion_fps=fps, poster_ab=out[1], poster_ba=out[3])
    else:
        render_side_by_side(m[0], m[1], out[0], cam, cfg, motion_fps=fps, poster=out[1])
    return {p: {"sha256": file_sha256(root / p), "bytes": (root / p).stat().st_size} for p in payload["outputs"]}


def _worker_init() -> None:  # pragma: no cover - runs in worker processes
    """Die with the parent (Linux), so a killed writer leaves no orphan renderers behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


# ---- the journal -----------------------------------------------------------------------------
def _read_journal(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``job key -> outputs`` from the journal; a torn or foreign line is skipped."""
    done: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return done
    for line in text.splitlines():
        try:
            rec = json.loads(line)
            if rec.get("v") == _WRITER_VERSION and isinstance(rec.get("key"), str):
                done[rec["key"]] = dict(rec["outputs"])
        except (ValueError, AttributeError, TypeError):
            continue
    return done


def _append_journal(fh: Any, key: str, outputs: Mapping[str, Any]) -> None:
    fh.write((json.dumps({"v": _WRITER_VERSION, "key": key, "outputs": outputs}, sort_keys=True) + "\n").encode())
    fh.flush()
    os.fsync(fh.fileno())


def _reusable(root: Path, outputs: Mapping[str, Any] | None, wanted: Sequence[str]) -> bool:
    if outputs is None or set(outputs) != set(wanted):
        return False
    for rel, rec in outputs.items():
        p = root / rel
        try:
            if p.is_symlink() or not p.is_file() or p.stat().st_size != rec["bytes"]:
                return False
            if file_sha256(p) != rec["sha256"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


# ---- input checks ---------------------------------------------------------------------------
@dataclass
class _Prepared:
    item_id: str
    source: SourceClip
    true_label: Label
    attacked_label: Label | None
    fps: float
    variants: dict[str, tuple[str, np.ndarray, VariantInput]]  # name -> (role, motion, input)


def _prepare(items: Sequence[BatchItemInput], controls: ControlSpec | None) -> list[_Prepared]:
    from ..controls import CONTROL_METHOD
    from ..controls import deviation_metrics
    from ..controls import make_control

    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise DataError("write_batch: expected a non-empty list of BatchItemInput")
    out: list[_Prepared] = []
    problems: list[Problem] = []
    ids: set[str] = set()
    for k, it in enumerate(items):
        where = f"items[{k}]"
        if not isinstance(it, BatchItemInput):
            raise DataError(f"write_batch: {where}: expected a BatchItemInput, got {type(it).__name__}")
        item_id = it.item_id if it.item_id is not None else f"item-{k:03d}"
        if not isinstance(item_id, str) or not _ID.match(item_id):
            problems.append(Problem(f"{where}.item_id", f"expected letters, digits, '.', '_' or '-', got {item_id!r}"))
        elif item_id.lower() in ids:  # item ids name folders: unique even where case is ignored
            problems.append(Problem(f"{where}.item_id", f"item id {item_id!r} is used twice (ignoring case)"))
        ids.add(str(item_id).lower())
        fps = it.motion_fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
            problems.append(Problem(f"{where}.motion_fps", f"expected a finite number > 0, got {fps!r}"))
            fps = 30.0
        try:
            true_label = Label.coerce(it.true_label)
            attacked = None if it.attacked_label is None else Label.coerce(it.attacked_label)
            source = it.source if isinstance(it.source, SourceClip) else SourceClip(**dict(it.source))
        except (TypeError, KeyError) as e:
            problems.append(Problem(where, f"bad label or source: {e}"))
            continue
        # the same checks the manifest will get, now, before anything is rendered
        SourceClip.parse(source.to_dict(), f"{where}.source", problems)
        Label.parse(true_label.to_dict(), f"{where}.true_label", problems)
        if attacked is not None:
            Label.parse(attacked.to_dict(), f"{where}.attacked_label", problems)
        variants: dict[str, tuple[str, np.ndarray, VariantInput]] = {}
        if not isinstance(it.variants, Mapping) or ORIGINAL not in it.variants:
            problems.append(
                Problem(f"{where}.variants", f"expected a mapping of variant name to motion with an {ORIGINAL!r} entry")
            )
            continue
        for name, v in it.variants.items():
            vw = f"{where}.variants.{name}"
            if not isinstance(name, str) or not _VARIANT.match(name):
                problems.append(Problem(vw, "bad variant name; expected lower-case letters, digits and '-'"))
                continue
            vi = v if isinstance(v, VariantInput) else VariantInput(motion=v)
            role = vi.role if vi.role is not None else _default_role(name)
            if role not in ROLES:
                problems.append(Problem(f"{vw}.role", f"expected one of {', '.join(ROLES)}, got {role!r}"))
                continue
            if (name == ORIGINAL) != (role == "original"):
                problems.append(Problem(f"{vw}.role", f"only the variant named {ORIGINAL!r} has role 'original'"))
            if role == "attack" and not isinstance(vi.success, bool):
                problems.append(
                    Problem(f"{vw}.success", f"expected True or False for an attacked variant, got {vi.success!r}")
                )
            if role != "attack" and vi.success is not None:
                problems.append(Problem(f"{vw}.success", f"expected None for role {role!r}, got {vi.success!r}"))
            if vi.final_label is not None:
                try:
                    Label.parse(Label.coerce(vi.final_label).to_dict(), f"{vw}.final_label", problems)
                except (TypeError, KeyError) as e:
                    problems.append(Problem(f"{vw}.final_label", str(e)))
            for mk, mv in dict(vi.metrics).items():
                if not isinstance(mk, str):
                    problems.append(Problem(f"{vw}.metrics", f"metric names must be strings, got {mk!r}"))
                elif mv is not None and (
                    isinstance(mv, bool)
                    or not isinstance(mv, (int, float, np.floating))
                    or not math.isfinite(float(mv))
                ):
                    problems.append(Problem(f"{vw}.metrics.{mk}", f"expected a finite number or None, got {mv!r}"))
            try:
                json.dumps(dict(vi.info), allow_nan=False)
            except (TypeError, ValueError) as e:
                problems.append(Problem(f"{vw}.info", f"not JSON-serialisable: {e}"))
            try:
                arr = check_clip(vi.motion, name=vw)
            except MotionFormatError as e:
                problems.append(Problem(vw, str(e).removeprefix(f"{vw}: ")))
                continue
            variants[name] = (role, np.ascontiguousarray(arr, dtype=np.float32), vi)
        if controls is not None and ORIGINAL in variants and not any(r == "control" for r, _, _ in variants.values()):
            orig = variants[ORIGINAL][1]
            seed = controls.item_seed(str(item_id))
            ctl = make_control(orig, seed=seed, strength=controls.strength, fps=float(fps))
            info = {"method": CONTROL_METHOD, "seed": seed, "strength": controls.strength, "base_seed": controls.seed}
            variants[controls.name] = (
                "control",
                ctl,
                VariantInput(motion=ctl, metrics=deviation_metrics(orig, ctl, float(fps)), info=info, role="control"),
            )
        out.append(_Prepared(str(item_id), source, true_label, attacked, float(fps), variants))
    if not problems and out:
        roles0 = {n: r for n, (r, _, _) in out[0].variants.items()}
        for k, p in enumerate(out[1:], 1):
            roles = {n: r for n, (r, _, _) in p.variants.items()}
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


# ---- the writer -------------------------------------------------------------------------------
def write_batch(
    out_dir: str | Path,
    items: Sequence[BatchItemInput],
    *,
    render_config: "RenderConfig | Mapping[str, Any] | None" = None,
    generator_config: Mapping[str, Any] | None = None,
    provenance: Provenance | Mapping[str, Any] | None = None,
    composites: CompositePlan | None = None,
    controls: ControlSpec | None = ControlSpec(),
    batch_id: str | None = None,
    workers: int | None = None,
    progress: Progress | bool | None = None,
    overwrite: bool = False,
    verify_decode: bool = False,
) -> Batch:
    """Render and write a stimulus batch to ``out_dir``; returns the loaded :class:`Batch`.

    Per item: one camera fitted over the original and attacked variants (controls are
    filmed by the same camera but do not move it, so an exaggerated control cannot
    change how the real stimuli are framed); every variant's motion (``.npy``), video
    and poster; the composites of ``composites`` (default: every naturalness pair of
    attacked variants in both orders, and ``original|X`` for the original, every attacked
    variant and every control). ``controls`` adds a positive control to each item that
    has none (None: no controls). ``batch_id`` defaults to a digest of all inputs, so the
    same inputs give the same id. ``workers`` rendering processes (default
    ``os.cpu_count()``; 1 renders in this process). ``progress(done, total)`` is called as
    jobs finish (``True``: a progress bar on stderr). ``out_dir`` must not exist unless
    ``overwrite``. Before the rename the folder is checked with
    :func:`stimuli.batch.validate_batch` (schema, files, hashes; also decoding every
    video when ``verify_decode``).

    Bad input raises :class:`BatchError` listing every problem before anything is
    written; a failure while rendering leaves ``out_dir`` absent and the work folder in
    place for a resumed run (see the module docstring).
    """
    from ..render import Camera
    from ..render import RenderConfig
    from .reader import _validate

    out_dir = Path(out_dir)
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
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise DataError(f"write_batch: workers must be an integer >= 1, got {workers!r}")
    if out_dir.exists() and not overwrite:
        raise DataError(f"{out_dir}: already exists; choose a new folder or pass overwrite=True")

    prepared = _prepare(items, controls)
    roles = {n: r for n, (r, _, _) in prepared[0].variants.items()}
    plan = (composites or CompositePlan()).resolve(roles)
    cfg_dict = cfg.to_dict()

    cameras: list[Camera] = []
    for p in prepared:
        framed = [m for _, (r, m, _) in p.variants.items() if r != "control"]
        cameras.append(Camera.fit(framed, cfg))

    # digest of everything the batch depends on -> the default batch id
    digest = hashlib.sha256()
    digest.update(
        _canon(
            {
                "v": _WRITER_VERSION,
                "config": cfg_dict,
                "plan": plan.to_dict(),
                "generator": generator,
                "provenance": prov.to_dict(),
                "controls": None if controls is None else vars(controls),
            }
        )
    )
    for p in prepared:
        digest.update(
            _canon(
                {
                    "id": p.item_id,
                    "source": p.source.to_dict(),
                    "true": p.true_label.to_dict(),
                    "attacked": None if p.attacked_label is None else p.attacked_label.to_dict(),
                    "fps": p.fps,
                    "variants": {n: [r, _sha_array(m), _variant_meta(vi)] for n, (r, m, vi) in p.variants.items()},
                }
            )
        )
    if batch_id is None:
        batch_id = f"batch-{digest.hexdigest()[:16]}"
    elif not isinstance(batch_id, str) or not _ID.match(batch_id):
        raise DataError(f"write_batch: batch_id must be letters, digits, '.', '_' or '-', got {batch_id!r}")

    # the jobs
    jobs: list[_Job] = []
    for k, p in enumerate(prepared):
        base = f"items/{p.item_id}"
        for name in p.variants:
            jobs.append(_Job("video", k, (name,), (f"{base}/{name}.mp4", f"{base}/{name}.png"), cost=1.0))
        done_pairs: set[tuple[str, str]] = set()
        for left, right, study in plan.pairs():
            if (left, right) in done_pairs:
                continue
            if study == "naturalness" and (right, left) not in done_pairs:
                done_pairs |= {(left, right), (right, left)}
                outs = (
                    f"{base}/{left}_vs_{right}.mp4",
                    f"{base}/{left}_vs_{right}.png",
                    f"{base}/{right}_vs_{left}.mp4",
                    f"{base}/{right}_vs_{left}.png",
                )
                jobs.append(_Job("pair", k, (left, right), outs, cost=3.0))
            elif study != "naturalness":
                done_pairs.add((left, right))
                jobs.append(
                    _Job(
                        "side",
                        k,
                        (left, right),
                        (f"{base}/{left}_vs_{right}.mp4", f"{base}/{left}_vs_{right}.png"),
                        cost=2.0,
                    )
                )
    for job in jobs:
        p = prepared[job.item]
        job.key = hashlib.sha256(
            _canon(
                {
                    "v": _WRITER_VERSION,
                    "kind": job.kind,
                    "outputs": list(job.outputs),
                    "config": cfg_dict,
                    "camera": cameras[job.item].to_dict(),
                    "fps": p.fps,
                    "motions": [_sha_array(p.variants[n][1]) for n in job.names],
                }
            )
        ).hexdigest()

    work = work_dir_for(out_dir)
    work.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(work)
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"rendering {out_dir.name}", unit="job", file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

    elif progress is False:
        progress = None
    try:
        # motions first: small, written every time (deterministic bytes)
        motion_files: dict[tuple[int, str], MotionFile] = {}
        for k, p in enumerate(prepared):
            for name, (_, m, _) in p.variants.items():
                rel = f"items/{p.item_id}/{name}.npy"
                data = _npy_bytes(m)
                atomic_write_bytes(work / rel, data)
                motion_files[(k, name)] = MotionFile(rel, hashlib.sha256(data).hexdigest(), len(data), int(m.shape[0]))

        journal_path = work / JOURNAL
        recorded = _read_journal(journal_path)
        results: dict[str, dict[str, Any]] = {}
        todo: list[_Job] = []
        for job in jobs:
            if _reusable(work, recorded.get(job.key), job.outputs):
                results.update(recorded[job.key])
            else:
                todo.append(job)
        total, done = len(jobs), len(jobs) - len(todo)
        if progress is not None:
            progress(done, total)
        with open(journal_path, "a+b") as journal:
            if journal.tell() > 0:  # a kill may have torn the last line: start a fresh one
                journal.seek(-1, os.SEEK_END)
                if journal.read(1) != b"\n":
                    journal.write(b"\n")
            for job, outs in _execute(todo, prepared, cameras, cfg, work, workers):
                _append_journal(journal, job.key, outs)
                results.update(outs)
                done += 1
                if progress is not None:
                    progress(done, total)

        # one size per group of each item's media, so that no size tells the conditions apart
        # (not journalled: a kill from here on re-renders the padded files, which is correct)
        for p in prepared:
            base = f"items/{p.item_id}"
            comps = [tuple(cid.split("|")) for cid in plan.expected()]
            for names in item_groups(p.variants, comps).values():
                pad_group([work / base / n for n in names])
                for n in names:
                    path = work / base / n
                    results[f"{base}/{n}"] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}

        # the manifest
        built: list[Item] = []
        for k, p in enumerate(prepared):
            base = f"items/{p.item_id}"
            variants = {}
            for name, (role, _, vi) in p.variants.items():
                variants[name] = Variant(
                    name=name,
                    role=role,
                    final_label=None if vi.final_label is None else Label.coerce(vi.final_label),
                    success=vi.success,
                    metrics={mk: None if mv is None else float(mv) for mk, mv in dict(vi.metrics).items()},
                    motion=motion_files[(k, name)],
                    video=_video(results, f"{base}/{name}.mp4", cfg.width, cfg),
                    poster=_image(results, f"{base}/{name}.png", cfg.width, cfg.height),
                    info=dict(vi.info),
                )
            comps = []
            for cid, studies in plan.expected().items():
                left, right = cid.split("|")
                w2 = 2 * cfg.width + cfg.separator_px
                comps.append(
                    Composite(
                        left,
                        right,
                        studies,
                        _video(results, f"{base}/{left}_vs_{right}.mp4", w2, cfg),
                        _image(results, f"{base}/{left}_vs_{right}.png", w2, cfg.height),
                    )
                )
            built.append(
                Item(
                    p.item_id,
                    p.source,
                    p.true_label,
                    p.attacked_label,
                    p.fps,
                    cameras[k].to_dict(),
                    variants,
                    tuple(comps),
                )
            )
        batch = Batch(
            batch_id=batch_id,
            created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            generator=generator,
            provenance=prov,
            render_config=cfg_dict,
            composite_plan=plan,
            items=built,
        )
        text = json.dumps(batch.to_dict(), indent=2, allow_nan=False) + "\n"
        Batch.from_dict(json.loads(text))  # the writer's own output must parse

        # clear out everything that is not part of the batch, check it, then publish it
        keep = {MANIFEST, JOURNAL} | {ref.path for _, ref in batch.files()}
        _prune(work, keep)
        atomic_write(work / MANIFEST, lambda fh: fh.write(text.encode()))
        problems = _validate(work, verify_decode, None, ignore={JOURNAL})[1]
        if problems:
            raise BatchError(problems, work)
        (work / JOURNAL).unlink(missing_ok=True)  # only now: a kill before this point still resumes
        _fsync_dir(work)
        if out_dir.exists():
            if not overwrite:
                raise DataError(f"{out_dir}: appeared while the batch was being written; left the batch in {work}")
            old = out_dir.parent / f".{out_dir.name}.old"
            if old.exists():
                shutil.rmtree(old)
            os.replace(out_dir, old)
            os.replace(work, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(work, out_dir)
        _fsync_dir(out_dir.parent)
    finally:
        os.close(lock_fd)
        if bar is not None:
            bar.close()
    batch.root = out_dir
    return batch


def _variant_meta(vi: VariantInput) -> Any:
    return {
        "label": None if vi.final_label is None else Label.coerce(vi.final_label).to_dict(),
        "success": vi.success,
        "metrics": {k: None if v is None else float(v) for k, v in dict(vi.metrics).items()},
        "info": dict(vi.info),
    }


def _video(results: Mapping[str, Any], rel: str, width: int, cfg: "RenderConfig") -> VideoFile:
    r = results[rel]
    n = cfg.num_frames
    return VideoFile(
        rel,
        r["sha256"],
        r["bytes"],
        VIDEO_CODEC,
        VIDEO_PIX_FMT,
        float(cfg.fps),
        n,
        n / float(cfg.fps),
        width,
        cfg.height,
    )


def _image(results: Mapping[str, Any], rel: str, width: int, height: int) -> ImageFile:
    r = results[rel]
    return ImageFile(rel, r["sha256"], r["bytes"], width, height)


def _payload(
    job: _Job, prepared: list[_Prepared], cameras: list["Camera"], cfg: "RenderConfig", work: Path
) -> dict[str, Any]:
    p = prepared[job.item]
    return {
        "root": str(work),
        "kind": job.kind,
        "outputs": job.outputs,
        "config": cfg,
        "camera": cameras[job.item],
        "fps": p.fps,
        "motions": [p.variants[n][1] for n in job.names],
    }


def _execute(
    todo: list[_Job], prepared: list[_Prepared], cameras: list["Camera"], cfg: "RenderConfig", work: Path, workers: int
) -> Iterable[tuple[_Job, dict[str, Any]]]:
    """Run the jobs (costliest first), yielding each as it finishes."""
    todo = sorted(todo, key=lambda j: -j.cost)
    if workers == 1 or len(todo) <= 1:
        for job in todo:
            yield job, _run_job(_payload(job, prepared, cameras, cfg, work))
        return
    import multiprocessing
    import threading

    # fork is fast and needs no `if __name__ == "__main__"` guard in the caller's script, but
    # is only safe from a single-threaded process; otherwise forkserver (POSIX) or spawn.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    ex = ProcessPoolExecutor(
        max_workers=min(workers, len(todo)), mp_context=multiprocessing.get_context(method), initializer=_worker_init
    )
    try:
        pending: dict[Future[dict[str, Any]], _Job] = {}
        queue = list(todo)
        # keep a bounded number of jobs in flight, so a failure stops the rest early
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                job = queue.pop(0)
                pending[ex.submit(_run_job, _payload(job, prepared, cameras, cfg, work))] = job
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                yield job, fut.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _lock(work: Path) -> int:
    fd = os.open(work, os.O_RDONLY)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataError(f"{work}: another process is writing this batch") from None
    return fd


def _prune(work: Path, keep: set[str]) -> None:
    """Delete every file under ``work`` not in ``keep`` (journal, stale outputs, temporary files)."""
    for dirpath, dirnames, filenames in os.walk(work, topdown=False):
        d = Path(dirpath)
        for f in filenames:
            rel = (d / f).relative_to(work).as_posix()
            if rel not in keep:
                (d / f).unlink()
        for sub in dirnames:
            p = d / sub
            if p.is_symlink():
                p.unlink()
            elif not any(p.iterdir()):
                p.rmdir()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)
