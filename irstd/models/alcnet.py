"""ALCNet: Attentional Local Contrast Networks for infrared small target detection."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models import register_model
from irstd.models.layers.attention import BottomUpLocalFuse, multiscale_local_contrast
from irstd.models.layers.conv import ConvBNAct, FCNHead, res_stage


@register_model(
    "alcnet",
    reference_params=372_285,
    reference=(
        "Dai, Wu, Zhou, Barnard, 'Attentional Local Contrast Networks for Infrared Small Target "
        "Detection', IEEE TGRS 2021; authors' release YimianDai/open-alcnet (MXNet): MPCMResNetFPN with "
        "layers 4-4-4, channels 8-16-32-64, scale_mode 'Multiple' (shifts 13, 17), pyramid_fuse "
        "'bottomuplocal', r=1 (params/BottomUpLocal_r_1_b_4): 372,285 parameters with 1 input channel, "
        "counted from that definition (GrokCV/DRPCA-Net lists 0.378 M). The 0.43 M (0.427 M) of the "
        "Ivan-ISTD / SCTransNet tables is BasicIRSTD's 'ALCNet', an ACM-style ASKCResNetFPN without any "
        "local-contrast module (426,961 parameters in its executed modules)"
    ),
)
class ALCNet(nn.Module):
    """ALCNet (Dai et al., TGRS 2021): a ResNet-20 feature pyramid of local-contrast maps fused bottom-up.

    Structure (widths of the released model; sizes for an ``H x W`` input):

    * stem: BatchNorm of the input (no affine), conv3x3 ``in -> 16`` + BN + ReLU (full resolution).
    * backbone (CIFAR ResNet-20 style): three stages of 4 basic blocks: 16 ch at ``H``, 32 at ``H/2``,
      64 at ``H/4``.
    * dilated local contrast (MPCM, :func:`multiscale_local_contrast`) of every stage's output, with
      cyclic shifts 13 and 17 (max over the two scales of the min over four direction pairs).
    * pyramid: 1x1 conv + BN + ReLU reduces the contrast maps of stages 3 and 2 to 16 channels; going up,
      the deeper map is bilinearly up-sampled (``align_corners=True``, MXNet's ``BilinearResize2D``) and
      fused with the shallower one by bottom-up local attentional modulation
      (:class:`BottomUpLocalFuse`: ``L(BN(low)) * BN(high) + BN(low)``).
    * head: FCN head (3x3 conv 16 -> 4, BN, ReLU, dropout 0.1, 1x1 conv -> 1) at full resolution.

    Output: logits ``B x 1 x H x W``; the release resizes the head's output to the input size, which is
    the identity here (the stem keeps full resolution), so it is skipped. ``stride = 4``; no deep
    supervision.

    Deviations: none in the function. Cyclic shifts larger than a (small) map wrap around modulo its
    size, where the MXNet slicing would fail. MXNet BatchNorm momentum 0.9 is PyTorch's 0.1.

    Speed: :func:`irstd.models.fuse_for_inference` folds BatchNorm into the convolutions; the
    contrast maps are views of one circularly padded copy instead of eight rolled copies per scale.
    Channels-last brought nothing measurable here, so the default layout is kept.

    Args:
        in_chans: input channels.
        layers: basic blocks per stage.
        channels: ``(c0, c1, c2, c3)``; the stem has ``2 * c0 = c1`` channels.
        shifts: local-contrast distances (pixels at each stage's resolution).
        fuse_reduction: bottleneck ratio of the bottom-up gates (1 in the release).
        drop: dropout of the head in training.
    """

    stride = 4
    deep_supervision = False

    def __init__(
        self,
        in_chans: int = 1,
        layers: tuple[int, int, int] = (4, 4, 4),
        channels: tuple[int, int, int, int] = (8, 16, 32, 64),
        shifts: tuple[int, ...] = (13, 17),
        fuse_reduction: int = 1,
        drop: float = 0.1,
    ):
        super().__init__()
        c0, c1, c2, c3 = channels
        if c1 != 2 * c0:
            raise ValueError(f"channels[1] must be 2 * channels[0], got {channels}")
        self.shifts = tuple(shifts)
        self.stem = nn.Sequential(nn.BatchNorm2d(in_chans, affine=False), ConvBNAct(in_chans, c1, 3))
        self.layer1 = res_stage(c1, c1, layers[0], 1)
        self.layer2 = res_stage(c1, c2, layers[1], 2)
        self.layer3 = res_stage(c2, c3, layers[2], 2)

        self.dec_c3 = ConvBNAct(c3, c1, 1)
        self.dec_c2 = ConvBNAct(c2, c1, 1)
        self.fuse2 = BottomUpLocalFuse(c1, fuse_reduction)
        self.fuse1 = BottomUpLocalFuse(c1, fuse_reduction)
        self.head = FCNHead(c1, 1, drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)

        p3 = self.dec_c3(multiscale_local_contrast(c3, self.shifts))
        p3 = F.interpolate(p3, size=c2.shape[-2:], mode="bilinear", align_corners=True)
        p2 = self.dec_c2(multiscale_local_contrast(c2, self.shifts))
        p23 = self.fuse2(p3, p2)

        p23 = F.interpolate(p23, size=c1.shape[-2:], mode="bilinear", align_corners=True)
        out = self.fuse1(p23, multiscale_local_contrast(c1, self.shifts))
        return self.head(out)


__all__ = ["ALCNet"]
