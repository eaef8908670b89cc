"""AGPCNet: Attention-Guided Pyramid Context Networks for infrared small target detection."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models import register_model
from irstd.models.layers.attention import ContextGate, NonLocalBlock
from irstd.models.layers.conv import ConvBNAct, FCNHead, inference_layout, res_stage


def _splits(n: int, parts: int) -> list[tuple[int, int, int]]:
    """AGPCNet's patch grid along one axis as runs ``(start, count, size)``.

    ``parts`` patches of ``n // parts`` pixels, the last one taking the remainder; runs group the equal
    sizes so that equal-shaped patches can be processed as one batch. ``parts`` must be ``<= n``.
    """
    step = n // parts
    last = n - (parts - 1) * step
    if last == step:
        return [(0, parts, step)]
    runs = [(0, parts - 1, step)] if parts > 1 else []
    return runs + [((parts - 1) * step, 1, last)]


def _patch_tokens(t: torch.Tensor, r0: int, nr: int, hr: int, c0: int, nc: int, wc: int) -> torch.Tensor:
    """Tokens of the ``nr x nc`` patches of ``hr x wc`` pixels starting at ``(r0, c0)``.

    ``B x C x H x W`` -> ``(B * nr * nc) x (hr * wc) x C`` (patch-major, row-major pixels).
    """
    b, ch = t.shape[:2]
    t = t[:, :, r0 : r0 + nr * hr, c0 : c0 + nc * wc].reshape(b, ch, nr, hr, nc, wc)
    return t.permute(0, 2, 4, 3, 5, 1).reshape(b * nr * nc, hr * wc, ch)


class _GuidedPatchNonLocal(nn.Module):
    """AGPCNet's attention-guided context block (AGCB, patch variant) at one scale.

    The map is cut into a ``scale x scale`` grid of patches (last row/column take the remainder). Local
    context: a non-local block inside every patch. Global context (GCA): the map is max-pooled to the grid,
    a non-local block relates the grid cells, and a point-wise gate (``post`` mode; ``origin``: a plain
    sigmoid) turns them into per-patch channel weights that scale each patch's local context. Then a 3x3
    conv + BN, ``relu(gamma * context + x)`` with ``gamma`` initialised to 0.

    Equivalent to the public per-patch loop, but batched: the 1x1 projections of the non-local block are
    computed once on the whole map (they commute with cropping) and patches of equal shape are attended
    in one call, so 4 calls replace up to ``scale ** 2``.
    """

    def __init__(self, planes: int, scale: int, reduction: int, att_mode: str = "post"):
        super().__init__()
        if att_mode not in ("post", "origin"):
            raise ValueError(f"att_mode must be 'post' or 'origin', got {att_mode!r}")
        self.scale = scale
        self.local = NonLocalBlock(planes, reduction)
        self.conv = ConvBNAct(planes, planes, 3, bias=True, act=None)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.glob = NonLocalBlock(planes, 1 if att_mode == "post" else reduction)
        self.gate = ContextGate(planes, 4, pooled=False) if att_mode == "post" else None

    def _local_context(self, x: torch.Tensor, rows, cols) -> torch.Tensor:
        nl = self.local
        b, c = x.shape[:2]
        q, k, v = nl.query(x), nl.key(x), nl.value(x)
        out_rows = []
        for r0, nr, hr in rows:
            out_cols = []
            for c0, nc, wc in cols:
                run = (r0, nr, hr, c0, nc, wc)
                att = nl.attend(_patch_tokens(q, *run), _patch_tokens(k, *run), _patch_tokens(v, *run))
                att = att.reshape(b, nr, nc, hr, wc, c).permute(0, 5, 1, 3, 2, 4)
                out_cols.append(att.reshape(b, c, nr * hr, nc * wc))
            out_rows.append(torch.cat(out_cols, dim=3) if len(out_cols) > 1 else out_cols[0])
        att = torch.cat(out_rows, dim=2) if len(out_rows) > 1 else out_rows[0]
        return torch.addcmul(x, nl.gamma, att)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Maps smaller than the grid get one patch per pixel along that axis (the public code would
        # produce empty patches there); at the published input sizes the grid is exactly scale x scale.
        gh, gw = min(self.scale, h), min(self.scale, w)
        rows, cols = _splits(h, gh), _splits(w, gw)

        gca = self.glob(F.adaptive_max_pool2d(x, (gh, gw)))
        gca = self.gate(gca) if self.gate is not None else torch.sigmoid(gca)
        row_sizes = [size for _, n, size in rows for _ in range(n)]
        col_sizes = [size for _, n, size in cols for _ in range(n)]
        gca = gca.repeat_interleave(torch.tensor(row_sizes, device=x.device), dim=2, output_size=h)
        gca = gca.repeat_interleave(torch.tensor(col_sizes, device=x.device), dim=3, output_size=w)

        context = self.conv(self._local_context(x, rows, cols) * gca)
        return F.relu(torch.addcmul(x, self.gamma, context), inplace=True)


class _PyramidContext(nn.Module):
    """Context pyramid module (CPM): 1x1 reduction, AGCBs at several scales, concatenation, 1x1 fusion."""

    def __init__(self, planes: int, scales, reduce_ratios, att_mode: str):
        super().__init__()
        inter = planes // reduce_ratios[0]
        self.reduce = ConvBNAct(planes, inter, 1, bias=True)
        self.blocks = nn.ModuleList(
            _GuidedPatchNonLocal(inter, s, reduce_ratios[1], att_mode) for s in scales
        )
        self.fuse = ConvBNAct(inter * (len(scales) + 1), planes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        return self.fuse(torch.cat([reduced] + [blk(reduced) for blk in self.blocks], dim=1))


class _AsymFusion(nn.Module):
    """AGPCNet's asymmetric fusion: ``conv3x3(low + P(high)) * CA(P(high)) * PA(low)``.

    ``P`` is a 1x1 conv unit mapping the deep map to the shallow width, ``CA`` a global channel gate of
    the deep map, ``PA`` a point-wise gate of the shallow map (both reduction 4).
    """

    def __init__(self, planes_high: int, planes_low: int, planes_out: int):
        super().__init__()
        self.pa = ContextGate(planes_low, 4, pooled=False)
        self.plus_conv = ConvBNAct(planes_high, planes_low, 1, bias=True)
        self.ca = ContextGate(planes_low, 4, pooled=True, out_chans=planes_out)
        self.end_conv = ConvBNAct(planes_low, planes_out, 3, bias=True)

    def forward(self, x_high: torch.Tensor, x_low: torch.Tensor) -> torch.Tensor:
        x_high = self.plus_conv(x_high)
        feat = self.end_conv(x_low + x_high)
        # Not in place: ReLU's backward needs end_conv's output.
        return feat * self.ca(x_high) * self.pa(x_low)


class _ResNetTrunk(nn.Module):
    """AGPCNet's ResNet: conv7x7/1 + BN + ReLU, no max-pool, four stages; returns stages 2, 3, 4."""

    def __init__(self, in_chans: int, blocks: tuple[int, int, int, int]):
        super().__init__()
        self.stem = ConvBNAct(in_chans, 64, 7)
        self.layer1 = res_stage(64, 64, blocks[0], 1)
        self.layer2 = res_stage(64, 128, blocks[1], 2)
        self.layer3 = res_stage(128, 256, blocks[2], 2)
        self.layer4 = res_stage(256, 512, blocks[3], 2)

    def forward(self, x: torch.Tensor):
        c1 = self.layer2(self.layer1(self.stem(x)))
        c2 = self.layer3(c1)
        return c1, c2, self.layer4(c2)


_BACKBONES = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


@register_model(
    "agpcnet",
    reference_params=12_360_461,
    reference=(
        "Zhang, Li, Cao, Pu, Peng, 'Attention-Guided Pyramid Context Networks for Detecting Infrared "
        "Small Target Under Complex Background', IEEE TAES 2023 (arXiv 2111.03580); authors' release "
        "Tianfang-Zhang/AGPCNet models/__init__.py 'agpcnet_1' (ResNet-18, scales 10-6-5-3, reduce "
        "ratios 16-4, patch AGCB, GCA 'post', drop 0.1): 12,360,461 parameters with its 3-channel stem, "
        "counted from that definition (12,354,189 with 1 input channel); 12.36 M in the GrokCV/DRPCA-Net "
        "comparison table"
    ),
)
class AGPCNet(nn.Module):
    """AGPCNet (Zhang et al., TAES 2023): ResNet encoder, attention-guided context pyramid, asymmetric fusion.

    Structure (released configuration ``agpcnet_1``; sizes for an ``H x W`` input):

    * encoder: ResNet-18 without the max-pool and with a stride-1 7x7 stem: 64 ch at ``H``, then 128 at
      ``H/2`` (``c1``), 256 at ``H/4`` (``c2``), 512 at ``H/8`` (``c3``).
    * context pyramid module on ``c3``: 1x1 reduction to 32 ch; attention-guided context blocks at grid
      scales 10, 6, 5, 3 (non-local inside each patch with query/key width 32/4, weighted per patch by
      a global non-local attention among the pooled grid cells); concatenation with the reduced map;
      1x1 conv back to 512 ch.
    * decoder: bilinear up-sampling (``align_corners=True``) to ``c2``'s size, asymmetric fusion 512/256 ->
      256; up to ``c1``'s size, fusion 256/128 -> 128; FCN head (3x3 conv with bias 128 -> 32, BN, ReLU,
      dropout, 1x1 conv -> 1) at ``H/2``; bilinear up-sampling to ``H x W``.

    Output: logits ``B x 1 x H x W``. ``stride = 8``; no deep supervision. Initialisation as the release:
    Kaiming-normal (fan-out) convolutions, BN weight 1 / bias 0, both ``gamma`` scalars 0.

    Deviations: the backbone is not ImageNet-pretrained (the release loads torchvision's RGB ResNet-18
    weights; we have no such dependency, and our input is single-channel). Per-patch non-local attention
    is batched over equal-shaped patches (same function). On maps smaller than a grid scale (inputs under
    ``8 * scale`` pixels) the grid is clamped to the map size along that axis.

    Speed: with autograd off the network runs channels-last
    (:func:`~irstd.models.layers.conv.inference_layout`); :func:`irstd.models.fuse_for_inference` folds
    BatchNorm into the convolutions and stores their weights channels-last: same function.

    Args:
        in_chans: input channels.
        backbone: ``"resnet18"`` or ``"resnet34"``.
        scales: grid scales of the context pyramid.
        reduce_ratios: (channel reduction before the pyramid, query/key reduction of the local non-local).
        att_mode: ``"post"`` (released models) or ``"origin"`` global-attention gate.
        drop: dropout of the head in training.
    """

    stride = 8
    deep_supervision = False
    inference_channels_last = True  # see inference_layout in forward

    def __init__(
        self,
        in_chans: int = 1,
        backbone: str = "resnet18",
        scales: tuple[int, ...] = (10, 6, 5, 3),
        reduce_ratios: tuple[int, int] = (16, 4),
        att_mode: str = "post",
        drop: float = 0.1,
    ):
        super().__init__()
        if backbone not in _BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(_BACKBONES)}, got {backbone!r}")
        self.backbone = _ResNetTrunk(in_chans, _BACKBONES[backbone])
        self.context = _PyramidContext(512, scales, reduce_ratios, att_mode)
        self.fuse23 = _AsymFusion(512, 256, 256)
        self.fuse12 = _AsymFusion(256, 128, 128)
        self.head = FCNHead(128, 1, drop, bias=True)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.backbone(inference_layout(x))
        out = self.context(c3)
        out = F.interpolate(out, size=c2.shape[-2:], mode="bilinear", align_corners=True)
        out = self.fuse23(out, c2)
        out = F.interpolate(out, size=c1.shape[-2:], mode="bilinear", align_corners=True)
        pred = self.head(self.fuse12(out, c1))
        return F.interpolate(pred, size=x.shape[-2:], mode="bilinear", align_corners=True)


__all__ = ["AGPCNet"]
