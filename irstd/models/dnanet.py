"""DNANet: Dense Nested Attention Network (Li et al., IEEE TIP 2023).

Paper: B. Li, C. Xiao, L. Wang, Y. Wang, Z. Lin, M. Li, W. An, Y. Guo, "Dense Nested Attention
Network for Infrared Small Target Detection", IEEE Transactions on Image Processing 32, 2023.

Structure
---------
* **Dense nested interactive module (DNIM).** A grid of nodes ``X[i][j]`` (level ``i`` = resolution
  ``1 / 2**i``, column ``j``), as in UNet++ but with links in both directions: node ``X[i][j]``
  (``j >= 1``) sees every earlier node of its own level ``X[i][0..j-1]``, the node below it
  upsampled ``X[i+1][j-1]`` and the node above it downsampled ``X[i-1][j]``; ``X[i][0]`` is the
  encoder (2x2 max-pool then residual blocks). Up/down-sampling is bilinear (align_corners=True).
* **Channel-spatial attention module (CSAM).** Every node is a stack of residual blocks
  ``conv3x3-BN-ReLU-conv3x3-BN -> attention -> + shortcut -> ReLU`` whose attention is CBAM
  (channel gate then spatial gate). The attention is a constructor argument (``attention``: a
  factory ``channels -> nn.Module`` mapping ``B x C x H x W`` to the same shape), so variants such
  as BALISTD's SFIM-DNANet swap it in one line.
* **Feature pyramid fusion (FPFM).** The last node of every level ``X[i][L-1-i]`` is projected to the
  top-level width by a 1x1 convolution, upsampled to full resolution, concatenated with
  ``X[0][L-1]`` and fused by one more residual block.
* **Deep supervision.** 1x1 heads on ``X[0][1..L-2]`` and on the fused
  map. Train mode returns ``[fused, X01-head, X02-head, X03-head]`` (all full resolution, logits);
  eval mode returns the fused logits only. ``deep_supervision=False`` keeps only the fused head, as
  in the public code.

Defaults match the public implementation: widths ``(16, 32, 64, 128, 256)``, residual blocks per
level ``(2, 2, 2, 2)``; 4.69 M parameters with one input channel (public: 4.697 M). Stride 16
(``create`` requires multiples of 16, the zoo's interface; the class itself also runs other sizes,
with uneven pooling).

Attention API
-------------
``DNANet(attention=factory)`` where ``factory(channels) -> nn.Module`` maps ``B x C x H x W`` to the
same shape; it is built once per residual block (``C`` = the block's output width) and applied to
the block's second conv output before the residual sum. Default :class:`~irstd.models.layers.cbam.CBAM`
(channel MLP reduction 16, spatial kernel 7). Example: ``DNANet(attention=SFIM)`` is SFIM-DNANet.

Speed (same function as the public code)
----------------------------------------
Activations run channels-last without autograd (oneDNN's NHWC kernels are markedly faster on CPU;
training stays NCHW, whose backward is faster); the inference
copy (:func:`irstd.models.fuse_for_inference`) has the batch norms folded into the convolutions and
channels-last weights; residual sums are
in place when autograd is off; the 1x1 pyramid projections run before upsampling (as in the public
code); every resampled tensor is computed once.

Deviations from the public code
-------------------------------
* Returns logits (the public code applies a sigmoid).
* The convolutions followed by batch norm have no bias (the public code has one; batch norm
  subtracts it again, so the function is unchanged): about 5 k fewer parameters.
* Side outputs are listed final-first (the zoo's interface), not last.
* Resampling uses explicit target sizes instead of fixed ``scale_factor`` modules (the same values
  for sizes that are multiples of 16).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models import register_model
from irstd.models.layers.cbam import CBAM
from irstd.models.layers.conv import ConvBNAct, inference_layout

AttentionFactory = Callable[[int], nn.Module]


class ResidualAttentionBlock(nn.Module):
    """``relu(attention(bn(conv(relu(bn(conv(x)))))) + shortcut(x))`` (DNANet's Res-CBAM block).

    Args:
        in_chans: input channels.
        out_chans: output channels; the shortcut is a 1x1 conv + BN when they differ.
        attention: factory ``channels -> module`` applied before the residual sum (CBAM by default).
    """

    def __init__(self, in_chans: int, out_chans: int, attention: AttentionFactory = CBAM):
        super().__init__()
        self.conv1 = ConvBNAct(in_chans, out_chans, 3)
        self.conv2 = ConvBNAct(out_chans, out_chans, 3, act=None)
        self.attention = attention(out_chans)
        self.shortcut = ConvBNAct(in_chans, out_chans, 1, act=None) if in_chans != out_chans else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.attention(self.conv2(self.conv1(x)))
        # In place only without autograd: an arbitrary attention module may keep its output for backward.
        out = out + identity if torch.is_grad_enabled() else out.add_(identity)
        return F.relu(out, inplace=True)


def _stage(in_chans: int, out_chans: int, blocks: int, attention: AttentionFactory) -> nn.Sequential:
    layers = [ResidualAttentionBlock(in_chans, out_chans, attention)]
    layers += [ResidualAttentionBlock(out_chans, out_chans, attention) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class DNANet(nn.Module):
    """Dense nested attention network; see the module docstring.

    Args:
        in_chans: input channels.
        widths: channels per level, top (full resolution) first; ``L = len(widths)`` levels.
        depths: residual blocks per node on levels ``1..L-1`` (``len(widths) - 1`` values); the top
            level uses one block per node.
        deep_supervision: side heads on the top-level nested nodes (train mode returns them).
        attention: factory ``channels -> nn.Module`` used inside every residual block.
    """

    inference_channels_last = True  # see inference_layout in forward

    def __init__(
        self,
        in_chans: int = 1,
        widths: tuple[int, ...] = (16, 32, 64, 128, 256),
        depths: tuple[int, ...] = (2, 2, 2, 2),
        deep_supervision: bool = True,
        attention: AttentionFactory = CBAM,
    ):
        super().__init__()
        if len(depths) != len(widths) - 1:
            raise ValueError(f"need len(depths) == len(widths) - 1, got {len(depths)} and {len(widths)}")
        self.levels = levels = len(widths)
        self.widths = tuple(widths)
        self.stride = 2 ** (levels - 1)
        # Side heads sit on X[0][1..L-2]: none exist with fewer than three levels.
        self.deep_supervision = bool(deep_supervision) and levels > 2
        blocks = (1,) + tuple(depths)

        # nodes[i][j] is X[i][j]; built for i + j <= L - 1.
        self.nodes = nn.ModuleList()
        for i in range(levels):
            row = nn.ModuleList()
            for j in range(levels - i):
                if j == 0:
                    cin = in_chans if i == 0 else widths[i - 1]
                else:
                    cin = widths[i] * j + widths[i + 1] + (widths[i - 1] if i > 0 else 0)
                row.append(_stage(cin, widths[i], blocks[i], attention))
            self.nodes.append(row)

        # Feature pyramid fusion: project the last node of each lower level to the top width.
        self.pyramid = nn.ModuleList(nn.Conv2d(widths[i], widths[0], 1) for i in range(1, levels))
        self.fuse = _stage(widths[0] * levels, widths[0], 1, attention)

        self.head = nn.Conv2d(widths[0], 1, 1)
        if self.deep_supervision:
            self.side_heads = nn.ModuleList(nn.Conv2d(widths[0], 1, 1) for _ in range(levels - 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        levels = self.levels
        sizes = [x.shape[-2:]]
        for _ in range(levels - 1):
            h, w = sizes[-1]
            sizes.append((h // 2, w // 2))

        # Channels-last activations without autograd: oneDNN's convolutions, pooling and resampling
        # are markedly faster in NHWC on CPU. Not in training: there the NHWC backward (weight
        # gradients re-laid out per conv) made a train step slower than NCHW (measured 1.18 vs 0.90
        # of the public code's time); the result is the same either way.
        x = inference_layout(x)
        feats: list[list[torch.Tensor]] = [[] for _ in range(levels)]
        feats[0].append(self.nodes[0][0](x))
        # Anti-diagonal order: column k adds the encoder node X[k][0], then X[k-1][1] ... X[0][k].
        for k in range(1, levels):
            feats[k].append(self.nodes[k][0](F.max_pool2d(feats[k - 1][0], 2)))
            for j in range(1, k + 1):
                i = k - j
                parts = feats[i][:j] + [_resize(feats[i + 1][j - 1], sizes[i])]
                if i > 0:
                    parts.append(_resize(feats[i - 1][j], sizes[i]))
                feats[i].append(self.nodes[i][j](torch.cat(parts, dim=1)))

        # The 1x1 projection commutes with bilinear resampling, so project first, at low resolution.
        pyramid = [
            _resize(proj(feats[i][levels - 1 - i]), sizes[0])
            for i, proj in zip(range(levels - 1, 0, -1), reversed(self.pyramid))
        ]
        fused = self.fuse(torch.cat(pyramid + [feats[0][levels - 1]], dim=1))
        out = self.head(fused)
        if not (self.training and self.deep_supervision):
            return out
        return [out] + [head(feats[0][j + 1]) for j, head in enumerate(self.side_heads)]


@register_model(
    "dnanet",
    reference_params=4.697e6,
    reference="Li et al., Dense Nested Attention Network for Infrared Small Target Detection, IEEE TIP 2023; "
    "count of the public implementation (YeRen123455/Infrared-Small-Target-Detection model_DNANet.py, also "
    "in the BasicIRSTD toolbox: Res_CBAM_block, num_blocks [2,2,2,2], nb_filter [16,32,64,128,256], deep "
    "supervision, 1 input channel: 4,696,568)",
)
def dnanet(in_chans: int = 1, **kwargs) -> DNANet:
    """DNANet with the public configuration; kwargs go to :class:`DNANet`."""
    return DNANet(in_chans=in_chans, **kwargs)


__all__ = ["DNANet", "ResidualAttentionBlock", "AttentionFactory", "dnanet"]
