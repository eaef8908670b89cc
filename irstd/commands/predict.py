"""``irstd predict``: detect small targets in image files, folders and globs."""

from __future__ import annotations

import argparse

from irstd.commands.classic_args import add_method_source, classic_detector
from irstd.commands.common import add_model_source, add_sampling_args, load_detector_from_args, reject_sampling_for_method

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
The outputs appear in OUT when the run ends; if no input can be processed, nothing is written.
Each line names a frame and its number of detections (there is no ground truth to call them
targets; irstd test and irstd demo score detections against masks).

Examples:
  irstd predict frame.png --out det
  irstd predict 'flight/*.tif' more_frames/ --out det --overlay --save-prob
  irstd predict data/ --out det --run runs/nuaa_acm-20250101-120000 --threshold 0.4
  irstd predict data/ --out det-ipi --method ipi            # a classic method
  irstd predict data/ --out det --weights model.onnx         # ONNX Runtime (irstd export)
  irstd predict data/ --out det --model irstd_diff --sampler ddim --steps 10   # shipped IRSTD-Diff
  irstd predict data/ --out det --run runs/irstd_diff --sampler dpm_solver --steps 5 --ensemble 3

--sampler, --steps, --ensemble and --seed set how a diffusion model (irstd_diff, paper 001) samples
its masks; each costs one network evaluation per step and sample, so a frame takes about
steps x ensemble times as long as one denoiser pass. They are an error for any other model.

--weights FILE.onnx (written by irstd export) runs the network in ONNX Runtime on the CPU with the
same normalisation, padding, tiling, threshold and outputs; it needs pip install "irstd[onnx]".
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
    add_model_source(p, "model (default: the shipped detector)")
    add_method_source(p)
    add_sampling_args(p)
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the model's)")
    p.add_argument("--save-prob", action="store_true", help="write 16-bit probability maps")
    p.add_argument("--overlay", action="store_true", help="write RGB overlays with detections marked")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    p.add_argument("--tile", type=int, default=None, help="tile size for large frames (default 512)")
    p.add_argument("--overlap", type=int, default=None, help="tile overlap in pixels (default 64)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads of torch and of ONNX Runtime (default: torch's default)"
    )
    p.add_argument("--quiet", action="store_true", help="no per-image lines and no progress bar")
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

    from irstd.data.io import staged_dir
    from irstd.engine.predictor import predict_files

    reject_sampling_for_method(args)
    paths = collect_inputs(args.inputs, args.recursive)
    if args.threads is not None:
        import torch

        from irstd.errors import IRSTDError

        if args.threads < 1:
            raise IRSTDError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)  # an ONNX Runtime session reads the same setting
    detector = classic_detector(args) or load_detector_from_args(args, tile=args.tile, overlap=args.overlap)
    out = Path(args.out)
    if not args.quiet:
        print(f"{detector!r}: {len(paths)} image(s) -> {out}")
    t0 = time.perf_counter()
    with staged_dir(out) as stage:
        summary = predict_files(
            detector,
            paths,
            stage,
            save_prob=args.save_prob,
            overlay=args.overlay,
            log=None if args.quiet else print,
            progress=not args.quiet,
        )
    failures = summary["failures"]
    print(
        f"{summary['processed']} of {len(paths)} image(s) processed in {time.perf_counter() - t0:.1f} s, "
        f"{summary['detections']} detection(s); wrote {out / 'detections.jsonl'}"
    )
    if failures:
        print(f"error: {len(failures)} input(s) could not be processed:", file=sys.stderr)
        for _, msg in failures:
            print(f"  {msg}", file=sys.stderr)
        return 2
    return 0
