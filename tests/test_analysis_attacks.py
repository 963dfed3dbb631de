"""Attack result files read without attack_gen (numpy only), and the attack tables and maps by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from support.attack_files import write_fake_result
from support.attack_files import write_fake_transfer

from analysis import attacks
from stimuli.attack_results import read_attack_files
from stimuli.attack_results import read_attack_result
from stimuli.attack_results import read_transfer
from stimuli.errors import DataError


def test_result_file_and_success_table(tmp_path):
    p = write_fake_result(
        tmp_path / "r.npz",
        status=["success", "success", "success", "failed", "skipped"],
        threat_model="raw",
        robust=[True, False, False, True, True],
    )
    run = read_attack_result(p)
    assert run.threat_model == "raw" and run.robust_success.tolist() == [True, False, False, False, False]
    assert (run.model, run.dataset, run.label, run.loss) == ("agcn", "hdm05_smart_subset", "AB", "smart")
    assert run.original.shape == (5, 8, 25, 3) and run.attacked.tolist() == [True] * 4 + [False]
    abn = read_attack_result(
        write_fake_result(tmp_path / "n.npz", strategy="abn", top_n=3, dataset="mhad", threat_model="raw")
    )
    t = attacks.success_table([run, abn]).set_index("file")
    # 3 successes of 4 attacked (the skipped clip is not attacked); Wilson 3/4 = [0.301, 0.954]
    assert t.loc["r.npz", "rate"] == pytest.approx(0.75)
    assert (t.loc["r.npz", "wilson_low"], t.loc["r.npz", "wilson_high"]) == pytest.approx((0.3006, 0.9544), abs=5e-4)
    # 1 robust success of 4 attacked; Wilson 1/4 = [0.0456, 0.6994]
    assert t.loc["r.npz", "robust_rate"] == pytest.approx(0.25) and t.loc["r.npz", "robust_succeeded"] == 1
    assert (t.loc["r.npz", "robust_wilson_low"], t.loc["r.npz", "robust_wilson_high"]) == pytest.approx(
        (0.0456, 0.6994), abs=5e-4
    )
    assert t.loc["r.npz", "paper"] == pytest.approx(0.9918)  # 2s-AGCN, HDM05, AB
    assert (t.loc["n.npz", "strategy"], t.loc["n.npz", "dataset"]) == ("AB3", "MHAD")
    assert t.loc["n.npz", "paper"] == pytest.approx(0.559)
    lay = attacks.success_layout(attacks.success_table([run]), ("AB",), threat_model="raw")
    assert lay.to_dict("records") == [{"model": "2s-AGCN", "HDM05": "75.00 / 25.00 (99.18)"}]
    assert attacks.success_layout(attacks.success_table([run]), ("AB",)).empty  # no canonical run


def test_paper_numbers_stand_beside_raw_runs_only(tmp_path):
    run = read_attack_result(write_fake_result(tmp_path / "c.npz"))
    t = attacks.success_table([run])
    assert run.threat_model == "canonical" and math.isnan(t.loc[0, "paper"]) and t.loc[0, "robust_rate"] == 0.75
    lay = attacks.success_layout(t, ("AB",), threat_model="canonical")
    assert lay.to_dict("records") == [{"model": "2s-AGCN", "HDM05": "75.00 / 75.00"}]


def test_paper_mean_only_beside_a_mean_over_its_five_models(tmp_path):
    runs = [
        read_attack_result(write_fake_result(tmp_path / f"{m}.npz", model=m, threat_model="raw"))
        for m in ("agcn", "stgcn")
    ]
    lay = attacks.success_layout(attacks.success_table(runs), ("AB",), threat_model="raw").set_index("model")
    assert lay.loc["mean", "HDM05"] == "75.00 / 75.00" and lay.loc["ST-GCN", "HDM05"] == "75.00 / 75.00 (99.57)"


def test_transfer_file_and_table4(tmp_path):
    p = write_fake_transfer(
        tmp_path / "transfer.AB.smart.json",
        {("dgnn", "agcn"): (9, 10), ("agcn", "dgnn"): (10, 10), ("dgnn", "dgnn"): (5, 5), ("agcn", "agcn"): (8, 10)},
        threat_model="raw",
        robust={("dgnn", "agcn"): 1},
    )
    runs, transfers = read_attack_files([p])
    assert runs == [] and transfers[0].dataset == "ntu60"
    t = attacks.transfer_table(transfers).set_index(["surrogate", "target"])
    assert t.loc[("DGNN", "2s-AGCN"), "rate"] == pytest.approx(0.9)
    assert t.loc[("DGNN", "2s-AGCN"), "paper"] == pytest.approx(0.906)
    assert t.loc[("DGNN", "2s-AGCN"), "robust_rate"] == pytest.approx(0.1)
    assert math.isnan(t.loc[("DGNN", "DGNN"), "paper"]) and t.loc[("DGNN", "DGNN"), "white_box"]
    lay = attacks.transfer_layout(attacks.transfer_table(transfers)).set_index("surrogate \\ target")
    assert lay.loc["DGNN", "2s-AGCN"] == "AB: 90.00 / 10.00 (90.6)"
    assert lay.loc["DGNN", "DGNN"] == "[100.00 / 100.00] white-box"
    # under the canonical threat model the paper's (raw) numbers are not shown
    c = write_fake_transfer(tmp_path / "transfer.AB.smart.c.json", {("dgnn", "agcn"): (9, 10)})
    assert math.isnan(attacks.transfer_table(read_attack_files([c])[1]).loc[0, "paper"])


def test_unreadable_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_text("hello")
    with pytest.raises(DataError, match="neither an attack result"):
        read_attack_files([bad])
    with pytest.raises(DataError, match="attack file not found"):
        read_attack_files([tmp_path / "missing.npz"])
    p = tmp_path / "a.npz"
    np.savez(p, status=np.array(["success"]), record=np.array(json.dumps({"format": "other"})))
    with pytest.raises(DataError, match="lacks array"):
        read_attack_result(p)
    good = write_fake_result(tmp_path / "g.npz")
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    rec = json.loads(str(arrays["record"]))
    np.savez(p, **{**arrays, "record": np.array(json.dumps({**rec, "format": "other"}))})
    with pytest.raises(DataError, match="not a smart-study attack result"):
        read_attack_result(p)
    np.savez(p, **{**arrays, "record": np.array(json.dumps({**rec, "config": {"loss": "smart"}}))})
    with pytest.raises(DataError, match="'config.strategy' missing"):
        read_attack_result(p)
    np.savez(p, **{**arrays, "adversarial": arrays["adversarial"][:, :, :24]})
    with pytest.raises(DataError, match="shape"):
        read_attack_result(p)
    j = tmp_path / "t.json"
    cell = {"eligible": 1, "fooled": 1, "rate": 1, "robust_fooled": 1, "robust_rate": 1}
    doc = {"version": 2, "threat_model": "canonical", "models": ["a", "b"], "matrix": {"a": {"a": cell}}}
    j.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"matrix\['a'\]\['b'\]"):
        read_transfer(j)
    j.write_text(json.dumps({**doc, "version": 1}))
    with pytest.raises(DataError, match="transfer summary version 1 not supported"):
        read_transfer(j)
    j.write_text(json.dumps({**doc, "threat_model": "loose"}))
    with pytest.raises(DataError, match="'threat_model' is 'loose'"):
        read_transfer(j)
    np.savez(p, **{**arrays, "record": np.array(json.dumps({**rec, "version": 1}))})
    with pytest.raises(DataError, match="version 1 not supported"):
        read_attack_result(p)


def test_confusion_by_hand():
    cm = attacks.confusion(np.array([0, 0, 1, 2]), np.array([1, 2, 0, 0]), ["walk", "run", "jump"])
    assert cm.loc["walk"].tolist() == [0.0, 0.5, 0.5]
    assert cm.loc["run"].tolist() == [1.0, 0.0, 0.0] and cm.loc["jump"].tolist() == [1.0, 0.0, 0.0]
    raw = attacks.confusion(np.array([0, 0, 1]), np.array([1, 1, 0]), normalise=False)
    assert raw.to_numpy().tolist() == [[0, 2], [1, 0]]


def test_joint_maps_and_deviation_by_hand():
    # displacement of joint 0 equals 2x the speed of joint 1 across clips: correlation 1; joint 5 never moves: NaN
    D = np.zeros((4, 25)) + np.arange(25) * 0.0
    S = np.zeros((4, 25))
    D[:, 0] = [1, 2, 3, 4]
    D[:, 1] = [4, 3, 2, 1]
    S[:, 1] = [2, 4, 6, 8]
    maps = attacks.joint_correlations(D, S, S)
    assert maps["speed"].iloc[0, 1] == pytest.approx(1.0)
    assert maps["displacement"].iloc[0, 1] == pytest.approx(-1.0)
    assert np.isnan(maps["displacement"].iloc[5, 5])
    # clip summaries: a joint moving 0.1 m per frame at 10 fps has speed 1 m/s and no acceleration
    q = np.zeros((5, 25, 3))
    q[:, 3, 0] = 0.1 * np.arange(5)
    qa = q.copy()
    qa[:, 3, 1] += 0.02
    d, s, a = attacks.clip_summaries([q], [qa], 10.0)
    assert d[0, 3] == pytest.approx(0.02) and s[0, 3] == pytest.approx(1.0) and a[0, 3] == pytest.approx(0.0)
    # deviation: joint 3 displaced by 3 cm in half the frames -> mean 1.5 cm, std 1.5 cm
    o = np.zeros((4, 25, 3))
    adv = o.copy()
    adv[:2, 3, 0] = 0.03
    dev = attacks.joint_deviation({"smart": ([o], [adv]), "l2": ([o], [o])})
    r = dev[(dev["method"] == "smart") & (dev["joint"] == 3)].iloc[0]
    assert (r["mean"], r["std"], r["joint_name"]) == (pytest.approx(0.015), pytest.approx(0.015), "LeftFoot")
    assert dev[dev["method"] == "l2"]["mean"].abs().max() == 0.0


def test_batch_success_from_the_manifest():
    variants = pd.DataFrame(
        {
            "batch_id": "b",
            "item_id": ["i0", "i1", "i0", "i1", "i0"],
            "variant": ["smart", "smart", "l2", "l2", "original"],
            "role": ["attack"] * 4 + ["original"],
            "success": [True, True, True, False, None],
            "metric:mean_joint_displacement_m": [0.01, 0.03, 0.02, 0.02, None],
        }
    )
    items = pd.DataFrame({"dataset": ["hdm05"], "model": ["agcn"]})
    t = attacks.batch_success(variants, items).set_index("variant")
    assert t.loc["smart", "rate"] == 1.0 and t.loc["l2", "rate"] == 0.5
    assert t.loc["smart", "mean_joint_displacement_m"] == pytest.approx(0.02) and t.loc["smart", "model"] == "2s-AGCN"


def test_plot_helpers_take_ax_and_return_it():
    from analysis import figures

    bt = pd.DataFrame(
        {"method": ["smart", "l2"], "log_strength": [0.3, -0.3], "ci_low": [0.35, np.nan], "ci_high": [0.6, np.nan]}
    )  # an interval that misses its estimate, one that is missing
    ax = figures.plot_bt(bt)
    assert figures.plot_bt(bt, ax=ax) is ax
    shares = pd.DataFrame(
        {
            "subset": ["analysed"],
            "breakdown": ["overall"],
            "level": ["all"],
            "share": [0.8],
            "wilson_low": [0.7],
            "wilson_high": [0.9],
            "boot_low": [0.65],
            "boot_high": [0.92],
            "paper": [np.nan],
        }
    )
    ax = figures.new_axes()
    assert figures.plot_shares(shares, ax=ax) is ax and figures.plot_shares(shares.iloc[:0]).texts
    cm = attacks.confusion(np.array([0, 1]), np.array([1, 0]))
    assert figures.plot_confusion(cm).images
