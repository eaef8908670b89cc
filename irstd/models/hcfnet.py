"""HCF-Net (Xu, Zheng, Xu, Xu, Yang, Liu, Ni: "HCF-Net: Hierarchical Context Fusion Network for
Infrared Small Object Detection", ICME 2024).

Structure (paper and the public implementation, github.com/zhengshuchen/HCFNet,
``basicseg/networks/HCFnet.py`` and ``basicseg/main_blocks.py``):

* A U-Net whose every stage is a PPA (parallelized patch-aware attention) block: widths
  32-64-128-256-512 at 1/1 ... 1/16 (2x2 max-pool between stages).
* PPA: a 1x1 conv-BN skip ``s``; a serial chain of three 3x3 conv-BN-ReLU (outputs ``c1, c2, c3``);
  two patch-aware (local-global) attention branches on ``s`` with patch sizes 2 and 4; the six maps
  are summed, then ECA channel attention, a CBAM-style spatial attention, dropout 0.1, BN, ReLU.
* Patch-aware attention: per non-overlapping ``P x P`` patch, the channel mean of its ``P^2`` pixels
  goes through Linear(P^2 -> C/2), LayerNorm, Linear(-> C); the tokens are re-weighted by their own
  softmax over channels, masked by their (clamped, non-negative) cosine similarity with a learned
  prompt vector, multiplied by a learned C x C matrix (initialised to identity), bilinearly
  up-sampled to the map and passed through a 1x1 conv.
* MDCR (multi-dilated channel refiner) after the 1/16 stage: four channel groups through depth-wise 3x3
  conv-BN-ReLU with dilations 1, 6, 12, 18; for every channel index, the four groups' values are mixed by
  one shared 1x1 conv-BN-ReLU (4 -> 4); 1x1 conv-BN-ReLU over all channels.
* DASI (dimension-aware selective integration) on each skip: the skip ``x`` (1x1 conv), the deeper
  level (1x1 conv, bilinear up-sampling) and the shallower level (3x3 conv, stride 2, dilation 2), split
  into four channel groups; per group ``sigmoid(x) * deeper + (1 - sigmoid(x)) * shallower`` (at the
  first level, with no shallower input: a shared 1x1 conv of ``[x, deeper]``); 1x1 conv, + ``x``, BN,
  ReLU.
* Decoder: 2x2 transposed conv-BN-ReLU, concatenation with the DASI output, PPA; 1x1 conv to the logit.
* Deep supervision (the published training config ``gt_ds: True``): 1x1 convs on the MDCR output and on
  the 1/8, 1/4, 1/2 decoder stages, bilinear (align corners) to full size.

Outputs: eval mode returns the final logit ``B x 1 x H x W``; train mode with deep supervision returns
``[final, side_1/2, side_1/4, side_1/8, side_1/16]`` (the public ``out, out1, ..., out4``), all full size.

Input sizes: multiples of :attr:`stride` = 64 (the 1/16 stage is cut into 4 x 4 patches).

Deviations from the public code:
* Patch-aware attention averages the channels of each pixel of a patch: the public code reshapes a
  ``(C, P, P)``-ordered unfold as if it were ``(P*P, C)``, which mixes channels and positions (a bug;
  the code's own comments describe the intended layout).
* MDCR's shared 4 -> 4 conv runs once on all channel indices; its BatchNorm therefore takes batch
  statistics over all of them (the public code calls the same BN once per channel index, 128 times per
  forward, which normalises each index with its own batch statistics but keeps one running estimate).
* Parameters the public forward never uses are left out (15,504 with these widths): the first DASI's
  stride-2 conv (it has no shallower input) and the 1x1 group conv of the other three DASIs (they
  always have both neighbours). The reference count below excludes them.
* Conv biases directly before a BatchNorm are dropped; the spatial-attention 7x7 conv has no bias
  (:class:`irstd.models.layers.cbam.SpatialAttention`).
* 1x1 convs that follow a bilinear up-sampling run before it (they commute): same function, less work.
* Logits (the public network also returns logits).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.errors import IRSTDError
from irstd.models import register_model
from irstd.models.layers.cbam import SpatialAttention
from irstd.models.layers.conv import ConvBNAct
from irstd.models.layers.eca import ECA


class PatchAwareAttention(nn.Module):
    """HCF-Net's local-global (patch-aware) attention branch; see the module docstring.

    Args:
        channels: ``C`` (in and out).
        patch: patch size ``P``; ``H`` and ``W`` must be multiples of it.
    Shape: ``B x C x H x W`` -> same.
    """

    def __init__(self, channels: int, patch: int):
        super().__init__()
        self.patch = patch
        self.mlp1 = nn.Linear(patch * patch, channels // 2)
        self.norm = nn.LayerNorm(channels // 2)
        self.mlp2 = nn.Linear(channels // 2, channels)
        self.prompt = nn.Parameter(torch.randn(channels))
        self.transform = nn.Parameter(torch.eye(channels))
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, channel_mean: torch.Tensor | None = None) -> torch.Tensor:
        """``channel_mean``: ``x.mean(1, keepdim=True)`` when the caller already has it."""
        b, c, h, w = x.shape
        p = self.patch
        if h % p or w % p:
            raise ValueError(f"patch-aware attention: {h}x{w} map is not a multiple of the patch size {p}")
        if channel_mean is None:
            channel_mean = x.mean(1, keepdim=True)
        t = F.pixel_unshuffle(channel_mean, p)  # B x P^2 x h/P x w/P
        gh, gw = t.shape[-2:]
        t = self.mlp2(self.norm(self.mlp1(t.flatten(2).transpose(1, 2))))  # B x N x C
        t = t * t.softmax(dim=-1)
        sim = F.normalize(t, dim=-1) @ F.normalize(self.prompt, dim=0)  # B x N
        t = (t * sim.clamp(0.0, 1.0).unsqueeze(-1)) @ self.transform
        t = self.conv(t.transpose(1, 2).reshape(b, c, gh, gw))
        return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)


class PPA(nn.Module):
    """Parallelized patch-aware attention block: ``in_chans`` -> ``out_chans``, same size."""

    def __init__(self, in_chans: int, out_chans: int, drop: float = 0.1):
        super().__init__()
        self.skip = ConvBNAct(in_chans, out_chans, 1, act=None)
        self.c1 = ConvBNAct(in_chans, out_chans, 3)
        self.c2 = ConvBNAct(out_chans, out_chans, 3)
        self.c3 = ConvBNAct(out_chans, out_chans, 3)
        self.lga2 = PatchAwareAttention(out_chans, 2)
        self.lga4 = PatchAwareAttention(out_chans, 4)
        self.eca = ECA(out_chans)
        self.sa = SpatialAttention(7)
        self.drop = nn.Dropout2d(drop)
        self.bn = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.skip(x)
        x1 = self.c1(x)
        x2 = self.c2(x1)
        x3 = self.c3(x2)
        m = s.mean(1, keepdim=True)
        # one accumulator updated in place (additions need none of their inputs for backward)
        y = torch.add(x1, x2).add_(x3).add_(s).add_(self.lga2(s, m)).add_(self.lga4(s, m))
        y = self.eca(y)
        y = y * self.sa(y)
        return F.relu(self.bn(self.drop(y)), inplace=True)


class MDCR(nn.Module):
    """Multi-dilated channel refiner: ``channels`` (divisible by 4) -> ``channels``, same size."""

    def __init__(self, channels: int, rates=(1, 6, 12, 18)):
        super().__init__()
        if channels % 4 or len(rates) != 4:
            raise ValueError("MDCR needs channels divisible by 4 and four dilation rates")
        g = channels // 4
        self.branches = nn.ModuleList(ConvBNAct(g, g, 3, groups=g, dilation=r) for r in rates)
        self.mix = ConvBNAct(4, 4, 1)
        self.out = ConvBNAct(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # B x 4 x C/4 x H x W
        y = torch.stack([f(xi) for f, xi in zip(self.branches, x.chunk(4, dim=1))], dim=1)
        # The shared 4 -> 4 mixing of every channel index is one 1x1 conv over the stacked axis.
        y = self.mix(y.reshape(b, 4, (c // 4) * h, w)).reshape(b, 4, c // 4, h, w)
        # channel order (index, branch), as the public implementation concatenates them
        return self.out(y.transpose(1, 2).reshape(b, c, h, w))


class DASI(nn.Module):
    """Dimension-aware selective integration of a skip with its deeper and (optionally) shallower levels.

    Args:
        in_chans: channels of the skip ``x`` (the deeper level has ``2 * in_chans``, the shallower
            ``in_chans // 2``).
        out_chans: output channels (divisible by 4).
        with_shallow: whether a shallower level is given (False for the first level).
    """

    def __init__(self, in_chans: int, out_chans: int, with_shallow: bool):
        super().__init__()
        self.with_shallow = with_shallow
        self.skip = nn.Conv2d(in_chans, out_chans, 1)
        self.deep = nn.Conv2d(2 * in_chans, out_chans, 1)
        if with_shallow:
            self.shallow = nn.Conv2d(in_chans // 2, out_chans, 3, stride=2, padding=2, dilation=2)
        else:
            self.pair = nn.Conv2d(out_chans // 2, out_chans // 4, 1)
        self.tail = nn.Conv2d(out_chans, out_chans, 1)
        self.bn = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor, deep: torch.Tensor,
                shallow: torch.Tensor | None = None) -> torch.Tensor:
        s = self.skip(x)
        deep = F.interpolate(self.deep(deep), size=x.shape[-2:], mode="bilinear", align_corners=True)
        if self.with_shallow:
            if shallow is None:
                raise ValueError("this DASI was built for a shallower input")
            # the per-group selection is element-wise, so it runs on all four groups at once
            a = torch.sigmoid(s)
            shallow = self.shallow(shallow)
            y = torch.addcmul(shallow, a, deep - shallow)  # a * deep + (1 - a) * shallow
        else:
            b, c, h, w = s.shape
            g = c // 4
            pairs = torch.cat([s.reshape(b, 4, g, h, w), deep.reshape(b, 4, g, h, w)], dim=2)
            y = self.pair(pairs.reshape(b * 4, 2 * g, h, w)).reshape(b, c, h, w)
        return F.relu(self.bn(self.tail(y).add_(s)), inplace=True)


class Up2x(nn.Module):
    """2x2 transposed convolution with stride 2 (no bias), BN, ReLU: ``B x C_in x H x W`` ->
    ``B x C_out x 2H x 2W``.

    The kernel windows do not overlap, so the transposed conv is computed as a 1x1 conv to
    ``4 * C_out`` channels and a pixel shuffle: the same result, several times faster on CPU.
    """

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_chans, out_chans, 2, 2, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.deconv.weight  # C_in x C_out x 2 x 2
        w = w.permute(1, 2, 3, 0).reshape(-1, w.shape[0], 1, 1)  # (C_out, 2, 2) x C_in
        return F.relu(self.bn(F.pixel_shuffle(F.conv2d(x, w), 2)), inplace=True)


@register_model(
    "hcfnet",
    reference_params=15_271_401,
    reference=(
        "Xu et al., HCF-Net: Hierarchical Context Fusion Network for Infrared Small Object Detection, "
        "ICME 2024; github.com/zhengshuchen/HCFNet basicseg/networks/HCFnet.py + main_blocks.py "
        "(gt_ds=True). Counted from that code with 1 input channel: 15,271,401 parameters in the modules "
        "its forward uses (15,286,905 instantiated, 15,504 of them never used; 15,287,545 with 3 channels)"
    ),
)
class HCFNet(nn.Module):
    """HCF-Net; see the module docstring.

    Args:
        in_chans: input channels.
        base_channels: width of the first stage (stages ``b, 2b, 4b, 8b, 16b``).
        deep_supervision: return the side outputs in train mode.
    """

    stride = 64

    def __init__(self, in_chans: int = 1, base_channels: int = 32, deep_supervision: bool = True):
        super().__init__()
        b = base_channels
        w = [b, 2 * b, 4 * b, 8 * b, 16 * b]
        self.deep_supervision = bool(deep_supervision)
        self.enc = nn.ModuleList([PPA(in_chans, w[0])] + [PPA(w[i], w[i + 1]) for i in range(4)])
        self.mdcr = MDCR(w[4])
        self.dasi = nn.ModuleList(DASI(w[i], w[i], with_shallow=i > 0) for i in range(4))
        self.up = nn.ModuleList(Up2x(w[i + 1], w[i]) for i in (3, 2, 1, 0))
        self.dec = nn.ModuleList(PPA(2 * w[i], w[i]) for i in (3, 2, 1, 0))
        self.out = nn.Conv2d(w[0], 1, 1)
        if self.deep_supervision:
            self.side = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in (w[4], w[3], w[2], w[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise IRSTDError(f"hcfnet: input size {x.shape[-2]}x{x.shape[-1]} is not a multiple of the "
                             f"stride {self.stride}; pad it first (irstd.data.transforms.pad_to_stride)")
        size = x.shape[-2:]
        feats = []
        for i, stage in enumerate(self.enc):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        x = self.mdcr(feats.pop())
        deeper = feats[1:] + [x]
        skips = [d(f, deep, feats[i - 1] if i > 0 else None)
                 for i, (d, f, deep) in enumerate(zip(self.dasi, feats, deeper))]

        sides_in = [x]
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
            sides_in.append(x)
        final = self.out(x)
        if not (self.training and self.deep_supervision):
            return final
        sides = [F.interpolate(head(f), size=size, mode="bilinear", align_corners=True)
                 for head, f in zip(self.side, sides_in[:4])]  # 1/16, 1/8, 1/4, 1/2
        return [final] + sides[::-1]


__all__ = ["HCFNet", "PPA", "MDCR", "DASI", "PatchAwareAttention", "Up2x"]
