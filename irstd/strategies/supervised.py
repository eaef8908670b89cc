"""Plain supervised training: forward the batch, apply the configured loss."""

from __future__ import annotations

from irstd.strategies import Strategy, register_strategy


@register_strategy("supervised")
class Supervised(Strategy):
    """``loss = loss_fn(model(image), mask)``; deep-supervised outputs are weighted by the loss."""

    def training_step(self, model, batch, loss_fn, ctx):
        with ctx.autocast():
            out = model(batch["image"])
        return {"loss": loss_fn(out, batch["mask"])}
