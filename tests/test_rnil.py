"""Real-domain noise invariance learning (paper 000): the noise library, the mixing at the image's
own scale, gradients of both branches, the WCS sampler in a batch, and the arms' configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from irstd.data.io import write_image
from irstd.domain.noise import SIGMA_MAX, build_noise_library, fit_noise
from irstd.strategies import StepContext


pytestmark = pytest.mark.usefixtures("one_thread")  # every test here on one torch thread (conftest.py)


def _frames(folder: Path, n: int = 6, size=(120, 144), seed=0) -> None:
    """Frames whose left third is flat, middle third textured, right third black."""
    rng = np.random.default_rng(seed)
    h, w = size
    for k in range(n):
        frame = 100 + rng.normal(0, 2.0, size)
        frame[:, w // 3 : 2 * w // 3] += rng.normal(0, 25.0, (h, w // 3))
        frame[:, 2 * w // 3 :] = rng.normal(2, 1.0, (h, w - 2 * w // 3))
        write_image(folder / "images" / f"f{k}.png", np.clip(np.rint(frame), 0, 255).astype(np.uint8))


def test_no_noise_library_window_exceeds_sigma_max(tmp_path):
    from irstd.domain.frames import domain_frames
    from irstd.domain.noise import noise_windows

    _frames(tmp_path / "frames")
    paths = domain_frames(tmp_path / "frames")
    lib = build_noise_library(paths, 255.0)
    assert len(lib) > 0 and lib.considered > len(lib)  # textured and black windows were left out
    for win, std in zip(lib.windows, lib.stds):
        assert win.shape == (120 // 15, 144 // 12)
        assert std < SIGMA_MAX and win.std() < SIGMA_MAX
        assert abs(float(win.mean())) < 1e-6
    # what was rejected really failed a threshold: every window of a frame, kept or not
    from irstd.data.io import read_image

    unit = read_image(paths[0]) / 255.0
    kept, seen = noise_windows(unit)
    kept_at = {(t, l) for t, l, _, _ in kept}
    wh, ww = 120 // 15, 144 // 12
    for t in range(0, 120 - wh + 1, wh):
        for left in range(0, 144 - ww + 1, ww):
            win = unit[t : t + wh, left : left + ww]
            assert ((t, left) in kept_at) == (win.std() < SIGMA_MAX and win.mean() > 0.05)
    # a tighter threshold keeps fewer windows, all under it
    cut = float(np.median(lib.stds))
    tight = build_noise_library(paths, 255.0, sigma_max=cut)
    assert 0 < len(tight) < len(lib) and max(tight.stds) < cut
    for fit in ("resize", "tile"):
        field = fit_noise(lib.windows[0], (64, 64), fit)
        assert field.shape == (64, 64) and abs(float(field.mean())) < 1e-6


def _batch(n=2, size=32, seed=0):
    """A batch as the loader gives it with raw crops: the crops are whole images here, so their
    statistics are the whole images' ones."""
    from irstd.data import normalize_image

    rng = np.random.default_rng(seed)
    raw = np.clip(0.4 + 0.05 * rng.standard_normal((n, size, size)), 0, 1).astype(np.float32)
    mask = np.zeros((n, size, size), dtype=np.float32)
    mask[:, 10:13, 14:17] = 1
    raw[:, 10:13, 14:17] += 0.3
    image = np.stack([normalize_image(r) for r in raw])
    return {
        "image": torch.from_numpy(image[:, None]), "mask": torch.from_numpy(mask[:, None]),
        "raw": torch.from_numpy(raw[:, None]),
        "raw_mean": torch.tensor(raw.reshape(n, -1).mean(1, dtype=np.float64), dtype=torch.float32),
        "raw_std": torch.tensor(raw.reshape(n, -1).std(1, dtype=np.float64), dtype=torch.float32),
    }


def _ctx(**config):
    from irstd.config import load_config

    cfg = load_config(None, [f"{k}={v}" for k, v in config.items()])
    return StepContext(device=torch.device("cpu"), seed=0, step=3, config=cfg)


def test_the_noisy_input_is_the_convex_mix_standardised(tmp_path):
    from irstd.data import normalize_image
    from irstd.strategies.rnil import RNIL

    _frames(tmp_path / "frames")
    batch = _batch()
    for lam in (0.5, 0.2):
        rnil = RNIL(target=str(tmp_path / "frames"), lam=lam)
        rnil.setup(None, _ctx())
        gen = torch.Generator().manual_seed(0)
        x_noise, added = rnil.noisy_input(batch, gen)
        noise = added / (lam / (1 - lam))  # R(P), the fitted library window
        # the mix of the paper, standardised as the whole image is at test time
        mix = lam * noise + (1 - lam) * batch["raw"]
        for i in range(2):
            np.testing.assert_allclose(x_noise[i, 0].numpy(), normalize_image(mix[i, 0].numpy()), atol=1e-4)
        # the noise is a library window at its real amplitude, a fraction of full scale
        assert 0 < float(noise.std()) < SIGMA_MAX


@pytest.mark.parametrize("noise", ["real", "composite"])
def test_both_branches_losses_reach_every_parameter(tmp_path, noise):
    from irstd.engine.losses import SegLoss
    from irstd.models import create
    from irstd.strategies.rnil import RNIL

    _frames(tmp_path / "frames")
    torch.manual_seed(0)
    model = create("ivanistd", base_channels=8, num_layers=1).train()  # the paper's network, small for speed
    rnil = RNIL(target=str(tmp_path / "frames"), noise=noise)
    ctx = _ctx()
    rnil.setup(model, ctx)
    sup, cons, _ = rnil.losses(model, _batch(), SegLoss(["bce"], deep_supervision="sum"), ctx)
    params = [p for p in model.parameters() if p.requires_grad]
    g_sup = torch.autograd.grad(sup, params, retain_graph=True, allow_unused=True)
    g_cons = torch.autograd.grad(cons, params, allow_unused=True)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, g_sup, g_cons):
        assert a is not None and a.abs().sum() > 0, f"supervised (clean-branch) loss misses {name}"
        assert b is not None and b.abs().sum() > 0, f"consistency (noisy-branch) loss misses {name}"
    # the consistency term is a function of the noisy branch: without noise it vanishes
    quiet = RNIL(target=str(tmp_path / "frames"), noise=noise, lam=0.0)
    quiet.setup(model, ctx)
    model.eval()
    _, zero, _ = quiet.losses(model, _batch(), SegLoss(["bce"]), ctx)
    assert float(zero.detach()) < 1e-10


def test_wcs_sampler_mixes_pasted_targets_into_a_batch(tmp_path):
    from irstd.data import IRSTDDataset
    from irstd.strategies.wcs import WCSSampler

    rng = np.random.default_rng(4)
    src = tmp_path / "src"
    for item in ("a", "b"):
        image = np.clip(60 + rng.normal(0, 2, (48, 48)), 0, 255).astype(np.uint8)
        mask = np.zeros((48, 48), dtype=np.uint8)
        image[20:23, 20:23], mask[20:23, 20:23] = 200, 255
        write_image(src / "images" / f"{item}.png", image)
        write_image(src / "masks" / f"{item}.png", mask)
    _frames(tmp_path / "frames")
    ctx = _ctx(**{"data.crop_size": 32})
    ctx.train_data = IRSTDDataset(src, ids=["a", "b"])
    sampler = WCSSampler(target=str(tmp_path / "frames"), ratio=1.0, pool=4)
    sampler.setup(None, ctx)
    batch, replaced = sampler.mix(_batch(n=3), ctx)
    assert replaced == 3 and all(i.startswith("wcs:") for i in batch["id"])
    assert batch["image"].shape == (3, 1, 32, 32) and (batch["mask"].flatten(1).sum(1) > 0).all()
    assert float(batch["raw"].min()) >= 0 and float(batch["raw"].max()) <= 1
    # the image is the raw crop standardised with its whole frame's statistics
    x = (batch["raw"] - batch["raw_mean"].view(-1, 1, 1, 1)) / batch["raw_std"].view(-1, 1, 1, 1)
    torch.testing.assert_close(x, batch["image"], atol=1e-3, rtol=0)
    assert sampler.paste_set_size == 2
    again, _ = sampler.mix(_batch(n=3), ctx)  # same step, same draws
    torch.testing.assert_close(again["image"], batch["image"])
    state = sampler.state_dict()
    other = WCSSampler(target=str(tmp_path / "frames"), ratio=1.0, pool=4)
    other.setup(None, ctx)
    other.load_state_dict(state)
    torch.testing.assert_close(other.mix(_batch(n=3), ctx)[0]["image"], batch["image"])


def _without(cfg, *keys):
    d = cfg.to_dict()
    for key in keys:
        section, _, name = key.partition(".")
        d[section].pop(name, None) if name else d.pop(section, None)
    return d


@pytest.mark.parametrize("family", ["cross_litenet", "dynamic_litenet"])
def test_the_arms_differ_in_the_strategy_only(family):
    from irstd.config import load_config

    arms = {arm: load_config(f"{family}_{arm}") for arm in ("plain", "wcs", "rnil", "wcs_rnil")}
    assert [c.strategy.name for c in arms.values()] == ["supervised", "wcs", "rnil", "wcs_rnil"]
    plain = _without(arms["plain"], "strategy", "output.name")
    for arm, cfg in arms.items():
        assert _without(cfg, "strategy", "output.name") == plain, arm
        assert cfg.output.name == f"{family}_{arm}"
    assert arms["plain"].model.name == "litenet" and arms["plain"].train.seed == 0
    default = load_config("default")
    assert _without(load_config("cross_litenet_plain"), "output.name") == _without(default, "output.name")
    targets = [c.strategy.kwargs.get("target") for a, c in arms.items() if a != "plain"]
    assert len(set(targets)) == 1 and targets[0].endswith("SIRST-v2-backgrounds")
