"""Functional IRSTD metrics and the per-image building blocks the metric classes accumulate.

Conventions (the same in :mod:`irstd.metrics.classes`; see the package docstring for the full
definitions):

* A *prediction* is one image ``H x W``, a batch ``B x H x W`` or ``B x 1 x H x W``, or a list of
  such arrays (images of different sizes), as NumPy arrays or torch tensors (any device). Its
  values are interpreted by ``input`` (:func:`resolve_input`) and binarised with ``p > threshold``.
* A *target* has the same layout; it is binarised with :func:`irstd.data.io.binarize_mask`
  (bool as is; 0/1 or 0/255 or 0/65535 masks: a pixel is target iff above half the full scale).
* Metrics are computed at the size given: nothing is resized.
* Ratios whose denominator is zero follow one rule (:func:`safe_ratio`): 1.0 when the prediction
  made no error of the kind the ratio measures against, else 0.0.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Iterator, NamedTuple, Sequence

import cv2
import numpy as np
from scipy.special import expit

from irstd.data.io import binarize_mask, full_scale

__all__ = [
    "INPUT_KINDS",
    "MATCH_DISTANCE",
    "SCALAR_KEYS",
    "DEFAULT_PD_FA_THRESHOLDS",
    "EMPTY_GT_RULES",
    "Components",
    "TargetMatch",
    "ImageStats",
    "as_image_list",
    "auc",
    "binarize_prediction",
    "binarize_target",
    "check_empty_gt",
    "curve_counts",
    "f1_from_counts",
    "image_iou",
    "image_stats",
    "iou",
    "iter_binary",
    "label_components",
    "match_components",
    "match_targets",
    "niou",
    "niou_label",
    "pd_fa",
    "pd_fa_curve",
    "pd_fa_from_curve_counts",
    "pix_acc",
    "pixel_precision_recall_f1",
    "prediction_probability",
    "rce",
    "resolve_input",
    "roc_curve",
    "roc_from_histogram",
    "roc_histogram",
    "roc_thresholds",
    "safe_ratio",
    "scores",
    "scores_from_counts",
    "target_counts",
    "target_precision_recall_f1",
]

INPUT_KINDS = ("auto", "probs", "logits")
"""Accepted values of the ``input`` argument."""

MATCH_DISTANCE = 3.0
"""A predicted target matches a ground-truth target when their centroids are closer than this
(pixels, Euclidean, strict ``<``): the community convention for Pd and Fa."""

EMPTY_GT_RULES = {"community": 0.0, "one": 1.0}
"""Accepted values of the ``empty_gt`` argument (nIoU) and the per-image IoU each gives an image
whose ground truth and prediction are both empty. ``"community"`` (the default) is what ACM's
``SamplewiseSigmoidMetric`` and the toolboxes copied from it compute, TP / (union + eps) = 0;
``"one"`` scores a correctly empty prediction as a perfect one. An empty ground truth with
anything predicted scores 0 under both."""


def check_empty_gt(empty_gt: str) -> str:
    """``empty_gt`` if it is one of :data:`EMPTY_GT_RULES`, else ValueError."""
    if empty_gt not in EMPTY_GT_RULES:
        raise ValueError(f"empty_gt must be one of {tuple(EMPTY_GT_RULES)}, got {empty_gt!r}")
    return empty_gt


def niou_label(empty_gt: str = "community") -> str:
    """How tables name nIoU so that the empty-ground-truth rule travels with the figure."""
    return "nIoU (empty GT = 0)" if check_empty_gt(empty_gt) == "community" else "nIoU (empty GT and pred = 1)"


# --------------------------------------------------------------------------------------------
# Input handling


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def as_image_list(x: Any, name: str = "input") -> list[np.ndarray]:
    """Split one image, a batch, or a list of images into a list of 2-D NumPy arrays.

    Accepted layouts: ``H x W``, ``B x H x W``, ``B x 1 x H x W`` (NumPy arrays or torch tensors;
    tensors are detached and copied to the CPU), or a list/tuple of those.
    """
    if isinstance(x, (list, tuple)):
        out: list[np.ndarray] = []
        for item in x:
            out.extend(as_image_list(item, name))
        return out
    a = _to_numpy(x)
    if a.ndim == 2:
        return [a]
    if a.ndim == 3:
        return list(a)
    if a.ndim == 4 and a.shape[1] == 1:
        return list(a[:, 0])
    raise ValueError(f"{name}: expected H x W, B x H x W or B x 1 x H x W, got shape {tuple(a.shape)}")


def resolve_input(images: Sequence[np.ndarray], input: str = "probs") -> str:
    """Decide how float predictions are read: ``"probs"`` or ``"logits"``.

    Rules (``bool`` and integer arrays are never affected: bool is a binary mask, integers are
    quantised probabilities, see :func:`prediction_probability`):

    * ``input="probs"``: floats are probabilities and must lie in [0, 1] (ValueError otherwise,
      which catches logits passed by mistake).
    * ``input="logits"``: floats are logits; probability = sigmoid(logit).
    * ``input="auto"``: floats are probabilities if every float value of the call (the whole batch
      together) lies in [0, 1], otherwise logits. A logit map that happens to lie entirely in
      [0, 1] would be misread, so prefer an explicit ``input`` for model outputs.

    NaN values are rejected in every mode.
    """
    if input not in INPUT_KINDS:
        raise ValueError(f"input must be one of {INPUT_KINDS}, got {input!r}")
    floats = [a for a in images if np.issubdtype(a.dtype, np.floating) and a.size]
    if not floats:
        return "probs" if input == "auto" else input
    lo = min(float(a.min()) for a in floats)
    hi = max(float(a.max()) for a in floats)
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError("prediction contains NaN values")
    in_unit = 0.0 <= lo and hi <= 1.0
    if input == "auto":
        return "probs" if in_unit else "logits"
    if input == "probs" and not in_unit:
        raise ValueError(
            f"probabilities must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; "
            f"pass input='logits' for raw network outputs"
        )
    return input


def _quantised_to_probability(a: np.ndarray) -> np.ndarray:
    # Same arithmetic as irstd.data.io.read_probability, so an 8/16-bit map gives the same
    # binary mask whether it comes from a file or from an array.
    scale = 1.0 if float(a.max(initial=0)) <= 1 else full_scale(a)
    return (a.astype(np.float64) / scale).astype(np.float32)


def _greater(a: np.ndarray, t: float) -> np.ndarray:
    """``a > t`` in the precision of the float array ``a`` (as ``prob > t`` in NumPy or torch):
    a float32 map is compared with float32(t), so an 8-bit level such as 51/255 is not above the
    threshold 0.2 just because both were rounded to float32."""
    return a > a.dtype.type(t)


def _as_float(a: np.ndarray) -> np.ndarray:
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float32)


def _logit(t: float) -> float:
    if t <= 0.0:
        return -math.inf
    if t >= 1.0:
        return math.inf
    return math.log(t) - math.log1p(-t)


def binarize_prediction(pred: np.ndarray, threshold: float = 0.5, kind: str = "probs") -> np.ndarray:
    """Binary mask ``p > threshold`` of one 2-D prediction.

    Args:
        pred: ``H x W`` NumPy array. ``bool``: returned as is. Integer: quantised probability
            (value / full scale, where the full scale is 1 if the maximum is <= 1, else 255 for
            8-bit and 65535 for 16-bit data, as :func:`irstd.data.io.read_probability`). Float:
            per ``kind``.
        threshold: in [0, 1]; a pixel is predicted target iff its probability is strictly greater.
        kind: ``"probs"`` or ``"logits"`` (resolved by :func:`resolve_input`). Logits are compared
            with ``logit(threshold)``, which equals ``sigmoid(x) > threshold`` in exact arithmetic
            and avoids the float32 saturation of the sigmoid.
    """
    if pred.dtype == np.bool_:
        return pred
    if np.issubdtype(pred.dtype, np.integer):
        return _greater(_quantised_to_probability(pred), threshold)
    pred = _as_float(pred)
    if kind == "logits":
        return _greater(pred, _logit(threshold))
    return _greater(pred, threshold)


def prediction_probability(pred: np.ndarray, kind: str = "probs") -> np.ndarray:
    """Probabilities in [0, 1] of one 2-D prediction (for the ROC): masks give 0/1, logits their
    sigmoid (float32), integer maps value / full scale."""
    if pred.dtype == np.bool_:
        return pred.astype(np.float32)
    if np.issubdtype(pred.dtype, np.integer):
        return _quantised_to_probability(pred)
    pred = _as_float(pred)
    if kind == "logits":
        return expit(pred)
    return pred


def binarize_target(target: np.ndarray) -> np.ndarray:
    """Ground-truth mask as ``bool``: bool as is, otherwise :func:`irstd.data.io.binarize_mask`."""
    if target.dtype == np.bool_:
        return target
    if target.dtype == np.float16:
        target = target.astype(np.float32)
    return binarize_mask(target)


def _pairs(pred: Any, target: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    preds = as_image_list(pred, "pred")
    targets = as_image_list(target, "target")
    if len(preds) != len(targets):
        raise ValueError(f"pred has {len(preds)} images but target has {len(targets)}")
    for i, (p, t) in enumerate(zip(preds, targets)):
        if p.shape != t.shape:
            raise ValueError(f"image {i}: pred shape {tuple(p.shape)} differs from target shape {tuple(t.shape)}")
    return preds, targets


def iter_binary(
    pred: Any, target: Any, threshold: float = 0.5, input: str = "probs", probabilities: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Yield ``(pred bool, target bool, probability or None)`` per image of a call's inputs."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    preds, targets = _pairs(pred, target)
    kind = resolve_input(preds, input)
    for p, t in zip(preds, targets):
        prob = prediction_probability(p, kind) if probabilities else None
        yield binarize_prediction(p, threshold, kind), binarize_target(t), prob


# --------------------------------------------------------------------------------------------
# Zero-denominator rule and small formulas


def safe_ratio(num: float, den: float, errors: float) -> float:
    """``num / den``, or, when ``den == 0``, 1.0 if ``errors == 0`` else 0.0.

    ``errors`` counts the mistakes that the ratio cannot see when its denominator is empty, e.g.
    for a recall with no positives, the false positives: an image with no target and no prediction
    has recall 1, an image with no target but a false alarm has recall 0.
    """
    if den:
        return float(num) / float(den)
    return 1.0 if not errors else 0.0


def f1_from_counts(tp: float, fp: float, fn: float) -> float:
    """F1 = 2 TP / (2 TP + FP + FN) (the harmonic mean of precision and recall); 1.0 if all zero."""
    return safe_ratio(2 * tp, 2 * tp + fp + fn, 0)


def rce(iou_clean: float, iou_corrupted: float) -> float:
    """Relative corruption error (BALISTD): ``(IoU_clean - IoU_corrupted) / IoU_clean``, a fraction
    (0 = no loss, 1 = everything lost; negative if the corruption helped).

    Raises:
        ValueError: ``iou_clean`` is 0, where the ratio is undefined.
    """
    if iou_clean == 0:
        raise ValueError("RCE is undefined when the clean IoU is 0")
    return (float(iou_clean) - float(iou_corrupted)) / float(iou_clean)


# --------------------------------------------------------------------------------------------
# Connected components and target matching


class Components(NamedTuple):
    """The 8-connected components of a binary mask, in label order (raster order of each
    component's first pixel, the order of ``skimage.measure.label``)."""

    areas: np.ndarray  # (n,) int64, pixels
    centroids: np.ndarray  # (n, 2) float64, (row, col) = mean pixel coordinates


_NO_COMPONENTS = Components(np.zeros(0, np.int64), np.zeros((0, 2), np.float64))


def _compress_lines(coords: np.ndarray, size: int) -> np.ndarray:
    """Map each line (row or column) index to its index once runs of empty lines are shortened to
    one line: occupied lines and the first empty line after each are kept, in order."""
    occupied = np.zeros(size + 1, dtype=bool)
    occupied[coords] = True
    keep = occupied.copy()
    keep[1:] |= occupied[:-1]
    return np.cumsum(keep) - 1


def _components_from_flat(flat_idx: np.ndarray, shape: tuple[int, int]) -> Components:
    """Components of the mask whose foreground pixels have the sorted flat indices ``flat_idx``."""
    if flat_idx.size == 0:
        return _NO_COMPONENTS
    height, width = shape
    rows = flat_idx // width
    cols = flat_idx - rows * width
    r0, c0, c1 = int(rows[0]), int(cols.min()), int(cols.max())  # flat indices are sorted
    if (int(rows[-1]) - r0 + 1) * (c1 - c0 + 1) <= max(4096, 16 * flat_idx.size):
        # compact foreground: label its bounding box
        r, c = rows - r0, cols - c0
        small = np.zeros((int(r[-1]) + 1, c1 - c0 + 1), dtype=np.uint8)
    else:
        # scattered foreground (false alarms far apart): label a compressed copy in which every
        # run of empty rows (columns) is shortened to one empty row (column). Pixels adjacent
        # before are adjacent after and pixels separated by an empty line stay separated, so
        # the components are the same, in the same raster order, at a cost that follows the
        # foreground instead of the frame.
        r = _compress_lines(rows, height)[rows]
        c = _compress_lines(cols, width)[cols]
        small = np.zeros((int(r[-1]) + 1, int(c.max()) + 1), dtype=np.uint8)
    small[r, c] = 1
    # 16-bit labels are faster; with 65535 pixels or more there might be too many components.
    ltype = cv2.CV_16U if flat_idx.size < 65535 else cv2.CV_32S
    # CCL_WU (SAUF) numbers components in raster order of their first pixel, as skimage does;
    # OpenCV's default block-based algorithms number them in another order.
    n, labels = cv2.connectedComponentsWithAlgorithm(small, 8, ltype, cv2.CCL_WU)
    lab = labels[r, c]
    areas = np.bincount(lab, minlength=n)[1:]
    centroids = np.empty((n - 1, 2), np.float64)
    # Integer coordinate sums are exact in float64, so these equal skimage's coords.mean().
    centroids[:, 0] = np.bincount(lab, weights=rows, minlength=n)[1:] / areas
    centroids[:, 1] = np.bincount(lab, weights=cols, minlength=n)[1:] / areas
    return Components(areas.astype(np.int64), centroids)


def label_components(mask: np.ndarray) -> Components:
    """Areas and centroids of the 8-connected components of a 2-D boolean mask.

    Diagonal neighbours belong to the same component (8-connectivity, as ``skimage.measure.label(
    mask, connectivity=2)``); components are numbered in raster order of their first pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    return _components_from_flat(np.flatnonzero(mask), mask.shape)


def match_components(
    gt_centroids: np.ndarray, pred_centroids: np.ndarray, max_distance: float = MATCH_DISTANCE
) -> np.ndarray:
    """Greedy centroid matching of the community's Pd/Fa code.

    For each ground-truth component in label order, the first (lowest-numbered) predicted component
    not yet taken whose centroid lies at Euclidean distance strictly below ``max_distance`` pixels
    is matched to it and removed from the pool.

    Returns:
        ``(n_gt,)`` int array: index of the matched predicted component, or -1.
    """
    n_gt, n_pred = len(gt_centroids), len(pred_centroids)
    matched = np.full(n_gt, -1, dtype=np.intp)
    if n_gt == 0 or n_pred == 0:
        return matched
    diff = gt_centroids[:, None, :] - pred_centroids[None, :, :]
    close = np.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1]) < max_distance
    free = np.ones(n_pred, dtype=bool)
    for g in np.flatnonzero(close.any(axis=1)):
        candidates = np.flatnonzero(close[g] & free)
        if candidates.size:
            matched[g] = candidates[0]
            free[candidates[0]] = False
    return matched


def target_counts(
    pred_components: Components, gt_components: Components, max_distance: float = MATCH_DISTANCE
) -> tuple[int, int, int]:
    """``(predicted targets, matched targets, false-alarm pixels)`` of one image.

    False-alarm pixels are all pixels of the predicted components left unmatched, counted per
    component: an unmatched component is counted even if its area equals a matched one's (the
    DNANet code dropped those by comparing areas).
    """
    matched = match_components(gt_components.centroids, pred_components.centroids, max_distance)
    taken = matched[matched >= 0]
    false_pixels = int(pred_components.areas.sum() - pred_components.areas[taken].sum())
    return len(pred_components.areas), int(taken.size), false_pixels


class TargetMatch(NamedTuple):
    """Target-level outcome of one image under the Pd/Fa matching (:func:`match_components`)."""

    gt: Components  # ground-truth targets
    pred: Components  # predicted targets
    matched: np.ndarray  # (n_gt,) index of the predicted target matched to each, or -1

    @property
    def hit(self) -> np.ndarray:
        """``(n_gt,)`` bool: the ground-truth target was detected."""
        return self.matched >= 0

    @property
    def false_alarm(self) -> np.ndarray:
        """``(n_pred,)`` bool: the predicted target matches no ground-truth target."""
        out = np.ones(len(self.pred.areas), dtype=bool)
        out[self.matched[self.matched >= 0]] = False
        return out

    @property
    def counts(self) -> dict[str, int]:
        """``targets`` (ground truth), ``hits``, ``misses``, ``false_alarms`` (predicted targets)."""
        hits = int(self.hit.sum())
        n_gt = len(self.gt.areas)
        return {"targets": n_gt, "hits": hits, "misses": n_gt - hits, "false_alarms": int(self.false_alarm.sum())}


def match_targets(pred: np.ndarray, target: np.ndarray, max_distance: float = MATCH_DISTANCE) -> TargetMatch:
    """Targets of one binary prediction and its binary ground truth (2-D ``bool``), matched as
    Pd and Fa match them: which ground-truth targets are hit or missed, which predictions are
    false alarms."""
    gt, pr = label_components(target), label_components(pred)
    return TargetMatch(gt, pr, match_components(gt.centroids, pr.centroids, max_distance))


class ImageStats(NamedTuple):
    """Counts of one image from which every scalar metric is computed."""

    pixels: int  # H * W
    tp: int  # predicted and ground-truth pixels
    fp: int  # predicted, not ground truth
    fn: int  # ground truth, not predicted
    gt_targets: int  # 8-connected ground-truth components
    pred_targets: int  # 8-connected predicted components
    matched_targets: int  # matched pairs (<= both of the above)
    false_alarm_pixels: int  # pixels of unmatched predicted components


def image_stats(
    pred: np.ndarray,
    target: np.ndarray,
    max_distance: float = MATCH_DISTANCE,
    targets: bool = True,
    gt_components: Components | None = None,
) -> ImageStats:
    """Pixel and target counts of one binary prediction against its binary ground truth.

    Args:
        pred, target: 2-D ``bool`` arrays of equal shape.
        max_distance: centroid distance for a match (pixels, strict).
        targets: when False, the prediction is not labelled and its target-level fields are 0
            (``gt_targets`` is still filled when ``gt_components`` is given).
        gt_components: the ground truth's components if already known (avoids relabelling).
    """
    p_idx = np.flatnonzero(pred)
    t_flat = target.ravel()
    tp = int(np.count_nonzero(t_flat[p_idx]))
    n_target = int(np.count_nonzero(t_flat))
    n_pred = int(p_idx.size)
    if targets:
        if gt_components is None:
            gt_components = label_components(target)
        pred_components = _components_from_flat(p_idx, pred.shape)
        n_pt, n_match, false_pixels = target_counts(pred_components, gt_components, max_distance)
        n_gt = len(gt_components.areas)
    else:
        n_pt = n_match = false_pixels = 0
        n_gt = 0 if gt_components is None else len(gt_components.areas)
    return ImageStats(
        int(pred.size), tp, n_pred - tp, n_target - tp, n_gt, n_pt, n_match, false_pixels
    )


# --------------------------------------------------------------------------------------------
# ROC histograms


def roc_thresholds(bins: int) -> np.ndarray:
    """The ROC thresholds ``k / bins`` for ``k = 0 .. bins`` (float64)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    return np.arange(bins + 1, dtype=np.float64) / bins


def _count_below(prob: np.ndarray, bins: int) -> np.ndarray:
    """Per pixel, the number of ROC thresholds strictly below its probability (0 .. bins).

    A pixel is positive at threshold ``k`` iff its count is > k. The thresholds ``k / bins`` are
    taken in the map's own precision, as :func:`_greater` does. With ``r = rint(p * bins)``,
    ``p`` lies within half a bin of threshold ``r``, so the thresholds below ``r`` are below ``p``,
    those above ``r`` are not, and one exact comparison with threshold ``r`` settles the count.
    """
    flat = prob.ravel()
    thresholds = roc_thresholds(bins).astype(flat.dtype)
    r = np.rint(flat * flat.dtype.type(bins)).astype(np.intp)
    np.clip(r, 0, bins, out=r)
    r += flat > thresholds.take(r)
    return r


def roc_histogram(prob: np.ndarray, target: np.ndarray, bins: int = 100) -> np.ndarray:
    """``(2, bins + 1)`` int64 histogram of one image: row 0 background, row 1 target pixels, by
    the number of ROC thresholds (:func:`roc_thresholds`) strictly below their probability.

    Histograms of several images (or processes) add up; :func:`roc_from_histogram` turns the sum
    into the curve.
    """
    count = _count_below(prob, bins)
    all_hist = np.bincount(count, minlength=bins + 1)
    pos_hist = np.bincount(count[np.flatnonzero(target)], minlength=bins + 1)
    return np.stack([all_hist - pos_hist, pos_hist]).astype(np.int64)


def roc_from_histogram(hist: np.ndarray) -> dict[str, np.ndarray | float]:
    """ROC from an accumulated :func:`roc_histogram`.

    Returns a dict with ``thresholds`` (k / bins), ``tpr`` and ``fpr`` (pixel rates at ``p > t``
    for each threshold), and ``AUC``: trapezoidal area under (fpr, tpr) with the end points (0, 0)
    and (1, 1) added; NaN when there are no target or no background pixels.
    """
    bins = hist.shape[1] - 1
    # positives at threshold k = pixels with count > k; above[:, j] = pixels with count >= j
    padded = np.concatenate([hist, np.zeros((2, 1), hist.dtype)], axis=1)
    above = np.cumsum(padded[:, ::-1], axis=1)[:, ::-1]
    neg_total, pos_total = above[0, 0], above[1, 0]
    fp = above[0, 1:]
    tp = above[1, 1:]
    fpr = fp / neg_total if neg_total else np.full(bins + 1, np.nan)
    tpr = tp / pos_total if pos_total else np.full(bins + 1, np.nan)
    return {"thresholds": roc_thresholds(bins), "fpr": fpr, "tpr": tpr, "AUC": auc(fpr, tpr)}


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a ROC given at any thresholds, with (0, 0) and (1, 1) added; NaN if undefined."""
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    if fpr.size == 0 or np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    x = np.concatenate([[0.0], fpr, [1.0]])
    y = np.concatenate([[0.0], tpr, [1.0]])
    order = np.lexsort((y, x))  # by fpr, ties by tpr: the curve's staircase
    x, y = x[order], y[order]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


# --------------------------------------------------------------------------------------------
# From accumulated counts to metrics (shared by the functional forms and the metric classes)

SCALAR_KEYS = (
    "IoU", "nIoU", "PixAcc", "Pd", "Fa", "F1", "precision", "recall",
    "pixel_precision", "pixel_recall", "pixel_F1", "target_precision", "target_recall", "target_F1",
)
"""Keys of :func:`scores_from_counts`, in display order."""


def image_iou(stats: ImageStats, empty_gt: str = "community") -> float:
    """IoU of one image. Ground truth and prediction both empty: ``EMPTY_GT_RULES[empty_gt]``
    (0.0 by default, as the community code computes it); empty ground truth with a prediction: 0.0."""
    union = stats.tp + stats.fp + stats.fn
    if union == 0:
        return EMPTY_GT_RULES[empty_gt]
    return stats.tp / union


def scores_from_counts(
    tp: int, fp: int, fn: int, pixels: int, gt_targets: int, pred_targets: int,
    matched_targets: int, false_alarm_pixels: int, iou_sum: float, images: int,
) -> dict[str, float]:
    """Every scalar metric (:data:`SCALAR_KEYS`) from dataset totals; all NaN when ``images == 0``.

    ``F1``, ``precision`` and ``recall`` are the target-level values (``recall`` = ``Pd``); the
    pooled pixel F1 is ``pixel_F1`` (= 2 IoU / (1 + IoU), so it adds nothing to IoU).
    """
    if images == 0:
        return {k: float("nan") for k in SCALAR_KEYS}
    m = matched_targets
    t_fp, t_fn = pred_targets - m, gt_targets - m
    target_precision = safe_ratio(m, pred_targets, t_fn)
    target_recall = safe_ratio(m, gt_targets, t_fp)
    target_f1 = f1_from_counts(m, t_fp, t_fn)
    pixel_recall = safe_ratio(tp, tp + fn, fp)
    return {
        "IoU": safe_ratio(tp, tp + fp + fn, 0),
        "nIoU": float(iou_sum) / images,
        "PixAcc": pixel_recall,
        "Pd": target_recall,
        "Fa": float(false_alarm_pixels) / pixels,
        "F1": target_f1,
        "precision": target_precision,
        "recall": target_recall,
        "pixel_precision": safe_ratio(tp, tp + fp, fn),
        "pixel_recall": pixel_recall,
        "pixel_F1": f1_from_counts(tp, fp, fn),
        "target_precision": target_precision,
        "target_recall": target_recall,
        "target_F1": target_f1,
    }


def curve_counts(
    prob: np.ndarray, gt_components: Components, thresholds: np.ndarray, max_distance: float = MATCH_DISTANCE
) -> np.ndarray:
    """``(3, K)`` int64 counts of one image at each threshold (``prob > t``): predicted targets,
    matched targets, false-alarm pixels."""
    out = np.zeros((3, len(thresholds)), np.int64)
    for k, thr in enumerate(thresholds):
        out[:, k] = target_counts(label_components(_greater(prob, float(thr))), gt_components, max_distance)
    return out


def pd_fa_from_curve_counts(counts: np.ndarray, gt_targets: int, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Pd, Fa)`` arrays from summed :func:`curve_counts`."""
    pd = np.array([safe_ratio(m, gt_targets, n - m) for n, m in zip(counts[0], counts[1])], np.float64)
    fa = counts[2] / pixels if pixels else np.full(counts.shape[1], np.nan)
    return pd, fa


# --------------------------------------------------------------------------------------------
# Functional forms: one call scores the images it is given, as one dataset


def _score(pred, target, threshold, input, max_distance, targets: bool, empty_gt: str = "community") -> dict[str, float]:
    check_empty_gt(empty_gt)
    totals = np.zeros(len(ImageStats._fields), np.int64)
    iou_sum, images = 0.0, 0
    for p, t, _ in iter_binary(pred, target, threshold, input):
        s = image_stats(p, t, max_distance, targets=targets)
        totals += s
        iou_sum += image_iou(s, empty_gt)
        images += 1
    c = dict(zip(ImageStats._fields, (int(v) for v in totals)))
    return scores_from_counts(**c, iou_sum=iou_sum, images=images)


def scores(
    pred: Any,
    target: Any,
    threshold: float = 0.5,
    input: str = "probs",
    max_distance: float = MATCH_DISTANCE,
    empty_gt: str = "community",
) -> dict[str, float]:
    """Every scalar metric of :data:`SCALAR_KEYS` over the given images (see the package docs);
    ``empty_gt`` is the nIoU rule of :data:`EMPTY_GT_RULES`."""
    return _score(pred, target, threshold, input, max_distance, True, empty_gt)


def _pixel_scores(pred, target, threshold, input) -> dict[str, float]:
    return _score(pred, target, threshold, input, MATCH_DISTANCE, False)


def iou(pred: Any, target: Any, threshold: float = 0.5, input: str = "probs") -> float:
    """Dataset-pooled IoU: sum TP / sum (TP + FP + FN) over the images, in [0, 1]."""
    return _pixel_scores(pred, target, threshold, input)["IoU"]


def niou(pred: Any, target: Any, threshold: float = 0.5, input: str = "probs", empty_gt: str = "community") -> float:
    """Mean per-image IoU (:func:`image_iou`), in [0, 1]. ``empty_gt``: the score of an image whose
    ground truth and prediction are both empty, ``"community"`` 0 (default) or ``"one"`` 1."""
    return _score(pred, target, threshold, input, MATCH_DISTANCE, False, empty_gt)["nIoU"]


def pix_acc(pred: Any, target: Any, threshold: float = 0.5, input: str = "probs") -> float:
    """PixAcc as the IRSTD toolboxes compute it: sum TP / sum ground-truth pixels (pixel recall)."""
    return _pixel_scores(pred, target, threshold, input)["PixAcc"]


def pixel_precision_recall_f1(
    pred: Any, target: Any, threshold: float = 0.5, input: str = "probs"
) -> dict[str, float]:
    """Pooled pixel ``precision`` TP/(TP+FP), ``recall`` TP/(TP+FN), ``F1`` 2TP/(2TP+FP+FN)."""
    s = _pixel_scores(pred, target, threshold, input)
    return {"precision": s["pixel_precision"], "recall": s["pixel_recall"], "F1": s["pixel_F1"]}


def pd_fa(
    pred: Any, target: Any, threshold: float = 0.5, input: str = "probs", max_distance: float = MATCH_DISTANCE
) -> dict[str, float]:
    """``Pd`` = matched / ground-truth targets; ``Fa`` = false-alarm pixels / all pixels (a plain
    ratio, usually shown x1e-6). Matching: :func:`match_components`."""
    s = scores(pred, target, threshold, input, max_distance)
    return {"Pd": s["Pd"], "Fa": s["Fa"]}


def target_precision_recall_f1(
    pred: Any, target: Any, threshold: float = 0.5, input: str = "probs", max_distance: float = MATCH_DISTANCE
) -> dict[str, float]:
    """Target-level ``precision`` (matched / predicted targets), ``recall`` (matched /
    ground-truth targets, = Pd) and ``F1``, with targets matched as for Pd."""
    s = scores(pred, target, threshold, input, max_distance)
    return {"precision": s["target_precision"], "recall": s["target_recall"], "F1": s["target_F1"]}


def roc_curve(pred: Any, target: Any, bins: int = 100, input: str = "probs") -> dict[str, np.ndarray | float]:
    """Pixel ROC at the thresholds ``k / bins`` with its AUC (see :func:`roc_from_histogram`)."""
    hist = np.zeros((2, bins + 1), np.int64)
    for _, t, prob in iter_binary(pred, target, 0.5, input, probabilities=True):
        hist += roc_histogram(prob, t, bins)
    return roc_from_histogram(hist)


DEFAULT_PD_FA_THRESHOLDS = tuple(k / 20 for k in range(1, 20))
"""Thresholds of the Pd-Fa curve by default: 0.05, 0.10, ..., 0.95."""


def pd_fa_curve(
    pred: Any,
    target: Any,
    thresholds: Sequence[float] = DEFAULT_PD_FA_THRESHOLDS,
    input: str = "probs",
    max_distance: float = MATCH_DISTANCE,
) -> dict[str, np.ndarray]:
    """``Pd`` and ``Fa`` arrays at each of ``thresholds`` (pixel is target iff probability > t)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    counts = np.zeros((3, len(thresholds)), np.int64)
    gt_targets = pixels = 0
    for _, t, prob in iter_binary(pred, target, 0.5, input, probabilities=True):
        gt = label_components(t)
        gt_targets += len(gt.areas)
        pixels += t.size
        counts += curve_counts(prob, gt, thresholds, max_distance)
    pd, fa = pd_fa_from_curve_counts(counts, gt_targets, pixels)
    return {"thresholds": thresholds, "Pd": pd, "Fa": fa}
