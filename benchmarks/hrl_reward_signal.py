"""Is there a reward signal for HRL's policy to learn from? Per-action rewards of a trained detector.

    python benchmarks/hrl_reward_signal.py --run RUN_DIR [--images 64] [--checkpoint best]
                                           [--policy-lr 1e-4] [--steps N] [--threads 2]

For a run of ``irstd train`` (any strategy; its ``config.yaml`` gives the data, crops, loss and, for
HRL runs, the action set), take ``--images`` training crops exactly as the trainer cuts them
(epoch 0 of the run's seed), corrupt each with every (corruption, severity) action the way the
``hrl`` strategy does (whole image corrupted at the dataset's full scale, standardised, cropped;
one seeded draw per image and action), and score the detector in eval mode with the run's loss,
per image: the reward ``r[a, i]`` HRL's policy receives for action ``a`` on image ``i``.

It prints, per action, the mean reward and its standard error, and then the two numbers that
decide whether REINFORCE can move the policy within a run:

* **signal vs noise**: the spread of the action means (their standard deviation) against the
  noise of one reward around its action's mean (pooled within-action deviation, image effects
  included, as the policy sees them), and the same noise for the loss increase over the clean
  crop, which removes each image's own difficulty. With a batch of B images and A actions, one update sees
  about B / A draws of each action, so an action's mean is estimated per update with noise
  ``sigma / sqrt(B / A)``; the per-update signal-to-noise ratio is ``spread / that``.
* **expected drift**: with a zero-initialised final layer the policy starts uniform, and the
  expected REINFORCE gradient of action a's logit (through the final layer's bias alone) is
  ``p_a (mu_a - mu)`` per update (``p_a = 1/A``). Over ``--steps`` updates at ``--policy-lr`` (SGD,
  paper 002: 1e-4) the logits move by about ``lr * steps * p_a * (mu_a - mu)``; divided by the
  reward's standard deviation when advantages are normalised. A drift well below 0.1 nats leaves
  the policy uniform.

Default ``--steps``: the run's own number of updates (epochs x steps per epoch). The detector is the
run's ``best`` checkpoint (``--checkpoint last`` for the end of training).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    from irstd.config import load_config
    from irstd.corruptions import PAPER_002_CORRUPTIONS, apply
    from irstd.data import IRSTDDataset, TrainTransform
    from irstd.engine.evaluator import forward_logits
    from irstd.engine.loader import AugmentedDataset, steps_per_epoch
    from irstd.engine.losses import build_loss
    from irstd.engine.predictor import load_detector
    from irstd.errors import IRSTDError
    from irstd.strategies.policy import action_space

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="run directory of irstd train")
    ap.add_argument("--checkpoint", default="best", choices=["best", "last", "auto"])
    ap.add_argument("--images", type=int, default=64, help="training crops to score")
    ap.add_argument("--batch", type=int, default=None, help="images per policy update (default: the run's)")
    ap.add_argument("--policy-lr", type=float, default=None, help="strategy SGD step (default: the run's, else 1e-4)")
    ap.add_argument("--steps", type=int, default=None, help="policy updates (default: the run's)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.run / "config.yaml")
        det = load_detector(run=args.run, checkpoint=args.checkpoint, device="cpu")
    except (IRSTDError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kw = dict(cfg.strategy.kwargs) if cfg.strategy.name == "hrl" else {}
    actions = action_space(kw.get("corruptions", PAPER_002_CORRUPTIONS), int(kw.get("levels", 3)))
    lr = args.policy_lr if args.policy_lr is not None else float(kw.get("policy_lr", 1e-4))
    batch = args.batch or int(cfg.train.batch_size)

    d = cfg.data
    base = IRSTDDataset(d.root, split=d.train_split)
    ids = (args.run / "train_ids.txt").read_text().split() if (args.run / "train_ids.txt").exists() else None
    if ids:
        base = IRSTDDataset(d.root, ids=ids)
    crops = AugmentedDataset(base, TrainTransform(d.crop_size, d.target_prob, d.flip, d.transpose),
                             cfg.train.seed, with_raw=True)
    steps = args.steps or int(cfg.train.epochs) * steps_per_epoch(len(base), int(cfg.train.batch_size))
    loss_fn = build_loss(cfg.loss)
    n = min(args.images, len(base))
    items = [crops[(0, i)] for i in range(n)]
    masks = torch.stack([it["mask"] for it in items])
    scale = float(crops.full_scale)
    rng = np.random.default_rng(0)
    rewards = np.zeros((len(actions), n))
    clean = np.zeros(n)
    t0 = time.perf_counter()
    with torch.inference_mode():
        x = torch.stack([it["image"] for it in items])
        clean[:] = loss_fn(forward_logits(det.model, x, det.in_chans), masks, reduction="none").numpy()
        for a, (name, sev) in enumerate(actions):
            seeds = rng.integers(0, 2**62, n).tolist()
            x_hat = torch.from_numpy(np.stack([
                crops.recrop(it["key"].tolist(), partial(apply, name=name, severity=sev, seed=s,
                                                         levels=int(kw.get("levels", 3)), full_scale=scale))
                for it, s in zip(items, seeds)
            ])[:, None])
            rewards[a] = loss_fn(forward_logits(det.model, x_hat, det.in_chans), masks, reduction="none").numpy()
    elapsed = time.perf_counter() - t0

    A = len(actions)
    mu_a = rewards.mean(1)
    se_a = rewards.std(1, ddof=1) / math.sqrt(n)
    mu = float(rewards.mean())
    sigma_all = float(rewards.std())
    sigma_within = math.sqrt(float(((rewards - mu_a[:, None]) ** 2).sum() / (A * (n - 1))))
    gain = rewards - clean[None]  # the loss increase over the clean crop: the image's own difficulty removed
    sigma_gain = math.sqrt(float(((gain - gain.mean(1, keepdims=True)) ** 2).sum() / (A * (n - 1))))
    spread = float(mu_a.std(ddof=1))
    per_update = sigma_within / math.sqrt(max(batch / A, 1e-9))
    drift = lr * steps * (1.0 / A) * (mu_a - mu)
    drift_norm = drift / max(sigma_all, 1e-12)
    print(f"run {args.run} ({args.checkpoint} checkpoint), {n} training crops, {A} actions, loss {cfg.loss.name}; "
          f"{elapsed:.0f} s\n")
    print("| action | mean reward | s.e. | mean - overall | logit drift (raw / normalised adv.) |")
    print("|---|---:|---:|---:|---:|")
    for a in np.argsort(-mu_a):
        name, sev = actions[a]
        print(f"| {name} s{sev} | {mu_a[a]:.4f} | {se_a[a]:.4f} | {mu_a[a] - mu:+.4f} | "
              f"{drift[a]:+.2e} / {drift_norm[a]:+.2e} |")
    print(f"\nclean loss on the same crops: {clean.mean():.4f}; mean reward over actions {mu:.4f}, "
          f"reward std {sigma_all:.4f}")
    print(f"spread of the action means (std over actions): {spread:.4f}")
    print(f"noise of one reward around its action's mean (pooled): {sigma_within:.4f}")
    print(f"per update ({batch} images, ~{batch / A:.2f} draws per action): action-mean noise {per_update:.4f}, "
          f"signal/noise {spread / per_update:.3f}")
    print(f"the same for the loss increase over the clean crop (r - L(x)): noise {sigma_gain:.4f}, "
          f"signal/noise {spread / (sigma_gain / math.sqrt(max(batch / A, 1e-9))):.3f}")
    print(f"expected logit drift over {steps} updates at SGD lr {lr:g}: max |drift| {np.abs(drift).max():.2e} nats "
          f"(raw advantages), {np.abs(drift_norm).max():.2e} (normalised); "
          f"lr for a 1-nat drift of the best action: {1.0 / max(np.abs(drift_norm).max() / lr, 1e-30):.3g} (normalised)")
    print(f"images where the best action is also the per-image best: "
          f"{int((rewards.argmax(0) == int(np.argmax(mu_a))).sum())} / {n}; per-image best actions span "
          f"{len(set(rewards.argmax(0).tolist()))} of {A} actions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
