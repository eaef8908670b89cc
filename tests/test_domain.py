"""Wavelet-guided cross-domain synthesis (paper 000): WMF, BRD, DIS, re-generation, the target-frame
split, target-free datasets and bad input. Small synthetic frames only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from irstd.data.io import write_image
from irstd.domain import brd, dis, regen
from irstd.domain.frames import HELDOUT_FRACTION, domain_frames, heldout_frames, split_frames
from irstd.errors import IRSTDError


pytestmark = pytest.mark.usefixtures("one_thread")  # every test here on one torch thread (conftest.py)


def test_wmf_on_a_hand_computed_case():
    # Four 2x2 blocks with means 1, 1, 1, 3. Haar level 1: the baseband holds 2 x block mean,
    # [[2, 2], [2, 6]]; np.gradient on 2 samples is the difference, so |grad L| is
    # [[0, 4], [4, 4 sqrt 2]] and the weights |grad L| / max are [[0, s], [s, 1]], s = 1/sqrt 2.
    # For Haar, scaling a block's three detail coefficients by w gives mean + w (x - mean).
    x = np.array(
        [[2, 0, 1, 3],
         [0, 2, -1, 1],
         [0, 1, 5, 3],
         [2, 1, 1, 3]], dtype=np.float64)
    s = 1 / math.sqrt(2)
    expected = np.array(
        [[1, 1, 1, 1 + 2 * s],
         [1, 1, 1 - 2 * s, 1],
         [1 - s, 1, 5, 3],
         [1 + s, 1, 1, 3]])
    np.testing.assert_allclose(brd.wmf(x, "haar", 1, eps=0.0), expected, atol=1e-12)
    # a flat baseband suppresses every detail: the frame becomes its block means
    flat = np.array([[2, 0], [0, 2]], dtype=np.float64)
    np.testing.assert_allclose(brd.wmf(np.tile(flat, (2, 2)), "haar", 1), np.ones((4, 4)), atol=1e-12)


def test_brd_chooses_the_flat_half_of_a_half_flat_half_textured_frame():
    rng = np.random.default_rng(0)
    s = 42
    frame = 100 + rng.normal(0, 1.5, (3 * s, 4 * s))
    frame[:, 2 * s:] += rng.normal(0, 40, (3 * s, 2 * s))
    frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    bg = brd.detect_background(frame, s, brd.TAU_B)
    expected = np.zeros((3, 4), dtype=bool)
    expected[:, :2] = True
    np.testing.assert_array_equal(bg.candidates, expected)
    assert bg.pixel_mask()[:, : 2 * s].all() and not bg.pixel_mask()[:, 2 * s:].any()
    # the textured half is on the left in the mirrored frame: the choice follows the content
    np.testing.assert_array_equal(brd.detect_background(frame[:, ::-1], s).candidates, expected[:, ::-1])


def _square(mask, r, c, n=3):
    mask[r : r + n, c : c + n] = True
    return [(r + i, c + j) for i in range(n) for j in range(n)]


def test_dis_selects_exactly_the_targets_under_both_thresholds():
    mask = np.zeros((40, 100), dtype=bool)
    pixels = [_square(mask, 10, 5 + 20 * k) for k in range(5)]  # targets 20 px apart: own windows
    prob = np.zeros(mask.shape, dtype=np.float32)
    # target 0: missed (PixAcc 0, IoU 0) -> hard
    # target 1: 5 of 9 pixels, no false pixel: PixAcc = IoU = 5/9 -> not hard (IoU >= 0.5)
    for r, c in pixels[1][:5]:
        prob[r, c] = 0.9
    # target 2: all 9 pixels and 12 false pixels beside it: PixAcc 1, IoU 9/21 -> not hard
    for r, c in pixels[2]:
        prob[r, c] = 0.9
    prob[14:16, 45:51] = 0.9
    # target 3: found exactly -> not hard
    for r, c in pixels[3]:
        prob[r, c] = 0.9
    # target 4: 3 of 9 pixels and 4 false pixels: PixAcc 1/3, IoU 3/13 -> hard
    for r, c in pixels[4][:3]:
        prob[r, c] = 0.9
    prob[6, 85:89] = 0.9
    scores = dis.score_targets(prob, mask, 0.5, dis.MARGIN, tau_p=0.75, tau_i=0.5)
    np.testing.assert_allclose([s.pixacc for s in scores], [0, 5 / 9, 1, 1, 1 / 3], atol=1e-9)
    np.testing.assert_allclose([s.iou for s in scores], [0, 5 / 9, 9 / 21, 1, 3 / 13], atol=1e-9)
    assert [s.index for s in dis.select_hard(scores)] == [0, 4]
    # both indicators count: a higher IoU bar adds target 1, a lower PixAcc bar drops target 4
    assert [s.index for s in dis.select_hard(dis.score_targets(prob, mask, tau_p=0.75, tau_i=0.6))] == [0, 1, 4]
    assert [s.index for s in dis.select_hard(dis.score_targets(prob, mask, tau_p=0.3, tau_i=0.5))] == [0]


def _target_patch(rng, size=21, peak=120.0):
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((yy - size // 2) ** 2 + (xx - size // 2) ** 2) / 3.0)
    patch = np.clip(np.rint(60 + rng.normal(0, 2, (size, size)) + peak * blob), 0, 255).astype(np.uint8)
    return patch, blob > 0.5


@pytest.mark.parametrize("dtype, scale, level", [(np.uint8, 255.0, 100), (np.uint16, 16383.0, 8000),
                                                 (np.uint16, 16383.0, 16300)])
def test_a_pasted_sample_keeps_its_mask_and_its_frames_range_and_dtype(dtype, scale, level):
    rng = np.random.default_rng(1)
    frame = np.clip(np.rint(level + rng.normal(0, 3 if dtype == np.uint8 else 30, (90, 120))), 0, scale).astype(dtype)
    patch, patch_mask = _target_patch(rng)
    top, left = 30, 50
    image, mask = regen.poisson_paste(frame, scale, patch / 255.0, patch_mask, top, left)
    assert image.dtype == frame.dtype and image.shape == frame.shape
    assert image.min() >= 0 and image.max() <= scale
    expected = np.zeros(frame.shape, dtype=bool)
    expected[top : top + 21, left : left + 21] = patch_mask
    np.testing.assert_array_equal(mask, expected)
    outside = np.ones(frame.shape, dtype=bool)
    outside[top - regen.PAD : top + 21 + regen.PAD, left - regen.PAD : left + 21 + regen.PAD] = False
    np.testing.assert_array_equal(image[outside], frame[outside])  # only the window changes
    if level + 120 / 255 * scale > scale:  # a frame near full scale: the target saturates, never wraps
        assert (image[mask] == scale).all()
        return
    peak = np.unravel_index(np.argmax(image.astype(np.int64) - frame), frame.shape)
    assert mask[peak], "the target landed where its mask was pasted"
    inside, ring = image[mask].astype(float).mean(), image[top : top + 21, left : left + 3].astype(float).mean()
    assert inside > ring + 0.2 * 120 / 255 * scale  # still a bright target


def test_regeneration_pastes_into_the_background_candidates():
    rng = np.random.default_rng(2)
    s = 42
    frame = np.clip(np.rint(100 + rng.normal(0, 1.5, (3 * s, 4 * s))), 0, 255).astype(np.uint8)
    frame[:, 2 * s:] = np.clip(100 + rng.normal(0, 40, (3 * s, 2 * s)), 0, 255).astype(np.uint8)
    cand = brd.detect_background(frame, s).pixel_mask()
    patch, patch_mask = _target_patch(rng)
    target = dis.HardTarget("t", (0, 0, 21, 21), patch, patch_mask, 255.0)
    paste = regen.regenerate(frame, 255.0, cand, target, rng)
    t, l, h, w = paste.window
    assert cand[t - regen.PAD : t + h + regen.PAD, l - regen.PAD : l + w + regen.PAD].all()
    assert paste.mask.sum() == patch_mask.sum() and -1 <= paste.ssim <= 1
    # the SSIM ranking is skimage's, window by window
    from skimage.metrics import structural_similarity

    windows = regen.grid_windows(cand, (21, 21))[:5]
    unit = frame / 255.0
    ranked = regen.rank_windows(unit, windows, patch / 255.0)
    direct = [structural_similarity(unit[a : a + 21, b : b + 21], patch / 255.0, data_range=1.0, win_size=7)
              for a, b in windows]
    np.testing.assert_allclose(ranked, direct, atol=1e-12)
    # no candidate region: nothing to paste into
    assert regen.regenerate(frame, 255.0, np.zeros_like(cand), target, rng) is None


def _frames(folder: Path, n: int, size=(96, 96), seed=0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        path = folder / "images" / f"f{k:02d}.png"
        write_image(path, np.clip(90 + rng.normal(0, 2, size), 0, 255).astype(np.uint8))
        paths.append(path)
    return paths


def test_the_target_frame_split_is_seeded_disjoint_and_used_by_everything(tmp_path):
    from irstd.domain.noise import build_noise_library
    from irstd.domain.synthesis import TargetDomain

    _frames(tmp_path / "a", 10)
    split = split_frames(tmp_path / "a")
    assert len(split.heldout) == round(HELDOUT_FRACTION * 10) and len(split.domain) == 7
    assert not {p.name for p in split.domain} & {p.name for p in split.heldout}
    assert domain_frames(tmp_path / "a") == list(split.domain)
    assert heldout_frames(tmp_path / "a" / "images") == list(split.heldout)  # DIR/images works too
    # a function of the set of frames: a copy elsewhere splits the same way
    _frames(tmp_path / "b", 10)
    assert [p.name for p in split_frames(tmp_path / "b").heldout] == [p.name for p in split.heldout]
    # the synthesis and the noise library read the 70 % only
    assert TargetDomain(tmp_path / "a").paths == list(split.domain)
    lib = build_noise_library(domain_frames(tmp_path / "a"), 255.0)
    assert {name for name, _, _ in lib.sources} <= {p.name for p in split.domain}


def test_a_folder_without_masks_is_a_target_free_dataset_only_when_asked(tmp_path):
    from irstd.data import IRSTDDataset
    from irstd.data.dataset import dataset_full_scale, is_target_free

    _frames(tmp_path / "bg", 3, size=(40, 50))
    assert is_target_free(tmp_path / "bg") and is_target_free(tmp_path / "bg" / "images")
    with pytest.raises(IRSTDError, match="masks"):
        IRSTDDataset(tmp_path / "bg", split="test")
    data = IRSTDDataset(tmp_path / "bg", target_free=True)
    assert data.ids == ["f00", "f01", "f02"] and data.mask_path("f00") is None
    item = data[1]
    assert item["image"].shape == (1, 40, 50) and item["mask"].sum() == 0
    assert IRSTDDataset(tmp_path / "bg", ids=["f02"], target_free=True).ids == ["f02"]
    assert dataset_full_scale(tmp_path / "bg") == 255.0
    with pytest.raises(IRSTDError, match="no split 'test'"):
        IRSTDDataset(tmp_path / "bg", split="test", target_free=True)


def _source(root: Path) -> None:
    rng = np.random.default_rng(3)
    for item in ("a", "b", "c"):
        patch, m = _target_patch(rng)
        image = np.clip(60 + rng.normal(0, 2, (48, 48)), 0, 255).astype(np.uint8)
        mask = np.zeros((48, 48), dtype=np.uint8)
        image[10:31, 12:33], mask[10:31, 12:33] = patch, m * 255
        write_image(root / "images" / f"{item}.png", image)
        write_image(root / "masks" / f"{item}.png", mask)
    (root / "img_idx").mkdir(parents=True, exist_ok=True)
    (root / "img_idx" / "train.txt").write_text("a\nb\nc\n")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_domain_synth_writes_a_dataset_with_provenance(tmp_path, capsys):
    import json

    from irstd.cli import main
    from irstd.data import IRSTDDataset

    _source(tmp_path / "src")
    _frames(tmp_path / "frames", 5, size=(96, 128))
    out = tmp_path / "out"
    assert main(["domain-synth", "--source", str(tmp_path / "src"), "--target", str(tmp_path / "frames"),
                 "--out", str(out), "--num", "3", "--name", "syn"]) == 0
    assert "wrote 3 frames" in capsys.readouterr().out
    data = IRSTDDataset(out, split="train")
    assert data.ids == ["syn_00000", "syn_00001", "syn_00002"]
    record = json.loads((out / "synthesis.json").read_text())
    domain = {p.name for p in domain_frames(tmp_path / "frames")}
    for k, sample in enumerate(record["samples"]):
        image, mask = data.load_arrays(k)
        assert image.shape == (96, 128) and image.dtype == np.uint8
        t, l, h, w = sample["window"]
        assert mask.sum() > 0 and not mask[:t].any() and not mask[t + h:].any()
        assert sample["target_frame"] in domain and sample["source_id"] in {"a", "b", "c"}


@pytest.mark.parametrize("case", ["empty", "small", "unreadable"])
def test_bad_target_frames_give_one_clear_error_naming_the_file(tmp_path, capsys, case):
    from irstd.cli import main

    _source(tmp_path / "src")
    frames = tmp_path / "frames"
    (frames / "images").mkdir(parents=True)
    if case == "small":
        _frames(frames, 4)
        write_image(frames / "images" / "f01.png", np.full((20, 20), 90, np.uint8))  # below one 42 px block
        named = "f01.png"
    elif case == "unreadable":
        _frames(frames, 4)
        (frames / "images" / "f01.png").write_bytes(b"not a png at all")
        named = "f01.png"
    else:
        named = str(frames / "images")
    before = _tree(tmp_path)
    assert main(["domain-synth", "--source", str(tmp_path / "src"), "--target", str(frames),
                 "--out", str(tmp_path / "out"), "--num", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err
    if case == "small":
        assert "smaller than one 42x42 BRD block" in err[0]
    assert _tree(tmp_path) == before  # nothing written
    # the noise library names the file too
    if case != "empty":
        from irstd.domain.noise import build_noise_library

        with pytest.raises(IRSTDError, match=named):
            build_noise_library(sorted((frames / "images").iterdir()), 255.0)
