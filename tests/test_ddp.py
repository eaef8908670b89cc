"""Distributed training: `torchrun --nproc_per_node=2 -m irstd train` on the CPU (gloo)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_process_cpu_ddp_run(tmp_path, torchrun):
    from irstd.config import load_config
    from irstd.data import IRSTDDataset
    from irstd.data.synth import make_dataset
    from irstd.engine.checkpoint import load_weights
    from irstd.engine.evaluator import evaluate
    from irstd.models import create

    root = tmp_path / "ds"
    make_dataset(root, "d", 30, (48, 48), seed=2, max_targets=2)
    run = tmp_path / "run"
    res = torchrun([
        "-m", "irstd", "train",
        f"data.root={root}", "model.name=acm", "data.crop_size=32", "data.workers=0", "data.val_fraction=0.2",
        "loss.name=softiou+bce", "optim.lr=0.003", "train.epochs=2", "train.batch_size=4",
        "train.progress=false", "train.threads=1", "--out", str(run),
    ])
    assert res.returncode == 0, res.stderr[-4000:]
    assert "on cpu x2" in res.stderr  # the run announced two processes
    assert res.stderr.count("test (best checkpoint") == 1, "only rank 0 reports"

    with open(run / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # one writer: no duplicated rows
    train_ids = (run / "train_ids.txt").read_text().split()
    assert int(rows[-1]["step"]) == 2 * (len(train_ids) // 4)  # global batch 4 = 2 processes x 2
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers

    # metrics reduced over the two processes equal a single-process evaluation of the same weights
    cfg = load_config(run / "config.yaml")
    net = create("acm")
    load_weights(net, run / "best" / "model.safetensors")
    single = evaluate(net, IRSTDDataset(root, split="test"), "cpu", cfg.eval.threshold)
    reported = json.loads((run / "test_metrics.json").read_text())
    for key in ("IoU", "nIoU", "PixAcc", "Pd", "Fa", "F1"):
        assert reported[key] == pytest.approx(single[key], rel=1e-9, abs=1e-12), key
    val_ids = (run / "val_ids.txt").read_text().split()
    best = json.loads((run / "best" / "info.json").read_text())
    val = evaluate(net, IRSTDDataset(root, ids=val_ids), "cpu", cfg.eval.threshold)
    assert best["val"]["IoU"] == pytest.approx(val["IoU"], rel=1e-9, abs=1e-12)
