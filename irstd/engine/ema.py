"""Exponential moving average of a network's weights (``train.ema``).

The averaged copy follows the trained network after every optimiser step,
``ema <- d_t * ema + (1 - d_t) * w`` with ``d_t = min(decay, (1 + t) / (10 + t))`` after ``t``
steps (the warm-up keeps the early average from being dominated by the random initialisation).
Floating-point buffers (BatchNorm running statistics) are averaged the same way, integer buffers
copied. The schedule depends only on ``t``, so a resumed run continues the very same average.
It smooths the weight noise of small-batch training, which is where the validation score of a
few dozen images swings most between evaluations.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["ModelEma", "ema_decay"]


def ema_decay(decay: float, step: int) -> float:
    """The decay used at update ``step`` (0-based count of previous updates)."""
    return min(float(decay), (1.0 + step) / (10.0 + step))


class ModelEma:
    """An averaged copy of ``model`` (its own module, eval mode, no gradients).

    Args:
        model: the network being trained (unwrapped from DDP).
        decay: in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold the current weights of ``model`` in, as update number ``step``."""
        w = 1.0 - ema_decay(self.decay, step)
        ours = self.module.state_dict()
        theirs = model.state_dict()
        floats_a, floats_b = [], []
        for k, v in ours.items():
            src = theirs[k]
            if v.dtype.is_floating_point:
                floats_a.append(v)
                floats_b.append(src.detach())
            else:
                v.copy_(src)
        if floats_a:
            torch._foreach_lerp_(floats_a, floats_b, w)
