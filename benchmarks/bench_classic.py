"""Time the classic detectors of irstd.classic on one core and score them on NUAA-SIRST.

    python benchmarks/bench_classic.py [--repeats 3] [--methods ipi,pstnn] [--no-nuaa]
                                       [--dataset ../shared/datasets/NUAA-SIRST] [--k 3]

Speed: seconds of process CPU time per frame (median of ``--repeats`` calls after a warm-up) on
synthetic 8-bit infrared frames (irstd.data.synth) of 256 x 256 and 640 x 512 pixels. BLAS,
OpenMP and OpenCV are limited to one thread (environment variables set before numpy loads, and
threadpoolctl), so CPU time is the single-core cost and is far less disturbed than wall-clock time
by other processes on a shared machine.

Scores: every image of the NUAA-SIRST test split (86 images, original size) through each method
and both saliency-to-mask rules of :mod:`irstd.classic.base` (``minmax``: min-max normalise,
> 0.5, the toolbox convention and the default of ``irstd test --method``; ``adaptive``:
> mean + k std), scored by :class:`irstd.metrics.SegmentationMetrics` (IoU, nIoU, Pd, Fa),
beside the published figures (paper 001 Table III; BasicIRSTD's README for the rest).

Prints a markdown table; exits with status 1 if a method takes more than 1 s per 256 x 256 frame.
Needs threadpoolctl (in the ``test`` extra: ``pip install -e ".[test]"``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from irstd.classic import DEFAULT_K, list_methods, saliency, saliency_to_probability  # noqa: E402
from irstd.data.synth import frame_rng, generate_frame  # noqa: E402

LIMIT_S = 1.0
REPO = Path(__file__).resolve().parents[1]
NUAA = Path(os.environ.get("IRSTD_NUAA", REPO.parent / "shared" / "datasets" / "NUAA-SIRST"))

#: Published NUAA-SIRST rows, (IoU %, Pd %, Fa x1e-6): paper 001 Table III (IPI, PSTNN, TLLCM,
#: WSLCM, MSLSTIPT) and the BasicIRSTD README (the others).
PUBLISHED = {
    "ipi": (25.67, 85.55, 11.47),
    "pstnn": (22.40, 77.95, 29.11),
    "tllcm": (11.03, 79.47, 7.27),
    "wslcm": (1.16, 77.95, 5446.0),
    "mslstipt": (10.30, 82.13, 1131.0),
    "tophat": (7.14, 79.84, 1012.0),
    "max_median": (1.17, 30.20, 55.3),
    "mspcm": (12.84, 83.27, 17.8),
    "nram": (12.16, 74.52, 13.9),
    "ript": (11.05, 79.08, 22.6),
}


def _cpu_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def _nuaa_scores(root: Path, methods: list[str], k: float) -> dict:
    from irstd.data import IRSTDDataset
    from irstd.metrics import SegmentationMetrics

    dataset = IRSTDDataset(root, split="test")
    out = {}
    for name in methods:
        metrics = {rule: SegmentationMetrics() for rule in ("minmax", "adaptive")}
        cpu = 0.0
        for i in range(len(dataset)):
            image, mask = dataset.load_arrays(i)
            t0 = time.process_time()
            s = saliency(name, image)
            cpu += time.process_time() - t0
            for rule, m in metrics.items():
                m.update(saliency_to_probability(s, rule, k), mask)
        out[name] = {rule: m.compute() for rule, m in metrics.items()}
        out[name]["cpu_s"] = cpu / len(dataset)
        out[name]["n"] = len(dataset)
        print(f"  scored {name} on {len(dataset)} images ({cpu / len(dataset):.3f} s/image)", file=sys.stderr)
    return out


def _fmt(m: dict) -> str:
    return f"{100 * m['IoU']:.2f} / {100 * m['nIoU']:.2f} / {100 * m['Pd']:.2f} / {1e6 * m['Fa']:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(list_methods()), help="comma-separated names")
    parser.add_argument("--dataset", default=str(NUAA), help="NUAA-SIRST folder")
    parser.add_argument("--no-nuaa", action="store_true", help="timings only")
    parser.add_argument("--k", type=float, default=DEFAULT_K, help="k of the adaptive rule")
    args = parser.parse_args(argv)
    methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]

    cv2.setNumThreads(1)
    frames = {
        "256x256": generate_frame(frame_rng(0, 0), (256, 256), 8)[0],
        "640x512": generate_frame(frame_rng(0, 1), (512, 640), 8)[0],
    }
    scores = None
    with threadpool_limits(1):
        times = {}
        for name in methods:
            times[name] = {size: _cpu_seconds(lambda f=f: saliency(name, f), args.repeats) for size, f in frames.items()}
            print(f"  timed {name}: " + ", ".join(f"{s} {t:.3f} s" for s, t in times[name].items()), file=sys.stderr)
        root = Path(args.dataset)
        if not args.no_nuaa:
            if (root / "images").is_dir():
                scores = _nuaa_scores(root, methods, args.k)
            else:
                print(f"NUAA-SIRST not found at {root}: timings only", file=sys.stderr)

    print(f"CPU seconds per frame, one thread, median of {args.repeats}; numpy {np.__version__}, OpenCV {cv2.__version__}")
    if scores:
        print(f"NUAA-SIRST test ({next(iter(scores.values()))['n']} images, original size): IoU / nIoU / Pd in %, Fa x1e-6; "
              f"published: IoU / Pd / Fa\n")
        print("| method | s / 256x256 | s / 640x512 | s / NUAA image | minmax > 0.5: IoU / nIoU / Pd / Fa | "
              f"mean + {args.k:g} std: IoU / nIoU / Pd / Fa | published IoU / Pd / Fa | <= 1 s |")
        print("|---|---:|---:|---:|---|---|---|---|")
    else:
        print()
        print("| method | s / 256x256 | s / 640x512 | <= 1 s |")
        print("|---|---:|---:|---|")
    slow = []
    for name in methods:
        t256, t640 = times[name]["256x256"], times[name]["640x512"]
        ok = t256 <= LIMIT_S
        if not ok:
            slow.append(name)
        cells = [name, f"{t256:.3f}", f"{t640:.3f}"]
        if scores:
            sc = scores[name]
            pub = PUBLISHED.get(name)
            cells += [f"{sc['cpu_s']:.3f}", _fmt(sc["minmax"]), _fmt(sc["adaptive"]),
                      f"{pub[0]:.2f} / {pub[1]:.2f} / {pub[2]:g}" if pub else "-"]
        cells.append("yes" if ok else "**no**")
        print("| " + " | ".join(cells) + " |")
    if slow:
        print(f"\nover {LIMIT_S:g} s per 256x256 frame: {', '.join(slow)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
