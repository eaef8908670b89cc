"""Inference copies of zoo networks: :func:`fuse_for_inference`.

The networks compute the same function in every mode; the rewrites that only hold while weights and
statistics are frozen live here, applied to a copy once, instead of being cached inside ``forward``
(a cache keyed on tensor identity misses in-place edits such as ``p.data.mul_()`` in an EMA):

* every :class:`~irstd.models.layers.conv.ConvBNAct` with a BatchNorm gets the norm folded into its
  convolution (one pass over each output instead of two);
* networks with ``inference_channels_last = True`` (they run their activations channels-last) get
  their convolution weights stored channels-last, so that no call re-lays them out;
* parameters stop requiring gradients.

The copy is the same function as the eval-mode original up to float rounding. Fuse again after the
original's weights change (``evaluate`` fuses a fresh copy for every evaluation).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from irstd.models.layers.conv import ConvBNAct

__all__ = ["fuse_for_inference"]


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with the inference-only rewrites applied; ``model`` is untouched.

    Args:
        model: a zoo network (or any module built from :class:`ConvBNAct`); a DDP / DataParallel
            wrapper is unwrapped.

    Returns:
        A deep copy in eval mode, on the same device, with BatchNorms of conv units folded into their
        convolutions and no parameter requiring gradients. Forward pre-hooks (the input check of
        :func:`irstd.models.create`) and attributes such as ``stride`` are kept.
    """
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    fused = copy.deepcopy(model).eval()
    fused.requires_grad_(False)
    for m in fused.modules():
        if isinstance(m, ConvBNAct):
            m.fold_norm_()
    if getattr(fused, "inference_channels_last", False):
        for m in fused.modules():
            if isinstance(m, nn.Conv2d) and m.weight.dim() == 4:
                m.weight = nn.Parameter(m.weight.contiguous(memory_format=torch.channels_last), requires_grad=False)
    return fused
