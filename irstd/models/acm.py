"""ACM: Asymmetric Contextual Modulation for infrared small target detection (U-Net variant)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models import register_model
from irstd.models.layers.attention import AsymBiChaFuse
from irstd.models.layers.conv import ConvBNAct, FCNHead, inference_layout, res_stage


@register_model(
    "acm",
    reference_params=397_823,
    reference=(
        "Dai, Wu, Zhou, Barnard, 'Asymmetric Contextual Modulation for Infrared Small Target Detection', "
        "WACV 2021; U-Net variant ASKCResUNet of YimianDai/open-acm (MXNet) as ported to PyTorch in "
        "XinyiYing/BasicIRSTD model/ACM (layers 3-3-3, channels 8-16-32-64, AsymBi fusion): 397,823 "
        "parameters with 1 input channel (0.398 M in the BasicIRSTD / SCTransNet tables)"
    ),
)
class ACM(nn.Module):
    """ACM-UNet (Dai et al., WACV 2021): a ResNet U-Net with asymmetric contextual modulation at the skips.

    Structure (``c = channels``, ``L = layers``; sizes for an ``H x W`` input):

    * stem: BatchNorm of the input (no affine, as the authors' ``BatchNorm(scale=False, center=False)``),
      conv3x3/2 ``in -> c0``, conv3x3 ``c0 -> c0``, conv3x3 ``c0 -> 2 c0`` (each + BN + ReLU), max-pool
      3x3/2: ``2 c0 = c1`` channels at ``H/4``.
    * encoder: three ResNet stages of ``L`` basic blocks: ``c1`` at ``H/4``, ``c2`` at ``H/8``,
      ``c3`` at ``H/16``.
    * decoder: transposed conv 4x4/2 (``c3 -> c2``), :class:`AsymBiChaFuse` with the ``H/8`` skip (top-down
      global channel gate from the deep map, bottom-up point-wise gate from the shallow one, 3x3 conv),
      a stage of ``L`` blocks; the same again to ``c1`` at ``H/4``.
    * head: FCN head (3x3 conv to ``c1/4``, BN, ReLU, dropout 0.1, 1x1 conv to 1) at ``H/4``, then
      bilinear x4 up-sampling to ``H x W`` (the public PyTorch port; ``align_corners=False``).

    Output: logits ``B x 1 x H x W`` (the public code returns ``sigmoid``; we return the logits).
    ``H`` and ``W`` must be multiples of ``stride = 16`` (two stride-2 stages after the /4 stem, undone by
    exact x2 transposed convs). No deep supervision.

    Deviations from the public code: BatchNorm momentum is PyTorch's 0.1 (MXNet's 0.9 convention); the
    PyTorch port passes 0.9 to PyTorch, which weights the *new* batch by 0.9 -- a unit confusion we do
    not copy. The input BatchNorm has no affine parameters, as in the authors' MXNet code (the PyTorch
    port adds two; they are in its 397,823 count).

    Speed: with autograd off the network runs channels-last
    (:func:`~irstd.models.layers.conv.inference_layout`); :func:`irstd.models.fuse_for_inference` folds
    BatchNorm into the convolutions and stores their weights channels-last: same function.

    Args:
        in_chans: input channels.
        layers: basic blocks per stage (encoder and mirrored decoder).
        channels: ``(c0, c1, c2, c3)`` widths; ``c1`` must equal ``2 * c0``.
        fuse_reduction: bottleneck ratio of the modulation gates.
        drop: dropout of the head in training.
    """

    stride = 16
    deep_supervision = False
    inference_channels_last = True  # see inference_layout in forward

    def __init__(
        self,
        in_chans: int = 1,
        layers: tuple[int, int, int] = (3, 3, 3),
        channels: tuple[int, int, int, int] = (8, 16, 32, 64),
        fuse_reduction: int = 4,
        drop: float = 0.1,
    ):
        super().__init__()
        c0, c1, c2, c3 = channels
        if c1 != 2 * c0:
            raise ValueError(f"channels[1] must be 2 * channels[0], got {channels}")
        self.stem = nn.Sequential(
            nn.BatchNorm2d(in_chans, affine=False),
            ConvBNAct(in_chans, c0, 3, s=2),
            ConvBNAct(c0, c0, 3),
            ConvBNAct(c0, c1, 3),
            nn.MaxPool2d(3, 2, 1),
        )
        self.layer1 = res_stage(c1, c1, layers[0], 1)
        self.layer2 = res_stage(c1, c2, layers[1], 2)
        self.layer3 = res_stage(c2, c3, layers[2], 2)

        self.deconv2 = nn.ConvTranspose2d(c3, c2, 4, 2, 1)
        self.fuse2 = AsymBiChaFuse(c2, fuse_reduction)
        self.uplayer2 = res_stage(c2, c2, layers[1], 1)
        self.deconv1 = nn.ConvTranspose2d(c2, c1, 4, 2, 1)
        self.fuse1 = AsymBiChaFuse(c1, fuse_reduction)
        self.uplayer1 = res_stage(c1, c1, layers[0], 1)

        self.head = FCNHead(c1, 1, drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(inference_layout(x))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)

        out = self.uplayer2(self.fuse2(self.deconv2(c3), c2))
        out = self.uplayer1(self.fuse1(self.deconv1(out), c1))
        pred = self.head(out)
        return F.interpolate(pred, scale_factor=4, mode="bilinear", align_corners=False)


__all__ = ["ACM"]
