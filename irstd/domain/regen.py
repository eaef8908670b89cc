"""Re-generation (paper 000 Section 3.1): paste a hard source target into the best-matching
background window of a target-domain frame.

1. :func:`grid_windows`: a grid of windows of the patch's size over the frame (stride
   :data:`WINDOW_STRIDE` of the patch side), kept when the window and a :data:`PAD` px ring around
   it lie entirely in BRD's candidate blocks (so the target's new surroundings are background) and
   inside the frame (OpenCV's blending needs the ring).
2. :func:`rank_windows`: the structural similarity of each window with the patch
   (``skimage.metrics.structural_similarity``, 7 x 7 window as the release uses, both images as
   fractions of their own full scale, ``data_range=1``); paper 000 sorts the windows by it and
   takes the top one. At most :data:`MAX_WINDOWS` windows, drawn at random from the grid, are
   scored (about 0.15 ms each on one CPU core; a 640 x 512 frame can hold thousands).
3. :func:`poisson_paste`: Poisson blending of the patch into that window with
   ``cv2.seamlessClone(..., NORMAL_CLONE)`` (the gradients of the patch, the window's boundary
   values), and the patch's mask pasted at the same place.

Bit depth: the result keeps the frame's dtype and lies in ``[0, full_scale]`` of the frame. The
patch is placed in the frame's units as the same fraction of full scale it had in its source.
OpenCV's solver works on 8-bit images only; for 8-bit frames its output is the result. For
16-bit frames the window (with the patch) is mapped linearly onto 0..255 with a quarter of its
local range as headroom on each side, OpenCV blends that, and the change it made is mapped back
and added to the 16-bit frame: pixels it does not touch keep their exact values, blended pixels
have a precision of 1/170 of the window's local range.

OpenCV blends inside the mask eroded by about 3 px, and its solution equals the frame on the
mask's border: the :data:`irstd.domain.dis.MARGIN` of 6 px around each target keeps the target
itself inside the blended part. The mask is pasted where the target's pixels land (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irstd.domain.dis import HardTarget
from irstd.errors import IRSTDError

__all__ = ["PAD", "WINDOW_STRIDE", "MAX_WINDOWS", "SSIM_WIN", "Paste", "grid_windows", "rank_windows",
           "poisson_paste", "regenerate"]

PAD = 2
WINDOW_STRIDE = 0.5
MAX_WINDOWS = 256
SSIM_WIN = 7


@dataclass(frozen=True)
class Paste:
    """One re-generated frame: ``image`` (the frame's dtype), ``mask`` (bool), the ``window``
    ``(top, left, height, width)`` the patch went into, and its ``ssim`` with the patch."""

    image: np.ndarray
    mask: np.ndarray
    window: tuple[int, int, int, int]
    ssim: float


def grid_windows(candidates: np.ndarray, size: tuple[int, int], stride: float = WINDOW_STRIDE,
                 pad: int = PAD) -> np.ndarray:
    """``(K, 2)`` int array of window ``(top, left)`` on the grid (module docstring), raster order."""
    cand = np.asarray(candidates, dtype=bool)
    H, W = cand.shape
    h, w = int(size[0]), int(size[1])
    if not stride > 0:
        raise ValueError(f"window stride must be a positive fraction of the patch side, got {stride}")
    sy, sx = max(1, int(round(h * stride))), max(1, int(round(w * stride)))
    tops = np.arange(pad, H - h - pad + 1, sy)
    lefts = np.arange(pad, W - w - pad + 1, sx)
    if not tops.size or not lefts.size:
        return np.zeros((0, 2), dtype=np.int64)
    # summed-area table: a padded window is all candidate iff its count equals its area
    sat = np.zeros((H + 1, W + 1), dtype=np.int64)
    sat[1:, 1:] = cand.cumsum(0).cumsum(1)
    t0, l0 = tops[:, None] - pad, lefts[None, :] - pad
    t1, l1 = tops[:, None] + h + pad, lefts[None, :] + w + pad
    count = sat[t1, l1] - sat[t0, l1] - sat[t1, l0] + sat[t0, l0]
    ok = count == (h + 2 * pad) * (w + 2 * pad)
    r, c = np.nonzero(ok)
    return np.stack([tops[r], lefts[c]], axis=1).astype(np.int64)


def rank_windows(frame_unit: np.ndarray, windows: np.ndarray, patch_unit: np.ndarray) -> np.ndarray:
    """SSIM of every window with the patch (both as fractions of full scale), float64 ``(K,)``."""
    from skimage.metrics import structural_similarity

    h, w = patch_unit.shape
    win = min(SSIM_WIN, h - (1 - h % 2), w - (1 - w % 2))  # odd and within the patch
    if win < 3:
        raise ValueError(f"patch of {w}x{h} px is too small for SSIM")
    p = np.asarray(patch_unit, dtype=np.float64)
    if not len(windows):
        return np.zeros(0, dtype=np.float64)
    # One call on the windows stacked into a column against the patch repeated: SSIM's local map
    # at a pixel sees only its win x win neighbourhood, so away from the tile seams (the border
    # skimage itself leaves out of the mean) every tile's mean is that window's SSIM, without a
    # Python-level call per window.
    stack = np.concatenate([frame_unit[t : t + h, l : l + w] for t, l in windows], axis=0).astype(np.float64)
    _, local = structural_similarity(stack, np.tile(p, (len(windows), 1)), data_range=1.0, win_size=win, full=True)
    m = (win - 1) // 2
    tiles = local.reshape(len(windows), h, w)[:, m : h - m, m : w - m]
    return tiles.mean(axis=(1, 2), dtype=np.float64)


def poisson_paste(
    frame: np.ndarray,
    full_scale: float,
    patch_unit: np.ndarray,
    patch_mask: np.ndarray,
    top: int,
    left: int,
    frame_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``patch_unit`` (fractions of its source's full scale) into ``frame`` at ``(top, left)``
    and paste ``patch_mask`` there (module docstring). Returns ``(image, mask)``: the frame's dtype,
    values in ``[0, full_scale]``; the mask is ``frame_mask`` (default empty) or-ed with the patch's.

    Raises:
        IRSTDError: a frame that is not 8- or 16-bit (int32 within 0..65535 counts as 16-bit).
        ValueError: the window and its :data:`PAD` ring do not fit in the frame.
    """
    import cv2  # OpenCV on use: the module's constants serve `irstd --help`

    frame = np.asarray(frame)
    if frame.dtype == np.int32 and frame.min() >= 0 and frame.max() <= 65535:
        frame = frame.astype(np.uint16)
    if frame.dtype not in (np.uint8, np.uint16):
        raise IRSTDError(f"re-generation blends into 8- and 16-bit frames, got {frame.dtype}")
    H, W = frame.shape
    h, w = patch_unit.shape
    if patch_mask.shape != (h, w):
        raise ValueError(f"patch {patch_unit.shape} and its mask {patch_mask.shape} differ in size")
    r0, c0, r1, c1 = top - PAD, left - PAD, top + h + PAD, left + w + PAD
    if r0 < 0 or c0 < 0 or r1 > H or c1 > W:
        raise ValueError(f"window ({top}, {left}, {h}, {w}) with its {PAD} px ring leaves the {W}x{H} frame")
    scale = float(full_scale)
    dst = frame[r0:r1, c0:c1].astype(np.float64)
    src = dst.copy()
    src[PAD : PAD + h, PAD : PAD + w] = np.asarray(patch_unit, dtype=np.float64) * scale
    if frame.dtype == np.uint8:
        lo, step = 0.0, 1.0
    else:
        a, b = min(dst.min(), src.min()), max(dst.max(), src.max())
        span = max(b - a, 1.0)
        lo, step = a - 0.25 * span, 1.5 * span / 255.0

    def to8(x):
        return np.clip(np.rint((x - lo) / step), 0, 255).astype(np.uint8)

    src8, dst8 = to8(src), to8(dst)
    blend = np.zeros(dst.shape, dtype=np.uint8)
    blend[PAD : PAD + h, PAD : PAD + w] = 255
    # OpenCV centres the mask's bounding box on p with integer halves: this p puts the patch's
    # top-left pixel exactly on (top, left)
    centre = (PAD + w // 2, PAD + h // 2)
    out8 = cv2.seamlessClone(cv2.merge([src8] * 3), cv2.merge([dst8] * 3), blend, centre, cv2.NORMAL_CLONE)[:, :, 0]
    result = dst + step * (out8.astype(np.float64) - dst8)
    limit = min(scale, float(np.iinfo(frame.dtype).max))
    image = frame.copy()
    image[r0:r1, c0:c1] = np.clip(np.rint(result), 0, limit).astype(frame.dtype)
    mask = np.zeros((H, W), dtype=bool) if frame_mask is None else np.array(frame_mask, dtype=bool)
    mask[top : top + h, left : left + w] |= np.asarray(patch_mask, dtype=bool)
    return image, mask


def regenerate(
    frame: np.ndarray,
    full_scale: float,
    candidates: np.ndarray,
    target: HardTarget,
    rng: np.random.Generator,
    max_windows: int = MAX_WINDOWS,
    stride: float = WINDOW_STRIDE,
) -> Paste | None:
    """Paste ``target`` into the SSIM-best of (at most ``max_windows``) candidate windows of
    ``frame``; ``None`` when no window fits in the candidate region.

    Args:
        frame: target-domain frame (8- or 16-bit), ``full_scale`` its intensity full scale.
        candidates: ``H x W`` bool, BRD's candidate pixels
            (:meth:`irstd.domain.brd.BackgroundMap.pixel_mask`).
        rng: draws the scored windows when there are more than ``max_windows``.
    """
    h, w = target.patch.shape
    windows = grid_windows(candidates, (h, w), stride)
    if not len(windows):
        return None
    if len(windows) > max_windows:
        windows = windows[np.sort(rng.choice(len(windows), size=max_windows, replace=False))]
    unit = np.asarray(frame, dtype=np.float64) / float(full_scale)
    patch = target.unit()
    ssim = rank_windows(unit, windows, patch)
    best = int(np.argmax(ssim))
    top, left = (int(v) for v in windows[best])
    image, mask = poisson_paste(frame, full_scale, patch, target.mask, top, left)
    return Paste(image, mask, (top, left, h, w), float(ssim[best]))
