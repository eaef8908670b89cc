"""The real-domain noise library of RNIL (paper 000 Section 3.2).

Sliding windows of ``h / 15 x w / 12`` pixels (paper 000: ``A_noise in R^{k x c x h/15 x w/12}``)
tile every unlabelled target-domain frame without overlap. A window is kept when it is flat and
not dark::

    std(window) < sigma_max        mean(window) > mu_min

both in fractions of the frames' intensity full scale, so that the library means the same for 8-
and 16-bit frames. What is left in a flat window is the sensor's noise (and a little shading); it is
stored **zero-mean** (the window minus its mean), still in fractions of full scale, and when used it
is added to a training crop that is in fractions of *its* dataset's full scale
(:func:`irstd.strategies.rnil`): the noise keeps its real amplitude relative to the sensor range,
whatever the two datasets' bit depths. (The public release stored the raw windows with their DC
level and mixed one with a z-scored image, which mixes two unrelated scales.)

Defaults:

* :data:`SIGMA_MAX` ``sqrt(50) / 255`` = 0.0277: the release keeps windows whose 8-bit variance is
  below 50; the paper calls the threshold a variance, it is taken here as the standard deviation
  (the same cut, in intensity units).
* :data:`MU_MIN` 0.05 (12.75 of 255): the release uses 0, which keeps black borders and windows
  clipped at the sensor floor, where the noise itself is clipped away.
* :data:`LIBRARY_SIZE` 2048 windows at most, drawn uniformly (seeded) from all kept windows, so
  memory stays bounded (a 640 x 512 frame gives 180 windows of 34 x 53 px).

:func:`fit_noise` brings a window to a crop's size: ``resize`` (bilinear, the paper's
"upsampled to the original resolution") or ``tile`` (mirrored tiling, keeps the noise's grain),
and re-centres it to mean 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from irstd.errors import IRSTDError

__all__ = ["WINDOW_DIVISORS", "SIGMA_MAX", "MU_MIN", "LIBRARY_SIZE", "FITS", "NoiseLibrary", "noise_windows",
           "build_noise_library", "fit_noise"]

WINDOW_DIVISORS = (15, 12)
SIGMA_MAX = float(np.sqrt(50.0) / 255.0)
MU_MIN = 0.05
LIBRARY_SIZE = 2048
FITS = ("resize", "tile")


@dataclass
class NoiseLibrary:
    """Zero-mean noise windows (float32, fractions of full scale) and where each came from."""

    windows: list[np.ndarray] = field(default_factory=list)
    sources: list[tuple[str, int, int]] = field(default_factory=list)  # (frame name, top, left)
    stds: list[float] = field(default_factory=list)  # of each window before centring
    considered: int = 0  # windows looked at
    frames: int = 0

    def __len__(self) -> int:
        return len(self.windows)

    def summary(self) -> str:
        if not self.windows:
            return "empty noise library"
        s = np.asarray(self.stds)
        return (f"{len(self)} noise windows ({self.considered} looked at in {self.frames} frames), "
                f"std {s.min():.4f}..{s.max():.4f} of full scale (median {np.median(s):.4f})")


def noise_windows(
    unit: np.ndarray,
    divisors: tuple[int, int] = WINDOW_DIVISORS,
    sigma_max: float = SIGMA_MAX,
    mu_min: float = MU_MIN,
) -> tuple[list[tuple[int, int, np.ndarray, float]], int]:
    """Kept windows of one frame in fractions of full scale: ``([(top, left, zero-mean window,
    std)], windows looked at)``."""
    h, w = unit.shape
    wh, ww = h // int(divisors[0]), w // int(divisors[1])
    if wh < 2 or ww < 2:
        raise ValueError(f"a {w}x{h} frame gives noise windows of {ww}x{wh} px")
    kept, seen = [], 0
    for top in range(0, h - wh + 1, wh):
        for left in range(0, w - ww + 1, ww):
            seen += 1
            win = unit[top : top + wh, left : left + ww].astype(np.float64)
            mean, std = float(win.mean()), float(win.std())
            if std < sigma_max and mean > mu_min:
                kept.append((top, left, (win - mean).astype(np.float32), std))
    return kept, seen


def build_noise_library(
    paths: list[Path],
    full_scale: float,
    divisors: tuple[int, int] = WINDOW_DIVISORS,
    sigma_max: float = SIGMA_MAX,
    mu_min: float = MU_MIN,
    size: int = LIBRARY_SIZE,
    seed: int = 0,
) -> NoiseLibrary:
    """The library of the frames ``paths`` (the unlabelled domain, :func:`irstd.domain.frames.
    domain_frames`) with intensity full scale ``full_scale``.

    Raises:
        IRSTDError: an unreadable frame or one too small for two-pixel windows (naming the file),
            or no window passing both thresholds.
    """
    from irstd.domain.frames import read_frame

    if not 0 < sigma_max:
        raise IRSTDError(f"sigma_max must be positive, got {sigma_max}")
    dy, dx = int(divisors[0]), int(divisors[1])
    found: list[tuple[str, int, int, np.ndarray, float]] = []
    lib = NoiseLibrary()
    for path in paths:
        frame = read_frame(path, (2 * dy, 2 * dx), f"two-pixel noise windows (h/{dy} x w/{dx}, at least {2 * dx}x{2 * dy} px)")
        kept, seen = noise_windows(frame.astype(np.float64) / float(full_scale), (dy, dx), sigma_max, mu_min)
        lib.considered += seen
        lib.frames += 1
        found += [(Path(path).name, t, l, win, s) for t, l, win, s in kept]
    if not found:
        raise IRSTDError(
            f"no noise window in {lib.frames} target-domain frames has std < sigma_max = {sigma_max:g} and "
            f"mean > mu_min = {mu_min:g} (fractions of full scale {full_scale:g}); raise sigma_max or lower mu_min"
        )
    if len(found) > size:
        rng = np.random.default_rng([0x4E4F4953, int(seed)])
        found = [found[i] for i in np.sort(rng.choice(len(found), size=int(size), replace=False))]
    for name, t, l, win, s in found:
        lib.windows.append(win)
        lib.sources.append((name, t, l))
        lib.stds.append(s)
    return lib


def fit_noise(window: np.ndarray, shape: tuple[int, int], fit: str = "resize") -> np.ndarray:
    """A zero-mean float32 noise field of ``shape`` from one library window (module docstring)."""
    h, w = int(shape[0]), int(shape[1])
    win = np.asarray(window, dtype=np.float32)
    if fit == "resize":
        out = cv2.resize(win, (w, h), interpolation=cv2.INTER_LINEAR)
    elif fit == "tile":
        reps = (-(-h // win.shape[0]), -(-w // win.shape[1]))
        # mirrored copies join without seams
        tiles = [[win[:: (-1 if i % 2 else 1), :: (-1 if j % 2 else 1)] for j in range(reps[1])] for i in range(reps[0])]
        out = np.block(tiles)[:h, :w]
    else:
        raise IRSTDError(f"unknown noise fit {fit!r}; use {' or '.join(FITS)}")
    out = out.astype(np.float64)
    return (out - out.mean()).astype(np.float32)
