"""The renderer's configuration: one frozen dataclass, saved in every batch manifest."""

from __future__ import annotations

import math
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from typing import Any
from typing import Mapping

from ..errors import SmartStudyError

__all__ = ["RenderConfig", "RenderError", "X264_PRESETS", "FILL_MODES"]

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
X264_TUNES = ("animation", "film", "grain", "stillimage")
FILL_MODES = ("loop", "hold")

Color = tuple[int, int, int]


class RenderError(SmartStudyError):
    """Rendering or encoding failed (bad settings, ffmpeg failure, unreadable video)."""


@dataclass(frozen=True)
class RenderConfig:
    """How a skeleton video is made: size, timing, viewpoint, styling and encoding.

    Lengths of the figure (``bone_radius``, ``joint_radius``, ``head_radius``) are in
    metres and go through the camera's perspective, so the figure keeps its proportions
    whatever the framing. Colours are sRGB ``(r, g, b)`` 0-255.
    """

    # frame and timing
    width: int = 480
    height: int = 480
    fps: float = 30.0
    duration: float = 6.0
    """Seconds; the video has exactly ``round(duration * fps)`` frames."""
    fill: str = "loop"
    """When the (slowed) motion is shorter than ``duration``: ``"loop"`` it or ``"hold"`` its last pose."""
    slowdown: float = 1.0
    """Play the motion this many times slower (the paper used 3 for fast motions)."""
    poster_frame: int = 0
    """The video frame saved as the poster image."""

    # viewpoint (see Camera.fit)
    azimuth_deg: float = 30.0
    """The camera turns this far from the figure's front towards its left."""
    face_front: bool = True
    """The figure's front is its mean facing (from hips and shoulders, over all variants and
    frames) when it has a clear one; else (and when False) +Z, the datasets' convention."""
    elevation_deg: float = 12.0
    fov_deg: float = 22.0
    """Nominal field of view; sets how strong the perspective is (the framing is fitted)."""
    margin: float = 0.08
    """Free border on each side, as a fraction of the frame size."""
    ground_pad: float = 0.45
    """The ground disc reaches this far (m) beyond the outermost joint."""

    # figure (metres)
    bone_radius: float = 0.024
    joint_radius: float = 0.011
    head_radius: float = 0.095
    outline_px: float = 1.4

    # colours
    background_top: Color = (247, 248, 250)
    background_bottom: Color = (226, 229, 234)
    ground_color: Color = (208, 213, 220)
    grid_color: Color = (186, 192, 201)
    grid_spacing: float = 0.5
    shadow_color: Color = (40, 46, 58)
    shadow_opacity: float = 0.30
    shadow_blur_px: float = 2.5
    trunk_color: Color = (92, 98, 110)
    left_color: Color = (83, 150, 222)
    right_color: Color = (36, 92, 170)
    head_color: Color = (120, 126, 138)
    joint_color: Color = (246, 247, 249)
    outline_color: Color = (34, 38, 46)
    separator_px: int = 4
    """Width of the bar between the halves of a side-by-side video (even; 0 for none)."""
    separator_color: Color = (255, 255, 255)

    # encoding (libx264, yuv420p)
    crf: int = 20
    preset: str = "ultrafast"
    """x264 speed/size trade-off. ``ultrafast`` (about 1 MB per 6 s at 480x480, visually
    lossless here) keeps rendering near encode speed; ``veryfast`` makes files about 3x
    smaller at about half the encoding speed."""
    tune: str | None = "animation"
    threads: int = 1
    """x264 threads; a fixed number keeps the output byte-identical across machines, and one
    thread per video suits rendering several videos in parallel processes."""

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> RenderError:
            return RenderError(f"render config: {name} must be {want}, got {getattr(self, name)!r}")

        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 16 or v % 2:
                raise bad(name, "an even integer >= 16 (H.264 yuv420p needs even sizes)")
        for name in ("fps", "duration", "slowdown", "fov_deg", "grid_spacing", "head_radius", "bone_radius"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(name, "a finite number > 0")
        for name in (
            "azimuth_deg",
            "elevation_deg",
            "margin",
            "ground_pad",
            "joint_radius",
            "outline_px",
            "shadow_opacity",
            "shadow_blur_px",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(name, "a finite number >= 0")
        if not isinstance(self.face_front, bool):
            raise bad("face_front", "True or False")
        if self.fov_deg >= 150:
            raise bad("fov_deg", "below 150 degrees")
        if not -80 <= self.elevation_deg <= 80:
            raise bad("elevation_deg", "between -80 and 80 degrees")
        if self.margin >= 0.45:
            raise bad("margin", "below 0.45")
        if self.shadow_opacity > 1:
            raise bad("shadow_opacity", "between 0 and 1")
        if round(self.duration * self.fps) < 1:
            raise RenderError(
                f"render config: duration {self.duration} s at {self.fps} fps gives no frame; expected >= 1 frame"
            )
        if self.fill not in FILL_MODES:
            raise bad("fill", f"one of {', '.join(FILL_MODES)}")
        if (
            isinstance(self.poster_frame, bool)
            or not isinstance(self.poster_frame, int)
            or not (0 <= self.poster_frame < self.num_frames)
        ):
            raise bad("poster_frame", f"a frame index 0..{self.num_frames - 1}")
        if (
            isinstance(self.separator_px, bool)
            or not isinstance(self.separator_px, int)
            or (self.separator_px < 0 or self.separator_px % 2)
        ):
            raise bad("separator_px", "an even integer >= 0")
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise bad("crf", "an integer 0..51")
        if self.preset not in X264_PRESETS:
            raise bad("preset", f"one of {', '.join(X264_PRESETS)}")
        if self.tune is not None and self.tune not in X264_TUNES:
            raise bad("tune", f"None or one of {', '.join(X264_TUNES)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 0 <= self.threads <= 64:
            raise bad("threads", "an integer 0..64 (0: ffmpeg chooses)")
        for f in fields(self):
            if f.name.endswith("_color") or f.name.startswith("background_"):
                v = getattr(self, f.name)
                if (
                    not isinstance(v, (tuple, list))
                    or len(v) != 3
                    or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in v)
                ):
                    raise bad(f.name, "an (r, g, b) triple of integers 0..255")
                object.__setattr__(self, f.name, tuple(v))

    @property
    def num_frames(self) -> int:
        """Frames in a video: ``round(duration * fps)``."""
        return int(round(self.duration * self.fps))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RenderConfig":
        """The inverse of :meth:`to_dict`; unknown keys are refused, missing ones take defaults."""
        if not isinstance(d, Mapping):
            raise RenderError(f"render config: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RenderError(f"render config: unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def replace(self, **changes: Any) -> "RenderConfig":
        return type(self).from_dict({**self.to_dict(), **changes})
