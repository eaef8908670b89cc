"""``irstd synth``: write a synthetic infrared small-target dataset."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write a synthetic infrared small-target dataset in the common layout:
DIR/images/<id>.png, DIR/masks/<id>.png (0/255), DIR/img_idx/{train,test}_<NAME>.txt,
DIR/targets.jsonl (per-target centre, size, amplitude, SCR) and DIR/synth.json.

Backgrounds are sky with clouds, sea with glint, or ground clutter, with vignetting, fixed-pattern
and sensor noise. Each frame holds 0..K point-spread targets of 1-9 px with a signal-to-clutter
ratio drawn from --scr; masks are the pixels where a target adds at least half its peak.
The same arguments give the same bytes. 16-bit frames hold 14-bit counts (0..16383).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic infrared dataset with exact masks",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--name", required=True,
                   help="dataset name used in ids (<NAME>_0000) and index files")
    p.add_argument("--num", required=True, type=int, metavar="N", help="number of images (>= 1)")
    p.add_argument("--size", nargs=2, type=int, default=[256, 256], metavar=("H", "W"),
                   help="frame height and width in pixels (default: 256 256; each side 32..8192)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--bit-depth", type=int, default=8, metavar="{8,16}",
                   help="8: uint8 frames; 16: uint16 PNGs holding 14-bit counts (default: 8)")
    p.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                   help="fraction of images listed in the test index (default: 0.2)")
    p.add_argument("--max-targets", type=int, default=4, metavar="K",
                   help="at most K targets per image (default: 4)")
    p.add_argument("--empty-fraction", type=float, default=0.1, metavar="P",
                   help="probability of an image without targets (default: 0.1)")
    p.add_argument("--scr", nargs=2, type=float, default=[2.0, 10.0], metavar=("MIN", "MAX"),
                   help="signal-to-clutter ratio range (default: 2 10)")
    p.add_argument("--scene", choices=["mixed", "sky", "sea", "ground"], default="mixed",
                   help="background type (default: mixed, drawn per image)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty folder that is not a synth output, replacing its "
                        "images/, masks/, img_idx/ (other files are kept)")
    return p


def run(args: argparse.Namespace) -> int:
    import time

    from irstd.data.synth import make_dataset

    start = time.perf_counter()
    summary = make_dataset(
        args.out,
        args.name,
        args.num,
        size=tuple(args.size),
        seed=args.seed,
        bit_depth=args.bit_depth,
        test_fraction=args.test_fraction,
        max_targets=args.max_targets,
        empty_fraction=args.empty_fraction,
        scr_range=tuple(args.scr),
        scenes=None if args.scene == "mixed" else [args.scene],
        overwrite=args.overwrite,
        progress=True,
    )
    seconds = time.perf_counter() - start
    print(
        f"wrote {len(summary['ids'])} images "
        f"({summary['targets']} targets, {summary['empty']} without) "
        f"to {summary['root']}: train {len(summary['train'])}, test {len(summary['test'])} "
        f"[{seconds:.1f} s]"
    )
    return 0
