"""Local contrast methods: MSPCM (MPCM), TLLCM, WSLCM.

All three compare a central cell with the eight cells of the same size around it (a 3 x 3 grid of
``s x s`` cells centred on the pixel), at several cell sizes ``s``, and keep the largest response
over scales. A cell statistic (mean, or mean of the ``K`` largest values) is one filtered map per
scale; the eight neighbours are that map read ``s`` pixels away in the eight directions
(:func:`shifted`), so no loop runs over pixels or cells.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from irstd.classic.base import finish, method, prepare

__all__ = ["mspcm", "tllcm", "wslcm", "shifted", "top_k_mean"]

#: The eight neighbour directions (dy, dx), clockwise from the top-left; ``i`` and ``i + 4``
#: are opposite.
DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))

#: Denominator floor of the ratio-type measures, grey levels of the [0, 255]-scaled frame: a
#: neighbourhood darker than one grey level would otherwise turn any noise into a huge ratio.
RATIO_FLOOR = 1.0

_GAUSS3 = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0


def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]`` with coordinates clamped to the frame (replicate)."""
    h, w = a.shape
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return a
    p = np.pad(a, pad, mode="edge")
    return p[pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def top_k_mean(a: np.ndarray, size: int, k: int, chunk_elems: int = 1 << 22) -> np.ndarray:
    """Mean of the ``k`` largest values of the ``size x size`` window centred on every pixel
    (replicate border); MATLAB's mean over ``ordfilt2`` orders ``size^2 - k + 1 .. size^2``.

    Rows are processed in chunks of about ``chunk_elems`` window entries to bound memory.
    """
    h, w = a.shape
    n = size * size
    k = int(min(max(k, 1), n))
    r = size // 2
    p = np.pad(a.astype(np.float32, copy=False), r, mode="edge")
    out = np.empty((h, w), dtype=np.float64)
    rows = max(1, chunk_elems // max(w * n, 1))
    for y0 in range(0, h, rows):
        y1 = min(y0 + rows, h)
        win = sliding_window_view(p[y0 : y1 + 2 * r], (size, size)).reshape(y1 - y0, w, n)
        part = np.partition(win, n - k, axis=-1)[..., n - k :]
        out[y0:y1] = part.mean(axis=-1, dtype=np.float64)
    return out


def _box_mean(a: np.ndarray, size: int) -> np.ndarray:
    return ndimage.uniform_filter(a, size=size, mode="nearest")


@method(
    "mspcm",
    reference="Y. Wei, X. You, H. Li, 'Multiscale patch-based contrast measure for small infrared target "
    "detection', Pattern Recognition 58:216-226, 2016",
    family="local contrast",
    params={"scales": [3, 5, 7, 9]},
)
def mspcm(image, scales: tuple[int, ...] = (3, 5, 7, 9)) -> np.ndarray:
    """Multiscale patch-based contrast measure (MPCM) saliency.

    Wei, You & Li 2016: at scale ``s`` the patch means ``m_0`` (centre) and ``m_i`` (eight
    neighbours); ``d_i = m_0 - m_i``; the patch contrast is ``min_i d_i d_{i+4}`` over the four
    pairs of opposite directions, which is large only where the centre stands out in every
    direction (an edge makes one pair small). Bright targets: a pair counts only where both
    differences are positive (``d`` clipped at 0), so dark spots and saddles give 0. Scales
    3, 5, 7, 9; the maximum over scales.

    Args:
        image: ``H x W`` array of any real dtype, or an image path.
        scales: odd cell sides in pixels.

    Returns:
        ``float32 H x W`` saliency ``>= 0`` (squared grey levels).
    """
    x = prepare(image)
    out = np.zeros_like(x)
    for s in scales:
        m = _box_mean(x, s)
        d = [np.maximum(m - shifted(m, dy * s, dx * s), 0.0) for dy, dx in DIRECTIONS]
        pcm = np.min([d[i] * d[i + 4] for i in range(4)], axis=0)
        np.maximum(out, pcm, out=out)
    return finish(out)


@method(
    "tllcm",
    reference="J. Han, S. Moradi, I. Faramarzi, C. Liu, H. Zhang, Q. Zhao, 'A Local Contrast Method for "
    "Infrared Small-Target Detection Utilizing a Tri-Layer Window', IEEE GRSL 17(10):1822-1826, 2020 "
    "(online 2019)",
    family="local contrast",
    params={"scales": [5, 7, 9], "K": 9, "core": "3x3 Gaussian [1 2 1; 2 4 2; 1 2 1]/16"},
    published_runtime_s=2.97,
)
def tllcm(image, scales: tuple[int, ...] = (5, 7, 9), k: int = 9) -> np.ndarray:
    """Tri-layer local contrast measure (TLLCM) saliency.

    Han et al. 2019: three layers around each pixel: the core (the pixel, smoothed by the 3 x 3
    Gaussian ``[1 2 1; 2 4 2; 1 2 1] / 16`` to suppress isolated noise), a reserve layer (the
    ``s x s`` cell around it, ignored, so that a target spreading over the cell does not lower
    its own background estimate), and the surrounding layer of eight ``s x s`` cells, each
    summarised by the mean of its ``K = 9`` largest values (bright clutter dominates the
    estimate). ``TLLCM = core^2 / max_i B_i - core`` (positive part): the ratio enhances the
    target, the difference suppresses bright background. Cell sizes 5, 7, 9; maximum over scales.
    The denominator is floored at :data:`RATIO_FLOOR`.

    Args:
        image: ``H x W`` array of any real dtype, or an image path.
        scales: odd cell sides in pixels.
        k: number of largest values averaged per surrounding cell.

    Returns:
        ``float32 H x W`` saliency ``>= 0`` (grey levels).
    """
    x = prepare(image)
    core = ndimage.correlate(x, _GAUSS3, mode="nearest")
    out = np.zeros_like(x)
    for s in scales:
        cells = top_k_mean(x, s, k)
        background = np.max([shifted(cells, dy * s, dx * s) for dy, dx in DIRECTIONS], axis=0)
        np.maximum(out, core * core / np.maximum(background, RATIO_FLOOR) - core, out=out)
    return finish(out)


@method(
    "wslcm",
    reference="J. Han, S. Moradi, I. Faramarzi, H. Zhang, Q. Zhao, X. Zhang, N. Li, 'Infrared Small Target "
    "Detection Based on the Weighted Strengthened Local Contrast Measure', IEEE GRSL 18(9):1670-1674, 2021 "
    "(online 2020)",
    family="local contrast",
    params={"scales": [5, 7, 9, 11], "K": 9, "xi": 5.0, "prefilter": "3x3 median, then 3x3 Gaussian"},
    published_runtime_s=14.1,
)
def wslcm(image, scales: tuple[int, ...] = (5, 7, 9, 11), k: int = 9, xi: float = 5.0) -> np.ndarray:
    """Weighted strengthened local contrast measure (WSLCM) saliency.

    Han et al. 2020, as their release computes it: the frame is median-filtered (3 x 3); per
    scale ``s`` each of the nine ``s x s`` cells (centre 0, neighbours 1..8) has ``M_j``, the mean
    of its ``K = 9`` largest values, and its plain mean ``mean_j``;

    * strengthened LCM: ``SLCM = G^2 / max_i M_i - G`` (positive part), ``G`` the 3 x 3 Gaussian
      of the frame (denominator floored at :data:`RATIO_FLOOR`);
    * improved regional intensity levels ``IRIL_j = M_j - mean_j`` (how peaked a cell is);
    * weight ``W = IRIL_0 * max(IRIL_0 - max_i IRIL_i, 0) / max(std_i IRIL_i, xi)``: a target's
      cell is more peaked than every neighbour, and a neighbourhood of uneven clutter (large
      spread of ``IRIL_i``) lowers the weight; ``xi = 5`` grey levels (the release replaces spreads
      ``<= xi`` by ``xi``; ``std`` with the ``n - 1`` denominator);
    * ``WSLCM = W * SLCM``; scales 5, 7, 9, 11; maximum over scales.

    Args:
        image: ``H x W`` array of any real dtype, or an image path.
        scales: odd cell sides in pixels.
        k: number of largest values averaged per cell.
        xi: floor of the neighbourhood spread, grey levels of the ``[0, 255]``-scaled frame.

    Returns:
        ``float32 H x W`` saliency ``>= 0`` (grey levels cubed, order of magnitude).
    """
    x = ndimage.median_filter(prepare(image), size=3, mode="nearest")
    g = ndimage.correlate(x, _GAUSS3, mode="nearest")
    out = np.zeros_like(x)
    for s in scales:
        peak = top_k_mean(x, s, k)
        iril = peak - _box_mean(x, s)
        m = np.stack([shifted(peak, dy * s, dx * s) for dy, dx in DIRECTIONS])
        slcm = np.maximum(g * g / np.maximum(m.max(axis=0), RATIO_FLOOR) - g, 0.0)
        around = np.stack([shifted(iril, dy * s, dx * s) for dy, dx in DIRECTIONS])
        wd = np.maximum(iril - around.max(axis=0), 0.0)
        wb = np.maximum(around.std(axis=0, ddof=1), xi)
        np.maximum(out, iril * wd / wb * slcm, out=out)
    return finish(out)
