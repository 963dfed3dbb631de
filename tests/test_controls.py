"""Positive controls: clearly perturbed, deterministic, visible; deviation metrics by hand."""

from __future__ import annotations

import numpy as np
import pytest

from attack_gen.data.synthetic import generate_motion
from stimuli.controls import deviation_metrics
from stimuli.controls import make_control
from stimuli.errors import MotionFormatError
from stimuli.skeleton import STANDARD

SMART_TYPICAL_M = 0.01
"""A SMART attack typically moves joints by about 1 cm or less."""
UNTOUCHED = [
    STANDARD.index(n)
    for n in (
        "Hips",
        "Spine",
        "Spine1",
        "Neck",
        "Neck1",
        "LeftArm",
        "RightArm",
        "LeftUpLeg",
        "RightUpLeg",
        "LHipJoint",
        "RHipJoint",
    )
]
HANDS = [STANDARD.index("LeftHand"), STANDARD.index("RightHand")]


@pytest.fixture(scope="module")
def walk() -> np.ndarray:
    return generate_motion("walk", seed=1, fps=30.0, num_frames=60).positions


def test_control_keeps_shape_trunk_and_is_finite(walk: np.ndarray) -> None:
    c = make_control(walk, seed=3)
    assert c.shape == walk.shape and c.dtype == np.float32 and np.isfinite(c).all()
    np.testing.assert_allclose(c[:, UNTOUCHED], walk[:, UNTOUCHED], atol=1e-6)  # the trunk, head, shoulders, hips
    assert not np.allclose(c, walk)


def test_control_is_deterministic_per_seed(walk: np.ndarray) -> None:
    np.testing.assert_array_equal(make_control(walk, seed=7), make_control(walk.copy(), seed=7))
    assert np.abs(make_control(walk, seed=7) - make_control(walk, seed=8)).max() > 0.02


def test_control_displacement_is_far_above_an_attack(walk: np.ndarray) -> None:
    c = make_control(walk, seed=0)
    m = deviation_metrics(walk, c, 30.0)
    assert m["mean_joint_displacement_m"] > 3 * SMART_TYPICAL_M
    hands = np.linalg.norm(c[:, HANDS] - walk[:, HANDS], axis=-1).mean()
    assert hands > 6 * SMART_TYPICAL_M
    # the forearms: +35 % and -25 % (their length changes by several cm)
    bl0, bl1 = STANDARD.bone_lengths(walk), STANDARD.bone_lengths(c)
    children = list(STANDARD.bone_children)
    lf, rf = children.index(STANDARD.index("LeftHand")), children.index(STANDARD.index("RightHand"))
    assert (bl1[:, lf] / bl0[:, lf]).mean() > 1.15 and (bl1[:, rf] / bl0[:, rf]).mean() < 0.9
    # strength scales it
    half = deviation_metrics(walk, make_control(walk, seed=0, strength=0.5), 30.0)["mean_joint_displacement_m"]
    assert 0.35 < half / m["mean_joint_displacement_m"] < 0.65


def test_control_on_real_hdm05_clips(shared_data) -> None:
    from attack_gen.data.smart_npz import load_smart_npz

    clips = load_smart_npz(shared_data / "hdm05_smart_subset").positions_m[::11]
    disp = [
        deviation_metrics(x, make_control(x, seed=i), 30.0)["mean_joint_displacement_m"] for i, x in enumerate(clips)
    ]
    assert min(disp) > 3 * SMART_TYPICAL_M, disp
    assert 0.03 < float(np.mean(disp)) < 0.06


def test_control_is_visible_when_rendered(walk: np.ndarray) -> None:
    from stimuli.render import Camera
    from stimuli.render import RenderConfig
    from stimuli.render import render_frames

    cfg = RenderConfig(width=128, height=128, fps=10.0, duration=1.0)
    clip = walk[::3]  # 10 fps
    cam = Camera.fit([clip], cfg)
    frames = lambda m: np.stack(list(render_frames(m, cam, cfg, motion_fps=10.0))).astype(int)  # noqa: E731
    base = frames(clip)
    # an attack-sized perturbation: 5 mm smooth drift on every joint
    rng = np.random.default_rng(0)
    small = clip + (0.005 * np.sin(np.arange(len(clip)) / 3.0)[:, None, None] * rng.standard_normal((1, 25, 3)))
    changed = lambda x: float((np.abs(x - base).max(-1) > 40).mean())  # noqa: E731
    ctl, att = changed(frames(make_control(clip, seed=0, fps=10.0))), changed(frames(small.astype(np.float32)))
    assert ctl > 0.02, ctl  # > 2 % of all pixels change strongly (the figure covers ~10-15 %)
    assert ctl > 3 * att, (ctl, att)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"seed": 1.5}, "seed must be an integer >= 0"),
        ({"seed": 0, "strength": 0}, r"strength must be a number in \(0, 2.5\]"),
        ({"seed": 0, "fps": float("nan")}, "fps must be a finite number > 0"),
    ],
)
def test_control_rejects_bad_arguments(walk: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(MotionFormatError, match=match):
        make_control(walk, **kwargs)


def test_control_rejects_bad_motion(walk: np.ndarray) -> None:
    bad = walk.copy()
    bad[2, 4, 1] = np.nan
    with pytest.raises(MotionFormatError, match="NaN or Inf"):
        make_control(bad, seed=0)
    with pytest.raises(MotionFormatError, match=r"expected shape \(T, V, C\)"):
        make_control(walk[:, :20], seed=0)


def test_deviation_metrics_by_hand() -> None:
    T, fps = 6, 10.0
    q = np.zeros((T, 25, 3), np.float32)
    q[:, :, 1] = np.arange(25, dtype=np.float32)[None, :] * 0.1  # distinct joints: non-zero bones
    # a rigid shift by (3, 4, 0) cm: displacement 5 cm, bones and acceleration unchanged
    m = deviation_metrics(q, q + np.array([0.03, 0.04, 0.0], np.float32), fps)
    assert m["mean_joint_displacement_m"] == pytest.approx(0.05, abs=1e-7)
    assert m["bone_length_deviation_m"] == pytest.approx(0.0, abs=1e-7)
    assert m["acceleration_deviation"] == pytest.approx(0.0, abs=1e-4)
    # constant acceleration a = 2 m/s^2 along x on every joint: x(t) = a t^2 / 2
    t = np.arange(T) / fps
    shifted = q.copy()
    shifted[:, :, 0] += (0.5 * 2.0 * t**2)[:, None].astype(np.float32)
    assert deviation_metrics(q, shifted, fps)["acceleration_deviation"] == pytest.approx(2.0, rel=1e-4)
    # one joint (a leaf, the head) moved up 1 m: its one bone grows by 1 m out of 24 bones
    head = q.copy()
    head[:, STANDARD.index("Neck1"), 1] += 1.0
    m = deviation_metrics(q, head, fps)
    assert m["mean_joint_displacement_m"] == pytest.approx(1.0 / 25, rel=1e-6)
    assert m["bone_length_deviation_m"] == pytest.approx(1.0 / len(STANDARD.bones), rel=1e-5)
