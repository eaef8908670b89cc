"""Time every corruption of irstd.corruptions on one core.

    python benchmarks/bench_corruptions.py [--repeats 15] [--severity 3] [--torch]

Frames are synthetic infrared frames (irstd.data.synth): 256 x 256 and 640 x 512 8-bit, and
640 x 512 16-bit (14-bit counts). Each cell is the median over ``--repeats`` calls of
:func:`irstd.corruptions.apply` (conversion to and from the image's dtype included), in
milliseconds of process CPU time: OpenCV, torch and BLAS are limited to one thread, so CPU time is
the single-core cost, and it is far less disturbed than wall-clock time by other processes on a
shared machine (the wall-clock median is printed too). The default severity is the strongest of
paper 002's scale (largest kernels, most noise). ``--torch`` adds the batched torch form
(:func:`irstd.corruptions.apply_torch`, batch of 16 float 256 x 256 frames on the CPU), per frame.

The target is < 10 ms per 256 x 256 frame for every corruption (column "ok"); the script exits with
status 1 when a corruption misses it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import irstd.corruptions as C  # noqa: E402
from irstd.data.synth import frame_rng, generate_frame  # noqa: E402

LIMIT_MS = 10.0


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median CPU and wall milliseconds of ``fn()`` over ``repeats`` calls (after one warm-up)."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return 1e3 * statistics.median(cpu), 1e3 * statistics.median(wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--levels", type=int, default=3, choices=[3, 5])
    parser.add_argument("--torch", action="store_true", help="also time the batched torch form")
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    frames = {
        "256x256 u8": generate_frame(frame_rng(0, 0), (256, 256), 8)[0],
        "640x512 u8": generate_frame(frame_rng(0, 1), (512, 640), 8)[0],
        "640x512 u16": generate_frame(frame_rng(0, 2), (512, 640), 16)[0],
    }
    batch = None
    if args.torch:
        import torch

        torch.set_num_threads(1)
        u = frames["256x256 u8"].astype(np.float32) / 255
        batch = torch.from_numpy(u)[None, None].repeat(16, 1, 1, 1)
        gen = torch.Generator().manual_seed(0)

    heads = [f"{k} ms" for k in frames] + (["torch 16x256x256 ms/frame"] if batch is not None else [])
    print(f"severity {args.severity} of {args.levels}; median of {args.repeats} runs; "
          f"CPU ms (wall ms); OpenCV {cv2.__version__}, numpy {np.__version__}\n")
    print("| corruption | params | " + " | ".join(heads) + " | ok |")
    print("|---|---|" + "---|" * len(heads) + "---|")
    slow = []
    for name in C.list_corruptions():
        params = C.severity_params(name, args.severity, args.levels)
        cells = []
        first = None
        for image in frames.values():
            rng = np.random.default_rng(0)
            cpu, wall = _time(
                lambda: C.apply(image, name, args.severity, rng, levels=args.levels), args.repeats
            )
            first = cpu if first is None else first
            cells.append(f"{cpu:.2f} ({wall:.2f})")
        if batch is not None:
            cpu, wall = _time(
                lambda: C.apply_torch(batch, name, args.severity, gen, levels=args.levels),
                max(3, args.repeats // 3),
            )
            cells.append(f"{cpu / 16:.2f} ({wall / 16:.2f})")
        ok = first < LIMIT_MS
        if not ok:
            slow.append(name)
        text = ", ".join(f"{k}={v:g}" for k, v in params.items())
        print(f"| {name} | {text} | " + " | ".join(cells) + f" | {'yes' if ok else 'NO'} |")
    print()
    if slow:
        print(f"over {LIMIT_MS:g} ms per 256x256 frame: {', '.join(slow)}")
        return 1
    print(f"all corruptions under {LIMIT_MS:g} ms per 256x256 frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
