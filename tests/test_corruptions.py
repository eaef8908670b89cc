from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import irstd.corruptions as C
from irstd.cli import main
from irstd.corruptions import functional as CF
from irstd.corruptions import torch_ops as T
from irstd.data.io import read_image
from irstd.data.synth import frame_rng, generate_frame, make_dataset
from irstd.errors import IRSTDError

NAMES = C.list_corruptions()
RANDOM = [n for n in NAMES if C.SEVERITY_TABLE[n].random]
DETERMINISTIC = [n for n in NAMES if not C.SEVERITY_TABLE[n].random]


@pytest.fixture(scope="module")
def frame8() -> np.ndarray:
    return generate_frame(frame_rng(3, 0), (72, 88), 8)[0]


@pytest.fixture(scope="module")
def frame16() -> np.ndarray:
    image = generate_frame(frame_rng(3, 1), (72, 88), 16)[0]
    assert image.dtype == np.uint16 and 4095 < image.max() <= 16383  # 14-bit counts
    return image


def mad(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / scale)


# --------------------------------------------------------------------------------------------
# Table


def test_names_and_table():
    expected = {
        "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "uniform_noise",
        "salt_pepper_noise", "poisson_noise", "defocus_blur", "motion_blur", "gaussian_blur",
        "brightness", "contrast", "pixelate", "jpeg_compression", "composite_noise",
    }
    assert set(NAMES) == expected
    table = C.severity_table_markdown()
    for name in NAMES:
        assert f"| {name} |" in table
    assert table in C.__doc__
    assert set(C.PAPER_002_TABLE2) < set(C.PAPER_002_CORRUPTIONS) <= set(NAMES)
    assert len(C.PAPER_002_CORRUPTIONS) == 10 and len(C.PAPER_002_TABLE2) == 9


def test_three_levels_are_imagenet_levels_1_3_5():
    for name in NAMES:
        for sev, level in zip((1, 2, 3), (1, 3, 5)):
            assert C.severity_params(name, sev) == C.severity_params(name, level, levels=5)
    assert C.severity_params("gaussian_noise", 2) == {"sigma": 0.18}
    assert C.severity_params("defocus_blur", 3) == {"radius": 10, "alias_sigma": 0.5}
    actions = C.corruption_actions()
    assert len(actions) == 30 and actions[0] == ("gaussian_noise", 1)


@pytest.mark.parametrize("bad", [0, 4, -1, 2.5, True, "2", None])
def test_bad_severity(frame8, bad):
    with pytest.raises(IRSTDError, match="severity"):
        C.apply(frame8, "contrast", bad)


def test_bad_name_and_levels(frame8):
    with pytest.raises(IRSTDError, match="valid names: gaussian_noise, shot_noise"):
        C.apply(frame8, "fog", 1)
    with pytest.raises(IRSTDError, match="levels"):
        C.apply(frame8, "contrast", 1, levels=4)
    assert C.apply(frame8, "contrast", 5, levels=5).shape == frame8.shape


# --------------------------------------------------------------------------------------------
# numpy form: grading, determinism, dtypes


@pytest.mark.parametrize("name", NAMES)
def test_damage_grows_with_severity(frame8, frame16, name):
    for image, scale in ((frame8, 255.0), (frame16, 16383.0)):
        damage = [mad(C.apply(image, name, s, seed=7), image, scale) for s in (1, 2, 3)]
        assert damage[0] > 0 and damage[0] < damage[1] < damage[2], (name, image.dtype, damage)
    damage5 = [mad(C.apply(frame8, name, s, seed=7, levels=5), frame8, 255.0) for s in range(1, 6)]
    assert all(a < b for a, b in zip(damage5, damage5[1:])), (name, damage5)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(frame8, name):
    a = C.apply(frame8, name, 2, seed=11)
    b = C.apply(frame8, name, 2, seed=11)
    c = C.apply(frame8, name, 2, seed=12)
    np.testing.assert_array_equal(a, b)
    if name in RANDOM:
        assert not np.array_equal(a, c)
    else:
        np.testing.assert_array_equal(a, c)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(C.apply(frame8, name, 1, seed=g1), C.apply(frame8, name, 1, seed=g2))


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_and_ranges(frame8, frame16, name):
    out8 = C.apply(frame8, name, 3, seed=1)
    assert out8.dtype == np.uint8 and out8.shape == frame8.shape
    out16 = C.apply(frame16, name, 3, seed=1)
    assert out16.dtype == np.uint16 and out16.shape == frame16.shape
    assert out16.max() <= 16383  # 14-bit data stays 14-bit
    unit = frame8.astype(np.float32) / 255
    outf = C.apply(unit, name, 3, seed=1)
    assert outf.dtype == np.float32 and 0 <= outf.min() and outf.max() <= 1
    # float in [0, 1] and uint8 are the same definition (up to the 8-bit rounding of the output)
    np.testing.assert_allclose(outf * 255, out8, atol=0.5 + 1e-3)
    out32 = C.apply(frame16.astype(np.int32), name, 3, seed=1)
    assert out32.dtype == np.int32
    np.testing.assert_array_equal(out32, out16)


def test_full_scale_rules(frame8, frame16):
    assert C.infer_full_scale(frame8) == 255
    assert C.infer_full_scale(frame16) == 16383
    assert C.infer_full_scale(np.full((4, 4), 1000, np.uint16)) == 1023
    assert C.infer_full_scale(np.full((4, 4), 60000, np.uint16)) == 65535
    assert C.infer_full_scale(np.zeros((4, 4), np.float32)) == 1.0
    # brightness +0.1 of the full scale: 1638 DN for 14-bit data, clipped at 16383
    out = C.apply(frame16, "brightness", 1)
    expected = np.minimum(frame16.astype(np.int64) + round(0.1 * 16383), 16383)
    assert np.abs(out.astype(np.int64) - expected).max() <= 1
    out = C.apply(frame16, "brightness", 1, full_scale=65535)
    assert out.max() > 16383
    with pytest.raises(ValueError, match="outside"):
        C.apply(frame16, "brightness", 1, full_scale=1000)
    with pytest.raises(ValueError, match="full_scale"):
        C.apply(frame8.astype(np.float32), "brightness", 1)
    assert C.apply(frame8.astype(np.float32), "brightness", 1, full_scale=255).max() <= 255
    with pytest.raises(ValueError, match="H x W"):
        C.apply(np.zeros((2, 4, 5), np.uint8), "contrast", 1)  # 5 channels: neither grey nor colour
    with pytest.raises(ValueError, match="H x W"):
        C.apply(np.zeros((2, 3, 4, 4), np.uint8), "contrast", 1)
    with pytest.raises(TypeError):
        C.apply(np.zeros((4, 4), np.int8), "contrast", 1)


def test_colour_images_as_opencv_reads_them_become_grey_by_the_readers_rule(frame8, tmp_path):
    """An H x W x 3 BGR uint8 array from cv2.imread is corrupted as the grey image the toolkit's
    reader makes of the same file (one luma rule), for apply and the functional forms."""
    rng = np.random.default_rng(5)
    bgr = np.stack([frame8, np.roll(frame8, 7, axis=1), (frame8 // 2 + 40).astype(np.uint8)], axis=2)
    bgr[..., 0] = np.clip(bgr[..., 0].astype(int) + rng.integers(-20, 20, frame8.shape), 0, 255)
    path = tmp_path / "colour.png"
    assert cv2.imwrite(str(path), bgr)
    read = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert read.shape == frame8.shape + (3,) and read.dtype == np.uint8
    grey = read_image(path)  # the reader's BT.601 conversion
    assert grey.ndim == 2 and not np.array_equal(grey, read[..., 1])  # the channels differ
    for name in ("gaussian_noise", "brightness", "contrast", "jpeg_compression"):
        out = C.apply(read, name, 2, seed=3)
        assert out.shape == grey.shape and out.dtype == np.uint8, name
        np.testing.assert_array_equal(out, C.apply(grey, name, 2, seed=3), err_msg=name)
    np.testing.assert_array_equal(CF.contrast(read, 0.4), CF.contrast(grey, 0.4))
    bgra = np.concatenate([read, np.full(frame8.shape + (1,), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(C.apply(bgra, "brightness", 1), C.apply(grey, "brightness", 1))
    # a single-channel H x W x 1 array is grey and keeps its shape
    one = C.apply(frame8[..., None], "gaussian_noise", 1, seed=1)
    assert one.shape == frame8.shape + (1,)
    np.testing.assert_array_equal(one[..., 0], C.apply(frame8, "gaussian_noise", 1, seed=1))


def test_a_full_scale_above_the_dtype_range_clips_instead_of_wrapping(frame8):
    # a 16-bit dataset scale reaching an 8-bit frame must saturate at 255, not wrap around to 0
    out = C.apply(np.full((8, 8), 200, np.uint8), "brightness", 3, full_scale=16383)
    assert out.dtype == np.uint8 and np.all(out == 255)


# --------------------------------------------------------------------------------------------
# Definitions


def test_motion_kernel_geometry(frame8):
    horizontal = np.zeros((5, 5), np.float32)
    horizontal[2] = 0.2
    np.testing.assert_allclose(CF.line_kernel(5, 0), horizontal, atol=1e-7)
    np.testing.assert_allclose(CF.line_kernel(5, 90), horizontal.T, atol=1e-7)
    np.testing.assert_allclose(CF.line_kernel(4, 0)[2], [0.125, 0.25, 0.25, 0.25, 0.125], atol=1e-7)
    for length, angle in ((5, 45), (17, 30), (24, -20), (8, 90)):
        k = CF.line_kernel(length, angle)
        assert abs(k.sum() - 1) < 1e-6
        np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)  # point-symmetric
    k = CF.line_kernel(9, 45)
    c = k.shape[0] // 2
    assert k[c - 3, c + 3] > 0 and k[c + 3, c - 3] > 0 and k[c - 3, c - 3] == 0  # up-right
    np.testing.assert_array_equal(CF.motion_blur(frame8, length=1, angle=10), frame8)
    # the Dynamic-ISTD training blur (length 5, 45 deg) changes the image, keeps the mean
    blurred = CF.motion_blur(frame8, 5, 45)
    assert not np.array_equal(blurred, frame8)
    assert abs(blurred.mean() - frame8.mean()) < 1.0


def test_defocus_and_gaussian_kernels():
    for r, a in ((3, 0.1), (6, 0.5), (10, 0.5)):
        k = CF.disk_kernel(r, a)
        assert k.shape[0] % 2 == 1 and abs(k.sum() - 1) < 1e-6 and k.shape[0] >= 2 * r + 1
        np.testing.assert_allclose(k, k.T, atol=1e-7)
    g = CF.gaussian_kernel_1d(2.0)
    assert g.size == 17 and abs(g.sum() - 1) < 1e-6


def test_brightness_matches_hsv_value_shift(frame8):
    from skimage.color import hsv2rgb, rgb2hsv

    rgb = np.repeat(frame8[..., None].astype(np.float64) / 255, 3, axis=2)
    hsv = rgb2hsv(rgb)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)
    reference = hsv2rgb(hsv)[..., 0]
    out = C.apply(frame8.astype(np.float32) / 255, "brightness", 2)
    np.testing.assert_allclose(out, reference, atol=1e-6)
    # on uint8 the only difference is where x + 76.5 ties between two integers
    assert np.abs(C.apply(frame8, "brightness", 2) - reference * 255).max() <= 0.5 + 1e-4


def test_contrast_and_pixelate_definitions(frame8):
    u = frame8.astype(np.float32) / 255
    out = CF.contrast(u, 0.2)
    np.testing.assert_allclose(out, np.clip((u - u.mean()) * 0.2 + u.mean(), 0, 1), atol=1e-6)
    px = CF.pixelate(u, 0.25)
    assert len(np.unique(px)) <= (72 // 4) * (88 // 4)
    np.testing.assert_allclose(px[:4, :4], u[:4, :4].mean(), atol=1e-6)


def test_jpeg_uint8_is_the_codec_output(frame8):
    ok, buf = cv2.imencode(".jpg", frame8, [cv2.IMWRITE_JPEG_QUALITY, 15])
    decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(C.apply(frame8, "jpeg_compression", 2), decoded)


def test_noise_statistics():
    flat = np.full((200, 200), 0.5, np.float32)
    out = CF.gaussian_noise(flat, 0.05, seed=0)
    assert abs(out.std() - 0.05) < 0.003 and abs(out.mean() - 0.5) < 0.003
    out = CF.uniform_noise(flat, 0.1, seed=0)
    assert abs(out.max() - 0.6) < 0.002 and abs(out.min() - 0.4) < 0.002
    out = CF.shot_noise(flat, 100, seed=0)
    assert abs(out.var() - 0.5 / 100) < 0.0005
    out = CF.salt_pepper_noise(flat, 0.1, seed=0)
    assert abs((out == 0).mean() - 0.05) < 0.005 and abs((out == 1).mean() - 0.05) < 0.005
    comp = CF.composite_noise(flat, 0.05, seed=0)
    impulses = (comp == 0) | (comp == 1)
    assert abs(impulses.mean() - 0.05) < 0.01
    # four additive-like noises of std ~0.05 (speckle: 0.05 * 0.5, Poisson: 0.05 * sqrt(0.5))
    expected = np.sqrt(0.05**2 * 2 + (0.05 * 0.5) ** 2 + 0.05**2 * 0.5)
    assert abs(comp[~impulses].std() - expected) < 0.006


# --------------------------------------------------------------------------------------------
# torch form


def _batch(frame8, b=3):
    u = torch.from_numpy(frame8.astype(np.float32) / 255)
    return torch.stack([u, u.flip(0), u.flip(1)][:b]).unsqueeze(1)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_torch_matches_numpy_deterministic(frame8, name):
    x = _batch(frame8)
    for sev in (1, 3):
        out = C.apply_torch(x, name, sev)
        for i in range(x.shape[0]):
            ref = C.apply(x[i, 0].numpy(), name, sev)
            np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=5e-6)


def test_torch_motion_blur_matches_numpy(frame8):
    x = _batch(frame8)
    out = T.motion_blur(x, 17, [30.0, -10.0, 45.0]).clamp(0, 1)
    for i, angle in enumerate((30.0, -10.0, 45.0)):
        ref = CF.motion_blur(x[i, 0].numpy(), 17, angle)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=5e-6)


@pytest.mark.parametrize("name", [n for n in RANDOM if n != "motion_blur"])  # angle: see above
def test_torch_random_agrees_in_distribution(frame8, name):
    u = frame8.astype(np.float32) / 255
    x = torch.from_numpy(u)[None, None].repeat(4, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = C.apply_torch(x, name, 2, g).numpy()[:, 0]
    ref = np.stack([C.apply(u, name, 2, seed=s) for s in range(4)])
    d_t, d_n = np.abs(out - u).mean(), np.abs(ref - u).mean()
    assert abs(d_t - d_n) < 0.1 * d_n + 1e-3, (d_t, d_n)
    assert abs((out - u).std() - (ref - u).std()) < 0.1 * (ref - u).std()


def test_torch_shapes_dtypes_determinism(frame8):
    x = _batch(frame8)
    for name in NAMES:
        a = C.apply_torch(x, name, 2, torch.Generator().manual_seed(3))
        b = C.apply_torch(x, name, 2, torch.Generator().manual_seed(3))
        assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
        assert 0 <= a.min() and a.max() <= 1
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    x64 = x.double()
    assert C.apply_torch(x64, "gaussian_noise", 1).dtype == torch.float64
    # raw intensities with a full scale per sample
    raw = x * torch.tensor([255.0, 16383.0, 1.0]).view(-1, 1, 1, 1)
    out = C.apply_torch(raw, "brightness", 1, full_scale=torch.tensor([255.0, 16383.0, 1.0]))
    torch.testing.assert_close(out[1] / 16383, C.apply_torch(x[1:2], "brightness", 1)[0])
    with pytest.raises(ValueError, match="B x C x H x W"):
        C.apply_torch(x[0], "contrast", 1)
    with pytest.raises(IRSTDError):
        C.apply_torch(x, "contrast", 7)
    op = C.CorruptionOp("pixelate", 3)
    torch.testing.assert_close(op(x), C.apply_torch(x, "pixelate", 3))
    assert "pixelate" in repr(op)


def test_apply_batch_per_sample_choice(frame8):
    x = _batch(frame8).repeat(2, 1, 1, 1)  # 6 samples
    names = ["contrast", None, "defocus_blur", "gaussian_noise", "contrast", "jpeg_compression"]
    sevs = [1, 3, 2, 3, 3, 1]
    out = C.apply_batch(x, names, sevs, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    torch.testing.assert_close(out[1], x[1], rtol=0, atol=0)
    for i in (0, 2, 4, 5):
        torch.testing.assert_close(out[i:i + 1], C.apply_torch(x[i:i + 1], names[i], sevs[i]))
    assert (out[3] - x[3]).std() > 0.1  # Gaussian sigma 0.38
    again = C.apply_batch(x, names, sevs, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again, rtol=0, atol=0)
    with pytest.raises(ValueError, match="names"):
        C.apply_batch(x, names[:2], sevs[:2])
    with pytest.raises(IRSTDError, match="unknown corruption"):
        C.apply_batch(x, ["snow"] * 6, sevs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_on_cuda(frame8):
    x = _batch(frame8).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    for name in NAMES:
        out = C.apply_torch(x, name, 2, g)
        assert out.is_cuda and out.shape == x.shape
    out = C.apply_batch(x, NAMES[:3], [1, 2, 3], g)
    assert out.is_cuda
    torch.testing.assert_close(C.apply_torch(x, "defocus_blur", 2).cpu(),
                               C.apply_torch(x.cpu(), "defocus_blur", 2), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    make_dataset(root / "ds8", "A", 5, size=(48, 64), seed=2, bit_depth=8)
    make_dataset(root / "ds16", "B", 4, size=(48, 64), seed=2, bit_depth=16)
    return root


@pytest.mark.parametrize("ds", ["ds8", "ds16"])
def test_cli_end_to_end(tiny, ds, capsys):
    src, out = tiny / ds, tiny / f"out_{ds}"
    rc = main([
        "corrupt", str(src), "--out", str(out), "--corruption", "gaussian_noise",
        "--severity", "2", "--seed", "4",
    ])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    for sub in ("masks", "img_idx"):
        files = sorted(p.relative_to(src) for p in (src / sub).rglob("*") if p.is_file())
        assert files
        for rel in files:
            assert (out / rel).read_bytes() == (src / rel).read_bytes()
    record = json.loads((out / "corruption.json").read_text())
    assert record["corruption"] == "gaussian_noise" and record["params"] == {"sigma": 0.18}
    for path in sorted((src / "images").iterdir()):
        clean, noisy = read_image(path), read_image(out / "images" / path.name)
        assert noisy.dtype == clean.dtype and noisy.shape == clean.shape
        assert not np.array_equal(noisy, clean)
        # each image has its own seed from (seed, id): recomputable without the others
        expected = C.apply(clean, "gaussian_noise", 2, C.derive_seed(4, path.stem),
                           full_scale=record["full_scale"])
        np.testing.assert_array_equal(noisy, expected)
    assert record["full_scale"] == (255 if ds == "ds8" else 16383)  # 14-bit data in 16-bit files
    assert record["images_only"] is False
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_cli_errors(tiny, capsys):
    src = tiny / "ds8"

    def run(*argv):
        rc = main(["corrupt", *map(str, argv)])
        return rc, capsys.readouterr().err

    rc, err = run(src, "--out", tiny / "e1", "--corruption", "fog", "--severity", 1)
    assert rc == 2 and "valid names" in err and "motion_blur" in err and "Traceback" not in err
    rc, err = run(src, "--out", tiny / "e1", "--corruption", "contrast", "--severity", 4)
    assert rc == 2 and "1..3" in err
    rc, err = run(tiny / "missing", "--out", tiny / "e1", "--corruption", "contrast", "--severity", 1)
    assert rc == 2 and "not found" in err
    rc, err = run(src, "--out", src / "sub", "--corruption", "contrast", "--severity", 1)
    assert rc == 2 and "inside" in err
    rc, err = run(src, "--out", src, "--corruption", "contrast", "--severity", 1)
    assert rc == 2 and "inside" in err
    assert not (tiny / "e1").exists() and not (src / "sub").exists()
    rc, _ = run(src, "--out", tiny / "e2", "--corruption", "contrast", "--severity", 1)
    assert rc == 0
    rc, err = run(src, "--out", tiny / "e2", "--corruption", "contrast", "--severity", 2)
    assert rc == 2 and "not empty" in err
    rc, _ = run(src, "--out", tiny / "e2", "--corruption", "contrast", "--severity", 2, "--overwrite")
    assert rc == 0
    assert json.loads((tiny / "e2" / "corruption.json").read_text())["severity"] == 2


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_dataset_without_masks_fails_cleanly_unless_images_only(tiny, tmp_path, capsys):
    import shutil

    src = tmp_path / "nomasks"
    shutil.copytree(tiny / "ds16", src)
    shutil.rmtree(src / "masks")
    work = tmp_path / "work"
    work.mkdir()
    before = _tree(work)
    argv = ["corrupt", str(src), "--corruption", "brightness", "--severity", "1"]
    rc = main(argv + ["--out", str(work / "new" / "copy")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "no masks" in err and "--images-only" in err and "Traceback" not in err
    assert _tree(work) == before  # no output folder, no missing parent created, no staging left

    # some images without a mask: the same, naming them
    partial = tmp_path / "partial"
    shutil.copytree(tiny / "ds16", partial)
    gone = sorted((partial / "masks").iterdir())[0]
    gone.unlink()
    rc = main(["corrupt", str(partial), "--corruption", "brightness", "--severity", "1",
               "--out", str(work / "p")])
    err = capsys.readouterr().err
    assert rc == 2 and "no mask for 1 of 4 images" in err
    assert _tree(work) == before

    # a failure half-way (an unreadable image after good ones) leaves nothing either
    broken = tmp_path / "broken"
    shutil.copytree(tiny / "ds16", broken)
    last = sorted((broken / "images").iterdir())[-1]
    last.write_bytes(b"not an image")
    rc = main(["corrupt", str(broken), "--corruption", "brightness", "--severity", "1",
               "--out", str(work / "b"), "--full-scale", "16383"])
    assert rc == 2 and last.name in capsys.readouterr().err
    assert _tree(work) == before

    # explicitly images only: the corrupted images and the record, nothing else
    rc = main(argv + ["--out", str(work / "frames"), "--images-only"])
    assert rc == 0 and "--images-only" in capsys.readouterr().out
    out = work / "frames"
    assert sorted(p.name for p in out.iterdir()) == ["corruption.json", "images"]
    record = json.loads((out / "corruption.json").read_text())
    assert record["images_only"] is True and record["full_scale"] == 16383
    assert len(list((out / "images").iterdir())) == len(list((src / "images").iterdir()))


@pytest.mark.nuaa
def test_damage_grows_on_real_images(nuaa_root):
    from irstd.data import read_split

    ids = read_split(nuaa_root, "test")[:4]
    paths = [next((nuaa_root / "images").glob(f"{i}.*")) for i in ids]
    for path in paths:
        image = read_image(path)
        for name in NAMES:
            damage = [mad(C.apply(image, name, s, seed=1), image, 255.0) for s in (1, 2, 3)]
            assert damage[0] < damage[1] < damage[2], (path.name, name, damage)
