"""The SMART optimiser: many clips at once, each leaving the batch when it is done.

For every clip, minimise ``L = w Lc + (1 - w) Lp`` (``w = 0.4``) over ``z``, the clip in
the model's normalised input space, starting at ``z0 = normalise(q)``, with Adam
(learning rate in normalised units, as in the paper) for at most ``iterations`` steps.
``Lp`` is computed on true geometry, ``q / std = z + mean / std`` (see :mod:`.losses`).

How a batch runs (:func:`attack`):

- Up to ``batch_size`` clips are *active*. Each iteration does one forward pass, computes
  every active clip's loss and success, and one backward pass of the *sum* of the
  losses of the clips that go on (a sum, not a mean: each clip then gets exactly the
  gradient of its own loss whatever the batch size).
- Iteration ``k`` evaluates the iterate after ``k`` Adam steps. A clip finishes at the
  first iterate that succeeds (it leaves the batch: compaction, not freezing), when it
  has used its ``iterations`` steps, when its loss, logits or gradient is NaN/Inf (it is
  marked ``nonfinite`` with the reason; the others go on), or at step 0 when the model
  does not recognise it (``skipped``). Freed places are refilled from the queue.
- Adam is implemented here on the batch tensor with per-clip moments and step counts,
  compacted together with the clips, so removing or adding clips never disturbs the
  others: a clip's result does not depend on which clips share its batch (up to the
  rounding of the model's batched kernels, ~1e-7 relative, which Adam's normalised steps
  can amplify where a gradient element is near zero).
- The kept example ("best") of a successful clip is its *first* successful iterate: the
  clip stops there (the paper's stop rule), and as ``Lp`` is 0 at ``q`` and typically
  grows along the path, it is normally also the least perceptible success reached.

Two optimiser choices the paper leaves open (both documented options; setting
``precondition="none"`` and ``temperature=1`` gives the literal reading):

- **Preconditioned Adam** (``precondition="perceptual"``, the default). Read literally, the
  acceleration term carries ``1/dt^4`` (8.1e5 at 30 fps), so ``Lp`` is extremely stiff
  along high temporal frequencies: Adam's sign-like steps on ``z`` add frame-to-frame
  jitter that this term immediately punishes, and the iterate stalls a few millimetres
  from ``q``. Adam therefore runs on ``u`` with ``z = z0 + P S u``: ``S`` per frame whitens
  the bone term against the position term (:func:`.losses.bone_preconditioner`), then
  ``P = (I + rho D^T D)^(-1/2)`` along the frame axis whitens the dynamics term
  (:func:`.losses.dynamics_preconditioner`); without ``S`` (``precondition="dynamics"``)
  the first steps, ``lr`` times the sign of the gradient whatever the loss, stretch bones
  as much as l2's. ``S`` is applied before ``P`` so the last map is the temporal
  smoothing. Each is the identity when the loss lacks its term. This is an exact change
  of variables: the objective, its minima, the start ``q^0 = q`` and the stop rule are
  unchanged; only the path Adam takes differs. Measurements: ``docs/attack-notes.md``.
- **Tempered Phi in Lc** (``temperature``, default :data:`DEFAULT_TEMPERATURE`). Well-trained
  recognisers give their training-like clips ``p > 0.99``; there the cross-entropy and
  entropy gradients vanish like ``1 - p`` while ``Lp``'s grow with the perturbation, so
  ``L`` has a local minimum next to ``q`` and the attack never leaves it. ``Lc`` is
  evaluated on ``softmax(logits / T)``; labels, success and the reported probabilities
  use the plain softmax. Only AB tempers by default (T = 3): ABN's entropy is already
  largest for a flat distribution, and tempering it flattens the target so far that the
  push on the true label vanishes; SA's cross-entropy to a target is not saturated (its
  gradient is about 1 at a small target probability).

Two threat models (``threat_model``):

- ``canonical`` (the default): the recognizer is attacked as its pipeline sees a motion,
  through its own preprocessing (:meth:`attack_gen.recognizer.Recognizer.classify`: tie
  the coincident joints, face forward, root-centre). The attack starts from the clip's
  canonical form and moves only the skeleton's real degrees of freedom: with per-frame
  centring the root stays at the origin, and every joint of a coincident group moves with
  the group's first joint (the projection ``T`` in ``z = z0 + T P S u``), so no
  zero-length bone is split and the perceptual loss and metrics are those of the
  canonical motion. A clip succeeds only when its stored example, passed through the
  dataset's own numpy pipeline again (:func:`attack_gen.recognizer.pipeline_logits`),
  still passes the strategy's test; otherwise the attack goes on. So here robust
  success equals success by construction.
- ``raw``: the paper's and the authors' setting, for reproduction: the backbone on the
  normalised motion with no preprocessing, all 75 numbers per frame free. Robust success
  is reported beside success: the share of successes that still pass after the
  pipeline's re-preprocessing.

The model runs in eval mode with its parameters' ``requires_grad`` off during the attack
(both restored afterwards). Nothing is random except SA targets (:func:`resolve_targets`),
so a run is deterministic for a seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Callable
from typing import Iterator
from typing import Sequence

import numpy as np
import torch
from torch import nn

from attack_gen.data.preprocess import Canonical
from attack_gen.recognizer import pipeline_logits
from stimuli.attack_results import STATUSES
from stimuli.errors import SmartStudyError
from stimuli.skeleton import STANDARD
from stimuli.skeleton import Skeleton

from .losses import LOSSES
from .losses import PerceptualWeights
from .losses import apply_in_space
from .losses import apply_in_time
from .losses import bone_lengths
from .losses import bone_preconditioner
from .losses import dynamics_preconditioner
from .losses import joint_weights
from .losses import perceptual_loss
from .losses import perceptual_metrics
from .losses import perceptual_terms
from .losses import whitens_bones
from .strategies import ABN_LOSSES
from .strategies import STRATEGIES
from .strategies import ClassContext
from .strategies import Strategy
from .strategies import build_strategy
from .strategies import random_targets

__all__ = [
    "AttackError",
    "AttackConfig",
    "ClipResult",
    "STATUSES",
    "DEFAULT_LR",
    "PRECONDITIONERS",
    "DEFAULT_TEMPERATURE",
    "THREAT_MODELS",
    "attack",
    "resolve_targets",
    "adam_step",
    "dof_projection",
    "project",
]

DEFAULT_LR = 0.005
"""Adam learning rate in normalised units: the top of the paper's range [0.0005, 0.005]."""

PRECONDITIONERS = ("perceptual", "dynamics", "none")
"""Where Adam takes its per-coordinate steps: ``perceptual``, on ``u`` with ``z = z0 + P S u``,
``S`` whitening the loss's bone term within each frame (:func:`.losses.bone_preconditioner`)
and ``P`` its dynamics term along time (:func:`.losses.dynamics_preconditioner`);
``dynamics``, ``P`` only; ``none``, on ``q^`` itself. Each map is the identity when the
chosen loss lacks its term."""

DEFAULT_TEMPERATURE: dict[str, float] = {"ab": 3.0, "abn": 1.0, "sa": 1.0}
"""Per strategy, ``T`` of ``Phi = softmax(logits / T)`` inside ``Lc`` when none is given (see
the module docstring); 1 is the plain softmax read literally from the paper."""

THREAT_MODELS = ("canonical", "raw")
"""``canonical``: attack the recognizer through its own preprocessing, on the skeleton's real
degrees of freedom; ``raw``: the backbone on unpreprocessed input (see the module docstring)."""

"""A clip's outcome: not attacked yet; fooled the model; used every iteration without
success; NaN/Inf during optimisation; not attacked (not recognised, or SA target equal
to its true label)."""


class AttackError(SmartStudyError, ValueError):
    """Bad attack settings or inputs."""


@dataclass
class AttackConfig:
    """Everything that decides an attack; saved in every result file."""

    strategy: str = "ab"
    threat_model: str = "canonical"
    """See :data:`THREAT_MODELS`."""
    top_n: int = 3
    """ABN: success once the true label leaves the top N."""
    abn_loss: str = "entropy"
    """ABN class loss: ``entropy`` (the paper) or ``uniform-rest`` (see :mod:`.strategies`)."""
    target: int | None = None
    """SA: one target class for every clip; None draws a seeded random one per clip."""
    loss: str = "smart"
    iterations: int = 300
    lr: float = DEFAULT_LR
    lr_final: float | None = None
    """None: constant ``lr``. Else the rate decays geometrically from ``lr`` at a clip's
    first step to ``lr_final`` at its last possible one (step ``iterations - 1``)."""
    precondition: str = "perceptual"
    """See :data:`PRECONDITIONERS` and the module docstring."""
    temperature: float | None = None
    """None: the strategy's :data:`DEFAULT_TEMPERATURE`. Only ``Lc`` sees it (labels, success
    and reported probabilities use the plain softmax)."""
    class_weight: float = 0.4
    """``w`` in ``L = w Lc + (1 - w) Lp``."""
    alpha: float = 0.3
    beta0: float = 0.6
    beta2: float = 0.4
    gamma_spine: float = 0.04
    gamma_other: float = 0.02
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    batch_size: int = 32
    """Clips optimised together; does not change any clip's result."""
    seed: int = 0
    topk: int = 5
    """How many top classes (and probabilities) to record per clip."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise AttackError(f"unknown attack strategy {self.strategy!r}; known: {', '.join(STRATEGIES)}")
        if self.threat_model not in THREAT_MODELS:
            raise AttackError(f"unknown threat model {self.threat_model!r}; known: {', '.join(THREAT_MODELS)}")
        if self.loss not in LOSSES:
            raise AttackError(f"unknown perceptual loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.top_n < 1:
            raise AttackError(f"top-n must be >= 1, got {self.top_n}")
        if self.iterations < 0:
            raise AttackError(f"iterations must be >= 0, got {self.iterations}")
        if not self.lr > 0:
            raise AttackError(f"learning rate must be > 0, got {self.lr}")
        if self.lr_final is not None and not self.lr_final > 0:
            raise AttackError(f"final learning rate must be > 0, got {self.lr_final}")
        if self.precondition not in PRECONDITIONERS:
            raise AttackError(f"unknown preconditioner {self.precondition!r}; known: {', '.join(PRECONDITIONERS)}")
        if self.temperature is None and self.strategy in DEFAULT_TEMPERATURE:
            self.temperature = DEFAULT_TEMPERATURE[self.strategy]
        if self.temperature is not None and not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise AttackError(f"temperature must be a positive number, got {self.temperature}")
        if self.abn_loss not in ABN_LOSSES:
            raise AttackError(f"unknown ABN loss {self.abn_loss!r}; known: {', '.join(ABN_LOSSES)}")
        if not 0.0 <= self.class_weight <= 1.0:
            raise AttackError(f"class weight w must be in [0, 1], got {self.class_weight}")
        if not (0.0 <= self.adam_beta1 < 1.0 and 0.0 <= self.adam_beta2 < 1.0 and self.adam_eps > 0):
            raise AttackError(f"bad Adam settings: betas ({self.adam_beta1}, {self.adam_beta2}), eps {self.adam_eps}")
        if self.batch_size < 1:
            raise AttackError(f"batch size must be >= 1, got {self.batch_size}")
        if self.topk < 1:
            raise AttackError(f"topk must be >= 1, got {self.topk}")
        if self.target is not None and self.strategy != "sa":
            raise AttackError(f"a target class is only used by the SA strategy, not {self.strategy!r}")
        try:
            self.perceptual_weights()
        except ValueError as exc:
            raise AttackError(str(exc)) from None

    def perceptual_weights(self) -> PerceptualWeights:
        return PerceptualWeights(self.alpha, self.beta0, self.beta2, self.gamma_spine, self.gamma_other)

    def term_weights(self) -> dict[str, float]:
        """Weight of each raw perceptual term in this run's ``Lp``."""
        return self.perceptual_weights().for_loss(self.loss)

    def build_strategy(self) -> Strategy:
        return build_strategy(self.strategy, self.top_n, self.abn_loss)

    @property
    def label(self) -> str:
        """The paper's column: AB, AB3, AB5 or SA."""
        return self.build_strategy().label

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def learning_rates(self, step: torch.Tensor) -> torch.Tensor | float:
        """The rate of each clip's next Adam step, given the steps it has done ``(B,)``."""
        if self.lr_final is None:
            return self.lr
        frac = step.to(torch.float64) / max(self.iterations - 1, 1)
        return (self.lr * (self.lr_final / self.lr) ** frac.clamp(max=1.0)).to(torch.float32)

    def identity(self) -> dict[str, Any]:
        """The settings a result depends on (everything but the batch size)."""
        return {k: v for k, v in self.to_json().items() if k != "batch_size"}


@dataclass
class ClipResult:
    """The outcome for one clip (motions in metres)."""

    index: int
    status: str
    reason: str
    iterations: int
    adversarial: np.ndarray
    """``(T, 25, 3)``: the kept successful iterate, else the last one."""
    true_label: int
    original_label: int
    final_label: int
    target: int
    original_topk: np.ndarray
    original_topk_prob: np.ndarray
    final_topk: np.ndarray
    final_topk_prob: np.ndarray
    losses: dict[str, float] = field(default_factory=dict)
    """``class``, ``perceptual``, ``total`` and the raw ``position``, ``acceleration``,
    ``bone`` terms, at the kept iterate."""
    metrics: dict[str, float] = field(default_factory=dict)
    """See :func:`attack_gen.attack.losses.perceptual_metrics`."""
    robust: bool = False
    """A success whose example still passes the strategy's test after the dataset's pipeline
    re-preprocesses it (always equal to :attr:`success` under the ``canonical`` threat model)."""

    @property
    def success(self) -> bool:
        return self.status == "success"


def resolve_targets(config: AttackConfig, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """SA targets per clip (-1 for other strategies): the fixed one, or seeded random ones."""
    labels = np.asarray(labels, dtype=np.int64)
    if config.strategy != "sa":
        return np.full(len(labels), -1, dtype=np.int64)
    if config.target is not None:
        if not 0 <= config.target < num_classes:
            raise AttackError(f"target class {config.target} is outside 0..{num_classes - 1}")
        return np.full(len(labels), config.target, dtype=np.int64)
    return random_targets(labels, num_classes, config.seed)


def adam_step(
    z: torch.Tensor,
    grad: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    step: torch.Tensor,
    lr: float | torch.Tensor,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """One Adam update in place, per clip: ``z, grad, m, v (B, ...)``, ``step (B,)`` steps done so far.

    ``lr`` is one rate for all clips or one per clip ``(B,)``.
    """
    shape = (-1, *([1] * (z.dim() - 1)))
    t = (step + 1).to(z.dtype).view(shape)
    if torch.is_tensor(lr):
        lr = lr.to(device=z.device, dtype=z.dtype).view(shape)
    m.mul_(beta1).add_(grad, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (v / (1 - beta2**t)).sqrt_().add_(eps)
    z.addcdiv_(m, denom * ((1 - beta1**t) / lr), value=-1.0)


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; both restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


@dataclass
class _Batch:
    """The active clips: rows into the input, iterate, references, Adam state, context."""

    rows: torch.Tensor  # (B,) long, CPU
    x: torch.Tensor  # (B, T, V, C) Adam's variable: the iterate z itself, or u with z = z0 + P S u
    z0: torch.Tensor  # (B, T, V, C) the original clip, normalised
    g0: torch.Tensor  # (B, T, V, C) original geometry q / std
    bl0: torch.Tensor  # (B, T, nb) original bone lengths (geometric units)
    m: torch.Tensor  # (B, T, V, C) Adam first moment (of x)
    v: torch.Tensor  # (B, T, V, C) Adam second moment
    step: torch.Tensor  # (B,) long, Adam steps done
    ctx: ClassContext
    s: torch.Tensor | None = None  # (B, T, R, C + 1 + R) the bone preconditioner per clip and frame, if any

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, keep: torch.Tensor) -> _Batch:
        dev = keep.to(self.x.device)
        return _Batch(
            self.rows[keep.cpu()],
            self.x[dev],
            self.z0[dev],
            self.g0[dev],
            self.bl0[dev],
            self.m[dev],
            self.v[dev],
            self.step[dev],
            self.ctx.select(dev),
            None if self.s is None else self.s[dev],
        )

    @staticmethod
    def cat(a: _Batch | None, b: _Batch) -> _Batch:
        if a is None or len(a) == 0:
            return b
        tensors = {
            f.name: torch.cat([getattr(a, f.name), getattr(b, f.name)])
            for f in dataclasses.fields(_Batch)
            if f.name not in ("ctx", "s")
        }
        s = None if a.s is None or b.s is None else torch.cat([a.s, b.s])
        return _Batch(**tensors, ctx=ClassContext.cat([a.ctx, b.ctx]), s=s)


def attack(
    model: nn.Module,
    motions: np.ndarray | torch.Tensor,
    labels: np.ndarray | Sequence[int],
    *,
    fps: float,
    config: AttackConfig,
    num_classes: int | None = None,
    targets: np.ndarray | None = None,
    indices: Sequence[int] | None = None,
    skeleton: Skeleton = STANDARD,
    on_results: Callable[[list[ClipResult]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ClipResult]:
    """Attack ``motions`` ``(N, T, 25, 3)`` (metres) with true ``labels`` ``(N,)``.

    ``model`` is a :class:`attack_gen.recognizer.Recognizer` (``forward`` on normalised
    input, ``mean`` ``(25, 3)`` and scalar ``std`` buffers). ``fps`` is the clips' frame
    rate (dt = 1/fps in the derivatives). ``targets`` (SA) default to
    :func:`resolve_targets` (which needs ``num_classes``). ``indices`` restricts the
    attack to those rows (resume); ``on_results`` receives each group of clips as they
    finish, ``progress`` the number finished. Returns one :class:`ClipResult` per
    attacked row, in the order of ``indices``.
    """
    if not fps > 0:
        raise AttackError(f"frame rate must be > 0, got {fps}")
    x = (motions if torch.is_tensor(motions) else torch.as_tensor(np.asarray(motions, dtype=np.float32))).float().cpu()
    if x.dim() != 4 or tuple(x.shape[2:]) != (skeleton.num_joints, 3):
        raise AttackError(f"motions: expected (N, T, {skeleton.num_joints}, 3), got {tuple(x.shape)}")
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if y.shape != (len(x),):
        raise AttackError(f"labels: expected shape ({len(x)},), got {tuple(y.shape)}")
    strategy = config.build_strategy()
    device = model.mean.device
    temperature = float(config.temperature)
    if not len(x) or (indices is not None and not len(indices)):
        return []
    canonical = config.threat_model == "canonical"
    if canonical:  # start from what the pipeline makes of each clip (the dataset's windows already are)
        with torch.no_grad():
            x = torch.cat([model.canonical(x[i : i + 256].to(device)).cpu() for i in range(0, len(x), 256)])
    if num_classes is None:
        with _frozen(model):
            num_classes = _num_outputs(model, x[:1].to(device))
    if targets is None:
        targets = resolve_targets(config, y.numpy(), num_classes)
    tgt = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    if tgt.shape != (len(x),):
        raise AttackError(f"targets: expected shape ({len(x)},), got {tuple(tgt.shape)}")
    order = list(range(len(x))) if indices is None else [int(i) for i in indices]
    mean, std = model.mean, model.std
    offset = (mean / std).to(device)  # geometry g = q / std = z + mean / std
    gamma = joint_weights(skeleton, config.gamma_spine, config.gamma_other, device=device)
    weights = config.term_weights()
    precond = (
        dynamics_preconditioner(x.shape[1], fps, weights, device=device)
        if config.precondition in ("perceptual", "dynamics")
        else None
    )
    spatial = config.precondition == "perceptual" and whitens_bones(weights)
    proj = dof_projection(model.spec, device) if canonical else None
    changed = precond is not None or spatial or proj is not None
    w = config.class_weight
    topk = config.topk

    results: dict[int, ClipResult] = {}
    queue: deque[int] = deque()
    early: list[ClipResult] = []
    for i in order:
        if strategy.needs_target and int(tgt[i]) == int(y[i]):
            early.append(_unattacked(i, x[i], int(y[i]), int(tgt[i]), "SA target equals the true label"))
        else:
            queue.append(i)
    if early:
        _deliver(early, results, on_results, progress)

    def start(rows: list[int]) -> _Batch:
        r = torch.tensor(rows, dtype=torch.long)
        q = x[r].to(device)  # (b, T, V, C) metres
        z0 = (q - mean) / std
        g0 = z0 + offset
        zeros = torch.zeros_like(z0)
        ctx = ClassContext(
            y[r].to(device),
            torch.full((len(r),), -1, dtype=torch.long, device=device),
            torch.zeros(len(r), num_classes, device=device),
            tgt[r].to(device),
        )
        x0 = zeros.clone() if changed else z0.clone()  # u0 = 0: z0 + P S 0 = z0, i.e. q^0 = q
        s = bone_preconditioner(g0, weights, gamma, skeleton, proj) if spatial else None
        return _Batch(
            r,
            x0,
            z0,
            g0,
            bone_lengths(g0, skeleton),
            zeros,
            zeros.clone(),
            torch.zeros(len(r), dtype=torch.long, device=device),
            ctx,
            s,
        )

    batch: _Batch | None = None
    with _frozen(model):
        while queue or (batch is not None and len(batch)):
            free = config.batch_size - (0 if batch is None else len(batch))
            refilled = free > 0 and bool(queue)
            if refilled:
                batch = _Batch.cat(batch, start([queue.popleft() for _ in range(min(free, len(queue)))]))
            assert batch is not None
            xv = batch.x.detach().requires_grad_(True)
            z = (
                batch.z0 + project(proj, apply_in_time(precond, apply_in_space(batch.s, xv, gamma, skeleton, proj)))
                if changed
                else xv
            )
            # canonical: through the recognizer's preprocessing (tying and centring are no-ops on z here,
            # the re-facing is not); raw: the backbone on z as it is
            logits = model(model.normalise(model.canonical(model.unnormalise(z)))) if canonical else model(z)  # (B, K)
            if refilled:  # the new clips' first forward pass: their original prediction
                with torch.no_grad():
                    if logits.shape[1] != num_classes:
                        raise AttackError(f"the model gives {logits.shape[1]} classes, expected {num_classes}")
                    fresh = batch.step == 0
                    probs = torch.softmax(logits.detach().float(), -1)
                    batch.ctx.original_probs[fresh] = probs[fresh]
                    batch.ctx.original[fresh] = probs[fresh].argmax(-1)
            terms = perceptual_terms(
                batch.g0, z + offset, fps, gamma=gamma, skeleton=skeleton, bone_reference=batch.bl0
            )
            lp = perceptual_loss(terms, weights)
            lc = strategy.class_loss(logits if temperature == 1.0 else logits / temperature, batch.ctx)
            total = w * lc + (1 - w) * lp  # (B,)

            with torch.no_grad():
                finite = torch.isfinite(total) & torch.isfinite(logits).all(-1)
                unrecognised = (batch.step == 0) & (batch.ctx.original != batch.ctx.true) & finite
                success = strategy.success(logits, batch.ctx) & finite & ~unrecognised
                robust = _robust(model, strategy, z, success, batch.ctx)
                if canonical:
                    success = robust  # a success must survive the pipeline's re-preprocessing; else go on
                go_on = finite & ~unrecognised & ~success & (batch.step < config.iterations)
            go_on_host = go_on.cpu()  # one sync per iteration
            grad_ok = torch.ones_like(go_on)
            if bool(go_on_host.any()):
                total[go_on].sum().backward()  # one backward pass: each clip gets its own loss's gradient
                assert xv.grad is not None
                grad_ok = torch.isfinite(xv.grad).flatten(1).all(1)
            keep = (go_on & grad_ok).cpu()
            if not bool(keep.all()):
                flags = torch.stack([finite, unrecognised, success, go_on & ~grad_ok]).cpu().numpy()
                status = np.select(
                    [~flags[0] | flags[3], flags[1], flags[2]], ["nonfinite", "skipped", "success"], "failed"
                )
                sel = torch.as_tensor(np.flatnonzero(~keep.numpy()))
                _deliver(
                    _finish(
                        batch,
                        z.detach(),
                        sel,
                        status[sel.numpy()],
                        flags[3],
                        robust.cpu().numpy(),
                        x,
                        logits,
                        terms,
                        lc,
                        lp,
                        total,
                        model,
                        fps,
                        topk,
                        config.iterations,
                        skeleton,
                    ),
                    results,
                    on_results,
                    progress,
                )
            grad = xv.grad
            batch = batch.select(keep)
            if len(batch):
                assert grad is not None
                adam_step(
                    batch.x,
                    grad[keep.to(grad.device)],
                    batch.m,
                    batch.v,
                    batch.step,
                    config.learning_rates(batch.step),
                    config.adam_beta1,
                    config.adam_beta2,
                    config.adam_eps,
                )
                batch.step += 1
    return [results[i] for i in order]


def dof_projection(spec: Canonical, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The map ``T`` onto the perturbations a canonical motion can have: ``(src (V,), keep (V,))``.

    Joint ``j`` takes the perturbation of joint ``src[j]`` (the first joint of its coincident
    group, else itself), times ``keep[j]``: 0 for the root's group when the pipeline centres
    every frame (the root stays at the origin), 1 elsewhere. Applied by :func:`project`.
    """
    n = STANDARD.num_joints
    src = torch.arange(n)
    for first, *others in spec.coincident:
        src[others] = first
    keep = torch.ones(n)
    if spec.center == "frame":
        keep[src == src[STANDARD.root]] = 0.0
    return src.to(device), keep.to(device)


def project(proj: tuple[torch.Tensor, torch.Tensor] | None, d: torch.Tensor) -> torch.Tensor:
    """``T d`` for a perturbation ``d (N, T, V, C)`` (see :func:`dof_projection`); the identity for None."""
    if proj is None:
        return d
    src, keep = proj
    return d.index_select(2, src) * keep.to(d.dtype)[:, None]


def _physical(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The iterate in metres on the CPU, exactly as a result stores it."""
    return (z * model.std + model.mean).float().cpu()


@torch.no_grad()
def _robust(
    model: nn.Module, strategy: Strategy, z: torch.Tensor, success: torch.Tensor, ctx: ClassContext
) -> torch.Tensor:
    """For the successful rows, whether their stored example still passes after the dataset's pipeline."""
    out = torch.zeros_like(success)
    if bool(success.any()):
        rows = success.nonzero()[:, 0]
        logits = pipeline_logits(model, _physical(model, z.detach()[rows]).numpy()).to(z.device)
        out[rows] = strategy.success(logits, ctx.select(rows)) & torch.isfinite(logits).all(-1)
    return out


@torch.no_grad()
def _num_outputs(model: nn.Module, x: torch.Tensor) -> int:
    return int(model(model.normalise(x)).shape[1])


def _deliver(
    group: list[ClipResult],
    results: dict[int, ClipResult],
    on_results: Callable[[list[ClipResult]], None] | None,
    progress: Callable[[int], None] | None,
) -> None:
    for r in group:
        results[r.index] = r
    if on_results is not None:
        on_results(group)
    if progress is not None:
        progress(len(group))


def _unattacked(i: int, q: torch.Tensor, true: int, target: int, reason: str) -> ClipResult:
    empty_i, empty_p = np.zeros(0, np.int64), np.zeros(0, np.float32)
    return ClipResult(
        i, "skipped", reason, 0, q.numpy().copy(), true, -1, -1, target, empty_i, empty_p, empty_i, empty_p
    )


@torch.no_grad()
def _finish(
    batch: _Batch,
    z: torch.Tensor,
    sel: torch.Tensor,
    status: np.ndarray,
    bad_grad: np.ndarray,
    robust: np.ndarray,
    x: torch.Tensor,
    logits: torch.Tensor,
    terms: dict[str, torch.Tensor],
    lc: torch.Tensor,
    lp: torch.Tensor,
    total: torch.Tensor,
    model: nn.Module,
    fps: float,
    topk: int,
    iterations: int,
    skeleton: Skeleton,
) -> list[ClipResult]:
    """Results for the rows ``sel`` (CPU indices) of the batch, which finish at this iterate ``z``."""
    rows = batch.rows[sel]
    dsel = sel.to(z.device)
    q = x[rows]  # (b, T, V, C) metres, the untouched input
    q_hat = _physical(model, z[dsel])
    k = min(topk, logits.shape[1])
    o_p, o_i = (t.cpu() for t in batch.ctx.original_probs[dsel].topk(k, -1))
    lg = logits.detach()[dsel].float()
    f_p, f_i = (t.cpu() for t in torch.softmax(lg, -1).topk(k, -1))
    logits_ok = torch.isfinite(lg).all(-1).cpu()
    metrics = {name: v.cpu() for name, v in perceptual_metrics(q, q_hat, fps, skeleton).items()}
    values = {"class": lc, "perceptual": lp, "total": total, **terms}
    values = {name: t.detach()[dsel].float().cpu() for name, t in values.items()}
    ctx = {name: getattr(batch.ctx, name)[dsel].cpu() for name in ("true", "original", "target")}
    steps = batch.step[dsel].cpu()
    out = []
    for j, (row, st) in enumerate(zip(rows.tolist(), status)):
        step, ok = int(steps[j]), bool(logits_ok[j])
        if st == "success":
            reason = ""
        elif st == "skipped":
            reason = (
                f"not recognised: the model predicts class {int(ctx['original'][j])}, true label {int(ctx['true'][j])}"
            )
        elif st == "nonfinite":
            what = "gradient" if bad_grad[int(sel[j])] else ("logits" if not ok else "loss")
            reason = f"non-finite {what} at iteration {step}"
        else:
            reason = f"no success within {iterations} iterations"
        out.append(
            ClipResult(
                index=int(row),
                status=str(st),
                reason=reason,
                iterations=step,
                adversarial=q[j].numpy().copy() if st == "skipped" else q_hat[j].numpy(),
                true_label=int(ctx["true"][j]),
                original_label=int(ctx["original"][j]),
                final_label=int(f_i[j, 0]) if ok else -1,
                target=int(ctx["target"][j]),
                original_topk=o_i[j].numpy(),
                original_topk_prob=o_p[j].numpy(),
                final_topk=f_i[j].numpy() if ok else np.full(k, -1, np.int64),
                final_topk_prob=f_p[j].numpy() if ok else np.full(k, np.nan, np.float32),
                losses={name: float(v[j]) for name, v in values.items()},
                metrics={name: float(v[j]) for name, v in metrics.items()},
                robust=bool(st == "success" and robust[int(sel[j])]),
            )
        )
    return out
