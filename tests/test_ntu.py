"""NTU RGB+D .skeleton reader: generated files (no real NTU file is available)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from attack_gen.data.ntu import KINECT_CAMERA_TO_OURS
from attack_gen.data.ntu import body_energy
from attack_gen.data.ntu import kinect_camera_to_ours
from attack_gen.data.ntu import load_ntu_skeleton
from attack_gen.data.ntu import parse_ntu_name
from attack_gen.data.ntu import read_ntu_skeleton
from stimuli.errors import DataError
from stimuli.skeleton import KINECT_V2
from stimuli.skeleton import STANDARD

NAME = "S002C003P015R002A027.skeleton"


def kinect_pose(offset=(0.0, 0.0, 2.5), phase: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """A plausible Kinect camera-space pose (25, 3) of a person facing the sensor.

    The person's left is the sensor's right, i.e. -X in Kinect camera space.
    """
    j = {
        "SpineBase": (0.0, -0.35, 0.0),
        "SpineMid": (0.0, -0.05, 0.0),
        "Neck": (0.0, 0.25, 0.0),
        "Head": (0.0, 0.40, 0.0),
        "ShoulderLeft": (-0.18, 0.13, 0.0),
        "ElbowLeft": (-0.24, -0.11, 0.0),
        "WristLeft": (-0.23, -0.32, -0.05),
        "HandLeft": (-0.21, -0.38, -0.06),
        "ShoulderRight": (0.17, 0.13, 0.0),
        "ElbowRight": (0.23, -0.12, 0.0),
        "WristRight": (0.24, -0.33, -0.05),
        "HandRight": (0.24, -0.36, -0.06),
        "HipLeft": (-0.07, -0.37, 0.0),
        "KneeLeft": (-0.08, -0.70, 0.05),
        "AnkleLeft": (-0.06, -1.04, 0.10),
        "FootLeft": (-0.08, -1.10, 0.0),
        "HipRight": (0.09, -0.36, 0.0),
        "KneeRight": (0.10, -0.72, 0.05),
        "AnkleRight": (0.10, -1.05, 0.10),
        "FootRight": (0.11, -1.11, 0.0),
        "SpineShoulder": (0.0, 0.17, 0.0),
        "HandTipLeft": (-0.21, -0.45, -0.07),
        "ThumbLeft": (-0.19, -0.40, -0.08),
        "HandTipRight": (0.24, -0.43, -0.07),
        "ThumbRight": (0.22, -0.40, -0.08),
    }
    p = np.array([j[n] for n in KINECT_V2.joint_names]) * scale
    p[:, 1] += 0.05 * np.sin(phase)
    return p + np.asarray(offset)


def body_lines(body_id: int, pos: np.ndarray) -> list[str]:
    lines = [f"{body_id} 0 1 1 1 1 0 0.1961553 -0.2062037 2", str(len(pos))]
    for x, y, z in pos:
        lines.append(f"{x:.7g} {y:.7g} {z:.7g} 276.5 201.1 1003.2 529.8 0.1 0.2 0.3 0.9 2")
    return lines


def skeleton_text(frames: list[list[tuple[int, np.ndarray]]]) -> str:
    """File text for a list of frames, each a list of (body id, (25, 3) Kinect positions)."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for bid, pos in bodies:
            lines.extend(body_lines(bid, pos))
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str, name: str = NAME) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


ID_A, ID_B = 72057594037931101, 72057594037931102


def two_body_frames(n: int = 30) -> list[list[tuple[int, np.ndarray]]]:
    """Body A moves a lot, present in frames 2..n-3 with a gap at 10..12; body B stands still."""
    frames = []
    for f in range(n):
        bodies = []
        if 2 <= f < n - 2 and not 10 <= f <= 12:
            bodies.append((ID_A, kinect_pose(offset=(0.4 * np.sin(f / 3), 0.0, 2.5), phase=f / 2)))
        if f < n - 5:
            bodies.append((ID_B, kinect_pose(offset=(-1.0, 0.0, 3.2))))
        frames.append(bodies)
    return frames


def test_parse_name():
    assert parse_ntu_name("x/S001C001P001R001A001.skeleton") == {
        "setup": 1,
        "camera": 1,
        "subject": "P001",
        "replication": 1,
        "action": 1,
    }
    assert parse_ntu_name("other.skeleton") == {}


def test_read_all_bodies(tmp_path):
    frames = two_body_frames()
    rec = read_ntu_skeleton(write(tmp_path, skeleton_text(frames)))
    assert rec.num_frames == 30
    assert list(rec.bodies) == [ID_B, ID_A]  # order of first appearance
    assert (rec.setup, rec.camera, rec.subject, rec.replication, rec.action) == (2, 3, "P015", 2, 27)
    assert rec.class_index == 26
    a = rec.bodies[ID_A]
    assert a.positions.shape == (30, 25, 3) and a.positions.dtype == np.float32
    expected_frames = [f for f in range(2, 28) if not 10 <= f <= 12]
    assert a.frames.tolist() == expected_frames
    assert np.isnan(a.positions[[0, 1, 10, 11, 12, 28, 29]]).all()
    np.testing.assert_allclose(a.positions[5], frames[5][0][1], atol=1e-6)
    assert (a.joint_tracking[5] == 2).all() and (a.joint_tracking[0] == -1).all()
    assert rec.body_counts.tolist() == [len(b) for b in frames]


def test_auto_picks_moving_body_and_fills_gaps(tmp_path):
    frames = two_body_frames()
    path = write(tmp_path, skeleton_text(frames))
    rec = read_ntu_skeleton(path)
    assert body_energy(rec.bodies[ID_A]) > body_energy(rec.bodies[ID_B])
    m = load_ntu_skeleton(path)
    assert m.meta["body"] == 1 and m.meta["body_id"] == ID_A
    assert m.num_frames == 26  # frames 2..27
    assert m.meta["first_frame"] == 2 and m.meta["frames_filled"] == 3 and m.meta["frames_trimmed"] == 4
    assert m.fps == 30.0 and np.isfinite(m.positions).all()
    assert m.meta["format"] == "ntu_skeleton" and m.meta["subject"] == "P015"
    assert m.meta["action"] == 27 and m.meta["class_index"] == 26 and m.meta["num_bodies"] == 2
    # interior gap (file frames 10..12 -> motion frames 8..10) is linear between frames 9 and 13
    pa, pb = m.positions[7], m.positions[11]
    for k, f in enumerate((8, 9, 10), start=1):
        np.testing.assert_allclose(m.positions[f], pa + (pb - pa) * k / 4, atol=1e-5)
    # explicit index picks the other body
    mb = load_ntu_skeleton(path, body=0)
    assert mb.meta["body_id"] == ID_B and mb.num_frames == 25 and mb.meta["frames_filled"] == 0


def test_auto_ignores_short_spurious_body(tmp_path):
    # a wildly moving body seen in only 3 of 40 frames must not win over the actor
    frames = []
    for f in range(40):
        bodies = [(ID_A, kinect_pose(phase=f / 4))]
        if f < 3:
            bodies.append((ID_B, kinect_pose(offset=(5.0 * f, 3.0 * f, 4.0), scale=3.0)))
        frames.append(bodies)
    m = load_ntu_skeleton(write(tmp_path, skeleton_text(frames)))
    assert m.meta["body_id"] == ID_A


def test_coordinate_transform_and_joint_mapping(tmp_path):
    pose = kinect_pose()
    hand = KINECT_V2.index("HandLeft")
    pose[hand] = (-0.31, -0.47, 2.13)
    m = load_ntu_skeleton(write(tmp_path, skeleton_text([[(7, pose)]] * 2)))
    # HandLeft lands on STANDARD joint 18 (LeftHandIndex1), rotated 180 deg about Y
    assert STANDARD.index("LeftHandIndex1") == 18
    np.testing.assert_allclose(m.positions[0, 18], (0.31, -0.47, -2.13), atol=1e-6)
    # LThumb (19) sits at the wrist, as in the standard data
    np.testing.assert_allclose(m.positions[0, 19], m.positions[0, 17], atol=1e-7)
    # head <- Head, pelvis <- SpineBase
    np.testing.assert_allclose(m.positions[0, 14], pose[3] * (-1, 1, -1), atol=1e-6)
    np.testing.assert_allclose(m.positions[0, 10], pose[0] * (-1, 1, -1), atol=1e-6)
    # a proper rotation, not a mirror
    assert np.isclose(np.linalg.det(KINECT_CAMERA_TO_OURS), 1.0)
    np.testing.assert_allclose(kinect_camera_to_ours(pose), pose @ KINECT_CAMERA_TO_OURS.T)
    # handedness: the person faced the sensor (-Z in Kinect space) -> now faces +Z with the
    # left shoulder/hip on +X, which is the person's left in a right-handed Y-up frame
    p = m.positions[0]
    left = (p[15] - p[20]) + (p[1] - p[6])
    forward = np.cross(left, (0, 1, 0))  # left x up = forward
    assert forward[2] > 0.9 * np.linalg.norm(forward)
    assert left[0] > 0
    assert p[14, 1] > p[3, 1] and p[14, 1] > p[8, 1]  # head above the ankles


def test_no_body_at_all(tmp_path):
    path = write(tmp_path, skeleton_text([[], [], []]))
    rec = read_ntu_skeleton(path)
    assert rec.num_frames == 3 and rec.bodies == {}
    with pytest.raises(DataError, match=r"no body"):
        load_ntu_skeleton(path)


def test_bad_body_argument(tmp_path):
    path = write(tmp_path, skeleton_text([[(1, kinect_pose())]]))
    with pytest.raises(DataError, match="out of range"):
        load_ntu_skeleton(path, body=3)
    with pytest.raises(DataError, match="'auto'"):
        load_ntu_skeleton(path, body="first")


def _good_lines() -> list[str]:
    return skeleton_text([[(1, kinect_pose())], [(1, kinect_pose()), (2, kinect_pose((1, 0, 3)))]]).splitlines()


# line numbers in _good_lines(): 1 frame count, 2 body count, 3 body line, 4 joint count,
# 5-29 joints, 30 body count of frame 2, 31 body 1, 32 joint count, 33-57 joints, 58 body 2 ...
@pytest.mark.parametrize(
    "edit, line, expected",
    [
        (lambda ls: ls[:40], 41, r"ends early.*joint line of 12 values"),  # truncated mid-body
        (lambda ls: ls[:29], 30, r"ends early.*body count of frame 2"),  # truncated between frames
        (lambda ls: ls[:10] + ["0.1 0.2 abc 1 1 1 1 1 0 0 0 2"] + ls[11:], 11, r"non-numeric 'abc'"),
        (lambda ls: ls[:10] + ["0.1 0.2 0.3 1 1"] + ls[11:], 11, r"12 values.*got 5"),
        (lambda ls: ls[:3] + ["24"] + ls[4:], 4, r"expected 25 joints.*got 24"),
        (lambda ls: ["two"] + ls[1:], 1, r"frame count.*'two'"),
        (lambda ls: ls[:1] + ["-1"] + ls[2:], 2, r"body count of frame 1 of 2 >= 0, got -1"),
        (lambda ls: ls[:2] + ["1 0 1 1 1 1 0 x 0 2"] + ls[3:], 3, r"body line of 10 values"),
        (lambda ls: ls[:2] + ["1 0 1 1"] + ls[3:], 3, r"body line of 10 values.*got 4"),
        (lambda ls: ls + ["1"], len(_good_lines()) + 1, r"after the last of 2 frames"),
        (lambda ls: ls[:10] + ["0.1 nan 0.3 1 1 1 1 1 0 0 0 2"] + ls[11:], 11, r"NaN"),
        (lambda ls: ls[:57] + ["1 0 1 1 1 1 0 0 0 2"] + ls[58:], 58, r"appears twice in frame 2"),
    ],
)
def test_bad_files(tmp_path, edit, line, expected):
    path = write(tmp_path, "\n".join(edit(_good_lines())) + "\n")
    with pytest.raises(DataError) as err:
        read_ntu_skeleton(path)
    msg = str(err.value)
    assert str(path) in msg and f"line {line}:" in msg, msg
    assert re.search(expected, msg), msg
    assert "\n" not in msg


def test_empty_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"line 1: file is empty"):
        read_ntu_skeleton(write(tmp_path, ""))
    with pytest.raises(DataError, match="not found"):
        read_ntu_skeleton(tmp_path / "nope.skeleton")
    (tmp_path / "bin.skeleton").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="not an NTU"):
        read_ntu_skeleton(tmp_path / "bin.skeleton")


def test_windows_line_endings_and_blank_lines(tmp_path):
    text = skeleton_text([[(1, kinect_pose())], [], [(1, kinect_pose())]]).replace("\n", "\r\n") + "\r\n\r\n"
    m = load_ntu_skeleton(write(tmp_path, text))
    assert m.num_frames == 3 and m.meta["frames_filled"] == 1


def test_300_frames_two_bodies_picks_the_moving_one(tmp_path):
    # A moves every frame, B stands still at another place: same presence, A has the motion energy
    frames = [[(ID_A, kinect_pose(phase=f / 5)), (ID_B, kinect_pose((1, 0, 3)))] for f in range(300)]
    path = write(tmp_path, skeleton_text(frames))
    m = load_ntu_skeleton(path)
    still = load_ntu_skeleton(path, body=1)
    assert m.num_frames == 300 and still.num_frames == 300
    assert np.ptp(m.positions, axis=0).max() > 0.01  # it moves
    assert np.ptp(still.positions, axis=0).max() < 1e-5  # the other body does not
