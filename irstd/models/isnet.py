"""ISNet (Zhang, Zhang, Yang, Bai, Xu, Guo: "ISNet: Shape Matters for Infrared Small Target
Detection", CVPR 2022).

Structure (the public implementation, github.com/RuiZhang97/ISNet, ``model/ISNet.py``):

* Backbone: stem (input BN; 3x3 convs 8 (stride 2), 8, 16 channels; 3x3 max-pool stride 2) to 1/4;
  three stages of 4 ResNet basic blocks, 16 ch at 1/4, 32 at 1/8, 64 at 1/16.
* Decoder: transposed convs (4x4, stride 2) 64->32 and 32->16, each fused with the encoder feature of
  the same level by a two-orientation attention aggregation (TOAA: a 1x3 and a 3x1 deformable
  convolution of the decoder feature give row and column attention maps that weight the encoder
  feature) and refined by 4 basic blocks.
* Edge branch at full resolution: the per-channel gradient magnitude of the input, 1x1 conv to 64
  channels, three Taylor-finite-difference (TFD) edge blocks, each gated by a side output (1x1 conv to
  one channel, bilinear to full size) of the deepest encoder level, the 1/8 and the 1/4 decoder
  levels; a 1x1 conv gives the edge logit.
* Head: the 1/4 decoder feature up-sampled (bilinear) to full size, multiplied by ``1 + sigmoid(edge)``,
  FCN head (3x3 conv 16->4, BN, ReLU, dropout 0.1, 1x1 conv) -> target logit.

Outputs: ``forward`` returns the target logits ``B x 1 x H x W`` in train and eval mode (ISNet has no
deep supervision on the mask: ``deep_supervision`` is False). ISNet trains its edge branch with an
extra loss on the edge logit against the mask's edge map: ``forward_with_edge`` returns
``(target_logits, edge_logits)`` and :func:`irstd.models.layers.edge.edge_target` gives that target.
The edge map is also trained through the target loss, since it gates the head's features.

Deviations from the public code:
* Deformable convolution (DCNv2, a compiled extension there) is :class:`~irstd.models.layers.deform.
  DeformConv2d`, the same operator written with ``torch.nn.functional.grid_sample`` (bilinear sampling,
  zero outside, sigmoid modulation, offset convolution initialised to zero); same parameters.
* The edge input is computed inside the network from the input (the public training script computes
  the same central-difference gradient magnitude outside and passes it as a second argument), one
  gradient channel per input channel.
* Modules the public ``ISNet.__init__`` creates but its forward never calls (three ResNet blocks,
  three gated convolutions, two shuffle-attention layers, a second FCN head, five 1x1 convs:
  103,709 parameters with one input channel) are left out; the reference count below excludes them.
* Interpolations that resize to the size a tensor already has are skipped (no-ops).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.errors import IRSTDError
from irstd.models import register_model
from irstd.models.layers.conv import ConvBNAct, FCNHead, res_stage
from irstd.models.layers.deform import DeformConv2d
from irstd.models.layers.edge import TFDBlock, gradient_magnitude


class TwoOrientationAttention(nn.Module):
    """TOAA: ``y = 2 * d + (sigmoid(DCN_3x1(d)) + sigmoid(DCN_1x3(d))) * e`` with ``d, e`` the decoder and
    encoder features after a shared ``Conv1x1(C -> C/2) -> Conv1x1(C/2 -> C)`` pre-processing (biases,
    no activation). Shapes: ``B x C x H x W`` twice -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(channels, channels // 2, 1), nn.Conv2d(channels // 2, channels, 1))
        self.row = DeformConv2d(channels, channels, (1, 3))
        self.col = DeformConv2d(channels, channels, (3, 1))

    def forward(self, dec: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        d, e = self.pre(dec), self.pre(enc)
        return 2.0 * d + (torch.sigmoid(self.col(d)) + torch.sigmoid(self.row(d))) * e


@register_model(
    "isnet",
    reference_params=986_686,
    reference=(
        "Zhang et al., ISNet: Shape Matters for Infrared Small Target Detection, CVPR 2022; "
        "github.com/RuiZhang97/ISNet model/ISNet.py (layer_blocks [4,4,4], channels [8,16,32,64], "
        "DCNv2 TTOA). "
        "Counted from that code with 1 input channel and a 1-channel gradient input: 986,686 parameters "
        "in the modules its forward uses (1,090,395 instantiated, 103,709 of them in unused modules)"
    ),
)
class ISNet(nn.Module):
    """ISNet; see the module docstring.

    Args:
        in_chans: input channels (the edge input has as many gradient channels).
        layer_blocks: basic blocks per stage (and per decoder refinement).
        channels: stem width, then the widths at 1/4, 1/8, 1/16.
        edge_channels: width of the full-resolution edge branch.
        deep_supervision: must be False (ISNet has none); accepted so all zoo models take the keyword.
    """

    stride = 16

    def __init__(self, in_chans: int = 1, layer_blocks=(4, 4, 4), channels=(8, 16, 32, 64),
                 edge_channels: int = 64, deep_supervision: bool = False):
        super().__init__()
        if deep_supervision:
            raise IRSTDError("isnet: deep_supervision=True is not available (ISNet has no deep supervision; "
                             "its auxiliary output is the edge map, see forward_with_edge)")
        self.deep_supervision = False
        c0, c1, c2, c3 = channels
        self.stem = nn.Sequential(
            nn.BatchNorm2d(in_chans),
            ConvBNAct(in_chans, c0, 3, 2),
            ConvBNAct(c0, c0, 3),
            ConvBNAct(c0, 2 * c0, 3),
            nn.MaxPool2d(3, 2, 1),
        )
        if 2 * c0 != c1:
            raise IRSTDError("isnet: channels[1] must be twice channels[0] (the stem's output width)")
        self.layer1 = res_stage(c1, c1, layer_blocks[0])
        self.layer2 = res_stage(c1, c2, layer_blocks[1], stride=2)
        self.layer3 = res_stage(c2, c3, layer_blocks[2], stride=2)
        self.deconv2 = nn.ConvTranspose2d(c3, c2, 4, 2, 1)
        self.fuse2 = TwoOrientationAttention(c2)
        self.uplayer2 = res_stage(c2, c2, layer_blocks[1])
        self.deconv1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1)
        self.fuse1 = TwoOrientationAttention(c1)
        self.uplayer1 = res_stage(c1, c1, layer_blocks[0])
        self.side3 = nn.Conv2d(c3, 1, 1)
        self.side2 = nn.Conv2d(c2, 1, 1)
        self.side1 = nn.Conv2d(c1, 1, 1)
        self.edge_in = nn.Conv2d(in_chans, edge_channels, 1)
        self.tfd = nn.ModuleList(TFDBlock(edge_channels) for _ in range(3))
        self.edge_out = nn.Conv2d(edge_channels, 1, 1, bias=False)
        self.head = FCNHead(c1, 1)

    def forward_with_edge(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(target_logits, edge_logits)``, both ``B x 1 x H x W``."""
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise IRSTDError(f"isnet: input size {x.shape[-2]}x{x.shape[-1]} is not a multiple of the stride "
                             f"{self.stride}; pad it first (irstd.data.transforms.pad_to_stride)")
        size = x.shape[-2:]
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        up2 = self.uplayer2(self.fuse2(self.deconv2(c3), c2))
        up1 = self.uplayer1(self.fuse1(self.deconv1(up2), c1))

        e = self.edge_in(gradient_magnitude(x))
        for block, feat, side in zip(self.tfd, (c3, up2, up1), (self.side3, self.side2, self.side1)):
            s = F.interpolate(side(feat), size=size, mode="bilinear", align_corners=True)
            e = block(e, s)
        edge = self.edge_out(e)

        feat = F.interpolate(up1, size=size, mode="bilinear", align_corners=False)
        return self.head(torch.addcmul(feat, feat, torch.sigmoid(edge))), edge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_edge(x)[0]


__all__ = ["ISNet", "TwoOrientationAttention"]
