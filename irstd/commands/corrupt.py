"""``irstd corrupt``: write a corrupted copy of a dataset."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write a copy of a dataset (INPUT/images, INPUT/masks, index files) with every image corrupted by
one corruption at one severity. Masks, img_idx/ and top-level .txt index files are copied
byte for byte; OUT/corruption.json records what was done.

Every image needs a mask (masks/<id>.<ext> or <id>_pixels0.<ext>); for frames without ground
truth, --images-only writes the corrupted images/ alone. Nothing is written unless everything
succeeds: the copy is staged in a hidden folder and moved into OUT at the end.

Images keep their bit depth (8 or 16 bits; colour images become grey, as the toolkit reads
them). They are corrupted relative to the dataset's intensity full scale, the one training and
`irstd robustness` use: 255 for 8-bit data; for 16-bit data 2**b - 1 for the smallest b in 8,
10, 12, 14, 16 that holds the largest value of the whole dataset (so 14-bit data is treated as
14-bit), unless --full-scale is given. Images stored as JPEG or 16-bit BMP are written as PNG
(same name stem) so that no second lossy step is added.

Each image gets its own seed derived from (--seed, image name), so the output does not depend
on processing order. Severities: 1..3 (paper 002's scale = ImageNet-C levels 1, 3, 5) or 1..5
with --levels 5. Corruptions: see `python -c "import irstd.corruptions as c;
print(c.severity_table_markdown())"`.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from irstd.corruptions.severity import list_corruptions

    p = subparsers.add_parser(
        "corrupt",
        help="write a corrupted copy of a dataset (noise, blur, JPEG, ...)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="dataset folder with images/ and masks/")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created; must not be inside INPUT or contain it)")
    p.add_argument("--corruption", required=True, metavar="NAME",
                   help="one of: " + ", ".join(list_corruptions()))
    p.add_argument("--severity", required=True, type=int, metavar="S",
                   help="1..3 (paper 002 scale) or 1..5 with --levels 5")
    p.add_argument("--levels", type=int, default=3, choices=[3, 5],
                   help="severity scale: 3 (paper 002, default) or 5 (ImageNet-C)")
    p.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    p.add_argument("--full-scale", type=float, default=None, metavar="V",
                   help="intensity full scale of the dataset (default: inferred from the dataset)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT, replacing the images/, masks/, img_idx/ and "
                        "files it writes (other entries of OUT are kept)")
    p.add_argument("--images-only", action="store_true",
                   help="the dataset has no masks: write only the corrupted images/ (and the record)")
    return p


def run(args: argparse.Namespace) -> int:
    import time

    from irstd.corruptions.dataset import corrupt_dataset

    start = time.perf_counter()
    summary = corrupt_dataset(
        args.input,
        args.out,
        args.corruption,
        args.severity,
        seed=args.seed,
        levels=args.levels,
        full_scale=args.full_scale,
        overwrite=args.overwrite,
        images_only=args.images_only,
    )
    seconds = time.perf_counter() - start
    renamed = f", {summary['renamed']} written as PNG" if summary["renamed"] else ""
    copied = "no masks (--images-only)" if summary["images_only"] else f"{summary['copied']} mask/index files"
    print(
        f"wrote {summary['images']} images corrupted by {summary['corruption']} "
        f"severity {summary['severity']}/{summary['levels']} ({summary['params']}, full scale "
        f"{summary['full_scale']:g}){renamed}, copied {copied} to {summary['out']} [{seconds:.1f} s]"
    )
    return 0
