"""A contact sheet of one batch item: evenly spaced frames of a variant's video, to look at.

    python bench/contact_sheet.py BATCH_DIR [--label walk] [--item ID] [--variant smart] [--frames 8] --out sheet.png

Picks the first item whose true label contains ``--label`` (or ``--item``), decodes the
variant's video and tiles ``--frames`` evenly spaced frames; prints how far the figure's
root moves over the clip (metres, from the variant's motion array).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stimuli.batch import load_batch  # noqa: E402
from stimuli.render import decode_frames  # noqa: E402
from stimuli.render.ffmpeg import write_png  # noqa: E402
from stimuli.render.video import contact_sheet  # noqa: E402
from stimuli.skeleton import STANDARD  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("batch", type=Path)
    ap.add_argument("--label", help="part of the true label's name")
    ap.add_argument("--item")
    ap.add_argument("--variant", default="smart")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    batch = load_batch(args.batch)
    items = [
        it
        for it in batch.items
        if (args.item is None or it.id == args.item) and (args.label is None or args.label in it.true_label.name)
    ]
    if not items:
        raise SystemExit(f"{args.batch}: no item matches (labels: {sorted({i.true_label.name for i in batch.items})})")
    item = items[0]
    v = item.variant(args.variant)
    frames = decode_frames(args.batch / v.video.path)
    pick = np.linspace(0, len(frames) - 1, args.frames).round().astype(int)
    write_png(args.out, contact_sheet([frames[i] for i in pick], cols=min(4, args.frames)))
    motion = np.load(args.batch / v.motion.path)
    root = motion[:, STANDARD.root]
    travel = float(np.linalg.norm(root[-1, [0, 2]] - root[0, [0, 2]]))
    print(
        f"{item.id} ({item.true_label.name}), {args.variant}: {len(frames)} frames, root travels {travel:.2f} m "
        f"on the floor; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
