"""Training strategies: how one training iteration turns a batch into the detector's loss.

The trainer (:class:`irstd.engine.Trainer`) owns the detector, its optimiser, schedule, AMP scaler,
gradient clipping, DDP and checkpoints. A strategy plugs into its loop; per iteration the trainer

1. moves the batch to the device,
2. calls ``out = strategy.training_step(model, batch, loss_fn, ctx)``,
3. back-propagates ``out["loss"]`` and steps the detector's optimiser and schedule, setting
   ``ctx.step_skipped`` when AMP's GradScaler skipped the optimiser step (inf/NaN gradients),
4. calls ``strategy.after_step(model, batch, ctx)`` (e.g. to update a strategy network with the
   rewards recorded in step 2 against the updated detector; nothing should learn from a
   skipped step),

and at the end of every epoch ``strategy.on_epoch_end(epoch, ctx)``. Strategies may own extra
networks and optimisers (created in :meth:`Strategy.setup`); everything they need to resume must
come back from :meth:`Strategy.state_dict` (tensors and plain values only: it is saved with the
training state and reloaded with ``torch.load(weights_only=True)``). Randomness must come from
``ctx.generator()`` (seeded by seed, global step and rank) so a resumed run repeats it exactly.

Under DDP the detector arrives wrapped in DistributedDataParallel (its gradients are averaged by
the wrapper); networks a strategy owns are not, so average their gradients with
:func:`irstd.engine.distributed.average_gradients` before stepping their optimiser. Checkpoints
hold rank 0's :meth:`Strategy.state_dict`, loaded into every rank on resume, so keep strategy state
identical across ranks. Only rank 0 (``ctx.is_main``) may write files.

Register a strategy with ``@register_strategy("name")`` on a :class:`Strategy` subclass whose
constructor takes the config's ``strategy.kwargs``; select it with ``strategy.name`` in the config.

A strategy that corrupts inputs sets the class attribute ``needs_raw = True``: the training batch
then also carries ``batch["raw"]``, the same crop before per-image standardisation, divided by the
dataset's full scale (values in [0, 1]; the scale is recorded as ``data.full_scale`` in the run's
config.yaml), and ``batch["raw_mean"]``, ``batch["raw_std"]``, the whole images' statistics in the
same units, and ``batch["key"]``, the samples' ``[epoch, index]``. Corruptions must act on raw
intensities and be standardised afterwards, since standardisation would otherwise undo brightness
and contrast changes: additive noise can be mixed into the raw crop and standardised with
:func:`irstd.strategies.policy.standardize_corrupted` (RNIL); any other corruption goes through
``ctx.train_crops.recrop(key, fn)``, which changes the whole image and cuts the sample's crop from
it, as test time sees it (HRL).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from irstd.errors import IRSTDError
from irstd.registry import Registry

__all__ = [
    "Strategy",
    "StepContext",
    "register_strategy",
    "create_strategy",
    "list_strategies",
    "STRATEGIES",
]

# Modules that register strategies on import (one file per strategy).
_STRATEGY_MODULES = ["supervised", "hrl", "wcs", "rnil", "diffusion"]
# Strategy classes by name, for ``strategy.name``.
STRATEGIES = Registry("strategy", modules=[f"irstd.strategies.{m}" for m in _STRATEGY_MODULES])


@dataclass
class StepContext:
    """What a strategy may use besides the model, the batch and the loss.

    Attributes:
        device: the training device.
        seed: ``train.seed`` of the config.
        epoch: current epoch (0-based).
        step: global iteration index (0-based), counted over the whole run.
        step_in_epoch: iteration index inside the epoch.
        steps_per_epoch: iterations per epoch.
        rank, world_size: DDP position (0 of 1 without DDP).
        run_dir: the run directory (strategies write logs there on rank 0 only).
        amp: mixed precision active (CUDA only).
        config: the full :class:`irstd.config.Config`.
        logs: scalar values a strategy wants in the epoch log (``{name: float}``), averaged per epoch.
        step_skipped: set by the trainer before :meth:`Strategy.after_step`: the detector's
            optimiser step was skipped (AMP's GradScaler found inf/NaN gradients).
        train_data: the training samples as the trainer uses them (an :class:`irstd.data.IRSTDDataset`
            of the carved training ids, un-augmented, original size), for strategies that score
            them with the current model (WCS's hard-target selection); ``None`` outside the trainer.
        train_crops: the augmented training set (:class:`irstd.engine.loader.AugmentedDataset`) the
            batches come from; its ``recrop(batch["key"][i], fn)`` cuts sample i's crop from a changed
            whole image (HRL corrupts whole images, as test time does); ``None`` outside the trainer.
    """

    device: torch.device
    seed: int = 0
    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    steps_per_epoch: int = 1
    rank: int = 0
    world_size: int = 1
    run_dir: Path | None = None
    amp: bool = False
    config: Any = None
    logs: dict[str, float] = field(default_factory=dict)
    step_skipped: bool = False
    train_data: Any = None
    train_crops: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """Context manager for the forward pass: float16 autocast on CUDA when AMP is on."""
        if self.amp and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def generator(self, device: torch.device | str | None = None) -> torch.Generator:
        """A torch generator seeded by (seed, step, rank): same draws after a resume."""
        from irstd.engine.seed import step_generator

        return step_generator(self.seed, self.step, self.rank, device or "cpu")


class Strategy:
    """Base class; the default methods describe plain supervised training."""

    name = "base"
    # Keys of ``ctx.logs`` that get their own column in the run's log.csv (others go to TensorBoard).
    log_keys: tuple[str, ...] = ()
    # Strategies that train generative models (``generative = True`` on the network, irstd_diff).
    trains_generative = False

    def check_model(self, model: nn.Module, model_name: str) -> None:
        """Raise :class:`~irstd.errors.IRSTDError` when this strategy cannot train ``model``; the
        trainer calls it before the run directory exists, so a mismatch leaves nothing behind."""
        net = getattr(model, "module", model)  # a DDP wrapper's network
        if bool(getattr(net, "generative", False)) == self.trains_generative:
            return
        if self.trains_generative:
            raise IRSTDError(
                f"strategy {self.name} trains diffusion models (model.name: irstd_diff); {model_name} is a "
                "discriminative network: use strategy.name: supervised"
            )
        raise IRSTDError(
            f"{model_name} is a generative model trained through its own loss: use strategy.name: diffusion "
            f"(strategy {self.name} trains discriminative networks)"
        )

    def setup(self, model: nn.Module, ctx: StepContext) -> None:
        """Called once before training (and before a resume's :meth:`load_state_dict`): create
        extra networks and optimisers on ``ctx.device`` here."""

    def training_step(
        self, model: nn.Module, batch: dict, loss_fn: Callable[..., torch.Tensor], ctx: StepContext
    ) -> dict:
        """Forward and loss for one batch. Return ``{"loss": scalar tensor}`` (the trainer
        back-propagates it and steps the detector) plus optional extra entries."""
        raise NotImplementedError

    def after_step(self, model: nn.Module, batch: dict, ctx: StepContext) -> None:
        """Called after the detector's optimiser step."""

    def on_epoch_end(self, epoch: int, ctx: StepContext) -> None:
        """Called after every epoch (before validation and checkpointing)."""

    def state_dict(self) -> dict:
        """Everything needed to resume (tensors and plain values only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`."""


def register_strategy(name: str):
    """Class decorator registering a :class:`Strategy` subclass under a lower-case ``name``."""

    def deco(cls):
        cls.name = name.lower()
        return STRATEGIES.register(cls.name, cls)

    return deco


def list_strategies() -> list[str]:
    """Registered strategy names, sorted."""
    return STRATEGIES.names()


def create_strategy(name: str, **kwargs) -> Strategy:
    """Instantiate the strategy ``name`` with ``kwargs`` (the config's ``strategy.kwargs``)."""
    cls = STRATEGIES.get(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise IRSTDError(f"strategy {name!r}: bad strategy.kwargs ({exc})") from None
