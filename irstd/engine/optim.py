"""Optimisers and learning-rate schedules with linear warm-up, stepped once per iteration.

The schedule is one pure function, :func:`lr_at`, of the iteration index; :class:`LRScheduler`
only writes its value into the optimiser's parameter groups. Because the value depends on the
iteration index alone (nothing accumulates), resuming from a checkpoint or changing the number of
data-loader workers cannot bend the curve, and warm-up and the main schedule cannot double-step at
the hand-over (the usual bug of chaining a warm-up scheduler stepped per epoch with a
scheduler stepped per iteration, or of re-starting the cosine at the end of the warm-up).

Curve, for iteration ``i`` in ``[0, T)`` with ``W`` warm-up iterations:

* warm-up, ``i < W``: ``lr = base * (i + 1) / W`` (the first update uses ``base / W``, never 0; the
  last warm-up iteration uses ``base``);
* then with progress ``t = (i - W) / (T - W - 1)`` (0 at the first iteration after warm-up, 1 at the
  last iteration of training):

  - ``cosine``: ``min + (base - min) * (1 + cos(pi t)) / 2`` (reaches ``min`` at the last iteration);
  - ``poly``: ``min + (base - min) * (1 - t') ** power`` with ``t' = (i - W) / (T - W)`` (ends just
    above ``min``, as the common poly schedule);
  - ``multistep``: ``base * gamma ** k``, ``k`` = number of milestones ``m`` (iterations) with
    ``i >= m``;
  - ``constant``: ``base``.

With several parameter groups every group's rate is its own initial rate times the same factor.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn as nn

from irstd.registry import Registry

__all__ = ["lr_at", "LRScheduler", "build_optimizer", "build_scheduler", "param_groups", "OPTIMIZERS", "SCHEDULES"]

# Schedules after warm-up by name, for ``schedule.name``. Each maps ``(step, warmup_steps, span,
# base_lr, min_lr, milestones, gamma, power)`` to the rate, ``span`` = iterations after warm-up.
SCHEDULES = Registry("schedule")


@SCHEDULES.register("constant")
def _constant(step, warmup, span, base, min_lr, milestones, gamma, power):
    return base


@SCHEDULES.register("multistep")
def _multistep(step, warmup, span, base, min_lr, milestones, gamma, power):
    return base * gamma ** sum(1 for m in milestones if step >= m)


@SCHEDULES.register("cosine")
def _cosine(step, warmup, span, base, min_lr, milestones, gamma, power):
    t = (step - warmup) / max(span - 1, 1)
    return min_lr + (base - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


@SCHEDULES.register("poly")
def _poly(step, warmup, span, base, min_lr, milestones, gamma, power):
    return min_lr + (base - min_lr) * (1.0 - (step - warmup) / span) ** power


# Optimisers by name, for ``optim.name``: ``(params, OptimConfig) -> torch.optim.Optimizer``.
OPTIMIZERS = Registry("optimiser")
OPTIMIZERS.register(
    "adam", lambda ps, c: torch.optim.Adam(ps, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay)
)
OPTIMIZERS.register(
    "adamw", lambda ps, c: torch.optim.AdamW(ps, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay)
)
OPTIMIZERS.register(
    "sgd",
    lambda ps, c: torch.optim.SGD(ps, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay),
)
OPTIMIZERS.register("adagrad", lambda ps, c: torch.optim.Adagrad(ps, lr=c.lr, weight_decay=c.weight_decay))


def lr_at(
    step: int,
    base_lr: float,
    total_steps: int,
    name: str = "cosine",
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    power: float = 0.9,
) -> float:
    """Learning rate of iteration ``step`` (0-based) of ``total_steps``; see the module docstring.

    Args:
        step: iteration index, clamped to ``[0, total_steps - 1]``.
        base_lr: peak learning rate (> 0).
        total_steps: iterations of the whole run (>= 1).
        name: ``cosine``, ``poly``, ``multistep`` or ``constant``.
        warmup_steps: iterations of linear warm-up (0 = none; must be < total_steps).
        min_lr: final rate of ``cosine`` and floor of ``poly``.
        milestones: for ``multistep``, iteration indices where the rate is multiplied by ``gamma``.
        gamma: multistep decay factor.
        power: poly exponent.
    """
    total_steps = max(int(total_steps), 1)
    step = min(max(int(step), 0), total_steps - 1)
    warmup_steps = max(int(warmup_steps), 0)
    if warmup_steps >= total_steps:
        raise ValueError(f"warm-up ({warmup_steps} iterations) must be shorter than training ({total_steps})")
    curve = SCHEDULES.get(name)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    return curve(step, warmup_steps, total_steps - warmup_steps, base_lr, min_lr, milestones, gamma, power)


class LRScheduler:
    """Sets the optimiser's learning rates from :func:`lr_at` each iteration.

    The rate for iteration 0 is set at construction; call :meth:`step` after every optimiser step.
    ``state_dict`` holds only the iteration counter (the curve is a pure function of it).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        name: str = "cosine",
        warmup_steps: int = 0,
        min_lr: float = 0.0,
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        power: float = 0.9,
    ):
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.name = name
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.power = float(power)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lr = max(g["initial_lr"] for g in optimizer.param_groups)
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        """Rate of iteration ``step`` relative to the peak rate."""
        return (
            lr_at(
                step,
                self.base_lr,
                self.total_steps,
                self.name,
                self.warmup_steps,
                self.min_lr,
                self.milestones,
                self.gamma,
                self.power,
            )
            / self.base_lr
        )

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f

    def step(self) -> None:
        """Advance to the next iteration."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self._apply()


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = True) -> list[dict]:
    """Parameter groups; with ``decay_norm_and_bias=False`` 1-D parameters (norm weights, biases)
    get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(params: Iterable | nn.Module, cfg) -> torch.optim.Optimizer:
    """Optimiser from an :class:`irstd.config.OptimConfig`, by name from :data:`OPTIMIZERS`.

    ``params`` is a module (groups made by :func:`param_groups`) or an iterable of parameters/groups.
    """
    if isinstance(params, nn.Module):
        params = param_groups(params, cfg.weight_decay, cfg.decay_norm_and_bias)
    return OPTIMIZERS.get(cfg.name)(params, cfg)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int, epochs: int) -> LRScheduler:
    """:class:`LRScheduler` from an :class:`irstd.config.ScheduleConfig`; epochs convert to iterations
    (warm-up and milestones may be fractional epochs)."""
    total = steps_per_epoch * epochs
    return LRScheduler(
        optimizer,
        total_steps=total,
        name=cfg.name,
        warmup_steps=int(round(cfg.warmup_epochs * steps_per_epoch)),
        min_lr=cfg.min_lr,
        milestones=[int(round(m * steps_per_epoch)) for m in cfg.milestones],
        gamma=cfg.gamma,
        power=cfg.power,
    )
