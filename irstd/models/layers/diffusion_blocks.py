"""Blocks of the DDPM denoising U-Net (Ho et al. 2020; Dhariwal & Nichol 2021's "ADM" variant).

* :func:`timestep_embedding` -- sinusoidal embedding of (possibly fractional) timesteps.
* :class:`ResBlock` -- ``GN, SiLU, conv3x3`` then the timestep embedding as a scale-shift of the
  second group norm (``GN(h) * (1 + scale) + shift``, "scale-shift norm"), ``SiLU, dropout,
  conv3x3``; 1x1 convolution on the skip when the width changes.
* :class:`AttentionBlock` -- global multi-head self-attention over all pixels, residual.
* :class:`Downsample` (3x3 convolution, stride 2) and :class:`Upsample` (nearest x2, 3x3 conv).

As in those networks, the last convolution of every residual branch and the attention's output
projection start at zero, so each block starts as the identity and the network as a plain stack of
skips and resampling convolutions. Group norms use :func:`norm_groups` groups.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["timestep_embedding", "norm_groups", "group_norm", "ResBlock", "AttentionBlock", "Downsample", "Upsample"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``B`` timesteps -> ``B x dim`` features ``[cos(t f_i), sin(t f_i)]`` with frequencies
    ``f_i = max_period ** (-i / (dim / 2))`` (odd ``dim``: one zero column appended)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


def norm_groups(channels: int, max_groups: int = 32) -> int:
    """The largest group count <= ``max_groups`` that divides ``channels`` (32 for the paper's widths)."""
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    return nn.GroupNorm(norm_groups(channels, max_groups), channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding through scale-shift norm.

    Args:
        in_chans, out_chans: widths.
        emb_dim: width of the timestep embedding.
        dropout: dropout probability before the second convolution.
        max_groups: group-norm groups (see :func:`norm_groups`).

    Shapes: ``forward(x, emb)`` with ``x`` ``B x in_chans x H x W`` and ``emb`` ``B x emb_dim`` returns
    ``B x out_chans x H x W``.
    """

    def __init__(self, in_chans: int, out_chans: int, emb_dim: int, dropout: float = 0.0, max_groups: int = 32):
        super().__init__()
        self.norm1 = group_norm(in_chans, max_groups)
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_chans)
        self.norm2 = group_norm(out_chans, max_groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_chans, out_chans, 3, padding=1))
        self.skip = nn.Identity() if in_chans == out_chans else nn.Conv2d(in_chans, out_chans, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention among all pixels of a map, residual (``x + proj(attn(GN(x)))``).

    Args:
        channels: width (divisible by ``heads``).
        heads: attention heads.
        max_groups: group-norm groups.

    Shapes: ``B x channels x H x W`` -> same; cost grows with ``(H W)^2``, which is why the denoiser
    uses it only at coarse resolutions.
    """

    def __init__(self, channels: int, heads: int = 4, max_groups: int = 32):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels are not divisible by {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels, max_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).view(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each B x heads x HW x head_dim
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """3x3 convolution with stride 2 (halves even sides)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
