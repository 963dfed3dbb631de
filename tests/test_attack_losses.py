"""Perceptual loss, ablations and strategies on tiny tensors, with values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attack_gen.attack.losses import LOSSES
from attack_gen.attack.losses import PerceptualWeights
from attack_gen.attack.losses import acceleration_term
from attack_gen.attack.losses import apply_in_space
from attack_gen.attack.losses import apply_in_time
from attack_gen.attack.losses import bone_lengths
from attack_gen.attack.losses import bone_preconditioner
from attack_gen.attack.losses import bone_term
from attack_gen.attack.losses import derivative
from attack_gen.attack.losses import dynamics_preconditioner
from attack_gen.attack.losses import joint_weights
from attack_gen.attack.losses import perceptual_loss
from attack_gen.attack.losses import perceptual_metrics
from attack_gen.attack.losses import perceptual_terms
from attack_gen.attack.losses import position_term
from attack_gen.attack.strategies import AnythingBut
from attack_gen.attack.strategies import AnythingButN
from attack_gen.attack.strategies import ClassContext
from attack_gen.attack.strategies import Specified
from attack_gen.attack.strategies import build_strategy
from attack_gen.attack.strategies import random_targets
from attack_gen.attack.strategies import uniform_rest_kl
from stimuli.skeleton import STANDARD

TOE = STANDARD.index("LeftToeBase")  # 4: a leaf, parent 3, not spinal (gamma 0.02)
HEAD = STANDARD.index("Neck1")  # 14: a leaf, parent 13, spinal (gamma 0.04)
FPS = 10.0


def _clip_pair(joint: int, rest: tuple[float, float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """3 frames, every joint at the origin except ``joint`` at ``rest``; q^ moves it by (0.4, 0, 0) in frame 1.

    By hand, for that joint with weight g: position = g^2 * 0.4^2; the only acceleration
    frame has (0 - 2 * 0.4 + 0) * fps^2 = -80 in x, so acceleration = g^2 * 6400; the
    bone to its parent goes from |rest| to |rest + (0.4, 0, 0)| in frame 1 only.
    """
    q = torch.zeros(1, 3, 25, 3)
    q[0, :, joint] = torch.tensor(rest)
    q_hat = q.clone()
    q_hat[0, 1, joint, 0] += 0.4
    return q, q_hat


def test_joint_weights_are_004_on_the_five_spinal_joints_and_002_elsewhere() -> None:
    gamma = joint_weights()
    assert gamma.shape == (25,)
    assert sorted(np.flatnonzero(np.isclose(gamma.numpy(), 0.04)).tolist()) == [10, 11, 12, 13, 14]
    assert int(np.isclose(gamma.numpy(), 0.02).sum()) == 20


def test_derivative_is_forward_difference_over_dt() -> None:
    t = torch.arange(5, dtype=torch.float32)
    x = (t**2)[None, :, None, None].expand(1, 5, 25, 3)  # x(t) = t^2 in frames
    v = derivative(x, 1, fps=4.0)  # (2t + 1) * 4
    a = derivative(x, 2, fps=4.0)  # 2 * 16
    assert v.shape == (1, 4, 25, 3) and a.shape == (1, 3, 25, 3)
    np.testing.assert_allclose(v[0, :, 0, 0].numpy(), [4, 12, 20, 28])
    np.testing.assert_allclose(a.numpy(), 32.0)


def test_terms_by_hand_for_a_non_spinal_joint() -> None:
    q, q_hat = _clip_pair(TOE, (0.0, 0.0, 0.3))
    gamma = joint_weights()
    assert position_term(q, q_hat, gamma).item() == pytest.approx(0.02**2 * 0.16, rel=1e-5)  # 6.4e-5
    assert acceleration_term(q, q_hat, gamma, FPS).item() == pytest.approx(0.02**2 * 6400, rel=1e-5)  # 2.56
    # bone 4-3: 0.3 -> |(0.4, 0, 0.3)| = 0.5 in frame 1 of 3: (0.2)^2 / 3
    assert bone_term(q, q_hat).item() == pytest.approx(0.04 / 3, rel=1e-5)


def test_spinal_joint_weighs_four_times_more_inside_the_square() -> None:
    q, q_hat = _clip_pair(HEAD, (0.0, 0.3, 0.0))
    gamma = joint_weights()
    assert position_term(q, q_hat, gamma).item() == pytest.approx(0.04**2 * 0.16, rel=1e-5)  # 2.56e-4
    assert acceleration_term(q, q_hat, gamma, FPS).item() == pytest.approx(0.04**2 * 6400, rel=1e-5)  # 10.24


def test_acceleration_carries_dt_squared_units() -> None:
    q, q_hat = _clip_pair(TOE, (0.0, 0.0, 0.3))
    gamma = joint_weights()
    slow = acceleration_term(q, q_hat, gamma, 10.0).item()
    fast = acceleration_term(q, q_hat, gamma, 20.0).item()
    assert fast == pytest.approx(16 * slow, rel=1e-5)  # (1/dt^2)^2


@pytest.mark.parametrize(
    "name, expected",
    [
        # 0.3 * (0.6 * 6.4e-5 + 0.4 * 2.56) + 0.7 * 0.04 / 3
        ("smart", 0.3 * (0.6 * 6.4e-5 + 0.4 * 2.56) + 0.7 * 0.04 / 3),
        ("l2", 0.3 * 0.6 * 6.4e-5),
        ("l2-acc", 0.3 * (0.6 * 6.4e-5 + 0.4 * 2.56)),
        ("l2-bone", 0.3 * 0.6 * 6.4e-5 + 0.7 * 0.04 / 3),
    ],
)
def test_loss_variants_by_hand(name: str, expected: float) -> None:
    q, q_hat = _clip_pair(TOE, (0.0, 0.0, 0.3))
    terms = perceptual_terms(q, q_hat, FPS, gamma=joint_weights())
    weights = PerceptualWeights().for_loss(name)
    assert perceptual_loss(terms, weights).item() == pytest.approx(expected, rel=1e-5)


def test_ablations_keep_the_paper_weights_of_their_terms() -> None:
    w = PerceptualWeights()
    assert w.for_loss("smart") == pytest.approx({"position": 0.18, "acceleration": 0.12, "bone": 0.7})
    assert w.for_loss("l2") == pytest.approx({"position": 0.18})
    assert w.for_loss("l2-acc") == pytest.approx({"position": 0.18, "acceleration": 0.12})
    assert w.for_loss("l2-bone") == pytest.approx({"position": 0.18, "bone": 0.7})
    assert set(LOSSES) == {"smart", "l2", "l2-acc", "l2-bone"}


def test_unknown_loss_lists_known_names() -> None:
    with pytest.raises(KeyError, match="known: smart, l2, l2-acc, l2-bone"):
        PerceptualWeights().for_loss("l3")


def test_negative_weight_is_rejected_with_its_value() -> None:
    with pytest.raises(ValueError, match="beta2 must be >= 0, got -0.1"):
        PerceptualWeights(beta2=-0.1)


def test_terms_are_per_clip_and_identical_clips_do_not_interact() -> None:
    q1, h1 = _clip_pair(TOE, (0.0, 0.0, 0.3))
    q2 = torch.zeros(1, 3, 25, 3)
    q, q_hat = torch.cat([q1, q2]), torch.cat([h1, q2])
    terms = perceptual_terms(q, q_hat, FPS, gamma=joint_weights())
    for name, value in terms.items():
        assert value.shape == (2,), name
        assert value[1].item() == 0.0, name
    single = perceptual_terms(q1, h1, FPS, gamma=joint_weights())
    for name in terms:
        assert terms[name][0].item() == pytest.approx(single[name][0].item(), rel=1e-6)


def test_bone_term_compares_frame_by_frame() -> None:
    # bone 4-3 is 0.3 in frame 0 and 0.5 in frame 1 of q; q^ swaps them: both frames deviate by 0.2
    q = torch.zeros(1, 2, 25, 3)
    q[0, 0, TOE] = torch.tensor([0.0, 0.0, 0.3])
    q[0, 1, TOE] = torch.tensor([0.4, 0.0, 0.3])
    q_hat = q.flip(1)
    assert bone_term(q, q_hat).item() == pytest.approx((0.04 + 0.04) / 2, rel=1e-5)
    # a per-clip mean bone length would see no change at all
    assert bone_lengths(q).mean().item() == pytest.approx(bone_lengths(q_hat).mean().item())


def test_zero_length_bones_have_finite_zero_gradients() -> None:
    q = torch.zeros(1, 4, 25, 3)
    q_hat = q.clone().requires_grad_(True)
    terms = perceptual_terms(q, q_hat, 30.0, gamma=joint_weights())
    loss = perceptual_loss(terms, PerceptualWeights().for_loss("smart"))
    loss.sum().backward()
    assert q_hat.grad is not None
    assert torch.isfinite(q_hat.grad).all() and (q_hat.grad == 0).all()


def test_metrics_by_hand() -> None:
    q, q_hat = _clip_pair(TOE, (0.0, 0.0, 0.3))
    m = perceptual_metrics(q, q_hat, FPS)
    assert m["mean_joint_displacement_m"].item() == pytest.approx(0.4 / 75, rel=1e-5)  # one of 3 x 25 joints
    assert m["acceleration_deviation"].item() == pytest.approx(80 / 25, rel=1e-5)  # one acc frame, 25 joints
    assert m["bone_length_deviation_m"].item() == pytest.approx(0.2 / 72, rel=1e-5)  # 3 frames x 24 bones


# ---- strategies ---------------------------------------------------------------------------------


def _ctx(true: list[int], target: list[int] | None = None, k: int = 4) -> ClassContext:
    t = torch.tensor(true)
    tg = torch.tensor(target if target is not None else [-1] * len(true))
    return ClassContext(t, t.clone(), torch.zeros(len(true), k), tg)


def test_ab_loss_is_minus_cross_entropy_to_the_original_prediction() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    # CE = -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2)
    assert AnythingBut().class_loss(logits, _ctx([0], k=3)).item() == pytest.approx(-math.log(1 + 2 * math.exp(-2)))


def test_ab_success_when_the_label_changes() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert AnythingBut().success(logits, _ctx([0, 0], k=3)).tolist() == [False, True]


def test_abn_loss_is_minus_entropy() -> None:
    flat = torch.zeros(1, 4)
    assert AnythingButN(3).class_loss(flat, _ctx([0])).item() == pytest.approx(-math.log(4))
    sharp = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    assert AnythingButN(3).class_loss(sharp, _ctx([0])).item() == pytest.approx(0.0, abs=1e-6)


def test_abn_success_when_true_label_leaves_top_n() -> None:
    logits = torch.tensor([[0.5, 3.0, 2.0, 1.0, 0.0]])  # ranking 1, 2, 3, 0, 4
    ctx = _ctx([0], k=5)
    assert AnythingButN(3).success(logits, ctx).tolist() == [True]
    assert AnythingButN(4).success(logits, ctx).tolist() == [False]
    assert AnythingButN(5).success(logits, ctx).tolist() == [False]  # N >= classes: never
    assert AnythingButN(1).success(logits, ctx).tolist() == [True]  # N = 1 is AB on the true label


def test_sa_loss_and_success() -> None:
    logits = torch.tensor([[0.0, 2.0, 0.0], [2.0, 0.0, 0.0]])
    ctx = _ctx([0, 0], target=[1, 1], k=3)
    assert Specified().class_loss(logits, ctx)[0].item() == pytest.approx(math.log(1 + 2 * math.exp(-2)))
    assert Specified().success(logits, ctx).tolist() == [True, False]


def test_strategy_registry_and_labels() -> None:
    assert build_strategy("ab").label == "AB"
    assert build_strategy("abn", top_n=5).label == "AB5"
    assert build_strategy("sa").label == "SA"
    with pytest.raises(KeyError, match="known: ab, abn, sa"):
        build_strategy("pgd")
    with pytest.raises(ValueError, match="top_n >= 1, got 0"):
        build_strategy("abn", top_n=0)


def test_random_targets_never_true_label_and_reproducible() -> None:
    labels = np.arange(2000) % 7
    a = random_targets(labels, 7, seed=3)
    assert (a != labels).all()
    assert ((a >= 0) & (a < 7)).all()
    np.testing.assert_array_equal(a, random_targets(labels, 7, seed=3))
    assert (a != random_targets(labels, 7, seed=4)).any()
    # every other class is drawn, about equally often (expected 2000 / 7 / 6 ~ 48 per pair)
    for c in range(7):
        counts = np.bincount(a[labels == c], minlength=7)
        assert counts[c] == 0 and (np.delete(counts, c) > 20).all()


def test_random_target_of_a_clip_depends_only_on_seed_position_and_its_label() -> None:
    a = random_targets(np.array([0, 1, 2, 3]), 4, seed=0)
    b = random_targets(np.array([0, 3, 3, 1]), 4, seed=0)  # other clips' labels changed
    assert a[0] == b[0]
    with pytest.raises(ValueError, match="at least 2 classes"):
        random_targets(np.zeros(2, np.int64), 1, seed=0)


# ---- the dynamics preconditioner ------------------------------------------------------------


def test_preconditioner_by_hand_on_three_frames() -> None:
    # T = 3, fps 1, rho = 1: D = [1, -2, 1], H = I + D^T D. Constant and linear series are in
    # D's null space (P keeps them); the jitter v = [1, -2, 1] / sqrt(6) has D^T D v = 6 v,
    # so H v = 7 v and P v = v / sqrt(7).
    p = dynamics_preconditioner(3, 1.0, {"position": 1.0, "acceleration": 1.0}).double()
    torch.testing.assert_close(p, p.T)
    ones, ramp = torch.ones(3, dtype=torch.float64), torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(p @ ones, ones, atol=1e-6, rtol=0)
    torch.testing.assert_close(p @ ramp, ramp, atol=1e-6, rtol=0)
    v = torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64) / math.sqrt(6)
    torch.testing.assert_close(p @ v, v / math.sqrt(7), atol=1e-6, rtol=0)


def test_preconditioner_whitens_the_dynamics_terms() -> None:
    # with d = P u, beta0 * position + beta2 * acceleration of d equals beta0 * |u|^2 (per joint weight)
    fps, t = 30.0, 12
    w = {"position": 0.6, "acceleration": 0.4}
    p = dynamics_preconditioner(t, fps, w).double()
    u = torch.randn(t, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    d = p @ u
    acc = (d[2:] - 2 * d[1:-1] + d[:-2]) * fps**2
    dyn = 0.6 * (d**2).sum() + 0.4 * (acc**2).sum()
    torch.testing.assert_close(dyn, 0.6 * (u**2).sum(), rtol=1e-5, atol=0)


def test_preconditioner_is_the_identity_without_an_acceleration_or_position_term() -> None:
    assert dynamics_preconditioner(60, 30.0, {"position": 1.0, "acceleration": 0.0}) is None
    assert dynamics_preconditioner(60, 30.0, {"position": 0.0, "acceleration": 1.0}) is None
    assert dynamics_preconditioner(2, 30.0, {"position": 1.0, "acceleration": 1.0}) is None
    x = torch.randn(2, 5, 25, 3)
    assert apply_in_time(None, x) is x


def test_apply_in_time_multiplies_along_frames_only() -> None:
    p = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    x = torch.arange(2 * 2 * 25 * 3, dtype=torch.float32).reshape(2, 2, 25, 3)
    y = apply_in_time(p, x)
    torch.testing.assert_close(y[:, 0], x[:, 0] + 2 * x[:, 1])
    torch.testing.assert_close(y[:, 1], 3 * x[:, 1])


def test_uniform_rest_kl_by_hand() -> None:
    # p = [0.5, 0.25, 0.25], true 0: u_rest = [0, 0.5, 0.5], KL = 2 * 0.5 * log(0.5 / 0.25) = log 2
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.0 + 1e-30, 0.5, 0.5]]))
    kl = uniform_rest_kl(logp, torch.tensor([0, 0]))
    torch.testing.assert_close(kl, torch.tensor([math.log(2), 0.0]), atol=1e-5, rtol=0)  # float32
    s = AnythingButN(3, loss="uniform-rest")
    ctx = ClassContext(torch.tensor([0]), torch.tensor([0]), torch.zeros(1, 3), torch.tensor([-1]))
    torch.testing.assert_close(s.class_loss(logp[:1], ctx), kl[:1])
    with pytest.raises(ValueError, match="unknown ABN loss 'kl'; known: entropy, uniform-rest"):
        AnythingButN(3, loss="kl")


# ---- the bone preconditioner ----------------------------------------------------------------

STANDARD_BONE = STANDARD.bones[0]
"""(child, parent) of the first bone of the standard skeleton."""


def _pose_clip(t: int = 4, seed: int = 0) -> torch.Tensor:
    """(1, t, 25, 3) float64 in geometric units: every child 5-20 cm from its parent, no point bones."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((t, 25, 3))
    for f in range(t):
        for j in STANDARD.topological_order():
            parent = STANDARD.parents[j]
            if parent == -1:
                pos[f, j] = rng.normal(0, 0.1, 3)
            else:
                d = rng.normal(size=3)
                pos[f, j] = pos[f, parent] + d / np.linalg.norm(d) * rng.uniform(0.05, 0.2)
    return torch.tensor(pos[None], dtype=torch.float64)


def _hessian_per_frame(g0: torch.Tensor, w: dict[str, float], gamma: torch.Tensor) -> torch.Tensor:
    """Gauss-Newton matrix of w_pos * position + w_bone * bone at g0, per frame, built from autograd's Jacobian."""
    _, t, v, c = g0.shape
    gvec = gamma.double().repeat_interleave(c)
    out = []
    for f in range(t):
        frame = g0[0, f].reshape(-1)
        jac = torch.autograd.functional.jacobian(lambda x: bone_lengths(x.reshape(1, 1, v, c))[0, 0], frame)
        out.append(w["position"] * torch.diag(gvec**2) + w["bone"] / t * jac.T @ jac)
    return torch.stack(out)


def test_bone_preconditioner_whitens_the_bone_term_into_the_position_term() -> None:
    # S^T H S = w_pos G for every frame, with H's bone part from autograd (not from the code's J)
    g0 = _pose_clip()
    gamma = joint_weights()
    w = PerceptualWeights().for_loss("smart")
    packed = bone_preconditioner(g0, w, gamma)
    t = g0.shape[1]
    eye = torch.eye(75, dtype=torch.float64).reshape(75, 1, 25, 3).expand(75, t, 25, 3)
    # S column by column: S applied to every unit vector, in every frame
    s = torch.stack([apply_in_space(packed.expand(75, -1, -1, -1), eye)[:, f].reshape(75, 75).T for f in range(t)])
    h = _hessian_per_frame(g0, w, gamma)
    g = torch.diag(gamma.double().repeat_interleave(3) ** 2)
    for f in range(t):
        # (to ~1e-5 relative: bone_lengths' sqrt(|v|^2 + eps) bends the Jacobian by eps / |v|^2)
        torch.testing.assert_close(s[f].T @ h[f] @ s[f], w["position"] * g, rtol=0, atol=1e-9)


def test_bone_preconditioner_whitens_in_the_canonical_degrees_of_freedom() -> None:
    # with the root fixed and coincident joints tied (d = T v), (T S)^T H (T S) = w_pos G' on the joints that move,
    # G' their groups' summed gamma^2; H from autograd on all 75 coordinates
    from attack_gen.attack.engine import dof_projection
    from attack_gen.attack.engine import project
    from attack_gen.data.preprocess import Canonical

    dof = dof_projection(Canonical("frame", True, ((10, 0, 5), (12, 13), (17, 19), (22, 24))))
    g0 = project(dof, _pose_clip())  # a canonical pose: the root at the origin, the groups one point
    gamma = joint_weights()
    w = PerceptualWeights().for_loss("smart")
    packed = bone_preconditioner(g0, w, gamma, dof=dof)
    t = g0.shape[1]
    src, keep = dof
    moving = [j for j in range(25) if int(src[j]) == j and keep[j] > 0]
    cols = [3 * j + a for j in moving for a in range(3)]
    eye = torch.eye(75, dtype=torch.float64)[cols].reshape(len(cols), 1, 25, 3).expand(len(cols), t, 25, 3)
    ts = project(dof, apply_in_space(packed.expand(len(cols), -1, -1, -1), eye, gamma, dof=dof))  # columns of T S
    h = _hessian_per_frame(g0, w, gamma)
    g_eff = torch.zeros(25, dtype=torch.float64).index_add(0, src, gamma.double() ** 2)
    want = w["position"] * torch.diag(g_eff[moving].repeat_interleave(3))
    for f in range(t):
        m = ts[:, f].reshape(len(cols), 75).T  # (75, moving coordinates)
        torch.testing.assert_close(m.T @ h[f] @ m, want, rtol=0, atol=1e-9)


def test_bone_preconditioner_keeps_length_preserving_moves_and_shrinks_stretches() -> None:
    g0 = _pose_clip(t=2, seed=1)
    w = PerceptualWeights().for_loss("smart")
    s = bone_preconditioner(g0, w, joint_weights())
    shift = torch.zeros_like(g0)
    shift[..., :] = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)  # a translation keeps every bone
    torch.testing.assert_close(apply_in_space(s, shift), shift, rtol=0, atol=1e-9)
    omega = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)  # an infinitesimal rotation about the root
    rot = torch.cross(omega.expand_as(g0), g0 - g0[:, :, :1], dim=-1)
    torch.testing.assert_close(apply_in_space(s, rot), rot, rtol=0, atol=1e-9)
    # stretching the first bone (its child moves along the bone): much of it is taken out
    c, p = STANDARD_BONE
    stretch = torch.zeros_like(g0)
    stretch[:, :, c] = g0[:, :, c] - g0[:, :, p]
    moved = apply_in_space(s, stretch)
    before = bone_lengths(g0 + 1e-4 * stretch) - bone_lengths(g0)
    after = bone_lengths(g0 + 1e-4 * moved) - bone_lengths(g0)
    assert after.abs().sum() < 0.2 * before.abs().sum()


def test_bone_preconditioner_treats_a_point_bone_as_isotropic() -> None:
    # two coincident joints: any relative move is a length change, so S shrinks it on every axis
    # (a bone with a length keeps the moves across it: see the rotation above)
    g0 = _pose_clip(t=1, seed=2)
    c, p = STANDARD_BONE
    g0[:, :, c] = g0[:, :, p]
    s = bone_preconditioner(g0, PerceptualWeights().for_loss("smart"), joint_weights())
    norms = []
    for axis in range(3):
        d = torch.zeros_like(g0)
        d[:, :, c, axis] = 1.0
        norms.append(float(apply_in_space(s, d)[0, 0, c, axis]))
    assert max(norms) < 0.5


def test_bone_preconditioner_is_the_identity_without_a_bone_or_position_term() -> None:
    g0 = _pose_clip(t=2)
    assert bone_preconditioner(g0, PerceptualWeights().for_loss("l2"), joint_weights()) is None
    assert bone_preconditioner(g0, PerceptualWeights().for_loss("l2-acc"), joint_weights()) is None
    assert bone_preconditioner(g0, {"bone": 0.7}, joint_weights()) is None
    assert bone_preconditioner(g0, PerceptualWeights().for_loss("l2-bone"), joint_weights()) is not None
    x = torch.randn(2, 5, 25, 3)
    assert apply_in_space(None, x) is x
