"""`irstd robustness` and irstd.engine.robustness: on-the-fly corrupted test sets, RCE, the Table-2
layout, outputs, agreement with `irstd corrupt` + evaluation, CLI and bad input."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.cli import main
from irstd.corruptions import PAPER_002_TABLE2
from irstd.data.io import read_image, write_image
from irstd.data.synth import make_dataset
from irstd.engine.robustness import (
    corruption_seed,
    image_seed,
    robustness_benchmark,
    robustness_csv,
    robustness_markdown,
    robustness_rows,
    write_robustness,
)
from irstd.errors import IRSTDError


class LocalContrast(nn.Module):
    """Fixed detector: normalised pixel minus its 9x9 mean, above ``level`` (logits scaled by
    ``gain``). Finds most synthetic targets, so the clean IoU is well above 0."""

    stride = 1
    deep_supervision = False

    def __init__(self, level: float = 2.0, gain: float = 4.0):
        super().__init__()
        self.level, self.gain = level, gain

    def forward(self, x):
        background = F.avg_pool2d(x, 9, stride=1, padding=4, count_include_pad=False)
        return self.gain * (x - background - self.level)


pytestmark = pytest.mark.usefixtures("one_thread")  # every test here on one torch thread (conftest.py)


@pytest.fixture(scope="module")
def synth8(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rob") / "syn8"
    make_dataset(root, "s8", 8, size=(48, 64), seed=3, test_fraction=0.5)
    return root


@pytest.fixture(scope="module")
def synth16(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rob") / "syn16"
    info = make_dataset(root, "s16", 6, size=(40, 56), seed=5, bit_depth=16, test_fraction=0.5)
    # a dim test frame (peak < 4095): its own full scale would be 12-bit, the dataset's is 14-bit
    dim = root / "images" / f"{info['test'][0]}.png"
    write_image(dim, (read_image(dim) // 5).astype(np.uint16))
    return root


@pytest.fixture(scope="module")
def full_results(synth8) -> dict:
    """All nine Table-2 corruptions at severities 1, 2, 3."""
    return robustness_benchmark(LocalContrast(), synth8, "test", seed=0, device="cpu")


def _scores(results: dict) -> dict:
    """Every metric of every (corruption, severity), without timing."""
    out = {("clean", 0): results["clean"]}
    for name, entry in results["corruptions"].items():
        for sev, values in entry["severities"].items():
            out[(name, int(sev))] = values
    return out


# ------------------------------------------------------------------------------- the library


def test_defaults_and_clean_iou_positive(full_results):
    meta = full_results["meta"]
    assert meta["corruptions"] == list(PAPER_002_TABLE2)
    assert meta["severities"] == [1, 2, 3] and meta["imagenet_levels"] == [1, 3, 5]
    assert meta["num_images"] == 4 and meta["threshold"] == 0.5 and meta["seed"] == 0
    assert full_results["clean"]["IoU"] > 0.1
    # corruptions hurt on average, and the strongest noise more than the mildest
    assert full_results["average"]["IoU"] < full_results["clean"]["IoU"]
    noise = full_results["corruptions"]["gaussian_noise"]["severities"]
    assert noise["3"]["IoU"] < noise["1"]["IoU"]


def test_same_seed_same_numbers_in_any_order(synth8, full_results):
    again = robustness_benchmark(LocalContrast(), synth8, "test", seed=0, device="cpu", batch_size=3)
    assert _scores(again) == _scores(full_results)
    # a subset in another order: each (corruption, severity) keeps its numbers
    subset = robustness_benchmark(LocalContrast(), synth8, "test", ["contrast", "motion_blur", "gaussian_noise"],
                                  [3, 1], seed=0, device="cpu", batch_size=1)
    full = _scores(full_results)
    for key, values in _scores(subset).items():
        assert values == full[key], key
    # another seed changes the random corruptions only
    other = _scores(robustness_benchmark(LocalContrast(), synth8, "test", ["gaussian_noise", "contrast"],
                                         [1, 2, 3], seed=7, device="cpu"))
    assert any(other[("gaussian_noise", s)]["IoU"] != full[("gaussian_noise", s)]["IoU"] for s in (1, 2, 3))
    for s in (1, 2, 3):
        assert {k: v for k, v in other[("contrast", s)].items() if k != "seed"} == \
            {k: v for k, v in full[("contrast", s)].items() if k != "seed"}


def test_seed_rule():
    from irstd.corruptions import derive_seed

    base = corruption_seed(0, "gaussian_noise", 2)
    assert base == derive_seed(0, "gaussian_noise/2")
    assert image_seed(0, "gaussian_noise", 2, "img7") == derive_seed(base, "img7")
    assert len({corruption_seed(0, n, s) for n in PAPER_002_TABLE2 for s in (1, 2, 3)}) == 27


def test_rce_and_means(full_results):
    clean = full_results["clean"]["IoU"]
    per_corruption = []
    for name, entry in full_results["corruptions"].items():
        sev = entry["severities"]
        for values in sev.values():
            assert values["RCE"] == pytest.approx((clean - values["IoU"]) / clean, abs=1e-12)
        for key in ("IoU", "nIoU", "Pd", "Fa", "RCE"):
            assert entry["mean"][key] == pytest.approx(np.mean([v[key] for v in sev.values()]), abs=1e-12)
        # mean of the RCEs = RCE of the mean IoU
        assert entry["mean"]["RCE"] == pytest.approx((clean - entry["mean"]["IoU"]) / clean, abs=1e-12)
        per_corruption.append(entry["mean"])
    for key in ("IoU", "nIoU", "Pd", "Fa", "RCE"):
        assert full_results["average"][key] == pytest.approx(np.mean([m[key] for m in per_corruption]), abs=1e-12)
    assert full_results["corruptions"]["defocus_blur"]["severities"]["2"]["params"] == {"radius": 6, "alias_sigma": 0.5}


@pytest.mark.parametrize("fixture", ["synth8", "synth16"])
@pytest.mark.parametrize("name,severity", [("gaussian_noise", 2), ("brightness", 3), ("motion_blur", 1)])
def test_equals_irstd_corrupt_then_evaluate(request, fixture, name, severity, tmp_path):
    """The on-the-fly set is the set `irstd corrupt --seed <corruption seed>` writes: corrupted in
    the native bit depth (16-bit: one full scale for the dataset), normalised afterwards."""
    from irstd.corruptions.dataset import corrupt_dataset
    from irstd.data import IRSTDDataset
    from irstd.engine.evaluator import evaluate

    root = request.getfixturevalue(fixture)
    res = robustness_benchmark(LocalContrast(level=1.5), root, "test", [name], [severity], seed=4, device="cpu")
    copy = tmp_path / "copy"
    corrupt_dataset(root, copy, name, severity, seed=corruption_seed(4, name, severity))
    ref = evaluate(LocalContrast(level=1.5), IRSTDDataset(copy, split="test"), "cpu")
    got = res["corruptions"][name]["severities"][str(severity)]
    for key in ("IoU", "nIoU", "Pd", "Fa", "PixAcc", "F1"):
        assert got[key] == ref[key], key
    clean = evaluate(LocalContrast(level=1.5), IRSTDDataset(root, split="test"), "cpu")
    assert res["clean"]["IoU"] == clean["IoU"]
    # one scale for the dataset: 14-bit data in 16-bit files, even for the dim frame
    assert res["meta"]["full_scale"] == (16383.0 if fixture == "synth16" else 255.0)


def test_bare_module_keeps_its_mode_and_threshold_override(synth8):
    net = LocalContrast()
    net.train()
    res = robustness_benchmark(net, synth8, "test", ["contrast"], [1], threshold=0.9, device="cpu")
    assert net.training and res["meta"]["threshold"] == 0.9


def test_zero_clean_iou_gives_undefined_rce(synth8, tmp_path):
    res = robustness_benchmark(LocalContrast(level=1e3), synth8, "test", ["contrast"], [1, 2], device="cpu")
    assert res["clean"]["IoU"] == 0.0
    assert math.isnan(res["corruptions"]["contrast"]["severities"]["1"]["RCE"])
    assert math.isnan(res["average"]["RCE"])
    paths = write_robustness(res, tmp_path / "o")
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN became null
    assert data["corruptions"]["contrast"]["mean"]["RCE"] is None
    assert "n/a" in paths["md"].read_text()
    # a reloaded JSON formats like the in-memory results
    assert robustness_markdown(data) == robustness_markdown(res)


# ---------------------------------------------------------------------------------- outputs


def test_markdown_layout(full_results):
    md = robustness_markdown(full_results, label="LC")
    lines = md.splitlines()
    table2 = [l for l in lines if l.startswith("| Method")]
    assert len(table2) == 1
    header = [c.strip() for c in table2[0].strip("|").split("|")]
    titles = ["Gaussian noise", "Shot noise", "Defocus blur", "Motion blur", "Gaussian blur",
              "Brightness", "Contrast", "Pixelate", "JPEG", "Average"]
    expected = ["Method", "Clean IoU↑"] + [f"{t} {m}" for t in titles for m in ("IoU↑", "RCE↓")]
    assert header == expected
    row = lines[lines.index(table2[0]) + 2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "LC" and len(cells) == len(header)
    assert cells[1] == f"{100 * full_results['clean']['IoU']:.2f}"
    assert cells[-2] == f"{100 * full_results['average']['IoU']:.2f}"
    assert cells[-1] == f"{100 * full_results['average']['RCE']:.2f}"
    g = full_results["corruptions"]["gaussian_noise"]["mean"]
    assert cells[2:4] == [f"{100 * g['IoU']:.2f}", f"{100 * g['RCE']:.2f}"]
    # long table: clean + 9 x (3 severities + mean) + average
    long_header = next(l for l in lines if l.startswith("| Corruption"))
    assert [c.strip() for c in long_header.strip("|").split("|")] == [
        "Corruption", "Severity", "IoU↑", "nIoU↑", "Pd↑", "Fa (1e-6)↓", "RCE↓"]
    start = lines.index(long_header) + 2
    body = [l for l in lines[start:] if l.startswith("|")]
    assert len(body) == 1 + 9 * 4 + 1
    assert body[0].startswith("| Clean |") and body[-1].startswith("| **Average** | **mean** |")
    fa = full_results["corruptions"]["shot_noise"]["severities"]["2"]["Fa"]
    assert "| Shot noise | 2 | " in md and f"{1e6 * fa:.2f}" in md


def test_csv_and_json_written(full_results, tmp_path):
    paths = write_robustness(full_results, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "robustness.csv", "robustness.json", "robustness.md"]
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert len(rows) == 1 + 9 * 4 + 1
    assert list(rows[0]) == ["corruption", "severity", "imagenet_level", "IoU", "nIoU", "Pd", "Fa", "RCE",
                             "PixAcc", "F1", "seed", "params"]
    assert rows[0]["corruption"] == "clean" and rows[0]["RCE"] == ""
    r = next(r for r in rows if r["corruption"] == "defocus_blur" and r["severity"] == "3")
    ref = full_results["corruptions"]["defocus_blur"]["severities"]["3"]
    assert float(r["IoU"]) == ref["IoU"] and float(r["RCE"]) == ref["RCE"]  # full precision
    assert r["imagenet_level"] == "5" and int(r["seed"]) == corruption_seed(0, "defocus_blur", 3)
    assert r["params"] == "radius=10 alias_sigma=0.5"
    assert rows[-1]["corruption"] == "average" and float(rows[-1]["IoU"]) == full_results["average"]["IoU"]
    assert paths["csv"].read_text() == robustness_csv(full_results)
    assert len(robustness_rows(full_results)) == len(rows)
    data = json.loads(paths["json"].read_text())
    for key in ("model", "weights", "dataset", "split", "seed", "seed_rule", "corruption_seeds",
                "severities", "levels", "threshold", "num_images", "corruptions"):
        assert key in data["meta"], key
    assert data["clean"] == full_results["clean"]
    assert data["corruptions"]["jpeg_compression"]["severities"]["1"]["IoU"] == \
        full_results["corruptions"]["jpeg_compression"]["severities"]["1"]["IoU"]


# --------------------------------------------------------------------------------------- CLI


def _cli(argv, capsys):
    rc = main(["robustness", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


@pytest.fixture(scope="module")
def acm_weights(tmp_path_factory) -> Path:
    from irstd.engine import save_weights
    from irstd.models import create

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "acm.safetensors"
    save_weights(create("acm"), path, {"model": "acm", "kwargs": {}, "in_chans": 1, "threshold": 0.5})
    return path


def test_cli_with_model_and_weights(synth8, acm_weights, tmp_path, capsys):
    out = tmp_path / "rob"
    argv = ["--model", "acm", "--weights", acm_weights, "--dataset", synth8, "--corruptions", "gaussian_noise",
            "jpeg_compression", "--severities", "1", "3", "--seed", "2", "--out", out, "--no-progress", "--device", "cpu"]
    rc, stdout, err = _cli(argv, capsys)
    assert rc == 0, err
    assert stdout == (out / "robustness.md").read_text()  # stdout is exactly the markdown
    assert "| Method | Clean IoU↑ | Gaussian noise IoU↑ | Gaussian noise RCE↓ | JPEG IoU↑" in stdout
    data = json.loads((out / "robustness.json").read_text())
    meta = data["meta"]
    assert meta["model"] == "acm" and meta["weights"] == str(acm_weights)
    assert meta["split"] == "test" and meta["seed"] == 2 and meta["severities"] == [1, 3]
    assert meta["corruptions"] == ["gaussian_noise", "jpeg_compression"] and meta["threshold"] == 0.5
    assert Path(meta["dataset"]) == synth8.resolve()
    assert "wrote" in err
    rows = list(csv.DictReader(io.StringIO((out / "robustness.csv").read_text())))
    assert [(r["corruption"], r["severity"]) for r in rows] == [
        ("clean", ""), ("gaussian_noise", "1"), ("gaussian_noise", "3"), ("gaussian_noise", "mean"),
        ("jpeg_compression", "1"), ("jpeg_compression", "3"), ("jpeg_compression", "mean"), ("average", "mean")]
    # the same numbers from the library with the same detector
    from irstd.engine import load_detector

    det = load_detector(model="acm", weights=acm_weights, device="cpu")
    lib = robustness_benchmark(det, synth8, "test", ["gaussian_noise", "jpeg_compression"], [1, 3], seed=2)
    assert _scores(lib) == _scores(data)


def test_cli_with_run_dir_default_out(synth8, acm_weights, tmp_path, capsys):
    from irstd.config import load_config, save_config

    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    cfg = load_config(None, ["model.name=acm", f"data.root={synth8}", "eval.threshold=0.4"])
    save_config(cfg, run / "config.yaml")
    (run / "best" / "model.safetensors").write_bytes(acm_weights.read_bytes())
    rc, stdout, err = _cli(["--run", run, "--corruptions", "contrast", "--severities", "2", "--no-progress",
                            "--device", "cpu"], capsys)
    assert rc == 0, err
    data = json.loads((run / "robustness" / "robustness.json").read_text())
    assert data["meta"]["model"] == "acm" and data["meta"]["threshold"] == 0.4
    assert data["meta"]["weights"] == str(run / "best" / "model.safetensors")
    assert "# Robustness: acm on syn8/test" in stdout


def test_cli_uses_the_full_scale_the_run_trained_with(synth8, acm_weights, tmp_path, capsys):
    import shutil

    from irstd.config import load_config, save_config

    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    cfg = load_config(None, ["model.name=acm", f"data.root={synth8}", "data.full_scale=300"])
    save_config(cfg, run / "config.yaml")
    (run / "best" / "model.safetensors").write_bytes(acm_weights.read_bytes())
    args = ["--run", run, "--corruptions", "brightness", "--severities", "1", "--no-progress", "--device", "cpu"]
    rc, _, err = _cli(args, capsys)
    assert rc == 0, err
    assert json.loads((run / "robustness" / "robustness.json").read_text())["meta"]["full_scale"] == 300
    # another dataset: its own rule; an explicit --full-scale wins
    other = tmp_path / "other"
    shutil.copytree(synth8, other)
    rc, _, err = _cli(args + ["--dataset", other, "--out", tmp_path / "o1"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "o1" / "robustness.json").read_text())["meta"]["full_scale"] == 255
    rc, _, err = _cli(args + ["--full-scale", "400", "--out", tmp_path / "o2"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "o2" / "robustness.json").read_text())["meta"]["full_scale"] == 400
    rc, _, err = _cli(args + ["--full-scale", "100", "--out", tmp_path / "o3"], capsys)
    assert rc == 2 and err.startswith("error: ") and "exceed the dataset's intensity full scale 100" in err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--corruptions", "gaussian_noise", "fog"], "unknown corruption 'fog'; valid names: gaussian_noise"),
        (["--severities", "4"], "severity must be an integer in 1..3, got 4"),
        (["--severities", "0", "1"], "severity must be an integer in 1..3"),
        (["--severities", "2", "2"], "severity given twice: 2"),
        (["--corruptions", "contrast", "contrast"], "corruption given twice: contrast"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--threshold", "1.5"], "--threshold must be in [0, 1]"),
    ],
)
def test_cli_bad_options(synth8, acm_weights, extra, message, capsys):
    rc, _, err = _cli(["--weights", acm_weights, "--dataset", synth8, "--no-progress", *extra], capsys)
    assert rc == 2 and err.startswith("error: ") and message in err, err


def test_cli_bad_sources(synth8, acm_weights, tmp_path, capsys):
    rc, _, err = _cli(["--run", tmp_path / "no_run", "--dataset", synth8], capsys)
    assert rc == 2 and "run directory not found" in err
    (tmp_path / "not_run").mkdir()
    rc, _, err = _cli(["--run", tmp_path / "not_run", "--dataset", synth8], capsys)
    assert rc == 2 and "not a run directory (no config.yaml)" in err
    rc, _, err = _cli(["--model", "acm", "--weights", tmp_path / "missing.safetensors", "--dataset", synth8], capsys)
    assert rc == 2 and "missing.safetensors: weights file not found" in err
    rc, _, err = _cli(["--run", tmp_path / "not_run", "--weights", acm_weights, "--dataset", synth8], capsys)
    assert rc == 2 and "not both" in err
    rc, _, err = _cli(["--weights", acm_weights], capsys)
    assert rc == 2 and "give --dataset DIR" in err


def test_cli_empty_or_missing_split(synth8, acm_weights, tmp_path, capsys):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(synth8, ds)
    (ds / "img_idx" / "val_s8.txt").write_text("\n")
    rc, _, err = _cli(["--weights", acm_weights, "--dataset", ds, "--split", "val", "--no-progress"], capsys)
    assert rc == 2 and "empty" in err
    rc, _, err = _cli(["--weights", acm_weights, "--dataset", tmp_path / "nothing", "--no-progress"], capsys)
    assert rc == 2 and "nothing" in err


def test_library_errors(synth8):
    with pytest.raises(IRSTDError, match="unknown corruption"):
        robustness_benchmark(LocalContrast(), synth8, "test", ["snow"])
    with pytest.raises(IRSTDError, match="no corruption given"):
        robustness_benchmark(LocalContrast(), synth8, "test", [])
    with pytest.raises(IRSTDError, match="no severity given"):
        robustness_benchmark(LocalContrast(), synth8, "test", severities=[])
    with pytest.raises(IRSTDError, match=r"1\.\.5, got 6"):
        robustness_benchmark(LocalContrast(), synth8, "test", severities=[6], levels=5)
    with pytest.raises(IRSTDError, match="batch size"):
        robustness_benchmark(LocalContrast(), synth8, "test", batch_size=0)
    with pytest.raises(TypeError):
        robustness_benchmark("acm", synth8, "test")


@pytest.mark.nuaa
def test_nuaa_mixed_modes(nuaa_root):
    """Real images (RGB/L/RGBA/P, several sizes) pass through one corruption quickly."""
    res = robustness_benchmark(LocalContrast(level=3.0), nuaa_root, "test", ["pixelate"], [2], device="cpu",
                               batch_size=2)
    assert res["meta"]["num_images"] == 86
    assert res["clean"]["IoU"] > 0 and 0 <= res["corruptions"]["pixelate"]["mean"]["IoU"] <= 1
