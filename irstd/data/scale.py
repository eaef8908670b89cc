"""The bit-depth ladder of intensity full scales (numpy-free, so the corruptions can use it without
importing the dataset layer's torch).

A full scale is the value that means "maximum" for an image; corruptions act on intensities as
fractions of it. For integer data wider than 8 bits it is the smallest ``2**b - 1``, ``b`` in
:data:`BIT_DEPTHS`, that holds the data's largest value: 14-bit sensor counts in 16-bit files get
16383. :func:`irstd.data.dataset.dataset_full_scale` applies the ladder to a whole dataset's peak,
:func:`irstd.corruptions.functional.infer_full_scale` to a single image's.
"""

from __future__ import annotations

__all__ = ["BIT_DEPTHS", "full_scale_for_max"]

BIT_DEPTHS = (8, 10, 12, 14, 16)
"""Bit depths whose ``2**b - 1`` can be a full scale of integer data."""


def full_scale_for_max(peak: float) -> float:
    """The smallest ``2**b - 1`` (``b`` in :data:`BIT_DEPTHS`) that is >= ``peak``; 65535 above."""
    return float(next((2**b - 1 for b in BIT_DEPTHS if 2**b - 1 >= peak), 65535))
