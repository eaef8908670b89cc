"""ONNX Runtime against eager torch for every zoo network, in one process, runs alternating.

For each network of ``irstd.models.list_models()`` (random weights, default kwargs; ``litenet`` is the
shipped default detector with its weights): the inference form (``fuse_for_inference``) is timed in
eager torch and, exported by ``irstd.engine.onnx_backend.export_onnx``, in ONNX Runtime, at 256x256
and 640x512 (W x H), batch 1, on ``--threads`` intra-op threads for both. Eager and ORT runs
alternate (one of each per repeat, after a warm-up of each), so a change of machine load hits both;
the table gives medians. ``max |dlogit|`` is the largest absolute logit difference over both sizes.
Networks that do not export are listed with the exporter's reason.

``--levers`` adds, for the default detector, the ORT latency at 640x512 under the settings one tries
when ORT is slow: graph optimisation level (basic / extended / all), BatchNorm left unfused in the
graph, opset 13 / 17 / 18.

Usage: python benchmarks/bench_export.py [--threads 2] [--repeats 7] [--models litenet acm] [--levers]
Prints markdown; exit status 1 when the default detector misses ORT <= 0.5x eager at either size or
a network that exports differs by more than 1e-4 in its logits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIZES = [(256, 256), (512, 640)]  # H x W
TARGET_RATIO = 0.5
TARGET_DIFF = 1e-4


def _first(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def _ort_session(data_or_path, threads, level="all"):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    return ort.InferenceSession(data_or_path, sess_options=opts, providers=["CPUExecutionProvider"])


def _time_pair(eager_fn, ort_fn, repeats):
    eager_fn(), ort_fn()  # warm-up: allocations, ORT's first-run planning
    te, to = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        eager_fn()
        t1 = time.perf_counter()
        ort_fn()
        t2 = time.perf_counter()
        te.append(t1 - t0)
        to.append(t2 - t1)
    return statistics.median(te), statistics.median(to)


def _network(name):
    from irstd.engine.predictor import load_default_detector
    from irstd.models import create, fuse_for_inference

    if name == "litenet":
        det = load_default_detector(device="cpu")
        return det.model, {"model": "litenet", "kwargs": det.model.irstd_spec["kwargs"], "threshold": det.threshold}
    torch.manual_seed(0)
    return fuse_for_inference(create(name)), {"model": name, "kwargs": {}}


def bench_model(name, folder: Path, threads: int, repeats: int) -> dict:
    from irstd.engine.onnx_backend import OnnxNetwork, export_onnx
    from irstd.errors import IRSTDError

    net, meta = _network(name)
    path = folder / f"{name}.onnx"
    t0 = time.perf_counter()
    try:
        info = export_onnx(net, path, metadata=meta)
    except IRSTDError as exc:
        return {"name": name, "error": str(exc)}
    row = {"name": name, "export_s": time.perf_counter() - t0, "mb": info["bytes"] / 1e6, "diff": 0.0}
    ort_net = OnnxNetwork(path)
    rng = np.random.default_rng(0)
    for h, w in SIZES:
        x = torch.from_numpy(rng.standard_normal((1, 1, h, w)).astype(np.float32))
        with torch.inference_mode():
            want = _first(net(x))
        got = ort_net(x)
        row["diff"] = max(row["diff"], float((got - want).abs().max()))

        def eager_fn():
            with torch.inference_mode():
                net(x)

        te, to = _time_pair(eager_fn, lambda: ort_net(x), repeats)
        row[(h, w)] = (te, to)
    return row


def levers(folder: Path, threads: int, repeats: int) -> list[tuple[str, float, float]]:
    from irstd.engine.onnx_backend import export_onnx
    from irstd.engine.predictor import load_default_detector

    det = load_default_detector(device="cpu")
    fused = det.model
    meta = {"model": "litenet"}
    x = torch.randn(1, 1, 512, 640)
    out = []

    def eager_fn():
        with torch.inference_mode():
            fused(x)

    variants = []
    for opset in (13, 17, 18):
        path = folder / f"lever_opset{opset}.onnx"
        try:
            export_onnx(fused, path, metadata=meta, opset=opset, check=False)
            variants.append((f"BN folded, opset {opset}, optimisation all", path, "all"))
        except Exception as exc:  # an opset the exporter refuses is a result too
            out.append((f"opset {opset}: not exported ({str(exc)[:80]})", float("nan"), float("nan")))
    path17 = folder / "lever_opset17.onnx"
    for level in ("basic", "extended"):
        variants.append((f"BN folded, opset 17, optimisation {level}", path17, level))
    # BatchNorm kept in the graph: export the eval-mode original by hand (export_onnx always folds)
    from irstd.engine.checkpoint import load_weights
    from irstd.engine.predictor import DEFAULT_WEIGHTS
    from irstd.models import create

    original = create("litenet", **det.model.irstd_spec["kwargs"]).eval()
    load_weights(original, DEFAULT_WEIGHTS)
    path_unfused = folder / "lever_unfused.onnx"
    with torch.no_grad():
        torch.onnx.export(original, (torch.randn(1, 1, 32, 48),), str(path_unfused), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, "logits": {0: "b", 2: "h", 3: "w"}})
    variants.append(("BN in the graph (ORT fuses it), opset 17, optimisation all", path_unfused, "all"))
    for label, path, level in variants:
        sess = _ort_session(str(path), threads, level)
        arr = x.numpy()
        te, to = _time_pair(eager_fn, lambda: sess.run(None, {"image": arr}), repeats)
        out.append((label, te, to))
    return out


def main(argv=None) -> int:
    from irstd.models import list_models

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--levers", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import onnxruntime

    names = args.models or list_models()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"... {name}", file=sys.stderr, flush=True)
            rows.append(bench_model(name, Path(tmp), args.threads, args.repeats))
        lever_rows = levers(Path(tmp), args.threads, args.repeats) if args.levers else []
    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads for both, "
        f"batch 1, median of {args.repeats} alternating runs; ms per forward pass\n"
    )
    head = "| network | .onnx MB | 256x256 eager | 256x256 ORT | ORT/eager | 640x512 eager | 640x512 ORT | ORT/eager | max abs dlogit |"
    print(head)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    failed_diff, ratio_ok = [], True
    for r in rows:
        if "error" in r:
            continue
        cells = [r["name"] + (" (default detector)" if r["name"] == "litenet" else ""), f"{r['mb']:.1f}"]
        for size in SIZES:
            te, to = r[size]
            cells += [f"{1e3 * te:.1f}", f"{1e3 * to:.1f}", f"{to / te:.2f}"]
            if r["name"] == "litenet" and to / te > TARGET_RATIO:
                ratio_ok = False
        cells.append(f"{r['diff']:.1e}")
        if r["diff"] > TARGET_DIFF:
            failed_diff.append(r["name"])
        print("| " + " | ".join(cells) + " |")
    errors = [r for r in rows if "error" in r]
    if errors:
        print("\nNot exported:\n")
        for r in errors:
            # the exporter's first sentence; the rest quotes the TorchScript IR
            reason = r["error"].split(" [Caused by")[0].split(" Please ")[0].split(". Please")[0]
            print(f"- {reason}")
    if lever_rows:
        print("\nLevers, default detector at 640x512:\n")
        print("| ORT setting | eager ms | ORT ms | ORT/eager |")
        print("|---|---:|---:|---:|")
        for label, te, to in lever_rows:
            print(f"| {label} | {1e3 * te:.1f} | {1e3 * to:.1f} | {to / te:.2f} |")
    if "litenet" in names:
        print(f"\ndefault detector ORT <= {TARGET_RATIO}x eager at both sizes: {'met' if ratio_ok else 'NOT met'}")
    print(f"max abs logit difference <= {TARGET_DIFF:g} for every exported network: "
          f"{'met' if not failed_diff else 'NOT met: ' + ', '.join(failed_diff)}")
    return 0 if ratio_ok and not failed_diff else 1


if __name__ == "__main__":
    raise SystemExit(main())
