"""Seeded mutations of real motion files, for the loader fuzz tests and ``bench/fuzz_loaders.py``.

A mutation replaces one number by an odd one (huge, tiny, NaN, another script's digits,
underscores, ...), or deletes, doubles or swaps lines, truncates the file, flips or
inserts bytes. :func:`judge` loads the result: the loader must either give the project's
own one-line :class:`stimuli.errors.DataError` naming the file, or a motion that is finite
and within :mod:`attack_gen.data.limits`; anything else (another exception, a traceback's
worth of text, garbage accepted) fails.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from attack_gen.data import load_motion
from attack_gen.data.limits import MAX_BONE_M
from attack_gen.data.limits import MAX_FPS
from attack_gen.data.limits import MAX_POSITION_M
from attack_gen.data.limits import MIN_FPS
from attack_gen.data.smart_npz import load_smart_npz
from stimuli.errors import DataError
from stimuli.skeleton import KINECT_V2
from stimuli.skeleton import STANDARD

ODD = [
    "1e30",
    "-1e30",
    "1e308",
    "3.4e38",
    "nan",
    "-inf",
    "inf",
    "1e-300",
    "0",
    "-0",
    "١٢",
    "１２",
    "1_0",
    "0x10",
    "",
    "abc",
    "12.5.3",
    "+",
    "9" * 40,
    "1e20",
    "-1e300",
    "7",
    "0.0000001",
]
_NUM = re.compile(rb"[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation of a text file's bytes."""
    kind = rng.integers(0, 8)
    if kind <= 2:  # the most telling: one number replaced by an odd one
        spots = [m.span() for m in _NUM.finditer(data)]
        if spots:
            a, b = spots[int(rng.integers(len(spots)))]
            return data[:a] + ODD[int(rng.integers(len(ODD)))].encode() + data[b:]
    lines = data.split(b"\n")
    if kind == 3 and len(lines) > 1:
        del lines[int(rng.integers(len(lines)))]
        return b"\n".join(lines)
    if kind == 4:
        k = int(rng.integers(len(lines)))
        lines.insert(k, lines[k])
        return b"\n".join(lines)
    if kind == 5 and len(lines) > 2:
        i, j = rng.choice(len(lines), 2, replace=False)
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if kind == 6:
        return data[: int(rng.integers(len(data)))]
    pos = int(rng.integers(len(data)))
    if rng.random() < 0.5:
        return data[:pos] + bytes([int(rng.integers(256))]) + data[pos + 1 :]
    return data[:pos] + rng.integers(0, 256, int(rng.integers(1, 8))).astype(np.uint8).tobytes() + data[pos:]


def _head(path: Path, out: Path, keep: int) -> Path:
    out.write_bytes(b"\n".join(path.read_bytes().split(b"\n")[:keep]) + b"\n")
    return out


def base_files(shared: Path, tmp: Path) -> dict[str, tuple[Path, list[Path]]]:
    """Short real files per format: ``format -> (file to mutate, files it needs beside it)``."""
    out: dict[str, tuple[Path, list[Path]]] = {}
    sample = shared / "hdm05_parser_sample"
    asf = tmp / "HDM_dg.asf"
    shutil.copy(sample / "HDM_dg.asf", asf)
    amc_lines = (sample / "HDM_dg_06-03_03_120.amc").read_bytes().split(b"\n")
    frame = [i for i, ln in enumerate(amc_lines) if ln.strip().isdigit()]
    out["amc"] = (_cut(amc_lines, frame[20], tmp / "HDM_dg_06-03_03_120.amc"), [asf])
    out["asf"] = (asf, [out["amc"][0]])
    bvh = (shared / "bandai_namco_motion" / "dataset-1" / "dataset-1_walk_normal_001.bvh").read_text()
    head, motion = bvh.split("MOTION", 1)
    mlines = motion.strip("\n").split("\n")
    frames = mlines[2:32]
    text = head + "MOTION\nFrames: 30\n" + mlines[1] + "\n" + "\n".join(frames) + "\n"
    out["bvh"] = (tmp / "walk.bvh", [])
    out["bvh"][0].write_text(text)
    out["kinect_csv"] = (
        _head(shared / "kinect_v2_gestures" / "Ges01_wavehand.csv", tmp / "Ges01_wavehand.csv", 40),
        [],
    )
    out["ntu_skeleton"] = (_ntu_from_kinect(out["kinect_csv"][0], tmp / "S001C001P001R001A001.skeleton"), [])
    return out


def _cut(lines: list[bytes], end: int, out: Path) -> Path:
    out.write_bytes(b"\n".join(lines[:end]) + b"\n")
    return out


def _ntu_from_kinect(csv: Path, out: Path) -> Path:
    """An NTU RGB+D ``.skeleton`` file holding a real Kinect v2 capture (one body)."""
    rows = [ln.rstrip(",").split(",") for ln in csv.read_text().splitlines() if ln.strip()]
    lines = [str(len(rows))]
    for r in rows:
        v = np.array(r[1:], dtype=float).reshape(KINECT_V2.num_joints, 4)
        lines += ["1", "72057594037931101 0 1 1 1 1 0 0.1961553 -0.2062037 2", str(KINECT_V2.num_joints)]
        lines += [f"{x:.7g} {y:.7g} {z:.7g} 276.5 201.1 1003.2 529.8 0.1 0.2 0.3 0.9 {int(s)}" for x, y, z, s in v]
    out.write_text("\n".join(lines) + "\n")
    return out


def judge(path: Path, mutated: Path | None = None) -> str:
    """Load ``path`` (``mutated`` is the file that was changed, ``path`` by default):
    ``"error"`` (a clean one-line DataError naming a file) or ``"accepted"`` (plausible output)."""
    try:
        m = load_motion(path)
    except DataError as e:
        msg = str(e)
        assert "\n" not in msg and len(msg) < 600, msg
        assert any(p.name in msg for p in (path, mutated or path)), msg
        return "error"
    check_plausible(m.positions, m.fps, path)
    return "accepted"


def check_plausible(positions: np.ndarray, fps: float, what: object) -> None:
    p = np.asarray(positions, np.float64)
    assert np.isfinite(p).all(), what
    assert np.abs(p).max() <= MAX_POSITION_M, what
    assert STANDARD.bone_lengths(p).max() <= MAX_BONE_M, what
    assert MIN_FPS <= fps <= MAX_FPS, what


def judge_smart_npz(clips: Path, core: Path) -> str:
    try:
        d = load_smart_npz(clips, core=core)
    except DataError as e:
        assert "\n" not in str(e), str(e)
        return "error"
    check_plausible(d.positions_m, 30.0, clips)
    return "accepted"
