"""Attention, cross-layer modulation and local-contrast blocks of the IRSTD networks.

* :class:`ContextGate` -- the two-layer point-wise MLP gate (``conv1x1 -> BN -> ReLU -> conv1x1 -> BN ->
  sigmoid``), global (pooled, SE-like) or local (per pixel). ACM, ALCNet and AGPCNet are built from it.
* :class:`AsymBiChaFuse` -- ACM's asymmetric contextual modulation of a deep and a shallow feature map.
* :class:`BottomUpLocalFuse` -- ALCNet's bottom-up local attentional modulation.
* :func:`local_contrast`, :func:`multiscale_local_contrast` -- ALCNet's dilated (cyclic-shift) local
  contrast measure on feature maps.
* :func:`directional_contrast` -- RDIAN's multi-direction contrast cue of an image.
* :class:`NonLocalBlock` -- self-attention over all positions of a map (Wang et al., CVPR 2018), the
  form used by AGPCNet.

Shapes are ``B x C x H x W``. Gates return weights in (0, 1): ``B x C x 1 x 1`` when pooled,
``B x C x H x W`` otherwise. Note that a pooled gate normalises ``B x C x 1 x 1`` maps with BatchNorm, so in
training it needs a batch of at least 2 (as in the public implementations).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models.layers.conv import ConvBNAct


class ContextGate(nn.Module):
    """Sigmoid gate from a bottleneck MLP of 1x1 convs (with biases) and BatchNorms.

    ``sigmoid(BN(conv(ReLU(BN(conv(pool(x)))))))`` with ``pool`` the global average (``pooled=True``,
    output ``B x out x 1 x 1``) or nothing (``pooled=False``, output ``B x out x H x W``).

    Args:
        channels: input channels.
        reduction: hidden width is ``max(channels // reduction, 1)``.
        pooled: global (channel attention) or local (point-wise, per pixel) context.
        out_chans: output channels (default ``channels``).
        sigmoid: apply the sigmoid (``False`` returns the pre-activation, e.g. to upsample it first).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 4,
        pooled: bool = True,
        out_chans: int | None = None,
        sigmoid: bool = True,
    ):
        super().__init__()
        hidden = max(channels // reduction, 1)
        out_chans = channels if out_chans is None else out_chans
        self.pooled = pooled
        self.sigmoid = sigmoid
        self.fc1 = ConvBNAct(channels, hidden, 1, bias=True)
        self.fc2 = ConvBNAct(hidden, out_chans, 1, bias=True, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooled:
            x = F.adaptive_avg_pool2d(x, 1)
        y = self.fc2(self.fc1(x))
        return torch.sigmoid(y) if self.sigmoid else y


class AsymBiChaFuse(nn.Module):
    """Asymmetric contextual modulation (ACM; Dai et al., WACV 2021).

    The deep map ``xh`` modulates the shallow map ``xl`` with a global top-down channel gate, the shallow
    map modulates the deep one with a local bottom-up point-wise gate, and the sum passes a 3x3 conv:

        ``out = post(2 * xl * G(xh) + 2 * xh * L(xl))``

    Args:
        channels: channels of both inputs and of the output (the inputs have the same shape).
        reduction: bottleneck ratio of both gates (4 in ACM).
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.topdown = ContextGate(channels, reduction, pooled=True)
        self.bottomup = ContextGate(channels, reduction, pooled=False)
        # ACM's post conv keeps its bias even before BN (it counts in the published parameter total).
        self.post = ConvBNAct(channels, channels, 3, bias=True)

    def forward(self, xh: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        fused = torch.addcmul(xh * self.bottomup(xl), xl, self.topdown(xh))
        return self.post(fused.mul_(2.0))


class BottomUpLocalFuse(nn.Module):
    """Bottom-up local attentional modulation (ALCNet; Dai et al., TGRS 2021).

    Both inputs are batch-normalised; a point-wise gate computed from the shallow map ``xl`` selects
    where the deep map ``xh`` contributes: ``out = L(BN(xl)) * BN(xh) + BN(xl)``.

    Args:
        channels: channels of both inputs (same shape) and of the output.
        reduction: bottleneck ratio of the gate (1 in the released ALCNet).
    """

    def __init__(self, channels: int, reduction: int = 1):
        super().__init__()
        self.bn_high = nn.BatchNorm2d(channels)
        self.bn_low = nn.BatchNorm2d(channels)
        self.bottomup = ContextGate(channels, reduction, pooled=False)

    def forward(self, xh: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        xh = self.bn_high(xh)
        xl = self.bn_low(xl)
        return torch.addcmul(xl, self.bottomup(xl), xh)


_OPPOSITE_PAIRS = ((1, 1), (1, 0), (1, -1), (0, 1))  # one of each pair of opposite directions (dy, dx)


def multiscale_local_contrast(x: torch.Tensor, shifts: tuple[int, ...] = (13, 17)) -> torch.Tensor:
    """ALCNet's multi-scale patch contrast measure (MPCM) of a feature map, element-wise per channel.

    For a shift ``s`` and each of the four pairs of opposite directions ``d`` (two diagonals, vertical,
    horizontal), the contrast is ``(x[p + s*d] - x[p]) * (x[p - s*d] - x[p])``; the single-scale measure
    is the minimum over the four pairs (large and positive only where ``p`` is brighter, or darker, than
    its surround in every direction), and the multi-scale one the maximum over ``shifts``. Neighbours are
    taken cyclically (wrap-around), as the authors' ``circ_shift``; shifts larger than the map wrap too.

    Args:
        x: ``B x C x H x W`` float tensor (any range).
        shifts: distances in pixels (positive).

    Returns:
        ``B x C x H x W`` tensor, same dtype.
    """
    if not shifts or min(shifts) < 1:
        raise ValueError(f"shifts must be positive, got {shifts}")
    h, w = x.shape[-2:]
    eff = [(s % h, s % w) for s in shifts]
    ph, pw = max(e[0] for e in eff), max(e[1] for e in eff)
    # One circular pad, then every shifted copy is a view: cheaper than 8 torch.roll copies per shift.
    xp = F.pad(x, (pw, pw, ph, ph), mode="circular") if (ph or pw) else x
    out = None
    for sh, sw in eff:
        pcm = None
        for dy, dx in _OPPOSITE_PAIRS:
            oy, ox = dy * sh, dx * sw
            fwd = xp[..., ph + oy : ph + oy + h, pw + ox : pw + ox + w]
            bwd = xp[..., ph - oy : ph - oy + h, pw - ox : pw - ox + w]
            prod = (fwd - x).mul_(bwd - x)
            pcm = prod if pcm is None else torch.minimum(pcm, prod)
        out = pcm if out is None else torch.maximum(out, pcm)
    return out


def local_contrast(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Single-scale patch contrast measure (PCM) at distance ``shift``.

    See :func:`multiscale_local_contrast`.
    """
    return multiscale_local_contrast(x, (shift,))


def directional_contrast(x: torch.Tensor, distance: int = 2) -> torch.Tensor:
    """RDIAN's multi-direction contrast cue: ``sum_d (x[p] - x[p + r*d]) * (x[p] - x[p - r*d])``.

    The sum runs over the four pairs of opposite directions ``d`` (two diagonals, vertical, horizontal)
    at distance ``r = distance``, with zeros outside the image (RDIAN's eight fixed 5x5 difference kernels
    with zero padding). It is large where a pixel stands out from its surround in every direction.

    Args:
        x: ``B x C x H x W`` float tensor; computed per channel.
        distance: neighbour distance in pixels.

    Returns:
        ``B x C x H x W`` tensor (unbounded; RDIAN applies a sigmoid).
    """
    r = distance
    h, w = x.shape[-2:]
    xp = F.pad(x, (r, r, r, r))
    out = None
    for dy, dx in _OPPOSITE_PAIRS:
        oy, ox = dy * r, dx * r
        fwd = xp[..., r + oy : r + oy + h, r + ox : r + ox + w]
        bwd = xp[..., r - oy : r - oy + h, r - ox : r - ox + w]
        prod = (x - fwd).mul_(x - bwd)
        out = prod if out is None else out.add_(prod)
    return out


class NonLocalBlock(nn.Module):
    """Self-attention over all positions (non-local block), ``out = gamma * attend(x) + x``.

    Queries and keys are 1x1 projections to ``channels // reduction`` channels, values a 1x1 projection to
    ``channels``; the attention weights are ``softmax_j(q_i . k_j)`` (no scaling), and ``gamma`` is a
    learned scalar initialised to 0 (the block starts as the identity), as in AGPCNet.

    Args:
        channels: input/output channels.
        reduction: query/key width is ``max(channels // reduction, 1)``.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inter = max(channels // reduction, 1)
        self.inter = inter
        self.query = nn.Conv2d(channels, inter, 1)
        self.key = nn.Conv2d(channels, inter, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    @staticmethod
    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Unscaled softmax attention on token-major tensors ``N x L x Cq``, ``N x L x Cq``, ``N x L x C``.

        Returns ``N x L x C`` with row ``i`` equal to ``sum_j softmax_j(q_i . k_j) v_j``.
        """
        return F.scaled_dot_product_attention(q, k, v, scale=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)
        k = self.key(x).flatten(2).transpose(1, 2)
        v = self.value(x).flatten(2).transpose(1, 2)
        out = self.attend(q, k, v).transpose(1, 2).reshape(b, c, h, w)
        return torch.addcmul(x, self.gamma, out)


__all__ = [
    "ContextGate",
    "AsymBiChaFuse",
    "BottomUpLocalFuse",
    "multiscale_local_contrast",
    "local_contrast",
    "directional_contrast",
    "NonLocalBlock",
]
