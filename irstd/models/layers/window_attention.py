"""Swin-style window attention (Liu et al., "Swin Transformer", ICCV 2021) on ``B x C x H x W`` maps.

* :class:`WindowAttention` -- multi-head self-attention among the ``window x window`` pixels of each
  window, with Swin's learned relative position bias.
* :class:`SwinBlock` -- one Swin transformer layer: ``x + W-MSA(LN(x))``, then ``x + MLP(LN(x))``;
  with ``shift=True`` the windows are cyclically shifted by half a window (SW-MSA) and pixels that
  the roll brought together from opposite borders are masked out of each other's attention.

Tokens are the pixels: a map is permuted to ``B x H x W x C`` and cut into windows, so every token
is one pixel's channel vector (the public IRSTD-Diff release reshaped ``B x C x H x W`` memory
straight into ``B x HW x C``, which mixes channels and positions). Sides that are not multiples of
the window are zero-padded after the norm, as Swin does, and cropped back; a map no larger than one
window is not shifted.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["WindowAttention", "SwinBlock", "window_partition", "window_merge"]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``B x H x W x C`` (sides multiples of ``window``) -> ``(B * nW) x window**2 x C``, windows in
    raster order, pixels in raster order inside each window."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with relative position bias.

    Args:
        dim: token channels (divisible by ``heads``).
        heads: attention heads.
        window: window side in pixels.

    Shapes: ``forward(tokens, mask)`` with ``tokens`` ``(B * nW) x window**2 x dim`` and an optional
    additive ``mask`` ``nW x window**2 x window**2`` (0 or -inf) returns the same shape as ``tokens``.
    """

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"window attention: {dim} channels are not divisible by {heads} heads")
        self.dim, self.heads, self.window = dim, heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
        # Derived from the window size only (not from weights), so it may be kept between calls.
        self.register_buffer("bias_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = tokens.shape
        qkv = self.qkv(tokens).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B * nW) x heads x N x head_dim
        bias = self.bias_table[self.bias_index.reshape(-1)].view(n, n, self.heads).permute(2, 0, 1)
        if mask is None:
            attn_bias = bias.unsqueeze(0).to(q.dtype)
        else:
            nw = mask.shape[0]
            attn_bias = (bias.unsqueeze(0) + mask.unsqueeze(1)).to(q.dtype)  # nW x heads x N x N
            attn_bias = attn_bias.unsqueeze(0).expand(bw // nw, -1, -1, -1, -1).reshape(bw, self.heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


def _shift_mask(h: int, w: int, window: int, shift: int, device) -> torch.Tensor:
    """Swin's SW-MSA mask: 0 between pixels of the same region of the rolled map, -inf otherwise."""
    regions = torch.zeros(1, h, w, 1, device=device)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, rows, cols, :] = label
            label += 1
    ids = window_partition(regions, window).squeeze(-1)  # nW x N
    same = ids.unsqueeze(1) == ids.unsqueeze(2)
    return torch.zeros(same.shape, device=device).masked_fill_(~same, float("-inf"))


class SwinBlock(nn.Module):
    """One Swin transformer layer on a ``B x C x H x W`` map (see the module docstring).

    Args:
        dim: channels.
        heads: attention heads.
        window: window side in pixels.
        shift: shifted windows (half a window).
        mlp_ratio: hidden width of the MLP over ``dim``.

    Shapes: ``B x dim x H x W`` -> same, any ``H`` and ``W``.
    """

    def __init__(self, dim: int, heads: int = 4, window: int = 4, shift: bool = False, mlp_ratio: float = 4.0):
        super().__init__()
        self.window = int(window)
        self.shift = int(window) // 2 if shift else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, self.window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.permute(0, 2, 3, 1)  # B x H x W x C: one token per pixel
        win = self.window
        y = self.norm1(t)
        ph, pw = (-h) % win, (-w) % win
        if ph or pw:
            y = F.pad(y, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        shift = self.shift if min(hp, wp) > win else 0
        mask = None
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            mask = _shift_mask(hp, wp, win, shift, y.device)
        y = window_merge(self.attn(window_partition(y, win), mask), win, hp, wp)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        t = t + y[:, :h, :w, :]
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2).contiguous()
