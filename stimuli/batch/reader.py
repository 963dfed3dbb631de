"""Reading and validating a stimulus batch folder.

:func:`load_batch` is what the study server calls: it parses the manifest and checks
that every file it names exists with the declared size (no hashing, no decoding, no
renderer import). :func:`validate_batch` checks everything: the schema, the render
config and cameras, every file's presence, size and SHA-256, that nothing else is in
the folder, the motion arrays, the posters, and (``decode=True``) every video, read by
ffmpeg: codec h264, pix_fmt yuv420p, size, frame rate, duration, frame count, and
a full decode of every frame. :func:`check_batch` raises :class:`BatchError` with all
problems found.

Extra files are refused: a batch is sealed by its manifest, and anything else in the
folder (a stray temporary file, a file added by hand) means it is not the batch the
manifest describes. Symbolic links are refused too (they could point outside the
batch, and the server serves these files).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import file_sha256
from ..fileio import load_npy
from .schema import MANIFEST
from .schema import SCHEMA_FILE
from .schema import Batch
from .schema import BatchError
from .schema import FileRef
from .schema import ImageFile
from .schema import MotionFile
from .schema import Problem
from .schema import VideoFile

__all__ = ["read_manifest", "load_batch", "validate_batch", "check_batch"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest's JSON; a missing folder or file or bad JSON raises :class:`BatchError` (with line and column)."""
    root = Path(root)
    if not root.is_dir():
        raise BatchError([Problem("", "not a folder (no such stimulus batch)")], root)
    path = root / MANIFEST
    if not path.is_file():
        raise BatchError([Problem(MANIFEST, "missing: not a stimulus batch, or an unfinished one")], root)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BatchError([Problem(MANIFEST, f"not UTF-8 text (byte {e.start})")], root) from None
    except OSError as e:
        raise BatchError([Problem(MANIFEST, f"cannot be read: {e.strerror}")], root) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise BatchError(
            [Problem(MANIFEST, f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})")], root
        ) from None
    except ValueError as e:
        raise BatchError([Problem(MANIFEST, f"not valid JSON: {e}")], root) from None


def _locate(root: Path, ref: FileRef, where: str) -> tuple[Path | None, Problem | None]:
    """The file's path, or why it is not usable (missing, a link, outside the batch, wrong size)."""
    path = root / ref.path
    try:
        if path.is_symlink():
            return None, Problem(where, f"file {ref.path} is a symbolic link; batches hold plain files")
        if not path.is_file():
            return None, Problem(where, f"file {ref.path} is missing")
        real_root = root.resolve()
        if real_root not in path.resolve().parents:
            return None, Problem(where, f"file {ref.path} lies outside the batch folder (through a link)")
        size = path.stat().st_size
    except OSError as e:
        return None, Problem(where, f"file {ref.path} cannot be read: {e.strerror}")
    if size != ref.bytes:
        return None, Problem(where, f"file {ref.path} has {size} bytes, the manifest says {ref.bytes} (altered?)")
    return path, None


def load_batch(root: str | Path) -> Batch:
    """Parse ``root/manifest.json`` and check every file it names exists with its declared size.

    Fast (no hashing, no decoding, no renderer import). Raises :class:`BatchError` listing
    every problem. Use :func:`check_batch` to verify hashes and videos as well.
    """
    root = Path(root)
    batch = Batch.from_dict(read_manifest(root), root)
    problems = [p for where, ref in batch.files() if (p := _locate(root, ref, where)[1]) is not None]
    if problems:
        raise BatchError(problems, root)
    return batch


def validate_batch(root: str | Path, *, decode: bool = True, workers: int | None = None) -> list[Problem]:
    """Every problem with the batch at ``root`` (empty when valid); see the module docstring.

    ``decode=False`` skips ffmpeg (schema, files, hashes, arrays and posters only).
    ``workers`` threads check files in parallel (default: 2 per CPU).
    """
    return _validate(Path(root), decode, workers)[1]


def check_batch(root: str | Path, *, decode: bool = True, workers: int | None = None) -> Batch:
    """The batch at ``root`` once fully validated; raises :class:`BatchError` with every problem."""
    batch, problems = _validate(Path(root), decode, workers)
    if problems or batch is None:
        raise BatchError(problems, root)
    return batch


def _validate(
    root: Path, decode: bool, workers: int | None, ignore: frozenset[str] | set[str] = frozenset()
) -> tuple[Batch | None, list[Problem]]:
    try:
        data = read_manifest(root)
    except BatchError as e:
        return None, e.problems
    try:
        batch = Batch.from_dict(data, root)
    except BatchError as e:
        return None, e.problems
    problems: list[Problem] = []

    from ..render import Camera  # lazily: loads skia
    from ..render import RenderConfig  # lazily: loads skia
    from ..render import RenderError  # lazily: loads skia

    try:
        RenderConfig.from_dict(batch.render_config)
    except (RenderError, TypeError) as e:
        problems.append(Problem("render_config", str(e).removeprefix("render config: ")))
    for k, it in enumerate(batch.items):
        try:
            Camera.from_dict(it.camera)
        except RenderError as e:
            problems.append(Problem(f"items[{k}].camera", str(e).removeprefix("camera: ")))

    problems += _size_neutral(batch)
    refs = list(batch.files())
    expected = {MANIFEST, SCHEMA_FILE} | {ref.path for _, ref in refs} | set(ignore)
    problems += _extras(root, expected)

    def check(entry: tuple[str, FileRef]) -> list[Problem]:
        where, ref = entry
        path, problem = _locate(root, ref, where)
        if problem is not None:
            return [problem]
        assert path is not None
        digest = file_sha256(path)
        if digest != ref.sha256:
            return [
                Problem(
                    where,
                    f"file {ref.path}: SHA-256 mismatch (manifest {ref.sha256[:12]}..., "
                    f"file {digest[:12]}...): altered",
                )
            ]
        if isinstance(ref, MotionFile):
            return _check_motion(path, ref, where)
        if isinstance(ref, ImageFile):
            return _check_png(path, ref, where)
        if isinstance(ref, VideoFile) and decode:
            return _check_video(path, ref, where)
        return []

    n = workers if workers is not None else 2 * (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, min(n, len(refs)))) as pool:
        for found in pool.map(check, refs):
            problems += found
    return batch, problems


def _size_neutral(batch: Batch) -> list[Problem]:
    """Within each item, every group of media has one byte size, and its videos one duration and frame count."""
    problems = []
    for k, it in enumerate(batch.items):
        comps = {f"{c.left}_vs_{c.right}": c for c in it.composites}
        groups = {
            "variant videos": {n: v.video for n, v in it.variants.items()},
            "variant posters": {n: v.poster for n, v in it.variants.items()},
            "composite videos": {n: c.video for n, c in comps.items()},
            "composite posters": {n: c.poster for n, c in comps.items()},
        }
        for kind, refs in groups.items():
            for field, unit in (("bytes", " B"), ("frames", " frames"), ("duration", " s")):
                values = {n: getattr(r, field) for n, r in refs.items() if hasattr(r, field)}
                if len(set(values.values())) > 1:
                    listed = ", ".join(f"{n} {v}{unit}" for n, v in sorted(values.items(), key=lambda kv: kv[1]))
                    problems.append(
                        Problem(
                            f"items[{k}]", f"{kind} differ in {field} ({listed}): it would tell the conditions apart"
                        )
                    )
    return problems


def _extras(root: Path, expected: set[str]) -> list[Problem]:
    problems = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        for name in sorted(dirnames):
            if (d / name).is_symlink():
                problems.append(
                    Problem(
                        (d / name).relative_to(root).as_posix(), "unexpected symbolic link, not named by the manifest"
                    )
                )
        for name in sorted(filenames):
            rel = (d / name).relative_to(root).as_posix()
            if rel not in expected:
                problems.append(Problem(rel, "unexpected file, not named by the manifest"))
    return problems


def _check_motion(path: Path, ref: MotionFile, where: str) -> list[Problem]:
    try:
        arr = load_npy(path)
    except (OSError, ValueError, EOFError) as e:
        return [Problem(where, f"file {ref.path}: not a NumPy .npy array ({e})")]
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.shape != (ref.frames, 25, 3):
        got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        return [Problem(where, f"file {ref.path}: expected float32 ({ref.frames}, 25, 3), got {got}")]
    if not np.isfinite(arr).all():
        return [Problem(where, f"file {ref.path}: contains NaN or Inf")]
    return []


def _check_png(path: Path, ref: ImageFile, where: str) -> list[Problem]:
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return [Problem(where, f"file {ref.path}: not a PNG image")]
    w, h = struct.unpack(">II", head[16:24])
    if (w, h) != (ref.width, ref.height):
        return [Problem(where, f"file {ref.path}: image is {w}x{h}, the manifest says {ref.width}x{ref.height}")]
    return []


def _check_video(path: Path, ref: VideoFile, where: str) -> list[Problem]:
    from ..render import RenderError
    from ..render import ffmpeg_exe
    from ..render import probe_video

    pre = f"file {ref.path}"
    try:
        info = probe_video(path)
    except RenderError as e:
        msg = str(e).removeprefix(f"{path}: ")
        return [Problem(where, f"{pre}: {msg}")]
    problems = []
    for key in ("codec", "pix_fmt", "width", "height", "frames"):
        if info[key] != getattr(ref, key):
            problems.append(Problem(where, f"{pre}: {key} is {info[key]!r}, expected {getattr(ref, key)!r}"))
    if info["fps"] is None or abs(info["fps"] - ref.fps) > 0.01 * ref.fps:
        problems.append(Problem(where, f"{pre}: frame rate is {info['fps']!r}, expected {ref.fps:g}"))
    if info["duration"] is None or abs(info["duration"] - ref.duration) > 0.5 / ref.fps + 0.02:
        problems.append(Problem(where, f"{pre}: duration is {info['duration']!r} s, expected {ref.duration:g} s"))
    if problems:
        return problems
    # decode every frame (framecrc: one short line per decoded frame, nothing held in memory)
    try:
        r = subprocess.run(
            [
                ffmpeg_exe(),
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-i",
                str(path),
                "-map",
                "0:v:0",
                "-f",
                "framecrc",
                "-",
            ],
            capture_output=True,
            check=False,
        )
    except OSError as e:
        return [Problem(where, f"{pre}: cannot run ffmpeg to decode it: {e}")]
    err = " | ".join(ln.strip() for ln in r.stderr.decode("utf-8", "replace").splitlines() if ln.strip())
    decoded = sum(1 for ln in r.stdout.decode("ascii", "replace").splitlines() if ln and not ln.startswith("#"))
    if r.returncode != 0 or err:
        return [Problem(where, f"{pre}: does not decode cleanly: {err[-400:] or f'ffmpeg exit {r.returncode}'}")]
    if decoded != ref.frames:
        return [Problem(where, f"{pre}: decoded {decoded} frames, expected {ref.frames}")]
    return []
