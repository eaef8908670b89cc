"""`irstd evaluate`: scoring a prediction folder, JSON output, bad input, and the NUAA-SIRST
acceptance check against an independent regionprops implementation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from irstd.cli import main
from irstd.data.io import read_mask, read_probability, write_image
from irstd.metrics import SCALAR_KEYS, SegmentationMetrics

REPO = Path(__file__).resolve().parents[1]


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_metrics", REPO / "benchmarks" / "bench_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_dataset(root: Path, ids=("a", "b", "c"), size=(24, 32)) -> dict[str, np.ndarray]:
    """A tiny dataset: images, 0/255 masks with one or two targets, img_idx/test.txt."""
    rng = np.random.default_rng(0)
    masks = {}
    h, w = size
    for i, item in enumerate(ids):
        write_image(root / "images" / f"{item}.png", rng.integers(0, 255, size, dtype=np.uint8))
        mask = np.zeros(size, np.uint8)
        mask[4 + i : 7 + i, 5:8] = 255
        if i % 2 == 0:
            mask[h - 5, w - 6] = 255
        write_image(root / "masks" / f"{item}.png", mask)
        masks[item] = mask > 0
    (root / "img_idx").mkdir(parents=True, exist_ok=True)
    (root / "img_idx" / "test.txt").write_text("\n".join(ids) + "\n")
    return masks


def prob_map(mask: np.ndarray, shift: int = 0) -> np.ndarray:
    """Float probabilities: the mask shifted right by ``shift`` at 0.9, one false pixel at 0.7,
    a faint background at 0.2."""
    prob = np.full(mask.shape, 0.2)
    prob[np.roll(mask, shift, axis=1)] = 0.9
    prob[1, 1] = 0.7
    return prob


def write_preds(pred_dir: Path, masks: dict[str, np.ndarray]) -> None:
    """a: 8-bit map, b: 16-bit map, c: binary 0/255 BMP."""
    for k, (item, mask) in enumerate(masks.items()):
        prob = prob_map(mask, shift=k)
        if k % 3 == 0:
            write_image(pred_dir / f"{item}.png", np.round(prob * 255).astype(np.uint8))
        elif k % 3 == 1:
            write_image(pred_dir / f"{item}.png", np.round(prob * 65535).astype(np.uint16))
        else:
            write_image(pred_dir / f"{item}.bmp", ((prob > 0.5) * 255).astype(np.uint8))


@pytest.fixture
def case(tmp_path):
    masks = make_dataset(tmp_path / "ds")
    write_preds(tmp_path / "pred", masks)
    return tmp_path / "ds", tmp_path / "pred", masks


def run(argv, capsys):
    rc = main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def expected_scores(pred_dir: Path, masks: dict[str, np.ndarray], threshold=0.5, ids=None):
    m = SegmentationMetrics(threshold=threshold)
    for item in ids or masks:
        path = next(pred_dir.glob(f"{item}.*"))
        m.update(read_probability(path), masks[item])
    return m.compute()


def test_scores_folder_prints_table_and_writes_json(case, tmp_path, capsys):
    ds, pred, masks = case
    out_json = tmp_path / "out" / "metrics.json"
    rc, out, _ = run(["--dataset", ds, "--split", "test", "--pred", pred, "--json", out_json], capsys)
    assert rc == 0
    for label in ("IoU", "nIoU (empty GT = 0)", "PixAcc", "Pd", "Fa (x1e-6)", "F1 (target)", "AUC"):
        assert f"| {label} |" in out
    report = json.loads(out_json.read_text())
    assert report["nIoU_empty_gt"] == "community"
    for key in (*SCALAR_KEYS, "AUC", "dataset", "split", "n_images", "threshold", "counts", "curves"):
        assert key in report, key
    assert report["n_images"] == 3 and report["split"] == "test" and report["threshold"] == 0.5
    expected = expected_scores(pred, masks)
    for key in SCALAR_KEYS:
        assert report[key] == pytest.approx(expected[key], abs=1e-12), key
    # three images: a and b shifted 0 / 1 px (matched), c shifted 2 px; one false pixel each
    assert report["counts"]["gt_targets"] == 5
    assert report["counts"]["false_alarm_pixels"] == 3
    assert report["Fa"] == pytest.approx(3 / (3 * 24 * 32))
    assert len(report["curves"]["roc"]["tpr"]) == 101
    assert not list(out_json.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_threshold_is_applied(case, capsys, tmp_path):
    ds, pred, masks = case
    out_json = tmp_path / "t.json"
    # 0.7 (the false pixel) is above 0.6 but not above 0.75
    run(["--dataset", ds, "--pred", pred, "--threshold", "0.75", "--json", out_json], capsys)
    assert json.loads(out_json.read_text())["counts"]["false_alarm_pixels"] == 1  # only the binary BMP
    run(["--dataset", ds, "--pred", pred, "--threshold", "0.1", "--json", out_json], capsys)
    report = json.loads(out_json.read_text())
    assert report["threshold"] == 0.1
    assert report["IoU"] == pytest.approx(expected_scores(pred, masks, threshold=0.1)["IoU"])


def test_missing_prediction_is_an_error_naming_the_file(case, capsys, tmp_path):
    ds, pred, masks = case
    (pred / "b.png").unlink()
    rc, _, err = run(["--dataset", ds, "--pred", pred], capsys)
    assert rc == 2
    assert err.startswith("error:") and str(pred / "b") in err and "'b'" in err
    out_json = tmp_path / "skip.json"
    rc, out, _ = run(["--dataset", ds, "--pred", pred, "--skip-bad", "--json", out_json], capsys)
    assert rc == 0
    assert "skipped 1 of 3 samples" in out and "  b: " in out
    report = json.loads(out_json.read_text())
    assert report["n_images"] == 2 and [s["id"] for s in report["skipped"]] == ["b"]
    assert report["IoU"] == pytest.approx(expected_scores(pred, masks, ids=["a", "c"])["IoU"])


def test_size_mismatch_is_an_error_naming_the_file(case, capsys):
    ds, pred, _ = case
    write_image(pred / "a.png", np.zeros((24, 31), np.uint8))
    rc, _, err = run(["--dataset", ds, "--pred", pred], capsys)
    assert rc == 2 and str(pred / "a.png") in err and "31x24" in err and "32x24" in err
    rc, out, _ = run(["--dataset", ds, "--pred", pred, "--skip-bad"], capsys)
    assert rc == 0 and "skipped 1 of 3 samples" in out and "a: " in out


def test_unreadable_prediction(case, capsys):
    ds, pred, _ = case
    (pred / "c.bmp").write_bytes(b"not an image at all")
    rc, _, err = run(["--dataset", ds, "--pred", pred], capsys)
    assert rc == 2 and str(pred / "c.bmp") in err
    rc, out, _ = run(["--dataset", ds, "--pred", pred, "--skip-bad"], capsys)
    assert rc == 0 and "c: " in out


def test_ambiguous_prediction_and_stray_files(case, capsys):
    ds, pred, _ = case
    (pred / "notes.txt").write_text("hello")
    (pred / "sub").mkdir()
    rc, out, _ = run(["--dataset", ds, "--pred", pred], capsys)
    assert rc == 0 and "ignored 2 non-image entries" in out and "notes.txt" in out
    write_image(pred / "a.tif", np.zeros((24, 32), np.uint8))
    rc, _, err = run(["--dataset", ds, "--pred", pred], capsys)
    assert rc == 2 and "several predictions for id 'a'" in err and "a.tif" in err


def test_everything_skipped_is_an_error(case, capsys):
    ds, pred, _ = case
    for f in pred.iterdir():
        f.unlink()
    rc, _, err = run(["--dataset", ds, "--pred", pred, "--skip-bad"], capsys)
    assert rc == 2 and "no sample left" in err


def test_bad_arguments(case, capsys, tmp_path):
    ds, pred, _ = case
    rc, _, err = run(["--dataset", ds, "--pred", tmp_path / "nope"], capsys)
    assert rc == 2 and "prediction folder not found" in err
    rc, _, err = run(["--dataset", ds, "--pred", pred, "--threshold", "1.5"], capsys)
    assert rc == 2 and "--threshold" in err
    rc, _, err = run(["--dataset", tmp_path / "missing", "--pred", pred], capsys)
    assert rc == 2 and err.startswith("error:")
    (tmp_path / "isdir.json").mkdir()
    rc, _, err = run(["--dataset", ds, "--pred", pred, "--json", tmp_path / "isdir.json"], capsys)
    assert rc == 2 and "isdir.json" in err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    assert "--skip-bad" in capsys.readouterr().out


@pytest.mark.nuaa
def test_nuaa_acceptance_against_independent_reference(nuaa_root, tmp_path, capsys):
    """IoU, nIoU, Pd, Fa from `irstd evaluate` equal (1e-6) the regionprops reference on
    NUAA-SIRST test predictions stored as 8-bit and 16-bit probability maps."""
    from irstd.data import IRSTDDataset

    bench = _load_bench()
    ds = IRSTDDataset(nuaa_root, split="test")
    pred = tmp_path / "pred"
    for i, item in enumerate(ds.ids):
        prob = bench.perturbed_prediction(read_mask(ds.mask_path(item)), i)
        if i % 2:
            write_image(pred / f"{item}.png", np.round(prob * 255).astype(np.uint8))
        else:
            write_image(pred / f"{item}.png", np.round(prob * 65535).astype(np.uint16))
    out_json = tmp_path / "nuaa.json"
    rc, _, _ = run(["--dataset", nuaa_root, "--split", "test", "--pred", pred, "--json", out_json], capsys)
    assert rc == 0
    report = json.loads(out_json.read_text())
    assert report["n_images"] == 86

    probs = [read_probability(pred / f"{item}.png") for item in ds.ids]
    masks = [read_mask(ds.mask_path(item)) for item in ds.ids]
    ref = bench.reference_scores(probs, masks, threshold=0.5)
    for key in ("IoU", "nIoU", "Pd", "Fa"):
        assert abs(report[key] - ref[key]) <= 1e-6, (key, report[key], ref[key])
    # the perturbations must exercise misses and false alarms
    assert ref["Pd"] < 1.0 and ref["Fa"] > 0.0


def test_image_with_empty_ground_truth_scores_zero_in_niou(tmp_path, capsys):
    """The community nIoU: an image with no target and no prediction adds 0, not 1."""
    ds, pred = tmp_path / "ds", tmp_path / "pred"
    masks = make_dataset(ds, ids=("a",))
    write_image(ds / "images" / "e.png", np.full((24, 32), 90, np.uint8))
    write_image(ds / "masks" / "e.png", np.zeros((24, 32), np.uint8))
    (ds / "img_idx" / "test.txt").write_text("a\ne\n")
    write_image(pred / "a.png", masks["a"].astype(np.uint8) * 255)  # exact: IoU 1
    write_image(pred / "e.png", np.zeros((24, 32), np.uint8))  # nothing predicted on nothing
    out_json = tmp_path / "e.json"
    rc, out, _ = run(["--dataset", ds, "--pred", pred, "--json", out_json], capsys)
    assert rc == 0
    assert "| nIoU (empty GT = 0) | 0.5000 |" in out
    report = json.loads(out_json.read_text())
    assert report["nIoU"] == 0.5 and report["IoU"] == 1.0 and report["nIoU_empty_gt"] == "community"
