"""ffmpeg (from the ``imageio-ffmpeg`` wheel): the H.264 encoder pipe, probing, decoding; PNG writing.

Videos are written atomically: ffmpeg writes a hidden temporary file beside the target,
which is renamed into place only once ffmpeg has exited cleanly.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path
from typing import IO
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

from ..fileio import atomic_write
from .config import RenderConfig
from .config import RenderError

__all__ = ["ffmpeg_exe", "VideoEncoder", "encoder_args", "probe_video", "decode_frames", "write_png", "mp4_faststart"]

_STDERR_LINES = 8
_PIPE_BYTES = 1 << 20


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by ``imageio-ffmpeg``."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise RenderError("rendering needs the imageio-ffmpeg package (pip install imageio-ffmpeg)") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise RenderError(f"no ffmpeg binary found: {e}") from None


def _rate(fps: float) -> str:
    fr = Fraction(fps).limit_denominator(100_000)
    return f"{fr.numerator}/{fr.denominator}"


def encoder_args(config: RenderConfig) -> list[str]:
    """The libx264 output options: yuv420p (BT.709, limited range, tagged), High profile, faststart."""
    args = ["-an", "-c:v", "libx264", "-preset", config.preset, "-crf", str(config.crf)]
    if config.tune:
        args += ["-tune", config.tune]
    args += [
        "-threads",
        str(config.threads),
        "-vf",
        "scale=out_color_matrix=bt709:out_range=tv:flags=bitexact,"
        "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709",
        "-pix_fmt",
        "yuv420p",
        "-profile:v",
        "high",
        "-movflags",
        "+faststart",
        "-fflags",
        "+bitexact",
        "-map_metadata",
        "-1",
    ]
    return args


def _grow_pipe(stdin: IO[bytes] | None) -> None:
    """Let the pipe hold a whole frame (Linux), so drawing the next frame overlaps encoding this one."""
    if stdin is None or fcntl is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:
        pass  # the pipe keeps its default size: slower, still correct


def _tail(fh: IO[bytes]) -> str:
    fh.seek(0)
    lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return " | ".join(lines[-_STDERR_LINES:]) or "(no message)"


class VideoEncoder:
    """Streams ``(H, W, 4)`` RGBA uint8 frames into an H.264 MP4 written atomically at ``path``.

    Use as a context manager; leaving it normally finishes the file, an exception
    discards the temporary file and leaves ``path`` untouched.
    """

    def __init__(self, path: str | Path, width: int, height: int, config: RenderConfig):
        self.path = Path(path)
        self.width, self.height = width, height
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._err = tempfile.TemporaryFile()
        cmd = [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgba",
            "-s",
            f"{width}x{height}",
            "-framerate",
            _rate(config.fps),
            "-i",
            "pipe:0",
            *encoder_args(config),
            "-f",
            "mp4",
            str(self._tmp),
        ]
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err, bufsize=0
            )
        except OSError as e:
            self._cleanup()
            raise RenderError(f"cannot start ffmpeg: {e}") from None
        _grow_pipe(self._proc.stdin)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 4) or frame.dtype != np.uint8:
            raise RenderError(
                f"encoder: expected a ({self.height}, {self.width}, 4) uint8 frame, got {frame.shape} {frame.dtype}"
            )
        assert self._proc is not None and self._proc.stdin is not None
        view = memoryview(np.ascontiguousarray(frame)).cast("B")
        try:
            while view:  # an unbuffered pipe may take part of a frame per call
                n = self._proc.stdin.write(view)
                view = view[n:]
        except (BrokenPipeError, OSError):
            rc = self._proc.wait()
            raise RenderError(f"ffmpeg stopped (exit {rc}) while writing {self.path}: {_tail(self._err)}") from None
        self.frames += 1

    def close(self) -> Path:
        """Finish the video and move it into place."""
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        rc = self._proc.wait()
        self._proc = None
        if rc != 0:
            msg = _tail(self._err)
            self._cleanup()
            raise RenderError(f"ffmpeg failed (exit {rc}) writing {self.path}: {msg}")
        with open(self._tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp, self.path)
        self._err.close()
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and discard the temporary file; the target path is left as it was."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stdin is not None:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
            self._proc = None
        self._cleanup()

    def _cleanup(self) -> None:
        self._tmp.unlink(missing_ok=True)
        self._err.close()

    def __enter__(self) -> "VideoEncoder":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _run(args: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], capture_output=True, check=False)
    except OSError as e:
        raise RenderError(f"cannot run ffmpeg for {what}: {e}") from None


def mp4_faststart(path: str | Path) -> bool:
    """Whether the MP4's ``moov`` box (the index) comes before ``mdat`` (the media), for streaming."""
    order = []
    with open(path, "rb") as fh:
        size_total = os.fstat(fh.fileno()).st_size
        pos = 0
        while pos + 8 <= size_total and len(order) < 64:
            fh.seek(pos)
            size, kind = struct.unpack(">I4s", fh.read(8))
            if size == 1:
                size = struct.unpack(">Q", fh.read(8))[0]
            elif size == 0:
                size = size_total - pos
            order.append(kind)
            if size < 8:
                break
            pos += size
    return b"moov" in order and b"mdat" in order and order.index(b"moov") < order.index(b"mdat")


_STREAM = re.compile(r"Stream #\d+:\d+[^:]*: Video: (\w+)[^,]*, (\w+)(?:\(([^)]*)\))?.*?, (\d+)x(\d+)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_FPS = re.compile(r", (\d+(?:\.\d+)?) fps")
_FRAMES = re.compile(r"frame=\s*(\d+)")


def probe_video(path: str | Path) -> dict[str, Any]:
    """What a video file holds, read by ffmpeg itself (no ffprobe in the wheel).

    Returns ``codec`` (``"h264"``), ``pix_fmt`` (``"yuv420p"``), ``color`` (the colour
    tags, e.g. ``"tv, bt709, progressive"``), ``width``, ``height``, ``fps``,
    ``duration`` (s, from the container), ``frames`` (video packets, counted by a
    stream copy) and ``faststart``. An unreadable file raises :class:`RenderError`.
    """
    path = Path(path)
    if not path.is_file():
        raise RenderError(f"{path}: video not found")
    r = _run(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"], f"probing {path}")
    err = r.stderr.decode("utf-8", "replace")
    m = _STREAM.search(err)
    if r.returncode != 0 or m is None:
        lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
        raise RenderError(f"{path}: not a readable video: {' | '.join(lines[-_STDERR_LINES:])}")
    d = _DURATION.search(err)
    fps = _FPS.search(err[m.start() :])
    frames = _FRAMES.findall(err)
    return {
        "codec": m.group(1),
        "pix_fmt": m.group(2),
        "color": m.group(3) or "",
        "width": int(m.group(4)),
        "height": int(m.group(5)),
        "fps": float(fps.group(1)) if fps else None,
        "duration": int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3)) if d else None,
        "frames": int(frames[-1]) if frames else None,
        "faststart": mp4_faststart(path),
    }


def decode_frames(path: str | Path) -> np.ndarray:
    """Every frame of a video as ``(N, H, W, 3)`` RGB uint8 (BT.709 limited range assumed when untagged)."""
    info = probe_video(path)
    r = _run(
        [
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-vf",
            "scale=in_color_matrix=auto:in_range=auto:flags=accurate_rnd+bitexact+full_chroma_int",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        f"decoding {path}",
    )
    if r.returncode != 0:
        lines = [ln.strip() for ln in r.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise RenderError(f"{path}: cannot decode: {' | '.join(lines[-_STDERR_LINES:])}")
    w, h = info["width"], info["height"]
    n, rem = divmod(len(r.stdout), w * h * 3)
    if rem:
        raise RenderError(f"{path}: decoded {len(r.stdout)} bytes, not a whole number of {w}x{h} frames")
    return np.frombuffer(r.stdout, np.uint8).reshape(n, h, w, 3)


def _png_bytes(rgb: np.ndarray) -> bytes:
    h, w, _ = rgb.shape
    raw = np.empty((h, 1 + w * 3), np.uint8)
    raw[:, 0] = 0  # filter: none
    raw[:, 1:] = rgb.reshape(h, w * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB image as a PNG, atomically. Deterministic bytes."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise RenderError(f"write_png: expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    data = _png_bytes(rgb)
    return atomic_write(path, lambda fh: fh.write(data))
