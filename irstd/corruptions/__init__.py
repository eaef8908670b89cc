"""Image corruptions for robustness benchmarks and corruption-based training.

Fifteen corruptions in two forms that share one definition:

* numpy (:func:`apply`, and :mod:`irstd.corruptions.functional` with explicit parameters) for
  ``uint8``, ``uint16`` (incl. 14-bit data in 16-bit containers), ``int32`` and float grey images:
  same shape and dtype out, values clipped to the image's full scale
  (see :mod:`irstd.corruptions.functional` for how the full scale is inferred);
* torch (:func:`apply_torch`, :func:`apply_batch`, :class:`CorruptionOp`, in
  :mod:`irstd.corruptions.torch_ops`) for ``B x C x H x W`` float batches in [0, 1] on any
  device, with a per-sample choice of corruption for training.

Usage::

    from irstd.corruptions import apply, list_corruptions, functional as CF
    noisy = apply(image, "gaussian_noise", severity=2, seed=0)        # paper 002 scale 1..3
    noisy = apply(image, "gaussian_noise", severity=4, seed=0, levels=5)  # ImageNet-C 1..5
    blurred = CF.motion_blur(image, length=5, angle=45)               # Dynamic-ISTD training

Severities
----------
``levels=3`` (default, paper 002's grading): severities 1, 2, 3 are ImageNet-C levels 1, 3, 5.
``levels=5``: the ImageNet-C levels themselves. Intensities are fractions of full scale.

{severity_table}

Seeds: the same ``seed`` gives the same output; :func:`derive_seed` makes per-image seeds from a
dataset seed and an image id, so results do not depend on processing order. Motion blur draws its
angle uniformly in [-45, 45] degrees from the seed (ImageNet-C); the functional form takes an
explicit angle.
"""

from __future__ import annotations

import hashlib

from typing import TYPE_CHECKING

from irstd.corruptions.severity import (
    LEVEL_SCALES,
    PAPER_002_CORRUPTIONS,
    PAPER_002_GROUPS,
    PAPER_002_TABLE2,
    SEVERITY_TABLE,
    THREE_LEVELS,
    CorruptionSpec,
    check_corruption,
    check_severity,
    corruption_actions,
    imagenet_level,
    list_corruptions,
    severity_params,
    severity_table_markdown,
)

if TYPE_CHECKING:
    import numpy as np

if __doc__:  # None under python -OO
    __doc__ = __doc__.replace("{severity_table}", severity_table_markdown())

_TORCH_NAMES = ("apply_torch", "apply_batch", "CorruptionOp")

__all__ = [
    "apply",
    "derive_seed",
    "functional",
    "infer_full_scale",
    "list_corruptions",
    "severity_params",
    "severity_table_markdown",
    "corruption_actions",
    "check_corruption",
    "check_severity",
    "imagenet_level",
    "CorruptionSpec",
    "SEVERITY_TABLE",
    "THREE_LEVELS",
    "LEVEL_SCALES",
    "PAPER_002_CORRUPTIONS",
    "PAPER_002_TABLE2",
    "PAPER_002_GROUPS",
    *_TORCH_NAMES,
]


def apply(
    image: np.ndarray,
    name: str,
    severity: int,
    seed: int | np.random.Generator | None = None,
    *,
    levels: int = 3,
    full_scale: float | None = None,
) -> np.ndarray:
    """Corrupt one grey image.

    Args:
        image: ``H x W`` array, ``uint8``, ``uint16``, ``int32`` (0..65535) or float in
            [0, full_scale] (full scale 1.0 unless given). A colour image as OpenCV reads it
            (``H x W x 3`` BGR, ``x 4`` BGRA) is converted to grey first with the reader's luma
            rule (:mod:`irstd.data.io`), and the result is grey ``H x W``.
        name: one of :func:`list_corruptions`.
        severity: 1..``levels``.
        seed: int, :class:`numpy.random.Generator` or None (fresh entropy); deterministic
            corruptions ignore it.
        levels: 3 (paper 002's scale, default) or 5 (ImageNet-C's).
        full_scale: value meaning "maximum". Default: inferred from this one image
            (:func:`~irstd.corruptions.functional.infer_full_scale`; a dark 14-bit frame may be
            taken as 12-bit), which suits a single image. For images of a dataset pass the
            dataset's scale (:func:`irstd.data.dataset.dataset_full_scale`, or
            ``IRSTDDataset.full_scale``), as the training strategies, ``irstd robustness`` and
            ``irstd corrupt`` do, so that every image is corrupted relative to the same value.

    Returns:
        The corrupted image, same dtype, values in ``[0, full_scale]``; same shape (grey
        ``H x W`` for a colour input).

    Raises:
        IRSTDError: unknown name (the message lists the valid ones) or bad severity/levels.
        ValueError, TypeError: unsupported array (not 2-D, values out of range, dtype).
    """
    import numpy as np

    from irstd.corruptions import functional

    check_corruption(name)
    params = severity_params(name, severity, levels)
    rng = functional._rng(seed)
    op = functional.UNIT_OPS[name]
    image, shape = functional._grey_input(image)
    unit, scale = functional.to_unit(image, full_scale)
    return functional.from_unit(op(unit, rng, **params), image, scale).reshape(shape)


def derive_seed(seed: int, key: str) -> int:
    """A 63-bit seed from a base ``seed`` and a string ``key`` (e.g. an image id), stable across
    platforms and Python versions (BLAKE2b, not ``hash()``)."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def infer_full_scale(image: np.ndarray) -> float:
    """See :func:`irstd.corruptions.functional.infer_full_scale`."""
    from irstd.corruptions.functional import infer_full_scale as _infer

    return _infer(image)


_LAZY_MODULES = ("functional", "torch_ops", "dataset")


def __getattr__(name: str):
    # OpenCV and torch are imported on first use, so that reading the table (e.g. for
    # `irstd --help`) stays cheap and numpy-only users never import torch.
    import importlib

    if name in _TORCH_NAMES:
        return getattr(importlib.import_module("irstd.corruptions.torch_ops"), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"irstd.corruptions.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TORCH_NAMES) | set(_LAZY_MODULES))
