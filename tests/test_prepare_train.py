"""``attack-gen prepare / train / evaluate / collect`` on real and synthetic data, and their errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attack_gen.cli import cli
from attack_gen.data.clips import load_clips
from attack_gen.data.dataset import TEST
from attack_gen.data.dataset import TRAIN
from attack_gen.data.dataset import load_dataset
from attack_gen.data.dataset import save_dataset
from attack_gen.data.prepare import prepare_synthetic
from attack_gen.data.preprocess import PreprocessConfig
from attack_gen.recognizer import load_checkpoint
from attack_gen.train import predict
from stimuli.errors import DataError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(cli, args)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def hdm05(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cross-subject HDM05 (actors bd + bk train, dg test) from the real AMC files."""
    out = tmp_path_factory.mktemp("hdm05") / "hdm05.npz"
    code, output = _run(
        ["prepare", "--train", str(shared_data / "hdm05_cut_amc"), "--test-subjects", "dg", "--out", str(out), "--json"]
    )
    assert code == 0, output
    return out


def test_prepare_hdm05_cross_subject(hdm05: Path, shared_data: Path) -> None:
    ds = load_dataset(hdm05)
    # 188 recordings: 62 bd + 65 bk for training, 61 dg for testing (data README)
    assert len(ds.sources) == 188
    by_split = {s: [src for src in ds.sources if src["split"] == s] for s in ("train", "test")}
    assert len(by_split["train"]) == 127 and len(by_split["test"]) == 61
    assert {src["subject"] for src in by_split["test"]} == {"dg"}
    assert {src["subject"] for src in by_split["train"]} == {"bd", "bk"}
    assert ds.num_classes == 11 and "squat1Reps" in ds.class_names
    assert set(np.unique(ds.subjects()[ds.split == TEST])) == {"dg"}
    # windows: 60 frames at 30 fps, root at the origin in every frame
    assert ds.motions.shape[1:] == (60, 25, 3) and ds.fps == 30.0
    np.testing.assert_allclose(ds.motions[:, :, 10], 0.0, atol=1e-6)
    # every recording gave at least one window and each window's recording label is its label
    counts = np.bincount(ds.source, minlength=len(ds.sources))
    assert (counts >= 1).all() and [s["windows"] for s in ds.sources] == counts.tolist()
    for k in range(0, len(ds), 37):
        assert ds.class_names[ds.labels[k]] == ds.sources[ds.source[k]]["label"]
    # normalisation from the training windows only: recompute it independently
    train = ds.motions[ds.split == TRAIN].astype(np.float64)
    np.testing.assert_allclose(ds.mean, train.mean(axis=(0, 1)), atol=1e-5)
    assert ds.std == pytest.approx(float(np.sqrt(((train - train.mean(axis=(0, 1))) ** 2).mean())), rel=1e-5)
    # metres: a femur is about 0.35-0.5 m
    femur = np.linalg.norm(ds.motions[:, :, 2] - ds.motions[:, :, 1], axis=-1)
    assert 0.3 < float(np.median(femur)) < 0.55


def test_prepare_with_label_rule_and_fraction_split(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bandai.npz"
    code, output = _run(
        [
            "prepare",
            "--train",
            str(shared_data / "bandai_namco_motion" / "dataset-2"),
            "--label-rule",
            r"dataset-\d_(?P<label>.+)_[a-z]+_\d+\.bvh$",
            "--test-fraction",
            "0.3",
            "--seed",
            "1",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0, output
    summary = json.loads(output)
    # dataset-2: 10 contents x 7 styles (data README)
    assert summary["recordings"] == 70 and len(summary["classes"]) == 10
    assert "raise-up-both-hands" in summary["classes"]
    ds = load_dataset(out)
    test_recs = [s for s in ds.sources if s["split"] == "test"]
    assert len(test_recs) == 21  # round(0.3 * 70)
    # a recording's windows never straddle the split
    for k in range(len(ds.sources)):
        assert len(set(ds.split[ds.source == k].tolist())) == 1


def test_prepare_kinect_gestures_and_the_smart_npz(shared_data: Path, tmp_path: Path) -> None:
    code, output = _run(
        [
            "prepare",
            "--train",
            str(shared_data / "kinect_v2_gestures"),
            "--label-rule",
            r"Ges\d+_(?P<label>\w+)\.csv",
            "--test-fraction",
            "0.25",
            "--stride",
            "30",
            "--out",
            str(tmp_path / "k.npz"),
            "--json",
        ]
    )
    assert code == 0, output
    summary = json.loads(output)
    assert summary["classes"] == ["balancinghands", "comehere", "drawlines", "wavehand"]
    # the folder's MANIFEST.csv and labels.csv are not captures: reported as skipped, with the reason
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"MANIFEST.csv", "labels.csv"}
    assert all(r.startswith("not a Kinect v2 capture") for r in skipped.values())
    code, output = _run(
        [
            "prepare",
            "--train",
            str(shared_data / "hdm05_smart_subset"),
            "--test-fraction",
            "0.2",
            "--out",
            str(tmp_path / "s.npz"),
            "--json",
        ]
    )
    assert code == 0, output
    summary = json.loads(output)
    assert summary["windows"] == 219 and len(summary["classes"]) == 22  # 22 of the 65 classes are present


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--label-rule", r"nomatch_(\d+)", "--test-subjects", "dg"], "matches none of the 36 files"),
        (["--test-subjects", "zz"], "test subject(s) zz not found; subjects present: bd, bk, dg"),
        ([], "no test split given"),
        (["--label-rule", "(", "--test-subjects", "dg"], "not a valid regular expression"),
        (["--test-fraction", "1.5"], "--test-fraction must lie between 0 and 1"),
        (["--test-subjects", "dg", "--test-fraction", "0.2"], "choose one split"),
    ],
)
def test_prepare_bad_input_is_one_line_error(shared_data: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "x.npz"
    code, output = _run(
        ["prepare", "--train", str(shared_data / "hdm05_cut_amc" / "squat1Reps"), *extra, "--out", str(out)]
    )
    assert code == 1 and "Traceback" not in output
    last = output.strip().splitlines()[-1]  # after any progress bar (stderr)
    assert last.startswith("Error: ") and message in last
    assert not out.exists()


def test_prepare_refuses_a_folder_without_motion_files(shared_data: Path, tmp_path: Path) -> None:
    code, output = _run(
        [
            "prepare",
            "--train",
            str(shared_data / "hdm05_cut_amc" / "asf"),
            "--test-fraction",
            "0.5",
            "--out",
            str(tmp_path / "x.npz"),
        ]
    )
    assert code == 1 and "no motion files found" in output


def test_prepare_never_leaves_a_half_written_file(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "raw" / "cartwheel"
    folder.mkdir(parents=True)
    shutil.copy(shared_data / "hdm05_bvh_basar" / "HDM_bd_cartwheelLHandStart1Reps_001_120.bvh", folder)
    bad = folder / "broken.bvh"
    bad.write_text(
        (shared_data / "hdm05_bvh_basar" / "HDM_bd_cartwheelLHandStart1Reps_001_120.bvh").read_text()[:-20000]
    )  # truncated motion section
    out = tmp_path / "out" / "ds.npz"
    code, output = _run(["prepare", "--train", str(tmp_path / "raw"), "--test-fraction", "0.5", "--out", str(out)])
    assert code == 1 and "broken.bvh" in output
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds = prepare_synthetic(
        samples_per_class=4,
        num_frames=40,
        subjects=4,
        test_subjects=("s04",),
        config=PreprocessConfig(window=30, stride=10),
    )
    return save_dataset(ds, tmp_path_factory.mktemp("syn") / "syn.npz")


def test_train_evaluate_collect_round_trip(synthetic: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    code, output = _run(
        [
            "train",
            "--model",
            "stgcn",
            "--size",
            "tiny",
            "--dataset",
            str(synthetic),
            "--out",
            str(ckpt),
            "--epochs",
            "6",
            "--lr",
            "1e-2",
            "--json",
        ]
    )
    assert code == 0, output
    trained = json.loads(output)
    assert len(trained["history"]) == 6 and 1 <= trained["best_epoch"] <= 6
    model, info = load_checkpoint(ckpt)
    assert info["model"] == "stgcn" and info["size"] == "tiny" and info["window"] == 30
    ds = load_dataset(synthetic)
    assert info["class_names"] == ds.class_names
    np.testing.assert_allclose(info["normalisation"]["mean"], ds.mean, atol=1e-6)

    conf_csv = tmp_path / "conf.csv"
    code, output = _run(
        ["evaluate", "--checkpoint", str(ckpt), "--dataset", str(synthetic), "--confusion", str(conf_csv), "--json"]
    )
    assert code == 0, output
    ev = json.loads(output)
    # accuracy, per-class accuracy and the confusion matrix agree with an independent prediction
    test = ds.part("test")
    pred = predict(model, test.motions).argmax(axis=1)
    assert ev["accuracy"] == pytest.approx(float((pred == test.labels).mean()))
    assert ev["accuracy"] == pytest.approx(trained["test_accuracy"])
    with open(conf_csv) as fh:
        rows = list(csv.reader(fh))
    assert rows[0][1:] == ds.class_names
    conf = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert conf.sum() == len(test) and np.trace(conf) == int((pred == test.labels).sum())
    for c, name in enumerate(ds.class_names):
        n = int((test.labels == c).sum())
        expect = None if n == 0 else float(((pred == c) & (test.labels == c)).sum() / n)
        assert ev["per_class_accuracy"][name] == (pytest.approx(expect) if expect is not None else None)

    clips_path = tmp_path / "clips.npz"
    code, output = _run(
        ["collect", "--checkpoint", str(ckpt), "--dataset", str(synthetic), "--out", str(clips_path), "--json"]
    )
    assert code == 0, output
    clips = load_clips(clips_path)
    assert len(clips) == int((pred == test.labels).sum()) == json.loads(output)["clips"]
    assert (clips.labels == clips.predictions).all()
    np.testing.assert_array_equal(clips.motions, ds.motions[clips.index])
    assert clips.meta["checkpoint"]["sha256"] == info["sha256"]


def test_several_models_train_as_jobs_the_same_on_each_backend_and_a_rerun_reuses_them(
    synthetic: Path, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray")
    args = ["train", "--model", "hrnn,stgcn", "--size", "tiny", "--dataset", str(synthetic), "--epochs", "2", "--json"]
    code, output = _run([*args, "--out", str(tmp_path / "local"), "--backend", "local", "--workers", "2"])
    assert code == 0, output
    local = json.loads(output)
    assert local["jobs"] == {"jobs": 2, "reused": 0, "ran": 2}
    assert [r["model"] for r in local["models"]] == ["hrnn", "stgcn"]
    code, output = _run([*args, "--out", str(tmp_path / "local"), "--backend", "local"])
    assert code == 0 and json.loads(output)["jobs"] == {"jobs": 2, "reused": 2, "ran": 0}  # nothing trained again
    started = not ray.is_initialized()
    try:
        code, output = _run([*args, "--out", str(tmp_path / "ray"), "--backend", "ray"])
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    assert code == 0, output
    on_ray = json.loads(output)
    assert on_ray["backend"] == "ray" and on_ray["jobs"]["ran"] == 2
    for a, b in zip(local["models"], on_ray["models"]):
        ma, _ = load_checkpoint(a["checkpoint"])
        mb, _ = load_checkpoint(b["checkpoint"])
        sa, sb = ma.state_dict(), mb.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)  # the same weights, bit for bit
        assert a["test_accuracy"] == b["test_accuracy"] and Path(a["checkpoint"]).name == f"syn-{a['model']}-tiny.pt"


def test_evaluate_refuses_a_mismatched_dataset(synthetic: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    assert (
        _run(
            [
                "train",
                "--model",
                "hrnn",
                "--size",
                "tiny",
                "--dataset",
                str(synthetic),
                "--out",
                str(ckpt),
                "--epochs",
                "1",
            ]
        )[0]
        == 0
    )
    other = prepare_synthetic(
        samples_per_class=2,
        num_frames=40,
        subjects=2,
        test_subjects=("s02",),
        config=PreprocessConfig(window=20, stride=10),
    )
    other_path = save_dataset(other, tmp_path / "other.npz")
    code, output = _run(["evaluate", "--checkpoint", str(ckpt), "--dataset", str(other_path)])
    assert code == 1 and "windows of 20 frames; the model was trained on 30" in output
    code, output = _run(["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--dataset", str(other_path)])
    assert code == 1 and "checkpoint not found" in output
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    code, output = _run(["evaluate", "--checkpoint", str(ckpt), "--dataset", str(tmp_path / "junk.npz")])
    assert code == 1 and "cannot read dataset file" in output
    code, output = _run(["train", "--model", "resnet", "--dataset", str(synthetic)])
    assert code == 1 and "unknown model 'resnet'; known: agcn, asgcn, dgnn, hrnn, stgcn" in output


def test_dataset_file_checks(synthetic: Path, tmp_path: Path) -> None:
    ds = load_dataset(synthetic)
    with pytest.raises(DataError, match="labels must lie in"):
        type(ds)(ds.motions, ds.labels + 100, ds.split, ds.source, ds.start, ds.meta)
    with pytest.raises(DataError, match="expected shape"):
        type(ds)(ds.motions, ds.labels[:-1], ds.split, ds.source, ds.start, ds.meta)


@pytest.mark.slow
def test_hrnn_reaches_80_percent_on_cross_subject_hdm05(hdm05: Path, tmp_path: Path) -> None:
    """The issue's bar, checked in CI for the fastest model (all five: bench/train_hdm05.py)."""
    code, output = _run(
        [
            "train",
            "--model",
            "hrnn",
            "--size",
            "small",
            "--dataset",
            str(hdm05),
            "--out",
            str(tmp_path / "hrnn.pt"),
            "--epochs",
            "40",
            "--lr",
            "2e-3",
            "--json",
        ]
    )
    assert code == 0, output
    assert json.loads(output)["test_accuracy"] >= 0.80
