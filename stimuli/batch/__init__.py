"""Stimulus batches: what the studies show participants, as a self-describing folder (torch-free).

A batch is a folder::

    manifest.json
    manifest.schema.json                   the manifest's JSON Schema (a copy for other tools)
    items/<item id>/<variant>.npy          motion, float32 (T, 25, 3) metres, Y up
    items/<item id>/<variant>.mp4 / .png   the variant's video (H.264, yuv420p) and poster
    items/<item id>/<left>_vs_<right>.mp4 / .png   side-by-side composites and posters

File names are descriptive; the study server never shows them (it serves media through
opaque tokens). Everything about a file is in the manifest: the server needs nothing
else.

The manifest (``schema_version`` 1)::

    {"format": "smart-study-stimulus-batch", "schema_version": 1,
     "batch_id": "batch-3f9c...", "created_utc": "2026-05-09T12:00:00+00:00",
     "generator": {...the generator's full config...},
     "provenance": {"dataset": {...}, "model": {"checkpoint_sha256": "...", ...}, "attack": {...}},
     "render_config": {...RenderConfig.to_dict()...},
     "composites": {"naturalness": ["smart", "l2", "l2-acc", "l2-bone"],
                    "indistinguishability": ["original", "smart", "l2", "l2-acc", "l2-bone", "control"]},
     "items": [{"id": "item-000",
                "source": {"dataset": "...", "window": 12, "file": "HDM05_bd_01-01_01_120.amc", "info": {}},
                "true_label": {"name": "walk", "index": 3}, "attacked_label": {"name": "run", "index": 5},
                "motion_fps": 30.0, "camera": {...Camera.to_dict()...},
                "variants": {"original": {"role": "original", "final_label": {...}, "success": null,
                                          "metrics": {}, "info": {},
                                          "motion": {"path": "items/item-000/original.npy", "sha256": "...",
                                                     "bytes": 6128, "frames": 60},
                                          "video": {"path": "items/item-000/original.mp4", "sha256": "...",
                                                    "bytes": 91234, "codec": "h264", "pix_fmt": "yuv420p",
                                                    "fps": 30.0, "frames": 180, "duration": 6.0,
                                                    "width": 480, "height": 480},
                                          "poster": {"path": "items/item-000/original.png", "sha256": "...",
                                                     "bytes": 20480, "width": 480, "height": 480}},
                             "smart": {"role": "attack", "success": true, ...}, ...,
                             "control": {"role": "control", "success": null, ...}},
                "composites": [{"left": "smart", "right": "l2", "studies": ["naturalness"],
                                "video": {... "width": 964, ...}, "poster": {...}}, ...]}]}

Variants: ``original`` (role ``original``), the attacked ``smart``, ``l2``, ``l2-acc``,
``l2-bone`` (role ``attack``, with ``success`` true/false and the target model's
``final_label``), and positive controls (role ``control``, name ``control`` by default;
see :mod:`stimuli.controls`). Every item has the same variants. A composite's video is
``2 * width + separator_px`` wide; its halves follow one frame schedule (frame-exact sync).

Composites (:class:`CompositePlan`, saved as ``composites``): for the Naturalness study,
every unordered pair of attacked variants in both orders (SMART vs each ablation and
ablation vs ablation: 12 videos); for Indistinguishability, ``original|X`` for X the
original itself (sensitivity), every attacked variant and every control (left is always
the original): 6 videos. Name fewer to render less.

API
---
* :func:`write_batch` (``items: list[BatchItemInput]`` of :class:`VariantInput`) - render
  and write a batch atomically and resumably (see :mod:`stimuli.batch.writer`).
* :func:`load_batch` - the manifest plus existence and size checks (fast; for the server).
* :func:`validate_batch` -> ``list[Problem]``; :func:`check_batch` raises
  :class:`BatchError` (a :class:`stimuli.errors.DataError`) with every problem.
* :class:`Batch`, :class:`Item`, :class:`Variant`, :class:`Composite`, :class:`VideoFile`,
  ... - pydantic dataclasses with ``to_dict`` and ``from_dict``; a bad field is reported
  with its JSON path, e.g. ``items[3].variants.smart.video.sha256: expected 64 hex chars
  (lower-case SHA-256), got 'abc'``. :func:`json_schema` is the manifest's JSON Schema,
  written into every batch as ``manifest.schema.json`` and kept in
  ``docs/batch-manifest.schema.json`` (``python -m stimuli.batch schema`` prints it).

Importing this package loads neither the renderer (skia) nor torch: the writer and the
video checks import :mod:`stimuli.render` when they run.
"""

from .reader import check_batch
from .reader import load_batch
from .reader import read_manifest
from .reader import validate_batch
from .schema import ATTACK_VARIANTS
from .schema import CONTROL
from .schema import FORMAT
from .schema import INDISTINGUISHABILITY
from .schema import JUDGED
from .schema import MANIFEST
from .schema import NATURALNESS
from .schema import ORIGINAL
from .schema import ROLES
from .schema import SCHEMA_FILE
from .schema import SCHEMA_VERSION
from .schema import STUDIES
from .schema import Batch
from .schema import BatchError
from .schema import Composite
from .schema import CompositePlan
from .schema import FileRef
from .schema import ImageFile
from .schema import Item
from .schema import Label
from .schema import MotionFile
from .schema import Problem
from .schema import Provenance
from .schema import SourceClip
from .schema import Variant
from .schema import VideoFile
from .schema import composite_id
from .schema import json_schema
from .writer import BatchItemInput
from .writer import ControlSpec
from .writer import VariantInput
from .writer import work_dir_for
from .writer import write_batch

__all__ = [
    "write_batch",
    "load_batch",
    "validate_batch",
    "check_batch",
    "read_manifest",
    "work_dir_for",
    "BatchItemInput",
    "VariantInput",
    "ControlSpec",
    "CompositePlan",
    "Batch",
    "Item",
    "Variant",
    "Composite",
    "FileRef",
    "MotionFile",
    "VideoFile",
    "ImageFile",
    "Label",
    "SourceClip",
    "Provenance",
    "Problem",
    "BatchError",
    "composite_id",
    "json_schema",
    "FORMAT",
    "SCHEMA_VERSION",
    "MANIFEST",
    "SCHEMA_FILE",
    "ORIGINAL",
    "ATTACK_VARIANTS",
    "CONTROL",
    "ROLES",
    "JUDGED",
    "STUDIES",
    "NATURALNESS",
    "INDISTINGUISHABILITY",
]
