"""IRSTD-Diff: conditional diffusion over the target mask (paper 001).

Paper: H. Li, J. Yang, Y. Xu, R. Wang, "Mitigate Target-Level Insensitivity of Infrared Small Target
Detection via Posterior Distribution Modeling", IEEE JSTARS 17, 2024.

The mask is generated, not classified pixel by pixel: a denoising U-Net (the noise estimation
network NE, :class:`~irstd.models.diffusion_unet.DiffusionUNet`) learns ``eps(x_t, I, I', t)``, the
noise in a noisy mask ``x_t`` given the image ``I`` and the latent ``I'`` of the conditional encoder
(CE, :class:`~irstd.models.irstd_diff_ce.ConditionalEncoder`, with LIW on its half-resolution skip);
a sampler (:mod:`irstd.diffusion`) turns noise into a mask.

* Equation 15: ``I'`` (Decoder2 of the CE) is **added** into the NE's encoder at half resolution, a
  plain sum when the widths agree (paper size); it is part of the graph, so the noise loss trains
  the CE too (the release detached it, at a depth its default configuration never reached).
* Equation 16 (training, :meth:`IRSTDDiff.training_loss`): ``L = MSE(eps, eps_hat) + lambda * BCE``,
  ``t`` uniform in 0 .. T-1, ``BCE`` the mean over the CE's fused output ``P`` and its six side
  outputs (U2-Net's deep supervision); ``lambda = 10`` by default (:data:`DEFAULT_BCE_WEIGHT`,
  the value of the public release: the paper names lambda but gives no value).
* ``x_0`` is the mask in [-1, 1]; ``T = 100`` training timesteps, linear betas, epsilon prediction
  (:mod:`irstd.diffusion.schedulers`).
* The final mask (eval forward and :meth:`IRSTDDiff.sample`): the mean ``x_0`` of ``ensemble``
  samples (Table VIII; default 1) as probability ``(x_0 + 1) / 2``, returned as logits, so the
  toolkit's threshold 0.5 is ``x_0 > 0``. The CE's own output is not fused into it: the mask is the
  diffusion's sample (one documented rule where the release mixed both at inconsistent thresholds).
* Sampling is seeded: the eval forward draws from a generator seeded with ``seed`` (default 0) on
  every call, so one seed gives one mask and the forward is deterministic (DDPM included).
  Defaults: ``sampler="ddim"`` (eta 0), ``steps=10``; any of ``ddpm`` / ``ddim`` / ``dpm_solver``
  with 1 .. T steps (:meth:`configure_sampling`, ``irstd predict --sampler --steps``).
* The CE runs once per image, the NE once per step (its input ``I'`` does not depend on ``t``).

Configurations (``size``; any entry can be overridden by its keyword)::

    size   base  channel_mult        res  attention  heads  groups  CE width  params  GFLOPs at 256 px
    paper   64   (1, 1, 2, 2, 4, 4)   2   ds 16       4      32      1.0      36.3 M  CE 32.1, NE 124.4 / step
    cpu     16   (1, 1, 2, 4)         1   ds 8        4       8      0.5       2.4 M  CE  8.1, NE   7.1 / step

(``paper``: Tables I and II; ``cpu``: trains in about two hours on two CPU cores at 128 px crops.
FLOPs as counted by ``irstd profile``, a multiply-add counting 2.)

Ablation (Table IX): ``ne`` (noise estimation network), ``ce`` (conditional encoder) and
``liw_levels`` (0: no LIW). ``ne=False`` is the CE alone, a discriminative detector whose eval
forward returns the CE's logits; ``ce=False`` is a plain conditional DDPM on the image.

Train mode: the networks are trained through :meth:`training_loss`, reached as ``model(image, mask,
generator=...)`` (``strategy.name: diffusion``); ``model(image)`` in train mode is an error, since no
logit output is what training optimises. Stride 32 (the CE; the NE alone: ``2 ** (len(channel_mult) - 1)``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from irstd.diffusion import (
    SamplingError,
    add_noise,
    beta_range,
    check_steps,
    create_scheduler,
    mask_to_x0,
    sampler_name,
    x0_to_logits,
)
from irstd.diffusion import sample as run_sampler
from irstd.errors import IRSTDError
from irstd.models import InputSizeError, register_model
from irstd.models.diffusion_unet import DiffusionUNet
from irstd.models.irstd_diff_ce import ConditionalEncoder

__all__ = ["IRSTDDiff", "PRESETS", "DEFAULT_BCE_WEIGHT", "irstd_diff"]

# lambda of eq. 16 (the release's value; see the module docstring)
DEFAULT_BCE_WEIGHT = 10.0

PRESETS: dict[str, dict] = {
    # Table I (NE) and Table II (CE)
    "paper": dict(base_channels=64, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attention_ds=(16,),
                  num_heads=4, max_groups=32, ce_width=1.0),
    # about 2 hours of training on 2 CPU cores at 128 px crops (README: generative detection)
    "cpu": dict(base_channels=16, channel_mult=(1, 1, 2, 4), num_res_blocks=1, attention_ds=(8,),
                num_heads=4, max_groups=8, ce_width=0.5),
}


def _ensemble_size(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SamplingError(f"the ensemble size must be an integer >= 1, got {k}")
    return k


class IRSTDDiff(nn.Module):
    """IRSTD-Diff; see the module docstring.

    Args:
        in_chans: image channels.
        size: ``"cpu"`` or ``"paper"`` (:data:`PRESETS`); the keywords below override its entries.
        ne, ce: with the noise estimation network / the conditional encoder (Table IX).
        liw_levels: LIW's wavelet levels ``k`` on the CE (0: no LIW; paper default 2, Table V).
        base_channels, channel_mult, num_res_blocks, attention_ds, num_heads, max_groups: the NE
            (:class:`~irstd.models.diffusion_unet.DiffusionUNet`).
        ce_width: factor on the CE's Table II widths.
        dropout: NE dropout.
        train_timesteps: ``T``.
        beta_start, beta_end, scale_betas: the linear schedule (:func:`irstd.diffusion.beta_range`).
        sampler, steps, ensemble, seed, eta: sampling defaults of the eval forward
            (:meth:`configure_sampling`).
    """

    generative = True
    deep_supervision = False
    # Channels-last float32 on CPU moves this network's gradients 20x further from the float64 ones
    # than the default layout does (GroupNorm; tests/test_models.py), so training keeps the default.
    train_channels_last = False

    def __init__(
        self,
        in_chans: int = 1,
        size: str = "cpu",
        *,
        ne: bool = True,
        ce: bool = True,
        liw_levels: int = 2,
        base_channels: int | None = None,
        channel_mult: tuple[int, ...] | None = None,
        num_res_blocks: int | None = None,
        attention_ds: tuple[int, ...] | None = None,
        num_heads: int | None = None,
        max_groups: int | None = None,
        ce_width: float | None = None,
        dropout: float = 0.0,
        train_timesteps: int = 100,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        scale_betas: bool = True,
        sampler: str = "ddim",
        steps: int = 10,
        ensemble: int = 1,
        seed: int = 0,
        eta: float = 0.0,
    ):
        super().__init__()
        if size not in PRESETS:
            raise ValueError(f"size must be one of {sorted(PRESETS)}, got {size!r}")
        if not (ne or ce):
            raise ValueError("IRSTD-Diff needs the noise estimation network (ne) or the conditional encoder (ce)")
        if liw_levels and not ce:
            raise ValueError("LIW acts on the conditional encoder: liw_levels needs ce=True")
        given = dict(base_channels=base_channels, channel_mult=channel_mult, num_res_blocks=num_res_blocks,
                     attention_ds=attention_ds, num_heads=num_heads, max_groups=max_groups, ce_width=ce_width)
        cfg = {**PRESETS[size], **{k: v for k, v in given.items() if v is not None}}
        self.size = size
        self.train_timesteps = int(train_timesteps)
        self.schedule = dict(num_train_timesteps=self.train_timesteps, beta_start=float(beta_start),
                             beta_end=float(beta_end), scale_betas=bool(scale_betas))
        beta_range(**self.schedule)  # a bad schedule fails here, not at the first sample
        self.ce = ConditionalEncoder(in_chans, width=float(cfg["ce_width"]), liw_levels=int(liw_levels)) if ce else None
        self.denoiser = None
        if ne:
            self.denoiser = DiffusionUNet(
                in_chans,
                base_channels=int(cfg["base_channels"]),
                channel_mult=tuple(cfg["channel_mult"]),
                num_res_blocks=int(cfg["num_res_blocks"]),
                attention_ds=tuple(cfg["attention_ds"]),
                num_heads=int(cfg["num_heads"]),
                max_groups=int(cfg["max_groups"]),
                dropout=float(dropout),
                cond_chans=self.ce.latent_chans if ce else None,
                cond_ds=2,
                time_scale=1000.0 / self.train_timesteps,
            )
        self.stride = max(m.stride for m in (self.ce, self.denoiser) if m is not None)
        self.sampler, self.steps, self.ensemble, self.seed, self.eta = "ddim", 10, 1, 0, 0.0
        self.configure_sampling(sampler=sampler, steps=steps, ensemble=ensemble, seed=seed, eta=eta)

    # ----------------------------------------------------------------------------- sampling set-up

    def configure_sampling(self, sampler=None, steps=None, ensemble=None, seed=None, eta=None) -> dict:
        """Set the eval forward's sampling (arguments left ``None`` keep their value); returns them.

        Args:
            sampler: ``"ddpm"``, ``"ddim"`` or ``"dpm_solver"``.
            steps: denoiser evaluations per sample, 1 .. T.
            ensemble: samples averaged per image (>= 1; Table VIII).
            seed: seed of the generator each forward starts from.
            eta: DDIM's noise scale in [0, 1] (0: deterministic DDIM).

        Raises:
            SamplingError: a value out of range (an IRSTDError and a ValueError).
        """
        name = self.sampler if sampler is None else sampler_name(sampler)
        n = self.steps if steps is None else check_steps(steps, self.train_timesteps)
        k = self.ensemble if ensemble is None else _ensemble_size(ensemble)
        s = self.seed if seed is None else seed
        if isinstance(s, bool) or not isinstance(s, int):
            raise SamplingError(f"the sampling seed must be an integer, got {seed}")
        e = self.eta if eta is None else float(eta)
        if not 0.0 <= e <= 1.0:
            raise SamplingError(f"DDIM's eta must be in [0, 1], got {eta}")
        self.sampler, self.steps, self.ensemble, self.seed, self.eta = name, n, k, int(s), e
        return self.sampling

    @property
    def sampling(self) -> dict:
        """The eval forward's sampling settings."""
        return dict(sampler=self.sampler, steps=self.steps, ensemble=self.ensemble, seed=self.seed, eta=self.eta)

    def scheduler(self, sampler: str | None = None):
        """A fresh diffusers scheduler ``sampler`` (default: the configured one) on this model's schedule."""
        return create_scheduler(sampler or self.sampler, **self.schedule)

    # ----------------------------------------------------------------------------- networks

    def condition(self, image: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The CE's ``(logits P, latent I')`` for ``image``, or ``(None, None)`` without a CE."""
        if self.ce is None:
            return None, None
        fused, _, latent = self.ce.features(image)
        return fused, latent

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, image: torch.Tensor, latent: torch.Tensor | None) -> torch.Tensor:
        """One NE evaluation: the predicted noise of ``x_t`` (``B x 1 x H x W``) at timesteps ``t``."""
        return self.denoiser(x_t, t, image, latent)

    def _check_size(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise InputSizeError(
                f"irstd_diff: input of {h}x{w} pixels (H x W), but both sides must be multiples of the model's "
                f"stride {self.stride}; pad first (x, size = irstd.data.transforms.pad_to_stride(x, {self.stride})) "
                "and crop the output back to size"
            )

    @torch.no_grad()
    def sample(
        self,
        x: torch.Tensor,
        sampler: str | None = None,
        steps: int | None = None,
        ensemble: int | None = None,
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
        eta: float | None = None,
    ) -> torch.Tensor:
        """Generated masks ``x_0`` in [-1, 1] (``B x 1 x H x W``, the mean over the ensemble) for images ``x``.

        Arguments left ``None`` take the configured values (:attr:`sampling`). ``generator`` (a CPU
        generator) overrides ``seed``; the ``ensemble`` samples are drawn one after the other from
        it. Put the model in eval mode first (the CE's batch norms).

        Raises:
            SamplingError: bad sampler, steps, ensemble.
            InputSizeError: sides not multiples of :attr:`stride`.
        """
        if self.denoiser is None:
            raise IRSTDError("irstd_diff with ne=False is the conditional encoder alone: it has nothing to sample")
        self._check_size(x)
        name = self.sampler if sampler is None else sampler_name(sampler)
        n = self.steps if steps is None else check_steps(steps, self.train_timesteps)
        k = self.ensemble if ensemble is None else _ensemble_size(ensemble)
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed if seed is None else int(seed))
        scheduler = self.scheduler(name)
        _, latent = self.condition(x)
        shape = (x.shape[0], 1, x.shape[2], x.shape[3])

        def denoise_fn(x_t, t, image):
            return self.denoiser(x_t, t, image, latent)

        total = None
        for _ in range(k):
            x0 = run_sampler(denoise_fn, x, shape, scheduler, n, generator,
                             eta=self.eta if eta is None else float(eta), device=x.device)
            total = x0 if total is None else total + x0
        return total / k

    @property
    def can_sample(self) -> bool:
        """Whether the model has a noise estimation network (``ne=True``) to sample with."""
        return self.denoiser is not None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, **loss_kwargs):
        """Eval: logits ``B x 1 x H x W`` of the sampled mask (of the CE with ``ne=False``).

        With ``mask``: :meth:`training_loss` ``(x, mask, **loss_kwargs)`` instead, in either mode. The
        diffusion strategy trains through this call rather than through ``training_loss`` directly,
        so that a DistributedDataParallel wrapper sees the forward and averages the gradients.
        """
        if mask is not None:
            return self.training_loss(x, mask, **loss_kwargs)
        if self.training:
            raise IRSTDError(
                "irstd_diff is trained through its loss (strategy.name: diffusion calls model(image, mask)), "
                "not through a logit output; put it in eval mode to sample masks"
            )
        if self.denoiser is None:
            return self.condition(x)[0]
        return x0_to_logits(self.sample(x))

    # ----------------------------------------------------------------------------- training

    def training_loss(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        bce_weight: float = DEFAULT_BCE_WEIGHT,
    ) -> dict:
        """Eq. 16 for one batch: ``{"loss", "mse", "bce"}`` (scalars; a term is absent without its network).

        Args:
            image: ``B x in_chans x H x W`` normalised images.
            mask: ``B x 1 x H x W`` masks in [0, 1].
            generator: CPU generator of ``t`` (uniform in 0 .. T-1, one per image) and of the noise;
                ``None``: torch's global one.
            bce_weight: lambda.
        """
        out: dict = {}
        loss = image.new_zeros(())
        latent = None
        if self.ce is not None:
            fused, sides, latent = self.ce.features(image)
            bce = torch.stack([F.binary_cross_entropy_with_logits(o, mask) for o in [fused, *sides]]).mean()
            out["bce"] = bce
            loss = loss + float(bce_weight) * bce
        if self.denoiser is not None:
            b = image.shape[0]
            t = torch.randint(0, self.train_timesteps, (b,), generator=generator).to(image.device)
            noise = torch.randn(mask.shape, generator=generator, dtype=torch.float32).to(image.device, image.dtype)
            x_t = add_noise(self.scheduler("ddpm"), mask_to_x0(mask.to(image.dtype)), noise, t).to(image.dtype)
            mse = F.mse_loss(self.denoiser(x_t, t, image, latent), noise)
            out["mse"] = mse
            loss = loss + mse
        out["loss"] = loss
        return out


@register_model(
    "irstd_diff",
    reference="Li, Yang, Xu, Wang, Mitigate Target-Level Insensitivity of Infrared Small Target Detection via "
    "Posterior Distribution Modeling (IRSTD-Diff), IEEE JSTARS 2024; default size='cpu' (size='paper': Tables I, II); "
    "no published count (the release's network differs from the paper)",
)
def irstd_diff(in_chans: int = 1, **kwargs) -> IRSTDDiff:
    """IRSTD-Diff (CPU size by default); kwargs go to :class:`IRSTDDiff`."""
    return IRSTDDiff(in_chans=in_chans, **kwargs)
