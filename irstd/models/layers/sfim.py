"""Spatial-Frequency Interaction Module (SFIM) of BALISTD (paper 002: "Enhancing IRSTD Robustness with
Bi-Level Adversarial Framework"). The authors released no code; this follows the paper's text.

What the paper says (section "Spatial-frequency interaction", Fig. 2 (c)):

    "given one feature F^k, we first utilize Fourier transform to obtain the real and imaginary
    components, i.e., F_I^k, F_R^k = F(F^k), then we leverage the parallel structure with cascaded
    convolutions to refine the features in the frequency domain. In detail, we first utilize the
    spatial convolutions for each channel of frequency features to model the spatial correlation.
    Then we leverage the 1x1 convolution to investigate the channel relations of frequency. Lastly,
    we perform the inverse DFT to recover the feature into the spatial domain:
    F^{k+1} = F^{-1}(F_I^k, F_R^k). After that, we apply the spatial interaction by one residual
    block to gradually optimize features."

How it is built here, ``SFIM(C)`` mapping ``B x C x H x W`` to the same shape (any ``H, W``, odd and
non-square included)::

    X      = rfft2(x, norm="ortho")                         # real and imaginary parts, W' = W // 2 + 1
    R, I   = pw_R(act(dw_R(Re X))), pw_I(act(dw_I(Im X)))  # "parallel structure with cascaded convolutions"
    f      = x + irfft2(R + iI, s=(H, W), norm="ortho")     # frequency refinement, back in space
    out    = f + BN(conv3x3(ReLU(BN(conv3x3(f)))))          # "one residual block"

``dw`` is a depth-wise ("for each channel") 3x3 convolution over the spectrum, ``pw`` a 1x1
convolution across channels; real and imaginary parts have separate weights ("parallel structure").
The frequency part is :class:`irstd.models.layers.fft.FourierUnit`, whose docstring gives the choices
the paper leaves open (LeakyReLU(0.1) between the convolutions, no frequency-domain biases, circular
padding along the periodic frequency axis, the skip ``x + ...``). Choices of this module:

* The residual block is the ResNet basic block without its final activation (``conv3x3-BN-ReLU-
  conv3x3-BN`` plus identity): in DNANet SFIM takes the place of CBAM, whose output is added to the
  block's shortcut and only then rectified, so SFIM keeps signed outputs too. The norm is
  configurable (``norm=None``: convolutions with bias, no norm).
* No zero-initialisation: at initialisation SFIM is not the identity (both the spectral branch and
  the residual branch contribute).

Parameters for ``C`` channels: ``2C * 9 + 2C^2`` (frequency part, on half the spectrum)
plus ``18 C^2 + 4C`` (residual block with BN).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.models.layers.conv import ActSpec
from irstd.models.layers.fft import LEAKY_RELU_01, FourierUnit


class SFIM(nn.Module):
    """Spatial-frequency interaction module: :class:`FourierUnit` then one residual block.

    Args:
        channels: channels in and out.
        kernel_size: odd size of the depth-wise kernel over the spectrum.
        freq_act: activation between the frequency-domain convolutions.
        norm: norm layer of the residual block (class taking the channel count), ``None`` for none.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        freq_act: ActSpec = LEAKY_RELU_01,
        norm: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
    ):
        super().__init__()
        self.freq = FourierUnit(channels, kernel_size, act=freq_act, skip=True)
        bias = norm is None
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.norm1 = norm(channels) if norm is not None else nn.Identity()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.norm2 = norm(channels) if norm is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.freq(x)
        r = F.relu(self.norm1(self.conv1(f)), inplace=True)
        return f + self.norm2(self.conv2(r))


__all__ = ["SFIM"]
