"""Wavelet-guided cross-domain synthesis (WCS, paper 000 Section 3.1) on the fly, as the training
strategy ``wcs``: training batches get samples in which hard source targets sit in background
regions of unlabelled target-domain frames.

Per run (:mod:`irstd.domain` does the image work):

1. **Target domain** (when the strategy is built, before the run directory exists, so that a bad
   folder leaves nothing behind): the unlabelled 70 % of the frame folder ``target``
   (:func:`irstd.domain.frames.domain_frames`; the held-out 30 % is never read), checked once;
   Background Region Detection of each frame on first use (:mod:`irstd.domain.brd`).
2. **Paste set**: before the first selection every training target (the model cannot have
   found any yet); then, every ``every`` epochs (``on_epoch_end``), Dual-indicator Selection with
   the current model (:mod:`irstd.domain.dis`): each training image is scored at original size in
   eval mode (:func:`irstd.engine.evaluator.evaluate`, the evaluator's own forward), and the targets
   with window PixAcc < tau_p and IoU < tau_i form the new set (an empty selection keeps the
   previous set: there is nothing new to learn from, and the pool must not run dry).
3. **Pool**: ``pool`` samples re-generated from the paste set (:func:`irstd.domain.synthesis.
   synthesize`: SSIM-ranked background window, Poisson blending, the mask carried), each a
   whole target-domain frame, standardised with its own statistics as any frame is at test time,
   then cut into a training crop around the pasted target with the run's crop size, flips and
   transpose (:class:`irstd.data.TrainTransform`). Rebuilt after every selection.
4. **Mixing** (``training_step``): every sample of a batch is replaced, with probability
   ``ratio``, by a pool sample (randomly flipped and transposed again), then the batch is trained
   as plain supervised training does. Replaced samples carry ``raw`` / ``raw_mean`` / ``raw_std``
   in the target frames' full-scale units when the batch has them (a strategy combined with
   WCS, ``wcs_rnil``, corrupts them like any other sample).

Paper 000 trains on the union of source and synthesised images ("fusion datasets", Table 8);
``ratio`` is the synthesised share of that union per batch (default 0.25: a quarter of the samples,
so the source domain keeps three quarters of the updates). ``pool`` 256 samples and ``every`` 10
epochs bound the cost: a selection is one evaluation pass over the training images, and a pool
rebuild re-generates 256 frames (BRD runs once per frame, at its first use; ``wcs_pool_s`` logs
what a rebuild took).

Randomness comes from seeded streams (the run seed, the selection count and the sample index for
the pool; seed, step and rank for the mixing), so a resumed run rebuilds the same pool and draws
the same replacements. The state is the paste set and the selection count. Logs: ``wcs_hard``
(targets in the paste set: every training target before the first selection), ``wcs_synth``
(share of samples replaced), ``wcs_select_s`` (seconds of the latest selection, which runs after
the epoch's timed loop, so ``epoch_time_s`` leaves it out) and ``wcs_pool_s`` (seconds of the
latest pool rebuild, inside the timed loop).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from irstd.errors import IRSTDError
from irstd.strategies import Strategy, register_strategy

__all__ = ["WCS", "WCSSampler", "stream_generator"]

_POOL_STREAM = 0x57435350  # "WCSP"
_MIX_STREAM = 0x5743534D  # "WCSM"


def stream_generator(ctx, stream: int) -> torch.Generator:
    """A CPU generator for (seed, step, rank) kept apart from ``ctx.generator()`` by ``stream``:
    strategies combined in one step draw independent numbers, and a resume repeats them."""
    g = torch.Generator()
    g.manual_seed(int(np.random.default_rng([int(stream), int(ctx.seed), int(ctx.step), int(ctx.rank)]).integers(0, 2**63 - 1)))
    return g


def _number(name: str, value, lo: float, hi: float, integer: bool = False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise IRSTDError(f"strategy.kwargs.{name}: expected a number, got {value!r}") from None
    if not lo <= v <= hi or (integer and v != int(v)):
        kind = "an integer" if integer else "a number"
        raise IRSTDError(f"strategy.kwargs.{name}: must be {kind} in [{lo:g}, {hi:g}], got {value!r}")
    return int(v) if integer else v


class WCSSampler:
    """The synthesis machinery of the ``wcs`` strategy (module docstring), reusable by strategies
    that combine WCS with another training scheme (``wcs_rnil``)."""

    def __init__(
        self,
        target: str | None = None,
        ratio: float = 0.25,
        pool: int = 256,
        every: int = 10,
        block_size: int | None = None,
        tau_b: float | None = None,
        wavelet: str | None = None,
        level: int | None = None,
        tau_p: float | None = None,
        tau_i: float | None = None,
        margin: int | None = None,
        threshold: float | None = None,
        max_windows: int | None = None,
    ):
        from irstd.domain.synthesis import WCSParams

        if not target:
            raise IRSTDError("strategy wcs: give strategy.kwargs.target, the folder of unlabelled target-domain frames")
        self.target = str(target)
        self.ratio = _number("ratio", ratio, 0.0, 1.0)
        self.pool_size = _number("pool", pool, 1, 1e6, integer=True)
        self.every = _number("every", every, 1, 1e6, integer=True)
        given = {"block_size": block_size, "tau_b": tau_b, "wavelet": wavelet, "level": level, "tau_p": tau_p,
                 "tau_i": tau_i, "margin": margin, "max_windows": max_windows}
        self._threshold = threshold
        self._given = {k: v for k, v in given.items() if v is not None}
        self.params = WCSParams(**self._given)  # early check of the values
        # The frames are read and checked here: the trainer builds strategies before it makes the
        # run directory, so a bad frame folder leaves nothing behind.
        from irstd.domain.synthesis import TargetDomain

        self.domain = TargetDomain(self.target, self.params)
        self.hard: list[tuple[int, tuple[int, int, int, int]]] | None = None
        self.selections = 0
        self.pool: list[dict] | None = None
        self.paste_set_size = 0
        self.select_seconds = 0.0  # the latest selection's, which runs outside the epoch's timed loop
        self.pool_seconds = 0.0

    # ------------------------------------------------------------------------------- set-up

    def setup(self, model, ctx) -> None:
        from dataclasses import replace

        cfg = ctx.config
        if ctx.train_data is None:
            raise IRSTDError("strategy wcs: the step context carries no training data (ctx.train_data); "
                             "run it through irstd.engine.Trainer")
        self.data = ctx.train_data
        threshold = self._threshold if self._threshold is not None else getattr(getattr(cfg, "eval", None), "threshold", 0.5)
        self.params = replace(self.params, threshold=float(threshold))
        data_cfg = getattr(cfg, "data", None)
        self.crop_size = getattr(data_cfg, "crop_size", 256)
        self.flip = bool(getattr(data_cfg, "flip", True))
        self.transpose = bool(getattr(data_cfg, "transpose", True))
        self.in_chans = int(getattr(getattr(cfg, "model", None), "in_chans", 1) or 1)
        self.seed = int(ctx.seed)
        self.device = ctx.device
        self.total_epochs = int(getattr(getattr(cfg, "train", None), "epochs", 0) or 0)
        self.model = model  # on_epoch_end gets no model; the selection scores this one
        self.domain.params = self.params
        self.hard = None  # every target, until the first selection
        self.selections = 0
        self.pool = None

    # ------------------------------------------------------------------------------- paste set

    def _candidates(self):
        """The paste set as :class:`~irstd.domain.dis.HardTarget` s."""
        from irstd.domain import dis

        margin = self.params.margin
        by_image: dict[int, list[tuple[int, int, int, int]]] = {}
        if self.hard is None:
            for i in range(len(self.data)):
                _, mask = self.data.load_arrays(i)
                by_image[i] = [box for _, box in dis.target_boxes(mask, margin)]
        else:
            for i, box in self.hard:
                by_image.setdefault(i, []).append(box)
        out = []
        for i, boxes in by_image.items():
            if not boxes:
                continue
            image, mask = self.data.load_arrays(i)
            out += [dis.cut_patch(image, mask, box, self.data.ids[i], self.data.full_scale) for box in boxes]
        return out

    def select(self) -> int:
        """DIS with the current model over the training images; returns the hard-target count."""
        from irstd.domain import dis
        from irstd.engine.evaluator import evaluate

        p = self.params
        found: list[tuple[int, tuple[int, int, int, int]]] = []

        def score(index, prob, mask):
            for s in dis.select_hard(dis.score_targets(prob, mask, p.threshold, p.margin, p.tau_p, p.tau_i)):
                found.append((int(index), s.box))

        start = time.perf_counter()
        evaluate(self.model, self.data, self.device, p.threshold, in_chans=self.in_chans, on_image=score)
        self.select_seconds = time.perf_counter() - start
        self.selections += 1
        if found:
            self.hard = found
        self.pool = None
        return len(found)

    # ------------------------------------------------------------------------------- pool

    def _build_pool(self) -> None:
        from irstd.data import TrainTransform, normalize_image
        from irstd.data.dataset import NORMALIZE_EPS
        from irstd.domain.synthesis import synthesize

        targets = self._candidates()
        self.paste_set_size = len(targets)
        if not targets:
            raise IRSTDError(f"strategy wcs: the training split of {self.data.source} has no target to paste")
        transform = TrainTransform(self.crop_size, 1.0, self.flip, self.transpose)
        fs = float(self.domain.full_scale)
        pool = []
        for k in range(self.pool_size):
            rng = np.random.default_rng([_POOL_STREAM, self.seed, self.selections, k])
            made = None
            for _ in range(8):
                made = synthesize(self.domain, targets[int(rng.integers(len(targets)))], rng)
                if made is not None:
                    break
            if made is None:
                continue
            paste, _ = made
            raw = paste.image.astype(np.float64)
            mean, std = float(raw.mean()), max(float(raw.std()), NORMALIZE_EPS)  # as normalize_image
            image, mask = transform(normalize_image(paste.image), paste.mask, rng)
            crop = np.clip((image.astype(np.float64) * std + mean) / fs, 0.0, 1.0)
            pool.append({
                "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)),
                "raw": torch.from_numpy(crop.astype(np.float32)),
                "raw_mean": mean / fs,
                "raw_std": std / fs,
            })
        if not pool:
            raise IRSTDError(f"strategy wcs: no candidate background window of {self.target} fits the paste set's "
                             f"patches (BRD blocks of {self.params.block_size} px, tau_b {self.params.tau_b})")
        self.pool = pool

    # ------------------------------------------------------------------------------- batches

    def mix(self, batch: dict, ctx) -> tuple[dict, int]:
        """The batch with samples replaced by pool samples (``ratio``); returns it and the count."""
        if self.ratio <= 0:
            return batch, 0
        if self.pool is None:
            start = time.perf_counter()
            self._build_pool()
            self.pool_seconds = time.perf_counter() - start
        image = batch["image"]
        n = image.shape[0]
        gen = stream_generator(ctx, _MIX_STREAM)
        replace = torch.rand(n, generator=gen) < self.ratio
        pick = torch.randint(len(self.pool), (n,), generator=gen)
        flips = torch.rand(n, 3, generator=gen) < 0.5
        chosen = torch.nonzero(replace).flatten().tolist()
        if not chosen:
            return batch, 0
        out = dict(batch)
        keys = [k for k in ("image", "mask", "raw") if batch.get(k) is not None]
        for k in keys:
            out[k] = batch[k].clone()
        for k in ("raw_mean", "raw_std"):
            if batch.get(k) is not None:
                out[k] = batch[k].clone()
        ids = list(batch.get("id", [""] * n))
        for i in chosen:
            entry = self.pool[int(pick[i])]
            for k in keys:
                v = entry[k]
                if self.flip and flips[i, 0]:
                    v = v.flip(-1)
                if self.flip and flips[i, 1]:
                    v = v.flip(-2)
                if self.transpose and flips[i, 2] and v.shape[-1] == v.shape[-2]:
                    v = v.transpose(-1, -2)
                out[k][i, 0] = v.to(out[k].device, out[k].dtype)
            for k in ("raw_mean", "raw_std"):
                if k in out:
                    out[k][i] = entry[k]
            ids[i] = f"wcs:{int(pick[i])}"
        out["id"] = ids
        return out, len(chosen)

    def on_epoch_end(self, epoch: int, ctx) -> None:
        done = epoch + 1
        if done % self.every == 0 and (not self.total_epochs or done < self.total_epochs):
            self.select()

    def log(self, ctx, replaced: int, n: int) -> None:
        ctx.logs["wcs_hard"] = float(self.paste_set_size)
        ctx.logs["wcs_synth"] = replaced / max(n, 1)
        ctx.logs["wcs_select_s"] = self.select_seconds
        ctx.logs["wcs_pool_s"] = self.pool_seconds

    # ------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        rows = [[i, *box] for i, box in self.hard] if self.hard is not None else []
        return {
            "selections": self.selections,
            "all_targets": self.hard is None,
            "hard": torch.tensor(rows, dtype=torch.int64).reshape(len(rows), 5),
        }

    def load_state_dict(self, state: dict) -> None:
        self.selections = int(state["selections"])
        if state["all_targets"]:
            self.hard = None
        else:
            self.hard = [(int(r[0]), tuple(int(v) for v in r[1:])) for r in state["hard"].tolist()]
        self.pool = None


@register_strategy("wcs")
class WCS(Strategy):
    """Supervised training on batches mixed with WCS samples (module docstring).

    Args (``strategy.kwargs``):
        target: folder of unlabelled target-domain frames (``DIR/images`` or ``DIR``), required.
        ratio: probability that a sample of a batch is replaced by a synthesised one (0.25).
        pool: synthesised samples kept per selection (256).
        every: epochs between hard-target selections (10).
        block_size, tau_b, wavelet, level: BRD (:mod:`irstd.domain.brd`: 42, 0.8, db4, 1).
        tau_p, tau_i, margin: DIS (:mod:`irstd.domain.dis`: 0.75, 0.5, 6).
        threshold: probability threshold of the selection (default ``eval.threshold``).
        max_windows: windows scored by SSIM per paste (:mod:`irstd.domain.regen`: 256).
    """

    log_keys = ("wcs_hard", "wcs_synth", "wcs_select_s", "wcs_pool_s")

    def __init__(self, **kwargs):
        self.sampler = WCSSampler(**kwargs)

    def setup(self, model, ctx) -> None:
        self.sampler.setup(model, ctx)

    def training_step(self, model, batch, loss_fn, ctx):
        batch, replaced = self.sampler.mix(batch, ctx)
        self.sampler.log(ctx, replaced, batch["image"].shape[0])
        with ctx.autocast():
            out = model(batch["image"])
        return {"loss": loss_fn(out, batch["mask"])}

    def on_epoch_end(self, epoch, ctx) -> None:
        self.sampler.on_epoch_end(epoch, ctx)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
