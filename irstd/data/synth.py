"""Synthetic infrared frames with small targets and exact masks.

The generator is the toolkit's embedded dataset: demos and unit tests use it when no real data is
at hand, so it must be fast (a few milliseconds per 256 x 256 frame), deterministic and exact.

Frame model
-----------
A frame is built in three stages, each documented in its function:

1. **Scene** (:func:`sky_scene`, :func:`sea_scene`, :func:`ground_scene`): a float radiance field
   built from fractal (1/f^beta) noise. Sky: a smooth gradient that warms towards the horizon,
   clouds as soft-thresholded fractal fields with inner texture and bright rims. Sea: a horizon
   (slightly tilted), sky above, perspective-mapped, horizontally stretched wave texture below, a
   warm haze band at the horizon and sparse bright sun glints on wave crests. Ground: textured
   terrain, piecewise-constant fields, warm buildings and roads, and in half of the frames a ridge
   line with sky above it. The scene type is drawn per frame from its seed
   (sky 40 %, sea 30 %, ground 30 %) unless requested.
2. **Sensor** (:func:`apply_sensor`): automatic-gain-like mapping of the scene's 1st..99th
   percentiles to a random black level and span, optical blur, radial vignetting, pixel gain
   non-uniformity, fixed-pattern column and row offsets, spatially correlated noise, and temporal
   noise with a read (Gaussian) and a shot (Poisson-like, variance proportional to signal) part;
   then rounding and clipping to the sensor's full scale. Noise levels are fractions of the span,
   so 8- and 16-bit frames look alike.
3. **Targets** (:func:`insert_targets`): ``n`` targets per frame, ``n = 0`` with probability
   ``empty_fraction`` (default 0.1), otherwise uniform in ``1..max_targets`` (default 4). Each is a
   truncated anisotropic Gaussian point-spread function added to the *quantised* background.

Bit depth
---------
* ``bit_depth=8``: ``uint8`` frames, full scale 255 (black level 10..60, span 100..175 DN).
* ``bit_depth=16``: ``uint16`` frames holding **14-bit** sensor counts, full scale 16383 (the usual
  raw format of cooled and uncooled IR cores): black level 1000..5000 DN, span 1500..8000 DN, so
  every pixel is well above 255.

Targets
-------
* Shape: Gaussian with full widths at half maximum ``fwhm_major`` log-uniform in [0.9, 9] px and
  ``fwhm_minor = fwhm_major * U(0.4, 1)`` (at least 0.9 px), random orientation and sub-pixel
  centre. The Gaussian is truncated at Mahalanobis radius 3 and shifted so that it falls to exactly
  zero there (``(g - g3) / (1 - g3)``); it is then scaled so that its largest *pixel* value is 1.
  Outside the ellipse the target adds nothing, which makes masks and statistics exact.
* Mask: the pixels where the target's added signal is at least :data:`MASK_FRACTION` (0.5) of its
  peak, i.e. a FWHM-like region. The pixel nearest to the PSF centre is always in the mask (shapes
  that violate this, give a mask that is not one 8-connected component, or a mask whose bounding
  box is not 1..9 px on its longer side are redrawn), so every target has at least one mask pixel.
* Signal-to-clutter ratio, measured on the written image:
  ``SCR = (peak - mean_b) / std_b``, where ``peak`` is the largest image value inside the target's
  mask and ``mean_b``, ``std_b`` (population std) are taken over the local background ring: the
  square of half-size ``outer = support + RING_WIDTH`` around the target's peak pixel minus the
  square of half-size ``support`` (the truncated PSF's half-size), clipped to the frame. A value is
  drawn uniformly from ``scr_range`` (default 2..10); the peak is that level rounded to an integer
  DN and kept inside ``scr_range``, and the amplitude is the smallest one that lifts some mask pixel
  to the peak, so the *recorded* SCR equals the measured one and lies in ``scr_range``.
  Positions are redrawn when the peak would exceed the full scale, when background clutter inside
  the mask supplies more than half of the contrast, or when a pixel of the PSF's tail outside the
  mask would become brighter than the peak.
* Separation: a target's support never enters another target's background ring (Chebyshev
  distance between peak pixels > ``support_a + support_b + RING_WIDTH``), so targets do not
  overlap and their statistics do not disturb each other. The whole support lies inside the frame.

Determinism
-----------
Frame ``i`` of a dataset with seed ``s`` uses its own generator ``frame_rng(s, i)``; the same
arguments give byte-identical files on the same platform and library versions, and a dataset with
``num=10`` holds the same frames as the first ten of one with ``num=100`` (the split differs).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import scipy.fft
from scipy import ndimage

from irstd.errors import IRSTDError

SCENES: tuple[str, ...] = ("sky", "sea", "ground")
SCENE_PROBABILITIES: tuple[float, ...] = (0.4, 0.3, 0.3)
MIN_SIZE = 32
MAX_SIZE = 8192
FULL_SCALE = {8: 255, 16: 16383}
MASK_FRACTION = 0.5
PSF_TRUNCATION = 3.0
RING_WIDTH = 8
EXTENT_RANGE = (1, 9)
FWHM_RANGE = (0.9, 9.0)
DEFAULT_SCR_RANGE = (2.0, 10.0)
MAX_ATTEMPTS = 80
GENERATOR_VERSION = 1
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_OWN_PATHS = ("images", "masks", "img_idx", "targets.jsonl", "synth.json")


# --------------------------------------------------------------------------------------------
# random fields
# --------------------------------------------------------------------------------------------


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """The independent generator of frame ``index`` in a dataset with ``seed`` (both >= 0)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _noise_scale(beta: float) -> int:
    """Grid step at which a 1/f^beta field is synthesised before upsampling: steep spectra carry
    almost no power near the pixel frequency, so they are drawn on a coarser grid (speed)."""
    return 4 if beta >= 2.8 else 2 if beta >= 2.0 else 1


def fractal_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    beta: float,
    stretch: tuple[float, float] = (1.0, 1.0),
    periodic: bool = False,
) -> np.ndarray:
    """Gaussian random field with power spectrum ``1 / f**beta``, zero mean and unit std.

    Args:
        rng: source of randomness.
        shape: ``(H, W)`` in pixels.
        beta: spectral exponent; 1 is "pink" grain, 2 rough terrain, 3-4 smooth clouds.
        stretch: ``(sy, sx)`` factors applied to the vertical/horizontal frequencies; ``sx > 1``
            gives structures elongated horizontally (waves, cirrus).
        periodic: return a seamlessly tileable field (for textures sampled with wrap-around);
            ``shape`` must then be divisible by the grid step (4 is always safe).

    Returns:
        ``float32`` array of ``shape``. Unless ``periodic``, the field is synthesised on a periodic
        canvas about 12 % larger than ``shape`` and cropped, so that opposite borders do not match; for
        ``beta >= 2`` it is drawn on a 2x (``beta >= 2.8``: 4x) coarser grid and upsampled
        bicubically, which changes only frequencies that hold a negligible share of the power.
    """
    h, w = shape
    step = _noise_scale(beta)
    gh, gw = -(-h // step), -(-w // step)
    if periodic:
        ph, pw = gh, gw
    else:
        ph = scipy.fft.next_fast_len(gh + max(4, gh // 8), real=True)
        pw = scipy.fft.next_fast_len(gw + max(4, gw // 8), real=True)
    fy = (np.fft.fftfreq(ph).astype(np.float32) * (stretch[0] / step))[:, None]
    fx = (np.fft.rfftfreq(pw).astype(np.float32) * (stretch[1] / step))[None, :]
    f = np.sqrt(fy * fy + fx * fx)
    # The lowest frequency is floored so that one huge mode does not dominate the field.
    amplitude = np.maximum(f, np.float32(1.0 / (step * max(ph, pw)))) ** np.float32(-0.5 * beta)
    amplitude[0, 0] = 0.0
    spectrum = rng.standard_normal((ph, pw // 2 + 1, 2), dtype=np.float32).view(np.complex64)[..., 0]
    field = scipy.fft.irfft2(spectrum * amplitude, s=(ph, pw))
    if step > 1:
        # Upsample with a 2-sample margin taken from the periodic canvas so that the cubic
        # kernel never sees an artificial border; the margin is cut off afterwards.
        canvas = np.pad(field, 2, mode="wrap") if periodic else field[: gh + 4, : gw + 4]
        offset = 2 * step if periodic else 0
        field = cv2.resize(
            canvas, (canvas.shape[1] * step, canvas.shape[0] * step), interpolation=cv2.INTER_CUBIC
        )[offset:, offset:]
    field = field[:h, :w]
    field -= field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def fractal_profile(rng: np.random.Generator, length: int, beta: float) -> np.ndarray:
    """1-D version of :func:`fractal_noise` (zero mean, unit std, ``float32``), e.g. a ridge line."""
    n = length + max(8, length // 4)
    f = np.fft.rfftfreq(n)
    amplitude = np.maximum(f, 1.0 / n) ** (-0.5 * beta)
    amplitude[0] = 0.0
    spectrum = rng.standard_normal((2, n // 2 + 1))
    line = np.fft.irfft((spectrum[0] + 1j * spectrum[1]) * amplitude, n=n)[:length]
    line -= line.mean()
    std = line.std()
    return (line / std if std > 0 else line).astype(np.float32)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row coordinate in [0, 1] (top to bottom, H x 1) and column coordinate in [-1, 1] (1 x W)."""
    h, w = shape
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    return yy, xx


# --------------------------------------------------------------------------------------------
# scenes (float radiance, roughly 0..1; the sensor stage normalises)
# --------------------------------------------------------------------------------------------


def sky_scene(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Sky with clouds: a gradient warming towards the bottom (longer, warmer air path near the
    horizon) with a slight sideways tilt, and clouds from a soft-thresholded smooth fractal field
    (beta 2.6..3.4, optionally stretched horizontally; cover from clear to overcast). Clouds are
    warmer than clear sky, brighter where thicker (further above the threshold), with a faint
    rougher texture inside and sometimes brighter sun-lit rims."""
    yy, xx = _grid(shape)
    sky = rng.uniform(0.1, 0.7) * yy ** rng.uniform(1.0, 2.5) + rng.uniform(-0.15, 0.15) * xx
    body = fractal_noise(rng, shape, rng.uniform(2.6, 3.4), stretch=(1.0, rng.uniform(1.0, 2.5)))
    excess = body - rng.uniform(-1.0, 1.6)
    density = _smoothstep(excess / rng.uniform(0.3, 1.2))
    thickness = density * (1.0 + rng.uniform(0.2, 1.0) * np.maximum(excess, 0.0))
    texture = fractal_noise(rng, shape, rng.uniform(2.2, 2.8))
    rim = density * (1.0 - density) * 4.0
    sky = (
        sky
        + rng.uniform(0.3, 1.2) * thickness
        + rng.uniform(0.03, 0.15) * density * texture
        + rng.uniform(0.0, 0.3) * rim
    )
    haze = fractal_noise(rng, shape, 3.0)
    return (sky + 0.04 * haze).astype(np.float32)


def sea_scene(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Sea with glint: a tilted horizon at 15..55 % of the height with sky above, a haze band at
    the horizon, sea brightening towards the horizon, perspective-mapped wave texture (stretched
    horizontally, shrinking and fading towards the horizon) and sparse sun glints: 1-3 px bright
    specks on wave crests, densest in a column under the sun."""
    h, w = shape
    cols = np.arange(w, dtype=np.float32)[None, :]
    rows = np.arange(h, dtype=np.float32)[:, None]
    horizon = rng.uniform(0.15, 0.55) * h + rng.uniform(-0.08, 0.08) * (cols - 0.5 * w)
    below = rows - horizon  # rows below the horizon; > 0 on the sea
    sky = 0.6 * sky_scene(rng, shape)

    # Ground-plane texture coordinates: one texel per pixel at the bottom row, compressing
    # towards the horizon as 1 / distance.
    tile = 256
    texture = fractal_noise(
        rng, (tile, tile), rng.uniform(2.0, 2.8), stretch=(1.0, rng.uniform(3.0, 6.0)), periodic=True
    )
    depth_ref = float(max(h - horizon.min(), 8.0))
    d0 = rng.uniform(2.0, 6.0)
    dist = np.maximum(below, 0.0) + d0
    v = (depth_ref + d0) ** 2 / dist
    u = (cols - 0.5 * w) * v / (depth_ref + d0) + rng.uniform(0, tile)
    v = v + rng.uniform(0, tile)
    map_x = np.mod(np.broadcast_to(u, shape), tile).astype(np.float32)
    map_y = np.mod(np.broadcast_to(v, shape), tile).astype(np.float32)
    waves = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    # Near the horizon the texture is minified beyond the pixel grid: fade it out.
    fade = np.sqrt(np.clip(below / (0.12 * h), 0.0, 1.0))
    near = np.clip(below / depth_ref, 0.0, 1.0)
    sea_level = rng.uniform(0.2, 0.7)
    sea = (
        sea_level
        + rng.uniform(0.1, 0.5) * np.exp(-np.maximum(below, 0.0) / (rng.uniform(0.05, 0.3) * h))
        + rng.uniform(0.04, 0.15) * waves * fade * (0.3 + 0.7 * near)
    )

    sun_x = rng.uniform(0.0, w)
    band = np.exp(-(((cols - sun_x) / (rng.uniform(0.1, 0.5) * w)) ** 2))
    chance = rng.uniform(0.001, 0.008) * (0.1 + 0.9 * band) * fade
    sparkle = rng.random(shape, dtype=np.float32)
    crest = waves > rng.uniform(0.8, 1.8)
    glint = np.where(crest & (sparkle < chance), 1.0 - sparkle / np.maximum(chance, 1e-9), 0.0)
    glint = cv2.GaussianBlur(glint.astype(np.float32), (5, 3), sigmaX=0.8, sigmaY=0.4)
    sea = sea + rng.uniform(3.0, 10.0) * glint

    haze = rng.uniform(0.05, 0.3) * np.exp(-((below / rng.uniform(1.5, 6.0)) ** 2))
    edge = _smoothstep(below + 0.5)  # one-pixel anti-aliased horizon
    return (sky * (1.0 - edge) + sea * edge + haze).astype(np.float32)


def ground_scene(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Ground clutter: piecewise-constant fields with soft borders, each with its own temperature
    and rough texture (beta 1.4..2.2), over smooth large-scale relief, warm (bright) or cool
    rectangular structures 3..24 px, roads as
    lines, and with probability 0.5 a fractal ridge line (beta 2.4..3.4) with a cold sky above
    and a sun-warmed edge along it."""
    h, w = shape
    relief = fractal_noise(rng, shape, 3.6)
    levels = int(rng.integers(3, 8))
    index = np.clip(((relief + 2.5) / 5.0 * levels).astype(np.int64), 0, levels - 1)
    # Each field has its own temperature and its own roughness (crop, soil, forest, water).
    level = rng.uniform(0.0, rng.uniform(0.3, 0.9), levels).astype(np.float32)
    rough = rng.uniform(0.02, 0.2, levels).astype(np.float32)
    fields = cv2.GaussianBlur(level[index], (0, 0), 0.7)
    texture = fractal_noise(rng, shape, rng.uniform(1.4, 2.2)) * rough[index]
    ground = fields + texture + rng.uniform(0.05, 0.3) * fractal_noise(rng, shape, 3.2)

    for _ in range(int(rng.integers(0, 14))):
        bh, bw = (int(v) for v in rng.integers(3, 25, 2))
        y0, x0 = int(rng.integers(0, max(h - bh, 1))), int(rng.integers(0, max(w - bw, 1)))
        value = rng.uniform(0.3, 1.2) * (1.0 if rng.random() < 0.8 else -0.5)
        ground[y0 : y0 + bh, x0 : x0 + bw] += value
    for _ in range(int(rng.integers(0, 4))):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        value = float(rng.uniform(-0.3, 0.6))
        cv2.line(ground, p1, p2, value, int(rng.integers(1, 4)), cv2.LINE_AA)

    if rng.random() < 0.5:
        ridge = rng.uniform(0.1, 0.45) * h + rng.uniform(0.03, 0.1) * h * fractal_profile(
            rng, w, rng.uniform(2.4, 3.4)
        )
        rows = np.arange(h, dtype=np.float32)[:, None]
        below = rows - ridge[None, :]
        edge = _smoothstep(below + 0.5)
        sky = 0.5 * sky_scene(rng, shape) - rng.uniform(0.1, 0.5)
        warm = rng.uniform(0.0, 0.5) * np.exp(-np.maximum(below, 0.0) / rng.uniform(1.0, 4.0))
        ground = sky * (1.0 - edge) + (ground + warm) * edge
    return ground.astype(np.float32)


_SCENE_FUNCTIONS = {"sky": sky_scene, "sea": sea_scene, "ground": ground_scene}


def choose_scene(rng: np.random.Generator, scenes: Sequence[str] = SCENES) -> str:
    """Draw a scene type from ``scenes`` with the relative weights of :data:`SCENE_PROBABILITIES`."""
    weights = np.array([SCENE_PROBABILITIES[SCENES.index(s)] for s in scenes], dtype=np.float64)
    return scenes[int(rng.choice(len(scenes), p=weights / weights.sum()))]


# --------------------------------------------------------------------------------------------
# sensor
# --------------------------------------------------------------------------------------------


def apply_sensor(rng: np.random.Generator, scene: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Turn a float scene into a quantised infrared frame (``uint8`` or ``uint16``, see module).

    Steps, with DN = digital numbers and ``span`` the gain-mapped scene range:
    percentile (1 %, 99 %) normalisation, optical Gaussian blur (sigma 0.4..1.0 px), radial
    vignetting (centre offset up to 10 %, corner fall-off 0..45 %), column / row fixed-pattern
    offsets (std 0.1..0.8 % / 0..0.4 % of span), spatially correlated noise (about 2 px grain, std
    0.2..0.8 %), and per-pixel noise with three independent parts: read (std 0.4..1.2 % of span),
    shot (Poisson-like: variance proportional to signal, std 0.2..0.8 % of span at full span) and
    gain non-uniformity (std 0.1..0.6 % of the signal); then rounding and clipping to
    [0, full scale].
    """
    h, w = scene.shape
    full = FULL_SCALE[bit_depth]
    if bit_depth == 8:
        black = rng.uniform(10.0, 60.0)
        span = rng.uniform(100.0, 175.0)
    else:
        black = rng.uniform(1000.0, 5000.0)
        span = rng.uniform(1500.0, 8000.0)
    lo, hi = np.percentile(scene, (1.0, 99.0))
    s = (scene - lo) / max(float(hi - lo), 1e-6)
    s = cv2.GaussianBlur(s.astype(np.float32), (0, 0), rng.uniform(0.4, 1.0))

    yy, xx = _grid((h, w))
    cy, cx = rng.uniform(0.4, 0.6), rng.uniform(-0.1, 0.1)
    r2 = ((yy - cy) * 2.0 * h / max(h, w)) ** 2 + ((xx - cx) * w / max(h, w)) ** 2
    vignette = 1.0 - rng.uniform(0.0, 0.45) * r2 / 2.0
    signal = span * s * vignette
    dn = black + signal
    dn += span * rng.uniform(0.001, 0.008) * rng.standard_normal(w, dtype=np.float32)[None, :]
    dn += span * rng.uniform(0.0, 0.004) * rng.standard_normal(h, dtype=np.float32)[:, None]
    # Correlated noise: white noise on a 2x coarser grid, bilinearly upsampled (about 2 px grain).
    coarse = rng.standard_normal((-(-h // 2) + 1, -(-w // 2) + 1), dtype=np.float32)
    grain = cv2.resize(
        coarse, (coarse.shape[1] * 2, coarse.shape[0] * 2), interpolation=cv2.INTER_LINEAR
    )[:h, :w]
    dn += span * rng.uniform(0.002, 0.008) * grain / max(float(grain.std()), 1e-6)
    # In a single frame, pixel gain non-uniformity is noise whose std is proportional to the
    # signal, so it joins the read and shot terms in one Gaussian draw.
    read = span * rng.uniform(0.004, 0.012)
    shot = span * rng.uniform(0.002, 0.008)
    prnu = rng.uniform(0.001, 0.006)
    level = np.clip(signal, 0.0, None)
    variance = read * read + shot * shot * level / span + (prnu * level) ** 2
    dn += np.sqrt(variance) * rng.standard_normal((h, w), dtype=np.float32)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.clip(np.rint(dn), 0, full).astype(dtype)


def render_background(
    rng: np.random.Generator, size: tuple[int, int], scene: str, bit_depth: int = 8
) -> np.ndarray:
    """A target-free frame of scene type ``scene`` (one of :data:`SCENES`), ``uint8``/``uint16``."""
    return apply_sensor(rng, _SCENE_FUNCTIONS[scene](rng, size), bit_depth)


# --------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------


def psf_patch(
    offset: tuple[float, float], sigma: tuple[float, float], angle: float
) -> tuple[np.ndarray, int]:
    """Truncated anisotropic Gaussian sampled on a pixel patch.

    Args:
        offset: ``(dy, dx)`` of the PSF centre from the patch's centre pixel, each in [-0.5, 0.5].
        sigma: ``(major, minor)`` standard deviations in pixels.
        angle: direction of the major axis in radians, measured from the +x (column) axis
            towards +y (rows grow downwards).

    Returns:
        ``(patch, r)``: ``float64`` patch of shape ``(2r+1, 2r+1)`` whose largest value is 1 and
        which is exactly 0 outside Mahalanobis radius :data:`PSF_TRUNCATION`; ``r`` is the
        support half-size.
    """
    r = int(math.ceil(PSF_TRUNCATION * sigma[0] + 0.5))
    grid = np.arange(-r, r + 1, dtype=np.float64)
    y = grid[:, None] - offset[0]
    x = grid[None, :] - offset[1]
    c, s = math.cos(angle), math.sin(angle)
    u = (x * c + y * s) / sigma[0]
    v = (y * c - x * s) / sigma[1]
    floor = math.exp(-0.5 * PSF_TRUNCATION**2)
    patch = np.maximum(np.exp(-0.5 * (u * u + v * v)) - floor, 0.0) / (1.0 - floor)
    return patch / patch.max(), r


def local_background(
    image: np.ndarray, y: int, x: int, inner: int, outer: int
) -> tuple[float, float]:
    """Mean and population std of ``image`` over the square ring around pixel ``(y, x)``: the
    square of half-size ``outer`` minus the square of half-size ``inner``, clipped to the frame."""
    h, w = image.shape
    y0, y1 = max(y - outer, 0), min(y + outer + 1, h)
    x0, x1 = max(x - outer, 0), min(x + outer + 1, w)
    window = image[y0:y1, x0:x1].astype(np.float64)
    keep = np.ones(window.shape, dtype=bool)
    iy0, ix0 = max(y - inner, y0) - y0, max(x - inner, x0) - x0
    keep[iy0 : y + inner + 1 - y0, ix0 : x + inner + 1 - x0] = False
    values = window[keep]
    return float(values.mean()), float(values.std())


_EIGHT = np.ones((3, 3), dtype=bool)


def _draw_shape(rng: np.random.Generator):
    """A target shape whose mask satisfies the rules in the module docstring, or None."""
    fwhm_major = math.exp(rng.uniform(math.log(FWHM_RANGE[0]), math.log(FWHM_RANGE[1])))
    fwhm_minor = max(fwhm_major * rng.uniform(0.4, 1.0), FWHM_RANGE[0])
    angle = rng.uniform(0.0, math.pi)
    offset = (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5))
    sigma = (fwhm_major / _FWHM_PER_SIGMA, fwhm_minor / _FWHM_PER_SIGMA)
    patch, r = psf_patch(offset, sigma, angle)
    inside = patch >= MASK_FRACTION
    if not inside[r, r]:
        return None
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    extent = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    if not EXTENT_RANGE[0] <= extent <= EXTENT_RANGE[1]:
        return None
    if ndimage.label(inside, structure=_EIGHT)[1] != 1:
        return None
    return patch, inside, r, offset, sigma, angle


def insert_targets(
    rng: np.random.Generator,
    background: np.ndarray,
    count: int,
    scr_range: tuple[float, float] = DEFAULT_SCR_RANGE,
    full_scale: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Add up to ``count`` targets to a quantised background (rules in the module docstring).

    Args:
        rng: source of randomness.
        background: ``uint8`` or ``uint16`` H x W frame without targets.
        count: targets to place; fewer are placed only if :data:`MAX_ATTEMPTS` random draws
            cannot satisfy the constraints (tiny or saturated frames).
        scr_range: ``(low, high)`` signal-to-clutter ratio range, ``0 < low <= high``.
        full_scale: largest allowed value (default: 255 for ``uint8``, 16383 for ``uint16``).

    Returns:
        ``(image, mask, targets)``: image of the background's dtype, ``bool`` mask, and one dict
        per target with keys ``center`` (PSF centre ``[x, y]``, pixel centres at integers),
        ``peak_pixel`` ``[x, y]`` (where the background ring is centred), ``sigma``
        ``[major, minor]`` px, ``fwhm`` ``[major, minor]`` px, ``angle`` (degrees), ``bbox``
        ``[x_min, y_min, x_max, y_max]`` (inclusive), ``extent`` (px), ``area`` (mask pixels),
        ``mask_centroid`` ``[x, y]``, ``amplitude`` (DN added at the PSF's peak pixel), ``peak``
        (largest image value in the mask, DN), ``background_mean``, ``background_std`` (DN),
        ``scr`` and ``window`` ``[inner, outer]`` half-sizes of the background ring.
    """
    if full_scale is None:
        full_scale = 255 if background.dtype == np.uint8 else FULL_SCALE[16]
    h, w = background.shape
    # Supports of different targets are disjoint, so each patch is rendered on its own.
    image = background.copy()
    mask = np.zeros((h, w), dtype=bool)
    placed: list[tuple[int, int, int]] = []
    targets: list[dict] = []
    lo, hi = scr_range
    for _ in range(count):
        for _attempt in range(MAX_ATTEMPTS):
            shape = _draw_shape(rng)
            if shape is None:
                continue
            patch, inside, r, offset, sigma, angle = shape
            if h - 2 * r < 1 or w - 2 * r < 1:
                continue
            y, x = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
            if any(max(abs(y - py), abs(x - px)) <= r + pr + RING_WIDTH for py, px, pr in placed):
                continue
            outer = r + RING_WIDTH
            mean, std = local_background(background, y, x, r, outer)
            level = rng.uniform(lo, hi)
            peak_lo, peak_hi = math.ceil(mean + lo * std), math.floor(mean + hi * std)
            if peak_lo > peak_hi or std <= 0:
                continue
            peak = min(max(round(mean + level * std), peak_lo), peak_hi)
            if peak > full_scale:
                continue
            window = background[y - r : y + r + 1, x - r : x + r + 1].astype(np.float64)
            amplitude = float(np.min((peak - window[inside]) / patch[inside]))
            if amplitude < 0.5 * (peak - mean):
                continue
            signal = window + amplitude * patch
            tail = (patch > 0) & ~inside
            if tail.any() and signal[tail].max() > peak:
                continue
            image[y - r : y + r + 1, x - r : x + r + 1] = np.clip(np.rint(signal), 0, full_scale)
            mask[y - r : y + r + 1, x - r : x + r + 1] |= inside
            placed.append((y, x, r))
            targets.append(
                _describe(inside, y, x, r, offset, sigma, angle, amplitude, peak, mean, std)
            )
            break
    return image, mask, targets


def _describe(inside, y, x, r, offset, sigma, angle, amplitude, peak, mean, std) -> dict:
    rows, cols = np.nonzero(inside)
    rows, cols = rows + (y - r), cols + (x - r)
    return {
        "center": [round(x + offset[1], 4), round(y + offset[0], 4)],
        "peak_pixel": [x, y],
        "sigma": [round(sigma[0], 4), round(sigma[1], 4)],
        "fwhm": [round(sigma[0] * _FWHM_PER_SIGMA, 4), round(sigma[1] * _FWHM_PER_SIGMA, 4)],
        "angle": round(math.degrees(angle), 3),
        "bbox": [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())],
        "extent": int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1),
        "area": int(rows.size),
        "mask_centroid": [round(float(cols.mean()), 4), round(float(rows.mean()), 4)],
        "amplitude": round(amplitude, 4),
        "peak": int(peak),
        "background_mean": mean,
        "background_std": std,
        "scr": (peak - mean) / std,
        "window": [r, r + RING_WIDTH],
    }


# --------------------------------------------------------------------------------------------
# frames and datasets
# --------------------------------------------------------------------------------------------


def check_arguments(
    size: Sequence[int] = (256, 256),
    bit_depth: int = 8,
    max_targets: int = 4,
    empty_fraction: float = 0.1,
    scr_range: Sequence[float] = DEFAULT_SCR_RANGE,
    scenes: Sequence[str] | None = None,
) -> None:
    """Raise :class:`IRSTDError` naming the first argument of a frame request that is invalid."""
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) for v in size):
        raise IRSTDError(f"synth: --size must be two integers H W, got {list(size)}")
    if min(size) < MIN_SIZE or max(size) > MAX_SIZE:
        raise IRSTDError(
            f"synth: --size {size[0]} {size[1]} out of range: "
            f"each side must be {MIN_SIZE}..{MAX_SIZE} px"
        )
    if bit_depth not in FULL_SCALE:
        raise IRSTDError(f"synth: --bit-depth must be 8 or 16, got {bit_depth}")
    if not isinstance(max_targets, (int, np.integer)) or not 0 <= max_targets <= 64:
        raise IRSTDError(f"synth: --max-targets must be an integer in 0..64, got {max_targets}")
    if not 0.0 <= empty_fraction <= 1.0:
        raise IRSTDError(f"synth: empty fraction must lie in [0, 1], got {empty_fraction}")
    if len(scr_range) != 2 or not 0.0 < scr_range[0] <= scr_range[1] <= 1000.0:
        raise IRSTDError(f"synth: --scr needs 0 < MIN <= MAX <= 1000, got {list(scr_range)}")
    if scenes is not None:
        unknown = [s for s in scenes if s not in SCENES]
        if unknown or not scenes:
            raise IRSTDError(
                f"synth: unknown scene(s) {unknown or '(none given)'}; "
                f"choose from {', '.join(SCENES)}"
            )


def generate_frame(
    rng: np.random.Generator,
    size: tuple[int, int] = (256, 256),
    bit_depth: int = 8,
    *,
    scene: str | None = None,
    max_targets: int = 4,
    empty_fraction: float = 0.1,
    scr_range: tuple[float, float] = DEFAULT_SCR_RANGE,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One synthetic infrared frame with its exact mask.

    Args:
        rng: source of randomness (e.g. :func:`frame_rng`); the frame is a pure function of it.
        size: ``(H, W)`` in pixels, each side in ``MIN_SIZE..MAX_SIZE``.
        bit_depth: 8 (``uint8``, 0..255) or 16 (``uint16`` holding 14-bit counts, 0..16383).
        scene: ``"sky"``, ``"sea"``, ``"ground"``, or None to draw one (see :func:`choose_scene`).
        max_targets: largest number of targets; the count is 0 with probability
            ``empty_fraction``, otherwise uniform in ``1..max_targets``.
        empty_fraction: probability of a frame without targets, in [0, 1].
        scr_range: signal-to-clutter ratio range (see the module docstring).

    Returns:
        ``(image, mask, targets)``: H x W image, ``bool`` H x W mask, list of per-target dicts
        (see :func:`insert_targets`; each also carries ``"scene"``).
    """
    scenes = None if scene is None else [scene]
    check_arguments(size, bit_depth, max_targets, empty_fraction, scr_range, scenes)
    if scene is None:
        scene = choose_scene(rng)
    count = 0
    if max_targets > 0 and rng.random() >= empty_fraction:
        count = int(rng.integers(1, max_targets + 1))
    background = render_background(rng, (int(size[0]), int(size[1])), scene, bit_depth)
    image, mask, targets = insert_targets(
        rng, background, count, tuple(scr_range), FULL_SCALE[bit_depth]
    )
    for t in targets:
        t["scene"] = scene
    return image, mask, targets


def split_ids(ids: Sequence[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic train/test split: ``round(test_fraction * n)`` ids go to test, at least one
    when ``test_fraction > 0`` and at least one left for train when ``test_fraction < 1`` and
    ``n > 1``. Both lists are returned sorted."""
    n = len(ids)
    n_test = int(round(test_fraction * n))
    if test_fraction > 0:
        n_test = max(n_test, 1)
    if test_fraction < 1 and n > 1:
        n_test = min(n_test, n - 1)
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31,))).permutation(n)
    test = sorted(ids[i] for i in order[:n_test])
    train = sorted(ids[i] for i in order[n_test:])
    return train, test


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise IRSTDError(f"{out}: exists and is not a folder")
    if out.is_dir():
        try:
            non_empty = any(out.iterdir())
        except OSError as exc:
            raise IRSTDError(f"{out}: cannot list folder ({exc.strerror or exc})") from None
        if non_empty and not (out / "synth.json").is_file() and not overwrite:
            raise IRSTDError(
                f"{out}: folder is not empty and was not written by `irstd synth`; "
                "choose another --out or pass --overwrite to replace its images/, masks/, img_idx/"
            )
        for name in _OWN_PATHS:
            path = out / name
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
            except OSError as exc:
                raise IRSTDError(f"{path}: cannot remove old output ({exc.strerror or exc})") from None
    try:
        for sub in ("images", "masks", "img_idx"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IRSTDError(f"{out}: cannot create folder ({exc.strerror or exc})") from None


def make_dataset(
    out: str | Path,
    name: str,
    num: int,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    bit_depth: int = 8,
    *,
    test_fraction: float = 0.2,
    max_targets: int = 4,
    empty_fraction: float = 0.1,
    scr_range: tuple[float, float] = DEFAULT_SCR_RANGE,
    scenes: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a synthetic dataset in the common layout.

    Files: ``out/images/<id>.png`` (8- or 16-bit grey), ``out/masks/<id>.png`` (``uint8`` 0/255),
    ``out/img_idx/train_<name>.txt`` and ``test_<name>.txt`` (sorted ids, one per line; see
    :func:`split_ids`; a split left empty, e.g. by ``test_fraction=0``, gets no file),
    ``out/targets.jsonl`` (one JSON object per image: ``id``, ``split``,
    ``scene``, ``height``, ``width``, ``bit_depth``, ``targets`` as in :func:`insert_targets`) and
    ``out/synth.json`` (the arguments; marks the folder as generated). Ids are
    ``<name>_0000``, ``<name>_0001``, ... (at least four digits).

    ``out`` may be missing, empty, or an earlier synth output (whose files listed above are
    replaced); any other non-empty folder is refused unless ``overwrite`` is true, in which case
    its ``images/``, ``masks/``, ``img_idx/``, ``targets.jsonl`` and ``synth.json`` are removed
    first and everything else is left alone.

    Returns:
        Summary dict: ``root``, ``ids``, ``train``, ``test``, ``targets`` (total count), ``empty``
        (frames without targets).
    """
    from irstd.data.io import atomic_write_bytes, write_image

    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise IRSTDError(
            f"synth: --name {name!r} must start with a letter or digit and use only letters, "
            "digits, '.', '_', '-' (at most 100 characters)"
        )
    if not isinstance(num, (int, np.integer)) or num < 1:
        raise IRSTDError(f"synth: --num must be an integer >= 1, got {num}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise IRSTDError(f"synth: --seed must be an integer >= 0, got {seed}")
    if not 0.0 <= test_fraction <= 1.0:
        raise IRSTDError(f"synth: --test-fraction must lie in [0, 1], got {test_fraction}")
    check_arguments(size, bit_depth, max_targets, empty_fraction, scr_range, scenes)
    scenes = tuple(scenes) if scenes else SCENES
    size = (int(size[0]), int(size[1]))

    out = Path(out)
    _prepare_folder(out, overwrite)
    settings = {
        "generator": "irstd.data.synth",
        "version": GENERATOR_VERSION,
        "name": name,
        "num": int(num),
        "size": list(size),
        "seed": int(seed),
        "bit_depth": int(bit_depth),
        "test_fraction": float(test_fraction),
        "max_targets": int(max_targets),
        "empty_fraction": float(empty_fraction),
        "scr_range": [float(scr_range[0]), float(scr_range[1])],
        "scenes": list(scenes),
        "mask_fraction": MASK_FRACTION,
        "ring_width": RING_WIDTH,
    }
    atomic_write_bytes(out / "synth.json", (json.dumps(settings, indent=2) + "\n").encode())

    width = max(4, len(str(num - 1)))
    ids = [f"{name}_{i:0{width}d}" for i in range(num)]
    train, test = split_ids(ids, test_fraction, seed)
    test_set = set(test)
    records = []
    total = empty = 0
    iterator = range(num)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="synth", unit="img", disable=None)
    for i in iterator:
        rng = frame_rng(seed, i)
        scene = choose_scene(rng, scenes)
        image, mask, targets = generate_frame(
            rng, size, bit_depth, scene=scene, max_targets=max_targets,
            empty_fraction=empty_fraction, scr_range=tuple(scr_range),
        )
        for t in targets:
            del t["scene"]
        write_image(out / "images" / f"{ids[i]}.png", image)
        write_image(out / "masks" / f"{ids[i]}.png", mask.astype(np.uint8) * 255)
        total += len(targets)
        empty += not targets
        records.append(
            json.dumps(
                {
                    "id": ids[i],
                    "split": "test" if ids[i] in test_set else "train",
                    "scene": scene,
                    "height": size[0],
                    "width": size[1],
                    "bit_depth": int(bit_depth),
                    "targets": targets,
                }
            )
        )
    atomic_write_bytes(out / "targets.jsonl", ("\n".join(records) + "\n").encode())
    for split, members in (("train", train), ("test", test)):
        # An empty index file is invalid input for the loader, so an empty split has none.
        if members:
            text = "".join(f"{m}\n" for m in members)
            atomic_write_bytes(out / "img_idx" / f"{split}_{name}.txt", text.encode())
    return {"root": str(out), "ids": ids, "train": train, "test": test, "targets": total, "empty": empty}


def read_targets(root: str | Path) -> dict[str, dict]:
    """Read ``root/targets.jsonl`` into ``{id: record}`` (records as written by :func:`make_dataset`)."""
    path = Path(root) / "targets.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise IRSTDError(f"{path}: cannot read ({exc.strerror or exc})") from None
    records = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[record["id"]] = record
        except (ValueError, KeyError, TypeError):
            raise IRSTDError(f"{path}: line {number} is not a target record") from None
    return records
