"""SCTransNet (Yuan, Qin, Yan, Fu, Sun, Yang: "SCTransNet: Spatial-channel Cross Transformer Network
for Infrared Small Target Detection", IEEE TGRS 2024).

Structure (paper and the public implementation, github.com/xdFai/SCTransNet, ``model/SCTransNet.py``):

* Encoder: one residual block (two 3x3 conv + BN, LeakyReLU, 1x1 projection shortcut when the width
  changes) per level, 2x2 max-pool between levels: 32 ch at 1/1, 64 at 1/2, 128 at 1/4, 256 at 1/8 and
  a 256-channel bottleneck at 1/16.
* Spatial-channel cross transformer on the four skip levels
  (:class:`~irstd.models.layers.transformer.ChannelCrossTransformer`): patch embeddings 16/8/4/2 bring
  every level to the 1/16 grid; 4 layers of spatial-embedded single-head channel-cross attention
  (queries per level, keys/values from all 480 channels) plus complementary feed-forward networks;
  reconstruction by bilinear up-sampling, 1x1 conv, BN, ReLU. Skip ``i`` becomes
  ``reconstruction_i + 2 * encoder_i`` (the public code adds the encoder feature inside the transformer
  and once more in the network).
* Decoder: per level, nearest 2x up-sampling, channel cross-attention (CCA) of the skip guided by the
  up-sampled feature (sigmoid of averaged linear maps of both global averages, then ReLU), concatenation
  and two 3x3 conv-BN-ReLU; 1x1 conv to the logit at full resolution.
* Deep supervision: 1x1 convs on the bottleneck and the 1/8, 1/4, 1/2 decoder features, bilinear
  (align corners) to full size; a fused logit = 1x1 conv over those four and the final logit.

Outputs: eval mode returns the final logit (the public code's test output). Train mode with deep
supervision returns ``[final, fused, side_1/2, side_1/4, side_1/8, side_1/16]``, all ``B x 1 x H x W``
logits; the public code trains all six with BCE (Ivan-ISTD adds an MSE between the final outputs of a
clean and a noisy branch). The forward keeps no state between calls besides BatchNorm's running
statistics, so a shared-weight dual branch is simply two calls. Without deep supervision the model
returns the final logit in both modes.

Any ``H, W`` divisible by :attr:`stride` (16) work, square or not: the attention is over channels, the
token grid is ``H/16 x W/16``.

Deviations from the public code (none changes the function):
* Dead parameters left out: unused position embeddings (122,880 parameters at 256x256 in the
  public code, which also ties them to one image size) and sixteen unused scalars per transformer layer.
* Conv biases directly before a BatchNorm are dropped (BN removes them): 2,944 parameters.
* K and V projections run as one convolution each (concatenated weights); the reconstruction 1x1 conv
  runs before the bilinear up-sampling it commutes with.
* Logits instead of sigmoid probabilities.

Parameters with one input channel: 11,200,051 here; the public code instantiates 11,325,939, of which
11,202,995 outside the dead parameters (published figure: 11.19 M).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.errors import IRSTDError
from irstd.models import register_model
from irstd.models.layers.conv import BasicBlock, ConvBNAct
from irstd.models.layers.transformer import ChannelCrossTransformer


class ChannelCrossGate(nn.Module):
    """CCA of SCTransNet/UCTransNet: ``relu(x * sigmoid((L_x(avg(x)) + L_g(avg(g))) / 2))``.

    Shapes: ``g: B x C_g x H x W`` (decoder), ``x: B x C_x x H x W`` (skip) -> ``B x C_x x H x W``.
    """

    def __init__(self, g_chans: int, x_chans: int):
        super().__init__()
        self.fc_x = nn.Linear(x_chans, x_chans)
        self.fc_g = nn.Linear(g_chans, x_chans)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        a = self.fc_x(x.mean((2, 3))) + self.fc_g(g.mean((2, 3)))
        return (x * torch.sigmoid(0.5 * a)[:, :, None, None]).relu_()


class UpBlock(nn.Module):
    """Nearest 2x up-sampling, CCA of the skip, concatenation ``[skip, up]``, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_chans: int, skip_chans: int, out_chans: int):
        super().__init__()
        self.gate = ChannelCrossGate(in_chans, skip_chans)
        self.convs = nn.Sequential(ConvBNAct(in_chans + skip_chans, out_chans),
                                   ConvBNAct(out_chans, out_chans))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.convs(torch.cat([self.gate(up, skip), up], dim=1))


@register_model(
    "sctransnet",
    reference_params=11.19e6,
    reference=(
        "Yuan et al., SCTransNet: Spatial-channel Cross Transformer Network for Infrared Small Target "
        "Detection, IEEE TGRS 2024 (11.19 M parameters as published); github.com/xdFai/SCTransNet "
        "model/SCTransNet.py with base_channel 32, 4 layers, patch sizes [16, 8, 4, 2]"
    ),
)
class SCTransNet(nn.Module):
    """SCTransNet; see the module docstring.

    Args:
        in_chans: input channels.
        base_channels: width of the first level (widths ``b, 2b, 4b, 8b``, bottleneck ``8b``).
        num_layers: channel-cross transformer layers.
        patch_sizes: patch size per skip level; ``2^i * patch_sizes[i]`` must be the same for all ``i``.
        ffn_expansion: hidden width factor of the feed-forward networks.
        deep_supervision: return the side outputs in train mode.
    """

    def __init__(self, in_chans: int = 1, base_channels: int = 32, num_layers: int = 4,
                 patch_sizes: Sequence[int] = (16, 8, 4, 2), ffn_expansion: float = 2.66,
                 deep_supervision: bool = True):
        super().__init__()
        b = base_channels
        widths = (b, 2 * b, 4 * b, 8 * b)
        grids = {2**i * p for i, p in enumerate(patch_sizes)}
        if len(patch_sizes) != 4 or len(grids) != 1:
            raise IRSTDError(f"sctransnet: patch sizes {tuple(patch_sizes)} do not give one token grid "
                             "for the 4 levels")
        self.stride = math.lcm(16, grids.pop())  # 4 poolings, and whole patches at every level
        self.deep_supervision = bool(deep_supervision)
        act = nn.LeakyReLU
        self.enc = nn.ModuleList([
            BasicBlock(in_chans, widths[0], act=act),
            BasicBlock(widths[0], widths[1], act=act),
            BasicBlock(widths[1], widths[2], act=act),
            BasicBlock(widths[2], widths[3], act=act),
            BasicBlock(widths[3], widths[3], act=act),
        ])
        self.cct = ChannelCrossTransformer(widths, patch_sizes, num_layers, ffn_expansion)
        self.dec = nn.ModuleList([
            UpBlock(widths[3], widths[3], widths[2]),
            UpBlock(widths[2], widths[2], widths[1]),
            UpBlock(widths[1], widths[1], widths[0]),
            UpBlock(widths[0], widths[0], widths[0]),
        ])
        self.out = nn.Conv2d(widths[0], 1, 1)
        if self.deep_supervision:
            # side heads on the bottleneck (1/16) and the 1/8, 1/4, 1/2 decoder outputs
            self.side = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in widths[::-1])
            self.fuse = nn.Conv2d(5, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise IRSTDError(f"sctransnet: input size {x.shape[-2]}x{x.shape[-1]} is not a multiple of the "
                             f"stride {self.stride}; pad it first (irstd.data.transforms.pad_to_stride)")
        size = x.shape[-2:]
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        bottleneck = skips.pop()
        skips = [torch.add(r, s, alpha=2.0) for r, s in zip(self.cct(skips), skips)]

        d = bottleneck
        decoded = []
        for block, skip in zip(self.dec, reversed(skips)):
            d = block(d, skip)
            decoded.append(d)
        final = self.out(d)
        if not (self.training and self.deep_supervision):
            return final
        feats = (bottleneck, decoded[0], decoded[1], decoded[2])  # 1/16, 1/8, 1/4, 1/2
        sides = [F.interpolate(head(f), size=size, mode="bilinear", align_corners=True)
                 for head, f in zip(self.side, feats)]
        fused = self.fuse(torch.cat(sides[::-1] + [final], dim=1))
        return [final, fused] + sides[::-1]


__all__ = ["SCTransNet", "ChannelCrossGate", "UpBlock"]
