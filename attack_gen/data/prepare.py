"""``attack-gen prepare``: raw recordings (or the synthetic generator) -> one dataset file.

Labels: the class of a file is the name of the folder holding it, unless a label rule
(a regular expression searched in the file's path relative to the input it was found
under; its group ``label``, else group 1, else the whole match, is the class) is given.
Subjects come from the loader (HDM05 actor, CMU subject, NTU performer) or a subject
rule of the same kind.

Split: by explicit lists (``test_paths``), by subject (``test_subjects``:
cross-subject), or a seeded fraction of recordings (``test_fraction``; a recording's
windows always stay together, so no test window has a training twin).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from typing import Iterable
from typing import Sequence

import numpy as np

from stimuli.errors import DataError
from stimuli.motion import Motion
from stimuli.skeleton import STANDARD

from . import MOTION_EXTENSIONS
from . import load_motion
from .dataset import TEST
from .dataset import TRAIN
from .dataset import Dataset
from .preprocess import PreprocessConfig
from .preprocess import canonical_windows
from .preprocess import normalisation_stats
from .preprocess import raw_windows

__all__ = ["Recording", "find_motion_files", "label_for", "prepare_dataset", "prepare_synthetic", "SplitSpec"]


@dataclass
class Recording:
    """One input file with the label, subject and split assigned to it."""

    path: Path
    rel: str
    label: str
    subject: str | None = None
    split: int = TRAIN


@dataclass
class SplitSpec:
    """Exactly one of the three ways to choose the test set."""

    test_paths: Sequence[Path] = ()
    test_subjects: Sequence[str] = ()
    test_fraction: float | None = None
    seed: int = 0

    def mode(self) -> str:
        given = [bool(self.test_paths), bool(self.test_subjects), self.test_fraction is not None]
        if sum(given) > 1:
            raise DataError("choose one split: --test paths, --test-subjects or --test-fraction")
        if given[0]:
            return "paths"
        if given[1]:
            return "subjects"
        if given[2]:
            if not 0.0 < float(self.test_fraction) < 1.0:
                raise DataError(f"--test-fraction must lie between 0 and 1, got {self.test_fraction}")
            return "fraction"
        raise DataError("no test split given: use --test PATH, --test-subjects S,... or --test-fraction F")


def _csv_skip_reason(path: Path) -> str | None:
    """Why a ``.csv`` is not a Kinect capture (None: it is one: a timestamp, then 100 fields)."""
    from . import _first_line

    fields = _first_line(path).rstrip(",").split(",")
    if len(fields) != 101:
        return f"not a Kinect v2 capture: its first line has {len(fields)} fields, a capture's 101"
    if not (fields[0].strip().isascii() and fields[0].strip().isdigit()):
        return f"not a Kinect v2 capture: its first field {fields[0][:20]!r} is not a timestamp"
    return None


def find_motion_files(root: Path, skipped: list[tuple[str, str]] | None = None) -> list[tuple[Path, str]]:
    """Motion files under ``root`` (a file or a folder, searched recursively), sorted.

    Returns ``(path, path relative to root)``. In folders, ``.csv`` files are taken only
    when they look like Kinect captures; the others (manifests, label tables) are added
    to ``skipped`` as ``(relative path, reason)``.
    """
    root = Path(root)
    if root.is_file():
        return [(root, root.name)]
    if not root.is_dir():
        raise DataError(f"{root}: no such file or folder")
    found = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in MOTION_EXTENSIONS:
            continue
        if p.suffix.lower() == ".csv":
            reason = _csv_skip_reason(p)
            if reason is not None:
                if skipped is not None:
                    skipped.append((p.relative_to(root).as_posix(), reason))
                continue
        found.append((p, p.relative_to(root).as_posix()))
    return found


def _compile(rule: str | None, what: str) -> re.Pattern[str] | None:
    if rule is None:
        return None
    try:
        return re.compile(rule)
    except re.error as exc:
        raise DataError(f"{what} {rule!r} is not a valid regular expression ({exc})") from None


def _apply(rule: re.Pattern[str], rel: str) -> str | None:
    m = rule.search(rel)
    if m is None:
        return None
    if "label" in rule.groupindex:
        return m.group("label")
    if "subject" in rule.groupindex:
        return m.group("subject")
    return m.group(1) if rule.groups else m.group(0)


def label_for(path: Path, rel: str, rule: re.Pattern[str] | None) -> str | None:
    """The class of a file: its folder's name, or what ``rule`` extracts (None: no match)."""
    if rule is None:
        return path.parent.name
    return _apply(rule, rel)


def _gather(
    inputs: Iterable[Path],
    label_rule: re.Pattern[str] | None,
    subject_rule: re.Pattern[str] | None,
    split: int,
    skipped: list[dict[str, str]],
) -> list[Recording]:
    recs = []
    for root in inputs:
        passed: list[tuple[str, str]] = []
        files = find_motion_files(Path(root), passed)
        skipped.extend({"path": str(Path(root) / rel), "reason": why} for rel, why in passed)
        if not files:
            raise DataError(f"{root}: no motion files found (looked for {', '.join(MOTION_EXTENSIONS)})")
        unmatched = []
        for path, rel in files:
            label = label_for(path, rel, label_rule)
            if label is None:
                unmatched.append(rel)
                continue
            subject = _apply(subject_rule, rel) if subject_rule else None
            recs.append(Recording(path=path, rel=rel, label=label, subject=subject, split=split))
        if unmatched and label_rule is not None:
            if len(unmatched) == len(files):
                raise DataError(
                    f"label rule {label_rule.pattern!r} matches none of the {len(files)} files under {root} "
                    f"(e.g. {unmatched[0]!r})"
                )
            raise DataError(
                f"label rule {label_rule.pattern!r} does not match {len(unmatched)} file(s) under {root}, "
                f"e.g. {unmatched[0]!r}"
            )
    return recs


def _assemble(
    items: list[tuple[Recording, Motion]],
    config: PreprocessConfig,
    extra_meta: dict,
    progress: Callable[[Iterable], Iterable] = lambda x: x,
) -> Dataset:
    """Preprocess every recording into windows and compute the normalisation."""
    class_names = sorted({rec.label for rec, _ in items})
    index = {name: i for i, name in enumerate(class_names)}
    cut = [raw_windows(motion.positions, motion.fps, config) for _, motion in progress(items)]
    # the joints that are one point in every frame of every recording are tied (one spec per dataset)
    canonical = config.canonical(STANDARD.coincident_groups(np.concatenate([w.reshape(-1, 25, 3) for w, _, _ in cut])))
    motions, trajectory, labels, split, source, start, sources = [], [], [], [], [], [], []
    for k, ((rec, motion), (raw, starts, padded)) in enumerate(zip(items, cut)):
        wins, traj = canonical_windows(raw, canonical)
        motions.append(wins)
        trajectory.append(traj)
        labels.append(np.full(len(wins), index[rec.label]))
        split.append(np.full(len(wins), rec.split))
        source.append(np.full(len(wins), k))
        start.append(starts)
        sources.append(
            {
                "path": rec.rel,
                "label": rec.label,
                "subject": rec.subject if rec.subject is not None else motion.meta.get("subject"),
                "split": "train" if rec.split == TRAIN else "test",
                "format": motion.meta.get("format"),
                "fps": motion.fps,
                "frames": motion.num_frames,
                "windows": len(wins),
                "padded_frames": padded,
            }
        )
    all_split = np.concatenate(split)
    all_motions = np.concatenate(motions)
    if not (all_split == TRAIN).any():
        raise DataError("the split leaves no training windows")
    if not (all_split == TEST).any():
        raise DataError("the split leaves no test windows")
    mean, std = normalisation_stats(all_motions[all_split == TRAIN])
    meta = {
        "class_names": class_names,
        "fps": config.fps,
        "preprocess": asdict(config),
        "canonical": canonical.to_json(),
        "normalisation": {"mean": mean.tolist(), "std": std, "computed_on": "train"},
        "sources": sources,
        **extra_meta,
    }
    return Dataset(
        all_motions,
        np.concatenate(labels),
        all_split,
        np.concatenate(source),
        np.concatenate(start),
        meta,
        np.concatenate(trajectory),
    )


def prepare_dataset(
    train: Sequence[Path],
    split_spec: SplitSpec,
    *,
    config: PreprocessConfig = PreprocessConfig(),
    label_rule: str | None = None,
    subject_rule: str | None = None,
    name: str | None = None,
    progress: Callable[[Iterable], Iterable] = lambda x: x,
) -> Dataset:
    """Build a dataset from raw recordings (see module docstring)."""
    mode = split_spec.mode()
    lrule = _compile(label_rule, "label rule")
    srule = _compile(subject_rule, "subject rule")
    skipped: list[dict[str, str]] = []
    recs = _gather(train, lrule, srule, TRAIN, skipped)
    if mode == "paths":
        test_recs = _gather(split_spec.test_paths, lrule, srule, TEST, skipped)
        test_files = {r.path.resolve() for r in test_recs}
        recs = [r for r in recs if r.path.resolve() not in test_files] + test_recs
    items = [(rec, load_motion(rec.path)) for rec in progress(recs)]
    for rec, motion in items:
        if rec.subject is None and motion.meta.get("subject") is not None:
            rec.subject = str(motion.meta["subject"])
    if mode == "subjects":
        wanted = {s.strip() for s in split_spec.test_subjects}
        present = {rec.subject for rec, _ in items}
        unknown = sorted(wanted - present)
        if unknown:
            raise DataError(
                f"test subject(s) {', '.join(unknown)} not found; subjects present: "
                f"{', '.join(sorted(str(s) for s in present))}"
            )
        for rec, _ in items:
            rec.split = TEST if rec.subject in wanted else TRAIN
    elif mode == "fraction":
        rng = np.random.default_rng(split_spec.seed)
        order = rng.permutation(len(items))
        n_test = max(1, int(round(split_spec.test_fraction * len(items))))
        for k in order[:n_test]:
            items[k][0].split = TEST
    extra = {
        "name": name,
        "split": {
            "mode": mode,
            "test_subjects": sorted(split_spec.test_subjects) if mode == "subjects" else None,
            "test_fraction": split_spec.test_fraction,
            "seed": split_spec.seed,
        },
        "label_rule": label_rule,
        "subject_rule": subject_rule,
        "skipped": skipped,
        "inputs": [str(p) for p in train] + [str(p) for p in split_spec.test_paths],
    }
    return _assemble(items, config, extra)


def prepare_synthetic(
    *,
    samples_per_class: int = 20,
    seed: int = 0,
    num_frames: int = 90,
    subjects: int = 8,
    test_subjects: Sequence[str] = ("s07", "s08"),
    config: PreprocessConfig = PreprocessConfig(),
) -> Dataset:
    """The embedded synthetic dataset (no files needed), split by subject."""
    from .synthetic import generate_dataset

    pairs = generate_dataset(samples_per_class, seed=seed, fps=config.fps, num_frames=num_frames, subjects=subjects)
    wanted = set(test_subjects)
    items = []
    for k, (motion, label) in enumerate(pairs):
        subject = str(motion.meta.get("subject"))
        rec = Recording(
            path=Path(f"synthetic/{label}/{k:05d}"),
            rel=f"synthetic/{label}/{k:05d}",
            label=label,
            subject=subject,
            split=TEST if subject in wanted else TRAIN,
        )
        items.append((rec, motion))
    extra = {
        "name": "synthetic",
        "split": {"mode": "subjects", "test_subjects": sorted(wanted), "test_fraction": None, "seed": seed},
        "synthetic": {
            "samples_per_class": samples_per_class,
            "seed": seed,
            "num_frames": num_frames,
            "subjects": subjects,
        },
    }
    return _assemble(items, config, extra)


def prepare_from_smart_npz(path: Path, split_spec: SplitSpec, *, name: str | None = None) -> Dataset:
    """The SMART authors' pre-processed clips (already 60-frame windows) as a dataset.

    Clips are converted to metres; the authors root-centred them and chose their facing,
    so the canonicalisation re-centres and ties the joints that coincide but does not
    re-face them, and there is no trajectory (zeros). Their frame rate is undocumented,
    the authors' attack assumes 30 fps, and so do we. Subjects are unknown, so only a seeded
    ``test_fraction`` split (by clip) is possible; class names are the 65 HDM05 classes,
    restricted to those present.
    """
    from .smart_npz import load_smart_npz

    if split_spec.mode() != "fraction":
        raise DataError("the SMART npz has no subjects or files: split it with --test-fraction")
    data = load_smart_npz(path)
    present = sorted(set(int(c) for c in data.labels))
    names = [data.class_names[c] for c in present]
    remap = {c: i for i, c in enumerate(present)}
    canonical = PreprocessConfig(center="frame", face_forward=False).canonical(
        STANDARD.coincident_groups(data.positions_m)
    )
    motions, trajectory = canonical_windows(data.positions_m, canonical)
    labels = np.array([remap[int(c)] for c in data.labels], dtype=np.int64)
    n = len(motions)
    rng = np.random.default_rng(split_spec.seed)
    split = np.full(n, TRAIN, dtype=np.uint8)
    # stratified: about test_fraction of each class (at least one where the class has >= 2)
    for c in range(len(names)):
        members = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(split_spec.test_fraction * len(members)))
        if k == 0 and len(members) >= 2:
            k = 1
        split[members[:k]] = TEST
    mean, std = normalisation_stats(motions[split == TRAIN])
    meta = {
        "name": name or "hdm05_smart_subset",
        "class_names": names,
        "fps": 30.0,
        "preprocess": {
            "fps": 30.0,
            "window": int(motions.shape[1]),
            "stride": None,
            "center": "frame",
            "face_forward": False,
            "note": "pre-processed (root-centred, faced) by the SMART authors",
        },
        "canonical": canonical.to_json(),
        "normalisation": {"mean": mean.tolist(), "std": std, "computed_on": "train"},
        "sources": [
            {
                "path": f"{Path(path).name}#{i}",
                "label": names[labels[i]],
                "subject": None,
                "split": "train" if split[i] == TRAIN else "test",
                "format": "smart_npz",
                "fps": 30.0,
                "frames": int(motions.shape[1]),
                "windows": 1,
                "padded_frames": 0,
            }
            for i in range(n)
        ],
        "split": {
            "mode": "fraction",
            "test_subjects": None,
            "test_fraction": split_spec.test_fraction,
            "seed": split_spec.seed,
        },
        "inputs": [str(path)],
        "unit_to_m": data.unit_to_m,
    }
    return Dataset(motions, labels, split, np.arange(n), np.zeros(n, dtype=np.int64), meta, trajectory)
