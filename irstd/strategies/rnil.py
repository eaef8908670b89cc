"""Real-domain noise invariance learning (RNIL, paper 000 Section 3.2) as the training strategy
``rnil``, its synthetic-noise baselines (paper 000 Table 7), and WCS + RNIL as ``wcs_rnil``.

Noise mixing. From the unlabelled target-domain frames (the 70 % of
:func:`irstd.domain.frames.split_frames`) a library of flat, zero-mean noise windows is built once
(:mod:`irstd.domain.noise`: ``h/15 x w/12`` windows with std < sigma_max and mean > mu_min, in
fractions of the frames' full scale). Per training sample one window ``P`` is drawn (``R(P)``),
brought to the crop's size (resized, or tiled) and mixed with the source crop::

    X_noise = lambda * R(P) + (1 - lambda) * X_source,     lambda = 0.5, or lambda ~ U(0, 1)

Scale: ``X_source`` is the un-normalised crop (``batch["raw"]``, intensities / the dataset's full
scale) and ``P`` is in fractions of the target frames' full scale: the noise enters at its real
amplitude relative to the sensor range. The detector sees every image standardised with its own
statistics, and standardisation removes a positive factor and an offset, so the standardised
``X_noise`` equals the standardised ``X_source + r * P`` with ``r = lambda / (1 - lambda)`` (the
whole image's variance becomes ``(1 - lambda)**2 var(X) + lambda**2 var(P)`` either way, up to the
same factor). That form is what is computed, then standardised as the whole noisy image would be
at test time (:func:`irstd.strategies.policy.standardize_corrupted`: exact for additive zero-mean
noise, in expectation), as the corruption strategies do; no clipping, which would break the
equivalence. ``lambda = 0.5`` adds the real noise at its own amplitude (``r = 1``).

Baselines (``noise=gaussian | salt_pepper | speckle | uniform | poisson | composite``): the same
training with the noise ``C(X) - X`` of the toolkit's corruption (:mod:`irstd.corruptions`, on the
raw crop at its full scale, ``severity`` of 3; severity 2 = paper 000's proportion 0.05 for
salt-and-pepper and the composite) in place of ``R(P)``: ``X_noise = X + r (C(X) - X)``, which is
``C(X)`` itself at ``lambda = 0.5``.

Two branches with shared weights: the clean crops ``X`` (the batch's ``image``, standardised as in
plain training) and the noisy ones go through the detector as one batch ``[X; X_noise]`` (the same
weights; BatchNorm statistics cover both halves, as the noisy inputs are part of the training
distribution). The loss::

    L = L_sup(outputs(X), Y) + mse_weight * MSE(sigmoid(final(X)), sigmoid(final(X_noise)))

``L_sup`` is the run's configured loss over every output of the clean branch, with the configured
per-output weights (``loss.deep_supervision``): paper 000's deep-supervised BCE
``sum_i lambda_i BCE(Y_i, Y^_i)`` with ``loss.name: bce`` (its configs); with the default detector's
loss in the LiteNet arms, so that those arms differ from plain training in the strategy only.
The consistency term is paper 000's ``L_SUP``, the mean squared difference of the final outputs
(``D_1``, element 0 of a deep-supervised output) as probabilities (bounded, so one confident
logit cannot dominate), weight 1 as in ``L_total = L_BCE + L_SUP``; gradients flow through both
branches.

Logs: ``loss_sup``, ``loss_consistency``, ``noise_std`` (mean std of the added noise, fraction of
full scale).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from irstd.errors import IRSTDError
from irstd.strategies import Strategy, register_strategy
from irstd.strategies.wcs import WCS, WCSSampler, _number, stream_generator

__all__ = ["RNIL", "WCSRNIL", "NOISES", "SYNTHETIC_NOISES"]

SYNTHETIC_NOISES = {
    "gaussian": "gaussian_noise",
    "salt_pepper": "salt_pepper_noise",
    "speckle": "speckle_noise",
    "uniform": "uniform_noise",
    "poisson": "poisson_noise",
    "composite": "composite_noise",
}
"""Paper 000 Table 7's synthetic noise types -> :mod:`irstd.corruptions` names."""
NOISES = ("real",) + tuple(SYNTHETIC_NOISES)
_NOISE_STREAM = 0x524E494C  # "RNIL"
_LAMBDA_MAX = 1.0 - 1e-3  # r = lambda / (1 - lambda) stays finite


def _final(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def _split(out, n: int):
    if isinstance(out, (list, tuple)):
        return [o[:n] for o in out], [o[n:] for o in out]
    return out[:n], out[n:]


@register_strategy("rnil")
class RNIL(Strategy):
    """Noise-consistency training with real target-domain noise (module docstring).

    Args (``strategy.kwargs``):
        target: folder of unlabelled target-domain frames (needed for ``noise=real``).
        noise: ``real`` (default) or a synthetic baseline of :data:`SYNTHETIC_NOISES`.
        severity: severity (1..3) of a synthetic noise (default 2).
        lam: lambda, a number in [0, 1) (default 0.5) or ``uniform`` for U(0, 1) per sample.
        mse_weight: weight of the consistency term (1).
        fit: ``resize`` (paper: up-sampled windows) or ``tile``.
        sigma_max, mu_min: noise-window thresholds in fractions of full scale
            (:mod:`irstd.domain.noise`: sqrt(50)/255, 0.05).
        window: ``[a, b]``: windows of ``h/a x w/b`` pixels (paper: ``[15, 12]``).
        library_size: windows kept at most (2048).
    """

    needs_raw = True
    log_keys = ("loss_sup", "loss_consistency", "noise_std")

    def __init__(
        self,
        target: str | None = None,
        noise: str = "real",
        severity: int = 2,
        lam: float | str = 0.5,
        mse_weight: float = 1.0,
        fit: str = "resize",
        sigma_max: float | None = None,
        mu_min: float | None = None,
        window: list[int] | tuple[int, int] | None = None,
        library_size: int | None = None,
    ):
        from irstd.corruptions import check_severity
        from irstd.domain import noise as N

        self.noise = str(noise).lower()
        if self.noise not in NOISES:
            raise IRSTDError(f"strategy.kwargs.noise: unknown {noise!r}; use one of {', '.join(NOISES)}")
        if self.noise == "real" and not target:
            raise IRSTDError("strategy rnil: noise=real needs strategy.kwargs.target, the folder of unlabelled "
                             "target-domain frames")
        self.target = None if target is None else str(target)
        self.severity = check_severity(int(severity), 3)
        if isinstance(lam, str):
            if lam.lower() != "uniform":
                raise IRSTDError(f"strategy.kwargs.lam: a number in [0, 1) or 'uniform', got {lam!r}")
            self.lam: float | None = None
        else:
            self.lam = _number("lam", lam, 0.0, _LAMBDA_MAX)
        self.mse_weight = _number("mse_weight", mse_weight, 0.0, math.inf)
        if fit not in N.FITS:
            raise IRSTDError(f"strategy.kwargs.fit: {fit!r}; use {' or '.join(N.FITS)}")
        self.fit = fit
        self.sigma_max = N.SIGMA_MAX if sigma_max is None else _number("sigma_max", sigma_max, 1e-9, 1.0)
        self.mu_min = N.MU_MIN if mu_min is None else _number("mu_min", mu_min, -1.0, 1.0)
        window = N.WINDOW_DIVISORS if window is None else window
        if isinstance(window, (str, int)) or len(window) != 2:
            raise IRSTDError(f"strategy.kwargs.window: [a, b] for windows of h/a x w/b, got {window!r}")
        self.window = (_number("window", window[0], 1, 1e4, True), _number("window", window[1], 1, 1e4, True))
        self.library_size = N.LIBRARY_SIZE if library_size is None else _number("library_size", library_size, 1, 1e7, True)
        self.library = None
        self.paths, self.full_scale = [], None
        if self.noise == "real":
            # Frames read and checked now, before the trainer makes the run directory: a bad folder
            # leaves nothing behind. The library itself is built in setup (it needs the run seed).
            from irstd.domain.frames import domain_frames, frames_full_scale

            dy, dx = self.window

            def check(path, image):
                h, w = image.shape
                if h < 2 * dy or w < 2 * dx:
                    raise IRSTDError(f"{path}: frame of {w}x{h} pixels (WxH) is smaller than two-pixel noise windows "
                                     f"(h/{dy} x w/{dx}) allow, at least {2 * dx}x{2 * dy} px")

            self.paths = domain_frames(self.target)
            self.full_scale = frames_full_scale(self.paths, check)

    def setup(self, model, ctx) -> None:
        self.in_chans = int(getattr(getattr(ctx.config, "model", None), "in_chans", 1) or 1)
        if self.noise != "real":
            return
        from irstd.domain.noise import build_noise_library

        self.library = build_noise_library(self.paths, self.full_scale, self.window, self.sigma_max,
                                           self.mu_min, self.library_size, ctx.seed)

    # ------------------------------------------------------------------------------- noise

    def noise_fields(self, raw: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The noise ``N`` added to each raw crop before the ``r`` factor: a fitted library window
        (``real``) or ``C(X) - X`` of the synthetic corruption; ``B x 1 x H x W`` float32."""
        b, _, h, w = raw.shape
        if self.noise == "real":
            from irstd.domain.noise import fit_noise

            pick = torch.randint(len(self.library), (b,), generator=gen).tolist()
            flips = (torch.rand(b, 2, generator=gen) < 0.5).tolist()
            fields = []
            for k, (fx, fy) in zip(pick, flips):
                win = self.library.windows[k]
                win = win[:, ::-1] if fx else win
                win = win[::-1, :] if fy else win
                fields.append(fit_noise(np.ascontiguousarray(win), (h, w), self.fit))
            return torch.from_numpy(np.stack(fields)[:, None]).to(raw.device)
        from irstd.corruptions import apply_batch

        noise_gen = torch.Generator(device=raw.device)
        noise_gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        name = SYNTHETIC_NOISES[self.noise]
        corrupted = apply_batch(raw.float(), [name] * b, [self.severity] * b, noise_gen, levels=3)
        return corrupted - raw.float()

    def noisy_input(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(standardised X_noise, the noise added)`` for the batch (module docstring)."""
        from irstd.strategies.policy import standardize_corrupted

        missing = [k for k in ("raw", "raw_mean", "raw_std") if batch.get(k) is None]
        if missing:
            raise IRSTDError(f"strategy rnil: the batch has no {' / '.join(map(repr, missing))} entry; the trainer "
                             "adds them for strategies with needs_raw = True")
        raw = batch["raw"].float()
        b = raw.shape[0]
        if self.lam is None:
            lam = torch.rand(b, generator=gen).clamp_(max=_LAMBDA_MAX)
        else:
            lam = torch.full((b,), float(self.lam))
        r = (lam / (1.0 - lam)).to(raw.device).view(b, 1, 1, 1)
        added = r * self.noise_fields(raw, gen)
        x_noise = standardize_corrupted(raw + added, raw, batch["raw_mean"], batch["raw_std"])
        return x_noise.to(batch["image"].dtype), added

    # ------------------------------------------------------------------------------- iteration

    def losses(self, model, batch: dict, loss_fn, ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(supervised loss of the clean branch, consistency MSE, added noise)``, with graphs."""
        from irstd.engine.evaluator import model_input

        x, y = batch["image"], batch["mask"]
        n = x.shape[0]
        x_noise, added = self.noisy_input(batch, stream_generator(ctx, _NOISE_STREAM))
        with ctx.autocast():
            out = model(model_input(torch.cat([x, x_noise]), self.in_chans))
        clean, noisy = _split(out, n)
        sup = loss_fn(clean, y)
        cons = F.mse_loss(torch.sigmoid(_final(clean).float()), torch.sigmoid(_final(noisy).float()))
        return sup, cons, added

    def training_step(self, model, batch, loss_fn, ctx):
        sup, cons, added = self.losses(model, batch, loss_fn, ctx)
        ctx.logs["loss_sup"] = float(sup.detach())
        ctx.logs["loss_consistency"] = float(cons.detach())
        ctx.logs["noise_std"] = float(added.flatten(1).std(dim=1).mean())
        return {"loss": sup + self.mse_weight * cons}


@register_strategy("wcs_rnil")
class WCSRNIL(Strategy):
    """WCS and RNIL together (paper 000's full method): batches mixed with WCS samples
    (:class:`irstd.strategies.wcs.WCSSampler`), then trained with RNIL's two branches.

    Args (``strategy.kwargs``):
        target: the target-domain frame folder, for both parts unless they name their own.
        wcs: kwargs of the ``wcs`` strategy.
        rnil: kwargs of the ``rnil`` strategy.
    """

    needs_raw = True
    log_keys = WCS.log_keys + RNIL.log_keys

    def __init__(self, target: str | None = None, wcs: dict | None = None, rnil: dict | None = None):
        for name, part in (("wcs", wcs), ("rnil", rnil)):
            if part is not None and not isinstance(part, dict):
                raise IRSTDError(f"strategy.kwargs.{name}: expected a mapping of that strategy's kwargs, got {part!r}")
        wcs, rnil = dict(wcs or {}), dict(rnil or {})
        if target is not None:
            wcs.setdefault("target", target)
            rnil.setdefault("target", target)
        try:
            self.sampler = WCSSampler(**wcs)
            self.rnil = RNIL(**rnil)
        except TypeError as exc:
            raise IRSTDError(f"strategy wcs_rnil: bad strategy.kwargs ({exc})") from None

    def setup(self, model, ctx) -> None:
        self.sampler.setup(model, ctx)
        self.rnil.setup(model, ctx)

    def training_step(self, model, batch, loss_fn, ctx):
        batch, replaced = self.sampler.mix(batch, ctx)
        self.sampler.log(ctx, replaced, batch["image"].shape[0])
        return self.rnil.training_step(model, batch, loss_fn, ctx)

    def on_epoch_end(self, epoch, ctx) -> None:
        self.sampler.on_epoch_end(epoch, ctx)

    def state_dict(self) -> dict:
        return {"wcs": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["wcs"])
