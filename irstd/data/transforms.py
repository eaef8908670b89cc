"""Training augmentation and evaluation padding.

Training (:class:`TrainTransform`) works on one normalised image (float32 H x W, mean 0 after
:func:`~irstd.data.dataset.normalize_image`) and its bool mask, with an explicit
``numpy.random.Generator`` so that DataLoader workers are reproducible (see the dataset module).
It crops a fixed size, padding images that are smaller than the crop with 0 (the image mean), and
applies flips and transposition; it never rescales, because rescaling would change the 1-9 px
targets the network must learn.

Evaluation never resizes either: :func:`pad_to_stride` pads a batch at the bottom and right to a
multiple of the model's stride and :func:`crop_to` cuts the prediction back to the original size,
so metrics are computed on exactly the original pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TrainTransform", "crop_to", "pad_to_stride"]


def _pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"crop size must be an int or (height, width), got {size!r}")
        h, w = int(size[0]), int(size[1])
    else:
        h = w = int(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"crop size must be positive, got {size!r}")
    return h, w


def _window_start(length: int, crop: int, rng: np.random.Generator, keep: int | None) -> int:
    """Start of a crop window along one axis; negative when the image is shorter than the crop.

    The window either lies inside the image (image at least as long as the crop) or covers it
    entirely (shorter image, the rest is padding); with ``keep`` it also contains that index.
    """
    lo, hi = min(0, length - crop), max(0, length - crop)
    if keep is not None:
        lo, hi = max(lo, keep - crop + 1), min(hi, keep)
    return int(rng.integers(lo, hi + 1))


def _window(array: np.ndarray, top: int, left: int, size: tuple[int, int], fill) -> np.ndarray:
    """Copy of ``array[top:top+h, left:left+w]`` with out-of-image parts set to ``fill``."""
    h, w = size
    out = np.full((h, w), fill, dtype=array.dtype)
    src_t, src_l = max(top, 0), max(left, 0)
    src_b, src_r = min(top + h, array.shape[0]), min(left + w, array.shape[1])
    out[src_t - top : src_b - top, src_l - left : src_r - left] = array[src_t:src_b, src_l:src_r]
    return out


class TrainTransform:
    """Random crop (optionally around a target), zero padding, flips and transpose.

    Args:
        crop_size: crop height and width in pixels (int for a square crop, or ``(h, w)``).
        target_prob: probability in [0, 1] that the crop is forced to contain at least one target
            pixel (a target pixel is drawn uniformly, then a window containing it). Images without
            targets always get a uniformly random crop.
        flip: random horizontal and vertical flips, each with probability 0.5.
        transpose: random transposition with probability 0.5 (only for square crops).

    Call with ``(image float32 HxW, mask bool HxW, rng)``; returns new contiguous arrays
    ``(image float32 h x w, mask bool h x w)`` of the crop size. An image smaller than the crop
    along an axis is placed at a random offset and padded with 0 (the mean of a normalised image),
    its mask with False.
    """

    def __init__(
        self,
        crop_size: int | tuple[int, int] = 256,
        target_prob: float = 0.5,
        flip: bool = True,
        transpose: bool = True,
    ):
        self.crop_size = _pair(crop_size)
        if not 0.0 <= float(target_prob) <= 1.0:
            raise ValueError(f"target_prob must be in [0, 1], got {target_prob}")
        self.target_prob = float(target_prob)
        self.flip = bool(flip)
        self.transpose = bool(transpose)

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != 2 or image.shape != mask.shape:
            raise ValueError(
                "TrainTransform expects 2-D image and mask of equal shape, "
                f"got {image.shape} and {mask.shape}"
            )
        mask = mask.astype(bool, copy=False)
        crop_h, crop_w = self.crop_size
        keep_row = keep_col = None
        # The draw happens whether or not it is used so the random stream does not depend on content.
        force = rng.random() < self.target_prob
        if force:
            targets = np.flatnonzero(mask)
            if targets.size:
                keep_row, keep_col = divmod(int(targets[rng.integers(targets.size)]), mask.shape[1])
        top = _window_start(image.shape[0], crop_h, rng, keep_row)
        left = _window_start(image.shape[1], crop_w, rng, keep_col)
        image = _window(image, top, left, self.crop_size, 0.0)
        mask = _window(mask, top, left, self.crop_size, False)
        if self.flip:
            if rng.random() < 0.5:
                image, mask = image[:, ::-1], mask[:, ::-1]
            if rng.random() < 0.5:
                image, mask = image[::-1, :], mask[::-1, :]
        if self.transpose and crop_h == crop_w and rng.random() < 0.5:
            image, mask = image.T, mask.T
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)

    def __repr__(self) -> str:
        return (
            f"TrainTransform(crop_size={self.crop_size}, target_prob={self.target_prob}, "
            f"flip={self.flip}, transpose={self.transpose})"
        )


def pad_to_stride(
    x: torch.Tensor, stride: int, value: float = 0.0
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two dims of ``x`` (B x C x H x W) at bottom and right to multiples of ``stride``.

    The pad value is 0 by default: for images normalised by
    :func:`~irstd.data.dataset.normalize_image` that is the image mean, the same value training
    pads with, so padding looks like flat background rather than a dark or bright border.

    Args:
        x: tensor with at least 2 dims, usually B x C x H x W.
        stride: positive int, the model's total down-sampling factor (``model.stride``).
        value: constant pad value.

    Returns:
        ``(padded, (H, W))``: the padded tensor (``x`` itself when no padding is needed) and the
        original height and width, for :func:`crop_to`.
    """
    stride = int(stride)
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    if x.dim() < 2:
        raise ValueError(f"pad_to_stride expects H and W dims, got shape {tuple(x.shape)}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    pad_h, pad_w = (-h) % stride, (-w) % stride
    if pad_h == 0 and pad_w == 0:
        return x, (h, w)
    return F.pad(x, (0, pad_w, 0, pad_h), mode="constant", value=value), (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Cut the last two dims of ``x`` back to ``size = (H, W)``, undoing :func:`pad_to_stride`."""
    h, w = int(size[0]), int(size[1])
    if h > x.shape[-2] or w > x.shape[-1] or h <= 0 or w <= 0:
        raise ValueError(f"cannot crop shape {tuple(x.shape)} to {(h, w)}")
    return x[..., :h, :w]
