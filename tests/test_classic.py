"""Classic detectors (irstd.classic): saliency on synthetic frames, low-rank recovery, bit-depth
invariance, degenerate inputs, the saliency-to-mask rule, and the CLI path (predict / test)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from irstd.classic import (
    CLASSIC,
    get_method,
    list_methods,
    method_info,
    saliency,
    saliency_to_mask,
    saliency_to_probability,
)
from irstd.errors import IRSTDError

METHODS = ["ipi", "max_median", "mslstipt", "mspcm", "nram", "pstnn", "ript", "tllcm", "tophat", "wslcm"]
LOW_RANK = ["ipi", "nram", "pstnn", "ript", "mslstipt"]


@pytest.fixture(autouse=True)
def _one_thread():
    # small matrices: BLAS threads only add overhead, and the machine is shared
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def ramp_with_target(size=(72, 80), at=(37, 45), amplitude=60.0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth ramp (0..100 grey levels) with one bright 3 x 3 target; float64 frame and mask."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    frame = 20.0 + 60.0 * xx / (w - 1) + 20.0 * yy / (h - 1)
    mask = np.zeros(size, dtype=bool)
    r, c = at
    mask[r - 1 : r + 2, c - 1 : c + 2] = True
    frame[mask] += amplitude
    return frame, mask


def test_registry_lists_every_method_with_its_facts():
    assert list_methods() == METHODS
    for name in METHODS:
        info = method_info(name)
        assert info["reference"] and info["family"] and isinstance(info["params"], dict)
        assert get_method(name).__doc__ and "Returns" in get_method(name).__doc__
    with pytest.raises(IRSTDError, match="did you mean 'ipi'"):
        CLASSIC.get("ipii")


@pytest.mark.parametrize("name", METHODS)
def test_maximum_saliency_is_on_the_target(name):
    frame, mask = ramp_with_target()
    s = saliency(name, frame)
    assert s.dtype == np.float32 and s.shape == frame.shape
    assert s.min() >= 0
    r, c = np.unravel_index(np.argmax(s), s.shape)
    assert mask[r, c], f"{name}: maximum at {(r, c)}, target at rows 36-38, cols 44-46"
    # and the toolbox rule keeps the detection on the target
    assert saliency_to_mask(s)[mask].any()


def _low_rank_frame(seed=0, size=(90, 100)):
    rng = np.random.default_rng(seed)
    h, w = size
    y = np.linspace(0, 1, h)[:, None]
    x = np.linspace(0, 1, w)[None, :]
    # rank-2 background: a gradient and a separable smooth pattern
    background = 60.0 + 40.0 * (0.6 * y + 0.4 * x) + 20.0 * np.sin(3 * y) * np.cos(2 * x)
    target = np.zeros(size)
    for r, c in [(20, 30), (60, 70)]:
        target[r - 1 : r + 2, c - 1 : c + 2] = 50.0 + 10 * rng.random((3, 3))
    return background + target, target


@pytest.mark.parametrize("name", LOW_RANK)
def test_low_rank_methods_separate_background_and_targets(name):
    frame, target = _low_rank_frame()
    s = saliency(name, frame).astype(np.float64)
    on = target > 0
    # the background (exactly low-rank) is removed: what is left off the targets is small ...
    assert s[~on].max() < 0.25 * s[on].max()
    assert s[~on].sum() < 0.35 * s[on].sum()
    # ... and both targets are recovered, with comparable energy (units differ between methods)
    scale = s[on].sum() / target[on].sum()
    for r, c in [(20, 30), (60, 70)]:
        win = (slice(r - 1, r + 2), slice(c - 1, c + 2))
        assert s[win].sum() / scale > 0.2 * target[win].sum(), (r, c)


def test_rpca_recovers_a_known_low_rank_plus_sparse_matrix():
    from irstd.classic.patch_image import rpca_ialm

    rng = np.random.default_rng(1)
    low = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 200))
    sparse = np.zeros_like(low)
    idx = rng.random(low.shape) < 0.03
    sparse[idx] = rng.choice([-8.0, 8.0], idx.sum())
    b, t, it = rpca_ialm(low + sparse, 1 / np.sqrt(300), tol=1e-6, max_rank_ratio=1.0)
    assert np.linalg.norm(b - low) / np.linalg.norm(low) < 1e-3
    assert np.linalg.norm(t - sparse) / np.linalg.norm(sparse) < 1e-3
    assert it < 100


def test_partial_svd_matches_numpy():
    from irstd.classic._lowrank import SVT

    rng = np.random.default_rng(2)
    m = rng.standard_normal((400, 8)) @ np.diag([50, 40, 30, 20, 10, 5, 2, 1]) @ rng.standard_normal((8, 300))
    m += 0.01 * rng.standard_normal(m.shape)
    uu, ref, vv = np.linalg.svd(m, full_matrices=False)
    u, s, vt = SVT().leading(m, tau=0.5 * (ref[5] + ref[6]))
    assert len(s) == 6
    np.testing.assert_allclose(s, ref[:6], rtol=1e-6)
    np.testing.assert_allclose((u * s) @ vt, (uu[:, :6] * ref[:6]) @ vv[:6], atol=1e-6 * ref[0])


@pytest.mark.parametrize("name", METHODS)
def test_8_and_16_bit_frames_give_the_same_mask(name):
    from irstd.data.synth import frame_rng, generate_frame

    frame8 = generate_frame(frame_rng(3, 0), (96, 104), 8)[0]
    assert frame8.dtype == np.uint8
    frame8[50:53, 60:63] = 250  # a clear target, so that every method's mask is non-empty
    frame16 = frame8.astype(np.uint16) * 257  # the same picture at full 16-bit scale
    m8 = saliency_to_mask(saliency(name, frame8))
    m16 = saliency_to_mask(saliency(name, frame16))
    assert m8.any() and np.array_equal(m8, m16)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_constant_frame_gives_an_empty_mask_without_warnings(name, dtype):
    frame = np.full((40, 48), 7, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            s = saliency(name, frame)
            for rule in ("minmax", "adaptive"):
                assert not saliency_to_mask(s, rule).any()
    assert s.shape == frame.shape and not s.any()


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((1, 1), np.uint8), "too small"),
        (np.zeros((0, 0), np.uint8), "empty"),
        (np.zeros((0, 5), np.uint8), "empty"),
        (np.zeros((8, 8, 3), np.uint8), "2-D"),
        (np.full((8, 8), np.nan), "NaN"),
    ],
)
def test_degenerate_images_raise_a_clear_error(name, bad, message):
    with pytest.raises(IRSTDError, match=message):
        saliency(name, bad)


def test_paths_are_read_by_the_package_reader(tmp_path):
    from irstd.data.io import write_image

    frame, _ = ramp_with_target()
    path = tmp_path / "f.png"
    write_image(path, np.round(frame).astype(np.uint8))
    np.testing.assert_array_equal(saliency("tophat", path), saliency("tophat", np.round(frame).astype(np.uint8)))
    with pytest.raises(IRSTDError, match="not found"):
        saliency("tophat", tmp_path / "missing.png")


def test_saliency_to_mask_rules():
    rng = np.random.default_rng(4)
    s = rng.random((30, 40)) ** 4
    p = saliency_to_probability(s)
    np.testing.assert_allclose(p, (s - s.min()) / (s.max() - s.min()), rtol=1e-6, atol=1e-7)
    for k in (0.0, 1.0, 3.0):
        pa = saliency_to_probability(s, "adaptive", k)
        assert pa.min() >= 0 and pa.max() <= 1
        np.testing.assert_array_equal(pa > 0.5, s > s.mean() + k * s.std())
        # the score orders pixels as the saliency does
        order = np.argsort(s, axis=None)
        assert np.all(np.diff(pa.ravel()[order]) >= 0)
    with pytest.raises(IRSTDError, match="rule"):
        saliency_to_probability(s, "otsu")


def _frames_dir(tmp_path, n=3):
    from irstd.data.io import write_image
    from irstd.data.synth import frame_rng, generate_frame

    folder = tmp_path / "frames"
    folder.mkdir()
    frames = {}
    for i in range(n):
        frames[f"f{i}"] = generate_frame(frame_rng(5, i), (48, 56), 16 if i == 1 else 8)[0]
        write_image(folder / f"f{i}.png", frames[f"f{i}"])
    return folder, frames


def test_predict_command_writes_the_masks_of_the_rule(tmp_path, capsys):
    from irstd.cli import main
    from irstd.data.io import read_image

    folder, frames = _frames_dir(tmp_path)
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--out", str(out), "--method", "mspcm", "--quiet"]) == 0
    for stem, frame in frames.items():
        written = read_image(out / f"{stem}.png") > 0
        np.testing.assert_array_equal(written, saliency_to_mask(saliency("mspcm", frame)))
    lines = (out / "detections.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["score"] > 0.5 for line in lines)
    out2 = tmp_path / "out2"
    assert main(["predict", str(folder), "--out", str(out2), "--method", "mspcm", "--rule", "adaptive", "--k", "2", "--quiet"]) == 0
    for stem, frame in frames.items():
        np.testing.assert_array_equal(read_image(out2 / f"{stem}.png") > 0, saliency_to_mask(saliency("mspcm", frame), "adaptive", 2.0))
    capsys.readouterr()
    assert main(["predict", str(folder), "--out", str(out2), "--method", "mspcm", "--model", "acm"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["predict", str(folder), "--out", str(out2), "--method", "nosuch"]) == 2
    assert "unknown classic method" in capsys.readouterr().err


@pytest.mark.nuaa
def test_test_command_on_nuaa_images_matches_the_metrics(nuaa_root, tmp_path, capsys):
    """``irstd test --method`` on three real NUAA-SIRST images: the metrics of its masks equal
    those of the library functions scored by irstd.metrics, and ``irstd evaluate`` of the masks
    written by ``irstd predict --method`` gives the same figures."""
    from irstd.cli import main
    from irstd.data.io import read_image, read_mask
    from irstd.metrics import SegmentationMetrics

    from irstd.data import IRSTDDataset

    full = IRSTDDataset(nuaa_root, split="test")
    ids = full.ids[:3]
    root = tmp_path / "nuaa3"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for item in ids:
        shutil.copy(full.image_path(item), root / "images")
        shutil.copy(full.mask_path(item), root / "masks")
    (root / "test.txt").write_text("\n".join(ids) + "\n")
    out = tmp_path / "eval"
    assert main(["test", "--method", "pstnn", "--dataset", str(root), "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    metrics = SegmentationMetrics()
    for item in ids:
        image = read_image(full.image_path(item))
        mask = read_mask(full.mask_path(item))
        metrics.update(saliency_to_probability(saliency("pstnn", image)), mask)
        np.testing.assert_array_equal(read_image(out / "masks" / f"{item}.png") > 0, saliency_to_mask(saliency("pstnn", image)))
    ref = metrics.compute()
    for key in ("IoU", "nIoU", "Pd", "Fa"):
        assert report[key] == pytest.approx(ref[key], abs=1e-12), key
    assert report["num_images"] == 3 and report["model"].startswith("pstnn")
    pred = tmp_path / "pred"
    assert main(["predict", str(root / "images"), "--out", str(pred), "--method", "pstnn", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--dataset", str(root), "--split", "test", "--pred", str(pred)]) == 0
    printed = capsys.readouterr().out
    assert f"{ref['IoU']:.4f}" in printed
