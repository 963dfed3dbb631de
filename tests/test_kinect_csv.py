"""Kinect v2 CSV loader: the 4 real LabanotationSuite gestures and hand-made bad files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from attack_gen.data.kinect_csv import gesture_from_filename
from attack_gen.data.kinect_csv import load_kinect_csv
from attack_gen.data.kinect_csv import read_kinect_csv
from stimuli.errors import DataError
from stimuli.skeleton import STANDARD

GESTURES = {
    "Ges01_wavehand.csv": ("wavehand", "wave hand", 154),
    "Ges02_balancinghands.csv": ("balancinghands", "balancing hands", 161),
    "Ges03_drawlines.csv": ("drawlines", "draw lines", 213),
    "Ges04_comehere.csv": ("comehere", "come here", 172),
}


@pytest.mark.parametrize("name", sorted(GESTURES))
def test_real_files(shared_data, name):
    path = shared_data / "kinect_v2_gestures" / name
    gesture, label, n_lines = GESTURES[name]
    raw = read_kinect_csv(path)
    assert raw.timestamps.shape == (n_lines,) and raw.positions.shape == (n_lines, 25, 3)

    m = load_kinect_csv(path)
    dropped = m.meta["dropped_frames"]
    assert 0 <= dropped <= 10
    assert m.positions.shape == (n_lines + dropped, 25, 3) and m.positions.dtype == np.float32
    assert np.isfinite(m.positions).all()
    assert 25 <= m.fps <= 35
    assert abs(m.fps - 30.0) < 0.1  # Kinect v2 runs at 30 Hz
    assert abs(m.meta["fps_median_interval"] - 30.3) < 0.1  # the median interval (33.0 ms) overstates it
    assert m.meta["format"] == "kinect_csv" and m.meta["subject"] is None
    assert m.meta["gesture"] == gesture and m.meta["label"] == label
    assert m.meta["untracked_fraction"] == 0.0 and 0 < m.meta["inferred_fraction"] < 0.01

    p = m.positions
    bl = STANDARD.bone_lengths(p)
    bones = {c: k for k, (c, _) in enumerate(STANDARD.bones)}
    for upper_arm in (16, 21):  # elbow <- shoulder
        assert 0.2 < np.median(bl[:, bones[upper_arm]]) < 0.4
    for shin in (3, 8):  # ankle <- knee
        assert 0.25 < np.median(bl[:, bones[shin]]) < 0.5
    # upright: head above the ankles, about a person's height
    assert (p[:, 14, 1] > p[:, 3, 1]).all() and (p[:, 14, 1] > p[:, 8, 1]).all()
    assert 1.2 < np.median(p[:, 14, 1] - p[:, [3, 8], 1].mean(axis=1)) < 1.9
    # facing +Z (towards where the sensor was), left side on +X: a proper rotation
    left = (p[:, 15] - p[:, 20]) + (p[:, 1] - p[:, 6])
    assert np.median(left[:, 0]) > 0.3
    toes = (p[:, 4] - p[:, 3]) + (p[:, 9] - p[:, 8])
    assert np.median(toes[:, 2]) > 0
    assert np.median(p[:, 10, 2]) < -1.0  # the person stood 1+ m in front of the sensor (now -Z)


def test_fill_dropped_off(shared_data):
    path = shared_data / "kinect_v2_gestures" / "Ges01_wavehand.csv"
    m = load_kinect_csv(path, fill_dropped=False)
    assert m.num_frames == 154 and m.meta["frames_filled"] == 0 and m.meta["dropped_frames"] == 2


def test_gesture_from_filename():
    assert gesture_from_filename("a/Ges01_wavehand.csv") == "wavehand"
    assert gesture_from_filename("walk.csv") == "walk"
    assert gesture_from_filename("my_walk.csv") == "my_walk"


def frame_line(t: int, pose: np.ndarray, state: int = 2, trailing: bool = True) -> str:
    vals = [str(t)]
    for x, y, z in pose:
        vals += [f"{x:.6g}", f"{y:.6g}", f"{z:.6g}", str(state)]
    return ",".join(vals) + ("," if trailing else "")


def make_csv(tmp_path: Path, n: int = 10, interval: int = 333_333) -> tuple[Path, list[str]]:
    rng = np.random.default_rng(0)
    lines = [frame_line(1_000_000 + k * interval, rng.normal(0, 0.3, (25, 3)) + (0, 0, 2.5)) for k in range(n)]
    path = tmp_path / "Ges09_test.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


def test_synthetic_fps_gap_fill_and_transform(tmp_path):
    path, lines = make_csv(tmp_path, n=10)
    # drop frame 5: one 2x interval
    del lines[5]
    path.write_text("\n".join(lines) + "\n")
    raw = read_kinect_csv(path)
    m = load_kinect_csv(path)
    assert abs(m.fps - 30.0) < 1e-3
    assert m.meta["dropped_frames"] == 1 and m.num_frames == 10
    assert m.meta["gesture"] == "test" and m.meta["label"] is None
    # filled frame 5 is the average of its neighbours; joint HandLeft (7) -> standard 18, (-x, y, -z)
    mid = 0.5 * (raw.positions[4] + raw.positions[5])
    np.testing.assert_allclose(m.positions[5, 18], mid[7] * (-1, 1, -1), atol=1e-6)
    np.testing.assert_allclose(m.positions[0, 18], raw.positions[0, 7] * (-1, 1, -1), atol=1e-6)
    np.testing.assert_allclose(m.positions[6, 14], raw.positions[5, 3] * (-1, 1, -1), atol=1e-6)


def test_no_trailing_comma_and_untracked(tmp_path):
    pose = np.zeros((25, 3)) + (0.1, 0.2, 2.0)
    lines = [frame_line(k * 333_333, pose, state=0 if k == 0 else 2, trailing=False) for k in range(4)]
    path = tmp_path / "plain.csv"
    path.write_text("\n".join(lines))
    m = load_kinect_csv(path)
    assert m.num_frames == 4 and m.meta["untracked_fraction"] == pytest.approx(0.25)


def _bad(lines: list[str], k: int, new: str) -> list[str]:
    out = list(lines)
    out[k] = new
    return out


@pytest.mark.parametrize(
    "edit, line, expected",
    [
        (lambda ls: _bad(ls, 3, ls[3] + "1.0,"), 4, r"expected 102 comma-separated fields.*got 103"),
        (lambda ls: _bad(ls, 2, ls[2].rsplit(",", 3)[0] + ","), 3, r"expected 102 comma-separated fields"),
        (
            lambda ls: _bad(ls, 4, ls[4].replace(",2,", ",abc,", 1)),
            5,
            r"field \d+: expected a finite number, got 'abc'",
        ),
        (lambda ls: _bad(ls, 1, "x" + ls[1]), 2, r"field 1: expected a finite number"),
        (lambda ls: _bad(ls, 6, ls[6].replace(",2,", ",nan,", 1)), 7, r"finite number, got 'nan'"),
        (lambda ls: _bad(ls, 4, ls[3]), 5, r"not after the previous frame's.*strictly increasing"),
        (lambda ls: _bad(ls, 5, "1.5e6" + ls[5][ls[5].index(",") :]), 6, r"field 1: expected an integer timestamp"),
        (lambda ls: _bad(ls, 2, ls[2][:-2] + "7,"), 3, r"tracking state 0, 1 or 2 for joint ThumbRight, got 7"),
    ],
)
def test_bad_files(tmp_path, edit, line, expected):
    path, lines = make_csv(tmp_path)
    path.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(DataError) as err:
        load_kinect_csv(path)
    msg = str(err.value)
    assert str(path) in msg and f"line {line}" in msg, msg
    assert re.search(expected, msg), msg
    assert "\n" not in msg


def test_empty_single_and_missing(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match=r"empty.csv: line 1: file has no frames"):
        load_kinect_csv(empty)
    path, lines = make_csv(tmp_path, n=1)
    with pytest.raises(DataError, match=r"line 1: only one frame"):
        load_kinect_csv(path)
    with pytest.raises(DataError, match="not found"):
        load_kinect_csv(tmp_path / "missing.csv")
