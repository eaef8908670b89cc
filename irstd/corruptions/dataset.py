"""Corrupted copies of whole datasets (the library side of ``irstd corrupt``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from irstd.corruptions import apply, derive_seed
from irstd.corruptions.functional import full_scale_for_max
from irstd.corruptions.severity import check_corruption, severity_params
from irstd.data.io import atomic_write_bytes, is_image_file, read_image, write_image
from irstd.errors import IRSTDError

COPIED_FOLDERS = ("masks", "img_idx")
"""Sub-folders copied unchanged (all files, recursively)."""

RECORD_NAME = "corruption.json"

# Extensions whose encoder is lossless for the bit depth written; others become PNG.
_LOSSLESS = {".png": (np.uint8, np.uint16), ".tif": (np.uint8, np.uint16),
             ".tiff": (np.uint8, np.uint16), ".bmp": (np.uint8,)}


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _image_files(folder: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise IRSTDError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None
    return [Path(e.path) for e in entries
            if e.is_file() and not e.name.startswith(".") and is_image_file(e.name)]


def _as_integer_image(path: Path, image: np.ndarray) -> np.ndarray:
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype == np.int32 and image.min() >= 0 and image.max() <= 65535:
        return image.astype(np.uint16)
    raise IRSTDError(
        f"{path}: {image.dtype} image cannot be written back at its precision; "
        "irstd corrupt supports 8- and 16-bit images"
    )


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise IRSTDError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise IRSTDError(f"{out}: folder is not empty (use --overwrite to replace its "
                             f"images/, masks/, img_idx/)")
        for name in ("images", *COPIED_FOLDERS):
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _copy_tree(src: Path, dst: Path) -> int:
    count = 0
    for dirpath, _dirs, files in os.walk(src):
        for name in sorted(files):
            source = Path(dirpath) / name
            atomic_write_bytes(dst / source.relative_to(src), source.read_bytes())
            count += 1
    return count


def corrupt_dataset(
    input_root: str | os.PathLike,
    out: str | os.PathLike,
    name: str,
    severity: int,
    *,
    seed: int = 0,
    levels: int = 3,
    full_scale: float | None = None,
    overwrite: bool = False,
) -> dict:
    """Write a copy of the dataset at ``input_root`` with every image corrupted.

    ``input_root/images/*`` are read with :func:`irstd.data.io.read_image`, corrupted by
    :func:`irstd.corruptions.apply` with seed ``derive_seed(seed, file stem)`` and written with
    :func:`irstd.data.io.write_image` at their bit depth (grey). ``masks/`` and ``img_idx/``
    (recursively) and top-level ``*.txt`` files are copied unchanged; other top-level files are
    not copied. ``out/corruption.json`` records the arguments and parameters.

    16-bit images use one full scale for the whole dataset (``full_scale``, or inferred from
    the largest 16-bit value of all images with
    :func:`~irstd.corruptions.functional.full_scale_for_max`); 8-bit images use 255.

    Returns:
        Summary dict: ``out``, ``images``, ``renamed`` (written as PNG), ``copied``,
        ``corruption``, ``severity``, ``levels``, ``params``, ``full_scale_16bit``.

    Raises:
        IRSTDError: bad name or severity, missing input, overlapping input and output,
            non-empty output without ``overwrite``, unreadable or float images.
    """
    check_corruption(name)
    params = severity_params(name, severity, levels)
    inp = Path(input_root).expanduser()
    if not inp.exists():
        raise IRSTDError(f"{inp}: dataset folder not found")
    if not inp.is_dir():
        raise IRSTDError(f"{inp}: is a file, expected a dataset folder with images/ and masks/")
    images_dir = inp / "images"
    if not images_dir.is_dir():
        raise IRSTDError(f"{images_dir}: folder not found (a dataset folder holds images/ and masks/)")
    out = Path(out).expanduser()
    inp_r, out_r = inp.resolve(), out.resolve()
    if _is_within(out_r, inp_r):
        raise IRSTDError(f"{out}: output folder is inside (or is) the input dataset {inp}")
    if _is_within(inp_r, out_r):
        raise IRSTDError(f"{out}: output folder contains the input dataset {inp}")
    if full_scale is not None and not 0 < full_scale <= 65535:
        raise IRSTDError(f"--full-scale must be in (0, 65535], got {full_scale:g}")
    files = _image_files(images_dir)
    if not files:
        raise IRSTDError(f"{images_dir}: no images found")
    targets: dict[Path, Path] = {}
    _prepare_out(out, overwrite)

    scale16 = full_scale
    renamed = 0
    for path in files:
        image = _as_integer_image(path, read_image(path))
        if image.dtype == np.uint16 and scale16 is None:
            scale16 = _dataset_peak_scale(files)
        scale = 255.0 if image.dtype == np.uint8 else scale16
        if image.max() > scale:
            raise IRSTDError(f"{path}: values up to {int(image.max())} exceed --full-scale {scale:g}")
        result = apply(image, name, severity, derive_seed(seed, path.stem), levels=levels,
                       full_scale=scale)
        ext = path.suffix.lower()
        if image.dtype not in _LOSSLESS.get(ext, ()):
            ext = ".png"
            renamed += 1
        target = out / "images" / (path.stem + ext)
        if target in targets:
            raise IRSTDError(f"{path}: would overwrite {target}, written from {targets[target]}")
        targets[target] = path
        write_image(target, result)

    copied = 0
    for folder in COPIED_FOLDERS:
        if (inp / folder).is_dir():
            copied += _copy_tree(inp / folder, out / folder)
    for entry in sorted(inp.iterdir()):
        if entry.is_file() and entry.suffix.lower() == ".txt":
            atomic_write_bytes(out / entry.name, entry.read_bytes())
            copied += 1

    record = {
        "source": str(inp_r),
        "corruption": name,
        "severity": int(severity),
        "levels": int(levels),
        "params": params,
        "seed": int(seed),
        "seed_rule": "irstd.corruptions.derive_seed(seed, image file stem)",
        "full_scale_16bit": scale16,
        "images": len(files),
    }
    atomic_write_bytes(out / RECORD_NAME, (json.dumps(record, indent=2) + "\n").encode())
    return {
        "out": str(out), "images": len(files), "renamed": renamed, "copied": copied,
        "corruption": name, "severity": int(severity), "levels": int(levels), "params": params,
        "full_scale_16bit": scale16,
    }


def _dataset_peak_scale(files: list[Path]) -> float:
    """Full scale of the dataset's 16-bit images, from their largest value."""
    peak = 0
    for path in files:
        image = read_image(path)
        if image.dtype != np.uint8 and np.issubdtype(image.dtype, np.integer):
            peak = max(peak, int(image.max()))
    return full_scale_for_max(peak)
