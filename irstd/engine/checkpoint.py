"""Checkpoints: weights in safetensors, training state beside them, crash-safe writes.

Run directory layout written by the trainer::

    <run>/last/model.safetensors   weights after the last completed epoch (or checkpoint interval)
    <run>/last/state.pt            optimiser, scheduler, AMP scaler, epoch/step, RNG states,
                                   best metric, strategy state (tensors and plain Python values only)
    <run>/last/info.json           human-readable summary (epoch, step, ...)
    <run>/best/model.safetensors   weights with the best validation metric
    <run>/best/info.json           epoch, step, validation metrics

Safety
------
* Nothing is ever unpickled: ``state.pt`` is written with ``torch.save`` and read with
  ``torch.load(weights_only=True)`` (tensors, dicts, lists, tuples, numbers, strings only); foreign
  ``.pth`` files are read the same way, and a file holding other objects is refused.
* A checkpoint directory is written whole into ``.<name>.tmp/`` (each file fsynced, a ``COMPLETE``
  marker last), then swapped in by renames (``<name>`` -> ``.<name>.old``, ``.<name>.tmp`` ->
  ``<name>``). :func:`checkpoint_dir` repairs an interrupted swap, so after a crash at any moment
  the directory holds one consistent weights/state pair.
* The weights file's metadata (``irstd`` key, JSON) records the model name, kwargs and input
  channels, so ``irstd test --weights x.safetensors`` needs no ``--model``.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from irstd.data.io import atomic_write_bytes
from irstd.errors import IRSTDError

__all__ = [
    "unwrap",
    "weights_bytes",
    "save_weights",
    "read_state_dict",
    "read_weights_metadata",
    "load_weights",
    "state_bytes",
    "read_state",
    "write_checkpoint_dir",
    "checkpoint_dir",
]

_WEIGHT_SUFFIXES = (".pth", ".pt", ".pkl", ".ckpt", ".tar", ".bin")
# Keys under which public training scripts nest the model's state dict.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "params", "weights")


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def weights_bytes(model_or_state: nn.Module | Mapping[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    """Serialise a model's ``state_dict`` (or a state dict) to safetensors bytes.

    ``metadata`` (JSON-serialisable) is stored under the ``irstd`` key of the file header.
    Tensors are copied to CPU and made contiguous (safetensors refuses shared storage).
    """
    from safetensors.torch import save

    state = unwrap(model_or_state).state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    meta = {"format": "pt"}
    if metadata is not None:
        meta["irstd"] = json.dumps(metadata, sort_keys=True)
    return save(tensors, metadata=meta)


def save_weights(model_or_state, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write weights as safetensors, atomically (see :func:`weights_bytes`)."""
    atomic_write_bytes(path, weights_bytes(model_or_state, metadata))


def read_weights_metadata(path: str | os.PathLike) -> dict:
    """The ``irstd`` metadata of a safetensors file written by irstd ({} for other files)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise IRSTDError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        return json.loads(meta.get("irstd", "{}"))
    except json.JSONDecodeError:
        return {}


def _find_tensor_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        for key in _NESTED_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return _find_tensor_dict(obj[key], path)
        if obj:
            tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors and len(tensors) >= 0.5 * len(obj):
                return tensors
    raise IRSTDError(
        f"{path}: no state dict found (expected a mapping of parameter names to tensors, "
        f"possibly under one of the keys {', '.join(_NESTED_KEYS)})"
    )


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read weights from ``.safetensors`` or a PyTorch ``.pth``/``.pt``/``.ckpt``/``.tar`` file.

    PyTorch files are loaded with ``weights_only=True``; a state dict nested under a common key
    (``state_dict``, ``model``, ``net``, ...) is found; a ``module.`` prefix on every key
    (DataParallel) is removed.

    Returns:
        ``(state_dict on CPU, irstd metadata or {})``.

    Raises:
        IRSTDError: missing file, unreadable or truncated file, file containing pickled objects
            other than tensors and plain containers, no state dict inside.
    """
    path = Path(path)
    if not path.exists():
        raise IRSTDError(f"{path}: weights file not found")
    if path.is_dir():
        raise IRSTDError(f"{path}: is a directory, expected a weights file (.safetensors or .pth)")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load

        try:
            state = load(path.read_bytes())
        except Exception as exc:
            raise IRSTDError(f"{path}: not a readable safetensors file ({exc})") from None
        meta = read_weights_metadata(path)
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            text = str(exc)
            if "global" not in text.lower():  # garbage rather than a forbidden object
                raise IRSTDError(f"{path}: not a readable PyTorch weights file (corrupt or not a checkpoint)") from None
            culprit = next((ln.strip() for ln in text.splitlines() if "global" in ln.lower()), "")
            raise IRSTDError(
                f"{path}: refused to load: the file holds pickled Python objects other than tensors "
                f"(irstd only loads weights with weights_only=True; save model.state_dict() or use "
                f"safetensors) [{culprit[:200]}]"
            ) from None
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise IRSTDError(f"{path}: not a readable PyTorch weights file ({first})") from None
        state = _find_tensor_dict(obj, path)
        meta = {}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, meta


def _short(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    strict: bool = True,
    what: str | None = None,
) -> dict:
    """Load weights from a file (see :func:`read_state_dict`) or a state dict into ``model``.

    Args:
        model: the (possibly DDP-wrapped) network.
        source: path or state dict.
        strict: every key must match with equal shapes (otherwise only matching keys load).
        what: name used in error messages (default: the path).

    Returns:
        The file's irstd metadata ({} for foreign files and dicts).

    Raises:
        IRSTDError: listing missing keys, unexpected keys and shape mismatches.
    """
    if isinstance(source, Mapping):
        state, meta, label = dict(source), {}, what or "<state dict>"
    else:
        state, meta = read_state_dict(source)
        label = what or str(source)
    target = unwrap(model)
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [
        f"{k} (file {list(state[k].shape)} vs model {list(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if mismatched or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_short(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_short(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): {_short(mismatched, 3)}")
        name = type(target).__name__
        raise IRSTDError(f"{label}: weights do not fit the model {name}: " + "; ".join(parts))
    target.load_state_dict({k: v for k, v in state.items() if k in own}, strict=strict)
    return meta


def state_bytes(state: dict) -> bytes:
    """Serialise a training-state dict (tensors and plain values only) with ``torch.save``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def read_state(path: str | os.PathLike) -> dict:
    """Read a training-state file with ``torch.load(weights_only=True)``."""
    path = Path(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise IRSTDError(f"{path}: training state file not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IRSTDError(f"{path}: unreadable training state ({first})") from None


_MARKER = "COMPLETE"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_checkpoint_dir(run_dir: str | os.PathLike, name: str, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (file name -> bytes) as the directory ``run_dir/name``, crash-safely.

    See the module docstring for the protocol. Returns the final directory.
    """
    run_dir = Path(run_dir)
    final, tmp, old = run_dir / name, run_dir / f".{name}.tmp", run_dir / f".{name}.old"
    checkpoint_dir(run_dir, name)  # finish any interrupted swap first
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for fname, data in files.items():
        atomic_write_bytes(tmp / fname, data)
    atomic_write_bytes(tmp / _MARKER, b"")
    _fsync_dir(tmp)
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(run_dir)
    if old.exists():
        shutil.rmtree(old)
    return final


def checkpoint_dir(run_dir: str | os.PathLike, name: str) -> Path | None:
    """The complete checkpoint directory ``run_dir/name``, repairing an interrupted swap; None if absent."""
    run_dir = Path(run_dir)
    final, tmp, old = run_dir / name, run_dir / f".{name}.tmp", run_dir / f".{name}.old"
    if final.is_dir():
        if old.exists():  # left by a crash after the swap: stale
            shutil.rmtree(old, ignore_errors=True)
        return final
    if (tmp / _MARKER).exists():
        os.rename(tmp, final)
    elif old.is_dir():
        os.rename(old, final)
    else:
        return None
    _fsync_dir(run_dir)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return final
