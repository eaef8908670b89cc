"""Background-estimation filters: white top-hat and max-median.

Both estimate the background with a filter that a target smaller than its window cannot pass,
and take the frame minus that estimate (positive part) as the saliency.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from irstd.classic.base import finish, method, prepare

__all__ = ["tophat", "max_median", "disk"]


def disk(radius: int) -> np.ndarray:
    """``uint8`` disk structuring element ``x^2 + y^2 <= radius^2`` (side ``2 radius + 1``)."""
    r = int(radius)
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


@method(
    "tophat",
    reference="M. Zeng, J. Li, Z. Peng, 'The design of Top-Hat morphological filter and application to "
    "infrared target detection', Infrared Physics & Technology 48(1):67-76, 2006",
    family="background filter",
    params={"structuring_element": "disk", "radius": 3},
    published_runtime_s=0.029,
)
def tophat(image, radius: int = 3) -> np.ndarray:
    """White top-hat saliency ``f - (f opened by a disk)``.

    Zeng, Li & Peng 2006: grey opening removes bright structures smaller than the structuring
    element, so the residual keeps them. Disk of radius 3 (7 x 7), the element of the classic
    baselines' releases (MATLAB ``strel('disk', 3)``); pixels outside the frame are ignored by
    the erosion and dilation.

    Args:
        image: ``H x W`` array of any real dtype, or an image path.
        radius: disk radius in pixels (targets must be narrower than ``2 radius + 1``).

    Returns:
        ``float32 H x W`` saliency ``>= 0`` (grey levels of the ``[0, 255]``-scaled frame).
    """
    x = prepare(image).astype(np.float32)
    out = cv2.morphologyEx(x, cv2.MORPH_TOPHAT, disk(radius), borderType=cv2.BORDER_REPLICATE)
    return finish(out)


def _line_footprints(n: int) -> list[np.ndarray]:
    eye = np.eye(n, dtype=bool)
    row = np.zeros((n, n), dtype=bool)
    row[n // 2, :] = True
    return [row, row.T, eye, eye[::-1]]


@method(
    "max_median",
    reference="S. D. Deshpande, M. H. Er, R. Venkateswarlu, P. Chan, 'Max-mean and max-median filters for "
    "detection of small targets', Proc. SPIE 3809, Signal and Data Processing of Small Targets, 1999",
    family="background filter",
    params={"window": 5},
    published_runtime_s=0.018,
)
def max_median(image, window: int = 5) -> np.ndarray:
    """Max-median saliency ``f - max(med_h, med_v, med_d, med_a)``.

    Deshpande et al. 1999: the background at a pixel is the largest of the medians along the
    horizontal, vertical, diagonal and anti-diagonal lines of an ``n x n`` window centred on it;
    the line medians keep edges (unlike a square median) while removing small targets.
    ``n = 5`` (border: replicate).

    Args:
        image: ``H x W`` array of any real dtype, or an image path.
        window: odd line length ``n`` in pixels.

    Returns:
        ``float32 H x W`` saliency ``>= 0`` (grey levels of the ``[0, 255]``-scaled frame).
    """
    x = prepare(image)
    n = int(window) | 1
    background = np.max(
        [ndimage.median_filter(x, footprint=fp, mode="nearest") for fp in _line_footprints(n)], axis=0
    )
    return finish(x - background)
