"""The conditional encoder (CE) of IRSTD-Diff (paper 001, Section III-D and Table II).

Paper: H. Li, J. Yang, Y. Xu, R. Wang, "Mitigate Target-Level Insensitivity of Infrared Small Target
Detection via Posterior Distribution Modeling", IEEE JSTARS 17, 2024.

A U2-Net of residual U-blocks (:mod:`irstd.models.layers.rsu`) with the widths of Table II
(in / mid / out channels; "Up-Down" = a 2x2 max-pool after the encoder stage, bilinear up-sampling
before the decoder stage)::

    Encoder1  RSU7   in  16  64  pool      Decoder5  RSU4F 512  64 256   (En6 + En5, same size)
    Encoder2  RSU6   64  16  64  pool      Decoder4  RSU4  512  32 128   up
    Encoder3  RSU5   64  32 128  pool      Decoder3  RSU5  256  32  64   up
    Encoder4  RSU4  128  32 256  pool      Decoder2  RSU6  128  16  64   up
    Encoder5  RSU4F 256  32 256            Decoder1  RSU7  128  16  64   up
    Encoder6  RSU4F 256  64 256

(The block heights are U2-Net's; Table II gives the widths and the four poolings. The release pools
after Encoder5 too and adds fusion blocks that the paper does not describe; this follows the paper.)
Each decoder stage takes the up-sampled deeper map concatenated with the matching encoder map.
Deep supervision as U2-Net: a 3x3 side head on Decoder1..5 and Encoder6, each up-sampled to full
size, and a 1x1 convolution fusing the six logits into the CE's output ``P`` (eq. 16).

For the diffusion model the CE also gives its latent ``I'``: the output of Decoder2 (64 channels at
half resolution, the "appropriate low-level latent space" of Section III-D and the release's
choice), which :class:`irstd.models.irstd_diff.IRSTDDiff` adds into the denoiser. With
``liw_levels = k > 0`` the Encoder2 map (the 64-channel skip at half resolution feeding Decoder2) goes
through :class:`~irstd.models.layers.liw.LIW` first, so LIW shapes both ``I'`` and ``P`` (Table IX #1
is the CE with LIW and no denoiser).

As the zoo network ``irstd_diff_ce`` it is a discriminative detector (Table IX #0): logits
``B x 1 x H x W``; in train mode ``[fused, side1, ..., side6]`` (top side first) unless
``deep_supervision=False``. Stride 32 (the five poolings inside Encoder1's RSU7).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from irstd.models import register_model
from irstd.models.layers.liw import LIW
from irstd.models.layers.rsu import RSU, upsample_like

__all__ = ["ConditionalEncoder", "TABLE_II_ENCODER", "TABLE_II_DECODER", "irstd_diff_ce"]

# (RSU height, flat, mid, out); the first four encoder stages are followed by a 2x2 max-pool.
TABLE_II_ENCODER = ((7, False, 16, 64), (6, False, 16, 64), (5, False, 32, 128), (4, False, 32, 256),
                    (4, True, 32, 256), (4, True, 64, 256))
_POOL_AFTER = (True, True, True, True, False, False)
# Decoder5 .. Decoder1; inputs are the deeper map and the encoder map concatenated.
TABLE_II_DECODER = ((4, True, 64, 256), (4, False, 32, 128), (5, False, 32, 64), (6, False, 16, 64), (7, False, 16, 64))


def _scaled(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


class ConditionalEncoder(nn.Module):
    """IRSTD-Diff's CE; see the module docstring.

    Args:
        in_chans: image channels.
        width: factor on every Table II width (1.0: the paper's; the CPU-size IRSTD-Diff uses less).
        liw_levels: wavelet levels of LIW on the Encoder2 skip (0: no LIW).
        liw_heads, liw_window: LIW's attention heads and window side.
        deep_supervision: train-mode output includes the six side logits.
    """

    def __init__(
        self,
        in_chans: int = 1,
        width: float = 1.0,
        liw_levels: int = 0,
        liw_heads: int = 4,
        liw_window: int = 4,
        deep_supervision: bool = True,
    ):
        super().__init__()
        if width <= 0:
            raise ValueError(f"CE width factor must be positive, got {width}")
        if liw_levels < 0:
            raise ValueError(f"liw_levels must be >= 0, got {liw_levels}")
        self.stride = 32
        self.deep_supervision = bool(deep_supervision)
        enc_out = [_scaled(out, width) for _, _, _, out in TABLE_II_ENCODER]
        self.encoder = nn.ModuleList()
        prev = in_chans
        for (height, flat, mid, _), out in zip(TABLE_II_ENCODER, enc_out):
            self.encoder.append(RSU(height, prev, _scaled(mid, width), out, dilated=flat))
            prev = out
        self.decoder = nn.ModuleList()
        for k, (height, flat, mid, out) in enumerate(TABLE_II_DECODER):
            skip = enc_out[len(enc_out) - 2 - k]  # De5 meets En5, ..., De1 meets En1
            out = _scaled(out, width)
            self.decoder.append(RSU(height, prev + skip, _scaled(mid, width), out, dilated=flat))
            prev = out
        self.latent_chans = _scaled(TABLE_II_DECODER[3][3], width)  # Decoder2's output
        self.liw = LIW(enc_out[1], liw_levels, liw_heads, liw_window) if liw_levels else None
        # side heads top first: Decoder1 .. Decoder5, then Encoder6
        side_chans = [_scaled(d[3], width) for d in reversed(TABLE_II_DECODER)] + [enc_out[-1]]
        self.sides = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1) for c in side_chans)
        self.fuse = nn.Conv2d(len(side_chans), 1, 1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """``(fused, sides, latent)``: the CE's logits ``P`` (``B x 1 x H x W``), the six side logits
        (full size, top first) and ``I'`` (Decoder2's output, ``B x latent_chans x H/2 x W/2``)."""
        skips = []
        h = x
        for stage, pool in zip(self.encoder, _POOL_AFTER):
            h = stage(h)
            skips.append(h)
            if pool:
                h = nn.functional.max_pool2d(h, 2, ceil_mode=True)
        if self.liw is not None:
            skips[1] = self.liw(skips[1])
        h = skips.pop()  # Encoder6
        decoded = [h]
        latent = None
        for k, stage in enumerate(self.decoder):
            skip = skips.pop()
            h = stage(torch.cat([upsample_like(h, skip), skip], dim=1))
            decoded.append(h)
            if k == 3:
                latent = h
        # decoded: [En6, De5, De4, De3, De2, De1] -> heads in the order De1 .. De5, En6
        sides = [upsample_like(head(feat), x) for head, feat in zip(self.sides, reversed(decoded))]
        fused = self.fuse(torch.cat(sides, dim=1))
        return fused, sides, latent

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        fused, sides, _ = self.features(x)
        if self.training and self.deep_supervision:
            return [fused] + sides
        return fused


@register_model(
    "irstd_diff_ce",
    reference="Li, Yang, Xu, Wang, Mitigate Target-Level Insensitivity of Infrared Small Target Detection via "
    "Posterior Distribution Modeling (IRSTD-Diff), IEEE JSTARS 2024: the conditional encoder alone (Table IX #0), "
    "widths of Table II; no published count (the release's CE differs from Table II)",
)
def irstd_diff_ce(in_chans: int = 1, **kwargs) -> ConditionalEncoder:
    """The CE as a discriminative detector; kwargs go to :class:`ConditionalEncoder`."""
    return ConditionalEncoder(in_chans=in_chans, **kwargs)
