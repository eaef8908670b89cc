"""The model zoo: one registry, one interface.

``create(name, in_chans=1, **kwargs)`` builds any registered network; ``list_models()`` names them.

Interface shared by every network
---------------------------------
* Input ``B x C x H x W`` float tensor, ``H`` and ``W`` multiples of ``model.stride`` (the engine pads
  with :func:`irstd.data.transforms.pad_to_stride` and crops back).
* Eval mode: returns logits ``B x 1 x H x W`` (not probabilities: losses use the stable logit forms).
* Train mode: networks without deep supervision return the same tensor. Networks with deep
  supervision return a ``list`` of logit tensors, each ``B x 1 x H x W`` (side outputs are upsampled
  to full size): element 0 is the final prediction (the one used in eval), the rest are side outputs.
  The trainer weights element 0 and the side outputs as configured.
* Each model class has a ``stride`` attribute (the total down-sampling factor) and
  ``deep_supervision`` (bool).
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch.nn as nn

from irstd.errors import IRSTDError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# Per-model facts shown by `irstd models` and checked by the tests: reference parameter count of the
# public implementation (1 input channel) and where that number comes from.
_INFO: dict[str, dict] = {}

# Modules that register models on import. One file per architecture.
_MODEL_MODULES = ["dnanet", "uiunet", "istdunet", "acm", "alcnet", "rdian", "agpcnet", "sctransnet", "isnet", "hcfnet", "sfim_dnanet", "litenet"]


def register_model(name: str, *, reference_params: float | None = None, reference: str = ""):
    """Class or factory decorator: ``@register_model("acm", reference_params=0.398e6, reference="...")``.

    Names are lower-case and unique. ``reference_params`` is the parameter count of the published
    implementation with one input channel (the tests require ours within 10 %); ``reference`` says
    where the architecture and that count come from.
    """

    def deco(fn):
        key = name.lower()
        if key in _REGISTRY and _REGISTRY[key] is not fn:
            raise ValueError(f"model {key!r} registered twice")
        _REGISTRY[key] = fn
        _INFO[key] = {"reference_params": reference_params, "reference": reference}
        return fn

    return deco


def _load_all() -> None:
    for mod in _MODEL_MODULES:
        importlib.import_module(f"irstd.models.{mod}")


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def create(name: str, in_chans: int = 1, **kwargs) -> nn.Module:
    """Build the network ``name`` with ``in_chans`` input channels; other kwargs go to its constructor."""
    _load_all()
    key = name.lower()
    if key not in _REGISTRY:
        raise IRSTDError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key](in_chans=in_chans, **kwargs)


def model_info(name: str) -> dict:
    """Registered facts about a model: ``reference_params`` and ``reference``."""
    _load_all()
    return dict(_INFO[name.lower()])


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["create", "list_models", "register_model", "model_info", "count_parameters"]
