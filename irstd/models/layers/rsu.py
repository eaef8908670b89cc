"""Residual U-blocks (RSU) of U2-Net (Qin et al., Pattern Recognition 2020).

An RSU-L block is a small U-Net of height ``L`` wrapped in a residual connection::

    h_in = ConvBNReLU(in -> out)(x)
    U    = encoder (L-1 ConvBNReLU at 1, 1/2, ..., 1/2**(L-2) resolution, mid channels)
           -> bottom ConvBNReLU with dilation 2
           -> decoder (concatenate with the matching encoder map, ConvBNReLU, upsample)
    out  = U(h_in) + h_in                      (out channels)

``RSU-LF`` ("F" for *flat*) replaces pooling and upsampling by dilated convolutions
(dilations 1, 2, 4, ..., 2**(L-1) down and back up), for maps already too small to pool.

Used by UIU-Net (all stages) and by paper 001's conditional encoder (IRSTD-Diff,
:mod:`irstd.models.irstd_diff_ce`). Widths are free: build
``RSU(height, in_chans, mid_chans, out_chans, dilated=...)`` or the named aliases
:func:`RSU7` ... :func:`RSU4F`. Inputs of any size work (ceil-mode pooling, upsampling to the skip's
exact size); sizes divisible by ``2**(L-2)`` avoid the ragged borders.

ConvBNReLU units are :class:`irstd.models.layers.conv.ConvBNAct` (3x3, no conv bias), so
:func:`irstd.models.fuse_for_inference` folds their batch norm.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models.layers.conv import ConvBNAct


def conv_bn_relu(in_chans: int, out_chans: int, dilation: int = 1) -> ConvBNAct:
    """U2-Net's REBNCONV: 3x3 convolution (dilated, size-preserving padding), batch norm, ReLU.

    The convolution has no bias (the batch norm absorbs it; U2-Net keeps one, to no effect).
    """
    return ConvBNAct(in_chans, out_chans, 3, dilation=dilation)


def upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``ref``'s spatial size (align_corners=False, as U2-Net)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    """Residual U-block of height ``height`` (U2-Net's RSU-L / RSU-LF).

    Args:
        height: ``L``, number of encoder levels including the dilated bottom (>= 2).
        in_chans: input channels.
        mid_chans: channels inside the U.
        out_chans: output channels (also the width of the residual branch).
        dilated: ``True`` for the flat RSU-LF variant (dilations instead of resampling).

    Shapes: ``B x in_chans x H x W -> B x out_chans x H x W``.
    """

    def __init__(
        self, height: int, in_chans: int, mid_chans: int, out_chans: int, dilated: bool = False
    ):
        super().__init__()
        if height < 2:
            raise ValueError(f"RSU height must be >= 2, got {height}")
        self.height = height
        self.dilated = dilated
        self.in_chans, self.mid_chans, self.out_chans = in_chans, mid_chans, out_chans
        self.conv_in = conv_bn_relu(in_chans, out_chans)

        def dil(level: int) -> int:
            return 2**level if dilated else 1

        self.encoder = nn.ModuleList(
            conv_bn_relu(out_chans if i == 0 else mid_chans, mid_chans, dil(i))
            for i in range(height - 1)
        )
        self.bottom = conv_bn_relu(mid_chans, mid_chans, 2 ** (height - 1) if dilated else 2)
        # decoder[k] consumes the encoder map of level (height - 2 - k); the last one restores out_chans.
        self.decoder = nn.ModuleList(
            conv_bn_relu(2 * mid_chans, out_chans if level == 0 else mid_chans, dil(level))
            for level in range(height - 2, -1, -1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        skips = []
        h = x_in
        for i, conv in enumerate(self.encoder):
            if i > 0 and not self.dilated:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for conv, skip in zip(self.decoder, reversed(skips)):
            if not self.dilated:
                h = upsample_like(h, skip)
            h = conv(torch.cat((h, skip), dim=1))
        # In place only without autograd: the ReLU that produced h keeps it for its backward pass.
        return h + x_in if torch.is_grad_enabled() else h.add_(x_in)


def RSU7(in_chans: int, mid_chans: int, out_chans: int) -> RSU:
    """RSU of height 7 (five 2x poolings inside)."""
    return RSU(7, in_chans, mid_chans, out_chans)


def RSU6(in_chans: int, mid_chans: int, out_chans: int) -> RSU:
    """RSU of height 6."""
    return RSU(6, in_chans, mid_chans, out_chans)


def RSU5(in_chans: int, mid_chans: int, out_chans: int) -> RSU:
    """RSU of height 5."""
    return RSU(5, in_chans, mid_chans, out_chans)


def RSU4(in_chans: int, mid_chans: int, out_chans: int) -> RSU:
    """RSU of height 4."""
    return RSU(4, in_chans, mid_chans, out_chans)


def RSU4F(in_chans: int, mid_chans: int, out_chans: int) -> RSU:
    """Flat RSU of height 4: dilations 1, 2, 4, 8, no resampling."""
    return RSU(4, in_chans, mid_chans, out_chans, dilated=True)


__all__ = ["conv_bn_relu", "upsample_like", "RSU", "RSU7", "RSU6", "RSU5", "RSU4", "RSU4F"]
