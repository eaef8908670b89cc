"""Batched torch form of the corruptions, for corrupting training batches on the fly.

Inputs are float tensors ``B x C x H x W`` (C is usually 1) holding intensities in
``[0, full_scale]`` *before* per-image normalisation: ``full_scale`` is 1.0 by default (images
divided by their full scale, e.g. ``uint8 / 255``), or a float or a ``(B,)`` tensor for raw
intensities (e.g. 16383 for 14-bit counts). Corrupt first, then normalise: the toolkit's
per-image standardisation (:func:`irstd.data.normalize_image`) would otherwise undo most of a
brightness or contrast change. Outputs have the input's shape, dtype and device and lie in
``[0, full_scale]``; unlike the numpy form they are not rounded to integers.

Definitions are those of :mod:`irstd.corruptions.functional`: the same formulas, the same
kernels (built once in numpy, a few hundred floats, and moved to the tensors' device), the same
reflect-101 borders (replicate when a kernel is wider than the image). Kernels of more than
81 taps are applied through the FFT (same result up to float32 rounding, ~1e-6, at a cost
independent of the kernel size). Deterministic corruptions
agree with the numpy form to float rounding; random ones agree in distribution (torch and numpy
have different generators). Everything runs on the tensors' device except JPEG, which round-trips
each image through the CPU and OpenCV's codec.

Randomness: ``generator`` is a :class:`torch.Generator` or None (torch's global generator). Use a
generator on the tensors' device; a CPU generator with CUDA tensors works but draws the noise on
the CPU and copies it. Motion blur draws one angle per sample, U(-45, 45) degrees.

Not differentiable (runs under ``torch.no_grad``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from irstd.corruptions import functional as CF
from irstd.corruptions.severity import check_corruption, severity_params

# --------------------------------------------------------------------------------------------
# Random draws and filtering helpers


def _draw(kind: str, shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    fn = torch.randn if kind == "normal" else torch.rand
    return fn(shape, generator=generator, device=device, dtype=torch.float32).to(like.device)


def _poisson(rates: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else rates.device
    return torch.poisson(rates.to(device), generator=generator).to(rates.device)


def _pad(u: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    if ph == 0 and pw == 0:
        return u
    mode = "reflect" if ph < u.shape[-2] and pw < u.shape[-1] else "replicate"
    return F.pad(u, (pw, pw, ph, ph), mode=mode)


_DIRECT_MAX_TAPS = 81
"""Kernels with more taps than this are applied through the FFT (e.g. a 21 x 21 disk costs
~7x less on a CPU core; cost no longer grows with the kernel)."""


def _correlate(u: torch.Tensor, kernels: np.ndarray) -> torch.Tensor:
    """Correlate ``u`` (B x C x H x W) with ``kernels`` (1 x k x k: one for all samples, or
    B x k x k: one per sample; k odd) with reflect-101 borders."""
    b, c, h, w = u.shape
    n, kh, kw = kernels.shape
    ph, pw = kh // 2, kw // 2
    weight = torch.tensor(kernels, device=u.device)
    x = _pad(u, ph, pw)  # B x C x (H + 2ph) x (W + 2pw)
    if kh * kw <= _DIRECT_MAX_TAPS:
        if n == 1:
            y = F.conv2d(x.reshape(b * c, 1, *x.shape[-2:]), weight.unsqueeze(1))
        else:
            weight = weight.repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, kh, kw)
            y = F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), weight, groups=b * c)
        return y.reshape(b, c, h, w)
    size = x.shape[-2:]
    padded = torch.zeros((n, *size), device=u.device)
    padded[:, :kh, :kw] = weight
    # conj turns the FFT product into a correlation; the kernel sits at the origin, so output
    # pixel (i, j) reads x[i:i+kh, j:j+kw] without wrapping around.
    spectrum = torch.fft.rfft2(x) * torch.fft.rfft2(padded).conj().unsqueeze(1)
    return torch.fft.irfft2(spectrum, s=size)[..., :h, :w].contiguous()


def _filter(u: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Correlate every plane of ``u`` with one odd 2-D ``kernel`` (reflect-101 borders)."""
    return _correlate(u, kernel[None])


def _filter_separable(u: torch.Tensor, k1: np.ndarray) -> torch.Tensor:
    if k1.size ** 2 > _DIRECT_MAX_TAPS:
        return _correlate(u, np.outer(k1, k1)[None].astype(np.float32))
    b, c, h, w = u.shape
    k = torch.tensor(k1, device=u.device)
    r = k.numel() // 2
    x = _pad(u.reshape(b * c, 1, h, w), r, r)
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return x.view(b, c, h, w)


def _filter_per_sample(u: torch.Tensor, kernels: list[np.ndarray]) -> torch.Tensor:
    """Correlate sample ``i`` (all its channels) with ``kernels[i]`` (odd, any sizes)."""
    size = max(k.shape[0] for k in kernels)
    stack = np.zeros((len(kernels), size, size), np.float32)
    for i, k in enumerate(kernels):
        o = (size - k.shape[0]) // 2
        stack[i, o:o + k.shape[0], o:o + k.shape[1]] = k
    return _correlate(u, stack)


@lru_cache(maxsize=32)
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``n_out x n_in`` fractional-area averaging weights (what cv2.INTER_AREA computes)."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        a, b = i * scale, (i + 1) * scale
        for j in range(int(math.floor(a)), min(n_in, int(math.ceil(b)))):
            m[i, j] = max(0.0, min(b, j + 1) - max(a, j))
    m /= m.sum(axis=1, keepdims=True)
    out = m.astype(np.float32)
    out.setflags(write=False)
    return out


# --------------------------------------------------------------------------------------------
# Unit-range operations on B x C x H x W float32 tensors in [0, 1]


def gaussian_noise(u, sigma: float, generator=None):
    """``u + N(0, sigma)``."""
    return u + sigma * _draw("normal", u.shape, u, generator)


def uniform_noise(u, half_width: float, generator=None):
    """``u + U(-half_width, half_width)``."""
    return u + (2.0 * half_width) * (_draw("uniform", u.shape, u, generator) - 0.5)


def speckle_noise(u, sigma: float, generator=None):
    """``u + u * N(0, sigma)``."""
    return u + u * (sigma * _draw("normal", u.shape, u, generator))


def poisson_noise(u, photons: float, generator=None):
    """``Poisson(u * photons) / photons`` (shot noise)."""
    return _poisson(u.clamp(0, 1) * photons, generator) / photons


def salt_pepper_noise(u, amount: float, generator=None):
    """A fraction ``amount`` of pixels set to 0 or 1 (half each)."""
    r = _draw("uniform", u.shape, u, generator)
    out = torch.where(r < amount, torch.ones_like(u), u)
    return torch.where(r < 0.5 * amount, torch.zeros_like(u), out)


def composite_noise(u, proportion: float, generator=None):
    """Paper 000's composite of five noises at strength ``p`` (see
    :func:`irstd.corruptions.functional.composite_noise`)."""
    p = float(proportion)
    out = gaussian_noise(u, p, generator)
    out = out + uniform_noise(torch.zeros_like(u), math.sqrt(3.0) * p, generator)
    out = out + (speckle_noise(u, p, generator) - u)
    out = out + (poisson_noise(u, 1.0 / p**2, generator) - u)
    return salt_pepper_noise(out.clamp(0, 1), p, generator)


def defocus_blur(u, radius: float, alias_sigma: float = 0.5):
    """Disk blur (:func:`irstd.corruptions.functional.disk_kernel`)."""
    return _filter(u, CF.disk_kernel(float(radius), float(alias_sigma)))


def motion_blur(u, length: float, angle: float | Sequence[float] | torch.Tensor):
    """Line-kernel motion blur; ``angle`` in degrees, one value or one per sample."""
    if isinstance(angle, torch.Tensor):
        angle = angle.detach().cpu().reshape(-1).tolist()
    if isinstance(angle, (int, float)):
        return _filter(u, CF.line_kernel(float(length), float(angle)))
    angles = [float(a) for a in angle]
    if len(angles) != u.shape[0]:
        raise ValueError(f"motion_blur: {len(angles)} angles for a batch of {u.shape[0]}")
    return _filter_per_sample(u, [CF.line_kernel(float(length), a) for a in angles])


def gaussian_blur(u, sigma: float):
    """Separable Gaussian blur (:func:`irstd.corruptions.functional.gaussian_kernel_1d`)."""
    return _filter_separable(u, CF.gaussian_kernel_1d(float(sigma)))


def brightness(u, shift: float):
    """``u + shift`` (HSV value shift of a grey image)."""
    return u + shift


def contrast(u, factor: float):
    """``(u - mean) * factor + mean``, mean per sample and channel."""
    mean = u.mean(dim=(-2, -1), keepdim=True)
    return (u - mean) * factor + mean


def pixelate(u, factor: float):
    """Area-average to ``int(H factor) x int(W factor)``, nearest back to ``H x W``."""
    h, w = u.shape[-2:]
    sh, sw = CF.pixelate_size((h, w), factor)
    ah = torch.tensor(_area_matrix(h, sh), device=u.device)
    aw = torch.tensor(_area_matrix(w, sw), device=u.device)
    small = ah @ u @ aw.T
    rows = torch.from_numpy(CF.nearest_index(h, sh)).to(u.device)
    cols = torch.from_numpy(CF.nearest_index(w, sw)).to(u.device)
    return small.index_select(-2, rows).index_select(-1, cols)


def jpeg_compression(u, quality: int):
    """JPEG round trip per image plane through the CPU (OpenCV's codec), as the numpy form."""
    planes = u.detach().to("cpu", torch.float32).reshape(-1, *u.shape[-2:]).numpy()
    out = np.stack([CF._jpeg(np.ascontiguousarray(p), quality) for p in planes])
    return torch.from_numpy(out).view(u.shape).to(u.device)


def _motion_random(u, length, generator=None):
    angles = _draw("uniform", (u.shape[0],), u, generator) * 90.0 - 45.0
    return motion_blur(u, length, angles)


_OPS = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": poisson_noise,
    "impulse_noise": salt_pepper_noise,
    "speckle_noise": speckle_noise,
    "uniform_noise": uniform_noise,
    "salt_pepper_noise": salt_pepper_noise,
    "poisson_noise": poisson_noise,
    "composite_noise": composite_noise,
    "defocus_blur": lambda u, generator=None, **p: defocus_blur(u, **p),
    "motion_blur": _motion_random,
    "gaussian_blur": lambda u, generator=None, **p: gaussian_blur(u, **p),
    "brightness": lambda u, generator=None, **p: brightness(u, **p),
    "contrast": lambda u, generator=None, **p: contrast(u, **p),
    "pixelate": lambda u, generator=None, **p: pixelate(u, **p),
    "jpeg_compression": lambda u, generator=None, **p: jpeg_compression(u, **p),
}


# --------------------------------------------------------------------------------------------
# Public entry points


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"corruptions expect a float tensor B x C x H x W, got {shape}")


def _scale(x: torch.Tensor, full_scale) -> torch.Tensor:
    fs = torch.as_tensor(full_scale, dtype=torch.float32, device=x.device)
    if fs.ndim == 1:
        if fs.numel() != x.shape[0]:
            raise ValueError(f"full_scale has {fs.numel()} values for a batch of {x.shape[0]}")
        fs = fs.view(-1, 1, 1, 1)
    elif fs.ndim != 0:
        raise ValueError("full_scale must be a number or a 1-D tensor with one value per sample")
    return fs


@torch.no_grad()
def apply_torch(
    x: torch.Tensor,
    name: str,
    severity: int,
    generator: torch.Generator | None = None,
    *,
    levels: int = 3,
    full_scale: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Apply one corruption at one severity to every sample of ``x``.

    Args:
        x: float tensor ``B x C x H x W`` with values in ``[0, full_scale]``.
        name: one of :func:`irstd.corruptions.list_corruptions`.
        severity: 1..``levels`` (3: paper 002's scale; 5: ImageNet-C).
        generator: source of randomness (see the module docstring).
        full_scale: float or ``(B,)`` tensor; the value that means "maximum".

    Returns:
        Tensor like ``x``, values in ``[0, full_scale]``.
    """
    _check_batch(x)
    check_corruption(name)
    params = severity_params(name, severity, levels)
    fs = _scale(x, full_scale)
    u = x.to(torch.float32) / fs
    out = _OPS[name](u, generator=generator, **params).clamp_(0.0, 1.0) * fs
    return out.to(x.dtype)


@torch.no_grad()
def apply_batch(
    x: torch.Tensor,
    names: Sequence[str | None],
    severities: Sequence[int],
    generator: torch.Generator | None = None,
    *,
    levels: int = 3,
    full_scale: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Apply a different corruption to each sample: sample ``i`` gets ``names[i]`` at
    ``severities[i]`` (``None`` leaves it unchanged). Samples sharing a (name, severity) are
    corrupted together, groups in order of first appearance, so the result is a deterministic
    function of the inputs and the generator's state.

    Args and returns as :func:`apply_torch`, with ``names`` and ``severities`` of length B.
    """
    _check_batch(x)
    b = x.shape[0]
    if len(names) != b or len(severities) != b:
        raise ValueError(
            f"apply_batch: {len(names)} names and {len(severities)} severities for a batch of {b}"
        )
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (name, sev) in enumerate(zip(names, severities)):
        if name is None:
            continue
        check_corruption(name)
        severity_params(name, sev, levels)  # validates the severity before any work
        groups.setdefault((name, int(sev)), []).append(i)
    fs = _scale(x, full_scale).reshape(-1).expand(b)  # one full scale per sample
    out = x.clone()
    for (name, sev), idx in groups.items():
        index = torch.tensor(idx, device=x.device)
        out[index] = apply_torch(
            x.index_select(0, index), name, sev, generator,
            levels=levels, full_scale=fs.index_select(0, index),
        )
    return out


class CorruptionOp(nn.Module):
    """One corruption at one severity as a module: ``CorruptionOp("motion_blur", 2)(x)``.

    Holds no parameters; ``generator`` (optional) is used for every call.
    """

    def __init__(
        self,
        name: str,
        severity: int,
        *,
        levels: int = 3,
        full_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        check_corruption(name)
        self.params = severity_params(name, severity, levels)
        self.name, self.severity, self.levels = name, int(severity), levels
        self.full_scale = full_scale
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_torch(x, self.name, self.severity, self.generator, levels=self.levels,
                           full_scale=self.full_scale)

    def extra_repr(self) -> str:
        return f"{self.name!r}, severity={self.severity}, levels={self.levels}, {self.params}"
