"""Diffusion training (paper 001, IRSTD-Diff): eq. 16's noise MSE plus lambda times the CE's BCE.

Per iteration the model draws one timestep ``t`` uniform in 0 .. T-1 per image and Gaussian noise,
noises the mask (``x_0`` in [-1, 1]) to ``x_t`` in closed form, and returns
``MSE(eps_hat(x_t, I, I', t), eps) + lambda * BCE(CE(I), mask)``
(:meth:`irstd.models.irstd_diff.IRSTDDiff.training_loss`, called as ``model(image, mask, ...)`` so
that DDP sees the forward). The draws come from ``ctx.generator()``, seeded by seed, global step
and rank, so a resumed run repeats them exactly. The two terms are logged as ``mse`` and ``bce``.

The config's ``loss`` section is not used: the loss is the diffusion model's own. Validation and
the final test sample masks with the model's configured sampler (``model.kwargs.sampler``,
``steps``; DDIM with 10 steps by default).
"""

from __future__ import annotations

from irstd.engine.checkpoint import unwrap
from irstd.errors import IRSTDError
from irstd.models.irstd_diff import DEFAULT_BCE_WEIGHT
from irstd.strategies import Strategy, register_strategy


@register_strategy("diffusion")
class DiffusionTraining(Strategy):
    """Trains a generative model of the zoo (``irstd_diff``) through its own loss.

    Args:
        bce_weight: lambda of eq. 16, the weight of the conditional encoder's BCE (default 10, the
            public release's value; the paper gives none).
    """

    log_keys = ("mse", "bce")

    def __init__(self, bce_weight: float = DEFAULT_BCE_WEIGHT):
        if not float(bce_weight) >= 0.0:
            raise IRSTDError(f"strategy diffusion: bce_weight must be >= 0, got {bce_weight}")
        self.bce_weight = float(bce_weight)

    trains_generative = True

    def setup(self, model, ctx) -> None:
        self.check_model(model, ctx.config.model.name if ctx.config is not None else type(unwrap(model)).__name__)

    def training_step(self, model, batch, loss_fn, ctx):
        with ctx.autocast():
            out = model(batch["image"], batch["mask"], generator=ctx.generator(), bce_weight=self.bce_weight)
        for key in self.log_keys:
            if key in out:
                ctx.logs[key] = float(out[key].detach())
        return {"loss": out["loss"]}
