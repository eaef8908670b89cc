"""Efficient channel attention (ECA: Wang et al., CVPR 2020).

``ECA(C)`` maps ``B x C x H x W`` to ``x * sigmoid(conv1d_k(avg_pool(x)))``: a 1-D convolution (no bias)
across the channel axis of the global average, so neighbouring channels share a gate without a
bottleneck MLP. Used by SCTransNet's feed-forward network (``k = 3``) and HCF-Net's PPA (adaptive ``k``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def eca_kernel_size(channels: int, gamma: float = 2.0, b: float = 1.0) -> int:
    """ECA's adaptive kernel size: ``t = int(|(log2(C) + b) / gamma|)``, made odd by adding 1 if even."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient channel attention gate applied to its input.

    Args:
        channels: ``C``.
        kernel_size: odd 1-D kernel size; ``None`` picks :func:`eca_kernel_size` (``gamma=2, b=1``).
    """

    def __init__(self, channels: int, kernel_size: int | None = None):
        super().__init__()
        k = eca_kernel_size(channels) if kernel_size is None else int(kernel_size)
        if k % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {k}")
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        a = self.conv(x.mean((2, 3)).view(b, 1, c))
        return x * torch.sigmoid(a).view(b, c, 1, 1)


__all__ = ["eca_kernel_size", "ECA"]
