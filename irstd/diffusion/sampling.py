"""The reverse process: from Gaussian noise to a mask, with any of the schedulers.

:func:`sample` is the one sampling loop; the network enters as ``denoise_fn(x_t, t, cond) -> eps``,
so the loop knows nothing of the architecture. Randomness comes only from the ``generator``
argument (the starting noise, and DDPM's per-step noise), so one seed gives one mask.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch

from irstd.diffusion.schedulers import check_steps

__all__ = ["sample", "mask_to_x0", "x0_to_probability", "x0_to_logits", "LOGIT_EPS"]

# Probabilities are kept in [eps, 1 - eps] before the logit, so that a sample at exactly +-1 gives a
# finite logit (+-9.21) and sigmoid(logit) gives the probability back.
LOGIT_EPS = 1e-4


def mask_to_x0(mask: torch.Tensor) -> torch.Tensor:
    """A mask in [0, 1] (target 1) as the diffusion's ``x_0`` in [-1, 1] (target +1, background -1)."""
    return mask * 2.0 - 1.0


def x0_to_probability(x0: torch.Tensor) -> torch.Tensor:
    """``(x_0 + 1) / 2`` clipped to [0, 1]: the target probability of a sampled (or averaged) ``x_0``."""
    return ((x0 + 1.0) * 0.5).clamp(0.0, 1.0)


def x0_to_logits(x0: torch.Tensor, eps: float = LOGIT_EPS) -> torch.Tensor:
    """Logits whose sigmoid is :func:`x0_to_probability` (kept in [eps, 1 - eps]).

    The toolkit's probability threshold 0.5 is then ``x_0 > 0``: the midpoint between the
    background (-1) and target (+1) values.
    """
    return torch.logit(x0_to_probability(x0).clamp(eps, 1.0 - eps))


@torch.no_grad()
def sample(
    denoise_fn: Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor],
    cond,
    shape: tuple[int, ...],
    scheduler,
    steps: int,
    generator: torch.Generator | None = None,
    *,
    eta: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw ``x_0`` by running ``scheduler`` for ``steps`` denoising steps from ``N(0, I)``.

    Args:
        denoise_fn: ``denoise_fn(x_t, t, cond)`` with ``x_t`` of ``shape`` and ``t`` a ``B`` long
            tensor of training timesteps (0 .. T-1) returns the predicted noise, same shape.
        cond: passed through to ``denoise_fn`` unchanged (the image and its encoding).
        shape: ``B x C x H x W`` of the sample.
        scheduler: from :func:`irstd.diffusion.create_scheduler`; its state is reset here.
        steps: denoiser evaluations, 1 .. T.
        generator: source of the starting noise and of DDPM's (and DDIM's with ``eta > 0``) step
            noise; a CPU generator gives the same draws on every device. ``None``: torch's global one.
        eta: DDIM's noise scale (0: deterministic); ignored by the other samplers.
        device: where the sample lives (default CPU).

    Returns:
        ``x_0`` in [-1, 1] (float32), ``shape``.
    """
    steps = check_steps(steps, scheduler.config.num_train_timesteps)
    device = torch.device(device) if device is not None else torch.device("cpu")
    with warnings.catch_warnings():
        # diffusers' DPM-Solver builds a NumPy array from a torch tensor, which NumPy 2 warns about
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword")
        scheduler.set_timesteps(steps, device=device)  # also resets DPM-Solver's history
    # Drawn on the generator's (CPU) device and moved: the same seed gives the same mask on a GPU.
    x = torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device)
    x = x * scheduler.init_noise_sigma
    # DDIM: the noise re-derived from the clipped x_0 estimate (use_clipped_model_output), as guided
    # diffusion (the release's code base) does. With diffusers' default, the raw noise prediction
    # and the clipped x_0 disagree and the deterministic path drifts off the data (module docstring
    # of irstd.diffusion.schedulers).
    is_ddim = type(scheduler).__name__ == "DDIMScheduler"
    step_kwargs = {"eta": float(eta), "use_clipped_model_output": True} if is_ddim else {}
    for t in scheduler.timesteps:
        t_batch = torch.full((shape[0],), int(t), dtype=torch.long, device=device)
        eps = denoise_fn(scheduler.scale_model_input(x, t), t_batch, cond)
        x = scheduler.step(eps, t, x, generator=generator, **step_kwargs).prev_sample
    # DPM-Solver does not clip its x_0 estimates; the last step of every sampler is x_0 itself.
    return x.float().clamp_(-1.0, 1.0)
