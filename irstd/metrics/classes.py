"""Metric objects with ``update(pred, target)`` / ``compute()`` / ``reset()`` / ``sync()``.

Every object keeps its own states: integer counts and float sums (NumPy ``int64`` / ``float64``
arrays) that add up over images, so that :meth:`Metric.sync` can sum them across
``torch.distributed`` processes with one ``all_reduce`` per dtype. Input conventions and the
definitions are in the :mod:`irstd.metrics` package docstring.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np

from irstd.metrics.functional import (
    DEFAULT_PD_FA_THRESHOLDS,
    INPUT_KINDS,
    MATCH_DISTANCE,
    ImageStats,
    check_empty_gt,
    curve_counts,
    image_iou,
    image_stats,
    iter_binary,
    label_components,
    pd_fa_from_curve_counts,
    roc_from_histogram,
    roc_histogram,
    scores_from_counts,
)

__all__ = [
    "IoU",
    "Metric",
    "NIoU",
    "PdFa",
    "PdFaCurve",
    "PixAcc",
    "PixelPrecisionRecallF1",
    "ROC",
    "SegmentationMetrics",
    "TargetPrecisionRecallF1",
]

_COUNT_FIELDS = ImageStats._fields


def _distributed():
    """``torch.distributed`` when a process group with several processes is running, else None."""
    torch = sys.modules.get("torch")  # no torch imported: no process group either
    if torch is None:
        return None
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


class Metric:
    """Base class: accumulates per-image counts; subclasses choose which and what ``compute`` returns.

    Args:
        threshold: a pixel is predicted target iff its probability is > threshold (in [0, 1]).
        input: how float predictions are read: ``"probs"``, ``"logits"`` or ``"auto"``
            (:func:`irstd.metrics.functional.resolve_input`).
        max_distance: centroid distance (pixels, strict ``<``) for matching targets.
        empty_gt: nIoU rule for an image whose ground truth and prediction are both empty:
            ``"community"`` (default) scores it 0 as ACM's ``SamplewiseSigmoidMetric`` does,
            ``"one"`` scores it 1 (:data:`irstd.metrics.functional.EMPTY_GT_RULES`).

    Subclass switches: ``_targets`` (label components, match them), ``_roc_bins`` (accumulate ROC
    histograms), ``_curve_thresholds`` (Pd-Fa curve).
    """

    _targets = False

    def __init__(
        self,
        threshold: float = 0.5,
        input: str = "probs",
        max_distance: float = MATCH_DISTANCE,
        roc_bins: int | None = None,
        curve_thresholds: Sequence[float] | None = None,
        empty_gt: str = "community",
    ):
        check_empty_gt(empty_gt)
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        if input not in INPUT_KINDS:
            raise ValueError(f"input must be one of {INPUT_KINDS}, got {input!r}")
        if not max_distance > 0:
            raise ValueError(f"max_distance must be > 0, got {max_distance}")
        if roc_bins is not None and int(roc_bins) < 1:
            raise ValueError(f"roc_bins must be >= 1, got {roc_bins}")
        self.threshold = float(threshold)
        self.input = input
        self.max_distance = float(max_distance)
        self.empty_gt = empty_gt
        self._roc_bins = None if roc_bins is None else int(roc_bins)
        self._curve_thresholds = None
        if curve_thresholds is not None:
            thr = np.asarray(curve_thresholds, dtype=np.float64).ravel()
            if thr.size == 0 or (thr < 0).any() or (thr > 1).any():
                raise ValueError("curve thresholds must be a non-empty sequence of values in [0, 1]")
            self._curve_thresholds = thr
        self._states: dict[str, np.ndarray] = {}
        self._synced = False
        self.reset()

    # -- states ---------------------------------------------------------------------------------

    def _initial_states(self) -> dict[str, np.ndarray]:
        states = {
            "counts": np.zeros(len(_COUNT_FIELDS), np.int64),  # ImageStats fields, summed
            "images": np.zeros(1, np.int64),
            "iou_sum": np.zeros(1, np.float64),  # sum of per-image IoU (nIoU)
        }
        if self._roc_bins is not None:
            states["roc_hist"] = np.zeros((2, self._roc_bins + 1), np.int64)
        if self._curve_thresholds is not None:
            states["curve_counts"] = np.zeros((3, len(self._curve_thresholds)), np.int64)
        return states

    def reset(self) -> None:
        """Forget everything seen so far (also undoes :meth:`sync`)."""
        self._states = self._initial_states()
        self._synced = False

    def update(self, pred: Any, target: Any) -> None:
        """Add images: one ``H x W``, a batch ``B x H x W`` / ``B x 1 x H x W``, or a list of
        arrays of different sizes; NumPy or torch (any device); at their original size.

        Raises:
            ValueError: shapes differ, a bad layout, NaN, or probabilities outside [0, 1] with
                ``input="probs"``.
            RuntimeError: called after :meth:`sync` without :meth:`reset`.
        """
        if self._synced:
            raise RuntimeError("update() after sync(): the states are already global; call reset() first")
        need_targets = self._targets or self._curve_thresholds is not None
        need_prob = self._roc_bins is not None or self._curve_thresholds is not None
        st = self._states
        for binary, gt, prob in iter_binary(pred, target, self.threshold, self.input, probabilities=need_prob):
            gt_comp = label_components(gt) if need_targets else None
            s = image_stats(binary, gt, self.max_distance, targets=self._targets, gt_components=gt_comp)
            st["counts"] += s
            st["images"] += 1
            st["iou_sum"] += image_iou(s, self.empty_gt)
            if self._roc_bins is not None:
                st["roc_hist"] += roc_histogram(prob, gt, self._roc_bins)
            if self._curve_thresholds is not None:
                st["curve_counts"] += curve_counts(prob, gt_comp, self._curve_thresholds, self.max_distance)

    def sync(self) -> None:
        """Sum the states over all ``torch.distributed`` processes (when a group of more than one
        process is initialised; otherwise nothing to do), so that every process then computes the
        global metrics. Idempotent until the next :meth:`reset`; :meth:`update` is refused in
        between, since the states are already global. NCCL groups reduce on the current CUDA
        device, others (gloo) on the CPU."""
        if self._synced:
            return
        dist = _distributed()
        if dist is not None:
            import torch

            device = (
                torch.device("cuda", torch.cuda.current_device())
                if dist.get_backend() == "nccl"
                else torch.device("cpu")
            )
            for dtype in (np.int64, np.float64):
                names = [n for n, v in self._states.items() if v.dtype == dtype]
                flat = np.concatenate([self._states[n].ravel() for n in names])
                tensor = torch.from_numpy(flat).to(device)
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
                flat = tensor.cpu().numpy()
                offset = 0
                for n in names:
                    size = self._states[n].size
                    self._states[n] = flat[offset : offset + size].reshape(self._states[n].shape).copy()
                    offset += size
        self._synced = True

    # -- results ----------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Dataset totals: ``images``, ``pixels``, ``tp``, ``fp``, ``fn``, and (for target-level
        metrics) ``gt_targets``, ``pred_targets``, ``matched_targets``, ``false_alarm_pixels``."""
        out = {"images": int(self._states["images"][0])}
        out.update({k: int(v) for k, v in zip(_COUNT_FIELDS, self._states["counts"])})
        return out

    def _scores(self) -> dict[str, float]:
        c = self.counts()
        images = c.pop("images")
        return scores_from_counts(**c, iou_sum=float(self._states["iou_sum"][0]), images=images)

    def _roc(self) -> dict[str, Any]:
        return roc_from_histogram(self._states["roc_hist"])

    def _pd_fa_curve(self) -> dict[str, np.ndarray]:
        c = self.counts()
        pd, fa = pd_fa_from_curve_counts(self._states["curve_counts"], c["gt_targets"], c["pixels"])
        return {"thresholds": self._curve_thresholds.copy(), "Pd": pd, "Fa": fa}

    def compute(self) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold}, input={self.input!r}, images={self.counts()['images']})"


class IoU(Metric):
    """Dataset-pooled IoU: sum TP / sum (TP + FP + FN); ``compute() -> float`` in [0, 1]."""

    def __init__(self, threshold: float = 0.5, input: str = "probs"):
        super().__init__(threshold, input)

    def compute(self) -> float:
        return self._scores()["IoU"]


class NIoU(Metric):
    """Mean of per-image IoU; ``compute() -> float`` in [0, 1]. An image with empty ground truth
    scores 0, also when nothing is predicted (``empty_gt="community"``, the toolboxes' value); with
    ``empty_gt="one"`` an empty prediction on it scores 1."""

    def __init__(self, threshold: float = 0.5, input: str = "probs", empty_gt: str = "community"):
        super().__init__(threshold, input, empty_gt=empty_gt)

    def compute(self) -> float:
        return self._scores()["nIoU"]


class PixAcc(Metric):
    """PixAcc as the IRSTD toolboxes define it: sum TP / sum ground-truth pixels (pixel recall);
    ``compute() -> float`` in [0, 1]."""

    def __init__(self, threshold: float = 0.5, input: str = "probs"):
        super().__init__(threshold, input)

    def compute(self) -> float:
        return self._scores()["PixAcc"]


class PixelPrecisionRecallF1(Metric):
    """Pooled pixel precision, recall and F1; ``compute() -> {"precision", "recall", "F1"}``."""

    def __init__(self, threshold: float = 0.5, input: str = "probs"):
        super().__init__(threshold, input)

    def compute(self) -> dict[str, float]:
        s = self._scores()
        return {"precision": s["pixel_precision"], "recall": s["pixel_recall"], "F1": s["pixel_F1"]}


class PdFa(Metric):
    """Probability of detection and false-alarm rate, as the community computes them.

    ``compute() -> {"Pd", "Fa"}``: Pd = matched / ground-truth targets (dataset), Fa = pixels of
    unmatched predicted targets / all pixels of all images (a plain ratio; shown x1e-6).
    """

    _targets = True

    def __init__(self, threshold: float = 0.5, input: str = "probs", max_distance: float = MATCH_DISTANCE):
        super().__init__(threshold, input, max_distance)

    def compute(self) -> dict[str, float]:
        s = self._scores()
        return {"Pd": s["Pd"], "Fa": s["Fa"]}


class TargetPrecisionRecallF1(Metric):
    """Target-level precision (matched / predicted targets), recall (= Pd) and F1;
    ``compute() -> {"precision", "recall", "F1"}``."""

    _targets = True

    def __init__(self, threshold: float = 0.5, input: str = "probs", max_distance: float = MATCH_DISTANCE):
        super().__init__(threshold, input, max_distance)

    def compute(self) -> dict[str, float]:
        s = self._scores()
        return {"precision": s["target_precision"], "recall": s["target_recall"], "F1": s["target_F1"]}


class ROC(Metric):
    """Pixel ROC over the thresholds ``k / bins``, accumulated as histograms (so it reduces across
    processes exactly). ``compute() -> {"thresholds", "fpr", "tpr", "AUC"}``."""

    def __init__(self, bins: int = 100, input: str = "probs"):
        super().__init__(0.5, input, roc_bins=bins)

    def compute(self) -> dict[str, Any]:
        return self._roc()


class PdFaCurve(Metric):
    """Pd and Fa at several thresholds; ``compute() -> {"thresholds", "Pd", "Fa"}`` (arrays)."""

    def __init__(
        self,
        thresholds: Sequence[float] = DEFAULT_PD_FA_THRESHOLDS,
        input: str = "probs",
        max_distance: float = MATCH_DISTANCE,
    ):
        super().__init__(0.5, input, max_distance, curve_thresholds=thresholds)

    def compute(self) -> dict[str, np.ndarray]:
        return self._pd_fa_curve()


class SegmentationMetrics(Metric):
    """All IRSTD metrics in one pass (components are labelled once per image).

    Args:
        threshold: probability threshold (``p > threshold``), default 0.5.
        input: ``"probs"`` (default), ``"logits"`` or ``"auto"``.
        max_distance: target matching distance in pixels (strict), default 3.
        empty_gt: nIoU score of an image with empty ground truth and empty prediction:
            ``"community"`` 0 (default), ``"one"`` 1.
        curves: also accumulate the pixel ROC (``roc_bins`` thresholds k / bins) and the Pd-Fa
            curve (``pd_fa_thresholds``); adds ``AUC`` to :meth:`compute` and enables
            :meth:`compute_curves`.

    ``compute()`` returns floats under the keys of
    :data:`irstd.metrics.functional.SCALAR_KEYS` (``IoU``, ``nIoU``, ``PixAcc``, ``Pd``, ``Fa``,
    ``F1``, ``precision``, ``recall``, ``pixel_precision``, ``pixel_recall``, ``pixel_F1``,
    ``target_precision``, ``target_recall``, ``target_F1``) plus ``AUC`` with ``curves=True``.
    ``F1``, ``precision`` and ``recall`` are target-level; ``Fa`` is a plain ratio.
    """

    _targets = True

    def __init__(
        self,
        threshold: float = 0.5,
        input: str = "probs",
        max_distance: float = MATCH_DISTANCE,
        curves: bool = False,
        roc_bins: int = 100,
        pd_fa_thresholds: Sequence[float] = DEFAULT_PD_FA_THRESHOLDS,
        empty_gt: str = "community",
    ):
        self.curves = bool(curves)
        super().__init__(
            threshold,
            input,
            max_distance,
            roc_bins=roc_bins if curves else None,
            curve_thresholds=pd_fa_thresholds if curves else None,
            empty_gt=empty_gt,
        )

    def compute(self) -> dict[str, float]:
        out = self._scores()
        if self.curves:
            out["AUC"] = float(self._roc()["AUC"])
        return out

    def compute_curves(self) -> dict[str, dict[str, Any]]:
        """``{"roc": {thresholds, fpr, tpr, AUC}, "pd_fa": {thresholds, Pd, Fa}}`` (needs ``curves=True``)."""
        if not self.curves:
            raise RuntimeError("curves were not accumulated: create SegmentationMetrics(curves=True)")
        return {"roc": self._roc(), "pd_fa": self._pd_fa_curve()}

