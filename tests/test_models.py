"""The five target models, their graphs and the registry.

Expected values are worked out by hand (graph matrices, bone vectors, parameter counts
from the layer sizes), not copied from the code's output.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Iterator

import numpy as np
import pytest
import torch

from attack_gen.models import MODELS
from attack_gen.models import build_model
from attack_gen.models import build_model_from_config
from attack_gen.models import list_models
from attack_gen.models import model_config
from attack_gen.models.graph import adjacency
from attack_gen.models.graph import agcn_subsets
from attack_gen.models.graph import hop_distance
from attack_gen.models.graph import part_indices
from attack_gen.models.graph import skeleton_incidence
from attack_gen.models.graph import spatial_partition
from attack_gen.models.graph import stgcn_adjacency
from attack_gen.models.graph import undirected_edges
from attack_gen.models.layers import Bones
from attack_gen.models.layers import frame_differences
from stimuli.skeleton import STANDARD

NAMES = ["agcn", "asgcn", "dgnn", "hrnn", "stgcn"]
FAST = [(n, s) for n in NAMES for s in ("tiny", "small")]


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    # the tensors here are tiny: one intra-op thread is as fast, and far faster when other
    # processes share the cores (spinning OpenMP threads stall each small op)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _clips(n: int, t: int) -> torch.Tensor:
    return torch.randn(n, t, 25, 3)


# --- registry -------------------------------------------------------------------------


def test_registry_lists_the_five_models() -> None:
    assert list_models() == NAMES
    assert set(MODELS) == set(NAMES)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError) as err:
        build_model("resnet", num_classes=3)
    for name in NAMES:
        assert name in str(err.value)


def test_unknown_size_and_field_are_refused() -> None:
    with pytest.raises(KeyError, match="small"):
        build_model("stgcn", 3, size="huge")
    with pytest.raises(ValueError, match="widht"):
        build_model("stgcn", 3, size="tiny", widht=3)
    with pytest.raises(ValueError, match="strides"):
        build_model("stgcn", 3, size="tiny", channels=(8, 8, 8))


@pytest.mark.parametrize("name,size", FAST)
def test_config_round_trip(name: str, size: str) -> None:
    model = build_model(name, 7, size)
    saved = json.loads(json.dumps(dataclasses.asdict(model.config)))  # as a checkpoint stores it
    rebuilt = build_model_from_config(name, saved)
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())


def test_overrides_reach_the_config() -> None:
    cfg = model_config("agcn", "tiny", 5, streams=("joint",))
    assert cfg.streams == ("joint",) and cfg.num_classes == 5
    assert list(build_model("agcn", 5, "tiny", streams=("joint",)).streams) == ["joint"]


# --- forward / backward ---------------------------------------------------------------


@pytest.mark.parametrize("name,size", FAST)
def test_output_shape_for_several_lengths(name: str, size: str) -> None:
    model = build_model(name, 7, size).eval()
    with torch.no_grad():
        for t in (60, 45, 8):
            assert model(_clips(2, t)).shape == (2, 7)


@pytest.mark.parametrize("name,size", FAST)
def test_input_gradient_is_finite_and_nonzero(name: str, size: str) -> None:
    model = build_model(name, 7, size).eval()
    x = _clips(2, 30).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 3]))
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    # the signal reaches every joint, including the root (whose bone is zero in AGCN/DGNN)
    assert (x.grad.abs().sum(dim=(0, 1, 3)) > 0).all()


@pytest.mark.parametrize("name,size", FAST)
def test_eval_mode_is_deterministic(name: str, size: str) -> None:
    model = build_model(name, 7, size).eval()
    x = _clips(3, 20)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_bad_shape_raises_value_error_quoting_it(name: str) -> None:
    model = build_model(name, 4, "tiny")
    with pytest.raises(ValueError, match=r"\(2, 10, 24, 3\)"):
        model(torch.zeros(2, 10, 24, 3))
    with pytest.raises(ValueError, match=r"\(10, 25, 3\)"):
        model(torch.zeros(10, 25, 3))


@pytest.mark.parametrize("name", NAMES)
def test_paper_size_runs(name: str) -> None:
    model = build_model(name, 60).eval()
    with torch.no_grad():
        assert model(_clips(1, 16)).shape == (1, 60)


# --- parameter counts, by hand from the layer sizes -------------------------------------


def _stgcn_block(c_in: int, c_out: int, stride: int, first: bool, k: int = 3, v: int = 25, kt: int = 9) -> int:
    gcn = c_in * c_out * k + c_out * k  # 1x1 conv to K groups
    tcn = 2 * c_out + (c_out * c_out * kt + c_out) + 2 * c_out  # BN, conv (9, 1), BN
    res = 0 if first or (c_in == c_out and stride == 1) else c_in * c_out + c_out + 2 * c_out
    return gcn + tcn + res + k * v * v  # + edge-importance mask


def test_stgcn_paper_parameter_count_matches_the_original() -> None:
    layout = [
        (3, 64, 1),
        (64, 64, 1),
        (64, 64, 1),
        (64, 64, 1),
        (64, 128, 2),
        (128, 128, 1),
        (128, 128, 1),
        (128, 256, 2),
        (256, 256, 1),
        (256, 256, 1),
    ]
    expected = 2 * 75 + sum(_stgcn_block(*spec, first=i == 0) for i, spec in enumerate(layout)) + 256 * 60 + 60
    assert expected == 3_098_832  # ~3.1M, the reference ST-GCN with M = 1 and 60 classes
    got = sum(p.numel() for p in build_model("stgcn", 60).parameters())
    assert got == expected


def test_agcn_paper_parameter_count_matches_the_published_one() -> None:
    # per AGCN layer (K = 3 subsets, embedding C_out / 4): theta, phi, W (one summed bias), B, BN,
    # the unit's down-projection, the temporal conv + BN, and the block residual
    def layer(c_in: int, c_out: int, stride: int, first: bool) -> int:
        e = c_out // 4
        gcn = 2 * (c_in * 3 * e + 3 * e) + (3 * c_in * c_out + c_out) + 3 * 625 + 2 * c_out
        down = 0 if c_in == c_out else c_in * c_out + c_out + 2 * c_out
        tcn = c_out * c_out * 9 + c_out + 2 * c_out
        res = 0 if first or (c_in == c_out and stride == 1) else c_in * c_out + c_out + 2 * c_out
        return gcn + down + tcn + res

    layout = [
        (3, 64, 1),
        (64, 64, 1),
        (64, 64, 1),
        (64, 64, 1),
        (64, 128, 2),
        (128, 128, 1),
        (128, 128, 1),
        (128, 256, 2),
        (256, 256, 1),
        (256, 256, 1),
    ]
    per_stream = 2 * 75 + sum(layer(*spec, first=i == 0) for i, spec in enumerate(layout)) + 256 * 60 + 60
    model = build_model("agcn", 60)
    for stream in model.streams.values():
        assert sum(p.numel() for p in stream.parameters()) == per_stream
    assert abs(per_stream - 3.47e6) / 3.47e6 < 0.002  # 2s-AGCN: 3.47M per stream (6.94M for two)


# --- graphs ---------------------------------------------------------------------------


def test_standard_graph_edges_and_degrees() -> None:
    edges = undirected_edges(STANDARD)
    assert len(edges) == 24
    a = adjacency(25, edges)
    assert (a == a.T).all() and a.sum() == 48
    assert set(np.flatnonzero(a[13])) == {12, 14, 15, 20}  # Neck
    assert set(np.flatnonzero(a[10])) == {0, 5, 11}  # Hips, the root
    assert set(np.flatnonzero(a[4])) == {3}  # a toe is a leaf


def test_hop_distance_on_a_chain() -> None:
    d = hop_distance(4, [(0, 1), (1, 2), (2, 3)], max_hop=2)
    assert d[0, 0] == 0 and d[0, 1] == 1 and d[0, 2] == 2 and np.isinf(d[0, 3])


def test_spatial_partition_on_a_three_node_chain() -> None:
    # 0 - 1 - 2, centre 1. Self + 1-hop neighbourhoods: column sums 2, 3, 2.
    a = spatial_partition(3, [(0, 1), (1, 2)], center=1, max_hop=1)
    root = np.diag([1 / 2, 1 / 3, 1 / 2])
    farther = np.array([[0, 1 / 3, 0], [0, 0, 0], [0, 1 / 3, 0]])  # 0, 2 -> 1: senders farther from the centre
    closer = np.array([[0, 0, 0], [1 / 2, 0, 1 / 2], [0, 0, 0]])  # 1 -> 0, 2: the sender is the centre
    np.testing.assert_allclose(a, np.stack([root, farther, closer]), rtol=1e-6)


def test_stgcn_partitions_of_the_standard_skeleton() -> None:
    a1, a3 = stgcn_adjacency(max_hop=1), stgcn_adjacency(max_hop=3)
    assert a1.shape == (3, 25, 25) and a3.shape == (7, 25, 25)
    np.testing.assert_allclose(a1.sum(axis=(0, 1)), np.ones(25), rtol=1e-6)  # each joint averages its neighbours
    # Spine1 (12) is the centre; Neck (13) receives from 12 (closer), 14, 15, 20 (farther), itself: 1/5 each
    assert a1[0, 13, 13] == pytest.approx(0.2)
    assert a1[2, 12, 13] == pytest.approx(0.2)
    assert a1[1, 14, 13] == a1[1, 15, 13] == a1[1, 20, 13] == pytest.approx(0.2)


def test_agcn_subsets_on_a_chain() -> None:
    # inward links (child, parent): 0 -> 1 and 2 -> 1; edge2mat puts pair (i, j) at A[j, i]
    a = agcn_subsets(3, [(0, 1), (2, 1)])
    np.testing.assert_array_equal(a[0], np.eye(3))
    np.testing.assert_allclose(a[1], [[0, 0, 0], [1, 0, 1], [0, 0, 0]])
    np.testing.assert_allclose(a[2], [[0, 0.5, 0], [0, 0, 0], [0, 0.5, 0]])


def test_dgnn_incidence_has_one_source_and_one_target_per_edge() -> None:
    source, target = skeleton_incidence(STANDARD)
    assert source.shape == target.shape == (25, 24)
    assert (source.sum(axis=0) == 1).all() and (target.sum(axis=0) == 1).all()
    # edge 13 is the bone of joint 14 (children 0-9, 11-24 in order): Neck (13) -> Neck1 (14)
    assert source[13, 13] == 1 and target[14, 13] == 1
    assert target[10].sum() == 0 and source[10].sum() == 3  # the root: no incoming, three outgoing
    assert source[4].sum() == 0 and target[4].sum() == 1  # a leaf


def test_body_parts_cover_every_joint_once() -> None:
    parts = part_indices(STANDARD)
    assert sorted(j for p in parts.values() for j in p) == list(range(25))


# --- parameter-free input layers ------------------------------------------------------


def test_bone_layer_on_a_tiny_tensor() -> None:
    x = torch.arange(25, dtype=torch.float32)[None, None, :, None] * torch.tensor([1.0, 10.0, 100.0])
    b = Bones()(x)  # bone j = (j - parent(j)) * (1, 10, 100)
    assert b.shape == (1, 1, 25, 3)
    torch.testing.assert_close(b[0, 0, 10], torch.zeros(3))  # root
    torch.testing.assert_close(b[0, 0, 0], torch.tensor([-10.0, -100.0, -1000.0]))  # 0 - 10
    torch.testing.assert_close(b[0, 0, 11], torch.tensor([1.0, 10.0, 100.0]))  # 11 - 10
    torch.testing.assert_close(b[0, 0, 20], torch.tensor([7.0, 70.0, 700.0]))  # 20 - 13


def test_frame_differences_keep_the_length() -> None:
    x = torch.tensor([0.0, 1.0, 3.0, 6.0]).reshape(1, 4, 1, 1)
    torch.testing.assert_close(frame_differences(x).flatten(), torch.tensor([1.0, 2.0, 3.0, 0.0]))


def test_bone_stream_ignores_a_global_translation() -> None:
    model = build_model("agcn", 4, "tiny", streams=("bone",)).eval()
    x = _clips(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(x + torch.tensor([0.3, -1.0, 2.0])), model(x))


def test_motion_stream_ignores_a_constant_offset() -> None:
    model = build_model("dgnn", 4, "tiny", streams=("motion",)).eval()
    x = _clips(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(x + torch.randn(1, 1, 25, 3)), model(x))


def test_asgcn_actional_links_come_from_the_input() -> None:
    model = build_model("asgcn", 4, "tiny").eval()
    x = _clips(2, 12).requires_grad_(True)
    a = model.actional_links(x)
    assert a.shape == (2, 3, 25, 25)  # 4 link types, type 0 = no link
    torch.testing.assert_close(a.sum(dim=2), torch.ones(2, 3, 25))  # column-normalised
    a[:, :, 0, 1].sum().backward()
    assert x.grad.abs().sum() > 0


# --- learning sanity ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_fits_a_separable_toy_problem(name: str) -> None:
    # two classes of random motions whose joints sit at opposite mean offsets
    pattern = torch.randn(25, 3)
    y = torch.arange(40) % 2
    x = torch.randn(40, 16, 25, 3) + 0.7 * pattern * (2 * y - 1).float()[:, None, None, None]
    model = build_model(name, 2, "tiny")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.9
