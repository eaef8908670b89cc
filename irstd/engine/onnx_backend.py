"""ONNX export of zoo networks and the ONNX Runtime backend of :class:`~irstd.engine.predictor.Detector`.

What the file holds
-------------------
The exported graph is the network alone, in its inference form (:func:`irstd.models.fuse_for_inference`:
BatchNorm folded into the convolutions): input ``image`` ``N x C x H x W`` float32, output
``logits`` ``N x 1 x H x W``, with batch, height and width dynamic. H and W must be multiples of
the network's stride, as for the eager network. Everything around it stays in Python and is shared
with the eager path: reading, per-image normalisation (:func:`irstd.data.normalize_image`), padding
to the stride with 0 and cropping back (:func:`irstd.engine.evaluator.forward_logits`), tiling of
large frames, the sigmoid, the threshold and the writers. That is why an exported detector gives the
eager detector's masks: only the convolutions run elsewhere.

The weights are stored inside the one ``.onnx`` file (no ``.onnx.data`` beside it; the format
allows that up to 2 GB, and the largest zoo network is about 200 MB). The file's ``metadata_props``
carry what the Detector needs to rebuild the same pipeline, each under an ``irstd.`` key with a JSON
value: ``model``, ``kwargs``, ``in_chans``, ``stride``, ``threshold``, ``tile``, ``overlap``,
``normalization``, ``padding``, ``output``, ``exporter``, ``opset``, ``irstd_version``, ``source``.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` at opset :data:`OPSET`
with ``dynamic_axes``. It needs only ``onnx``; the dynamo exporter (torch's default) would also
need ``onnxscript``. The TorchScript exporter silently bakes a Python ``int`` taken from a tensor
shape into the graph, so every export is checked by ONNX Runtime against the eager network at a
second size and batch before the file is written (:func:`export_onnx`).

Runtime: :class:`OnnxNetwork` is an ``nn.Module`` that forwards through an ONNX Runtime CPU session,
so the Detector, :func:`~irstd.engine.evaluator.evaluate` and the robustness benchmark take it
where they take a zoo network. Its intra-op thread count follows ``torch.get_num_threads()``, the
setting of the eager path (``--threads``), re-read at every call.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from irstd.errors import IRSTDError

__all__ = [
    "OPSET",
    "EXPORTER",
    "METADATA_PREFIX",
    "OnnxNetwork",
    "export_onnx",
    "read_onnx_metadata",
    "require_onnx",
    "require_onnxruntime",
    "is_onnx_file",
]

OPSET = 17
EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"
METADATA_PREFIX = "irstd."
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# ONNX keeps a model in one protobuf message only up to this size.
_PROTOBUF_LIMIT = 2**31 - 1

_INSTALL_HINT = 'pip install "irstd[onnx]" (from a checkout: pip install -e ".[onnx]")'


def require_onnx():
    """The ``onnx`` package, or an IRSTDError saying how to install the extra."""
    try:
        import onnx
    except ImportError:
        raise IRSTDError(f"ONNX export needs the 'onnx' and 'onnxruntime' packages: {_INSTALL_HINT}") from None
    return onnx


def require_onnxruntime():
    """The ``onnxruntime`` package, or an IRSTDError saying how to install the extra."""
    try:
        import onnxruntime
    except ImportError:
        raise IRSTDError(f"running an .onnx model needs the 'onnxruntime' package: {_INSTALL_HINT}") from None
    return onnxruntime


def is_onnx_file(path) -> bool:
    """Whether ``path`` names an ONNX file (by its extension; the file need not exist)."""
    return path is not None and Path(path).suffix.lower() == ".onnx"


def _session(model: str | bytes, threads: int):
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(int(threads), 1)
    # one network, nodes in sequence: parallelism is inside the operators, as in eager torch
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types (InvalidGraph, Fail, NoSuchFile, ...)
        where = model if isinstance(model, str) else "ONNX model"
        raise IRSTDError(f"{where}: ONNX Runtime cannot load it ({str(exc).strip().splitlines()[0][:300]})") from None


def _decode_metadata(raw: dict[str, str]) -> dict:
    out = {}
    for key, value in raw.items():
        if not key.startswith(METADATA_PREFIX):
            continue
        try:
            out[key[len(METADATA_PREFIX):]] = json.loads(value)
        except json.JSONDecodeError:
            out[key[len(METADATA_PREFIX):]] = value
    return out


class OnnxNetwork(nn.Module):
    """A network exported by :func:`export_onnx`, run by ONNX Runtime on the CPU.

    Follows the zoo interface: ``forward(x)`` takes a float ``N x C x H x W`` tensor (sides multiples
    of :attr:`stride`) and returns logits ``N x 1 x H x W`` as a CPU tensor; it has ``stride`` and
    ``deep_supervision`` attributes and no parameters. Deep copies share the session (the network
    is immutable), so :func:`~irstd.models.fuse_for_inference` and the evaluator accept it.

    Attributes:
        metadata: the file's ``irstd.*`` metadata (see the module docstring), keys without prefix.
        path: the file, or ``None`` when built from bytes.
    """

    backend = "onnxruntime"
    deep_supervision = False

    def __init__(self, model: str | os.PathLike | bytes):
        super().__init__()
        if isinstance(model, (bytes, bytearray)):
            self.path, self._source = None, bytes(model)
        else:
            self.path = Path(model)
            if not self.path.is_file():
                raise IRSTDError(f"{self.path}: ONNX file not found")
            self._source = str(self.path)
        self._sessions: dict[int, object] = {}
        session = self._get_session()
        self.metadata = _decode_metadata(session.get_modelmeta().custom_metadata_map or {})
        where = self.path or "ONNX model"
        if "model" not in self.metadata or "stride" not in self.metadata:
            raise IRSTDError(
                f"{where}: not an ONNX file written by irstd export (no irstd.model / irstd.stride metadata)"
            )
        self.stride = int(self.metadata["stride"])
        self.in_chans = int(self.metadata.get("in_chans", 1))
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise IRSTDError(f"{where}: expected one input, the file has {len(inputs)}")
        self._input = inputs[0].name

    def _get_session(self):
        # One session per thread count: ORT fixes its pool when the session is made, and the eager
        # path's setting (torch.set_num_threads, --threads) may change between calls.
        threads = torch.get_num_threads()
        session = self._sessions.get(threads)
        if session is None:
            session = self._sessions[threads] = _session(self._source, threads)
        return session

    @property
    def intra_op_threads(self) -> int:
        """The intra-op thread count the next call runs with (``torch.get_num_threads()``)."""
        return torch.get_num_threads()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # expand() of a grey batch to in_chans gives zero strides; ORT needs a dense buffer
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (logits,) = self._get_session().run([OUTPUT_NAME], {self._input: array})
        return torch.from_numpy(logits)

    def __deepcopy__(self, memo):
        return self

    def extra_repr(self) -> str:
        return f"{self.metadata.get('model')}, stride={self.stride}, file={self.path}"


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The ``irstd.*`` metadata of an ONNX file (keys without the prefix; values decoded from JSON).

    Reads only the header through ``onnx`` when installed, else through an ONNX Runtime session."""
    path = Path(path)
    if not path.is_file():
        raise IRSTDError(f"{path}: ONNX file not found")
    try:
        import onnx
    except ImportError:
        return dict(OnnxNetwork(path).metadata)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise IRSTDError(f"{path}: not a readable ONNX file ({str(exc).splitlines()[0][:200]})") from None
    return _decode_metadata({p.key: p.value for p in proto.metadata_props})


@contextlib.contextmanager
def _native_stdout_silenced():
    # torch's TorchScript exporter switches its C++ log on whatever the caller set (it tests the
    # function _jit_is_onnx_log_enabled, not its result) and, when a symbolic fails, writes the
    # whole IR graph, megabytes for a large network, to file descriptor 1. The IRSTDError says why.
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _trace_size(stride: int) -> tuple[int, int]:
    # Not square and not equal to the check size, so a frozen dimension shows up in the check.
    unit = max(int(stride), 8)
    return 2 * unit, 3 * unit


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    metadata: dict,
    in_chans: int = 1,
    opset: int = OPSET,
    check: bool = True,
) -> dict:
    """Write ``model`` (a zoo network; its inference form is exported) to the ONNX file ``out``.

    Args:
        model: network following the zoo interface; :func:`~irstd.models.fuse_for_inference` is
            applied (a no-op copy for an already fused one).
        out: the ``.onnx`` file, written atomically with the weights inside.
        metadata: stored under ``irstd.<key>`` as JSON (``model``, ``kwargs``, ``threshold``, ...);
            ``stride``, ``in_chans``, ``exporter``, ``opset``, ``padding``, ``output`` and
            ``irstd_version`` are added.
        in_chans: input channels of the network.
        opset: ONNX opset.
        check: run the file in ONNX Runtime against the eager network at another batch and size
            than the traced one and fail when the output shape or values differ.

    Returns:
        ``{"path", "bytes", "opset", "max_abs_diff" (None without check), "check_shape"}``.

    Raises:
        IRSTDError: the network uses an operator or construct the exporter cannot express, the
            exported graph does not follow a new input size, or the file would exceed 2 GB.
    """
    import io
    import warnings

    from irstd.data.io import atomic_write_bytes
    from irstd.models import fuse_for_inference

    onnx = require_onnx()
    out = Path(out)
    net = fuse_for_inference(model).cpu()
    stride = int(getattr(net, "stride", 1) or 1)
    name = metadata.get("model", type(net).__name__)
    h, w = _trace_size(stride)
    torch.manual_seed(0)
    sample = torch.randn(1, in_chans, h, w)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad(), _native_stdout_silenced():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (sample,),
                buf,
                dynamo=False,
                opset_version=int(opset),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                },
                do_constant_folding=True,
            )
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IRSTDError(f"{name}: cannot be exported to ONNX ({type(exc).__name__}: {reason[:300]})") from None
    proto = onnx.load_from_string(buf.getvalue())
    info = {
        **metadata,
        "stride": stride,
        "in_chans": int(in_chans),
        "exporter": f"{EXPORTER}, torch {torch.__version__}",
        "opset": int(opset),
        "padding": f"bottom/right with 0 to multiples of {stride}, output cropped back "
        "(irstd.engine.evaluator.forward_logits)",
        "output": "logits N x 1 x H x W; probability = sigmoid(logits)",
    }
    from irstd import __version__

    info.setdefault("irstd_version", __version__)
    del proto.metadata_props[:]
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, json.dumps(value, sort_keys=True)
    proto.producer_name = "irstd"
    if proto.ByteSize() > _PROTOBUF_LIMIT:
        raise IRSTDError(f"{name}: the ONNX model would exceed 2 GB, the limit of a single file")
    data = proto.SerializeToString()
    result = {"path": out, "bytes": len(data), "opset": int(opset), "max_abs_diff": None, "check_shape": None}
    if check:
        # Batch 2 and sides other than the traced ones: a size baked into the graph fails here.
        shape = (2, in_chans, h + stride, 2 * w - stride) if stride > 1 else (2, in_chans, h + 8, w + 8)
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = net(x)
        if isinstance(ref, (list, tuple)):
            ref = ref[0]
        try:
            got = OnnxNetwork(data)(x) if "model" in info else None
        except IRSTDError:
            raise
        except Exception as exc:
            raise IRSTDError(
                f"{name}: the exported graph does not run at size {shape[2]}x{shape[3]}, batch {shape[0]} "
                f"({str(exc).strip().splitlines()[0][:300]}); it was traced at {h}x{w}"
            ) from None
        if tuple(got.shape) != tuple(ref.shape):
            raise IRSTDError(
                f"{name}: the exported graph gives {tuple(got.shape)} for an input of {shape}, eager "
                f"{tuple(ref.shape)}: a size was frozen at export"
            )
        result["max_abs_diff"] = float((got - ref.float()).abs().max())
        result["check_shape"] = shape
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise IRSTDError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return result
