"""HRL (paper 002's bi-level adversarial training) and its Table 6 baselines: the raw-crop path,
per-sample normalisation, one iteration of both updates, the policy log, baselines' action sets,
the REINFORCE direction, and exact resume."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from irstd.config import load_config
from irstd.corruptions import PAPER_002_CORRUPTIONS, PAPER_002_GROUPS
from irstd.data import IRSTDDataset, TrainTransform, normalize_image
from irstd.data.io import read_image
from irstd.engine.loader import AugmentedDataset
from irstd.engine.losses import build_loss
from irstd.errors import IRSTDError
from irstd.strategies import StepContext, create_strategy
from irstd.strategies.hrl import HRL
from irstd.strategies.policy import StrategyNetwork, normalize_batch


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from irstd.data.synth import make_dataset

    root = tmp_path_factory.mktemp("hrl") / "ds"
    make_dataset(root, "h", 24, (48, 48), seed=7, max_targets=2, empty_fraction=0.0, scr_range=(6.0, 12.0))
    return root


def _batch(root, n=4, crop=32, epoch=0, with_raw=True):
    base = IRSTDDataset(root, split="train")
    ds = AugmentedDataset(base, TrainTransform(crop, 0.5), seed=0, with_raw=with_raw)
    items = [ds[(epoch, i)] for i in range(n)]
    return {k: (torch.stack([it[k] for it in items]) if k != "id" else [it[k] for it in items]) for k in items[0]}


def _ctx(tmp_path, cfg=None, step=0):
    return StepContext(device=torch.device("cpu"), seed=0, step=step, run_dir=tmp_path, config=cfg)


def _model():
    from irstd.models import create

    torch.manual_seed(0)
    return create("acm").train()


# ------------------------------------------------------------------------------ data path


def test_normalize_batch_equals_normalize_image_per_sample():
    rng = np.random.default_rng(0)
    x = rng.random((5, 1, 23, 31)).astype(np.float32)
    x[1] *= 1e-3  # low contrast
    x[2] = 0.25  # flat: maps to 0
    x[3, :, :5] = 1.0  # clipped region
    out = normalize_batch(torch.from_numpy(x))
    assert out.dtype == torch.float32 and out.shape == x.shape
    for i in range(5):
        np.testing.assert_allclose(out[i, 0].numpy(), normalize_image(x[i, 0]), rtol=0, atol=2e-5)
    assert torch.all(out[2] == 0)


def test_raw_entry_is_the_unnormalised_crop(synth_root):
    plain = _batch(synth_root, with_raw=False)
    batch = _batch(synth_root)
    assert "raw" not in plain
    assert torch.equal(plain["image"], batch["image"]) and torch.equal(plain["mask"], batch["mask"])
    raw = batch["raw"]
    assert raw.shape == batch["image"].shape and raw.dtype == torch.float32
    assert float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
    base = IRSTDDataset(synth_root, split="train")
    for i in range(raw.shape[0]):
        full = read_image(base.image_path(base.ids[i])).astype(np.float64)
        assert full.dtype != np.float32 and full.max() > 1  # 8-bit counts on disk
        # same pixels as the normalised crop, through the full image's statistics
        expected = (batch["image"][i, 0].numpy() * full.std() + full.mean()) / 255.0
        np.testing.assert_allclose(raw[i, 0].numpy(), expected, atol=1e-5)
        # and they are real 8-bit intensities (a 32 px crop of a 48 px image: no padding)
        counts = raw[i, 0].numpy() * 255.0
        np.testing.assert_allclose(counts, np.round(counts), atol=2e-3)


def test_raw_padding_is_the_image_mean(synth_root):
    batch = _batch(synth_root, n=2, crop=64)  # larger than the 48 px images: padded
    base = IRSTDDataset(synth_root, split="train")
    for i in range(2):
        full = read_image(base.image_path(base.ids[i])).astype(np.float64)
        pad = batch["image"][i, 0] == 0
        assert int(pad.sum()) >= 64 * 64 - 48 * 48
        np.testing.assert_allclose(batch["raw"][i, 0][pad].numpy(), full.mean() / 255.0, atol=1e-6)


def test_corruption_acts_before_normalisation(synth_root, tmp_path, one_thread):
    """Brightness on the raw crop changes the detector's input only where it clips."""
    batch = _batch(synth_root)
    strat = create_strategy("hrl", policy="random", corruptions=["brightness"])
    cfg = load_config(None, ["loss.name=softiou"])
    model = _model()
    strat.setup(model, _ctx(tmp_path, cfg))
    shifts = {1: 0.1, 2: 0.3, 3: 0.5}  # severities 1..3 = ImageNet-C levels 1, 3, 5
    raw = batch["raw"]
    seen = set()
    for step in range(4):
        out = strat.training_step(model, batch, build_loss(cfg.loss), _ctx(tmp_path, cfg, step))
        x_hat = strat._pending["x_hat"]
        for i, a in enumerate(out["actions"].tolist()):
            name, sev = strat.actions[a]
            assert name == "brightness"
            shifted = raw[i : i + 1] + shifts[sev]
            expected = normalize_batch(shifted.clamp(0, 1))
            torch.testing.assert_close(x_hat[i : i + 1], expected, atol=2e-5, rtol=0)
            clipped = float(shifted.max()) > 1.0
            seen.add(clipped)
            if not clipped:  # standardisation undoes the shift
                torch.testing.assert_close(x_hat[i : i + 1], normalize_batch(raw[i : i + 1]), atol=2e-5, rtol=0)
            else:
                assert not torch.allclose(x_hat[i : i + 1], normalize_batch(raw[i : i + 1]), atol=1e-3)
    assert seen == {False, True}
    # the raw entry is intensities / 255, not the normalised image
    assert float(raw.min()) >= 0 and not torch.allclose(raw, batch["image"], atol=1e-2)


# ------------------------------------------------------------------------------ one iteration


def _iteration(strat, model, batch, loss_fn, ctx, optimizer):
    optimizer.zero_grad(set_to_none=True)
    out = strat.training_step(model, batch, loss_fn, ctx)
    out["loss"].backward()
    optimizer.step()
    strat.after_step(model, batch, ctx)
    return out


def test_one_hrl_iteration_updates_detector_and_strategy_and_logs(synth_root, tmp_path, one_thread):
    cfg = load_config(None, ["loss.name=softiou"])
    loss_fn = build_loss(cfg.loss)
    model = _model()
    strat = create_strategy("hrl", policy_lr=0.05)
    assert isinstance(strat, HRL) and strat.needs_raw and len(strat.actions) == 30
    ctx = _ctx(tmp_path, cfg)
    strat.setup(model, ctx)
    assert isinstance(strat.net, StrategyNetwork)
    convs = [m for m in strat.net.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and isinstance(strat.net.fc, torch.nn.Linear)  # 5 conv blocks + 1 FC
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    det_before = {k: v.clone() for k, v in model.state_dict().items()}
    pol_before = {k: v.clone() for k, v in strat.net.state_dict().items()}
    batch = _batch(synth_root)
    x = batch["image"]
    with torch.no_grad():
        probs_before = torch.softmax(strat.net(x), 1)
    torch.testing.assert_close(probs_before, torch.full_like(probs_before, 1 / 30))  # zero-initialised FC

    # the updated-detector reward pass leaves the detector's buffers as the optimiser step left them
    out = strat.training_step(model, batch, loss_fn, ctx)
    assert set(strat.log_keys) >= {"loss_clean", "loss_corrupt"} and 0 <= ctx.logs["loss_corrupt"] <= 1
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    optimizer.step()
    buffers = [b.clone() for b in model.buffers()]
    strat.after_step(model, batch, ctx)
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))

    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, det_before[k])]
    assert changed, "detector parameters unchanged"
    assert not torch.equal(strat.net.fc.weight, pol_before["fc.weight"]), "strategy network unchanged"
    with torch.no_grad():
        probs_after = torch.softmax(strat.net(x), 1)
    assert not torch.allclose(probs_after, probs_before)
    assert strat.updates == 1 and strat.baseline == pytest.approx(ctx.logs["reward"])
    # a second step reaches the conv blocks too (their gradient flows through the now non-zero FC)
    ctx.step = 1
    _iteration(strat, model, batch, loss_fn, ctx, optimizer)
    assert not torch.equal(strat.net.features[0][0].weight, pol_before["features.0.0.weight"])

    strat.on_epoch_end(0, ctx)
    with open(tmp_path / "policy.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and rows[0]["step"] == "2" and rows[0]["steps"] == "2"
    marg = [float(rows[0][f"p_{n}"]) for n in PAPER_002_CORRUPTIONS]
    per_action = [float(rows[0][f"p_{n}_s{s}"]) for n, s in strat.actions]
    assert sum(marg) == pytest.approx(1.0, abs=1e-5) and sum(per_action) == pytest.approx(1.0, abs=1e-5)
    assert float(rows[0]["entropy"]) <= np.log(30) + 1e-5 and rows[0]["baseline"] != ""
    png = (tmp_path / "policy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.parametrize("group", ["noise", "blur", "isp"])
def test_group_baselines_only_pick_their_group(group, synth_root, tmp_path, one_thread):
    cfg = load_config(None, ["loss.name=softiou"])
    model = _model()
    strat = create_strategy("hrl", policy=group)
    ctx = _ctx(tmp_path, cfg)
    strat.setup(model, ctx)
    assert strat.net is None and strat.optimizer is None and "net" not in strat.state_dict()
    batch = _batch(synth_root, n=8)
    seen = set()
    for step in range(6):
        ctx.step = step
        out = strat.training_step(model, batch, build_loss(cfg.loss), ctx)
        strat.after_step(model, batch, ctx)
        seen |= {strat.actions[a][0] for a in out["actions"].tolist()}
    assert seen <= set(PAPER_002_GROUPS[group])
    assert len(seen) >= 2  # 48 uniform draws over 3 or 4 corruptions
    strat.on_epoch_end(0, ctx)
    with open(tmp_path / "policy.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    k = len(PAPER_002_GROUPS[group])
    for n in PAPER_002_CORRUPTIONS:
        assert float(row[f"p_{n}"]) == pytest.approx(1 / k if n in PAPER_002_GROUPS[group] else 0.0, abs=1e-6)


def test_random_baseline_uses_every_corruption_uniformly(synth_root, tmp_path, one_thread):
    strat = create_strategy("hrl", policy="random")
    ctx = _ctx(tmp_path)
    strat.setup(None, ctx)
    probs, logp = strat._probabilities(torch.zeros(3, 1, 8, 8))
    assert logp is None and torch.allclose(probs, torch.full((3, 30), 1 / 30))


@pytest.mark.parametrize("normalize, lr", [(False, 0.05), (True, 0.01)])
def test_reinforce_moves_the_policy_towards_the_most_damaging_corruption(normalize, lr, synth_root, tmp_path, one_thread):
    """With a reward of 1 for Gaussian noise and 0 otherwise, gradient ascent favours Gaussian noise."""
    cfg = load_config(None, ["loss.name=softiou"])
    model = _model()
    strat = create_strategy("hrl", policy_lr=lr, entropy_coef=0.0, normalize_advantage=normalize)
    ctx = _ctx(tmp_path, cfg)
    strat.setup(model, ctx)
    chosen = {}

    def fake_reward(model, x_hat, y, loss_fn, ctx):
        return torch.tensor([1.0 if strat.actions[a][0] == "gaussian_noise" else 0.0 for a in chosen["a"]])

    strat._reward_pass = fake_reward
    batch = _batch(synth_root, n=8)
    marg = []
    for step in range(25):
        ctx.step = step
        chosen["a"] = strat.training_step(model, batch, build_loss(cfg.loss), ctx)["actions"].tolist()
        strat.after_step(model, batch, ctx)
        with torch.no_grad():
            p = torch.softmax(strat.net(batch["image"]), 1).mean(0)
        marg.append(float(p[:3].sum()))  # gaussian_noise s1..s3
    assert marg[0] < 0.2 and marg[-1] > 0.7  # from about 0.1 (uniform) to a clear majority
    assert marg[-1] > marg[len(marg) // 2] > marg[0]


def test_bad_kwargs_are_clear_errors():
    with pytest.raises(IRSTDError, match="policy"):
        create_strategy("hrl", policy="adversarial")
    with pytest.raises(IRSTDError, match="unknown corruption"):
        create_strategy("hrl", corruptions=["fog"])
    with pytest.raises(IRSTDError, match="none of its corruptions"):
        create_strategy("hrl", policy="blur", corruptions=["gaussian_noise", "contrast"])
    with pytest.raises(IRSTDError, match="reward"):
        create_strategy("hrl", reward="later")
    with pytest.raises(IRSTDError, match="baseline_momentum"):
        create_strategy("hrl", baseline_momentum=1.0)
    with pytest.raises(IRSTDError, match="bad strategy.kwargs"):
        create_strategy("hrl", lambda_=1.0)
    strat = create_strategy("hrl", policy="noise")
    with pytest.raises(IRSTDError, match="cannot resume"):
        strat.load_state_dict(create_strategy("hrl", policy="blur").state_dict())


def test_missing_raw_is_a_clear_error(synth_root, tmp_path):
    strat = create_strategy("hrl", policy="random")
    strat.setup(None, _ctx(tmp_path))
    with pytest.raises(IRSTDError, match="no 'raw' entry"):
        strat.training_step(_model(), _batch(synth_root, with_raw=False), build_loss(load_config(None).loss), _ctx(tmp_path))


# ------------------------------------------------------------------------------ trainer and resume


def _cfg(root, *extra):
    return load_config(
        None,
        [
            f"data.root={root}",
            "model.name=acm",
            "data.crop_size=32",
            "data.workers=0",
            "data.val_fraction=0",
            "data.test_split=null",
            "loss.name=softiou",
            "optim.lr=5e-4",
            "schedule.name=constant",  # the 1-epoch leg must follow the 2-epoch run's learning rates
            "train.batch_size=4",
            "train.progress=false",
            "train.threads=1",
            "strategy.name=hrl",
            "strategy.kwargs.policy_lr=0.05",
            "strategy.kwargs.log_every=3",
            *extra,
        ],
    )


def test_resume_reproduces_an_uninterrupted_run(synth_root, tmp_path, one_thread, monkeypatch):
    """A run that crashes in the middle of epoch 2 (between two policy.csv rows) and is resumed
    from its last mid-epoch checkpoint ends exactly like an uninterrupted one."""
    from irstd.engine import Trainer
    from irstd.engine.checkpoint import read_state
    from safetensors.torch import load_file

    Trainer(_cfg(synth_root, "train.epochs=2"), run_dir=tmp_path / "a").fit()

    original = HRL.after_step

    def crash_at_step_6(self, model, batch, ctx):
        if ctx.step == 5:
            raise RuntimeError("simulated crash")
        original(self, model, batch, ctx)

    monkeypatch.setattr(HRL, "after_step", crash_at_step_6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(_cfg(synth_root, "train.epochs=2", "train.checkpoint_interval=1"), run_dir=tmp_path / "b").fit()
    monkeypatch.setattr(HRL, "after_step", original)
    state = read_state(tmp_path / "b" / "last" / "state.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1) and state["strategy"]["acc_n"] == 1
    Trainer.from_run_dir(tmp_path / "b").fit()
    wa = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = read_state(tmp_path / "a" / "last" / "state.pt")["strategy"]
    sb = read_state(tmp_path / "b" / "last" / "state.pt")["strategy"]
    assert sa["updates"] == sb["updates"] == 2 * 4
    assert sa["baseline"] == sb["baseline"] and sa["reward_sq"] == sb["reward_sq"]
    assert all(torch.equal(sa["net"][k], sb["net"][k]) for k in sa["net"])
    assert not torch.equal(sa["net"]["fc.weight"], torch.zeros_like(sa["net"]["fc.weight"]))
    assert torch.equal(sa["history"], sb["history"])
    assert (tmp_path / "a" / "policy.csv").read_text() == (tmp_path / "b" / "policy.csv").read_text()
    # rows every 3 iterations plus each epoch's remainder: steps 3, 4 | 7, 8
    with open(tmp_path / "a" / "policy.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["epoch"], r["step"], r["steps"]) for r in rows] == [("1", "3", "3"), ("1", "4", "1"), ("2", "6", "2"), ("2", "8", "2")]
    with open(tmp_path / "a" / "log.csv", newline="") as fh:
        log = list(csv.DictReader(fh))
    assert all(r["reward"] != "" and r["policy_entropy"] != "" for r in log)
    assert (tmp_path / "a" / "policy.png").is_file()


def test_shipped_configs_build_the_strategy():
    cfg = load_config("nuaa_hrl")
    strat = create_strategy(cfg.strategy.name, **cfg.strategy.kwargs)
    assert strat.policy == "learned" and len(strat.actions) == 30 and strat.lam == 1.0
    assert strat.policy_lr == pytest.approx(1e-4) and (cfg.optim.name, cfg.optim.lr) == ("adam", 5e-4)
    assert cfg.loss.name == "softiou"
    table6 = load_config("nuaa_hrl_acm", ["strategy.kwargs.policy=isp", "strategy.kwargs.policy_lr=1e-3"])
    strat = create_strategy(table6.strategy.name, **table6.strategy.kwargs)
    assert table6.model.name == "acm" and strat.policy == "isp" and strat.policy_lr == pytest.approx(1e-3)
    clean = load_config("nuaa_hrl_acm", ["strategy.name=supervised", "strategy.kwargs={}"])
    create_strategy(clean.strategy.name, **clean.strategy.kwargs)


def test_default_hrl_config_differs_from_default_only_in_strategy_and_epochs():
    # The README's clean-vs-HRL comparison relies on this: same detector, data, loss and optimiser.
    base, hrl = load_config("default").to_dict(), load_config("default_hrl").to_dict()
    strat = create_strategy(hrl["strategy"]["name"], **hrl["strategy"]["kwargs"])
    assert strat.policy == "learned" and len(strat.actions) == 30 and strat.normalize_advantage
    for key in ("model", "data", "loss", "optim", "schedule", "eval"):
        assert hrl[key] == base[key], key
    assert {k: v for k, v in hrl["train"].items() if k != "epochs"} == {
        k: v for k, v in base["train"].items() if k != "epochs"
    }
    assert (base["train"]["epochs"], hrl["train"]["epochs"]) == (220, 75)


_DDP_SCRIPT = r"""
import sys, torch, torch.distributed as dist
from irstd.engine import distributed as du
from irstd.engine.losses import build_loss
from irstd.config import load_config
from irstd.models import create
from irstd.strategies import StepContext, create_strategy

info = du.init_distributed("cpu")
torch.manual_seed(0)
model = create("acm").train()
cfg = load_config(None, ["loss.name=softiou"])
strat = create_strategy("hrl", policy_lr=0.05)
ctx = StepContext(device=torch.device("cpu"), seed=0, rank=info.rank, world_size=info.world_size, config=cfg)
strat.setup(model, ctx)
loss_fn = build_loss(cfg.loss)
g = torch.Generator().manual_seed(100 + info.rank)  # each rank sees different images
for step in range(3):
    ctx.step = step
    raw = torch.rand(2, 1, 32, 32, generator=g)
    mask = (torch.rand(2, 1, 32, 32, generator=g) > 0.97).float()
    from irstd.strategies.policy import normalize_batch
    batch = {"image": normalize_batch(raw), "raw": raw, "mask": mask}
    strat.training_step(model, batch, loss_fn, ctx)
    strat.after_step(model, batch, ctx)
flat = torch.cat([p.detach().flatten() for p in strat.net.parameters()] + [torch.tensor([strat.baseline], dtype=torch.float32)])
gathered = [torch.zeros_like(flat) for _ in range(info.world_size)]
dist.all_gather(gathered, flat)
if info.rank == 0:
    same = all(torch.equal(gathered[0], t) for t in gathered[1:])
    moved = not torch.equal(strat.net.fc.weight, torch.zeros_like(strat.net.fc.weight))
    print("RESULT", same, moved, flush=True)
du.cleanup()
"""


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_ddp_ranks_keep_one_strategy_network(tmp_path):
    """Two gloo processes on different images end with identical strategy weights and baseline."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp_hrl.py"
    script.write_text(_DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "RESULT True True" in res.stdout, res.stdout[-2000:]
