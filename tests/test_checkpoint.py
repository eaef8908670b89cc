"""Checkpoints: safetensors weights, weights_only state files, foreign .pth files, crash-safe
checkpoint directories, and exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from irstd.engine.checkpoint import (
    checkpoint_dir,
    load_weights,
    read_state,
    read_state_dict,
    read_weights_metadata,
    save_weights,
    state_bytes,
    write_checkpoint_dir,
)
from irstd.engine.seed import capture_rng_state, restore_rng_state
from irstd.errors import IRSTDError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_safetensors_round_trip_with_metadata(tmp_path):
    net = _net()
    save_weights(net, tmp_path / "w.safetensors", {"model": "x", "kwargs": {"a": 1}})
    other = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))
    meta = load_weights(other, tmp_path / "w.safetensors")
    assert _same(net, other)
    assert meta == {"model": "x", "kwargs": {"a": 1}}
    assert read_weights_metadata(tmp_path / "w.safetensors")["model"] == "x"
    assert not list(tmp_path.glob("*.tmp")), "atomic write leaves no temporary file"


@pytest.mark.parametrize("layout", ["plain", "nested", "dataparallel"])
def test_foreign_pth_loads_with_weights_only(tmp_path, layout):
    net = _net()
    state = net.state_dict()
    if layout == "nested":  # as public training scripts save: {"epoch": ..., "state_dict": ...}
        obj = {"epoch": 400, "state_dict": state, "mean_IOU": 0.77, "optimizer": {"lr": 0.05}}
    elif layout == "dataparallel":
        obj = {f"module.{k}": v for k, v in state.items()}
    else:
        obj = state
    torch.save(obj, tmp_path / "w.pth")
    fresh = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))
    assert load_weights(fresh, tmp_path / "w.pth") == {}
    assert _same(net, fresh)


class _Evil:
    """An arbitrary object: unpickling it would run code chosen by the file's author."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": _net().state_dict(), "payload": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(IRSTDError, match="refused to load"):
        read_state_dict(tmp_path / "evil.pth")
    torch.save(_net(), tmp_path / "whole_model.pth")  # a pickled nn.Module
    with pytest.raises(IRSTDError, match="refused to load"):
        load_weights(_net(), tmp_path / "whole_model.pth")


def test_bad_weight_files_are_clear_errors(tmp_path):
    with pytest.raises(IRSTDError, match="weights file not found"):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(IRSTDError, match="not a readable PyTorch weights file"):
        read_state_dict(tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(IRSTDError, match="not a readable safetensors file"):
        read_state_dict(tmp_path / "junk.safetensors")
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "empty.pth")
    with pytest.raises(IRSTDError, match="no state dict found"):
        read_state_dict(tmp_path / "empty.pth")


def test_key_and_shape_mismatches_are_listed(tmp_path):
    save_weights(_net(), tmp_path / "w.safetensors")
    wider = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 1))
    with pytest.raises(IRSTDError) as err:
        load_weights(wider, tmp_path / "w.safetensors")
    msg = str(err.value)
    assert "w.safetensors" in msg and "shape mismatch" in msg and "0.weight (file [4, 1, 3, 3] vs model [8, 1, 3, 3])" in msg
    deeper = nn.Sequential(*_net(), nn.Conv2d(1, 1, 1))
    with pytest.raises(IRSTDError, match=r"2 missing key\(s\): 4.weight, 4.bias"):
        load_weights(deeper, tmp_path / "w.safetensors")
    load_weights(deeper, tmp_path / "w.safetensors", strict=False)  # matching keys only


def test_training_state_is_plain_data_with_rng(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(2, 1, 8, 8)).mean().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": capture_rng_state(), "best": {"value": None, "epoch": 3}}
    (tmp_path / "state.pt").write_bytes(state_bytes(state))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = read_state(tmp_path / "state.pt")  # torch.load(weights_only=True) inside
    restore_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    opt2 = torch.optim.Adam(_net().parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_checkpoint_dir_swap_survives_interruption(tmp_path):
    write_checkpoint_dir(tmp_path, "last", {"a.txt": b"1"})
    write_checkpoint_dir(tmp_path, "last", {"a.txt": b"2"})
    assert (tmp_path / "last" / "a.txt").read_bytes() == b"2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    # crash after 'last' was moved away and before the new one was moved in: the new one is used
    os.rename(tmp_path / "last", tmp_path / ".last.old")
    (tmp_path / ".last.tmp").mkdir()
    (tmp_path / ".last.tmp" / "a.txt").write_bytes(b"3")
    (tmp_path / ".last.tmp" / "COMPLETE").write_bytes(b"")
    assert (checkpoint_dir(tmp_path, "last") / "a.txt").read_bytes() == b"3"
    # crash while writing the new one (no COMPLETE marker): the old one is restored
    os.rename(tmp_path / "last", tmp_path / ".last.old")
    (tmp_path / ".last.tmp").mkdir()
    (tmp_path / ".last.tmp" / "a.txt").write_bytes(b"half")
    assert (checkpoint_dir(tmp_path, "last") / "a.txt").read_bytes() == b"3"
    # an incomplete leftover next to a good checkpoint is ignored, then replaced
    assert checkpoint_dir(tmp_path, "last").name == "last"
    write_checkpoint_dir(tmp_path, "last", {"a.txt": b"4"})
    assert (tmp_path / "last" / "a.txt").read_bytes() == b"4" and not (tmp_path / ".last.tmp").exists()
    assert checkpoint_dir(tmp_path, "best") is None


# ------------------------------------------------------------------------------ SIGKILL + resume


def _irstd(*args: str) -> list[str]:
    return [sys.executable, "-m", "irstd", *args]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    from irstd.data.synth import make_dataset

    root = tmp_path / "ds"
    make_dataset(root, "k", 56, (48, 48), seed=5, max_targets=2)
    common = [
        f"data.root={root}",
        "model.name=acm",
        "data.crop_size=32",
        "data.val_fraction=0.15",
        "loss.name=softiou+bce",
        "optim.lr=0.003",
        "schedule.warmup_epochs=0.5",
        "train.epochs=4",  # epochs 3-4 give a margin to kill the run in epoch 2 on a fast machine
        "train.batch_size=2",
        "train.checkpoint_interval=5",
        "train.progress=false",
        "train.threads=1",
    ]
    # reference: uninterrupted, no data-loader workers
    ref = subprocess.run(
        _irstd("train", *common, "data.workers=0", "--out", str(tmp_path / "A")),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ref.returncode == 0, ref.stderr
    steps = read_state(tmp_path / "A" / "last" / "state.pt")["steps_per_epoch"]
    assert steps >= 15

    # same run with a worker process, killed in the middle of epoch 2 (after a mid-epoch checkpoint)
    run_b = tmp_path / "B"
    proc = subprocess.Popen(
        _irstd("train", *common, "data.workers=1", "--out", str(run_b)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        info = run_b / "last" / "info.json"
        try:
            data = json.loads(info.read_text())
        except (OSError, ValueError):
            data = None
        if data and data["completed_epochs"] == 1 and data["step_in_epoch"] > 0:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = data
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_at is not None, f"run ended before it could be killed: {proc.stderr.read()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert not (run_b / "test_metrics.json").exists()
    state = read_state(checkpoint_dir(run_b, "last") / "state.pt")
    assert state["epoch"] == 1 and 0 < state["step_in_epoch"] < steps, "resume point is inside epoch 2"

    res = subprocess.run(
        _irstd("train", "--resume", str(run_b)), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr

    for name in ("last", "best"):
        wa, wb = _weights(tmp_path / "A" / name / "model.safetensors"), _weights(run_b / name / "model.safetensors")
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{name} weights differ after resume"
    ma = json.loads((tmp_path / "A" / "test_metrics.json").read_text())
    mb = json.loads((run_b / "test_metrics.json").read_text())
    assert ma == mb
    log_a = (tmp_path / "A" / "log.csv").read_text().splitlines()
    log_b = (run_b / "log.csv").read_text().splitlines()
    assert len(log_a) == len(log_b) == 5  # header + 4 epochs, no duplicate row after the resume
    col = log_a[0].split(",").index("loss")
    assert [r.split(",")[col] for r in log_a] == [r.split(",")[col] for r in log_b]
