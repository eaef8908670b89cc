"""RDIAN: Receptive-field and Direction Induced Attention Network for infrared small target detection."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models import register_model
from irstd.models.layers.attention import directional_contrast
from irstd.models.layers.conv import ConvBNAct, FCNHead, inference_layout


def _conv(in_chans: int, out_chans: int, k: int = 3, s: int = 1) -> ConvBNAct:
    # RDIAN's conv unit: conv (no bias) + BN + LeakyReLU(0.01).
    return ConvBNAct(in_chans, out_chans, k, s, act=nn.LeakyReLU)


class _Bottleneck(nn.Module):
    """RDIAN's residual unit at one receptive field: ``x + conv_k(conv_k(x))`` through ``channels // 2``."""

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels // 2, k), _conv(channels // 2, channels, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        # In place only without autograd: backward of the in-place LeakyReLU needs its output.
        return y.add_(x) if not torch.is_grad_enabled() else y + x


class _CBAM(nn.Module):
    """CBAM as configured in RDIAN's release (differs from :mod:`irstd.models.layers.cbam`).

    Channel gate: a shared MLP *with* biases (``Linear(C, C // r)``, ReLU, ``Linear(C // r, C)``) on the
    global average and max pools, summed, sigmoid. Spatial gate: ``[max_c, mean_c]`` -> conv7x7 (no bias)
    -> BatchNorm -> sigmoid. ``out = y * Ms(y)`` with ``y = x * Mc(x)``.
    """

    def __init__(self, channels: int, reduction: int = 32, kernel_size: int = 7):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        # The release's spatial gate keeps a slow BatchNorm (momentum 0.01).
        self.spatial = ConvBNAct(2, 1, kernel_size, act=None, norm=partial(nn.BatchNorm2d, momentum=0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        # Both pooled vectors through the MLP in one batched call.
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=0)
        att = self.fc2(F.relu(self.fc1(pooled), inplace=True))
        x = x * torch.sigmoid(att[:b] + att[b:]).view(b, c, 1, 1)
        desc = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(desc))


@register_model(
    "rdian",
    reference_params=216_558,
    reference=(
        "Sun, Bai, Yang, Bai, 'Receptive-Field and Direction Induced Attention Network for Infrared "
        "Dim Small Target Detection With a Large-Scale Dataset IRDST', IEEE TGRS 2023; authors' PyTorch "
        "release (vendored in XinyiYing/BasicIRSTD as model/RDIAN-main, ported as model/RDIAN): 216,558 "
        "trainable parameters with 1 input channel (0.217 M; the eight fixed direction kernels are "
        "frozen and not counted)"
    ),
)
class RDIAN(nn.Module):
    """RDIAN (Sun et al., TGRS 2023): multi-receptive-field residual branches and a direction-induced cue.

    Structure (sizes for an ``H x W`` input):

    * direction cue: ``md = sigmoid(sum_d (x - x_{+2d}) (x - x_{-2d}))`` over the four pairs of opposite
      directions at distance 2 (:func:`directional_contrast`; RDIAN's eight fixed 5x5 difference kernels
      with zero padding), which weights the first features: ``f1 = conv(x)`` (16 ch, full resolution),
      ``f = conv_s2(f1 + f1 * md)`` (32 ch at ``H/2``). Conv units are conv + BN + LeakyReLU(0.01).
    * receptive-field branches on ``f``: residual bottleneck units (32 -> 16 -> 32) with kernels 1, 3, 5, 7
      (1, 2, 2, 2 units); their outputs are concatenated (128 ch) and fused by a 3x3 conv unit to 32 ch.
    * CBAM (reduction 32, BN in the spatial gate) on the fused map, bilinear up-sampling to ``H x W``
      (``align_corners=False``), plus a 1x1 conv unit of ``f1`` (16 -> 32), ReLU.
    * head: FCN head (3x3 conv 32 -> 8, BN, ReLU, dropout 0.1, 1x1 conv -> 1).

    Output: logits ``B x 1 x H x W`` (the release returns ``sigmoid``). ``stride = 2``; no deep supervision.

    Deviations: the direction cue is computed with slicing instead of eight single-channel convolutions
    (same values). With ``in_chans > 1`` it is computed on the channel mean of the input (the release is
    single-channel only); for one channel this is the release's function.

    Speed: with autograd off the network runs channels-last
    (:func:`~irstd.models.layers.conv.inference_layout`); :func:`irstd.models.fuse_for_inference` folds
    BatchNorm into the convolutions and stores their weights channels-last: same function.

    Args:
        in_chans: input channels.
        drop: dropout of the head in training.
    """

    stride = 2
    deep_supervision = False
    inference_channels_last = True  # see inference_layout in forward

    def __init__(self, in_chans: int = 1, drop: float = 0.1):
        super().__init__()
        self.conv1 = _conv(in_chans, 16)
        self.conv2 = _conv(16, 32, s=2)
        self.branches = nn.ModuleList(
            nn.Sequential(*[_Bottleneck(32, k) for _ in range(n)])
            for k, n in ((1, 1), (3, 2), (5, 2), (7, 2))
        )
        self.conv_cat = _conv(4 * 32, 32, 3)
        self.cbam = _CBAM(32, 32)
        self.conv_res = _conv(16, 32, 1)
        self.head = FCNHead(32, 1, drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x if x.shape[1] == 1 else x.mean(1, keepdim=True)
        md = torch.sigmoid(directional_contrast(grey, 2))

        f1 = self.conv1(inference_layout(x))
        f = self.conv2(torch.addcmul(f1, f1, md))
        fused = self.conv_cat(torch.cat([branch(f) for branch in self.branches], dim=1))
        att = self.cbam(fused)

        up = F.interpolate(att, size=x.shape[-2:], mode="bilinear", align_corners=False)
        res = self.conv_res(f1)
        out = F.relu(up.add_(res) if not torch.is_grad_enabled() else up + res, inplace=True)
        return self.head(out)


__all__ = ["RDIAN"]
