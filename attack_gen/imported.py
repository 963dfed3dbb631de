"""``attack-gen import-attack``: adversarial clips from another attack become a method in a stimulus batch.

An attack from other work (BASAR, TASAR, SVAttack, an I-FGSM, ...) gives pairs of clips,
original and adversarial, with their true labels. Imported here, they are judged again by
one of our recognizers exactly as our own attacks are: ``success`` through the model's own
pipeline (the canonical threat model) and ``robust_success`` after the dataset's numpy
pipeline re-preprocesses the clip; our perceptual metrics (mean joint displacement,
acceleration and bone-length deviation) are computed on them, and graded levels
``q + s (q^ - q)`` can be added as for our methods. The file's own verdicts are kept in the
provenance but never trusted.

Layouts (a ``.npz`` archive, or a ``.pt`` file holding a dict of tensors or arrays):

* ``ours``: ``original`` and ``adversarial`` ``(N, T, 25, 3)`` float, metres, joints in
  :data:`stimuli.skeleton.STANDARD` order, Y up; ``labels`` ``(N,)`` integer true classes
  (indices into the model's classes, or into ``class_names`` when the file has that field:
  ``(K,)`` strings); optional ``fps`` (a scalar; else ``--fps``, else the model's rate) and
  ``predictions`` (the attack's own verdicts).
* ``smart``: the SMART/BEAT attack output (``AdExamples_*.npz``): ``oriClips`` and ``clips``
  ``(N, T, 75)`` normalised with ``preprocess_core.npz`` (``Xmean``, ``Xstd``), 25 joints x
  xyz in HDM05 ASF units, ``tclasses`` ``(N,)`` the true classes (indices into the class
  list ``hdm05_classes.txt``), optionally ``classes`` (their model's predictions, kept in the
  provenance). The clips are 30 fps as that code assumes unless ``--fps`` says otherwise.

The clips must have the model's window length and frame rate (no resampling: a clip at
another rate would be a different motion to the model).

Only clips whose original the model recognises and whose adversarial fools it enter the
batch (the others are counted in the provenance): a study shows attacks that work on the
model it names.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Sequence

import numpy as np

from stimuli.batch import BatchItemInput
from stimuli.batch import ControlSpec
from stimuli.batch import Label
from stimuli.batch import SourceClip
from stimuli.batch import VariantInput
from stimuli.batch import write_batch
from stimuli.errors import DataError
from stimuli.fileio import file_sha256
from stimuli.labels import display_names
from stimuli.skeleton import NUM_JOINTS

from .data.limits import MAX_POSITION_M
from .data.smart_npz import CLASSES_FILE
from .data.smart_npz import CORE_FILE
from .data.smart_npz import HDM05_UNIT_TO_M
from .data.smart_npz import SMART_ATTACK_FPS
from .levels import METRICS

__all__ = ["LAYOUTS", "ExternalClips", "read_external", "import_attack"]

LAYOUTS = ("ours", "smart")


@dataclass
class ExternalClips:
    """Clips of another attack in our layout: metres, STANDARD joints."""

    original: np.ndarray
    """``(N, T, 25, 3)`` float32."""
    adversarial: np.ndarray
    labels: np.ndarray
    """``(N,)`` true class names' indices into ``class_names``."""
    class_names: tuple[str, ...] | None
    """The file's class names (None: the labels index the model's classes)."""
    fps: float | None
    """Frames per second (None: not given; the model's rate is assumed)."""
    file_predictions: np.ndarray | None
    """The attack's own verdicts (its model's predicted classes), where the file has them."""
    layout: str
    path: Path


def _read_fields(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: attack file not found")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: np.asarray(z[k]) for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, zlib.error) as e:
            raise DataError(f"{path}: cannot read as a NumPy .npz archive ({type(e).__name__}: {e})") from None
    if path.suffix == ".pt":
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds on a bad file
            raise DataError(f"{path}: cannot read as a torch file of tensors ({type(e).__name__}: {e})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: expected a dict of tensors or arrays, got {type(obj).__name__}")
        out = {}
        for k, v in obj.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu().numpy()
            elif isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
                v = np.asarray(v, dtype=str)
            out[str(k)] = np.asarray(v)
        return out
    raise DataError(f"{path}: expected an .npz or .pt attack file, got {path.suffix or 'no suffix'!r}")


def _need(path: Path, fields: dict[str, np.ndarray], names: Sequence[str], layout: str) -> None:
    missing = [n for n in names if n not in fields]
    if missing:
        raise DataError(
            f"{path}: no field {missing[0]!r} for layout {layout!r}; expected fields {', '.join(names)} "
            f"(found: {', '.join(sorted(fields)) or 'none'})"
        )


def _finite(path: Path, name: str, x: np.ndarray) -> None:
    if not np.isfinite(x).all():
        n, t = (int(v) for v in np.argwhere(~np.isfinite(x))[0][:2])
        raise DataError(f"{path}: field {name!r} has a NaN/Inf at clip {n}, frame {t}; expected finite values")


def _labels(path: Path, name: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: field {name!r} has shape {tuple(y.shape)} dtype {y.dtype}; expected ({n},) integers, one "
            "class index per clip"
        )
    return y.astype(np.int64)


def read_external(
    path: str | Path,
    layout: str = "ours",
    *,
    core: str | Path | None = None,
    classes: str | Path | None = None,
    fps: float | None = None,
) -> ExternalClips:
    """Read and check another attack's clips (see the module docstring); every problem is one :class:`DataError`
    naming the file and the field."""
    from .data.smart_npz import _load_npz
    from .data.smart_npz import _read_classes
    from .data.smart_npz import unnormalise

    path = Path(path)
    if layout not in LAYOUTS:
        raise DataError(f"--layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    f = _read_fields(path)
    if layout == "ours":
        _need(path, f, ("original", "adversarial", "labels"), layout)
        shape = f["original"].shape
        for name in ("original", "adversarial"):
            x = f[name]
            if x.ndim != 4 or x.shape[2:] != (NUM_JOINTS, 3) or 0 in x.shape[:2]:
                raise DataError(
                    f"{path}: field {name!r} has shape {tuple(x.shape)}; expected (N, T, {NUM_JOINTS}, 3): "
                    f"{NUM_JOINTS} joints in our order, xyz in metres (a SMART/BEAT file: --layout smart)"
                )
            if not np.issubdtype(x.dtype, np.floating):
                raise DataError(f"{path}: field {name!r} has dtype {x.dtype}; expected floats (metres)")
            _finite(path, name, x)
        if f["adversarial"].shape != shape:
            raise DataError(
                f"{path}: field 'adversarial' has shape {tuple(f['adversarial'].shape)}; expected the shape of "
                f"'original', {tuple(shape)}"
            )
        original, adversarial = f["original"].astype(np.float32), f["adversarial"].astype(np.float32)
        labels = _labels(path, "labels", f["labels"], shape[0])
        names = tuple(str(s) for s in f["class_names"]) if "class_names" in f else None
        if "fps" in f:
            if f["fps"].size != 1 or not float(f["fps"].ravel()[0]) > 0:
                raise DataError(f"{path}: field 'fps' is {f['fps'].ravel()[:3].tolist()}; expected one rate > 0")
            fps = fps or float(f["fps"].ravel()[0])
        predictions = f.get("predictions")
    else:
        _need(path, f, ("oriClips", "clips", "tclasses"), layout)
        folder = path.parent
        core_path = Path(core) if core is not None else folder / CORE_FILE
        classes_path = Path(classes) if classes is not None else folder / CLASSES_FILE
        cz = _load_npz(core_path, "normalisation file (--core)", ("Xmean", "Xstd"))
        names = _read_classes(classes_path)
        shape = f["oriClips"].shape
        arrays = {}
        for name in ("oriClips", "clips"):
            x = f[name]
            if x.ndim != 3 or x.shape[-1] != 3 * NUM_JOINTS or 0 in x.shape[:2]:
                raise DataError(
                    f"{path}: field {name!r} has shape {tuple(x.shape)}; expected (N, T, {3 * NUM_JOINTS}) for the "
                    f"SMART/BEAT layout ({NUM_JOINTS} joints x xyz per frame, normalised)"
                )
            if x.shape != shape:
                raise DataError(
                    f"{path}: field {name!r} has shape {tuple(x.shape)}; expected the shape of 'oriClips', "
                    f"{tuple(shape)}"
                )
            _finite(path, name, x)
            phys = unnormalise(x.reshape(*x.shape[:2], NUM_JOINTS, 3), cz["Xmean"], cz["Xstd"])
            arrays[name] = (phys.astype(np.float64) * HDM05_UNIT_TO_M).astype(np.float32)
        original, adversarial = arrays["oriClips"], arrays["clips"]
        labels = _labels(path, "tclasses", f["tclasses"], shape[0])
        fps = fps or SMART_ATTACK_FPS
        predictions = f.get("classes")
        if predictions is not None and predictions.shape != (shape[0],):
            predictions = None  # SA runs save one scalar there (see the reference notes)
    if names is not None:
        bad = (labels < 0) | (labels >= len(names))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: clip {i}: true class {int(labels[i])} is outside 0..{len(names) - 1} "
                f"(the file's {len(names)} class names)"
            )
    for name, x in (("original", original), ("adversarial", adversarial)):
        far = ~(np.abs(x) <= MAX_POSITION_M).all(axis=(2, 3))
        if far.any():
            n, t = (int(v) for v in np.argwhere(far)[0])
            raise DataError(
                f"{path}: {name} clip {n}, frame {t}: a joint lies beyond {MAX_POSITION_M:g} m of the origin; "
                "expected metres (our layout) or the file's own normalisation (--core)"
            )
    return ExternalClips(
        original=original,
        adversarial=adversarial,
        labels=labels,
        class_names=names,
        fps=None if fps is None else float(fps),
        file_predictions=None if predictions is None else np.asarray(predictions).astype(np.int64),
        layout=layout,
        path=path,
    )


def _to_model_labels(ext: ExternalClips, model_names: Sequence[str]) -> np.ndarray:
    """The true labels as indices into the model's classes (matched by name when the file names its classes)."""
    if ext.class_names is None:
        bad = (ext.labels < 0) | (ext.labels >= len(model_names))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{ext.path}: clip {i}: true class {int(ext.labels[i])} is outside the model's classes "
                f"0..{len(model_names) - 1} (add a 'class_names' field to match by name)"
            )
        return ext.labels
    index = {n: k for k, n in enumerate(model_names)}
    out = np.empty(len(ext.labels), dtype=np.int64)
    for i, c in enumerate(ext.labels):
        name = ext.class_names[int(c)]
        if name not in index:
            raise DataError(
                f"{ext.path}: clip {i}: true class {name!r} is not one of the model's {len(model_names)} classes "
                f"({', '.join(model_names[:8])}{', ...' if len(model_names) > 8 else ''})"
            )
        out[i] = index[name]
    return out


def import_attack(
    path: str | Path,
    *,
    name: str,
    checkpoint: str | Path,
    out: str | Path,
    layout: str = "ours",
    core: str | Path | None = None,
    classes: str | Path | None = None,
    fps: float | None = None,
    levels: Sequence[float] = (),
    motions: int | None = None,
    render: dict[str, Any] | None = None,
    seed: int = 0,
    workers: int | None = None,
    device: str | None = None,
    log: Any = lambda s: None,
) -> dict[str, Any]:
    """Judge another attack's clips with our model and write them as method ``name`` of a new batch at ``out``
    (with graded ``levels`` below 1 and a positive control per item); returns a summary."""
    import re

    from stimuli.batch.schema import VARIANT_PATTERN

    from .attack.strategies import build_strategy
    from .levels import grade
    from .levels import level_name
    from .recognizer import load_checkpoint
    from .recognizer import pipeline_logits

    out = Path(out)
    if out.exists():
        raise DataError(f"{out}: already exists (choose another --out or delete it)")
    if not re.match(VARIANT_PATTERN, name) or name in ("original", "control") or name.startswith("control"):
        raise DataError(
            f"--name: {name!r} cannot name a method (lower-case letters, digits and '-', at most 32, not "
            "'original' or 'control')"
        )
    ext = read_external(path, layout, core=core, classes=classes, fps=fps)
    model, info = load_checkpoint(checkpoint, device)
    model_names = list(info["class_names"])
    ext.fps = ext.fps or float(info["fps"])
    frames = ext.original.shape[1]
    if frames != int(info["window"]) or abs(ext.fps - float(info["fps"])) > 1e-6:
        raise DataError(
            f"{ext.path}: the clips are {frames} frames at {ext.fps:g} fps; the model ({checkpoint}) takes windows "
            f"of {int(info['window'])} frames at {float(info['fps']):g} fps"
        )
    true = _to_model_labels(ext, model_names)
    n = len(true)
    recognised = (pipeline_logits(model, ext.original).argmax(-1).numpy() == true) if n else np.zeros(0, bool)
    strengths = sorted({*levels, 1.0})
    strategy = build_strategy("ab")
    graded = grade(model, strategy, ext.original, ext.adversarial, true, true, strengths, ext.fps, "canonical")
    full = graded[1.0]
    fooled = full["success"] & full["robust_success"]
    keep = np.flatnonzero(recognised & fooled)
    if motions is not None:
        keep = keep[:motions]
    counts = {
        "clips_in_file": n,
        "original_not_recognised": int((~recognised).sum()),
        "recognised_not_fooled": int((recognised & ~fooled).sum()),
        "imported": len(keep),
    }
    log(
        f"{n} clips in {ext.path}: {counts['original_not_recognised']} originals not recognised by the model, "
        f"{counts['recognised_not_fooled']} adversarial clips do not fool it robustly; importing {len(keep)}"
    )
    if len(keep) == 0:
        raise DataError(
            f"{ext.path}: none of the {n} clips both has an original the model ({info['model']}, {checkpoint}) "
            "recognises and an adversarial clip that fools it; nothing to import"
        )
    shown = display_names(model_names, {})

    def label(k: int) -> Label:
        return Label(model_names[k], k, shown[model_names[k]])

    items = []
    for k in keep.tolist():
        variants: dict[str, VariantInput] = {"original": VariantInput(ext.original[k], final_label=label(int(true[k])))}
        for s in strengths:
            g = graded[s]
            variants[level_name(name, s)] = VariantInput(
                g["adversarial"][k],
                role="attack" if s == 1.0 else "level",
                final_label=label(int(g["final_label"][k])),
                success=bool(g["success"][k]),
                metrics={m: float(g[m][k]) for m in METRICS},
                info={
                    "robust_success": bool(g["robust_success"][k]),
                    "threat_model": "canonical",
                    "method": name,
                    "strength": float(s),
                    "imported": True,
                },
            )
        items.append(
            BatchItemInput(
                variants=variants,
                true_label=label(int(true[k])),
                attacked_label=label(int(full["final_label"][k])),
                source=SourceClip(dataset=str(info.get("dataset", {}).get("name", "")), window=k, file=str(ext.path)),
                motion_fps=ext.fps,
            )
        )
    rates = {
        "success_rate": float(full["success"][recognised].mean()) if recognised.any() else None,
        "robust_success_rate": float(fooled[recognised].mean()) if recognised.any() else None,
    }
    per_level = [
        {
            "strength": s,
            "variant": level_name(name, s),
            "success_rate": float(np.mean(graded[s]["success"][keep])),
            "robust_success_rate": float(np.mean(graded[s]["robust_success"][keep])),
            **{f"mean_{m}": float(np.mean(graded[s][m][keep])) for m in METRICS},
        }
        for s in strengths
    ]
    file_agrees = None
    if ext.file_predictions is not None and ext.class_names is not None:
        theirs = [ext.class_names[int(c)] if 0 <= c < len(ext.class_names) else None for c in ext.file_predictions]
        ours = [model_names[int(c)] for c in full["final_label"]]
        file_agrees = float(np.mean([a == b for a, b in zip(theirs, ours)]))
    provenance = {
        "dataset": dict(info.get("dataset") or {}),
        "model": {
            "name": info["model"],
            "size": info.get("size"),
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": info["sha256"],
            "class_names": model_names,
        },
        "attack": {
            "threat_model": "canonical",
            "canonical": info.get("canonical"),
            "strategy": "ab",
            "label": "AB",
            "losses": [name],
            "imported": {
                "file": str(ext.path),
                "sha256": file_sha256(ext.path),
                "layout": ext.layout,
                "fps": ext.fps,
                **counts,
                "success_rate_on_recognised": rates["success_rate"],
                "file_predictions_agree_with_the_model": file_agrees,
            },
            "success_rates": {name: rates["success_rate"]},
            "robust_success_rates": {name: rates["robust_success_rate"]},
            "levels": {
                "strengths": [s for s in strengths if s < 1.0],
                "family": "blend q + s (q^ - q)",
                "methods": {name: per_level},
            }
            if len(strengths) > 1
            else None,
        },
    }
    del model
    batch = write_batch(
        out,
        items,
        render_config=render or None,
        generator_config={
            "command": "attack-gen import-attack",
            "file": str(ext.path),
            "layout": ext.layout,
            "name": name,
            "levels": [s for s in strengths if s < 1.0],
            "seed": seed,
        },
        provenance=provenance,
        controls=ControlSpec(seed=seed),
        workers=workers,
    )
    return {
        "out": str(out),
        "batch_id": batch.batch_id,
        "items": len(batch.items),
        "variants": ["original", *(level_name(name, s) for s in strengths), "control"],
        **counts,
        "success_rate": rates["success_rate"],
        "robust_success_rate": rates["robust_success_rate"],
        "levels": per_level,
        "model": info["model"],
    }
