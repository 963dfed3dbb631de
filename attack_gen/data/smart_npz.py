"""SMART/BEAT pre-processed HDM05 clips (``adClassTrain.npz`` + ``preprocess_core.npz``), numpy only.

Files (see ``shared/data/README.md``, section ``hdm05_smart_subset``):

* clips file (``adClassTrain.npz``): ``clips`` float ``(N, T, 75)`` normalised, 25 joints x xyz
  flattened ``x0, y0, z0, x1, ...``; ``classes`` integer ``(N,)``, 0-based class indices.
* core file (``preprocess_core.npz``): ``Xmean`` and ``Xstd``, ``(1, 75, 1)``. ``Xstd`` is one
  global scalar repeated 75 times (4.7353 for HDM05).
* class list (``hdm05_classes.txt``): one class name a line (65 for HDM05).

Normalisation per coordinate: ``x_n = (x - mean) / std``; :func:`unnormalise` inverts it.

What the un-normalised data look like (checked on the 219 clips of the shared subset):

* joint layout is already :data:`stimuli.skeleton.STANDARD`: joint 10 (root) is exactly at the
  origin in every frame; every bone length is constant within a clip (to < 1e-5 relative);
  the mean bone lengths, in child order 0..24, are 0, 2.40, 7.16, 7.49, 2.37, 0, 2.37, 7.43,
  7.51, 2.41, 0, 2.04, 2.05, 0, 1.76, 3.58, 4.98, 3.48, 0.72, 0.72, 3.45, 5.24, 3.44, 0.62, 0.62;
* units are HDM05 ASF length units (``:units length 0.45``: 1 unit = 1/0.45 inch =
  0.0254 / 0.45 m = 0.056444 m), so e.g. the femur is 7.16 x 0.0564 = 0.40 m;
* +Y is up (the head is above the root, the feet about 12 units = 0.7 m below it);
* the body faces +Z (the BEAT pre-processing removes the heading): the toes point +Z and the
  joints 0-4 / 15-19 (STANDARD's left leg / left arm) are on the +X side, which is the
  person's left in a right-handed, Y-up frame facing +Z. The median heading over all frames
  is 0 degrees; about 90 % of frames are within +-20 degrees, 96 % within +-30 (cartwheels
  reach +-170).
* STANDARD joint 19 (LThumb) coincides with joint 17 (LeftHand) and 24 with 22: the "thumb"
  bones (19-18, 24-23) have the length of the hand bones (18-17, 23-22).
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stimuli.errors import DataError
from stimuli.errors import MotionFormatError
from stimuli.motion import Motion
from stimuli.skeleton import NUM_JOINTS
from stimuli.skeleton import STANDARD

from .limits import MAX_POSITION_M

__all__ = [
    "SmartNpzData",
    "load_smart_npz",
    "normalise",
    "unnormalise",
    "describe_layout",
    "HDM05_UNIT_TO_M",
    "CLIPS_FILE",
    "CORE_FILE",
    "CLASSES_FILE",
    "SMART_ATTACK_FPS",
]

HDM05_UNIT_TO_M = 0.0254 / 0.45
"""One HDM05 ASF length unit in metres (``:units length 0.45`` -> 1/0.45 inch) = 0.056444 m."""

CLIPS_FILE = "adClassTrain.npz"
CORE_FILE = "preprocess_core.npz"
CLASSES_FILE = "hdm05_classes.txt"

SMART_ATTACK_FPS = 30.0
"""The frame rate the SMART attack code assumes (``deltaT = 1/30``); the clips' true rate is undocumented."""

_DOF = NUM_JOINTS * 3  # 75


def _check_xyz(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim < 2 or arr.shape[-2:] != (NUM_JOINTS, 3):
        raise MotionFormatError(f"{name}: expected shape (..., {NUM_JOINTS}, 3), got {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


def _stats(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mean, dtype=np.float64)
    if m.size != _DOF:
        raise MotionFormatError(f"mean: expected {_DOF} values (25 joints x xyz), got shape {tuple(m.shape)}")
    s = np.asarray(std, dtype=np.float64)
    if s.size not in (1, _DOF):
        raise MotionFormatError(f"std: expected a scalar or {_DOF} values, got shape {tuple(s.shape)}")
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise MotionFormatError("std: expected finite values > 0")
    return m.reshape(NUM_JOINTS, 3), (s.reshape(()) if s.size == 1 else s.reshape(NUM_JOINTS, 3))


def normalise(x_physical: Any, mean: Any, std: Any) -> np.ndarray:
    """``(x - mean) / std`` per coordinate on ``(..., 25, 3)`` arrays (SMART's normalised space).

    ``mean`` is ``(25, 3)`` (or anything with 75 values in ``x0, y0, z0, x1, ...`` order);
    ``std`` a scalar or 75 values. Computed in float64, returned in the input's float dtype.
    """
    x = _check_xyz(x_physical, "x_physical")
    m, s = _stats(mean, std)
    return ((x.astype(np.float64) - m) / s).astype(x.dtype, copy=False)


def unnormalise(x_normalised: Any, mean: Any, std: Any) -> np.ndarray:
    """``x_n * std + mean`` per coordinate: the inverse of :func:`normalise`."""
    x = _check_xyz(x_normalised, "x_normalised")
    m, s = _stats(mean, std)
    return (x.astype(np.float64) * s + m).astype(x.dtype, copy=False)


@dataclass
class SmartNpzData:
    """Clips of a SMART/BEAT npz, un-normalised, with labels and normalisation statistics."""

    clips: np.ndarray
    """``(N, T, 25, 3)`` float32 positions in the file's units (HDM05 ASF length units), STANDARD joints."""
    labels: np.ndarray
    """``(N,)`` int64 0-based indices into ``class_names``."""
    class_names: tuple[str, ...]
    mean: np.ndarray
    """``(25, 3)`` float32, ``Xmean`` (file units)."""
    std: float
    """The global scalar ``Xstd`` (file units)."""
    unit_to_m: float = HDM05_UNIT_TO_M
    clips_path: Path | None = None
    core_path: Path | None = None
    classes_path: Path | None = None

    @property
    def num_clips(self) -> int:
        return int(self.clips.shape[0])

    @property
    def positions_m(self) -> np.ndarray:
        """``clips`` in metres, ``(N, T, 25, 3)`` float32."""
        return (self.clips * np.float32(self.unit_to_m)).astype(np.float32)

    @property
    def normalised(self) -> np.ndarray:
        """``clips`` in SMART's normalised space (what the classifiers and the attack see)."""
        return normalise(self.clips, self.mean, self.std)

    def label_names(self) -> list[str]:
        return [self.class_names[i] for i in self.labels]

    def motion(self, i: int, fps: float = SMART_ATTACK_FPS) -> Motion:
        """Clip ``i`` as a :class:`Motion` in metres (Y up, facing +Z, root at the origin).

        ``fps`` defaults to 30, the rate the SMART attack assumes; the clips' real rate is
        not documented by the source (``meta["fps_assumed"]`` says so).
        """
        if not -self.num_clips <= i < self.num_clips:
            raise DataError(f"{self.clips_path}: clip index {i} out of range 0..{self.num_clips - 1}")
        label = int(self.labels[i])
        return Motion(
            positions=self.clips[i] * np.float32(self.unit_to_m),
            fps=fps,
            meta={
                "source": f"{self.clips_path}#{i % self.num_clips}",
                "format": "smart_npz",
                "subject": None,
                "class_index": label,
                "class_name": self.class_names[label],
                "fps_assumed": True,
            },
        )


def _load_npz(path: Path, what: str, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path}: {what} is a single .npy array; expected an .npz archive with fields {', '.join(fields)}"
            )
        with z:
            missing = [f for f in fields if f not in z.files]
            if missing:
                raise DataError(
                    f"{path}: {what} has no field {missing[0]!r}; expected fields {', '.join(fields)} "
                    f"(found: {', '.join(z.files) or 'none'})"
                )
            return {f: np.asarray(z[f]) for f in fields}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, zlib.error) as e:
        raise DataError(f"{path}: cannot read {what} as a NumPy .npz file ({type(e).__name__}: {e})") from None


def _read_classes(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise DataError(f"{path}: class list not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read class list ({e})") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DataError(f"{path}: class list is empty; expected one class name a line")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DataError(f"{path}: class list names {sorted(dup)[0]!r} twice; expected distinct names")
    return names


def load_smart_npz(
    path: str | Path,
    *,
    core: str | Path | None = None,
    classes: str | Path | None = None,
) -> SmartNpzData:
    """Load SMART/BEAT pre-processed clips, un-normalised.

    ``path`` is the clips ``.npz`` or the folder holding ``adClassTrain.npz``. ``core``
    (``preprocess_core.npz``) and ``classes`` (``hdm05_classes.txt``) default to those names
    beside the clips file. Every problem (missing file or field, wrong shape or dtype,
    non-finite values, ``Xstd`` not one constant, labels not matching the clips or outside
    the class list) raises :class:`DataError` naming the file and field.
    """
    path = Path(path)
    clips_path = path / CLIPS_FILE if path.is_dir() else path
    folder = clips_path.parent
    core_path = Path(core) if core is not None else folder / CORE_FILE
    classes_path = Path(classes) if classes is not None else folder / CLASSES_FILE

    z = _load_npz(clips_path, "clips file", ("clips", "classes"))
    cz = _load_npz(core_path, "normalisation file", ("Xmean", "Xstd"))
    class_names = _read_classes(classes_path)

    clips = z["clips"]
    if clips.ndim != 3 or clips.shape[-1] != _DOF or clips.shape[0] == 0 or clips.shape[1] == 0:
        raise DataError(
            f"{clips_path}: field 'clips' has shape {tuple(clips.shape)}; expected (N, T, {_DOF}) "
            f"with N, T > 0 (25 joints x xyz per frame)"
        )
    if not np.issubdtype(clips.dtype, np.floating):
        raise DataError(f"{clips_path}: field 'clips' has dtype {clips.dtype}; expected floats")
    if not np.isfinite(clips).all():
        n, t, k = (int(v) for v in np.argwhere(~np.isfinite(clips))[0])
        raise DataError(
            f"{clips_path}: field 'clips' has a NaN/Inf at clip {n}, frame {t}, value {k}; expected finite values"
        )

    labels = z["classes"]
    if labels.ndim != 1 or labels.shape[0] != clips.shape[0]:
        raise DataError(
            f"{clips_path}: field 'classes' has shape {tuple(labels.shape)}; expected ({clips.shape[0]},), "
            f"one label per clip of 'clips'"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{clips_path}: field 'classes' has dtype {labels.dtype}; expected integer class indices")
    bad = (labels < 0) | (labels >= len(class_names))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{clips_path}: field 'classes'[{i}] = {int(labels[i])} is outside 0..{len(class_names) - 1} "
            f"(the {len(class_names)} classes of {classes_path})"
        )

    xmean, xstd = cz["Xmean"], cz["Xstd"]
    for name, arr in (("Xmean", xmean), ("Xstd", xstd)):
        if arr.size != _DOF or not np.issubdtype(arr.dtype, np.floating):
            raise DataError(
                f"{core_path}: field {name!r} has shape {tuple(arr.shape)} dtype {arr.dtype}; "
                f"expected {_DOF} floats, shape (1, {_DOF}, 1)"
            )
        if not np.isfinite(arr).all():
            raise DataError(f"{core_path}: field {name!r} has NaN/Inf values; expected finite values")
    std_values = xstd.astype(np.float64).ravel()
    lo, hi = float(std_values.min()), float(std_values.max())
    if hi - lo > 1e-6 * max(abs(hi), abs(lo)):
        raise DataError(
            f"{core_path}: field 'Xstd' is not one constant (ranges {lo:.6g} .. {hi:.6g}); "
            f"expected the single global scalar the SMART pre-processing uses"
        )
    if lo <= 0:
        raise DataError(f"{core_path}: field 'Xstd' is {lo:.6g}; expected a positive scale")
    std = float(np.float32(std_values[0]))
    mean = xmean.astype(np.float32).reshape(NUM_JOINTS, 3)

    # un-normalise in the file's float32 arithmetic, as the authors' code does (x * std + mean)
    x = clips.astype(np.float32, copy=False).reshape(clips.shape[0], clips.shape[1], NUM_JOINTS, 3)
    with np.errstate(over="ignore", invalid="ignore"):
        phys = (x * np.float32(std) + mean).astype(np.float32)
    unit = HDM05_UNIT_TO_M
    far = ~(np.abs(phys.astype(np.float64) * unit) <= MAX_POSITION_M).all(axis=(2, 3))
    if far.any():
        n, t = (int(v) for v in np.argwhere(far)[0])
        raise DataError(
            f"{clips_path}: clip {n}, frame {t}: un-normalised with {core_path.name} (Xstd {std:g}), a joint "
            f"lies beyond {MAX_POSITION_M:g} m or is not finite; expected the file's own normalisation"
        )

    return SmartNpzData(
        clips=phys,
        labels=labels.astype(np.int64),
        class_names=class_names,
        mean=mean,
        std=std,
        clips_path=clips_path,
        core_path=core_path,
        classes_path=classes_path,
    )


def describe_layout(clips: np.ndarray) -> dict[str, Any]:
    """Facts about un-normalised STANDARD clips ``(N, T, 25, 3)``: root, bones, up and facing.

    Returns ``root_max_abs`` (largest |coordinate| of joint 10), ``bone_rel_variation``
    (largest (max - min) / mean of a bone's length within a clip, over bones longer than 1e-3
    of the longest), ``mean_bone_lengths`` (24 bones in child order, root excluded),
    ``up_axis`` (the axis along which head minus feet is largest, signed, e.g. ``"+y"``),
    ``facing_yaw_deg`` (per-frame heading about Y, 0 = facing +Z, from the left-right
    hip/shoulder vector; positive towards +X) and ``left_side`` (the signed axis of the mean
    left-minus-right hip/shoulder vector).
    """
    c = np.asarray(clips, dtype=np.float64)
    bl = STANDARD.bone_lengths(c)  # (N, T, 24)
    mean_bl = bl.mean(axis=(0, 1))
    real = mean_bl > 1e-3 * mean_bl.max()
    span = bl.max(axis=1) - bl.min(axis=1)
    rel = span[:, real] / np.maximum(bl.mean(axis=1)[:, real], 1e-12)
    head_minus_feet = (c[..., 14, :] - 0.5 * (c[..., 3, :] + c[..., 8, :])).mean(axis=(0, 1))
    ax = int(np.argmax(np.abs(head_minus_feet)))
    across = (c[..., 1, :] - c[..., 6, :]) + (c[..., 15, :] - c[..., 20, :])
    fwd = np.cross(across, np.array([0.0, 1.0, 0.0]))  # left x up = forward (right-handed)
    yaw = np.degrees(np.arctan2(fwd[..., 0], fwd[..., 2]))
    mean_across = across.mean(axis=(0, 1))
    lax = int(np.argmax(np.abs(mean_across)))
    return {
        "root_max_abs": float(np.abs(c[..., STANDARD.root, :]).max()),
        "bone_rel_variation": float(rel.max()) if rel.size else 0.0,
        "mean_bone_lengths": mean_bl,
        "up_axis": ("+" if head_minus_feet[ax] > 0 else "-") + "xyz"[ax],
        "facing_yaw_deg": yaw,
        "left_side": ("+" if mean_across[lax] > 0 else "-") + "xyz"[lax],
    }
