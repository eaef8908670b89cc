"""HRL (paper 002's bi-level adversarial training) and its Table 6 baselines: the raw-crop path,
whole-image corruption as at test time, per-sample normalisation, one iteration of both updates, the policy log, baselines' action sets,
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
from irstd.strategies.policy import StrategyNetwork, normalize_batch, standardize_corrupted


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from irstd.data.synth import make_dataset

    root = tmp_path_factory.mktemp("hrl") / "ds"
    make_dataset(root, "h", 24, (48, 48), seed=7, max_targets=2, empty_fraction=0.0, scr_range=(6.0, 12.0))
    return root


def _crops(root, crop=32, with_raw=True):
    """The augmented training set the batches of these tests come from (``ctx.train_crops``)."""
    return AugmentedDataset(IRSTDDataset(root, split="train"), TrainTransform(crop, 0.5), seed=0, with_raw=with_raw)


def _batch(root, n=4, crop=32, epoch=0, with_raw=True):
    ds = _crops(root, crop, with_raw)
    items = [ds[(epoch, i)] for i in range(n)]
    return {k: (torch.stack([it[k] for it in items]) if k != "id" else [it[k] for it in items]) for k in items[0]}


def _ctx(tmp_path, cfg=None, step=0, crops=None):
    return StepContext(device=torch.device("cpu"), seed=0, step=step, run_dir=tmp_path, config=cfg, train_crops=crops)


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
    """Brightness on the raw whole image changes the detector's input only where it clips."""
    batch = _batch(synth_root)
    crops = _crops(synth_root)
    strat = create_strategy("hrl", policy="random", corruptions=["brightness"])
    cfg = load_config(None, ["loss.name=softiou"])
    model = _model()
    strat.setup(model, _ctx(tmp_path, cfg, crops=crops))
    shifts = {1: 0.1, 2: 0.3, 3: 0.5}  # severities 1..3 = ImageNet-C levels 1, 3, 5
    seen = set()
    for step in range(4):
        out = strat.training_step(model, batch, build_loss(cfg.loss), _ctx(tmp_path, cfg, step, crops))
        x_hat = strat._pending["x_hat"]
        for i, a in enumerate(out["actions"].tolist()):
            name, sev = strat.actions[a]
            assert name == "brightness"
            whole = crops.base.load_arrays(int(batch["key"][i, 1]))[0]
            clipped = float(whole.max()) + shifts[sev] * 255 > 255
            seen.add(clipped)
            if not clipped:  # standardisation undoes the shift: the clean input (up to a count of rounding)
                torch.testing.assert_close(x_hat[i], batch["image"][i], atol=1.0 / float(whole.std()), rtol=0)
            else:
                assert not torch.allclose(x_hat[i], batch["image"][i], atol=1e-2)
    assert seen == {False, True}


def test_missing_key_or_crops_is_a_clear_error(synth_root, tmp_path):
    strat = create_strategy("hrl", policy="random")
    strat.setup(None, _ctx(tmp_path))
    loss = build_loss(load_config(None).loss)
    with pytest.raises(IRSTDError, match="needs batch\\['key'\\] and ctx.train_crops"):
        strat.training_step(_model(), _batch(synth_root, with_raw=False), loss, _ctx(tmp_path, crops=_crops(synth_root)))
    with pytest.raises(IRSTDError, match="needs batch\\['key'\\] and ctx.train_crops"):
        strat.training_step(_model(), _batch(synth_root), loss, _ctx(tmp_path))


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
    ctx = _ctx(tmp_path, cfg, crops=_crops(synth_root))
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
    ctx = _ctx(tmp_path, cfg, crops=_crops(synth_root))
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


@pytest.mark.parametrize("normalize, lr, opt", [(False, 0.05, "sgd"), (True, 0.01, "sgd"), (True, 0.01, "adam")])
def test_reinforce_moves_the_policy_towards_the_most_damaging_corruption(normalize, lr, opt, synth_root, tmp_path, one_thread):
    """With a reward of 1 for Gaussian noise and 0 otherwise, gradient ascent favours Gaussian noise."""
    cfg = load_config(None, ["loss.name=softiou"])
    model = _model()
    strat = create_strategy("hrl", policy_lr=lr, entropy_coef=0.0, normalize_advantage=normalize,
                            policy_optimizer=opt)
    ctx = _ctx(tmp_path, cfg, crops=_crops(synth_root))
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


def test_gain_signal_is_the_loss_increase_over_the_clean_input(synth_root, tmp_path, one_thread):
    """signal=gain: the policy's reward is the updated detector's eval-mode loss on x_hat minus its
    loss on the clean x, image by image."""
    cfg = load_config(None, ["loss.name=softiou"])
    loss_fn = build_loss(cfg.loss)
    model = _model()
    strat = create_strategy("hrl", policy_lr=0.05, signal="gain")
    ctx = _ctx(tmp_path, cfg, crops=_crops(synth_root))
    strat.setup(model, ctx)
    batch = _batch(synth_root)
    strat.training_step(model, batch, loss_fn, ctx)
    pending = strat._pending
    with torch.no_grad():
        model.eval()
        expected = loss_fn(model(pending["x_hat"]), batch["mask"], reduction="none") - loss_fn(
            model(batch["image"]), batch["mask"], reduction="none")
        model.train()
    strat.after_step(model, batch, ctx)
    assert ctx.logs["reward"] == pytest.approx(float(expected.mean()), abs=1e-6)
    with pytest.raises(IRSTDError, match="signal"):
        create_strategy("hrl", signal="profit")
    with pytest.raises(IRSTDError, match="policy_optimizer"):
        create_strategy("hrl", policy_optimizer="lbfgs")


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


# ------------------------------------------------------------------------------ one scale, test-time inputs


@pytest.fixture(scope="module")
def synth14(tmp_path_factory):
    """14-bit counts in 16-bit files (peaks up to ~13400, so full scale 16383; each file's own
    dtype scale, the loader's old rule, would be 65535), 64 x 80 frames."""
    from irstd.data.synth import make_dataset

    root = tmp_path_factory.mktemp("hrl14") / "ds"
    make_dataset(root, "f", 6, size=(64, 80), seed=11, bit_depth=16, test_fraction=0.5, empty_fraction=0.0)
    return root


_REGION = (slice(8, 40), slice(16, 64))  # a 32 x 48 window well inside the 64 x 80 frames


def _fixed_crop(image, mask, rng):
    return image[_REGION], mask[_REGION]


class _Conv(torch.nn.Module):
    """A one-layer detector: training_step needs a forward, these tests look at its inputs."""

    stride = 1

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def _train_inputs(root, corruption, steps=3):
    """Per (image, step): the loader + strategy path on the fixed region of every image:
    ``(index, severity, corruption seed, x_hat, clean x)``."""
    base = IRSTDDataset(root, ids=IRSTDDataset(root, split="train").ids + IRSTDDataset(root, split="test").ids)
    ds = AugmentedDataset(base, _fixed_crop, seed=0, with_raw=True)
    items = [ds[(0, i)] for i in range(len(base))]
    batch = {k: (torch.stack([it[k] for it in items]) if k != "id" else [it[k] for it in items]) for k in items[0]}
    strat = create_strategy("hrl", policy="random", corruptions=[corruption])
    cfg = load_config(None, ["loss.name=softiou"])
    strat.setup(None, StepContext(device=torch.device("cpu"), config=cfg))
    out = []
    for step in range(steps):
        ctx = StepContext(device=torch.device("cpu"), step=step, train_crops=ds)
        res = strat.training_step(_Conv(), batch, build_loss(cfg.loss), ctx)
        for i, a in enumerate(res["actions"].tolist()):
            sev = strat.actions[a][1]
            seed = strat._pending["seeds"][i]
            out.append((i, sev, seed, strat._pending["x_hat"][i, 0].numpy(), batch["image"][i, 0].numpy()))
    return base, ds, out


@pytest.mark.parametrize("corruption", ["brightness", "gaussian_noise", "contrast", "defocus_blur", "jpeg_compression"])
def test_training_corrupts_14_bit_data_like_the_robustness_benchmark(corruption, synth14, one_thread):
    """The input a model trains on (loader + HRL strategy) is the one ``irstd robustness`` tests it
    on, for the same image region and corruption seed: the whole image corrupted at the dataset's
    full scale (16383, not 65535 nor a per-frame guess), then standardised as a whole."""
    from irstd.corruptions import apply
    from irstd.engine.robustness import robustness_benchmark

    bench = robustness_benchmark(_Conv(), synth14, "test", ["brightness"], [1], device="cpu")
    scale = bench["meta"]["full_scale"]
    base, ds, inputs = _train_inputs(synth14, corruption)
    assert scale == ds.full_scale == base.full_scale == 16383.0
    assert {sev for _, sev, *_ in inputs} == {1, 2, 3}
    for i, sev, seed, x_hat, _ in inputs:
        raw = base.load_arrays(i)[0]
        tested = normalize_image(apply(raw, corruption, sev, seed, full_scale=scale))[_REGION]
        np.testing.assert_allclose(x_hat, tested, rtol=0, atol=1e-5)
    if corruption == "gaussian_noise":  # and the dtype's scale would have been another corruption
        i, sev, seed, x_hat, _ = inputs[0]
        other = normalize_image(apply(base.load_arrays(i)[0], corruption, sev, seed, full_scale=65535.0))[_REGION]
        assert np.abs(x_hat - other).max() > 0.1


def test_clean_and_corrupted_inputs_are_standardised_as_at_test_time(synth14, one_thread):
    """Test time standardises the whole (corrupted) image: the clean input is the whole image's
    standardisation, and a blurred input differs from what the crop's own statistics (an older
    rule) would give."""
    from irstd.corruptions import apply

    base, _, blurred = _train_inputs(synth14, "defocus_blur")
    scale = base.full_scale
    for i, sev, seed, x_hat, x in blurred:
        raw = base.load_arrays(i)[0]
        np.testing.assert_allclose(x, normalize_image(raw)[_REGION], atol=1e-5)
        corrupted_crop = apply(raw, "defocus_blur", sev, seed, full_scale=scale)[_REGION]
        own = normalize_image(corrupted_crop)  # the crop standardised with its own statistics
        assert np.abs(own - x_hat).max() > 0.05
        assert np.isfinite(x_hat).all() and np.abs(x_hat).max() < 50


def test_standardize_corrupted_rule():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 1, 16, 20, generator=g) * 0.5 + 0.2
    mean, std = torch.tensor([0.4, 0.3, 0.5]), torch.tensor([0.2, 0.1, 0.05])
    # unchanged crop: plain whole-image statistics
    torch.testing.assert_close(standardize_corrupted(clean, clean, mean, std),
                               (clean - mean.view(-1, 1, 1, 1)) / std.view(-1, 1, 1, 1))
    # a shift moves the mean only; added noise adds its variance
    shifted = clean + 0.1
    torch.testing.assert_close(standardize_corrupted(shifted, clean, mean, std),
                               standardize_corrupted(clean, clean, mean, std), atol=1e-5, rtol=0)
    noise = torch.randn(clean.shape, generator=g) * 0.3
    out = standardize_corrupted(clean + noise, clean, mean, std)
    dims = (1, 2, 3)
    var = std**2 + (clean + noise).var(dim=dims, unbiased=False) - clean.var(dim=dims, unbiased=False)
    m = mean + noise.mean(dim=dims)
    torch.testing.assert_close(out, (clean + noise - m.view(-1, 1, 1, 1)) / var.sqrt().view(-1, 1, 1, 1))
    # removed variance is removed in proportion: a contrast change standardises like the clean crop,
    # also on a crop with more variance than its whole image (the subtractive rule hit the floor)
    centre = clean.mean(dim=dims)  # contrast about the image mean, which the crop shares here
    small = clean.var(dim=dims, unbiased=False).sqrt() * 0.5  # the whole images vary less than their crops
    low = (clean - centre.view(-1, 1, 1, 1)) * 0.1 + centre.view(-1, 1, 1, 1)
    torch.testing.assert_close(standardize_corrupted(low, clean, centre, small),
                               standardize_corrupted(clean, clean, centre, small), atol=1e-4, rtol=1e-4)
    # a flattening corruption never divides by zero or a negative variance
    flat = standardize_corrupted(torch.full_like(clean, 0.3), clean, mean, torch.tensor([1e-9, 1e-9, 1e-9]))
    assert torch.isfinite(flat).all()


# ------------------------------------------------------------------------------ reward pass and skipped steps


class _BNDropNet(torch.nn.Module):
    stride = 1

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.drop = torch.nn.Dropout2d(0.5)
        self.frozen = torch.nn.BatchNorm2d(4)  # kept in eval mode by its user
        self.conv2 = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.frozen(self.drop(torch.relu(self.bn(self.conv1(x))))))


def test_reward_pass_is_the_eval_mode_loss_and_changes_nothing(synth_root, tmp_path, one_thread):
    """reward="updated": the updated detector's loss on x_hat in eval mode (running BatchNorm
    statistics, no dropout: what `irstd robustness` scores), under no_grad, every module's mode and
    every buffer left as they were."""
    import copy

    cfg = load_config(None, ["loss.name=softiou"])
    loss_fn = build_loss(cfg.loss)
    torch.manual_seed(0)
    model = _BNDropNet().train()
    model.frozen.eval()
    strat = create_strategy("hrl", policy_lr=0.05)
    ctx = _ctx(tmp_path, cfg, crops=_crops(synth_root))
    strat.setup(model, ctx)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = _batch(synth_root)
    for step in range(3):  # running statistics away from their initial values
        ctx.step = step
        _iteration(strat, model, batch, loss_fn, ctx, optimizer)
    ctx.step = 3
    optimizer.zero_grad(set_to_none=True)
    strat.training_step(model, batch, loss_fn, ctx)["loss"].backward()
    optimizer.step()
    x_hat, y = strat._pending["x_hat"], strat._pending["mask"]
    deployed = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = loss_fn(deployed(x_hat), y, reduction="none")
        in_train_mode = loss_fn(copy.deepcopy(model).train()(x_hat), y, reduction="none")
    assert float((expected - in_train_mode).abs().max()) > 1e-5  # the two passes do differ here
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)  # dropout would draw from here
    r1 = strat._reward_pass(model, x_hat, y, loss_fn, ctx)
    torch.manual_seed(456)
    r2 = strat._reward_pass(model, x_hat, y, loss_fn, ctx)
    torch.testing.assert_close(r1, expected, atol=1e-6, rtol=0)
    assert torch.equal(r1, r2) and not r1.requires_grad
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    assert model.training and model.bn.training and model.drop.training and not model.frozen.training
    strat.after_step(model, batch, ctx)
    assert ctx.logs["reward"] == pytest.approx(float(expected.mean()), abs=1e-6)
    assert strat.updates == 4


def test_a_skipped_detector_step_leaves_the_strategy_unchanged(synth_root, tmp_path, one_thread):
    cfg = load_config(None, ["loss.name=softiou"])
    loss_fn = build_loss(cfg.loss)
    model = _model()
    strat = create_strategy("hrl", policy_lr=0.05, log_every=1)
    ctx = _ctx(tmp_path, cfg, crops=_crops(synth_root))
    strat.setup(model, ctx)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    batch = _batch(synth_root)
    _iteration(strat, model, batch, loss_fn, ctx, optimizer)
    before = {k: v.clone() for k, v in strat.state_dict()["net"].items()}
    kept = (strat.baseline, strat.reward_sq, strat.updates, len(strat.history), strat._acc_n)
    ctx.step, ctx.step_skipped = 1, True
    strat.training_step(model, batch, loss_fn, ctx)
    strat.after_step(model, batch, ctx)
    assert all(torch.equal(v, strat.net.state_dict()[k]) for k, v in before.items())
    assert (strat.baseline, strat.reward_sq, strat.updates, len(strat.history), strat._acc_n) == kept
    assert strat.skipped_updates == 1 and strat.state_dict()["skipped_updates"] == 1
    assert strat._pending is None  # nothing of the skipped step leaks into the next one
    ctx.step, ctx.step_skipped = 2, False
    _iteration(strat, model, batch, loss_fn, ctx, optimizer)
    assert strat.updates == 2 and not torch.equal(strat.net.fc.weight, before["fc.weight"])


def test_trainer_tells_the_strategy_when_gradscaler_skips_a_step(synth_root, tmp_path, one_thread, monkeypatch):
    """A real GradScaler (CPU) that finds inf gradients at one step skips the detector's step; the
    trainer detects it (the scale drops) and the strategy does not update either."""
    from irstd.engine import Trainer

    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda *a, **k: real("cpu", init_scale=2.0**10))
    original = HRL.training_step
    hooks = []

    def inf_grads_at_step_1(self, model, batch, loss_fn, ctx):
        out = original(self, model, batch, loss_fn, ctx)
        if ctx.step == 1:
            first = next(model.parameters())
            hooks.append(first.register_hook(lambda g: torch.full_like(g, float("inf"))))
        return out

    seen = []
    after = HRL.after_step

    def record(self, model, batch, ctx):
        for h in hooks:
            h.remove()
        hooks.clear()
        seen.append((ctx.step, ctx.step_skipped))
        after(self, model, batch, ctx)

    monkeypatch.setattr(HRL, "training_step", inf_grads_at_step_1)
    monkeypatch.setattr(HRL, "after_step", record)
    trainer = Trainer(_cfg(synth_root, "train.epochs=1"), run_dir=tmp_path / "run")
    trainer.fit()
    steps = trainer.sampler.steps
    assert seen == [(k, k == 1) for k in range(steps)]
    assert trainer.strategy.updates == steps - 1 and trainer.strategy.skipped_updates == 1
    assert trainer.scaler.get_scale() == 2.0**9
    # the dataset's full scale the crops were corrupted with is recorded for resume and robustness
    assert load_config(tmp_path / "run" / "config.yaml").data.full_scale == 255.0


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


def test_table6_configs_differ_from_default_hrl_only_in_the_policy_setting():
    # Paper 002 Table 6 on the default detector: arms that differ in what chooses the corruption.
    paper = load_config("default_hrl").to_dict()
    for arm in ("random", "noise", "blur", "isp"):
        cfg = load_config(f"default_hrl_{arm}").to_dict()
        kwargs = dict(cfg["strategy"]["kwargs"])
        assert kwargs.pop("policy") == arm
        assert kwargs == {k: v for k, v in paper["strategy"]["kwargs"].items() if k != "policy"}, arm
        for key in ("model", "data", "loss", "optim", "schedule", "eval", "train"):
            assert cfg[key] == paper[key], (arm, key)
        assert cfg["strategy"]["name"] == "hrl"
        assert create_strategy("hrl", **cfg["strategy"]["kwargs"]).policy == arm
    ours = load_config("default_hrl_ours").to_dict()
    changed = {k for k, v in ours["strategy"]["kwargs"].items() if paper["strategy"]["kwargs"].get(k) != v}
    assert changed == {"signal", "policy_optimizer", "policy_lr"}
    for key in ("model", "data", "loss", "optim", "schedule", "eval", "train"):
        assert ours[key] == paper[key], key
    strat = create_strategy("hrl", **ours["strategy"]["kwargs"])
    assert (strat.policy, strat.signal, strat.policy_optimizer) == ("learned", "gain", "adam")


_DDP_SCRIPT = r"""
import sys
import torch, torch.distributed as dist
from irstd.data import IRSTDDataset, TrainTransform
from irstd.engine import distributed as du
from irstd.engine.loader import AugmentedDataset
from irstd.engine.losses import build_loss
from irstd.config import load_config
from irstd.models import create
from irstd.strategies import StepContext, create_strategy

info = du.init_distributed("cpu")
torch.manual_seed(0)
model = create("acm").train()
cfg = load_config(None, ["loss.name=softiou"])
strat = create_strategy("hrl", policy_lr=0.05)
crops = AugmentedDataset(IRSTDDataset(sys.argv[1], split="train"), TrainTransform(32, 0.5), seed=0, with_raw=True)
ctx = StepContext(device=torch.device("cpu"), seed=0, rank=info.rank, world_size=info.world_size, config=cfg,
                  train_crops=crops)
strat.setup(model, ctx)
loss_fn = build_loss(cfg.loss)
for step in range(4):
    ctx.step = step
    ctx.step_skipped = step == 2  # the trainer reports the same skip on every rank
    items = [crops[(step, 2 * info.rank + k)] for k in range(2)]  # each rank sees different images
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "id"}
    strat.training_step(model, batch, loss_fn, ctx)
    strat.after_step(model, batch, ctx)
flat = torch.cat([p.detach().flatten() for p in strat.net.parameters()] + [torch.tensor([strat.baseline], dtype=torch.float32)])
gathered = [torch.zeros_like(flat) for _ in range(info.world_size)]
dist.all_gather(gathered, flat)
if info.rank == 0:
    same = all(torch.equal(gathered[0], t) for t in gathered[1:])
    moved = not torch.equal(strat.net.fc.weight, torch.zeros_like(strat.net.fc.weight))
    diff = max(float((gathered[0] - t).abs().max()) for t in gathered[1:])
    print("RESULT", same, moved, strat.updates, strat.skipped_updates, f"max_diff={diff:.3g}", flush=True)
dist.barrier()  # leave together: no rank tears its connections down while a peer still uses them
du.cleanup()
"""


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_ddp_ranks_keep_one_strategy_network(synth_root, tmp_path, torchrun):
    """Two gloo processes on different images end with identical strategy weights and baseline,
    and skip the same reported step."""
    script = tmp_path / "ddp_hrl.py"
    script.write_text(_DDP_SCRIPT)
    res = torchrun([script, str(synth_root)])
    assert res.returncode == 0, res.stderr[-4000:]
    assert "RESULT True True 3 1 " in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
