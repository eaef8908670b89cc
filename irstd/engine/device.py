"""Which device to run on: the one rule shared by training, evaluation and prediction."""

from __future__ import annotations

import torch

from irstd.errors import IRSTDError

__all__ = ["resolve_device"]


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA (``cuda:local_rank``), then Apple MPS, then CPU; explicit names are checked."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise IRSTDError(f"unknown device {spec!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise IRSTDError(f"device {spec!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise IRSTDError(f"device {spec!r} requested but MPS is not available")
    return device
