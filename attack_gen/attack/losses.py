"""SMART's perceptual loss and its ablations, as pure functions on tensors.

Every function takes motions ``(N, T, V=25, C=3)`` in *geometric units*: physical
coordinates (metres) divided by one global scale per dataset (the model's single
normalisation ``std``). That keeps bone lengths and accelerations true to the body,
unlike per-coordinate normalised values, and makes the weights mean the same on every
dataset. Each function returns one value per clip, ``(N,)``; a batch averages them.

The paper's loss (SPEC §2), read literally::

    Lp    = alpha * l_dyn + (1 - alpha) * l_bl                          alpha = 0.3
    l_dyn = beta0 * sum_{t,j,c} (gamma_j * (q - q^)_{t,j,c})^2           beta0 = 0.6
          + beta2 * sum_{t,j,c} (gamma_j * (q'' - q^'')_{t,j,c})^2       beta2 = 0.4
    l_bl  = 1/M * sum_t sum_b (BL_b(q_t) - BL_b(q^_t))^2                  M = T frames

``gamma_j`` is 0.04 for the 5 spinal joints and 0.02 for the other 20; the n-th
derivative is the n-th forward difference divided by dt^n, dt = 1/fps of the clip.

Ablations keep the paper's weight for every term they contain and drop the others
(no re-normalisation), so a term weighs the same in every variant:

=========  =================  =====================  =================
name       position (a*b0)    acceleration (a*b2)    bone (1 - a)
=========  =================  =====================  =================
smart      0.18               0.12                   0.70
l2         0.18               -                      -
l2-acc     0.18               0.12                   -
l2-bone    0.18               -                      0.70
=========  =================  =====================  =================
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import torch

from stimuli.skeleton import STANDARD
from stimuli.skeleton import Skeleton

__all__ = [
    "TERMS",
    "LOSSES",
    "BONE_EPS",
    "PerceptualWeights",
    "list_losses",
    "joint_weights",
    "derivative",
    "bone_lengths",
    "position_term",
    "acceleration_term",
    "bone_term",
    "perceptual_terms",
    "perceptual_loss",
    "perceptual_metrics",
    "dynamics_preconditioner",
    "apply_in_time",
    "bone_preconditioner",
    "apply_in_space",
    "whitens_bones",
]

TERMS = ("position", "acceleration", "bone")
"""The raw terms of the perceptual loss, before weighting."""

LOSSES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "smart": ("position", "acceleration", "bone"),
        "l2": ("position",),
        "l2-acc": ("position", "acceleration"),
        "l2-bone": ("position", "bone"),
    }
)
"""Perceptual-loss variants by name -> the terms they contain."""

BONE_EPS = 1e-8
"""Added to the squared bone vector before the square root: zero-length bones (0-10,
5-10, 13-12 of the standard skeleton) then have a finite, zero gradient."""


def list_losses() -> list[str]:
    return list(LOSSES)


@dataclass(frozen=True)
class PerceptualWeights:
    """The paper's constants; :meth:`for_loss` turns them into per-term weights."""

    alpha: float = 0.3
    beta0: float = 0.6
    beta2: float = 0.4
    gamma_spine: float = 0.04
    gamma_other: float = 0.02

    def __post_init__(self) -> None:
        for name in ("alpha", "beta0", "beta2", "gamma_spine", "gamma_other"):
            value = getattr(self, name)
            if not value >= 0.0:  # also rejects NaN
                raise ValueError(f"perceptual weight {name} must be >= 0, got {value}")
        if self.alpha > 1.0:
            raise ValueError(f"perceptual weight alpha must be in [0, 1], got {self.alpha}")

    def for_loss(self, name: str) -> dict[str, float]:
        """Weight of each raw term in loss ``name`` (terms it lacks are absent)."""
        if name not in LOSSES:
            raise KeyError(f"unknown perceptual loss {name!r}; known: {', '.join(LOSSES)}")
        full = {
            "position": self.alpha * self.beta0,
            "acceleration": self.alpha * self.beta2,
            "bone": 1.0 - self.alpha,
        }
        return {term: full[term] for term in LOSSES[name]}


def joint_weights(
    skeleton: Skeleton = STANDARD, spine: float = 0.04, other: float = 0.02, *, device: torch.device | None = None
) -> torch.Tensor:
    """``gamma``: ``(V,)`` with ``spine`` on the skeleton's spinal joints, ``other`` elsewhere."""
    gamma = torch.full((skeleton.num_joints,), float(other), device=device)
    gamma[list(skeleton.spine)] = float(spine)
    return gamma


def derivative(x: torch.Tensor, order: int, fps: float) -> torch.Tensor:
    """n-th forward difference over frames divided by dt^n: ``(N, T, V, C) -> (N, T - n, V, C)``."""
    if order < 0:
        raise ValueError(f"derivative order must be >= 0, got {order}")
    for _ in range(order):
        x = (x[:, 1:] - x[:, :-1]) * fps
    return x


def bone_lengths(x: torch.Tensor, skeleton: Skeleton = STANDARD, eps: float = BONE_EPS) -> torch.Tensor:
    """Length of every (child, parent) bone in every frame: ``(N, T, V, C) -> (N, T, B)``."""
    vec = x[:, :, skeleton.bone_children] - x[:, :, skeleton.bone_parents]
    return torch.sqrt((vec * vec).sum(-1) + eps)


def _weighted_sq(d: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``sum_{t,j,c} (gamma_j d_{t,j,c})^2`` per clip: ``(N, T, V, C) -> (N,)``."""
    return (d * gamma[:, None]).square().sum(dim=(1, 2, 3))


def position_term(q: torch.Tensor, q_hat: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``sum_{t,j,c} (gamma_j (q - q^))^2`` per clip ``(N,)``."""
    return _weighted_sq(q_hat - q, gamma)


def acceleration_term(q: torch.Tensor, q_hat: torch.Tensor, gamma: torch.Tensor, fps: float) -> torch.Tensor:
    """``sum_{t,j,c} (gamma_j (q'' - q^''))^2`` per clip ``(N,)``; 0 for clips under 3 frames."""
    # the second difference is linear, so differentiate the deviation once: (N, T-2, V, C)
    return _weighted_sq(derivative(q_hat - q, 2, fps), gamma)


def bone_term(
    q: torch.Tensor, q_hat: torch.Tensor, skeleton: Skeleton = STANDARD, *, reference: torch.Tensor | None = None
) -> torch.Tensor:
    """``1/M sum_t sum_b (BL_b(q_t) - BL_b(q^_t))^2`` per clip ``(N,)``.

    ``reference`` may carry ``bone_lengths(q)`` precomputed (the attack reuses it).
    """
    ref = bone_lengths(q, skeleton) if reference is None else reference
    return (bone_lengths(q_hat, skeleton) - ref).square().sum(-1).mean(-1)


def perceptual_terms(
    q: torch.Tensor,
    q_hat: torch.Tensor,
    fps: float,
    *,
    gamma: torch.Tensor,
    skeleton: Skeleton = STANDARD,
    terms: tuple[str, ...] = TERMS,
    bone_reference: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The raw (unweighted) terms named in ``terms``, each ``(N,)``."""
    unknown = set(terms) - set(TERMS)
    if unknown:
        raise KeyError(f"unknown perceptual term(s) {sorted(unknown)}; known: {', '.join(TERMS)}")
    out: dict[str, torch.Tensor] = {}
    if "position" in terms:
        out["position"] = position_term(q, q_hat, gamma)
    if "acceleration" in terms:
        out["acceleration"] = acceleration_term(q, q_hat, gamma, fps)
    if "bone" in terms:
        out["bone"] = bone_term(q, q_hat, skeleton, reference=bone_reference)
    return out


def perceptual_loss(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """``sum_k weights[k] * terms[k]`` per clip ``(N,)``; every weighted term must be present."""
    missing = set(weights) - set(terms)
    if missing:
        raise KeyError(f"perceptual loss needs term(s) {sorted(missing)}; got {sorted(terms)}")
    parts = [w * terms[k] for k, w in weights.items()]
    if not parts:
        raise ValueError("perceptual loss with no terms")
    return torch.stack(parts).sum(0)


@torch.no_grad()
def perceptual_metrics(
    q: torch.Tensor, q_hat: torch.Tensor, fps: float, skeleton: Skeleton = STANDARD
) -> dict[str, torch.Tensor]:
    """Interpretable deviations per clip ``(N,)`` on *physical* motions (metres).

    - ``mean_joint_displacement_m``: mean over frames and joints of ``|q^ - q|`` (m);
    - ``acceleration_deviation``: mean over frames and joints of ``|q^'' - q''|`` (m/s^2);
    - ``bone_length_deviation_m``: mean over frames and bones of ``|BL(q^) - BL(q)|`` (m).
    """
    d = q_hat - q
    acc = derivative(d, 2, fps)
    return {
        "mean_joint_displacement_m": d.norm(dim=-1).mean(dim=(1, 2)),
        "acceleration_deviation": acc.norm(dim=-1).mean(dim=(1, 2)) if acc.shape[1] else d.new_zeros(len(d)),
        "bone_length_deviation_m": (bone_lengths(q_hat, skeleton, 0.0) - bone_lengths(q, skeleton, 0.0))
        .abs()
        .mean(dim=(1, 2)),
    }


def dynamics_preconditioner(
    num_frames: int, fps: float, weights: Mapping[str, float], *, device: torch.device | None = None
) -> torch.Tensor | None:
    """The ``(T, T)`` map ``P = (I + rho D^T D)^(-1/2)`` that whitens ``l_dyn``; None if there is nothing to whiten.

    ``D`` is the second forward difference over frames divided by ``dt^2`` (as in
    :func:`acceleration_term`) and ``rho = weights["acceleration"] / weights["position"]``
    (``beta2 / beta0`` for the paper's loss). For every joint and axis the weighted
    dynamics terms are ``w_pos gamma_j^2 d^T (I + rho D^T D) d`` of the deviation's time
    series ``d``; with ``d = P u`` this is ``w_pos gamma_j^2 |u|^2``: diagonal in ``u``.
    ``gamma_j`` is a common factor of both terms, so one ``P`` serves every joint.

    ``P`` is symmetric positive definite (so invertible: every perturbation has exactly
    one ``u``) and leaves the constant and linear-in-time deviations unchanged (the null
    space of ``D``); the jitter modes, whose acceleration the loss penalises by up to
    ``16 rho`` (``~9e6`` at 30 fps), are shrunk by the square root of that. Returns None
    when the loss has no acceleration term, no position term, or under 3 frames (then the
    dynamics term is already diagonal, or ``P`` is undefined): the identity.
    """
    w_acc, w_pos = float(weights.get("acceleration", 0.0)), float(weights.get("position", 0.0))
    if num_frames < 3 or w_acc <= 0.0 or w_pos <= 0.0:
        return None
    t = int(num_frames)
    d = torch.zeros(t - 2, t, dtype=torch.float64)
    idx = torch.arange(t - 2)
    d[idx, idx], d[idx, idx + 1], d[idx, idx + 2] = 1.0, -2.0, 1.0
    d = d * float(fps) ** 2
    h = torch.eye(t, dtype=torch.float64) + (w_acc / w_pos) * (d.T @ d)
    evals, evecs = torch.linalg.eigh(h)
    p = (evecs * evals.rsqrt()) @ evecs.T
    p = 0.5 * (p + p.T)  # exactly symmetric
    return p.to(device=device, dtype=torch.float32)


def apply_in_time(p: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """``P`` along the frame axis of ``x (N, T, V, C)``; the identity for ``p=None``."""
    if p is None:
        return x
    return torch.einsum("st,ntvc->nsvc", p.to(x.dtype), x)


ZERO_BONE = 1e-3
"""Geometric units (``std`` / 1000 in metres, i.e. under a millimetre when the model's ``std``
is under a metre): a bone shorter than this counts as a point in :func:`bone_preconditioner`."""

MAX_POINT_BONES = 6
"""Point bones per frame given all three directions in :func:`bone_preconditioner`; any further
ones get one row (along x). Real captures have a few (HDM05 on the standard skeleton: 3)."""


def whitens_bones(weights: Mapping[str, float]) -> bool:
    """Whether :func:`bone_preconditioner` has anything to do for a loss with these term weights."""
    return float(weights.get("bone", 0.0)) > 0.0 and float(weights.get("position", 0.0)) > 0.0


@functools.lru_cache(maxsize=16)
def _bone_index(children: tuple[int, ...], parents: tuple[int, ...], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(children, device=device), torch.tensor(parents, device=device)


def _bones(skeleton: Skeleton, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Child and parent joint of every bone, as index tensors on ``device`` (made once per device)."""
    return _bone_index(
        tuple(int(i) for i in skeleton.bone_children), tuple(int(i) for i in skeleton.bone_parents), str(device)
    )


def _space(
    skeleton: Skeleton,
    gamma: torch.Tensor,
    dof: tuple[torch.Tensor, torch.Tensor] | None,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bones ``(children, parents)`` and the per-joint ``G^(-1)`` of the coordinates the attack moves.

    Without ``dof`` every joint moves: the skeleton's bones and ``1 / gamma^2``. With the
    canonical threat model's ``dof = (src, keep)`` (:func:`attack_gen.attack.engine.dof_projection`)
    only the first joint of each coincident group moves, for the whole group, and the fixed
    ones (``keep == 0``) not at all: each bone joins its ends' first joints (a bone inside a
    group is always a point and drops out), a moving joint's weight is the sum of its
    group's ``gamma^2``, and ``G^(-1)`` is 0 where a joint does not move.
    """
    ch, pa = _bones(skeleton, device)
    g2 = gamma.to(device=device, dtype=dtype) ** 2
    if dof is None:
        return ch, pa, 1.0 / g2
    src, keep = (t.to(device) for t in dof)
    ch, pa = src[ch], src[pa]
    real = ch != pa
    ch, pa = ch[real], pa[real]
    g_eff = torch.zeros_like(g2).index_add(0, src, g2)
    moves = (src == torch.arange(len(src), device=device)) & (keep.to(dtype) > 0)
    g_inv = torch.where(moves, 1.0 / g_eff.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(g2))
    return ch, pa, g_inv


@torch.no_grad()
def bone_preconditioner(
    g0: torch.Tensor,
    weights: Mapping[str, float],
    gamma: torch.Tensor,
    skeleton: Skeleton = STANDARD,
    dof: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor | None:
    """Per clip and frame, the map ``S`` (on ``V*C`` coordinates) that whitens ``l_bl`` against the position term.

    ``g0 (N, T, V, C)`` is the original clip in geometric units. Linearised at ``g0``, frame
    ``t``'s bone term is ``(w_bone / M) |J_t d|^2``: ``J_t`` has a row per bone, ``e_b`` on the
    child's coordinates and ``-e_b`` on the parent's, ``e_b`` the bone's unit direction;
    the position term is ``w_pos d^T G d`` with ``G = diag(gamma_j^2)``. With
    ``A = (w_bone / (M w_pos)) G^(-1/2) J^T J G^(-1/2)`` and
    ``S = G^(-1/2) (I + A)^(-1/2) G^(1/2)``, a deviation ``d = S v`` gives the sum of both
    terms as ``w_pos v^T G v``: diagonal, like the position term alone.

    ``S`` is invertible (a change of variables: same objective, same minima). It leaves
    directions that keep every bone's length to first order (rotations of limbs,
    translations of the body) unchanged and shrinks bone-stretching ones by up to the
    square root of their curvature ratio (~1/20 for the paper's weights), so Adam's steps
    turn limbs rather than stretch them. A bone shorter than :data:`ZERO_BONE` (joints
    that coincide in the capture) is isotropic: any relative move of its joints is a
    length change (three rows of ``J``, up to :data:`MAX_POINT_BONES` such bones per frame).

    ``J`` has far fewer rows (``R``, about the number of bones) than ``S`` has columns, so
    ``S`` is kept factored: with ``c = w_bone / (M w_pos)`` and the eigenvectors ``U`` and
    eigenvalues ``l`` of the small ``K = c J G^(-1) J^T`` (``R x R``),
    ``S = I + G^(-1) J^T W J`` with ``W = c U diag(((1 + l)^(-1/2) - 1) / l) U^T``
    (the push-through identity). Each row of ``J`` is a direction on one bone, so the
    result is ``(N, T, R, C + 1 + R)``: per frame and row its direction, its bone's index
    and the row of ``W``, for :func:`apply_in_space`. None when the loss has no bone term
    or no position term (nothing to whiten against: the identity).

    ``dof``: the canonical threat model's degrees of freedom (see :func:`_space`); ``S`` then
    whitens the loss in the coordinates that move, so a bone with a fixed or tied end is
    compensated on its moving end only.
    """
    if not whitens_bones(weights):
        return None
    w_bone, w_pos = float(weights["bone"]), float(weights["position"])
    n, t, v, c = g0.shape
    dev = g0.device
    dt = g0.dtype
    ch, pa, g_inv = _space(skeleton, gamma, dof, dev, dt)
    nb = len(ch)
    vec = g0[:, :, ch] - g0[:, :, pa]  # (N, T, nb, C)
    norm = vec.norm(dim=-1)
    e = vec / norm.clamp_min(1e-12)[..., None]
    point = norm < ZERO_BONE  # (N, T, nb)
    # a point bone's row takes x; the first MAX_POINT_BONES of a frame also get extra rows for y and z
    e = torch.where(point[..., None], torch.tensor([1.0, 0.0, 0.0], dtype=e.dtype, device=dev), e)
    rank = point.long().cumsum(-1) - 1  # order of each point bone within its frame
    extra = point & (rank < MAX_POINT_BONES)
    rows = nb + 2 * MAX_POINT_BONES
    # row r of J: a direction on bone bone[r] (+ on its child's coordinates, - on its parent's)
    bone = torch.zeros(n, t, rows, dtype=torch.long, device=dev)
    bone[:, :, :nb] = torch.arange(nb, device=dev)
    dirs = torch.zeros(n, t, rows, c, dtype=dt, device=dev)
    dirs[:, :, :nb] = e
    nn_, tt, bb = torch.nonzero(extra, as_tuple=True)
    for axis in (1, 2):
        r = nb + 2 * rank[nn_, tt, bb] + (axis - 1)
        bone[nn_, tt, r] = bb
        dirs[nn_, tt, r, axis] = 1.0
    # K = J G^(-1) J^T: rows r, s meet on the joints their bones share
    on = torch.zeros(nb, v, dtype=dt, device=dev)
    on[torch.arange(nb, device=dev), ch] = 1.0
    on[torch.arange(nb, device=dev), pa] = -1.0
    share = torch.einsum("aj,bj,j->ab", on, on, g_inv)  # (nb, nb)
    k = share[bone[..., :, None], bone[..., None, :]] * (dirs @ dirs.transpose(-1, -2))
    scale = w_bone / (max(t, 1) * w_pos)
    lam, u = torch.linalg.eigh(scale * k)
    lam = lam.clamp_min(0.0)
    f = torch.where(lam > 1e-12, ((1.0 + lam).rsqrt() - 1.0) / lam.clamp_min(1e-12), torch.full_like(lam, -0.5))
    w = scale * (u * f[..., None, :]) @ u.transpose(-1, -2)
    return torch.cat([dirs, bone[..., None].to(dt), w], dim=-1)


def apply_in_space(
    s: torch.Tensor | None,
    x: torch.Tensor,
    gamma: torch.Tensor | None = None,
    skeleton: Skeleton = STANDARD,
    dof: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``S x`` per clip and frame, ``s`` from :func:`bone_preconditioner`, ``x (N, T, V, C)``; the identity for None.

    ``gamma`` and ``dof`` must be those ``s`` was made with (default :func:`joint_weights`, all joints).
    ``S x = x + G^(-1) J^T W J x``, with ``J`` applied through the bones (gathers and
    scatters, never a dense ``V C x V C`` matrix).
    """
    if s is None:
        return x
    c = x.shape[-1]
    s = s.to(x.dtype)
    dirs, bone, w = s[..., :c], s[..., c].long(), s[..., c + 1 :]
    if gamma is None:
        gamma = joint_weights(skeleton, device=x.device)
    ch, pa, g_inv = _space(skeleton, gamma, dof, x.device, x.dtype)
    d = x[:, :, ch] - x[:, :, pa]  # (N, T, nb, C)
    a = (dirs * torch.gather(d, 2, bone[..., None].expand(-1, -1, -1, c))).sum(-1)  # J x: (N, T, R)
    b = torch.matmul(w, a[..., None])[..., 0]  # W J x
    per_bone = torch.zeros_like(d).scatter_add(2, bone[..., None].expand(-1, -1, -1, c), dirs * b[..., None])
    back = torch.zeros_like(x).index_add(2, ch, per_bone).index_add(2, pa, -per_bone)  # J^T W J x
    return x + back * g_inv[:, None]
