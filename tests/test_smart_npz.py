"""SMART/BEAT pre-processed HDM05 npz: the real subset and broken copies of it."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from attack_gen.data.smart_npz import HDM05_UNIT_TO_M
from attack_gen.data.smart_npz import describe_layout
from attack_gen.data.smart_npz import load_smart_npz
from attack_gen.data.smart_npz import normalise
from attack_gen.data.smart_npz import unnormalise
from stimuli.errors import DataError
from stimuli.skeleton import STANDARD

README_BONES = [
    0,
    2.40,
    7.16,
    7.49,
    2.37,
    0,
    2.37,
    7.43,
    7.51,
    2.41,
    0,
    2.04,
    2.05,
    0,
    1.76,
    3.58,
    4.98,
    3.48,
    0.72,
    0.72,
    3.45,
    5.24,
    3.44,
    0.62,
    0.62,
]

README_HISTOGRAM = {
    0: 14,
    5: 8,
    7: 2,
    9: 14,
    10: 1,
    12: 5,
    18: 6,
    22: 8,
    23: 9,
    26: 14,
    28: 7,
    39: 17,
    41: 2,
    45: 28,
    46: 14,
    48: 11,
    50: 10,
    53: 7,
    54: 10,
    55: 4,
    60: 6,
    64: 22,
}


@pytest.fixture(scope="module")
def subset(shared_data) -> Path:
    return shared_data / "hdm05_smart_subset"


@pytest.fixture(scope="module")
def data(subset):
    return load_smart_npz(subset)


def test_load_real_subset(data, subset):
    assert data.clips.shape == (219, 60, 25, 3) and data.clips.dtype == np.float32
    assert data.labels.shape == (219,) and data.labels.dtype == np.int64
    assert len(data.class_names) == 65
    assert data.class_names[45] == "sneak" and data.class_names[64] == "walk_rightRC"
    assert data.class_names[0] == "cartwheel"
    assert Counter(data.labels.tolist()) == README_HISTOGRAM
    assert data.mean.shape == (25, 3) and data.mean.dtype == np.float32
    assert data.std == pytest.approx(4.7353, abs=1e-4)
    assert data.unit_to_m == pytest.approx(0.056444, abs=1e-6)
    # the clips file itself can be passed as well as the folder
    again = load_smart_npz(subset / "adClassTrain.npz")
    np.testing.assert_array_equal(again.clips, data.clips)


def test_unnormalise_matches_readme_formula(data, subset):
    z = np.load(subset / "adClassTrain.npz")
    c = np.load(subset / "preprocess_core.npz")
    ref = z["clips"] * c["Xstd"][0, :, 0] + c["Xmean"][0, :, 0]
    np.testing.assert_allclose(data.clips.reshape(219, 60, 75), ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(data.normalised.reshape(219, 60, 75), z["clips"], atol=1e-5)


def test_standard_layout_and_bone_lengths(data):
    c = data.clips
    assert np.abs(c[:, :, 10]).max() == 0.0  # root at the origin in every frame
    facts = describe_layout(c)
    assert facts["bone_rel_variation"] < 1e-4
    # README lists 25 values in child order 0..24 including the root's (0); bones skip the root
    expected = [README_BONES[child] for child, _ in STANDARD.bones]
    np.testing.assert_allclose(facts["mean_bone_lengths"], expected, atol=0.006)
    # zero-length bones 0-10, 5-10, 13-12
    bl = STANDARD.bone_lengths(c)
    for child in (0, 5, 13):
        k = [ch for ch, _ in STANDARD.bones].index(child)
        assert bl[..., k].max() < 1e-5
    # "thumb" joints coincide with the wrists
    assert np.abs(c[:, :, 19] - c[:, :, 17]).max() < 1e-4
    assert np.abs(c[:, :, 24] - c[:, :, 22]).max() < 1e-4


def test_vertical_axis_and_facing(data):
    facts = describe_layout(data.clips)
    assert facts["up_axis"] == "+y"
    assert facts["left_side"] == "+x"  # STANDARD's left joints on +X: facing +Z in a right-handed frame
    yaw = facts["facing_yaw_deg"]
    assert abs(np.median(yaw)) < 5
    assert np.mean(np.abs(yaw) < 30) > 0.9
    # toes point +Z
    toes = (data.clips[:, :, 4] - data.clips[:, :, 3]) + (data.clips[:, :, 9] - data.clips[:, :, 8])
    assert np.median(toes[..., 2]) > 0


def test_metres_and_motion(data):
    pm = data.positions_m
    np.testing.assert_allclose(pm, data.clips * HDM05_UNIT_TO_M, rtol=1e-6)
    femur = np.median(STANDARD.bone_lengths(pm)[..., [ch for ch, _ in STANDARD.bones].index(2)])
    assert 0.35 < femur < 0.45
    m = data.motion(3)
    assert m.positions.shape == (60, 25, 3) and m.fps == 30.0
    assert m.meta["class_index"] == data.labels[3] and m.meta["class_name"] == data.class_names[data.labels[3]]
    with pytest.raises(DataError, match="out of range"):
        data.motion(219)


def test_normalise_round_trip(data):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 10, (7, 60, 25, 3)).astype(np.float32)
    back = unnormalise(normalise(x, data.mean, data.std), data.mean, data.std)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, rtol=1e-6, atol=1e-5)
    xn = rng.normal(0, 1, (5, 25, 3))
    back_n = normalise(unnormalise(xn, data.mean, data.std), data.mean, data.std)
    np.testing.assert_allclose(back_n, xn, atol=1e-12)
    # x_n = (x - mean) / std, per coordinate
    np.testing.assert_allclose(normalise(data.mean, data.mean, data.std), 0.0, atol=0)
    one = data.mean + data.std
    np.testing.assert_allclose(normalise(one, data.mean, data.std), 1.0, atol=1e-6)
    with pytest.raises(DataError, match=r"\(\.\.\., 25, 3\)"):
        normalise(np.zeros((60, 75)), data.mean, data.std)


# --- broken copies ---------------------------------------------------------------------


@pytest.fixture
def copy(subset, tmp_path) -> Path:
    for name in ("adClassTrain.npz", "preprocess_core.npz", "hdm05_classes.txt"):
        shutil.copy(subset / name, tmp_path / name)
    return tmp_path


def _rewrite(path: Path, **changes) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez(path, **arrays)


def _load_clips(copy: Path) -> dict[str, np.ndarray]:
    with np.load(copy / "adClassTrain.npz") as z:
        return {k: z[k] for k in z.files}


def test_missing_core_file(copy):
    (copy / "preprocess_core.npz").unlink()
    with pytest.raises(DataError, match=r"preprocess_core\.npz: normalisation file not found"):
        load_smart_npz(copy)


def test_missing_clips_and_class_list(copy, tmp_path):
    with pytest.raises(DataError, match=r"nothing\.npz: clips file not found"):
        load_smart_npz(copy / "nothing.npz")
    (copy / "hdm05_classes.txt").unlink()
    with pytest.raises(DataError, match=r"hdm05_classes\.txt: class list not found"):
        load_smart_npz(copy)


def test_explicit_core_and_classes(copy, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.move(copy / "preprocess_core.npz", other / "core.npz")
    shutil.move(copy / "hdm05_classes.txt", other / "names.txt")
    d = load_smart_npz(copy / "adClassTrain.npz", core=other / "core.npz", classes=other / "names.txt")
    assert d.num_clips == 219 and d.core_path == other / "core.npz"


def test_wrong_clip_shape(copy):
    clips = _load_clips(copy)["clips"]
    _rewrite(copy / "adClassTrain.npz", clips=clips[..., :74])
    msg = r"adClassTrain\.npz: field 'clips' has shape \(219, 60, 74\); expected \(N, T, 75\)"
    with pytest.raises(DataError, match=msg):
        load_smart_npz(copy)
    _rewrite(copy / "adClassTrain.npz", clips=clips.reshape(219, 60, 25, 3))
    with pytest.raises(DataError, match=r"field 'clips' has shape \(219, 60, 25, 3\)"):
        load_smart_npz(copy)


def test_missing_field_and_nonfinite(copy):
    clips = _load_clips(copy)["clips"].copy()
    clips[3, 4, 5] = np.nan
    _rewrite(copy / "adClassTrain.npz", clips=clips)
    with pytest.raises(DataError, match=r"field 'clips' has a NaN/Inf at clip 3, frame 4, value 5"):
        load_smart_npz(copy)
    _rewrite(copy / "adClassTrain.npz", classes=None)
    with pytest.raises(DataError, match=r"adClassTrain\.npz: clips file has no field 'classes'"):
        load_smart_npz(copy)


def test_xstd_not_constant(copy):
    with np.load(copy / "preprocess_core.npz") as z:
        xstd = z["Xstd"].copy()
    xstd[0, 7, 0] *= 1.5
    _rewrite(copy / "preprocess_core.npz", Xstd=xstd)
    with pytest.raises(DataError, match=r"preprocess_core\.npz: field 'Xstd' is not one constant"):
        load_smart_npz(copy)


def test_xmean_wrong_size(copy):
    _rewrite(copy / "preprocess_core.npz", Xmean=np.zeros((1, 72, 1), np.float32))
    with pytest.raises(DataError, match=r"field 'Xmean' has shape \(1, 72, 1\)"):
        load_smart_npz(copy)


def test_classes_length_mismatch(copy):
    labels = _load_clips(copy)["classes"]
    _rewrite(copy / "adClassTrain.npz", classes=labels[:-1])
    with pytest.raises(DataError, match=r"field 'classes' has shape \(218,\); expected \(219,\)"):
        load_smart_npz(copy)


def test_class_index_out_of_range(copy):
    labels = _load_clips(copy)["classes"].copy()
    labels[17] = 65
    _rewrite(copy / "adClassTrain.npz", classes=labels)
    with pytest.raises(DataError, match=r"field 'classes'\[17\] = 65 is outside 0\.\.64"):
        load_smart_npz(copy)
    # a shorter class list makes existing labels out of range too
    names = (copy / "hdm05_classes.txt").read_text().splitlines()[:60]
    (copy / "hdm05_classes.txt").write_text("\n".join(names) + "\n")
    labels[17] = 0
    _rewrite(copy / "adClassTrain.npz", classes=labels)
    with pytest.raises(DataError, match=r"is outside 0\.\.59 \(the 60 classes of .*hdm05_classes\.txt\)"):
        load_smart_npz(copy)


def test_float_labels_rejected(copy):
    labels = _load_clips(copy)["classes"]
    _rewrite(copy / "adClassTrain.npz", classes=labels.astype(np.float32))
    with pytest.raises(DataError, match=r"field 'classes' has dtype float32; expected integer"):
        load_smart_npz(copy)


def test_corrupt_npz(copy):
    (copy / "preprocess_core.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match=r"preprocess_core\.npz: cannot read normalisation file"):
        load_smart_npz(copy)


def test_npy_instead_of_npz(copy):
    np.save(copy / "core.npy", np.zeros(75, np.float32))
    with pytest.raises(DataError, match=r"core\.npy: normalisation file is a single \.npy array"):
        load_smart_npz(copy, core=copy / "core.npy")
