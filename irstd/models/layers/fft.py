"""Fourier-domain building blocks: real FFT to and from stacked real/imaginary channels, and a
frequency-domain convolution unit.

* :func:`rfft2_parts` -- ``B x C x H x W`` -> ``B x 2C x H x (W // 2 + 1)``: the orthonormal 2-D real
  FFT of every channel, real parts in channels ``[0, C)``, imaginary parts in ``[C, 2C)``.
* :func:`irfft2_parts` -- the inverse, given the spatial size (so odd widths come back exactly).
* :class:`FourierUnit` -- ``x + irfft2(g(rfft2(x)))`` with ``g`` a depth-wise spatial convolution over
  the spectrum followed by a 1x1 convolution across channels, in two parallel branches (real part,
  imaginary part). The frequency half of BALISTD's SFIM (:mod:`irstd.models.layers.sfim`).

Precision: the transforms always run in float32 with autocast disabled (cuFFT supports half precision
only for power-of-two sizes, and CPU FFTs not at all); the results are returned in the input's dtype.
The orthonormal scaling (``norm="ortho"``) keeps the spectrum's energy equal to the map's, so the
frequency-domain weights see values of the same order as the spatial ones whatever the map size.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models.layers.conv import ActSpec, make_act

# LeakyReLU(0.1) as a partial, so that make_act can build it with inplace=True.
LEAKY_RELU_01 = partial(nn.LeakyReLU, 0.1)


def rfft2_parts(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal real 2-D FFT over the last two dims, as stacked real/imaginary channels.

    Args:
        x: ``B x C x H x W`` real tensor, any float dtype, any ``H, W >= 1``.

    Returns:
        float32 ``B x 2C x H x (W // 2 + 1)``: ``[Re X, Im X]`` along the channel dim. Row index ``k`` is
        the vertical frequency ``k / H`` cycles per pixel (periodic, rows past ``H / 2`` are the negative
        frequencies); column ``l`` is the horizontal frequency ``l / W``, ``0 <= l <= W / 2``.
    """
    b, c, h, _ = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        spec = torch.fft.rfft2(x.float(), norm="ortho")
    return torch.view_as_real(spec).permute(0, 4, 1, 2, 3).reshape(b, 2 * c, h, -1)


def irfft2_parts(z: torch.Tensor, size: tuple[int, int], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Inverse of :func:`rfft2_parts`.

    Args:
        z: ``B x 2C x H x (W // 2 + 1)`` stacked ``[real, imag]`` (any float dtype).
        size: spatial size ``(H, W)`` of the result; needed because ``W`` and ``W + 1`` (even and odd)
            give the same half-spectrum width.
        dtype: dtype of the result (float32 when ``None``).

    Returns:
        ``B x C x H x W`` real tensor. ``z`` is read as half of a Hermitian spectrum: components that
        break the symmetry (which a frequency-domain convolution can create in column 0 and, for even
        ``W``, in the Nyquist column) are dropped, as ``torch.fft.irfft2`` does.
    """
    c = z.shape[1] // 2
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        out = torch.fft.irfft2(torch.complex(z[:, :c], z[:, c:]), s=tuple(size), norm="ortho")
    return out if dtype is None else out.to(dtype)


class FourierUnit(nn.Module):
    """``x + irfft2(pw(act(dw(rfft2(x)))))``: convolutions over the spectrum of a feature map.

    The spectrum's real and imaginary parts go through two parallel branches with their own weights
    (a ``2C``-channel grouped convolution, two groups): in each, a depth-wise ``k x k`` convolution
    mixes neighbouring frequencies of one channel, then a 1x1 convolution mixes the channels at each
    frequency. Every output pixel depends on every input pixel (global receptive field).

    Design choices (documented because BALISTD's text leaves them open):

    * Padding of the depth-wise convolution is circular along the vertical frequency axis (which is
      periodic: row ``H - 1`` is frequency ``-1 / H``, a neighbour of the DC row 0) and zero along the
      half-spectrum axis.
    * No biases in the frequency domain: a constant added to every frequency is an impulse at pixel
      ``(0, 0)`` after the inverse transform, a spurious "target" in the image corner.
    * ``act`` between the two convolutions defaults to ``LeakyReLU(0.1)``: positively homogeneous, so
      scaling the input scales the spectrum branch alike, and it keeps the sign of spectral
      coefficients that a ReLU would zero.
    * ``skip=True`` adds the input back (equivalently, the spectrum is refined residually,
      ``X + g(X)``, since the FFT is linear), so a freshly initialised unit perturbs the features
      rather than replacing them by a random spectral filtering.

    Args:
        channels: ``C``, channels in and out.
        kernel_size: odd size of the depth-wise frequency-domain kernel.
        act: activation between the two convolutions (see :func:`irstd.models.layers.conv.make_act`;
            ``None``: linear).
        skip: add the input to the result.

    Parameters live in two ``nn.Conv2d`` modules with the usual weight layout, ``dw`` (depth-wise,
    ``2C x 1 x k x k``) and ``pw`` (two groups, ``2C x C x 1 x 1``); ``pw`` is applied as one matrix
    product on channels-last memory, which gives the grouped convolution's result faster.
    """

    def __init__(self, channels: int, kernel_size: int = 3, act: ActSpec = LEAKY_RELU_01, skip: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.channels = channels
        self.pad = kernel_size // 2
        two_c = 2 * channels
        self.dw = nn.Conv2d(two_c, two_c, kernel_size, padding=(0, self.pad), groups=two_c, bias=False)
        self.act = make_act(act)
        self.pw = nn.Conv2d(two_c, two_c, 1, groups=2, bias=False)
        self.skip = bool(skip)

    def _refine(self, z: torch.Tensor) -> torch.Tensor:
        """``g`` on a spectrum laid out ``B x H x W' x 2 x C`` (parts, then channels; any strides).

        Returns ``B x C x H x W' x 2``, contiguous: ready for ``torch.view_as_complex``. The layout
        is chosen for speed: the depth-wise convolution runs on channels-last memory (several times
        faster on CPU than NCHW) and the input gather and the output are the only copies.
        """
        b, h, wh, _, c = z.shape
        z = z.to(self.dw.weight.dtype)
        p = self.pad
        if p:
            # Wrap-around rows. cat writes the strided input straight into a contiguous result; the
            # index form also covers maps with fewer rows than p (where circular F.pad fails too).
            if p <= h:
                z = torch.cat([z[:, h - p :], z, z[:, :p]], dim=1)
            else:
                z = z.index_select(1, torch.arange(-p, h + p, device=z.device) % h)
        z = z.contiguous().view(b, h + 2 * p, wh, 2 * c).permute(0, 3, 1, 2)
        z = self.act(self.dw(z))
        # The grouped 1x1 convolution (weight pw.weight[g * C + o, i]: input channel i of part g to
        # output channel o) as one GEMM with the block-diagonal matrix, on channels-last memory.
        w = self.pw.weight.view(2, c, c)
        z = F.linear(z.permute(0, 2, 3, 1), torch.block_diag(w[0], w[1]))
        return z.reshape(b, h, wh, 2, c).permute(0, 4, 1, 2, 3).contiguous()

    def spectral(self, z: torch.Tensor) -> torch.Tensor:
        """The frequency-domain map ``g`` on stacked ``[real, imag]`` spectra, ``B x 2C x H x W'``."""
        b, c2, h, wh = z.shape
        out = self._refine(z.permute(0, 2, 3, 1).reshape(b, h, wh, 2, c2 // 2))
        return out.permute(0, 4, 1, 2, 3).reshape(b, c2, h, wh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.fft.rfft2(x.float(), norm="ortho")
            # The convolutions run in the parameters' dtype (float32 unless the model was cast to half).
            z = self._refine(torch.view_as_real(spec).permute(0, 2, 3, 4, 1))
            out = torch.fft.irfft2(torch.view_as_complex(z.float()), s=size, norm="ortho").to(x.dtype)
        # x first: the sum then keeps x's memory format (DNANet runs channels-last).
        return x + out if self.skip else out


__all__ = ["rfft2_parts", "irfft2_parts", "FourierUnit", "LEAKY_RELU_01"]
