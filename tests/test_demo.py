"""`irstd demo` end to end, with the shipped detector (when present) or a stand-in."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from irstd.cli import main
from irstd.engine import predictor
from irstd.engine.checkpoint import save_weights
from irstd.models import create


@pytest.fixture
def stand_in_detector(tmp_path, monkeypatch):
    """Random LiteNet weights in place of the shipped ones, so the demo's plumbing is tested
    whether or not the package carries trained weights."""
    torch.manual_seed(0)
    weights = tmp_path / "w" / "default.safetensors"
    weights.parent.mkdir()
    save_weights(create("litenet"), weights)
    card = tmp_path / "w" / "default.yaml"
    card.write_text("model: litenet\nthreshold: 0.5\n")
    monkeypatch.setattr(predictor, "DEFAULT_WEIGHTS", weights)
    monkeypatch.setattr(predictor, "DEFAULT_CARD", card)


def test_demo_writes_masks_overlays_detections_and_metrics(tmp_path, stand_in_detector, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--num", "3", "--size", "96", "128"]) == 0
    images = sorted((out / "frames" / "images").glob("*.png"))
    assert len(images) == 3
    for img in images:
        assert (out / "detections" / img.name).is_file()
        assert (out / "detections" / f"{img.stem}_overlay.png").is_file()
    assert (out / "detections" / "detections.jsonl").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"IoU", "nIoU", "Pd", "Fa", "F1"} <= set(metrics)
    assert "IoU" in capsys.readouterr().out


def test_demo_without_installed_detector_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predictor, "DEFAULT_WEIGHTS", tmp_path / "missing.safetensors")
    monkeypatch.setattr(predictor, "DEFAULT_CARD", tmp_path / "missing.yaml")
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "default detector is not installed" in err


def test_demo_lines_give_targets_hits_misses_and_false_alarms(tmp_path, stand_in_detector, capsys):
    """Each frame's line counts ground-truth targets, hits, misses and false alarms by the Pd/Fa
    matching, so the lines add up to the Pd and target F1 of metrics.json."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--num", "4", "--size", "96", "128"]) == 0
    text = capsys.readouterr().out
    rows = re.findall(
        r"demo_\d+\.png: 128x96 uint8, (\d+) target\(s\): (\d+) hit\(s\), (\d+) miss\(es\), (\d+) false alarm\(s\)",
        text,
    )
    assert len(rows) == 4, text
    counts = np.array(rows, dtype=int)
    np.testing.assert_array_equal(counts[:, 1] + counts[:, 2], counts[:, 0])
    targets, hits, misses, false_alarms = counts.sum(axis=0)
    assert targets > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["Pd"] == pytest.approx(hits / targets)
    assert metrics["F1"] == pytest.approx(2 * hits / (2 * hits + false_alarms + misses))
    assert metrics["nIoU_empty_gt"] == "community" and "nIoU (empty GT = 0)" in text
    detections = (out / "detections" / "detections.jsonl").read_text().splitlines()
    summary = f"{targets} target(s): {hits} hit(s), {misses} miss(es); {len(detections)} detection(s), {false_alarms} false alarm(s)"
    assert summary in text
