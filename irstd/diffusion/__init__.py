"""Diffusion over target masks (paper 001, IRSTD-Diff): noise schedule and samplers, apart from the networks.

As in diffusers, the schedule and the sampling loop know nothing about the denoiser; the networks
(:mod:`irstd.models.irstd_diff`) know nothing about the samplers beyond :func:`sample`.

* :func:`create_scheduler` -- a diffusers ``DDPMScheduler``, ``DDIMScheduler`` or
  ``DPMSolverMultistepScheduler`` (``"ddpm"``, ``"ddim"``, ``"dpm_solver"``) on the paper's schedule:
  linear betas, ``T = 100`` training timesteps, epsilon prediction (details in
  :mod:`irstd.diffusion.schedulers`).
* :func:`add_noise` -- the forward process ``q(x_t | x_0)`` in closed form, for training.
* :func:`sample` -- the seeded reverse process ``sample(denoise_fn, cond, shape, scheduler, steps,
  generator)``; DDIM with ``eta = 0`` and DPM-Solver++ are deterministic given the starting noise.

Masks as data
-------------
``x_0`` is the mask in [-1, 1]: background -1, target +1 (:func:`mask_to_x0`). A sample (or the
mean of an ensemble of samples) becomes the target probability ``(x_0 + 1) / 2`` and logits
(:func:`x0_to_logits`), so the toolkit's threshold 0.5 means ``x_0 > 0``.

The schedulers need ``pip install "irstd[diffusion]"`` (diffusers); without it they raise an
:class:`~irstd.errors.IRSTDError` saying so. Importing this package does not import diffusers.
"""

from irstd.diffusion.sampling import LOGIT_EPS, mask_to_x0, sample, x0_to_logits, x0_to_probability
from irstd.diffusion.schedulers import (
    SAMPLERS,
    SamplingError,
    add_noise,
    alphas_cumprod,
    beta_range,
    betas,
    check_steps,
    create_scheduler,
    require_diffusers,
    sampler_name,
)

__all__ = [
    "SAMPLERS",
    "SamplingError",
    "create_scheduler",
    "add_noise",
    "sample",
    "check_steps",
    "sampler_name",
    "require_diffusers",
    "beta_range",
    "betas",
    "alphas_cumprod",
    "mask_to_x0",
    "x0_to_probability",
    "x0_to_logits",
    "LOGIT_EPS",
]
