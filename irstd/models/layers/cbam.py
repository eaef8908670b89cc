"""Channel and spatial attention gates (CBAM: Woo et al., ECCV 2018).

Used by DNANet's residual blocks (and by anything that wants a cheap "what" + "where" gate).
``CBAM(c)`` maps ``B x c x H x W`` to a tensor of the same shape; the two gates on their own return
the multiplicative weights (``B x c x 1 x 1`` and ``B x 1 x H x W``, values in (0, 1)).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ChannelAttention(nn.Module):
    """Channel gate ``sigmoid(MLP(avg_pool(x)) + MLP(max_pool(x)))``, shape ``B x C x 1 x 1``.

    Args:
        channels: input channels ``C``.
        reduction: hidden width of the shared two-layer MLP is ``max(C // reduction, 1)``.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        # 1x1 convolutions without bias, as in CBAM; kept as convs so the weights have the usual layout.
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = F.adaptive_avg_pool2d(x, 1)
        mx = F.adaptive_max_pool2d(x, 1)
        # fc2 is linear without bias, so fc2(a) + fc2(b) == fc2(a + b): one call instead of two.
        hidden = F.relu(self.fc1(avg), inplace=True) + F.relu(self.fc1(mx), inplace=True)
        return torch.sigmoid(self.fc2(hidden))


class SpatialAttention(nn.Module):
    """Spatial gate ``sigmoid(conv_k([mean_c(x), max_c(x)]))``, shape ``B x 1 x H x W``.

    Args:
        kernel_size: odd size of the convolution over the two pooled maps (7 in CBAM).
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Channel gate then spatial gate: ``y = x * Mc(x)``, ``out = y * Ms(y)``; same shape as ``x``.

    Args:
        channels: input channels.
        reduction: channel-MLP reduction ratio.
        kernel_size: spatial-gate kernel size.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.ca = ChannelAttention(channels, reduction)
        self.sa = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.ca(x)
        return x * self.sa(x)


__all__ = ["ChannelAttention", "SpatialAttention", "CBAM"]
