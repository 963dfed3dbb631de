"""The batched SMART optimiser: success tests, stop rules, compaction, determinism, NaN handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attack_gen.attack.engine import AttackConfig
from attack_gen.attack.engine import AttackError
from attack_gen.attack.engine import adam_step
from attack_gen.attack.engine import attack
from attack_gen.attack.engine import resolve_targets
from attack_gen.attack.losses import PerceptualWeights
from attack_gen.attack.losses import joint_weights
from attack_gen.attack.losses import perceptual_loss
from attack_gen.attack.losses import perceptual_terms
from attack_gen.models import build_model
from attack_gen.models import list_models
from attack_gen.recognizer import Recognizer

K = 4
FPS = 30.0


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a busy 2-core machine: one thread avoids OpenMP stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Toy(nn.Module):
    """Logits linear in the time-averaged pose plus a term on the first frame: ``(N, T, 25, 3) -> (N, K)``."""

    def __init__(self, k: int = K, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(k, 75, generator=g) * 0.3)
        self.u = nn.Parameter(torch.randn(k, 75, generator=g) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1).flatten(1) @ self.w.T + x[:, 0].flatten(1) @ self.u.T


def _clips(n: int = 8, t: int = 12, seed: int = 0) -> np.ndarray:
    """Smooth random motions in metres: a pose plus slow per-joint drifts."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.3, (n, 1, 25, 3))
    drift = np.cumsum(rng.normal(0, 0.01, (n, t, 25, 3)), axis=1)
    return (pose + drift).astype(np.float32)


def _model(x: np.ndarray, backbone: nn.Module | None = None) -> Recognizer:
    return Recognizer(backbone or Toy(), x.mean((0, 1)), float(x.std())).eval()


def _labels(model: Recognizer, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.classify(torch.as_tensor(x)).argmax(1).numpy()


def _logits(model: Recognizer, x: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model.classify(torch.as_tensor(np.asarray(x, np.float32)))


@pytest.fixture(scope="module")
def setup() -> tuple[Recognizer, np.ndarray, np.ndarray]:
    x = _clips()
    model = _model(x)
    return model, x, _labels(model, x)


def _cfg(**kw: object) -> AttackConfig:
    return AttackConfig(**{"loss": "l2", "iterations": 60, "lr": 0.01, "batch_size": 8, **kw})  # type: ignore[arg-type]


# ---- optimiser --------------------------------------------------------------------------------


def test_adam_step_matches_torch_adam() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.randn(2, 5, generator=g)
    ref = p.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.01)
    z, m, v, step = p.clone(), torch.zeros_like(p), torch.zeros_like(p), torch.zeros(2, dtype=torch.long)
    for _ in range(5):
        grad = torch.randn(2, 5, generator=g)
        ref.grad = grad.clone()
        opt.step()
        adam_step(z, grad, m, v, step, 0.01, 0.9, 0.999, 1e-8)
        step += 1
    torch.testing.assert_close(z, ref.detach(), rtol=1e-5, atol=1e-7)


def test_config_rejects_bad_values_quoting_them() -> None:
    with pytest.raises(AttackError, match="known: ab, abn, sa"):
        AttackConfig(strategy="pgd")
    with pytest.raises(AttackError, match="known: smart, l2, l2-acc, l2-bone"):
        AttackConfig(loss="l1")
    with pytest.raises(AttackError, match="learning rate must be > 0, got -1"):
        AttackConfig(lr=-1)
    with pytest.raises(AttackError, match="only used by the SA strategy"):
        AttackConfig(strategy="ab", target=1)
    with pytest.raises(AttackError, match="temperature must be a positive number, got 0"):
        AttackConfig(temperature=0)
    with pytest.raises(AttackError, match="unknown preconditioner 'adam'; known: perceptual, dynamics, none"):
        AttackConfig(precondition="adam")
    with pytest.raises(AttackError, match="final learning rate must be > 0, got -0.1"):
        AttackConfig(lr_final=-0.1)
    assert 0.0005 <= AttackConfig().lr <= 0.005 and AttackConfig().iterations <= 300
    # the tempered Phi is AB's default only; an explicit value holds for every strategy
    assert [AttackConfig(strategy=s).temperature for s in ("ab", "abn", "sa")] == [3.0, 1.0, 1.0]
    assert AttackConfig(strategy="abn", temperature=2.0).temperature == 2.0


def test_learning_rate_decays_geometrically_to_the_final_rate() -> None:
    cfg = AttackConfig(lr=0.005, lr_final=0.0005, iterations=11)
    rates = cfg.learning_rates(torch.tensor([0, 5, 10, 20]))
    torch.testing.assert_close(rates, torch.tensor([0.005, 0.005 * 0.1**0.5, 0.0005, 0.0005]))
    assert AttackConfig(lr=0.002).learning_rates(torch.tensor([3])) == 0.002


@pytest.mark.parametrize("precondition", ["perceptual", "dynamics", "none"])
def test_class_loss_uses_the_tempered_softmax_and_labels_the_plain_one(setup, precondition: str) -> None:
    model, x, y = setup
    t = 2.5
    res = attack(
        model, x[:3], y[:3], fps=FPS, config=_cfg(loss="smart", iterations=0, temperature=t, precondition=precondition)
    )
    logits = _logits(model, x[:3]).double()
    orig = logits.argmax(1)
    expected = torch.log_softmax(logits / t, 1).gather(1, orig[:, None]).squeeze(1)  # -CE(original, Phi_T(q))
    plain = torch.softmax(logits, 1)
    for r in res:
        assert r.status == "failed" and r.iterations == 0
        np.testing.assert_allclose(r.adversarial, x[r.index], atol=1e-6, rtol=0)  # q^0 = q, with or without P
        assert r.losses["class"] == pytest.approx(float(expected[r.index]), abs=1e-5)
        assert r.losses["perceptual"] == pytest.approx(0.0, abs=1e-9)
        assert float(r.original_topk_prob[0]) == pytest.approx(float(plain[r.index].max()), abs=1e-5)


# ---- strategies end to end ------------------------------------------------------------------------


def test_ab_changes_the_label_and_the_record_matches_the_model(setup) -> None:
    model, x, y = setup
    res = attack(model, x, y, fps=FPS, config=_cfg(strategy="ab"))
    assert all(r.status == "success" for r in res), [r.reason for r in res]
    adv = np.stack([r.adversarial for r in res])
    pred = _logits(model, adv).argmax(1).numpy()
    assert (pred != y).all()
    assert [r.final_label for r in res] == pred.tolist()
    assert [r.original_label for r in res] == y.tolist()
    assert all(r.original_topk[0] == r.original_label for r in res)
    assert all(0 < r.iterations <= 60 for r in res)
    assert len({r.iterations for r in res}) > 1  # clips stop at different iterations


def test_abn_stops_exactly_when_the_true_label_leaves_the_top_n(setup) -> None:
    model, x, y = setup
    n = 2
    res = attack(model, x, y, fps=FPS, config=_cfg(strategy="abn", top_n=n, iterations=150))
    won = [r for r in res if r.status == "success"]
    assert len(won) >= len(res) // 2, [r.reason for r in res]
    for r in won:
        top = _logits(model, r.adversarial[None]).topk(n, -1).indices[0].tolist()
        assert r.true_label not in top  # the kept iterate: true label outside the top N
    # one step earlier the same clip still had its true label in the top N: the rule fired at once
    for r in won[:3]:
        i = r.index
        before = attack(
            model,
            x[i : i + 1],
            y[i : i + 1],
            fps=FPS,
            config=_cfg(strategy="abn", top_n=n, iterations=r.iterations - 1),
        )[0]
        assert before.status == "failed"
        top = _logits(model, before.adversarial[None]).topk(n, -1).indices[0].tolist()
        assert r.true_label in top


def test_sa_random_targets_are_never_the_true_label_and_success_means_predicted(setup) -> None:
    model, x, y = setup
    res = attack(model, x, y, fps=FPS, config=_cfg(strategy="sa", iterations=150, seed=5), num_classes=K)
    targets = [r.target for r in res]
    assert all(t != r.true_label and 0 <= t < K for t, r in zip(targets, res))
    assert targets == resolve_targets(_cfg(strategy="sa", seed=5), y, K).tolist()  # reproducible for the seed
    assert any(r.success for r in res)
    for r in res:
        pred = int(_logits(model, r.adversarial[None]).argmax())
        assert (pred == r.target) == r.success


def test_sa_fixed_target_equal_to_true_label_is_skipped(setup) -> None:
    model, x, y = setup
    k = int(y[0])
    res = attack(model, x, y, fps=FPS, config=_cfg(strategy="sa", target=k, iterations=5), num_classes=K)
    for r in res:
        if r.true_label == k:
            assert r.status == "skipped" and "target equals the true label" in r.reason
            np.testing.assert_array_equal(r.adversarial, x[r.index])
        else:
            assert r.status in ("success", "failed") and r.target == k


def test_unrecognised_clips_are_skipped_with_the_reason(setup) -> None:
    model, x, y = setup
    wrong = y.copy()
    wrong[1] = (y[1] + 1) % K
    res = attack(model, x[:3], wrong[:3], fps=FPS, config=_cfg(iterations=5))
    assert res[1].status == "skipped"
    assert res[1].reason == f"not recognised: the model predicts class {y[1]}, true label {wrong[1]}"
    assert res[1].iterations == 0


def test_budget_exhausted_keeps_the_last_iterate(setup) -> None:
    model, x, y = setup
    res = attack(model, x[:2], y[:2], fps=FPS, config=_cfg(strategy="abn", top_n=K, iterations=7))
    assert [r.status for r in res] == ["failed", "failed"]
    assert all(r.iterations == 7 and r.reason == "no success within 7 iterations" for r in res)
    assert all(np.abs(r.adversarial - x[r.index]).max() > 0 for r in res)


# ---- batching ---------------------------------------------------------------------------------------


def _same(a, b, atol: float = 1e-5) -> None:
    assert [r.index for r in a] == [r.index for r in b]
    assert [(r.status, r.iterations, r.final_label) for r in a] == [(r.status, r.iterations, r.final_label) for r in b]
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(ra.adversarial, rb.adversarial, atol=atol, rtol=0)


def test_result_of_a_clip_does_not_depend_on_its_batch(setup) -> None:
    model, x, y = setup
    alone = [attack(model, x[i : i + 1], y[i : i + 1], fps=FPS, config=_cfg(batch_size=1))[0] for i in range(len(x))]
    for i, r in enumerate(alone):  # re-index the single-clip runs
        r.index = i
    together = attack(model, x, y, fps=FPS, config=_cfg(batch_size=8))
    refilled = attack(model, x, y, fps=FPS, config=_cfg(batch_size=3))  # clips join as others leave
    order = [5, 2, 7, 0, 1, 6, 3, 4]
    shuffled = attack(model, x, y, fps=FPS, config=_cfg(batch_size=4), indices=order)
    _same(alone, together)
    _same(together, refilled)
    _same([together[i] for i in order], shuffled)


def test_deterministic_for_a_seed(setup) -> None:
    model, x, y = setup
    cfg = _cfg(strategy="sa", seed=11, batch_size=3)
    a = attack(model, x, y, fps=FPS, config=cfg, num_classes=K)
    b = attack(model, x, y, fps=FPS, config=cfg, num_classes=K)
    _same(a, b, atol=0.0)
    assert [r.losses for r in a] == [r.losses for r in b]


def test_results_arrive_in_groups_as_clips_finish(setup) -> None:
    model, x, y = setup
    groups: list[list[int]] = []
    done: list[int] = []
    attack(
        model,
        x,
        y,
        fps=FPS,
        config=_cfg(batch_size=3),
        on_results=lambda g: groups.append([r.index for r in g]),
        progress=done.append,
    )
    assert sorted(i for g in groups for i in g) == list(range(len(x)))
    assert len(groups) > 1 and sum(done) == len(x)


# ---- what the engine guarantees about the model and the loss ---------------------------------------------


def test_model_is_frozen_during_the_attack_and_restored_after(setup) -> None:
    _, x, y = setup
    toy = Toy()
    model = _model(x, toy)
    labels = _labels(model, x[:2])
    seen: list[tuple[bool, bool]] = []
    toy.register_forward_pre_hook(lambda mod, args: seen.append((mod.training, mod.w.requires_grad)))
    model.train()
    res = attack(model, x[:2], labels, fps=FPS, config=_cfg(iterations=3))
    assert [r.status for r in res] != ["skipped", "skipped"]
    assert seen and all(s == (False, False) for s in seen)
    assert model.training and toy.w.requires_grad and toy.w.grad is None


def test_one_backward_pass_per_iteration(setup) -> None:
    model, x, y = setup
    counts = {"forward": 0, "backward": 0}

    class Counting(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            counts["forward"] += 1
            out = self.inner(z)
            if out.requires_grad:
                out.register_hook(lambda g: counts.__setitem__("backward", counts["backward"] + 1))
            return out

    counted = Recognizer(Counting(model.backbone), model.mean, model.std).eval()
    res = attack(counted, x[:1], y[:1], fps=FPS, config=_cfg(strategy="abn", top_n=K, iterations=9))
    assert res[0].iterations == 9
    assert counts == {"forward": 1 + 10, "backward": 9}  # +1: the class count, asked once up front


def test_stored_losses_are_the_loss_on_true_geometry(setup) -> None:
    model, x, y = setup
    r = attack(model, x[:1], y[:1], fps=FPS, config=_cfg(loss="smart", iterations=60))[0]
    std = float(model.std)
    q, q_hat = torch.as_tensor(x[:1]) / std, torch.as_tensor(r.adversarial[None]) / std  # metres / global scale
    terms = perceptual_terms(q, q_hat, FPS, gamma=joint_weights())
    lp = perceptual_loss(terms, PerceptualWeights().for_loss("smart"))
    for name in ("position", "acceleration", "bone"):
        assert r.losses[name] == pytest.approx(terms[name].item(), rel=2e-3, abs=1e-6), name
    assert r.losses["perceptual"] == pytest.approx(lp.item(), rel=2e-3)
    assert r.losses["total"] == pytest.approx(0.4 * r.losses["class"] + 0.6 * r.losses["perceptual"], rel=1e-5)


def test_preconditioned_adam_takes_smooth_steps(setup) -> None:
    # one Adam step moves every coordinate of u by lr (sign of the gradient); z = z0 + P u then
    # moves smoothly: its frame-to-frame acceleration is far below plain Adam's after one step
    model, x, y = setup
    one = {"loss": "smart", "strategy": "abn", "top_n": K, "iterations": 1}
    plain = attack(model, x[:4], y[:4], fps=FPS, config=_cfg(**one, precondition="none"))
    pre = attack(model, x[:4], y[:4], fps=FPS, config=_cfg(**one, precondition="dynamics"))
    acc = lambda rs: np.mean([r.metrics["acceleration_deviation"] for r in rs])  # noqa: E731
    assert acc(pre) < 0.2 * acc(plain)


def test_perceptual_preconditioner_turns_limbs_rather_than_stretch_them(setup) -> None:
    # the first Adam step moves u by lr per coordinate; with the bone part of the preconditioner
    # the resulting change of bone lengths is far smaller, the joints still move as far
    model, x, y = setup
    one = {"loss": "smart", "strategy": "abn", "top_n": K, "iterations": 1}
    dyn = attack(model, x[:4], y[:4], fps=FPS, config=_cfg(**one, precondition="dynamics"))
    per = attack(model, x[:4], y[:4], fps=FPS, config=_cfg(**one, precondition="perceptual"))
    mean = lambda rs, k: np.mean([r.metrics[k] for r in rs])  # noqa: E731
    assert mean(per, "bone_length_deviation_m") < 0.1 * mean(dyn, "bone_length_deviation_m")
    assert mean(per, "mean_joint_displacement_m") > 0.5 * mean(dyn, "mean_joint_displacement_m")
    assert mean(per, "acceleration_deviation") < 1.5 * mean(dyn, "acceleration_deviation")
    assert all(r.iterations == 1 for r in dyn + per)


def test_smart_loss_gives_smoother_examples_than_l2(setup) -> None:
    model, x, y = setup
    smart = attack(model, x, y, fps=FPS, config=_cfg(loss="smart", iterations=150))
    l2 = attack(model, x, y, fps=FPS, config=_cfg(loss="l2", iterations=150))
    both = [(a, b) for a, b in zip(smart, l2) if a.success and b.success]
    assert len(both) >= 2
    for key in ("acceleration_deviation", "bone_length_deviation_m"):
        assert np.mean([a.metrics[key] for a, _ in both]) < np.mean([b.metrics[key] for _, b in both]), key


# ---- NaN / Inf ------------------------------------------------------------------------------------------


class NaNAfter(nn.Module):
    """Wraps a backbone; from its ``after``-th call, rows whose first value exceeds 50 get NaN logits."""

    def __init__(self, inner: nn.Module, after: int = 3) -> None:
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.inner(z)
        if self.calls >= self.after:
            bad = z[:, 0, 0, 0] > 50
            out = torch.where(bad[:, None], torch.full_like(out, float("nan")), out)
        return out


def test_nan_in_one_clip_marks_it_failed_and_the_others_go_on(setup) -> None:
    model, x, y = setup
    x = x.copy()
    std, mean = float(model.std), model.mean.numpy()
    x[2, 0, 0, 0] = mean[0, 0] + 60 * std  # normalised value 60: the sentinel
    nan_model = Recognizer(NaNAfter(model.backbone), model.mean, model.std).eval()
    y2 = _labels(nan_model, x)
    nan_model.backbone.calls = 0
    res = attack(nan_model, x, y2, fps=FPS, config=_cfg(batch_size=8))
    assert res[2].status == "nonfinite"
    assert res[2].reason == "non-finite logits at iteration 1"  # call 1: class count, 2: step 0, 3: step 1
    assert res[2].final_label == -1 and np.isfinite(res[2].adversarial).all()
    others = [r for i, r in enumerate(res) if i != 2]
    assert all(r.status == "success" for r in others)
    ref = attack(model, np.delete(x, 2, 0), np.delete(y2, 2), fps=FPS, config=_cfg(batch_size=8))
    for a, b in zip(others, ref):
        assert (a.iterations, a.final_label) == (b.iterations, b.final_label)
        np.testing.assert_allclose(a.adversarial, b.adversarial, atol=1e-5)


def test_shape_errors_are_precise(setup) -> None:
    model, x, y = setup
    with pytest.raises(AttackError, match=r"expected \(N, T, 25, 3\), got \(8, 12, 24, 3\)"):
        attack(model, x[:, :, :24], y, fps=FPS, config=_cfg())
    with pytest.raises(AttackError, match="frame rate must be > 0, got 0"):
        attack(model, x, y, fps=0, config=_cfg())


# ---- the real architectures -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_engine_runs_on_every_model_and_batching_does_not_change_results(name: str) -> None:
    """Batched kernels round differently from single-clip ones (~1e-7 relative in the
    gradient). Where an element's gradient is near zero, Adam's normalised step can
    turn that into a different step for that element, so real models are compared by
    the perturbation as a whole: under 5 % apart, and nearly every element equal."""
    torch.manual_seed(0)
    x = _clips(n=3, t=16, seed=1)
    model = _model(x, build_model(name, K, size="tiny"))
    y = _labels(model, x)
    cfg = AttackConfig(strategy="abn", top_n=K, iterations=4, batch_size=3)
    together = attack(model, x, y, fps=FPS, config=cfg)
    alone = attack(model, x, y, fps=FPS, config=AttackConfig(strategy="abn", top_n=K, iterations=4, batch_size=1))
    assert all(r.status == "failed" and np.isfinite(r.adversarial).all() for r in together)
    for a, b in zip(together, alone):
        da, db = a.adversarial - x[a.index], b.adversarial - x[b.index]
        assert np.abs(da).max() > 1e-3  # the attack did move the clip
        assert np.linalg.norm(da - db) < 0.05 * np.linalg.norm(da)
        assert np.mean(np.abs(da - db) < 1e-5) > 0.95
