"""The noise estimation network (NE) of IRSTD-Diff: a DDPM U-Net over the noisy mask (paper 001, Table I).

``eps = DiffusionUNet(x_t, t, image, cond)`` predicts the noise in ``x_t`` (``B x 1 x H x W``, the
noisy mask) from ``x_t`` concatenated with the image (the input convolution takes ``in_chans + 1``
channels), the timestep ``t`` and optionally the conditional encoder's latent ``cond`` (eq. 15,
``U_de(U_en(x_t, t) + f(I), t)``): ``cond`` is **added** to the encoder's features where their
resolution is ``1 / cond_ds`` of the input (through a 1x1 convolution when the widths differ, a plain
sum when they agree, as in the paper-size configuration), so it reaches every deeper level and the
skips from that level on, and it gets the gradient of the noise loss.

Layout (guided diffusion's ``UNetModel``, the release's code base): an input 3x3 convolution;
per level ``num_res_blocks`` :class:`~irstd.models.layers.diffusion_blocks.ResBlock` (width
``base_channels * channel_mult[level]``, each followed by self-attention when the level's
down-sampling factor is in ``attention_ds``), then a stride-2 convolution except at the last level;
a middle ResBlock-attention-ResBlock; the mirrored decoder with ``num_res_blocks + 1`` ResBlocks
per level, each taking one encoder skip, and nearest-neighbour up-sampling; group norm, SiLU and a
3x3 convolution to one channel. Residual branches start at zero (see
:mod:`irstd.models.layers.diffusion_blocks`); the output convolution keeps PyTorch's default
initialisation, so the condition's path through the skip convolutions reaches the noise loss's
gradient from the first step.

The timestep embedding is the sinusoidal embedding of ``t * time_scale`` (``1000 / T``, so the 100
training timesteps span the 0 .. 1000 range the embedding's frequencies are laid out for) through
``Linear(base, 4 base), SiLU, Linear(4 base, 4 base)``.

Paper size (Table I): ``base_channels=64, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
attention_ds=(16,)`` (attention at 16x16 for 256 px inputs), 4 heads, 32 norm groups, time embedding
256. Stride ``2 ** (len(channel_mult) - 1)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models.layers.diffusion_blocks import (
    AttentionBlock,
    Downsample,
    ResBlock,
    Upsample,
    group_norm,
    timestep_embedding,
)

__all__ = ["DiffusionUNet"]


class DiffusionUNet(nn.Module):
    """Denoising U-Net with time embedding, scale-shift norm and attention; see the module docstring.

    Args:
        in_chans: image channels (the noisy mask adds one).
        base_channels: width of the first level.
        channel_mult: width multipliers per level (one level per entry, full resolution first).
        num_res_blocks: ResBlocks per encoder level (the decoder has one more).
        attention_ds: down-sampling factors whose levels get self-attention after each ResBlock.
        num_heads: attention heads.
        max_groups: group-norm groups.
        dropout: dropout in the ResBlocks.
        cond_chans: channels of the condition added at ``cond_ds`` (``None``: no condition).
        cond_ds: down-sampling factor (a power of 2 reached by the encoder) where it is added.
        time_scale: factor on ``t`` before the sinusoidal embedding.

    Shapes: ``forward(x_t, t, image, cond)`` with ``x_t`` ``B x 1 x H x W``, ``t`` ``B`` timesteps, ``image``
    ``B x in_chans x H x W`` and ``cond`` ``B x cond_chans x H/cond_ds x W/cond_ds`` returns ``B x 1 x H x W``.
    """

    def __init__(
        self,
        in_chans: int = 1,
        base_channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attention_ds: tuple[int, ...] = (16,),
        num_heads: int = 4,
        max_groups: int = 32,
        dropout: float = 0.0,
        cond_chans: int | None = None,
        cond_ds: int = 2,
        time_scale: float = 10.0,
    ):
        super().__init__()
        mult = tuple(int(m) for m in channel_mult)
        if not mult or num_res_blocks < 1:
            raise ValueError("channel_mult needs at least one level and num_res_blocks must be >= 1")
        levels = len(mult)
        if cond_chans is not None and cond_ds not in [2**i for i in range(levels)]:
            raise ValueError(f"cond_ds {cond_ds} is not a resolution of the encoder (1 .. {2 ** (levels - 1)})")
        self.base_channels = int(base_channels)
        self.time_scale = float(time_scale)
        self.cond_ds = int(cond_ds)
        self.stride = 2 ** (levels - 1)
        emb_dim = 4 * self.base_channels
        attn_ds = {int(a) for a in attention_ds}
        self.time_mlp = nn.Sequential(nn.Linear(self.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_chans + 1, self.base_channels, 3, padding=1)

        def attention(ch: int, ds: int) -> nn.Module:
            return AttentionBlock(ch, num_heads, max_groups) if ds in attn_ds else nn.Identity()

        ch, ds = self.base_channels, 1
        skips = [ch]
        cond_width = ch if self.cond_ds == 1 else None
        self.enc_res, self.enc_attn, self.enc_down = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for level, m in enumerate(mult):
            res, att = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                res.append(ResBlock(ch, m * self.base_channels, emb_dim, dropout, max_groups))
                ch = m * self.base_channels
                att.append(attention(ch, ds))
                skips.append(ch)
            self.enc_res.append(res)
            self.enc_attn.append(att)
            if level < levels - 1:
                self.enc_down.append(Downsample(ch))
                ds *= 2
                skips.append(ch)
                if ds == self.cond_ds:
                    cond_width = ch
            else:
                self.enc_down.append(nn.Identity())
        if cond_chans is None:
            self.cond_proj = None
        else:
            # eq. 15 is a plain sum; a 1x1 convolution only where the widths differ
            self.cond_proj = nn.Identity() if cond_chans == cond_width else nn.Conv2d(cond_chans, cond_width, 1)
        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb_dim, dropout, max_groups), AttentionBlock(ch, num_heads, max_groups),
             ResBlock(ch, ch, emb_dim, dropout, max_groups)]
        )
        self.dec_res, self.dec_attn, self.dec_up = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for level in range(levels - 1, -1, -1):
            res, att = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                out = mult[level] * self.base_channels
                res.append(ResBlock(ch + skips.pop(), out, emb_dim, dropout, max_groups))
                ch = out
                att.append(attention(ch, ds))
            self.dec_res.append(res)
            self.dec_attn.append(att)
            if level > 0:
                self.dec_up.append(Upsample(ch))
                ds //= 2
            else:
                self.dec_up.append(nn.Identity())
        self.out_norm = group_norm(ch, max_groups)
        self.out_conv = nn.Conv2d(ch, 1, 3, padding=1)

    def _add_cond(self, h: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None or self.cond_proj is None:
            return h
        return h + self.cond_proj(cond)

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, image: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t.float() * self.time_scale, self.base_channels).to(x_t.dtype))
        h = self.conv_in(torch.cat([image, x_t], dim=1))
        if self.cond_ds == 1:
            h = self._add_cond(h, cond)
        hs = [h]
        ds = 1
        for res, att, down in zip(self.enc_res, self.enc_attn, self.enc_down):
            for block, attn in zip(res, att):
                h = attn(block(h, emb))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                ds *= 2
                if ds == self.cond_ds:
                    h = self._add_cond(h, cond)
                hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for res, att, up in zip(self.dec_res, self.dec_attn, self.dec_up):
            for block, attn in zip(res, att):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            h = up(h)
        return self.out_conv(F.silu(self.out_norm(h)))
