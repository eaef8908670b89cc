"""Datasets in the common IRSTD layout: split discovery, validation carving, normalisation, loading.

Layout
------
Every public IRSTD dataset (NUAA-SIRST, NUDT-SIRST, IRSTD-1K, ...) and every dataset written by
``irstd synth`` uses::

    <root>/images/<id>.<ext>
    <root>/masks/<id>.<ext>            (or <id>_pixels0.<ext>, as the SIRST releases name them)
    <root>/img_idx/<split>_<name>.txt  (or <root>/img_idx/<split>.txt, or <root>/<split>.txt)

* Extensions: ``.png .bmp .jpg .jpeg .tif .tiff`` in any letter case; a mask may have another
  extension than its image. Files with other extensions, sub-folders and hidden files (names
  starting with ``.``, such as macOS ``._Misc_1.png`` resource forks) are ignored.
* An index file lists one id per line; blank lines and surrounding whitespace are ignored, a UTF-8
  byte-order mark is tolerated, and an id listed twice is an error.
* Index files are looked up in this order, the first kind that exists wins:
  ``img_idx/<split>.txt``, ``img_idx/<split>_*.txt`` (exactly one such file allowed, e.g.
  ``train_NUAA-SIRST.txt``), ``<root>/<split>.txt``. The split ``train`` falls back to ``trainval`` under the same rules
  (the IRSTD-1K and original SIRST releases call their training list ``trainval``).
* A plain ``images/`` + ``masks/`` folder without any index file is split deterministically:
  :data:`PLAIN_TEST_FRACTION` (20 %) of the image ids go to ``test``, the rest to ``train``,
  chosen by :func:`carve_validation` with seed :data:`PLAIN_SPLIT_SEED` (0).

Validation split
----------------
:func:`carve_validation` carves the validation ids (used to choose checkpoints) from the training
ids; the test split is only for final figures. The choice ranks every id by a SHA-256 hash of
``seed`` and the id, so it depends only on the set of ids and the seed: not on their order, not on
the NumPy version or platform, and adding ids to a dataset leaves the existing ids' ranks as they were.

Normalisation
-------------
:func:`normalize_image` standardises each image on its own: ``(x - mean(x)) / max(std(x), eps)``,
computed on the native values in float64 and returned as float32. Per-image rather than per-dataset
statistics because they make the network input independent of bit depth (8-bit, 14-bit in 16-bit
containers, 16-bit, float radiometry) and of the camera's gain and offset, so a model trained on one
dataset or sensor sees the same input distribution on another (cross-domain use, ``irstd predict``
on a user's own frames) with no statistics file to carry around. Nothing is truncated to 8 bits.
After normalisation 0 is the image mean, which is why padding uses 0.

Intensity full scale
--------------------
Corruptions (training strategies, ``irstd robustness``, ``irstd corrupt``) act on intensities as
fractions of a *full scale* ("maximum"), and one dataset has one full scale, so that an image is
corrupted the same way whichever of them handles it. :func:`dataset_full_scale` computes it from
every image file in ``images/`` (all splits: train and test share it); :attr:`IRSTDDataset.full_scale`
caches it on the dataset object:

* all images ``uint8``: 255;
* integer images wider than 8 bits (``uint16``, ``int32`` up to 65535): the smallest ``2**b - 1``,
  ``b`` in 8, 10, 12, 14, 16, that holds the largest value of the whole dataset
  (:func:`irstd.data.scale.full_scale_for_max`), so 14-bit counts in 16-bit files get
  16383 even when single frames are dark;
* float images: 1.0 when every value lies in [0, 1]; other ranges need an explicit scale;
* 8-bit files mixed with wider or float ones: an error (no single scale serves both).

An explicit ``full_scale`` (``data.full_scale`` in a config, ``--full-scale`` on the command line)
replaces the rule; each image is then checked against it when it is used.

Target-free datasets
--------------------
A folder of frames that contain no target (unlabelled backgrounds, hard negatives, a false-alarm
test set such as SIRST-v2-backgrounds) has no ``masks/``: its ground truth is all zero. It is read
only when asked for explicitly, ``IRSTDDataset(root, target_free=True)``, so that a labelled
dataset whose ``masks/`` went missing is still an error and never silently scores as target-free.
The frames are ``<root>/images/*`` when that folder exists, else the image files of ``<root>``
itself (:func:`target_free_images`); every item's mask is all ``False``. Without ``split`` or
``ids`` the dataset holds every frame; a split needs an index file. :func:`is_target_free` is the
auto-detection commands use (a folder of images without ``masks/``) and say they use.

Bad input
---------
Problems are reported as :class:`~irstd.errors.IRSTDError` naming the file and the problem.
:class:`IRSTDDataset` checks cheaply at construction that every id has exactly one image and one
mask file and lists all ids that do not; decoding errors and image/mask size mismatches are raised
when the sample is loaded. With ``skip_bad=True`` every sample is decoded at construction, bad ones
are dropped and listed in ``dataset.skipped``. :func:`check_dataset` decodes everything and reports
all problems at once.

Augmentation seeding
--------------------
With a ``transform``, each item draws a 63-bit seed from torch's global generator and runs the
transform with ``np.random.default_rng([seed, index])``. In DataLoader workers torch seeds that
generator per worker and per epoch from the main process's generator (``base_seed + worker_id``),
and in the main process (``num_workers=0``) it advances from ``torch.manual_seed``: either way a
fixed torch seed (and worker count) reproduces the same augmentations, every epoch gets new ones,
and restoring torch's RNG state on resume restores them too. (Seeding with ``torch.initial_seed() +
index`` instead would freeze the augmentation of every image across epochs when ``num_workers=0``
and give equal streams to ``(worker w, index i)`` and ``(worker w + 1, index i - 1)``.)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from irstd.data.io import IMAGE_EXTENSIONS, is_image_file, read_image, read_mask
from irstd.errors import IRSTDError

__all__ = [
    "PLAIN_SPLIT_SEED",
    "PLAIN_TEST_FRACTION",
    "DatasetReport",
    "IRSTDDataset",
    "carve_validation",
    "check_dataset",
    "check_full_scale",
    "dataset_full_scale",
    "find_split_file",
    "is_target_free",
    "list_splits",
    "load_sample",
    "normalize_image",
    "read_index_file",
    "read_split",
    "target_free_images",
]

PLAIN_TEST_FRACTION = 0.2
"""Fraction of a plain ``images/`` + ``masks/`` folder (no index files) that becomes ``test``."""

PLAIN_SPLIT_SEED = 0
"""Seed of the deterministic split of a plain folder."""

NORMALIZE_EPS = 1e-6
"""Lower bound on the standard deviation in :func:`normalize_image` (a flat image becomes all 0)."""

MASK_SUFFIX = "_pixels0"
"""Mask-name suffix of the SIRST releases: ``masks/<id>_pixels0.png`` is the mask of ``<id>``."""

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]

_SPLIT_ALIASES = {"train": ("train", "trainval")}
_MAX_LISTED = 10


# --------------------------------------------------------------------------------------------
# Folder layout


def _dataset_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise IRSTDError(f"{path}: dataset folder not found")
    if not path.is_dir():
        raise IRSTDError(f"{path}: is a file, expected a dataset folder with images/ and masks/")
    return path


def _sub_folder(root: Path, name: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        raise IRSTDError(
            f"{folder}: folder not found (a dataset folder holds images/<id>.<ext>, "
            f"masks/<id>.<ext> and optionally img_idx/<split>_<name>.txt)"
        )
    return folder


def scan_image_folder(folder: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """Map file stem -> image files with that stem; also return the ignored entries (non-image
    files, sub-folders, hidden files). Sorted by name, so the result does not depend on the file system."""
    by_stem: dict[str, list[Path]] = {}
    ignored: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise IRSTDError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None
    for entry in entries:
        path = Path(entry.path)
        try:
            is_file = entry.is_file()
        except OSError:
            is_file = False
        if not is_file or entry.name.startswith(".") or not is_image_file(entry.name):
            ignored.append(path)
            continue
        by_stem.setdefault(path.stem, []).append(path)
    return by_stem, ignored


# --------------------------------------------------------------------------------------------
# Splits


def _check_split_name(split: str) -> None:
    if not isinstance(split, str) or not split.strip():
        raise IRSTDError(f"invalid split name {split!r}")
    if "/" in split or "\\" in split or split in (".", ".."):
        raise IRSTDError(f"invalid split name {split!r}: must not contain a path separator")


def _txt_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() == ".txt" and not p.name.startswith(".") and p.is_file()
    )


def _candidates(root: Path, name: str) -> list[tuple[str, list[Path]]]:
    """(pattern, matching files) for one split name, in lookup order."""
    idx = root / "img_idx"
    prefixed = [p for p in _txt_files(idx) if p.stem.startswith(name + "_")]
    exact_idx = idx / f"{name}.txt"
    exact_root = root / f"{name}.txt"
    return [
        (f"img_idx/{name}.txt", [exact_idx] if exact_idx.is_file() else []),
        (f"img_idx/{name}_*.txt", prefixed),
        (f"{name}.txt", [exact_root] if exact_root.is_file() else []),
    ]


def _has_any_index(root: Path) -> bool:
    if _txt_files(root / "img_idx"):
        return True
    return any((root / f"{n}.txt").is_file() for n in ("train", "trainval", "test", "val"))


def find_split_file(root: str | os.PathLike, split: str) -> Path | None:
    """The index file of ``split`` under ``root`` (lookup order in the module docstring).

    Returns:
        The file, or ``None`` when ``root`` has no index file at all and ``split`` is ``train`` or
        ``test`` (a plain folder, split by :func:`read_split` with a fixed seed).

    Raises:
        IRSTDError: root missing; no index file for this split (the message lists the patterns
            looked for); several ``img_idx/<split>_*.txt`` files.
    """
    root = _dataset_root(root)
    _check_split_name(split)
    looked: list[str] = []
    for name in _SPLIT_ALIASES.get(split, (split,)):
        for pattern, found in _candidates(root, name):
            looked.append(pattern)
            if len(found) > 1:
                names = ", ".join(p.name for p in found)
                raise IRSTDError(
                    f"{root / 'img_idx'}: several index files for split '{split}' ({names}); "
                    f"keep one or pass the full split name"
                )
            if found:
                return found[0]
    if split in ("train", "test") and not _has_any_index(root):
        return None
    raise IRSTDError(f"{root}: no index file for split '{split}' (looked for {', '.join(looked)})")


def read_index_file(path: str | os.PathLike) -> list[str]:
    """Ids listed in an index file, in file order (blank lines and surrounding whitespace ignored).

    Raises:
        IRSTDError: unreadable, not UTF-8, empty, or an id listed twice.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise IRSTDError(f"{path}: split file not found") from None
    except UnicodeDecodeError:
        raise IRSTDError(f"{path}: split file is not UTF-8 text") from None
    except OSError as exc:
        raise IRSTDError(f"{path}: cannot read split file ({exc.strerror or exc})") from None
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        item = line.strip()
        if not item:
            continue
        if item in first_line:
            raise IRSTDError(
                f"{path}: id '{item}' is listed twice (lines {first_line[item]} and {number})"
            )
        first_line[item] = number
        ids.append(item)
    if not ids:
        raise IRSTDError(f"{path}: split file is empty (no ids)")
    return ids


def _plain_ids(root: Path) -> list[str]:
    images = _sub_folder(root, "images")
    _sub_folder(root, "masks")
    ids = sorted(scan_image_folder(images)[0])
    if not ids:
        extensions = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
        raise IRSTDError(f"{images}: no image files (looked for {extensions})")
    return ids


def _resolve_split(root: Path, split: str) -> tuple[list[str], str]:
    """Ids of a split and a description of where they came from (for messages)."""
    index = find_split_file(root, split)
    if index is not None:
        return read_index_file(index), str(index)
    ids = _plain_ids(root)
    if len(ids) < 2:
        raise IRSTDError(
            f"{root / 'images'}: a folder without index files needs at least 2 images to be split "
            f"into train and test, found {len(ids)}"
        )
    train, test = carve_validation(ids, PLAIN_TEST_FRACTION, PLAIN_SPLIT_SEED)
    test_pct = int(round(100 * PLAIN_TEST_FRACTION))
    source = (
        f"{root} (no index files: seeded {100 - test_pct}/{test_pct} split of images/, "
        f"seed {PLAIN_SPLIT_SEED})"
    )
    return (train if split == "train" else test), source


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Ids of ``split`` (``"train"``, ``"test"`` or any name with an index file) of a dataset.

    Index files are found as described in the module docstring; a plain ``images/`` + ``masks/``
    folder without index files gets a deterministic 80/20 train/test split (seed 0).

    Returns:
        The ids in index-file order (sorted for a plain folder).

    Raises:
        IRSTDError: missing root or folders, no or several index files, empty index file,
            duplicate id.
    """
    return _resolve_split(_dataset_root(root), split)[0]


def list_splits(root: str | os.PathLike) -> list[str]:
    """Split names :func:`read_split` accepts for ``root`` (sorted).

    ``img_idx/train_NUAA-SIRST.txt`` gives ``train``; a plain folder gives ``["test", "train"]``.
    """
    root = _dataset_root(root)
    if not _has_any_index(root):
        return ["test", "train"]
    names = {p.stem.split("_", 1)[0] for p in _txt_files(root / "img_idx")}
    names.update(n for n in ("train", "trainval", "test", "val") if (root / f"{n}.txt").is_file())
    if "trainval" in names:
        names.add("train")
    return sorted(n for n in names if n)


def _hash_rank(item: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\x00{item}".encode("utf-8", "surrogatepass")).digest()


def carve_validation(
    ids: Iterable[str], fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split ids into ``(train_ids, val_ids)``, deterministically.

    Ids are ranked by SHA-256 of ``(seed, id)``; the first ``round(fraction * n)`` (at least 1 and
    at most ``n - 1``) form the validation part. The result depends only on the set of ids and the
    seed (not their order or the NumPy version); both lists are returned sorted.

    Args:
        ids: at least 2 distinct ids.
        fraction: validation fraction, in (0, 1).
        seed: any integer; different seeds give independent splits.

    Raises:
        ValueError: fraction outside (0, 1) or duplicate ids.
        IRSTDError: fewer than 2 ids (nothing can be held out).
    """
    items = sorted(ids)
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if len(set(items)) != len(items):
        duplicates = sorted({i for i in items if items.count(i) > 1})
        raise ValueError(f"duplicate ids: {', '.join(duplicates[:_MAX_LISTED])}")
    n = len(items)
    if n < 2:
        raise IRSTDError(f"cannot carve a validation split from {n} id(s); need at least 2")
    n_val = min(max(int(round(fraction * n)), 1), n - 1)
    ranked = sorted(items, key=lambda i: _hash_rank(i, int(seed)))
    val = set(ranked[:n_val])
    return [i for i in items if i not in val], [i for i in items if i in val]


# --------------------------------------------------------------------------------------------
# Intensity full scale


def check_full_scale(value, what: str = "full scale") -> float:
    """``value`` as a positive finite float, or IRSTDError naming ``what`` (e.g. the config key)."""
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise IRSTDError(f"{what}: expected a positive number, got {value!r}") from None
    if not (np.isfinite(scale) and scale > 0):
        raise IRSTDError(f"{what}: must be a positive number, got {value!r}")
    return scale


def dataset_full_scale(
    root: str | os.PathLike, full_scale: float | None = None, skip_bad: bool = False
) -> float:
    """The intensity full scale of the dataset at ``root`` by the rule in the module docstring.

    Reads every image file of ``root/images`` once (not only one split's, so that the training and
    the test split of a dataset share one scale). ``full_scale`` given: returned after a range check,
    nothing is read. ``skip_bad``: files that cannot be decoded are left out instead of raising.

    Raises:
        IRSTDError: no images, an unreadable file (without ``skip_bad``), 8-bit files mixed with
            wider or float ones, float images outside [0, 1], integers above 65535.
    """
    if full_scale is not None:
        return check_full_scale(full_scale)
    from irstd.data.scale import full_scale_for_max

    root = _dataset_root(root)
    folder = _sub_folder(root, "images") if (root / "images").is_dir() or not is_target_free(root) else root
    by_stem, _ = scan_image_folder(folder)
    kinds: dict[str, Path] = {}  # "8-bit" / "16-bit" / "float" -> first file of that kind
    peak = 0.0
    for path in (p for paths in by_stem.values() for p in paths):
        try:
            image = read_image(path)
        except IRSTDError:
            if skip_bad:
                continue
            raise
        if image.dtype == np.uint8:
            kind = "8-bit"
        elif np.issubdtype(image.dtype, np.integer):
            kind = "16-bit"
        else:
            kind = "float"
        kinds.setdefault(kind, path)
        value = float(image.max())
        if kind == "16-bit" and (image.min() < 0 or value > 65535):
            raise IRSTDError(
                f"{path}: integer values {int(image.min())}..{int(value)} outside 0..65535; "
                "give the full scale explicitly (data.full_scale, --full-scale)"
            )
        peak = max(peak, value)
    if not kinds:
        raise IRSTDError(f"{folder}: no readable images to take the intensity full scale from")
    if len(kinds) > 1:
        shown = ", ".join(f"{k} ({p.name})" for k, p in kinds.items())
        raise IRSTDError(
            f"{folder}: images of different kinds ({shown}): one intensity full scale cannot serve "
            "them all; convert the images to one bit depth"
        )
    (kind,) = kinds
    if kind == "8-bit":
        return 255.0
    if kind == "16-bit":
        return full_scale_for_max(peak)
    if peak > 1.0:
        raise IRSTDError(
            f"{folder}: float images with values up to {peak:g}: give their full scale explicitly "
            "(data.full_scale, --full-scale)"
        )
    return 1.0


# --------------------------------------------------------------------------------------------
# Normalisation and loading


def normalize_image(array: np.ndarray, eps: float = NORMALIZE_EPS) -> np.ndarray:
    """Per-image standardisation ``(x - mean) / max(std, eps)`` of native values, as float32.

    Args:
        array: image of any real dtype and value range (uint8, uint16, int32, float), usually
            ``H x W`` from :func:`~irstd.data.io.read_image`; statistics are over all elements.
        eps: floor of the standard deviation (in the image's own units); a flat image maps to 0.

    Returns:
        ``float32`` array of the same shape with mean 0 and standard deviation 1 (unless flat).
    """
    x = np.asarray(array)
    if x.size == 0:
        raise ValueError("normalize_image: empty array")
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"normalize_image expects a numeric array, got {x.dtype}")
    x = x.astype(np.float64)
    mean = x.mean()
    std = x.std()
    return ((x - mean) / max(float(std), eps)).astype(np.float32)


def load_sample(
    image_path: str | os.PathLike, mask_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Read one image (native dtype, ``H x W``) and its mask (``bool H x W``), checking sizes.

    Raises:
        IRSTDError: either file unreadable, or the sizes differ (message names both files).
    """
    image = read_image(image_path)
    mask = read_mask(mask_path)
    if image.shape != mask.shape:
        raise IRSTDError(
            f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from image "
            f"{image_path} size {image.shape[1]}x{image.shape[0]}"
        )
    return image, mask


class _Files:
    """The image and mask files of one dataset folder, scanned once."""

    def __init__(self, root: Path):
        self.root = root
        self.images_dir = _sub_folder(root, "images")
        self.masks_dir = _sub_folder(root, "masks")
        self.images, ignored_images = scan_image_folder(self.images_dir)
        self.masks, ignored_masks = scan_image_folder(self.masks_dir)
        self.ignored = ignored_images + ignored_masks

    def resolve(self, item: str) -> tuple[Path, Path]:
        """``(image, mask)`` paths of one id, or IRSTDError saying what is wrong."""
        images = self.images.get(item, [])
        masks = self.masks.get(item) or self.masks.get(item + MASK_SUFFIX, [])
        if len(images) > 1:
            names = ", ".join(p.name for p in images)
            raise IRSTDError(f"{self.images_dir}: several image files for id '{item}' ({names})")
        if len(masks) > 1:
            names = ", ".join(p.name for p in masks)
            raise IRSTDError(f"{self.masks_dir}: several mask files for id '{item}' ({names})")
        if not images and not masks:
            raise IRSTDError(
                f"{self.root}: id '{item}' has no image in images/ and no mask in masks/"
            )
        if not images:
            raise IRSTDError(f"{self.images_dir}: no image file for id '{item}'")
        if not masks:
            raise IRSTDError(
                f"{self.masks_dir}: no mask file for id '{item}' "
                f"(looked for {item}.<ext> and {item}{MASK_SUFFIX}.<ext>)"
            )
        return images[0], masks[0]


def _ids_and_source(
    root: Path, split: str | None, ids: Sequence[str] | None
) -> tuple[list[str], str, str | None]:
    if (split is None) == (ids is None):
        raise ValueError("give exactly one of split= or ids=")
    if split is not None:
        items, source = _resolve_split(root, split)
        return items, source, split
    if isinstance(ids, str):
        raise TypeError("ids must be a sequence of ids, not a single string")
    items = [str(i) for i in ids]
    if not items:
        raise IRSTDError(f"{root}: no ids given")
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise IRSTDError(f"{root}: id '{item}' given twice")
        seen.add(item)
    return items, f"{root} (ids given by the caller)", None


def _listing(problems: Sequence[tuple[str, str]], limit: int = _MAX_LISTED) -> str:
    shown = "; ".join(f"{item}: {reason}" for item, reason in problems[:limit])
    more = len(problems) - limit
    return shown + (f"; ... and {more} more" if more > 0 else "")


def target_free_images(root: str | os.PathLike) -> Path:
    """The frames folder of a target-free dataset: ``root/images`` when it exists, else ``root``."""
    root = _dataset_root(root)
    return root / "images" if (root / "images").is_dir() else root


def is_target_free(root: str | os.PathLike) -> bool:
    """True when ``root`` is a folder of frames without ground truth: no ``masks/`` folder, and
    image files in ``root/images`` (or in ``root`` itself when it has no ``images/``)."""
    path = Path(root).expanduser()
    if not path.is_dir() or (path / "masks").is_dir():
        return False
    folder = path / "images" if (path / "images").is_dir() else path
    return bool(scan_image_folder(folder)[0])


class _TargetFreeFiles:
    """The frames of a target-free dataset folder (no masks), scanned once."""

    def __init__(self, root: Path):
        self.root = root
        self.images_dir = target_free_images(root)
        self.images, self.ignored = scan_image_folder(self.images_dir)
        if not self.images:
            extensions = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
            raise IRSTDError(f"{self.images_dir}: no image files (looked for {extensions})")

    def resolve(self, item: str) -> tuple[Path, None]:
        images = self.images.get(item, [])
        if len(images) > 1:
            names = ", ".join(p.name for p in images)
            raise IRSTDError(f"{self.images_dir}: several image files for id '{item}' ({names})")
        if not images:
            raise IRSTDError(f"{self.images_dir}: no image file for id '{item}'")
        return images[0], None


def _load(image_path: Path, mask_path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if mask_path is None:  # target-free: the ground truth is empty
        image = read_image(image_path)
        return image, np.zeros(image.shape, dtype=bool)
    return load_sample(image_path, mask_path)


def _check_one(files: _Files, item: str) -> str | None:
    try:
        image_path, mask_path = files.resolve(item)
        _load(image_path, mask_path)
    except IRSTDError as exc:
        return str(exc)
    return None


class IRSTDDataset(Dataset):
    """A dataset split as a torch Dataset of normalised images and binary masks.

    Args:
        root: dataset folder (layout in the module docstring).
        split: split name for :func:`read_split`; exclusive with ``ids``.
        ids: explicit ids (e.g. from :func:`carve_validation`); exclusive with ``split``.
        transform: optional callable ``(image float32 HxW, mask bool HxW, rng) -> (image, mask)``,
            e.g. :class:`~irstd.data.transforms.TrainTransform`; ``rng`` is a
            ``numpy.random.Generator`` seeded as the module docstring describes.
        skip_bad: decode every sample now, drop the bad ones and list them in :attr:`skipped`;
            otherwise only file existence is checked now and the first bad sample raises on load.
        full_scale: the intensity full scale, overriding :func:`dataset_full_scale`'s rule.
        target_free: a folder of frames without ``masks/`` (module docstring): every mask is
            empty; neither ``split`` nor ``ids`` gives every frame.

    Items are dicts ``{"image": FloatTensor 1xHxW (normalised), "mask": FloatTensor 1xHxW in
    {0, 1}, "id": str}`` at the original size unless the transform crops.

    Attributes:
        ids: the usable ids, in split order.
        skipped: ``(id, reason)`` of the samples dropped by ``skip_bad`` (empty otherwise).
        source: where the ids came from (index file path, or a description).
        ignored_files: non-image files found in ``images/`` and ``masks/`` (ignored).

    Raises:
        IRSTDError: missing root, folders or split file; ids without files (all listed in one
            message); with ``skip_bad``, no usable sample left.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        ids: Sequence[str] | None = None,
        transform: Transform | None = None,
        skip_bad: bool = False,
        full_scale: float | None = None,
        target_free: bool = False,
    ):
        self.root = _dataset_root(root)
        self._full_scale = None if full_scale is None else check_full_scale(full_scale)
        self.target_free = bool(target_free)
        if self.target_free:
            files = _TargetFreeFiles(self.root)
            if split is None and ids is None:
                items, self.source, self.split = sorted(files.images), f"{files.images_dir} (target-free, all frames)", None
            else:
                if split is not None and find_split_file(self.root, split) is None:
                    # the plain-folder 80/20 rule is for labelled data; frames are all or listed
                    raise IRSTDError(
                        f"{self.root}: a target-free folder without index files has no split "
                        f"'{split}'; give no split (every frame) or the ids"
                    )
                items, self.source, self.split = _ids_and_source(self.root, split, ids)
        else:
            files = _Files(self.root)
            items, self.source, self.split = _ids_and_source(self.root, split, ids)
        self.transform = transform
        self.skip_bad = bool(skip_bad)
        self.ignored_files = files.ignored
        self.skipped: list[tuple[str, str]] = []
        self._paths: dict[str, tuple[Path, Path]] = {}
        if self.skip_bad:
            kept = []
            for item in items:
                reason = _check_one(files, item)
                if reason is None:
                    kept.append(item)
                    self._paths[item] = files.resolve(item)
                else:
                    self.skipped.append((item, reason))
            if not kept:
                raise IRSTDError(
                    f"{self.source}: no usable sample, all {len(items)} skipped: "
                    f"{_listing(self.skipped)}"
                )
            items = kept
        else:
            problems = []
            for item in items:
                try:
                    self._paths[item] = files.resolve(item)
                except IRSTDError as exc:
                    problems.append((item, str(exc)))
            if problems:
                raise IRSTDError(
                    f"{self.source}: {len(problems)} of {len(items)} ids have missing or ambiguous "
                    f"files: {_listing(problems)}"
                )
        self.ids: list[str] = list(items)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def full_scale(self) -> float:
        """The dataset's intensity full scale (:func:`dataset_full_scale`, or the one given),
        computed on first use and kept: corrupt relative to this value, never per image."""
        if self._full_scale is None:
            self._full_scale = dataset_full_scale(self.root, skip_bad=self.skip_bad)
        return self._full_scale

    def check_in_scale(self, index: int, image: np.ndarray) -> None:
        """IRSTDError when the image of item ``index`` has values above :attr:`full_scale`
        (an explicit full scale too small for the data)."""
        peak = float(np.max(image))
        if peak > self.full_scale:
            raise IRSTDError(
                f"{self.image_path(self.ids[index])}: values up to {peak:g} exceed the dataset's "
                f"intensity full scale {self.full_scale:g}"
            )

    def image_path(self, item: str) -> Path:
        """Path of the image file of id ``item``."""
        return self._lookup(item)[0]

    def mask_path(self, item: str) -> Path | None:
        """Path of the mask file of id ``item`` (``None`` in a target-free dataset)."""
        return self._lookup(item)[1]

    def _lookup(self, item: str) -> tuple[Path, Path]:
        try:
            return self._paths[item]
        except KeyError:
            raise KeyError(f"id {item!r} is not in this dataset ({self.source})") from None

    def load_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(image native dtype HxW, mask bool HxW)`` of item ``index``, no normalisation."""
        item = self.ids[index]
        return _load(*self._lookup(item))

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator handed to the transform for item ``index`` (draws from torch's RNG)."""
        seed = int(torch.randint(0, 2**63 - 1, (1,), dtype=torch.int64))
        return np.random.default_rng([seed, int(index)])

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self.ids)
        if not 0 <= index < len(self.ids):
            raise IndexError(f"index {index} out of range for {len(self.ids)} samples")
        raw, mask = self.load_arrays(index)
        image = normalize_image(raw)
        if self.transform is not None:
            image, mask = self.transform(image, mask, self.item_rng(index))
        image = np.ascontiguousarray(image, dtype=np.float32)
        mask = np.ascontiguousarray(mask, dtype=np.float32)
        return {
            "image": torch.from_numpy(image[None]),
            "mask": torch.from_numpy(mask[None]),
            "id": self.ids[index],
        }

    def skipped_summary(self) -> str:
        """One line per skipped sample, headed by a count (empty string if none were skipped)."""
        if not self.skipped:
            return ""
        total = len(self.skipped) + len(self.ids)
        lines = [f"skipped {len(self.skipped)} of {total} samples of {self.source}:"]
        lines += [f"  {item}: {reason}" for item, reason in self.skipped]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"IRSTDDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self.ids)}, "
            f"skipped={len(self.skipped)}, transform={self.transform!r})"
        )


# --------------------------------------------------------------------------------------------
# Full check


@dataclass
class DatasetReport:
    """Result of :func:`check_dataset`.

    Attributes:
        root: the dataset folder.
        source: where the ids came from.
        good: ids whose image and mask decode and have equal sizes.
        problems: ``(id, message)`` for every bad sample; messages name the file and the problem.
        ignored_files: entries of ``images/`` and ``masks/`` that are not image files (ignored).
    """

    root: Path
    source: str
    good: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    ignored_files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every sample is usable."""
        return not self.problems

    @property
    def checked(self) -> int:
        """Number of ids checked."""
        return len(self.good) + len(self.problems)

    def format(self, limit: int | None = None) -> str:
        """Human-readable report: a summary line, then one line per problem (up to ``limit``)."""
        head = f"{self.source}: {len(self.good)} of {self.checked} samples usable"
        if self.problems:
            head += f", {len(self.problems)} bad"
        if self.ignored_files:
            head += f", {len(self.ignored_files)} non-image file(s) ignored"
        shown = self.problems if limit is None else self.problems[:limit]
        lines = [head] + [f"  {item}: {reason}" for item, reason in shown]
        if len(shown) < len(self.problems):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


def check_dataset(
    root: str | os.PathLike, split: str | None = None, ids: Sequence[str] | None = None
) -> DatasetReport:
    """Decode every sample of a split (or of all images when ``split`` and ``ids`` are None).

    Unlike :class:`IRSTDDataset`, per-sample problems (missing, ambiguous, unreadable files, size
    mismatches) never raise: they are all collected in the report.

    Raises:
        IRSTDError: only for problems that prevent checking at all (missing root, ``images/`` or
            ``masks/``, missing or malformed split file).
    """
    path = _dataset_root(root)
    files = _Files(path)
    if split is None and ids is None:
        items = sorted(files.images)
        source = f"{path} (all images)"
    else:
        items, source, _ = _ids_and_source(path, split, ids)
    report = DatasetReport(root=path, source=source, ignored_files=files.ignored)
    for item in items:
        reason = _check_one(files, item)
        if reason is None:
            report.good.append(item)
        else:
            report.problems.append((item, reason))
    return report
