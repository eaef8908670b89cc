"""Segmentation losses on logits, and the deep-supervision weighting the trainer uses.

All functions take logits (any real values) and targets in {0, 1} (float, same shape ``B x 1 x H x W``)
and compute in float32 whatever the input precision (AMP-safe). Probabilities are ``sigmoid(logits)``.

* :func:`soft_iou_loss`: ``1 - (sum(p t) + s) / (sum(p) + sum(t) - sum(p t) + s)``.
* :func:`dice_loss`: ``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)``.
* :func:`bce_loss`: mean binary cross-entropy, optional positive-class weight.
* :func:`focal_loss`: mean of ``alpha_t (1 - p_t) ** gamma * BCE`` (Lin et al. 2017).

Soft-IoU and Dice are pooled over the whole batch by default (the sums run over every pixel of
every image, as the public ACM/DNANet code does); ``per_image=True`` computes them per image and
averages. With ``reduction="none"`` every loss returns one value per image (shape ``B``), which
strategies use for per-sample rewards.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.errors import IRSTDError
from irstd.registry import Registry

__all__ = [
    "soft_iou_loss",
    "dice_loss",
    "bce_loss",
    "focal_loss",
    "SegLoss",
    "build_loss",
    "deep_supervision_weights",
    "LOSSES",
    "DEEP_SUPERVISION",
]


def _sums(logits: torch.Tensor, target: torch.Tensor, per_image: bool):
    p = torch.sigmoid(logits.float())
    t = target.float()
    dims = tuple(range(1, p.dim())) if per_image else tuple(range(p.dim()))
    return (p * t).sum(dims), p.sum(dims), t.sum(dims)


def _reduce(per_pixel: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_pixel.flatten(1).mean(1)
    return per_pixel.mean()


def soft_iou_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    smooth: float = 1.0,
    per_image: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Soft (differentiable) IoU loss in [0, 1].

    Args:
        logits: ``B x 1 x H x W`` raw scores.
        target: same shape, values in {0, 1}.
        smooth: additive smoothing (pixels) in numerator and denominator; keeps empty images finite.
        per_image: IoU per image then mean (else one IoU over all pixels of the batch).
        reduction: ``"mean"`` (scalar) or ``"none"`` (one value per image, always per-image IoU).
    """
    per = per_image or reduction == "none"
    inter, psum, tsum = _sums(logits, target, per)
    loss = 1.0 - (inter + smooth) / (psum + tsum - inter + smooth)
    return loss if reduction == "none" else loss.mean()


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    smooth: float = 1.0,
    per_image: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Soft Dice loss in [0, 1]; arguments as :func:`soft_iou_loss`."""
    per = per_image or reduction == "none"
    inter, psum, tsum = _sums(logits, target, per)
    loss = 1.0 - (2.0 * inter + smooth) / (psum + tsum + smooth)
    return loss if reduction == "none" else loss.mean()


def bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    pos_weight: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean binary cross-entropy on logits (numerically stable form).

    ``pos_weight`` multiplies the loss of target pixels (e.g. 10 to counter the rarity of targets).
    """
    pw = None if pos_weight is None else torch.tensor(float(pos_weight), device=logits.device)
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=pw, reduction="none")
    return _reduce(per_pixel, reduction)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Sigmoid focal loss: mean of ``alpha_t * (1 - p_t) ** gamma * BCE``.

    ``alpha`` in [0, 1] weighs target pixels (``1 - alpha`` background); a negative alpha disables
    the weighting. ``gamma >= 0`` down-weights easy pixels; ``gamma = 0, alpha < 0`` is plain BCE.
    """
    x, t = logits.float(), target.float()
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p = torch.sigmoid(x)
    p_t = p * t + (1.0 - p) * (1.0 - t)
    per_pixel = ce * (1.0 - p_t).pow(gamma)
    if alpha >= 0:
        per_pixel = (alpha * t + (1.0 - alpha) * (1.0 - t)) * per_pixel
    return _reduce(per_pixel, reduction)


# Loss terms by name, for ``loss.name`` (``softiou+bce``). Each entry maps ``(seg_loss, logits,
# target, reduction)`` to the term, reading its settings from the :class:`SegLoss`.
LOSSES = Registry("loss term")
LOSSES.register("softiou", lambda s, x, t, r: soft_iou_loss(x, t, s.smooth, s.per_image, r))
LOSSES.register("dice", lambda s, x, t, r: dice_loss(x, t, s.smooth, s.per_image, r))
LOSSES.register("bce", lambda s, x, t, r: bce_loss(x, t, s.pos_weight, r))
LOSSES.register("focal", lambda s, x, t, r: focal_loss(x, t, s.focal_alpha, s.focal_gamma, r))

# Output weightings of deep-supervised models, for ``loss.deep_supervision``.
DEEP_SUPERVISION = ("mean", "sum", "final")


def deep_supervision_weights(spec: str | Sequence[float], n: int) -> list[float]:
    """Weights of ``n`` outputs (element 0 the final one) for ``spec`` = ``mean`` | ``sum`` | ``final``
    | explicit list of ``n`` numbers."""
    if isinstance(spec, str):
        if spec not in DEEP_SUPERVISION:
            raise ValueError(f"unknown deep-supervision weighting {spec!r}")
        if spec == "mean":
            return [1.0 / n] * n
        if spec == "sum":
            return [1.0] * n
        if spec == "final":
            return [1.0] + [0.0] * (n - 1)
    weights = [float(w) for w in spec]
    if len(weights) != n:
        raise IRSTDError(
            f"loss.deep_supervision lists {len(weights)} weights but the model returns {n} outputs"
        )
    return weights


class SegLoss(nn.Module):
    """Weighted sum of loss terms, applied to every output of a deep-supervised model.

    Args:
        terms: names registered in :data:`LOSSES`.
        weights: one weight per term (default 1 each).
        deep_supervision: weighting of the outputs, see :func:`deep_supervision_weights`.
        smooth, per_image: for Soft-IoU and Dice.
        focal_alpha, focal_gamma: for focal.
        pos_weight: for BCE.

    ``forward(outputs, target, reduction="mean")``: ``outputs`` is one logit tensor or a list
    (element 0 final, the rest side outputs, all at the target's size). Returns a scalar, or one
    value per image with ``reduction="none"``. :attr:`last_parts` holds the detached per-term values
    of the final output of the last call (for logging).
    """

    def __init__(
        self,
        terms: Sequence[str] = ("softiou",),
        weights: Sequence[float] | None = None,
        deep_supervision: str | Sequence[float] = "mean",
        smooth: float = 1.0,
        per_image: bool = False,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        pos_weight: float | None = None,
    ):
        super().__init__()
        self.terms = [t.strip().lower() for t in terms]
        self._fns = [LOSSES.get(t) for t in self.terms]
        self.weights = [1.0] * len(self.terms) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.terms):
            raise ValueError("one weight per loss term")
        self.deep_supervision = deep_supervision
        self.smooth = float(smooth)
        self.per_image = bool(per_image)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.pos_weight = pos_weight
        self.last_parts: dict[str, float] = {}

    def term(self, name: str, logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """One loss term on one output."""
        return LOSSES.get(name)(self, logits, target, reduction)

    def single(self, logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean", record: bool = False) -> torch.Tensor:
        """Weighted sum of the terms on one output tensor."""
        if logits.shape != target.shape:
            raise ValueError(f"output shape {tuple(logits.shape)} differs from target shape {tuple(target.shape)}")
        total = None
        for name, fn, w in zip(self.terms, self._fns, self.weights):
            value = fn(self, logits, target, reduction)
            if record:
                self.last_parts[name] = float(value.detach().mean())
            total = w * value if total is None else total + w * value
        return total

    def forward(self, outputs, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        weights = deep_supervision_weights(self.deep_supervision, len(outs))
        total = None
        for i, (out, w) in enumerate(zip(outs, weights)):
            if w == 0.0:
                continue
            value = w * self.single(out, target, reduction, record=(i == 0))
            total = value if total is None else total + value
        if total is None:  # every weight zero: keep the graph valid
            total = outs[0].float().sum() * 0.0
        return total

    def extra_repr(self) -> str:
        return f"terms={self.terms}, weights={self.weights}, deep_supervision={self.deep_supervision!r}"


def build_loss(cfg) -> SegLoss:
    """:class:`SegLoss` from a :class:`irstd.config.LossConfig`."""
    return SegLoss(
        terms=[t for t in cfg.name.split("+")],
        weights=cfg.weights,
        deep_supervision=cfg.deep_supervision,
        smooth=cfg.smooth,
        per_image=cfg.per_image,
        focal_alpha=cfg.focal_alpha,
        focal_gamma=cfg.focal_gamma,
        pos_weight=cfg.pos_weight,
    )
