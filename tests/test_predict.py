"""`irstd test` and `irstd predict`: generated frames (8-bit, 16-bit, 1920x1080) with planted targets,
tiling, output files, the default-detector loader and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from irstd.cli import main
from irstd.data.io import read_image, write_image
from irstd.engine.checkpoint import save_weights
from irstd.engine.predictor import Detector, find_targets, ramp_weights, tile_starts
from irstd.errors import IRSTDError


class Spot(nn.Module):
    """A fixed local-contrast detector: 3x3 mean minus (2r+1)^2 mean, in units of the normalised
    image, minus ``level``; a stand-in for a trained network with a small receptive field."""

    stride = 1
    deep_supervision = False

    def __init__(self, in_chans: int = 1, radius: int = 7, gain: float = 4.0, level: float = 3.0):
        super().__init__()
        k = 2 * radius + 1
        self.conv = nn.Conv2d(in_chans, 1, k, padding=radius)
        w = -torch.ones(k, k) / (k * k)
        w[radius - 1 : radius + 2, radius - 1 : radius + 2] += 1.0 / 9.0
        with torch.no_grad():
            self.conv.weight.copy_(gain * w[None, None].repeat(1, in_chans, 1, 1) / in_chans)
            self.conv.bias.fill_(-gain * level)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture
def spot_model():
    """Register ``_test_spot`` in the model zoo for the duration of one test."""
    from irstd import models

    models.register_model("_test_spot", reference_params=226, reference="test stand-in")(Spot)
    try:
        yield "_test_spot"
    finally:
        models.MODELS.unregister("_test_spot")


def make_frame(h, w, targets, *, base, noise, amp, dtype, seed=0):
    """Flat background with a mild gradient, Gaussian noise, Gaussian targets (sigma 1.2 px) at
    ``targets`` = [(y, x), ...]; the mask is where a target adds more than half its amplitude."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = base + 0.5 * noise * xx / w + rng.normal(0.0, noise, (h, w))
    mask = np.zeros((h, w), dtype=bool)
    for y, x in targets:
        blob = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.2**2))
        img += amp * blob
        mask |= blob > 0.5
    info = np.iinfo(dtype)
    return np.clip(np.rint(img), info.min, info.max).astype(dtype), mask


FRAMES = {
    # name: (h, w, targets, base, noise, amp, dtype)
    "small8": (240, 320, [(40, 50), (120, 200), (200, 290)], 100, 4.0, 40.0, np.uint8),
    "deep16": (512, 640, [(30, 600), (256, 320), (480, 40), (300, 100)], 3000, 30.0, 300.0, np.uint16),
    # targets in tile overlaps and near the frame edges (tiles of 512 with overlap 64 start at 448, 896, ...)
    "hd": (1080, 1920, [(20, 470), (480, 480), (500, 900), (700, 1350), (1060, 1900), (540, 60)], 90, 4.0, 40.0, np.uint8),
}


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    truth = {}
    for k, (name, (h, w, targets, base, noise, amp, dtype)) in enumerate(FRAMES.items()):
        img, mask = make_frame(h, w, targets, base=base, noise=noise, amp=amp, dtype=dtype, seed=k)
        write_image(folder / f"{name}.png", img)
        truth[name] = (targets, mask)
    return folder, truth


def _weights(tmp_path, name) -> Path:
    path = tmp_path / "spot.safetensors"
    save_weights(Spot(), path, {"model": name, "kwargs": {}, "in_chans": 1, "threshold": 0.5})
    return path


def _check_found(dets, targets, tol=1.0):
    assert len(dets) == len(targets), (dets, targets)
    for y, x in targets:
        best = min(np.hypot(d["centroid"][0] - x, d["centroid"][1] - y) for d in dets)
        assert best <= tol, (y, x, dets)


# ------------------------------------------------------------------------------------ helpers


def test_tile_starts_and_ramps():
    assert tile_starts(300, 512, 64) == [0]
    starts = tile_starts(1920, 512, 64)
    assert starts[0] == 0 and starts[-1] == 1920 - 512
    assert all(b - a <= 512 - 64 for a, b in zip(starts, starts[1:])), "neighbours overlap by >= 64"
    w = ramp_weights(512, 64, at_start=False, at_end=True)
    assert w[0] == pytest.approx(0.5 / 64) and w[63] < 1.0 and w[64] == 1.0 and w[-1] == 1.0 and (w > 0).all()


def test_tiling_is_exact_for_a_pointwise_model():
    """Blending bookkeeping: with a 1x1 network, tiled and single-pass probabilities coincide."""
    net = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(2.0)
        net.bias.fill_(-1.0)
    net.stride = 1
    img = np.random.default_rng(0).integers(0, 4096, (700, 1100)).astype(np.uint16)
    whole = Detector(net, device="cpu", tile=2048).probability(img)
    tiled = Detector(net, device="cpu", tile=256, overlap=48, tile_batch=3).probability(img)
    assert tiled.shape == img.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_tiling_matches_single_pass_detections(frames, one_thread):
    folder, truth = frames
    img = read_image(folder / "hd.png")
    whole = Detector(Spot(), device="cpu", tile=4096).predict(img)
    tiled = Detector(Spot(), device="cpu", tile=512, overlap=64).predict(img)
    assert np.abs(tiled.prob - whole.prob).max() < 0.05
    assert [d["bbox"] for d in tiled.detections] == [d["bbox"] for d in whole.detections]
    _check_found(tiled.detections, truth["hd"][0])


def test_find_targets_geometry():
    prob = np.zeros((10, 12), dtype=np.float32)
    prob[2:4, 3:6] = 0.9
    prob[4, 6] = 0.7  # diagonal neighbour: same target (8-connectivity)
    prob[8, 0] = 0.6
    dets = find_targets(prob, 0.5)
    assert len(dets) == 2
    a, b = dets
    assert a["bbox"] == [3, 2, 6, 4] and a["area"] == 7 and a["score"] == pytest.approx(0.9)
    assert a["centroid"] == pytest.approx([(3 + 4 + 5) * 2 / 7 + 6 / 7, (2 * 3 + 3 * 3 + 4) / 7], abs=1e-3)
    assert b["centroid"] == [0.0, 8.0] and b["area"] == 1
    assert find_targets(np.zeros((4, 4)), 0.5) == []


def test_overlay_marks_hits_misses_and_false_alarms_in_three_colours():
    from irstd.engine.predictor import FALSE_ALARM_COLOUR, HIT_COLOUR, MISS_COLOUR, make_overlay
    from irstd.metrics import match_targets

    gt = np.zeros((120, 160), bool)
    gt[60:62, 60:62] = True  # hit
    gt[90, 130] = True  # missed
    pred = np.zeros_like(gt)
    pred[60:62, 61:63] = True
    pred[40, 120] = True  # false alarm
    match = match_targets(pred, gt)
    rgb = make_overlay(np.full(gt.shape, 20, np.uint8), pred, [], match)
    assert rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8

    def has(colour, rows, cols):
        return bool((rgb[rows, cols] == colour).all(axis=-1).any())

    around = {"hit": (slice(45, 77), slice(45, 77)), "miss": (slice(78, 103), slice(118, 143)), "fa": (slice(30, 51), slice(110, 131))}
    assert has(HIT_COLOUR, *around["hit"]) and not has(MISS_COLOUR, *around["hit"])
    assert has(MISS_COLOUR, *around["miss"]) and not has(HIT_COLOUR, *around["miss"])
    assert has(FALSE_ALARM_COLOUR, *around["fa"]) and not has(HIT_COLOUR, *around["fa"])
    # the legend in the top-left corner shows all three
    for colour in (HIT_COLOUR, MISS_COLOUR, FALSE_ALARM_COLOUR):
        assert has(colour, slice(0, 40), slice(0, 100)), colour
    assert len({HIT_COLOUR, MISS_COLOUR, FALSE_ALARM_COLOUR}) == 3


# ------------------------------------------------------------------------------------ predict


def test_predict_files_16bit_and_hd(frames, tmp_path, spot_model, one_thread, capsys):
    folder, truth = frames
    weights = _weights(tmp_path, spot_model)
    out = tmp_path / "out"
    rc = main(["predict", str(folder), "--out", str(out), "--weights", str(weights), "--overlay", "--save-prob"])
    assert rc == 0, capsys.readouterr().err
    lines = [json.loads(s) for s in (out / "detections.jsonl").read_text().splitlines()]
    for name, (targets, _) in truth.items():
        h, w = FRAMES[name][:2]
        mask = read_image(out / f"{name}.png")
        assert mask.shape == (h, w) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        prob = read_image(out / f"{name}_prob.png")
        assert prob.shape == (h, w) and prob.dtype == np.uint16
        overlay = cv2_read_rgb(out / f"{name}_overlay.png")
        assert overlay.shape == (h, w, 3)
        dets = [d for d in lines if Path(d["image"]).stem == name]
        _check_found(dets, targets)
        for d in dets:
            assert set(d) >= {"image", "centroid", "bbox", "area", "score"} and 0.5 < d["score"] <= 1.0
            x0, y0, x1, y1 = d["bbox"]
            assert mask[y0 : y1 + 1, x0 : x1 + 1].max() == 255
    out_text = capsys.readouterr().out
    assert "3 of 3 image(s) processed" in out_text
    # without ground truth the lines count detections; nothing claims they are targets
    assert f"hd.png: 1920x1080 uint8, {len(truth['hd'][0])} detection(s)" in out_text
    assert "target(s)" not in out_text


def cv2_read_rgb(path):
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_predict_mixed_inputs_with_a_bad_file(frames, tmp_path, spot_model, one_thread, capsys):
    folder, truth = frames
    _weights(tmp_path, spot_model)
    torch.save(Spot().state_dict(), tmp_path / "spot.pth")  # foreign-style .pth: needs --model
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    img, _ = make_frame(200, 260, [(100, 130)], base=80, noise=4.0, amp=40.0, dtype=np.uint8, seed=9)
    write_image(rgb / "colour.png", np.stack([img] * 3, axis=-1))  # RGB file: read as grey
    out = tmp_path / "out"
    rc = main(
        [
            "predict", str(folder / "small8.png"), str(bad), str(rgb / "*.png"),
            "--out", str(out), "--model", spot_model, "--weights", str(tmp_path / "spot.pth"), "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 2
    assert "broken.png" in captured.err and "1 input(s) could not be processed" in captured.err
    assert "2 of 3 image(s) processed" in captured.out
    assert (out / "small8.png").is_file() and (out / "colour.png").is_file() and not (out / "broken.png").exists()
    lines = [json.loads(s) for s in (out / "detections.jsonl").read_text().splitlines()]
    _check_found([d for d in lines if d["output"] == "colour.png"], [(100, 130)])
    _check_found([d for d in lines if d["output"] == "small8.png"], truth["small8"][0])


def test_predict_bad_arguments(frames, tmp_path, spot_model, capsys):
    folder, _ = frames
    weights = _weights(tmp_path, spot_model)
    cases = [
        (["--weights", str(tmp_path / "missing.safetensors")], "weights file not found"),
        (["--model", "no_such_net", "--weights", str(weights)], "unknown model 'no_such_net'"),
        (["--model", "acm"], "needs --weights"),
        (["--weights", str(weights), "--threshold", "1.5"], "threshold must be in [0, 1]"),
        (["--run", str(tmp_path)], "not a run directory"),
        (["--model", "acm", "--weights", str(weights)], "weights do not fit the model"),
    ]
    for extra, message in cases:
        rc = main(["predict", str(folder / "small8.png"), "--out", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and message in err, (extra, err)
        assert "Traceback" not in err
    rc = main(["predict", str(tmp_path / "nothing" / "*.png"), "--out", str(tmp_path / "o"), "--weights", str(weights)])
    assert rc == 2 and "matches no image files" in capsys.readouterr().err


def _fake_run(tmp_path, model_name) -> Path:
    """A run directory as irstd train leaves it (config + best checkpoint), without training."""
    from irstd.config import load_config, save_config

    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    save_config(load_config(None, [f"model.name={model_name}", "eval.threshold=0.5"]), run / "config.yaml")
    save_weights(Spot(), run / "best" / "model.safetensors", {"model": model_name})
    return run


def test_predict_and_test_from_a_run_dir(frames, tmp_path, spot_model, one_thread, capsys):
    folder, truth = frames
    run = _fake_run(tmp_path, spot_model)
    rc = main(["predict", str(folder / "deep16.png"), "--out", str(tmp_path / "o"), "--run", str(run)])
    assert rc == 0
    lines = [json.loads(s) for s in (tmp_path / "o" / "detections.jsonl").read_text().splitlines()]
    _check_found(lines, truth["deep16"][0])


@pytest.fixture(scope="module")
def frame_dataset(tmp_path_factory):
    """A dataset of generated frames of several sizes and bit depths, with a test index."""
    root = tmp_path_factory.mktemp("fds") / "ds"
    ids = []
    rng = np.random.default_rng(4)
    for k in range(6):
        h, w = [(120, 160), (97, 131), (256, 200)][k % 3]
        dtype = np.uint16 if k % 2 else np.uint8
        base, noise, amp = (3000, 30.0, 300.0) if dtype == np.uint16 else (100, 4.0, 40.0)
        targets = [(int(rng.integers(10, h - 10)), int(rng.integers(10, w - 10))) for _ in range(2)]
        img, mask = make_frame(h, w, targets, base=base, noise=noise, amp=amp, dtype=dtype, seed=10 + k)
        ids.append(f"f{k}")
        write_image(root / "images" / f"f{k}.png", img)
        write_image(root / "masks" / f"f{k}.png", mask.astype(np.uint8) * 255)
    (root / "img_idx").mkdir()
    (root / "img_idx" / "test_frames.txt").write_text("\n".join(ids) + "\n")
    (root / "img_idx" / "train_frames.txt").write_text("\n".join(ids) + "\n")
    return root


def test_irstd_test_with_weights_and_with_run(frame_dataset, tmp_path, spot_model, one_thread, capsys):
    weights = _weights(tmp_path, spot_model)
    out = tmp_path / "eval"
    rc = main(["test", "--weights", str(weights), "--dataset", str(frame_dataset), "--split", "test", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("IoU", "nIoU", "PixAcc", "Pd", "Fa", "F1", "AUC"):
        assert key in metrics
    assert metrics["num_images"] == 6 and metrics["Pd"] == 1.0 and metrics["Fa"] < 1e-4
    assert metrics["IoU"] > 0.3
    assert "curves" in metrics and len(metrics["curves"]["roc"]["tpr"]) > 10
    for k in range(6):
        pred = read_image(out / "masks" / f"f{k}.png")
        assert pred.shape == read_image(frame_dataset / "images" / f"f{k}.png").shape  # original size
    table = capsys.readouterr().out
    assert "IoU" in table and "Fa (x1e-6)" in table and "nIoU (empty GT = 0)" in table
    assert metrics["nIoU_empty_gt"] == "community"
    # one line per image with the Pd/Fa matching's counts, also stored per image
    for k in range(6):
        assert f"f{k}: " in table
    per_image = {r["id"]: r for r in metrics["per_image"]}
    assert sorted(per_image) == [f"f{k}" for k in range(6)]
    for r in per_image.values():
        assert r["hits"] == r["targets"] == 2 and r["misses"] == 0
    assert sum(r["false_alarms"] for r in per_image.values()) == 0  # Fa < 1e-4: no false target at all
    # the same through a run directory (its config names the model), default output folder
    run = _fake_run(tmp_path, spot_model)
    rc = main(["test", "--run", str(run), "--dataset", str(frame_dataset), "--no-masks", "--overlay", "--quiet"])
    assert rc == 0
    assert "f0: " not in capsys.readouterr().out
    overlays = sorted(p.name for p in (run / "test-ds-test" / "masks").iterdir())
    assert overlays == [f"f{k}_overlay.png" for k in range(6)]  # overlays without the masks
    again = json.loads((run / "test-ds-test" / "metrics.json").read_text())
    assert {k: again[k] for k in ("IoU", "nIoU", "Pd", "Fa")} == {k: metrics[k] for k in ("IoU", "nIoU", "Pd", "Fa")}


def test_predict_masks_equal_test_masks(frame_dataset, tmp_path, spot_model, one_thread):
    """`irstd predict` on a dataset's images writes the very masks `irstd test` scores, so scoring
    predict's output with `irstd evaluate` reproduces `irstd test`."""
    weights = _weights(tmp_path, spot_model)
    assert main(["test", "--weights", str(weights), "--dataset", str(frame_dataset), "--out", str(tmp_path / "t")]) == 0
    assert main(["predict", str(frame_dataset / "images"), "--out", str(tmp_path / "p"), "--weights", str(weights), "--quiet"]) == 0
    for k in range(6):
        np.testing.assert_array_equal(read_image(tmp_path / "p" / f"f{k}.png"), read_image(tmp_path / "t" / "masks" / f"f{k}.png"))


def test_irstd_test_bad_input(frame_dataset, tmp_path, spot_model, capsys):
    weights = _weights(tmp_path, spot_model)
    rc = main(["test", "--weights", str(weights), "--dataset", str(tmp_path / "none")])
    assert rc == 2 and "dataset folder not found" in capsys.readouterr().err
    rc = main(["test", "--dataset", str(frame_dataset)])
    assert rc == 2 and "give --run RUN_DIR or --weights FILE" in capsys.readouterr().err
    torch.save(Spot().state_dict(), tmp_path / "anon.pth")
    rc = main(["test", "--weights", str(tmp_path / "anon.pth"), "--dataset", str(frame_dataset)])
    assert rc == 2 and "give --model NAME" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ default


def test_default_detector_loader(frames, tmp_path, spot_model, monkeypatch, one_thread, capsys):
    from irstd.engine import predictor

    folder, truth = frames
    monkeypatch.setattr(predictor, "DEFAULT_WEIGHTS", tmp_path / "w" / "default.safetensors")
    monkeypatch.setattr(predictor, "DEFAULT_CARD", tmp_path / "w" / "default.yaml")
    with pytest.raises(IRSTDError, match="default detector is not installed"):
        predictor.load_default_detector()
    rc = main(["predict", str(folder / "small8.png"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "default detector is not installed" in capsys.readouterr().err
    (tmp_path / "w").mkdir()
    save_weights(Spot(), predictor.DEFAULT_WEIGHTS)
    predictor.DEFAULT_CARD.write_text(
        yaml.safe_dump({"model": spot_model, "kwargs": {}, "threshold": 0.4, "normalization": "per-image", "notes": "x"})
    )
    det = predictor.load_default_detector(device="cpu")
    assert det.threshold == 0.4 and det.tile == 512 and det.overlap == 64
    rc = main(["predict", str(folder / "small8.png"), "--out", str(tmp_path / "o2")])
    assert rc == 0
    lines = [json.loads(s) for s in (tmp_path / "o2" / "detections.jsonl").read_text().splitlines()]
    _check_found(lines, truth["small8"][0])
    predictor.DEFAULT_CARD.write_text("kwargs: {}\n")
    with pytest.raises(IRSTDError, match="needs a 'model' entry"):
        predictor.load_default_detector()


@pytest.mark.slow
def test_hd_frame_memory_with_a_zoo_model(tmp_path):
    """A zoo network on a 1920x1080 frame stays far below 2 GB (peak RSS of the whole process)."""
    from irstd.models import create

    torch.manual_seed(0)
    save_weights(create("acm"), tmp_path / "acm.safetensors", {"model": "acm"})
    img, _ = make_frame(1080, 1920, [(500, 900)], base=90, noise=4.0, amp=40.0, dtype=np.uint8)
    write_image(tmp_path / "hd.png", img)
    code = (
        "import sys, torch; torch.set_num_threads(1); from irstd.cli import main; "
        "from irstd.profiling import peak_rss_mb; "
        f"rc = main(['predict', {str(tmp_path / 'hd.png')!r}, '--out', {str(tmp_path / 'o')!r}, "
        f"'--weights', {str(tmp_path / 'acm.safetensors')!r}, '--quiet']); "
        "print('PEAK_MB', peak_rss_mb()); sys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    peak_mb = float(res.stdout.split("PEAK_MB")[1].split()[0])
    assert peak_mb < 2048, f"peak RSS {peak_mb:.0f} MB"
    assert read_image(tmp_path / "o" / "hd.png").shape == (1080, 1920)
