"""``irstd export``: write a trained detector as one ONNX file for deployment."""

from __future__ import annotations

import argparse

from irstd.commands.common import add_model_source

DESCRIPTION = """\
Export a detector to ONNX for deployment (ONNX Runtime, TensorRT, OpenVINO, ...). Without
--run/--model/--weights the detector shipped with irstd is exported.

The file holds the network in its inference form (BatchNorm folded into the convolutions) with
its weights inside (no .onnx.data file): input "image" N x C x H x W float32, output "logits"
N x 1 x H x W, batch, height and width dynamic; H and W must be multiples of the network's stride.
Exporter: torch.onnx.export, TorchScript-based (dynamo=False), opset 17 by default. The file's
metadata (metadata_props, keys irstd.*) records the model name and kwargs, input channels,
stride, threshold, tile, overlap and the normalisation, so that

  irstd predict FRAMES --weights model.onnx --out DIR

runs it through ONNX Runtime with exactly the pre- and post-processing of the eager detector:
per-image (x - mean) / std of the native values, zero padding to the stride and cropping back,
tiles for large frames, sigmoid, threshold. Before writing, the export is run in ONNX Runtime at
another batch and size than the traced one and compared with the eager network; the maximum
absolute logit difference is printed.

Needs the optional packages: pip install "irstd[onnx]" (from a checkout: pip install -e ".[onnx]").

Examples:
  irstd export --out irstd-default.onnx
  irstd export --run runs/nuaa_acm-20250101-120000 --out acm.onnx
  irstd export --model acm --weights acm.safetensors --out acm.onnx
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from irstd.engine.onnx_backend import OPSET

    p = subparsers.add_parser(
        "export",
        help="export a detector to one ONNX file (default: the shipped detector)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_source(p, "model (default: the shipped detector)")
    p.add_argument("--out", default="model.onnx", metavar="FILE", help="ONNX file to write (default: model.onnx)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--threshold", type=float, default=None, help="threshold recorded in the file (default: the model's)")
    return p


def run(args) -> int:
    from pathlib import Path

    from irstd.commands.common import model_kwargs
    from irstd.engine.onnx_backend import export_onnx, is_onnx_file, require_onnx, require_onnxruntime
    from irstd.engine.predictor import load_detector
    from irstd.errors import IRSTDError

    require_onnx()
    require_onnxruntime()
    out = Path(args.out)
    if not is_onnx_file(out):
        raise IRSTDError(f"--out {out}: the file name must end in .onnx")
    if out.is_dir():
        raise IRSTDError(f"--out {out}: is a folder, expected a file name ending in .onnx")
    if args.weights is not None and is_onnx_file(args.weights):
        raise IRSTDError(f"--weights {args.weights}: is already an ONNX file")
    detector = load_detector(
        model=args.model,
        weights=args.weights,
        run=args.run,
        model_kwargs=model_kwargs(args),
        threshold=args.threshold,
        checkpoint=args.checkpoint,
        device="cpu",
    )
    if getattr(detector.model, "can_sample", False):
        # a trace would freeze one sampler, step count and starting noise into the graph
        raise IRSTDError(
            f"{detector.name}: a diffusion model samples its mask in a loop of denoiser passes driven by a "
            "diffusers scheduler, which irstd export does not write to ONNX; run it with irstd predict"
        )
    spec = getattr(detector.model, "irstd_spec", None) or {"model": type(detector.model).__name__.lower(), "kwargs": {}}
    metadata = {
        "model": spec["model"],
        "kwargs": spec.get("kwargs", {}),
        "threshold": detector.threshold,
        "tile": detector.tile,
        "overlap": detector.overlap,
        "normalization": "per image, (x - mean) / max(std, 1e-6) of the native values (irstd.data.normalize_image); "
        "grey repeated to in_chans",
        "source": detector.name,
    }
    result = export_onnx(detector.model, out, metadata=metadata, in_chans=detector.in_chans, opset=args.opset)
    n, c, h, w = result["check_shape"]
    print(
        f"wrote {out} ({result['bytes'] / 1e6:.1f} MB, opset {result['opset']}): {detector.name}, stride "
        f"{detector.model.stride}, threshold {detector.threshold:g}; ONNX Runtime vs eager at {n}x{c}x{h}x{w}: "
        f"max |logit difference| {result['max_abs_diff']:.2e}"
    )
    return 0
