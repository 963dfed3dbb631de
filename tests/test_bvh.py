"""BVH loader: hand-made files with known answers, naming schemes, units, the real HDM05 /
CMU / Bandai Namco files (incl. the SMART authors' 1.mat), and every bad-input error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from attack_gen.data import load_motion
from attack_gen.data.acclaim import load_amc
from attack_gen.data.bvh import fps_from_frame_time
from attack_gen.data.bvh import load_bvh
from attack_gen.data.bvh import parse_bvh
from attack_gen.data.retarget import SYNTH_FINGER_M
from attack_gen.data.retarget import UNITS
from attack_gen.data.retarget import detect_unit
from attack_gen.data.retarget import select_standard
from stimuli.errors import DataError
from stimuli.motion import Motion
from stimuli.paths import shared_data_dir
from stimuli.skeleton import STANDARD

ASF_M = 0.0254 / 0.45
ROT = "Zrotation Yrotation Xrotation"
ROOT6 = "Xposition Yposition Zposition Zrotation Yrotation Xrotation"

# --------------------------------------------------------------------------- helpers


def node(name: str, offset, channels: str = ROT, *children) -> tuple:
    return (name, tuple(offset), channels, list(children))


def end(offset) -> tuple:
    return ("End Site", tuple(offset), "", [])


def hierarchy_lines(tree: tuple, depth: int = 0, root: bool = True) -> list[str]:
    name, offset, channels, children = tree
    pad = "\t" * depth
    head = "End Site" if name == "End Site" else f"{'ROOT' if root else 'JOINT'} {name}"
    out = [pad + head, pad + "{", pad + "\tOFFSET " + " ".join(f"{v:g}" for v in offset)]
    if name != "End Site":
        out.append(pad + f"\tCHANNELS {len(channels.split())} {channels}")
    for child in children:
        out += hierarchy_lines(child, depth + 1, root=False)
    out.append(pad + "}")
    return out


def channel_count(tree: tuple) -> int:
    name, _, channels, children = tree
    return (0 if name == "End Site" else len(channels.split())) + sum(channel_count(c) for c in children)


def write_bvh(path: Path, tree: tuple, frames: list[list[float]] | None = None, frame_time: float = 1 / 120) -> Path:
    n = channel_count(tree)
    if frames is None:
        frames = [[0.0] * n]
    lines = ["HIERARCHY", *hierarchy_lines(tree), "MOTION", f"Frames: {len(frames)}", f"Frame Time: {frame_time:.7f}"]
    lines += [" ".join(f"{v:g}" for v in f) for f in frames]
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


def chain_tree(a_channels: str = ROT) -> tuple:
    return node("hips", (0, 0, 0), ROOT6, node("a", (0, 2, 0), a_channels, end((0, 3, 0))))


def standard_tree(scale: float = 1.0) -> tuple:
    """A rest skeleton with the standard joint names (like hdm05_rest.bvh), in cm * scale."""
    s = scale

    def leg(side: str, x: float) -> tuple:
        hip = "LHipJoint" if side == "Left" else "RHipJoint"
        return node(
            hip,
            (0, 0, 0),
            ROT,
            node(
                f"{side}UpLeg",
                (x * s, -5 * s, 0),
                ROT,
                node(
                    f"{side}Leg",
                    (0, -42 * s, 0),
                    ROT,
                    node(
                        f"{side}Foot",
                        (0, -42 * s, 0),
                        ROT,
                        node(f"{side}ToeBase", (0, -5 * s, 12 * s), ROT, end((0, 0, 5 * s))),
                    ),
                ),
            ),
        )

    def arm(side: str, x: float) -> tuple:
        t = "LThumb" if side == "Left" else "RThumb"
        return node(
            f"{side}Arm",
            (x * 18 * s, 3 * s, 0),
            ROT,
            node(
                f"{side}ForeArm",
                (x * 28 * s, 0, 0),
                ROT,
                node(
                    f"{side}Hand",
                    (x * 25 * s, 0, 0),
                    ROT,
                    node(f"{side}HandIndex1", (x * 4 * s, 0, 0), ROT, end((x * 3 * s, 0, 0))),
                    node(t, (0, 0, 0), ROT, end((x * 2 * s, 0, 2 * s))),
                ),
            ),
        )

    return node(
        "Hips",
        (0, 0, 0),
        ROOT6,
        leg("Left", 9),
        leg("Right", -9),
        node(
            "Spine",
            (0, 12 * s, 0),
            ROT,
            node(
                "Spine1",
                (0, 12 * s, 0),
                ROT,
                node(
                    "Neck",
                    (0, 0, 0),
                    ROT,
                    node("Neck1", (0, 12 * s, 0), ROT, end((0, 10 * s, 0))),
                    arm("Left", 1),
                    arm("Right", -1),
                ),
            ),
        ),
    )


def standard_rest_positions(scale: float = 1.0) -> np.ndarray:
    """Rest positions (file units) of standard_tree, by summing offsets."""
    pos: dict[str, np.ndarray] = {}

    def walk(tree: tuple, at: np.ndarray) -> None:
        name, offset, _, children = tree
        here = at + np.asarray(offset, float)
        if name != "End Site":
            pos[name] = here
        for c in children:
            walk(c, here)

    walk(standard_tree(scale), np.zeros(3))
    return np.array([pos[n] for n in STANDARD.joint_names])


def bandai_tree(hand_end_site: bool = True) -> tuple:
    """Bandai Namco's 22 joints (names and layout), Y up, cm; every joint has 6 channels."""
    six = "Xposition Yposition Zposition Zrotation Xrotation Yrotation"

    def arm(sfx: str, x: float) -> tuple:
        hand_kids = [end((x * 5, 0, 0))] if hand_end_site else []
        return node(
            f"Shoulder_{sfx}",
            (x * 5, 13, 0),
            six,
            node(
                f"UpperArm_{sfx}",
                (x * 13, 0, 0),
                six,
                node(f"LowerArm_{sfx}", (x * 24, 0, 0), six, node(f"Hand_{sfx}", (x * 22, 0, 0), six, *hand_kids)),
            ),
        )

    def leg(sfx: str, x: float) -> tuple:
        return node(
            f"UpperLeg_{sfx}",
            (x * 9, -6, 0),
            six,
            node(
                f"LowerLeg_{sfx}",
                (0, -39, 0),
                six,
                node(f"Foot_{sfx}", (0, -41, 0), six, node(f"Toes_{sfx}", (0, -6, 10), six, end((0, 0, 5)))),
            ),
        )

    return node(
        "joint_Root",
        (0, 0, 0),
        six,
        node(
            "Hips",
            (0, 94, 0),
            six,
            node(
                "Spine",
                (0, 16, 0),
                six,
                node(
                    "Chest",
                    (0, 9, 0),
                    six,
                    node("Neck", (0, 16, 0), six, node("Head", (0, 6, 0), six, end((0, 10, 0)))),
                    arm("L", 1),
                    arm("R", -1),
                ),
            ),
            leg("L", 1),
            leg("R", -1),
        ),
    )


def rest_frame(tree: tuple) -> list[float]:
    """One frame whose position channels equal the offsets (Bandai style) and no rotation."""
    out: list[float] = []

    def walk(t: tuple) -> None:
        name, offset, channels, children = t
        if name != "End Site":
            for ch in channels.split():
                out.append(offset["XYZ".index(ch[0])] if ch.endswith("position") else 0.0)
        for c in children:
            walk(c)

    walk(tree)
    return out


# ------------------------------------------------------------- hand-made answers


def test_chain_rotated_90_about_z(tmp_path: Path) -> None:
    f = write_bvh(tmp_path / "chain.bvh", chain_tree(), [[1, 2, 3, 90, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 90]])
    data = parse_bvh(f)
    assert data.names == ["hips", "a", "a.end"]
    assert data.num_frames == 2 and data.num_channels == 9 and data.fps == 120.0
    pos = data.positions()
    # frame 0: hips at (1,2,3), turned 90 about z: offset (0,2,0) -> (-2,0,0)
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [-1, 2, 3], [-4, 2, 3]], atol=1e-12)
    # frame 1: a turned 90 about x: its child offset (0,3,0) -> (0,0,3)
    np.testing.assert_allclose(pos[1], [[0, 0, 0], [0, 2, 0], [0, 2, 3]], atol=1e-12)


def test_rotation_channels_compose_in_listed_order(tmp_path: Path) -> None:
    f1 = write_bvh(tmp_path / "zx.bvh", chain_tree("Zrotation Xrotation"), [[0] * 6 + [90, 90]])
    f2 = write_bvh(tmp_path / "xz.bvh", chain_tree("Xrotation Zrotation"), [[0] * 6 + [90, 90]])
    # Rz @ Rx (0,3,0) = Rz (0,0,3) = (0,0,3);  Rx @ Rz (0,3,0) = Rx (-3,0,0) = (-3,0,0)
    np.testing.assert_allclose(parse_bvh(f1).positions()[0, 2], [0, 2, 3], atol=1e-12)
    np.testing.assert_allclose(parse_bvh(f2).positions()[0, 2], [-3, 2, 0], atol=1e-12)


def test_position_channels_replace_offset(tmp_path: Path) -> None:
    tree = node("hips", (5, 5, 5), ROOT6, node("a", (0, 2, 0), "Yposition Zrotation", end((1, 0, 0))))
    f = write_bvh(tmp_path / "pos.bvh", tree, [[1, 1, 1, 0, 0, 0, 7, 90]])
    pos = parse_bvh(f).positions()[0]
    np.testing.assert_allclose(pos, [[1, 1, 1], [1, 8, 1], [1, 9, 1]], atol=1e-12)


def test_braces_on_name_lines_and_blank_lines(tmp_path: Path) -> None:
    text = (
        "HIERARCHY\nROOT r {\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n"
        " JOINT j { OFFSET 1 0 0 CHANNELS 1 Yrotation End Site { OFFSET 0 0 1 } }\n}\n"
        "MOTION\nFrames:\t2\nFrame Time:\t0.0333333\n\n0 0 0 90\n\n1 1 1 0\n\n"
    )
    f = tmp_path / "compact.bvh"
    f.write_text(text)
    data = parse_bvh(f)
    assert data.fps == 30.0 and data.num_frames == 2
    # Ry(90) (0,0,1) = (1,0,0)
    np.testing.assert_allclose(data.positions()[0, 2], [2, 0, 0], atol=1e-12)


def test_standard_named_skeleton_units_and_selection(tmp_path: Path) -> None:
    f = write_bvh(tmp_path / "rest_cm.bvh", standard_tree())
    m = load_bvh(f)
    assert isinstance(m, Motion) and m.positions.shape == (1, 25, 3)
    assert m.meta["unit"] == "cm" and m.meta["unit_to_m"] == 0.01 and m.meta["naming"] == "cmu"
    assert m.meta["format"] == "bvh" and m.meta["num_source_joints"] == 25 and m.meta["subject"] is None
    np.testing.assert_allclose(m.positions[0], standard_rest_positions() * 0.01, atol=1e-6)
    # the same skeleton in mm, inches, ASF units and metres is recognised
    for unit in UNITS:
        scale = 0.01 / unit.to_m
        m2 = load_bvh(write_bvh(tmp_path / f"rest_{unit.name}.bvh", standard_tree(scale)))
        assert m2.meta["unit"] == unit.name
        np.testing.assert_allclose(m2.positions[0], standard_rest_positions() * 0.01, atol=1e-5)
    # explicit scale wins over detection
    m3 = load_bvh(f, scale=0.02)
    assert m3.meta["unit"] == "custom" and m3.meta["unit_to_m"] == 0.02
    np.testing.assert_allclose(m3.positions, 2 * m.positions, rtol=1e-6)
    assert load_bvh(f, scale=0.0254).meta["unit"] == "inch"


def test_bandai_missing_joints_are_placed_by_rule(tmp_path: Path) -> None:
    tree = bandai_tree()
    f = write_bvh(tmp_path / "dataset-9_walk_normal_001.bvh", tree, [rest_frame(tree)] * 3, frame_time=1 / 30)
    m = load_bvh(f)
    assert m.meta["naming"] == "bandai" and m.meta["unit"] == "cm" and m.fps == 30.0
    assert m.meta["num_source_joints"] == 22
    assert m.meta["synthesised_joints"] == {
        "LHipJoint": "=Hips",
        "RHipJoint": "=Hips",
        "LThumb": "=LeftHand",
        "RThumb": "=RightHand",
    }
    p, idx = m.positions[0], STANDARD.index
    np.testing.assert_allclose(p[idx("Hips")], [0, 0.94, 0], atol=1e-6)
    np.testing.assert_allclose(p[idx("LHipJoint")], p[idx("Hips")], atol=1e-7)
    np.testing.assert_allclose(p[idx("LThumb")], p[idx("LeftHand")], atol=1e-7)
    np.testing.assert_allclose(p[idx("Neck")], [0, 0.94 + 0.16 + 0.09 + 0.16, 0], atol=1e-6)
    np.testing.assert_allclose(p[idx("Neck1")], [0, 0.94 + 0.16 + 0.09 + 0.16 + 0.06, 0], atol=1e-6)
    # the hand's End Site (5 cm beyond the wrist) is the index-finger joint
    np.testing.assert_allclose(p[idx("LeftHandIndex1")] - p[idx("LeftHand")], [0.05, 0, 0], atol=1e-6)
    np.testing.assert_allclose(p[idx("LeftArm")], [0.05 + 0.13, 0.94 + 0.16 + 0.09 + 0.13, 0], atol=1e-6)


def test_bandai_without_hand_end_site_synthesises_finger(tmp_path: Path) -> None:
    tree = bandai_tree(hand_end_site=False)
    frame = rest_frame(tree)
    f = write_bvh(tmp_path / "nohand.bvh", tree, [frame], frame_time=1 / 30)
    m = load_bvh(f)
    assert m.meta["synthesised_joints"]["LeftHandIndex1"] == "~finger:L"
    p, idx = m.positions[0], STANDARD.index
    np.testing.assert_allclose(p[idx("LeftHandIndex1")] - p[idx("LeftHand")], [SYNTH_FINGER_M, 0, 0], atol=1e-6)
    np.testing.assert_allclose(p[idx("RightHandIndex1")] - p[idx("RightHand")], [-SYNTH_FINGER_M, 0, 0], atol=1e-6)
    # the offset is in metres whatever the file unit
    m2 = load_bvh(f, scale=0.001)
    assert m2.meta["unit"] == "mm"
    d = m2.positions[0, idx("LeftHandIndex1")] - m2.positions[0, idx("LeftHand")]
    np.testing.assert_allclose(d, [SYNTH_FINGER_M, 0, 0], atol=1e-6)


def test_unknown_naming_lists_missing_joints(tmp_path: Path) -> None:
    tree = node(
        "pelvis", (0, 0, 0), ROOT6, node("Hips", (0, 1, 0), ROT, node("Spine", (0, 10, 0), ROT, end((0, 1, 0))))
    )
    f = write_bvh(tmp_path / "weird.bvh", tree)
    with pytest.raises(DataError) as info:
        load_bvh(f)
    msg = str(info.value)
    assert "weird.bvh" in msg and "unknown skeleton naming" in msg
    assert "LeftUpLeg" in msg and "lacks" in msg and "pelvis" in msg


def test_detect_unit_rule() -> None:
    assert detect_unit(0.85) == ("m", 1.0)
    assert detect_unit(85.0) == ("cm", 0.01)
    assert detect_unit(850.0) == ("mm", 0.001)
    assert detect_unit(33.0)[0] == "inch"
    assert detect_unit(14.65)[0] == "asf_0.45"  # CMU subject 01: thigh 7.16 + shin 7.49
    with pytest.raises(DataError, match="scale="):
        detect_unit(5.0)  # 5 cm, 28 cm in ASF units: not a human leg in any unit
    with pytest.raises(DataError, match="scale="):
        detect_unit(0.0)


def test_fps_from_frame_time() -> None:
    assert fps_from_frame_time(0.008333) == 120.0
    assert fps_from_frame_time(0.0333333) == 30.0
    assert fps_from_frame_time(0.041667) == 24.0
    assert fps_from_frame_time(0.0123) == pytest.approx(1 / 0.0123)


def test_load_motion_dispatches_to_bvh(tmp_path: Path) -> None:
    f = write_bvh(tmp_path / "rest.bvh", standard_tree())
    m = load_motion(f, scale=0.01)
    assert m.meta["format"] == "bvh" and m.meta["unit_to_m"] == 0.01


# ------------------------------------------------------------------------ real data


def _real_bvhs() -> list[str]:
    root = shared_data_dir()
    if not root.is_dir():
        return []
    files = [
        *sorted((root / "hdm05_bvh_basar").glob("*.bvh")),
        *sorted((root / "cmu_mocap" / "bvh").glob("*.bvh")),
        *sorted((root / "bandai_namco_motion").glob("dataset-*/*.bvh")),
    ]
    return [str(f.relative_to(root)) for f in files]


REAL_BVHS = _real_bvhs()
BANDAI_CLAVICLE_BONES = ((15, 13), (20, 13))  # Bandai's shoulders shrug: not rigid (documented)


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
    head, feet = p[:, STANDARD.index("Neck1"), 1], p[:, [STANDARD.index("LeftFoot"), STANDARD.index("RightFoot")], 1]
    assert head[0] > feet[0].max() + 0.4  # Y up: head above the feet in the first frame
    leg = mean[STANDARD.bones.index((2, 1))] + mean[STANDARD.bones.index((3, 2))]
    assert 0.5 < leg < 1.1, f"thigh + shin = {leg:.3f} m"


def expected_fps(rel: str) -> float:
    if rel.startswith("bandai"):
        return 30.0
    if rel.endswith("_rest.bvh"):
        return 24.0  # one-frame rest skeletons, Frame Time 0.041667
    return 120.0


@pytest.mark.skipif(not REAL_BVHS, reason="real motion data not found")
@pytest.mark.parametrize("rel", REAL_BVHS)
def test_real_bvh_loads(shared_data: Path, rel: str) -> None:
    m = load_bvh(shared_data / rel)
    bandai = rel.startswith("bandai")
    check_real_motion(m, expected_fps(rel), skip_bones=BANDAI_CLAVICLE_BONES if bandai else ())
    expected_unit = {"bandai": "cm", "cmu_mocap/bvh/10_01.bvh": "cm", "hdm05_bvh_basar/ntu_rest.bvh": "m"}
    unit = expected_unit.get(rel, expected_unit["bandai"] if bandai else "asf_0.45")
    assert m.meta["unit"] == unit
    naming = {"cmu_mocap/bvh/10_01.bvh": "daz", "hdm05_bvh_basar/HDM_bd_cartwheelLHandStart1Reps_001_120.bvh": "asf"}
    assert m.meta["naming"] == naming.get(rel, "bandai" if bandai else "cmu")
    if bandai:
        # the shrug is real but bounded: the neck-shoulder distance moves < 4 cm
        lengths = STANDARD.bone_lengths(m.positions.astype(np.float64))
        for bone in BANDAI_CLAVICLE_BONES:
            assert np.ptp(lengths[:, STANDARD.bones.index(bone)]) < 0.04


def test_basar_cartwheel_reproduces_authors_mat(shared_data: Path) -> None:
    """The authors' 1.mat is this BVH's joints [CMU indices 1..10, 0, 12..15, ...]."""
    folder = shared_data / "hdm05_bvh_basar"
    ref = scipy.io.loadmat(folder / "1.mat")["data"].reshape(-1, 25, 3)
    bvh = folder / "HDM_bd_cartwheelLHandStart1Reps_001_120.bvh"
    # float64 pipeline, file units: exact up to the BVH's 6 decimals
    data = parse_bvh(bvh)
    std, scheme, synth = select_standard(data.positions(), data.names)
    assert scheme == "asf" and not synth and std.shape == ref.shape == (401, 25, 3)
    assert np.abs(std - ref).max() < 1e-6  # measured 1.0e-8 ASF units
    # the Motion (float32 metres) scaled back to the file's units
    m = load_bvh(bvh)
    assert m.meta["unit"] == "asf_0.45" and m.meta["subject"] == "bd" and m.fps == 120.0
    back = m.positions.astype(np.float64) / m.meta["unit_to_m"]
    err = np.abs(back - ref).max()
    assert err < 2e-5 * np.abs(ref).max()  # float32 rounding only (measured ~4e-6 units)


def test_cmu_amc_and_bvh_of_the_same_trial_agree(shared_data: Path) -> None:
    """01_01.bvh is 01_01.amc with one extra leading T-pose frame; both on 01.asf's skeleton."""
    amc = load_amc(shared_data / "cmu_mocap" / "asf_amc" / "01_01.amc")
    bvh = load_bvh(shared_data / "cmu_mocap" / "bvh" / "01_01.bvh")
    assert bvh.num_frames == amc.num_frames + 1
    assert bvh.meta["unit"] == "asf_0.45" and amc.meta["subject"] == bvh.meta["subject"] == "01"
    err = np.abs(bvh.positions[1:].astype(np.float64) - amc.positions).max()
    assert err < 1e-5  # metres; measured 8.7e-5 ASF units = 4.9e-6 m (the BVH has 4-5 decimals)
    # the first BVH frame is the rest pose: all leg joints straight below the hips
    idx = STANDARD.index
    p0 = bvh.positions[0]
    assert p0[idx("LeftFoot"), 1] < p0[idx("LeftLeg"), 1] < p0[idx("LeftUpLeg"), 1]


def test_real_long_bvh_trial_loads_whole(shared_data: Path) -> None:
    m = load_bvh(shared_data / "cmu_mocap" / "bvh" / "01_01.bvh")
    assert m.num_frames == 2752 and np.isfinite(m.positions).all()


# ------------------------------------------------------------------------ bad input


def _raises(match: str, path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_bvh(path, **kwargs)
    msg = str(info.value)
    assert match in msg, msg
    assert path.name in msg and "\n" not in msg
    return msg


def good_lines(tmp_path: Path) -> list[str]:
    f = write_bvh(tmp_path / "tmp.bvh", chain_tree(), [[0] * 9, [1] * 9, [2] * 9])
    return f.read_text().splitlines()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def line_no(lines: list[str], startswith: str, nth: int = 0) -> int:
    return [i for i, line in enumerate(lines) if line.strip().startswith(startswith)][nth] + 1


def test_empty_bvh(tmp_path: Path) -> None:
    f = tmp_path / "empty.bvh"
    f.write_text("  \r\n\n")
    _raises("empty file", f)


def test_missing_file(tmp_path: Path) -> None:
    _raises("not found", tmp_path / "absent.bvh")


def test_missing_motion_section(tmp_path: Path) -> None:
    lines = good_lines(tmp_path)
    f = write_lines(tmp_path / "nomotion.bvh", lines[: lines.index("MOTION")])
    _raises("no MOTION section", f)


def test_wrong_channel_count_in_motion_line(tmp_path: Path) -> None:
    lines = good_lines(tmp_path)
    k = line_no(lines, "Frame Time") + 2  # the second frame line
    lines[k - 1] = "1 1 1 1 1 1 1 1"
    msg = _raises("expected 9 channel values, got 8", write_lines(tmp_path / "chan.bvh", lines))
    assert f"line {k}" in msg and "frame 2" in msg


def test_frame_count_mismatch(tmp_path: Path) -> None:
    lines = good_lines(tmp_path)
    f = write_lines(tmp_path / "short.bvh", lines[:-1])  # says 3 frames, has 2
    msg = _raises("'Frames: 3'", f)
    assert "2 frame line(s)" in msg and f"line {line_no(lines, 'Frames')}" in msg
    lines[line_no(lines, "Frames") - 1] = "Frames: 2"
    f = write_lines(tmp_path / "long.bvh", lines)  # says 2, has 3
    _raises("3 frame line(s)", f)


def test_non_numeric_motion_value(tmp_path: Path) -> None:
    lines = good_lines(tmp_path)
    k = line_no(lines, "Frame Time") + 3
    lines[k - 1] = "2 2 2 2 x2 2 2 2 2"
    msg = _raises("'x2'", write_lines(tmp_path / "text.bvh", lines))
    assert f"line {k}" in msg and "frame 3" in msg and "value 5" in msg


def test_nan_motion_value(tmp_path: Path) -> None:
    lines = good_lines(tmp_path)
    k = line_no(lines, "Frame Time") + 1
    lines[k - 1] = "0 0 0 0 0 0 0 NaN 0"
    msg = _raises("'NaN'", write_lines(tmp_path / "nan.bvh", lines))
    assert f"line {k}" in msg and "frame 1" in msg and "finite" in msg


def test_bad_hierarchy(tmp_path: Path) -> None:
    lines = good_lines(tmp_path)
    bad = lines.copy()
    k = line_no(lines, "CHANNELS", 1)
    bad[k - 1] = "\t\tCHANNELS 3 Zrotation Yrotation Wrotation"
    msg = _raises("unknown channel 'Wrotation'", write_lines(tmp_path / "chan_name.bvh", bad))
    assert f"line {k}" in msg
    bad = lines.copy()
    k = line_no(lines, "OFFSET", 1)
    bad[k - 1] = "\t\tOFFSET 0 two 0"
    msg = _raises("'two'", write_lines(tmp_path / "offset.bvh", bad))
    assert f"line {k}" in msg
    bad = [line for line in lines if line.strip() != "}"]  # no closing braces
    _raises("hierarchy ends early", write_lines(tmp_path / "braces.bvh", bad))
    bad = lines.copy()
    bad[0] = "HIERARCHIE"
    msg = _raises("expected 'HIERARCHY'", write_lines(tmp_path / "head.bvh", bad))
    assert "line 1" in msg


def test_bad_motion_header(tmp_path: Path) -> None:
    lines = good_lines(tmp_path)
    k = line_no(lines, "Frames")
    bad = lines.copy()
    bad[k - 1] = "Frames: many"
    msg = _raises("integer frame count", write_lines(tmp_path / "frames.bvh", bad))
    assert f"line {k}" in msg
    bad = lines.copy()
    bad[k] = "Frame Time: 0"
    msg = _raises("Frame Time must be > 0", write_lines(tmp_path / "ftime.bvh", bad))
    assert f"line {k + 1}" in msg


def test_bad_scale(tmp_path: Path) -> None:
    f = write_bvh(tmp_path / "rest.bvh", standard_tree())
    _raises("scale must be > 0", f, scale=-1.0)
    _raises("scale must be a number", f, scale="big")
