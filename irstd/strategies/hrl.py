"""Bi-level adversarial training by hierarchical reinforced learning (HRL, paper 002 / BALISTD),
and the corruption-choice baselines of its Table 6, as the training strategy ``hrl``.

The bi-level problem (paper 002, Eqs. 1-2), detector N_D with weights w, strategy network N_S
with weights theta, clean crop x, mask y, loss L (the configured ``loss``, Soft-IoU in the paper)::

    min_w  L(N_D(x; w), y) + lambda * L(N_D(x_hat; w), y),   x_hat = corrupt(x, s),  s ~ p_theta(s | x)
    s.t.   theta* = argmax_theta  E_{s ~ p_theta(.|x)} [ L(N_D(corrupt(x, s); w), y) ]

An action ``s`` is one (corruption, severity) pair; by default paper 002's ten corruptions x three
severities (30 actions, :data:`irstd.corruptions.PAPER_002_CORRUPTIONS`). Per training iteration
(paper 002, Algorithm 1):

1. **Cooperated training of the detector** (:meth:`HRL.training_step`). For every image of the
   batch draw ``s_i ~ p_theta(. | x_i)`` (softmax of N_S's logits on the normalised clean crop),
   corrupt its *whole* raw image with :func:`irstd.corruptions.apply` at the dataset's full scale
   (exactly what ``irstd robustness`` does to a test image), standardise the whole corrupted image
   with its own statistics and cut the sample's crop from it with the sample's own crop, flips and
   transposition (:meth:`irstd.engine.loader.AugmentedDataset.recrop`, through ``batch["key"]`` and
   ``ctx.train_crops``). So x_hat is the crop of the input the detector gets at test time, and the
   clean x (the batch's ``image``) is standardised the same way. Corrupting only the crop cannot
   give that: contrast pulls towards the whole image's mean, and blur and clipping change the
   whole image's variance by an amount the crop does not reveal (an earlier version estimated it
   from the crop and, on crops that held more variance than their image, divided by a near-zero
   deviation: inputs of 1e5 that ruined BatchNorm's running statistics; IoU 0 in evaluation).
   The cost is one whole-image corruption per sample in the main process (at most ~30 ms for a
   640x512 frame, :mod:`benchmarks.bench_corruptions`). Clean and corrupted crops go
   through the detector as one batch ``[x; x_hat]`` (Algorithm 1, line 3; BatchNorm statistics
   cover both halves), and the trainer steps
   the detector (Adam 5e-4 in the paper) on ``L^D = L(x) + lambda L(x_hat)``, ``lambda = 1``.
2. **Reinforced learning of the strategy** (:meth:`HRL.after_step`, after the detector's step).
   Reward of image i: its own detector loss on the corrupted crop, ``r_i = L(N_D(x_hat_i), y_i)``
   (``reduction="none"``: per-image Soft-IoU, while the detector's loss pools the batch as
   configured). With ``reward="updated"`` (default) it is measured with the *updated*
   detector w^{t+1}, as Algorithm 1 orders the steps (the strategy step follows the detector step
   and Eq. 3 is evaluated "given theta and w"): one extra no-grad forward of x_hat in **eval
   mode**. The lower level of the bi-level problem (Eq. 2) scores the detector N_D(.; w) as a
   function of its weights; in eval mode BatchNorm uses the running statistics (which are part of
   w^{t+1}, and are neither updated nor depend on which other images share the batch) and dropout
   is off, so the reward is the loss the detector as deployed -- the one ``irstd robustness``
   scores -- has on x_hat, and the pass changes nothing in the detector. (A train-mode pass on the
   all-corrupted half would normalise with that half's batch statistics, neither the detector
   step's mixed batch nor test time, and would draw dropout masks.) ``reward="pre_update"`` reuses
   the losses of step 1 (w^t, train mode, the detector step's own forward; no extra forward).
   When the trainer reports that the optimiser step was skipped (``ctx.step_skipped``: AMP's
   GradScaler found inf/NaN gradients), the detector did not change and its gradients were not
   usable: the strategy then skips its update too (no policy step, no baseline or log update; the
   skip is counted in ``skipped_updates``). REINFORCE with a baseline (Eq. 6 plus the usual
   variance reduction) and an entropy bonus::

       J(theta)   = 1/N sum_i (r_i - b) log p_theta(s_i | x_i)  +  beta * 1/N sum_i H(p_theta(. | x_i))
       theta     <- theta + gamma_s * grad J                     (SGD on -J; gamma_s = 1e-4, paper)
       b         <- m * b + (1 - m) * mean_i r_i                  (after the update; b_0 = first batch mean)

   ``b`` is an exponential moving average of the batch-mean reward (``baseline_momentum`` m = 0.9,
   a horizon of ~10 iterations), used *before* it absorbs the current batch so the advantage of
   sample i does not contain r_i itself (except at the first step, where ``b`` is that batch's mean).
   Subtracting a baseline leaves the gradient's expectation unchanged (E[grad log p] = 0) and
   removes the common offset of the rewards, which would otherwise push every sampled action up.
   With ``normalize_advantage`` (off by default: not in the paper) the advantage is divided by
   ``sqrt(v)``, ``v = E_m[r^2] - b^2`` from the same moving averages: rewards that all sit near 1
   (a detector that still misses most targets) or near 0 then still give the policy a signal of
   unit scale, at the price of amplifying their noise.
   ``entropy_coef`` beta = 0.01 (a small pull towards spread: the policy's entropy is at most
   ln 30 = 3.4 while rewards, Soft-IoU losses, lie in [0, 1]) keeps the adversary from collapsing
   onto one corruption after a few lucky draws; 0 gives the paper's plain objective.

Fixed policies (paper 002, Table 6), same machinery without a strategy network or its update:
``policy="random"`` draws uniformly from every action; ``noise``, ``blur``, ``isp`` uniformly from
the actions of that corruption group (:data:`irstd.corruptions.PAPER_002_GROUPS`; ISP = brightness,
contrast, pixelate, JPEG). Their logged "reward" is the pre-update corrupted loss (nothing learns
from it, so no extra forward is spent on it).

Logs (rank 0): ``run_dir/policy.csv``, one row per ``log_every`` iterations (0: per epoch) with
``epoch``, ``step`` (iterations done), ``steps`` (iterations averaged in the row), the policy's
mean probability of every corruption (marginalised over severities), the mean reward, the
baseline after the row's last iteration, the mean entropy (nats), then every action's
probability (``p_<name>_s<severity>``); probabilities are averaged over the images of every
batch (all ranks) and the row's iterations.
``run_dir/policy.png`` plots the corruption probabilities (stacked) and the reward over training.
Both are rewritten whole at every epoch end from the history kept in the strategy state, so a
resumed run writes exactly what an uninterrupted one does. Epoch columns in ``log.csv``:
``loss_clean``, ``loss_corrupt``, ``reward``, ``baseline``, ``policy_entropy``.

Randomness (actions, corruption noise, motion-blur angles) comes from the step generator
(:meth:`StepContext.generator`); the strategy network is initialised from its own seed (derived
from ``train.seed``), so neither touches torch's global generator. Under DDP every rank draws for
its own images, rewards/probabilities are averaged over ranks for the baseline and the log, and the
strategy network's gradients are averaged (:func:`irstd.engine.distributed.average_gradients`), so
its weights, optimiser and baseline stay identical on all ranks.
"""

from __future__ import annotations

import csv
import io
import math
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from irstd.errors import IRSTDError
from irstd.strategies import Strategy, register_strategy
from irstd.strategies.policy import (
    FIXED_POLICIES,
    StrategyNetwork,
    action_space,
    group_mask,
    normalize_batch,
)

__all__ = ["HRL", "POLICIES", "REWARDS", "normalize_batch", "policy_table", "plot_policy"]

POLICIES = ("learned",) + FIXED_POLICIES
REWARDS = ("updated", "pre_update")
SIGNALS = ("loss", "gain")
# Leading columns of a history row; the per-action probabilities follow, then the trailing stats.
_HEAD = ("epoch", "step", "steps")
_TAIL = ("reward", "baseline", "entropy")
_INIT_STREAM = 0x48524C01  # keeps the strategy network's initialisation apart from other seeded streams


def _split(out, n: int):
    """Cut the detector's output(s) for ``[x; x_hat]`` into the clean and corrupted halves."""
    if isinstance(out, (list, tuple)):
        return [o[:n] for o in out], [o[n:] for o in out]
    return out[:n], out[n:]


def _positive(name: str, value, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise IRSTDError(f"strategy.kwargs.{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise IRSTDError(f"strategy.kwargs.{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


@register_strategy("hrl")
class HRL(Strategy):
    """Corruption-adversarial training; see the module docstring for the equations.

    Args (the config's ``strategy.kwargs``):
        policy: ``learned`` (HRL's strategy network), or a fixed baseline ``random`` | ``noise`` |
            ``blur`` | ``isp`` (paper 002, Table 6).
        corruptions: corruption names spanning the action space (default paper 002's ten).
        levels: severities per corruption (3: paper 002's scale; 5: ImageNet-C's).
        lam: weight lambda of the corrupted-sample loss (paper: 1).
        policy_lr, policy_momentum, policy_weight_decay: SGD of the strategy network (paper: lr 1e-4;
            momentum and decay unstated, 0 here).
        policy_width: channels of the strategy network's first conv block.
        policy_input_stride: the strategy network sees the crop average-pooled by this factor.
        baseline_momentum: m in [0, 1) of the reward baseline's moving average.
        entropy_coef: beta >= 0, weight of the entropy bonus.
        reward: ``updated`` (detector after its step, Algorithm 1) or ``pre_update``.
        normalize_advantage: divide advantages by the moving standard deviation of the rewards.
        signal: what the policy maximises per image: ``loss`` (default, paper 002: the detector's
            loss on x_hat) or ``gain`` (that loss minus the same detector's loss on the clean x,
            which removes each image's own difficulty from the reward's noise; the ``reward`` and
            ``baseline`` logs are then gains).
        policy_optimizer: ``sgd`` (paper 002) or ``adam`` for the strategy network.
        log_every: iterations per policy.csv row (0: one row per epoch).
        plot: write policy.png at every epoch end.
    """

    needs_raw = True
    log_keys = ("loss_clean", "loss_corrupt", "reward", "baseline", "policy_entropy")

    def __init__(
        self,
        policy: str = "learned",
        corruptions: Sequence[str] | None = None,
        levels: int = 3,
        lam: float = 1.0,
        policy_lr: float = 1e-4,
        policy_momentum: float = 0.0,
        policy_weight_decay: float = 0.0,
        policy_width: int = 8,
        policy_input_stride: int = 2,
        baseline_momentum: float = 0.9,
        entropy_coef: float = 0.01,
        reward: str = "updated",
        normalize_advantage: bool = False,
        signal: str = "loss",
        policy_optimizer: str = "sgd",
        log_every: int = 0,
        plot: bool = True,
    ):
        from irstd.corruptions import PAPER_002_CORRUPTIONS

        self.policy = str(policy).lower()
        if self.policy not in POLICIES:
            raise IRSTDError(f"strategy.kwargs.policy: unknown {policy!r}; use one of {', '.join(POLICIES)}")
        if corruptions is None:
            corruptions = PAPER_002_CORRUPTIONS
        if isinstance(corruptions, str) or not corruptions:
            raise IRSTDError("strategy.kwargs.corruptions: give a non-empty list of corruption names")
        if len(set(corruptions)) != len(corruptions):
            raise IRSTDError(f"strategy.kwargs.corruptions: repeated names in {list(corruptions)}")
        if isinstance(levels, bool) or levels not in (3, 5):
            raise IRSTDError(f"strategy.kwargs.levels: 3 (paper 002) or 5 (ImageNet-C), got {levels!r}")
        self.levels = int(levels)
        self.actions = action_space(list(corruptions), self.levels)  # validates names and levels
        self.names = list(corruptions)
        self.lam = _positive("lam", lam, allow_zero=True)
        self.policy_lr = _positive("policy_lr", policy_lr)
        self.policy_momentum = _positive("policy_momentum", policy_momentum, allow_zero=True)
        self.policy_weight_decay = _positive("policy_weight_decay", policy_weight_decay, allow_zero=True)
        self.policy_width = int(_positive("policy_width", policy_width))
        self.policy_input_stride = int(_positive("policy_input_stride", policy_input_stride))
        self.baseline_momentum = _positive("baseline_momentum", baseline_momentum, allow_zero=True)
        if self.baseline_momentum >= 1:
            raise IRSTDError(f"strategy.kwargs.baseline_momentum: must be < 1, got {baseline_momentum!r}")
        self.entropy_coef = _positive("entropy_coef", entropy_coef, allow_zero=True)
        self.reward = str(reward).lower()
        if self.reward not in REWARDS:
            raise IRSTDError(f"strategy.kwargs.reward: unknown {reward!r}; use {' or '.join(REWARDS)}")
        self.normalize_advantage = bool(normalize_advantage)
        self.signal = str(signal).lower()
        if self.signal not in SIGNALS:
            raise IRSTDError(f"strategy.kwargs.signal: unknown {signal!r}; use {' or '.join(SIGNALS)}")
        self.policy_optimizer = str(policy_optimizer).lower()
        if self.policy_optimizer not in ("sgd", "adam"):
            raise IRSTDError(f"strategy.kwargs.policy_optimizer: sgd or adam, got {policy_optimizer!r}")
        self.log_every = int(_positive("log_every", log_every, allow_zero=True))
        self.plot = bool(plot)
        # fixed policies: probability vector over the actions (checked now, for an early error)
        self.allowed = None if self.policy == "learned" else group_mask(self.actions, self.policy)
        self.net: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._reset_state()

    # ------------------------------------------------------------------------------- set-up

    def _reset_state(self) -> None:
        self.baseline: float | None = None
        self.reward_sq: float | None = None  # moving average of the squared reward (normalize_advantage)
        self.updates = 0
        self.skipped_updates = 0  # iterations whose detector step the trainer reported as skipped
        self.history: list[list[float]] = []
        self._acc = torch.zeros(len(self.actions) + 2, dtype=torch.float64)  # probs, reward, entropy
        self._acc_n = 0
        self._pending: dict | None = None

    def setup(self, model: nn.Module, ctx) -> None:
        self.in_chans = int(getattr(getattr(ctx.config, "model", None), "in_chans", 1) or 1)
        self._reset_state()
        if self.policy != "learned":
            self._fixed = self.allowed.double() / self.allowed.sum()
            return
        seed = int(np.random.default_rng([_INIT_STREAM, int(ctx.seed)]).integers(0, 2**63 - 1))
        with torch.random.fork_rng(devices=[]):  # the global generator is left as it was
            torch.manual_seed(seed)
            self.net = StrategyNetwork(
                len(self.actions), in_chans=1, width=self.policy_width, input_stride=self.policy_input_stride
            )
        self.net.to(ctx.device).train()
        if self.policy_optimizer == "adam":
            self.optimizer = torch.optim.Adam(
                self.net.parameters(), lr=self.policy_lr, weight_decay=self.policy_weight_decay
            )
        else:
            self.optimizer = torch.optim.SGD(
                self.net.parameters(),
                lr=self.policy_lr,
                momentum=self.policy_momentum,
                weight_decay=self.policy_weight_decay,
            )

    # ------------------------------------------------------------------------------- iteration

    def _probabilities(self, x: torch.Tensor):
        """``(probs B x A detached, log_probs B x A with graph or None)`` for the clean batch."""
        if self.net is None:
            return self._fixed.to(x.device, torch.float32).expand(x.shape[0], -1), None
        logp = torch.log_softmax(self.net(x[:, :1].float()), dim=1)  # float32 outside autocast
        return logp.detach().exp(), logp

    def training_step(self, model, batch, loss_fn, ctx):
        from irstd.corruptions import apply
        from irstd.engine.evaluator import model_input

        keys, crops = batch.get("key"), getattr(ctx, "train_crops", None)
        if keys is None or crops is None:
            raise IRSTDError(
                "strategy hrl: needs batch['key'] and ctx.train_crops (the trainer's augmented training "
                "set) to corrupt whole images as test time does; the trainer provides both for "
                "strategies with needs_raw = True"
            )
        x, y = batch["image"], batch["mask"]
        n = x.shape[0]
        gen = ctx.generator()
        probs, logp = self._probabilities(x)
        actions = torch.multinomial(probs.detach().float().cpu().contiguous(), 1, generator=gen).squeeze(1)
        seeds = torch.randint(0, 2**62, (n,), generator=gen).tolist()
        chosen = [self.actions[i] for i in actions.tolist()]
        scale = float(crops.full_scale)
        x_hat = torch.from_numpy(
            np.stack(
                [
                    crops.recrop(
                        key.tolist(),
                        partial(apply, name=c, severity=sev, seed=seed, levels=self.levels, full_scale=scale),
                    )
                    for key, (c, sev), seed in zip(keys.cpu(), chosen, seeds)
                ]
            )[:, None]
        ).to(device=x.device, dtype=x.dtype)
        with ctx.autocast():
            out = model(model_input(torch.cat([x, x_hat]), self.in_chans))
        out_clean, out_hat = _split(out, n)
        loss_clean = loss_fn(out_clean, y)
        loss_hat = loss_fn(out_hat, y)
        with torch.no_grad():
            per_sample = loss_fn(out_hat, y, reduction="none").detach().float()
            clean_sample = loss_fn(out_clean, y, reduction="none").detach().float() if self.signal == "gain" else None
        # after_step gets no loss argument: keep the trainer's for the reward measurement
        pending = {
            "probs": probs.detach(),
            "seeds": seeds,
            "x_hat": x_hat,
            "x": x,
            "mask": y,
            "reward": per_sample if clean_sample is None else per_sample - clean_sample,
            "loss_fn": loss_fn,
        }
        if logp is not None:
            idx = actions.to(logp.device).unsqueeze(1)
            pending["logp"] = logp.gather(1, idx).squeeze(1)
            pending["entropy"] = -(logp.exp() * logp).sum(1)
        self._pending = pending
        ctx.logs["loss_clean"] = float(loss_clean.detach())
        ctx.logs["loss_corrupt"] = float(loss_hat.detach())
        return {"loss": loss_clean + self.lam * loss_hat, "actions": actions}

    @torch.no_grad()
    def _reward_pass(self, model, x_hat, y, loss_fn, ctx) -> torch.Tensor:
        """Per-sample loss of the updated detector on ``x_hat`` in eval mode (running BatchNorm
        statistics, no dropout; see the module docstring), every module's mode restored after."""
        from irstd.engine.checkpoint import unwrap
        from irstd.engine.evaluator import model_input

        net = unwrap(model)  # the DDP wrapper would sync buffers and expect a backward
        modes = [(m, m.training) for m in net.modules()]  # per module: some may be frozen in eval
        net.eval()
        try:
            with ctx.autocast():
                out = net(model_input(x_hat, self.in_chans))
            return loss_fn(out, y, reduction="none").detach().float()
        finally:
            for m, mode in modes:
                m.training = mode

    def after_step(self, model, batch, ctx) -> None:
        from irstd.engine import distributed as du

        p, self._pending = self._pending, None
        if p is None:
            return
        if getattr(ctx, "step_skipped", False):
            # Same on every rank (the scaler sees the all-reduced gradients), so no collective
            # below is left waiting.
            self.skipped_updates += 1
            return
        learned = self.net is not None
        if learned and self.reward == "updated":
            reward = self._reward_pass(model, p["x_hat"], p["mask"], p["loss_fn"], ctx)
            if self.signal == "gain":
                reward = reward - self._reward_pass(model, p["x"], p["mask"], p["loss_fn"], ctx)
        else:
            reward = p["reward"]
        if learned:
            entropy = p["entropy"]
        else:
            q = self._fixed[self._fixed > 0]
            entropy = torch.full_like(reward, float(-(q * q.log()).sum()))
        # global (all-rank) means: the baseline and the log are the same on every rank
        r64 = reward.double()
        stats = torch.cat(
            [
                p["probs"].double().mean(0),
                r64.mean().view(1),
                entropy.detach().double().mean().view(1),
                r64.square().mean().view(1),
            ]
        )
        stats = du.all_reduce_mean(stats).cpu()
        stats, r_sq = stats[:-1], float(stats[-1])
        r_mean = float(stats[-2])
        first = self.baseline is None
        if learned:
            b = r_mean if first else self.baseline
            advantage = reward - b
            if self.normalize_advantage:
                var = (r_sq - r_mean**2) if first else (self.reward_sq - self.baseline**2)
                advantage = advantage / (math.sqrt(max(var, 0.0)) + 1e-6)
            advantage = advantage.to(p["logp"].device)
            objective = (advantage * p["logp"]).mean() + self.entropy_coef * entropy.mean()
            self.optimizer.zero_grad(set_to_none=True)
            (-objective).backward()
            du.average_gradients(self.net.parameters())
            self.optimizer.step()
        m = self.baseline_momentum
        self.baseline = r_mean if first else m * self.baseline + (1.0 - m) * r_mean
        self.reward_sq = r_sq if first else m * self.reward_sq + (1.0 - m) * r_sq
        self.updates += 1
        self._acc += stats
        self._acc_n += 1
        if self.log_every and (ctx.step + 1) % self.log_every == 0:
            self._flush(ctx.epoch, ctx.step + 1)
        ctx.logs["reward"] = r_mean
        ctx.logs["baseline"] = self.baseline
        ctx.logs["policy_entropy"] = float(stats[-1])

    # ------------------------------------------------------------------------------- logging

    def _flush(self, epoch: int, step: int) -> None:
        if not self._acc_n:
            return
        mean = (self._acc / self._acc_n).tolist()
        a = len(self.actions)
        row = [float(epoch + 1), float(step), float(self._acc_n)] + mean[:a]
        row += [mean[a], float(self.baseline if self.baseline is not None else math.nan), mean[a + 1]]
        self.history.append(row)
        self._acc.zero_()
        self._acc_n = 0

    def on_epoch_end(self, epoch: int, ctx) -> None:
        self._flush(epoch, ctx.step + 1 if self._acc_n else ctx.step)
        if not ctx.is_main or ctx.run_dir is None:
            return
        from irstd.data.io import atomic_write_bytes

        run_dir = Path(ctx.run_dir)
        header, rows = policy_table(self.history, self.actions)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows([[_cell(v) for v in r] for r in rows])
        atomic_write_bytes(run_dir / "policy.csv", buf.getvalue().encode("utf-8"))
        if self.plot and self.history:
            png = plot_policy(self.history, self.actions, title=f"corruption policy: {self.policy}")
            atomic_write_bytes(run_dir / "policy.png", png)

    # ------------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        state = {
            "policy": self.policy,
            "actions": [f"{n}:{s}" for n, s in self.actions],
            "baseline": self.baseline,
            "reward_sq": self.reward_sq,
            "updates": self.updates,
            "skipped_updates": self.skipped_updates,
            "history": torch.tensor(self.history, dtype=torch.float64).reshape(
                len(self.history), len(_HEAD) + len(self.actions) + len(_TAIL)
            ),
            "acc": self._acc.clone(),
            "acc_n": self._acc_n,
        }
        if self.net is not None:
            state["net"] = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        actions = [f"{n}:{s}" for n, s in self.actions]
        if state.get("policy") != self.policy or list(state.get("actions", [])) != actions:
            raise IRSTDError(
                f"strategy hrl: the checkpoint was trained with policy {state.get('policy')!r} over "
                f"{len(state.get('actions', []))} actions; this configuration has {self.policy!r} over "
                f"{len(actions)}: cannot resume"
            )
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.reward_sq = None if state["reward_sq"] is None else float(state["reward_sq"])
        self.updates = int(state["updates"])
        self.skipped_updates = int(state.get("skipped_updates", 0))  # absent in older checkpoints
        self.history = [list(map(float, r)) for r in state["history"].tolist()]
        self._acc = state["acc"].to(torch.float64).clone()
        self._acc_n = int(state["acc_n"])
        if self.net is not None:
            self.net.load_state_dict(state["net"])
            self.optimizer.load_state_dict(state["optimizer"])


def _cell(v) -> str:
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 2**53:
            return str(int(v))
        return "" if math.isnan(v) else f"{v:.8g}"
    return str(v)


def _marginals(probs: np.ndarray, actions: Sequence[tuple[str, int]]) -> tuple[list[str], np.ndarray]:
    """Per-corruption probabilities (sum over severities) of ``probs`` (rows x actions)."""
    names = list(dict.fromkeys(n for n, _ in actions))
    cols = np.array([names.index(n) for n, _ in actions])
    out = np.zeros((probs.shape[0], len(names)))
    for j in range(len(names)):
        out[:, j] = probs[:, cols == j].sum(axis=1)
    return names, out


def policy_table(history: Sequence[Sequence[float]], actions: Sequence[tuple[str, int]]):
    """``(header, rows)`` of policy.csv from history rows
    ``[epoch, step, steps, p(action) ..., reward, baseline, entropy]``."""
    a = len(actions)
    names = list(dict.fromkeys(n for n, _ in actions))
    header = list(_HEAD) + [f"p_{n}" for n in names] + list(_TAIL) + [f"p_{n}_s{s}" for n, s in actions]
    rows = []
    if len(history):
        h = np.asarray(history, dtype=np.float64)
        _, marg = _marginals(h[:, 3 : 3 + a], actions)
        for r, m in zip(h, marg):
            rows.append(list(r[:3]) + list(m) + list(r[3 + a :]) + list(r[3 : 3 + a]))
    return header, [[float(v) for v in r] for r in rows]


def plot_policy(history: Sequence[Sequence[float]], actions: Sequence[tuple[str, int]], title: str = "") -> bytes:
    """PNG bytes: corruption probabilities stacked over training iterations (each history row
    drawn over the iterations it averages), and the mean reward with its baseline below.

    Uses matplotlib's Agg canvas directly, so no global backend or pyplot state is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h = np.asarray(history, dtype=np.float64)
    a = len(actions)
    names, marg = _marginals(h[:, 3 : 3 + a], actions)
    end = h[:, 1]
    start = end - h[:, 2]
    edges = np.concatenate([start, end[-1:]])  # step-wise: row k covers [start_k, end_k]
    values = np.vstack([marg, marg[-1:]]).T
    fig = Figure(figsize=(9, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    colours = [_colour(i, len(names)) for i in range(len(names))]
    ax.stackplot(edges, values, labels=names, colors=colours, step="post", alpha=0.9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability (mean over images)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    ax2.step(edges, np.append(h[:, 3 + a], h[-1, 3 + a]), where="post", label="mean reward (loss on x_hat)")
    ax2.step(edges, np.append(h[:, 4 + a], h[-1, 4 + a]), where="post", label="baseline", linestyle="--")
    ax2.set_xlabel("training iteration")
    ax2.set_ylabel("reward")
    ax2.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _colour(i: int, n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return cmap(i % cmap.N)
