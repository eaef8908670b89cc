"""Ivan-ISTD's detection network (paper 000, Section 3.2 "Network Structure").

What the paper states, and how it is built here:

* "A five-layer residual downsampling module {E_i}, i = 1..5, is used in the encoder to extract
  multi-scale high-level features": five encoder levels of residual blocks (two 3x3 conv + BN,
  LeakyReLU, 1x1 projection shortcut), 2x2 max-pool between levels, widths ``b, 2b, 4b, 8b, 8b``
  at 1/1 ... 1/16 (``b = 32``).
* "low-dimensional semantic representations are generated through block embedding": the four
  skip levels are embedded in patches (16/8/4/2, one 1/16 token grid) and mixed by the
  spatial-channel cross transformer of SCTransNet
  (:class:`~irstd.models.layers.transformer.ChannelCrossTransformer`, 4 layers), the network of
  the public Ivan-ISTD release; the transformed skips are added to the encoder features.
* "In the decoder, spatial resolution is progressively restored using upsampling {D_i},
  i = 1..4, and skip connections": four decoder levels (nearest 2x up-sampling, channel
  cross-attention of the skip, two 3x3 conv-BN-ReLU; SCTransNet's ``UpBlock``) at 1/8, 1/4, 1/2,
  1/1.
* "Binary cross-entropy loss is applied to the output of each decoding layer": a 1x1 side head
  per decoder level, up-sampled (bilinear) to the input size.
* "Multi-scale feature fusion is employed to aggregate contextual information from different
  levels, generating the final prediction": each decoder level is projected to
  ``fuse_chans`` channels (1x1 conv-BN-ReLU) and up-sampled; the projections and the four side
  logits are concatenated and fused (3x3 conv-BN-ReLU, 1x1 conv) into the final logit ``D_1``,
  the output paper 000 evaluates and aligns between the clean and the noisy branch. Every
  parameter therefore reaches the final output (the side heads through the fusion), which RNIL's
  consistency term on that output relies on.

The modules of the paper's Fig. 9 (a), (b) ("CAF") are drawn but not described in the text; they
are not reproduced. Parameters with one input channel: 11,213,853 (paper 000, Table 4: 11.33 M).

Outputs: logits. Eval mode: the final (fused) logit ``B x 1 x H x W``. Train mode with deep
supervision: ``[final, side_1/1, side_1/2, side_1/4, side_1/8]``, all at the input size, to be
weighted by ``loss.deep_supervision`` (paper: ``sum_i lambda_i BCE``; its weights are not given,
the release sums them). ``stride = 16``.
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
from irstd.models.sctransnet import UpBlock


@register_model(
    "ivanistd",
    reference_params=11.33e6,
    reference=(
        "Ivan-ISTD, paper 000 (../shared/papers/000_*.txt), Section 3.2 and Table 4 (11.33 M parameters as "
        "published); residual encoder, block embedding by SCTransNet's channel-cross transformer (the "
        "public release's network), four-level decoder, multi-scale fusion; Fig. 9's CAF modules are "
        "not described and not reproduced"
    ),
)
class IvanISTD(nn.Module):
    """Ivan-ISTD's network; see the module docstring.

    Args:
        in_chans: input channels.
        base_channels: width ``b`` of the first level.
        num_layers: channel-cross transformer layers.
        patch_sizes: patch size per skip level; ``2**i * patch_sizes[i]`` equal for all ``i``.
        ffn_expansion: hidden width factor of the transformer's feed-forward networks.
        fuse_chans: channels each decoder level is projected to for the fusion.
        deep_supervision: return the side outputs in train mode.
    """

    deep_supervision = True

    def __init__(self, in_chans: int = 1, base_channels: int = 32, num_layers: int = 4,
                 patch_sizes: Sequence[int] = (16, 8, 4, 2), ffn_expansion: float = 2.66,
                 fuse_chans: int = 16, deep_supervision: bool = True):
        super().__init__()
        b = int(base_channels)
        widths = (b, 2 * b, 4 * b, 8 * b)
        grids = {2**i * p for i, p in enumerate(patch_sizes)}
        if len(patch_sizes) != 4 or len(grids) != 1:
            raise IRSTDError(f"ivanistd: patch sizes {tuple(patch_sizes)} do not give one token grid for the 4 levels")
        self.stride = math.lcm(16, grids.pop())
        self.deep_supervision = bool(deep_supervision)
        act = nn.LeakyReLU
        self.enc = nn.ModuleList([
            BasicBlock(in_chans, widths[0], act=act),
            BasicBlock(widths[0], widths[1], act=act),
            BasicBlock(widths[1], widths[2], act=act),
            BasicBlock(widths[2], widths[3], act=act),
            BasicBlock(widths[3], widths[3], act=act),
        ])
        self.embed = ChannelCrossTransformer(widths, patch_sizes, num_layers, ffn_expansion)
        dec_widths = (widths[2], widths[1], widths[0], widths[0])  # at 1/8, 1/4, 1/2, 1/1
        self.dec = nn.ModuleList([
            UpBlock(widths[3], widths[3], dec_widths[0]),
            UpBlock(dec_widths[0], widths[2], dec_widths[1]),
            UpBlock(dec_widths[1], widths[1], dec_widths[2]),
            UpBlock(dec_widths[2], widths[0], dec_widths[3]),
        ])
        self.side = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in dec_widths)
        self.project = nn.ModuleList(ConvBNAct(c, fuse_chans, 1) for c in dec_widths)
        n = len(dec_widths)
        self.fuse = nn.Sequential(ConvBNAct(n * (fuse_chans + 1), fuse_chans, 3), nn.Conv2d(fuse_chans, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = x.shape[-2:]
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        d = skips.pop()
        skips = [e + t for e, t in zip(skips, self.embed(skips))]
        decoded = []
        for block, skip in zip(self.dec, reversed(skips)):
            d = block(d, skip)
            decoded.append(d)

        def up(t: torch.Tensor) -> torch.Tensor:
            return t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        sides = [up(head(f)) for head, f in zip(self.side, decoded)]
        feats = [up(proj(f)) for proj, f in zip(self.project, decoded)]
        final = self.fuse(torch.cat(feats + sides, dim=1))
        if self.training and self.deep_supervision:
            return [final] + sides[::-1]
        return final


__all__ = ["IvanISTD"]
