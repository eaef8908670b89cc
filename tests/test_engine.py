"""Engine pieces: LR schedules, losses, optimisers, deterministic sampling, and a short training run."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import pytest
import torch

from irstd.config import load_config
from irstd.engine.loader import EpochBatchSampler, steps_per_epoch
from irstd.engine.losses import SegLoss, bce_loss, deep_supervision_weights, dice_loss, focal_loss, soft_iou_loss
from irstd.engine.optim import LRScheduler, build_optimizer, build_scheduler, lr_at
from irstd.errors import IRSTDError


# ------------------------------------------------------------------------------------ schedules


def test_warmup_is_linear_per_iteration_and_hands_over_without_a_jump():
    base, w, total = 1e-3, 10, 100
    lrs = [lr_at(i, base, total, "cosine", warmup_steps=w, min_lr=1e-5) for i in range(total)]
    # i-th warm-up iteration uses base * (i + 1) / W: never 0, reaches base at the last one
    assert lrs[:w] == pytest.approx([base * (i + 1) / w for i in range(w)])
    assert lrs[w - 1] == pytest.approx(base) and lrs[w] == pytest.approx(base)
    assert all(b <= a + 1e-15 for a, b in zip(lrs[w:], lrs[w + 1 :])), "cosine part must not increase"
    assert lrs[-1] == pytest.approx(1e-5), "cosine reaches min_lr at the last iteration"


def test_cosine_values_match_the_formula():
    base, mn, w, total = 2e-3, 1e-5, 4, 24
    for i in (4, 9, 14, 23):
        t = (i - w) / (total - w - 1)
        expected = mn + (base - mn) * 0.5 * (1 + math.cos(math.pi * t))
        assert lr_at(i, base, total, "cosine", w, mn) == pytest.approx(expected, rel=1e-12)
    assert lr_at(0, base, total, "cosine", 0, mn) == pytest.approx(base)


def test_multistep_poly_constant():
    kw = dict(base_lr=0.1, total_steps=100)
    assert lr_at(29, name="multistep", milestones=[30, 60], gamma=0.1, **kw) == pytest.approx(0.1)
    assert lr_at(30, name="multistep", milestones=[30, 60], gamma=0.1, **kw) == pytest.approx(0.01)
    assert lr_at(99, name="multistep", milestones=[30, 60], gamma=0.1, **kw) == pytest.approx(0.001)
    assert lr_at(50, name="poly", power=0.9, **kw) == pytest.approx(0.1 * 0.5**0.9)
    assert lr_at(50, name="poly", power=1.0, min_lr=0.01, **kw) == pytest.approx(0.01 + 0.09 * 0.5)
    assert lr_at(77, name="constant", **kw) == 0.1
    assert lr_at(2, name="multistep", warmup_steps=5, milestones=[1], **kw) == pytest.approx(0.1 * 3 / 5)
    with pytest.raises(ValueError):
        lr_at(0, 0.1, 10, "cosine", warmup_steps=10)


def test_scheduler_drives_optimizer_per_iteration_and_resumes():
    cfg = load_config(None, ["schedule.warmup_epochs=1.5", "schedule.min_lr=1e-4", "optim.lr=0.01", "train.epochs=5"])
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = build_optimizer(params, cfg.optim)
    sched = build_scheduler(opt, cfg.schedule, steps_per_epoch=4, epochs=5)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [lr_at(i, 0.01, 20, "cosine", 6, 1e-4) for i in range(20)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert seen[-1] == pytest.approx(1e-4)
    # a fresh scheduler loaded from a mid-run state continues on the same curve
    opt2 = build_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg.optim)
    s2 = build_scheduler(opt2, cfg.schedule, 4, 5)
    s2.load_state_dict({"last_step": 7})
    assert opt2.param_groups[0]["lr"] == pytest.approx(expected[7])


def test_scheduler_scales_several_param_groups():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    sched = LRScheduler(opt, total_steps=10, name="multistep", milestones=[5], gamma=0.5)
    for _ in range(5):
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.05, 0.005])


def test_optimizers_by_name():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}
    for name, cls in kinds.items():
        opt = build_optimizer(model, load_config(None, [f"optim.name={name}", "optim.weight_decay=0.1"]).optim)
        assert type(opt) is cls and opt.param_groups[0]["weight_decay"] == 0.1
    opt = build_optimizer(model, load_config(None, ["optim.weight_decay=0.1", "optim.decay_norm_and_bias=false"]).optim)
    decay, no_decay = opt.param_groups
    assert [p.ndim for p in decay["params"]] == [4] and no_decay["weight_decay"] == 0.0
    assert len(no_decay["params"]) == 3  # conv bias, BN weight, BN bias


# ------------------------------------------------------------------------------------ losses


def _half_case():
    # logits 0 -> p = 0.5 everywhere; 2 images of 4 x 4 with 2 and 0 target pixels
    logits = torch.zeros(2, 1, 4, 4)
    target = torch.zeros(2, 1, 4, 4)
    target[0, 0, 0, :2] = 1
    return logits, target


def test_soft_iou_and_dice_on_known_inputs():
    logits, target = _half_case()
    # pooled: inter = 0.5 * 2 = 1, sum p = 16, sum t = 2
    assert float(soft_iou_loss(logits, target, smooth=0.0)) == pytest.approx(1 - 1 / (16 + 2 - 1))
    assert float(soft_iou_loss(logits, target, smooth=1.0)) == pytest.approx(1 - 2 / 18)
    assert float(dice_loss(logits, target, smooth=0.0)) == pytest.approx(1 - 2 / 18)
    # per image: image 0 -> 1 - (1 + 1) / (8 + 2 - 1 + 1); image 1 (empty) -> 1 - 1 / (8 + 1)
    per = soft_iou_loss(logits, target, smooth=1.0, reduction="none")
    assert per.tolist() == pytest.approx([1 - 2 / 10, 1 - 1 / 9])
    assert float(soft_iou_loss(logits, target, smooth=1.0, per_image=True)) == pytest.approx((0.8 + 8 / 9) / 2)
    # a confident, correct prediction scores ~0
    perfect = (target * 2 - 1) * 30
    assert float(soft_iou_loss(perfect, target, smooth=0.0)) < 1e-6
    assert float(dice_loss(perfect, target, smooth=0.0)) < 1e-6


def test_bce_and_focal_on_known_inputs():
    logits, target = _half_case()
    ln2 = math.log(2)
    assert float(bce_loss(logits, target)) == pytest.approx(ln2)
    # pos_weight 3 triples the 2 target pixels' loss: mean = ln2 * (30 + 3 * 2) / 32
    assert float(bce_loss(logits, target, pos_weight=3.0)) == pytest.approx(ln2 * 36 / 32)
    # focal at p = 0.5: ln2 * 0.25 * (alpha for targets, 1 - alpha for background)
    expected = ln2 * 0.25 * (2 * 0.25 + 30 * 0.75) / 32
    assert float(focal_loss(logits, target, alpha=0.25, gamma=2.0)) == pytest.approx(expected)
    assert float(focal_loss(logits, target, alpha=-1, gamma=0.0)) == pytest.approx(ln2)
    assert bce_loss(logits, target, reduction="none").tolist() == pytest.approx([ln2, ln2])


def test_combined_terms_and_deep_supervision_weighting():
    logits, target = _half_case()
    loss = SegLoss(terms=["bce", "softiou"], weights=[2.0, 1.0], smooth=0.0)
    single = 2 * math.log(2) + (1 - 1 / 17)
    assert float(loss(logits, target)) == pytest.approx(single)
    assert loss.last_parts == pytest.approx({"bce": math.log(2), "softiou": 1 - 1 / 17})
    perfect = (target * 2 - 1) * 30
    outs = [logits, perfect, perfect]  # final output 0.5 everywhere, side outputs perfect
    assert float(SegLoss(["bce"], deep_supervision="final")(outs, target)) == pytest.approx(math.log(2))
    assert float(SegLoss(["bce"], deep_supervision="sum")(outs, target)) == pytest.approx(math.log(2), abs=1e-6)
    assert float(SegLoss(["bce"], deep_supervision="mean")(outs, target)) == pytest.approx(math.log(2) / 3, abs=1e-6)
    assert float(SegLoss(["bce"], deep_supervision=[0.5, 1.0, 1.0])(outs, target)) == pytest.approx(math.log(2) / 2, abs=1e-6)
    with pytest.raises(IRSTDError, match="lists 2 weights but the model returns 3"):
        SegLoss(["bce"], deep_supervision=[1.0, 1.0])(outs, target)
    assert deep_supervision_weights("mean", 4) == [0.25] * 4


def test_losses_backpropagate_in_float32_from_half_inputs():
    logits = torch.zeros(1, 1, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    target = torch.zeros(1, 1, 8, 8)
    target[..., 3:5, 3:5] = 1
    loss = SegLoss(["softiou", "bce", "focal", "dice"])(logits, target)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()


# ------------------------------------------------------------------------------------ sampling


def test_epoch_sampler_is_deterministic_and_shards_like_one_process():
    one = EpochBatchSampler(23, batch_size=4, seed=7)
    assert one.steps == steps_per_epoch(23, 4) == 5
    one.set_epoch(3)
    batches = list(one)
    assert len(batches) == 5 and all(len(b) == 4 for b in batches)
    assert all(e == 3 for b in batches for e, _ in b)
    again = EpochBatchSampler(23, 4, seed=7)
    again.set_epoch(3)
    assert list(again) == batches
    other = EpochBatchSampler(23, 4, seed=7)
    other.set_epoch(4)
    assert list(other) != batches
    # two processes: rank r takes slice r of every global batch
    shards = []
    for rank in range(2):
        s = EpochBatchSampler(23, 4, seed=7, rank=rank, world_size=2)
        s.set_epoch(3)
        shards.append(list(s))
    assert [a + b for a, b in zip(*shards)] == batches
    # resume in the middle of the epoch continues with the next batches
    one.set_epoch(3, start_step=2)
    assert list(one) == batches[2:] and len(one) == 3
    # fewer samples than a batch: the order repeats to fill it
    tiny = EpochBatchSampler(3, batch_size=8, seed=0)
    (only,) = list(tiny)
    assert len(only) == 8 and {i for _, i in only} == {0, 1, 2}
    with pytest.raises(ValueError):
        EpochBatchSampler(10, batch_size=3, seed=0, world_size=2)


# ------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from irstd.data.synth import make_dataset

    root = tmp_path_factory.mktemp("synth") / "ds"
    make_dataset(root, "t", 30, (64, 64), seed=3, max_targets=2, empty_fraction=0.0, scr_range=(6.0, 12.0))
    return root


def _cfg(root, *extra):
    return load_config(
        None,
        [
            f"data.root={root}",
            "model.name=acm",
            "data.crop_size=32",
            "data.workers=0",
            "data.val_fraction=0.2",
            "loss.name=bce",
            "optim.lr=0.005",
            "schedule.warmup_epochs=1",
            "train.epochs=4",
            "train.batch_size=4",
            "train.progress=false",
            "train.threads=1",
            *extra,
        ],
    )


def test_train_run_writes_everything(synth_root, tmp_path, one_thread):
    from irstd.engine import Trainer
    from irstd.engine.checkpoint import read_state, read_weights_metadata

    run = tmp_path / "run"
    report = Trainer(_cfg(synth_root, "train.eval_interval=2"), run_dir=run).fit()
    # loss decreases
    with open(run / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.9 * losses[0], losses
    assert [r["val_IoU"] != "" for r in rows] == [False, True, False, True]  # eval_interval 2
    assert float(rows[0]["lr"]) == pytest.approx(0.005)  # last warm-up iteration of epoch 1 uses the peak
    # validation ids carved from train, stored, disjoint from the training ids
    train_ids = (run / "train_ids.txt").read_text().split()
    val_ids = (run / "val_ids.txt").read_text().split()
    from irstd.data import carve_validation, read_split

    assert (train_ids, val_ids) == carve_validation(read_split(synth_root, "train"), 0.2, 0)
    assert val_ids and not set(val_ids) & set(train_ids)
    # resolved config saved and loadable
    assert load_config(run / "config.yaml") == _cfg(synth_root, "train.eval_interval=2")
    # checkpoints
    meta = read_weights_metadata(run / "best" / "model.safetensors")
    assert meta["model"] == "acm" and meta["in_chans"] == 1
    state = read_state(run / "last" / "state.pt")
    assert state["epoch"] == 4 and state["global_step"] == 4 * (len(train_ids) // 4)
    best = json.loads((run / "best" / "info.json").read_text())
    assert best["val"]["IoU"] == pytest.approx(max(float(r["val_IoU"]) for r in rows if r["val_IoU"]))
    # test metrics of the best checkpoint on the test split
    metrics = json.loads((run / "test_metrics.json").read_text())
    for key in ("IoU", "nIoU", "PixAcc", "Pd", "Fa", "F1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["checkpoint"] == "best" and metrics["epoch"] == best["epoch"]
    assert metrics["num_images"] == len(read_split(synth_root, "test"))
    assert report["IoU"] == metrics["IoU"]


def test_existing_run_dir_is_not_overwritten(synth_root, tmp_path, one_thread):
    from irstd.engine import Trainer

    run = tmp_path / "run"
    Trainer(_cfg(synth_root, "train.epochs=1", "schedule.warmup_epochs=0", "data.test_split=null"), run_dir=run).fit()
    assert not (run / "test_metrics.json").exists()
    with pytest.raises(IRSTDError, match="already holds a run"):
        Trainer(_cfg(synth_root), run_dir=run).fit()


def test_bad_training_inputs_are_clear_errors(synth_root, tmp_path, one_thread):
    from irstd.engine import Trainer

    with pytest.raises(IRSTDError, match="unknown model 'nonet'"):
        Trainer(_cfg(synth_root, "model.name=nonet"), run_dir=tmp_path / "a").fit()
    with pytest.raises(IRSTDError, match="bad model.kwargs"):
        Trainer(_cfg(synth_root, "model.kwargs.nonsense=1"), run_dir=tmp_path / "b").fit()
    with pytest.raises(IRSTDError, match="unknown strategy"):
        Trainer(_cfg(synth_root, "strategy.name=magic"), run_dir=tmp_path / "c").fit()
    with pytest.raises(IRSTDError, match="no index file for split 'valid'"):
        Trainer(_cfg(synth_root, "data.test_split=valid"), run_dir=tmp_path / "d").fit()
    with pytest.raises(IRSTDError, match="data.root is not set"):
        Trainer(load_config(None), run_dir=tmp_path / "e").fit()
    with pytest.raises(IRSTDError, match="nothing to resume"):
        Trainer(_cfg(synth_root), run_dir=tmp_path / "f", resume=True).fit()


def test_custom_strategy_plugs_in(synth_root, tmp_path, one_thread):
    """A registered strategy owns extra state: hooks are called and its state is checkpointed."""
    from irstd import strategies
    from irstd.engine import Trainer
    from irstd.engine.checkpoint import read_state

    calls = SimpleNamespace(steps=0, after=0, epochs=[])

    @strategies.register_strategy("_counting")
    class Counting(strategies.Strategy):
        log_keys = ("noise",)

        def __init__(self, scale=1.0):
            self.scale = scale
            self.buffer = None

        def setup(self, model, ctx):
            self.buffer = torch.zeros(3)

        def training_step(self, model, batch, loss_fn, ctx):
            calls.steps += 1
            g = ctx.generator()
            noise = torch.randn(batch["image"].shape, generator=g) * self.scale
            out = model(batch["image"] + noise)
            ctx.logs["noise"] = float(noise.std())
            return {"loss": loss_fn(out, batch["mask"])}

        def after_step(self, model, batch, ctx):
            calls.after += 1
            self.buffer += 1

        def on_epoch_end(self, epoch, ctx):
            calls.epochs.append(epoch)

        def state_dict(self):
            return {"buffer": self.buffer.clone(), "scale": self.scale}

        def load_state_dict(self, state):
            self.buffer = state["buffer"].clone()

    try:
        run = tmp_path / "run"
        Trainer(_cfg(synth_root, "strategy.name=_counting", "strategy.kwargs.scale=0.1", "train.epochs=2"), run_dir=run).fit()
        steps = 2 * (len((run / "train_ids.txt").read_text().split()) // 4)
        assert calls.steps == calls.after == steps and calls.epochs == [0, 1]
        assert read_state(run / "last" / "state.pt")["strategy"]["buffer"].tolist() == [float(steps)] * 3
        with open(run / "log.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert float(rows[0]["noise"]) == pytest.approx(0.1, rel=0.2)
    finally:
        strategies.STRATEGIES.unregister("_counting")


def test_list_strategies():
    from irstd.strategies import create_strategy, list_strategies

    assert "supervised" in list_strategies()
    with pytest.raises(IRSTDError, match="bad strategy.kwargs"):
        create_strategy("supervised", bogus=1)
