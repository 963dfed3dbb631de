"""``attack-gen import-attack``: another attack's clips (here an I-FGSM written in this test, saved in the
SMART/BEAT npz layout from real HDM05 clips) become a method of a batch, judged by our model; the batch then runs
through a study on the server and into ``analysis report`` and ``analysis thresholds``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from analysis.cli import cli as analysis_cli
from attack_gen.cli import cli
from attack_gen.cli import run_collect
from attack_gen.data.clips import load_clips
from attack_gen.data.dataset import save_dataset
from attack_gen.data.prepare import SplitSpec
from attack_gen.data.prepare import prepare_from_smart_npz
from attack_gen.data.preprocess import canonicalise
from attack_gen.data.smart_npz import HDM05_UNIT_TO_M
from attack_gen.recognizer import load_checkpoint
from attack_gen.recognizer import pipeline_logits
from attack_gen.train import TrainConfig
from attack_gen.train import train_model
from stimuli.batch import check_batch
from stimuli.fileio import file_sha256
from stimuli.responses import rows_to_csv

STEPS, STEP_M, EPS_M = 40, 0.002, 0.04


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ifgsm(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An attack from elsewhere: iterative FGSM on the positions (sign steps of 2 mm within 4 cm of the original),
    each step projected back onto the model's canonical form."""
    adv = x.copy()
    for _ in range(STEPS):
        t = torch.tensor(np.stack([canonicalise(a, model.spec) for a in adv]), requires_grad=True)
        loss = torch.nn.functional.cross_entropy(model.classify_raw(t), torch.as_tensor(y))
        (g,) = torch.autograd.grad(loss, t)
        adv = np.clip(t.detach().numpy() + STEP_M * np.sign(g.numpy()), x - EPS_M, x + EPS_M).astype(np.float32)
    return adv


@pytest.fixture(scope="module")
def external(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny ST-GCN on the SMART authors' HDM05 clips, and an I-FGSM result on 6 of its test clips written as the
    SMART/BEAT attack code writes its AdExamples npz (normalised with their preprocess_core.npz; the last clip left
    unattacked)."""
    root = tmp_path_factory.mktemp("import_attack")
    subset = shared_data / "hdm05_smart_subset"
    ds = prepare_from_smart_npz(subset, SplitSpec(test_fraction=0.3, seed=0))
    ds_path = save_dataset(ds, root / "hdm05.npz")
    ckpt = root / "stgcn.pt"
    cfg = TrainConfig(model="stgcn", size="tiny", epochs=10, batch_size=16, lr=1e-2, val_fraction=0.0)
    train_model(ds, cfg, out=ckpt, dataset_path=ds_path, progress=False)
    run_collect(ckpt, ds_path, root / "clips.npz", "test", "cpu", True)
    clips = load_clips(root / "clips.npz")
    model, info = load_checkpoint(ckpt)
    x, y = clips.motions[:6], clips.labels[:6]
    adv = ifgsm(model, x, y)
    adv[-1] = x[-1]  # one clip the "attack" gave up on
    core = np.load(subset / "preprocess_core.npz")
    mean, std = core["Xmean"][0, :, 0], float(core["Xstd"].ravel()[0])
    hdm05 = (subset / "hdm05_classes.txt").read_text().split()
    tclasses = np.array([hdm05.index(info["class_names"][k]) for k in y], dtype=np.int32)

    def smart_layout(m: np.ndarray) -> np.ndarray:
        return ((m.reshape(len(m), m.shape[1], 75) / HDM05_UNIT_TO_M - mean) / std).astype(np.float32)

    path = root / "AdExamples_ifgsm.npz"
    np.savez(path, clips=smart_layout(adv), oriClips=smart_layout(x), tclasses=tclasses, classes=tclasses)
    return {
        "root": root,
        "ckpt": ckpt,
        "file": path,
        "subset": subset,
        "x": x,
        "adv": adv,
        "y": y,
        "model": model,
        "names": info["class_names"],
    }


def _import(e, out: Path, *extra: str):
    args = ["import-attack", str(e["file"]), "--name", "ifgsm", "--checkpoint", str(e["ckpt"]), "--out", str(out)]
    args += ["--layout", "smart", "--core", str(e["subset"] / "preprocess_core.npz")]
    args += ["--classes", str(e["subset"] / "hdm05_classes.txt")]
    args += ["--width", "64", "--height", "64", "--fps", "10", "--duration", "2", "--workers", "1", *extra]
    return CliRunner().invoke(cli, ["--threads", "1", *args])


def test_an_imported_attack_is_judged_by_our_model_and_runs_through_a_study(external, tmp_path):
    e = external
    out = tmp_path / "ext"
    r = _import(e, out, "--levels", "0.5,1", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    # our own verdict, computed here: fooled after the model's own pipeline
    fooled = pipeline_logits(e["model"], e["adv"]).argmax(-1).numpy() != e["y"]
    assert not fooled[-1] and fooled.sum() >= 3
    assert s["clips_in_file"] == 6 and s["original_not_recognised"] == 0
    assert (s["imported"], s["recognised_not_fooled"]) == (int(fooled.sum()), int((~fooled).sum()))
    assert s["variants"] == ["original", "ifgsm-s50", "ifgsm", "control"]

    batch = check_batch(out)  # schema, files, hashes, every video decoded
    imp = batch.provenance.attack["imported"]
    assert imp["sha256"] == file_sha256(e["file"]) and imp["layout"] == "smart"
    assert batch.provenance.attack["losses"] == ["ifgsm"]
    kept = np.flatnonzero(fooled)
    for item, k in zip(batch.items, kept):
        v = item.variant("ifgsm")
        assert v.role == "attack" and v.success is True and v.info["robust_success"] is True
        assert item.true_label.name == e["names"][e["y"][k]] != v.final_label.name
        # the metric, worked out here from the file's own numbers (un-normalised, in metres)
        d = np.linalg.norm(e["adv"][k] - e["x"][k], axis=-1).mean()
        assert v.metrics["mean_joint_displacement_m"] == pytest.approx(d, rel=1e-4)
        half = item.variant("ifgsm-s50")
        assert half.role == "level" and half.info["strength"] == 0.5 and half.info["method"] == "ifgsm"
        assert half.metrics["mean_joint_displacement_m"] == pytest.approx(d / 2, rel=1e-4)

    # a study on the server: indistinguishability of the imported method, answered by two participants
    from support.server import ParticipantActions
    from support.server import make_test_app

    from study_server.export import response_rows
    from study_server.extensions import db
    from study_server.models import Study

    design = {"trials": 6, "practice_trials": 0, "sensitivity_share": 0.34, "control_share": 0.0}
    app = make_test_app(
        tmp_path / "s.sqlite3", [("ext", "indistinguishability", {**design, "variants": ["ifgsm"]})], batch=out
    )
    for k in range(2):
        pa = ParticipantActions(app.test_client(), "ext").join(PROLIFIC_PID=f"x{k}")
        pa.finish(lambda t, st: "changed" if t.kind == "perceivability" else "unchanged")
    with app.app_context():
        rows = response_rows(db.session.execute(db.select(Study)).scalar_one())
    assert {r["right_variant"] for r in rows if r["trial_kind"] == "perceivability"} == {"ifgsm"}
    (tmp_path / "r.csv").write_text(rows_to_csv(rows), encoding="utf-8")
    rep = CliRunner().invoke(
        analysis_cli,
        ["report", "--responses", str(tmp_path / "r.csv"), "--batch", str(out), "--out", str(tmp_path / "rep")]
        + ["--no-glmm", "--bootstrap", "20"],
    )
    assert rep.exit_code == 0, rep.output
    assert "ifgsm" in rep.output

    # and the threshold analysis of simulated observers on the imported method's two strengths
    sim = tmp_path / "sim.csv"
    thr = 0.5 * np.mean([np.linalg.norm(e["adv"][k] - e["x"][k], axis=-1).mean() for k in kept]) * 1e3
    r = CliRunner().invoke(
        analysis_cli,
        ["simulate-thresholds", "--batch", str(out), "--out", str(sim), "--threshold", f"ifgsm={thr:.3f}"],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        analysis_cli, ["thresholds", "--responses", str(sim), "--batch", str(out), "--out", str(tmp_path / "thr")]
    )
    assert r.exit_code == 0, r.output
    assert "ifgsm: 50 % detection at" in r.output


def test_layouts_that_do_not_match_are_one_line_errors(external, tmp_path):
    e = external
    ours = tmp_path / "ours.npz"
    x = e["x"]
    np.savez(ours, original=x[:, :, :24], adversarial=e["adv"][:, :, :24], labels=e["y"])
    cases = [
        (["--layout", "smart"], ours, "no field 'oriClips' for layout 'smart'; expected fields oriClips, clips, "),
        (["--layout", "ours"], ours, "field 'original' has shape (6, 60, 24, 3); expected (N, T, 25, 3)"),
        (["--layout", "ours"], e["file"], "no field 'original' for layout 'ours'"),
    ]
    for layout, path, message in cases:
        out = tmp_path / "never"
        args = ["import-attack", str(path), "--name", "ext", "--checkpoint", str(e["ckpt"]), "--out", str(out)]
        r = CliRunner().invoke(cli, [*args, *layout])
        assert r.exit_code == 1, r.output
        assert message in r.output and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
        assert not out.exists()
    short = tmp_path / "short.npz"
    np.savez(short, original=x[:, :30], adversarial=e["adv"][:, :30], labels=e["y"])
    r = CliRunner().invoke(
        cli, ["import-attack", str(short), "--name", "ext", "--checkpoint", str(e["ckpt"]), "--out", str(out)]
    )
    assert r.exit_code == 1
    assert "the clips are 30 frames at 30 fps; the model" in r.output and "takes windows of 60 frames" in r.output
    none = tmp_path / "none.npz"
    np.savez(none, original=x, adversarial=x, labels=e["y"])
    r = CliRunner().invoke(
        cli, ["import-attack", str(none), "--name", "ext", "--checkpoint", str(e["ckpt"]), "--out", str(out)]
    )
    assert r.exit_code == 1 and "none of the 6 clips" in r.output and "nothing to import" in r.output
    assert not out.exists()
