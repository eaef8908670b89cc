"""LiteNet: irstd's own small U-Net for CPU-trainable infrared small target detection.

Designed for the default detector, which must train on a 2-core CPU in about two hours. The ideas
are borrowed from the networks of the zoo, kept where they matter for targets of a few pixels:

* full-resolution first stage and max-pool down-sampling (DNANet, ACM): a 2x2 max keeps a
  one-pixel bright target alive where a strided convolution would average it away;
* residual stages and channel + spatial attention on every decoder level (DNANet's CBAM);
* deep supervision on every decoder level and a fused head over all levels (DNANet's feature
  pyramid fusion), with each level projected to a few channels *before* up-sampling so that the
  full-resolution fusion stays cheap.

The fused head is ``1x1 conv + BN`` (mixing the levels) then a 3x3 conv to the logit. An activation
between the two bounds the logit above: with ``fuse_act="relu"`` it is ``w . relu(z) + b``, and once
training has made the final weights non-positive (the shipped detector's have) the logit can never
exceed ``b``, so every confident target gets the same score (0.911 = sigmoid(2.33)). The default
head has no activation there; ``fuse_act="relu"`` keeps the first design, which the shipped default
detector was trained with (``irstd/weights/default.yaml`` sets it until the detector is retrained).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models import register_model
from irstd.models.layers.cbam import CBAM
from irstd.models.layers.conv import ConvBNAct, res_stage


_FUSE_ACTS = {"none": None, "relu": nn.ReLU}


class LiteNet(nn.Module):
    """U-Net with residual stages, CBAM decoder attention and deep-supervised pyramid fusion.

    Args:
        in_chans: input channels.
        widths: channels per level, full resolution first; level ``i`` runs at ``1 / 2**i``.
        blocks: residual basic blocks per encoder level.
        fuse_chans: channels each decoder level is projected to before the full-size fusion.
        deep_supervision: in train mode return ``[fused, side_0, ..., side_{L-2}]``.
        fuse_act: activation between the fused head's 1x1 mixing and its logit conv: ``"none"``
            (default: logits not bounded above) or ``"relu"`` (the original head, see the module
            docstring). Same parameters and state-dict keys either way.
        space_to_depth: ``s`` > 1 runs the whole network at ``1 / s`` resolution on the
            ``pixel_unshuffle``-d frame (``s * s`` channels per input channel) and returns
            full-resolution logits through ``pixel_shuffle`` (each head predicts ``s * s``
            sub-pixels). Every input pixel stays a channel, so a one-pixel target is not
            averaged away, while the costly full-resolution level disappears (``s = 2``, widths
            unchanged: 4.5x faster at 640x512 on one CPU thread, README model card). Default 1.

    Output: logits ``B x 1 x H x W``; ``H`` and ``W`` must be multiples of
    ``stride = 2**(L-1) * space_to_depth``.
    """

    def __init__(
        self,
        in_chans: int = 1,
        widths: tuple[int, ...] = (8, 16, 32, 64, 128),
        blocks: tuple[int, ...] = (1, 1, 2, 2, 2),
        fuse_chans: int = 8,
        deep_supervision: bool = True,
        fuse_act: str = "none",
        space_to_depth: int = 1,
    ):
        super().__init__()
        if int(space_to_depth) < 1:
            raise ValueError(f"space_to_depth must be >= 1, got {space_to_depth}")
        self.s2d = int(space_to_depth)
        sub = self.s2d * self.s2d
        if len(widths) != len(blocks) or len(widths) < 2:
            raise ValueError("widths and blocks need the same length, at least 2")
        if fuse_act not in _FUSE_ACTS:
            raise ValueError(f"fuse_act must be one of {sorted(_FUSE_ACTS)}, got {fuse_act!r}")
        self.fuse_act = fuse_act
        self.deep_supervision = bool(deep_supervision)
        self.stride = 2 ** (len(widths) - 1) * self.s2d
        self.stem = ConvBNAct(in_chans * sub, widths[0], 3)
        self.encoder = nn.ModuleList()
        prev = widths[0]
        for w, b in zip(widths, blocks):
            self.encoder.append(res_stage(prev, w, b))
            prev = w
        self.pool = nn.MaxPool2d(2)
        self.decoder = nn.ModuleList()
        self.attention = nn.ModuleList()
        for i in range(len(widths) - 1):
            self.decoder.append(res_stage(widths[i] + widths[i + 1], widths[i], 1))
            self.attention.append(CBAM(widths[i], reduction=4))
        levels = len(widths) - 1
        self.project = nn.ModuleList(ConvBNAct(widths[i], fuse_chans, 1) for i in range(levels))
        self.side_heads = nn.ModuleList(nn.Conv2d(fuse_chans, sub, 1) for _ in range(levels))
        # 1x1 mixing first: a 3x3 conv over all levels at full size would cost more than the encoder.
        self.fuse = nn.Sequential(
            ConvBNAct(fuse_chans * levels, fuse_chans, 1, act=_FUSE_ACTS[fuse_act]),
            nn.Conv2d(fuse_chans, sub, 3, padding=1),
        )

    def _full(self, y: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(y, self.s2d) if self.s2d > 1 else y

    def forward(self, x: torch.Tensor):
        if self.s2d > 1:
            x = F.pixel_unshuffle(x, self.s2d)
        size = x.shape[-2:]
        feats = []
        h = self.stem(x)
        for i, stage in enumerate(self.encoder):
            h = stage(h if i == 0 else self.pool(h))
            feats.append(h)
        d = feats[-1]
        decoded = [None] * (len(feats) - 1)
        for i in range(len(feats) - 2, -1, -1):
            up = F.interpolate(d, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            d = self.attention[i](self.decoder[i](torch.cat([feats[i], up], dim=1)))
            decoded[i] = d
        projected = [self.project[0](decoded[0])]
        for i in range(1, len(decoded)):
            projected.append(
                F.interpolate(self.project[i](decoded[i]), size=size, mode="bilinear", align_corners=False)
            )
        fused = self._full(self.fuse(torch.cat(projected, dim=1)))
        if self.training and self.deep_supervision:
            return [fused] + [self._full(head(p)) for head, p in zip(self.side_heads, projected)]
        return fused


@register_model(
    "litenet",
    reference="irstd's own design (this file), so no reference count (ours: 912,717)",
)
def litenet(in_chans: int = 1, **kwargs) -> LiteNet:
    return LiteNet(in_chans=in_chans, **kwargs)
