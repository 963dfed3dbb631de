"""Skeleton topologies, defined once as data.

Every part of smart-study (dataset loaders, models' graphs, the perceptual loss, the
renderer, the analysis) takes joint names, parents, bones, spinal joints and body parts
from here.

``STANDARD`` is the 25-joint skeleton the SMART paper uses for HDM05 and Berkeley MHAD
(and NTU after mapping): the CMU-derived skeleton of the authors' code
(``CDataset.parents``), with names from the CMU 31-joint BVH it was selected from.
Joint 10 (``Hips``) is the root. Joints 0 and 5 sit at the root's position and joint 13
at joint 12's, so bones 0-10, 5-10 and 13-12 have zero length in real data; the thumb
joints hang off the index-finger joints (a chain), as in the authors' parent array.

Which joints coincide depends on the source, not only on the skeleton: HDM05 and CMU
(ASF/AMC) and Kinect put the thumb joints at the wrists (19 at 17, 24 at 22), Bandai
Namco's BVH puts them at the index joints and gives the neck a length of its own.
:meth:`Skeleton.coincident_groups` finds the groups in given data; a dataset records
them, and the recognizer's preprocessing ties each group to its first joint, so that a
split of joints that are one point in the data can never change a prediction.

``KINECT_V2`` is the Kinect v2 / NTU RGB+D 25-joint layout. It has its own indices and
must be mapped onto ``STANDARD`` with :func:`kinect_to_standard` (never index a Kinect
array with ``STANDARD``'s indices).

Coordinates are right-handed, Y up, in metres once loaded (see ``attack_gen.data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from types import MappingProxyType
from typing import Mapping

import numpy as np

__all__ = [
    "Skeleton",
    "STANDARD",
    "KINECT_V2",
    "KINECT_TO_STANDARD",
    "kinect_to_standard",
    "SKELETONS",
    "get_skeleton",
    "NUM_JOINTS",
    "COINCIDENT_TOL_M",
    "tie_coincident",
]

COINCIDENT_TOL_M = 1e-5
"""Joints closer than this (metres, in every frame) count as one point (0.01 mm: far below
any capture's precision, far above float32 rounding of positions of a few metres)."""


@dataclass(frozen=True)
class Skeleton:
    """A joint tree: names, parent of each joint (-1 for the root), spine and parts."""

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    spine: tuple[int, ...]
    """The spinal joints (root to head); the perceptual loss weights them more."""
    parts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Body parts (trunk, arms, legs) in joint indices, as HRNN splits the body."""
    center: int = 0
    """The joint graph models treat as the body's centre (ST-GCN's spatial partition)."""
    left_right: tuple[tuple[int, int], ...] = ()
    """Pairs (left, right) of mirror joints; used to find the facing direction."""

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        if len(self.parents) != n:
            raise ValueError(f"{self.name}: {n} joint names but {len(self.parents)} parents")
        roots = [j for j, p in enumerate(self.parents) if p == -1]
        if len(roots) != 1:
            raise ValueError(f"{self.name}: expected exactly one root (parent -1), got {roots}")
        for j, p in enumerate(self.parents):
            if p != -1 and not 0 <= p < n:
                raise ValueError(f"{self.name}: joint {j} has parent {p}, outside 0..{n - 1}")
        # every joint must reach the root (no cycles)
        for j in range(n):
            seen, k = set(), j
            while k != -1:
                if k in seen:
                    raise ValueError(f"{self.name}: joint {j} is on a cycle")
                seen.add(k)
                k = self.parents[k]
        object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """Every (child, parent) link, in child order; the root has no bone."""
        return tuple((j, p) for j, p in enumerate(self.parents) if p != -1)

    @property
    def bone_children(self) -> np.ndarray:
        return np.array([c for c, _ in self.bones], dtype=np.int64)

    @property
    def bone_parents(self) -> np.ndarray:
        return np.array([p for _, p in self.bones], dtype=np.int64)

    def index(self, name: str) -> int:
        """The index of a joint by name; unknown names list the known ones."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(
                f"{self.name} skeleton has no joint {name!r}; known: {', '.join(self.joint_names)}"
            ) from None

    def topological_order(self) -> tuple[int, ...]:
        """Joints ordered so that every parent comes before its children."""
        order: list[int] = []
        placed = [False] * self.num_joints

        def place(j: int) -> None:
            if placed[j]:
                return
            p = self.parents[j]
            if p != -1:
                place(p)
            placed[j] = True
            order.append(j)

        for j in range(self.num_joints):
            place(j)
        return tuple(order)

    def depth(self, joint: int) -> int:
        """Bones between ``joint`` and the root."""
        d, k = 0, self.parents[joint]
        while k != -1:
            d, k = d + 1, self.parents[k]
        return d

    def coincident_groups(self, positions: np.ndarray, tol: float = COINCIDENT_TOL_M) -> tuple[tuple[int, ...], ...]:
        """Groups of joints that are one point in every frame of ``positions`` ``(..., T, V, 3)``.

        Two joints belong to one group when they are within ``tol`` of each other in every
        frame (and groups are closed under that relation). Each group lists its joint
        nearest the root first (fewest bones from it; the lower index on a tie), then the
        others in index order; groups are ordered by that first joint. Single joints are
        not listed.
        """
        p = np.asarray(positions, dtype=np.float64).reshape(-1, self.num_joints, 3)
        if not len(p):
            return ()
        far = np.zeros((self.num_joints, self.num_joints), dtype=bool)
        for start in range(0, len(p), 4096):  # bounded memory on long recordings
            chunk = p[start : start + 4096]
            dist = np.linalg.norm(chunk[:, :, None] - chunk[:, None, :], axis=-1).max(axis=0)
            far |= ~(dist < tol)
        parent = list(range(self.num_joints))

        def find(j: int) -> int:
            while parent[j] != j:
                j = parent[j]
            return j

        for a in range(self.num_joints):
            for b in range(a + 1, self.num_joints):
                if not far[a, b]:
                    parent[find(b)] = find(a)
        members: dict[int, list[int]] = {}
        for j in range(self.num_joints):
            members.setdefault(find(j), []).append(j)
        groups = []
        for joints in members.values():
            if len(joints) > 1:
                first = min(joints, key=lambda j: (self.depth(j), j))
                groups.append((first, *sorted(j for j in joints if j != first)))
        return tuple(sorted(groups))

    def bone_lengths(self, positions: np.ndarray) -> np.ndarray:
        """Length of every bone in every frame: ``(..., V, 3) -> (..., num_bones)``."""
        positions = np.asarray(positions)
        vec = positions[..., self.bone_children, :] - positions[..., self.bone_parents, :]
        return np.linalg.norm(vec, axis=-1)


STANDARD = Skeleton(
    name="standard",
    joint_names=(
        "LHipJoint",  # 0  at the root's position
        "LeftUpLeg",  # 1  left hip
        "LeftLeg",  # 2  left knee
        "LeftFoot",  # 3  left ankle
        "LeftToeBase",  # 4
        "RHipJoint",  # 5  at the root's position
        "RightUpLeg",  # 6  right hip
        "RightLeg",  # 7  right knee
        "RightFoot",  # 8  right ankle
        "RightToeBase",  # 9
        "Hips",  # 10 root (pelvis)
        "Spine",  # 11
        "Spine1",  # 12
        "Neck",  # 13 at Spine1's position; the shoulders hang off it
        "Neck1",  # 14 head
        "LeftArm",  # 15 left shoulder
        "LeftForeArm",  # 16 left elbow
        "LeftHand",  # 17 left wrist
        "LeftHandIndex1",  # 18
        "LThumb",  # 19
        "RightArm",  # 20 right shoulder
        "RightForeArm",  # 21 right elbow
        "RightHand",  # 22 right wrist
        "RightHandIndex1",  # 23
        "RThumb",  # 24
    ),
    parents=(10, 0, 1, 2, 3, 10, 5, 6, 7, 8, -1, 10, 11, 12, 13, 13, 15, 16, 17, 18, 13, 20, 21, 22, 23),
    spine=(10, 11, 12, 13, 14),
    parts={
        "trunk": (10, 11, 12, 13, 14),
        "left_arm": (15, 16, 17, 18, 19),
        "right_arm": (20, 21, 22, 23, 24),
        "left_leg": (0, 1, 2, 3, 4),
        "right_leg": (5, 6, 7, 8, 9),
    },
    center=12,
    left_right=((1, 6), (2, 7), (3, 8), (4, 9), (15, 20), (16, 21), (17, 22), (18, 23), (19, 24)),
)

KINECT_V2 = Skeleton(
    name="kinect_v2",
    joint_names=(
        "SpineBase",  # 0
        "SpineMid",  # 1
        "Neck",  # 2
        "Head",  # 3
        "ShoulderLeft",  # 4
        "ElbowLeft",  # 5
        "WristLeft",  # 6
        "HandLeft",  # 7
        "ShoulderRight",  # 8
        "ElbowRight",  # 9
        "WristRight",  # 10
        "HandRight",  # 11
        "HipLeft",  # 12
        "KneeLeft",  # 13
        "AnkleLeft",  # 14
        "FootLeft",  # 15
        "HipRight",  # 16
        "KneeRight",  # 17
        "AnkleRight",  # 18
        "FootRight",  # 19
        "SpineShoulder",  # 20
        "HandTipLeft",  # 21
        "ThumbLeft",  # 22
        "HandTipRight",  # 23
        "ThumbRight",  # 24
    ),
    parents=(-1, 0, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18, 1, 7, 7, 11, 11),
    spine=(0, 1, 20, 2, 3),
    parts={
        "trunk": (0, 1, 20, 2, 3),
        "left_arm": (4, 5, 6, 7, 21, 22),
        "right_arm": (8, 9, 10, 11, 23, 24),
        "left_leg": (12, 13, 14, 15),
        "right_leg": (16, 17, 18, 19),
    },
    center=20,
    left_right=((12, 16), (13, 17), (14, 18), (15, 19), (4, 8), (5, 9), (6, 10), (7, 11), (21, 23), (22, 24)),
)

# For each STANDARD joint, the KINECT_V2 joint it is taken from.
# - The three joints the standard skeleton places at the pelvis (LHipJoint, RHipJoint,
#   Hips) all take SpineBase.
# - Spine takes SpineMid; Spine1 and Neck both take SpineShoulder, where Kinect attaches
#   the shoulders (so bone Neck-Spine1 has zero length, as in the standard data);
#   Neck1 (the head joint) takes Head. Kinect's own Neck joint is not used.
# - LeftHand (wrist) and LeftHandIndex1 take WristLeft and HandLeft; LThumb takes
#   WristLeft too, because in the standard data the thumb joint sits at the wrist (the
#   authors' array makes it a child of the index joint, so its bone repeats the hand
#   bone). Kinect's hand tips and thumbs are not used.
KINECT_TO_STANDARD: tuple[int, ...] = (
    0,
    12,
    13,
    14,
    15,  # left leg: SpineBase, HipLeft, KneeLeft, AnkleLeft, FootLeft
    0,
    16,
    17,
    18,
    19,  # right leg
    0,
    1,
    20,
    20,
    3,  # Hips, Spine, Spine1, Neck, Neck1 <- SpineBase, SpineMid, SpineShoulder x2, Head
    4,
    5,
    6,
    7,
    6,  # left arm: ShoulderLeft, ElbowLeft, WristLeft, HandLeft, WristLeft
    8,
    9,
    10,
    11,
    10,  # right arm
)


def kinect_to_standard(positions: np.ndarray) -> np.ndarray:
    """Map Kinect v2 / NTU joints ``(..., 25, 3)`` onto the standard skeleton ``(..., 25, 3)``."""
    positions = np.asarray(positions)
    if positions.ndim < 2 or positions.shape[-2:] != (KINECT_V2.num_joints, 3):
        raise ValueError(f"expected Kinect v2 joints with shape (..., 25, 3), got {tuple(positions.shape)}")
    return positions[..., KINECT_TO_STANDARD, :]


def tie_coincident(positions: np.ndarray, groups: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """A copy of ``positions`` ``(..., V, 3)`` with every joint of each group placed on the group's first joint."""
    out = np.array(positions, copy=True)
    for first, *others in groups:
        out[..., others, :] = out[..., first : first + 1, :]
    return out


SKELETONS: dict[str, Skeleton] = {s.name: s for s in (STANDARD, KINECT_V2)}
NUM_JOINTS = STANDARD.num_joints


def get_skeleton(name: str) -> Skeleton:
    """A skeleton by name; an unknown name lists the known ones."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; known: {', '.join(SKELETONS)}") from None
