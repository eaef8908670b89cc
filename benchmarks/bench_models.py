"""Eager CPU latency of every zoo network at 1x1x256x256 on 2 threads, against the public code.

The public figures were measured on a 2-core machine of the same kind with torch 2.13 CPU
(../shared/notes/seed-code-facts.md). Each model runs in its own process (see irstd.profiling).

    python benchmarks/bench_models.py [--repeats 20] [--threads 2]

Run it on an otherwise idle machine: other processes on the two cores inflate every number.
"""

from __future__ import annotations

import argparse

from irstd.models import list_models
from irstd.profiling import profile_in_subprocess

PUBLIC_MS = {"acm": 28.0, "rdian": 63.0, "istdunet": 229.0, "dnanet": 345.0, "uiunet": 783.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="*", default=None)
    args = ap.parse_args()
    print("| model | params (M) | GFLOPs | median ms | p90 ms | public ms | ours / public |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models or list_models():
        r = profile_in_subprocess(name, size=(256, 256), batch=1, threads=args.threads, repeats=args.repeats)
        pub = PUBLIC_MS.get(name)
        ratio = f"{r['median_ms'] / pub:.2f}" if pub else "-"
        print(
            f"| {name} | {r['params'] / 1e6:.3f} | {r['gflops']:.2f} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} "
            f"| {pub if pub else '-'} | {ratio} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
