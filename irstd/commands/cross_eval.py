"""``irstd cross-eval``: every run on every dataset, in paper 000's cross-domain table layout."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Score every trained run on every dataset at original resolution and print one table per dataset
in the layout of paper 000's Tables 1-3: PixAcc, IoU, nIoU, Pd (x1e-2), Fa (x1e-6), F1 (x1e-2),
plus false targets per frame (predicted targets matching no ground-truth target, the Pd/Fa
matching). The metrics are the toolkit's one implementation (irstd.metrics, through the
evaluator irstd test uses).

A dataset is DIR (its --split, default test), DIR:SPLIT (e.g. irstd-demo/frames:all; 'all' is
every image of a labelled dataset), or a target-free folder: a folder of frames without masks/
(DIR/images or DIR itself, detected automatically and said so in the table). A target-free folder
is scored on its held-out 30 % only (irstd.domain.frames.split_frames, seed 0: the frames no
strategy may train on) unless --all-frames is given; the table then gives frames, false targets,
false targets per frame, the frames with at least one false target, and Fa.

Example (paper 000 Table B: NUAA-SIRST -> SIRST-v2-backgrounds):
  irstd cross-eval --runs runs/cross_plain runs/cross_wcs_rnil \\
      --datasets ../shared/datasets/NUAA-SIRST ../shared/datasets/SIRST-v2-backgrounds
"""

_COLUMNS = (("PixAcc", 100.0), ("IoU", 100.0), ("nIoU", 100.0), ("Pd", 100.0), ("Fa", 1e6), ("F1", 100.0))


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "cross-eval",
        help="score runs on several datasets (paper 000 Tables 1-3 layout, false targets per frame)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="run directories written by irstd train")
    p.add_argument("--datasets", nargs="+", required=True, metavar="DS",
                   help="dataset folders (DIR, DIR:SPLIT, or a target-free folder of frames)")
    p.add_argument("--split", default="test", help="split of labelled datasets given without :SPLIT (default: test)")
    p.add_argument("--all-frames", action="store_true",
                   help="score every frame of target-free folders, not only their held-out 30 %%")
    p.add_argument("--checkpoint", choices=["auto", "best", "last"], default="auto",
                   help="which checkpoint of each run (default: best, else last)")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: each run's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", metavar="FILE", help="also write every figure to this JSON file")
    return p


def _parse_dataset(spec: str, default_split: str) -> tuple[Path, str | None]:
    """``(folder, split)``; a ``:SPLIT`` suffix counts only when the part before it is a folder
    and the whole string is not."""
    path = Path(spec).expanduser()
    if not path.exists() and ":" in spec:
        head, _, split = spec.rpartition(":")
        if Path(head).expanduser().is_dir() and split:
            return Path(head).expanduser(), split
    return path, default_split


def _open(spec: str, default_split: str, all_frames: bool):
    """``(dataset, label, target_free)``."""
    from irstd.data import IRSTDDataset
    from irstd.data.dataset import is_target_free, scan_image_folder
    from irstd.domain.frames import split_frames
    from irstd.errors import IRSTDError

    path, split = _parse_dataset(spec, default_split)
    if not path.is_dir():
        raise IRSTDError(f"{path}: dataset folder not found")
    if is_target_free(path):
        if all_frames:
            data = IRSTDDataset(path, target_free=True)
            return data, f"{path.name} (target-free, all {len(data)} frames)", True
        heldout = split_frames(path).heldout
        data = IRSTDDataset(path, ids=[p.stem for p in heldout], target_free=True)
        return data, f"{path.name} (target-free, held-out 30 %: {len(data)} frames)", True
    if split == "all":
        if not (path / "images").is_dir():
            raise IRSTDError(f"{path / 'images'}: folder not found (a dataset folder holds images/ and masks/)")
        data = IRSTDDataset(path, ids=sorted(scan_image_folder(path / "images")[0]))
    else:
        data = IRSTDDataset(path, split=split)
    return data, f"{path.name}/{split} ({len(data)} images)", False


def _table(label: str, rows: list[dict], target_free: bool) -> str:
    from irstd.metrics import niou_label

    if target_free:
        head = ["run", "frames", "false targets", "per frame", "frames with FT", "Fa (x1e-6)"]
        body = [[r["run"], str(r["frames"]), str(r["false_targets"]), f"{r['false_targets_per_frame']:.3f}",
                 str(r["frames_with_false_targets"]), f"{r['Fa'] * 1e6:.2f}"] for r in rows]
    else:
        rule = niou_label(rows[0]["nIoU_empty_gt"]) if rows else "nIoU"
        head = ["run", "PixAcc", "IoU", rule, "Pd", "Fa (x1e-6)", "F1", "FT/frame"]
        body = [[r["run"]] + [f"{r[k] * s:.2f}" for k, s in _COLUMNS] + [f"{r['false_targets_per_frame']:.3f}"]
                for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = [label, "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json

    from irstd.data.io import atomic_write_bytes
    from irstd.engine.evaluator import evaluate
    from irstd.engine.predictor import load_detector
    from irstd.errors import IRSTDError
    from irstd.metrics import match_targets
    from irstd.metrics.functional import binarize_prediction

    # every input is checked before the first (slow) evaluation
    datasets = [_open(spec, args.split, args.all_frames) for spec in args.datasets]
    detectors = []
    for run_dir in args.runs:
        if not (Path(run_dir) / "config.yaml").is_file():
            raise IRSTDError(f"{run_dir}: not a run directory (no config.yaml)")
        detectors.append((Path(run_dir).name or str(run_dir), load_detector(
            run=run_dir, threshold=args.threshold, checkpoint=args.checkpoint, device=args.device)))
    results = []
    for data, label, target_free in datasets:
        rows = []
        for name, det in detectors:
            counts = {"false": 0, "frames_with": 0}

            def count(index, prob, mask, det=det, counts=counts):
                fa = match_targets(binarize_prediction(prob, det.threshold), mask).counts["false_alarms"]
                counts["false"] += fa
                counts["frames_with"] += fa > 0

            m = evaluate(det.model, data, det.device, det.threshold, in_chans=det.in_chans, on_image=count)
            row = {"run": name, "run_dir": str(Path(args.runs[len(rows)]).resolve()), "dataset": str(data.root),
                   "split": data.split, "target_free": target_free, "frames": len(data), "threshold": det.threshold,
                   "false_targets": counts["false"], "frames_with_false_targets": counts["frames_with"],
                   "false_targets_per_frame": counts["false"] / max(len(data), 1),
                   "ids": None if not target_free else list(data.ids)}
            row.update({k: m[k] for k in ("PixAcc", "IoU", "nIoU", "Pd", "Fa", "F1", "nIoU_empty_gt")})
            rows.append(row)
        print(_table(label, rows, target_free))
        print()
        results += rows
    if args.out:
        atomic_write_bytes(Path(args.out), (json.dumps(results, indent=2, default=float) + "\n").encode())
        print(f"wrote {args.out}")
    return 0
