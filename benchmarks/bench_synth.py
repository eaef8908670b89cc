"""CPU time of one synthetic infrared frame (irstd.data.synth.generate_frame), per scene and size.

    python benchmarks/bench_synth.py [--repeats 9]

Each cell is the median over ``--repeats`` frames (different frame seeds, one untimed warm-up for
imports and FFT plans) in milliseconds of process CPU time with one thread, which a shared machine
disturbs far less than wall-clock time. Target: < 50 ms per 256 x 256 8-bit frame (``irstd demo``
and ``irstd synth`` generate frames on the fly); the script exits with status 1 when a 256 x 256
cell misses it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from irstd.data.synth import SCENES, frame_rng, generate_frame  # noqa: E402

LIMIT_MS = 50.0
SIZES = {"256x256 u8": ((256, 256), 8), "640x512 u8": ((512, 640), 8), "640x512 u16": ((512, 640), 16)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)

    generate_frame(frame_rng(0, 999), (256, 256), 8)
    print(f"median of {args.repeats} frames; CPU ms per frame, one thread\n")
    print("| scene | " + " | ".join(f"{k} ms" for k in SIZES) + " | ok |")
    print("|---|" + "---:|" * len(SIZES) + "---|")
    slow = []
    for scene in SCENES:
        cells = []
        for label, (size, bits) in SIZES.items():
            cpu = []
            for i in range(args.repeats):
                rng = frame_rng(0, i)
                start = time.process_time()
                generate_frame(rng, size, bits, scene=scene)
                cpu.append(time.process_time() - start)
            cells.append(1e3 * statistics.median(cpu))
        ok = cells[0] < LIMIT_MS
        if not ok:
            slow.append(scene)
        print(f"| {scene} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {'yes' if ok else 'NO'} |")
    print()
    if slow:
        print(f"over {LIMIT_MS:g} ms per 256x256 frame: {', '.join(slow)}")
        return 1
    print(f"every scene under {LIMIT_MS:g} ms per 256x256 frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
