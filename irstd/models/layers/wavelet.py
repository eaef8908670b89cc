"""Differentiable 2-D Haar wavelet transform (one level) and its inverse, per channel.

For each 2x2 block ``[[a, b], [c, d]]`` of every channel (orthonormal Haar, PyWavelets' ``dwt2(x,
"haar")`` convention and signs)::

    low  = (a + b + c + d) / 2       approximation (PyWavelets' cA)
    high = [(a + b - c - d) / 2,     horizontal detail (cH: rows differ)
            (a - b + c - d) / 2,     vertical detail   (cV: columns differ)
            (a - b - c + d) / 2]     diagonal detail   (cD)

The transform is orthonormal, so :func:`haar_idwt` inverts :func:`haar_dwt` exactly (up to float
rounding) and preserves the sum of squares. Both are the stride-2 convolution with the four fixed
2x2 Haar kernels and its transpose, computed through ``pixel_unshuffle`` / ``pixel_shuffle`` and
sums: no kernel buffers to keep on the right device and dtype, and autograd flows through.

Shapes: ``haar_dwt(B x C x H x W)`` with even ``H`` and ``W`` returns ``low`` ``B x C x H/2 x W/2`` and
``high`` ``B x C x 3 x H/2 x W/2`` (order cH, cV, cD); :func:`haar_idwt` takes them back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["haar_dwt", "haar_idwt"]


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One level of the 2-D Haar DWT of every channel; see the module docstring.

    Raises:
        ValueError: odd height or width.
    """
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"haar_dwt needs even height and width, got {h}x{w}")
    # pixel_unshuffle puts x[2i + p, 2j + q] into channel c * 4 + 2p + q
    blocks = F.pixel_unshuffle(x, 2).view(b, c, 4, h // 2, w // 2)
    a, bb, cc, d = blocks.unbind(2)
    low = (a + bb + cc + d) * 0.5
    high = torch.stack(((a + bb - cc - d) * 0.5, (a - bb + cc - d) * 0.5, (a - bb - cc + d) * 0.5), dim=2)
    return low, high


def haar_idwt(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_dwt`: ``B x C x h x w`` and ``B x C x 3 x h x w`` -> ``B x C x 2h x 2w``."""
    b, c, h, w = low.shape
    if high.shape != (b, c, 3, h, w):
        raise ValueError(f"haar_idwt: high bands of shape {tuple(high.shape)} do not match low band {tuple(low.shape)}")
    hh, vv, dd = high.unbind(2)
    a = (low + hh + vv + dd) * 0.5
    bb = (low + hh - vv - dd) * 0.5
    cc = (low - hh + vv - dd) * 0.5
    d = (low - hh - vv + dd) * 0.5
    return F.pixel_shuffle(torch.stack((a, bb, cc, d), dim=2).reshape(b, c * 4, h, w), 2)
