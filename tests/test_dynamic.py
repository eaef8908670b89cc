"""The Dynamic-ISTD protocol (``irstd dynamic``) and cross-domain evaluation (``irstd cross-eval``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from irstd.cli import main
from irstd.data.io import read_image, write_image
from irstd.domain.dynamic import TEST_ANGLES, TRAIN_BLUR


pytestmark = pytest.mark.usefixtures("one_thread")  # every test here on one torch thread (conftest.py)


def _dataset(root: Path, n: int = 12, dtype=np.uint8, seed: int = 0) -> None:
    from irstd.data.synth import make_dataset

    make_dataset(root, "tiny", n, (48, 56), seed=seed, bit_depth=8 if dtype == np.uint8 else 16)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_irstd_dynamic_is_byte_identical_for_one_seed(tmp_path, capsys):
    _dataset(tmp_path / "ds")
    for out in ("a", "b"):
        assert main(["dynamic", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / out), "--seed", "3"]) == 0
    assert "6 train images (2 motion-blurred), 6 test images" in capsys.readouterr().out
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and len(a) == 12 + 12 + 2 + 1
    assert main(["dynamic", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "c"), "--seed", "4"]) == 0
    c = _files(tmp_path / "c")
    assert c.keys() == a.keys() and c != a


@pytest.mark.parametrize("bits", [8, 16])
def test_the_dynamic_protocol(tmp_path, bits):
    from irstd.corruptions import functional as CF
    from irstd.data import read_split
    from irstd.data.dataset import dataset_full_scale
    from irstd.domain.dynamic import make_dynamic

    dtype = np.uint8 if bits == 8 else np.uint16
    _dataset(tmp_path / "ds", 20, dtype)
    summary = make_dynamic(tmp_path / "ds", tmp_path / "dyn", seed=0)
    record = json.loads((tmp_path / "dyn" / "dynamic.json").read_text())
    train, test = read_split(tmp_path / "dyn", "train"), read_split(tmp_path / "dyn", "test")
    assert len(train) == len(test) == 10 and not set(train) & set(test)
    scale = dataset_full_scale(tmp_path / "ds")
    blurred = [e for e in record["images"] if e["split"] == "train" and "blur" in e]
    assert len(blurred) == summary["train_blurred"] == 3  # 30 % of the training images
    for entry in record["images"]:
        item = entry["id"]
        src = read_image(tmp_path / "ds" / "images" / f"{item}.png")
        out = read_image(tmp_path / "dyn" / "images" / f"{item}.png")
        assert out.dtype == dtype and out.shape == src.shape
        if entry["split"] == "test":
            assert entry["blur"]["angle"] in TEST_ANGLES and entry["noise"]["proportion"] == 0.05
            expected = CF.composite_noise(CF.motion_blur(src, 5, entry["blur"]["angle"], full_scale=scale), 0.05,
                                          seed=entry["noise"]["seed"], full_scale=scale)
            np.testing.assert_array_equal(out, expected)
        elif "blur" in entry:
            assert (entry["blur"]["length"], entry["blur"]["angle"]) == TRAIN_BLUR
            np.testing.assert_array_equal(out, CF.motion_blur(src, 5, 45, full_scale=scale))
        else:
            np.testing.assert_array_equal(out, src)
        assert (tmp_path / "dyn" / "masks" / f"{item}.png").read_bytes() == \
            (tmp_path / "ds" / "masks" / f"{item}.png").read_bytes()


def test_test_noise_changes_only_the_test_noise(tmp_path, capsys):
    """A noise-severity sweep needs every variant to share the split, the training images and the
    test blur; 0 leaves the test images blurred only."""
    from irstd.corruptions import functional as CF
    from irstd.data.dataset import dataset_full_scale

    _dataset(tmp_path / "ds", 12, np.uint8)
    for out, p in (("paper", "0.05"), ("mild", "0.01"), ("none", "0")):
        assert main(["dynamic", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / out), "--test-noise", p]) == 0
    assert "blurred)" in capsys.readouterr().out  # the blur-only run says so
    records = {o: json.loads((tmp_path / o / "dynamic.json").read_text()) for o in ("paper", "mild", "none")}
    assert [records[o]["test_noise"]["proportion"] for o in ("paper", "mild", "none")] == [0.05, 0.01, 0.0]
    scale = dataset_full_scale(tmp_path / "ds")
    for entry in records["none"]["images"]:
        item = entry["id"]
        images = {o: (tmp_path / o / "images" / f"{item}.png").read_bytes() for o in records}
        if entry["split"] == "train":
            assert images["paper"] == images["mild"] == images["none"]
            continue
        assert "noise" not in entry and len({images[o] for o in images}) == 3
        src = read_image(tmp_path / "ds" / "images" / f"{item}.png")
        np.testing.assert_array_equal(read_image(tmp_path / "none" / "images" / f"{item}.png"),
                                      CF.motion_blur(src, 5, entry["blur"]["angle"], full_scale=scale))
    for o in ("paper", "mild"):
        assert [e["split"] for e in records[o]["images"]] == [e["split"] for e in records["none"]["images"]]
    assert main(["dynamic", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "bad"), "--test-noise", "2"]) == 2
    assert "outside [0, 0.5]" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_irstd_dynamic_refuses_a_non_empty_output_and_leaves_nothing(tmp_path, capsys):
    _dataset(tmp_path / "ds", 6)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert main(["dynamic", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]


def _run(tmp_path: Path) -> Path:
    from irstd.config import load_config, save_config
    from irstd.engine.checkpoint import save_weights
    from irstd.models import create

    torch.manual_seed(0)
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    save_config(load_config(None, ["model.name=litenet", "eval.threshold=0.5"]), run / "config.yaml")
    save_weights(create("litenet"), run / "best" / "model.safetensors", {"model": "litenet"})
    return run


def test_cross_eval_scores_labelled_and_target_free_sets(tmp_path, capsys):
    from irstd.data import IRSTDDataset
    from irstd.domain.frames import heldout_frames
    from irstd.engine.evaluator import evaluate
    from irstd.engine.predictor import load_detector

    _dataset(tmp_path / "ds", 6)
    rng = np.random.default_rng(0)
    for k in range(10):
        write_image(tmp_path / "bg" / "images" / f"b{k}.png", rng.integers(0, 255, (40, 48), dtype=np.uint8))
    run = _run(tmp_path)
    out = tmp_path / "cross.json"
    assert main(["cross-eval", "--runs", str(run), "--datasets", str(tmp_path / "ds"), f"{tmp_path / 'ds'}:all",
                 str(tmp_path / "bg"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PixAcc" in text and "target-free, held-out 30 %: 3 frames" in text
    rows = json.loads(out.read_text())
    assert [r["frames"] for r in rows] == [len(IRSTDDataset(tmp_path / "ds", split="test")), 6, 3]
    # the evaluator's figures, on the held-out frames only
    assert rows[2]["target_free"] and rows[2]["ids"] == [p.stem for p in heldout_frames(tmp_path / "bg")]
    det = load_detector(run=run, device="cpu")
    ref = evaluate(det.model, IRSTDDataset(tmp_path / "ds", split="test"), "cpu", 0.5)
    for key in ("PixAcc", "IoU", "nIoU", "Pd", "Fa", "F1"):
        assert rows[0][key] == pytest.approx(ref[key])
    counted = []
    evaluate(det.model, IRSTDDataset(tmp_path / "bg", ids=rows[2]["ids"], target_free=True), "cpu", 0.5,
             on_image=lambda i, p, m: counted.append(p))
    from irstd.metrics import label_components

    false_targets = sum(len(label_components(p > 0.5).areas) for p in counted)  # no target: every one is false
    assert rows[2]["false_targets"] == false_targets
    assert rows[2]["false_targets_per_frame"] == pytest.approx(false_targets / 3)
