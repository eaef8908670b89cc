"""`irstd report`: a run (checkpoint, log.csv, test_metrics.json, robustness.json, policy.png) and
prediction folders on a small generated dataset; the HTML is self-contained and opens in headless
Chromium without console errors; bad input gives one error line and leaves nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from irstd.cli import main
from irstd.data.io import read_image, write_image

IDS = ["a0", "a1", "a2", "a3"]


def _frame(h, w, targets, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = 90 + rng.normal(0, 3, (h, w))
    mask = np.zeros((h, w), dtype=bool)
    for y, x in targets:
        blob = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.5**2))
        img += 60 * blob
        mask |= blob > 0.5
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep") / "ds"
    sizes = [(64, 80), (97, 131), (120, 96), (70, 70)]
    for k, (item, (h, w)) in enumerate(zip(IDS, sizes)):
        targets = [] if k == 3 else [(h // 3, w // 3), (2 * h // 3, 3 * w // 4)][: 1 + k % 2]
        img, mask = _frame(h, w, targets, seed=k)
        write_image(root / "images" / f"{item}.png", img)
        write_image(root / "masks" / f"{item}.png", mask.astype(np.uint8) * 255)
    (root / "img_idx").mkdir()
    (root / "img_idx" / "test.txt").write_text("\n".join(IDS) + "\n")
    (root / "img_idx" / "train.txt").write_text("\n".join(IDS) + "\n")
    return root


def _robustness_json() -> dict:
    sev = lambda iou: {"IoU": iou, "nIoU": iou, "Pd": 0.9, "Fa": 2e-5, "RCE": (0.6 - iou) / 0.6, "PixAcc": 0.9, "F1": 0.8}  # noqa: E731
    return {
        "meta": {"dataset": "/x/ds", "split": "test", "num_images": 4, "severities": [1, 2, 3], "seed": 0,
                 "levels": 3, "imagenet_levels": [1, 3, 5], "threshold": 0.5},
        "clean": {"IoU": 0.6, "nIoU": 0.6, "Pd": 0.95, "Fa": 1e-5},
        "corruptions": {
            name: {"display": disp, "severities": {"1": sev(0.55), "2": sev(0.5), "3": sev(0.4)},
                   "mean": {"IoU": 0.4833, "RCE": 0.194}}
            for name, disp in (("gaussian_noise", "Gaussian noise"), ("contrast", "Contrast"))
        },
        "average": {"IoU": 0.4833, "RCE": 0.194},
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dataset):
    """A run as irstd train leaves it, with the shipped detector's weights as its best checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from irstd.config import load_config, save_config
    from irstd.engine.predictor import DEFAULT_WEIGHTS

    run = tmp_path_factory.mktemp("runs") / "myrun"
    (run / "best").mkdir(parents=True)
    cfg = load_config(None, ["model.name=litenet", "model.kwargs.fuse_act=relu", f"data.root={dataset}", "data.test_split=test"])
    save_config(cfg, run / "config.yaml")
    shutil.copy(DEFAULT_WEIGHTS, run / "best" / "model.safetensors")
    rows = ["epoch,step,lr,loss,val_IoU,val_Pd,best_IoU"]
    rows += [f"{e},{10 * e},{0.002 / e:.6f},{1.0 / e:.4f},{'' if e % 2 else 0.1 * e},{'' if e % 2 else 0.12 * e},0.5" for e in range(1, 7)]
    (run / "log.csv").write_text("\n".join(rows) + "\n")
    (run / "test_metrics.json").write_text(json.dumps({"IoU": 0.123, "nIoU": 0.2, "Pd": 0.5, "Fa": 1e-5, "checkpoint": "best",
                                                       "epoch": 6, "dataset": str(dataset), "split": "test", "threshold": 0.5}))
    (run / "robustness").mkdir()
    (run / "robustness" / "robustness.json").write_text(json.dumps(_robustness_json()))
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(run / "policy.png")
    plt.close(fig)
    return run


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def report(tmp_path_factory, dataset, run_dir, one_thread):
    """One report of the run, a folder of predictions from irstd predict and the ground truth itself."""
    tmp = tmp_path_factory.mktemp("out")
    assert main(["predict", str(dataset / "images"), "--out", str(tmp / "pred"), "--save-prob", "--quiet"]) == 0
    truth = tmp / "truth"
    shutil.copytree(dataset / "masks", truth)
    out = tmp / "report"
    rc = main(["report", str(run_dir), "--pred", str(tmp / "pred"), "--pred", str(truth), "--dataset", str(dataset), "--out", str(out), "--quiet"])
    assert rc == 0
    return out / "index.html"


def test_report_contents(report, dataset):
    text = report.read_text(encoding="utf-8")
    assert sorted(p.name for p in report.parent.iterdir()) == ["index.html"]
    # self-contained: every picture inline, nothing fetched from anywhere
    srcs = re.findall(r'<img[^>]* src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<link" not in text
    assert 'id="metrics"' in text and "test_metrics.json" in text and "0.1230" in text
    # gallery: one card per image, one overlay and one pixel map per source and image
    cards = re.findall(r'<div class="card" data-id="([^"]+)"', text)
    assert cards == IDS
    assert len(re.findall(r'alt="overlay ', text)) == 3 * len(IDS) and len(re.findall(r'alt="pixels ', text)) == 3 * len(IDS)
    assert "Training curves (log.csv)" in text and "HRL corruption policy" in text
    assert "Gaussian noise" in text and "Robustness (robustness.json)" in text
    assert "alt=\"ROC and Pd-Fa curves\"" in text


def test_ground_truth_as_predictions_scores_one(report):
    text = report.read_text(encoding="utf-8")
    row = re.search(r'<tr><td class="l">truth</td>.*?</tr>', text).group(0)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    # images, threshold, IoU, nIoU, Pd, Fa, F1, ...
    assert cells[0] == "4" and cells[2] == "1.0000" and cells[4] == "1.0000" and cells[5] == "0.00"
    # per-image IoU of the third source (k = 2): 1 where there are targets, 0 for the empty image
    ious = [float(v) for v in re.findall(r'data-iou-2="([0-9.]+)"', text)]
    assert ious == [1.0, 1.0, 1.0, 0.0]
    assert re.findall(r'data-err-2="(\d+)"', text) == ["0", "0", "0", "0"]


def test_report_metrics_are_the_evaluators(report, dataset, run_dir, tmp_path):
    # the run's row equals irstd test on the same split: one metrics implementation
    assert main(["test", "--run", str(run_dir), "--dataset", str(dataset), "--split", "test", "--out", str(tmp_path / "t"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    text = report.read_text(encoding="utf-8")
    row = re.search(r'<tr><td class="l">myrun</td>.*?</tr>', text).group(0)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells[2] == f"{metrics['IoU']:.4f}" and cells[4] == f"{metrics['Pd']:.4f}"
    # and the folder of predictions written by irstd predict from the same detector
    row = re.search(r'<tr><td class="l">pred</td>.*?</tr>', text).group(0)
    assert re.findall(r"<td>([^<]*)</td>", row)[2] == f"{metrics['IoU']:.4f}"


def _chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium); the browser check is skipped")


def _open(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome-profile'}", "--enable-logging=stderr", "--v=0", *extra, page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_report_in_headless_chromium(report, tmp_path):
    # the console check itself: a page with an error must be caught
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>notDefinedAnywhere();</script></body></html>")
    assert any("Uncaught" in line for line in _console(_open(bad, tmp_path, "--dump-dom").stderr))

    dom = _open(report, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == []
    # the script ran: it sorts worst IoU first and fills in the count
    assert "4 of 4 images shown" in dom.stdout
    order = re.findall(r'<div class="card" data-id="([^"]+)"', dom.stdout)
    assert sorted(order) == IDS and 'id="metrics"' in dom.stdout

    shot = tmp_path / "shot.png"
    res = _open(report, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert _console(res.stderr) == []
    pixels = read_image(shot)
    assert pixels.shape == (2000, 1280)
    # not a blank page: the table, plots and gallery pictures give many grey levels
    assert len(np.unique(pixels)) > 50


def test_report_bad_input(dataset, run_dir, tmp_path, capsys):
    def err(argv):
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    out = tmp_path / "r" / "report"
    # a run without checkpoints
    empty = tmp_path / "nock"
    empty.mkdir()
    shutil.copy(run_dir / "config.yaml", empty / "config.yaml")
    assert "no best or last checkpoint" in err(["report", str(empty), "--dataset", str(dataset), "--out", str(out)])
    # predictions of other ids than the dataset's
    other = tmp_path / "other"
    for k in range(3):
        write_image(other / f"frame{k}.png", np.zeros((8, 8), np.uint8))
    assert "other ids than" in err(["report", "--pred", str(other), "--dataset", str(dataset), "--out", str(out)])
    # one id missing
    partial = tmp_path / "partial"
    shutil.copytree(dataset / "masks", partial)
    (partial / "a2.png").unlink()
    assert "1 of 4 ids" in err(["report", "--pred", str(partial), "--dataset", str(dataset), "--out", str(out)])
    # a robustness.json without a field the report reads
    broken = tmp_path / "broken_run"
    shutil.copytree(run_dir, broken)
    data = _robustness_json()
    del data["corruptions"]["contrast"]["mean"]["RCE"]
    (broken / "robustness" / "robustness.json").write_text(json.dumps(data))
    msg = err(["report", str(broken), "--dataset", str(dataset), "--out", str(out), "--quiet"])
    assert "corruptions.contrast.mean.RCE" in msg
    assert "give RUN_DIR" in err(["report", "--dataset", str(dataset), "--out", str(out)])
    assert not (tmp_path / "r").exists()  # failing commands leave nothing, parents included
