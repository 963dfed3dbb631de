"""Renderer throughput at 480x480: the renderer vs encode-only vs a naive matplotlib baseline.

Run from the repository root::

    .venv/bin/python bench/render_throughput.py [--repeats 7] [--naive-frames 12] [--json]

All three make an MP4 of the same motion with the same x264 settings (``RenderConfig``'s):

(a) renderer: ``render_video`` end to end (schedule, drawing, piping, encoding, atomic write);
(b) encode-only: ffmpeg fed the renderer's ready-made RGBA frames through the same pipe;
(c) naive: per frame a new matplotlib 3D figure, the bones plotted, ``savefig`` to a PNG,
    then ffmpeg encodes the PNGs (over a handful of frames: it is slow).

(a) and (b) alternate ``--repeats`` times and the best (least disturbed) run of each is
compared; medians are shown too. Wall-clock rates move with whatever else the machine
runs (its load average is printed), so CPU time per frame is reported as well, for the
drawing process and for ffmpeg, with the rate an otherwise idle 2-core machine would
reach when each gets a core. Goals (issue 4): (a) >= 300 frames/s, (a)/(b) >= 0.6,
(a)/(c) >= 45.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stimuli.render import Camera  # noqa: E402
from stimuli.render import RenderConfig  # noqa: E402
from stimuli.render import render_video  # noqa: E402
from stimuli.render.draw import FigureRenderer  # noqa: E402
from stimuli.render.ffmpeg import VideoEncoder  # noqa: E402
from stimuli.render.ffmpeg import encoder_args  # noqa: E402
from stimuli.render.ffmpeg import ffmpeg_exe  # noqa: E402
from stimuli.render.timing import resample  # noqa: E402
from stimuli.skeleton import STANDARD  # noqa: E402


class Clock:
    """Wall time, and CPU time of this process and of its finished children (ffmpeg)."""

    def __enter__(self) -> Clock:
        self.t, self.c, self.k = time.perf_counter(), time.process_time(), _children_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t
        self.cpu_self = time.process_time() - self.c
        self.cpu_children = _children_cpu() - self.k


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load_motion() -> tuple[np.ndarray, float, str]:
    """A real HDM05 clip when the shared data is there, else a synthetic walk."""
    from stimuli.paths import shared_data_dir

    folder = shared_data_dir() / "hdm05_smart_subset"
    if folder.is_dir():
        from attack_gen.data.smart_npz import load_smart_npz

        d = load_smart_npz(folder)
        i = 3
        return d.positions_m[i], 30.0, f"HDM05 SMART subset clip {i} ({d.label_names()[i]}, 60 frames at 30 fps)"
    from attack_gen.data.synthetic import generate_motion

    m = generate_motion("walk", seed=0)
    return m.positions, m.fps, f"synthetic walk ({m.num_frames} frames at {m.fps:g} fps)"


def bench_renderer(motion: np.ndarray, fps: float, camera: Camera, config: RenderConfig, out: Path) -> Clock:
    with Clock() as clock:
        render_video(motion, out / "renderer.mp4", camera, config, motion_fps=fps)
    return clock


def bench_encode_only(frames: list[np.ndarray], config: RenderConfig, out: Path) -> Clock:
    with Clock() as clock, VideoEncoder(out / "encode_only.mp4", config.width, config.height, config) as enc:
        for f in frames:
            enc.write(f)
    return clock


def bench_naive(poses: np.ndarray, config: RenderConfig, out: Path) -> Clock:
    """A new 3D matplotlib figure per frame, saved as PNG, then the PNGs encoded by ffmpeg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = poses.reshape(-1, 3).min(0), poses.reshape(-1, 3).max(0)
    folder = out / "naive"
    folder.mkdir()
    dpi = 100
    with Clock() as clock:
        for k, pose in enumerate(poses):
            fig = plt.figure(figsize=(config.width / dpi, config.height / dpi), dpi=dpi)
            ax = fig.add_subplot(projection="3d")
            for c, p in STANDARD.bones:  # matplotlib's 3D axes are Z up: plot (x, z, y)
                ax.plot([pose[c, 0], pose[p, 0]], [pose[c, 2], pose[p, 2]], [pose[c, 1], pose[p, 1]], lw=4)
            ax.scatter(pose[:, 0], pose[:, 2], pose[:, 1], s=10, c="k")
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[2], hi[2])
            ax.set_zlim(lo[1], hi[1])
            ax.view_init(elev=config.elevation_deg, azim=90 - config.azimuth_deg)
            fig.savefig(folder / f"f{k:05d}.png", dpi=dpi)
            plt.close(fig)
        cmd = [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-framerate",
            str(config.fps),
            "-i",
            str(folder / "f%05d.png"),
            *encoder_args(config),
            "-f",
            "mp4",
            str(out / "naive.mp4"),
        ]
        subprocess.run(cmd, check=True)
    return clock


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="alternating runs of (a) and (b) (default 7)")
    ap.add_argument("--naive-frames", type=int, default=12, help="frames for the matplotlib baseline (default 12)")
    ap.add_argument("--preset", default=None, help="x264 preset (default: RenderConfig's)")
    ap.add_argument("--threads", type=int, default=None, help="x264 threads (default: RenderConfig's)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    config = RenderConfig()
    if args.preset is not None:
        config = config.replace(preset=args.preset)
    if args.threads is not None:
        config = config.replace(threads=args.threads)
    motion, fps, what = load_motion()
    camera = Camera.fit([motion], config)
    poses = resample(motion, fps, config)
    fig = FigureRenderer(camera, config)
    frames = [f.copy() for f in fig.draw_many(poses)]
    n = len(frames)

    with tempfile.TemporaryDirectory(prefix="render_bench_") as tmp:
        out = Path(tmp)
        bench_renderer(motion, fps, camera, config, out)  # warm-up: imports, page cache, caches
        bench_encode_only(frames, config, out)
        rc, ec = [], []
        for _ in range(args.repeats):
            rc.append(bench_renderer(motion, fps, camera, config, out))
            ec.append(bench_encode_only(frames, config, out))
        draw = []
        for _ in range(3):
            with Clock() as clock:
                for _f in fig.draw_many(poses):
                    pass
            draw.append(clock)
        nc = bench_naive(poses[: args.naive_frames], config, out)
    load = os.getloadavg()[0]

    renderer = [n / c.wall for c in rc]
    encode = [n / c.wall for c in ec]
    naive = args.naive_frames / nc.wall
    ms = {  # CPU milliseconds per frame, least disturbed run
        "renderer_python": min(c.cpu_self for c in rc) / n * 1e3,
        "renderer_ffmpeg": min(c.cpu_children for c in rc) / n * 1e3,
        "encode_only_python": min(c.cpu_self for c in ec) / n * 1e3,
        "encode_only_ffmpeg": min(c.cpu_children for c in ec) / n * 1e3,
        "drawing_only": min(c.cpu_self for c in draw) / n * 1e3,
        "naive_total": (nc.cpu_self + nc.cpu_children) / args.naive_frames * 1e3,
    }
    # An idle 2-core machine: the drawing process and ffmpeg each on a core, bound by the busier.
    idle = {
        "renderer": 1e3 / max(ms["renderer_python"], ms["renderer_ffmpeg"]),
        "encode_only": 1e3 / max(ms["encode_only_python"], ms["encode_only_ffmpeg"]),
        "naive": 1e3 / ms["naive_total"],
    }
    res = {
        "motion": what,
        "frames_per_video": n,
        "size": f"{config.width}x{config.height}",
        "x264": {"preset": config.preset, "tune": config.tune, "crf": config.crf, "threads": config.threads},
        "cpus": os.cpu_count(),
        "load_average_1min": round(load, 2),
        "renderer_fps": {"best": max(renderer), "median": statistics.median(renderer)},
        "encode_only_fps": {"best": max(encode), "median": statistics.median(encode)},
        "drawing_only_fps": n / min(c.wall for c in draw),
        "naive_matplotlib_fps": naive,
        "ratio_renderer_to_encode_only": max(renderer) / max(encode),
        "ratio_renderer_to_naive": max(renderer) / naive,
        "cpu_ms_per_frame": ms,
        "idle_two_core_estimate_fps": idle,
    }
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"motion: {what}; {n} frames per video at {res['size']}")
    print(f"x264: {res['x264']}; {res['cpus']} CPUs, load average {res['load_average_1min']}")
    med_r, med_e = statistics.median(renderer), statistics.median(encode)
    print(f"(a) renderer (draw + encode):   best {max(renderer):6.1f} frames/s, median {med_r:6.1f}")
    print(f"(b) encode-only (ready frames): best {max(encode):6.1f} frames/s, median {med_e:6.1f}")
    print(f"(c) naive matplotlib + encode:       {naive:6.1f} frames/s ({args.naive_frames} frames)")
    print(f"    drawing only (no encoding):      {res['drawing_only_fps']:6.1f} frames/s")
    print(f"renderer / encode-only: {res['ratio_renderer_to_encode_only']:.2f}   (goal >= 0.6)")
    print(f"renderer / naive:       {res['ratio_renderer_to_naive']:.0f}x    (goal >= 45x)")
    print(
        f"CPU ms/frame: renderer {ms['renderer_python']:.2f} python + {ms['renderer_ffmpeg']:.2f} ffmpeg "
        f"(drawing alone {ms['drawing_only']:.2f}); encode-only {ms['encode_only_python']:.2f} python + "
        f"{ms['encode_only_ffmpeg']:.2f} ffmpeg; naive {ms['naive_total']:.0f}"
    )
    print(
        f"idle 2-core estimate from CPU time: renderer {idle['renderer']:.0f} frames/s, encode-only "
        f"{idle['encode_only']:.0f}, naive {idle['naive']:.1f} "
        f"(renderer/encode-only {idle['renderer'] / idle['encode_only']:.2f}, "
        f"renderer/naive {idle['renderer'] / idle['naive']:.0f}x)"
    )


if __name__ == "__main__":
    main()
