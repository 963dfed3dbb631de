"""The skeleton topology module and the canonical motion layout."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from stimuli.errors import MotionFormatError
from stimuli.motion import Motion
from stimuli.motion import check_motion
from stimuli.skeleton import KINECT_TO_STANDARD
from stimuli.skeleton import KINECT_V2
from stimuli.skeleton import STANDARD
from stimuli.skeleton import Skeleton
from stimuli.skeleton import get_skeleton
from stimuli.skeleton import kinect_to_standard


def test_standard_skeleton_matches_the_authors_parent_array() -> None:
    # CDataset.parents of the SMART code, with the root (10) marked -1 here
    authors = [10, 0, 1, 2, 3, 10, 5, 6, 7, 8, 10, 10, 11, 12, 13, 13, 15, 16, 17, 18, 13, 20, 21, 22, 23]
    assert [10 if p == -1 else p for p in STANDARD.parents] == authors
    assert STANDARD.root == 10 and STANDARD.num_joints == 25
    assert len(STANDARD.bones) == 24
    assert STANDARD.spine == (10, 11, 12, 13, 14)
    parts = STANDARD.parts
    assert sorted(j for p in parts.values() for j in p) == list(range(25))  # a partition
    assert STANDARD.index("Neck1") == 14


def test_topological_order_puts_parents_first() -> None:
    order = STANDARD.topological_order()
    pos = {j: i for i, j in enumerate(order)}
    assert all(pos[p] < pos[c] for c, p in STANDARD.bones)


def test_bone_lengths_by_hand() -> None:
    pose = np.zeros((25, 3))
    pose[11] = [0, 3, 4]  # Spine 5 above the root
    lengths = dict(zip(STANDARD.bones, STANDARD.bone_lengths(pose)))
    assert lengths[(11, 10)] == pytest.approx(5.0)
    assert lengths[(12, 11)] == pytest.approx(5.0)  # Spine1 at the origin, 5 from Spine
    assert lengths[(1, 0)] == 0.0


def test_kinect_mapping_takes_the_documented_joints() -> None:
    kin = np.zeros((2, 25, 3))
    for j in range(25):
        kin[:, j] = j  # joint j's coordinates all equal j
    std = kinect_to_standard(kin)
    assert std.shape == (2, 25, 3)
    name_of = {i: n for i, n in enumerate(KINECT_V2.joint_names)}
    expect = {
        "Hips": "SpineBase",
        "Spine": "SpineMid",
        "Spine1": "SpineShoulder",
        "Neck": "SpineShoulder",
        "Neck1": "Head",
        "LeftUpLeg": "HipLeft",
        "LeftFoot": "AnkleLeft",
        "RightToeBase": "FootRight",
        "LeftArm": "ShoulderLeft",
        "RightHand": "WristRight",
        "LeftHandIndex1": "HandLeft",
        "RThumb": "WristRight",  # the standard data put the thumb joint at the wrist
    }
    for std_name, kin_name in expect.items():
        assert name_of[int(std[0, STANDARD.index(std_name), 0])] == kin_name
    # the spine of the mapped skeleton is Kinect's spine, never arm joints
    assert {name_of[KINECT_TO_STANDARD[j]] for j in STANDARD.spine} <= set(
        KINECT_V2.joint_names[j] for j in KINECT_V2.spine
    )
    with pytest.raises(ValueError, match=r"\(\.\.\., 25, 3\)"):
        kinect_to_standard(np.zeros((4, 20, 3)))


def test_skeleton_validation_and_lookup_errors() -> None:
    with pytest.raises(ValueError, match="exactly one root"):
        Skeleton("bad", ("a", "b"), (-1, -1), spine=(0,))
    with pytest.raises(ValueError, match="cycle"):
        Skeleton("bad", ("a", "b", "c"), (-1, 2, 1), spine=(0,))
    with pytest.raises(KeyError, match="known: standard, kinect_v2"):
        get_skeleton("ntu")
    with pytest.raises(KeyError, match="no joint 'Head'.*LHipJoint"):
        STANDARD.index("Head")


def test_check_motion_layout() -> None:
    ok = check_motion(np.zeros((2, 60, 25, 3), np.float64))
    assert ok.dtype == np.float32
    with pytest.raises(MotionFormatError, match=r"\(N, T, V, C\)"):
        check_motion(np.zeros((60, 25, 3)))
    with pytest.raises(MotionFormatError, match="float array"):
        check_motion(np.zeros((1, 60, 25, 3), np.int32))
    with pytest.raises(MotionFormatError, match="no frames"):
        check_motion(np.zeros((1, 0, 25, 3)))
    with pytest.raises(MotionFormatError, match="frame rate must be > 0"):
        Motion(np.zeros((5, 25, 3)), fps=0.0)


@pytest.mark.parametrize("package", ["stimuli", "study_server", "analysis", "analysis.cli", "attack_gen.data.prepare"])
def test_torch_free_packages_do_not_load_torch(package: str) -> None:
    code = f"import sys, {package}; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"importing {package} loads torch"
