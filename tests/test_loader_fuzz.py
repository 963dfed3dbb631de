"""Seeded fuzzing of every loader on real files: a clean one-line error, or plausible output.

Each format gets a few hundred mutations of a short real file (:mod:`fuzzing`); whatever a
mutation does, the loader must answer with its own one-line ``DataError`` naming the file,
or with a finite motion within :mod:`attack_gen.data.limits`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fuzzing import ODD
from fuzzing import base_files
from fuzzing import judge
from fuzzing import judge_smart_npz
from fuzzing import mutate

from attack_gen.cli import cli
from attack_gen.data import load_motion
from attack_gen.data.limits import number
from stimuli.errors import DataError

N = 250


@pytest.fixture(scope="module")
def bases(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("fuzz")
    files = base_files(shared_data, tmp)
    for fmt, (path, _) in files.items():  # the unmutated short files load
        load_motion(files["amc"][0] if fmt == "asf" else path)
    return tmp, files


@pytest.mark.parametrize("fmt", ["amc", "asf", "bvh", "kinect_csv", "ntu_skeleton"])
def test_mutated_files_give_a_clean_error_or_plausible_motion(bases, fmt: str, tmp_path: Path) -> None:
    _, files = bases
    target, beside = files[fmt]
    for extra in beside:
        shutil.copy(extra, tmp_path / extra.name)
    original = target.read_bytes()
    rng = np.random.default_rng(sum(map(ord, fmt)))
    counts = {"error": 0, "accepted": 0}
    for _ in range(N):
        mutated = tmp_path / target.name
        mutated.write_bytes(mutate(original, rng))
        load = tmp_path / files["amc"][0].name if fmt == "asf" else mutated
        counts[judge(load, mutated)] += 1
    assert counts["error"] > N // 5  # the mutations do hit: most odd numbers must be refused


def test_odd_numbers_are_refused_exactly() -> None:
    for tok in ODD:
        value = number(tok)
        plain = tok in (
            "0",
            "-0",
            "7",
            "0.0000001",
            "1e30",
            "-1e30",
            "1e308",
            "3.4e38",
            "1e-300",
            "1e20",
            "-1e300",
            "9" * 40,
        )
        assert (value is not None) == plain, tok


def test_one_huge_value_in_one_file_names_that_file(bases, tmp_path: Path) -> None:
    _, files = bases
    text = files["bvh"][0].read_text().split("\n")
    k = next(i for i, ln in enumerate(text) if ln.startswith("Frame Time")) + 3
    fields = text[k].split()
    fields[0] = "1e30"
    text[k] = " ".join(fields)
    bad = tmp_path / "bad.bvh"
    bad.write_text("\n".join(text))
    with pytest.raises(DataError, match=rf"bad\.bvh line {k + 1} \(frame 3\): value 1e\+30 is beyond 1e\+07"):
        load_motion(bad)
    # among good files, prepare stops with that one line and writes nothing
    for i, label in enumerate(("walk", "walk", "run")):
        (tmp_path / label).mkdir(exist_ok=True)
        shutil.copy(files["bvh"][0], tmp_path / label / f"good{i}.bvh")
    shutil.move(bad, tmp_path / "run" / "bad.bvh")
    out = tmp_path / "ds.npz"
    res = CliRunner().invoke(
        cli,
        [
            "prepare",
            "--train",
            str(tmp_path / "walk"),
            "--train",
            str(tmp_path / "run"),
            "--test-fraction",
            "0.25",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 1 and not out.exists()
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "bad.bvh line" in lines[0] and "implausible in any unit" in lines[0]


@pytest.mark.parametrize(
    "change, message",
    [
        ("Frame Time: 1e-300", "Frame Time 1e-300: frame rate"),
        ("Frame Time: ١", "expected a number after 'Frame Time:'"),
        ("Frames: ３０", "expected an integer frame count"),
    ],
)
def test_bvh_header_values_are_checked(bases, tmp_path: Path, change: str, message: str) -> None:
    _, files = bases
    key = change.split(":")[0]
    text = [change if ln.startswith(key) else ln for ln in files["bvh"][0].read_text().split("\n")]
    bad = tmp_path / "h.bvh"
    bad.write_text("\n".join(text))
    with pytest.raises(DataError, match=message):
        load_motion(bad)


def test_a_byte_order_mark_is_accepted(bases, tmp_path: Path) -> None:
    _, files = bases
    for fmt in ("bvh", "kinect_csv", "ntu_skeleton"):
        src = files[fmt][0]
        bom = tmp_path / src.name
        bom.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
        np.testing.assert_array_equal(load_motion(bom).positions, load_motion(src).positions)


def test_mutated_smart_npz_gives_a_clean_error_or_plausible_clips(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "hdm05_smart_subset"
    with np.load(src / "adClassTrain.npz") as z:
        clips = {k: z[k][:20] for k in z.files}
    with np.load(src / "preprocess_core.npz") as z:
        core = {k: z[k] for k in z.files}
    rng = np.random.default_rng(7)
    counts = {"error": 0, "accepted": 0}
    odd = [np.nan, np.inf, 1e38, -1e30, 0.0, -4.7, 1e-30]
    for i in range(120):
        c, k = {a: b.copy() for a, b in clips.items()}, {a: b.copy() for a, b in core.items()}
        what = i % 4
        if what == 0:
            k["Xstd"][...] = odd[int(rng.integers(len(odd)))]
        elif what == 1:
            c["clips"].flat[int(rng.integers(c["clips"].size))] = odd[int(rng.integers(len(odd)))]
        elif what == 2:
            k["Xmean"].flat[int(rng.integers(k["Xmean"].size))] = odd[int(rng.integers(len(odd)))]
        cp, kp = tmp_path / "adClassTrain.npz", tmp_path / "preprocess_core.npz"
        np.savez_compressed(cp, **c)
        np.savez(kp, **k)
        if what == 3:  # a damaged archive
            data = bytearray(cp.read_bytes())
            for _ in range(4):
                data[int(rng.integers(40, len(data)))] ^= 0xFF
            cp.write_bytes(bytes(data))
        counts[judge_smart_npz(cp, kp)] += 1
    assert counts["error"] >= 40
