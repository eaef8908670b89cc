"""What every classic detector shares: the registry, input preparation, the saliency-to-mask rule.

Input
-----
:func:`prepare` turns a frame into the array every method works on:

* a path is read by :func:`irstd.data.io.read_image` (the package's one image reader), an array is
  taken as it is (any real dtype: ``uint8``, ``uint16``, ``int32``, ``float``);
* the frame must be 2-D, at least :data:`MIN_SIDE` pixels on each side, and finite; otherwise an
  :class:`~irstd.errors.IRSTDError` says what is wrong;
* values are min-max scaled to ``[0, 255]`` in ``float64``. The published parameters (step sizes,
  floors such as WSLCM's ``xi = 5``, PSTNN's ``mu = 2e-3``) were tuned on 8-bit frames read as
  ``double`` in MATLAB, so the frame is put on that scale; scaling by the frame's own range rather
  than by its dtype also makes an 8-bit frame and its 16-bit copy (``x * 257``) or a 14-bit frame
  in a 16-bit container give the same saliency, and a constant frame gives zeros.

Output
------
Every method returns a ``float32`` saliency map of the frame's size, ``>= 0``, larger where a
target is more likely; its scale is the method's own.

Saliency to mask (one rule for every method)
--------------------------------------------
:func:`saliency_to_probability` maps a saliency map to scores in ``[0, 1]`` whose ``> 0.5`` is the
mask, so that classic methods go through the same threshold, writer and metrics as networks:

* ``rule="minmax"`` (default, the BasicIRSTD toolbox convention): ``(s - min) / (max - min)``,
  mask ``> 0.5``. Every frame with any contrast gets a detection at its maximum.
* ``rule="adaptive"``: mask ``s > mean(s) + k * std(s)`` (``k = 3`` by default); the score is
  piecewise linear in ``s`` with the threshold mapped to 0.5 (``[min, t] -> [0, 0.5]``,
  ``[t, max] -> [0.5, 1]``), so it orders pixels exactly as ``s`` does.

A constant saliency map (constant frame) gives all-zero scores and an empty mask under both rules.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import numpy as np

from irstd.errors import IRSTDError
from irstd.registry import Registry

__all__ = [
    "CLASSIC",
    "MIN_SIDE",
    "RULES",
    "prepare",
    "finish",
    "saliency_to_probability",
    "saliency_to_mask",
]

CLASSIC = Registry(
    "classic method",
    modules=("irstd.classic.filters", "irstd.classic.contrast", "irstd.classic.patch_image", "irstd.classic.patch_tensor"),
)

#: Smallest accepted frame side, pixels. Below it no method has a neighbourhood to compare with.
MIN_SIDE = 4

RULES = ("minmax", "adaptive")

#: ``k`` of the adaptive rule ``mean + k * std``.
DEFAULT_K = 3.0


def prepare(image: Any) -> np.ndarray:
    """A frame (path or array) as ``float64`` ``H x W`` min-max scaled to ``[0, 255]``.

    Raises:
        IRSTDError: unreadable file, not 2-D, a side below :data:`MIN_SIDE`, non-numeric or
            non-finite values.
    """
    if isinstance(image, (str, os.PathLike)):
        from irstd.data.io import read_image

        image = read_image(image)
    x = np.asarray(image)
    if x.size == 0:
        raise IRSTDError(f"classic detector: the image is empty (shape {x.shape})")
    if x.ndim != 2:
        raise IRSTDError(f"classic detector: expected a 2-D grey image, got shape {x.shape}")
    if min(x.shape) < MIN_SIDE:
        raise IRSTDError(
            f"classic detector: image of {x.shape[1]}x{x.shape[0]} pixels (WxH) is too small; "
            f"each side needs at least {MIN_SIDE} pixels"
        )
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise IRSTDError(f"classic detector: expected a numeric image, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise IRSTDError("classic detector: the image contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.float64)
    return (x - lo) * (255.0 / (hi - lo))


def finish(saliency: np.ndarray) -> np.ndarray:
    """A method's raw map as the documented output: ``float32``, finite, ``>= 0``."""
    s = np.nan_to_num(np.asarray(saliency, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.maximum(s, 0.0).astype(np.float32)


def saliency_to_probability(saliency: np.ndarray, rule: str = "minmax", k: float = DEFAULT_K) -> np.ndarray:
    """Scores in ``[0, 1]`` (``float32``) of a saliency map; ``> 0.5`` is the mask of ``rule``.

    Args:
        saliency: ``H x W`` map of any real dtype (larger = more target-like).
        rule: ``"minmax"`` or ``"adaptive"`` (module docstring).
        k: the adaptive rule's number of standard deviations above the mean (``>= 0``).
    """
    if rule not in RULES:
        raise IRSTDError(f"unknown saliency-to-mask rule {rule!r}; choose one of {', '.join(RULES)}")
    s = np.asarray(saliency, dtype=np.float64)
    if s.size == 0:
        return np.zeros(s.shape, dtype=np.float32)
    lo, hi = float(s.min()), float(s.max())
    if not hi > lo:
        return np.zeros(s.shape, dtype=np.float32)
    if rule == "minmax":
        return ((s - lo) / (hi - lo)).astype(np.float32)
    if not float(k) >= 0:
        raise IRSTDError(f"adaptive rule: k must be >= 0, got {k}")
    t = float(s.mean() + float(k) * s.std())
    t = min(max(t, lo), hi)
    out = np.empty_like(s)
    low = s <= t
    out[low] = 0.5 * (s[low] - lo) / (t - lo) if t > lo else 0.0
    out[~low] = 0.5 + 0.5 * (s[~low] - t) / (hi - t)
    # t == hi: nothing lies above the threshold, the mask is empty, scores stay <= 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def saliency_to_mask(saliency: np.ndarray, rule: str = "minmax", k: float = DEFAULT_K) -> np.ndarray:
    """The ``bool`` mask of ``rule`` (``saliency_to_probability(...) > 0.5``)."""
    return saliency_to_probability(saliency, rule, k) > 0.5


_CONTROLLER = None


def _blas_controller():
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def method(name: str, *, reference: str, family: str, params: dict, published_runtime_s: float | None = None) -> Callable:
    """Decorator registering a classic method in :data:`CLASSIC` with its facts.

    The registered function runs with BLAS limited to one thread: the solvers chain many
    products of thin matrices, where OpenBLAS threads cost more than they give, and on a busy
    machine their spin-waiting multiplied the CPU time of IPI by 7-15 (0.8 s -> 6-12 s per NUAA
    frame). Callers parallelise over frames instead.
    """

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _blas_controller().limit(limits=1, user_api="blas"):
                return fn(*args, **kwargs)

        return CLASSIC.register(
            name, reference=reference, family=family, params=dict(params), published_runtime_s=published_runtime_s
        )(wrapper)

    return deco
