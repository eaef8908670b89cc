"""Corruptions on numpy images: one function per corruption with explicit parameters.

Value range
-----------
Every corruption is defined on *unit* intensities ``u = x / full_scale`` in [0, 1], the way
ImageNet-C defines them on ``x / 255``; results are clipped to [0, 1] and mapped back. The full
scale of an image (:func:`infer_full_scale`) is

* ``uint8``: 255;
* ``uint16`` (and ``int32`` holding non-negative values <= 65535): the smallest ``2**b - 1``,
  ``b`` in 8, 10, 12, 14, 16, that is >= the image's maximum, so 14-bit sensor counts in a 16-bit
  container (max <= 16383) are corrupted relative to 16383 and clipped to 0..16383, not to
  65535. Noise then scales with the sensor's range, as it would on the sensor. The rule looks at
  one image: a very dark 14-bit frame may be read as 12-bit; pass ``full_scale`` explicitly (the
  ``irstd corrupt`` command infers it once from the whole dataset);
* ``float32``/``float64``: 1.0, the image must lie in [0, 1] (``ValueError`` otherwise; pass
  ``full_scale`` for float images in [0, full_scale]).

An explicit ``full_scale`` overrides the rule (it must be >= the image's maximum). This per-image
rule is for direct calls on single images; the toolkit's pipelines (training strategies,
``irstd robustness``, ``irstd corrupt``) always pass the dataset's one full scale
(:func:`irstd.data.dataset.dataset_full_scale`). Outputs keep the input's dtype; integer outputs
are rounded to the nearest integer (``np.rint``) and lie in ``0..full_scale`` (and within the
dtype), float outputs in ``[0, full_scale]``.

Images are grey, ``H x W``. Colour images as OpenCV reads them (``H x W x 3`` BGR or ``x 4``
BGRA) are first converted to grey with the reader's luma rule (:mod:`irstd.data.io`, BT.601,
alpha dropped), so the result is ``H x W``, the image :func:`irstd.data.io.read_image` would give;
``H x W x 1`` is taken as grey and keeps its shape.

Randomness
----------
``seed`` is an ``int``, a :class:`numpy.random.Generator` (used as is, so consecutive calls
continue its stream) or None (fresh OS entropy). The same seed gives the same output.

Borders
-------
All blurs use reflect-101 borders (``cv2.BORDER_REFLECT_101``; ``torch`` ``"reflect"`` padding),
so that the numpy and torch forms agree everywhere (ImageNet-C's Gaussian blur used "nearest").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np

from irstd.data.scale import full_scale_for_max

_BORDER = cv2.BORDER_REFLECT_101


# --------------------------------------------------------------------------------------------
# Value range


def infer_full_scale(image: np.ndarray) -> float:
    """The full scale of ``image`` by the rule in the module docstring (255, 2**b - 1 or 1.0)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return 255.0
    if image.dtype == np.uint16 or (image.dtype == np.int32 and image.size and image.min() >= 0
                                    and image.max() <= 65535):
        return full_scale_for_max(int(image.max(initial=0)))
    if image.dtype in (np.float32, np.float64):
        return 1.0
    raise TypeError(
        f"corruptions support uint8, uint16, int32 (0..65535) and float images, got {image.dtype}"
    )


def as_grey(image: np.ndarray) -> np.ndarray:
    """``image`` as a 2-D grey array: colour (``H x W x 3`` BGR / ``x 4`` BGRA, OpenCV's order)
    through the reader's luma rule, ``H x W x 1`` squeezed; other shapes are returned unchanged
    (and refused by :func:`to_unit`)."""
    from irstd.data.io import _bgr_to_grey  # the reader's conversion: one luma rule in the toolkit

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return _bgr_to_grey(image)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    return image


def to_unit(image: np.ndarray, full_scale: float | None = None) -> tuple[np.ndarray, float]:
    """``(image / full_scale as float32, full_scale)``; checks shape and value range."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(
            f"corruptions expect a grey image (H x W) or a colour one (H x W x 3 or 4), got shape {image.shape}"
        )
    if image.size == 0:
        raise ValueError("corruptions: empty image")
    scale = infer_full_scale(image) if full_scale is None else float(full_scale)
    if not scale > 0:
        raise ValueError(f"full_scale must be positive, got {full_scale}")
    lo, hi = float(image.min()), float(image.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("corruptions: image contains NaN or infinite values")
    if lo < 0 or hi > scale * (1 + 1e-6):
        raise ValueError(
            f"image values {lo:g}..{hi:g} outside [0, {scale:g}] (dtype {image.dtype}); "
            "pass full_scale= for float images not in [0, 1]"
        )
    return (image.astype(np.float32) * np.float32(1.0 / scale)), scale


def from_unit(unit: np.ndarray, like: np.ndarray, full_scale: float) -> np.ndarray:
    """Map unit intensities back to ``like``'s dtype: clip to [0, 1], scale, round integers."""
    out = np.clip(unit, 0.0, 1.0, out=unit if unit.dtype == np.float32 else None)
    out = out * np.float32(full_scale)
    if np.issubdtype(like.dtype, np.integer):
        out = np.rint(out, out=out)
        # a full scale above the dtype's range (a dataset scale on an 8-bit frame) must not wrap
        np.clip(out, 0, min(float(full_scale), float(np.iinfo(like.dtype).max)), out=out)
        return out.astype(like.dtype)
    return out.astype(like.dtype, copy=False)


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _on_image(image: np.ndarray, full_scale: float | None, op: Callable[[np.ndarray], np.ndarray]):
    image, shape = _grey_input(image)
    unit, scale = to_unit(image, full_scale)
    return from_unit(op(unit), image, scale).reshape(shape)


def _grey_input(image: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(2-D grey image, shape of the result)``: colour becomes grey H x W; H x W x 1 keeps its shape."""
    image = np.asarray(image)
    grey = as_grey(image)
    keep = image.shape if image.ndim == 3 and image.shape[2] == 1 else grey.shape
    return grey, keep


# --------------------------------------------------------------------------------------------
# Kernels (shared with the torch form, so both apply the same definition)


@lru_cache(maxsize=64)
def disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """ImageNet-C's defocus kernel: a disk of ``radius`` px anti-aliased by a Gaussian of
    ``alias_sigma`` px (3x3 window up to radius 8, 5x5 above), normalised to sum 1, zero border
    rows and columns cropped. ``float32``, odd square, read-only."""
    half = max(8, int(math.ceil(radius)))
    grid = np.arange(-half, half + 1, dtype=np.float32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    ksize = (3, 3) if radius <= 8 else (5, 5)
    kernel = cv2.GaussianBlur(disk, ksize, sigmaX=alias_sigma)
    nz = np.nonzero(kernel.max(axis=0) > 1e-12)[0]
    crop = int(min(nz[0], kernel.shape[1] - 1 - nz[-1]))
    if crop:
        kernel = kernel[crop:-crop, crop:-crop]
    kernel = (kernel / kernel.sum()).astype(np.float32)
    kernel.setflags(write=False)
    return kernel


@lru_cache(maxsize=256)
def line_kernel(length: float, angle: float) -> np.ndarray:
    """Motion-blur kernel: ``round(length)`` equally weighted points spaced 1 px along a line
    through the kernel centre at ``angle`` degrees counter-clockwise from the +x axis (image
    right; rows grow downwards, so 45 deg smears lower-left to upper-right), each splatted
    bilinearly. Point-symmetric, so correlation and convolution agree. ``float32``, read-only.

    Length 1 (or less) is the identity.
    """
    n = max(1, int(round(length)))
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    theta = math.radians(angle)
    xs, ys = t * math.cos(theta), -t * math.sin(theta)
    half = int(math.ceil(max(np.abs(xs).max(), np.abs(ys).max()) - 1e-9))
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.float64)
    for x, y in zip(xs + half, ys + half):
        x0, y0 = math.floor(x + 1e-9), math.floor(y + 1e-9)
        fx, fy = max(0.0, x - x0), max(0.0, y - y0)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                w = wy * wx
                if w > 1e-12:
                    kernel[y0 + dy, x0 + dx] += w
    kernel = (kernel / kernel.sum()).astype(np.float32)
    kernel.setflags(write=False)
    return kernel


@lru_cache(maxsize=64)
def gaussian_kernel_1d(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of ``sigma`` px, radius ``int(4 sigma + 0.5)`` (scipy's rule)."""
    radius = max(1, int(4.0 * sigma + 0.5))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    k.setflags(write=False)
    return k


def pixelate_size(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """Size ``(h, w)`` of the low-resolution grid: ``int(side * factor)``, at least 1."""
    return max(1, int(shape[0] * factor)), max(1, int(shape[1] * factor))


def nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each of ``n_out`` output pixels upsampled from ``n_in`` (pixel centres)."""
    idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
    return np.minimum(idx, n_in - 1)


# --------------------------------------------------------------------------------------------
# Unit-range operations: float32 H x W in [0, 1] in, float32 out (clipped by the caller)


def _gaussian_noise(u, rng, sigma):
    return u + np.float32(sigma) * rng.standard_normal(u.shape, dtype=np.float32)


def _uniform_noise(u, rng, half_width):
    noise = rng.random(u.shape, dtype=np.float32)
    return u + np.float32(2 * half_width) * (noise - np.float32(0.5))


def _speckle_noise(u, rng, sigma):
    return u + u * (np.float32(sigma) * rng.standard_normal(u.shape, dtype=np.float32))


def _poisson(u, rng, photons):
    # Poisson(u * N) / N: photon counting with N photons at full scale.
    counts = rng.poisson(np.clip(u, 0, 1) * np.float32(photons))
    return counts.astype(np.float32) * np.float32(1.0 / photons)


def _salt_pepper(u, rng, amount):
    r = rng.random(u.shape, dtype=np.float32)
    out = u.copy()
    out[r < amount] = 1.0
    out[r < 0.5 * amount] = 0.0
    return out


def _composite(u, rng, proportion):
    p = float(proportion)
    out = _gaussian_noise(u, rng, p)
    out += _uniform_noise(np.zeros_like(u), rng, math.sqrt(3.0) * p)
    out += _speckle_noise(u, rng, p) - u
    out += _poisson(u, rng, 1.0 / p**2) - u
    return _salt_pepper(np.clip(out, 0.0, 1.0), rng, p)


def _defocus(u, radius, alias_sigma):
    return cv2.filter2D(u, -1, disk_kernel(float(radius), float(alias_sigma)), borderType=_BORDER)


def _motion(u, length, angle):
    return cv2.filter2D(u, -1, line_kernel(float(length), float(angle)), borderType=_BORDER)


def _gaussian_blur(u, sigma):
    k = gaussian_kernel_1d(float(sigma))
    return cv2.sepFilter2D(u, -1, k, k, borderType=_BORDER)


def _brightness(u, shift):
    # HSV value of a grey pixel is the grey level itself; saturation is 0, so adding to V and
    # converting back is adding to the grey level.
    return u + np.float32(shift)


def _contrast(u, factor):
    mean = np.float32(u.mean(dtype=np.float64))
    return (u - mean) * np.float32(factor) + mean


def _pixelate(u, factor):
    h, w = pixelate_size(u.shape, factor)
    # INTER_AREA = exact fractional-area averaging when shrinking (the torch form builds the same
    # weights as matrices).
    small = cv2.resize(u, (w, h), interpolation=cv2.INTER_AREA)
    rows = nearest_index(u.shape[0], h)
    cols = nearest_index(u.shape[1], w)
    return small[rows][:, cols]


def _jpeg(u, quality):
    # The codec is 8-bit. The image is quantised to 8 bits for it and the codec's error (decoded
    # minus what was encoded) is added to the full-precision image: 8-bit data gets exactly the
    # decoded JPEG, 16-bit and float data keep their precision below one 8-bit step plus the
    # JPEG artefacts (blocking, ringing), without being reduced to 8 bits.
    q8 = np.rint(np.clip(u, 0, 1) * 255.0).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", q8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid 2-D uint8 array
        raise RuntimeError("OpenCV failed to encode JPEG")
    decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    residual = decoded.astype(np.float32) - q8.astype(np.float32)
    return u + residual * np.float32(1.0 / 255.0)


# --------------------------------------------------------------------------------------------
# Public functional forms (any supported dtype in, same dtype out)


def gaussian_noise(image, sigma: float, *, seed=None, full_scale=None) -> np.ndarray:
    """Add N(0, ``sigma``) noise; ``sigma`` is a fraction of full scale."""
    rng = _rng(seed)
    return _on_image(image, full_scale, lambda u: _gaussian_noise(u, rng, sigma))


def shot_noise(image, photons: float, *, seed=None, full_scale=None) -> np.ndarray:
    """Photon shot noise: ``Poisson(u * photons) / photons`` with ``photons`` at full scale."""
    rng = _rng(seed)
    return _on_image(image, full_scale, lambda u: _poisson(u, rng, photons))


def poisson_noise(image, photons: float, *, seed=None, full_scale=None) -> np.ndarray:
    """Same model as :func:`shot_noise`; the table gives it a milder ladder of ``photons``."""
    rng = _rng(seed)
    return _on_image(image, full_scale, lambda u: _poisson(u, rng, photons))


def impulse_noise(image, amount: float, *, seed=None, full_scale=None) -> np.ndarray:
    """Salt-and-pepper impulses (ImageNet-C's impulse noise): a fraction ``amount`` of pixels,
    half set to 0 and half to full scale."""
    rng = _rng(seed)
    return _on_image(image, full_scale, lambda u: _salt_pepper(u, rng, amount))


def salt_pepper_noise(image, amount: float, *, seed=None, full_scale=None) -> np.ndarray:
    """Salt-and-pepper noise with paper 000's proportion as ``amount`` (model of
    :func:`impulse_noise`; separate name and ladder)."""
    rng = _rng(seed)
    return _on_image(image, full_scale, lambda u: _salt_pepper(u, rng, amount))


def speckle_noise(image, sigma: float, *, seed=None, full_scale=None) -> np.ndarray:
    """Multiplicative noise ``u + u * N(0, sigma)``."""
    rng = _rng(seed)
    return _on_image(image, full_scale, lambda u: _speckle_noise(u, rng, sigma))


def uniform_noise(image, half_width: float, *, seed=None, full_scale=None) -> np.ndarray:
    """Add U(-``half_width``, ``half_width``) noise (fraction of full scale)."""
    rng = _rng(seed)
    return _on_image(image, full_scale, lambda u: _uniform_noise(u, rng, half_width))


def composite_noise(image, proportion: float = 0.05, *, seed=None, full_scale=None) -> np.ndarray:
    """Paper 000's test-set noise: five noises combined at one proportion ``p``.

    Paper 000 (Dynamic-ISTD) adds "five types of noise, including Gaussian and salt-and-pepper
    noise ... at a proportion of 0.05" and lists Gaussian, salt-and-pepper, speckle, uniform and
    Poisson noise. It does not say how the proportion enters each noise; here ``p`` is each
    noise's strength in full-scale units, all drawn from the clean image and summed:
    Gaussian std ``p``, uniform std ``p`` (half-width ``sqrt(3) p``), speckle std ``p``
    (relative), Poisson with ``1 / p**2`` photons at full scale (std ``p`` at full scale); the
    sum is clipped, then a fraction ``p`` of pixels becomes salt or pepper.
    """
    rng = _rng(seed)
    return _on_image(image, full_scale, lambda u: _composite(u, rng, proportion))


def defocus_blur(image, radius: float, alias_sigma: float = 0.5, *, full_scale=None) -> np.ndarray:
    """Convolve with ImageNet-C's anti-aliased disk (:func:`disk_kernel`), radius in px."""
    return _on_image(image, full_scale, lambda u: _defocus(u, radius, alias_sigma))


def motion_blur(image, length: float = 5, angle: float = 45, *, full_scale=None) -> np.ndarray:
    """Linear motion blur with a line kernel of ``length`` px at ``angle`` degrees
    (:func:`line_kernel`). Defaults are the Dynamic-ISTD training degradation of paper 000."""
    return _on_image(image, full_scale, lambda u: _motion(u, length, angle))


def gaussian_blur(image, sigma: float, *, full_scale=None) -> np.ndarray:
    """Separable Gaussian blur of ``sigma`` px (:func:`gaussian_kernel_1d`)."""
    return _on_image(image, full_scale, lambda u: _gaussian_blur(u, sigma))


def brightness(image, shift: float, *, full_scale=None) -> np.ndarray:
    """Add ``shift`` (fraction of full scale) to every pixel and clip: ImageNet-C's HSV value
    shift, which for grey pixels is the grey level."""
    return _on_image(image, full_scale, lambda u: _brightness(u, shift))


def contrast(image, factor: float, *, full_scale=None) -> np.ndarray:
    """Scale deviations from the image mean by ``factor`` (< 1 lowers contrast)."""
    return _on_image(image, full_scale, lambda u: _contrast(u, factor))


def pixelate(image, factor: float, *, full_scale=None) -> np.ndarray:
    """Average down to ``int(H * factor) x int(W * factor)`` pixels (area weights), then
    nearest-neighbour back to ``H x W``."""
    return _on_image(image, full_scale, lambda u: _pixelate(u, factor))


def jpeg_compression(image, quality: int, *, full_scale=None) -> np.ndarray:
    """JPEG round trip at ``quality`` (0..100) through OpenCV's 8-bit codec; for 16-bit and float
    images only the codec's error is applied at full precision (see the code comment)."""
    return _on_image(image, full_scale, lambda u: _jpeg(u, quality))


# Dispatch for irstd.corruptions.apply: name -> (unit op, needs rng, draws angle)
def _motion_random(u, rng, length):
    return _motion(u, length, float(rng.uniform(-45.0, 45.0)))


UNIT_OPS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _poisson,
    "impulse_noise": _salt_pepper,
    "speckle_noise": _speckle_noise,
    "uniform_noise": _uniform_noise,
    "salt_pepper_noise": _salt_pepper,
    "poisson_noise": _poisson,
    "composite_noise": _composite,
    "defocus_blur": lambda u, rng, **p: _defocus(u, **p),
    "motion_blur": _motion_random,
    "gaussian_blur": lambda u, rng, **p: _gaussian_blur(u, **p),
    "brightness": lambda u, rng, **p: _brightness(u, **p),
    "contrast": lambda u, rng, **p: _contrast(u, **p),
    "pixelate": lambda u, rng, **p: _pixelate(u, **p),
    "jpeg_compression": lambda u, rng, **p: _jpeg(u, **p),
}
"""``name -> op(unit_image, rng, **severity_params)``: the unit-range definition of each
corruption (table parameters from :func:`irstd.corruptions.severity_params`)."""
