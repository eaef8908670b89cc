"""Frames per second and peak memory of the shipped default detector, as ``irstd predict`` runs it.

What is timed is :meth:`irstd.engine.predictor.Detector.predict` on one frame: normalisation,
tiling (frames with a side above ``--tile`` are cut into overlapping windows, as ``irstd predict
--tile`` does), the network, the blend of the windows, the threshold and the target list. Reading
and writing files is left out (it depends on the disk, not on irstd). Two backends run in one
process, alternating per repeat after a warm-up of each, so a change of machine load hits both:
eager torch (``irstd predict``'s default) and ONNX Runtime (``irstd predict --weights
model.onnx``, the file written by ``irstd export``'s code path).

Frames are synthetic, one per size: a seeded smooth random 8-bit background plus noise (the
detector's cost does not depend on the content, so no dataset is needed).

Peak memory: for each backend a fresh child process loads the detector and predicts one 1920x1080
frame; the table gives the child's peak resident set size (``ru_maxrss``: the whole process, the
Python interpreter and torch included, which is what a user's machine has to hold).

Usage: python benchmarks/bench_predict.py [--threads 2] [--repeats 5] [--tile 512]
Prints markdown; exit status 1 when neither backend reaches 5 frames/s at 640x512 or the backend
``irstd predict`` uses by default (eager) peaks above 2 GB at 1920x1080 (issue 12's targets).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = [(256, 256), (512, 640), (1024, 1280), (1080, 1920)]  # H x W
TARGET_FPS = 5.0  # at 640x512
TARGET_PEAK_GB = 2.0  # at 1920x1080


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.random((max(h // 32, 2), max(w // 32, 2)), dtype=np.float32)
    background = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    img = 60 + 120 * background + rng.normal(0, 4, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def detectors(onnx_path: Path, threads: int, tile: int):
    import torch

    from irstd.engine.onnx_backend import export_onnx
    from irstd.engine.predictor import load_default_detector, load_detector

    torch.set_num_threads(threads)
    eager = load_default_detector(device="cpu", tile=tile)
    if not onnx_path.exists():
        spec = eager.model.irstd_spec
        export_onnx(eager.model, onnx_path, metadata={"model": spec["model"], "kwargs": spec["kwargs"],
                                                      "threshold": eager.threshold})
    ort = load_detector(weights=onnx_path, device="cpu", tile=tile)  # its session reads torch's thread count
    return eager, ort


def peak_child(backend: str, onnx_path: Path, threads: int, tile: int) -> float:
    """Peak RSS (GB) of a fresh process predicting one 1920x1080 frame with ``backend``."""
    code = (
        "import json, resource, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import bench_predict as b\n"
        f"eager, ort = b.detectors(b.Path({str(onnx_path)!r}), {threads}, {tile})\n"
        f"det = {'eager' if backend == 'eager' else 'ort'}\n"
        "det.predict(b.frame(1080, 1920))\n"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) / 2**20  # KiB -> GiB


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tile", type=int, default=512, help="Detector tile side, as irstd predict --tile (default 512)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    args = p.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "default.onnx"
        eager, ort = detectors(onnx_path, args.threads, args.tile)
        rows = []
        for h, w in SIZES:
            print(f"... {w}x{h}", file=sys.stderr, flush=True)
            x = frame(h, w)
            eager.predict(x), ort.predict(x)
            te, to = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                eager.predict(x)
                t1 = time.perf_counter()
                ort.predict(x)
                te.append(t1 - t0)
                to.append(time.perf_counter() - t1)
            rows.append(((h, w), statistics.median(te), statistics.median(to), eager.tile))
        peaks = {} if args.no_memory else {b: peak_child(b, onnx_path, args.threads, args.tile)
                                           for b in ("eager", "ort")}
    print(f"default detector ({eager.model.irstd_spec['model']}), torch {torch.__version__}, {args.threads} threads, "
          f"tile {eager.tile}, median of {args.repeats} alternating runs; Detector.predict per frame\n")
    print("| frame (W x H) | windows | eager ms | eager frames/s | ORT ms | ORT frames/s |")
    print("|---|---:|---:|---:|---:|---:|")
    from irstd.engine.predictor import tile_starts

    fps_640 = 0.0
    for (h, w), te, to, tile in rows:
        n = 1 if (h <= tile and w <= tile) else len(tile_starts(h, min(tile, h), eager.overlap)) * len(
            tile_starts(w, min(tile, w), eager.overlap))
        print(f"| {w} x {h} | {n} | {1e3 * te:.0f} | {1 / te:.2f} | {1e3 * to:.0f} | {1 / to:.2f} |")
        if (h, w) == (512, 640):
            fps_640 = max(1 / te, 1 / to)
    ok = fps_640 >= TARGET_FPS
    print(f"\n>= {TARGET_FPS:g} frames/s at 640x512 (either backend): {'met' if ok else 'NOT met'} ({fps_640:.2f})")
    if peaks:
        print(f"peak resident memory at 1920x1080 (fresh process, torch included): eager {peaks['eager']:.2f} GB, "
              f"ORT {peaks['ort']:.2f} GB; eager <= {TARGET_PEAK_GB:g} GB: "
              f"{'met' if peaks['eager'] <= TARGET_PEAK_GB else 'NOT met'}")
        ok = ok and peaks["eager"] <= TARGET_PEAK_GB
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
