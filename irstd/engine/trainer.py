"""The training loop behind ``irstd train``.

One :class:`Trainer` runs a whole experiment from a :class:`irstd.config.Config`:

1. carve the validation ids from the training split (seeded; stored as ``train_ids.txt`` and
   ``val_ids.txt`` in the run directory, and re-read from there on resume);
2. train with the configured strategy, loss, optimiser and per-iteration schedule; deterministic
   data order and augmentation (:mod:`irstd.engine.loader`); AMP on CUDA only;
3. validate every ``train.eval_interval`` epochs and after the last one at original resolution;
   save ``best`` when the validation metric (``eval.best_metric``, IoU by default) improves;
4. save ``last`` after every epoch (and every ``train.checkpoint_interval`` iterations);
5. at the end, score the test split with the best checkpoint (the last one without validation)
   and write ``test_metrics.json``.

Run directory: ``config.yaml`` (resolved), ``train_ids.txt``, ``val_ids.txt``, ``log.csv``
(one row per epoch), ``last/``, ``best/`` (see :mod:`irstd.engine.checkpoint`),
``test_metrics.json``, and ``tb/`` TensorBoard events when ``tensorboard`` is installed.

Under ``torchrun`` every process trains its slice of each global batch in DistributedDataParallel,
validation/test metrics are reduced over processes, and only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.nn as nn

from irstd.config import Config, load_config, save_config
from irstd.engine import checkpoint as ckpt
from irstd.engine import distributed as du
from irstd.engine.device import resolve_device
from irstd.engine.evaluator import evaluate
from irstd.engine.loader import AugmentedDataset, EpochBatchSampler
from irstd.engine.losses import build_loss
from irstd.engine.optim import build_optimizer, build_scheduler
from irstd.engine.seed import capture_rng_state, restore_rng_state, seed_everything
from irstd.errors import IRSTDError

__all__ = ["Trainer", "new_run_dir", "model_metadata", "STATE_VERSION"]

STATE_VERSION = 1
_CORE_COLUMNS = ["epoch", "step", "lr", "loss", "images_per_s", "epoch_time_s"]
_VAL_KEYS = ["IoU", "nIoU", "Pd", "Fa", "F1"]


def new_run_dir(cfg: Config, config_name: str | None = None) -> Path:
    """``<output.dir>/<output.name or config name or model>-<YYYYmmdd-HHMMSS>`` (made unique)."""
    base = Path(cfg.output.dir)
    name = cfg.output.name or config_name or cfg.model.name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = base / f"{name}-{stamp}"
    k = 1
    while path.exists():
        k += 1
        path = base / f"{name}-{stamp}-{k}"
    return path


def model_metadata(cfg: Config, **extra) -> dict:
    """Metadata stored in weights files: enough to rebuild the network and use it."""
    meta = {
        "model": cfg.model.name,
        "kwargs": cfg.model.kwargs,
        "in_chans": cfg.model.in_chans,
        "threshold": cfg.eval.threshold,
        "normalization": "per-image (x - mean) / std, irstd.data.normalize_image",
    }
    meta.update(extra)
    return meta


def _write_lines(path: Path, lines: list[str]) -> None:
    from irstd.data.io import atomic_write_bytes

    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def _read_lines(path: Path) -> list[str]:
    try:
        return [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    except OSError as exc:
        raise IRSTDError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


class Trainer:
    """Runs one training experiment; see the module docstring.

    Args:
        cfg: the resolved configuration.
        run_dir: run directory (created); None makes ``output.dir/<name>-<timestamp>``.
        resume: continue the run in ``run_dir`` from its ``last`` checkpoint.
        config_name: used for the default run-directory name.
        log: where progress lines go (default stderr).
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path | None = None,
        resume: bool = False,
        config_name: str | None = None,
        log=None,
    ):
        self.cfg = cfg
        self.resume = bool(resume)
        self._run_dir_arg = Path(run_dir) if run_dir is not None else None
        self._config_name = config_name
        self._log_stream = log
        self.run_dir: Path | None = None
        self.test_metrics: dict | None = None

    # ------------------------------------------------------------------------------- utilities

    def log(self, msg: str) -> None:
        if not self.dist.is_main:
            return
        stream = self._log_stream or sys.stderr
        try:
            from tqdm import tqdm

            tqdm.write(msg, file=stream)
        except Exception:
            print(msg, file=stream, flush=True)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), **kw) -> "Trainer":
        """Trainer that resumes ``run_dir`` (its saved ``config.yaml`` plus ``overrides``)."""
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise IRSTDError(f"{run_dir}: not a run directory (no config.yaml)")
        cfg = load_config(run_dir / "config.yaml", overrides)
        return cls(cfg, run_dir=run_dir, resume=True, **kw)

    # ------------------------------------------------------------------------------- set-up

    def _setup_run_dir(self) -> None:
        cfg = self.cfg
        if not cfg.data.root:
            raise IRSTDError("data.root is not set: give it in the config or as data.root=DIR")
        root = Path(cfg.data.root).expanduser()
        if not root.is_dir():
            raise IRSTDError(f"{root}: dataset folder not found (data.root)")
        cfg.data.root = str(root.resolve())  # absolute in the saved config: resume and test work from anywhere
        if not self.resume:
            # Before the run directory exists, so that a bad dataset leaves nothing behind: index
            # files, folders and every sample's files (decoded only with data.skip_bad).
            from irstd.data import IRSTDDataset

            for split in (cfg.data.train_split, cfg.data.test_split):
                if split:
                    IRSTDDataset(root, split=split, skip_bad=cfg.data.skip_bad)
        self._extra_sources = self._open_extra_sources()
        # Strategy and network are built here, also before the run directory, so that bad
        # strategy.kwargs or model.kwargs leave nothing behind either. The strategy comes first: it
        # decides what the batches carry, and this order of random draws is the one runs reproduce.
        from irstd.strategies import create_strategy

        self.strategy = create_strategy(cfg.strategy.name, **cfg.strategy.kwargs)
        self._fresh_model = self._create_model()
        self.strategy.check_model(self._fresh_model, cfg.model.name)
        # Rank 0 names the directory (a timestamp); every rank then checks it, so that an error
        # stops all processes instead of leaving the others waiting for rank 0.
        path = self._run_dir_arg if self._run_dir_arg is not None else None
        if path is None and self.dist.is_main:
            path = new_run_dir(cfg, self._config_name)
        path = Path(du.broadcast_object(str(path) if path is not None else None))
        if self.resume:
            # only rank 0 may repair an interrupted checkpoint swap; the others wait for it
            has_last = ckpt.checkpoint_dir(path, "last") is not None if self.dist.is_main else None
            if not du.broadcast_object(has_last):
                raise IRSTDError(f"{path}: nothing to resume (no last/ checkpoint)")
        elif path.exists() and ((path / "last").exists() or (path / ".last.tmp").exists() or (path / "log.csv").exists()):
            raise IRSTDError(f"{path}: already holds a run; use --resume {path} or another --out")
        du.barrier()
        if self.dist.is_main:
            path.mkdir(parents=True, exist_ok=True)
            save_config(cfg, path / "config.yaml")
        du.barrier()
        self.run_dir = path

    def _setup_data(self) -> None:
        from irstd.data import IRSTDDataset, TrainTransform, carve_validation, read_split

        cfg, d = self.cfg, self.cfg.data
        root = Path(d.root)
        ids_file, val_file = self.run_dir / "train_ids.txt", self.run_dir / "val_ids.txt"
        if self.resume and ids_file.is_file():
            train_ids = _read_lines(ids_file)
            val_ids = _read_lines(val_file) if val_file.is_file() else []
        else:
            ids = read_split(root, d.train_split)
            if d.val_fraction > 0:
                train_ids, val_ids = carve_validation(ids, d.val_fraction, cfg.train.seed)
            else:
                train_ids, val_ids = list(ids), []
            if self.dist.is_main:
                _write_lines(ids_file, train_ids)
                if val_ids:
                    _write_lines(val_file, val_ids)
        with_raw = bool(getattr(self.strategy, "needs_raw", False))
        if with_raw and d.full_scale is None:
            self._record_full_scale(root)
        base = IRSTDDataset(root, ids=train_ids, skip_bad=d.skip_bad, full_scale=d.full_scale)
        if base.skipped:
            self.log(base.skipped_summary())
        self.train_data = base
        extra = []
        if self._extra_sources:
            from irstd.data.mixed import MixedDataset, batch_counts

            counts = batch_counts([e.share for e, _ in self._extra_sources], cfg.train.batch_size)
            base = MixedDataset(base, [ds for _, ds in self._extra_sources])
            extra = list(zip(base.sizes[1:], counts))
            self.log("extra training sources: " + ", ".join(
                f"{ds.root} ({len(ds)} {'target-free frames' if ds.target_free else 'samples'}, {k} per batch)"
                for (_, ds), k in zip(self._extra_sources, counts)))
        transform = TrainTransform(d.crop_size, d.target_prob, d.flip, d.transpose)
        self.train_set = AugmentedDataset(base, transform, cfg.train.seed, with_raw=with_raw)
        self.val_set = IRSTDDataset(root, ids=val_ids, skip_bad=d.skip_bad) if val_ids else None
        self.test_set = IRSTDDataset(root, split=d.test_split, skip_bad=d.skip_bad) if d.test_split else None
        if cfg.train.batch_size % self.dist.world_size:
            raise IRSTDError(
                f"train.batch_size {cfg.train.batch_size} is not divisible by the {self.dist.world_size} processes"
            )
        self.sampler = EpochBatchSampler(
            len(self.train_data), cfg.train.batch_size, cfg.train.seed, self.dist.rank, self.dist.world_size, extra
        )
        workers = d.workers
        loader_gen = torch.Generator()
        loader_gen.manual_seed(cfg.train.seed)  # a private generator: the loader never draws from torch's global one
        self.loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            generator=loader_gen,
        )

    def _open_extra_sources(self) -> list:
        """The datasets of ``data.extra`` (absolute roots written back into the config): labelled
        folders by their split, target-free folders by their unlabelled 70 % only."""
        from irstd.data import IRSTDDataset
        from irstd.data.mixed import parse_extra
        from irstd.domain.frames import domain_frames

        d = self.cfg.data
        sources = []
        for k, e in enumerate(parse_extra(d.extra)):
            root = Path(e.root).expanduser()
            if not root.is_dir():
                raise IRSTDError(f"{root}: folder of data.extra[{k}] not found")
            d.extra[k]["root"] = str(root.resolve())
            if (root / "masks").is_dir():
                ds = IRSTDDataset(root, split=e.split, skip_bad=d.skip_bad, full_scale=d.full_scale)
            else:
                stems = [p.stem for p in domain_frames(root)]
                ds = IRSTDDataset(root, ids=stems, skip_bad=d.skip_bad, full_scale=d.full_scale, target_free=True)
            sources.append((e, ds))
        return sources

    def _record_full_scale(self, root: Path) -> None:
        """Corruptions act relative to the dataset's intensity full scale: rank 0 computes it once
        (reading the dataset) and records it as ``data.full_scale`` in config.yaml, so every rank,
        a resume and ``irstd robustness`` use the very same value. An error stops every rank."""
        from irstd.data.dataset import dataset_full_scale

        found = None
        if self.dist.is_main:
            try:
                found = (dataset_full_scale(root, skip_bad=self.cfg.data.skip_bad), None)
            except IRSTDError as exc:
                found = (None, str(exc))
        scale, error = du.broadcast_object(found)
        if error is not None:
            raise IRSTDError(error)
        self.cfg.data.full_scale = scale
        if self.dist.is_main:
            save_config(self.cfg, self.run_dir / "config.yaml")

    def _create_model(self) -> nn.Module:
        from irstd.models import create

        cfg = self.cfg
        try:
            return create(cfg.model.name, in_chans=cfg.model.in_chans, **cfg.model.kwargs)
        except (TypeError, ValueError) as exc:
            raise IRSTDError(f"model {cfg.model.name!r}: bad model.kwargs ({exc})") from None

    def _setup_model(self) -> None:
        from irstd.models import training_layout

        cfg = self.cfg
        model, self._fresh_model = self._fresh_model, None
        model.to(self.device)
        training_layout(model, cfg.train.memory_format)
        if self.dist.enabled:
            if cfg.train.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = model
        self.net = ckpt.unwrap(model)
        self.loss_fn = build_loss(cfg.loss)
        self.optimizer = build_optimizer(self.net, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.sampler.steps, cfg.train.epochs)
        self.amp = bool(cfg.train.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ema = None
        if cfg.train.ema > 0:
            from irstd.engine.ema import ModelEma

            self.ema = ModelEma(self.net, cfg.train.ema)

    @property
    def eval_net(self) -> nn.Module:
        """The network validation, the best checkpoint and the test score: the EMA copy when on."""
        return self.ema.module if self.ema is not None else self.model

    def _setup_strategy(self) -> None:
        from irstd.strategies import StepContext

        cfg = self.cfg
        self.ctx = StepContext(
            device=self.device,
            seed=cfg.train.seed,
            steps_per_epoch=self.sampler.steps,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            run_dir=self.run_dir,
            amp=self.amp,
            config=cfg,
            train_data=self.train_data,
            train_crops=self.train_set,
        )
        self.strategy.setup(self.model, self.ctx)

    # ------------------------------------------------------------------------------- state

    def _state(self, epoch: int, step_in_epoch: int, running: dict) -> dict:
        return {
            "version": STATE_VERSION,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": self.global_step,
            "steps_per_epoch": self.sampler.steps,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "best": dict(self.best),
            "running": dict(running),
            "strategy": self.strategy.state_dict(),
        }

    def _save_last(self, epoch: int, step_in_epoch: int, running: dict) -> None:
        """``epoch`` = completed epochs; ``step_in_epoch`` = steps done in the next one."""
        if not self.dist.is_main:
            return
        state = self._state(epoch, step_in_epoch, running)
        meta = model_metadata(self.cfg, epoch=epoch, step=self.global_step)
        info = {
            "completed_epochs": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": self.global_step,
            "best": self.best,
        }
        files = {
            "model.safetensors": ckpt.weights_bytes(self.ema.module if self.ema is not None else self.net, meta),
            "state.pt": ckpt.state_bytes(state),
            "info.json": json.dumps(info, indent=2).encode(),
        }
        if self.ema is not None:  # model.safetensors is the deployable (averaged) network
            files["train_weights.safetensors"] = ckpt.weights_bytes(self.net, meta)
        ckpt.write_checkpoint_dir(self.run_dir, "last", files)

    def _save_best(self, epoch: int, val: dict) -> None:
        if not self.dist.is_main:
            return
        meta = model_metadata(self.cfg, epoch=epoch, step=self.global_step)
        info = {"epoch": epoch, "global_step": self.global_step, "metric": self.cfg.eval.best_metric, "val": val}
        ckpt.write_checkpoint_dir(
            self.run_dir,
            "best",
            {
                "model.safetensors": ckpt.weights_bytes(ckpt.unwrap(self.eval_net), meta),
                "info.json": json.dumps(info, indent=2, default=float).encode(),
            },
        )

    def _load_last(self) -> tuple[int, int, dict]:
        last = ckpt.checkpoint_dir(self.run_dir, "last")
        state = ckpt.read_state(last / "state.pt")
        if state.get("version") != STATE_VERSION:
            raise IRSTDError(f"{last / 'state.pt'}: unsupported training-state version {state.get('version')}")
        if state["steps_per_epoch"] != self.sampler.steps:
            raise IRSTDError(
                f"{last}: the run had {state['steps_per_epoch']} steps per epoch, this configuration gives "
                f"{self.sampler.steps} (batch size or data changed); cannot resume exactly"
            )
        if self.ema is not None:
            if not (last / "train_weights.safetensors").is_file():
                raise IRSTDError(f"{last}: no train_weights.safetensors; the run was not trained with train.ema")
            ckpt.load_weights(self.net, last / "train_weights.safetensors")
            ckpt.load_weights(self.ema.module, last / "model.safetensors")
        else:
            ckpt.load_weights(self.net, last / "model.safetensors")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.strategy.load_state_dict(state["strategy"])
        self.best = dict(state["best"])
        self.global_step = int(state["global_step"])
        restore_rng_state(state["rng"])
        return int(state["epoch"]), int(state["step_in_epoch"]), dict(state["running"])

    # ------------------------------------------------------------------------------- logging

    def _log_columns(self) -> list[str]:
        cols = list(_CORE_COLUMNS) + list(self.strategy.log_keys)
        cols += [f"val_{k}" for k in _VAL_KEYS] + [f"best_{self.cfg.eval.best_metric}"]
        return cols

    def _truncate_log(self, complete_epochs: int) -> None:
        path = self.run_dir / "log.csv"
        if not self.dist.is_main or not path.is_file():
            return
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= complete_epochs]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(kept)
        from irstd.data.io import atomic_write_bytes

        atomic_write_bytes(path, buf.getvalue().encode("utf-8"))

    def _append_log(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        path = self.run_dir / "log.csv"
        cols = self._log_columns()
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            if new:
                w.writerow(cols)
            w.writerow([_fmt(row.get(c)) for c in cols])
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch",) and v is not None and math.isfinite(v):
                    self.tb.add_scalar(k, v, row["epoch"])

    def _open_tensorboard(self):
        if not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.run_dir / "tb"))

    # ------------------------------------------------------------------------------- loop

    def fit(self) -> dict:
        """Train, validate, checkpoint, test. Returns the test metrics ({} without a test split)."""
        cfg = self.cfg
        probe = resolve_device(cfg.train.device)
        self.dist = du.init_distributed(probe.type)
        # Process-wide torch settings changed for the run are restored afterwards (library use).
        saved = (
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        try:
            return self._fit()
        finally:
            if getattr(self, "tb", None) is not None:
                self.tb.close()
            self.loader = None  # shuts persistent data-loader workers down
            torch.set_num_threads(saved[0])
            torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
            du.cleanup()

    def _fit(self) -> dict:
        cfg = self.cfg
        self.device = resolve_device(cfg.train.device, self.dist.local_rank)
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        self._setup_run_dir()
        self._setup_data()
        self._setup_model()
        self._setup_strategy()
        self.tb = None
        self.best = {"metric": cfg.eval.best_metric, "value": None, "epoch": None}
        self.global_step = 0
        start_epoch, start_step, running = 0, 0, {"loss_sum": 0.0, "count": 0, "images": 0, "time": 0.0, "extra": {}}
        if self.resume:
            start_epoch, start_step, running = self._load_last()
            self._truncate_log(start_epoch)
            if start_epoch >= cfg.train.epochs:
                self.log(f"{self.run_dir}: training already complete ({start_epoch} epochs); scoring the test split again")
            else:
                self.log(f"resuming {self.run_dir} at epoch {start_epoch + 1}, step {start_step}")
        self.tb = self._open_tensorboard()
        from irstd.models import count_parameters

        self.log(
            f"run {self.run_dir}: {cfg.model.name} ({count_parameters(self.net) / 1e6:.3f} M params) on "
            f"{self.device}{' x' + str(self.dist.world_size) if self.dist.enabled else ''}, "
            f"{len(self.train_data)} train / {len(self.val_set) if self.val_set else 0} val / "
            f"{len(self.test_set) if self.test_set else 0} test images, {self.sampler.steps} steps/epoch"
        )
        for epoch in range(start_epoch, cfg.train.epochs):
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                running = {"loss_sum": 0.0, "count": 0, "images": 0, "time": 0.0, "extra": {}}
            self._train_epoch(epoch, first, running)
        return self._finish()

    def _train_epoch(self, epoch: int, first_step: int, running: dict) -> None:
        cfg = self.cfg
        steps = self.sampler.steps
        self.sampler.set_epoch(epoch, first_step)
        self.model.train()
        bar = None
        if self.dist.is_main and cfg.train.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=steps,
                initial=first_step,
                desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                leave=False,
                dynamic_ncols=True,
            )
        t0 = time.perf_counter()
        time_before = running["time"]
        step_in_epoch = first_step
        for batch in self.loader:
            ctx = self.ctx
            ctx.epoch, ctx.step, ctx.step_in_epoch = epoch, self.global_step, step_in_epoch
            ctx.logs = {}
            batch = {
                k: (v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
            }
            self.optimizer.zero_grad(set_to_none=True)
            out = self.strategy.training_step(self.model, batch, self.loss_fn, ctx)
            loss = out["loss"]
            if not torch.isfinite(loss.detach()).all():
                raise IRSTDError(
                    f"training diverged: loss is {float(loss)} at epoch {epoch + 1}, step {step_in_epoch + 1} "
                    f"(try a lower optim.lr or a longer schedule.warmup_epochs)"
                )
            self.scaler.scale(loss).backward()
            if cfg.train.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.train.grad_clip)
            scale_before = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            # GradScaler lowers its scale exactly when it skipped the step (inf/NaN gradients)
            ctx.step_skipped = self.scaler.is_enabled() and self.scaler.get_scale() < scale_before
            running["lr"] = self.scheduler.get_last_lr()[0]  # the rate this step used
            self.scheduler.step()
            if self.ema is not None and not ctx.step_skipped:
                self.ema.update(self.net, self.global_step)
            self.strategy.after_step(self.model, batch, ctx)
            self.global_step += 1
            step_in_epoch += 1
            n_img = int(batch["image"].shape[0]) * self.dist.world_size
            running["loss_sum"] += float(loss.detach())
            running["count"] += 1
            running["images"] += n_img
            for k, v in ctx.logs.items():
                s, c = running["extra"].get(k, (0.0, 0))
                running["extra"][k] = (s + float(v), c + 1)
            running["time"] = time_before + (time.perf_counter() - t0)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{running['loss_sum'] / running['count']:.4f}",
                    lr=f"{running['lr']:.2e}",
                    img_s=f"{running['images'] / max(running['time'], 1e-9):.1f}",
                )
            interval = cfg.train.checkpoint_interval
            if interval and self.global_step % interval == 0 and step_in_epoch < steps:
                self._save_last(epoch, step_in_epoch, running)
        if bar is not None:
            bar.close()
        self.strategy.on_epoch_end(epoch, self.ctx)
        self._end_epoch(epoch, running)

    def _end_epoch(self, epoch: int, running: dict) -> None:
        cfg = self.cfg
        loss_mean = running["loss_sum"] / max(running["count"], 1)
        loss_mean = float(du.all_reduce_mean(torch.tensor(loss_mean, dtype=torch.float64)))
        row = {
            "epoch": epoch + 1,
            "step": self.global_step,
            "lr": running.get("lr", self.scheduler.get_last_lr()[0]),
            "loss": loss_mean,
            "images_per_s": running["images"] / max(running["time"], 1e-9),
            "epoch_time_s": running["time"],
        }
        for k, (s, c) in running["extra"].items():
            row[k] = s / max(c, 1)
        last_epoch = epoch + 1 == cfg.train.epochs
        msg = f"epoch {epoch + 1}/{cfg.train.epochs} loss {loss_mean:.4f} ({row['images_per_s']:.1f} img/s)"
        if self.val_set is not None and ((epoch + 1) % cfg.train.eval_interval == 0 or last_epoch):
            val = evaluate(
                self.eval_net,
                self.val_set,
                self.device,
                cfg.eval.threshold,
                in_chans=cfg.model.in_chans,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
            )
            for k in _VAL_KEYS:
                row[f"val_{k}"] = val.get(k)
            key = cfg.eval.best_metric
            value = float(val[key])
            if self.best["value"] is None or (math.isfinite(value) and value > self.best["value"]):
                self.best = {"metric": key, "value": value, "epoch": epoch + 1}
                self._save_best(epoch + 1, {k: v for k, v in val.items() if not isinstance(v, dict)})
            msg += (
                f" | val IoU {val['IoU']:.4f} nIoU {val['nIoU']:.4f} Pd {val['Pd']:.4f} "
                f"Fa {val['Fa'] * 1e6:.2f}e-6 | best {key} {self.best['value']:.4f} @ {self.best['epoch']}"
            )
        row[f"best_{cfg.eval.best_metric}"] = self.best["value"]
        self._append_log(row)
        self._save_last(epoch + 1, 0, {"loss_sum": 0.0, "count": 0, "images": 0, "time": 0.0, "extra": {}})
        self.log(msg)

    def _finish(self) -> dict:
        cfg = self.cfg
        du.barrier()
        which = "best" if self.val_set is not None and ckpt.checkpoint_dir(self.run_dir, "best") else "last"
        if self.test_set is None:
            self.log(f"done: {self.run_dir} (no test split configured)")
            return {}
        folder = ckpt.checkpoint_dir(self.run_dir, which) if self.dist.is_main else self.run_dir / which
        du.barrier()
        ckpt.load_weights(ckpt.unwrap(self.eval_net), folder / "model.safetensors")
        info_path = folder / "info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        if cfg.eval.save_test_masks:
            # Only rank 0 writes, so with masks to save it scores the whole split alone.
            metrics = None
            if self.dist.is_main:
                metrics = evaluate(
                    ckpt.unwrap(self.eval_net),
                    self.test_set,
                    self.device,
                    cfg.eval.threshold,
                    in_chans=cfg.model.in_chans,
                    save_dir=self.run_dir / "test_masks",
                    progress=cfg.train.progress,
                    desc="test",
                )
            metrics = du.broadcast_object(metrics)
        else:
            metrics = evaluate(
                self.eval_net,
                self.test_set,
                self.device,
                cfg.eval.threshold,
                in_chans=cfg.model.in_chans,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                progress=cfg.train.progress,
                desc="test",
            )
        report = {
            **metrics,
            "checkpoint": which,
            "epoch": info.get("epoch"),
            "split": cfg.data.test_split,
            "dataset": str(Path(cfg.data.root).expanduser().resolve()),
            "threshold": cfg.eval.threshold,
        }
        if self.dist.is_main:
            from irstd.data.io import atomic_write_bytes

            atomic_write_bytes(
                self.run_dir / "test_metrics.json", (json.dumps(report, indent=2, default=float) + "\n").encode()
            )
        self.test_metrics = report
        self.log(
            f"test ({which} checkpoint, epoch {info.get('epoch')}): IoU {metrics['IoU']:.4f} nIoU {metrics['nIoU']:.4f} "
            f"Pd {metrics['Pd']:.4f} Fa {metrics['Fa'] * 1e6:.2f}e-6 F1 {metrics['F1']:.4f} -> "
            f"{self.run_dir / 'test_metrics.json'}"
        )
        du.barrier()
        return report
