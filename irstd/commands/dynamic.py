"""``irstd dynamic``: write the Dynamic-ISTD version of a dataset (paper 000's protocol)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Apply paper 000's Dynamic-ISTD protocol to a labelled dataset: a seeded 50/50 split of all its
images; 30 % of the training images motion-blurred (length 5, 45 degrees), the rest unchanged;
every test image motion-blurred (length 5) at one of the paper's angles 25, 45, 90, 135, 150
degrees, then given the composite of five noises (Gaussian, salt-and-pepper, speckle, uniform,
Poisson) at proportion 0.05 (--test-noise: another proportion, 0 for blur only; the split,
the training images and the test blur stay the same, so one run can be tested on several
noise levels). Blur and noise are the toolkit's corruptions at the dataset's
intensity full scale.

Writes DIR/images/<id>.png (grey, the input's bit depth), DIR/masks/ (copied), DIR/img_idx/
{train,test}_<name>.txt and DIR/dynamic.json (the protocol and every image's split and
degradation). The same dataset and seed give the same bytes. Nothing is written unless
everything succeeds.

Example:
  irstd dynamic --dataset ../shared/datasets/NUAA-SIRST --out data/dynamic-nuaa --seed 0
  irstd train --config dynamic_litenet_plain
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "dynamic",
        help="write the Dynamic-ISTD version of a dataset (paper 000)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, metavar="DS", help="labelled dataset folder (images/, masks/)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the angles and the noise (default: 0)")
    p.add_argument("--name", default=None, help="dataset name of the index files (default: Dynamic-<dataset folder name>)")
    p.add_argument("--test-noise", type=float, default=None, metavar="P",
                   help="composite noise proportion of the test images (default: 0.05, the paper's; 0: blur only)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty DIR, replacing what this command writes")
    return p


def run(args: argparse.Namespace) -> int:
    import time

    from irstd.domain.dynamic import make_dynamic

    start = time.perf_counter()
    noise = {} if args.test_noise is None else {"test_noise": args.test_noise}  # None: the protocol's value
    s = make_dynamic(args.dataset, args.out, seed=args.seed, name=args.name, overwrite=args.overwrite, **noise)
    print(f"wrote {s['name']} to {s['out']}: {s['train']} train images ({s['train_blurred']} motion-blurred), "
          f"{s['test']} test images (blurred{' and noisy' if s['test_noise'] > 0 else ''}), full scale {s['full_scale']:g} "
          f"[{time.perf_counter() - start:.1f} s]")
    return 0
