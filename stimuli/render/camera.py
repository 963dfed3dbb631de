"""One fixed perspective camera per motion item, fitted to all its variants at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from typing import Mapping
from typing import Sequence

import numpy as np

from ..motion import Motion
from ..motion import check_clip
from ..skeleton import STANDARD
from .config import RenderConfig
from .config import RenderError

__all__ = ["Camera", "head_centres", "figure_facing_deg", "ground_axes"]

_NECK = STANDARD.index("Neck")
_HEAD = STANDARD.index("Neck1")
_LHIP, _RHIP = STANDARD.index("LeftUpLeg"), STANDARD.index("RightUpLeg")
_LSHO, _RSHO = STANDARD.index("LeftArm"), STANDARD.index("RightArm")
_CAMERA_VERSION = 1


def head_centres(pos: np.ndarray, head_radius: float) -> np.ndarray:
    """Centre of the drawn head ``(..., 3)``: half a head radius beyond the head joint, along the neck.

    The standard skeleton has no head-top joint; its head joint (``Neck1``) sits about
    a head radius below the top of the skull, so the sphere is moved up the neck's line.
    A zero-length neck (never in real data) falls back on straight up.
    """
    d = pos[..., _HEAD, :] - pos[..., _NECK, :]
    n = np.linalg.norm(d, axis=-1, keepdims=True)
    up = np.array([0.0, 1.0, 0.0])
    d = np.where(n > 1e-6, d / np.maximum(n, 1e-12), up)
    return pos[..., _HEAD, :] + 0.5 * head_radius * d


def figure_facing_deg(clips: Sequence[np.ndarray]) -> float:
    """The figure's mean facing, in degrees from +Z towards +X, over all frames of all clips.

    Facing is the horizontal normal of the left-right axis of hips and shoulders. When
    the facings over the clips do not agree (the resultant is under half their mean
    length, e.g. a figure turning round) the datasets' convention, +Z (0), is used.
    """
    left = np.concatenate([(c[:, _LHIP] - c[:, _RHIP]) + (c[:, _LSHO] - c[:, _RSHO]) for c in clips])
    f = np.stack([-left[:, 2], left[:, 0]], axis=1)  # (x, z) of cross(left, up)
    n = np.linalg.norm(f, axis=1)
    m = f.mean(0)
    if n.mean() < 1e-9 or np.linalg.norm(m) < 0.5 * n.mean():
        return 0.0
    return float(math.degrees(math.atan2(m[0], m[1])))


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking at ``target`` from ``distance`` along (azimuth, elevation).

    Image coordinates: ``u`` right, ``v`` down, in pixels, pixel centres at ``+0.5``.
    ``azimuth_deg`` is the camera's direction from the target (from +Z towards +X), the
    figure's facing plus the configured angle. ``floor_y`` is the ground plane's height;
    ``ground_center`` ``(x, z)`` and ``ground_radius`` place the ground disc. Serialise with :meth:`to_dict` /
    :meth:`from_dict` (plain JSON types, exact round trip).
    """

    width: int
    height: int
    target: tuple[float, float, float]
    azimuth_deg: float
    elevation_deg: float
    distance: float
    focal_px: float
    principal: tuple[float, float]
    floor_y: float
    ground_center: tuple[float, float]
    ground_radius: float
    facing_deg: float
    """The figure's front (degrees from +Z towards +X); the ground grid is aligned with it."""

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def fit(cls, motions: Sequence[Any], config: RenderConfig | None = None) -> "Camera":
        """The camera framing every frame of every motion in ``motions`` (the variants of one item).

        Each motion is ``(T, 25, 3)`` metres or a :class:`Motion` (T may differ between them). The framing
        fits the union of all joints, the drawn heads and the shadows on the floor, with
        ``config.margin`` free on each side. The floor is the lowest joint over all
        variants and frames minus a bone radius (for upright motions, the lowest foot
        point: the shadow then touches the soles), shared by all variants.
        """
        config = config or RenderConfig()
        if isinstance(motions, np.ndarray) and motions.ndim == 3:
            motions = [motions]
        if not isinstance(motions, (list, tuple)) or not motions:
            raise RenderError("Camera.fit: expected a non-empty list of (T, 25, 3) motions")
        clips = [
            check_clip(m.positions if isinstance(m, Motion) else m, name=f"Camera.fit: motion {i}").astype(np.float64)
            for i, m in enumerate(motions)
        ]
        pts = np.concatenate([c.reshape(-1, 3) for c in clips])
        heads = np.concatenate([head_centres(c, config.head_radius) for c in clips])
        floor_y = float(pts[:, 1].min()) - config.bone_radius
        facing = figure_facing_deg(clips) if config.face_front else 0.0
        # The ground disc: around the horizontal extent of all joints, in the figure's frame
        # (so that the picture does not depend on which way the data's figure faces).
        left, front = ground_axes(facing)
        ab = np.stack([pts[:, [0, 2]] @ left, pts[:, [0, 2]] @ front], axis=1)
        c_ab = (ab.min(0) + ab.max(0)) / 2
        g_centre = c_ab[0] * left + c_ab[1] * front
        g_radius = float(np.linalg.norm(ab - c_ab, axis=1).max()) + config.ground_pad

        shadow = pts.copy()
        shadow[:, 1] = floor_y
        r = config.head_radius
        azimuth = config.azimuth_deg + facing
        azimuth = (azimuth + 180.0) % 360.0 - 180.0
        az, el = math.radians(azimuth), math.radians(config.elevation_deg)
        right, up, fwd = _axes(az, el)
        head_pts = np.concatenate([heads + s * r * a for a in (right, up) for s in (-1, 1)])
        allp = np.concatenate([pts, shadow, head_pts])
        target = (allp.min(0) + allp.max(0)) / 2

        # Distance for the nominal field of view (closed form), then the focal length and
        # principal point that put the projected bounding box exactly inside the margins.
        q = allp - target
        x, y, z = q @ right, q @ up, q @ fwd
        t = math.tan(math.radians(config.fov_deg) / 2)
        dist = float(max((np.abs(x) / t - z).max(), (np.abs(y) / t - z).max(), (-z).max() + 0.5, 0.5))
        depth = dist + z
        xn, yn = x / depth, y / depth
        bw = max(float(xn.max() - xn.min()), 1e-6)
        bh = max(float(yn.max() - yn.min()), 1e-6)
        W, H = config.width, config.height
        f = min(W * (1 - 2 * config.margin) / bw, H * (1 - 2 * config.margin) / bh)
        cx = W / 2 - f * float(xn.max() + xn.min()) / 2
        cy = H / 2 + f * float(yn.max() + yn.min()) / 2
        return cls(
            width=W,
            height=H,
            target=tuple(float(v) for v in target),
            azimuth_deg=float(azimuth),
            elevation_deg=float(config.elevation_deg),
            distance=dist,
            focal_px=float(f),
            principal=(float(cx), float(cy)),
            floor_y=floor_y,
            ground_center=(float(g_centre[0]), float(g_centre[1])),
            ground_radius=g_radius,
            facing_deg=float(facing),
        )

    # ---- geometry -----------------------------------------------------------------------
    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World directions of the image's right, up and the viewing direction."""
        return _axes(math.radians(self.azimuth_deg), math.radians(self.elevation_deg))

    @property
    def position(self) -> np.ndarray:
        _, _, fwd = self.axes
        return np.asarray(self.target) - self.distance * fwd

    def to_camera(self, pts: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` to camera coordinates ``(..., 3)``: right, up, depth."""
        right, up, fwd = self.axes
        R = np.stack([right, up, fwd])  # rows
        return (np.asarray(pts, dtype=np.float64) - self.position) @ R.T

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points ``(..., 3)`` -> pixel coordinates ``(..., 2)`` and depth ``(...)``."""
        c = self.to_camera(pts)
        depth = c[..., 2]
        inv = self.focal_px / np.maximum(depth, 1e-6)
        uv = np.stack([self.principal[0] + c[..., 0] * inv, self.principal[1] - c[..., 1] * inv], axis=-1)
        return uv, depth

    def check_size(self, width: int, height: int) -> None:
        if (width, height) != (self.width, self.height):
            raise RenderError(
                f"camera was fitted for {self.width}x{self.height} frames but the config asks for "
                f"{width}x{height}; fit the camera with the same config"
            )

    # ---- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": _CAMERA_VERSION,
            "width": self.width,
            "height": self.height,
            "target": list(self.target),
            "azimuth_deg": self.azimuth_deg,
            "elevation_deg": self.elevation_deg,
            "distance": self.distance,
            "focal_px": self.focal_px,
            "principal": list(self.principal),
            "floor_y": self.floor_y,
            "ground_center": list(self.ground_center),
            "ground_radius": self.ground_radius,
            "facing_deg": self.facing_deg,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Camera":
        """The inverse of :meth:`to_dict`; a missing, extra or malformed field raises ``RenderError``."""
        if not isinstance(d, Mapping):
            raise RenderError(f"camera: expected a mapping, got {type(d).__name__}")
        want = set(cls.__dataclass_fields__) | {"version"}
        missing, extra = sorted(want - set(d)), sorted(set(d) - want)
        if missing or extra:
            what = f"missing field {missing[0]!r}" if missing else f"unknown field {extra[0]!r}"
            raise RenderError(f"camera: {what}; expected fields {', '.join(sorted(want))}")
        if d["version"] != _CAMERA_VERSION:
            raise RenderError(f"camera: version {d['version']!r} not supported (expected {_CAMERA_VERSION})")

        def num(name: str, v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise RenderError(f"camera: field {name!r} must be a finite number, got {v!r}")
            return float(v)

        def vec(name: str, n: int) -> tuple[float, ...]:
            v = d[name]
            if not isinstance(v, (list, tuple)) or len(v) != n:
                raise RenderError(f"camera: field {name!r} must be a list of {n} numbers, got {v!r}")
            return tuple(num(name, x) for x in v)

        size = []
        for name in ("width", "height"):
            v = d[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < 16 or v % 2:
                raise RenderError(f"camera: field {name!r} must be an even integer >= 16, got {v!r}")
            size.append(v)
        cam = cls(
            width=size[0],
            height=size[1],
            target=vec("target", 3),  # type: ignore[arg-type]
            azimuth_deg=num("azimuth_deg", d["azimuth_deg"]),
            elevation_deg=num("elevation_deg", d["elevation_deg"]),
            distance=num("distance", d["distance"]),
            focal_px=num("focal_px", d["focal_px"]),
            principal=vec("principal", 2),  # type: ignore[arg-type]
            floor_y=num("floor_y", d["floor_y"]),
            ground_center=vec("ground_center", 2),  # type: ignore[arg-type]
            ground_radius=num("ground_radius", d["ground_radius"]),
            facing_deg=num("facing_deg", d["facing_deg"]),
        )
        if cam.distance <= 0 or cam.focal_px <= 0 or cam.ground_radius <= 0:
            raise RenderError("camera: distance, focal_px and ground_radius must be > 0")
        return cam


def ground_axes(facing_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal ``(x, z)`` unit vectors of the figure's left and front."""
    phi = math.radians(facing_deg)
    return np.array([math.cos(phi), -math.sin(phi)]), np.array([math.sin(phi), math.cos(phi)])


def _axes(az: float, el: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Direction from the target to the camera: azimuth from +Z towards +X, elevation up.
    back = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    fwd = -back
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return right, up, fwd
