"""IRSTD metrics: pixel-level, target-level (Pd / Fa) and curves, as objects and functions.

Usage::

    from irstd.metrics import SegmentationMetrics
    metrics = SegmentationMetrics(threshold=0.5, input="logits")
    for batch in loader:
        metrics.update(model(batch["image"]), batch["mask"])   # B x 1 x H x W, original size
    metrics.sync()             # sums the states over torch.distributed processes, if any
    print(metrics.compute())   # {"IoU": ..., "nIoU": ..., "Pd": ..., "Fa": ..., "F1": ..., ...}

Inputs
------
* Predictions and targets: one image ``H x W``, a batch ``B x H x W`` or ``B x 1 x H x W``, or a
  list of such arrays (different sizes allowed); NumPy arrays or torch tensors on any device.
  Metrics are computed at the size given: evaluate at the original image size (pad to the
  network's stride, crop back), never resized.
* Predictions are binarised with ``probability > threshold`` (default 0.5; strict ``>``, in the
  map's own precision as ``prob > t`` in NumPy or torch: a float32 map is compared with
  float32(t)). ``input`` says how float values are read:
  ``"probs"`` (default; must lie in [0, 1], else ValueError), ``"logits"`` (compared with
  ``logit(threshold)``: ``sigmoid(x) > threshold`` without the sigmoid's float32 saturation), or ``"auto"`` (probabilities if
  every float value of the ``update`` call lies in [0, 1], else logits; a logit map lying entirely
  in [0, 1] would be misread, so model code should say ``"logits"``). Whatever ``input`` says,
  ``bool`` arrays are binary masks and integer arrays are quantised probabilities: value / full
  scale, with full scale 1 if the maximum is <= 1 (0/1 masks), else 255 (8-bit) or 65535 (16-bit),
  the arithmetic of :func:`irstd.data.io.read_probability`, so 0/255 masks work as they are.
* Targets: ``bool``, 0/1, 0/255 or 0/65535 masks, binarised by :func:`irstd.data.io.binarize_mask`
  (target iff above half the full scale).

Definitions (TP, FP, FN are pixel counts; sums run over all images of the dataset)
------------------------------------------------------------------------------------
* ``IoU`` = sum TP / sum (TP + FP + FN): pooled over the dataset (often mislabelled mIoU).
* ``nIoU`` = mean over images of the per-image IoU TP / (TP + FP + FN). An image with an empty
  ground truth scores 0, also when nothing is predicted: the community value (ACM's
  ``SamplewiseSigmoidMetric`` and the toolboxes copied from it divide by ``union + eps``).
  ``empty_gt="one"`` (functions and classes) scores the empty/empty case 1 instead; tables name the
  rule (``nIoU (empty GT = 0)``) and JSON reports store it as ``nIoU_empty_gt``. The rule only
  matters for datasets with target-free images (NUAA-SIRST has none; synthetic frames may).
* ``PixAcc`` = sum TP / sum ground-truth pixels, as the toolboxes compute it (= pixel recall).
* ``pixel_precision`` = TP / (TP + FP), ``pixel_recall`` = TP / (TP + FN),
  ``pixel_F1`` = 2 TP / (2 TP + FP + FN), pooled (note ``pixel_F1`` = 2 IoU / (1 + IoU)).
* Targets are the 8-connected components of a mask (diagonal neighbours join), numbered in raster
  order of their first pixel; centroid = mean (row, col) of the component's pixels.
* Matching (Pd, Fa and the target-level scores), per image: for each ground-truth target in label
  order, the first predicted target not yet taken whose centroid is at Euclidean distance strictly
  below 3 px is matched and removed from the pool. ``match_targets(pred, target)`` gives one
  image's outcome under this rule: ground-truth targets hit or missed, predictions that are false
  alarms (the per-frame lines and overlays of ``irstd demo`` and ``irstd test`` use it).
* ``Pd`` = matched ground-truth targets / all ground-truth targets (dataset).
* ``Fa`` = pixels of the predicted targets left unmatched / all pixels of all images: a plain
  ratio, displayed x1e-6. Every unmatched component counts, also one whose area equals a matched
  component's (the DNANet code compared areas and silently dropped those).
* ``target_precision`` = matched / predicted targets, ``target_recall`` = ``Pd``,
  ``target_F1`` = 2 M / (2 M + unmatched predicted + unmatched ground truth).
* ``F1``, ``precision``, ``recall`` (the plain keys) are the TARGET-level values: pixel F1 is a
  function of IoU alone, while target F1 adds the false targets that Pd ignores.
* ``AUC``: area under the pixel ROC (TPR against FPR at thresholds k / bins, k = 0..bins, default
  100 bins, end points (0, 0) and (1, 1) added, trapezoids); accumulated as per-threshold
  histograms, so it reduces across processes exactly. The Pd-Fa curve gives Pd and Fa at a list
  of thresholds (default 0.05, 0.10, ..., 0.95). Logits are turned into sigmoid probabilities for
  the curves.
* ``rce(iou_clean, iou_corrupted)`` = (IoU_clean - IoU_corrupted) / IoU_clean, a fraction.
* Empty denominators (every ratio but the per-image IoU of nIoU): a ratio whose denominator is 0 is 1.0 when no error of the kind it
  measures against was made, else 0.0 (e.g. Pd with no ground-truth target is 1 without false
  targets, 0 with some). With no image at all every value is NaN.
"""

from __future__ import annotations

from irstd.metrics.classes import (
    ROC,
    IoU,
    Metric,
    NIoU,
    PdFa,
    PdFaCurve,
    PixAcc,
    PixelPrecisionRecallF1,
    SegmentationMetrics,
    TargetPrecisionRecallF1,
)
from irstd.metrics.functional import (
    DEFAULT_PD_FA_THRESHOLDS,
    EMPTY_GT_RULES,
    MATCH_DISTANCE,
    SCALAR_KEYS,
    TargetMatch,
    auc,
    iou,
    label_components,
    match_components,
    match_targets,
    niou,
    niou_label,
    pd_fa,
    pd_fa_curve,
    pix_acc,
    pixel_precision_recall_f1,
    rce,
    roc_curve,
    scores,
    target_precision_recall_f1,
)

__all__ = [
    "DEFAULT_PD_FA_THRESHOLDS",
    "EMPTY_GT_RULES",
    "IoU",
    "MATCH_DISTANCE",
    "Metric",
    "NIoU",
    "PdFa",
    "PdFaCurve",
    "PixAcc",
    "PixelPrecisionRecallF1",
    "ROC",
    "SCALAR_KEYS",
    "SegmentationMetrics",
    "TargetMatch",
    "TargetPrecisionRecallF1",
    "auc",
    "iou",
    "label_components",
    "match_components",
    "match_targets",
    "niou",
    "niou_label",
    "pd_fa",
    "pd_fa_curve",
    "pix_acc",
    "pixel_precision_recall_f1",
    "rce",
    "roc_curve",
    "scores",
    "target_precision_recall_f1",
]
