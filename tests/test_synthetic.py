"""The embedded synthetic dataset: layout, plausibility, determinism and learnability.

Properties are checked on the output positions with independent measurements (bone
lengths from the skeleton, the body's facing from its feet, stride frequency from zero
crossings, a nearest-centroid classifier on simple statistics), not against the
generator's own intermediate values.
"""

from __future__ import annotations

import numpy as np
import pytest

from attack_gen.data.synthetic import ACTIONS
from attack_gen.data.synthetic import generate_dataset
from attack_gen.data.synthetic import generate_motion
from stimuli.motion import Motion
from stimuli.skeleton import STANDARD

SEEDS = (0, 1, 2)
ROOT, HEAD = STANDARD.root, STANDARD.index("Neck1")
ANKLES = [STANDARD.index("LeftFoot"), STANDARD.index("RightFoot")]
TOES = [STANDARD.index("LeftToeBase"), STANDARD.index("RightToeBase")]
FOOT_JOINTS = ANKLES + TOES
ZERO_BONES = {(0, 10), (5, 10), (13, 12)}  # (child, parent) pairs that sit on each other
JUMPING = {"jog", "jumping_jack"}


@pytest.fixture(scope="module")
def clips() -> dict[tuple[str, int], Motion]:
    return {(a, s): generate_motion(a, seed=s) for a in ACTIONS for s in SEEDS}


def _forward(p: np.ndarray) -> np.ndarray:
    """The body's own facing: the horizontal heel-to-toe direction, both feet, whole clip."""
    v = (p[:, TOES] - p[:, ANKLES]).sum((0, 1))
    v = np.array([v[0], 0.0, v[2]])
    return v / np.linalg.norm(v)


def test_actions_are_a_fixed_list_of_names():
    assert len(ACTIONS) >= 8
    assert len(set(ACTIONS)) == len(ACTIONS)
    assert all(isinstance(a, str) and a.isidentifier() and a.islower() for a in ACTIONS)


@pytest.mark.parametrize("action", ACTIONS)
def test_clip_layout_and_meta(action, clips):
    m = clips[action, 0]
    assert isinstance(m, Motion)
    assert m.positions.shape == (90, 25, 3)
    assert m.positions.dtype == np.float32
    assert np.isfinite(m.positions).all()
    assert m.fps == 30.0
    assert m.meta["source"] == "synthetic" and m.meta["format"] == "synthetic"
    assert m.meta["action"] == action
    assert m.meta["subject"] is None and m.meta["seed"] == 0
    for key in ("scale", "tempo", "amplitude", "phase_rad", "facing_deg"):
        assert np.isfinite(m.meta["params"][key])


@pytest.mark.parametrize("action", ACTIONS)
def test_bone_lengths_constant_and_standard_quirks(action, clips):
    for seed in SEEDS:
        p = clips[action, seed].positions.astype(np.float64)
        lengths = STANDARD.bone_lengths(p)  # (T, bones)
        for k, bone in enumerate(STANDARD.bones):
            if bone in ZERO_BONES:
                assert np.all(lengths[:, k] == 0.0), bone
            else:
                mean = lengths[:, k].mean()
                assert 0.02 < mean < 0.6, (bone, mean)
                assert np.abs(lengths[:, k] - mean).max() / mean < 1e-5, (action, seed, bone)
        # joints 0 and 5 at the root, 13 at 12 (exactly); the thumbs at the wrists, as in real data
        assert np.array_equal(p[:, 0], p[:, ROOT]) and np.array_equal(p[:, 5], p[:, ROOT])
        assert np.array_equal(p[:, 13], p[:, 12])
        np.testing.assert_allclose(p[:, 19], p[:, 17], atol=1e-5)
        np.testing.assert_allclose(p[:, 24], p[:, 22], atol=1e-5)


@pytest.mark.parametrize("action", ACTIONS)
def test_upright_on_the_ground_adult_sized(action, clips):
    for seed in SEEDS:
        p = clips[action, seed].positions.astype(np.float64)
        head, ankle_y = p[:, HEAD, 1], p[:, ANKLES, 1]
        assert np.all(head > ankle_y.max(1) + 0.15), (action, seed)  # even at a kick's top
        assert np.all(head > ankle_y.min(1) + 0.5), (action, seed)  # even at the bottom of a squat
        assert np.all(head > p[:, ROOT, 1]), (action, seed)  # the trunk never hangs down
        assert 1.0 < head.max() < 1.75  # this skeleton's top joint (a 1.5-2 m person)
        feet = p[:, FOOT_JOINTS, 1]
        assert feet.min() >= 0.0 and feet.min() < 0.05  # standing on y = 0, not sinking
        lowest = feet.min(1)
        assert lowest.max() < (0.25 if action in JUMPING else 0.1), (action, seed)  # no floating


@pytest.mark.parametrize("action", ACTIONS)
def test_faces_plus_z_with_left_joints_on_the_left(action, clips):
    for seed in SEEDS:
        p = clips[action, seed].positions.astype(np.float64)
        fwd = _forward(p)
        assert fwd[2] > np.cos(np.deg2rad(25.0)), (action, seed, fwd)  # +Z, up to the jitter
        left = np.cross([0.0, 1.0, 0.0], fwd)  # Y up, facing +Z: the person's left is +X
        assert left[0] > 0.9
        for lj, rj in STANDARD.left_right:
            assert STANDARD.joint_names[lj].startswith("L") and STANDARD.joint_names[rj].startswith("R")
            assert (p[0, lj] - p[0, rj]) @ left > 0.01, (action, seed, STANDARD.joint_names[lj])


@pytest.mark.parametrize("action", ACTIONS)
def test_motion_is_smooth_not_jittery(action, clips):
    # per-frame jitter makes the second difference larger than the first (white noise:
    # about 1.7x); smooth motion at 30 fps keeps it well below
    for seed in SEEDS:
        p = clips[action, seed].positions.astype(np.float64)
        rel = p - p[:, ROOT : ROOT + 1]
        ratio = np.abs(np.diff(rel, 2, axis=0)).mean() / np.abs(np.diff(rel, axis=0)).mean()
        assert ratio < 1.0, (action, seed, ratio)


@pytest.mark.parametrize("action, min_speed", [("walk", 0.5), ("jog", 1.5)])
def test_locomotion_travels_on_planted_feet(action, min_speed, clips):
    for seed in SEEDS:
        m = clips[action, seed]
        p = m.positions.astype(np.float64)
        travel = p[-1, ROOT, [0, 2]] - p[0, ROOT, [0, 2]]
        speed = np.linalg.norm(travel) * m.fps / (m.num_frames - 1)
        assert speed > min_speed
        assert travel @ _forward(p)[[0, 2]] > 0.9 * np.linalg.norm(travel)  # forwards
        # the lowest foot joint (the supporting foot) hardly moves while the body travels
        feet = p[:, FOOT_JOINTS]
        low = feet[:-1, :, 1].argmin(1)
        step = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=0), axis=-1)[np.arange(len(low)), low] * m.fps
        assert np.median(step) < min(0.15, 0.15 * speed), (action, seed, np.median(step), speed)


def test_frame_rate_changes_sampling_not_motion():
    for action in ACTIONS:
        a = generate_motion(action, seed=4, fps=30.0, num_frames=45).positions
        b = generate_motion(action, seed=4, fps=60.0, num_frames=90).positions[::2]
        np.testing.assert_allclose(a - a[:, ROOT : ROOT + 1], b - b[:, ROOT : ROOT + 1], atol=1e-5)
        np.testing.assert_allclose(a[:, ROOT, 1], b[:, ROOT, 1], atol=1e-5)


def test_same_seed_same_clip_other_seed_other_clip():
    for action in ACTIONS:
        a = generate_motion(action, seed=7).positions
        assert np.array_equal(a, generate_motion(action, seed=7).positions)
        assert np.array_equal(a, generate_motion(action, seed=np.random.default_rng(7)).positions)
        assert np.abs(a - generate_motion(action, seed=8).positions).max() > 0.01
    m = generate_motion("walk", seed=np.random.default_rng(7), num_frames=12, fps=24.0, subject="s03")
    assert m.meta["seed"] is None and m.meta["subject"] == "s03"
    assert m.positions.shape == (12, 25, 3) and m.fps == 24.0


def test_dataset_deterministic_ordered_and_stable_under_growth():
    ds = generate_dataset(3, seed=5, num_frames=20, subjects=4)
    again = generate_dataset(3, seed=5, num_frames=20, subjects=4)
    other = generate_dataset(3, seed=6, num_frames=20, subjects=4)
    smaller = generate_dataset(2, seed=5, num_frames=20, subjects=4)
    assert [label for _, label in ds] == [a for a in ACTIONS for _ in range(3)]
    assert all(m.meta["action"] == label for m, label in ds)
    assert {m.meta["subject"] for m, _ in ds} == {"s01", "s02", "s03", "s04"}
    for (m, _), (n, _) in zip(ds, again):
        assert np.array_equal(m.positions, n.positions) and m.meta == n.meta
    assert all(np.abs(m.positions - n.positions).max() > 0.01 for (m, _), (n, _) in zip(ds, other))
    kept = [x for k, x in enumerate(ds) if k % 3 < 2]  # the first two of every class
    for (m, _), (n, _) in zip(kept, smaller):
        assert np.array_equal(m.positions, n.positions)


def _body_size(m: Motion) -> np.ndarray:
    return STANDARD.bone_lengths(m.positions.astype(np.float64)).mean(0)


def test_subjects_keep_their_body_and_differ_from_each_other():
    ds = generate_dataset(8, seed=0, num_frames=10, subjects=4)
    by_subject: dict[str, list[np.ndarray]] = {}
    for m, _ in ds:
        by_subject.setdefault(m.meta["subject"], []).append(_body_size(m))
    assert len(by_subject) == 4
    for sizes in by_subject.values():  # same bones in every clip of a subject, whatever the action
        np.testing.assert_allclose(sizes, np.broadcast_to(sizes[0], np.shape(sizes)), rtol=1e-4, atol=1e-6)
    firsts = [s[0] for s in by_subject.values()]
    for i in range(len(firsts)):
        for j in range(i):
            assert np.abs(firsts[i] - firsts[j]).max() > 0.003


def test_samples_of_a_class_vary_in_size_tempo_and_facing():
    clips = [generate_motion("walk", seed=s, num_frames=300) for s in range(12)]
    leg = np.array([_body_size(m)[[1, 2]].sum() for m in clips])  # thigh + shin
    assert leg.max() / leg.min() > 1.1
    freqs, angles = [], []
    for m in clips:
        p = m.positions.astype(np.float64)
        fwd = _forward(p)
        gap = (p[:, ANKLES[0]] - p[:, ANKLES[1]]) @ fwd  # left ankle ahead of the right: > 0
        up = np.flatnonzero((gap[:-1] < 0) & (gap[1:] >= 0))
        assert len(up) >= 3
        freq = (len(up) - 1) / ((up[-1] - up[0]) / m.fps)  # strides per second, measured
        assert freq == pytest.approx(m.meta["params"]["frequency_hz"], rel=0.05)
        freqs.append(freq)
        angles.append(np.degrees(np.arctan2(fwd[0], fwd[2])))
    assert max(freqs) / min(freqs) > 1.15
    assert np.std(angles) > 3.0


def _features(m: Motion) -> np.ndarray:
    p = m.positions.astype(np.float64)
    rel = p - p[:, ROOT : ROOT + 1]
    root_step = np.linalg.norm(np.diff(p[:, ROOT, [0, 2]], axis=0), axis=-1).mean() * m.fps
    return np.concatenate(
        [
            np.sqrt(rel[..., [0, 2]].var(0).sum(-1)),  # horizontal spread of every joint
            rel[..., 1].std(0),  # vertical spread
            rel[..., 1].mean(0),  # mean height relative to the root
            [p[:, ROOT, 1].std(), root_step],
        ]
    )


def test_actions_separable_by_a_nearest_centroid_classifier():
    ds = generate_dataset(16, seed=0, subjects=8)
    x = np.array([_features(m) for m, _ in ds])
    y = np.array([ACTIONS.index(label) for _, label in ds])
    test = np.isin([m.meta["subject"] for m, _ in ds], ["s07", "s08"])  # unseen people
    mu, sd = x[~test].mean(0), x[~test].std(0) + 1e-9
    z = (x - mu) / sd
    centroids = np.array([z[~test & (y == c)].mean(0) for c in range(len(ACTIONS))])

    def predict(zz):
        return np.argmin(((zz[:, None] - centroids[None]) ** 2).sum(-1), 1)

    assert test.sum() >= 3 * len(ACTIONS)
    assert (predict(z[test]) == y[test]).mean() >= 0.9
    fresh = generate_dataset(6, seed=1, subjects=8)  # new seeds, new subjects mix
    zf = (np.array([_features(m) for m, _ in fresh]) - mu) / sd
    yf = np.array([ACTIONS.index(label) for _, label in fresh])
    assert (predict(zf) == yf).mean() >= 0.9


def test_unknown_action_and_bad_arguments():
    with pytest.raises(KeyError) as err:
        generate_motion("moonwalk", seed=0)
    assert "moonwalk" in str(err.value)
    assert all(a in str(err.value) for a in ACTIONS)
    with pytest.raises(ValueError, match="num_frames"):
        generate_motion("walk", seed=0, num_frames=0)
    with pytest.raises(ValueError, match="fps"):
        generate_motion("walk", seed=0, fps=0.0)
    with pytest.raises(TypeError, match="seed"):
        generate_motion("walk", seed=1.5)
    with pytest.raises(ValueError, match="samples_per_class"):
        generate_dataset(0)
    with pytest.raises(ValueError, match="subjects"):
        generate_dataset(2, subjects=0)


def test_default_dataset_has_every_class_and_subject():
    ds = generate_dataset(20, seed=0, num_frames=90)
    assert len(ds) == 20 * len(ACTIONS)
    assert {label for _, label in ds} == set(ACTIONS)
    assert {m.meta["subject"] for m, _ in ds} == {f"s{k:02d}" for k in range(1, 9)}
