"""``irstd test``: score a trained model on a dataset split at original resolution."""

from __future__ import annotations

import argparse

from irstd.commands.classic_args import add_method_source, classic_detector
from irstd.commands.common import (
    add_model_source,
    add_sampling_args,
    dataset_and_split,
    load_detector_from_args,
    reject_sampling_for_method,
)

DESCRIPTION = """\
Score a trained model on a dataset split: every metric (IoU, nIoU, PixAcc, Pd, Fa, F1, target and
pixel precision/recall, AUC) at the original image size (padded to the model's stride and cropped
back, never resized). Writes OUT/metrics.json (with ROC and Pd-Fa curves) and the predicted masks
OUT/masks/<id>.png (0/255), and prints a table.

Each image's line gives its ground-truth targets, how many were hit and missed, and the false
alarms, matched as Pd and Fa match them (centroids closer than 3 px); metrics.json lists the same
counts per image. --overlay draws them: hits in green circles, misses in magenta circles, false
alarms in orange squares, with a legend. The outputs appear in OUT when the run ends; after an
error (e.g. an unreadable mask) nothing is written.

The model comes from a run directory (its config.yaml and best/ checkpoint) or from a weights file
(.safetensors written by irstd name their model; foreign .pth state dicts need --model).

Examples:
  irstd test --run runs/nuaa_acm-20250101-120000
  irstd test --run runs/x --dataset ../shared/datasets/NUAA-SIRST --split test --out eval/x
  irstd test --model acm --weights ACM_NUAA.pth --dataset ../shared/datasets/NUAA-SIRST --out eval/acm
  irstd test --method ipi --dataset ../shared/datasets/NUAA-SIRST --out eval/ipi   # a classic method
  irstd test --run runs/irstd_diff --sampler ddim --steps 5 --out eval/diff-ddim5   # a diffusion model
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "test",
        help="score a trained model on a dataset split",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_source(p, "model (one of)")
    add_method_source(p)
    add_sampling_args(p)
    p.add_argument("--dataset", metavar="DIR", help="dataset folder (default: the run's data.root)")
    p.add_argument("--split", default=None, help="split name (default: the run's data.test_split, else 'test')")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/test-<dataset>-<split>, or ./test-<model>-<dataset>-<split>)")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the model's, else 0.5)")
    p.add_argument("--no-masks", action="store_true", help="do not write predicted masks")
    p.add_argument("--save-prob", action="store_true", help="also write 16-bit probability maps <id>_prob.png")
    p.add_argument("--overlay", action="store_true", help="also write RGB pictures <id>_overlay.png of hits, misses and false alarms")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable samples (listed) instead of stopping")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no per-image lines and no progress bar")
    return p


def _print_table(metrics: dict) -> None:
    from irstd.metrics import niou_label

    rows = [
        ("IoU", metrics["IoU"], "{:.4f}"),
        (niou_label(metrics["nIoU_empty_gt"]), metrics["nIoU"], "{:.4f}"),
        ("PixAcc", metrics["PixAcc"], "{:.4f}"),
        ("Pd", metrics["Pd"], "{:.4f}"),
        ("Fa (x1e-6)", metrics["Fa"] * 1e6, "{:.3f}"),
        ("F1 (target)", metrics["F1"], "{:.4f}"),
        ("precision (target)", metrics["precision"], "{:.4f}"),
        ("pixel F1", metrics["pixel_F1"], "{:.4f}"),
    ]
    if "AUC" in metrics:
        rows.append(("AUC", metrics["AUC"], "{:.4f}"))
    width = max(len(r[0]) for r in rows)
    for name, value, fmt in rows:
        print(f"{name:<{width}}  {fmt.format(value)}")


def run(args) -> int:
    import json
    from pathlib import Path

    from tqdm import tqdm

    from irstd.data import IRSTDDataset
    from irstd.data.io import atomic_write_bytes, staged_dir, write_image
    from irstd.engine.evaluator import evaluate
    from irstd.engine.predictor import frame_line, make_overlay
    from irstd.errors import IRSTDError
    from irstd.metrics import match_targets
    from irstd.metrics.functional import binarize_prediction

    reject_sampling_for_method(args)
    classic = classic_detector(args)
    if classic is None and args.run is None and args.weights is None:
        raise IRSTDError("give --run RUN_DIR or --weights FILE (with --model for foreign .pth files), or --method NAME")
    dataset_root, split = dataset_and_split(args)
    detector = classic or load_detector_from_args(args)
    dataset = IRSTDDataset(dataset_root, split=split, skip_bad=args.skip_bad)
    if dataset.skipped:
        print(dataset.skipped_summary())
    ds_name = Path(dataset_root).resolve().name
    if args.out:
        out = Path(args.out)
    elif args.run:
        out = Path(args.run) / f"test-{ds_name}-{split}"
    else:
        model_name = args.method or args.model or Path(args.weights).stem
        out = Path(f"test-{model_name}-{ds_name}-{split}")
    per_image: list[dict] = []
    with staged_dir(out) as stage:
        masks_dir = None if args.no_masks else stage / "masks"

        def report_image(index, prob, mask):
            item = dataset.ids[index]
            # the metrics' own binarisation and matching, so the lines add up to Pd and Fa
            pred = binarize_prediction(prob, detector.threshold)
            match = match_targets(pred, mask)
            per_image.append({"id": item, **match.counts})
            if args.overlay:
                image, _ = dataset.load_arrays(index)
                write_image(stage / "masks" / f"{item}_overlay.png", make_overlay(image, pred, [], match))
            if not args.quiet:
                with tqdm.external_write_mode():
                    print(frame_line(item, prob.shape, [], match))

        metrics = evaluate(
            detector.model,
            dataset,
            detector.device,
            detector.threshold,
            in_chans=detector.in_chans,
            save_dir=masks_dir,
            save_probs=args.save_prob,
            curves=True,
            progress=not args.quiet,
            desc="test",
            on_image=report_image,
            probability=detector.probability if classic is not None else None,
        )
        report = {
            **metrics,
            "model": detector.name,
            "dataset": str(Path(dataset_root).resolve()),
            "split": split,
            "threshold": detector.threshold,
            "skipped": [list(s) for s in dataset.skipped],
            "per_image": per_image,
        }
        atomic_write_bytes(stage / "metrics.json", (json.dumps(report, indent=2, default=float) + "\n").encode())
    print(f"{detector.name} on {ds_name}/{split} ({metrics['num_images']} images, threshold {detector.threshold}):")
    _print_table(metrics)
    kinds = [kind for kind, on in (("masks", not args.no_masks), ("overlays", args.overlay)) if on]
    print(f"wrote {out / 'metrics.json'}" + (f" and {' and '.join(kinds)} in {out / 'masks'}" if kinds else ""))
    return 0
