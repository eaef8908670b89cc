"""SFIM-DNANet: BALISTD's detector (paper 002), DNANet with SFIM in place of channel-spatial attention.

"Considering the DNANet (Li et al. 2022) as the baseline, we replace the spatial-channel attention
modules of the baseline with SFIM." Every residual block of :class:`irstd.models.dnanet.DNANet`
(nested nodes and the pyramid-fusion block) applies :class:`irstd.models.layers.sfim.SFIM` where
DNANet applies CBAM; everything else (widths, depths, deep supervision, stride 16, logits) is
DNANet's. The authors released no code, so no reference parameter count is registered; the tests
derive the count from DNANet's and the block widths instead (``20 C^2 + 22 C`` per SFIM of ``C``
channels in place of CBAM's ``2 C max(C // 16, 1) + 98``).

Cost at one 1 x 256 x 256 input: 9.32 M parameters and 45.4 GFLOPs (PyTorch's flop counter, FFTs not
counted) against DNANet's 4.69 M and 27.8 GFLOPs; almost all of the difference is the two 3x3
convolutions of each SFIM's residual block, the Fourier part adds ``2C^2 + 18C`` parameters per block.
"""

from __future__ import annotations

from irstd.models import register_model
from irstd.models.dnanet import DNANet
from irstd.models.layers.sfim import SFIM

@register_model(
    "sfim_dnanet",
    reference="BALISTD (paper 002): DNANet with SFIM in place of channel-spatial attention; "
    "no public code, so no reference count (ours: 9,317,668)",
)
def sfim_dnanet(in_chans: int = 1, **kwargs) -> DNANet:
    """DNANet (public configuration) whose attention modules are SFIM; kwargs go to :class:`DNANet`.

    ``attention`` may still be given (for example ``functools.partial(SFIM, kernel_size=5)``).
    """
    kwargs.setdefault("attention", SFIM)
    return DNANet(in_chans=in_chans, **kwargs)


__all__ = ["sfim_dnanet"]
