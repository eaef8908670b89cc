"""``irstd domain-synth``: write a wavelet-guided cross-domain synthesis (WCS) dataset."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Paste hard targets of a labelled source dataset into background regions of unlabelled
target-domain frames (paper 000's wavelet-guided cross-domain synthesis) and write the result as
a dataset: OUT/images/<name>_<k>.png (the target frames' bit depth), OUT/masks/ (0/255), an
index OUT/img_idx/train_<name>.txt, and OUT/synthesis.json (settings and, per frame, the source id
and target window, the target frame, the window it went into and its SSIM).

* Background Region Detection: wavelet multi-frequency filtering of each frame, blocks of S px
  scored p = norm(sum |Laplacian|) + norm(mean |gradient|), blocks with p < tau_b are background.
* Dual-indicator Selection with --run: the run's detector scores every source target in its
  window; PixAcc < tau_p and IoU < tau_i make it hard. Without --run every target is pasted.
* Re-generation: background windows of the patch's size ranked by SSIM, Poisson blending
  (OpenCV seamlessClone) into the best one, the mask carried.

Only the unlabelled 70 % of the target frames is read: the seeded 30 % held out by
irstd.domain.frames.split_frames is for counting false targets (irstd cross-eval). Nothing is
written unless everything succeeds.

Example:
  irstd domain-synth --source ../shared/datasets/NUAA-SIRST \\
      --target ../shared/datasets/SIRST-v2-backgrounds --out data/wcs-nuaa --num 200 --run runs/plain
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from irstd.domain import brd, dis, regen

    p = subparsers.add_parser(
        "domain-synth",
        help="paste hard source targets into target-domain backgrounds (WCS, paper 000)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", required=True, metavar="DATASET", help="labelled source dataset folder")
    p.add_argument("--target", required=True, metavar="FRAMES_DIR",
                   help="folder of unlabelled target-domain frames (FRAMES_DIR/images or FRAMES_DIR)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--num", type=int, default=100, metavar="N", help="frames to synthesise (default: 100)")
    p.add_argument("--run", metavar="RUN_DIR", help="run whose detector selects the hard targets (default: every target)")
    p.add_argument("--checkpoint", choices=["auto", "best", "last"], default="auto",
                   help="which checkpoint of --run (default: best, else last)")
    p.add_argument("--split", default="train", help="split of the source dataset to take targets from (default: train)")
    p.add_argument("--name", default="wcs", help="dataset name used in ids and the index file (default: wcs)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--block-size", type=int, default=brd.BLOCK_SIZE, metavar="S", help=f"BRD block size in px (default: {brd.BLOCK_SIZE})")
    p.add_argument("--tau-b", type=float, default=brd.TAU_B, help=f"BRD background threshold on p (default: {brd.TAU_B})")
    p.add_argument("--wavelet", default=brd.WAVELET, help=f"PyWavelets wavelet of WMF (default: {brd.WAVELET})")
    p.add_argument("--level", type=int, default=brd.LEVEL, help=f"DWT levels of WMF (default: {brd.LEVEL})")
    p.add_argument("--tau-p", type=float, default=dis.TAU_P, help=f"DIS PixAcc threshold (default: {dis.TAU_P})")
    p.add_argument("--tau-i", type=float, default=dis.TAU_I, help=f"DIS IoU threshold (default: {dis.TAU_I})")
    p.add_argument("--margin", type=int, default=dis.MARGIN, help=f"px around a target in its patch (default: {dis.MARGIN})")
    p.add_argument("--max-windows", type=int, default=regen.MAX_WINDOWS,
                   help=f"background windows scored by SSIM per paste (default: {regen.MAX_WINDOWS})")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold of the selection (default: the run's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT, replacing what this command writes")
    return p


def run(args: argparse.Namespace) -> int:
    import time

    from irstd.domain.synthesis import WCSParams, write_synthetic_dataset

    start = time.perf_counter()
    probability, model, threshold = None, None, 0.5
    if args.run:
        from irstd.engine.predictor import load_detector

        detector = load_detector(run=args.run, threshold=args.threshold, checkpoint=args.checkpoint, device=args.device)
        probability, model, threshold = detector.probability, detector.name, detector.threshold
    params = WCSParams(block_size=args.block_size, tau_b=args.tau_b, wavelet=args.wavelet, level=args.level,
                       tau_p=args.tau_p, tau_i=args.tau_i, margin=args.margin, threshold=threshold,
                       max_windows=args.max_windows)
    summary = write_synthetic_dataset(args.source, args.target, args.out, args.num, split=args.split,
                                      probability=probability, model=model, seed=args.seed, name=args.name,
                                      params=params, overwrite=args.overwrite)
    how = "hard by DIS with the run's detector" if args.run else "all of them, no --run"
    print(f"wrote {summary['frames']} frames to {summary['out']}: paste candidates {summary['candidates']} of "
          f"{summary['targets']} source targets ({how}), backgrounds from {summary['target_frames']} unlabelled "
          f"target frames [{time.perf_counter() - start:.1f} s]")
    return 0
