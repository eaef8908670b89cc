"""A classic method (:mod:`irstd.classic`) behind the interface of :class:`irstd.engine.predictor.Detector`.

:class:`ClassicDetector` has the attributes and methods the prediction and evaluation paths use
(``predict``, ``probability``, ``threshold``, ``name``, ``device``), so ``irstd predict
--method NAME`` goes through :func:`irstd.engine.predictor.predict_files` (the one mask writer)
and ``irstd test --method NAME`` through :func:`irstd.engine.evaluator.evaluate` (the one metrics
path), exactly as a network does.
"""

from __future__ import annotations

import numpy as np

from irstd.classic.base import CLASSIC, DEFAULT_K, RULES, saliency_to_probability
from irstd.engine.predictor import Prediction, find_targets
from irstd.errors import IRSTDError

__all__ = ["ClassicDetector"]


class ClassicDetector:
    """Detect targets with a registered classic method.

    Args:
        method: a name of :data:`irstd.classic.CLASSIC` (``irstd.classic.list_methods()``).
        rule: saliency-to-mask rule, ``"minmax"`` (default) or ``"adaptive"``
            (:func:`irstd.classic.base.saliency_to_probability`).
        k: the adaptive rule's ``k`` in ``mean + k * std``.
        threshold: threshold on the rule's score in [0, 1]; 0.5 is the rule itself (with
            ``"minmax"`` a threshold ``t`` is "min-max normalised saliency > t").
        params: keyword arguments of the method (its paper's values by default).

    ``probability(image)`` is the rule's score map, so ROC/AUC curves of ``irstd test`` sweep the
    saliency in the same order as the method ranks pixels.
    """

    model = None
    in_chans = 1

    def __init__(self, method: str, rule: str = "minmax", k: float = DEFAULT_K, threshold: float | None = None, **params):
        self.method = str(method).lower()
        self.fn = CLASSIC.get(self.method)
        if rule not in RULES:
            raise IRSTDError(f"unknown saliency-to-mask rule {rule!r}; choose one of {', '.join(RULES)}")
        self.rule = rule
        self.k = float(k)
        self.threshold = 0.5 if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise IRSTDError(f"threshold must be in [0, 1], got {threshold}")
        self.params = dict(params)
        self.device = "cpu"
        rule_s = "min-max > 0.5" if rule == "minmax" else f"mean + {self.k:g} std"
        self.name = f"{self.method} (classic, {rule_s})"

    def __repr__(self) -> str:
        return f"ClassicDetector({self.method}, rule={self.rule}, k={self.k:g}, threshold={self.threshold})"

    def saliency(self, image: np.ndarray) -> np.ndarray:
        """The method's raw ``float32`` saliency map."""
        return self.fn(image, **self.params)

    def probability(self, image: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] (``float32 H x W``) for a raw frame of any dtype."""
        return saliency_to_probability(self.saliency(image), self.rule, self.k)

    def predict(self, image: np.ndarray) -> Prediction:
        """Scores, mask and detections of one raw frame (same fields as a network's)."""
        prob = self.probability(image)
        return Prediction(prob=prob, mask=prob > self.threshold, detections=find_targets(prob, self.threshold))
