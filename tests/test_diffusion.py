"""IRSTD-Diff (paper 001): the schedule and the samplers (irstd.diffusion), the wavelet and window
attention blocks of LIW, the conditional encoder's injection into the denoiser, the command line
(sampling options and their errors, the shipped-weights lookup, profiling) and training with an
exact resume. Small sizes throughout: a tiny network on 40 x 48 frames."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

pytest.importorskip("diffusers", reason='the diffusion samplers need pip install "irstd[diffusion]"')

from irstd.cli import main  # noqa: E402
from irstd.data.io import write_image  # noqa: E402
from irstd.diffusion import (  # noqa: E402
    SamplingError,
    add_noise,
    alphas_cumprod,
    betas,
    create_scheduler,
    mask_to_x0,
    sample,
    x0_to_logits,
)
from irstd.errors import IRSTDError  # noqa: E402
from irstd.models import create  # noqa: E402

SAMPLERS = ("ddpm", "ddim", "dpm_solver")
# A network small enough that a training step or a sampled frame takes milliseconds.
TINY = dict(ce_width=0.25, base_channels=8, channel_mult=(1, 2, 2), attention_ds=(), max_groups=4, steps=2)


def _tiny(**kwargs):
    torch.manual_seed(0)
    return create("irstd_diff", **{**TINY, **kwargs})


def _oracle(scheduler, x0):
    """The perfect noise predictor for data ``x0``: the noise that makes ``x_t`` out of ``x0``."""
    ab = scheduler.alphas_cumprod.double()

    def denoise(x_t, t, cond):
        a = ab[t].view(-1, 1, 1, 1)
        return ((x_t.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()).float()

    return denoise


def _masks(shape=(2, 1, 8, 12), seed=0):
    g = torch.Generator().manual_seed(seed)
    return mask_to_x0((torch.rand(shape, generator=g) > 0.8).float())


# ------------------------------------------------------------------------------------ schedule


def test_schedule_is_the_scaled_linear_one():
    b = betas(100)
    assert b[0].item() == pytest.approx(1e-3) and b[-1].item() == pytest.approx(0.2)
    ab = alphas_cumprod(100)
    assert ab[-1] < 1e-4  # x_{T-1} is pure noise, where the samplers start
    assert alphas_cumprod(100, scale_betas=False)[-1].item() == pytest.approx(0.3636, abs=1e-3)
    with pytest.raises(SamplingError, match="not in"):
        betas(20)  # Table VI: "cannot be less than 20" (the last beta would be 1)


def test_dpm_solver_is_not_used_for_the_forward_process():
    with pytest.raises(ValueError, match="DDPM or DDIM"):
        add_noise(create_scheduler("dpm_solver"), torch.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.long))


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_forward_process_matches_the_closed_form(name):
    scheduler = create_scheduler(name)
    ab = alphas_cumprod(100)
    x0 = _masks()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 99])
    x_t = add_noise(scheduler, x0, noise, t)
    ref = ab[t].sqrt().view(-1, 1, 1, 1) * x0.double() + (1 - ab[t]).sqrt().view(-1, 1, 1, 1) * noise.double()
    assert torch.allclose(x_t.double(), ref, atol=1e-5)
    # q(x_t | x_0) = N(sqrt(ab_t) x_0, (1 - ab_t) I): moments over many draws at t = 30
    draws = torch.randn(20000, 1, 1, 1, generator=torch.Generator().manual_seed(2))
    one = torch.ones(20000, 1, 1, 1)
    xs = add_noise(scheduler, one, draws, torch.full((20000,), 30)).double()
    assert xs.mean().item() == pytest.approx(ab[30].sqrt().item(), abs=0.02)
    assert xs.var().item() == pytest.approx((1 - ab[30]).item(), rel=0.05)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("steps", [1, 5, 10, 100])
def test_a_perfect_noise_predictor_returns_x0(name, steps):
    scheduler = create_scheduler(name)
    x0 = _masks()
    out = sample(_oracle(scheduler, x0), None, x0.shape, scheduler, steps, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-4)


@pytest.mark.filterwarnings("ignore:__array__ implementation")  # diffusers' DPM-Solver under NumPy 2
@pytest.mark.parametrize("name", SAMPLERS)
def test_one_step_with_a_perfect_noise_predictor_estimates_x0(name):
    scheduler = create_scheduler(name)
    scheduler.set_timesteps(10)
    x0 = _masks()
    t = scheduler.timesteps[0]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    x_t = add_noise(create_scheduler("ddpm"), x0, noise, torch.full((2,), int(t)))
    eps = _oracle(scheduler, x0)(x_t, torch.full((2,), int(t)), None)
    assert torch.allclose(eps, noise, atol=1e-4)
    step = scheduler.step(eps, t, x_t, generator=torch.Generator().manual_seed(0))
    if hasattr(step, "pred_original_sample"):  # DDPM, DDIM
        assert torch.allclose(step.pred_original_sample, x0, atol=1e-3)
    # the step moves x_t to the marginal of the next timestep: sqrt(ab) x0 + sqrt(1 - ab) eps
    nxt = int(scheduler.timesteps[1])
    ab = scheduler.alphas_cumprod[nxt]
    if name != "ddpm":  # DDPM adds fresh noise instead
        assert torch.allclose(step.prev_sample, ab.sqrt() * x0 + (1 - ab).sqrt() * noise, atol=1e-3)


def _toy_denoiser(x_t, t, cond):
    """A fixed, non-trivial noise predictor (no network): the samplers' arithmetic is what is tested."""
    return torch.tanh(x_t * 0.7 + 0.01 * t.view(-1, 1, 1, 1).float() - 0.2)


def test_ddim_with_eta_0_draws_only_the_starting_noise():
    scheduler = create_scheduler("ddim")
    shape = (1, 1, 6, 6)
    g = torch.Generator().manual_seed(5)
    a = sample(_toy_denoiser, None, shape, scheduler, 10, g)
    ref = torch.Generator().manual_seed(5)
    torch.randn(shape, generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())  # nothing drawn after x_T: deterministic steps
    b = sample(_toy_denoiser, None, shape, scheduler, 10, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # eta = 1 draws per-step noise, and so gives another sample from the same x_T
    c = sample(_toy_denoiser, None, shape, scheduler, 10, torch.Generator().manual_seed(5), eta=1.0)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", SAMPLERS)
def test_seeded_sampling_is_reproducible(name):
    scheduler = create_scheduler(name)
    shape = (2, 1, 6, 6)

    def run(seed):
        return sample(_toy_denoiser, None, shape, scheduler, 5, torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_bad_sampler_names_and_step_counts_are_clear_errors():
    with pytest.raises(IRSTDError, match="unknown sampler 'dim'.*did you mean 'ddim'"):
        create_scheduler("dim")
    assert type(create_scheduler("DPM-Solver")).__name__ == "DPMSolverMultistepScheduler"
    scheduler = create_scheduler("ddim")
    for bad in (0, 101, 2.5, "3"):
        with pytest.raises(SamplingError, match="from 1 to 100"):
            sample(_toy_denoiser, None, (1, 1, 4, 4), scheduler, bad)


def test_missing_diffusers_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    with pytest.raises(IRSTDError, match=r'pip install "irstd\[diffusion\]"'):
        create_scheduler("ddim")


def test_sampled_x0_maps_to_logits_with_threshold_0_5_at_x0_0():
    x0 = torch.tensor([-1.0, -0.2, -1e-3, 1e-3, 0.3, 1.0])
    p = torch.sigmoid(x0_to_logits(x0))
    assert torch.equal(p > 0.5, x0 > 0)
    assert torch.isfinite(x0_to_logits(x0)).all()
    assert torch.allclose(p, ((x0 + 1) / 2).clamp(1e-4, 1 - 1e-4), atol=1e-6)


# ------------------------------------------------------------------------------------ LIW


def test_haar_dwt_matches_pywavelets_and_inverts():
    import pywt

    from irstd.models.layers.wavelet import haar_dwt, haar_idwt

    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    low, high = haar_dwt(x)
    ca, (ch, cv, cd) = pywt.dwt2(x.numpy(), "haar", axes=(-2, -1))
    for ours, ref in ((low, ca), (high[:, :, 0], ch), (high[:, :, 1], cv), (high[:, :, 2], cd)):
        assert np.allclose(ours.numpy(), ref, atol=1e-12)
    assert torch.allclose(haar_idwt(low, high), x, atol=1e-12)


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("size", [(16, 24), (18, 22)])  # 18 x 22: padded to a multiple of 2**levels
def test_liw_with_identity_attention_is_the_identity_map(levels, size):
    from irstd.models.layers.liw import LIW

    torch.manual_seed(0)
    liw = LIW(16, levels=levels)
    x = torch.randn(2, 16, *size)
    assert not torch.allclose(liw(x), x, atol=1e-3)  # the attention does change the map
    for k in range(levels):
        liw.blocks[k] = nn.Identity()
    nn.init.normal_(liw.out.weight)  # any residual output block: it sees a zero residual
    assert torch.allclose(liw(x), x, atol=1e-5)


def test_liw_changes_only_the_low_band():
    from irstd.models.layers.liw import LIW
    from irstd.models.layers.wavelet import haar_dwt

    class AddToLow(nn.Module):
        def forward(self, low):
            return low + torch.randn_like(low)

    liw = LIW(8, levels=1)
    liw.blocks[0] = AddToLow()
    x = torch.randn(1, 8, 16, 16)
    _, high = haar_dwt(liw(x) - x)
    assert high.abs().max() < 1e-5  # the high bands pass through untouched


@pytest.mark.parametrize("shift", [False, True])
def test_window_attention_tokens_are_pixels(shift):
    """One pixel changed: only the pixels of its (shifted) window change. The release built its
    tokens by a reshape that mixed channels and positions, which breaks this."""
    from irstd.models.layers.window_attention import SwinBlock

    torch.manual_seed(0)
    block = SwinBlock(16, heads=4, window=4, shift=shift)
    x = torch.randn(1, 16, 16, 16)
    x2 = x.clone()
    x2[0, :, 5, 6] += 1.0
    changed = ((block(x2) - block(x)).abs().sum(1)[0] > 0).nonzero()
    lo, hi = changed.min(0).values.tolist(), changed.max(0).values.tolist()
    # regular windows: rows 4..7, cols 4..7; shifted by 2: rows 2..5, cols 6..9
    assert (lo, hi) == (([2, 6], [5, 9]) if shift else ([4, 4], [7, 7]))


# ------------------------------------------------------------------------------------ the model


def test_the_conditional_encoder_gets_the_gradient_of_the_noise_loss():
    """Eq. 15: the CE's latent is added into the denoiser; the noise MSE alone (lambda = 0) must
    train the CE along the latent's path, and nothing off it (the release detached the latent)."""
    model = _tiny().train()
    x = torch.randn(2, 1, 32, 32)
    y = (torch.rand(2, 1, 32, 32) > 0.9).float()
    out = model(x, y, generator=torch.Generator().manual_seed(0), bce_weight=0.0)
    assert set(out) == {"loss", "mse", "bce"} and torch.equal(out["loss"], out["mse"])
    out["loss"].backward()

    def grad(module):
        return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)

    ce = model.ce
    assert grad(ce.encoder[0]) > 0 and grad(ce.encoder[5]) > 0 and grad(ce.decoder[3]) > 0  # up to Decoder2
    assert grad(ce.liw) > 0
    assert grad(ce.decoder[4]) == 0 and grad(ce.sides) == 0 and grad(ce.fuse) == 0  # past it: no gradient
    # and the denoiser's output depends on the latent
    model.eval()
    with torch.no_grad():
        _, latent = model.condition(x)
        t = torch.full((2,), 50)
        a = model.denoise(y, t, x, latent)
        b = model.denoise(y, t, x, latent + 1.0)
    assert not torch.allclose(a, b)


def test_sampling_is_seeded_and_the_ensemble_is_the_mean_of_its_samples(one_thread):
    model = _tiny().eval()
    x = torch.randn(1, 1, 32, 64)
    a, b = model.sample(x, seed=3), model.sample(x, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, model.sample(x, seed=4))
    assert a.shape == (1, 1, 32, 64) and a.abs().max() <= 1
    g = torch.Generator().manual_seed(7)
    first, second = model.sample(x, generator=g), model.sample(x, generator=g)
    pair = model.sample(x, ensemble=2, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(pair, (first + second) / 2, atol=1e-6)
    logits = model(x)  # eval forward: the configured sampler and seed
    assert torch.equal(logits, x0_to_logits(model.sample(x, seed=0)))
    with pytest.raises(IRSTDError, match="trained through its loss"):
        model.train()(x)


def test_sampling_settings_are_checked():
    model = _tiny()
    assert model.sampling == dict(sampler="ddim", steps=2, ensemble=1, seed=0, eta=0.0)
    assert model.configure_sampling(sampler="DPM-Solver", steps=100)["sampler"] == "dpm_solver"
    for bad, match in ((dict(steps=0), "from 1 to 100"), (dict(steps=101), "from 1 to 100"),
                       (dict(sampler="euler"), "unknown sampler"), (dict(ensemble=0), "ensemble"),
                       (dict(eta=2.0), "eta")):
        with pytest.raises(SamplingError, match=match):
            model.configure_sampling(**bad)
    with pytest.raises(ValueError, match="steps"):
        create("irstd_diff", steps=0)  # the trainer reports it as bad model.kwargs
    with pytest.raises(ValueError, match="liw_levels needs ce"):
        create("irstd_diff", ce=False)
    ce_only = create("irstd_diff", ne=False, **{k: v for k, v in TINY.items() if k == "ce_width"})
    assert not ce_only.can_sample and ce_only.denoiser is None


def test_paper_size_follows_tables_i_and_ii():
    from irstd.models.layers.diffusion_blocks import AttentionBlock

    model = create("irstd_diff", size="paper")
    ne = model.denoiser
    assert ne.base_channels == 64 and len(ne.enc_res) == 6 and all(len(r) == 2 for r in ne.enc_res)
    assert [r[-1].conv1.out_channels for r in ne.enc_res] == [64, 64, 128, 128, 256, 256]
    assert ne.time_mlp[0].out_features == 256
    # attention after each ResBlock of the 1/16 level (16 x 16 at 256 px) and in the middle
    attn_levels = [i for i, a in enumerate(ne.enc_attn) if any(isinstance(m, AttentionBlock) for m in a)]
    assert attn_levels == [4] and ne.mid[1].heads == 4
    assert isinstance(ne.cond_proj, nn.Identity)  # eq. 15 is a plain sum at 64 channels
    assert model.ce.latent_chans == 64 and model.ce.liw is not None and model.stride == 32


# ------------------------------------------------------------------------------------ command line


def _tiny_dataset(root: Path, n: int = 8) -> list[str]:
    rng = np.random.default_rng(0)
    ids = [f"f{k}" for k in range(n)]
    for k, item in enumerate(ids):
        image = rng.integers(0, 120, (40, 48), dtype=np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        r, c = 8 + 3 * k, 10 + 4 * k
        image[r : r + 3, c : c + 3] = 250
        mask[r : r + 3, c : c + 3] = 255
        write_image(root / "images" / f"{item}.png", image)
        write_image(root / "masks" / f"{item}.png", mask)
    (root / "img_idx").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        (root / "img_idx" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return ids


def _one_error_line(capsys, fragment: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    return lines[0]


@pytest.fixture
def diff_weights(tmp_path):
    from irstd.engine.checkpoint import save_weights

    path = tmp_path / "diff.safetensors"
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
    save_weights(_tiny(), path, {"model": "irstd_diff", "kwargs": kwargs, "in_chans": 1, "threshold": 0.5})
    return path


def test_predict_with_sampling_options_and_their_errors(tmp_path, diff_weights, one_thread, capsys):
    from irstd.engine.checkpoint import save_weights

    ds = tmp_path / "ds"
    _tiny_dataset(ds, 2)
    frame = str(ds / "images" / "f0.png")
    rc = main(["predict", frame, "--out", str(tmp_path / "o"), "--weights", str(diff_weights),
               "--sampler", "dpm_solver", "--steps", "1", "--ensemble", "2", "--seed", "3"])
    out = capsys.readouterr().out
    assert rc == 0 and "[dpm_solver 1 steps, ensemble 2, seed 3]" in out
    assert (tmp_path / "o" / "f0.png").is_file()
    for args, fragment in [
        (["--steps", "0"], "sampling steps must be an integer from 1 to 100"),
        (["--steps", "101"], "from 1 to 100"),
        (["--sampler", "euler"], "unknown sampler 'euler'"),
        (["--ensemble", "0"], "ensemble size"),
    ]:
        assert main(["predict", frame, "--out", str(tmp_path / "x"), "--weights", str(diff_weights), *args]) == 2
        _one_error_line(capsys, fragment)
    # a discriminative model, the default detector, a classic method
    torch.manual_seed(0)
    lite = tmp_path / "lite.safetensors"
    save_weights(create("litenet"), lite, {"model": "litenet", "kwargs": {}, "in_chans": 1, "threshold": 0.5})
    assert main(["predict", frame, "--out", str(tmp_path / "x"), "--weights", str(lite), "--sampler", "ddim"]) == 2
    _one_error_line(capsys, "sampling settings apply to diffusion models (irstd_diff); litenet")
    assert main(["predict", frame, "--out", str(tmp_path / "x"), "--steps", "5"]) == 2
    _one_error_line(capsys, "apply to diffusion models")
    assert main(["predict", frame, "--out", str(tmp_path / "x"), "--method", "tophat", "--steps", "5"]) == 2
    _one_error_line(capsys, "not to the classic method tophat")
    assert not (tmp_path / "x").exists()


def test_model_irstd_diff_without_weights_uses_the_shipped_ones(tmp_path, diff_weights, monkeypatch, one_thread, capsys):
    from irstd.engine import predictor

    ds = tmp_path / "ds"
    _tiny_dataset(ds, 1)
    frame = str(ds / "images" / "f0.png")
    shipped = (tmp_path / "w" / "irstd_diff.safetensors", tmp_path / "w" / "irstd_diff.yaml", "IRSTD-Diff",
               "nuaa_irstd_diff_cpu")
    monkeypatch.setitem(predictor.SHIPPED_MODELS, "irstd_diff", shipped)
    args = ["predict", frame, "--out", str(tmp_path / "o"), "--model", "irstd_diff", "--sampler", "ddim", "--steps", "1"]
    assert main(args) == 2
    _one_error_line(capsys, "no shipped IRSTD-Diff weights are installed yet")
    shipped[0].parent.mkdir()
    shipped[0].write_bytes(diff_weights.read_bytes())
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
    shipped[1].write_text(yaml.safe_dump({"model": "irstd_diff", "kwargs": kwargs, "threshold": 0.5}))
    assert main(args) == 0
    assert "shipped irstd_diff (irstd_diff) [ddim 1 steps, seed 0]" in capsys.readouterr().out
    assert main(["predict", frame, "--out", str(tmp_path / "x"), "--model", "acm"]) == 2
    _one_error_line(capsys, "needs --weights")


def test_export_refuses_a_diffusion_model(tmp_path, diff_weights, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    assert main(["export", "--weights", str(diff_weights), "--out", str(tmp_path / "d.onnx")]) == 2
    _one_error_line(capsys, "irstd export does not write to ONNX")
    assert not (tmp_path / "d.onnx").exists()


def test_profile_reports_flops_per_step_and_per_image(tmp_path, one_thread, capsys):
    out = tmp_path / "p.json"
    args = ["profile", "irstd_diff", "--model-kwargs", json.dumps({k: v for k, v in TINY.items()}),
            "--size", "32", "32", "--steps", "1", "3", "--repeats", "1", "--json", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "GFLOPs per step" in text and "| ddim | 3 | 1 |" in text
    result = json.loads(out.read_text())
    rows = {r["steps"]: r["gflops"] for r in result["rows"]}
    assert result["step_gflops"] > 0 and result["condition_gflops"] > 0
    for n in (1, 3):
        assert rows[n] == pytest.approx(result["condition_gflops"] + n * result["step_gflops"])
    assert main(["profile", "acm", "--steps", "5"]) == 2
    _one_error_line(capsys, "apply to a diffusion model")


# ------------------------------------------------------------------------------------ training


def _train_overrides(root: Path, *extra: str) -> list[str]:
    tiny = {**TINY, "steps": 1}  # validation and test sample with one step
    kwargs = "{" + ", ".join(f"{k}: {list(v) if isinstance(v, tuple) else v}" for k, v in tiny.items()) + "}"
    return [
        f"data.root={root}",
        f"model.kwargs={kwargs}",
        "data.crop_size=32",
        "data.workers=0",
        "data.val_fraction=0.25",
        "schedule.warmup_epochs=0.5",
        "optim.lr=1e-3",
        "train.batch_size=2",
        "train.eval_interval=1",
        "train.progress=false",
        "train.threads=1",
        *extra,
    ]


def test_training_resumes_exactly_after_an_interruption(tmp_path, monkeypatch, one_thread, capsys):
    """A run killed in the middle of epoch 2 and resumed from its last mid-epoch checkpoint ends
    exactly as an uninterrupted one (weights, log, validation and test scores)."""
    from safetensors.torch import load_file

    from irstd.config import load_config
    from irstd.engine import Trainer
    from irstd.engine.checkpoint import read_state
    from irstd.strategies.diffusion import DiffusionTraining

    ds = tmp_path / "ds"
    _tiny_dataset(ds, 6)  # 4 training images: 2 steps per epoch
    over = _train_overrides(ds, "train.epochs=2", "data.val_fraction=0.34")
    Trainer(load_config("nuaa_irstd_diff_cpu", over), run_dir=tmp_path / "a").fit()

    def crash(self, model, batch, ctx):
        if ctx.step == 3:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(DiffusionTraining, "after_step", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(load_config("nuaa_irstd_diff_cpu", over + ["train.checkpoint_interval=1"]), run_dir=tmp_path / "b").fit()
    monkeypatch.undo()
    state = read_state(tmp_path / "b" / "last" / "state.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)
    Trainer.from_run_dir(tmp_path / "b").fit()
    for name in ("last", "best"):
        wa = load_file(str(tmp_path / "a" / name / "model.safetensors"))
        wb = load_file(str(tmp_path / "b" / name / "model.safetensors"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    with open(tmp_path / "a" / "log.csv", newline="") as fh:
        log_a = list(csv.DictReader(fh))
    with open(tmp_path / "b" / "log.csv", newline="") as fh:
        log_b = list(csv.DictReader(fh))
    keep = ("epoch", "loss", "mse", "bce", "val_IoU", "val_Pd", "val_Fa")
    assert [{k: r[k] for k in keep} for r in log_a] == [{k: r[k] for k in keep} for r in log_b]
    assert len(log_a) == 2 and all(r["mse"] and r["bce"] and r["val_IoU"] for r in log_a)
    ma = json.loads((tmp_path / "a" / "test_metrics.json").read_text())
    mb = json.loads((tmp_path / "b" / "test_metrics.json").read_text())
    assert ma == mb


def _last_line_is_an_error(capsys, fragment: str) -> None:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and fragment in lines[-1], lines


def test_irstd_train_test_and_predict_with_a_diffusion_run(tmp_path, monkeypatch, one_thread, capsys):
    """``irstd train --config nuaa_irstd_diff_cpu``, then ``irstd test --run`` and ``irstd predict
    --run`` with another sampler; a discriminative model under the diffusion strategy (and the
    converse) stops with one error."""
    ds = tmp_path / "ds"
    _tiny_dataset(ds, 4)
    monkeypatch.chdir(tmp_path)
    over = _train_overrides(ds, "train.epochs=1", "data.val_fraction=0", "data.test_split=null")
    assert main(["train", "--config", "nuaa_irstd_diff_cpu", *over, "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "last" / "model.safetensors").is_file()
    capsys.readouterr()
    rc = main(["test", "--run", str(tmp_path / "r"), "--dataset", str(ds), "--sampler", "ddpm", "--steps", "2",
               "--quiet", "--no-masks", "--out", str(tmp_path / "eval")])
    assert rc == 0 and "[ddpm 2 steps, seed 0]" in capsys.readouterr().out
    assert math.isfinite(json.loads((tmp_path / "eval" / "metrics.json").read_text())["IoU"])
    frame = str(ds / "images" / "f0.png")
    assert main(["predict", frame, "--out", str(tmp_path / "o"), "--run", str(tmp_path / "r"), "--steps", "500"]) == 2
    _one_error_line(capsys, "from 1 to 100")
    assert main(["test", "--run", str(tmp_path / "r"), "--dataset", str(ds), "--sampler", "heun",
                 "--out", str(tmp_path / "e2")]) == 2
    _one_error_line(capsys, "unknown sampler 'heun'")
    rc = main(["train", "--config", "nuaa_irstd_diff_cpu", *over, "model.name=litenet", "model.kwargs={}",
               "--out", str(tmp_path / "r2")])
    assert rc == 2
    _last_line_is_an_error(capsys, "strategy diffusion trains diffusion models")
    rc = main(["train", "--config", "nuaa_irstd_diff_cpu", *over, "strategy.name=supervised", "strategy.kwargs={}",
               "--out", str(tmp_path / "r3")])
    assert rc == 2
    _last_line_is_an_error(capsys, "strategy.name: diffusion")


def test_ablation_configs_differ_from_the_main_one_only_in_model_kwargs():
    from irstd.config import load_config

    main_cfg = load_config("nuaa_irstd_diff_cpu").to_dict()
    assert main_cfg["model"]["kwargs"]["size"] == "cpu" and main_cfg["strategy"]["name"] == "diffusion"
    arms = {  # Table IX: (ne, ce, liw_levels)
        "nuaa_irstd_diff_cpu_ce": (False, True, 0),
        "nuaa_irstd_diff_cpu_ce_liw": (False, True, 2),
        "nuaa_irstd_diff_cpu_ne": (True, False, 0),
        "nuaa_irstd_diff_cpu_ne_ce": (True, True, 0),
        "nuaa_irstd_diff_cpu": (True, True, 2),
    }
    for name, (ne, ce, liw) in arms.items():
        cfg = load_config(name).to_dict()
        kw = cfg["model"]["kwargs"]
        assert (kw["ne"], kw["ce"], kw["liw_levels"]) == (ne, ce, liw), name
        for section in cfg:
            if section not in ("model", "output"):
                assert cfg[section] == main_cfg[section], (name, section)
        assert cfg["output"]["name"] == name
        model = create(cfg["model"]["name"], **kw)
        assert (model.denoiser is not None, model.ce is not None) == (ne, ce)
        assert (model.ce is not None and model.ce.liw is not None) == bool(liw)
