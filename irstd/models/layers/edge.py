"""Edge (shape) blocks: image gradients, gated spatial convolution, the Taylor-finite-difference block.

From ISNet (Zhang et al., CVPR 2022, "ISNet: Shape Matters for Infrared Small Target Detection"),
whose edge branch refines a full-resolution edge feature map with TFD blocks, each gated by a side
output of the segmentation backbone (the gate of Gated-SCNN, Takikawa et al., ICCV 2019).

* :func:`gradient_magnitude` -- per-channel central-difference gradient magnitude (ISNet's edge input).
* :func:`edge_target` -- the edge map of a binary mask, a target for an auxiliary edge loss.
* :class:`GatedSpatialConv` -- ``Conv1x1(x * (1 + gate(x, s)))`` with a spatial gate from features and
  a one-channel guidance map ``s``.
* :class:`TFDBlock` -- ISNet's TFD-inspired edge block.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models.layers.conv import ConvBNAct


def gradient_magnitude(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``sqrt(gx^2 + gy^2 + eps)`` per channel, central differences ``x[i+1] - x[i-1]`` with zero padding.

    ``B x C x H x W`` -> same shape; same units as ``x`` per pixel (not halved), >= sqrt(eps).
    """
    p = F.pad(x, (1, 1, 1, 1))
    gx = p[..., 1:-1, 2:] - p[..., 1:-1, :-2]
    gy = p[..., 2:, 1:-1] - p[..., :-2, 1:-1]
    return torch.sqrt(gx * gx + gy * gy + eps)


def edge_target(mask: torch.Tensor) -> torch.Tensor:
    """Edge map of a binary mask ``B x C x H x W`` (values 0/1) for ISNet's auxiliary edge loss: 1 where
    the central-difference gradient is non-zero (left/right or up/down neighbours differ: a band
    around each target's border), else 0; float32, same shape."""
    return (gradient_magnitude(mask.float(), eps=0.0) > 0).float()


class GatedSpatialConv(nn.Module):
    """Gated spatial convolution: ``alpha = sigmoid(BN(Conv1x1(ReLU(Conv1x1(BN([x, s]))))))``,
    ``out = Conv1x1(x * (1 + alpha))`` (no bias).

    Args:
        in_chans: channels of ``x``; out_chans: output channels.
    Shapes: ``x: B x in x H x W``, ``s: B x 1 x H x W`` -> ``B x out x H x W``.
    """

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        c = in_chans + 1
        self.norm_in = nn.BatchNorm2d(c)
        self.fc1 = nn.Conv2d(c, c, 1)
        self.fc2 = nn.Conv2d(c, 1, 1)
        self.norm_out = nn.BatchNorm2d(1)
        self.proj = nn.Conv2d(in_chans, out_chans, 1, bias=False)

    def _fc1_of_normalised(self, z: torch.Tensor) -> torch.Tensor:
        if self.training or not self.norm_in.track_running_stats:
            return self.fc1(self.norm_in(z))
        # Eval: the BN before the 1x1 conv is an affine map per channel, folded into the conv's weights
        # (saves a full-resolution pass over the 65-channel map).
        bn = self.norm_in
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        w = self.fc1.weight * scale.view(1, -1, 1, 1)
        b = self.fc1.bias + self.fc1.weight.flatten(1) @ shift
        return F.conv2d(z, w, b)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        z = self._fc1_of_normalised(torch.cat([x, s], dim=1)).relu_()
        alpha = torch.sigmoid(self.norm_out(self.fc2(z)))
        return self.proj(torch.addcmul(x, x, alpha))


class _ResidualDelta(nn.Module):
    """ResNet basic block returning both ``relu(x + F(x))`` and the increment ``relu(F(x))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(channels, channels, 3),
            ConvBNAct(channels, channels, 3, act=None),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.body(x)
        # in place is safe for autograd: neither the sum nor the BN that made d needs d for backward
        return torch.add(x, d).relu_(), d.relu_()


class TFDBlock(nn.Module):
    """Taylor-finite-difference-inspired edge block (ISNet).

    Two residual steps ``u1 = u0 + du0``, ``u2' = u1 + du1`` give the finite differences ``du0``,
    ``du1``; the block combines them like a higher-order difference scheme and adds the gated
    (by the backbone's side output ``s``) refinement of ``du1``:
    ``u3 = 3 * du0 + du1 + GSC(du1, s)`` (increments after ReLU, as ISNet's code).

    Shapes: ``u0: B x C x H x W``, ``s: B x 1 x H x W`` -> ``B x C x H x W``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.res1 = _ResidualDelta(channels)
        self.res2 = _ResidualDelta(channels)
        self.gate = GatedSpatialConv(channels, channels)

    def forward(self, u0: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        u1, du0 = self.res1(u0)
        du1 = self.res2.body(u1).relu_()  # res2's own sum u1 + du1 is never used
        return self.gate(du1, s).add_(du1).add_(du0, alpha=3.0)


__all__ = ["gradient_magnitude", "edge_target", "GatedSpatialConv", "TFDBlock"]
