"""``irstd report``: one self-contained HTML report of runs and prediction folders on a dataset split."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write OUT/index.html: one HTML file with every picture embedded (no network access, no external
scripts or styles), to open in any browser.

Sources (any mix, at least one):
  RUN_DIR...   run directories of irstd train; each run's detector (best/ checkpoint, else last/)
               is scored now on the split, as irstd test scores it; the run's test_metrics.json,
               log.csv, robustness.json (in the run or its robustness/ folder) and policy.png
               are shown when present
  --pred DIR   a folder written by irstd predict: <id>_prob.png (--save-prob) when present,
               else the <id>.png masks; repeatable

The report holds the metrics table of every source, ROC and Pd-Fa curves, per run its training
curves, robustness table and bar chart and the HRL policy plot, and a gallery of every image of
the split: hits (green circles), misses (magenta circles) and false alarms (orange squares) as
Pd and Fa match them, beside a pixel map (green: ground truth and prediction, magenta: ground
truth only, orange: prediction only), sortable and filterable by per-image IoU. The folder appears
when the report is complete; after an error nothing is written.

Examples:
  irstd report runs/default runs/hrl_v2 --dataset ../shared/datasets/NUAA-SIRST --out report
  irstd predict ../shared/datasets/NUAA-SIRST/images --out pred --save-prob
  irstd report --pred pred --dataset ../shared/datasets/NUAA-SIRST --out report-pred
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="self-contained HTML report of runs / predictions (metrics, curves, gallery)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories written by irstd train")
    p.add_argument("--pred", action="append", default=[], metavar="DIR", help="folder written by irstd predict (repeatable)")
    p.add_argument("--dataset", metavar="DIR", help="dataset folder (default: the first run's data.root)")
    p.add_argument("--split", default=None, help="split (default: the first run's data.test_split, else 'test')")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for index.html")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: each run's; 0.5 for --pred)")
    p.add_argument("--checkpoint", choices=["auto", "best", "last"], default="auto", help="which checkpoint of each run (default: best, else last)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def run(args) -> int:
    from pathlib import Path

    from irstd.data import IRSTDDataset
    from irstd.engine.report import build_report, score_predictions, score_run, unique_label, write_report
    from irstd.errors import IRSTDError

    if not args.runs and not args.pred:
        raise IRSTDError("give RUN_DIR... and/or --pred DIR")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise IRSTDError(f"--threshold must lie in [0, 1], got {args.threshold}")
    dataset_root, split = args.dataset, args.split
    if args.runs and (dataset_root is None or split is None):
        from irstd.config import load_config

        first = Path(args.runs[0])
        if not (first / "config.yaml").is_file():
            raise IRSTDError(f"{first}: not a run directory (no config.yaml)")
        cfg = load_config(first / "config.yaml")
        dataset_root = dataset_root or cfg.data.root
        split = split or cfg.data.test_split
    if not dataset_root:
        raise IRSTDError("give --dataset DIR (the split the predictions were made on)")
    split = split or "test"
    dataset = IRSTDDataset(dataset_root, split=split)
    label = f"{Path(dataset_root).resolve().name}/{split}"
    taken: set[str] = set()
    sources = []
    for run_dir in args.runs:
        if not args.quiet:
            print(f"scoring {run_dir} on {label} ({len(dataset)} images)")
        sources.append(
            score_run(run_dir, dataset, label=unique_label(Path(run_dir), taken), checkpoint=args.checkpoint,
                      device=args.device, threshold=args.threshold, progress=not args.quiet)
        )
    for pred in args.pred:
        if not args.quiet:
            print(f"scoring {pred} on {label} ({len(dataset)} images)")
        threshold = 0.5 if args.threshold is None else args.threshold
        sources.append(score_predictions(pred, dataset, label=unique_label(Path(pred), taken), threshold=threshold))
    path = write_report(build_report(sources, label), args.out)
    for s in sources:
        m = s.metrics
        print(f"{s.label}: IoU {m['IoU']:.4f} nIoU {m['nIoU']:.4f} Pd {m['Pd']:.4f} Fa {m['Fa'] * 1e6:.2f}e-6")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
