"""Rotation helpers for forward kinematics (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["axis_rotation", "euler_to_matrix"]


def axis_rotation(axis: str, angle_rad: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` about ``axis`` ('x', 'y' or 'z') by ``angle_rad``."""
    a = np.asarray(angle_rad, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    axis = axis.lower()
    if axis == "x":
        rows = ((one, zero, zero), (zero, c, -s), (zero, s, c))
    elif axis == "y":
        rows = ((c, zero, s), (zero, one, zero), (-s, zero, c))
    elif axis == "z":
        rows = ((c, -s, zero), (s, c, zero), (zero, zero, one))
    else:
        raise ValueError(f"rotation axis must be x, y or z, got {axis!r}")
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Compose per-axis rotations: ``order="ZYX"`` gives ``Rz(a[...,0]) @ Ry(a[...,1]) @ Rx(a[...,2])``.

    ``angles_deg`` is ``(..., len(order))`` in degrees, one angle per letter of ``order``,
    in the same order; the result ``(..., 3, 3)`` maps child-frame vectors to the parent
    frame (column vectors). Letters may repeat or be fewer than three.
    """
    angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    if angles.shape[-1] != len(order):
        raise ValueError(f"{len(order)} rotation axes {order!r} but {angles.shape[-1]} angles")
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for k, ax in enumerate(order):
        out = out @ axis_rotation(ax, angles[..., k])
    return out
