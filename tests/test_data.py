"""irstd.data: splits, validation carving, normalisation, IRSTDDataset, bad input, transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from irstd.data import (
    IRSTDDataset,
    TrainTransform,
    carve_validation,
    check_dataset,
    crop_to,
    find_split_file,
    list_splits,
    normalize_image,
    pad_to_stride,
    read_image,
    read_split,
    write_image,
)
from irstd.errors import IRSTDError

# ----------------------------------------------------------------------------------------------
# Helpers: tiny datasets written on the fly


def _content(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with a bright 3x3 target and its mask."""
    rng = np.random.default_rng(seed)
    grey = rng.integers(10, 120, size=(h, w)).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    r, c = int(rng.integers(1, h - 4)), int(rng.integers(1, w - 4))
    mask[r : r + 3, c : c + 3] = 255
    grey[mask > 0] = 240
    return grey, mask


def _write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}[path.suffix.lower()]
    Image.fromarray(mask, "L").save(path, format=fmt)


def make_dataset(
    root: Path,
    ids: list[str],
    size: tuple[int, int] = (24, 20),
    image_ext: str = ".png",
    mask_ext: str = ".png",
    index: str | None = "img_idx",
    test_ids: list[str] | None = None,
) -> Path:
    """Write images/, masks/ and train/test lists; ``index``: img_idx, img_idx_plain, root or None."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for k, item in enumerate(ids):
        grey, mask = _content(size[0], size[1], seed=k)
        fmt = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF"}[image_ext.lower()]
        Image.fromarray(grey, "L").save(root / "images" / f"{item}{image_ext}", format=fmt)
        _write_mask(root / "masks" / f"{item}{mask_ext}", mask)
    test_ids = test_ids if test_ids is not None else ids[len(ids) * 3 // 4 :]
    train_ids = [i for i in ids if i not in test_ids]
    if index == "img_idx":
        (root / "img_idx").mkdir(exist_ok=True)
        (root / "img_idx" / "train_Toy.txt").write_text("\n".join(train_ids) + "\n")
        (root / "img_idx" / "test_Toy.txt").write_text("\n".join(test_ids) + "\n")
    elif index == "img_idx_plain":
        (root / "img_idx").mkdir(exist_ok=True)
        (root / "img_idx" / "train.txt").write_text("\n".join(train_ids))
        (root / "img_idx" / "test.txt").write_text("\n".join(test_ids))
    elif index == "root":
        (root / "train.txt").write_text("\n".join(train_ids))
        (root / "test.txt").write_text("\n".join(test_ids))
    return root


IDS = [f"img_{k}" for k in range(8)]


def _raises(match_parts: list[str], fn, *args, **kwargs) -> str:
    with pytest.raises(IRSTDError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    for part in match_parts:
        assert str(part) in message, (part, message)
    return message


# ----------------------------------------------------------------------------------------------
# Intensity full scale of a dataset


def _set_image(root: Path, item: str, array: np.ndarray) -> None:
    path = next((root / "images").glob(f"{item}.*"))
    path.unlink()
    write_image(root / "images" / f"{item}.png", array)


def test_dataset_full_scale_rules(tmp_path):
    from irstd.data.dataset import dataset_full_scale

    root8 = make_dataset(tmp_path / "d8", IDS)
    assert dataset_full_scale(root8) == 255.0
    assert IRSTDDataset(root8, split="train").full_scale == 255.0

    # 14-bit counts in 16-bit files, one frame dark: the dataset's peak sets the scale for all
    root16 = make_dataset(tmp_path / "d16", IDS)
    rng = np.random.default_rng(0)
    for k, item in enumerate(IDS):
        peak = 15000 if item == IDS[-1] else 3000  # the bright frame is in the test split
        _set_image(root16, item, rng.integers(100, peak, size=(24, 20)).astype(np.uint16))
    train = IRSTDDataset(root16, split="train")
    assert train.full_scale == 16383.0  # not 4095 (the training frames alone), not 65535
    assert IRSTDDataset(root16, split="test").full_scale == 16383.0  # train and test share it
    _set_image(root16, IDS[-1], np.full((24, 20), 40000, np.uint16))
    assert dataset_full_scale(root16) == 65535.0
    assert train.full_scale == 16383.0  # computed once and kept on the dataset object

    # float images: 1.0 in [0, 1]; another range must be declared
    rootf = make_dataset(tmp_path / "df", IDS[:2], index=None)
    for item in IDS[:2]:
        path = next((rootf / "images").glob(f"{item}.*"))
        path.unlink()
        Image.fromarray(np.full((24, 20), 0.5, np.float32), "F").save(rootf / "images" / f"{item}.tif")
    assert dataset_full_scale(rootf) == 1.0
    Image.fromarray(np.full((24, 20), 7.0, np.float32), "F").save(rootf / "images" / f"{IDS[0]}.tif")
    _raises(["float images with values up to 7", "data.full_scale"], dataset_full_scale, rootf)
    assert dataset_full_scale(rootf, full_scale=8.0) == 8.0

    # 8-bit files among 16-bit ones: no single scale
    mixed = make_dataset(tmp_path / "mixed", IDS[:3], index=None)
    _set_image(mixed, IDS[0], np.full((24, 20), 9000, np.uint16))
    _raises(["different kinds", "8-bit", "16-bit"], dataset_full_scale, mixed)


def test_explicit_full_scale_overrides_and_is_checked(tmp_path):
    from irstd.data.dataset import dataset_full_scale

    root = make_dataset(tmp_path / "d", IDS)
    ds = IRSTDDataset(root, split="train", full_scale=1000)
    assert ds.full_scale == 1000.0
    ds.check_in_scale(0, ds.load_arrays(0)[0])  # 8-bit values fit in 1000
    small = IRSTDDataset(root, split="train", full_scale=100)
    _raises(["exceed the dataset's intensity full scale 100", IDS[0]], small.check_in_scale, 0, small.load_arrays(0)[0])
    for bad in (0, -1, float("nan"), "x"):
        _raises(["full scale"], IRSTDDataset, root, split="train", full_scale=bad)
    (root / "images" / f"{IDS[1]}.png").write_bytes(b"broken")
    _raises([f"{IDS[1]}.png"], dataset_full_scale, root)
    assert dataset_full_scale(root, skip_bad=True) == 255.0
    assert dataset_full_scale(root, full_scale=300) == 300.0  # nothing read


# ----------------------------------------------------------------------------------------------
# Splits


@pytest.mark.parametrize("index", ["img_idx", "img_idx_plain", "root"])
def test_read_split_index_layouts(tmp_path, index):
    root = make_dataset(tmp_path / "d", IDS, index=index)
    assert read_split(root, "train") == IDS[:6]
    assert read_split(root, "test") == IDS[6:]
    assert list_splits(root) == ["test", "train"]
    ds = IRSTDDataset(root, "test")
    assert ds.ids == IDS[6:] and len(ds) == 2
    assert Path(ds.source) == find_split_file(root, "test")


def test_index_file_whitespace_blank_lines_bom_crlf(tmp_path):
    root = make_dataset(tmp_path / "d", IDS, index=None)
    (root / "img_idx").mkdir()
    text = "\ufeff  img_0 \r\n\r\n\timg_3\r\n   \nimg_5\t\n\n"
    (root / "img_idx" / "train_X.txt").write_bytes(text.encode("utf-8"))
    (root / "img_idx" / "test_X.txt").write_text("img_7")
    assert read_split(root, "train") == ["img_0", "img_3", "img_5"]
    assert IRSTDDataset(root, "train").ids == ["img_0", "img_3", "img_5"]


def test_duplicate_id_in_index_is_error(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    (root / "img_idx" / "train_Toy.txt").write_text("img_0\nimg_1\n\nimg_0\n")
    _raises(["train_Toy.txt", "img_0", "twice", "lines 1 and 4"], read_split, root, "train")


def test_empty_split_file_is_error(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    (root / "img_idx" / "test_Toy.txt").write_text("\n  \n")
    _raises(["test_Toy.txt", "empty"], read_split, root, "test")
    _raises(["test_Toy.txt", "empty"], IRSTDDataset, root, "test")


def test_missing_split_file_says_what_was_looked_for(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    (root / "img_idx" / "test_Toy.txt").unlink()
    msg = _raises([str(root), "test"], read_split, root, "test")
    assert "img_idx/test_*.txt" in msg and "img_idx/test.txt" in msg and "test.txt" in msg
    _raises(["val"], read_split, root, "val")


def test_other_split_names_and_trainval_fallback(tmp_path):
    root = make_dataset(tmp_path / "d", IDS, index=None)
    (root / "trainval.txt").write_text("img_0\nimg_1\n")
    (root / "test.txt").write_text("img_2\n")
    (root / "img_idx").mkdir()
    (root / "img_idx" / "val_Toy.txt").write_text("img_4\n")
    assert read_split(root, "train") == ["img_0", "img_1"]  # trainval stands in for train
    assert read_split(root, "trainval") == ["img_0", "img_1"]
    assert read_split(root, "val") == ["img_4"]
    assert set(list_splits(root)) == {"train", "trainval", "test", "val"}


def test_lookup_order_and_ambiguity(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)  # img_idx/train_Toy.txt
    (root / "train.txt").write_text("img_7\n")
    assert read_split(root, "train") == IDS[:6]  # img_idx wins over the root file
    (root / "img_idx" / "train_Other.txt").write_text("img_1\n")
    _raises(["img_idx", "train_Other.txt", "train_Toy.txt"], read_split, root, "train")
    (root / "img_idx" / "train.txt").write_text("img_2\n")  # an exact name is never ambiguous
    assert read_split(root, "train") == ["img_2"]


def test_plain_folder_seeded_split(tmp_path):
    ids = [f"frame{k:03d}" for k in range(20)]
    root = make_dataset(tmp_path / "d", ids, index=None)
    train, test = read_split(root, "train"), read_split(root, "test")
    assert len(test) == 4 and len(train) == 16  # 80/20
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(ids)
    assert (train, test) == (read_split(root, "train"), read_split(root, "test"))
    assert find_split_file(root, "train") is None
    assert "seeded" in IRSTDDataset(root, "test").source
    _raises(["no index file", "val"], read_split, root, "val")


def test_plain_folder_with_one_image_cannot_be_split(tmp_path):
    root = make_dataset(tmp_path / "d", ["only"], index=None)
    _raises(["images", "at least 2"], read_split, root, "train")


# ----------------------------------------------------------------------------------------------
# Validation carving


def test_carve_validation_deterministic_disjoint_order_independent():
    ids = [f"Misc_{k}" for k in range(1, 342)]
    train, val = carve_validation(ids, 0.1, seed=0)
    assert len(val) == 34 and len(train) == 307
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(ids)
    shuffled = list(np.random.default_rng(5).permutation(ids))
    assert carve_validation(shuffled, 0.1, seed=0) == (train, val)
    assert carve_validation(ids, 0.1, seed=0) == (train, val)
    other_train, other_val = carve_validation(ids, 0.1, seed=1)
    assert other_val != val
    assert train == sorted(train) and val == sorted(val)


def test_carve_validation_small_and_invalid():
    for n in (2, 3, 5):
        train, val = carve_validation([str(k) for k in range(n)], 0.1)
        assert train and val and len(train) + len(val) == n
    train, val = carve_validation(["a", "b", "c", "d"], 0.99)
    assert len(train) == 1 and len(val) == 3
    with pytest.raises(IRSTDError):
        carve_validation(["a"])
    with pytest.raises(ValueError):
        carve_validation(["a", "b"], fraction=0.0)
    with pytest.raises(ValueError):
        carve_validation(["a", "b"], fraction=1.0)
    with pytest.raises(ValueError):
        carve_validation(["a", "a", "b"])


# ----------------------------------------------------------------------------------------------
# Normalisation


def test_normalize_image_standardises():
    x = np.random.default_rng(0).integers(0, 255, (30, 40)).astype(np.uint8)
    out = normalize_image(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.std()) - 1) < 1e-4
    expected = (x - x.astype(np.float64).mean()) / x.astype(np.float64).std()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_normalize_image_bit_depth_independent():
    eight = np.random.default_rng(1).integers(0, 256, (16, 16)).astype(np.uint8)
    fourteen = eight.astype(np.uint16) * 64 + 3  # same scene on a 14-bit sensor with offset
    sixteen = eight.astype(np.uint16) * 257
    floats = (eight / 255.0 * 2.0 + 10.0).astype(np.float32)  # radiometric float frame
    ref = normalize_image(eight)
    for other in (fourteen, sixteen, floats):
        np.testing.assert_allclose(normalize_image(other), ref, atol=2e-4)


def test_normalize_image_full_range_not_truncated():
    x = np.zeros((4, 4), np.uint16)
    x[0, 0], x[1, 1] = 300, 60000  # both above 255: truncation to 8 bits would make them equal
    out = normalize_image(x)
    assert out[1, 1] > out[0, 0] > out[2, 2]


def test_normalize_flat_image_is_zero():
    out = normalize_image(np.full((5, 6), 1234, np.uint16))
    assert out.dtype == np.float32 and not out.any()


# ----------------------------------------------------------------------------------------------
# Loader: every mode, bit depth and extension


def _save_mode(path: Path, grey8: np.ndarray, kind: str) -> np.ndarray:
    """Save ``grey8`` in a given PIL mode/bit depth; return the grey values the file really holds."""
    if kind == "L":
        Image.fromarray(grey8, "L").save(path)
        return grey8
    if kind == "RGB":
        Image.fromarray(np.stack([grey8] * 3, -1), "RGB").save(path)
        return grey8
    if kind == "RGBA":
        alpha = np.full_like(grey8, 200)
        Image.fromarray(np.stack([grey8] * 3 + [alpha], -1), "RGBA").save(path)
        return grey8
    if kind == "P":
        img = Image.fromarray(grey8, "L").convert("P")  # palette of grey levels
        img.save(path)
        return np.asarray(img.convert("L"))
    if kind == "I;16":
        values = grey8.astype(np.uint16) * 250 + 7  # up to ~60000, far above 255
        Image.fromarray(values).save(path)
        assert Image.open(path).mode == "I;16"
        return values
    if kind == "14bit":
        values = grey8.astype(np.uint16) * 64 + 5  # 14-bit sensor in a 16-bit PNG
        write_image(path, values)
        return values
    if kind == "I":
        values = grey8.astype(np.int32) * 1000 - 5000
        Image.fromarray(values).save(path)
        assert Image.open(path).mode == "I"
        return values
    if kind == "F":
        values = grey8.astype(np.float32) * 0.01 + 280.0
        Image.fromarray(values).save(path)
        assert Image.open(path).mode == "F"
        return values
    raise AssertionError(kind)


MODES = [
    ("L", ".png"),
    ("RGB", ".png"),
    ("RGBA", ".png"),
    ("P", ".png"),
    ("I;16", ".png"),
    ("14bit", ".png"),
    ("I", ".tif"),
    ("F", ".tiff"),
    ("L", ".bmp"),
    ("RGB", ".BMP"),
    ("L", ".TIF"),
]


def test_loader_every_mode_and_bit_depth(tmp_path):
    root = tmp_path / "modes"
    (root / "images").mkdir(parents=True)
    expected = {}
    ids = []
    for k, (kind, ext) in enumerate(MODES):
        item = f"s{k}_{kind.replace(';', '')}"
        grey8, mask = _content(20 + k, 18 + 2 * k, seed=k)
        expected[item] = (_save_mode(root / "images" / f"{item}{ext}", grey8, kind), mask > 0)
        # Masks in a mix of formats and the SIRST "_pixels0" naming.
        mask_name = [f"{item}.png", f"{item}_pixels0.png", f"{item}.bmp", f"{item}.tif"][k % 4]
        _write_mask(root / "masks" / mask_name, mask)
        ids.append(item)
    ds = IRSTDDataset(root, ids=ids)
    assert ds.ids == ids
    for index, item in enumerate(ids):
        sample = ds[index]
        values, mask = expected[item]
        assert sample["id"] == item
        assert sample["image"].dtype == torch.float32 and sample["mask"].dtype == torch.float32
        assert sample["image"].shape == (1, *values.shape) == sample["mask"].shape
        assert set(np.unique(sample["mask"].numpy()).tolist()) <= {0.0, 1.0}
        np.testing.assert_array_equal(sample["mask"][0].numpy() > 0.5, mask)
        np.testing.assert_allclose(sample["image"][0].numpy(), normalize_image(values), atol=1e-5)
        raw, _ = ds.load_arrays(index)
        np.testing.assert_array_equal(raw, values)  # full native range, nothing truncated
    raw16, _ = ds.load_arrays(ids.index("s4_I16"))
    assert raw16.dtype == np.uint16 and raw16.max() > 255


def test_jpeg_images_load(tmp_path):
    root = make_dataset(tmp_path / "d", IDS[:4], index=None)
    for item in IDS[:4]:
        png = root / "images" / f"{item}.png"
        name = f"{item}.JPEG" if item == "img_0" else f"{item}.jpg"
        Image.open(png).save(root / "images" / name, format="JPEG", quality=95)
        png.unlink()
    ds = IRSTDDataset(root, ids=IDS[:4])
    assert ds.image_path("img_0").name == "img_0.JPEG"
    for k in range(4):
        sample = ds[k]
        assert sample["image"].shape == sample["mask"].shape == (1, 24, 20)


@pytest.mark.parametrize("image_ext,mask_ext", [(".bmp", ".png"), (".tif", ".bmp"), (".png", ".tiff")])
def test_mask_extension_may_differ(tmp_path, image_ext, mask_ext):
    root = make_dataset(tmp_path / "d", IDS, image_ext=image_ext, mask_ext=mask_ext)
    ds = IRSTDDataset(root, "train")
    assert ds.image_path("img_0").suffix == image_ext and ds.mask_path("img_0").suffix == mask_ext
    assert ds[0]["mask"].sum() == 9


def test_dataset_argument_errors(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    with pytest.raises(ValueError):
        IRSTDDataset(root)
    with pytest.raises(ValueError):
        IRSTDDataset(root, "train", ids=["img_0"])
    _raises(["twice", "img_1"], IRSTDDataset, root, ids=["img_1", "img_2", "img_1"])
    _raises(["no ids"], IRSTDDataset, root, ids=[])
    with pytest.raises(KeyError):
        IRSTDDataset(root, "test").image_path("img_0")
    with pytest.raises(IndexError):
        IRSTDDataset(root, "test")[5]


# ----------------------------------------------------------------------------------------------
# Bad input: every case is one IRSTDError naming the file


def test_missing_root(tmp_path):
    _raises([tmp_path / "nowhere", "not found"], IRSTDDataset, tmp_path / "nowhere", "train")
    _raises([tmp_path / "nowhere", "not found"], read_split, tmp_path / "nowhere", "train")
    (tmp_path / "file").write_text("x")
    _raises([tmp_path / "file"], IRSTDDataset, tmp_path / "file", "train")


@pytest.mark.parametrize("folder", ["images", "masks"])
def test_missing_folder(tmp_path, folder):
    root = make_dataset(tmp_path / "d", IDS)
    for f in (root / folder).iterdir():
        f.unlink()
    (root / folder).rmdir()
    _raises([root / folder, "folder not found"], IRSTDDataset, root, "train")
    _raises([root / folder], check_dataset, root, "train")


def test_ids_without_files_listed_together(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    (root / "images" / "img_1.png").unlink()
    (root / "masks" / "img_2.png").unlink()
    (root / "img_idx" / "train_Toy.txt").write_text("\n".join(IDS[:6] + ["ghost"]))
    msg = _raises(["train_Toy.txt", "3 of 7"], IRSTDDataset, root, "train")
    assert "img_1" in msg and str(root / "images") in msg
    assert "img_2" in msg and str(root / "masks") in msg
    assert "ghost" in msg


def test_corrupt_image_names_file(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    (root / "images" / "img_2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    ds = IRSTDDataset(root, "train")  # existence is fine; decoding fails on load
    _raises([root / "images" / "img_2.png", "not a readable image"], ds.__getitem__, 2)
    (root / "masks" / "img_3.png").write_bytes(b"")
    _raises([root / "masks" / "img_3.png", "empty"], ds.__getitem__, 3)


def test_size_mismatch_names_both_files(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    _write_mask(root / "masks" / "img_1.png", np.zeros((10, 12), np.uint8))
    ds = IRSTDDataset(root, "train")
    msg = _raises([root / "masks" / "img_1.png", root / "images" / "img_1.png"], ds.__getitem__, 1)
    assert "12x10" in msg and "20x24" in msg


def test_stray_files_are_ignored(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    (root / "images" / "readme.txt").write_text("notes")
    (root / "images" / "Thumbs.db").write_bytes(b"\x00\x01")
    (root / "images" / "._img_0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    (root / "masks" / ".DS_Store").write_bytes(b"\x00")
    (root / "masks" / "sub").mkdir()
    (root / "masks" / "img_0.png.bak").write_bytes(b"old")
    ds = IRSTDDataset(root, "train", skip_bad=True)
    assert ds.ids == IDS[:6] and not ds.skipped
    assert {p.name for p in ds.ignored_files} == {
        "readme.txt", "Thumbs.db", "._img_0.png", ".DS_Store", "sub", "img_0.png.bak"
    }
    assert ds.image_path("img_0").name == "img_0.png"
    assert all(ds[k]["image"].shape == (1, 24, 20) for k in range(len(ds)))
    # A plain folder (no index) with stray files splits only the real images.
    plain = make_dataset(tmp_path / "p", IDS, index=None)
    (plain / "images" / "notes.md").write_text("x")
    (plain / "images" / "._img_3.png").write_bytes(b"\x00")
    assert sorted(read_split(plain, "train") + read_split(plain, "test")) == IDS


def test_ambiguous_files_for_one_id(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    Image.open(root / "images" / "img_0.png").save(root / "images" / "img_0.bmp")
    _raises([root / "images", "img_0", "img_0.bmp", "img_0.png"], IRSTDDataset, root, "train")


def test_unreadable_split_file(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    (root / "img_idx" / "train_Toy.txt").write_bytes(b"\xff\xfe\x00bad\x80")
    _raises(["train_Toy.txt", "UTF-8"], read_split, root, "train")


def _bad_dataset(tmp_path: Path) -> Path:
    root = make_dataset(tmp_path / "d", IDS)
    (root / "images" / "img_1.png").write_text("garbage")  # corrupt
    _write_mask(root / "masks" / "img_2.png", np.zeros((5, 5), np.uint8))  # size mismatch
    (root / "masks" / "img_4.png").unlink()  # missing mask
    return root


def test_skip_bad_drops_and_reports(tmp_path):
    root = _bad_dataset(tmp_path)
    ds = IRSTDDataset(root, "train", skip_bad=True)
    assert ds.ids == ["img_0", "img_3", "img_5"]
    assert [item for item, _ in ds.skipped] == ["img_1", "img_2", "img_4"]
    reasons = dict(ds.skipped)
    assert "img_1.png" in reasons["img_1"] and "not a readable image" in reasons["img_1"]
    assert "img_2.png" in reasons["img_2"] and "5x5" in reasons["img_2"]
    assert "masks" in reasons["img_4"] and "img_4" in reasons["img_4"]
    summary = ds.skipped_summary()
    assert summary.startswith("skipped 3 of 6 samples") and "img_4" in summary
    assert all(ds[k]["image"].shape == (1, 24, 20) for k in range(len(ds)))
    # Without skip_bad, the missing mask stops construction, and the others stop loading.
    _raises(["img_4"], IRSTDDataset, root, "train")


def test_skip_bad_with_nothing_left(tmp_path):
    root = make_dataset(tmp_path / "d", IDS)
    for item in IDS[6:]:
        (root / "images" / f"{item}.png").write_text("garbage")
    parts = ["test_Toy.txt", "no usable sample", "img_6", "img_7"]
    _raises(parts, IRSTDDataset, root, "test", skip_bad=True)


def test_check_dataset_reports_everything(tmp_path):
    root = _bad_dataset(tmp_path)
    (root / "images" / "notes.txt").write_text("x")
    report = check_dataset(root, "train")
    assert not report.ok and report.checked == 6
    assert report.good == ["img_0", "img_3", "img_5"]
    assert [item for item, _ in report.problems] == ["img_1", "img_2", "img_4"]
    text = report.format()
    assert "3 of 6 samples usable" in text and "3 bad" in text and "1 non-image file" in text
    assert "img_1.png" in text and "img_2.png" in text
    everything = check_dataset(root)  # no split: every image in images/
    assert everything.checked == 8 and len(everything.problems) == 3
    assert check_dataset(make_dataset(tmp_path / "ok", IDS), "test").ok


# ----------------------------------------------------------------------------------------------
# Transforms


def _aligned_pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Image with a unique positive value per pixel and a mask that is a function of the value."""
    image = (np.arange(h * w, dtype=np.float32).reshape(h, w) + 1.0)
    mask = (image.astype(np.int64) % 7) == 0
    return image, mask


def test_crop_contains_target_when_forced():
    image = np.zeros((200, 300), np.float32)
    mask = np.zeros((200, 300), bool)
    mask[190, 295] = True  # one target pixel in a corner, far from most windows
    mask[5, 7] = True
    tf = TrainTransform(crop_size=32, target_prob=1.0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        img, msk = tf(image, mask, rng)
        assert img.shape == msk.shape == (32, 32) and msk.any()
    # Without forcing, most 32x32 windows of this frame miss both pixels.
    tf0 = TrainTransform(crop_size=32, target_prob=0.0)
    hits = sum(tf0(image, mask, rng)[1].any() for _ in range(200))
    assert hits < 50


def test_forced_crop_on_empty_mask_is_random_crop():
    image, _ = _aligned_pair(40, 50)
    img, msk = TrainTransform(16, target_prob=1.0, flip=False, transpose=False)(
        image, np.zeros((40, 50), bool), np.random.default_rng(1)
    )
    assert img.shape == (16, 16) and not msk.any() and (img > 0).all()


def test_padding_small_image():
    image, mask = _aligned_pair(10, 12)
    tf = TrainTransform(crop_size=16, target_prob=0.5, flip=True, transpose=True)
    rng = np.random.default_rng(3)
    for _ in range(20):
        img, msk = tf(image, mask, rng)
        assert img.shape == msk.shape == (16, 16) and img.dtype == np.float32 and msk.dtype == bool
        inside = img > 0
        assert inside.sum() == 10 * 12  # the whole image is kept ...
        assert (img[~inside] == 0).all() and not msk[~inside].any()  # ... and padded with 0 / False
        assert sorted(img[inside].tolist()) == sorted(image.ravel().tolist())
        assert msk.sum() == mask.sum()


def test_padding_one_axis_only():
    image, mask = _aligned_pair(10, 40)
    tf = TrainTransform((16, 24), flip=False, transpose=False)
    img, msk = tf(image, mask, np.random.default_rng(0))
    assert img.shape == (16, 24)
    rows = (img > 0).any(axis=1)
    assert rows.sum() == 10 and (img[rows] > 0).all()


def test_flips_and_transpose_keep_image_and_mask_aligned():
    image, mask = _aligned_pair(30, 30)
    tf = TrainTransform(crop_size=20, target_prob=0.5, flip=True, transpose=True)
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(60):
        img, msk = tf(image, mask, rng)
        assert img.flags.c_contiguous and msk.flags.c_contiguous
        np.testing.assert_array_equal(msk, (img.astype(np.int64) % 7) == 0)
        torch.from_numpy(img)  # no negative strides
        # Which geometric variant was applied: compare neighbour differences.
        row_step = float(img[1, 0] - img[0, 0])
        col_step = float(img[0, 1] - img[0, 0])
        seen.add((row_step, col_step))
    assert seen == {(30.0, 1.0), (30.0, -1.0), (-30.0, 1.0), (-30.0, -1.0),
                    (1.0, 30.0), (1.0, -30.0), (-1.0, 30.0), (-1.0, -30.0)}


def test_no_transpose_for_non_square_crop_and_determinism():
    image, mask = _aligned_pair(40, 40)
    tf = TrainTransform(crop_size=(8, 12), target_prob=0.5)
    rng = np.random.default_rng(11)
    for _ in range(30):
        img, msk = tf(image, mask, rng)
        assert img.shape == msk.shape == (8, 12)
        assert abs(float(img[0, 1] - img[0, 0])) == 1.0  # columns never became rows
    a = tf(image, mask, np.random.default_rng(5))
    b = tf(image, mask, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_transform_does_not_modify_or_alias_input():
    image, mask = _aligned_pair(30, 30)
    before = image.copy()
    img, _ = TrainTransform(16, flip=False, transpose=False)(image, mask, np.random.default_rng(0))
    img[:] = -5
    np.testing.assert_array_equal(image, before)


def test_train_transform_validates_arguments():
    with pytest.raises(ValueError):
        TrainTransform(crop_size=0)
    with pytest.raises(ValueError):
        TrainTransform(target_prob=1.5)
    with pytest.raises(ValueError):
        TrainTransform(8)(np.zeros((4, 4), np.float32), np.zeros((4, 5), bool), np.random.default_rng())


@pytest.mark.parametrize(
    "shape,stride",
    [((2, 1, 240, 320), 32), ((1, 3, 201, 257), 16), ((1, 1, 64, 64), 32), ((1, 1, 7, 5), 4)],
)
def test_pad_to_stride_crop_to_round_trip(shape, stride):
    x = torch.randn(shape)
    padded, size = pad_to_stride(x, stride)
    assert size == shape[-2:]
    assert padded.shape[:2] == x.shape[:2]
    assert padded.shape[-2] % stride == 0 and padded.shape[-1] % stride == 0
    assert padded.shape[-2] - shape[-2] < stride and padded.shape[-1] - shape[-1] < stride
    assert torch.equal(padded[..., : size[0], : size[1]], x)
    assert (padded[..., size[0] :, :] == 0).all() and (padded[..., :, size[1] :] == 0).all()
    assert torch.equal(crop_to(padded, size), x)
    if padded.shape == x.shape:
        assert padded is x


def test_pad_to_stride_errors():
    with pytest.raises(ValueError):
        pad_to_stride(torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(ValueError):
        crop_to(torch.zeros(1, 1, 4, 4), (5, 4))


# ----------------------------------------------------------------------------------------------
# Dataset + transform: reproducible seeding in the main process and in workers


def _epoch(ds: IRSTDDataset, workers: int) -> torch.Tensor:
    loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=workers)
    return torch.cat([batch["image"] for batch in loader])


def test_dataset_with_transform_reproducible(tmp_path):
    root = make_dataset(tmp_path / "d", IDS, size=(40, 36))
    ds = IRSTDDataset(root, "train", transform=TrainTransform(crop_size=16, target_prob=0.5))
    sample = ds[0]
    assert sample["image"].shape == sample["mask"].shape == (1, 16, 16)
    for workers in (0, 2):
        torch.manual_seed(123)
        first, second = _epoch(ds, workers), _epoch(ds, workers)
        torch.manual_seed(123)
        again_first, again_second = _epoch(ds, workers), _epoch(ds, workers)
        assert torch.equal(first, again_first) and torch.equal(second, again_second)
        assert not torch.equal(first, second)  # new augmentations every epoch


# ----------------------------------------------------------------------------------------------
# The real dataset


@pytest.mark.nuaa
def test_nuaa_sirst_loads(nuaa_root):
    assert len(read_split(nuaa_root, "train")) == 341
    assert len(read_split(nuaa_root, "test")) == 86
    assert set(read_split(nuaa_root, "train")).isdisjoint(read_split(nuaa_root, "test"))
    shapes = set()
    for split in ("train", "test"):
        ds = IRSTDDataset(nuaa_root, split)
        assert len(ds) == {"train": 341, "test": 86}[split]
        for k in range(len(ds)):
            sample = ds[k]
            assert sample["image"].shape == sample["mask"].shape
            # numpy, not torch.unique: the latter sorts with threads and crawls on a busy 2-core box
            assert np.isfinite(sample["image"].numpy()).all()
            mask_values = set(np.unique(sample["mask"].numpy()).tolist())
            assert mask_values <= {0.0, 1.0} and 1.0 in mask_values  # every NUAA image has a target
            shapes.add(tuple(sample["image"].shape))
    assert len(shapes) > 5  # mixed sizes really were read
    train, val = carve_validation(read_split(nuaa_root, "train"))
    assert len(val) == 34 and set(val) <= set(read_split(nuaa_root, "train"))
    assert check_dataset(nuaa_root, "test").ok
    assert read_image(nuaa_root / "images" / "Misc_1.png").ndim == 2
