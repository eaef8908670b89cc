"""The detector shipped in irstd/weights: loads, reproduces its model card on NUAA-SIRST through
`irstd predict` + `irstd evaluate`, and handles 16-bit and 1920x1080 frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from irstd.cli import main
from irstd.data.io import read_mask, write_image
from irstd.data.synth import frame_rng, generate_frame
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


def _frame_with_bright_targets(seed: int, size, bit_depth: int):
    """A synthetic frame whose targets are clearly visible (SCR 8..10), with their positions."""
    image, mask, targets = generate_frame(
        frame_rng(seed, 0), size=size, bit_depth=bit_depth, max_targets=4, empty_fraction=0.0, scr_range=(8.0, 10.0)
    )
    return image, mask, targets


def _hits(detections, targets, radius=3.0):
    found = 0
    for t in targets:
        cx, cy = t["mask_centroid"]
        if any(np.hypot(d["centroid"][0] - cx, d["centroid"][1] - cy) < radius for d in detections):
            found += 1
    return found


def test_16bit_frame_keeps_range_and_matches_its_8bit_rendering(tmp_path):
    detector = load_default_detector(device="cpu")
    image16, _, targets = _frame_with_bright_targets(3, (256, 320), 16)
    assert image16.dtype == np.uint16 and image16.max() > 255
    path = tmp_path / "f16.png"
    write_image(path, image16)
    assert main(["predict", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    mask = read_mask(tmp_path / "o" / "f16.png")
    assert mask.shape == image16.shape
    # Per-image standardisation makes the detector blind to gain and bit depth: the same scene
    # rendered in 8 bits gives (up to quantisation) the same probabilities.
    image8 = np.round(image16.astype(np.float64) / image16.max() * 255).astype(np.uint8)
    p16 = detector.probability(image16)
    p8 = detector.probability(image8)
    assert np.abs(p16 - p8).max() < 0.2
    assert _hits(detector.predict(image16).detections, targets) >= len(targets) - 1


def test_1920x1080_frame_is_tiled_and_targets_found(tmp_path):
    detector = load_default_detector(device="cpu")
    image, _, targets = _frame_with_bright_targets(5, (1080, 1920), 8)
    pred = detector.predict(image)
    assert pred.prob.shape == (1080, 1920) and pred.mask.shape == (1080, 1920)
    assert detector.tile < 1080  # the frame really went through the tiling path
    assert _hits(pred.detections, targets) >= len(targets) - 1
