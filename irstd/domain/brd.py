"""Background Region Detection (BRD, paper 000 Section 3.1): where in a target-domain frame a
source target may be pasted.

1. **Wavelet multi-frequency filtering** (:func:`wmf`). A 2-D DWT splits the frame into the
   low-frequency baseband ``L_low`` and the three high-frequency bands ``H_k`` (horizontal,
   vertical, diagonal). Each high band is scaled by the normalised gradient magnitude of the
   baseband, exactly paper 000's equation::

       H~_k = H_k * |grad L_low| / (max |grad L_low| + eps)

   and the frame is rebuilt by the inverse transform. Details survive where the low band has real
   structure (edges) and are suppressed where it is flat, so sensor noise in flat regions does not
   look like texture. With ``level > 1`` the rule is applied at every level, each level's bands
   guided by that level's own approximation. ``grad`` is :func:`numpy.gradient` (central
   differences inside, one-sided at the borders).
2. **Block probability** (:func:`block_scores`). The filtered frame is cut into non-overlapping
   ``S x S`` blocks (complete blocks only, from the top-left corner); per block::

       p = norm( sum_B |Laplacian I| ) + norm( (1 / S**2) sum_B sqrt(G_u**2 + G_v**2) )

   with ``norm`` the min-max normalisation over the frame's blocks (each term in [0, 1], so
   ``p`` in [0, 2]), the 4-neighbour Laplacian (``cv2.Laplacian``, ``ksize=1``, reflect-101
   border) and :func:`numpy.gradient` for ``G``.
3. Blocks with ``p < tau_b`` are background candidates (:class:`BackgroundMap`).

Defaults (the paper states none of them):

* :data:`WAVELET` ``db4`` and :data:`LEVEL` 1: the public release uses Daubechies-4; one level
  gives exactly the paper's three bands ``{H_k}, k = 1..3``.
* :data:`BLOCK_SIZE` ``S = 42``: the release cuts 640x512 frames into a 12 x 15 grid (42.7 px
  blocks) and pastes into 3 x 3 blocks, 126 x 126 px, the paper's ``P_target in R^{126x126}``.
* :data:`TAU_B` 0.8: the release thresholds the *mean* of its two normalised terms at 0.4; the
  paper's ``p`` is their sum, so the same cut is 0.8.
* :data:`WMF_EPS` 1e-8, in the frame's native units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irstd.errors import IRSTDError

__all__ = ["WAVELET", "LEVEL", "BLOCK_SIZE", "TAU_B", "WMF_EPS", "BackgroundMap", "wmf", "block_scores",
           "detect_background"]

WAVELET = "db4"
LEVEL = 1
BLOCK_SIZE = 42
TAU_B = 0.8
WMF_EPS = 1e-8


def _gradient_magnitude(a: np.ndarray) -> np.ndarray:
    if min(a.shape) < 2:  # np.gradient needs two samples per axis; a line has no 2-D gradient
        return np.zeros_like(a)
    gy, gx = np.gradient(a)
    return np.hypot(gx, gy)


def wmf(image: np.ndarray, wavelet: str = WAVELET, level: int = LEVEL, eps: float = WMF_EPS) -> np.ndarray:
    """Wavelet multi-frequency filtering of a grey frame (module docstring); float64, same shape."""
    import pywt

    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"wmf expects a 2-D frame, got shape {x.shape}")
    if int(level) < 1:
        raise ValueError(f"wmf level must be >= 1, got {level}")
    approx = x
    details = []
    for _ in range(int(level)):
        approx, bands = pywt.dwt2(approx, wavelet, mode="symmetric")
        g = _gradient_magnitude(approx)
        weight = g / (g.max() + eps)
        details.append(tuple(band * weight for band in bands))
    # waverec2 crops each approximation to its detail bands' size, as odd sizes need
    out = pywt.waverec2([approx] + details[::-1], wavelet, mode="symmetric")
    return out[: x.shape[0], : x.shape[1]]


def _normalise(v: np.ndarray) -> np.ndarray:
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:  # every block alike: none is more textured than another
        return np.zeros_like(v)
    return (v - lo) / (hi - lo)


def block_scores(filtered: np.ndarray, block_size: int = BLOCK_SIZE) -> np.ndarray:
    """The background probability ``p`` of every complete ``S x S`` block (module docstring),
    a ``(H // S) x (W // S)`` float64 grid; low means flat background."""
    import cv2  # OpenCV on use: the module's constants serve `irstd --help`

    f = np.asarray(filtered, dtype=np.float64)
    s = int(block_size)
    rows, cols = f.shape[0] // s, f.shape[1] // s
    if rows < 1 or cols < 1:
        raise ValueError(f"a {f.shape[1]}x{f.shape[0]} frame has no complete {s}x{s} block")
    lap = np.abs(cv2.Laplacian(f, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT_101))
    grad = _gradient_magnitude(f)

    def per_block(a: np.ndarray) -> np.ndarray:
        return a[: rows * s, : cols * s].reshape(rows, s, cols, s).sum(axis=(1, 3))

    return _normalise(per_block(lap)) + _normalise(per_block(grad) / s**2)


@dataclass(frozen=True)
class BackgroundMap:
    """BRD result for one frame: block scores, the candidate blocks and the frame size."""

    scores: np.ndarray  # (rows, cols) p per block
    candidates: np.ndarray  # (rows, cols) bool, p < tau_b
    block_size: int
    shape: tuple[int, int]  # frame (H, W)

    def pixel_mask(self) -> np.ndarray:
        """``H x W`` bool: pixels inside candidate blocks."""
        s = self.block_size
        out = np.zeros(self.shape, dtype=bool)
        grid = np.kron(self.candidates, np.ones((s, s), dtype=bool))
        out[: grid.shape[0], : grid.shape[1]] = grid
        return out

    @property
    def fraction(self) -> float:
        """Fraction of the blocks that are candidates."""
        return float(self.candidates.mean())


def detect_background(
    image: np.ndarray,
    block_size: int = BLOCK_SIZE,
    tau_b: float = TAU_B,
    wavelet: str = WAVELET,
    level: int = LEVEL,
    eps: float = WMF_EPS,
    name: str = "frame",
) -> BackgroundMap:
    """BRD of one frame: WMF, block scores, ``p < tau_b`` candidates.

    Raises:
        IRSTDError: the frame is smaller than one block (the message starts with ``name``, the
            frame's path when the caller has it).
    """
    image = np.asarray(image)
    s = int(block_size)
    if s < 2:
        raise IRSTDError(f"BRD block size must be at least 2 px, got {block_size}")
    h, w = image.shape[:2]
    if h < s or w < s:
        raise IRSTDError(f"{name}: frame of {w}x{h} pixels (WxH) is smaller than one {s}x{s} BRD block")
    scores = block_scores(wmf(image, wavelet, level, eps), s)
    return BackgroundMap(scores, scores < float(tau_b), s, (h, w))
