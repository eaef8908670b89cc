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
        "the efficiency table.",
    )
    p.add_argument("name", nargs="?", help="model name (see `irstd models`)")
    p.add_argument("--all", action="store_true", help="profile every registered model")
    p.add_argument("--size", nargs=2, type=int, default=[256, 256], metavar=("H", "W"), help="input size (default 256 256)")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before timing (default 3)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--channels-last", action="store_true", help="use the channels-last memory format")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p


def run(args) -> int:
    import json

    from irstd.data.io import atomic_write_bytes
    from irstd.models import list_models
    from irstd.profiling import format_table, profile_in_subprocess, profile_model

    if args.all == bool(args.name):
        raise IRSTDError("give either a model NAME or --all")
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0 or min(args.size) < 1:
        raise IRSTDError("--batch, --repeats and --size must be positive, --warmup >= 0")
    names = list_models() if args.all else [args.name.lower()]
    if not args.all and names[0] not in list_models():
        raise IRSTDError(f"unknown model {args.name!r}; available: {', '.join(list_models())}")
    kwargs = dict(
        size=tuple(args.size),
        batch=args.batch,
        threads=args.threads,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        channels_last=args.channels_last,
    )
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
