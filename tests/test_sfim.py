"""SFIM (BALISTD's spatial-frequency interaction module), its Fourier unit, and the sfim_dnanet model."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models import count_parameters, create
from irstd.models.dnanet import ResidualAttentionBlock
from irstd.models.layers.cbam import CBAM
from irstd.models.layers.fft import FourierUnit, irfft2_parts, rfft2_parts
from irstd.models.layers.sfim import SFIM

SHAPES = [(2, 4, 16, 16), (1, 3, 17, 9), (2, 5, 8, 13), (1, 2, 1, 1), (1, 6, 31, 32), (2, 3, 2, 7)]


@pytest.mark.parametrize("shape", SHAPES)
def test_rfft2_parts_roundtrip(shape):
    x = torch.randn(shape, dtype=torch.float64).float()
    z = rfft2_parts(x)
    assert z.shape == (shape[0], 2 * shape[1], shape[2], shape[3] // 2 + 1)
    assert z.dtype == torch.float32
    assert torch.allclose(irfft2_parts(z, shape[-2:]), x, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_sfim_keeps_shape(shape):
    torch.manual_seed(0)
    m = SFIM(shape[1]).train()
    x = torch.randn(shape)
    if shape[0] * shape[2] * shape[3] == 1:  # BatchNorm in train mode needs more than one value
        m.eval()
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


def test_gradients_reach_every_parameter_and_the_input():
    torch.manual_seed(0)
    m = SFIM(4).train()
    x = torch.randn(2, 4, 15, 12, requires_grad=True)
    (m(x) * torch.randn(2, 4, 15, 12)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"
    assert x.grad is not None and x.grad.abs().sum() > 0
    # the frequency-domain weights are there and trained: 2C depth-wise kernels, two C x C 1x1 blocks
    assert m.freq.dw.weight.shape == (8, 1, 3, 3)
    assert m.freq.pw.weight.shape == (8, 4, 1, 1)


def test_not_identity_at_init_and_both_paths_contribute():
    torch.manual_seed(0)
    m = SFIM(4).eval()
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        y = m(x)
        f = m.freq(x)
    assert (y - x).abs().mean() > 0.05 * x.abs().mean()
    assert (f - x).abs().mean() > 0.05 * x.abs().mean(), "the frequency branch does nothing at init"
    assert (y - f).abs().mean() > 0.05 * x.abs().mean(), "the residual block does nothing at init"


def test_global_receptive_field_from_the_frequency_branch():
    # A change at one pixel reaches pixels far outside the 5x5 receptive field of the residual
    # block's two 3x3 convolutions: only the Fourier part can carry it there.
    torch.manual_seed(0)
    m = SFIM(3).eval()
    x = torch.randn(1, 3, 32, 24)
    x2 = x.clone()
    x2[0, :, 3, 4] += 5.0
    with torch.no_grad():
        d = (m(x2) - m(x)).abs().sum(1)[0]
    far = torch.ones_like(d, dtype=torch.bool)
    far[0:7, 1:8] = False  # the pixel and its 3-pixel neighbourhood
    assert d[far].max() > 1e-3
    assert (d[far] > 1e-6).float().mean() > 0.5, "the change should spread over most of the map"

    # Same check with the Fourier unit removed: the change stays local.
    m.freq = nn.Identity()
    with torch.no_grad():
        d_local = (m(x2) - m(x)).abs().sum(1)[0]
    assert d_local[far].max() < 1e-5


def _linear_unit(channels: int) -> FourierUnit:
    """A Fourier unit with identity frequency weights and no activation (a known linear operator)."""
    u = FourierUnit(channels, act=None, skip=True)
    with torch.no_grad():
        u.dw.weight.zero_()
        u.dw.weight[:, 0, 1, 1] = 1.0  # Dirac: no mixing of neighbouring frequencies
        u.pw.weight.zero_()
        for g in range(2):
            u.pw.weight[g * channels : (g + 1) * channels, :, 0, 0] = torch.eye(channels)
    return u


@pytest.mark.parametrize("size", [(16, 16), (15, 9), (8, 13)])
def test_fourier_unit_identity_weights_reconstruct_exactly(size):
    # FFT -> identity -> inverse FFT returns the map, for odd and non-square sizes (irfft2 with s=).
    u = _linear_unit(3)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        assert torch.allclose(u(x), 2 * x, atol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (15, 9), (8, 13)])
def test_real_and_imaginary_branches_are_the_even_and_odd_parts(size):
    # The real part of the spectrum belongs to the even part of the map, x_e(n) = (x(n) + x(-n)) / 2,
    # the imaginary part to the odd part: silencing one branch keeps exactly the other part. This
    # pins down that the branches act on Re / Im (not magnitude / phase) with separate weights.
    c = 2
    x = torch.randn(1, c, *size)
    flipped = torch.roll(torch.flip(x, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))  # x(-n mod N)
    even, odd = (x + flipped) / 2, (x - flipped) / 2
    u = _linear_unit(c)
    with torch.no_grad():
        u.pw.weight[c:] = 0  # imaginary branch off
        assert torch.allclose(u(x), x + even, atol=1e-5)
        u = _linear_unit(c)
        u.pw.weight[:c] = 0  # real branch off
        assert torch.allclose(u(x), x + odd, atol=1e-5)


def test_no_corner_artefact_from_biases():
    # With zero input the unit must output zero: a frequency-domain bias would put an impulse at (0, 0).
    u = FourierUnit(3)
    with torch.no_grad():
        assert torch.count_nonzero(u(torch.zeros(1, 3, 12, 10))) == 0


def test_autocast_bfloat16_odd_size():
    torch.manual_seed(0)
    m = SFIM(4).eval()
    x = torch.randn(1, 4, 15, 11)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert torch.allclose(y.float(), ref, atol=0.1 * ref.abs().max().item())


def test_even_kernel_rejected():
    with pytest.raises(ValueError, match="odd"):
        FourierUnit(4, kernel_size=4)


def test_sfim_dnanet_uses_sfim_in_every_attention_slot():
    model = create("sfim_dnanet")
    blocks = [m for m in model.modules() if isinstance(m, ResidualAttentionBlock)]
    sfims = [m for m in model.modules() if isinstance(m, SFIM)]
    assert len(blocks) > 0
    assert all(isinstance(b.attention, SFIM) for b in blocks)
    assert len(sfims) == len(blocks)
    assert not any(isinstance(m, CBAM) for m in model.modules())
    # Same blocks as DNANet, attention swapped.
    base = create("dnanet")
    n_base = sum(isinstance(m, ResidualAttentionBlock) for m in base.modules())
    assert n_base == len(blocks)
    assert count_parameters(model) > count_parameters(base)


@pytest.mark.parametrize("c", [4, 16, 64])
def test_sfim_parameter_count_from_its_description(c):
    # Fourier unit: depth-wise 3x3 on 2C spectrum channels (2C * 9) and a two-group 1x1 (2 C^2);
    # residual block: two 3x3 C -> C convs without bias (18 C^2) and two BatchNorms (4 C).
    assert count_parameters(SFIM(c)) == 2 * c * 9 + 2 * c * c + 18 * c * c + 4 * c


def test_sfim_dnanet_parameter_count_from_dnanet_and_the_block_widths():
    # No public code to compare with, so the count is derived: DNANet's (checked against the public
    # implementation in test_models) with every CBAM (two bias-free 1x1 convs C -> max(C // 16, 1) -> C
    # and a 7x7 2 -> 1 conv) replaced by an SFIM (20 C^2 + 22 C). Residual blocks by width: the top
    # level's five nodes and the fusion block (16), then 4, 3, 2, 1 nodes of two blocks (32 ... 256).
    blocks_by_width = {16: 6, 32: 8, 64: 6, 128: 4, 256: 2}
    delta = sum(
        n * ((20 * c * c + 22 * c) - (2 * c * max(c // 16, 1) + 98)) for c, n in blocks_by_width.items()
    )
    base = create("dnanet")
    assert sum(blocks_by_width.values()) == sum(isinstance(m, ResidualAttentionBlock) for m in base.modules())
    assert count_parameters(create("sfim_dnanet")) == count_parameters(base) + delta == 9_317_668


def test_sfim_dnanet_forward_odd_multiple_of_stride():
    torch.manual_seed(0)
    model = create("sfim_dnanet", widths=(4, 8, 8, 8, 8)).eval()
    x = torch.randn(1, 1, 48, 80)  # 3 x 5 at the deepest level: odd spectra everywhere below the top
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 1, 48, 80) and torch.isfinite(y).all()


@pytest.mark.parametrize("h, k", [(6, 3), (2, 5), (1, 3)])
def test_frequency_kernel_wraps_around_the_periodic_axis(h, k):
    # A kernel that copies the row above turns the spectrum into its circular shift along the vertical
    # frequency axis (row H - 1 is frequency -1/H, the neighbour of DC), and a zero column enters
    # along the half-spectrum axis.
    c = 2
    u = FourierUnit(c, kernel_size=k, act=None)
    p = k // 2
    with torch.no_grad():
        u.dw.weight.zero_()
        u.dw.weight[:, 0, p - 1, p] = 1.0  # output row k takes input row k - 1
        u.pw.weight.zero_()
        for g in range(2):
            u.pw.weight[g * c : (g + 1) * c, :, 0, 0] = torch.eye(c)
        z = torch.randn(1, 2 * c, h, 5)
        assert torch.allclose(u.spectral(z), torch.roll(z, 1, dims=-2))
        u.dw.weight.zero_()
        u.dw.weight[:, 0, p, p - 1] = 1.0  # output column l takes input column l - 1
        shifted = torch.cat([torch.zeros_like(z[..., :1]), z[..., :-1]], dim=-1)
        assert torch.allclose(u.spectral(z), shifted)


@pytest.mark.parametrize("size, k", [((12, 10), 3), ((9, 7), 5)])
def test_fourier_unit_matches_the_plain_grouped_conv_formulation(size, k):
    # The unit runs a channels-last layout and a GEMM for speed; it must equal the textbook form:
    # [Re, Im] channels, circular pad of the periodic axis, grouped convs, complex inverse FFT.
    torch.manual_seed(0)
    c = 3
    u = FourierUnit(c, kernel_size=k)
    x = torch.randn(2, c, *size)
    spec = torch.fft.rfft2(x, norm="ortho")
    z = torch.cat([spec.real, spec.imag], dim=1)
    z = F.pad(z, (0, 0, k // 2, k // 2), mode="circular")
    z = F.conv2d(z, u.dw.weight, padding=(0, k // 2), groups=2 * c)
    z = F.conv2d(F.leaky_relu(z, 0.1), u.pw.weight, groups=2)
    ref = x + torch.fft.irfft2(torch.complex(z[:, :c], z[:, c:]), s=size, norm="ortho")
    with torch.no_grad():
        assert torch.allclose(u(x), ref, atol=1e-5)


def test_channels_last_input_keeps_its_layout_and_values():
    # DNANet runs channels-last; SFIM must not silently fall back to NCHW (slower convolutions).
    torch.manual_seed(0)
    m = SFIM(6).eval()
    x = torch.randn(2, 6, 12, 9)
    with torch.no_grad():
        y = m(x.contiguous(memory_format=torch.channels_last))
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(y, m(x), atol=1e-5)
