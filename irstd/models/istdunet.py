"""ISTDU-Net: infrared small-target detection U-Net (Hou et al., IEEE GRSL 2022).

Paper: Q. Hou, L. Zhang, F. Tan, Y. Xi, H. Zheng, N. Li, "ISTDU-Net: Infrared Small-Target
Detection U-Net", IEEE Geoscience and Remote Sensing Letters 19, 2022.

Structure
---------
* **Stem**: a non-affine batch norm of the raw input (per-channel standardisation learnt from the
  data), 3x3 conv to 16 channels, BN, ReLU; full resolution.
* **Encoder with feature-map groups**: four stages of ResNeSt-style bottlenecks
  (1, 2, 4, 8 blocks; 16, 32, 64, 128 planes, expansion 4 -> 64, 128, 256, 512 channels) at
  strides 1, 2, 4, 8. The 3x3 conv of every bottleneck is a *split-attention* conv: the feature
  maps are split into groups (cardinality 4) and radix-2 branches, and a softmax over the branches,
  driven by globally pooled features through a small fully connected bottleneck, weights the
  groups (:class:`SplitAttentionConv`). Down-sampling by 3x3 average pooling after that conv
  ("avd") and average-pool + 1x1 conv shortcuts (ResNet-D).
* **Skip connections with fully connected layers**: every encoder output passes through external
  attention (two linear layers over the channel dimension sharing 64 learnt memory units, softmax
  over positions then normalisation over memory units, a 1x1 conv + BN, residual), which the paper
  uses to suppress background structures similar to targets (:class:`ExternalAttention`).
* **Decoder**: from the deepest map, 1x1 conv-BN-ReLU halves the channels, bilinear 2x
  upsampling, addition of the next skip; three times. **Head**: 3x3 conv-BN-ReLU to 16
  channels, 1x1 conv to one logit map.

2.75 M parameters with one input channel (public count 2.761 M). Stride 8 (``create``
requires multiples of 8; the class itself also runs other sizes, with uneven pooling). No deep supervision.

Speed (same function as the public code)
----------------------------------------
Activations run channels-last (oneDNN's grouped convolutions, pooling and resampling are several
times faster in NHWC on CPU); the inference copy (:func:`irstd.models.fuse_for_inference`) has the
batch norms of the conv units folded and channels-last weights; external attention works on ``N x C`` rows (a free
view of a channels-last map) with composed weight matrices (below) and, at inference, its batch
norm and residual sum folded into one batched product; decoder sums are in place.

Deviations from the public code
-------------------------------
* Returns logits (the public code applies a sigmoid).
* The public model also builds a second head (``headDet``, 9.3 k parameters) that its forward never
  uses; it is left out.
* External attention runs its two back-to-back linear maps (1x1 conv then memory-unit projection,
  and memory-unit read-out then 1x1 conv) as single products of the composed weight matrices,
  ``(W_k W_1) x`` instead of ``W_k (W_1 x)``: the same function and parameters, half the
  per-pixel work. The first 1x1 conv has no bias: in the public code that bias only adds a
  constant per memory unit before the softmax over positions, which cancels it (it never changes
  the output and never receives a gradient).
* Memory units: the public code initialises ``W_v`` as ``W_k^T`` by making the two parameters
  share storage (tied on the CPU; moving the model to a GPU unties them); here ``W_v`` starts as
  ``W_k^T`` and trains as its own parameter, as on the GPU and in the external-attention paper.
* Convolutions followed by batch norm have no bias (the norm absorbs it), including the
  split-attention MLP's first layer; the identity 1x1 average pooling in the first shortcut is
  left out.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models import register_model
from irstd.models.layers.conv import ConvBNAct


class SplitAttentionConv(nn.Module):
    """ResNeSt split-attention 3x3 convolution (stride 1, padding 1).

    A grouped conv produces ``radix`` branches of ``channels`` maps (groups ``cardinality * radix``,
    BN, ReLU); their sum is globally average-pooled and fed through a grouped fully connected
    bottleneck (``channels -> max(in_chans * radix // reduction, 32) -> channels * radix``, BN+ReLU
    between); a softmax across the branches (per group) weights them and the weighted branches
    are summed. With ``radix == 1`` the softmax becomes a sigmoid gate.

    Shapes: ``B x in_chans x H x W -> B x channels x H x W``.
    """

    def __init__(
        self, in_chans: int, channels: int, cardinality: int = 4, radix: int = 2, reduction: int = 4
    ):
        super().__init__()
        inter = max(in_chans * radix // reduction, 32)
        self.radix = radix
        self.cardinality = cardinality
        self.channels = channels
        self.conv = ConvBNAct(in_chans, channels * radix, 3, groups=cardinality * radix)
        self.fc1 = ConvBNAct(channels, inter, 1, groups=cardinality)
        self.fc2 = nn.Conv2d(inter, channels * radix, 1, groups=cardinality)

    @staticmethod
    def _grouped_linear(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        # A grouped 1x1 conv on a B x C x 1 x 1 map is a linear map with a block-diagonal matrix;
        # as one small dense product it avoids a oneDNN call (and its thread hand-off) on a 1x1 map.
        blocks = conv.weight.flatten(1).chunk(conv.groups, dim=0)
        return F.linear(x, torch.block_diag(*blocks), conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        b, _, h, w = x.shape
        # B x H x W x radix x C: a free view of a channels-last map, and the layout in which the
        # weighted sum over branches stays channels-last.
        branches = x.permute(0, 2, 3, 1).reshape(b, h, w, self.radix, self.channels)
        gap = branches.mean((1, 2)).sum(1)  # B x C
        hidden = self._grouped_linear(gap, self.fc1.conv).view(b, -1, 1, 1)
        hidden = F.relu(self.fc1.bn(hidden)).flatten(1)
        att = self._grouped_linear(hidden, self.fc2)  # B x C*radix
        if self.radix == 1:
            return x * torch.sigmoid(att).view(b, -1, 1, 1)
        # fc2's outputs are ordered (cardinality, radix, C/cardinality): softmax over radix.
        att = att.view(b, self.cardinality, self.radix, -1)
        if self.radix == 2:
            # The two-way softmax is a pair of sigmoids of the difference (no reduction needed).
            diff = att[:, :, 0] - att[:, :, 1]
            att = torch.stack([torch.sigmoid(diff), torch.sigmoid(-diff)], dim=2)
        else:
            att = att.softmax(2)
        att = att.transpose(1, 2).reshape(b, 1, 1, self.radix, self.channels)
        return (branches * att).sum(3).permute(0, 3, 1, 2)


class Bottleneck(nn.Module):
    """ResNeSt bottleneck: 1x1 reduce, split-attention 3x3, [3x3 avg-pool stride], 1x1 expand, residual.

    Args:
        in_chans: input channels.
        planes: inner width (the split-attention conv's channels); output is ``4 * planes``.
        stride: 1 or 2; down-sampling by average pooling after the split-attention conv and, in
            the shortcut, by average pooling before a 1x1 conv (ResNet-D).
        cardinality, radix: split-attention groups and branches.
    """

    expansion = 4

    def __init__(
        self, in_chans: int, planes: int, stride: int = 1, cardinality: int = 4, radix: int = 2
    ):
        super().__init__()
        out_chans = planes * self.expansion
        self.conv1 = ConvBNAct(in_chans, planes, 1)
        self.conv2 = SplitAttentionConv(planes, planes, cardinality, radix)
        self.pool = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = ConvBNAct(planes, out_chans, 1, act=None)
        self.shortcut = None
        if stride != 1 or in_chans != out_chans:
            layers = []
            if stride > 1:
                layers.append(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False))
            layers.append(ConvBNAct(in_chans, out_chans, 1, act=None))
            self.shortcut = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.conv2(self.conv1(x))
        if self.pool is not None:
            out = self.pool(out)
        # In place: the norm's output is not needed by its backward pass.
        return F.relu(self.conv3(out).add_(identity), inplace=True)


class ExternalAttention(nn.Module):
    """External attention (Guo et al., 2021) as ISTDU-Net's fully connected skip block.

    ``y = x + BN(W_2 W_v norm_k(softmax_n(W_k W_1 x)))`` where ``W_1``/``W_2`` are 1x1
    convs (``C x C``), ``W_k`` (``S x C``) and ``W_v`` (``C x S``) are the memory units shared by
    all positions (linear layers, ``S = memory`` units), the softmax runs over the ``N = H W``
    positions and ``norm_k`` divides by the sum over memory units (double normalisation).

    Shapes: ``B x C x H x W -> B x C x H x W``.
    """

    def __init__(self, channels: int, memory: int = 64):
        super().__init__()
        # No bias: W_k b_1 adds a constant per memory unit, which the softmax over positions cancels.
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.mk = nn.Parameter(torch.empty(memory, channels))
        self.mv = nn.Parameter(torch.empty(channels, memory))
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        # Initialisation of the public code: N(0, 2 / fan_out) everywhere, W_v starts as W_k^T.
        for conv in (self.conv1, self.conv2):
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / channels))
        nn.init.normal_(self.mk, 0.0, math.sqrt(2.0 / memory))
        with torch.no_grad():
            self.mv.copy_(self.mk.t())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # B x N x C rows: a free view of a channels-last map (a copy otherwise).
        rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        # W_k (W_1 x) == (W_k W_1) x: one S x C product per position instead of two C x C + S x C.
        key = self.mk @ self.conv1.weight.view(c, c)  # S x C
        attn = torch.matmul(key, rows.transpose(1, 2)).softmax(dim=-1)  # B x S x N, softmax over N
        norm = attn.sum(dim=1, keepdim=True).add_(1e-9)  # over the S memory units
        attn = attn / norm if torch.is_grad_enabled() else attn.div_(norm)
        value = (self.conv2.weight.view(c, c) @ self.mv).t()  # S x C: W_2 (W_v a) == (W_2 W_v) a
        bn = self.bn
        if bn.training or bn.running_mean is None:
            out = torch.matmul(attn.transpose(1, 2), value).view(b, h, w, c).permute(0, 3, 1, 2)
            return x + bn(out)
        # Inference: the batch norm is a per-channel affine map; fold it into value (S x C, tiny)
        # and add the residual in the same product.
        scale = torch.rsqrt(bn.running_var + bn.eps) * bn.weight
        shift = bn.bias - bn.running_mean * scale
        out = torch.baddbmm(rows, attn.transpose(1, 2), (value * scale).expand(b, -1, -1)).add_(shift)
        return out.view(b, h, w, c).permute(0, 3, 1, 2)


class ISTDUNet(nn.Module):
    """ISTDU-Net; see the module docstring.

    Args:
        in_chans: input channels.
        stem_width: channels after the stem.
        planes: inner widths of the four stages (outputs are 4x these).
        blocks: bottlenecks per stage.
        cardinality, radix: split-attention groups and branches.
        memory: external-attention memory units.
    """

    inference_channels_last = True  # its forward converts the input to channels-last

    def __init__(
        self,
        in_chans: int = 1,
        stem_width: int = 16,
        planes: tuple[int, ...] = (16, 32, 64, 128),
        blocks: tuple[int, ...] = (1, 2, 4, 8),
        cardinality: int = 4,
        radix: int = 2,
        memory: int = 64,
    ):
        super().__init__()
        if len(planes) != len(blocks):
            raise ValueError("planes and blocks need the same length")
        self.stride = 2 ** (len(planes) - 1)
        self.deep_supervision = False
        self.input_norm = nn.BatchNorm2d(in_chans, affine=False)
        self.stem = ConvBNAct(in_chans, stem_width, 3)
        stages = []
        cin = stem_width
        for i, (p, n) in enumerate(zip(planes, blocks)):
            stride = 1 if i == 0 else 2
            layers = [Bottleneck(cin, p, stride, cardinality, radix)]
            cin = p * Bottleneck.expansion
            layers += [Bottleneck(cin, p, 1, cardinality, radix) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        # Encoder initialisation of the public code (ResNeSt): N(0, 2 / (k * k * out_channels)).
        for m in self.stages.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        widths = [p * Bottleneck.expansion for p in planes]
        self.skips = nn.ModuleList(ExternalAttention(c, memory) for c in widths)
        # up[k] maps level (L-1-k) to the width of level (L-2-k).
        self.up = nn.ModuleList(
            ConvBNAct(widths[i], widths[i - 1], 1) for i in range(len(widths) - 1, 0, -1)
        )
        head_mid = widths[0] // 4
        self.head = nn.Sequential(ConvBNAct(widths[0], head_mid, 3), nn.Conv2d(head_mid, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last activations: oneDNN's grouped convolutions, pooling and resampling are
        # several times faster in NHWC on CPU; the result is the same.
        h = self.stem(self.input_norm(x).to(memory_format=torch.channels_last))
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        # External attention on each encoder output (deepest included); the encoder itself
        # continues from the raw maps.
        feats = [skip(f) for skip, f in zip(self.skips, feats)]
        out = feats[-1]
        for up, skip in zip(self.up, reversed(feats[:-1])):
            # The 1x1 conv runs before upsampling, as in the public code (4x fewer pixels).
            out = F.interpolate(up(out), size=skip.shape[-2:], mode="bilinear", align_corners=False)
            out = out.add_(skip)
        return self.head(out)


@register_model(
    "istdunet",
    reference_params=2.761e6,
    reference="Hou et al., ISTDU-Net: Infrared Small-Target Detection U-Net, IEEE GRSL 2022; count of the public "
    "implementation (as shipped in the BasicIRSTD toolbox, model/ISTDUNet: ISTDU_Net with ResNeSt encoder "
    "[1,2,4,8] x [16,32,64,128], external attention skips, unused headDet included, 1 input channel: 2,761,138)",
)
def istdunet(in_chans: int = 1, **kwargs) -> ISTDUNet:
    """ISTDU-Net with the public configuration; kwargs go to :class:`ISTDUNet`."""
    return ISTDUNet(in_chans=in_chans, **kwargs)


__all__ = ["ISTDUNet", "SplitAttentionConv", "ExternalAttention", "Bottleneck", "istdunet"]
