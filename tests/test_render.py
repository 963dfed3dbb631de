"""The stimulus renderer: videos, composites, camera, frame schedule, figure, errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stimuli.errors import MotionFormatError
from stimuli.errors import SmartStudyError
from stimuli.motion import Motion
from stimuli.render import Camera
from stimuli.render import RenderConfig
from stimuli.render import RenderError
from stimuli.render import VideoOutput
from stimuli.render import background
from stimuli.render import contact_sheet
from stimuli.render import decode_frames
from stimuli.render import ffmpeg_exe
from stimuli.render import frame_schedule
from stimuli.render import probe_video
from stimuli.render import render_frame
from stimuli.render import render_frames
from stimuli.render import render_many
from stimuli.render import render_pair
from stimuli.render import render_side_by_side
from stimuli.render import render_side_by_side_frames
from stimuli.render import render_video
from stimuli.render import resample
from stimuli.render import write_png
from stimuli.render import write_poster
from stimuli.skeleton import STANDARD

SMALL = RenderConfig(width=128, height=96, fps=15.0, duration=1.0)


# ---- motions built by hand --------------------------------------------------------------
def standing_pose() -> np.ndarray:
    """A person standing, facing +Z (their left is +X), metres, Y up; quirks as in real data."""
    p = {
        "Hips": (0, 0.95, 0),
        "LHipJoint": (0, 0.95, 0),
        "RHipJoint": (0, 0.95, 0),
        "LeftUpLeg": (0.10, 0.90, 0),
        "LeftLeg": (0.11, 0.50, 0.02),
        "LeftFoot": (0.11, 0.08, 0),
        "LeftToeBase": (0.12, 0.02, 0.13),
        "Spine": (0, 1.07, 0),
        "Spine1": (0, 1.19, 0),
        "Neck": (0, 1.19, 0),
        "Neck1": (0, 1.29, 0.02),
        "LeftArm": (0.19, 1.19, 0),
        "LeftForeArm": (0.22, 0.91, 0),
        "LeftHand": (0.24, 0.66, 0.02),
        "LeftHandIndex1": (0.25, 0.61, 0.03),
        "LThumb": (0.24, 0.66, 0.02),
    }
    pose = np.zeros((25, 3))
    for name, xyz in p.items():
        pose[STANDARD.index(name)] = xyz
        if name.startswith("Left") or name[0] == "L" and name != "LHipJoint":
            mirror = "Right" + name[4:] if name.startswith("Left") else "R" + name[1:]
            pose[STANDARD.index(mirror)] = (-xyz[0], xyz[1], xyz[2])
    return pose.astype(np.float32)


def swinging_motion(num_frames: int = 30) -> np.ndarray:
    """Arms and legs swinging forward and back around the standing pose, in place."""
    pose = standing_pose().astype(np.float64)
    t = np.arange(num_frames) / num_frames * 2 * np.pi
    out = np.repeat(pose[None], num_frames, axis=0)
    for names, sign in (
        (("LeftForeArm", "LeftHand", "LeftHandIndex1", "LThumb"), 1),
        (("RightForeArm", "RightHand", "RightHandIndex1", "RThumb"), -1),
        (("LeftLeg", "LeftFoot", "LeftToeBase"), -0.6),
        (("RightLeg", "RightFoot", "RightToeBase"), 0.6),
    ):
        for k, name in enumerate(names):
            out[:, STANDARD.index(name), 2] += sign * 0.12 * (k + 1) * np.sin(t)
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def motion() -> np.ndarray:
    return swinging_motion()


@pytest.fixture(scope="module")
def camera(motion: np.ndarray) -> Camera:
    return Camera.fit([motion], SMALL)


def frames_of(motion, camera, config=SMALL, fps=30.0) -> np.ndarray:
    return np.stack(list(render_frames(motion, camera, config, motion_fps=fps)))


# ---- probe, checked on a file whose properties we set ourselves --------------------------
def test_probe_reads_a_known_video(tmp_path: Path) -> None:
    path = tmp_path / "known.mp4"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=10",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv444p",
            str(path),
        ],
        check=True,
    )
    info = probe_video(path)
    assert (info["codec"], info["pix_fmt"], info["width"], info["height"]) == ("h264", "yuv444p", 64, 48)
    assert info["frames"] == 20 and info["fps"] == 10.0 and info["duration"] == pytest.approx(2.0)
    assert info["faststart"] is False  # ffmpeg's default puts the index at the end
    assert decode_frames(path).shape == (20, 48, 64, 3)


def test_probe_refuses_a_non_video(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(RenderError, match="not a readable video"):
        probe_video(bad)
    with pytest.raises(RenderError, match="not found"):
        probe_video(tmp_path / "missing.mp4")


# ---- the video file ------------------------------------------------------------------------
def test_video_is_browser_ready_h264(tmp_path: Path, motion, camera) -> None:
    info = render_video(motion, tmp_path / "v.mp4", camera, SMALL, motion_fps=30, poster=tmp_path / "v.png")
    p = probe_video(info.path)
    assert p["codec"] == "h264" and p["pix_fmt"] == "yuv420p" and "bt709" in p["color"]
    assert (p["width"], p["height"]) == (128, 96) == (info.width, info.height)
    assert p["frames"] == info.frames == SMALL.num_frames == 15
    assert p["duration"] == pytest.approx(1.0) and info.duration == 1.0 and p["fps"] == 15.0
    assert p["faststart"] is True
    assert info.sha256 == __import__("hashlib").sha256(info.path.read_bytes()).hexdigest()
    assert sorted(os.listdir(tmp_path)) == ["v.mp4", "v.png"]  # no temporary file left


@pytest.mark.parametrize(("duration", "fps", "frames"), [(1.1, 24.0, 26), (0.5, 30.0, 15), (0.7, 25.0, 18)])
def test_frame_count_is_round_duration_times_fps(tmp_path: Path, motion, camera, duration, fps, frames) -> None:
    cfg = SMALL.replace(duration=duration, fps=fps)
    info = render_video(motion, tmp_path / "v.mp4", camera, cfg, motion_fps=30)
    assert info.frames == frames == probe_video(info.path)["frames"] == len(decode_frames(info.path))


def test_output_is_deterministic(tmp_path: Path, motion, camera) -> None:
    a = render_video(motion, tmp_path / "a.mp4", camera, SMALL, motion_fps=30)
    b = render_video(motion, tmp_path / "b.mp4", camera, SMALL, motion_fps=30)
    assert a.sha256 == b.sha256
    assert np.array_equal(frames_of(motion, camera), frames_of(motion, camera))


def test_encoded_frames_match_the_drawn_frames_and_colours_survive(tmp_path: Path, motion) -> None:
    cfg = SMALL.replace(width=240, height=240)
    cam = Camera.fit([motion], cfg)
    raw = frames_of(motion, cam, cfg)
    dec = decode_frames(render_video(motion, tmp_path / "v.mp4", cam, cfg, motion_fps=30).path).astype(int)
    assert np.abs(dec - raw).mean() < 2.0
    # The limb colours survive yuv420p's half-resolution chroma inside the bones (2 px from their edges).
    for name in ("left_color", "right_color", "trunk_color"):
        col = np.array(getattr(cfg, name))
        same = (raw == col).all(-1)
        inside = same.copy()
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                inside &= np.roll(same, (dy, dx), axis=(1, 2))
        assert inside.sum() > 100, name
        assert np.abs(dec[inside].mean(0) - col).max() < 5, name


def test_poster_is_the_configured_frame(tmp_path: Path, motion, camera) -> None:
    cfg = SMALL.replace(poster_frame=7)
    info = render_video(motion, tmp_path / "v.mp4", camera, cfg, motion_fps=30, poster=tmp_path / "v.png")
    raw = frames_of(motion, camera, cfg)
    assert np.array_equal(decode_frames(info.poster)[0], raw[7])  # PNG is lossless
    write_poster(motion, tmp_path / "p.png", camera, cfg, motion_fps=30)
    assert (tmp_path / "p.png").read_bytes() == info.poster.read_bytes()
    write_poster(motion, tmp_path / "f0.png", camera, cfg, motion_fps=30, frame=0)
    assert np.array_equal(decode_frames(tmp_path / "f0.png")[0], raw[0])


# ---- side by side ---------------------------------------------------------------------------
def attacked(motion: np.ndarray, joint: str = "LeftHand", by=(0.0, 0.06, 0.05)) -> np.ndarray:
    out = motion.copy()
    out[:, STANDARD.index(joint)] += np.asarray(by, np.float32)
    return out


def test_composite_halves_equal_the_single_videos(tmp_path: Path, motion) -> None:
    variant = attacked(motion)
    cam = Camera.fit([motion, variant], SMALL)
    W, s = SMALL.width, SMALL.separator_px
    left, right = frames_of(motion, cam), frames_of(variant, cam)
    comp = np.stack(list(render_side_by_side_frames(motion, variant, cam, SMALL, motion_fps=30)))
    assert comp.shape == (15, 96, 2 * W + s, 3)
    # raw frames: an exact hstack, the separator bar between
    assert np.array_equal(comp[:, :, :W], left) and np.array_equal(comp[:, :, W + s :], right)
    assert (comp[:, :, W : W + s] == SMALL.separator_color).all()
    # encoded: the decoded halves match the decoded single videos up to H.264's loss
    info = render_side_by_side(motion, variant, tmp_path / "ab.mp4", cam, SMALL, motion_fps=30)
    assert (info.width, info.frames, probe_video(info.path)["width"]) == (2 * W + s, 15, 2 * W + s)
    dec = decode_frames(info.path).astype(int)
    dl = decode_frames(render_video(motion, tmp_path / "a.mp4", cam, SMALL, motion_fps=30).path).astype(int)
    dr = decode_frames(render_video(variant, tmp_path / "b.mp4", cam, SMALL, motion_fps=30).path).astype(int)
    for k in range(15):
        assert np.abs(dec[k, :, :W] - dl[k]).mean() < 2.0
        assert np.abs(dec[k, :, W + s :] - dr[k]).mean() < 2.0


def test_both_orders_mirror_each_other(tmp_path: Path, motion) -> None:
    variant = attacked(motion)
    cam = Camera.fit([motion, variant], SMALL)
    W, s = SMALL.width, SMALL.separator_px
    ab = np.stack(list(render_side_by_side_frames(motion, variant, cam, SMALL, motion_fps=30)))
    ba = np.stack(list(render_side_by_side_frames(variant, motion, cam, SMALL, motion_fps=30)))
    assert np.array_equal(ab[:, :, :W], ba[:, :, W + s :]) and np.array_equal(ab[:, :, W + s :], ba[:, :, :W])
    i_ab, i_ba = render_pair(
        motion,
        variant,
        tmp_path / "ab.mp4",
        tmp_path / "ba.mp4",
        cam,
        SMALL,
        motion_fps=30,
        poster_ab=tmp_path / "ab.png",
        poster_ba=tmp_path / "ba.png",
    )
    d_ab, d_ba = decode_frames(i_ab.path).astype(int), decode_frames(i_ba.path).astype(int)
    assert np.abs(d_ab[:, :, :W] - d_ba[:, :, W + s :]).mean() < 2.0
    assert np.abs(d_ab[:, :, W + s :] - d_ba[:, :, :W]).mean() < 2.0
    assert np.array_equal(decode_frames(i_ab.poster)[0], ab[0])
    assert np.array_equal(decode_frames(i_ba.poster)[0], ba[0])
    # render_pair's a|b is the same file as render_side_by_side's; so is a side-by-side poster
    assert render_side_by_side(motion, variant, tmp_path / "x.mp4", cam, SMALL, motion_fps=30).sha256 == i_ab.sha256
    write_poster(variant, tmp_path / "p.png", cam, SMALL, motion_fps=30, right=motion)
    assert (tmp_path / "p.png").read_bytes() == i_ba.poster.read_bytes()


def test_one_drawing_for_many_videos_gives_the_files_each_alone_gives(tmp_path: Path, motion) -> None:
    variant = attacked(motion)
    cam = Camera.fit([motion, variant], SMALL)
    motions = {"o": motion, "v": variant}
    outputs = [
        VideoOutput(tmp_path / "o.mp4", "o", poster=tmp_path / "o.png"),
        VideoOutput(tmp_path / "v.mp4", "v"),
        VideoOutput(tmp_path / "o_v.mp4", "o", "v", tmp_path / "o_v.png"),
        VideoOutput(tmp_path / "v_o.mp4", "v", "o"),
        VideoOutput(tmp_path / "o_o.mp4", "o", "o"),  # one motion on both sides: one buffer, drawn once
    ]
    infos = render_many(motions, outputs, cam, SMALL, motion_fps=30)
    alone = tmp_path / "alone"
    assert [i.sha256 for i in infos] == [
        render_video(motion, alone / "o.mp4", cam, SMALL, motion_fps=30).sha256,
        render_video(variant, alone / "v.mp4", cam, SMALL, motion_fps=30).sha256,
        render_side_by_side(motion, variant, alone / "o_v.mp4", cam, SMALL, motion_fps=30).sha256,
        render_side_by_side(variant, motion, alone / "v_o.mp4", cam, SMALL, motion_fps=30).sha256,
        render_side_by_side(motion, motion, alone / "o_o.mp4", cam, SMALL, motion_fps=30).sha256,
    ]
    # the posters are the configured frame of exactly those pixels
    assert np.array_equal(decode_frames(tmp_path / "o.png")[0], frames_of(motion, cam)[SMALL.poster_frame])
    comp = np.stack(list(render_side_by_side_frames(motion, variant, cam, SMALL, motion_fps=30)))
    assert np.array_equal(decode_frames(tmp_path / "o_v.png")[0], comp[SMALL.poster_frame])
    assert [i.width for i in infos] == [SMALL.width] * 2 + [2 * SMALL.width + SMALL.separator_px] * 3
    bad = tmp_path / "bad"
    with pytest.raises(RenderError, match="render_many: no motion named 'x'"):
        render_many(motions, [VideoOutput(bad / "a.mp4", "o"), VideoOutput(bad / "b.mp4", "o", "x")], cam, SMALL, 30)
    assert not bad.exists()


def test_composite_without_separator_and_from_motion_objects(tmp_path: Path, motion, camera) -> None:
    cfg = SMALL.replace(separator_px=0)
    m = Motion(positions=motion, fps=30.0)
    info = render_side_by_side(m, m, tmp_path / "aa.mp4", camera, cfg)  # the Motion's fps is used
    assert probe_video(info.path)["width"] == 2 * cfg.width == info.width
    comp = np.stack(list(render_side_by_side_frames(m, m, camera, cfg)))
    single = frames_of(motion, camera, cfg, fps=30.0)
    assert np.array_equal(comp, np.concatenate([single, single], axis=2))
    assert not np.array_equal(frames_of(motion, camera, cfg, fps=np.float32(15.0)), single)


# ---- one camera for all variants ------------------------------------------------------------------
def _seg_dist(px: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((px - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
    return np.linalg.norm(px - (a + t[:, None] * ab), axis=1)


def test_a_variant_differs_only_near_its_changed_joint(motion) -> None:
    cfg = SMALL.replace(width=200, height=200)
    variant = attacked(motion)
    cam = Camera.fit([motion, variant], cfg)
    a, b = frames_of(motion, cam, cfg), frames_of(variant, cam, cfg)
    j = STANDARD.index("LeftHand")
    touching = [(c, p) for c, p in STANDARD.bones if j in (c, p)]
    poses = {id(m): resample(m, 30.0, cfg) for m in (motion, variant)}
    changed_frames = 0
    for k in range(len(a)):
        amount = np.abs(a[k].astype(int) - b[k]).max(-1)
        diff = np.argwhere(amount > 0)[:, ::-1] + 0.5  # (x, y) pixel centres
        if len(diff) == 0:
            continue
        changed_frames += 1
        near = np.full(len(diff), np.inf)
        for m in (motion, variant):
            pose = poses[id(m)][k]
            flat = pose.copy()
            flat[:, 1] = cam.floor_y  # the shadow moves too
            for pts in (pose, flat):
                uv, _ = cam.project(pts)
                for c, p in touching:
                    near = np.minimum(near, _seg_dist(diff, uv[c], uv[p]))
        # Visible changes stay within a bone's width of the moved bones or their shadows; the
        # anti-aliasing of the one-path soft shadow may move by a level or two elsewhere.
        far = amount[amount > 0][near >= 12]
        assert far.size == 0 or far.max() <= 2, f"frame {k}: a pixel far from the moved joint changed by {far.max()}"
    assert changed_frames == len(a)
    # the joint moved by a few centimetres: the change is local, most of the figure is identical
    assert (np.abs(a.astype(int) - b).max(-1) > 0).mean() < 0.05


def test_camera_frames_all_variants_and_round_trips(motion) -> None:
    far = attacked(motion, "RightHand", by=(-0.5, 0.4, 0.0))
    cfg = SMALL
    cam = Camera.fit([motion, far], cfg)
    for m in (motion, far):
        uv, depth = cam.project(m.reshape(-1, 3))
        assert (depth > 0).all()
        assert uv[:, 0].min() >= cfg.margin * cfg.width - 1 and uv[:, 0].max() <= (1 - cfg.margin) * cfg.width + 1
        assert uv[:, 1].min() >= cfg.margin * cfg.height - 1 and uv[:, 1].max() <= (1 - cfg.margin) * cfg.height + 1
    assert Camera.fit([far, motion], cfg) == cam  # the order of the variants does not matter
    assert Camera.fit([motion], cfg) != cam  # the far variant widened the shared framing
    d = json.loads(json.dumps(cam.to_dict()))
    assert Camera.from_dict(d) == cam
    assert cam.floor_y == pytest.approx(min(motion[..., 1].min(), far[..., 1].min()) - cfg.bone_radius)


def test_camera_follows_a_trajectory(tmp_path: Path) -> None:
    # walking 3 m along +X (sideways to the figure's facing) while swinging
    m = swinging_motion(60).astype(np.float64)
    m[..., 0] += np.linspace(0, 3.0, 60)[:, None]
    cam = Camera.fit([m], SMALL)
    uv, _ = cam.project(m.reshape(-1, 3))
    assert uv.min() >= 0 and uv[:, 0].max() <= SMALL.width and uv[:, 1].max() <= SMALL.height
    first, last = (cam.project(m[i, STANDARD.root])[0] for i in (0, -1))
    assert last[0] - first[0] > 0.4 * SMALL.width  # the figure crosses the frame, the camera stays
    assert cam.ground_radius > 1.5


def test_viewpoint_turns_with_the_figure(motion) -> None:
    plain = (235, 235, 235)  # a uniform background: the ground grid is fixed in the world
    cfg = SMALL.replace(
        width=160, height=160, background_top=plain, background_bottom=plain, ground_color=plain, grid_color=plain
    )
    a = np.radians(70.0)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    turned = (motion.astype(np.float64) @ rot.T).astype(np.float32)
    f1, f2 = frames_of(motion, Camera.fit([motion], cfg), cfg), frames_of(turned, Camera.fit([turned], cfg), cfg)
    assert np.abs(f1.astype(int) - f2).mean() < 0.5  # the same picture: only float noise differs
    fixed = cfg.replace(face_front=False)
    f3 = frames_of(turned, Camera.fit([turned], fixed), fixed)
    assert np.abs(f1.astype(int) - f3).mean() > 2


# ---- the figure -----------------------------------------------------------------------------------
def test_the_figure_is_a_person() -> None:
    cfg = RenderConfig(width=240, height=240, duration=1.0, fps=15.0)
    pose = standing_pose()
    cam = Camera.fit([pose[None]], cfg)
    img = render_frame(pose, cam, cfg).astype(int)
    bg = background(cam, cfg)[..., :3].astype(int)
    # the background is not empty: a gradient and a ground disc with a grid
    assert bg.std() > 3 and len(np.unique(bg.reshape(-1, 3), axis=0)) > 50
    nofig = render_frame(pose, cam, cfg.replace(shadow_opacity=0.0)).astype(int)
    figure = np.abs(nofig - bg).max(-1) > 24
    ys, xs = np.nonzero(figure)
    height = ys.max() - ys.min()
    assert height > 0.6 * cfg.height  # fills a good share of the frame
    assert abs((xs.min() + xs.max()) / 2 - cfg.width / 2) < 0.1 * cfg.width  # centred
    head = figure & (np.abs(img - cfg.head_color).max(-1) <= 3)
    hy, hx = np.nonzero(head)
    assert len(hy) > 100
    feet = [STANDARD.index(n) for n in ("LeftFoot", "RightFoot", "LeftToeBase", "RightToeBase")]
    fy = cam.project(pose[feet])[0][:, 1]
    assert hy.mean() < ys.min() + 0.2 * height  # the head is at the top
    assert (hy.max() < fy).all() and (fy > ys.max() - 0.15 * height).all()  # the feet at the bottom
    # the left and right limbs are told apart by colour
    assert (np.abs(img - cfg.left_color).max(-1) <= 2).sum() > 100
    assert (np.abs(img - cfg.right_color).max(-1) <= 2).sum() > 100
    # the shadow darkens the floor below the feet
    assert (img - nofig)[figure == 0].min() < -20


def test_degenerate_bones_draw_nothing_odd() -> None:
    cfg = SMALL
    pose = standing_pose()
    cam = Camera.fit([pose[None]], cfg)
    assert np.isfinite(np.asarray(render_frame(pose, cam, cfg), float)).all()
    # every joint at one point: every bone has zero length, only a dot and the head remain
    point = np.repeat(pose[STANDARD.index("Spine")][None], 25, axis=0)
    img = render_frame(point, cam, cfg).astype(int)
    assert (np.abs(img - background(cam, cfg)[..., :3]).max(-1) > 2).any()
    img = render_frame(point, cam, cfg.replace(shadow_opacity=0)).astype(int)
    only = np.abs(img - background(cam, cfg)[..., :3]).max(-1) > 2
    ys, xs = np.nonzero(only)
    head_px = cfg.head_radius * cam.focal_px / cam.distance
    assert ys.max() - ys.min() < 4 * head_px + 6 and xs.max() - xs.min() < 4 * head_px + 6


def test_contact_sheet_of_real_motions(tmp_path: Path, shared_data: Path) -> None:
    from attack_gen.data.smart_npz import load_smart_npz

    data = load_smart_npz(shared_data / "hdm05_smart_subset")
    clips = data.positions_m
    names = data.label_names()
    cfg = RenderConfig(width=240, height=240, duration=2.0, fps=30.0)
    tiles = []
    for i in (0, 3, 100):
        cam = Camera.fit([clips[i]], cfg)
        fr = frames_of(clips[i], cam, cfg)
        tiles += [fr[k] for k in (0, 20, 40, 59)]
        for f in fr:  # every frame shows a figure (dark outline pixels) on the light background
            assert (f.max(-1) < 60).sum() > 50, names[i]
    try:
        from attack_gen.data.synthetic import generate_motion
    except ImportError:  # pragma: no cover - the synthetic generator is optional here
        synth = swinging_motion()
    else:
        synth = generate_motion("walk", seed=3).positions
    cam = Camera.fit([synth], cfg)
    fr = frames_of(synth, cam, cfg)
    tiles += [fr[k] for k in (0, 15, 30, 45)]
    sheet = contact_sheet(tiles, cols=4)
    path = write_png(tmp_path / "sheet.png", sheet)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(decode_frames(path)[0], sheet)


# ---- timing ------------------------------------------------------------------------------------
def test_loop_schedule_by_hand() -> None:
    # 4 motion frames at 2 fps, video 4 fps for 3 s: s = k/2, looping modulo 4.
    cfg = RenderConfig(fps=4.0, duration=3.0, fill="loop")
    i0, i1, w = frame_schedule(4, 2.0, cfg)
    assert i0.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 1, 1]
    assert i1.tolist() == [1, 1, 2, 2, 3, 3, 3, 3, 1, 1, 2, 2]
    assert w.tolist() == [0, 0.5, 0, 0.5, 0, 0.5, 0, 0, 0, 0.5, 0, 0.5]


def test_hold_schedule_by_hand() -> None:
    cfg = RenderConfig(fps=4.0, duration=3.0, fill="hold")
    i0, i1, w = frame_schedule(4, 2.0, cfg)
    assert i0.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3]
    assert i1.tolist() == [1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3]
    assert w.tolist() == [0, 0.5, 0, 0.5, 0, 0.5, 0, 0, 0, 0, 0, 0]


def test_slowdown_stretches_time_by_hand() -> None:
    # 3x slower: 30 fps motion, 30 fps video, s = k/3; positions interpolate linearly.
    x = np.zeros((4, 25, 3), np.float32)
    x[..., 0] = np.arange(4)[:, None] * 3.0  # x coordinate = 3 * frame index
    cfg = RenderConfig(fps=30.0, duration=0.4, slowdown=3.0, fill="loop")  # 12 frames
    got = resample(x, 30.0, cfg)[:, 0, 0]
    assert got.tolist() == pytest.approx([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9])  # frame 3 held for its interval
    assert resample(x, 30.0, cfg.replace(fill="hold"))[:, 0, 0].tolist() == pytest.approx(
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]
    )
    # 15 fps motion in a 30 fps video, 2x slower: s = k/4; one loop is 16 video frames
    i0, i1, w = frame_schedule(4, 15.0, cfg.replace(slowdown=2.0, duration=20 / 30))
    assert i0.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 0, 0, 0, 0]
    assert w[:5].tolist() == [0, 0.25, 0.5, 0.75, 0]
    # a video frame on a motion frame shows exactly that frame
    motion = swinging_motion()
    poses = resample(motion, 30.0, RenderConfig(fps=30.0, duration=1.0))
    assert np.array_equal(poses.astype(np.float32), motion)


def test_short_motion_loops_or_holds_in_the_video(motion, camera) -> None:
    short = motion[:5]  # 5 frames at 15 fps in a 15-frame video
    loop = frames_of(short, camera, SMALL, fps=15.0)
    assert np.array_equal(loop[0], loop[5]) and np.array_equal(loop[4], loop[14])
    hold = frames_of(short, camera, SMALL.replace(fill="hold"), fps=15.0)
    assert all(np.array_equal(hold[4], hold[k]) for k in range(5, 15))
    assert not np.array_equal(hold[0], hold[5])


# ---- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"duration": 0.0}, "duration must be a finite number > 0"),
        ({"duration": 0.01}, "gives no frame"),
        ({"width": 101}, "width must be an even integer"),
        ({"fps": float("nan")}, "fps must be a finite number"),
        ({"slowdown": -1.0}, "slowdown"),
        ({"fill": "bounce"}, "fill must be one of loop, hold"),
        ({"preset": "warp"}, "preset must be one of"),
        ({"left_color": (300, 0, 0)}, "left_color"),
        ({"separator_px": 3}, "separator_px"),
        ({"poster_frame": 15}, "poster_frame must be a frame index 0..14"),
    ],
)
def test_bad_config_is_refused(change, match) -> None:
    with pytest.raises(RenderError, match=match) as e:
        SMALL.replace(**change)
    assert "\n" not in str(e.value)


def test_bad_motions_are_refused(tmp_path: Path, motion, camera) -> None:
    nan = motion.copy()
    nan[3, 7, 1] = np.nan
    cases = [
        (
            lambda: render_video(motion[:, :24], tmp_path / "x.mp4", camera, SMALL, motion_fps=30),
            MotionFormatError,
            r"expected shape \(T, V, C\) with V=25",
        ),
        (lambda: render_video(nan, tmp_path / "x.mp4", camera, SMALL, motion_fps=30), MotionFormatError, "NaN or Inf"),
        (lambda: render_video(motion, tmp_path / "x.mp4", camera, SMALL, motion_fps=0), RenderError, "motion_fps"),
        (lambda: render_video(motion, tmp_path / "x.mp4", camera, SMALL), RenderError, "motion_fps is required"),
        (
            lambda: render_video(motion, tmp_path / "x.mp4", camera, RenderConfig(), motion_fps=30),
            RenderError,
            "camera was fitted for 128x96",
        ),
        (lambda: Camera.fit([], SMALL), RenderError, "non-empty list"),
        (lambda: Camera.fit([motion, nan], SMALL), MotionFormatError, "motion 1"),
        (
            lambda: render_side_by_side(motion, motion[:, :, :2], tmp_path / "x.mp4", camera, SMALL, motion_fps=30),
            MotionFormatError,
            "right motion",
        ),
        (
            lambda: render_video(
                motion + (camera.position - motion[0, 10]).astype(np.float32),
                tmp_path / "x.mp4",
                camera,
                SMALL,
                motion_fps=30,
            ),
            RenderError,
            "fit the camera on every motion",
        ),
        (lambda: Camera.from_dict({"width": 10}), RenderError, "camera: missing field"),
        (lambda: RenderConfig.from_dict({"colour": 1}), RenderError, "unknown field 'colour'"),
        (lambda: write_png(tmp_path / "x.png", np.zeros((4, 4))), RenderError, "expected an"),
    ]
    for call, kind, match in cases:
        with pytest.raises(kind, match=match) as e:
            call()
        assert isinstance(e.value, SmartStudyError) and "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_ffmpeg_failure_reports_its_message_and_leaves_nothing(tmp_path: Path, motion, camera, monkeypatch) -> None:
    final = tmp_path / "v.mp4"
    final.write_bytes(b"previous")
    import stimuli.render.ffmpeg as ff

    monkeypatch.setattr(ff, "encoder_args", lambda config: ["-c:v", "no_such_encoder"])
    with pytest.raises(RenderError, match="no_such_encoder") as e:
        render_video(motion, final, camera, SMALL, motion_fps=30)
    assert "ffmpeg" in str(e.value) and "\n" not in str(e.value)
    assert final.read_bytes() == b"previous" and os.listdir(tmp_path) == ["v.mp4"]


def test_a_crash_mid_render_leaves_no_file(tmp_path: Path, motion, camera, monkeypatch) -> None:
    import stimuli.render.video as video

    calls = {"n": 0}
    real = video.FigureRenderer._draw

    def flaky(self, plan):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(self, plan)

    monkeypatch.setattr(video.FigureRenderer, "_draw", flaky)
    with pytest.raises(KeyboardInterrupt):
        render_video(motion, tmp_path / "v.mp4", camera, SMALL, motion_fps=30)
    assert os.listdir(tmp_path) == []


def test_render_imports_no_torch() -> None:
    code = "import sys, stimuli.render; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_contact_sheet_layout() -> None:
    tiles = [np.full((4, 6, 3), v, np.uint8) for v in (10, 20, 30)]
    sheet = contact_sheet(tiles, cols=2, gap=1)
    assert sheet.shape == (2 * 4 + 3, 2 * 6 + 3, 3)
    assert (sheet[1:5, 1:7] == 10).all() and (sheet[1:5, 8:14] == 20).all() and (sheet[6:10, 1:7] == 30).all()
    assert (sheet[6:10, 8:14] == 255).all()
    assert math.isclose(float(sheet[0].mean()), 255.0)
