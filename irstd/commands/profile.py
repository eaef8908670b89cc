"""`irstd profile`: parameters, FLOPs, latency and peak memory of zoo networks."""

from __future__ import annotations

import argparse

from irstd.errors import IRSTDError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "profile",
        help="measure parameters, FLOPs, latency and peak memory of a network",
        description="Measure a zoo network on a random 1-channel input: parameter count, FLOPs "
        "(PyTorch's flop counter), median and p90 latency of eval forward passes after warm-up, and "
        "peak memory. --all profiles every registered network, each in a fresh process, and prints "
        "the efficiency table. A diffusion model (irstd_diff) is reported per sampling step count: "
        "GFLOPs of its conditional encoder (once per image) and of one denoiser step, GFLOPs and "
        "latency per image at each of --steps.",
    )
    p.add_argument("name", nargs="?", help="model name (see `irstd models`)")
    p.add_argument("--all", action="store_true", help="profile every registered model")
    p.add_argument("--size", nargs=2, type=int, default=[256, 256], metavar=("H", "W"), help="input size (default 256 256)")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 20; 3 per step count for diffusion models)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before timing (default 3; 1 for diffusion models)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--channels-last", action="store_true", help="use the channels-last memory format")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--model-kwargs", metavar="YAML", help="model constructor kwargs as a YAML mapping, e.g. '{size: paper}'"
    )
    d = p.add_argument_group("diffusion models (irstd_diff)")
    d.add_argument("--steps", type=int, nargs="+", default=None, metavar="N",
                   help="sampling step counts to report (default: 5 10 20)")
    d.add_argument("--sampler", default=None, metavar="NAME", help="ddpm, ddim or dpm_solver (default: the model's)")
    d.add_argument("--ensemble", type=int, default=1, metavar="K", help="samples per image (default 1)")
    return p


def run(args) -> int:
    import json

    from irstd.commands.common import model_kwargs
    from irstd.data.io import atomic_write_bytes
    from irstd.models import list_models
    from irstd.profiling import format_table, profile_in_subprocess, profile_model, samples_masks

    if args.all == bool(args.name):
        raise IRSTDError("give either a model NAME or --all")
    names = list_models() if args.all else [args.name.lower()]
    if not args.all and names[0] not in list_models():
        raise IRSTDError(f"unknown model {args.name!r}; available: {', '.join(list_models())}")
    kw = model_kwargs(args)
    if args.all and kw:
        raise IRSTDError("--model-kwargs applies to one model NAME, not to --all")
    diffusion = not args.all and samples_masks(names[0], kw)
    if not diffusion and (args.steps or args.sampler or args.ensemble != 1):
        raise IRSTDError("--steps, --sampler and --ensemble apply to a diffusion model NAME (irstd_diff)")
    if args.repeats is None:
        args.repeats = 3 if diffusion else 20
    if args.warmup is None:
        args.warmup = 1 if diffusion else 3
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0 or min(args.size) < 1 or args.ensemble < 1:
        raise IRSTDError("--batch, --repeats, --ensemble and --size must be positive, --warmup >= 0")
    common = dict(size=tuple(args.size), batch=args.batch, threads=args.threads, repeats=args.repeats,
                  warmup=args.warmup, device=args.device)
    if diffusion:
        return _run_diffusion(args, names[0], kw, common)
    kwargs = dict(common, channels_last=args.channels_last)
    if kw:
        kwargs["model_kwargs"] = kw
    rows = []
    for name in names:
        rows.append(profile_in_subprocess(name, **kwargs) if args.all else profile_model(name, **kwargs))
        if args.all:
            print(f"  {name}: {rows[-1]['median_ms']:.1f} ms", flush=True)
    print(format_table(rows))
    print(f"\nthreads={rows[0]['threads']} device={rows[0]['device']} repeats={args.repeats}")
    if args.json:
        atomic_write_bytes(args.json, json.dumps(rows, indent=2).encode())
    return 0


def _run_diffusion(args, name: str, kw: dict | None, common: dict) -> int:
    import json

    from irstd.data.io import atomic_write_bytes
    from irstd.diffusion import SamplingError
    from irstd.profiling import format_diffusion_table, profile_diffusion

    try:
        result = profile_diffusion(
            name,
            steps=tuple(args.steps or (5, 10, 20)),
            sampler=args.sampler,
            ensemble=args.ensemble,
            model_kwargs=kw,
            **common,
        )
    except SamplingError as exc:
        raise IRSTDError(str(exc)) from None
    print(format_diffusion_table(result))
    print(f"\nthreads={result['threads']} device={result['device']} repeats={args.repeats}")
    if args.json:
        atomic_write_bytes(args.json, json.dumps(result, indent=2).encode())
    return 0
