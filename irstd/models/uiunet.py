"""UIU-Net: U-Net in U-Net (Wu, Hong, Chanussot, IEEE TIP 2023).

Paper: X. Wu, D. Hong, J. Chanussot, "UIU-Net: U-Net in U-Net for Infrared Small Object
Detection", IEEE Transactions on Image Processing 32, 2023.

Structure
---------
* **Outer U-Net of residual U-blocks** (the "U-Net in U-Net", U2-Net-like): encoder stages
  RSU7(in, 32, 64) -> RSU6(64, 32, 128) -> RSU5(128, 64, 256) -> RSU4(256, 128, 512) ->
  RSU4F(512, 256, 512) -> RSU4F(512, 256, 512), 2x2 max-pooling between stages; decoder stages
  RSU4F(1024, 256, 512), RSU4(1024, 128, 256), RSU5(512, 64, 128), RSU6(256, 32, 64),
  RSU7(128, 16, 64). Each inner U-Net returns a map at its input resolution (the paper's
  resolution-maintenance modules, RM-DS). Blocks: :mod:`irstd.models.layers.rsu`.
* **Interactive-cross attention (IC-A)** between the upsampled deeper decoder map (high level) and
  the encoder skip (low level) at the four deepest decoder stages: a top-down channel gate computed
  from the high-level map re-weights the skip, a bottom-up spatial gate computed from the re-weighted
  skip re-weights the high-level map, and both go through one shared 3x3 conv-BN-ReLU before being
  concatenated (:class:`InteractiveCrossAttention`). The top decoder stage takes a plain
  concatenation, as in the public code.
* **Deep supervision**: a 3x3 side head on each of the five decoder stage outputs and on the
  bottom encoder stage, each upsampled to full size; a 1x1 conv fuses the six logits.
  Train mode returns ``[fused, side1, ..., side6]`` (logits, full resolution, top side first); eval
  mode returns the fused logits. ``deep_supervision=False`` returns only the fused map in train
  mode too (the side heads still feed it).

50.52 M parameters with one input channel (public count 50.54 M). Stride 32 (the outer pools times
the inner pools of the top RSU7): ``create`` requires multiples of 32; the class itself also runs
other sizes, with uneven pooling.

Speed (same function as the public code)
----------------------------------------
Activations run channels-last without autograd (oneDNN's NHWC kernels are faster on CPU; training
stays NCHW, whose backward is faster); the inference copy
(:func:`irstd.models.fuse_for_inference`) has the batch norms folded into the convolutions and
channels-last weights; the RSU residual sums are
in place when autograd is off. The network is dominated by its 3x3 convolutions (about 108
GFLOPs at 256x256).

Deviations from the public code
-------------------------------
* Returns logits (the public code applies a sigmoid).
* Convolutions followed by batch norm have no bias (batch norm absorbs it): about 19 k fewer
  parameters, same function.
* Side outputs are listed fused-first (the zoo's interface).
* Like the public code, the channel gate batch-normalises a ``B x C x 1 x 1`` tensor, so training
  needs batches of at least 2.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models import register_model
from irstd.models.layers.conv import ConvBNAct, inference_layout
from irstd.models.layers.rsu import RSU4, RSU4F, RSU5, RSU6, RSU7, upsample_like


class InteractiveCrossAttention(nn.Module):
    """UIU-Net's IC-A fusion of a high-level (deeper, upsampled) and a low-level (skip) map.

    ``h = ReLU(BN(conv1x1(high)))``; channel gate ``g_c = sigmoid(BN(MLP(avg_pool(h))))``;
    spatial gate ``g_s = sigmoid(conv3x3([mean_c, max_c](ReLU(BN(conv1x1(low * g_c))))))``;
    returns ``cat(post(2 * low * g_c), post(2 * h * g_s))`` with one shared 3x3 conv-BN-ReLU ``post``.

    Args:
        high_chans: channels of the high-level input.
        channels: channels of the low-level input and of each of the two outputs.
        reduction: bottleneck ratio of the gates.

    Shapes: ``high B x high_chans x H x W``, ``low B x channels x H x W`` -> ``B x 2*channels x H x W``.
    """

    def __init__(self, high_chans: int, channels: int, reduction: int = 4):
        super().__init__()
        mid = channels // reduction
        self.high = ConvBNAct(high_chans, channels, 1)
        self.topdown = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvBNAct(channels, mid, 1),
            ConvBNAct(mid, channels, 1, act=nn.Sigmoid),
        )
        self.bottomup = ConvBNAct(channels, mid, 1)
        self.spatial = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        self.post = ConvBNAct(channels, channels, 3)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        high = self.high(high)
        g_c = self.topdown(high)
        low_gated = low * g_c
        b = self.bottomup(low_gated)
        pooled = torch.cat([b.mean(1, keepdim=True), b.amax(1, keepdim=True)], dim=1)
        g_s = torch.sigmoid(self.spatial(pooled))
        # The paper's factor 2 goes onto the 1-channel spatial gate (cheap) and onto the gated skip.
        return torch.cat([self.post(low_gated * 2.0), self.post(high * (g_s * 2.0))], dim=1)


class UIUNet(nn.Module):
    """UIU-Net; see the module docstring.

    Args:
        in_chans: input channels.
        deep_supervision: return the six side outputs too in train mode.
    """

    inference_channels_last = True  # see inference_layout in forward

    def __init__(self, in_chans: int = 1, deep_supervision: bool = True):
        super().__init__()
        self.stride = 32
        self.deep_supervision = bool(deep_supervision)
        self.encoder = nn.ModuleList(
            [
                RSU7(in_chans, 32, 64),
                RSU6(64, 32, 128),
                RSU5(128, 64, 256),
                RSU4(256, 128, 512),
                RSU4F(512, 256, 512),
                RSU4F(512, 256, 512),
            ]
        )
        # Decoder, deepest first: stage5d, stage4d, stage3d, stage2d, stage1d.
        self.decoder = nn.ModuleList(
            [
                RSU4F(1024, 256, 512),
                RSU4(1024, 128, 256),
                RSU5(512, 64, 128),
                RSU6(256, 32, 64),
                RSU7(128, 16, 64),
            ]
        )
        # IC-A for decoder stages 5d, 4d, 3d, 2d: (high-level channels, skip channels).
        self.fusions = nn.ModuleList(
            [
                InteractiveCrossAttention(512, 512),
                InteractiveCrossAttention(512, 512),
                InteractiveCrossAttention(256, 256),
                InteractiveCrossAttention(128, 128),
            ]
        )
        # Side heads, top first: on stage1d, 2d, 3d, 4d, 5d outputs and on encoder stage 6.
        self.sides = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1) for c in (64, 64, 128, 256, 512, 512))
        self.fuse = nn.Conv2d(6, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        # Channels-last activations without autograd: oneDNN's convolutions, pooling and resampling
        # are faster in NHWC on CPU. Not in training: there the NHWC backward (weight gradients
        # re-laid out per conv) made a train step slower than NCHW (measured 1.27 vs 0.78 of the
        # public code's time); the result is the same either way.
        h = inference_layout(x)
        skips = []
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = stage(h)
            skips.append(h)
        decoded = [h]  # encoder stage 6 feeds side 6
        skips.pop()
        for k, stage in enumerate(self.decoder):
            skip = skips.pop()
            up = upsample_like(h, skip)
            if k < len(self.fusions):
                h = stage(self.fusions[k](up, skip))
            else:
                h = stage(torch.cat((up, skip), dim=1))
            decoded.append(h)
        # decoded: [stage6, 5d, 4d, 3d, 2d, 1d] -> side order top first: 1d, 2d, 3d, 4d, 5d, 6.
        top = decoded[-1]
        sides = [
            upsample_like(head(feat), top) for head, feat in zip(self.sides, reversed(decoded))
        ]
        fused = self.fuse(torch.cat(sides, dim=1))
        if self.training and self.deep_supervision:
            return [fused] + sides
        return fused


@register_model(
    "uiunet",
    reference_params=50.54e6,
    reference="Wu, Hong, Chanussot, UIU-Net: U-Net in U-Net for Infrared Small Object Detection, IEEE TIP 2023; "
    "count of the public implementation (danfenghong/IEEE_TIP_UIU-Net, model/uiunet.py UIUNET with fusion.py "
    "AsymBiChaFuseReduce, 1 input channel: 50,540,309)",
)
def uiunet(in_chans: int = 1, **kwargs) -> UIUNet:
    """UIU-Net with the public configuration; kwargs go to :class:`UIUNet`."""
    return UIUNet(in_chans=in_chans, **kwargs)


__all__ = ["UIUNet", "InteractiveCrossAttention", "uiunet"]
