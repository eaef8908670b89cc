"""The Dynamic-ISTD protocol of paper 000 (Section 4 and 5.1) applied to any labelled dataset
(the library side of ``irstd dynamic``).

The public release has no generator; this follows the paper's text:

* every image of the dataset (``images/``, each with its mask) goes to **train** or **test**,
  50/50, by :func:`irstd.data.carve_validation` with the seed (a hash ranking: depends only on
  the set of ids and the seed);
* **train**: :data:`TRAIN_BLUR_FRACTION` (30 %) of the training images, chosen the same way with a
  seed derived from the seed, get motion blur of length 5 at 45 degrees
  (:data:`TRAIN_BLUR`); the other 70 % stay as they are;
* **test**: every image gets motion blur of length 5 (the paper gives the length only for the
  training set) at one of the paper's discrete angles :data:`TEST_ANGLES` (25, 45, 90, 135 and
  150 degrees, the ones it lists), drawn per image, then the composite of five noises (Gaussian,
  salt-and-pepper, speckle, uniform, Poisson) at proportion 0.05
  (:func:`irstd.corruptions.functional.composite_noise`).

Blur and noise are the toolkit's corruptions (:mod:`irstd.corruptions.functional`) at the dataset's
intensity full scale (:func:`irstd.data.dataset.dataset_full_scale`), so 16-bit data is degraded in
proportion to its range. Per-image randomness comes from
:func:`irstd.corruptions.derive_seed` ``(seed, purpose + id)``: the output is a function of the
input and the seed, byte for byte (PNG encoding included), whatever the processing order.

Output, in the common layout: ``images/<id>.png`` (grey, the input's bit depth), ``masks/``
(the input's mask files, copied byte for byte), ``img_idx/train_<name>.txt``,
``img_idx/test_<name>.txt`` and ``dynamic.json`` (the protocol and, per image, its split and
degradation). Staged: a failure leaves nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from irstd.errors import IRSTDError

__all__ = ["TRAIN_FRACTION", "TRAIN_BLUR_FRACTION", "TRAIN_BLUR", "TEST_BLUR_LENGTH", "TEST_ANGLES",
           "TEST_NOISE", "RECORD_NAME", "make_dynamic"]

TRAIN_FRACTION = 0.5
TRAIN_BLUR_FRACTION = 0.3
TRAIN_BLUR = (5, 45.0)
TEST_BLUR_LENGTH = 5
TEST_ANGLES = (25.0, 45.0, 90.0, 135.0, 150.0)
TEST_NOISE = 0.05
RECORD_NAME = "dynamic.json"


def _integer(path: Path, image: np.ndarray) -> np.ndarray:
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype == np.int32 and image.min() >= 0 and image.max() <= 65535:
        return image.astype(np.uint16)
    raise IRSTDError(f"{path}: {image.dtype} image; irstd dynamic writes 8- and 16-bit images")


def make_dynamic(
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    name: str | None = None,
    overwrite: bool = False,
    test_noise: float = TEST_NOISE,
) -> dict:
    """Write the Dynamic-ISTD version of ``dataset`` to ``out`` (module docstring).

    ``test_noise`` is the composite noise's proportion on the test images (paper: 0.05; 0 leaves
    them blurred only). The split, the training images and the test blur do not depend on it, so
    runs trained on one variant can be tested on another (a noise-severity sweep).

    Returns:
        Summary: ``out``, ``name``, ``train``, ``test``, ``train_blurred``, ``full_scale``,
        ``test_noise``.

    Raises:
        IRSTDError: missing dataset, images without masks, unreadable files, overlapping input and
            output, a non-empty ``out`` without ``overwrite``.
    """
    from irstd.corruptions import derive_seed
    from irstd.corruptions import functional as CF
    from irstd.data import IRSTDDataset, carve_validation
    from irstd.data.dataset import dataset_full_scale, scan_image_folder
    from irstd.data.io import atomic_write_bytes, staged_dir, write_image

    src = Path(dataset).expanduser()
    if not src.is_dir():
        raise IRSTDError(f"{src}: dataset folder not found")
    if not (src / "images").is_dir():
        raise IRSTDError(f"{src / 'images'}: folder not found (a dataset folder holds images/ and masks/)")
    out = Path(out).expanduser()
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents or o in s.parents:
        raise IRSTDError(f"{out}: the output folder and the dataset {src} overlap")
    if out.exists() and not out.is_dir():
        raise IRSTDError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise IRSTDError(f"{out}: folder is not empty (use --overwrite to replace what irstd dynamic writes)")
    name = name or f"Dynamic-{s.name}"
    test_noise = float(test_noise)
    if not 0.0 <= test_noise <= 0.5:
        raise IRSTDError(f"test noise proportion {test_noise:g} is outside [0, 0.5]")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise IRSTDError(f"invalid dataset name {name!r}")

    ids = sorted(scan_image_folder(src / "images")[0])
    data = IRSTDDataset(src, ids=ids)  # every image needs its mask: checked here, before writing
    if len(ids) < 4:
        raise IRSTDError(f"{src}: {len(ids)} images; the 50/50 split with 30 % blurred training images needs at least 4")
    scale = dataset_full_scale(src)
    train, test = carve_validation(ids, TRAIN_FRACTION, seed)
    blurred = set(carve_validation(train, TRAIN_BLUR_FRACTION, derive_seed(seed, "dynamic:train-blur"))[1])
    test_set = set(test)
    record_images = []
    with staged_dir(out) as stage:
        for index, item in enumerate(data.ids):
            path = data.image_path(item)
            image = _integer(path, data.load_arrays(index)[0])
            if image.max() > scale:
                raise IRSTDError(f"{path}: values up to {int(image.max())} exceed the full scale {scale:g}")
            entry: dict = {"id": item, "split": "test" if item in test_set else "train"}
            if item in test_set:
                angles = np.random.default_rng(derive_seed(seed, f"dynamic:angle:{item}"))
                angle = TEST_ANGLES[int(angles.integers(len(TEST_ANGLES)))]
                noise_seed = derive_seed(seed, f"dynamic:noise:{item}")
                image = CF.motion_blur(image, TEST_BLUR_LENGTH, angle, full_scale=scale)
                entry["blur"] = {"length": TEST_BLUR_LENGTH, "angle": angle}
                if test_noise > 0:
                    image = CF.composite_noise(image, test_noise, seed=noise_seed, full_scale=scale)
                    entry["noise"] = {"name": "composite_noise", "proportion": test_noise, "seed": noise_seed}
            elif item in blurred:
                image = CF.motion_blur(image, TRAIN_BLUR[0], TRAIN_BLUR[1], full_scale=scale)
                entry["blur"] = {"length": TRAIN_BLUR[0], "angle": TRAIN_BLUR[1]}
            write_image(stage / "images" / f"{item}.png", image)
            mask = data.mask_path(item)
            atomic_write_bytes(stage / "masks" / mask.name, mask.read_bytes())
            record_images.append(entry)
        for split, items in (("train", train), ("test", test)):
            atomic_write_bytes(stage / "img_idx" / f"{split}_{name}.txt", ("\n".join(items) + "\n").encode())
        record = {
            "protocol": "Dynamic-ISTD (paper 000, Sections 4 and 5.1)",
            "source": str(s),
            "name": name,
            "seed": int(seed),
            "full_scale": scale,
            "train_fraction": TRAIN_FRACTION,
            "train_blur_fraction": TRAIN_BLUR_FRACTION,
            "train_blur": {"length": TRAIN_BLUR[0], "angle": TRAIN_BLUR[1]},
            "test_blur": {"length": TEST_BLUR_LENGTH, "angles": list(TEST_ANGLES)},
            "test_noise": {"name": "composite_noise", "proportion": test_noise},
            "images": record_images,
        }
        atomic_write_bytes(stage / RECORD_NAME, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return {"out": str(out), "name": name, "train": len(train), "test": len(test), "train_blurred": len(blurred),
            "full_scale": scale, "test_noise": test_noise}
