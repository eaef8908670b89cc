"""Dual-indicator Selection (DIS, paper 000 Section 3.1): which source targets are hard.

Every ground-truth target (an 8-connected component of the mask, the targets of
:mod:`irstd.metrics`) is scored in its own window, its bounding box grown by ``margin`` pixels on
each side (clipped to the image), against the current model's probability map::

    PixAcc = |pred & target| / |target|          IoU = |pred & target| / |pred | target|

with ``pred = prob > threshold`` inside the window and ``target`` that component's pixels only
(:func:`irstd.metrics.pix_acc`, :func:`irstd.metrics.iou`, the one metrics implementation).
A target is **hard** when ``PixAcc < tau_p`` and ``IoU < tau_i``. Hard targets, cut with the same
window (the patch and every mask pixel inside it), form the paste set of the re-generation.

Defaults (paper 000 gives no values): :data:`TAU_P` 0.75 and :data:`TAU_I` 0.5. IoU never exceeds
PixAcc (its denominator is larger), so only ``tau_i < tau_p`` lets both indicators count: a target
is hard when the model finds less than three quarters of it *and* its window IoU is below the
usual 0.5 detection level; a target found completely but drowned in false pixels (high PixAcc, low
IoU) is not hard, nor is one segmented a little small without false pixels. :data:`MARGIN` 6 px
gives the Poisson blending a ring of the target's own background (a 1 px target becomes a 13 x 13
patch, enough for the 7 x 7 SSIM window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TAU_P", "TAU_I", "MARGIN", "TargetScore", "HardTarget", "target_boxes", "score_targets",
           "select_hard", "cut_patch"]

TAU_P = 0.75
TAU_I = 0.5
MARGIN = 6


@dataclass(frozen=True)
class TargetScore:
    """One ground-truth target of an image: its window ``box = (top, left, bottom, right)``
    (exclusive ends), PixAcc and IoU in the window, and whether it is hard."""

    index: int
    box: tuple[int, int, int, int]
    pixacc: float
    iou: float
    hard: bool


@dataclass(frozen=True)
class HardTarget:
    """A paste candidate: ``patch`` (native values of the source image in the window), ``mask``
    (every ground-truth pixel in the window), the source ``full_scale`` and where it came from."""

    source: str
    box: tuple[int, int, int, int]
    patch: np.ndarray
    mask: np.ndarray
    full_scale: float

    def unit(self) -> np.ndarray:
        """The patch as float64 fractions of its source's full scale."""
        return self.patch.astype(np.float64) / self.full_scale


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    import cv2  # OpenCV on use: the module's constants serve `irstd --help`

    # 8-connected, numbered in raster order of the first pixel: the targets of irstd.metrics
    n, labels = cv2.connectedComponentsWithAlgorithm(np.asarray(mask, dtype=np.uint8), 8, cv2.CV_32S, cv2.CCL_WU)
    return n - 1, labels


def target_boxes(mask: np.ndarray, margin: int = MARGIN) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """``(component pixels bool H x W, window box)`` of every ground-truth target, in label order."""
    mask = np.asarray(mask, dtype=bool)
    n, labels = _components(mask)
    h, w = mask.shape
    out = []
    for k in range(1, n + 1):
        comp = labels == k
        rows, cols = np.nonzero(comp)
        box = (max(int(rows.min()) - margin, 0), max(int(cols.min()) - margin, 0),
               min(int(rows.max()) + 1 + margin, h), min(int(cols.max()) + 1 + margin, w))
        out.append((comp, box))
    return out


def score_targets(
    prob: np.ndarray,
    mask: np.ndarray,
    threshold: float = 0.5,
    margin: int = MARGIN,
    tau_p: float = TAU_P,
    tau_i: float = TAU_I,
) -> list[TargetScore]:
    """DIS scores of every ground-truth target of one image (module docstring).

    Args:
        prob: the model's probabilities, float H x W in [0, 1].
        mask: ground truth, bool H x W.
    """
    from irstd.metrics import iou, pix_acc

    prob = np.asarray(prob, dtype=np.float32)
    if prob.shape != np.shape(mask):
        raise ValueError(f"probability map {prob.shape} and mask {np.shape(mask)} differ in size")
    out = []
    for k, (comp, (t, l, b, r)) in enumerate(target_boxes(mask, margin)):
        p, g = prob[t:b, l:r], comp[t:b, l:r]
        pa, io = pix_acc(p, g, threshold), iou(p, g, threshold)
        out.append(TargetScore(k, (t, l, b, r), float(pa), float(io), bool(pa < tau_p and io < tau_i)))
    return out


def select_hard(scores: list[TargetScore]) -> list[TargetScore]:
    """The hard targets of :func:`score_targets`' list, in order."""
    return [s for s in scores if s.hard]


def cut_patch(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], source: str,
              full_scale: float) -> HardTarget:
    """The paste candidate of one window of a source image."""
    t, l, b, r = box
    return HardTarget(source, tuple(int(v) for v in box), np.array(image[t:b, l:r]),
                      np.array(mask[t:b, l:r], dtype=bool), float(full_scale))
