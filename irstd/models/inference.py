"""Inference copies of zoo networks: :func:`fuse_for_inference`.

The networks compute the same function in every mode; the rewrites that only hold while weights and
statistics are frozen live here, applied to a copy once, instead of being cached inside ``forward``
(a cache keyed on tensor identity misses in-place edits such as ``p.data.mul_()`` in an EMA):

* every :class:`~irstd.models.layers.conv.ConvBNAct` with a BatchNorm gets the norm folded into its
  convolution (one pass over each output instead of two);
* networks with ``inference_channels_last = True`` (they run their activations channels-last) get
  their convolution weights stored channels-last, so that no call re-lays them out; the others get
  them contiguous (a network trained channels-last, :func:`training_layout`, runs eval as it asks);
* parameters stop requiring gradients.

The copy is the same function as the eval-mode original up to float rounding. Fuse again after the
original's weights change (``evaluate`` fuses a fresh copy for every evaluation).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from irstd.models.layers.conv import ConvBNAct

__all__ = ["fuse_for_inference", "training_layout", "MEMORY_FORMATS"]

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


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
    # a network trained channels-last (training_layout) runs eval contiguous unless it asks otherwise
    layout = torch.channels_last if getattr(fused, "inference_channels_last", False) else torch.contiguous_format
    for m in fused.modules():
        if isinstance(m, nn.Conv2d) and m.weight.dim() == 4:
            m.weight = nn.Parameter(m.weight.contiguous(memory_format=layout), requires_grad=False)
    return fused


def training_layout(model: nn.Module, memory_format: str = "auto") -> nn.Module:
    """Store ``model``'s 4-D parameters (convolution kernels) channels-last for training, in place.

    On CPU a training step of the zoo's convolutional networks is about 15 % faster with
    channels-last kernels (oneDNN's convolutions and their backward pass run channels-last; a step
    of batch 8 x 256 x 256 on 2 threads, alternating runs: ACM, RDIAN and LiteNet 0.83-0.88x the
    contiguous step; the README's model-zoo speed table times ours this way). Activations follow
    the kernels' layout; the function computed is the same up to float rounding. Checkpoints are
    written contiguous (:func:`irstd.engine.checkpoint.save_weights`), so files do not depend on it.

    Args:
        model: the network, already on its device (unwrapped: call before DDP wraps it).
        memory_format: ``auto`` (channels-last on CPU unless the network sets
            ``train_channels_last = False``; unchanged elsewhere: on CUDA the gain depends on cuDNN
            and AMP, not measured here), ``channels_last`` or ``contiguous``.

    Returns:
        ``model`` itself.
    """
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    if memory_format == "auto":
        first = next(model.parameters(), None)
        on_cpu = first is not None and first.device.type == "cpu"
        memory_format = "channels_last" if on_cpu and getattr(model, "train_channels_last", True) else "contiguous"
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    for p in model.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=fmt)
    return model
