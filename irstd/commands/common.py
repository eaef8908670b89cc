"""Arguments shared by the commands that run a trained detector (predict, test, robustness), and the
diffusion models' sampling arguments (predict, test)."""

from __future__ import annotations

import argparse


def add_model_source(parser: argparse.ArgumentParser, title: str) -> None:
    """``--run``, ``--model``, ``--weights``, ``--model-kwargs``, ``--checkpoint``: where the detector
    comes from (read by :func:`irstd.engine.predictor.load_detector`)."""
    src = parser.add_argument_group(title)
    src.add_argument("--run", metavar="RUN_DIR", help="run directory written by irstd train")
    src.add_argument("--model", metavar="NAME", help="zoo model name (with --weights)")
    src.add_argument("--weights", metavar="FILE", help=".safetensors or .pth weights")
    src.add_argument(
        "--model-kwargs", metavar="YAML", help="model constructor kwargs as a YAML mapping, e.g. '{deep_supervision: true}'"
    )
    src.add_argument(
        "--checkpoint", choices=["auto", "best", "last"], default="auto", help="which checkpoint of --run (default: best, else last)"
    )


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """``--sampler``, ``--steps``, ``--ensemble``, ``--seed``: how a diffusion model (irstd_diff)
    samples its masks (read by :func:`sampling_from_args`); an error for any other model."""
    g = parser.add_argument_group("diffusion sampling (irstd_diff only; default: the model's, DDIM with 10 steps)")
    # dest names of their own: other commands have a --seed of another meaning (robustness, synth)
    g.add_argument("--sampler", dest="sampling_sampler", metavar="NAME",
                   help="ddpm, ddim (deterministic) or dpm_solver (DPM-Solver++)")
    g.add_argument("--steps", dest="sampling_steps", type=int, metavar="N",
                   help="denoising steps per sample, 1 .. T (T = 100 training timesteps)")
    g.add_argument("--ensemble", dest="sampling_ensemble", type=int, metavar="K", help="average K samples per image (default 1)")
    g.add_argument("--seed", dest="sampling_seed", type=int, metavar="S",
                   help="seed of the sampling noise (default 0; one seed gives one mask)")


_SAMPLING_KEYS = ("sampler", "steps", "ensemble", "seed")


def sampling_from_args(args) -> dict:
    """The sampling settings given on the command line (``{}`` when none, or the command has none)."""
    return {k: getattr(args, f"sampling_{k}") for k in _SAMPLING_KEYS if getattr(args, f"sampling_{k}", None) is not None}


def reject_sampling_for_method(args) -> None:
    """Sampling settings with a classic ``--method``: one clear error instead of silently ignoring them."""
    from irstd.errors import IRSTDError

    given = sampling_from_args(args)
    if given and getattr(args, "method", None):
        raise IRSTDError(
            f"--{', --'.join(sorted(given))}: sampling settings apply to diffusion models (irstd_diff), "
            f"not to the classic method {args.method}"
        )


def model_kwargs(args) -> dict | None:
    """``--model-kwargs`` parsed as a YAML mapping (``None`` when not given)."""
    import yaml

    from irstd.errors import IRSTDError

    if not args.model_kwargs:
        return None
    try:
        kwargs = yaml.safe_load(args.model_kwargs)
    except yaml.YAMLError:
        kwargs = None
    if not isinstance(kwargs, dict):
        raise IRSTDError(f"--model-kwargs {args.model_kwargs!r}: expected a YAML mapping such as '{{key: value}}'")
    return kwargs


def load_detector_from_args(args, **extra):
    """The :class:`~irstd.engine.predictor.Detector` the model-source arguments name."""
    from irstd.engine.predictor import load_detector

    return load_detector(
        model=args.model,
        weights=args.weights,
        run=args.run,
        model_kwargs=model_kwargs(args),
        threshold=args.threshold,
        checkpoint=args.checkpoint,
        device=args.device,
        sampling=sampling_from_args(args) or None,
        **extra,
    )


def dataset_and_split(args) -> tuple[str, str]:
    """``--dataset`` / ``--split``, falling back to the run's ``data.root`` / ``data.test_split``."""
    from pathlib import Path

    from irstd.errors import IRSTDError

    dataset_root, split = args.dataset, args.split
    if args.run is not None:
        from irstd.config import load_config

        run_dir = Path(args.run)
        if not (run_dir / "config.yaml").is_file():
            raise IRSTDError(f"{run_dir}: not a run directory (no config.yaml)")
        cfg = load_config(run_dir / "config.yaml")
        dataset_root = dataset_root or cfg.data.root
        split = split or cfg.data.test_split
    if not dataset_root:
        raise IRSTDError("give --dataset DIR")
    return dataset_root, split or "test"
