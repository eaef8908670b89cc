"""The one image reader and writer of irstd.

Every image, mask and probability map in the toolkit is read through :func:`read_image` (or its
two thin wrappers :func:`read_mask` and :func:`read_probability`), so that bit depth, colour mode
and error handling behave the same everywhere.

Rules
-----
* **Decoding** uses OpenCV with ``IMREAD_UNCHANGED`` because it keeps 16-bit colour PNGs,
  32-bit integer and float TIFFs at full depth (Pillow silently truncates 16-bit RGB to 8 bits).
  Formats OpenCV cannot decode fall back to Pillow.
* **Colour to grey**: 3- and 4-channel images are converted with the ITU-R BT.601 luma weights
  (0.299 R + 0.587 G + 0.114 B, alpha dropped), in the image's own dtype range. Infrared frames
  stored as RGB are grey replicated over channels, so this is lossless for them.
* **Dynamic range** is never truncated: :func:`read_image` returns the native dtype
  (``uint8``, ``uint16``, ``int32`` or ``float32``); 14-bit sensor data in 16-bit containers stays as is.
* **Mask binarisation** (:func:`binarize_mask`): a pixel is target iff its value is greater than half
  the mask's full scale: the smallest of 1, 255 and 65535 that is >= the mask's maximum (0/1
  label masks, 0/255 masks in any container, 16-bit masks). A 16-bit file holding 0/255 is therefore
  read as 0/255, not as an empty mask. Grey, anti-aliased mask borders (IRSTD-1K has 85 such masks)
  are split at 50 %.
* **Probability maps** (:func:`read_probability`): integer maps are divided by their dtype's maximum
  (255 or 65535; 32-bit integer maps with values <= 65535 are taken as 16-bit); float maps are used
  as they are and must lie in [0, 1].
"""

from __future__ import annotations

import os
import secrets
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from irstd.errors import IRSTDError

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

_LUMA_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float64)


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _decode(path: Path) -> np.ndarray:
    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        raise IRSTDError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise IRSTDError(f"{path}: is a directory, expected an image file") from None
    except OSError as exc:
        raise IRSTDError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if raw.size == 0:
        raise IRSTDError(f"{path}: file is empty")
    array = _cv2_decode_quietly(raw)
    if array is not None:
        if array.ndim == 3 and array.shape[2] in (3, 4):
            array = _bgr_to_grey(array)
        elif array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return array
    try:
        # Pillow warns (on stderr) about corrupt EXIF blocks and the like; the error below, or the
        # decoded pixels, are what the user needs, so keep its warnings out of the output.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                if img.mode in ("RGB", "RGBA", "P", "PA", "LA", "CMYK", "YCbCr", "1"):
                    img = img.convert("L")
                array = np.asarray(img)
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        ValueError,
        SyntaxError,
    ) as exc:
        raise IRSTDError(f"{path}: not a readable image ({exc})") from None
    return array


def _cv2_decode_quietly(raw: np.ndarray) -> np.ndarray | None:
    # OpenCV logs several lines to stderr for every file it cannot decode (libpng / libtiff
    # errors), before we raise one clear IRSTDError or fall back to Pillow; silence them.
    # cv2.error (e.g. an image above OpenCV's pixel limit) also means "let Pillow try".
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _bgr_to_grey(array: np.ndarray) -> np.ndarray:
    grey = array[:, :, :3].astype(np.float64) @ _LUMA_BGR
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(array.dtype)
    return grey.astype(np.float32)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as a 2-D grey array in its native dtype and value range.

    Args:
        path: PNG, BMP, JPEG or TIFF file, any channel count and bit depth.

    Returns:
        ``H x W`` array of dtype ``uint8``, ``uint16``, ``int32`` or ``float32`` (float64 and
        other integer types are converted to float32 / int32). Colour is converted to grey as
        described in the module docstring.

    Raises:
        IRSTDError: the file is missing, empty, not an image, or has an unsupported layout.
    """
    path = Path(path)
    array = _decode(path)
    if array.ndim != 2:
        raise IRSTDError(f"{path}: unsupported image layout with shape {array.shape}")
    if array.size == 0:
        raise IRSTDError(f"{path}: image has no pixels")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype in (np.int8, np.int16, np.uint32, np.int64, np.uint64):
        array = array.astype(np.int32) if array.dtype != np.uint64 else array.astype(np.float32)
    elif array.dtype in (np.float16, np.float64):
        array = array.astype(np.float32)
    if array.dtype == np.float32 and not np.isfinite(array).all():
        raise IRSTDError(f"{path}: image contains NaN or infinite values")
    return np.ascontiguousarray(array)


def full_scale(array: np.ndarray) -> float:
    """The value that means 'maximum' for an array of this dtype (255, 65535, or 1.0 for float).

    32-bit integer arrays (Pillow's mode ``I``) whose values fit in 16 bits are taken as 16-bit.
    """
    if array.dtype == np.uint8:
        return 255.0
    if array.dtype == np.uint16:
        return 65535.0
    if np.issubdtype(array.dtype, np.integer):
        return 65535.0 if array.max(initial=0) <= 65535 else float(np.iinfo(array.dtype).max)
    return 1.0


def binarize_mask(array: np.ndarray) -> np.ndarray:
    """Binarise a ground-truth mask by the rule in the module docstring; returns ``bool`` H x W."""
    peak = float(array.max(initial=0))
    scale = next((s for s in (1.0, 255.0, 65535.0) if peak <= s), peak)
    return array > 0.5 * scale


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a ground-truth mask as a ``bool`` H x W array (see :func:`binarize_mask`)."""
    return binarize_mask(read_image(path))


def read_probability(path: str | os.PathLike) -> np.ndarray:
    """Read a predicted mask or probability map as ``float32`` H x W values in [0, 1].

    Binary 0/255 masks become 0/1, 8-bit maps are divided by 255, 16-bit maps by 65535.
    Float maps (TIFF) must already lie in [0, 1].
    """
    array = read_image(path)
    if array.dtype == np.float32:
        if array.min() < 0 or array.max() > 1:
            raise IRSTDError(
                f"{path}: float probability map has values outside [0, 1] "
                f"(min {array.min():.4g}, max {array.max():.4g})"
            )
        return array
    return (array.astype(np.float64) / full_scale(array)).astype(np.float32)


def _create_new(path: Path, create) -> Path:
    """Call ``create(candidate)`` on fresh hidden sibling names of ``path`` until one does not exist."""
    while True:
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            create(candidate)
            return candidate
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so that a crash never leaves a truncated file under the final name.

    The file ends with the mode a plain ``open(path, "wb")`` gives a new file (0o666 minus the
    umask). Every file irstd writes goes through this function (checkpoint folders too, file by
    file inside their own staged folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # os.open with 0o666, not tempfile.mkstemp (always 0o600): the kernel applies the umask, so the
    # mode is right without reading the umask, which os.umask can only do by changing it, a race
    # with other threads creating files.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fds: list[int] = []
    tmp = _create_new(path, lambda candidate: fds.append(os.open(candidate, flags, 0o666)))
    try:
        with os.fdopen(fds[0], "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def staged_dir(out: str | os.PathLike) -> Iterator[Path]:
    """A folder to write a command's outputs into, moved into ``out`` only if the block succeeds.

    On an exception nothing is left behind: neither ``out`` (if it did not exist), nor its missing
    parents, nor any file inside an existing ``out``. On success the staged entries replace those of
    the same name in ``out`` (a staged folder replaces the old folder as a whole) and other entries
    of ``out`` are kept. The staging folder is a hidden sibling (or, when ``out`` exists, a hidden
    child), so the moves are renames on one file system. Folders get the modes ``mkdir`` gives.

    Raises:
        IRSTDError: ``out`` is a file, or the folder cannot be created.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise IRSTDError(f"{out}: is a file, expected an output folder")
    existed = out.is_dir()
    missing = [p for p in (out, *out.parents) if not p.exists()]
    try:
        if existed:
            stage = _create_new(out / "staging", lambda c: os.mkdir(c, 0o777))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            stage = _create_new(out, lambda c: os.mkdir(c, 0o777))
    except OSError as exc:
        _remove_created(missing)
        raise IRSTDError(f"{out}: cannot create output folder ({exc.strerror or exc})") from None
    try:
        yield stage
        if existed:
            for entry in sorted(stage.iterdir()):
                target = out / entry.name
                if target.is_dir() and not target.is_symlink() and entry.is_dir():
                    shutil.rmtree(target)
                os.replace(entry, target)
            stage.rmdir()
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_created(missing)
        raise


def _remove_created(missing: list[Path]) -> None:
    # innermost first; a folder someone else filled in the meantime is kept
    for folder in missing:
        try:
            folder.rmdir()
        except OSError:
            pass


def write_image(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a 2-D ``uint8`` or ``uint16`` array (or 3-channel ``uint8`` RGB) atomically.

    The format follows the extension (PNG for 16-bit data). 16-bit data is kept at 16 bits.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"write_image expects uint8 or uint16, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]  # OpenCV encodes BGR
    ext = path.suffix.lower() or ".png"
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(array))
    if not ok:
        raise IRSTDError(f"{path}: cannot encode image as {ext}")
    atomic_write_bytes(path, buf.tobytes())
