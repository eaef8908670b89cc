"""Data layer of irstd: image I/O, dataset layout and splits, normalisation, augmentation.

* :mod:`irstd.data.io` -- the one image reader/writer (bit depths, colour modes, mask binarisation).
* :mod:`irstd.data.dataset` -- split discovery, validation carving, per-image normalisation,
  :class:`IRSTDDataset`, :func:`check_dataset`.
* :mod:`irstd.data.transforms` -- :class:`TrainTransform`, :func:`pad_to_stride`, :func:`crop_to`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from irstd._lazy import lazy_exports

# Names are resolved on first use so that ``import irstd.data.io`` (synth, evaluate, metrics)
# does not pay for importing torch, which only the dataset and transforms need.
_EXPORTS = {
    "irstd.data.dataset": (
        "PLAIN_SPLIT_SEED",
        "PLAIN_TEST_FRACTION",
        "DatasetReport",
        "IRSTDDataset",
        "carve_validation",
        "check_dataset",
        "find_split_file",
        "list_splits",
        "load_sample",
        "normalize_image",
        "read_index_file",
        "read_split",
    ),
    "irstd.data.io": (
        "IMAGE_EXTENSIONS",
        "atomic_write_bytes",
        "binarize_mask",
        "full_scale",
        "is_image_file",
        "read_image",
        "read_mask",
        "read_probability",
        "write_image",
    ),
    "irstd.data.transforms": ("TrainTransform", "crop_to", "pad_to_stride"),
}
_WHERE, __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


if TYPE_CHECKING:  # static analysers and IDEs see the real imports
    from irstd.data.dataset import (
        PLAIN_SPLIT_SEED,
        PLAIN_TEST_FRACTION,
        DatasetReport,
        IRSTDDataset,
        carve_validation,
        check_dataset,
        find_split_file,
        list_splits,
        load_sample,
        normalize_image,
        read_index_file,
        read_split,
    )
    from irstd.data.io import (
        IMAGE_EXTENSIONS,
        atomic_write_bytes,
        binarize_mask,
        full_scale,
        is_image_file,
        read_image,
        read_mask,
        read_probability,
        write_image,
    )
    from irstd.data.transforms import TrainTransform, crop_to, pad_to_stride

__all__ = [
    "IMAGE_EXTENSIONS",
    "PLAIN_SPLIT_SEED",
    "PLAIN_TEST_FRACTION",
    "DatasetReport",
    "IRSTDDataset",
    "TrainTransform",
    "atomic_write_bytes",
    "binarize_mask",
    "carve_validation",
    "check_dataset",
    "crop_to",
    "find_split_file",
    "full_scale",
    "is_image_file",
    "list_splits",
    "load_sample",
    "normalize_image",
    "pad_to_stride",
    "read_image",
    "read_index_file",
    "read_mask",
    "read_probability",
    "read_split",
    "write_image",
]
