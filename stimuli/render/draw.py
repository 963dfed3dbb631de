"""Drawing one frame: a static background (gradient, ground disc, grid) and the figure.

The figure is drawn with Skia (``skia-python``): anti-aliased round-capped strokes,
painted far to near so the nearer limbs cover the farther ones. The frame lives in one
``(H, W, 4)`` RGBA array that Skia draws into and ffmpeg reads from without a copy.
"""

from __future__ import annotations

import functools
from typing import Iterator

import numpy as np

try:
    import skia
except ImportError as e:  # pragma: no cover - a missing dependency
    raise ImportError(f"stimuli.render needs the skia-python package (pip install skia-python): {e}") from e

from ..skeleton import STANDARD
from .camera import Camera
from .camera import ground_axes
from .camera import head_centres
from .config import RenderConfig
from .config import RenderError

__all__ = ["FigureRenderer", "background", "BONE_SIDES"]


def _bone_sides() -> tuple[tuple[int, int, int], ...]:
    """``(child, parent, side)`` for every bone; side 0 trunk, 1 the figure's left, 2 its right.

    A bone takes its side's colour when both its joints are limb joints of that side;
    the joints attached straight to the root (``LHipJoint``, ``RHipJoint``, at the
    root's position) count as trunk, so the pelvis and the shoulder girdle are trunk.
    """
    root = STANDARD.root
    sides = []
    for side, names in ((1, ("left_leg", "left_arm")), (2, ("right_leg", "right_arm"))):
        joints = {j for n in names for j in STANDARD.parts[n] if STANDARD.parents[j] != root}
        sides.append((side, joints))
    out = []
    for c, p in STANDARD.bones:
        s = next((side for side, joints in sides if c in joints and p in joints), 0)
        out.append((c, p, s))
    return tuple(out)


BONE_SIDES = _bone_sides()
_MIN_BONE_PX = 0.5  # shorter projected bones (the zero-length ones) are not stroked


def _rgb(c: tuple[int, int, int], alpha: int = 255) -> int:
    return skia.Color(int(c[0]), int(c[1]), int(c[2]), alpha)


@functools.lru_cache(maxsize=16)
def background(camera: Camera, config: RenderConfig) -> np.ndarray:
    """The static part of every frame, ``(H, W, 4)`` RGBA uint8 (read-only, cached).

    A vertical gradient, and the ground plane at ``camera.floor_y`` seen through the
    camera: a disc around the motion's footprint with a soft edge and a faint grid
    (``grid_spacing`` metres), anti-aliased by the grid's footprint per pixel.
    """
    W, H = config.width, config.height
    top, bottom = np.array(config.background_top, float), np.array(config.background_bottom, float)
    a = (np.arange(H, dtype=float) + 0.5)[:, None, None] / H
    img = np.broadcast_to(top + (bottom - top) * a, (H, W, 3)).copy()

    # Cast a ray through every pixel centre onto the floor plane.
    right, up, fwd = camera.axes
    u = (np.arange(W) + 0.5 - camera.principal[0]) / camera.focal_px
    v = (camera.principal[1] - (np.arange(H) + 0.5)) / camera.focal_px
    d = fwd + u[None, :, None] * right + v[:, None, None] * up  # (H, W, 3)
    pos = camera.position
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (camera.floor_y - pos[1]) / d[..., 1]
    hit = np.isfinite(t) & (t > 0)
    t = np.where(hit, t, 0.0)
    gx = pos[0] + t * d[..., 0]
    gz = pos[2] + t * d[..., 2]
    r = np.hypot(gx - camera.ground_center[0], gz - camera.ground_center[1]) / camera.ground_radius
    disc = np.clip((1.0 - r) / 0.35, 0.0, 1.0)
    disc = disc * disc * (3 - 2 * disc) * hit
    # Grid lines: coverage from the distance to the nearest line over its per-pixel footprint.
    grid = np.zeros((H, W))
    left, front = ground_axes(camera.facing_deg)
    for g in (gx * left[0] + gz * left[1], gx * front[0] + gz * front[1]):
        s = g / config.grid_spacing
        fw = np.abs(np.gradient(s, axis=0)) + np.abs(np.gradient(s, axis=1)) + 1e-9
        dist = np.abs(s - np.round(s)) / fw  # pixels to the nearest line
        cov = np.clip(1.0 - dist, 0.0, 1.0) * np.clip(1.5 - 4.0 * fw, 0.0, 1.0)  # fade where lines crowd
        grid = np.maximum(grid, cov)
    ground = np.array(config.ground_color, float)
    gridc = np.array(config.grid_color, float)
    floor = ground + (gridc - ground) * grid[..., None]
    img = img + (floor - img) * disc[..., None]
    out = np.empty((H, W, 4), np.uint8)
    out[..., :3] = np.clip(np.round(img), 0, 255)
    out[..., 3] = 255
    out.flags.writeable = False
    return out


class FigureRenderer:
    """Draws poses of one motion item with one camera into a reused RGBA buffer."""

    def __init__(self, camera: Camera, config: RenderConfig):
        camera.check_size(config.width, config.height)
        self.camera = camera
        self.config = config
        self.buffer = np.zeros((config.height, config.width, 4), np.uint8)
        self._surface = skia.Surface(self.buffer, colorType=skia.kRGBA_8888_ColorType, alphaType=skia.kPremul_AlphaType)
        self._canvas = self._surface.getCanvas()
        self._background = background(camera, config)
        c = config

        def stroke(color: tuple[int, int, int]) -> skia.Paint:
            return skia.Paint(
                AntiAlias=True, Style=skia.Paint.kStroke_Style, StrokeCap=skia.Paint.kRound_Cap, Color=_rgb(color)
            )

        def fill(color: tuple[int, int, int]) -> skia.Paint:
            return skia.Paint(AntiAlias=True, Style=skia.Paint.kFill_Style, Color=_rgb(color))

        self._outline = stroke(c.outline_color)
        self._bone = [stroke(c.trunk_color), stroke(c.left_color), stroke(c.right_color)]
        self._joint = fill(c.joint_color)
        self._head = fill(c.head_color)
        self._head_rim = skia.Paint(
            AntiAlias=True, Style=skia.Paint.kStroke_Style, Color=_rgb(c.outline_color), StrokeWidth=2 * c.outline_px
        )
        # One path (bones stroked, the head's oval filled and stroked) drawn once, so
        # overlapping parts of the shadow do not darken each other; blurred as a mask.
        self._shadow_paint = skia.Paint(
            AntiAlias=True,
            Style=skia.Paint.kStrokeAndFill_Style,
            StrokeCap=skia.Paint.kRound_Cap,
            StrokeJoin=skia.Paint.kRound_Join,
            Color=_rgb(c.shadow_color, int(round(255 * c.shadow_opacity))),
        )
        if c.shadow_blur_px > 0:
            self._shadow_paint.setMaskFilter(skia.MaskFilter.MakeBlur(skia.kNormal_BlurStyle, c.shadow_blur_px))
        self._bones = [(cj, pj, s) for cj, pj, s in BONE_SIDES]
        self._bone_c = np.array([b[0] for b in self._bones])
        self._bone_p = np.array([b[1] for b in self._bones])
        right, up, fwd = camera.axes
        self._R = np.stack([right, up, fwd]).T  # world -> camera (right, up, depth), as columns
        self._origin = camera.position
        self._sin_el = abs(float(np.sin(np.radians(camera.elevation_deg))))
        # One width for the whole shadow (a single path), fixed per item: at the camera's
        # target distance, so a change to one joint never changes the rest of the shadow.
        self._shadow_paint.setStrokeWidth(2.2 * c.bone_radius * camera.focal_px / camera.distance)

    def _project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points ``(..., 3)`` -> pixels ``(..., 2)`` and depth ``(...)``."""
        c = (pts - self._origin) @ self._R
        depth = np.maximum(c[..., 2], 1e-6)
        s = self.camera.focal_px / depth
        cx, cy = self.camera.principal
        uv = np.stack([cx + c[..., 0] * s, cy - c[..., 1] * s], axis=-1)
        return uv, depth

    def _plan(self, poses: np.ndarray) -> list[tuple]:
        """Everything each frame draws, computed for all frames at once: ``(T, 25, 3)`` -> per frame tuples."""
        c, cam = self.config, self.camera
        f = cam.focal_px
        poses = np.asarray(poses, dtype=np.float64)
        pts = np.concatenate([poses, head_centres(poses, c.head_radius)[:, None]], axis=1)  # (T, 26, 3)
        uv, depth = self._project(pts)
        if depth.min() < 0.05:
            raise RenderError(
                f"a pose comes within {depth.min():.3f} m of the camera or behind it; "
                "fit the camera on every motion it renders (Camera.fit)"
            )
        scale = f / depth
        bc, bp = self._bone_c, self._bone_p
        # Bones far to near (the head is item -1), stable for ties; zero-length bones dropped.
        key = np.concatenate([(depth[:, bc] + depth[:, bp]) * 0.5, depth[:, 25:26]], axis=1)
        order = np.argsort(-key, axis=1, kind="stable")
        seg = np.abs(uv[:, bc] - uv[:, bp]).sum(-1)  # (T, bones)
        width = c.bone_radius * (scale[:, bc] + scale[:, bp])
        head_r = (c.head_radius * scale[:, 25]).tolist()
        if c.shadow_opacity > 0:
            flat = pts.copy()
            flat[..., 1] = cam.floor_y
            suv, sdepth = self._project(flat)
            shr = (c.head_radius * f / sdepth[:, 25]).tolist()
        plans = []
        nb = len(self._bones)
        for k in range(len(poses)):
            items = []
            u, w_, sg, sc = uv[k].tolist(), width[k].tolist(), seg[k].tolist(), scale[k].tolist()
            for i in order[k].tolist():
                if i == nb:
                    items.append((-1, *u[25], head_r[k], 0.0, 0.0, 0.0, 0.0))
                elif sg[i] >= _MIN_BONE_PX:
                    cj, pj, side = self._bones[i]
                    items.append((side, *u[cj], *u[pj], w_[i], c.joint_radius * sc[cj], c.joint_radius * sc[pj]))
            shadow = None
            if c.shadow_opacity > 0:
                su = suv[k].tolist()
                shadow = ([(*su[cj], *su[pj]) for cj, pj, _ in self._bones], (*su[25], shr[k]))
            plans.append((items, shadow))
        return plans

    def draw_many(self, poses: np.ndarray) -> Iterator[np.ndarray]:
        """Draw poses ``(T, 25, 3)`` one after another: the RGBA buffer (reused) per pose.

        The poses are projected and checked now; the frames are drawn as they are taken.
        """
        plans = self._plan(poses)
        return (self._draw(plan) for plan in plans)

    def draw(self, pose: np.ndarray) -> np.ndarray:
        """Draw one pose ``(25, 3)`` (metres); returns the RGBA buffer (overwritten by the next call)."""
        return self._draw(self._plan(np.asarray(pose)[None])[0])

    def _draw(self, plan: tuple) -> np.ndarray:
        c, canvas = self.config, self._canvas
        items, shadow = plan
        np.copyto(self.buffer, self._background)
        if shadow is not None:
            # The figure projected straight down onto the floor: one path, one soft translucent mask.
            segs, (hx, hy, hr) = shadow
            path = skia.Path()
            for x0, y0, x1, y1 in segs:
                path.moveTo(x0, y0)
                path.lineTo(x1, y1)
            hry = hr * max(0.15, self._sin_el * 1.3)
            path.addOval(skia.Rect.MakeLTRB(hx - hr, hy - hry, hx + hr, hy + hry))
            canvas.drawPath(path, self._shadow_paint)
        # The figure, far to near: every bone with its outline and its joint dots; the head.
        ow, o = 2.0 * c.outline_px, c.outline_px
        outline, joint, bone, line, circle = self._outline, self._joint, self._bone, canvas.drawLine, canvas.drawCircle
        dots = c.joint_radius > 0
        for side, x0, y0, x1, y1, w, r0, r1 in items:
            if side < 0:  # the head: x0, y0 its centre, x1 its radius
                circle(x0, y0, x1, self._head)
                circle(x0, y0, x1 - o * 0.5, self._head_rim)
                continue
            outline.setStrokeWidth(w + ow)
            line(x0, y0, x1, y1, outline)
            paint = bone[side]
            paint.setStrokeWidth(w)
            line(x0, y0, x1, y1, paint)
            if dots:
                circle(x0, y0, r0, joint)
                circle(x1, y1, r1, joint)
        return self.buffer
