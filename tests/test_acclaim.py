"""Acclaim ASF/AMC loader: hand-made files with known answers, the real HDM05/CMU files,
and every bad-input error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from attack_gen.data.acclaim import CMU_BVH_COLLAPSED
from attack_gen.data.acclaim import find_asf
from attack_gen.data.acclaim import forward_kinematics
from attack_gen.data.acclaim import load_amc
from attack_gen.data.acclaim import parse_amc
from attack_gen.data.acclaim import parse_asf
from attack_gen.data.retarget import ASF_TO_CMU
from attack_gen.data.retarget import CMU31_NAMES
from attack_gen.data.retarget import CMU31_TO_STANDARD
from stimuli.errors import DataError
from stimuli.motion import Motion
from stimuli.paths import shared_data_dir
from stimuli.skeleton import STANDARD

ASF_M = 0.0254 / 0.45  # metres per HDM05/CMU ASF unit

# --------------------------------------------------------------------------- helpers


def write_asf(path: Path, bones: list[dict], hierarchy: dict[str, list[str]], *, length_unit: float = 1.0) -> Path:
    """An ASF file; each bone: name, direction, length, optional axis ("a b c XYZ") and dof."""
    out = [
        "# hand-made test skeleton",
        ":version 1.10",
        ":name TEST",
        ":units",
        "  mass 1.0",
        f"  length {length_unit}",
        "  angle deg",
        ":documentation",
        "   made in a test",
        ":root",
        "   order TX TY TZ RX RY RZ",
        "   axis XYZ",
        "   position 0 0 0",
        "   orientation 0 0 0",
        ":bonedata",
    ]
    for i, b in enumerate(bones, start=1):
        out += ["  begin", f"     id {i}", f"     name {b['name']}"]
        out.append("     direction " + " ".join(str(v) for v in b["direction"]))
        out.append(f"     length {b['length']}")
        out.append(f"     axis {b.get('axis', '0 0 0 XYZ')}")
        if b.get("dof"):
            out.append(f"    dof {b['dof']}")
            out.append("    limits (-180.0 180.0)")
            out += ["           (-180.0 180.0)"] * (len(b["dof"].split()) - 1)
        out.append("  end")
    out += [":hierarchy", "  begin"]
    out += [f"    {parent} {' '.join(kids)}" for parent, kids in hierarchy.items()]
    out += ["  end"]
    path.write_text("\r\n".join(out) + "\r\n")
    return path


def write_amc(path: Path, frames: list[list[str]]) -> Path:
    """An AMC file: CRLF header, LF frame numbers, CRLF bone lines (like HDM05's)."""
    text = "#!OML:ASF test.asf\r\n:FULLY-SPECIFIED\r\n:DEGREES\r\n"
    for i, lines in enumerate(frames, start=1):
        text += f"{i}\n" + "".join(line + "\r\n" for line in lines)
    path.write_text(text, newline="")
    return path


CHAIN_BONES = [
    {"name": "a", "direction": (1, 0, 0), "length": 2.0, "dof": "rz"},
    {"name": "b", "direction": (1, 0, 0), "length": 3.0, "dof": "rz"},
    # axis rotated 90 deg about Z: its local x is the global y axis
    {"name": "c", "direction": (1, 0, 0), "length": 1.0, "axis": "0 0 90 XYZ", "dof": "rx"},
]
CHAIN_HIERARCHY = {"root": ["a", "c"], "a": ["b"]}


@pytest.fixture
def chain_asf(tmp_path: Path) -> Path:
    return write_asf(tmp_path / "chain.asf", CHAIN_BONES, CHAIN_HIERARCHY)


def chain_frame(root: str = "0 0 0 0 0 0", a: str = "0", b: str = "0", c: str = "0") -> list[str]:
    return [f"root {root}", f"a {a}", f"b {b}", f"c {c}"]


# A full CMU-style 31-joint skeleton in a simple rest pose (all axes 0), for load_amc.
CMU_REST = {
    # name: (parent, direction, length, dofs)
    "lhipjoint": ("root", (1, -1, 0), 2.0, ""),
    "lfemur": ("lhipjoint", (0, -1, 0), 7.0, "rx ry rz"),
    "ltibia": ("lfemur", (0, -1, 0), 7.5, "rx"),
    "lfoot": ("ltibia", (0, 0, 1), 2.0, "rx rz"),
    "ltoes": ("lfoot", (0, 0, 1), 1.0, "rx"),
    "rhipjoint": ("root", (-1, -1, 0), 2.0, ""),
    "rfemur": ("rhipjoint", (0, -1, 0), 7.0, "rx ry rz"),
    "rtibia": ("rfemur", (0, -1, 0), 7.5, "rx"),
    "rfoot": ("rtibia", (0, 0, 1), 2.0, "rx rz"),
    "rtoes": ("rfoot", (0, 0, 1), 1.0, "rx"),
    "lowerback": ("root", (0, 1, 0), 2.0, "rx ry rz"),
    "upperback": ("lowerback", (0, 1, 0), 2.0, "rx ry rz"),
    "thorax": ("upperback", (0, 1, 0), 2.0, "rx ry rz"),
    "lowerneck": ("thorax", (0, 1, 0), 1.5, "rx ry rz"),
    "upperneck": ("lowerneck", (0, 1, 0), 1.5, "rx ry rz"),
    "head": ("upperneck", (0, 1, 0), 1.5, "rx ry rz"),
    "lclavicle": ("thorax", (1, 0, 0), 3.5, "ry rz"),
    "lhumerus": ("lclavicle", (1, 0, 0), 5.0, "rx ry rz"),
    "lradius": ("lhumerus", (1, 0, 0), 3.5, "rx"),
    "lwrist": ("lradius", (1, 0, 0), 1.5, "ry"),
    "lhand": ("lwrist", (1, 0, 0), 0.7, "rx rz"),
    "lfingers": ("lhand", (1, 0, 0), 0.5, "rx"),
    "lthumb": ("lwrist", (1, 0, 1), 0.8, "rx rz"),
    "rclavicle": ("thorax", (-1, 0, 0), 3.5, "ry rz"),
    "rhumerus": ("rclavicle", (-1, 0, 0), 5.0, "rx ry rz"),
    "rradius": ("rhumerus", (-1, 0, 0), 3.5, "rx"),
    "rwrist": ("rradius", (-1, 0, 0), 1.5, "ry"),
    "rhand": ("rwrist", (-1, 0, 0), 0.7, "rx rz"),
    "rfingers": ("rhand", (-1, 0, 0), 0.5, "rx"),
    "rthumb": ("rwrist", (-1, 0, 1), 0.8, "rx rz"),
}


def write_cmu_asf(path: Path, *, length_unit: float = 0.45) -> Path:
    bones, hierarchy = [], {}
    for name, (parent, d, length, dof) in CMU_REST.items():
        d = np.asarray(d, float) / np.linalg.norm(d)
        bones.append({"name": name, "direction": tuple(d), "length": length, "dof": dof})
        hierarchy.setdefault(parent, []).append(name)
    return write_asf(path, bones, hierarchy, length_unit=length_unit)


def cmu_zero_frame(root: str = "0 10 0 0 0 0", **overrides: str) -> list[str]:
    lines = [f"root {root}"]
    for name, (_, _, _, dof) in CMU_REST.items():
        if dof:
            lines.append(f"{name} {overrides.get(name, ' '.join(['0'] * len(dof.split())))}")
    return lines


def rest_bone_ends(collapse: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Start of every bone of CMU_REST in its rest pose, with the root at (0, 10, 0)."""
    start, end = {}, {"root": np.array([0.0, 10.0, 0.0])}
    for name, (parent, d, length, _) in CMU_REST.items():
        d = np.asarray(d, float) / np.linalg.norm(d)
        start[name] = end[parent]
        end[name] = end[parent] + (0.0 if name in collapse else length) * d
    start["root"] = end["root"]
    return start


# ------------------------------------------------------------------- parse_asf


def test_parse_asf_reads_units_root_bones_and_hierarchy(chain_asf: Path) -> None:
    sk = parse_asf(chain_asf)
    assert sk.length_unit == 1.0 and sk.angle_unit == "deg"
    assert sk.unit_to_m == pytest.approx(0.0254)
    assert sk.root_order == ("tx", "ty", "tz", "rx", "ry", "rz")
    assert list(sk.bones) == ["a", "b", "c"]  # depth first: root -> a -> b, then c
    assert sk.parent == {"a": "root", "b": "a", "c": "root"}
    assert sk.bones["c"].dofs == ("rx",)
    np.testing.assert_allclose(sk.bones["c"].axis, [0, 0, 90])
    assert sk.joint_names == ["root", "a", "b", "c"]


def test_parse_real_asf_bone_order_is_cmu_order(shared_data: Path) -> None:
    sk = parse_asf(shared_data / "hdm05_cut_amc" / "asf" / "HDM_bd.asf")
    assert sk.length_unit == 0.45
    assert sk.unit_to_m == pytest.approx(ASF_M)
    assert [ASF_TO_CMU[n] for n in sk.joint_names] == list(CMU31_NAMES)
    assert sk.bones["lfemur"].length == pytest.approx(7.34031)
    assert sk.bones["lhipjoint"].dofs == ()


# ---------------------------------------------------- forward kinematics by hand


def test_fk_two_bone_chain_rotated_about_z(chain_asf: Path, tmp_path: Path) -> None:
    amc = write_amc(
        tmp_path / "chain_01.amc",
        [
            chain_frame(a="90"),  # a points along +y: b starts at (0,2,0), ends (0,5,0)
            chain_frame(a="90", b="-90"),  # b turned back along +x: ends (3,2,0)
            chain_frame(root="1 2 3 0 0 90"),  # whole figure turned 90 about z, moved
        ],
    )
    sk = parse_asf(chain_asf)
    pos, names = forward_kinematics(sk, parse_amc(amc, sk))
    assert names == ["root", "a", "b", "c", "b.end", "c.end"]
    P = {n: pos[:, i] for i, n in enumerate(names)}
    np.testing.assert_allclose(P["root"][0], [0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(P["b"][0], [0, 2, 0], atol=1e-12)
    np.testing.assert_allclose(P["b.end"][0], [0, 5, 0], atol=1e-12)
    np.testing.assert_allclose(P["b"][1], [0, 2, 0], atol=1e-12)
    np.testing.assert_allclose(P["b.end"][1], [3, 2, 0], atol=1e-12)
    np.testing.assert_allclose(P["root"][2], [1, 2, 3], atol=1e-12)
    np.testing.assert_allclose(P["b"][2], [1, 4, 3], atol=1e-12)
    np.testing.assert_allclose(P["b.end"][2], [1, 7, 3], atol=1e-12)
    np.testing.assert_allclose(P["c.end"][2], [1, 3, 3], atol=1e-12)


def test_fk_bone_axis_is_applied_as_c_m_c_inverse(chain_asf: Path, tmp_path: Path) -> None:
    # bone c has axis (0,0,90): its rx dof turns about the global y axis, so +90 takes
    # its direction (1,0,0) to Ry(90) (1,0,0) = (0,0,-1).
    amc = write_amc(tmp_path / "chain_02.amc", [chain_frame(c="90"), chain_frame(c="0")])
    sk = parse_asf(chain_asf)
    pos, names = forward_kinematics(sk, parse_amc(amc, sk))
    c_end = pos[:, names.index("c.end")]
    np.testing.assert_allclose(c_end[0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(c_end[1], [1, 0, 0], atol=1e-12)


def test_fk_dofs_apply_in_listed_order(tmp_path: Path) -> None:
    # dof "rx rz": rotate about x first, then z (fixed axes) = Rz @ Rx.
    asf = write_asf(
        tmp_path / "xz.asf",
        [{"name": "a", "direction": (0, 1, 0), "length": 1.0, "dof": "rx rz"}],
        {"root": ["a"]},
    )
    amc = write_amc(tmp_path / "xz_01.amc", [["root 0 0 0 0 0 0", "a 90 90"]])
    sk = parse_asf(asf)
    pos, names = forward_kinematics(sk, parse_amc(amc, sk))
    # Rx(90) (0,1,0) = (0,0,1); Rz(90) (0,0,1) = (0,0,1). (Rx @ Rz would give (-1,0,0).)
    np.testing.assert_allclose(pos[0, names.index("a.end")], [0, 0, 1], atol=1e-12)


def test_load_amc_rest_pose_units_and_collapsed_bones(tmp_path: Path) -> None:
    asf = write_cmu_asf(tmp_path / "07.asf")
    amc = write_amc(tmp_path / "07_01.amc", [cmu_zero_frame(), cmu_zero_frame(root="0 10 0 0 90 0")])
    m = load_amc(amc)
    assert isinstance(m, Motion)
    assert m.positions.shape == (2, 25, 3) and m.fps == 120.0
    assert m.meta["subject"] == "07" and m.meta["format"] == "amc"
    assert m.meta["unit_to_m"] == pytest.approx(ASF_M) and m.meta["num_source_joints"] == 31
    # frame 0: joint of bone X at the start of X, with thorax and wrists of zero length
    start = rest_bone_ends(CMU_BVH_COLLAPSED)
    cmu_to_asf = {v: k for k, v in ASF_TO_CMU.items()}
    expected = np.array([start[cmu_to_asf[CMU31_NAMES[i]]] for i in CMU31_TO_STANDARD]) * ASF_M
    np.testing.assert_allclose(m.positions[0], expected, atol=1e-6)
    idx = STANDARD.index
    np.testing.assert_allclose(m.positions[0, idx("Neck")], m.positions[0, idx("Spine1")], atol=1e-7)
    np.testing.assert_allclose(m.positions[0, idx("LThumb")], m.positions[0, idx("LeftHand")], atol=1e-7)
    np.testing.assert_allclose(m.positions[0, idx("LHipJoint")], m.positions[0, idx("Hips")], atol=1e-7)
    # frame 1: turned 90 deg about y: (x, y, z) -> (z, y, -x) about the root
    root = m.positions[0, idx("Hips")]
    rel0, rel1 = m.positions[0] - root, m.positions[1] - root
    np.testing.assert_allclose(rel1, np.stack([rel0[:, 2], rel0[:, 1], -rel0[:, 0]], axis=1), atol=1e-6)
    # without collapsing, the ASF's own geometry
    m2 = load_amc(amc, asf, collapse=())
    start = rest_bone_ends()
    expected = np.array([start[cmu_to_asf[CMU31_NAMES[i]]] for i in CMU31_TO_STANDARD]) * ASF_M
    np.testing.assert_allclose(m2.positions[0], expected, atol=1e-6)


def test_load_amc_finds_asf_in_sibling_folder_and_fps(tmp_path: Path) -> None:
    (tmp_path / "asf").mkdir()
    (tmp_path / "squat").mkdir()
    write_cmu_asf(tmp_path / "asf" / "HDM_xy.asf")
    amc = write_amc(tmp_path / "squat" / "HDM_xy_squat1Reps_001_120.amc", [cmu_zero_frame()])
    assert find_asf(amc) == tmp_path / "asf" / "HDM_xy.asf"
    m = load_amc(amc)
    assert m.meta["subject"] == "xy" and m.fps == 120.0
    assert load_amc(amc, fps=60).fps == 60.0
    amc2 = shutil.copy(amc, tmp_path / "squat" / "HDM_xy_squat1Reps_001_100.amc")
    assert load_amc(amc2).fps == 100.0


def test_load_amc_radians(tmp_path: Path) -> None:
    asf = write_asf(tmp_path / "r.asf", CHAIN_BONES, CHAIN_HIERARCHY)
    text = write_amc(tmp_path / "r_01.amc", [chain_frame(a=str(np.pi / 2))]).read_text()
    amc = tmp_path / "r_02.amc"
    amc.write_text(text.replace(":DEGREES", ":RADIANS"))
    sk = parse_asf(asf)
    data = parse_amc(amc, sk)
    assert data.angle_unit == "rad"
    pos, names = forward_kinematics(sk, data)
    np.testing.assert_allclose(pos[0, names.index("b.end")], [0, 5, 0], atol=1e-12)


# ------------------------------------------------------------------------ real data


def _real_amcs() -> list[str]:
    root = shared_data_dir()
    if not root.is_dir():
        return []
    files = [
        *sorted((root / "hdm05_cut_amc").glob("*/*.amc")),
        *sorted((root / "hdm05_parser_sample").glob("*.amc")),
        *sorted((root / "cmu_mocap" / "asf_amc").glob("*.amc")),
    ]
    return [str(f.relative_to(root)) for f in files]


REAL_AMCS = _real_amcs()


def check_real_motion(m: Motion, fps: float, rel_tol: float = 1e-4, skip_bones: tuple = ()) -> None:
    """Shape, finite, frame rate, constant bone lengths and an upright figure."""
    p = m.positions.astype(np.float64)
    assert p.ndim == 3 and p.shape[1:] == (25, 3) and p.shape[0] >= 1
    assert np.isfinite(p).all()
    assert m.fps == fps
    lengths = STANDARD.bone_lengths(p)
    mean = lengths.mean(axis=0)
    for b, (child, parent) in enumerate(STANDARD.bones):
        if mean[b] < 1e-6 or (child, parent) in skip_bones:
            continue
        rel = np.abs(lengths[:, b] - mean[b]).max() / mean[b]
        assert rel < rel_tol, f"bone {child}-{parent} varies by {rel:.2g} of its length"
    # upright: Y is up, the head above the feet in the (standing) first frame
    head, feet = p[:, STANDARD.index("Neck1"), 1], p[:, [STANDARD.index("LeftFoot"), STANDARD.index("RightFoot")], 1]
    assert head[0] > feet[0].max() + 0.4
    assert (head - feet.max(axis=1)).max() > 0.8
    leg = mean[STANDARD.bones.index((2, 1))] + mean[STANDARD.bones.index((3, 2))]
    assert 0.6 < leg < 1.1, f"thigh + shin = {leg:.3f} m"


@pytest.mark.skipif(not REAL_AMCS, reason="real motion data not found")
@pytest.mark.parametrize("rel", REAL_AMCS)
def test_real_amc_loads(shared_data: Path, rel: str) -> None:
    m = load_amc(shared_data / rel)
    check_real_motion(m, 120.0)
    stem = Path(rel).stem
    assert m.meta["subject"] == (stem.split("_")[1] if stem.startswith("HDM") else stem.split("_")[0])
    assert m.meta["unit_to_m"] == pytest.approx(ASF_M)
    # the collapsed bones make Neck coincide with Spine1 and the thumb with the wrist
    idx = STANDARD.index
    assert np.abs(m.positions[:, idx("Neck")] - m.positions[:, idx("Spine1")]).max() < 1e-6
    assert np.abs(m.positions[:, idx("LThumb")] - m.positions[:, idx("LeftHand")]).max() < 1e-6


def test_real_amc_uncollapsed_wrist_bone_varies(shared_data: Path) -> None:
    """Documented: with the ASF's own geometry the wrist->finger bone is not rigid."""
    m = load_amc(shared_data / "cmu_mocap" / "asf_amc" / "01_01.amc", collapse=())
    lengths = STANDARD.bone_lengths(m.positions.astype(np.float64))
    b = STANDARD.bones.index((18, 17))
    assert np.ptp(lengths[:, b]) / lengths[:, b].mean() > 0.01
    neck_spine1 = lengths[:, STANDARD.bones.index((13, 12))]
    assert neck_spine1.mean() == pytest.approx(2.06488 * ASF_M, rel=1e-4)  # the thorax


def test_real_amc_bone_lengths_match_asf(shared_data: Path) -> None:
    m = load_amc(shared_data / "cmu_mocap" / "asf_amc" / "01_01.amc")
    lengths = STANDARD.bone_lengths(m.positions[0].astype(np.float64)) / ASF_M
    bone = {STANDARD.joint_names[c]: lengths[i] for i, (c, _) in enumerate(STANDARD.bones)}
    # 01.asf: lhipjoint 2.40479, lfemur 7.1578, ltibia 7.49137, lhumerus 4.983, lhand 0.715259
    assert bone["LeftUpLeg"] == pytest.approx(2.40479, rel=1e-5)
    assert bone["LeftLeg"] == pytest.approx(7.1578, rel=1e-5)
    assert bone["LeftFoot"] == pytest.approx(7.49137, rel=1e-5)
    assert bone["LeftForeArm"] == pytest.approx(4.983, rel=1e-5)
    assert bone["LeftHandIndex1"] == pytest.approx(0.715259, rel=1e-5)


def test_real_long_amc_trial_loads_whole(shared_data: Path) -> None:
    m = load_amc(shared_data / "cmu_mocap" / "asf_amc" / "01_01.amc")
    assert m.num_frames == 2751 and np.isfinite(m.positions).all()


# ------------------------------------------------------------------------ bad input


@pytest.fixture
def good_chain(chain_asf: Path) -> tuple[Path, list[list[str]]]:
    return chain_asf, [chain_frame(a="10"), chain_frame(a="20"), chain_frame(a="30")]


def _raises(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert match in msg, msg
    assert "\n" not in msg
    return msg


def test_empty_amc(tmp_path: Path, chain_asf: Path) -> None:
    amc = tmp_path / "empty_01.amc"
    amc.write_text("\r\n  \n")
    msg = _raises("empty", load_amc, amc, chain_asf)
    assert "empty_01.amc" in msg


def test_empty_asf(tmp_path: Path) -> None:
    asf = tmp_path / "empty.asf"
    asf.write_text("")
    msg = _raises("empty", parse_asf, asf)
    assert "empty.asf" in msg


def test_truncated_amc_last_frame_missing_bones(tmp_path: Path, good_chain) -> None:
    asf, frames = good_chain
    frames[-1] = frames[-1][:2]  # frame 3 ends after bone a (file cut short)
    amc = write_amc(tmp_path / "trunc_01.amc", frames)
    # lines: 1-3 header, 4 "1", 5-8 bones, 9 "2", 10-13, 14 "3", 15 root, 16 a
    msg = _raises("frame 3", load_amc, amc, asf)
    assert "trunc_01.amc" in msg and "line 16" in msg and "b, c" in msg


def test_amc_frame_missing_bone_in_the_middle(tmp_path: Path, good_chain) -> None:
    asf, frames = good_chain
    del frames[1][2]  # frame 2 has no bone b
    amc = write_amc(tmp_path / "gap_01.amc", frames)
    msg = _raises("frame 2", load_amc, amc, asf)
    assert "gap_01.amc" in msg and "line 12" in msg and "missing bone(s) b" in msg


def test_amc_too_few_values(tmp_path: Path, good_chain) -> None:
    asf, frames = good_chain
    frames[1][0] = "root 0 0 0 0 0"  # 5 of 6 root values, line 10
    amc = write_amc(tmp_path / "few_01.amc", frames)
    msg = _raises("needs 6 value(s), got 5", load_amc, amc, asf)
    assert "few_01.amc" in msg and "line 10" in msg and "frame 2" in msg


def test_amc_non_numeric_value(tmp_path: Path, good_chain) -> None:
    asf, frames = good_chain
    frames[2][1] = "a abc"  # line 16
    amc = write_amc(tmp_path / "text_01.amc", frames)
    msg = _raises("'abc'", load_amc, amc, asf)
    assert "text_01.amc" in msg and "line 16" in msg and "frame 3" in msg


def test_amc_nan_value(tmp_path: Path, good_chain) -> None:
    asf, frames = good_chain
    frames[0][3] = "c nan"  # line 8
    amc = write_amc(tmp_path / "nan_01.amc", frames)
    msg = _raises("'nan'", load_amc, amc, asf)
    assert "nan_01.amc" in msg and "line 8" in msg and "frame 1" in msg


def test_amc_unknown_bone(tmp_path: Path, good_chain) -> None:
    asf, frames = good_chain
    frames[1].append("tail 5")  # line 14
    amc = write_amc(tmp_path / "tail_01.amc", frames)
    msg = _raises("unknown bone 'tail'", load_amc, amc, asf)
    assert "tail_01.amc" in msg and "line 14" in msg and "frame 2" in msg


def test_amc_values_before_first_frame(tmp_path: Path, chain_asf: Path) -> None:
    amc = tmp_path / "nofr_01.amc"
    amc.write_text(":FULLY-SPECIFIED\n:DEGREES\nroot 0 0 0 0 0 0\n")
    msg = _raises("frame number", load_amc, amc, chain_asf)
    assert "nofr_01.amc" in msg and "line 3" in msg


def test_amc_header_only(tmp_path: Path, chain_asf: Path) -> None:
    amc = tmp_path / "head_01.amc"
    amc.write_text(":FULLY-SPECIFIED\n:DEGREES\n")
    msg = _raises("no frames", load_amc, amc, chain_asf)
    assert "head_01.amc" in msg and "line 2" in msg


def test_missing_asf(tmp_path: Path) -> None:
    (tmp_path / "motions").mkdir()
    amc = write_amc(tmp_path / "motions" / "HDM_zz_walk_001_120.amc", [chain_frame()])
    msg = _raises("no ASF skeleton found", load_amc, amc)
    assert "HDM_zz_walk_001_120.amc" in msg and "HDM_zz.asf" in msg


def test_asf_given_but_absent(tmp_path: Path) -> None:
    amc = write_amc(tmp_path / "x_01.amc", [chain_frame()])
    msg = _raises("not found", load_amc, amc, tmp_path / "nope.asf")
    assert "nope.asf" in msg


def test_asf_errors_name_file_and_line(tmp_path: Path) -> None:
    asf = write_asf(tmp_path / "bad.asf", CHAIN_BONES, CHAIN_HIERARCHY)
    lines = asf.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith("length 3.0"))
    bad = lines.copy()
    bad[i] = "     length three"
    asf.write_text("\n".join(bad))
    msg = _raises("'three'", parse_asf, asf)
    assert "bad.asf" in msg and f"line {i + 1}" in msg
    bad = lines.copy()
    j = next(k for k, line in enumerate(lines) if line.strip() == "a b")
    bad[j] = "    a zz"
    asf.write_text("\n".join(bad))
    msg = _raises("unknown bone 'zz'", parse_asf, asf)
    assert f"line {j + 1}" in msg
    asf.write_text("\n".join(lines[: lines.index(":hierarchy")]))
    _raises("no :hierarchy", parse_asf, asf)


def test_asf_missing_standard_bone(tmp_path: Path) -> None:
    # the chain skeleton has no standard bones at all: load_amc names what is missing
    asf = write_asf(tmp_path / "chain.asf", CHAIN_BONES, CHAIN_HIERARCHY)
    amc = write_amc(tmp_path / "chain_01.amc", [chain_frame()])
    msg = _raises("lacks", load_amc, amc, asf)
    assert "chain_01.amc" in msg and "LeftUpLeg (lfemur)" in msg
