"""Size-neutral media: every file one item can serve in a trial has the size of the others of its kind.

A video or poster's byte size can give its condition away: two equal halves of an
``original|original`` composite compress better than ``original|smart``, a jittery attack
costs the encoder more bits. Within an item, the files of each group

- the variants' videos, the variants' posters,
- the composites' videos, the composites' posters,

are therefore padded to one size, inside their containers, so that they stay valid files
that decode to exactly the same pictures:

- MP4: one ``free`` box appended after the last box (ISO/IEC 14496-12 §8.1.2: contents
  ignored by readers; the ``moov`` of a faststart file stays in front);
- PNG: one private ancillary chunk ``paDd`` of zero bytes inserted before ``IEND`` (PNG
  §5.4: ancillary, private, safe to copy; decoders skip it).

Every file of a group gets exactly one padding element, so a group's common size is its
largest unpadded file plus the smallest element (8 bytes for MP4, 12 for PNG), and the
same inputs give the same bytes; the batch validator checks that each group has one size.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Iterable

__all__ = [
    "MP4_PAD_MIN",
    "PNG_PAD_MIN",
    "PNG_PAD_CHUNK",
    "pad_mp4",
    "pad_png",
    "pad_group",
    "pad_overhead",
    "item_groups",
]

MP4_PAD_MIN = 8
"""An empty ``free`` box: 4-byte size and 4-byte type."""
PNG_PAD_MIN = 12
"""An empty chunk: length, type and CRC."""
PNG_PAD_CHUNK = b"paDd"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def pad_overhead(path: str | Path) -> int:
    """The smallest padding element for ``path``'s container (by its suffix)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".mp4":
        return MP4_PAD_MIN
    if suffix == ".png":
        return PNG_PAD_MIN
    raise ValueError(f"{path}: no padding for {suffix!r} files")


def pad_mp4(path: str | Path, size: int) -> None:
    """Append a ``free`` box so that the MP4 at ``path`` is exactly ``size`` bytes (at least 8 more)."""
    path = Path(path)
    extra = size - path.stat().st_size
    if extra < MP4_PAD_MIN:
        raise ValueError(f"{path}: cannot pad by {extra} bytes (a free box takes at least {MP4_PAD_MIN})")
    if extra >= 2**32:
        raise ValueError(f"{path}: padding of {extra} bytes exceeds one 32-bit box")
    with open(path, "ab") as fh:
        fh.write(struct.pack(">I", extra) + b"free" + bytes(extra - 8))


def pad_png(path: str | Path, size: int) -> None:
    """Insert a ``paDd`` chunk before ``IEND``: the PNG at ``path`` becomes exactly ``size`` bytes (>= 12 more)."""
    path = Path(path)
    data = path.read_bytes()
    extra = size - len(data)
    if extra < PNG_PAD_MIN:
        raise ValueError(f"{path}: cannot pad by {extra} bytes (a chunk takes at least {PNG_PAD_MIN})")
    if not data.endswith(_IEND):
        raise ValueError(f"{path}: not a PNG ending in IEND")
    body = bytes(extra - 12)
    chunk = struct.pack(">I", len(body)) + PNG_PAD_CHUNK + body
    chunk += struct.pack(">I", zlib.crc32(PNG_PAD_CHUNK + body) & 0xFFFFFFFF)
    with open(path, "r+b") as fh:  # in place: a torn write is caught by the hash and rendered again
        fh.seek(len(data) - len(_IEND))
        fh.write(chunk + _IEND)


def pad_group(paths: Iterable[str | Path]) -> int:
    """Pad every file of one group to a common size; returns it."""
    paths = [Path(p) for p in paths]
    if not paths:
        return 0
    size = max(p.stat().st_size for p in paths) + max(pad_overhead(p) for p in paths)
    for p in paths:
        (pad_mp4 if p.suffix.lower() == ".mp4" else pad_png)(p, size)
    return size


def item_groups(variants: Iterable[str], composites: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The four groups of one item's files (names relative to its folder), by kind."""
    variants, composites = list(variants), [f"{a}_vs_{b}" for a, b in composites]
    return {
        "video": [f"{v}.mp4" for v in variants],
        "poster": [f"{v}.png" for v in variants],
        "composite video": [f"{c}.mp4" for c in composites],
        "composite poster": [f"{c}.png" for c in composites],
    }
