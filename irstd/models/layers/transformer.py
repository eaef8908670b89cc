"""Channel-cross transformer blocks (SCTransNet: Yuan et al., IEEE TGRS 2024).

SCTransNet's spatial-channel cross transformer treats every *channel* of four encoder levels as a
token: the four levels are first brought to one token grid (``B x C_i x h x w``, the same ``h x w`` for
all levels, by patch-embedding convolutions), then each level's channels attend over the channels of
all levels together. Attention maps are ``C_i x sum(C)``, so the cost grows with the channel counts,
not with ``(h * w)^2``; any ``h x w``, square or not, works.

* :class:`LayerNorm2d` -- layer norm over the channels of every pixel of a ``B x C x H x W`` map.
* :class:`ChannelCrossAttention` -- spatial-embedded single-head channel-cross attention (SSCA).
* :class:`ComplementaryFFN` -- the complementary feed-forward network (CFN): parallel 3x3 and 5x5
  depth-wise branches, then an ECA channel gate.
* :class:`ChannelCrossBlock` -- one pre-norm transformer layer (SSCA + CFN, residual), over all levels.
* :class:`ChannelCrossTransformer` -- patch embedding, ``num_layers`` blocks, final norms and the
  reconstruction back to each level's resolution.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models.layers.eca import ECA


class LayerNorm2d(nn.LayerNorm):
    """Layer normalisation over ``C`` at every pixel of a ``B x C x H x W`` tensor (affine, eps 1e-5)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelCrossAttention(nn.Module):
    """Spatial-embedded single-head channel-cross attention (SSCA).

    For level ``i`` with ``C_i`` channels: ``Q_i = DWConv3x3(Conv1x1(x_i))`` (grouped, two channels per
    group), ``K, V = DWConv3x3(Conv1x1(x_all))`` where ``x_all`` concatenates all levels (``C_kv =
    sum(C_i)`` channels). Rows of ``Q_i`` and ``K`` are L2-normalised over the ``h*w`` positions,
    ``A_i = softmax(IN(Q_i K^T / sqrt(C_kv)))`` (``IN``: instance norm over the whole ``C_i x C_kv`` map,
    no affine), ``out_i = Conv1x1(A_i V)``.

    Args:
        channels: ``C_i`` of each level (each even).

    Shapes: ``forward(xs, x_all)`` with ``xs[i]: B x C_i x h x w`` and ``x_all: B x C_kv x h x w`` returns
    a list of ``B x C_i x h x w`` tensors.
    """

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        if any(c % 2 for c in self.channels):
            raise ValueError(f"channel counts must be even, got {self.channels}")
        kv = sum(self.channels)
        self.q_proj = nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for c in self.channels)
        self.q_embed = nn.ModuleList(
            nn.Conv2d(c, c, 3, padding=1, groups=c // 2, bias=False) for c in self.channels
        )
        # K and V projections share one call each: the concatenated weights are the two separate
        # 1x1 and depth-wise layers of the paper side by side.
        self.kv_proj = nn.Conv2d(kv, 2 * kv, 1, bias=False)
        self.kv_embed = nn.Conv2d(2 * kv, 2 * kv, 3, padding=1, groups=2 * kv, bias=False)
        self.out_proj = nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for c in self.channels)
        self.scale = 1.0 / math.sqrt(kv)

    def forward(self, xs: Sequence[torch.Tensor], x_all: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = x_all.shape
        q = torch.cat([emb(proj(x)) for x, proj, emb in zip(xs, self.q_proj, self.q_embed)], dim=1)
        k, v = self.kv_embed(self.kv_proj(x_all)).flatten(2).chunk(2, dim=1)
        q = F.normalize(q.flatten(2), dim=-1)
        k = F.normalize(k, dim=-1)
        attn = torch.bmm(q, k.transpose(1, 2)) * self.scale  # B x sum(C_i) x C_kv
        outs = []
        for a, proj in zip(attn.split(self.channels, dim=1), self.out_proj):
            # instance norm of a 1-channel "image" a: statistics over the whole C_i x C_kv map
            a = F.instance_norm(a.unsqueeze(1), eps=1e-5).squeeze(1).softmax(dim=-1)
            outs.append(proj(torch.bmm(a, v).view(b, -1, h, w)))
        return outs


class ComplementaryFFN(nn.Module):
    """Complementary feed-forward network: ``ECA(Conv1x1([ReLU(DW3x3(a)), ReLU(DW5x5(b))]))`` with
    ``a, b = split(Conv1x1(x))``, hidden width ``int(dim * expansion)`` per branch, no biases.

    Shape: ``B x dim x h x w`` -> same.
    """

    def __init__(self, dim: int, expansion: float = 2.66):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=False)
        self.dw3 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.dw5 = nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden, bias=False)
        self.project_out = nn.Conv2d(2 * hidden, dim, 1, bias=False)
        self.eca = ECA(dim, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.project_in(x).chunk(2, dim=1)
        x = torch.cat([F.relu(self.dw3(a)), F.relu(self.dw5(b))], dim=1)
        return self.eca(self.project_out(x))


class ChannelCrossBlock(nn.Module):
    """Spatial-channel cross transformer block (SCTB) over all levels at once.

    ``x_i <- x_i + SSCA_i(LN(x_1), ..., LN(x_n), LN(cat(x)))``; ``x_i <- x_i + CFN_i(LN(x_i))``
    (every LN its own). Takes and returns a list of ``B x C_i x h x w`` tensors.
    """

    def __init__(self, channels: Sequence[int], ffn_expansion: float = 2.66):
        super().__init__()
        channels = tuple(channels)
        self.attn_norms = nn.ModuleList(LayerNorm2d(c) for c in channels)
        self.attn_norm_all = LayerNorm2d(sum(channels))
        self.attn = ChannelCrossAttention(channels)
        self.ffn_norms = nn.ModuleList(LayerNorm2d(c) for c in channels)
        self.ffns = nn.ModuleList(ComplementaryFFN(c, ffn_expansion) for c in channels)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x_all = self.attn_norm_all(torch.cat(list(xs), dim=1))
        att = self.attn([norm(x) for x, norm in zip(xs, self.attn_norms)], x_all)
        xs = [x + a for x, a in zip(xs, att)]
        return [x + ffn(norm(x)) for x, norm, ffn in zip(xs, self.ffn_norms, self.ffns)]


class ChannelCrossTransformer(nn.Module):
    """Embed, transform and reconstruct multi-level features (SCTransNet's CCT).

    Level ``i`` (``C_i`` channels, resolution ``H_i x W_i``) is embedded by a ``p_i x p_i`` convolution
    with stride ``p_i`` (bias) to ``H_i/p_i x W_i/p_i``; these token grids must agree across levels.
    After ``num_layers`` :class:`ChannelCrossBlock` and a final :class:`LayerNorm2d` per level, each
    level is reconstructed by bilinear up-sampling by ``p_i`` and ``Conv1x1 + BN + ReLU``.

    Args:
        channels: ``C_i`` per level.
        patch_sizes: ``p_i`` per level.
        num_layers: transformer layers.

    ``forward(xs)`` returns the reconstructions (``B x C_i x H_i x W_i``), without the skip connection.
    """

    def __init__(self, channels: Sequence[int], patch_sizes: Sequence[int], num_layers: int = 4,
                 ffn_expansion: float = 2.66):
        super().__init__()
        channels, patch_sizes = tuple(channels), tuple(patch_sizes)
        if len(channels) != len(patch_sizes):
            raise ValueError("channels and patch_sizes need one entry per level")
        self.patch_sizes = patch_sizes
        self.embed = nn.ModuleList(nn.Conv2d(c, c, p, stride=p) for c, p in zip(channels, patch_sizes))
        self.blocks = nn.ModuleList(ChannelCrossBlock(channels, ffn_expansion) for _ in range(num_layers))
        self.norms = nn.ModuleList(LayerNorm2d(c) for c in channels)
        self.recon_conv = nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for c in channels)  # BN follows
        self.recon_bn = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        tokens = [emb(x) for x, emb in zip(xs, self.embed)]
        if len({t.shape[-2:] for t in tokens}) != 1:
            raise ValueError(f"levels do not share one token grid: {[tuple(t.shape[-2:]) for t in tokens]}")
        for block in self.blocks:
            tokens = block(tokens)
        outs = []
        for x, t, norm, conv, bn in zip(xs, tokens, self.norms, self.recon_conv, self.recon_bn):
            # A 1x1 convolution commutes with bilinear up-sampling (both linear, interpolation weights
            # sum to one), so it runs on the token grid: p_i^2 fewer operations, same result.
            t = F.interpolate(conv(norm(t)), size=x.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(F.relu(bn(t)))
        return outs


__all__ = [
    "LayerNorm2d",
    "ChannelCrossAttention",
    "ComplementaryFFN",
    "ChannelCrossBlock",
    "ChannelCrossTransformer",
]
