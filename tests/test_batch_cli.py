"""``attack-gen batch``: real HDM05 clips -> trained model -> SMART and ablations -> a valid batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attack_gen.attack.results import load_result
from attack_gen.batch import stratified_order
from attack_gen.cli import cli
from attack_gen.cli import run_collect
from attack_gen.data.clips import load_clips
from attack_gen.data.dataset import save_dataset
from attack_gen.data.prepare import SplitSpec
from attack_gen.data.prepare import prepare_from_smart_npz
from attack_gen.train import TrainConfig
from attack_gen.train import train_model
from stimuli.batch import check_batch
from stimuli.fileio import file_sha256
from stimuli.render import probe_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_stratified_order_takes_one_clip_per_class_in_turn() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    order = stratified_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(6))
    # the first three picks cover the three classes, the next two the classes with clips left
    assert sorted(labels[order[:3]].tolist()) == [0, 1, 2]
    assert sorted(labels[order[3:5]].tolist()) == [0, 1]
    assert labels[order[5]] == 0
    assert (stratified_order(labels, seed=3) == order).all()  # seeded
    assert any((stratified_order(labels, seed=s) != order).any() for s in range(4, 10))


@pytest.fixture(scope="module")
def hdm05(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The SMART authors' real HDM05 clips, a tiny ST-GCN trained on them, and its attack set."""
    root = tmp_path_factory.mktemp("batch_cli")
    ds = prepare_from_smart_npz(shared_data / "hdm05_smart_subset", SplitSpec(test_fraction=0.3, seed=0))
    ds_path = save_dataset(ds, root / "hdm05.npz")
    ckpt = root / "stgcn.pt"
    train_model(
        ds,
        TrainConfig(model="stgcn", size="tiny", epochs=10, batch_size=16, lr=1e-2, val_fraction=0.0),
        out=ckpt,
        dataset_path=ds_path,
        progress=False,
    )
    clips = root / "clips.npz"
    run_collect(ckpt, ds_path, clips, "test", "cpu", True)
    return root, ckpt, clips


def test_batch_from_real_hdm05_clips_validates(hdm05) -> None:
    root, ckpt, clips = hdm05
    out = root / "batch"
    args = [
        "--threads",
        "1",
        "batch",
        "--checkpoint",
        str(ckpt),
        "--clips",
        str(clips),
        "--out",
        str(out),
        "--motions",
        "2",
        "--losses",
        "smart,l2",
        "--iterations",
        "150",
        "--width",
        "96",
        "--height",
        "96",
        "--fps",
        "10",
        "--duration",
        "6",
        "--workers",
        "1",
        "--json",
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["items"] == 2 and summary["variants"] == ["original", "smart", "l2", "control"]

    batch = check_batch(out)  # schema, every file, every hash, every video decoded
    assert len(batch.items) == 2
    for item in batch.items:
        assert item.true_label.name != item.attacked_label.name  # the attack changed the label
        for name in ("smart", "l2"):
            v = item.variant(name)
            assert v.success is True and v.final_label.name != item.true_label.name
            assert v.metrics["mean_joint_displacement_m"] > 0
    info = probe_video(out / batch.items[0].variant("smart").video.path)
    assert (info["codec"], info["pix_fmt"], info["width"], info["height"]) == ("h264", "yuv420p", 96, 96)
    assert info["duration"] == pytest.approx(6.0, abs=0.05)

    # the attack result files stay beside the batch, one per loss, and agree with the manifest
    smart = load_result(Path(summary["attacks_dir"]) / "AB.smart.npz")
    assert smart.record["config"]["loss"] == "smart"
    first = batch.items[0].variant("smart")
    k = int(np.flatnonzero(smart["success"])[0])
    assert first.final_label.index == int(smart["final_label"][k])

    # the provenance names the checkpoint the clips were attacked on, and the threat model
    assert batch.provenance.model["checkpoint_sha256"] == smart.record["checkpoint"]["sha256"]
    assert batch.provenance.attack["threat_model"] == "canonical" == smart.record["config"]["threat_model"]
    assert summary["threat_model"] == "canonical"
    assert summary["robust_success_rates"] == summary["success_rates"]  # equal by construction
    for item in batch.items:
        assert all(item.variant(n).info["robust_success"] is True for n in ("smart", "l2"))

    # a second run refuses to overwrite
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "already exists" in again.output


def test_class_weight_reruns_are_a_second_strength_family(hdm05, tmp_path: Path) -> None:
    """--class-weights reruns the graded loss on the chosen motions at each weight: variants smart-cw20, smart-cw90
    of the method smart-cw, each the rerun's own result (motion, verdicts, metrics), recorded per weight."""
    _, ckpt, clips = hdm05
    out = tmp_path / "cw"
    args = ["--threads", "1", "batch", "--checkpoint", str(ckpt), "--clips", str(clips), "--out", str(out)]
    args += ["--motions", "2", "--losses", "smart,l2", "--level-methods", "smart", "--class-weights", "0.9,0.2"]
    args += ["--iterations", "150", "--width", "64", "--height", "64", "--fps", "10", "--duration", "1"]
    res = CliRunner().invoke(cli, [*args, "--workers", "1", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["variants"] == ["original", "smart", "l2", "smart-cw20", "smart-cw90", "control"]
    batch = check_batch(out)
    attacks = Path(summary["attacks_dir"])
    for w in (0.2, 0.9):
        rerun = load_result(attacks / f"AB.smart-cw{round(w * 100)}.npz")
        assert rerun.record["config"]["class_weight"] == w and rerun.record["config"]["loss"] == "smart"
        chosen = load_clips(attacks / "chosen.npz")
        for j, item in enumerate(batch.items):
            v = item.variant(f"smart-cw{round(w * 100)}")
            assert v.role == "level" and (v.info["method"], v.info["strength"], v.info["class_weight"]) == (
                "smart-cw",
                w,
                w,
            )
            assert v.success == bool(rerun["success"][j]) and v.info["robust_success"] == bool(
                rerun["robust_success"][j]
            )
            # the rerun's own motion, drawn on the original's root path like every variant
            drawn = np.load(out / v.motion.path)
            np.testing.assert_allclose(drawn, rerun["adversarial"][j] + chosen.trajectory[j][:, None], atol=1e-5)
            d = np.linalg.norm(rerun["adversarial"][j] - chosen.motions[j], axis=-1).mean()
            assert v.metrics["mean_joint_displacement_m"] == pytest.approx(d, rel=1e-4)
    family = batch.provenance.attack["levels"]
    assert family["class_weights"] == [0.2, 0.9]
    rows = family["methods"]["smart-cw"]
    assert [r["variant"] for r in rows] == ["smart-cw20", "smart-cw90"]
    for r in rows:
        said = [it.variant(r["variant"]).success for it in batch.items]
        assert r["success_rate"] == pytest.approx(sum(said) / 2)
    bad = CliRunner().invoke(cli, [*args, "--class-weights", "0,1.5", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "--class-weights: weights must be distinct and in (0, 1]" in bad.output


def test_batch_refuses_bad_arguments(hdm05, tmp_path: Path) -> None:
    _, ckpt, clips = hdm05
    res = CliRunner().invoke(
        cli, ["batch", "--checkpoint", str(ckpt), "--clips", str(clips), "--out", str(tmp_path / "b"), "--losses", "l2"]
    )
    assert res.exit_code == 1 and "--losses must include smart" in res.output
    res = CliRunner().invoke(
        cli, ["batch", "--checkpoint", str(ckpt), "--clips", str(tmp_path / "none.npz"), "--out", str(tmp_path / "b")]
    )
    assert res.exit_code == 1 and "clip file not found" in res.output
    assert not (tmp_path / "b").exists()


def test_demo_batch_end_to_end_on_the_synthetic_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the README's main job, shrunk (3 motions, 2 epochs, 1 s of 64 px video): dataset built,
    # the demo's ST-GCN trained, clips collected, AB with SMART and every ablation, rendered
    monkeypatch.setenv("SMART_STUDY_DATA", str(tmp_path / "root"))
    args = [
        "batch",
        "--demo",
        "--motions",
        "3",
        "--epochs",
        "2",
        "--width",
        "64",
        "--height",
        "64",
        "--fps",
        "10",
        "--duration",
        "1",
        "--workers",
        "1",
        "--json",
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    out = tmp_path / "root" / "batches" / "demo"
    assert summary["out"] == str(out) and summary["items"] == 3
    levels = [f"{m}-s{p}" for m in ("smart", "l2") for p in (20, 40, 60, 80)]
    assert summary["variants"] == ["original", "smart", "l2", "l2-acc", "l2-bone", *levels, "control"]
    batch = check_batch(out)
    assert batch.provenance.model["name"] == "stgcn" and (tmp_path / "root" / "datasets" / "synthetic.npz").is_file()
    for item in batch.items:
        for name in ("smart", "l2", "l2-acc", "l2-bone"):
            assert item.variant(name).success is True
    # only the indistinguishability composites the demo studies use; naturalness pairs the full attacks only
    rights = {c.right for it in batch.items for c in it.composites if c.left == "original"}
    assert rights == {"original", "smart", "control", "l2", *levels}
    assert batch.composite_plan.naturalness == ("smart", "l2", "l2-acc", "l2-bone")
    # graded levels: the blend q + s (q^ - q) of the drawn motions (the shared root path cancels), the mean
    # joint displacement s times the full attack's (a norm scales with s), strength and method recorded
    for item in batch.items:
        q = np.load(out / item.variant("original").motion.path).astype(np.float64)
        for m in ("smart", "l2"):
            full = item.variant(m)
            assert (full.info["method"], full.info["strength"]) == (m, 1.0)
            q_hat = np.load(out / full.motion.path).astype(np.float64)
            for p in (20, 40, 60, 80):
                v = item.variant(f"{m}-s{p}")
                assert v.role == "level" and (v.info["method"], v.info["strength"]) == (m, p / 100)
                blend = np.load(out / v.motion.path)
                np.testing.assert_allclose(blend - q, p / 100 * (q_hat - q), atol=2e-6)
                assert v.metrics["mean_joint_displacement_m"] == pytest.approx(
                    p / 100 * full.metrics["mean_joint_displacement_m"], rel=1e-4
                )
                assert isinstance(v.success, bool) and isinstance(v.info["robust_success"], bool)
    graded = batch.provenance.attack["levels"]
    assert graded["strengths"] == [0.2, 0.4, 0.6, 0.8, 1.0] and set(graded["methods"]) == {"smart", "l2"}
    for rows in graded["methods"].values():
        for row in rows:
            said = [batch.items[i].variant(row["variant"]).success for i in range(3)]
            assert row["success_rate"] == pytest.approx(sum(said) / 3)
        assert rows[-1]["success_rate"] == 1.0  # every chosen item is fooled at full strength
    info = probe_video(out / batch.items[0].variant("smart").video.path)
    assert (info["width"], info["height"], info["frames"]) == (64, 64, 10)
    # every variant is drawn on the original's trajectory: the window's canonical motion plus its root path
    assert batch.provenance.attack["trajectory"] == "original"
    # the label balance reached is recorded: imbalance = sum over classes of |times true - times attacked|
    lb = batch.provenance.attack["label_balance"]
    b: dict[str, int] = {}
    for item in batch.items:
        b[item.true_label.name] = b.get(item.true_label.name, 0) + 1
        b[item.attacked_label.name] = b.get(item.attacked_label.name, 0) - 1
    assert lb["items"] == 3 and lb["imbalance"] == sum(abs(v) for v in b.values())
    cand = load_clips(Path(summary["attacks_dir"]) / "candidates.npz")
    row = {int(w): k for k, w in enumerate(cand.index)}
    for item in batch.items:
        k = row[item.source.window]
        motion = {n: np.load(out / item.variant(n).motion.path) for n in item.variants}
        np.testing.assert_array_equal(motion["original"], cand.motions[k] + cand.trajectory[k][:, None])
        for name, m in motion.items():  # the same root path for all, so it tells no variant apart
            np.testing.assert_array_equal(m[:, 10], motion["original"][:, 10], err_msg=name)
    # in place: the canonical motions as they are, the root at the origin
    ckpt = next((tmp_path / "root" / "checkpoints").glob("*.pt"))
    clips = next((tmp_path / "root" / "clips").glob("*.npz"))
    res = CliRunner().invoke(
        cli,
        [
            "batch",
            "--checkpoint",
            str(ckpt),
            "--clips",
            str(clips),
            "--out",
            str(tmp_path / "inplace"),
            "--motions",
            "1",
            "--losses",
            "smart",
            "--width",
            "64",
            "--height",
            "64",
            "--fps",
            "10",
            "--duration",
            "1",
            "--workers",
            "1",
            "--trajectory",
            "in-place",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    b2 = check_batch(tmp_path / "inplace")
    assert b2.provenance.attack["trajectory"] == "in-place"
    for name in ("original", "smart"):
        assert np.abs(np.load(tmp_path / "inplace" / b2.items[0].variant(name).motion.path)[:, 10]).max() == 0.0
    # a second demo run reuses the batch
    again = CliRunner().invoke(cli, ["batch", "--demo", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout) == {**json.loads(again.stdout), "reused": True, "items": 3}


def test_balanced_selection_takes_label_cycles_first() -> None:
    from attack_gen.batch import balanced_selection

    # rows (true -> attacked): 0 a->s, 1 b->s, 2 a->b, 3 b->c, 4 c->a, 5 d->e, 6 e->d
    true = np.array([0, 1, 0, 1, 2, 3, 4])
    attacked = np.array([9, 9, 1, 2, 0, 4, 3])
    rows, on_cycles = balanced_selection(true, attacked, 5)
    assert rows == [2, 3, 4, 5, 6] and on_cycles == 5  # the cycles a->b->c->a and d->e->d
    rows, on_cycles = balanced_selection(true, attacked, 4)
    assert rows == [0, 2, 3, 4] and on_cycles == 3  # the 3-cycle fits, the 2-cycle does not; row 0 fills up
    rows, on_cycles = balanced_selection(true, attacked, 2)
    assert rows == [5, 6] and on_cycles == 2


# ---- backends: the same batch from a local run, a Ray run, and a killed-and-resumed Ray run ------------------
def _tiny_batch_args(ckpt: Path, clips: Path, out: Path, *extra: str) -> list[str]:
    return [
        "batch",
        "--checkpoint",
        str(ckpt),
        "--clips",
        str(clips),
        "--out",
        str(out),
        "--motions",
        "3",  # three rendering jobs on two CPUs: a kill after the first two finds the third running
        "--losses",
        "smart,l2",
        "--iterations",
        "60",
        "--width",
        "64",
        "--height",
        "64",
        "--fps",
        "10",
        "--duration",
        "2",
        "--shard-size",
        "4",
        "--json",
        *extra,
    ]


def _files(root: Path) -> dict[str, str]:
    """Every file of a batch by its path: SHA-256 (NumPy arrays compared by value as well)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            out[p.relative_to(root).as_posix()] = file_sha256(p)
    return out


def _manifest(root: Path) -> dict:
    d = json.loads((root / "manifest.json").read_text())
    d.pop("created_utc")
    return d


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    yield ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def local_batch(hdm05, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the tiny batch made with the local backend, the path it was made at): moved away, so that the other
    backends' runs can be made at the same path and their manifests compared whole."""
    _, ckpt, clips = hdm05
    where = tmp_path_factory.mktemp("backends") / "b"
    res = CliRunner().invoke(cli, _tiny_batch_args(ckpt, clips, where, "--backend", "local", "--workers", "2"))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["jobs"]["attack"]["ran"] >= 2
    assert not (where.parent / "b.attacks" / ".jobs").exists()  # the shards are in the saved result files
    keep = tmp_path_factory.mktemp("kept")
    _move(where, keep / "b")
    return keep / "b", where


def _move(batch: Path, to: Path) -> None:
    batch.rename(to)
    batch.with_name(batch.name + ".attacks").rename(to.with_name(to.name + ".attacks"))


def _same_batch(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert fa == fb  # every array, video and poster byte for byte
    for rel in fa:
        if rel.endswith(".npy"):
            np.testing.assert_array_equal(np.load(a / rel), np.load(b / rel))
    assert _manifest(a) == _manifest(b)  # batch id, provenance, every item: all but the creation time


def test_a_ray_batch_equals_the_local_batch_file_by_file(hdm05, local_batch, ray_local, tmp_path: Path) -> None:
    _, ckpt, clips = hdm05
    local, out = local_batch
    res = CliRunner().invoke(cli, _tiny_batch_args(ckpt, clips, out, "--backend", "ray"))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["backend"] == "ray" and summary["jobs"]["attack"]["ran"] >= 2
    assert ray_local.is_initialized() and ray_local.cluster_resources()["CPU"] >= 2
    _same_batch(local, out)
    check_batch(out)
    _move(out, tmp_path / "b")  # the path is free again for the next run


def test_a_killed_ray_run_resumes_with_the_finished_jobs_and_ends_with_the_same_batch(hdm05, local_batch) -> None:
    pytest.importorskip("ray")
    _, ckpt, clips = hdm05
    local, out = local_batch
    args = _tiny_batch_args(ckpt, clips, out, "--backend", "ray")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # its own session, so that the kill takes the Ray processes it started with it
    proc = subprocess.Popen(
        [sys.executable, "-m", "attack_gen.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    journal = out.parent / ".b.partial" / ".journal.jsonl"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and len(journal.read_text().splitlines()) >= 1:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists()
    rendered = len(journal.read_text().splitlines())
    assert rendered < 3, "the kill came after the rendering: nothing left to resume"
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    jobs = json.loads(res.stdout)["jobs"]
    assert jobs["attack"]["ran"] == 0  # the attacks were done: their result files hold every shard
    assert jobs["render"]["reused"] >= rendered >= 1  # and the rendered items are not rendered again
    _same_batch(local, out)
