"""Preprocessing: resampling, windows, facing, root-centring, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from attack_gen.data.preprocess import Canonical
from attack_gen.data.preprocess import PreprocessConfig
from attack_gen.data.preprocess import canonical_windows
from attack_gen.data.preprocess import canonicalise
from attack_gen.data.preprocess import center_root
from attack_gen.data.preprocess import face_forward
from attack_gen.data.preprocess import facing_angle
from attack_gen.data.preprocess import normalisation_stats
from attack_gen.data.preprocess import preprocess_motion
from attack_gen.data.preprocess import resample
from attack_gen.data.preprocess import windows
from stimuli.errors import DataError
from stimuli.errors import MotionFormatError
from stimuli.skeleton import STANDARD


def _ramp(t: int) -> np.ndarray:
    """Frame k has every coordinate equal to k (easy to check by hand)."""
    return np.broadcast_to(np.arange(t, dtype=np.float32)[:, None, None], (t, 25, 3)).copy()


def test_resample_integer_ratio_picks_exact_frames() -> None:
    x = _ramp(13)  # frames 0..12 at 120 Hz
    y = resample(x, 120, 30)  # every 4th frame: 0, 4, 8, 12
    assert y.shape == (4, 25, 3)
    np.testing.assert_array_equal(y[:, 0, 0], [0, 4, 8, 12])


def test_resample_fractional_ratio_interpolates_linearly() -> None:
    x = _ramp(4)  # times 0, 1/30, 2/30, 3/30 s
    y = resample(x, 30, 45)  # output times k/45 s -> input frames 0, 2/3, 4/3, 2, 8/3
    np.testing.assert_allclose(y[:, 3, 1], [0, 2 / 3, 4 / 3, 2, 8 / 3], rtol=1e-6)


def test_resample_upsampling_doubles_frames() -> None:
    y = resample(_ramp(3), 30, 60)
    np.testing.assert_allclose(y[:, 0, 0], [0, 0.5, 1, 1.5, 2])


def test_windows_stride_and_tail() -> None:
    w, starts, pad = windows(_ramp(25), length=10, stride=7)
    # starts 0, 7, 14 then the tail-aligned 15
    assert starts.tolist() == [0, 7, 14, 15]
    assert pad == 0
    assert w.shape == (4, 10, 25, 3)
    np.testing.assert_array_equal(w[3, :, 0, 0], np.arange(15, 25))


def test_windows_short_clip_padded_with_last_pose() -> None:
    w, starts, pad = windows(_ramp(4), length=6, stride=2)
    assert w.shape == (1, 6, 25, 3) and pad == 2 and starts.tolist() == [0]
    np.testing.assert_array_equal(w[0, :, 5, 2], [0, 1, 2, 3, 3, 3])


def _pose_facing(heading_deg: float) -> np.ndarray:
    """A T-pose-like frame whose facing direction has the given heading (from +Z towards +X)."""
    pose = np.zeros((25, 3), np.float32)
    h = np.deg2rad(heading_deg)
    left = np.array([np.cos(h), 0.0, -np.sin(h)])  # left = +X rotated by the heading
    for li, ri, y in ((1, 6, 0.9), (15, 20, 1.4)):
        pose[li] = left * 0.2 + [0, y, 0]
        pose[ri] = -left * 0.2 + [0, y, 0]
    pose[14] = [0, 1.7, 0]
    return pose


@pytest.mark.parametrize("heading", [0.0, 90.0, -135.0, 180.0])
def test_facing_angle_undoes_heading(heading: float) -> None:
    assert np.isclose(np.rad2deg(facing_angle(_pose_facing(heading))) % 360, (-heading) % 360, atol=1e-4)


def test_face_forward_puts_left_on_plus_x() -> None:
    clip = np.stack([_pose_facing(90.0)] * 3)
    out = face_forward(clip)
    # left hip (1) ends up at +X, right hip (6) at -X; heights unchanged
    assert out[0, 1, 0] > 0.19 and out[0, 6, 0] < -0.19
    np.testing.assert_allclose(out[..., 1], clip[..., 1], atol=1e-6)
    # rotation preserves bone lengths
    np.testing.assert_allclose(STANDARD.bone_lengths(out), STANDARD.bone_lengths(clip), atol=1e-6)


def test_center_root_modes() -> None:
    x = np.random.default_rng(0).normal(size=(5, 25, 3)).astype(np.float32)
    per_frame = center_root(x, "frame")
    np.testing.assert_allclose(per_frame[:, STANDARD.root], 0, atol=1e-7)
    first = center_root(x, "first")
    np.testing.assert_allclose(first[0, STANDARD.root], 0, atol=1e-7)
    np.testing.assert_allclose(first[1:] - first[:-1], x[1:] - x[:-1], atol=1e-6)  # trajectory kept
    with pytest.raises(ValueError, match="center must be one of"):
        center_root(x, "bogus")


def test_preprocess_motion_pipeline() -> None:
    x = np.random.default_rng(1).normal(size=(241, 25, 3)).astype(np.float32)
    x[:, STANDARD.root] += [1.0, 0.0, 2.0]
    cfg = PreprocessConfig(fps=30, window=20, stride=10)
    wins, traj, starts, padded = preprocess_motion(x, 120, cfg)
    # 241 frames at 120 Hz -> 61 frames at 30 Hz -> starts 0, 10, ..., 40 and the tail 41
    assert starts.tolist() == [0, 10, 20, 30, 40, 41]
    assert wins.shape == (6, 20, 25, 3) and traj.shape == (6, 20, 3) and padded == 0
    np.testing.assert_allclose(wins[:, :, STANDARD.root], 0, atol=1e-6)


def _walker(frames: int = 31, fps: float = 30.0) -> np.ndarray:
    """A rigid figure facing +X, its root 0.9 m high, walking along +X at 1.5 m/s from (2, 0.9, -1)."""
    pose = _pose_facing(90.0)
    pose[[0, 5, 10]] = [0.0, 0.9, 0.0]  # the hips' joints at the root, as in real data
    pose[[12, 13]] = [0.0, 1.3, 0.0]
    t = np.arange(frames, dtype=np.float32)[:, None, None] / fps
    return pose[None] + np.array([2.0, 0.0, -1.0], np.float32) + t * np.array([1.5, 0.0, 0.0], np.float32)


def test_trajectory_keeps_the_walk_that_centring_removes() -> None:
    spec = Canonical("frame", True, ((10, 0, 5), (12, 13)))
    walk = _walker()
    canon, traj = canonical_windows(walk[None], spec)
    # facing +X, rotated to face +Z: the walk goes along +Z, 1.5 m/s x 1 s, starting above the origin
    expected = np.stack([np.zeros(31), np.full(31, 0.9), 1.5 * np.arange(31) / 30], axis=1)
    np.testing.assert_allclose(traj[0], expected, atol=1e-5)
    np.testing.assert_allclose(canon[0, :, STANDARD.root], 0.0, atol=1e-6)
    # the body is the same in every frame (rigid translation only), and faces +Z (left on +X)
    np.testing.assert_allclose(canon[0], np.broadcast_to(canon[0, :1], canon[0].shape), atol=1e-5)
    assert canon[0, 0, 1, 0] > 0.19
    # canonical + trajectory = the faced window, started above the origin
    np.testing.assert_allclose(canon[0] + traj[0][:, None], face_forward(walk) - [2.0, 0.0, -1.0], atol=1e-5)


@pytest.mark.parametrize("center", ["frame", "first", "none"])
def test_canonical_plus_trajectory_is_the_faced_window_for_every_centring(center: str) -> None:
    walk = _walker()
    canon, traj = canonical_windows(walk[None], Canonical(center, True))
    np.testing.assert_allclose(canon[0] + traj[0][:, None], face_forward(walk) - [2.0, 0.0, -1.0], atol=1e-5)
    np.testing.assert_allclose(canonicalise(walk, Canonical(center, True)), canon[0], atol=1e-6)


def test_canonicalise_ties_coincident_joints_and_is_idempotent() -> None:
    rng = np.random.default_rng(3)
    w = _walker() + rng.normal(0, 0.01, (31, 25, 3)).astype(np.float32)
    spec = Canonical("frame", True, ((10, 0, 5), (12, 13)))
    c = canonicalise(w, spec)
    np.testing.assert_array_equal(c[:, 0], c[:, 10])
    np.testing.assert_array_equal(c[:, 5], c[:, 10])
    np.testing.assert_array_equal(c[:, 13], c[:, 12])
    np.testing.assert_allclose(canonicalise(c, spec), c, atol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"center": "middle", "face_forward": True, "coincident": []}, "center must be one of"),
        ({"center": "frame", "face_forward": 1, "coincident": []}, "face_forward must be true or false"),
        ({"center": "frame", "face_forward": True, "coincident": [[10]]}, "groups of two or more"),
        ({"center": "frame", "face_forward": True, "coincident": [[10, 0], [0, 5]]}, "overlap"),
        ({"center": "frame", "face_forward": True, "coincident": [[10, 25]]}, "joint indices 0..24"),
        ({"center": "frame", "face_forward": True}, "expected center, face_forward and coincident"),
    ],
)
def test_canonical_spec_errors_are_one_line(bad: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Canonical.from_json(bad)


def test_canonical_spec_round_trips() -> None:
    spec = Canonical("first", False, ((10, 0, 5), (17, 19)))
    assert Canonical.from_json(spec.to_json()) == spec


def test_normalisation_stats_by_hand() -> None:
    m = np.zeros((2, 1, 25, 3), np.float32)
    m[0] = 1.0
    m[1] = 3.0
    mean, std = normalisation_stats(m)
    np.testing.assert_allclose(mean, 2.0)
    assert std == pytest.approx(1.0)  # every coordinate deviates by exactly 1


def test_bad_motion_shapes_raise_clear_errors() -> None:
    with pytest.raises(MotionFormatError, match=r"expected shape \(T, V, C\) with V=25"):
        resample(np.zeros((10, 24, 3), np.float32), 30, 15)
    bad = np.zeros((10, 25, 3), np.float32)
    bad[3, 7, 1] = np.nan
    with pytest.raises(MotionFormatError, match="NaN or Inf .*T=3, V=7, C=1"):
        windows(bad, 5, 1)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        PreprocessConfig(stride=0)
