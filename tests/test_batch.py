"""Stimulus batches: write -> load -> validate, every refusal, atomicity, resume after SIGKILL, CLI, real data."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from attack_gen.cli import validate_batch as validate_batch_cmd
from attack_gen.data.synthetic import generate_motion
from stimuli.batch import ATTACK_VARIANTS
from stimuli.batch import Batch
from stimuli.batch import BatchError
from stimuli.batch import BatchItemInput
from stimuli.batch import CompositePlan
from stimuli.batch import Label
from stimuli.batch import SourceClip
from stimuli.batch import VariantInput
from stimuli.batch import check_batch
from stimuli.batch import json_schema
from stimuli.batch import load_batch
from stimuli.batch import validate_batch
from stimuli.batch import work_dir_for
from stimuli.batch import write_batch
from stimuli.batch.padding import pad_mp4
from stimuli.batch.padding import pad_png
from stimuli.batch.schema import json_schema_text
from stimuli.errors import DataError
from stimuli.fileio import file_sha256
from stimuli.render import RenderConfig
from stimuli.render import decode_frames
from stimuli.render import probe_video
from stimuli.render.ffmpeg import mp4_faststart

TESTS = Path(__file__).resolve().parent
SMALL = RenderConfig(width=96, height=96, fps=10.0, duration=1.0)
VARIANTS = ("original", *ATTACK_VARIANTS, "control")


def perturb(x: np.ndarray, k: int, scale: float = 0.01) -> np.ndarray:
    """A small smooth deterministic perturbation standing in for attack ``k`` (the real engine is elsewhere)."""
    t = np.arange(len(x), dtype=np.float32)[:, None, None]
    j = np.arange(25, dtype=np.float32)[None, :, None]
    c = np.arange(3, dtype=np.float32)[None, None, :]
    return (x + scale * np.sin(0.4 * t + 0.7 * j + 1.3 * c + k)).astype(np.float32)


def make_items(motions: list[np.ndarray] | None = None, fps: float = 10.0) -> list[BatchItemInput]:
    """Two items (synthetic walk and wave) with four attacked variants each; deterministic."""
    if motions is None:
        motions = [
            generate_motion(a, seed=i, fps=fps, num_frames=10).positions for i, a in enumerate(("walk", "wave_right"))
        ]
    items = []
    for i, x in enumerate(motions):
        variants: dict[str, VariantInput] = {"original": VariantInput(x, final_label=Label("walk", 0))}
        for k, name in enumerate(ATTACK_VARIANTS):
            variants[name] = VariantInput(
                perturb(x, k),
                final_label=Label("run", 1),
                success=k != 3,
                metrics={"mean_joint_displacement_m": 0.01 * (k + 1)},
            )
        items.append(
            BatchItemInput(
                variants,
                true_label=Label("walk", 0),
                attacked_label=Label("run", 1),
                source=SourceClip("synthetic", window=i, file=f"clip{i}.npz"),
                motion_fps=fps,
            )
        )
    return items


GENERATOR = {"command": "test", "seed": 0}
PROVENANCE = {
    "dataset": {"name": "synthetic"},
    "model": {"name": "stgcn", "checkpoint_sha256": "0" * 64},
    "attack": {"strategy": "AB", "w": 0.4},
}


def write_default(out: Path, **kw) -> Batch:
    return write_batch(
        out,
        make_items(),
        render_config=SMALL,
        generator_config=GENERATOR,
        provenance=PROVENANCE,
        **{"workers": 2, **kw},
    )


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batches") / "b1"
    write_default(out)
    return out


@pytest.fixture
def copy_of(batch_dir: Path, tmp_path: Path):
    def make() -> Path:
        dst = tmp_path / "copy"
        shutil.copytree(batch_dir, dst)
        return dst

    return make


def edit_manifest(root: Path, fn) -> None:
    d = json.loads((root / "manifest.json").read_text())
    fn(d)
    (root / "manifest.json").write_text(json.dumps(d, indent=1))


def messages(problems) -> str:
    return "\n".join(str(p) for p in problems)


# ---- round trip ---------------------------------------------------------------------------------
def test_round_trip(batch_dir: Path) -> None:
    batch = load_batch(batch_dir)
    assert validate_batch(batch_dir) == []
    assert check_batch(batch_dir, decode=False) == batch
    assert not work_dir_for(batch_dir).exists()
    assert Batch.from_dict(batch.to_dict()) == batch
    assert batch.variant_names == VARIANTS
    assert batch.variant_roles()["control"] == "control" and batch.variant_roles()["smart"] == "attack"
    assert batch.generator == GENERATOR and batch.provenance.model["checkpoint_sha256"] == "0" * 64
    assert RenderConfig.from_dict(batch.render_config) == SMALL
    it = batch.item("item-001")
    assert it.true_label == Label("walk", 0) and it.attacked_label == Label("run", 1)
    assert it.source == SourceClip("synthetic", 1, "clip1.npz")
    assert it.variant("smart").success is True and it.variant("l2-bone").success is False
    assert it.variant("original").success is None and it.variant("control").final_label is None
    assert it.variant("control").info["method"] == "limb-tremor-bone-v1"
    assert it.variant("control").metrics["mean_joint_displacement_m"] > 0.03
    # the motion files hold exactly the variants given
    given = make_items()[1].variants["smart"].motion
    np.testing.assert_array_equal(np.load(batch.path(it.variant("smart").motion)), given)
    # composites: 6 naturalness pairs in both orders + original|{original, 4 attacks, control}
    ids = {c.id: c.studies for c in it.composites}
    assert len(ids) == 12 + 6
    for a in ATTACK_VARIANTS:
        assert ids[f"original|{a}"] == ("indistinguishability",)
        for b in ATTACK_VARIANTS:
            if a != b:
                assert ids[f"{a}|{b}"] == ("naturalness",)
    assert {"original|original", "original|control"} <= set(ids) and "control|smart" not in ids
    comp = it.composite("smart", "l2")
    assert (comp.video.width, comp.video.height) == (2 * 96 + SMALL.separator_px, 96)
    v = it.variant("smart").video
    assert (v.codec, v.pix_fmt, v.width, v.height) == ("h264", "yuv420p", 96, 96)
    assert (v.frames, v.fps, v.duration) == (10, 10.0, 1.0)
    assert file_sha256(batch.path(v)) == v.sha256 and batch.path(v).stat().st_size == v.bytes
    info = probe_video(batch.path(comp.video))
    assert (info["codec"], info["pix_fmt"], info["width"], info["frames"]) == ("h264", "yuv420p", 196, 10)
    manifest = json.loads((batch_dir / "manifest.json").read_text())
    assert manifest["format"] == "smart-study-stimulus-batch" and manifest["schema_version"] == 1
    assert manifest["created_utc"].endswith("+00:00")


def test_composite_halves_are_the_single_videos(batch_dir: Path) -> None:
    batch = load_batch(batch_dir)
    it = batch.items[0]
    both = decode_frames(batch.path(it.composite("smart", "l2").video)).astype(int)
    rev = decode_frames(batch.path(it.composite("l2", "smart").video)).astype(int)
    smart = decode_frames(batch.path(it.variant("smart").video)).astype(int)
    l2 = decode_frames(batch.path(it.variant("l2").video)).astype(int)
    W, s = 96, SMALL.separator_px
    for left, right, comp in ((smart, l2, both), (l2, smart, rev)):
        for half, single in ((comp[:, :, :W], left), (comp[:, :, W + s :], right)):
            # the same pictures up to H.264's loss at 96 px (a wrong figure or an empty half is ~10x more) ...
            err = np.abs(half - single).mean(axis=(1, 2, 3))  # per frame
            assert err.mean() < 2.5, err
            # ... and frame-exact in sync: each frame is closest to the single video's same frame
            shifted = np.abs(half[1:] - single[:-1]).mean(axis=(1, 2, 3))
            assert (err[1:] < shifted).all(), (err, shifted)


def test_stimuli_batch_imports_neither_renderer_nor_torch() -> None:
    code = (
        "import sys, stimuli.batch, stimuli.controls; "
        "bad = [m for m in ('torch', 'skia', 'stimuli.render') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- refusals -------------------------------------------------------------------------------------
def test_refuses_bad_json(copy_of) -> None:
    root = copy_of()
    text = (root / "manifest.json").read_text()
    (root / "manifest.json").write_text(text.replace('"batch_id":', '"batch_id" ', 1))
    with pytest.raises(BatchError, match=r"manifest.json: not valid JSON: Expecting ':' delimiter \(line 4, column"):
        load_batch(root)
    assert "line 4" in messages(validate_batch(root))


def test_refuses_wrong_schema_version_and_foreign_json(copy_of) -> None:
    root = copy_of()
    edit_manifest(root, lambda d: d.update(schema_version=2))
    with pytest.raises(BatchError, match="schema_version: schema version 2 is not supported"):
        load_batch(root)
    edit_manifest(root, lambda d: d.update(format="something-else"))
    assert "format: expected 'smart-study-stimulus-batch', got 'something-else'" in messages(validate_batch(root))
    (root / "manifest.json").write_text("[1, 2]")
    assert "expected a JSON object" in messages(validate_batch(root))


def test_schema_errors_name_the_json_path(copy_of) -> None:
    root = copy_of()

    def damage(d: dict) -> None:
        d["items"][1]["variants"]["smart"]["video"]["sha256"] = "abc"
        d["items"][0]["variants"]["l2"]["colour"] = "red"
        del d["items"][1]["true_label"]
        d["items"][0]["variants"]["l2-acc"]["success"] = None
        d["items"][1]["variants"]["l2"]["motion"]["path"] = "../../etc/passwd"

    edit_manifest(root, damage)
    with pytest.raises(BatchError) as e:
        load_batch(root)
    text = messages(e.value.problems)
    assert "items[1].variants.smart.video.sha256: expected 64 hex chars" in text
    assert "items[0].variants.l2.colour: unknown field" in text
    assert "items[1].true_label: missing field" in text
    assert "items[0].variants.l2-acc.success: expected true or false for an attacked variant" in text
    assert "items[1].variants.l2.motion.path: expected a relative path inside the batch" in text
    assert len(e.value.problems) == 5
    assert "\n" not in str(e.value) and "5 problems" in str(e.value)
    assert isinstance(e.value, DataError)


REPO = Path(__file__).resolve().parents[1]


def test_the_json_schema_is_in_every_batch_and_in_docs(batch_dir: Path) -> None:
    text = json_schema_text()
    assert (batch_dir / "manifest.schema.json").read_text() == text
    assert (REPO / "docs" / "batch-manifest.schema.json").read_text() == text, (
        "docs/batch-manifest.schema.json is out of date: "
        "python -m stimuli.batch schema > docs/batch-manifest.schema.json"
    )
    # an independent validator accepts what the writer wrote
    manifest = json.loads((batch_dir / "manifest.json").read_text())
    jsonschema.Draft202012Validator.check_schema(json.loads(text))
    jsonschema.Draft202012Validator(json.loads(text)).validate(manifest)


MUTATIONS = {
    "sha256 not hex": lambda d: d["items"][0]["variants"]["smart"]["video"].update(sha256="ABC"),
    "unknown field": lambda d: d["items"][1].update(colour="red"),
    "missing label": lambda d: d["items"][1].pop("true_label"),
    "bool as count": lambda d: d["items"][0]["variants"]["l2"]["motion"].update(frames=True),
    "negative index": lambda d: d["items"][0]["true_label"].update(index=-1),
    "bad variant name": lambda d: d["items"][0]["variants"].update(Smart=d["items"][0]["variants"]["smart"]),
    "string fps": lambda d: d["items"][0].update(motion_fps="30"),
    "wrong codec": lambda d: d["items"][0]["composites"][0]["video"].update(codec="vp9"),
    "no items": lambda d: d.update(items=[]),
    "bad study": lambda d: d["items"][0]["composites"][0].update(studies=["beauty"]),
    "unchanged": lambda d: None,
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_the_json_schema_and_the_reader_agree(batch_dir: Path, name: str) -> None:
    # field-level damage: the published JSON Schema (read by another tool) and the reader refuse the same manifests
    d = json.loads((batch_dir / "manifest.json").read_text())
    MUTATIONS[name](d)
    schema_ok = jsonschema.Draft202012Validator(json_schema()).is_valid(d)
    try:
        Batch.from_dict(d)
        reader_ok = True
    except BatchError as e:
        reader_ok = False
        assert all("\n" not in str(p) and p.where for p in e.problems)
    assert schema_ok == reader_ok == (name == "unchanged")


def test_declared_sizes_must_follow_the_render_config(copy_of) -> None:
    root = copy_of()

    def damage(d: dict) -> None:
        d["items"][0]["composites"][0]["video"]["width"] = 96
        d["items"][1]["variants"]["smart"]["video"]["frames"] = 11
        d["items"][1]["camera"]["width"] = 480

    edit_manifest(root, damage)
    text = messages(validate_batch(root, decode=False))
    assert "items[0].composites[0].video.width: expected 196 (from the render config), got 96" in text
    assert "items[1].variants.smart.video.frames: expected 10 (from the render config), got 11" in text
    assert "items[1].camera.width: expected 96 (the render config's), got 480" in text


def test_refuses_inconsistent_items(copy_of) -> None:
    root = copy_of()

    def damage(d: dict) -> None:
        del d["items"][1]["variants"]["control"]
        d["items"][1]["composites"] = [c for c in d["items"][1]["composites"] if c["right"] != "control"]
        d["items"][0]["composites"] = d["items"][0]["composites"][1:]
        d["items"][1]["id"] = d["items"][0]["id"]

    edit_manifest(root, damage)
    text = messages(validate_batch(root, decode=False))
    assert "items[1].variants: has variants" in text and "every item must have those of items[0]" in text
    assert "items[0].composites: missing composite 'smart|l2' (the plan asks for it)" in text
    assert "items[1].id: item id 'item-000' already used by items[0]" in text
    # a composite naming a variant the item lacks is caught within the item
    edit_manifest(root, lambda d: d["items"][0]["composites"][0].update(right="l3"))
    assert "items[0].composites[0].right: names no variant of this item: 'l3'" in messages(validate_batch(root))


def test_missing_file_is_refused_by_load_and_validate(copy_of) -> None:
    root = copy_of()
    (root / "items/item-001/l2-bone.mp4").unlink()
    with pytest.raises(BatchError, match=r"items\[1\].variants.l2-bone.video: file items/item-001/l2-bone.mp4 is miss"):
        load_batch(root)
    assert any("l2-bone.mp4 is missing" in str(p) for p in validate_batch(root, decode=False))


def test_altered_file_is_refused(copy_of) -> None:
    root = copy_of()
    path = root / "items/item-000/smart.png"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # same size: load_batch (existence + size only) does not notice
    path.write_bytes(bytes(data))
    load_batch(root)
    problems = validate_batch(root, decode=False)
    assert len(problems) == 1
    assert str(problems[0]).startswith(
        "items[0].variants.smart.poster: file items/item-000/smart.png: SHA-256 mismatch"
    )
    # a truncated file is caught by its size, even by load_batch
    path = root / "items/item-000/original.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(BatchError, match="original.npy has 3120 bytes, the manifest says 3128"):
        load_batch(root)


def test_extra_files_and_links_are_refused(copy_of, tmp_path: Path) -> None:
    root = copy_of()
    (root / "notes.txt").write_text("hello")
    (root / "items/item-000/.smart.mp4.x1y2.tmp").write_bytes(b"partial")
    (tmp_path / "outside.png").write_bytes((root / "items/item-000/l2.png").read_bytes())
    (root / "items/item-000/l2.png").unlink()
    (root / "items/item-000/l2.png").symlink_to(tmp_path / "outside.png")
    text = messages(validate_batch(root, decode=False))
    assert "notes.txt: unexpected file, not named by the manifest" in text
    assert "items/item-000/.smart.mp4.x1y2.tmp: unexpected file" in text
    assert "file items/item-000/l2.png is a symbolic link" in text


def test_undecodable_and_wrong_size_videos_are_refused(copy_of) -> None:
    root = copy_of()
    garbage = root / "items/item-000/l2.mp4"
    size = garbage.stat().st_size  # of the same size as its group, so that only decoding can tell
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(size - 12))
    # a single video where a composite should be (96 wide instead of 196), padded to the composites' size
    comp = root / "items/item-001/original_vs_smart.mp4"
    size = comp.stat().st_size
    shutil.copy(root / "items/item-001/smart.mp4", comp)
    pad_mp4(comp, size)

    def rehash(d: dict) -> None:  # the manifest agrees with the files: only decoding can tell
        for it in d["items"]:
            refs = [v["video"] for v in it["variants"].values()] + [c["video"] for c in it["composites"]]
            for ref in refs:
                p = root / ref["path"]
                ref["sha256"], ref["bytes"] = file_sha256(p), p.stat().st_size

    edit_manifest(root, rehash)
    assert validate_batch(root, decode=False) == []
    problems = validate_batch(root)
    text = messages(problems)
    assert len(problems) == 2, text
    assert "items[0].variants.l2.video: file items/item-000/l2.mp4: not a readable video" in text
    assert "items[1].composites[" in text and "original_vs_smart.mp4: width is 96, expected 196" in text


def test_no_size_separates_the_conditions_of_an_item(batch_dir: Path) -> None:
    batch = load_batch(batch_dir)
    for item in batch.items:
        groups = {
            "variant videos": [v.video for v in item.variants.values()],
            "variant posters": [v.poster for v in item.variants.values()],
            "composite videos": [c.video for c in item.composites],
            "composite posters": [c.poster for c in item.composites],
        }
        for kind, refs in groups.items():
            on_disk = {(batch_dir / r.path).stat().st_size for r in refs}
            assert len(on_disk) == 1 and on_disk == {r.bytes for r in refs}, (item.id, kind)
        videos = groups["variant videos"] + groups["composite videos"]
        assert len({(r.frames, r.duration) for r in videos}) == 1
        # each file carries exactly one padding element, at the end of the MP4 / before the PNG's IEND
        for r in groups["variant videos"]:
            data = (batch_dir / r.path).read_bytes()
            assert data.count(b"free") >= 1 and mp4_faststart(batch_dir / r.path)
        for r in groups["variant posters"]:
            data = (batch_dir / r.path).read_bytes()
            assert data.count(b"paDd") == 1 and data.endswith(b"IEND\xaeB`\x82")


def test_padding_keeps_the_pictures(batch_dir: Path, tmp_path: Path) -> None:
    item = load_batch(batch_dir).items[0]
    for ref, pad in ((item.variant("smart").video, pad_mp4), (item.variant("smart").poster, pad_png)):
        src = batch_dir / ref.path
        copy = tmp_path / src.name
        shutil.copy(src, copy)
        pad(copy, src.stat().st_size + 1000)
        assert copy.stat().st_size == src.stat().st_size + 1000
        np.testing.assert_array_equal(decode_frames(copy), decode_frames(src))
    with pytest.raises(ValueError, match="cannot pad by 7 bytes"):
        pad_mp4(copy.with_suffix(".mp4"), (tmp_path / "smart.mp4").stat().st_size + 7)
    with pytest.raises(ValueError, match="cannot pad by 11 bytes"):
        pad_png(copy, copy.stat().st_size + 11)


def test_files_of_one_group_with_two_sizes_are_refused(copy_of) -> None:
    root = copy_of()
    poster = root / "items/item-000/original_vs_original.png"
    pad_png(poster, poster.stat().st_size + 12)

    def rehash(d: dict) -> None:
        for c in d["items"][0]["composites"]:
            if c["poster"]["path"].endswith("original_vs_original.png"):
                c["poster"]["sha256"], c["poster"]["bytes"] = file_sha256(poster), poster.stat().st_size

    edit_manifest(root, rehash)
    text = messages(validate_batch(root, decode=False))
    assert "items[0]: composite posters differ in bytes (" in text and "it would tell the conditions apart" in text


def test_not_a_batch() -> None:
    with pytest.raises(BatchError, match="not a folder"):
        load_batch("/nonexistent/batch")


# ---- the CLI ----------------------------------------------------------------------------------------
def test_cli_validate_batch(batch_dir: Path, copy_of) -> None:
    runner = CliRunner()
    r = runner.invoke(validate_batch_cmd, [str(batch_dir)])
    assert r.exit_code == 0, r.output
    assert "valid stimulus batch" in r.output and "2 items x 6 variants" in r.output
    r = runner.invoke(validate_batch_cmd, [str(batch_dir), "--json", "--no-decode"])
    assert r.exit_code == 0
    out = json.loads(r.stdout)
    assert out["valid"] is True and out["problems"] == [] and out["items"] == 2 and out["videos"] == 48

    root = copy_of()
    path = root / "items/item-001/control.mp4"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    r = runner.invoke(validate_batch_cmd, [str(root), "--no-decode"])
    assert r.exit_code == 1
    assert "items/item-001/control.mp4: SHA-256 mismatch" in r.stderr and "Traceback" not in r.output
    assert all(line.startswith("Error: ") for line in r.stderr.splitlines())
    r = runner.invoke(validate_batch_cmd, [str(root), "--json", "--no-decode"])
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["valid"] is False and "control.mp4" in out["problems"][0]["message"]
    with pytest.raises(
        BatchError,
        match=r"stimulus batch .*copy: items\[1\].variants.control.video: file "
        r"items/item-001/control.mp4: SHA-256 mismatch",
    ):
        check_batch(root, decode=False)
    r = runner.invoke(validate_batch_cmd, [str(root / "nope")])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "not a folder" in r.stderr


# ---- writer: inputs, atomicity, locking, resume ----------------------------------------------------
def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    items = make_items()
    items[0].variants["smart"].motion = items[0].variants["smart"].motion.copy()
    items[0].variants["smart"].motion[3, 2, 1] = np.nan
    items[1].variants["l2"].success = None
    del items[1].variants["l2-acc"]
    items[1].true_label = ""
    out = tmp_path / "b"
    with pytest.raises(BatchError) as e:
        write_batch(out, items, render_config=SMALL, workers=1)
    text = messages(e.value.problems)
    assert "items[0].variants.smart: contains NaN or Inf (first at T=3, V=2, C=1)" in text
    assert "items[1].variants.l2.success: expected True or False for an attacked variant" in text
    assert "items[1].true_label.name: expected a non-empty string" in text
    assert not out.exists() and not work_dir_for(out).exists()
    with pytest.raises(BatchError, match="composites.naturalness: names no variant of the items: 'l3'"):
        write_batch(out, make_items(), render_config=SMALL, composites=CompositePlan(naturalness=("smart", "l3")))
    assert not work_dir_for(out).exists()


def test_exception_midway_leaves_no_batch_and_a_rerun_reuses_the_work(tmp_path: Path) -> None:
    out = tmp_path / "b"
    plan = CompositePlan(naturalness=("smart", "l2"), indistinguishability=("original", "smart", "control"))

    def fail_after_1(done: int, total: int) -> None:
        if done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_batch(out, make_items(), render_config=SMALL, composites=plan, workers=1, progress=fail_after_1)
    assert not out.exists()
    work = work_dir_for(out)
    journal = [json.loads(line) for line in (work / ".journal.jsonl").read_text().splitlines()]
    assert len(journal) == 1  # the first item's job: its 6 variants' and 5 composites' videos and posters
    assert len(journal[0]["outputs"]) == 2 * (6 + 5)
    inodes = {p: (work / p).stat().st_ino for rec in journal for p in rec["outputs"]}
    seen: list[tuple[int, int]] = []
    batch = write_batch(
        out, make_items(), render_config=SMALL, composites=plan, workers=1, progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(1, 2), (2, 2)]  # one job per item: the first reused, the second rendered
    assert all((out / p).stat().st_ino == ino for p, ino in inodes.items())  # reused, not rewritten
    assert not work.exists() and check_batch(out, decode=False) == batch
    assert {c.id for c in batch.items[0].composites} == {
        "smart|l2",
        "l2|smart",
        "original|original",
        "original|smart",
        "original|control",
    }
    with pytest.raises(DataError, match="already exists"):
        write_batch(out, make_items(), render_config=SMALL, composites=plan, workers=1)


def test_a_locked_work_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "b"
    work = work_dir_for(out)
    work.mkdir()
    fd = os.open(work, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataError, match="another process is writing this batch"):
            write_batch(out, make_items(), render_config=SMALL, workers=1)
    finally:
        os.close(fd)


_KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
import test_batch as tb
from pathlib import Path
def slow(done, total):
    time.sleep(0.15)
tb.write_default(Path({out!r}), workers=1, progress=slow)
"""


def test_resume_after_sigkill_gives_the_uninterrupted_batch(batch_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    work = work_dir_for(out)
    log = tmp_path / "writer.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILL_SCRIPT.format(tests=str(TESTS), out=str(out))],
            start_new_session=True,
            stdout=fh,
            stderr=fh,
        )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            journal = work / ".journal.jsonl"
            if journal.exists() and journal.read_text().count("\n") >= 1:
                break
            if proc.poll() is not None:
                pytest.fail(f"the writer ended before it was killed: {log.read_text()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("the writer made no progress")
        time.sleep(0.07)  # somewhere in the middle of the next job
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and work.is_dir()
    done = [json.loads(line) for line in (work / ".journal.jsonl").read_text().splitlines() if line.strip()]
    assert len(done) == 1  # of the two items' jobs
    kept = {p: (work / p).stat().st_ino for rec in done for p in rec["outputs"]}

    batch = write_default(out)
    assert validate_batch(out) == []
    assert all((out / p).stat().st_ino == ino for p, ino in kept.items())
    # equal to the uninterrupted run's batch, byte for byte, apart from the creation time
    a = json.loads((out / "manifest.json").read_text())
    b = json.loads((batch_dir / "manifest.json").read_text())
    a.pop("created_utc"), b.pop("created_utc")
    assert a == b
    assert batch.batch_id == load_batch(batch_dir).batch_id


# ---- real data ----------------------------------------------------------------------------------------
def test_batch_from_real_hdm05_clips(shared_data: Path, tmp_path: Path) -> None:
    from attack_gen.data.smart_npz import load_smart_npz

    data = load_smart_npz(shared_data / "hdm05_smart_subset")
    picks = [0, 100]
    positions = data.positions_m[picks]
    items = make_items([positions[0], positions[1]], fps=30.0)
    for it, i in zip(items, picks):
        label = Label(data.class_names[int(data.labels[i])], int(data.labels[i]))
        it.true_label = label
        it.variants["original"].final_label = label
        it.source = SourceClip(str(data.clips_path), window=i, file=None, info={"units": "m"})
    cfg = RenderConfig(width=96, height=96, fps=10.0, duration=6.0)  # the 6 s default path, cheaply
    out = tmp_path / "hdm05"
    plan = CompositePlan(naturalness=("smart", "l2"), indistinguishability=("original", "smart", "control"))
    write_batch(
        out,
        items,
        render_config=cfg,
        workers=2,
        composites=plan,
        provenance={"dataset": {"path": str(data.clips_path)}, "model": {}, "attack": {"strategy": "AB"}},
    )
    batch = check_batch(out)
    assert batch.items[1].source.window == 100 and batch.items[0].true_label.name == data.class_names[data.labels[0]]
    for ref in (batch.items[0].variant("smart").video, batch.items[1].composite("original", "control").video):
        info = probe_video(batch.path(ref))
        assert (info["codec"], info["pix_fmt"], info["frames"]) == ("h264", "yuv420p", 60)
        assert info["duration"] == pytest.approx(6.0, abs=0.05) and info["faststart"]
    # the control stands out: in the batch's own camera, its wrists move far more pixels than an attack's
    from stimuli.render import Camera

    for it in batch.items:
        cam = Camera.from_dict(it.camera)
        uv = {
            v: cam.project(np.load(batch.path(it.variant(v).motion)).astype(np.float64))[0]
            for v in ("original", "smart", "control")
        }
        px = {v: np.linalg.norm(uv[v][:, [17, 22]] - uv["original"][:, [17, 22]], axis=-1).mean() for v in uv}
        assert px["control"] > 4 * px["smart"], px
        assert it.variant("control").metrics["mean_joint_displacement_m"] > 0.03
        frames = {v: decode_frames(batch.path(it.variant(v).video)).astype(int) for v in ("original", "control")}
        assert (np.abs(frames["control"] - frames["original"]).max(-1) > 40).mean() > 0.03


def test_minimal_batch_overwrite_and_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = generate_motion("squat", seed=5, fps=10.0, num_frames=8).positions
    items = [
        BatchItemInput(
            {"original": x, "smart": VariantInput(perturb(x, 0), "squat", False)},
            true_label="squat",
            source={"dataset": "synthetic"},
            motion_fps=10.0,
            item_id="only",
        )
    ]
    out = tmp_path / "b"
    first = write_batch(out, items, render_config=SMALL, controls=None, workers=1, batch_id="mine")
    assert first.batch_id == "mine" and first.variant_names == ("original", "smart")
    # the default plan adapts to the variants present: no naturalness pair with a single attack
    assert [c.id for c in first.items[0].composites] == ["original|original", "original|smart"]
    second = write_batch(out, items, render_config=SMALL, workers=1, overwrite=True, progress=True)
    assert "rendering b" in capsys.readouterr().err
    assert second.variant_names == ("original", "smart", "control")
    assert load_batch(out) == second and validate_batch(out, decode=False) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
