"""Unlabelled target-domain frames: the one seeded split of a frame folder, and reading them.

Paper 000 adapts a detector to a target domain through unlabelled frames of it: their background
regions receive pasted source targets (WCS) and their flat regions give the real noise library
(RNIL). The same kind of frames is also the honest false-alarm test of the adapted detector, so a
frame folder is split once, by :func:`split_frames`:

* :data:`HELDOUT_FRACTION` (30 %) of the frames are **held out**: they may only be used to count
  false targets per frame (``irstd cross-eval``), never for training or tuning;
* the other 70 % are the **unlabelled domain** (:func:`domain_frames`), the only frames the
  ``wcs`` and ``rnil`` strategies and ``irstd domain-synth`` ever read.

The split ranks the frames' file stems with :func:`irstd.data.carve_validation` and the seed
:data:`TARGET_SPLIT_SEED` (0): it depends only on the set of stems, not on listing order,
platform or NumPy version, and it is not a parameter of any strategy or command, so no
configuration can move a held-out frame into training.

A frame folder is ``DIR/images`` when it exists (the layout of SIRST-v2-backgrounds), else the
image files of ``DIR`` itself (:func:`irstd.data.dataset.target_free_images`). Frames are read
with the package's one reader (:func:`irstd.data.io.read_image`); problems (no frames, an
unreadable file, a frame too small for its use) are an :class:`~irstd.errors.IRSTDError` naming
the folder or the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irstd.errors import IRSTDError

__all__ = [
    "HELDOUT_FRACTION",
    "TARGET_SPLIT_SEED",
    "FrameSplit",
    "frame_files",
    "split_frames",
    "domain_frames",
    "heldout_frames",
    "read_frame",
    "frames_full_scale",
]

TARGET_SPLIT_SEED = 0
"""Seed of the one split of a target-domain frame folder (not configurable on purpose)."""

HELDOUT_FRACTION = 0.3
"""Fraction of a frame folder held out for counting false targets only."""


@dataclass(frozen=True)
class FrameSplit:
    """The split of one frame folder: ``domain`` (70 %) and ``heldout`` (30 %) frame paths, each
    sorted by file name."""

    folder: Path
    domain: tuple[Path, ...]
    heldout: tuple[Path, ...]


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder (``DIR/images`` or ``DIR``), sorted by name.

    Raises:
        IRSTDError: the folder is missing or holds no image file, or two files share a stem.
    """
    from irstd.data.dataset import scan_image_folder, target_free_images
    from irstd.data.io import IMAGE_EXTENSIONS

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise IRSTDError(f"{path}: target-domain frame folder not found")
    images = target_free_images(path)
    by_stem, _ = scan_image_folder(images)
    if not by_stem:
        extensions = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
        raise IRSTDError(f"{images}: no target-domain frames (no image files; looked for {extensions})")
    doubles = [paths for paths in by_stem.values() if len(paths) > 1]
    if doubles:
        raise IRSTDError(f"{images}: several frames share the name {doubles[0][0].stem!r} "
                         f"({', '.join(p.name for p in doubles[0])})")
    return sorted((paths[0] for paths in by_stem.values()), key=lambda p: p.name)


def split_frames(folder: str | os.PathLike) -> FrameSplit:
    """The seeded 70/30 split of a frame folder (module docstring).

    Raises:
        IRSTDError: as :func:`frame_files`, or fewer than 2 frames (nothing can be held out).
    """
    from irstd.data import carve_validation

    files = frame_files(folder)
    if len(files) < 2:
        raise IRSTDError(f"{files[0].parent}: {len(files)} frame; the held-out split of target-domain "
                         "frames needs at least 2")
    by_stem = {p.stem: p for p in files}
    domain, heldout = carve_validation(list(by_stem), HELDOUT_FRACTION, TARGET_SPLIT_SEED)
    return FrameSplit(
        files[0].parent,
        tuple(sorted((by_stem[s] for s in domain), key=lambda p: p.name)),
        tuple(sorted((by_stem[s] for s in heldout), key=lambda p: p.name)),
    )


def domain_frames(folder: str | os.PathLike) -> list[Path]:
    """The unlabelled-domain part (70 %) of a frame folder: the only frames training may read."""
    return list(split_frames(folder).domain)


def heldout_frames(folder: str | os.PathLike) -> list[Path]:
    """The held-out part (30 %) of a frame folder: for counting false targets only."""
    return list(split_frames(folder).heldout)


def read_frame(path: str | os.PathLike, min_size: tuple[int, int] = (1, 1), why: str = "") -> np.ndarray:
    """One frame as :func:`irstd.data.io.read_image` returns it (grey, native dtype).

    Args:
        min_size: smallest ``(height, width)`` the caller can use.
        why: what needs that size, for the message (e.g. ``"one 42x42 block"``).

    Raises:
        IRSTDError: unreadable file, or a frame smaller than ``min_size`` (naming the file).
    """
    from irstd.data.io import read_image

    image = read_image(path)
    h, w = image.shape
    if h < min_size[0] or w < min_size[1]:
        need = why or f"{min_size[1]}x{min_size[0]} pixels"
        raise IRSTDError(f"{path}: frame of {w}x{h} pixels (WxH) is smaller than {need}")
    return image


def frames_full_scale(paths: list[Path] | tuple[Path, ...], check=None) -> float:
    """The intensity full scale of a set of frames, by the dataset rule of
    :func:`irstd.data.dataset.dataset_full_scale` (255 for 8-bit frames, the smallest ``2**b - 1``
    holding the largest value for wider integers, 1.0 for floats in [0, 1]); computed on the frames
    given (the domain part), so held-out frames are not read. ``check(path, image)``, if given,
    sees every frame as it is read (one read per frame for callers that validate them too).

    Raises:
        IRSTDError: unreadable frame, 8-bit frames mixed with wider ones, floats outside [0, 1].
    """
    from irstd.data.scale import full_scale_for_max

    kinds: dict[str, Path] = {}
    peak = 0.0
    for path in paths:
        image = read_frame(path)
        if check is not None:
            check(path, image)
        kind = "8-bit" if image.dtype == np.uint8 else ("16-bit" if np.issubdtype(image.dtype, np.integer) else "float")
        kinds.setdefault(kind, path)
        peak = max(peak, float(image.max()))
    if not kinds:
        raise IRSTDError("no target-domain frames")
    if len(kinds) > 1:
        shown = ", ".join(f"{k} ({p.name})" for k, p in kinds.items())
        raise IRSTDError(f"target-domain frames of different kinds ({shown}): one intensity full scale "
                         "cannot serve them all")
    (kind,) = kinds
    if kind == "8-bit":
        return 255.0
    if kind == "16-bit":
        return full_scale_for_max(peak)
    if peak > 1.0:
        raise IRSTDError(f"{kinds[kind]}: float frames with values up to {peak:g}; convert them to 8 or 16 bits")
    return 1.0
