"""Weight EMA (``train.ema``): the update rule and its warm-up, and a training run whose validation,
checkpoints and resume use the averaged weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from irstd.config import load_config
from irstd.data.io import write_image
from irstd.engine.ema import ModelEma, ema_decay
from irstd.errors import IRSTDError


def test_decay_warm_up_and_update_rule():
    assert ema_decay(0.999, 0) == pytest.approx(0.1)
    assert ema_decay(0.999, 90) == pytest.approx(91 / 100)
    assert ema_decay(0.999, 10**6) == 0.999
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ema = ModelEma(net, 0.9)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net[1].running_mean.add_(2.0)
        net[1].num_batches_tracked.add_(5)
    ema.update(net, step=10**6)  # past the warm-up: d = 0.9
    after = ema.module.state_dict()
    for k, v in net.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(after[k], 0.9 * before[k] + 0.1 * v)
        else:
            assert torch.equal(after[k], v)
    # the copy is its own module: training the original does not move it
    with torch.no_grad():
        net[0].weight.add_(5.0)
    torch.testing.assert_close(after["0.weight"], ema.module.state_dict()["0.weight"])
    with pytest.raises(ValueError):
        ModelEma(net, 1.0)


def test_config_rejects_a_bad_decay():
    assert load_config(None, ["train.ema=0.999"]).train.ema == 0.999
    with pytest.raises(IRSTDError, match="train.ema"):
        load_config(None, ["train.ema=1.0"])


def _dataset(root, n=8):
    rng = np.random.default_rng(0)
    ids = [f"s{k}" for k in range(n)]
    for item in ids:
        img = rng.integers(0, 100, (40, 40), dtype=np.uint8)
        mask = np.zeros((40, 40), np.uint8)
        r, c = rng.integers(5, 30, 2)
        img[r : r + 3, c : c + 3] = 240
        mask[r : r + 3, c : c + 3] = 255
        write_image(root / "images" / f"{item}.png", img)
        write_image(root / "masks" / f"{item}.png", mask)
    (root / "img_idx").mkdir(parents=True, exist_ok=True)
    (root / "img_idx" / "train.txt").write_text("\n".join(ids) + "\n")
    (root / "img_idx" / "test.txt").write_text("\n".join(ids[:3]) + "\n")


def _cfg(root, *extra):
    return load_config(None, [
        f"data.root={root}", "model.name=litenet", "data.crop_size=32", "data.workers=0", "data.val_fraction=0.25",
        "schedule.name=constant", "optim.lr=1e-3", "train.batch_size=2", "train.progress=false", "train.threads=1",
        "train.amp=false", "train.ema=0.9", *extra,
    ])


def test_training_with_ema_validates_saves_and_resumes_the_average(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from irstd.engine import Trainer

    _dataset(tmp_path / "ds")
    a = Trainer(_cfg(tmp_path / "ds", "train.epochs=2"), run_dir=tmp_path / "a")
    a.fit()
    last = tmp_path / "a" / "last"
    averaged, raw = load_file(str(last / "model.safetensors")), load_file(str(last / "train_weights.safetensors"))
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw if raw[k].dtype.is_floating_point)
    assert all(torch.equal(raw[k], v) for k, v in a.net.state_dict().items())
    # the test scored the best checkpoint's averaged network, loaded into the EMA copy
    best = load_file(str(tmp_path / "a" / "best" / "model.safetensors"))
    assert all(torch.equal(best[k], v) for k, v in a.ema.module.state_dict().items())
    assert not all(torch.equal(best[k], raw[k]) for k in raw)

    # crash in epoch 2, resume from the end of epoch 1: the same raw and averaged weights
    original = ModelEma.update

    def crash(self, model, step):
        if step == a.sampler.steps + 1:
            raise RuntimeError("simulated crash")
        original(self, model, step)

    monkeypatch.setattr(ModelEma, "update", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(_cfg(tmp_path / "ds", "train.epochs=2"), run_dir=tmp_path / "b").fit()
    monkeypatch.setattr(ModelEma, "update", original)
    Trainer.from_run_dir(tmp_path / "b").fit()
    for name in ("model.safetensors", "train_weights.safetensors"):
        wa = load_file(str(tmp_path / "a" / "last" / name))
        wb = load_file(str(tmp_path / "b" / "last" / name))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    assert json.loads((tmp_path / "a" / "test_metrics.json").read_text())["IoU"] == pytest.approx(
        json.loads((tmp_path / "b" / "test_metrics.json").read_text())["IoU"], abs=0)
