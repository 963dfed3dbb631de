"""Graphs the target models are built on, all derived from a :class:`~stimuli.skeleton.Skeleton`.

The topology is never re-typed here: edges come from ``skeleton.bones`` (each joint's
link to its parent), the centre from ``skeleton.center``, body parts from
``skeleton.parts``. The generic builders take a plain edge list, so they can be checked
on tiny hand-made graphs.

Conventions (those of the ST-GCN / 2s-AGCN reference code): an adjacency ``A`` of shape
``(V, V)`` is applied as ``out[w] = sum_v x[v] A[v, w]`` (einsum ``"...v,vw->...w"``), and
normalisation divides each column by its sum (``A @ D^-1``).

numpy only; the models turn these arrays into buffers / parameters.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stimuli.skeleton import STANDARD
from stimuli.skeleton import Skeleton

__all__ = [
    "undirected_edges",
    "adjacency",
    "hop_distance",
    "normalize_columns",
    "spatial_partition",
    "stgcn_adjacency",
    "agcn_subsets",
    "skeleton_agcn_subsets",
    "directed_incidence",
    "skeleton_incidence",
    "parent_index",
    "part_indices",
]

Edge = tuple[int, int]


def undirected_edges(skeleton: Skeleton = STANDARD) -> list[Edge]:
    """The skeleton's links as (child, parent) pairs, one per bone."""
    return [(int(c), int(p)) for c, p in skeleton.bones]


def adjacency(num_nodes: int, edges: Sequence[Edge]) -> np.ndarray:
    """Symmetric 0/1 adjacency ``(V, V)`` without self-loops."""
    a = np.zeros((num_nodes, num_nodes))
    for i, j in edges:
        if not (0 <= i < num_nodes and 0 <= j < num_nodes):
            raise ValueError(f"edge ({i}, {j}) is outside 0..{num_nodes - 1}")
        a[i, j] = a[j, i] = 1.0
    return a


def hop_distance(num_nodes: int, edges: Sequence[Edge], max_hop: int) -> np.ndarray:
    """Shortest-path length between joints, ``inf`` beyond ``max_hop``."""
    a = adjacency(num_nodes, edges) + np.eye(num_nodes)
    dist = np.full((num_nodes, num_nodes), np.inf)
    reach = np.eye(num_nodes)
    for d in range(max_hop + 1):
        dist[(reach > 0) & np.isinf(dist)] = d
        reach = ((reach @ a) > 0).astype(float)
    return dist


def normalize_columns(a: np.ndarray) -> np.ndarray:
    """``A @ D^-1`` with ``D`` the column sums; empty columns stay zero."""
    col = a.sum(axis=0)
    scale = np.divide(1.0, col, out=np.zeros_like(col, dtype=float), where=col > 0)
    return a * scale[None, :]


def spatial_partition(num_nodes: int, edges: Sequence[Edge], center: int, max_hop: int = 1) -> np.ndarray:
    """ST-GCN's spatial-configuration partition ``(K, V, V)``, ``K = 1 + 2 * max_hop``.

    Neighbours within ``max_hop`` hops (self included) are normalised together, then split
    by their distance to ``center`` compared with the receiving joint's: subset 0 is the
    joint itself; for each hop h >= 1, one subset holds neighbours at the same distance or
    farther from the centre, the next those closer to it (order as in the reference code).
    """
    if not 0 <= center < num_nodes:
        raise ValueError(f"centre joint {center} is outside 0..{num_nodes - 1}")
    if max_hop < 1:
        raise ValueError(f"max_hop must be >= 1, got {max_hop}")
    hop = hop_distance(num_nodes, edges, max_hop)
    norm = normalize_columns((hop <= max_hop).astype(float))
    to_centre = hop_distance(num_nodes, edges, num_nodes)[:, center]
    subsets = []
    for h in range(max_hop + 1):
        at_hop = hop == h
        # [v, w]: v sends to w; compare the sender's distance to the centre with the receiver's
        same = at_hop & (to_centre[:, None] == to_centre[None, :])
        farther = at_hop & (to_centre[:, None] > to_centre[None, :])
        closer = at_hop & (to_centre[:, None] < to_centre[None, :])
        if h == 0:
            subsets.append(norm * same)
        else:
            subsets.append(norm * (same | farther))
            subsets.append(norm * closer)
    return np.stack(subsets).astype(np.float32)


def stgcn_adjacency(skeleton: Skeleton = STANDARD, max_hop: int = 1) -> np.ndarray:
    """The spatial partition of ``skeleton`` around ``skeleton.center``: ``(1 + 2 max_hop, V, V)``."""
    return spatial_partition(skeleton.num_joints, undirected_edges(skeleton), skeleton.center, max_hop)


def agcn_subsets(num_nodes: int, inward: Sequence[Edge]) -> np.ndarray:
    """2s-AGCN's three subsets ``(3, V, V)``: identity, inward and outward links, column-normalised.

    ``inward`` holds (child, parent) pairs; as in the reference ``edge2mat``, a pair (i, j)
    sets ``A[j, i] = 1``.
    """

    def edge2mat(links: Sequence[Edge]) -> np.ndarray:
        a = np.zeros((num_nodes, num_nodes))
        for i, j in links:
            a[j, i] = 1.0
        return a

    identity = edge2mat([(i, i) for i in range(num_nodes)])
    inward_m = normalize_columns(edge2mat(inward))
    outward_m = normalize_columns(edge2mat([(j, i) for i, j in inward]))
    return np.stack([identity, inward_m, outward_m]).astype(np.float32)


def skeleton_agcn_subsets(skeleton: Skeleton = STANDARD) -> np.ndarray:
    return agcn_subsets(skeleton.num_joints, undirected_edges(skeleton))


def directed_incidence(num_nodes: int, directed_edges: Sequence[Edge]) -> tuple[np.ndarray, np.ndarray]:
    """Source and target incidence matrices ``(V, E)`` of (source, target) edges.

    ``source[v, e] = 1`` when edge ``e`` leaves ``v``; ``target[v, e] = 1`` when it enters ``v``.
    """
    source = np.zeros((num_nodes, len(directed_edges)), dtype=np.float32)
    target = np.zeros_like(source)
    for e, (s, t) in enumerate(directed_edges):
        if s == t:
            raise ValueError(f"edge {e} is a self-loop on joint {s}")
        source[s, e] = 1.0
        target[t, e] = 1.0
    return source, target


def skeleton_incidence(skeleton: Skeleton = STANDARD) -> tuple[np.ndarray, np.ndarray]:
    """DGNN's directed acyclic graph: one edge per bone, from the parent to the child.

    Edge ``e`` is bone ``skeleton.bones[e]`` (child order), so edge features are the bone
    vectors at ``skeleton.bone_children``.
    """
    return directed_incidence(skeleton.num_joints, [(p, c) for c, p in undirected_edges(skeleton)])


def parent_index(skeleton: Skeleton = STANDARD) -> np.ndarray:
    """Each joint's parent, the root mapped to itself (so its bone ``x - x[parent]`` is zero)."""
    parents = np.array(skeleton.parents, dtype=np.int64)
    parents[skeleton.root] = skeleton.root
    return parents


def part_indices(skeleton: Skeleton = STANDARD) -> dict[str, tuple[int, ...]]:
    """HRNN's five body parts; raises if the skeleton does not name them all."""
    needed = ("trunk", "left_arm", "right_arm", "left_leg", "right_leg")
    missing = [p for p in needed if p not in skeleton.parts]
    if missing:
        raise ValueError(f"{skeleton.name} skeleton lacks body parts {missing}; has {sorted(skeleton.parts)}")
    return {p: tuple(skeleton.parts[p]) for p in needed}
