"""LIW: low-frequency isolation in the wavelet domain (paper 001, IRSTD-Diff, Section III-E).

Infrared background radiation and clutter are mostly low-frequency, small targets stand out in the
high-frequency bands. LIW edits only the low band of a feature map, with a Swin block per level,
and rebuilds the map from the original high bands (eq. 17-20)::

    analysis   L^k, H^k = HDWT(f^{k-1})        f^0 = x                       k = 1 .. K   (eq. 17)
               f^k      = S_k(L^k)             S_k: Swin block (window attention)           (eq. 18)
    synthesis  L~^K     = f^K
               L~^{k-1} = Conv_k(HIDWT(L~^k, H^k))                             k = K .. 2   (eq. 19)
               x~       = HIDWT(L~^1, H^1)
    output     LIW(x)   = x + R,   R = RO(x~ - x)                                           (eq. 20)

``H^k`` are the high bands of the analysis, passed to the synthesis untouched. ``Conv_k`` is a
pre-activation residual convolution (``y + conv3x3(SiLU(LN(y)))``) whose last convolution starts at
zero, and ``RO`` a bias-free 1x1 convolution starting at the identity, both acting on what the
attention changed: with every ``S_k`` the identity, ``x~ = x`` (the DWT/IDWT round trip), ``R = 0``
and LIW is the identity map, so LIW starts as the plain wavelet-domain attention and learns the
rest as a residual. Shifted windows alternate from level to level (level 1 regular, level 2 shifted,
...), Swin's pairing.

The public release applies the same chain to a 64-channel skip of its conditional encoder at 128 px
(window 4, 4 heads, k = 2, the best k at 256 px in Table V); see
:class:`irstd.models.irstd_diff_ce.ConditionalEncoder`. Any input size works: sides are padded
(replicated border) to a multiple of ``2**K`` and the output cropped back.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models.layers.transformer import LayerNorm2d
from irstd.models.layers.wavelet import haar_dwt, haar_idwt
from irstd.models.layers.window_attention import SwinBlock

__all__ = ["LIW", "ResidualConv"]


class ResidualConv(nn.Module):
    """``y + conv3x3(SiLU(LN(y)))`` with the convolution initialised to zero (identity at start)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = LayerNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y + self.conv(F.silu(self.norm(y)))


class LIW(nn.Module):
    """Low-frequency isolation in the wavelet domain; see the module docstring.

    Args:
        channels: channels of the map (divisible by ``heads``).
        levels: ``K``, Haar levels (>= 1).
        heads: attention heads of each Swin block.
        window: attention window side in pixels (at each level's resolution).
        mlp_ratio: MLP width of the Swin blocks.

    Shapes: ``B x channels x H x W`` -> same.
    """

    def __init__(self, channels: int, levels: int = 2, heads: int = 4, window: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        if levels < 1:
            raise ValueError(f"LIW needs at least one wavelet level, got {levels}")
        self.levels = int(levels)
        self.blocks = nn.ModuleList(
            SwinBlock(channels, heads, window, shift=bool(k % 2), mlp_ratio=mlp_ratio) for k in range(self.levels)
        )
        # refine[k - 1] is eq. 19's Conv after the inverse transform that lands on level k (k >= 1)
        self.refine = nn.ModuleList(ResidualConv(channels) for _ in range(self.levels - 1))
        self.out = nn.Conv2d(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.out.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.levels
        ph, pw = (-h) % m, (-w) % m
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        highs = []
        y = xp
        for block in self.blocks:
            low, high = haar_dwt(y)
            highs.append(high)
            y = block(low)
        for k in range(self.levels - 1, -1, -1):
            y = haar_idwt(y, highs[k])
            if k > 0:
                y = self.refine[k - 1](y)
        out = xp + self.out(y - xp)
        return out[..., :h, :w] if ph or pw else out
