"""Writing a stimulus batch: motions in, a complete, hashed, validated batch folder out.

:func:`write_batch` is four steps: :func:`~stimuli.batch.plan.plan_batch` (check the
inputs, fit the cameras, list the jobs; nothing written), :func:`render_batch` (motions
and media into the work folder, resumably), :func:`batch_manifest` (the
:class:`~stimuli.batch.schema.Batch` describing them) and :func:`publish_batch`
(prune, write the manifest and its JSON Schema, validate, rename).

Atomic: everything is built in a work folder beside the target, ``.<name>.partial``, and
renamed to ``<name>`` only once the manifest is written and the folder checked, so a
batch is either complete or absent.

Resumable: when a rendering job finishes, the main process appends one line to
``.<name>.partial/.journal.jsonl``: the job's key (see :mod:`stimuli.batch.plan`) and the
SHA-256 and size of each output file (written and fsynced only after the renderer has
renamed its files into place). A re-run with a work folder present reads the journal (a
torn last line is ignored), and skips every job whose key is recorded and whose files
are still there with the recorded hash; everything else is rendered again, and leftovers
(stale files, temporary files of an interrupted ffmpeg) are removed before the rename.
Same inputs therefore give the same batch after any number of kills, byte for byte (the
renderer is deterministic with its default ``threads=1``), apart from the manifest's
creation time.

The work folder is locked (``flock``) while a writer uses it, so two writers cannot
interleave; rendering runs in ``workers`` processes (forked when the caller is
single-threaded, else from a fork server), which die with their parent on Linux.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import Executor
from concurrent.futures import Future
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import wait
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Callable
from typing import Iterable
from typing import Iterator
from typing import Mapping
from typing import Sequence

from ..errors import DataError
from ..fileio import atomic_write_bytes
from ..fileio import file_sha256
from .padding import item_groups
from .padding import pad_group
from .plan import WRITER_VERSION
from .plan import BatchItemInput
from .plan import BatchPlan
from .plan import ControlSpec
from .plan import Job
from .plan import VariantInput
from .plan import npy_bytes
from .plan import plan_batch
from .schema import MANIFEST
from .schema import SCHEMA_FILE
from .schema import VIDEO_CODEC
from .schema import VIDEO_PIX_FMT
from .schema import Batch
from .schema import BatchError
from .schema import Composite
from .schema import CompositePlan
from .schema import ImageFile
from .schema import Item
from .schema import MotionFile
from .schema import Provenance
from .schema import Variant
from .schema import VideoFile
from .schema import json_schema_text

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ..render import RenderConfig

__all__ = [
    "VariantInput",
    "BatchItemInput",
    "ControlSpec",
    "write_batch",
    "render_batch",
    "batch_manifest",
    "publish_batch",
    "work_dir_for",
    "JOURNAL",
]

JOURNAL = ".journal.jsonl"

Progress = Callable[[int, int], None]
"""``progress(done, total)``: jobs finished (reused ones included) out of all jobs."""

Outputs = dict[str, dict[str, Any]]
"""``relative path -> {"sha256": ..., "bytes": ...}`` of the files a step wrote."""


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
    executor: Executor | None = None,
    progress: Progress | bool | None = None,
    overwrite: bool = False,
    verify_decode: bool = False,
) -> Batch:
    """Render and write a stimulus batch to ``out_dir``; returns the loaded :class:`Batch`.

    Per item: one camera fitted over the original and attacked variants (controls are
    filmed by the same camera but do not move it); every variant's motion (``.npy``),
    video and poster; the composites of ``composites`` (default: every naturalness pair
    of attacked variants in both orders, and ``original|X`` for the original, every
    attacked variant and every control). ``controls`` adds a positive control to each
    item that has none (None: no controls). ``batch_id`` defaults to a digest of all
    inputs, so the same inputs give the same id. ``workers`` rendering processes
    (default ``os.cpu_count()``; 1 renders in this process), or the jobs go to ``executor``
    (any :class:`concurrent.futures.Executor`, e.g. one that runs them on a cluster; the
    work folder must then be on a file system its workers share). A job that fails does
    not stop the others: they finish and are journalled, and the failures are raised
    together at the end. ``progress(done, total)`` is
    called as jobs finish (``True``: a progress bar on stderr). ``out_dir`` must not
    exist unless ``overwrite``. Before the rename the folder is checked with
    :func:`stimuli.batch.validate_batch` (schema, files, hashes; also decoding every
    video when ``verify_decode``).

    Bad input raises :class:`BatchError` listing every problem before anything is
    written; a failure while rendering leaves ``out_dir`` absent and the work folder in
    place for a resumed run (see the module docstring).
    """
    out_dir = Path(out_dir)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise DataError(f"write_batch: workers must be an integer >= 1, got {workers!r}")
    if out_dir.exists() and not overwrite:
        raise DataError(f"{out_dir}: already exists; choose a new folder or pass overwrite=True")
    plan = plan_batch(
        items,
        render_config=render_config,
        generator_config=generator_config,
        provenance=provenance,
        composites=composites,
        controls=controls,
        batch_id=batch_id,
    )
    work = work_dir_for(out_dir)
    work.mkdir(parents=True, exist_ok=True)
    with _locked(work), _progress_bar(progress, len(plan.jobs), out_dir.name) as report:
        outputs = render_batch(plan, work, workers=workers, executor=executor, progress=report)
        batch = batch_manifest(plan, outputs)
        publish_batch(batch, work, out_dir, overwrite=overwrite, verify_decode=verify_decode)
    return batch


def work_dir_for(out_dir: str | Path) -> Path:
    """The work folder of a batch being written to ``out_dir``: ``.<name>.partial`` beside it."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.partial"


# ---- render ----------------------------------------------------------------------------------
def render_batch(
    plan: BatchPlan,
    work: Path,
    *,
    workers: int = 1,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> Outputs:
    """Write every motion and render every job of ``plan`` into ``work`` (reusing journalled jobs), then give each
    item's media groups one size; returns what was written. Jobs that fail are raised together (a
    :class:`DataError`) once the others have finished."""
    outputs: Outputs = {}
    for p in plan.items:  # motions: small, written every time (deterministic bytes)
        for name, v in p.variants.items():
            rel = f"{p.folder}/{name}.npy"
            data = npy_bytes(v.motion)
            atomic_write_bytes(work / rel, data)
            outputs[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    journal_path = work / JOURNAL
    recorded = _read_journal(journal_path)
    todo: list[Job] = []
    for job in plan.jobs:
        if _reusable(work, recorded.get(job.key), job.outputs):
            outputs.update(recorded[job.key])
        else:
            todo.append(job)
    total, done = len(plan.jobs), len(plan.jobs) - len(todo)
    if progress is not None:
        progress(done, total)
    with open(journal_path, "a+b") as journal:
        if journal.tell() > 0:  # a kill may have torn the last line: start a fresh one
            journal.seek(-1, os.SEEK_END)
            if journal.read(1) != b"\n":
                journal.write(b"\n")
        failed: list[tuple[Job, BaseException]] = []
        for job, outs in _execute(todo, plan, work, workers, executor):
            if isinstance(outs, BaseException):
                failed.append((job, outs))
                continue
            _append_journal(journal, job.key, outs)
            outputs.update(outs)
            done += 1
            if progress is not None:
                progress(done, total)
    if failed:
        shown = "; ".join(f"{job.describe(plan.items[job.item].item_id)}: {_one_line(e)}" for job, e in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        raise DataError(
            f"{len(failed)} of {total} rendering jobs failed (the others are saved in {work}; "
            f"a rerun renders only what is left): {shown}{more}"
        )

    # one size per group of each item's media, so that no size tells the conditions apart
    # (not journalled: a kill from here on re-renders the padded files, which is correct)
    pairs = [tuple(cid.split("|")) for cid in plan.composites.expected()]
    for p in plan.items:
        for names in item_groups(p.variants, pairs).values():
            pad_group([work / p.folder / n for n in names])
            for n in names:
                path = work / p.folder / n
                outputs[f"{p.folder}/{n}"] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    return outputs


def _run_job(payload: dict[str, Any]) -> Outputs:
    """Render one job in a worker (or in-process): returns ``relpath -> {sha256, bytes}``."""
    from ..render import VideoOutput
    from ..render import render_many

    root = Path(payload["root"])
    out = [root / p for p in payload["outputs"]]
    videos = [VideoOutput(out[2 * i], left, right, out[2 * i + 1]) for i, (left, right) in enumerate(payload["videos"])]
    render_many(payload["motions"], videos, payload["camera"], payload["config"], payload["fps"])
    return {p: {"sha256": file_sha256(root / p), "bytes": (root / p).stat().st_size} for p in payload["outputs"]}


def _payload(job: Job, plan: BatchPlan, work: Path) -> dict[str, Any]:
    p = plan.items[job.item]
    return {
        "root": str(work),
        "videos": job.videos,
        "outputs": job.outputs,
        "config": plan.config,
        "camera": p.camera,
        "fps": p.fps,
        "motions": {n: p.variants[n].motion for n in job.names},
    }


def _execute(
    todo: list[Job], plan: BatchPlan, work: Path, workers: int, executor: Executor | None
) -> Iterable[tuple[Job, Outputs | BaseException]]:
    """Run the jobs (costliest first), yielding each with its outputs, or its exception, as it finishes."""
    todo = sorted(todo, key=lambda j: -j.cost)
    if executor is None and (workers == 1 or len(todo) <= 1):
        for job in todo:
            try:
                yield job, _run_job(_payload(job, plan, work))
            except Exception as e:  # noqa: BLE001 - reported with the job once the others are done
                yield job, e
        return
    ex = executor or _process_pool(min(workers, len(todo)))
    in_flight = 2 * getattr(executor, "workers", workers)  # bounded: payloads hold the motions
    try:
        pending: dict[Future[Outputs], Job] = {}
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < in_flight:
                job = queue.pop(0)
                pending[ex.submit(_run_job, _payload(job, plan, work))] = job
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                error = fut.exception()
                yield job, (error if error is not None else fut.result())
    finally:
        if executor is None:
            ex.shutdown(wait=True, cancel_futures=True)


def _process_pool(workers: int) -> ProcessPoolExecutor:
    import multiprocessing
    import threading

    # fork is fast and needs no `if __name__ == "__main__"` guard in the caller's script, but
    # is only safe from a single-threaded process; otherwise forkserver (POSIX) or spawn.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context(method), initializer=_worker_init
    )


def _one_line(e: BaseException) -> str:
    return (" ".join(str(e).split()) or type(e).__name__)[:300]


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


def _read_journal(path: Path) -> dict[str, Outputs]:
    """``job key -> outputs`` from the journal; a torn or foreign line is skipped."""
    done: dict[str, Outputs] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return done
    for line in text.splitlines():
        try:
            rec = json.loads(line)
            if rec.get("v") == WRITER_VERSION and isinstance(rec.get("key"), str):
                done[rec["key"]] = dict(rec["outputs"])
        except (ValueError, AttributeError, TypeError):
            continue
    return done


def _append_journal(fh: Any, key: str, outputs: Mapping[str, Any]) -> None:
    fh.write((json.dumps({"v": WRITER_VERSION, "key": key, "outputs": outputs}, sort_keys=True) + "\n").encode())
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


# ---- manifest --------------------------------------------------------------------------------
def batch_manifest(plan: BatchPlan, outputs: Mapping[str, Mapping[str, Any]]) -> Batch:
    """The :class:`Batch` describing the files :func:`render_batch` wrote (checked by its field types)."""
    cfg = plan.config
    n = cfg.num_frames
    wide = 2 * cfg.width + cfg.separator_px

    def video(rel: str, width: int) -> VideoFile:
        return VideoFile(
            path=rel,
            **outputs[rel],
            codec=VIDEO_CODEC,
            pix_fmt=VIDEO_PIX_FMT,
            fps=float(cfg.fps),
            frames=n,
            duration=n / float(cfg.fps),
            width=width,
            height=cfg.height,
        )

    def image(rel: str, width: int) -> ImageFile:
        return ImageFile(path=rel, **outputs[rel], width=width, height=cfg.height)

    items = []
    for p in plan.items:
        base = p.folder
        variants = {
            name: Variant(
                role=v.role,
                final_label=v.final_label,
                success=v.success,
                metrics=v.metrics,
                info=v.info,
                motion=MotionFile(path=f"{base}/{name}.npy", **outputs[f"{base}/{name}.npy"], frames=len(v.motion)),
                video=video(f"{base}/{name}.mp4", cfg.width),
                poster=image(f"{base}/{name}.png", cfg.width),
            )
            for name, v in p.variants.items()
        }
        composites = []
        for cid, studies in plan.composites.expected().items():
            left, right = cid.split("|")
            stem = f"{base}/{left}_vs_{right}"
            composites.append(
                Composite(left, right, studies, video=video(f"{stem}.mp4", wide), poster=image(f"{stem}.png", wide))
            )
        items.append(
            Item(
                id=p.item_id,
                source=p.source,
                true_label=p.true_label,
                attacked_label=p.attacked_label,
                motion_fps=p.fps,
                camera=p.camera.to_dict(),
                variants=variants,
                composites=tuple(composites),
            )
        )
    return Batch(
        batch_id=plan.batch_id,
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        generator=plan.generator,
        provenance=plan.provenance,
        render_config=cfg.to_dict(),
        composite_plan=plan.composites,
        items=items,
    )


# ---- publish ---------------------------------------------------------------------------------
def publish_batch(
    batch: Batch, work: Path, out_dir: Path, *, overwrite: bool = False, verify_decode: bool = False
) -> None:
    """Prune ``work`` to the batch's files, write the manifest and its schema, validate, and rename it to
    ``out_dir`` (replacing it when ``overwrite``)."""
    from .reader import _validate

    keep = {MANIFEST, SCHEMA_FILE, JOURNAL} | {ref.path for _, ref in batch.files()}
    _prune(work, keep)
    atomic_write_bytes(work / SCHEMA_FILE, json_schema_text().encode())
    atomic_write_bytes(work / MANIFEST, batch.to_json().encode())
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
    batch.root = out_dir


@contextlib.contextmanager
def _locked(work: Path) -> Iterator[None]:
    fd = os.open(work, os.O_RDONLY)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DataError(f"{work}: another process is writing this batch") from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _progress_bar(progress: Progress | bool | None, total: int, name: str) -> Iterator[Progress | None]:
    if progress is not True:
        yield progress or None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=f"rendering {name}", unit="job", file=sys.stderr) as bar:

        def report(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

        yield report


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
