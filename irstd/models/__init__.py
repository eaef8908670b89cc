"""The model zoo: one registry, one interface.

``create(name, in_chans=1, **kwargs)`` builds any registered network; ``list_models()`` names them.

Interface shared by every network
---------------------------------
* Input ``B x C x H x W`` float tensor, ``H`` and ``W`` multiples of ``model.stride`` (the engine pads
  with :func:`irstd.data.transforms.pad_to_stride` and crops back). A network built by :func:`create`
  checks this before its forward and raises :class:`InputSizeError` naming the model, the size and
  the stride.
* Eval mode: returns logits ``B x 1 x H x W`` (not probabilities: losses use the stable logit forms).
* Train mode: networks without deep supervision return the same tensor. Networks with deep
  supervision return a ``list`` of logit tensors, each ``B x 1 x H x W`` (side outputs are upsampled
  to full size): element 0 is the final prediction (the one used in eval), the rest are side outputs.
  The trainer weights element 0 and the side outputs as configured.
* Each model class has a ``stride`` attribute (the total down-sampling factor) and
  ``deep_supervision`` (bool); ``inference_channels_last = True`` where its activations run
  channels-last (read by :func:`fuse_for_inference`).
* Generative networks (``generative = True``: ``irstd_diff``, paper 001) sample their mask in eval
  mode (seeded, so the forward is deterministic) and return its logits like the others; they are
  trained through their own loss, ``model(image, mask, generator=...) -> {"loss": ...}``
  (``strategy.name: diffusion``), and a train-mode ``model(image)`` is an error.
* Inference: :func:`fuse_for_inference` returns an eval-mode copy with BatchNorm folded into the
  convolutions (the fast form for prediction and evaluation); the model itself never caches
  anything derived from its weights, so in-place edits (EMA, weight averaging) always take effect.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from irstd.errors import IRSTDError
from irstd.registry import Registry

# Modules that register models on import. One file per architecture.
_MODEL_MODULES = ["dnanet", "uiunet", "istdunet", "acm", "alcnet", "rdian", "agpcnet", "sctransnet", "isnet", "hcfnet", "sfim_dnanet", "litenet", "ivanistd", "irstd_diff_ce", "irstd_diff"]

# Network factories by name. Per-model facts, shown by `irstd models` and checked by the tests: the
# reference parameter count of the public implementation (1 input channel) and where it comes from.
MODELS = Registry("model", modules=[f"irstd.models.{m}" for m in _MODEL_MODULES])


def register_model(name: str, *, reference_params: float | None = None, reference: str = ""):
    """Class or factory decorator: ``@register_model("acm", reference_params=0.398e6, reference="...")``.

    Names are lower-case and unique. ``reference_params`` is the parameter count of the published
    implementation with one input channel (the tests require ours within 10 %); ``reference`` says
    where the architecture and that count come from.
    """

    return MODELS.register(name, reference_params=reference_params, reference=reference)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return MODELS.names()


class InputSizeError(IRSTDError, ValueError):
    """An input whose height or width is not a multiple of the network's stride."""


class _StrideCheck:
    """Forward pre-hook of :func:`create`: a clear error for a size the network cannot take, instead of
    a size mismatch deep inside (a skip connection meeting an up-sampled map of another size).

    A module-level class, not a closure, so that a hooked model still deep-copies and pickles. The
    check is Python arithmetic on ints; it is skipped while tracing or compiling (``torch.jit.trace``,
    ``torch.export`` / ``torch.onnx.export``), where a symbolic size would otherwise become a guard.
    """

    def __init__(self, name: str, stride: int):
        self.name = name
        self.stride = stride

    def __call__(self, module: nn.Module, args: tuple):
        if not args or self.stride <= 1 or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return None
        x = args[0]
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            return None
        h, w = x.shape[-2], x.shape[-1]
        if h % self.stride or w % self.stride:
            raise InputSizeError(
                f"{self.name}: input of {h}x{w} pixels (H x W), but both sides must be multiples of the "
                f"model's stride {self.stride}; pad first (x, size = irstd.data.transforms.pad_to_stride(x, "
                f"{self.stride})) and crop the output back to size"
            )
        return None


def create(name: str, in_chans: int = 1, **kwargs) -> nn.Module:
    """Build the network ``name`` with ``in_chans`` input channels; other kwargs go to its constructor.

    The network raises :class:`InputSizeError` (an :class:`~irstd.errors.IRSTDError` and a
    ``ValueError``) for an input whose sides are not multiples of ``model.stride``.
    """
    key = name.lower()
    model = MODELS.get(key)(in_chans=in_chans, **kwargs)
    model.register_forward_pre_hook(_StrideCheck(key, int(getattr(model, "stride", 1) or 1)))
    return model


def model_info(name: str) -> dict:
    """Registered facts about a model: ``reference_params`` and ``reference``."""
    return MODELS.info(name)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# Last: the inference module imports the layers, which need nothing above but the package itself.
from irstd.models.inference import fuse_for_inference, training_layout  # noqa: E402

__all__ = [
    "MODELS",
    "create",
    "list_models",
    "register_model",
    "model_info",
    "count_parameters",
    "fuse_for_inference",
    "training_layout",
    "InputSizeError",
]
