"""Frames, videos, side-by-side composites, posters and contact sheets of a motion."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Iterator
from typing import Mapping
from typing import Sequence

import numpy as np

from ..fileio import file_sha256
from ..motion import Motion
from ..motion import check_clip
from .camera import Camera
from .config import RenderConfig
from .config import RenderError
from .draw import FigureRenderer
from .ffmpeg import VideoEncoder
from .ffmpeg import write_png
from .timing import resample

__all__ = [
    "VideoInfo",
    "render_frame",
    "render_frames",
    "render_side_by_side_frames",
    "render_video",
    "render_side_by_side",
    "render_pair",
    "render_many",
    "VideoOutput",
    "write_poster",
    "contact_sheet",
]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`render_video` wrote: the file, its frames, timing, size and SHA-256."""

    path: Path
    frames: int
    fps: float
    duration: float
    width: int
    height: int
    sha256: str
    poster: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "frames": self.frames,
            "fps": self.fps,
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
            "sha256": self.sha256,
            "poster": None if self.poster is None else str(self.poster),
        }


def _clip(motion: Any, motion_fps: float | None, name: str) -> tuple[np.ndarray, float]:
    if isinstance(motion, Motion):
        return motion.positions, float(motion.fps if motion_fps is None else motion_fps)
    if motion_fps is None:
        raise RenderError(f"{name}: motion_fps is required for a bare (T, 25, 3) array")
    return check_clip(motion, name=name), motion_fps


def _rgb(rgba: np.ndarray) -> np.ndarray:
    out = np.empty(rgba.shape[:2] + (3,), np.uint8)
    for c in range(3):  # per channel: several times faster than rgba[..., :3].copy()
        out[..., c] = rgba[..., c]
    return out


def _rgba_frames(
    motion: Any, camera: Camera, config: RenderConfig, motion_fps: float | None, name: str
) -> Iterator[np.ndarray]:
    """Validates now (before any ffmpeg starts), then yields the reused RGBA buffer per frame."""
    clip, fps = _clip(motion, motion_fps, name)
    poses = resample(clip, fps, config)  # validates motion_fps
    return FigureRenderer(camera, config).draw_many(poses)


class _Composer:
    """Builds ``left | separator | right`` RGBA frames in one reused buffer."""

    def __init__(self, config: RenderConfig):
        W, H, s = config.width, config.height, config.separator_px
        self.W, self.s = W, s
        self.buffer = np.empty((H, 2 * W + s, 4), np.uint8)
        self.buffer[:, W : W + s, :3] = config.separator_color
        self.buffer[:, W : W + s, 3] = 255

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        self.buffer[:, : self.W] = left
        self.buffer[:, self.W + self.s :] = right
        return self.buffer


def _cfg(config: RenderConfig | None, camera: Camera) -> RenderConfig:
    config = config or RenderConfig()
    if not isinstance(camera, Camera):
        raise RenderError(f"expected a Camera, got {type(camera).__name__}")
    camera.check_size(config.width, config.height)
    return config


def render_frame(pose: Any, camera: Camera, config: RenderConfig | None = None) -> np.ndarray:
    """One pose ``(25, 3)`` as an ``(H, W, 3)`` uint8 RGB image."""
    config = _cfg(config, camera)
    pose = check_clip(np.asarray(pose)[None], name="pose")[0]
    return _rgb(FigureRenderer(camera, config).draw(pose))


def render_frames(
    motion: Any, camera: Camera, config: RenderConfig | None = None, motion_fps: float | None = None
) -> Iterator[np.ndarray]:
    """Every video frame of ``motion`` (``(T, 25, 3)`` or :class:`Motion`) as ``(H, W, 3)`` uint8 RGB.

    Exactly the pixels :func:`render_video` encodes; ``config.num_frames`` frames.
    """
    config = _cfg(config, camera)
    return (_rgb(f) for f in _rgba_frames(motion, camera, config, motion_fps, "motion"))


def render_side_by_side_frames(
    left: Any, right: Any, camera: Camera, config: RenderConfig | None = None, motion_fps: float | None = None
) -> Iterator[np.ndarray]:
    """The frames of :func:`render_side_by_side`: ``(H, 2W + separator, 3)`` RGB."""
    config = _cfg(config, camera)
    compose = _Composer(config)
    pairs = zip(
        _rgba_frames(left, camera, config, motion_fps, "left motion"),
        _rgba_frames(right, camera, config, motion_fps, "right motion"),
        strict=True,
    )
    return (_rgb(compose(a, b)) for a, b in pairs)


@dataclass(frozen=True)
class VideoOutput:
    """One video to write: motion ``left`` alone, or ``left | right`` side by side (names of motions)."""

    path: str | Path
    left: str
    right: str | None = None
    poster: str | Path | None = None


def render_many(
    motions: Mapping[str, Any],
    outputs: Sequence[VideoOutput],
    camera: Camera,
    config: RenderConfig | None = None,
    motion_fps: float | None = None,
) -> list[VideoInfo]:
    """Write every video of ``outputs`` from one drawing of each motion in ``motions``.

    Frame by frame, each motion that some output shows is drawn once and fed to every
    encoder that shows it (alone or as a half of a composite), so the pixels are those of
    :func:`render_video` and :func:`render_side_by_side`, at a fraction of the drawing.
    Each file is written atomically; on an error none of them is left behind.
    """
    config = _cfg(config, camera)
    used = {n for o in outputs for n in (o.left, o.right) if n is not None}
    missing = sorted(used - set(motions))
    if missing:
        raise RenderError(f"render_many: no motion named {', '.join(map(repr, missing))}")
    names = sorted(used)
    # validated now, before any ffmpeg starts
    frames = [_rgba_frames(motions[n], camera, config, motion_fps, n) for n in names]
    compose = _Composer(config)
    wide = compose.buffer.shape[1]
    posters: dict[int, np.ndarray] = {}
    with contextlib.ExitStack() as stack:
        encoders = [
            stack.enter_context(VideoEncoder(o.path, config.width if o.right is None else wide, config.height, config))
            for o in outputs
        ]
        for k, drawn in enumerate(zip(*frames, strict=True)):
            by_name = dict(zip(names, drawn))
            for i, (o, enc) in enumerate(zip(outputs, encoders)):
                frame = by_name[o.left] if o.right is None else compose(by_name[o.left], by_name[o.right])
                if o.poster is not None and k == config.poster_frame:
                    posters[i] = _rgb(frame)
                enc.write(frame)
        if any(enc.frames != config.num_frames for enc in encoders):  # pragma: no cover - the schedule fixes it
            raise RenderError(f"{outputs[0].path}: wrote {encoders[0].frames} frames, expected {config.num_frames}")
    infos = []
    for i, o in enumerate(outputs):
        if o.poster is not None:
            write_png(o.poster, posters[i])
        infos.append(
            VideoInfo(
                path=Path(o.path),
                frames=config.num_frames,
                fps=float(config.fps),
                duration=config.num_frames / float(config.fps),
                width=config.width if o.right is None else wide,
                height=config.height,
                sha256=file_sha256(o.path),
                poster=None if o.poster is None else Path(o.poster),
            )
        )
    return infos


def render_video(
    motion: Any,
    path: str | Path,
    camera: Camera,
    config: RenderConfig | None = None,
    motion_fps: float | None = None,
    *,
    poster: str | Path | None = None,
) -> VideoInfo:
    """Render ``motion`` to an H.264 MP4 at ``path`` (atomically); optionally its poster PNG."""
    return render_many({"motion": motion}, [VideoOutput(path, "motion", poster=poster)], camera, config, motion_fps)[0]


def render_side_by_side(
    left: Any,
    right: Any,
    path: str | Path,
    camera: Camera,
    config: RenderConfig | None = None,
    motion_fps: float | None = None,
    *,
    poster: str | Path | None = None,
) -> VideoInfo:
    """``left | right`` in one MP4, frame-exact in sync: both halves follow one frame schedule.

    The video is ``2 * width + separator_px`` wide; swap the arguments for the other order
    (or use :func:`render_pair` to write both orders from one rendering).
    """
    motions = {"left motion": left, "right motion": right}
    return render_many(motions, [VideoOutput(path, "left motion", "right motion", poster)], camera, config, motion_fps)[
        0
    ]


def render_pair(
    a: Any,
    b: Any,
    path_ab: str | Path,
    path_ba: str | Path,
    camera: Camera,
    config: RenderConfig | None = None,
    motion_fps: float | None = None,
    *,
    poster_ab: str | Path | None = None,
    poster_ba: str | Path | None = None,
) -> tuple[VideoInfo, VideoInfo]:
    """Both orders ``a | b`` and ``b | a`` of a pair, each half rendered once and encoded twice."""
    outputs = [
        VideoOutput(path_ab, "motion a", "motion b", poster_ab),
        VideoOutput(path_ba, "motion b", "motion a", poster_ba),
    ]
    ab, ba = render_many({"motion a": a, "motion b": b}, outputs, camera, config, motion_fps)
    return ab, ba


def write_poster(
    motion: Any,
    path: str | Path,
    camera: Camera,
    config: RenderConfig | None = None,
    motion_fps: float | None = None,
    *,
    right: Any = None,
    frame: int | None = None,
) -> Path:
    """Write video frame ``frame`` (default ``config.poster_frame``) as a PNG; side by side when ``right`` is given."""
    config = _cfg(config, camera)
    k = config.poster_frame if frame is None else frame
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < config.num_frames:
        raise RenderError(f"poster frame must be 0..{config.num_frames - 1}, got {k!r}")
    clip, fps = _clip(motion, motion_fps, "motion")
    img = FigureRenderer(camera, config).draw(resample(clip, fps, config)[k])
    if right is not None:
        rclip, rfps = _clip(right, motion_fps, "right motion")
        rimg = FigureRenderer(camera, config).draw(resample(rclip, rfps, config)[k])
        img = _Composer(config)(img, rimg)
    return write_png(path, _rgb(img))


def contact_sheet(frames: Sequence[np.ndarray], cols: int = 4, gap: int = 4, color: int = 255) -> np.ndarray:
    """Tile ``(H, W, 3)`` frames into one RGB image, ``cols`` per row, ``gap`` pixels apart."""
    frames = [np.asarray(f) for f in frames]
    if not frames or any(f.shape != frames[0].shape or f.ndim != 3 for f in frames):
        raise RenderError("contact sheet: expected a non-empty list of equally sized (H, W, 3) frames")
    h, w, _ = frames[0].shape
    cols = max(1, min(cols, len(frames)))
    rows = -(-len(frames) // cols)
    sheet = np.full((rows * h + (rows + 1) * gap, cols * w + (cols + 1) * gap, 3), color, np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        sheet[y : y + h, x : x + w] = f
    return sheet
