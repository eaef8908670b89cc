"""`irstd evaluate`: score a folder of predicted masks or probability maps against a dataset split."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

DESCRIPTION = """\
Score predictions against the ground truth of a dataset split, at the original image size.

PRED_DIR holds one file per id of the split, named <id>.<ext> (png, bmp, jpg, tif, ...): a binary
mask (0/255) or an 8-bit or 16-bit probability map (value / 255 or / 65535; float TIFFs in [0, 1]).
A pixel is target iff its probability > --threshold. Files of other ids and non-image files are
ignored. The metrics (IoU pooled over the dataset, nIoU, PixAcc, Pd, Fa, target-level F1, ...)
are defined in the documentation of irstd.metrics; Fa is printed x1e-6 and stored as a plain
ratio in the JSON file. nIoU scores an image with empty ground truth 0, also when nothing is
predicted, as the community code does (the table says "nIoU (empty GT = 0)", the JSON file
"nIoU_empty_gt": "community").

A missing prediction, an unreadable file or a prediction whose size differs from its mask is an
error naming the file; with --skip-bad such samples are skipped and listed instead.
"""

_MAX_LISTED = 10


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="score predicted masks / probability maps against a dataset split",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, metavar="DIR", help="dataset folder (images/, masks/, img_idx/)")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--pred", required=True, metavar="PRED_DIR", help="folder of predictions named <id>.<ext>")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="probability threshold, pixel is target iff p > t (default 0.5)"
    )
    p.add_argument("--json", metavar="OUT", default=None, help="write every metric, the counts and curves here")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip missing, unreadable or mis-sized samples and list them"
    )
    return p


def _index_predictions(pred_dir: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Image files of the prediction folder by stem, and the names of the ignored entries."""
    from irstd.data.dataset import scan_image_folder
    from irstd.errors import IRSTDError

    if not pred_dir.exists():
        raise IRSTDError(f"{pred_dir}: prediction folder not found")
    if not pred_dir.is_dir():
        raise IRSTDError(f"{pred_dir}: is a file, expected a folder of predictions named <id>.<ext>")
    by_stem, ignored = scan_image_folder(pred_dir)
    return by_stem, [p.name for p in ignored if not p.name.startswith(".")]


def _listing(problems: list[tuple[str, str]]) -> str:
    shown = "; ".join(reason for _, reason in problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    return shown + (f"; ... and {more} more" if more > 0 else "")


def _finite_or_none(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_ready(obj):
    import numpy as np

    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_finite_or_none(float(v)) for v in obj.ravel()]
    if isinstance(obj, (np.floating, float)):
        return _finite_or_none(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def format_table(scores: dict[str, float], empty_gt: str = "community") -> str:
    """Markdown table of the scalar metrics (Fa shown x1e-6; nIoU named with its ``empty_gt`` rule)."""
    from irstd.metrics import niou_label

    labels = {
        "nIoU": niou_label(empty_gt),
        "F1": "F1 (target)",
        "precision": "precision (target)",
        "recall": "recall (target)",
    }
    lines = ["| metric | value |", "|---|---:|"]
    for key, value in scores.items():
        if key in ("target_precision", "target_recall", "target_F1"):
            continue  # same values as the plain keys, shown once
        if key == "Fa":
            lines.append(f"| Fa (x1e-6) | {value * 1e6:.2f} |")
        else:
            lines.append(f"| {labels.get(key, key)} | {value:.4f} |")
    return "\n".join(lines)


def evaluate_folder(
    dataset: str | os.PathLike,
    split: str,
    pred_dir: str | os.PathLike,
    threshold: float = 0.5,
    skip_bad: bool = False,
) -> dict:
    """Score ``pred_dir`` against ``dataset``/``split``; returns the JSON-ready report.

    Raises:
        IRSTDError: bad dataset, missing / ambiguous / unreadable / mis-sized predictions (unless
            ``skip_bad``), or nothing left to score.
    """
    from irstd.data import IRSTDDataset
    from irstd.data.io import read_mask, read_probability
    from irstd.errors import IRSTDError
    from irstd.metrics import SegmentationMetrics

    if not 0.0 <= threshold <= 1.0:
        raise IRSTDError(f"--threshold must lie in [0, 1], got {threshold}")
    pred_dir = Path(pred_dir)
    preds, ignored = _index_predictions(pred_dir)
    ds = IRSTDDataset(dataset, split=split, skip_bad=skip_bad)
    skipped: list[tuple[str, str]] = list(getattr(ds, "skipped", []))
    source = getattr(ds, "source", f"{dataset} [{split}]")

    # Files first, for all ids at once, so that one message lists every missing prediction.
    chosen: dict[str, Path] = {}
    problems: list[tuple[str, str]] = []
    for item in ds.ids:
        found = preds.get(item, [])
        if len(found) == 1:
            chosen[item] = found[0]
        elif not found:
            problems.append((item, f"{pred_dir / item}.<ext>: no prediction for id '{item}'"))
        else:
            names = ", ".join(p.name for p in found)
            problems.append((item, f"{pred_dir}: several predictions for id '{item}' ({names})"))
    if problems and not skip_bad:
        raise IRSTDError(
            f"{len(problems)} of {len(ds.ids)} ids of {source} have no usable prediction in "
            f"{pred_dir}: {_listing(problems)} (--skip-bad scores the others)"
        )
    skipped += problems

    metrics = SegmentationMetrics(threshold=threshold, input="probs", curves=True)
    scored: list[str] = []
    for item in ds.ids:
        if item not in chosen:
            continue
        path = chosen[item]
        try:
            mask_path = ds.mask_path(item)
            mask = read_mask(mask_path)
            prob = read_probability(path)
            if prob.shape != mask.shape:
                raise IRSTDError(
                    f"{path}: prediction size {prob.shape[1]}x{prob.shape[0]} (WxH) differs from mask "
                    f"{mask_path} size {mask.shape[1]}x{mask.shape[0]}"
                )
        except IRSTDError as exc:
            if not skip_bad:
                raise
            skipped.append((item, str(exc)))
            continue
        metrics.update(prob, mask)
        scored.append(item)
    if not scored:
        raise IRSTDError(
            f"{pred_dir}: no sample left to score for {source}"
            + (f": {_listing(skipped)}" if skipped else "")
        )

    report = dict(metrics.compute())
    report.update(
        {
            "dataset": str(Path(dataset)),
            "split": split,
            "pred": str(pred_dir),
            "n_images": len(scored),
            "threshold": threshold,
            "max_distance": metrics.max_distance,
            "nIoU_empty_gt": metrics.empty_gt,
            "counts": metrics.counts(),
            "skipped": [{"id": item, "reason": reason} for item, reason in skipped],
            "ignored_files": ignored,
            "curves": metrics.compute_curves(),
        }
    )
    return report


def run(args) -> int:
    import json

    from irstd.data.io import atomic_write_bytes
    from irstd.errors import IRSTDError
    from irstd.metrics import SCALAR_KEYS

    report = evaluate_folder(args.dataset, args.split, args.pred, args.threshold, args.skip_bad)
    scores = {k: report[k] for k in (*SCALAR_KEYS, "AUC") if k in report}
    c = report["counts"]
    print(
        f"{report['dataset']} [{report['split']}]: {report['n_images']} images scored from "
        f"{report['pred']}, threshold {report['threshold']}"
    )
    print(format_table(scores, report["nIoU_empty_gt"]))
    print(
        f"targets: {c['gt_targets']} ground truth, {c['pred_targets']} predicted, "
        f"{c['matched_targets']} matched (centroids < {report['max_distance']:g} px); "
        f"false-alarm pixels: {c['false_alarm_pixels']} of {c['pixels']}"
    )
    if report["ignored_files"]:
        names = report["ignored_files"]
        shown = ", ".join(names[:_MAX_LISTED]) + (f", ... and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")
        print(f"ignored {len(names)} non-image entries in {report['pred']}: {shown}")
    if report["skipped"]:
        total = report["n_images"] + len(report["skipped"])
        print(f"skipped {len(report['skipped'])} of {total} samples:")
        for entry in report["skipped"]:
            print(f"  {entry['id']}: {entry['reason']}")
    if args.json:
        out = Path(args.json)
        data = json.dumps(_json_ready(report), indent=2, allow_nan=False).encode("utf-8") + b"\n"
        try:
            atomic_write_bytes(out, data)
        except OSError as exc:
            raise IRSTDError(f"{out}: cannot write JSON ({exc.strerror or exc})") from None
        print(f"wrote {out}")
    return 0
