"""Tests of the synthetic dataset generator (irstd.data.synth) and `irstd synth`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from irstd.cli import main
from irstd.data import read_split
from irstd.data.io import read_image, read_mask
from irstd.data.synth import (
    SCENES,
    frame_rng,
    generate_frame,
    insert_targets,
    make_dataset,
    read_targets,
)
from irstd.errors import IRSTDError

EIGHT = np.ones((3, 3), dtype=bool)


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def ring_stats(image: np.ndarray, x: int, y: int, inner: int, outer: int) -> tuple[float, float]:
    """Mean and std over the square ring (outer box minus inner box), clipped to the frame."""
    h, w = image.shape
    values = image.astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    cheb = np.maximum(np.abs(yy - y), np.abs(xx - x))
    ring = (cheb <= outer) & (cheb > inner)
    return float(values[ring].mean()), float(values[ring].std())


@pytest.fixture(scope="module")
def ds8(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth8") / "ds"
    make_dataset(root, "toy", 12, size=(256, 256), seed=3, bit_depth=8)
    return root


@pytest.fixture(scope="module")
def ds16(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth16") / "ds"
    make_dataset(root, "toy16", 6, size=(160, 200), seed=4, bit_depth=16)
    return root


def test_same_arguments_same_bytes_api_and_cli(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_dataset(a, "det", 5, size=(96, 128), seed=11, bit_depth=16)
    rc = main(["synth", "--out", str(b), "--name", "det", "--num", "5", "--size", "96", "128",
               "--seed", "11", "--bit-depth", "16"])
    assert rc == 0
    ha, hb = tree_hashes(a), tree_hashes(b)
    assert len(ha) == 5 * 2 + 2 + 2  # images, masks, two index files, targets.jsonl, synth.json
    assert ha == hb


def test_different_seeds_give_different_frames(tmp_path):
    make_dataset(tmp_path / "s0", "d", 3, size=(64, 64), seed=0)
    make_dataset(tmp_path / "s1", "d", 3, size=(64, 64), seed=1)
    for i in range(3):
        x0 = read_image(tmp_path / "s0" / "images" / f"d_{i:04d}.png")
        x1 = read_image(tmp_path / "s1" / "images" / f"d_{i:04d}.png")
        assert not np.array_equal(x0, x1)


def test_frames_do_not_depend_on_dataset_size(tmp_path):
    make_dataset(tmp_path / "small", "p", 2, size=(64, 64), seed=7)
    make_dataset(tmp_path / "big", "p", 4, size=(64, 64), seed=7)
    for i in range(2):
        name = f"images/p_{i:04d}.png"
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "big" / name).read_bytes()


def test_layout_readable_and_splits(ds8):
    ids = [f"toy_{i:04d}" for i in range(12)]
    train, test = read_split(ds8, "train"), read_split(ds8, "test")
    assert len(test) == round(0.2 * 12) and set(train).isdisjoint(test)
    assert sorted(train + test) == ids
    records = read_targets(ds8)
    assert sorted(records) == ids
    for i in ids:
        image, mask = read_image(ds8 / "images" / f"{i}.png"), read_mask(ds8 / "masks" / f"{i}.png")
        assert image.dtype == np.uint8 and image.shape == mask.shape == (256, 256)
        assert records[i]["split"] == ("test" if i in test else "train")
        assert records[i]["scene"] in SCENES
        raw = read_image(ds8 / "masks" / f"{i}.png")
        assert raw.dtype == np.uint8 and set(np.unique(raw)) <= {0, 255}
    # The API's frame i is the dataset's frame i.
    image, mask, targets = generate_frame(frame_rng(3, 5), (256, 256), 8)
    assert np.array_equal(image, read_image(ds8 / "images" / "toy_0005.png"))
    assert np.array_equal(mask, read_mask(ds8 / "masks" / "toy_0005.png"))
    assert len(targets) == len(records["toy_0005"]["targets"])


def test_some_frames_hold_several_targets(ds8):
    counts = [len(r["targets"]) for r in read_targets(ds8).values()]
    assert max(counts) >= 2 and sum(counts) >= 12


@pytest.mark.parametrize("fixture", ["ds8", "ds16"])
def test_masks_agree_with_targets(fixture, request):
    root = request.getfixturevalue(fixture)
    for record in read_targets(root).values():
        mask = read_mask(root / "masks" / f"{record['id']}.png")
        labels, n = ndimage.label(mask, structure=EIGHT)
        targets = record["targets"]
        assert n == len(targets), record["id"]
        seen = set()
        h, w = mask.shape
        for t in targets:
            x, y = t["peak_pixel"]
            cx, cy = t["center"]
            assert abs(cx - x) <= 0.5 and abs(cy - y) <= 0.5
            component = labels == labels[y, x]
            assert labels[y, x] > 0, "the pixel nearest to the target centre is in its mask"
            seen.add(int(labels[y, x]))
            rows, cols = np.nonzero(component)
            assert t["area"] == rows.size >= 1
            assert t["bbox"] == [cols.min(), rows.min(), cols.max(), rows.max()]
            extent = max(np.ptp(rows), np.ptp(cols)) + 1
            assert 1 <= extent <= 9 and extent == t["extent"]
            r = t["window"][0]
            assert r <= x < w - r and r <= y < h - r, "support inside the frame"
        assert len(seen) == len(targets), "one component per target"


@pytest.mark.parametrize("fixture", ["ds8", "ds16"])
def test_scr_measured_on_written_image(fixture, request):
    root = request.getfixturevalue(fixture)
    settings = json.loads((root / "synth.json").read_text())
    lo, hi = settings["scr_range"]
    measured = []
    for record in read_targets(root).values():
        image = read_image(root / "images" / f"{record['id']}.png")
        labels, _ = ndimage.label(read_mask(root / "masks" / f"{record['id']}.png"), structure=EIGHT)
        for t in record["targets"]:
            x, y = t["peak_pixel"]
            inner, outer = t["window"]
            mean, std = ring_stats(image, x, y, inner, outer)
            peak = float(image[labels == labels[y, x]].max())
            scr = (peak - mean) / std
            assert lo - 1e-9 <= scr <= hi + 1e-9
            assert scr == pytest.approx(t["scr"], abs=1e-9)
            assert peak == t["peak"]
            measured.append(scr)
    assert len(measured) >= 5
    assert max(measured) - min(measured) > 1.0, "SCR values are spread over the range"


def test_targets_keep_their_distance(ds8):
    for record in read_targets(ds8).values():
        ts = record["targets"]
        for i, a in enumerate(ts):
            for b in ts[i + 1 :]:
                (ax, ay), (bx, by) = a["peak_pixel"], b["peak_pixel"]
                cheb = max(abs(ax - bx), abs(ay - by))
                # Neither support reaches into the other's background ring.
                assert cheb > a["window"][1] + b["window"][0]
                assert cheb > b["window"][1] + a["window"][0]


def test_mask_is_half_of_added_peak_on_flat_background():
    rng = np.random.default_rng(0)
    background = (5000 + 20 * rng.standard_normal((128, 128))).round().astype(np.uint16)
    image, mask, targets = insert_targets(rng, background, 4, (6.0, 9.0), 16383)
    assert len(targets) == 4
    added = image.astype(np.float64) - background
    assert added.min() >= 0, "targets only add signal"
    for t in targets:
        x, y = t["peak_pixel"]
        r = t["window"][0]
        sl = np.s_[y - r : y + r + 1, x - r : x + r + 1]
        half = 0.5 * t["amplitude"]
        # Rounding to integers moves the added signal by at most 0.5 DN.
        assert mask[sl][added[sl] >= half + 0.5].all()
        assert not mask[sl][added[sl] <= half - 0.5].any()
    outside = np.ones_like(mask)
    for t in targets:
        x, y = t["peak_pixel"]
        r = t["window"][0]
        outside[y - r : y + r + 1, x - r : x + r + 1] = False
    assert not added[outside].any(), "targets add nothing outside their support"


def test_bit_depths():
    for scene in SCENES:
        img16, mask16, _ = generate_frame(frame_rng(1, 0), (96, 96), 16, scene=scene)
        assert img16.dtype == np.uint16 and img16.min() > 255 and img16.max() <= 16383
        img8, _, _ = generate_frame(frame_rng(1, 0), (96, 96), 8, scene=scene)
        assert img8.dtype == np.uint8 and img8.std() > 1.0
        assert mask16.dtype == bool and mask16.shape == (96, 96)


def test_empty_frames():
    image, mask, targets = generate_frame(frame_rng(0, 0), (64, 64), 8, empty_fraction=1.0)
    assert targets == [] and not mask.any()
    _, mask, targets = generate_frame(frame_rng(0, 1), (64, 64), 8, max_targets=0)
    assert targets == [] and not mask.any()
    counts = [
        len(generate_frame(frame_rng(2, i), (64, 64), 8, empty_fraction=0.5)[2]) for i in range(12)
    ]
    assert 0 in counts and max(counts) > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num": 0}, "--num"),
        ({"size": (16, 256)}, "--size"),
        ({"bit_depth": 12}, "--bit-depth"),
        ({"name": "a/b"}, "--name"),
        ({"seed": -1}, "--seed"),
        ({"test_fraction": 1.5}, "--test-fraction"),
        ({"scr_range": (5.0, 2.0)}, "--scr"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"out": tmp_path / "o", "name": "n", "num": 2, "size": (64, 64)}
    args.update(kwargs)
    with pytest.raises(IRSTDError, match=message):
        make_dataset(**args)
    assert not (tmp_path / "o").exists(), "nothing is written before the arguments are checked"


def test_cli_end_to_end_and_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--name", "c", "--num", "5", "--size", "64", "80"]) == 0
    assert "wrote 5 images" in capsys.readouterr().out
    assert len(list((out / "images").iterdir())) == 5
    assert read_image(out / "images" / "c_0000.png").shape == (64, 80)

    # Re-running into a synth folder replaces its content, stale ids included.
    assert main(["synth", "--out", str(out), "--name", "c", "--num", "3", "--size", "64", "80"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"c_{i:04d}.png" for i in range(3)]

    assert main(["synth", "--out", str(out), "--name", "c", "--num", "0"]) == 2
    assert "error: synth: --num" in capsys.readouterr().err

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["synth", "--out", str(foreign), "--name", "f", "--num", "2", "--size", "64", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and "Traceback" not in err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert main(["synth", "--out", str(foreign), "--name", "f", "--num", "2", "--size", "64", "64",
                 "--overwrite"]) == 0
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert read_split(foreign, "train") and read_split(foreign, "test")

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["synth", "--out", str(a_file), "--name", "f", "--num", "2"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_cli_scene_and_no_test_split(tmp_path):
    out = tmp_path / "sea"
    assert main(["synth", "--out", str(out), "--name", "s", "--num", "2", "--size", "64", "64",
                 "--scene", "sea", "--test-fraction", "0"]) == 0
    assert {r["scene"] for r in read_targets(out).values()} == {"sea"}
    assert sorted(p.name for p in (out / "img_idx").iterdir()) == ["train_s.txt"]
