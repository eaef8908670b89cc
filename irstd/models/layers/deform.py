"""Modulated deformable convolution (DCNv2: Zhu et al., CVPR 2019) from torch core operators.

torchvision's ``deform_conv2d`` is not a dependency of irstd, so this is the operator written with
``F.grid_sample``: for each of the ``K = kh * kw`` kernel taps, the input is sampled bilinearly at the
tap's regular position plus a learned per-pixel offset (zero outside the map, as in DCNv2's im2col),
multiplied by a learned per-pixel modulation in (0, 1), and the ``K`` sampled maps are contracted with
the kernel by one 1x1 convolution. Offsets and modulation come from a plain convolution of the input
with the same kernel size, initialised to zero (offset 0, modulation 0.5), as in DCNv2.

Stride 1 and dilation 1 only (what the zoo needs); the output has the input's spatial size when the
padding is ``(kh // 2, kw // 2)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None, padding: tuple[int, int]) -> torch.Tensor:
    """Modulated deformable convolution, stride 1, dilation 1, one offset group.

    Args:
        x: input ``B x C x H x W``.
        offset: ``B x 2K x H' x W'``: first ``K`` channels the row (y) offsets of the taps in row-major
            kernel order, then the ``K`` column (x) offsets, in pixels.
        mask: modulation ``B x K x H' x W'`` (any real values; DCNv2 uses a sigmoid).
        weight: ``C_out x C x kh x kw``. bias: ``C_out`` or ``None``.
        padding: ``(ph, pw)`` zero padding; ``H' = H + 2 ph - kh + 1``.

    Returns ``B x C_out x H' x W'``.
    """
    b, c, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    k = kh * kw
    ho, wo = offset.shape[-2:]
    dev, dt = x.device, x.dtype
    ky, kx = torch.meshgrid(torch.arange(kh, device=dev, dtype=dt), torch.arange(kw, device=dev, dtype=dt),
                            indexing="ij")
    oy = torch.arange(ho, device=dev, dtype=dt).view(1, 1, ho, 1)
    ox = torch.arange(wo, device=dev, dtype=dt).view(1, 1, 1, wo)
    dy, dx = offset.split(k, dim=1)
    ys = oy - padding[0] + ky.reshape(1, k, 1, 1) + dy  # B x K x H' x W', input row of each tap
    xs = ox - padding[1] + kx.reshape(1, k, 1, 1) + dx
    # align_corners=True maps -1/+1 to the centres of the border pixels, so pixel i is at 2i/(n-1) - 1.
    grid = torch.stack((xs * (2.0 / max(w - 1, 1)) - 1.0, ys * (2.0 / max(h - 1, 1)) - 1.0), dim=-1)
    sampled = F.grid_sample(x, grid.reshape(b, k * ho, wo, 2), mode="bilinear", padding_mode="zeros",
                            align_corners=True)  # B x C x K*H' x W'
    sampled = (sampled.reshape(b, c, k, ho, wo) * mask.unsqueeze(1)).reshape(b, c * k, ho, wo)
    return F.conv2d(sampled, weight.reshape(c_out, c * k, 1, 1), bias)


class DeformConv2d(nn.Module):
    """DCNv2 layer: offsets and modulation predicted from the input by a zero-initialised convolution.

    Args:
        in_chans, out_chans: channels.
        kernel_size: ``k`` or ``(kh, kw)``.
        padding: ``p`` or ``(ph, pw)``; default ``(kh // 2, kw // 2)`` keeps the size.
        bias: bias of the main convolution.

    Parameters: the kernel (``out x in x kh x kw``, bias) and the offset/modulation convolution
    (``in -> 3 * kh * kw``, same kernel and padding, with bias), as DCNv2's ``DCN`` module.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int | tuple[int, int],
                 padding: int | tuple[int, int] | None = None, bias: bool = True):
        super().__init__()
        kh, kw = _pair(kernel_size)
        self.padding = (kh // 2, kw // 2) if padding is None else _pair(padding)
        self.weight = nn.Parameter(torch.empty(out_chans, in_chans, kh, kw))
        self.bias = nn.Parameter(torch.zeros(out_chans)) if bias else None
        self.offset_mask = nn.Conv2d(in_chans, 3 * kh * kw, (kh, kw), padding=self.padding)
        bound = 1.0 / math.sqrt(in_chans * kh * kw)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[2] * self.weight.shape[3]
        om = self.offset_mask(x)
        return deform_conv2d(x, om[:, : 2 * k], torch.sigmoid(om[:, 2 * k :]), self.weight, self.bias,
                             self.padding)


__all__ = ["deform_conv2d", "DeformConv2d"]
