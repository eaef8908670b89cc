"""``irstd robustness``: clean vs corrupted scores of a detector, paper 002's Table 2 layout."""

from __future__ import annotations

import argparse

from irstd.commands.common import add_model_source, dataset_and_split, load_detector_from_args, model_kwargs

DESCRIPTION = """\
Score a detector on a test split and on corrupted copies of it generated on the fly (nothing is
written but the report): IoU, nIoU, Pd, Fa per corruption and severity, RCE = (IoU_clean -
IoU_cor) / IoU_clean, per corruption the mean over severities and the average over corruptions,
laid out as Table 2 of paper 002 (BALISTD). Default corruptions: that table's nine columns
(gaussian_noise shot_noise defocus_blur motion_blur gaussian_blur brightness contrast pixelate
jpeg_compression); default severities 1 2 3 of paper 002's scale (ImageNet-C levels 1, 3, 5).

Each raw image is read once, corrupted in its native bit depth, then normalised, and scored at
its original size (padded to the model's stride and cropped back). Corrupted image seeds are
derive_seed(derive_seed(SEED, "<name>/<severity>"), image id): the numbers do not depend on order,
and `irstd corrupt --seed <corruption seed from robustness.json>` reproduces any corrupted set.

Writes OUT/robustness.md (tables), OUT/robustness.csv (long format: corruption, severity, metrics
as fractions) and OUT/robustness.json (everything, with the settings); prints the markdown.

The model comes from a run directory, a weights file, or (neither given) the default detector.

Examples:
  irstd robustness --run runs/nuaa_acm-20250101-120000
  irstd robustness --model acm --weights acm.safetensors --dataset ../shared/datasets/NUAA-SIRST
  irstd robustness --run runs/x --corruptions gaussian_noise contrast --severities 3 --seed 1
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "robustness",
        help="clean vs corrupted IoU/Pd/Fa/RCE of a detector (paper 002 Table 2)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_source(p, "model (one of; neither: the default detector)")
    p.add_argument("--dataset", metavar="DIR", help="dataset folder (default: the run's data.root)")
    p.add_argument("--split", default=None, help="split name (default: the run's data.test_split, else 'test')")
    p.add_argument("--corruptions", nargs="+", metavar="NAME", default=None,
                   help="corruptions to run (default: paper 002's Table 2 columns)")
    p.add_argument("--severities", nargs="+", type=int, metavar="S", default=None,
                   help="severities (default: 1 2 3; 1..5 with --levels 5)")
    p.add_argument("--levels", type=int, choices=[3, 5], default=3,
                   help="severity scale: 3 (paper 002, default) or 5 (ImageNet-C)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the corrupted sets (default: 0)")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the model's, else 0.5)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/robustness, else ./robustness)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="corrupted versions of one image per forward pass (default: 8)")
    p.add_argument("--full-scale", type=float, default=None, metavar="V",
                   help="intensity full scale corruptions act relative to (default: the one the run "
                        "trained with on this dataset, else the dataset's rule: 255 for 8-bit data, "
                        "2**b - 1 holding the dataset's peak for 16-bit data, as irstd corrupt)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable samples (listed) instead of stopping")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _source(args) -> tuple[str | None, str | None]:
    """``(model name, weights path)`` for the report, before loading (which checks them)."""
    from pathlib import Path

    from irstd.errors import IRSTDError

    if args.run is not None:
        from irstd.config import load_config
        from irstd.engine.predictor import _run_weights

        run = Path(args.run)
        if not run.is_dir():
            raise IRSTDError(f"{run}: run directory not found")
        if not (run / "config.yaml").is_file():
            raise IRSTDError(f"{run}: not a run directory (no config.yaml)")
        return load_config(run / "config.yaml").model.name, str(_run_weights(run, args.checkpoint))
    if args.weights is not None:
        from irstd.engine.checkpoint import read_weights_metadata

        weights = Path(args.weights)
        if not weights.is_file():
            raise IRSTDError(f"{weights}: weights file not found")
        return args.model or read_weights_metadata(weights).get("model"), str(weights)
    from irstd.engine.predictor import DEFAULT_WEIGHTS

    return None, str(DEFAULT_WEIGHTS)


def _full_scale(args, dataset_root: str) -> float | None:
    """``--full-scale``, else the scale a run recorded (``data.full_scale``) when it is scored on
    its own dataset, so that test corruptions are the ones it trained against; else None (the
    dataset's rule, which is what the run recorded unless it was given a scale)."""
    from pathlib import Path

    if args.full_scale is not None or args.run is None:
        return args.full_scale
    from irstd.config import load_config

    data = load_config(Path(args.run) / "config.yaml").data
    if data.full_scale is None or not data.root:
        return None
    same = Path(data.root).expanduser().resolve() == Path(dataset_root).expanduser().resolve()
    return data.full_scale if same else None


def run(args) -> int:
    import sys
    from pathlib import Path

    from irstd.engine.robustness import (
        check_corruption_list,
        check_severity_list,
        robustness_benchmark,
        robustness_markdown,
        write_robustness,
    )
    from irstd.errors import IRSTDError

    # cheap checks first, so that typos fail before a model is built
    check_corruption_list(args.corruptions)
    check_severity_list(args.severities, args.levels)
    if args.batch_size < 1:
        raise IRSTDError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise IRSTDError(f"--threshold must be in [0, 1], got {args.threshold}")
    model_kwargs(args)  # a malformed mapping fails before anything is loaded
    if args.run is not None and (args.model is not None or args.weights is not None):
        raise IRSTDError("give either --run or --model/--weights, not both")

    model_name, weights = _source(args)
    dataset_root, split = dataset_and_split(args)
    detector = load_detector_from_args(args)
    if model_name is None:  # the default detector names its architecture
        model_name = detector.name
    out = Path(args.out) if args.out else (Path(args.run) / "robustness" if args.run else Path("robustness"))
    if out.exists() and not out.is_dir():
        raise IRSTDError(f"{out}: exists and is not a folder")
    results = robustness_benchmark(
        detector,
        dataset_root,
        split,
        args.corruptions,
        args.severities,
        args.seed,
        levels=args.levels,
        batch_size=args.batch_size,
        full_scale=_full_scale(args, dataset_root),
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
        metadata={"model": model_name, "weights": weights, "run": args.run},
    )
    if results["meta"]["skipped"]:
        print(f"skipped {len(results['meta']['skipped'])} unreadable samples (listed in robustness.json)",
              file=sys.stderr)
    paths = write_robustness(results, out)
    print(robustness_markdown(results), end="")
    print(f"wrote {paths['md']}, {paths['csv']}, {paths['json']} [{results['meta']['seconds']:.1f} s]",
          file=sys.stderr)
    return 0
