"""Corrupted copies of whole datasets (the library side of ``irstd corrupt``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from irstd.corruptions import apply, derive_seed
from irstd.corruptions.severity import check_corruption, severity_params
from irstd.data.io import atomic_write_bytes, read_image, staged_dir, write_image
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
    """Image files of ``folder``, sorted by name, as :class:`irstd.data.IRSTDDataset` lists them."""
    from irstd.data.dataset import scan_image_folder

    by_stem, _ = scan_image_folder(folder)
    return sorted((p for paths in by_stem.values() for p in paths), key=lambda p: p.name)


def _check_masks(inp: Path, files: list[Path]) -> None:
    """IRSTDError unless every image has a mask (``masks/<id>.<ext>`` or ``<id>_pixels0.<ext>``)."""
    from irstd.data.dataset import _MAX_LISTED, MASK_SUFFIX, scan_image_folder

    hint = "; pass --images-only to write the corrupted images without masks"
    masks_dir = inp / "masks"
    if not masks_dir.is_dir():
        raise IRSTDError(f"{masks_dir}: folder not found, the dataset has no masks{hint}")
    masks, _ = scan_image_folder(masks_dir)
    missing = [p.name for p in files if p.stem not in masks and p.stem + MASK_SUFFIX not in masks]
    if missing:
        shown = ", ".join(missing[:_MAX_LISTED]) + (", ..." if len(missing) > _MAX_LISTED else "")
        raise IRSTDError(f"{masks_dir}: no mask for {len(missing)} of {len(files)} images ({shown}){hint}")


def _as_integer_image(path: Path, image: np.ndarray) -> np.ndarray:
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype == np.int32 and image.min() >= 0 and image.max() <= 65535:
        return image.astype(np.uint16)
    raise IRSTDError(
        f"{path}: {image.dtype} image cannot be written back at its precision; "
        "irstd corrupt supports 8- and 16-bit images"
    )


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
    images_only: bool = False,
) -> dict:
    """Write a copy of the dataset at ``input_root`` with every image corrupted.

    ``input_root/images/*`` are read with :func:`irstd.data.io.read_image`, corrupted by
    :func:`irstd.corruptions.apply` with seed ``derive_seed(seed, file stem)`` and written with
    :func:`irstd.data.io.write_image` at their bit depth (grey). ``masks/`` and ``img_idx/``
    (recursively) and top-level ``*.txt`` files are copied unchanged; other top-level files are
    not copied. ``out/corruption.json`` records the arguments and parameters.

    Every image has a mask unless ``images_only`` (then only ``images/`` and the record are
    written, for a folder of frames without ground truth). All images are corrupted relative to
    the dataset's one intensity full scale (``full_scale``, or
    :func:`irstd.data.dataset.dataset_full_scale`: 255 for 8-bit data, ``2**b - 1`` holding the
    largest value of all images for 16-bit data), the scale training and ``irstd robustness`` use.

    Everything is written into a hidden staging folder and moved into ``out`` at the end
    (:func:`irstd.data.io.staged_dir`): a failure leaves neither ``out`` nor partial files.

    Returns:
        Summary dict: ``out``, ``images``, ``renamed`` (written as PNG), ``copied``,
        ``corruption``, ``severity``, ``levels``, ``params``, ``full_scale``, ``images_only``.

    Raises:
        IRSTDError: bad name or severity, missing input, images without masks (unless
            ``images_only``), overlapping input and output, non-empty output without
            ``overwrite``, unreadable or float images.
    """
    from irstd.data.dataset import dataset_full_scale

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
    if out.exists() and not out.is_dir():
        raise IRSTDError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise IRSTDError(f"{out}: folder is not empty (use --overwrite to replace its "
                         f"images/, masks/, img_idx/)")
    files = _image_files(images_dir)
    if not files:
        raise IRSTDError(f"{images_dir}: no images found")
    if not images_only:
        _check_masks(inp, files)
    scale = dataset_full_scale(inp, full_scale)

    renamed = copied = 0
    with staged_dir(out) as stage:
        targets: dict[Path, Path] = {}
        for path in files:
            image = _as_integer_image(path, read_image(path))
            if image.max() > scale:
                raise IRSTDError(f"{path}: values up to {int(image.max())} exceed the full scale {scale:g}")
            result = apply(image, name, severity, derive_seed(seed, path.stem), levels=levels,
                           full_scale=scale)
            ext = path.suffix.lower()
            if image.dtype not in _LOSSLESS.get(ext, ()):
                ext = ".png"
                renamed += 1
            target = Path("images") / (path.stem + ext)
            if target in targets:
                raise IRSTDError(f"{path}: would overwrite {out / target}, written from {targets[target]}")
            targets[target] = path
            write_image(stage / target, result)
        if not images_only:
            for folder in COPIED_FOLDERS:
                if (inp / folder).is_dir():
                    copied += _copy_tree(inp / folder, stage / folder)
            for entry in sorted(inp.iterdir()):
                if entry.is_file() and entry.suffix.lower() == ".txt":
                    atomic_write_bytes(stage / entry.name, entry.read_bytes())
                    copied += 1
        record = {
            "source": str(inp_r),
            "corruption": name,
            "severity": int(severity),
            "levels": int(levels),
            "params": params,
            "seed": int(seed),
            "seed_rule": "irstd.corruptions.derive_seed(seed, image file stem)",
            "full_scale": scale,
            "full_scale_rule": "given" if full_scale is not None else "irstd.data.dataset.dataset_full_scale",
            "images": len(files),
            "images_only": bool(images_only),
        }
        atomic_write_bytes(stage / RECORD_NAME, (json.dumps(record, indent=2) + "\n").encode())
    return {
        "out": str(out), "images": len(files), "renamed": renamed, "copied": copied,
        "corruption": name, "severity": int(severity), "levels": int(levels), "params": params,
        "full_scale": scale, "images_only": bool(images_only),
    }
