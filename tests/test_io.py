"""irstd.data.io: the one image reader/writer (modes, bit depths, binarisation, errors)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from irstd.data.io import (
    atomic_write_bytes,
    binarize_mask,
    full_scale,
    is_image_file,
    read_image,
    read_mask,
    read_probability,
    staged_dir,
    write_image,
)
from irstd.errors import IRSTDError


def _grey(h: int = 12, w: int = 10, high: int = 255, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(h * 1000 + w + high)
    return rng.integers(0, high + 1, size=(h, w)).astype(dtype)


def test_is_image_file_extensions_case_insensitive():
    for name in ["a.png", "a.PNG", "a.bmp", "a.jpg", "a.JPEG", "a.tif", "a.TIFF"]:
        assert is_image_file(name), name
    for name in ["a.txt", "a", "a.png.bak", "Thumbs.db", "a.gif"]:
        assert not is_image_file(name), name


def test_mode_L_png(tmp_path):
    grey = _grey()
    Image.fromarray(grey, "L").save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    assert out.dtype == np.uint8 and out.shape == grey.shape
    np.testing.assert_array_equal(out, grey)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_grey_replicated_colour_is_lossless(tmp_path, mode):
    grey = _grey()
    channels = [grey, grey, grey] + ([np.full_like(grey, 17)] if mode == "RGBA" else [])
    Image.fromarray(np.stack(channels, axis=-1), mode).save(tmp_path / "x.png")
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), grey)


def test_rgb_uses_bt601_luma(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    expected = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert (read_image(tmp_path / "c.png") == expected).all()


def test_mode_P_palette(tmp_path):
    idx = (np.arange(120).reshape(12, 10) % 3).astype(np.uint8)
    img = Image.fromarray(idx, "P")
    img.putpalette([0, 0, 0, 90, 90, 90, 250, 250, 250] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, np.array([0, 90, 250], np.uint8)[idx])


def test_16bit_png_keeps_values_above_255(tmp_path):
    grey = _grey(high=65535, dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "x.png")  # Pillow mode I;16
    assert Image.open(tmp_path / "x.png").mode == "I;16"
    out = read_image(tmp_path / "x.png")
    assert out.dtype == np.uint16 and out.max() > 255
    np.testing.assert_array_equal(out, grey)


def test_14bit_in_16bit_container_untouched(tmp_path):
    grey = _grey(high=2**14 - 1, dtype=np.uint16)
    write_image(tmp_path / "x.png", grey)
    out = read_image(tmp_path / "x.png")
    np.testing.assert_array_equal(out, grey)
    assert out.max() < 2**14 and out.max() > 255


def test_int32_tiff_mode_I(tmp_path):
    grey = _grey(high=100000, dtype=np.int32)
    Image.fromarray(grey).save(tmp_path / "x.tif")
    assert Image.open(tmp_path / "x.tif").mode == "I"
    out = read_image(tmp_path / "x.tif")
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, grey)


def test_float_tiff_mode_F(tmp_path):
    values = np.random.default_rng(0).normal(290.0, 3.0, size=(9, 7)).astype(np.float32)
    Image.fromarray(values).save(tmp_path / "x.tiff")
    assert Image.open(tmp_path / "x.tiff").mode == "F"
    out = read_image(tmp_path / "x.tiff")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("name", ["x.bmp", "x.BMP", "x.tif", "x.TIF", "x.png"])
def test_lossless_formats(tmp_path, name):
    grey = _grey()
    fmt = {"bmp": "BMP", "tif": "TIFF", "png": "PNG"}[name[2:].lower()]
    Image.fromarray(grey, "L").save(tmp_path / name, format=fmt)
    np.testing.assert_array_equal(read_image(tmp_path / name), grey)


@pytest.mark.parametrize("name", ["x.jpg", "x.jpeg", "x.JPG"])
def test_jpeg_close(tmp_path, name):
    grey = np.tile(np.linspace(20, 230, 16).astype(np.uint8), (16, 1))
    Image.fromarray(grey, "L").save(tmp_path / name, format="JPEG", quality=95)
    out = read_image(tmp_path / name)
    assert out.shape == grey.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - grey).max() <= 4


def test_binarize_rule():
    eight = np.array([[0, 127, 128, 255]], np.uint8)
    np.testing.assert_array_equal(binarize_mask(eight), [[False, False, True, True]])
    labels = np.array([[0, 1, 1, 0]], np.uint8)
    np.testing.assert_array_equal(binarize_mask(labels), [[False, True, True, False]])
    sixteen = np.array([[0, 32767, 32768, 65535]], np.uint16)
    np.testing.assert_array_equal(binarize_mask(sixteen), [[False, False, True, True]])
    floats = np.array([[0.0, 0.5, 0.51, 1.0]], np.float32)
    np.testing.assert_array_equal(binarize_mask(floats), [[False, False, True, True]])
    assert binarize_mask(np.zeros((3, 3), np.uint8)).sum() == 0


def test_full_scale():
    assert full_scale(np.zeros(2, np.uint8)) == 255
    assert full_scale(np.zeros(2, np.uint16)) == 65535
    assert full_scale(np.array([5, 60000], np.int32)) == 65535
    assert full_scale(np.zeros(2, np.float32)) == 1.0


def test_read_mask_rgb_and_grey_borders(tmp_path):
    mask = np.zeros((6, 6), np.uint8)
    mask[1:3, 1:3] = 255
    mask[4, 4] = 100  # grey border pixel below 50 %
    mask[4, 5] = 200  # grey border pixel above 50 %
    Image.fromarray(np.stack([mask] * 3, -1), "RGB").save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == np.bool_
    assert out.sum() == 5 and out[4, 5] and not out[4, 4]


def test_read_probability_scales(tmp_path):
    write_image(tmp_path / "p8.png", np.array([[0, 51, 255]], np.uint8))
    write_image(tmp_path / "p16.png", np.array([[0, 13107, 65535]], np.uint16))
    np.testing.assert_allclose(read_probability(tmp_path / "p8.png"), [[0, 0.2, 1]], atol=1e-7)
    np.testing.assert_allclose(read_probability(tmp_path / "p16.png"), [[0, 0.2, 1]], atol=1e-7)
    Image.fromarray(np.array([[0.0, 1.5]], np.float32)).save(tmp_path / "bad.tif")
    with pytest.raises(IRSTDError, match="bad.tif"):
        read_probability(tmp_path / "bad.tif")


def test_write_image_atomic_round_trip(tmp_path):
    for dtype, high in [(np.uint8, 255), (np.uint16, 65535)]:
        arr = _grey(high=high, dtype=dtype)
        path = tmp_path / "sub" / f"w{high}.png"
        write_image(path, arr)
        np.testing.assert_array_equal(read_image(path), arr)
    assert sorted(os.listdir(tmp_path / "sub")) == ["w255.png", "w65535.png"]  # no temp files left
    with pytest.raises(TypeError):
        write_image(tmp_path / "f.png", np.zeros((2, 2), np.float32))


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        write_image(tmp_path / "b.png", _grey())
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert {name: os.stat(tmp_path / name).st_mode & 0o777 for name in ("a.json", "b.png", "plain")} == {
        "a.json": expected,
        "b.png": expected,
        "plain": expected,
    }


def test_staged_dir_moves_outputs_in_only_on_success(tmp_path):
    out = tmp_path / "new" / "deep" / "out"
    with staged_dir(out) as stage:
        atomic_write_bytes(stage / "x.txt", b"x")
        atomic_write_bytes(stage / "sub" / "y.txt", b"y")
        assert not out.exists()
    assert (out / "x.txt").read_bytes() == b"x" and (out / "sub" / "y.txt").read_bytes() == b"y"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    # into an existing folder: staged entries replace theirs (a folder as a whole), others stay
    (out / "keep.txt").write_bytes(b"k")
    (out / "sub" / "stale.txt").write_bytes(b"s")
    with staged_dir(out) as stage:
        atomic_write_bytes(stage / "x.txt", b"x2")
        atomic_write_bytes(stage / "sub" / "y.txt", b"y2")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["keep.txt", "sub", "sub/y.txt", "x.txt"]
    assert (out / "x.txt").read_bytes() == b"x2"


def test_staged_dir_leaves_nothing_behind_on_error(tmp_path):
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(IRSTDError, match="bad input"):
        with staged_dir(tmp_path / "a" / "b" / "out") as stage:
            atomic_write_bytes(stage / "half.txt", b"h")
            raise IRSTDError("bad input")
    assert sorted(tmp_path.rglob("*")) == before  # not even the missing parents
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_bytes(b"o")
    with pytest.raises(KeyboardInterrupt):
        with staged_dir(tmp_path / "out") as stage:
            atomic_write_bytes(stage / "old.txt", b"new")
            raise KeyboardInterrupt
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]
    assert (tmp_path / "out" / "old.txt").read_bytes() == b"o"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(IRSTDError, match="is a file"):
        with staged_dir(tmp_path / "file"):
            pass


def _assert_clean_error(path, capfd, match=None):
    with pytest.raises(IRSTDError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message
    if match:
        assert match in message
    captured = capfd.readouterr()
    # One clear message, no decoder chatter from OpenCV or libpng on the terminal.
    assert captured.err.strip() == "" and captured.out.strip() == ""
    return message


def test_errors_name_file(tmp_path, capfd):
    _assert_clean_error(tmp_path / "missing.png", capfd, "not found")
    (tmp_path / "empty.png").write_bytes(b"")
    _assert_clean_error(tmp_path / "empty.png", capfd, "empty")
    (tmp_path / "text.png").write_text("this is not an image")
    _assert_clean_error(tmp_path / "text.png", capfd, "not a readable image")
    (tmp_path / "dir.png").mkdir()
    _assert_clean_error(tmp_path / "dir.png", capfd)
    (tmp_path / "header.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    _assert_clean_error(tmp_path / "header.png", capfd)
    (tmp_path / "header.tif").write_bytes(b"II*\x00" + b"\x01" * 40)
    _assert_clean_error(tmp_path / "header.tif", capfd)


def test_truncated_png_is_an_error(tmp_path, capfd):
    write_image(tmp_path / "full.png", _grey(64, 64, high=65535, dtype=np.uint16))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _assert_clean_error(tmp_path / "cut.png", capfd)


def test_16bit_mask_holding_0_255_is_not_empty(tmp_path):
    # 0/255 labels saved into a 16-bit container must keep their targets (full scale 255, not 65535).
    m = np.zeros((6, 7), np.uint16)
    m[2:4, 3:5] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = read_mask(tmp_path / "m.png")
    assert mask.sum() == 4 and mask[2:4, 3:5].all()
