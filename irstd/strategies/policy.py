"""Corruption policies for corruption-based training: who picks each image's corruption.

* :class:`StrategyNetwork` -- paper 002's strategy generation network N_S: "the general classifier
  structure, five convolution blocks and one fully connected layer", mapping an image to the
  logits of a categorical distribution over corruption actions (corruption x severity).
* :func:`action_space` / :func:`group_mask` -- the actions and the subsets the fixed baselines of
  paper 002's Table 6 draw from.
* :func:`normalize_batch` -- per-sample standardisation of a batch, the torch twin of
  :func:`irstd.data.normalize_image`.
* :func:`standardize_corrupted` -- standardisation of corrupted crops with the statistics their
  whole corrupted images would have, the input the detector gets at test time.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "StrategyNetwork",
    "action_space",
    "group_mask",
    "normalize_batch",
    "standardize_corrupted",
    "FIXED_POLICIES",
]

FIXED_POLICIES = ("random", "noise", "blur", "isp")
"""Baselines of paper 002's Table 6: uniform over all actions, or over one corruption group."""


def normalize_batch(x: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Standardise every sample of a ``B x C x H x W`` batch: ``(x - mean) / max(std, eps)``.

    Statistics are per sample over all its elements (population std), as
    :func:`irstd.data.normalize_image` computes them per image; ``eps`` (default that function's,
    in the units of ``x``) floors the std so a flat sample maps to 0. Two-pass float32 arithmetic
    (mean, then the centred second moment) keeps it within ~1e-6 of the float64 numpy form on
    every device. Returns float32.
    """
    if eps is None:
        from irstd.data.dataset import NORMALIZE_EPS

        eps = NORMALIZE_EPS
    if x.ndim < 2:
        raise ValueError(f"normalize_batch expects a batch B x ..., got shape {tuple(x.shape)}")
    x = x.float()
    dims = tuple(range(1, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    centred = x - mean
    std = centred.square().mean(dim=dims, keepdim=True).sqrt()
    return centred / std.clamp_min(float(eps))


def standardize_corrupted(
    corrupted: torch.Tensor,
    clean: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    eps: float | None = None,
) -> torch.Tensor:
    """Standardise corrupted crops as their whole corrupted images would be standardised.

    At test time the detector sees the whole corrupted image standardised with its own statistics;
    in training only a crop is corrupted. The whole-image statistics of the clean image (``mean``,
    ``std``, shape ``(B,)``, in the units of ``clean``) are moved by the change the corruption made
    on the crop::

        mean_c = mean + (mean(crop_c) - mean(crop))
        var_c  = std**2 + var(crop_c) - var(crop)          if the corruption added variance
                 std**2 * var(crop_c) / var(crop)          if it removed variance
        x_hat  = (crop_c - mean_c) / sqrt(max(var_c, eps**2))

    Added variance (noise) is added: exact for independent zero-mean noise in expectation.
    Removed variance (contrast, blur, clipping) is removed in proportion: exact for a contrast
    change, and bounded for the rest. Subtracting it instead, as an earlier version did, drove
    ``var_c`` to the floor whenever the crop held more variance than its whole image (a crop on a
    bright target, blurred or contrast-reduced): ``x_hat`` reached 1e5 and wrecked BatchNorm's
    running statistics, so the HRL detector scored IoU 0 in evaluation. A shift (brightness without
    clipping) leaves ``x_hat`` equal to the clean standardised crop, as the whole shifted image's
    would be. With ``corrupted == clean`` it is the plain whole-image standardisation.

    Args:
        corrupted, clean: ``B x C x H x W`` crops after and before the corruption.
        mean, std: whole clean image statistics per sample (std floored as
            :func:`irstd.data.normalize_image` floors it).
        eps: floor of the standard deviation (default :data:`irstd.data.dataset.NORMALIZE_EPS`).

    Returns:
        float32 tensor like ``corrupted``.
    """
    if eps is None:
        from irstd.data.dataset import NORMALIZE_EPS

        eps = NORMALIZE_EPS
    if corrupted.shape != clean.shape or corrupted.ndim < 2:
        raise ValueError(f"standardize_corrupted: shapes {tuple(corrupted.shape)} and {tuple(clean.shape)}")
    dims = tuple(range(1, corrupted.ndim))
    view = (-1,) + (1,) * (corrupted.ndim - 1)
    # float32 throughout (MPS has no float64); two-pass moments keep the variance change of a
    # lightly corrupted crop accurate to ~1e-6 of the image's variance.
    c, x = corrupted.float(), clean.float()
    mc, mx = c.mean(dim=dims, keepdim=True), x.mean(dim=dims, keepdim=True)
    vc = (c - mc).square().mean(dim=dims, keepdim=True)
    vx = (x - mx).square().mean(dim=dims, keepdim=True)
    m = mean.float().to(c.device).view(view)
    s = std.float().to(c.device).view(view)
    mean_c = m + (mc - mx)
    added = s.square() + (vc - vx)
    removed = s.square() * (vc / vx.clamp_min(torch.finfo(vx.dtype).tiny))
    var_c = torch.where(vc >= vx, added, removed).clamp_min(float(eps) ** 2)
    return (c - mean_c) / var_c.sqrt()


def action_space(names: Sequence[str], levels: int = 3) -> list[tuple[str, int]]:
    """``(corruption, severity)`` pairs, name-major (:func:`irstd.corruptions.corruption_actions`)."""
    from irstd.corruptions import corruption_actions

    return corruption_actions(tuple(names), levels)


def group_mask(actions: Sequence[tuple[str, int]], policy: str) -> torch.Tensor:
    """Bool mask over ``actions`` of those a fixed ``policy`` may draw.

    ``random`` allows every action; ``noise``, ``blur`` and ``isp`` the corruptions of that group of
    :data:`irstd.corruptions.PAPER_002_GROUPS` (ISP = brightness, contrast, pixelate, JPEG).
    """
    from irstd.corruptions import PAPER_002_GROUPS
    from irstd.errors import IRSTDError

    if policy == "random":
        return torch.ones(len(actions), dtype=torch.bool)
    if policy not in PAPER_002_GROUPS:
        raise IRSTDError(f"unknown corruption policy {policy!r}; use learned, {', '.join(FIXED_POLICIES)}")
    allowed = set(PAPER_002_GROUPS[policy])
    mask = torch.tensor([name in allowed for name, _ in actions], dtype=torch.bool)
    if not mask.any():
        raise IRSTDError(
            f"strategy.kwargs: policy {policy!r} has none of its corruptions ({', '.join(sorted(allowed))}) "
            "in strategy.kwargs.corruptions"
        )
    return mask


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    # GroupNorm, not BatchNorm: p(s | x) must depend on x alone (not on the other images of the
    # batch), and a network without running statistics has no state that diverges across DDP ranks.
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.GroupNorm(min(8, max(1, c_out // 4)), c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(*layers)


class StrategyNetwork(nn.Module):
    """Five conv blocks (3x3 conv, GroupNorm, ReLU, 2x2 max-pool after the first four) with widths
    ``width * (1, 2, 4, 8, 16)``, global average pooling, one fully connected layer, on the input
    average-pooled by ``input_stride``.

    Args:
        num_actions: size of the action space (paper 002: 10 corruptions x 3 severities = 30).
        in_chans: input channels (the normalised grey crop: 1).
        width: channels of the first block (8: ~0.1 M parameters).
        input_stride: the input is average-pooled by this factor first (default 2). The choice
            of corruption depends on scene content (clutter, target contrast and size), which half
            resolution keeps, and it makes the network ~5x cheaper (on a CPU, a 256 px batch
            costs ~1/20 of ACM's forward and backward instead of ~1/4). 1 uses full resolution.

    ``forward(x)`` takes ``B x in_chans x H x W`` (any size >= 1 px) and returns ``B x num_actions``
    logits. The fully connected layer starts at zero, so the initial policy is exactly uniform
    (maximum entropy) and the adversary has to earn every preference it develops.
    """

    def __init__(self, num_actions: int, in_chans: int = 1, width: int = 8, input_stride: int = 2):
        super().__init__()
        if num_actions < 1 or width < 1 or in_chans < 1 or input_stride < 1:
            raise ValueError("num_actions, in_chans, width and input_stride must be positive")
        self.input_stride = int(input_stride)
        widths = [int(width) * 2**i for i in range(5)]
        blocks, c = [], int(in_chans)
        for i, w in enumerate(widths):
            blocks.append(_block(c, w, pool=i < 4))
            c = w
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, int(num_actions))
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.input_stride > 1:
            x = F.avg_pool2d(x, self.input_stride, ceil_mode=True)
        f = self.features(x)
        return self.fc(f.mean(dim=(-2, -1)))
