"""``irstd predict``: detect small targets in image files, folders and globs."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Detect infrared small targets in your own images (any size, PIL mode and bit depth). Without
--model/--weights/--run the detector shipped with irstd is used. Large frames (e.g. 1920x1080
and up) are processed in overlapping tiles that are blended, with bounded memory.

Writes to OUT:
  <stem>.png          binary mask (0/255) at the original size
  <stem>_prob.png     16-bit probability map (with --save-prob)
  <stem>_overlay.png  RGB picture with the detections boxed (with --overlay)
  detections.jsonl    one JSON object per detected target: image, centroid [x, y], bbox
                      [x_min, y_min, x_max, y_max] (inclusive), area (pixels), score (peak
                      probability), mean_score
An unreadable input is reported and skipped; the others are still processed (exit status 2).

Examples:
  irstd predict frame.png --out det
  irstd predict 'flight/*.tif' more_frames/ --out det --overlay --save-prob
  irstd predict data/ --out det --run runs/nuaa_acm-20250101-120000 --threshold 0.4
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict",
        help="detect targets in images (default: the shipped detector)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    src = p.add_argument_group("model (default: the shipped detector)")
    src.add_argument("--model", metavar="NAME", help="zoo model name (with --weights)")
    src.add_argument("--weights", metavar="FILE", help=".safetensors or .pth weights")
    src.add_argument("--model-kwargs", metavar="YAML", help="model constructor kwargs as a YAML mapping")
    src.add_argument("--run", metavar="RUN_DIR", help="run directory written by irstd train")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the model's)")
    p.add_argument("--save-prob", action="store_true", help="write 16-bit probability maps")
    p.add_argument("--overlay", action="store_true", help="write RGB overlays with detections marked")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    p.add_argument("--tile", type=int, default=None, help="tile size for large frames (default 512)")
    p.add_argument("--overlap", type=int, default=None, help="tile overlap in pixels (default 64)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no per-image lines")
    return p


def collect_inputs(items: list[str], recursive: bool = False) -> list:
    """Expand files, folders (image files inside, sorted) and glob patterns, keeping order and
    dropping duplicates. Explicitly named files are kept whatever their extension (so that a bad
    file is reported rather than silently ignored)."""
    import glob
    from pathlib import Path

    from irstd.data.io import is_image_file
    from irstd.errors import IRSTDError

    out, seen = [], set()

    def add(path: Path) -> None:
        key = str(path.resolve())
        if key not in seen:
            seen.add(key)
            out.append(path)

    for item in items:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and is_image_file(p) and not p.name.startswith("."))
            if not found:
                raise IRSTDError(f"{path}: folder holds no image files")
            for p in found:
                add(p)
        elif path.exists():
            add(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if m.is_file() and is_image_file(m)]
            if not files:
                raise IRSTDError(f"{item}: pattern matches no image files")
            for p in files:
                add(p)
        else:
            raise IRSTDError(f"{item}: no such file or folder")
    return out


def run(args) -> int:
    import sys
    import time
    from pathlib import Path

    import yaml

    from irstd.engine.predictor import load_detector, predict_files
    from irstd.errors import IRSTDError

    kwargs = None
    if args.model_kwargs:
        try:
            kwargs = yaml.safe_load(args.model_kwargs)
        except yaml.YAMLError:
            kwargs = None
        if not isinstance(kwargs, dict):
            raise IRSTDError(f"--model-kwargs {args.model_kwargs!r}: expected a YAML mapping such as '{{key: value}}'")
    paths = collect_inputs(args.inputs, args.recursive)
    detector = load_detector(
        model=args.model,
        weights=args.weights,
        run=args.run,
        model_kwargs=kwargs,
        threshold=args.threshold,
        device=args.device,
        tile=args.tile,
        overlap=args.overlap,
    )
    out = Path(args.out)
    if not args.quiet:
        print(f"{detector!r}: {len(paths)} image(s) -> {out}")
    t0 = time.perf_counter()
    summary = predict_files(
        detector, paths, out, save_prob=args.save_prob, overlay=args.overlay, log=None if args.quiet else print
    )
    failures = summary["failures"]
    print(
        f"{summary['processed']} of {len(paths)} image(s) processed in {time.perf_counter() - t0:.1f} s, "
        f"{summary['targets']} target(s); wrote {out / 'detections.jsonl'}"
    )
    if failures:
        print(f"error: {len(failures)} input(s) could not be processed:", file=sys.stderr)
        for _, msg in failures:
            print(f"  {msg}", file=sys.stderr)
        return 2
    return 0
