"""The detector shipped in irstd/weights: loads, reproduces its model card on NUAA-SIRST through
`irstd predict` + `irstd evaluate`, and handles 16-bit and 1920x1080 frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from irstd.cli import main
from irstd.data.io import read_mask, write_image
from irstd.engine.predictor import DEFAULT_CARD, DEFAULT_WEIGHTS, load_default_detector

pytestmark = pytest.mark.skipif(
    not (DEFAULT_WEIGHTS.is_file() and DEFAULT_CARD.is_file()), reason="no shipped detector weights"
)


def _card() -> dict:
    return yaml.safe_load(DEFAULT_CARD.read_text())


def test_weights_small_and_card_complete():
    assert DEFAULT_WEIGHTS.stat().st_size < 10 * 2**20
    card = _card()
    for key in ("model", "threshold", "nuaa_sirst_test"):
        assert key in card
    assert {"IoU", "nIoU", "Pd", "Fa", "F1"} <= set(card["nuaa_sirst_test"])


@pytest.mark.nuaa
def test_predict_then_evaluate_reproduces_model_card(nuaa_root, tmp_path):
    ids = (nuaa_root / "img_idx" / "test_NUAA-SIRST.txt").read_text().split()
    inputs = [str(nuaa_root / "images" / f"{i}.png") for i in ids]
    assert main(["predict", *inputs, "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--dataset", str(nuaa_root), "--split", "test", "--pred", str(tmp_path / "pred"), "--json", str(out)]) == 0
    measured = json.loads(out.read_text())
    for key, value in _card()["nuaa_sirst_test"].items():
        assert measured[key] == pytest.approx(value, abs=1e-6), key


def _nuaa_images(root, max_h, max_w, count):
    """The first ``count`` NUAA-SIRST images (by id) that fit in ``max_h x max_w``, with masks."""
    from irstd.data import IRSTDDataset

    ds = IRSTDDataset(root, split="test")
    out = []
    for k in range(len(ds)):
        image, mask = ds.load_arrays(k)
        if image.shape[0] <= max_h and image.shape[1] <= max_w:
            out.append((image, mask))
        if len(out) == count:
            break
    return out


@pytest.mark.nuaa
def test_16bit_frames_predict_like_their_8bit_originals(nuaa_root, tmp_path):
    """A 14-bit-in-16-bit version (x * 64 + 1000) of real frames keeps its range through
    `irstd predict` and gives the 8-bit frames' detections: per-image standardisation makes the
    detector blind to gain, offset and bit depth."""
    detector = load_default_detector(device="cpu")
    for k, (image8, _) in enumerate(_nuaa_images(nuaa_root, 512, 512, 4)):
        image16 = image8.astype(np.uint16) * 64 + 1000
        assert image16.max() > 255
        write_image(tmp_path / f"f{k}.png", image16)
        np.testing.assert_allclose(detector.probability(image16), detector.probability(image8), atol=1e-4)
    assert main(["predict", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    for k, (image8, _) in enumerate(_nuaa_images(nuaa_root, 512, 512, 4)):
        np.testing.assert_array_equal(read_mask(tmp_path / "o" / f"f{k}.png"), detector.predict(image8).mask)


@pytest.mark.nuaa
def test_1920x1080_mosaic_is_tiled_without_losing_targets(nuaa_root):
    """24 real frames in a 1920x1080 mosaic: the tiled pass (512 px windows) finds the targets the
    single full-frame pass finds, at the full size."""
    import cv2

    from irstd.metrics import SegmentationMetrics

    cell_h, cell_w = 270, 320
    frame = np.zeros((1080, 1920), np.uint8)
    truth = np.zeros((1080, 1920), bool)
    for k, (image, mask) in enumerate(_nuaa_images(nuaa_root, cell_h, cell_w, 24)):
        r, c = divmod(k, 6)
        pad = ((0, cell_h - image.shape[0]), (0, cell_w - image.shape[1]))
        frame[r * cell_h : (r + 1) * cell_h, c * cell_w : (c + 1) * cell_w] = cv2.copyMakeBorder(
            image, 0, pad[0][1], 0, pad[1][1], cv2.BORDER_REFLECT
        )
        truth[r * cell_h : (r + 1) * cell_h, c * cell_w : (c + 1) * cell_w] = np.pad(mask, pad)
    tiled = load_default_detector(device="cpu")
    whole = load_default_detector(device="cpu", tile=2048)
    assert tiled.tile < 1080 <= whole.tile
    scores = {}
    for name, det in (("tiled", tiled), ("whole", whole)):
        pred = det.predict(frame)
        assert pred.mask.shape == (1080, 1920)
        m = SegmentationMetrics()
        m.update(pred.prob, truth)
        scores[name] = m.compute()
    assert scores["tiled"]["Pd"] >= scores["whole"]["Pd"] - 0.05
    assert scores["tiled"]["Pd"] >= 0.7
