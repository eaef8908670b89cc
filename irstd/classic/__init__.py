"""Classic (non-learning) infrared small target detectors.

Every method is a pure function ``saliency = method(image, **params)`` from a frame (path or
array of any bit depth) to a ``float32`` saliency map of the frame's size, registered in
:data:`CLASSIC` with its paper, family and parameter values; one rule turns saliency into a mask
(:func:`saliency_to_probability`, module :mod:`irstd.classic.base`).

Families, one module each:

* :mod:`irstd.classic.filters` -- ``tophat``, ``max_median`` (background filters);
* :mod:`irstd.classic.contrast` -- ``mspcm``, ``tllcm``, ``wslcm`` (local contrast);
* :mod:`irstd.classic.patch_image` -- ``ipi``, ``nram`` (low-rank patch image);
* :mod:`irstd.classic.patch_tensor` -- ``pstnn``, ``ript``, ``mslstipt`` (low-rank patch tensor).

:class:`irstd.engine.classic.ClassicDetector` wraps a method in the interface of
:class:`irstd.engine.predictor.Detector`, so ``irstd predict --method NAME`` and
``irstd test --method NAME`` write masks and score them exactly as for a network.

Example::

    from irstd.classic import saliency, saliency_to_mask
    mask = saliency_to_mask(saliency("ipi", "frame.png"))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from irstd.classic.base import (
    CLASSIC,
    DEFAULT_K,
    MIN_SIDE,
    RULES,
    prepare,
    saliency_to_mask,
    saliency_to_probability,
)

__all__ = [
    "CLASSIC",
    "DEFAULT_K",
    "MIN_SIDE",
    "RULES",
    "list_methods",
    "method_info",
    "get_method",
    "saliency",
    "prepare",
    "saliency_to_mask",
    "saliency_to_probability",
]


def list_methods() -> list[str]:
    """Names of the registered classic methods, sorted."""
    return CLASSIC.names()


def method_info(name: str) -> dict:
    """Facts of a method: ``reference``, ``family``, ``params``, ``published_runtime_s``."""
    return CLASSIC.info(name)


def get_method(name: str):
    """The saliency function registered as ``name`` (unknown names raise ``IRSTDError``)."""
    return CLASSIC.get(name)


def saliency(name: str, image: Any, **params) -> np.ndarray:
    """``float32 H x W`` saliency of ``image`` (path or array) by method ``name``."""
    return CLASSIC.get(name)(image, **params)
