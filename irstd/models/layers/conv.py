"""Convolution building blocks: conv + norm + activation, ResNet basic blocks and stages, FCN head.

Every block maps ``B x C_in x H x W`` to ``B x C_out x H' x W'`` with ``H' = ceil(H / stride)`` for the
default ("same") padding. Activations are built in-place where the activation class allows it; they
always act on a fresh tensor (a norm or conv output), so in-place changes no result.

Signatures (kept stable: other models import them)::

    ConvBNAct(in_chans, out_chans, k=3, s=1, p=None, groups=1, act=nn.ReLU, *, dilation=1,
              bias=None, norm=nn.BatchNorm2d)
    BasicBlock(in_chans, out_chans, stride=1, *, act=nn.ReLU, norm=nn.BatchNorm2d)
    res_stage(in_chans, out_chans, blocks, stride=1, **block_kwargs) -> nn.Sequential
    FCNHead(in_chans, out_chans=1, drop=0.1, *, bias=False)
    make_act(act) -> nn.Module
    inference_layout(x) -> torch.Tensor
"""

from __future__ import annotations

from typing import Callable, Union

import torch
import torch.nn as nn

ActSpec = Union[None, nn.Module, Callable[..., nn.Module]]
NormSpec = Union[None, Callable[[int], nn.Module]]


def make_act(act: ActSpec) -> nn.Module:
    """Build an activation module from ``None`` (identity), a module instance, or a class/factory.

    A class or factory is called with ``inplace=True`` when it accepts that keyword (ReLU, LeakyReLU,
    SiLU, Hardswish, ...), otherwise without arguments (GELU, Sigmoid, ...).
    """
    if act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    try:
        return act(inplace=True)
    except TypeError:
        return act()


class ConvBNAct(nn.Sequential):
    """``act(norm(conv(x)))``: the standard conv unit.

    Args:
        in_chans, out_chans: channels in and out.
        k: kernel size (int or pair). s: stride. p: padding; ``None`` means "same" for odd ``k``
            (``dilation * (k - 1) // 2``).
        groups: convolution groups (``groups == in_chans`` gives a depth-wise conv).
        act: activation class/factory/instance, or ``None`` for none (see :func:`make_act`).
        dilation: convolution dilation.
        bias: conv bias; ``None`` means "only when there is no norm" (a bias before BN is redundant).
        norm: norm-layer class taking the channel count, or ``None`` for none.

    Sub-modules are named ``conv``, ``bn`` (when a norm is used) and ``act`` (when an activation is used).

    No inference fast path hides in ``forward``: it is conv -> norm -> act in every mode, so editing
    parameters in place (``.data``, EMA, weight averaging) is always seen by the next call. Folding the
    BatchNorm into the convolution is an explicit step on a copy:
    :func:`irstd.models.fuse_for_inference` (which calls :meth:`fold_norm_`).
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        k: int | tuple[int, int] = 3,
        s: int | tuple[int, int] = 1,
        p: int | tuple[int, int] | None = None,
        groups: int = 1,
        act: ActSpec = nn.ReLU,
        *,
        dilation: int = 1,
        bias: bool | None = None,
        norm: NormSpec = nn.BatchNorm2d,
    ):
        super().__init__()
        if p is None:
            ks = (k, k) if isinstance(k, int) else tuple(k)
            p = tuple(dilation * (kk - 1) // 2 for kk in ks)
        if bias is None:
            bias = norm is None
        self.add_module(
            "conv",
            nn.Conv2d(in_chans, out_chans, k, s, p, dilation=dilation, groups=groups, bias=bias),
        )
        if norm is not None:
            self.add_module("bn", norm(out_chans))
        if act is not None:
            self.add_module("act", make_act(act))

    def fold_norm_(self) -> bool:
        """Fold an eval-mode BatchNorm into the convolution, in place; the norm becomes ``Identity``.

        ``conv' = conv * g / sqrt(var + eps)``, ``bias' = (bias - mean) * g / sqrt(var + eps) + beta``:
        the same function of the input (up to float rounding) as long as the statistics are frozen,
        so only for inference copies (:func:`irstd.models.fuse_for_inference`). The ``bn`` attribute
        stays (as ``Identity``) because some networks call ``unit.conv`` and ``unit.bn`` separately.

        Returns ``True`` when folded; ``False`` (unchanged) without a BatchNorm with running stats.
        """
        bn = self._modules.get("bn")
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:
            return False
        conv = self.conv
        dtype = conv.weight.dtype
        # In float64 where the device has it (MPS has not): the fold's rounding then stays far below
        # the convolution's.
        acc = torch.float32 if conv.weight.device.type == "mps" else torch.float64
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var.to(acc) + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight.to(acc)
            shift = -bn.running_mean.to(acc) * scale
            if conv.bias is not None:
                shift = shift + conv.bias.to(acc) * scale
            if bn.bias is not None:
                shift = shift + bn.bias.to(acc)
            weight = conv.weight.to(acc) * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
        conv.bias = nn.Parameter(shift.to(dtype), requires_grad=False)
        self.bn = nn.Identity()
        return True


class BasicBlock(nn.Module):
    """ResNet basic block (He et al., CVPR 2016): two 3x3 convs with a residual connection.

    ``out = act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))``; the first conv carries the stride.
    The shortcut is the identity when shapes match, otherwise a 1x1 conv (with the stride) + norm,
    as in torchvision's ``BasicBlock`` and GluonCV's ``CIFARBasicBlockV1``. Sub-modules: ``conv1``,
    ``conv2``, ``shortcut`` (:class:`ConvBNAct`, so :func:`irstd.models.fuse_for_inference` folds their
    norms) and ``act``.

    Args:
        in_chans, out_chans: channels in and out.
        stride: stride of the first conv and of the projection shortcut.
        act: activation (class/factory; applied after the first conv and after the sum).
        norm: norm-layer class.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        stride: int = 1,
        *,
        act: ActSpec = nn.ReLU,
        norm: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        self.conv1 = ConvBNAct(in_chans, out_chans, 3, stride, act=act, norm=norm)
        self.conv2 = ConvBNAct(out_chans, out_chans, 3, 1, act=None, norm=norm)
        if stride != 1 or in_chans != out_chans:
            self.shortcut = ConvBNAct(in_chans, out_chans, 1, stride, act=None, norm=norm)
        else:
            self.shortcut = nn.Identity()
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        out += self.shortcut(x)
        return self.act(out)


def inference_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory layout when autograd is off, else ``x`` itself (same values).

    Call at the entry of a network whose eval-mode convolutions run faster channels-last (measured per
    model); the layout then propagates through convolutions. Set ``inference_channels_last = True`` on
    such a network so that :func:`irstd.models.fuse_for_inference` stores its convolution weights
    channels-last too (otherwise every call converts them). In training the input keeps its layout;
    the kernels' layout is :func:`irstd.models.training_layout`'s choice.
    """
    if torch.is_grad_enabled() or x.dim() != 4:
        return x
    return x.to(memory_format=torch.channels_last)


def res_stage(in_chans: int, out_chans: int, blocks: int, stride: int = 1, **block_kwargs) -> nn.Sequential:
    """A ResNet stage: ``blocks`` :class:`BasicBlock` s, the first with ``stride`` (and the projection)."""
    if blocks < 1:
        raise ValueError(f"a stage needs at least one block, got {blocks}")
    layers = [BasicBlock(in_chans, out_chans, stride, **block_kwargs)]
    layers += [BasicBlock(out_chans, out_chans, 1, **block_kwargs) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class FCNHead(nn.Sequential):
    """Segmentation head of FCN as used by GluonCV and the IRSTD networks built on it.

    ``conv3x3(in -> in // 4) -> BN -> ReLU -> Dropout(drop) -> conv1x1(-> out_chans, with bias)``.
    Output: logits ``B x out_chans x H x W`` (same spatial size as the input).

    Args:
        in_chans: input channels (at least 4).
        out_chans: output channels (1 for a target logit map).
        drop: dropout probability in training (0 disables).
        bias: bias of the 3x3 conv (GluonCV: no; AGPCNet: yes).
    """

    def __init__(self, in_chans: int, out_chans: int = 1, drop: float = 0.1, *, bias: bool = False):
        inter = in_chans // 4
        if inter < 1:
            raise ValueError(f"FCNHead needs at least 4 input channels, got {in_chans}")
        super().__init__(
            ConvBNAct(in_chans, inter, 3, bias=bias),
            nn.Dropout(drop) if drop > 0 else nn.Identity(),
            nn.Conv2d(inter, out_chans, 1),
        )


__all__ = ["make_act", "ConvBNAct", "BasicBlock", "res_stage", "FCNHead", "inference_layout"]
