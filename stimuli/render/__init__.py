"""The stimulus renderer: skeleton motions to browser-ready H.264 videos (torch-free).

What participants see in a perceptual study: a skeleton figure on a ground plane,
filmed by one fixed camera per motion item, so that the original and every attacked
variant of a motion are framed and styled identically and only the motion tells
them apart.

Usage::

    from stimuli.render import Camera, RenderConfig, render_video, render_pair

    config = RenderConfig()                       # 480x480, 30 fps, 6 s, loop
    camera = Camera.fit([original, smart, l2], config)   # once per item, all variants
    info = render_video(smart, "smart.mp4", camera, config, motion_fps=30, poster="smart.png")
    ab, ba = render_pair(original, smart, "o_s.mp4", "s_o.mp4", camera, config, motion_fps=30)
    manifest_camera = camera.to_dict()            # Camera.from_dict(...) restores it exactly

API
---
* :class:`RenderConfig` - frozen dataclass: size (even), ``fps``, ``duration``,
  ``fill`` (``"loop"``/``"hold"``), ``slowdown``, ``poster_frame``, viewpoint
  (``azimuth_deg``, ``elevation_deg``, ``fov_deg``, ``margin``), figure sizes in metres,
  colours, ``separator_px`` and x264 settings (``crf``, ``preset``, ``tune``,
  ``threads``); ``to_dict``/``from_dict``.
* :class:`Camera` - ``Camera.fit(motions, config)`` from the union of all variants'
  joints over all frames (with the drawn heads and the shadows) with a margin; a
  perspective camera at ``azimuth_deg`` from the figure's front (+Z) towards its left
  (+X), ``elevation_deg`` above; the floor at the lowest joint of all variants minus a
  bone radius. ``project``, ``to_dict``/``from_dict``.
* :func:`frame_schedule` / :func:`resample` - which (interpolated) motion pose each
  video frame shows: ``round(duration * fps)`` frames; frame ``k`` shows motion time
  ``k / fps / slowdown``; past the end, loop (modulo the motion's frame count) or hold.
* :func:`render_frames` (``(H, W, 3)`` uint8 per frame), :func:`render_frame` (one pose),
  :func:`render_side_by_side_frames` - the exact pixels the videos encode.
* :func:`render_video` -> :class:`VideoInfo` (path, frames, fps, duration, width,
  height, sha256, poster); :func:`render_side_by_side` (``left | right``, one frame
  schedule for both halves, an optional separator bar); :func:`render_pair` (both
  orders from one rendering); :func:`render_many` (every video of an item, each motion
  drawn once per frame and fed to all the encoders that show it); :func:`write_poster`
  (a PNG of one frame).
* :func:`probe_video` (codec, pix_fmt, size, fps, duration, frame count, faststart,
  read by ffmpeg itself), :func:`decode_frames` (``(N, H, W, 3)`` RGB),
  :func:`contact_sheet`, :func:`write_png`.

Output: libx264, yuv420p (BT.709, limited range, tagged), High profile, ``+faststart``,
no audio: plays in Chrome, Firefox and Safari. Files are written atomically (a hidden
temporary file renamed into place); a failed ffmpeg run raises :class:`RenderError`
with ffmpeg's last stderr lines. Bad input raises :class:`RenderError` or
:class:`stimuli.errors.MotionFormatError` (both :class:`stimuli.errors.SmartStudyError`).

The figure: anti-aliased round-capped bones with a dark outline, painted far to near,
the figure's left limbs a lighter blue than its right ones and the trunk grey, small
light joint dots, a round head, and a soft shadow cast straight down onto a ground disc
with a faint grid (aligned with the figure's facing) at the floor height shared by the
item's variants. Lengths are in metres, so the figure keeps its proportions in any
framing; no style depends on the variant.

Drawing uses Skia (``skia-python``) into an RGBA buffer piped straight to ffmpeg
(from ``imageio-ffmpeg``), so drawing a frame overlaps encoding the previous one; the
static background is computed once per camera and config. Frame pixels are
deterministic for the same input; with a fixed ``threads`` (default 1) the MP4 bytes
are too. The default x264 preset is ``ultrafast`` (speed; about 1 MB per 6 s at
480x480); ``veryfast`` gives about 3x smaller files at about half the encoding speed.
Throughput: ``bench/render_throughput.py``.
"""

from .camera import Camera
from .config import FILL_MODES
from .config import RenderConfig
from .config import RenderError
from .draw import background
from .ffmpeg import decode_frames
from .ffmpeg import encoder_args
from .ffmpeg import ffmpeg_exe
from .ffmpeg import probe_video
from .ffmpeg import write_png
from .timing import frame_schedule
from .timing import resample
from .video import VideoInfo
from .video import VideoOutput
from .video import contact_sheet
from .video import render_frame
from .video import render_frames
from .video import render_many
from .video import render_pair
from .video import render_side_by_side
from .video import render_side_by_side_frames
from .video import render_video
from .video import write_poster

__all__ = [
    "Camera",
    "RenderConfig",
    "RenderError",
    "FILL_MODES",
    "VideoInfo",
    "frame_schedule",
    "resample",
    "render_frame",
    "render_frames",
    "render_side_by_side_frames",
    "render_video",
    "render_side_by_side",
    "render_pair",
    "render_many",
    "VideoOutput",
    "write_poster",
    "probe_video",
    "decode_frames",
    "contact_sheet",
    "write_png",
    "background",
    "encoder_args",
    "ffmpeg_exe",
]
