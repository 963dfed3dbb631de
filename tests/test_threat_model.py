"""The threat model: the recognizer owns its preprocessing, attacks move real degrees of freedom,
robust success is reported, training stops when validation does, windows keep their trajectory."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attack_gen.attack.engine import AttackConfig
from attack_gen.attack.engine import attack
from attack_gen.attack.engine import dof_projection
from attack_gen.attack.engine import project
from attack_gen.attack.strategies import ClassContext
from attack_gen.attack.strategies import build_strategy
from attack_gen.cli import run_collect
from attack_gen.data import load_motion
from attack_gen.data.dataset import load_dataset
from attack_gen.data.dataset import save_dataset
from attack_gen.data.prepare import SplitSpec
from attack_gen.data.prepare import prepare_dataset
from attack_gen.data.prepare import prepare_synthetic
from attack_gen.data.preprocess import Canonical
from attack_gen.data.preprocess import PreprocessConfig
from attack_gen.data.preprocess import canonicalise
from attack_gen.data.preprocess import face_forward
from attack_gen.data.preprocess import raw_windows
from attack_gen.recognizer import Canonicaliser
from attack_gen.recognizer import load_checkpoint
from attack_gen.recognizer import pipeline_logits
from attack_gen.train import TrainConfig
from attack_gen.train import predict
from attack_gen.train import train_model
from stimuli.errors import DataError
from stimuli.skeleton import STANDARD
from stimuli.skeleton import tie_coincident

HDM05_GROUPS = ((10, 0, 5), (12, 13), (17, 19), (22, 24))
"""Measured on the HDM05 cut AMC files: hips on the root, neck on Spine1, thumbs on the wrists."""


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A small synthetic dataset and a tiny ST-GCN trained on it, with its attack set."""
    root = tmp_path_factory.mktemp("threat")
    ds = prepare_synthetic(
        samples_per_class=3,
        num_frames=40,
        subjects=3,
        test_subjects=("s03",),
        config=PreprocessConfig(window=20, stride=10),
    )
    path = save_dataset(ds, root / "ds.npz")
    ckpt = root / "stgcn.pt"
    train_model(
        ds,
        TrainConfig(model="stgcn", size="tiny", epochs=8, batch_size=16, lr=1e-2, val_fraction=0.0),
        out=ckpt,
        dataset_path=path,
        progress=False,
    )
    clips = root / "clips.npz"
    run_collect(ckpt, path, clips, "test", "cpu", True)
    model, info = load_checkpoint(ckpt, "cpu")
    return SimpleNamespace(root=root, ds=ds, path=path, ckpt=ckpt, clips=clips, model=model, info=info)


# ---- coincident joints --------------------------------------------------------------------------------


def test_coincident_groups_by_hand() -> None:
    pos = np.random.default_rng(0).normal(size=(5, 25, 3))
    pos[:, 0] = pos[:, 10]  # 0 on the root
    pos[:, 5] = pos[:, 0]  # 5 on 0, so on the root too (closed under the relation)
    pos[:, 19] = pos[:, 17]
    pos[:3, 13] = pos[:3, 12]  # only in some frames: not a group
    # the root is nearest the root, so it comes first; then index order
    assert STANDARD.coincident_groups(pos) == ((10, 0, 5), (17, 19))
    tied = tie_coincident(pos + 0.1, ((10, 0, 5),))
    np.testing.assert_array_equal(tied[:, 0], tied[:, 10])
    np.testing.assert_array_equal(tied[:, 1], pos[:, 1] + 0.1)


def test_coincident_groups_of_real_data_depend_on_the_source(shared_data: Path) -> None:
    amc = load_motion(shared_data / "hdm05_cut_amc" / "sneak2StepsLStart" / "HDM_bd_sneak2StepsLStart_001_120.amc")
    assert STANDARD.coincident_groups(amc.positions) == HDM05_GROUPS
    bvh = load_motion(shared_data / "bandai_namco_motion" / "dataset-1" / "dataset-1_walk_normal_001.bvh")
    # Bandai Namco's neck has a length; its hand, index and thumb joints are one point
    assert STANDARD.coincident_groups(bvh.positions) == ((10, 0, 5), (17, 18, 19), (22, 23, 24))


# ---- the recognizer's own preprocessing ---------------------------------------------------------------


@pytest.mark.parametrize("center", ["frame", "first", "none"])
@pytest.mark.parametrize("face", [True, False])
def test_the_layer_is_the_dataset_pipeline(center: str, face: bool) -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(0, 0.4, (3, 12, 25, 3)) + [2.0, 1.0, -3.0]).astype(np.float32)
    spec = Canonical(center, face, HDM05_GROUPS)
    ours = Canonicaliser(spec)(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(ours, np.stack([canonicalise(w, spec) for w in x]), atol=2e-6)


def _split_and_move(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random root path for the whole body, a random turn about the vertical, split coincident joints."""
    out = x.copy()
    path = np.cumsum(rng.normal(0, 0.05, (x.shape[0], x.shape[1], 1, 3)), axis=1)
    out = out + path.astype(np.float32)
    a = rng.uniform(-np.pi, np.pi)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], np.float32)
    out = out @ rot.T
    for _, *others in HDM05_GROUPS:
        out[:, :, others] += rng.normal(0, 0.05, (x.shape[0], x.shape[1], len(others), 3)).astype(np.float32)
    return out


def test_what_the_preprocessing_removes_cannot_change_a_prediction(tiny) -> None:
    model, rng = tiny.model, np.random.default_rng(2)
    assert model.spec == Canonical("frame", True, HDM05_GROUPS)  # the synthetic data's, from the checkpoint
    x = tiny.ds.part("test").motions[:16]
    base = model.classify(torch.as_tensor(x)).detach()
    for _ in range(5):
        moved = torch.as_tensor(_split_and_move(x, rng))
        with torch.no_grad():
            np.testing.assert_allclose(model.classify(moved), base, atol=2e-4 * float(base.abs().max()))
            # the network alone sees the difference: the property is the layer's, not the model's
            assert float((model.classify_raw(moved) - base).abs().max()) > 0.1


def test_old_checkpoints_are_a_one_line_error(tiny, tmp_path: Path) -> None:
    payload = torch.load(tiny.ckpt, weights_only=True)
    old = tmp_path / "old.pt"
    torch.save({**payload, "version": 1}, old)
    with pytest.raises(
        DataError,
        match="checkpoint version 1 predates recognizers that apply their dataset's preprocessing; train it again",
    ):
        load_checkpoint(old)
    torch.save({**payload, "canonical": {"center": "middle", "face_forward": True, "coincident": []}}, old)
    with pytest.raises(DataError, match="canonical.center must be one of"):
        load_checkpoint(old)


# ---- the attack under each threat model ---------------------------------------------------------------


def test_dof_projection_keeps_the_root_fixed_and_moves_groups_together() -> None:
    d = torch.randn(2, 4, 25, 3)
    t = project(dof_projection(Canonical("frame", True, HDM05_GROUPS)), d)
    for j in (10, 0, 5):
        assert float(t[:, :, j].abs().max()) == 0.0
    assert torch.equal(t[:, :, 13], d[:, :, 12]) and torch.equal(t[:, :, 19], d[:, :, 17])
    assert torch.equal(t[:, :, 3], d[:, :, 3])
    # without per-frame centring the root is a real degree of freedom
    t = project(dof_projection(Canonical("first", True, HDM05_GROUPS)), d)
    assert torch.equal(t[:, :, 0], d[:, :, 10]) and torch.equal(t[:, :, 10], d[:, :, 10])


def _attack(tiny, threat_model: str, **kw):
    x = tiny.ds.part("test").motions
    pred = predict(tiny.model, x).argmax(1)
    keep = np.flatnonzero(pred == tiny.ds.part("test").labels)[:12]
    cfg = AttackConfig(threat_model=threat_model, **{"loss": "l2", "iterations": 60, "lr": 0.005, **kw})
    return (
        x[keep],
        tiny.ds.part("test").labels[keep],
        attack(
            tiny.model,
            x[keep],
            tiny.ds.part("test").labels[keep],
            fps=30.0,
            config=cfg,
            num_classes=tiny.ds.num_classes,
        ),
    )


@pytest.mark.parametrize("strategy", ["ab", "abn", "sa"])
def test_canonical_examples_fool_the_pipeline_so_robust_success_equals_success(tiny, strategy: str) -> None:
    q, y, res = _attack(tiny, "canonical", strategy=strategy, loss="smart")
    assert any(r.success for r in res)
    assert [r.robust for r in res] == [r.success for r in res]
    adv = np.stack([r.adversarial for r in res])
    # the skeleton's real degrees of freedom only: root at the origin, coincident joints one point
    assert float(np.abs(adv[:, :, 10]).max()) == 0.0
    for first, *others in HDM05_GROUPS:
        for j in others:
            np.testing.assert_array_equal(adv[:, :, j], adv[:, :, first])
    # the stored examples, re-preprocessed by the dataset's own pipeline and classified one by one, still pass
    strat = build_strategy(strategy, 3)
    for r in res:
        if r.success:
            t = torch.tensor([r.true_label])
            ctx = ClassContext(t, t, torch.zeros(1, tiny.ds.num_classes), torch.tensor([r.target]))
            assert bool(strat.success(pipeline_logits(tiny.model, r.adversarial[None]), ctx)[0])
    # the perceptual metrics are those of the canonical motions
    for r, orig in zip(res, q):
        disp = np.linalg.norm(r.adversarial - canonicalise(orig, tiny.model.spec), axis=-1).mean()
        assert r.metrics["mean_joint_displacement_m"] == pytest.approx(disp, rel=1e-3, abs=1e-7)


def test_raw_successes_that_move_what_the_pipeline_removes_are_not_robust(tiny) -> None:
    _, _, res = _attack(tiny, "raw")
    ok = [r for r in res if r.success]
    assert ok, "the raw attack fools the bare network"
    # the raw attack moves the root, which the pipeline removes; its examples mostly fool nothing then
    assert max(float(np.abs(r.adversarial[:, 10]).max()) for r in ok) > 1e-4
    robust = sum(r.robust for r in ok)
    assert robust < len(ok)
    for r in ok:  # robust is exactly "the pipeline's view still changes the label"
        again = int(pipeline_logits(tiny.model, r.adversarial[None]).argmax(1)[0])
        assert r.robust == (again != r.true_label)


# ---- training -----------------------------------------------------------------------------------------


def test_training_stops_when_validation_stops_improving_and_is_seeded(tiny, tmp_path: Path) -> None:
    cfg = TrainConfig(model="stgcn", size="tiny", epochs=60, batch_size=16, lr=1e-2, val_fraction=0.3, patience=3)
    _, a = train_model(tiny.ds, cfg, out=tmp_path / "a.pt", progress=False)
    tr = a["train"]
    assert tr["stopped"] == "patience" and tr["epochs_run"] < 60
    assert tr["epochs_run"] == tr["best_epoch"] + 3 == len(tr["history"])
    best = max(tr["history"], key=lambda h: (h["val_acc"], -h["val_loss"]))
    assert best["epoch"] == tr["best_epoch"]
    _, b = train_model(tiny.ds, cfg, out=tmp_path / "b.pt", progress=False)
    assert b["train"]["history"] == tr["history"]
    wa = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- trajectories -------------------------------------------------------------------------------------


def test_windows_keep_the_root_path_that_centring_removes(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "hdm05_cut_amc" / "jogLeftCircle4StepsRstart"
    ds = prepare_dataset([src], SplitSpec(test_fraction=0.3))
    assert ds.canonical == Canonical("frame", True, HDM05_GROUPS)
    ds2 = load_dataset(save_dataset(ds, tmp_path / "jog.npz"))
    np.testing.assert_array_equal(ds2.trajectory, ds.trajectory)
    np.testing.assert_allclose(ds.motions[:, :, 10], 0.0, atol=1e-6)
    # a jog travels: over two seconds the root moves more than a metre on the floor
    travel = np.linalg.norm(ds.trajectory[:, -1, [0, 2]] - ds.trajectory[:, 0, [0, 2]], axis=-1)
    assert travel.max() > 1.0
    # canonical + trajectory is the tied, faced window, started above the origin
    motion = load_motion(sorted(src.glob("*.amc"))[0])
    raw, _, _ = raw_windows(motion.positions, motion.fps, PreprocessConfig())
    faced = face_forward(tie_coincident(raw[0], HDM05_GROUPS))
    first = int(np.flatnonzero(ds.source == 0)[0])
    np.testing.assert_allclose(
        ds.motions[first] + ds.trajectory[first][:, None], faced - faced[0, 10] * [1, 0, 1], atol=1e-5
    )


def test_old_datasets_are_a_one_line_error(tiny, tmp_path: Path) -> None:
    import json

    with np.load(tiny.path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    old = tmp_path / "old.npz"
    np.savez(old, **{**arrays, "meta": np.array(json.dumps({**meta, "format_version": 1}))})
    with pytest.raises(DataError, match="version 1 not supported .*run attack-gen prepare again"):
        load_dataset(old)
