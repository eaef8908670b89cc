"""The one configuration system of irstd: YAML files with inheritance and command-line overrides.

A config is a YAML mapping with the sections below (every key optional; defaults in the dataclasses).
Unknown keys are an error, so that a typo never silently trains with a default.

* ``base: other.yaml`` (optional): the file's values are merged over ``other.yaml``'s, recursively
  for mappings, replacing lists and scalars. Chains allowed. ``other.yaml`` is a path relative to the
  file that names it or, when no such file exists, the name of a bundled config (``base: nuaa_acm``).
* Bundled configs (one per protocol) are package data in ``irstd/configs/``; :func:`find_config`
  and ``irstd train --config NAME`` accept their name (``nuaa_acm`` or ``nuaa_acm.yaml``) from any
  directory, or a path to any YAML file.
* Overrides ``key.sub=value`` (command line) are applied after inheritance; the value is parsed as a
  YAML scalar or flow collection (``train.epochs=5``, ``optim.betas=[0.9,0.99]``, ``data.root=/d``).
  Numbers such as ``1e-3`` (which YAML 1.1 reads as a string) are accepted for float fields.
* ``model.kwargs`` and ``strategy.kwargs`` are free-form mappings passed to the constructors.
* Relative paths (``data.root``, ``output.dir``) are relative to the working directory.

The resolved config (all defaults filled in) is saved as ``<run_dir>/config.yaml`` and is itself a
valid config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable

from irstd.errors import IRSTDError

__all__ = [
    "Config",
    "ModelConfig",
    "DataConfig",
    "LossConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "EvalConfig",
    "StrategyConfig",
    "OutputConfig",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "save_config",
    "find_config",
    "list_configs",
    "CONFIG_DIR",
]

# Through the import system rather than a path beside the sources, so that a checkout, an editable
# install and an installed wheel all find the same package data.
CONFIG_DIR: Traversable = resources.files("irstd") / "configs"


@dataclass
class ModelConfig:
    """Which network: ``name`` from :func:`irstd.models.list_models`, its constructor ``kwargs``."""

    name: str = "acm"
    in_chans: int = 1
    kwargs: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    """Dataset and training crops.

    ``val_fraction`` of the ``train_split`` ids is carved (seeded by ``train.seed``) for validation;
    0 disables validation (the last checkpoint is then used for the test). ``test_split`` may be
    null to skip the final test. ``crop_size`` is the square training crop in pixels (smaller images
    are padded); ``target_prob`` the probability that a crop contains a target. ``full_scale`` is
    the intensity full scale corruptions act relative to (null: the dataset's rule,
    :func:`irstd.data.dataset.dataset_full_scale`; a corruption-based run records the value used).
    ``extra`` lists further training sources that fill a share of every batch
    (:mod:`irstd.data.mixed`): ``[{root: DIR, share: 0.125, split: train}, ...]``; a folder without
    ``masks/`` gives hard negatives (its unlabelled 70 % only). Validation and test use ``root`` only.
    """

    root: str | None = None
    train_split: str = "train"
    test_split: str | None = "test"
    val_fraction: float = 0.1
    crop_size: int = 256
    target_prob: float = 0.5
    flip: bool = True
    transpose: bool = True
    workers: int = 2
    skip_bad: bool = False
    full_scale: float | None = None
    extra: list[dict] = field(default_factory=list)


@dataclass
class LossConfig:
    """Training loss. ``name`` is one term or several joined by ``+`` (``bce+softiou``) from
    ``softiou``, ``bce``, ``focal``, ``dice``; ``weights`` one per term (default all 1).

    ``deep_supervision`` weights the outputs of deep-supervised models (element 0 = final):
    ``mean`` (equal weights summing to 1), ``sum`` (all 1), ``final`` (only element 0), or a list.
    ``smooth`` is the additive smoothing of Soft-IoU and Dice; ``per_image`` computes them per image
    and averages (otherwise pooled over the batch, as the public IRSTD code does).
    """

    name: str = "softiou"
    weights: list[float] | None = None
    deep_supervision: str | list[float] = "mean"
    smooth: float = 1.0
    per_image: bool = False
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    pos_weight: float | None = None


@dataclass
class OptimConfig:
    """Optimiser: ``adam``, ``adamw``, ``sgd`` or ``adagrad``. ``lr`` is the peak learning rate.

    ``betas`` and ``eps`` apply to Adam/AdamW, ``momentum`` and ``nesterov`` to SGD.
    ``decay_norm_and_bias: false`` exempts normalisation weights and biases from weight decay.
    """

    name: str = "adam"
    lr: float = 5e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    decay_norm_and_bias: bool = True


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped every iteration.

    ``name``: ``cosine`` (to ``min_lr`` at the last iteration), ``multistep`` (times ``gamma`` at each
    of ``milestones``, in epochs), ``poly`` (``(1 - t) ** power`` towards ``min_lr``) or ``constant``.
    ``warmup_epochs`` (may be fractional) of linear warm-up precede it; see
    :func:`irstd.engine.optim.lr_at` for the exact curve.
    """

    name: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 1e-5
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    power: float = 0.9


@dataclass
class TrainConfig:
    """Loop settings. ``batch_size`` is the global batch (split over DDP processes).

    ``eval_interval``: validate every N epochs (and after the last). ``checkpoint_interval``: also save
    ``last`` every N iterations inside an epoch (0: only at epoch ends). ``device``: ``auto``,
    ``cpu``, ``cuda``, ``cuda:1``, ``mps``. ``amp`` applies on CUDA only. ``grad_clip``: max global
    gradient norm (0: off). ``threads``: torch CPU threads (0: torch's default). ``ema``: decay of
    an exponential moving average of the weights per optimiser step (0: off; e.g. 0.999), with the
    warm-up ``min(ema, (1 + t) / (10 + t))`` after t steps; when on, validation, the best checkpoint,
    the test and ``last/model.safetensors`` use the averaged weights (:mod:`irstd.engine.ema`).
    ``memory_format``: layout of the convolution kernels while training, ``auto`` (channels-last on
    CPU, where a step is ~15 % faster), ``channels_last`` or ``contiguous``
    (:func:`irstd.models.training_layout`; checkpoints do not depend on it).
    """

    epochs: int = 100
    batch_size: int = 8
    eval_interval: int = 1
    checkpoint_interval: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    grad_clip: float = 0.0
    deterministic: bool = True
    progress: bool = True
    threads: int = 0
    sync_bn: bool = False
    ema: float = 0.0
    memory_format: str = "auto"


@dataclass
class EvalConfig:
    """Evaluation: probability ``threshold`` and the validation metric that picks ``best``."""

    threshold: float = 0.5
    best_metric: str = "IoU"
    save_test_masks: bool = False


@dataclass
class StrategyConfig:
    """Training strategy from :func:`irstd.strategies.list_strategies` and its constructor kwargs."""

    name: str = "supervised"
    kwargs: dict = field(default_factory=dict)


@dataclass
class OutputConfig:
    """Where runs go: ``<dir>/<name>-<timestamp>`` unless ``--out`` names the run directory."""

    dir: str = "runs"
    name: str | None = None


@dataclass
class Config:
    """A full training configuration (see the module docstring for the file format)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


# ----------------------------------------------------------------------------------- validation


def _type_ok(value: Any, spec: str) -> tuple[bool, Any]:
    """Check ``value`` against an annotation string such as ``"float | None"`` or ``"list[int]"``.

    Returns (ok, coerced value). Ints are accepted for floats; numeric strings (YAML 1.1 reads
    ``1e-3`` as a string) are accepted for floats.
    """
    for alt in (s.strip() for s in spec.split("|")):
        if alt == "None":
            if value is None:
                return True, None
        elif alt == "bool":
            if isinstance(value, bool):
                return True, value
        elif alt == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return True, value
        elif alt == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return True, float(value)
            if isinstance(value, str):
                try:
                    return True, float(value)
                except ValueError:
                    pass
        elif alt == "str":
            if isinstance(value, str):
                return True, value
        elif alt == "dict":
            if isinstance(value, dict):
                return True, value
        elif alt.startswith("list[") and alt.endswith("]"):
            if isinstance(value, (list, tuple)):
                inner = alt[5:-1]
                out = []
                for v in value:
                    ok, cv = _type_ok(v, inner)
                    if not ok:
                        break
                    out.append(cv)
                else:
                    return True, out
    return False, value


def _build(cls, data: Any, where: str, source: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise IRSTDError(f"{source}: '{where}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise IRSTDError(
                f"{source}: unknown config key '{path}'{extra}; valid keys here: {', '.join(fields)}"
            )
        f = fields[key]
        factory = f.default_factory
        if factory is not dataclasses.MISSING and isinstance(factory, type) and dataclasses.is_dataclass(factory):
            kwargs[key] = _build(factory, value, path, source)
            continue
        ok, coerced = _type_ok(value, str(f.type))
        if not ok:
            raise IRSTDError(f"{source}: config key '{path}' must be {f.type}, got {value!r}")
        kwargs[key] = coerced
    return cls(**kwargs)


# Validation metrics that can pick the best checkpoint (higher is better for each).
BEST_METRICS = ("IoU", "nIoU", "F1", "Pd", "PixAcc")


def _registries():
    """``(section, key) -> Registry`` of every config value that names registered code.

    Imported on use so that reading a config file (``irstd --help``, the model card) needs no torch.
    """
    from irstd.engine.losses import LOSSES
    from irstd.engine.optim import OPTIMIZERS, SCHEDULES
    from irstd.models import MODELS
    from irstd.strategies import STRATEGIES

    return {
        ("model", "name"): MODELS,
        ("optim", "name"): OPTIMIZERS,
        ("schedule", "name"): SCHEDULES,
        ("strategy", "name"): STRATEGIES,
    }, LOSSES


def _check_values(cfg: Config, source: str) -> None:
    def bad(msg: str):
        raise IRSTDError(f"{source}: {msg}")

    from irstd.engine.losses import DEEP_SUPERVISION

    named, losses = _registries()
    for (section, key), registry in named.items():
        value = getattr(getattr(cfg, section), key)
        if value not in registry:
            bad(f"{section}.{key}: {registry.unknown_message(value)}")
    if cfg.eval.best_metric not in BEST_METRICS:
        bad(f"eval.best_metric must be one of {', '.join(BEST_METRICS)}; got {cfg.eval.best_metric!r}")
    terms = [t.strip() for t in cfg.loss.name.split("+")]
    for t in terms:
        if t not in losses:
            bad(f"loss.name: {losses.unknown_message(t)}")
    if cfg.loss.weights is not None and len(cfg.loss.weights) != len(terms):
        bad(f"loss.weights has {len(cfg.loss.weights)} values for {len(terms)} loss terms")
    ds = cfg.loss.deep_supervision
    if isinstance(ds, str) and ds not in DEEP_SUPERVISION:
        bad(f"loss.deep_supervision must be one of {', '.join(DEEP_SUPERVISION)} or a list of weights; got {ds!r}")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        bad(f"data.val_fraction must be in [0, 1); got {cfg.data.val_fraction}")
    if not 0.0 <= cfg.data.target_prob <= 1.0:
        bad(f"data.target_prob must be in [0, 1]; got {cfg.data.target_prob}")
    for section, key, lo in (
        ("data", "crop_size", 1),
        ("data", "workers", 0),
        ("train", "epochs", 1),
        ("train", "batch_size", 1),
        ("train", "eval_interval", 1),
        ("train", "checkpoint_interval", 0),
        ("train", "threads", 0),
        ("model", "in_chans", 1),
    ):
        if getattr(getattr(cfg, section), key) < lo:
            bad(f"{section}.{key} must be >= {lo}")
    from irstd.models.inference import MEMORY_FORMATS

    if cfg.train.memory_format not in MEMORY_FORMATS:
        bad(f"train.memory_format must be one of {', '.join(MEMORY_FORMATS)}; got {cfg.train.memory_format!r}")
    if not 0.0 <= cfg.train.ema < 1.0:
        bad(f"train.ema must be in [0, 1) (0: off); got {cfg.train.ema}")
    if cfg.optim.lr <= 0:
        bad("optim.lr must be > 0")
    if cfg.schedule.min_lr < 0 or cfg.schedule.warmup_epochs < 0:
        bad("schedule.min_lr and schedule.warmup_epochs must be >= 0")
    if cfg.schedule.warmup_epochs >= cfg.train.epochs and cfg.schedule.warmup_epochs > 0:
        bad(f"schedule.warmup_epochs ({cfg.schedule.warmup_epochs}) must be < train.epochs ({cfg.train.epochs})")
    if len(cfg.optim.betas) != 2:
        bad("optim.betas must have two values")
    if not 0.0 <= cfg.eval.threshold <= 1.0:
        bad(f"eval.threshold must be in [0, 1]; got {cfg.eval.threshold}")
    from irstd.data.mixed import batch_counts, parse_extra

    try:
        extra = parse_extra(cfg.data.extra)
        if extra:
            batch_counts([e.share for e in extra], cfg.train.batch_size)
    except IRSTDError as exc:
        bad(str(exc))


def config_from_dict(data: dict, source: str = "<config>") -> Config:
    """Validate a nested dict (no ``base`` key) and build a :class:`Config`.

    Raises:
        IRSTDError: unknown key (with a suggestion), wrong type, or out-of-range value.
    """
    data = dict(data or {})
    data.pop("base", None)
    cfg = _build(Config, data, "", source)
    _check_values(cfg, source)
    return cfg


# ----------------------------------------------------------------------------------- files


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def list_configs() -> list[str]:
    """Names of the bundled configs (``irstd/configs/*.yaml``), sorted."""
    return sorted(f.name[: -len(".yaml")] for f in CONFIG_DIR.iterdir() if f.name.endswith(".yaml") and f.is_file())


def _locate(name: str, directory: Path | Traversable) -> Path | Traversable | None:
    """The file ``name`` in ``directory`` (or at an absolute ``name``); else, for a bare name, the
    bundled config of that name, with or without ``.yaml``."""
    file = directory / name
    if file.is_file():
        return file
    if Path(name).name == name:
        for candidate in (name, f"{name}.yaml"):
            bundled = CONFIG_DIR / candidate
            if bundled.is_file():
                return bundled
    return None


def _bundled_hint(name: str) -> str:
    names = list_configs()
    close = difflib.get_close_matches(Path(name).name.removesuffix(".yaml"), names, n=1)
    extra = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{extra}; bundled configs: {', '.join(names)}"


def find_config(name: str | os.PathLike | Traversable) -> Path | Traversable:
    """Resolve a config argument: an existing file (relative to the working directory), else the
    name of a bundled config (``nuaa_acm`` or ``nuaa_acm.yaml``, see :func:`list_configs`).

    Raises:
        IRSTDError: neither exists; the message lists the bundled names.
    """
    if isinstance(name, (str, os.PathLike)):
        name = os.fspath(name)
        found = _locate(name, Path())
    else:  # a Traversable such as CONFIG_DIR / "nuaa_acm.yaml"
        found = name if name.is_file() else None
    if found is None:
        raise IRSTDError(f"{name}: config file not found{_bundled_hint(str(name))}")
    return found


def _read_yaml(path: Path | Traversable) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IRSTDError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise IRSTDError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise IRSTDError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


def _load_chain(path: Path | Traversable, seen: tuple[str, ...]) -> dict:
    if isinstance(path, Path):
        path = path.resolve()
        directory: Path | Traversable = path.parent
    else:  # a bundled config outside the file system (zip import): its bases are bundled too
        directory = CONFIG_DIR
    if str(path) in seen:
        raise IRSTDError(f"{path}: circular 'base:' inheritance")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise IRSTDError(f"{path}: 'base' must be a file name")
    base_path = _locate(base, directory)
    if base_path is None:
        raise IRSTDError(f"{path}: base config {base} not found beside it{_bundled_hint(base)}")
    return _merge(_load_chain(base_path, seen + (str(path),)), data)


def _set_path(data: dict, dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    if not all(keys):
        raise IRSTDError(f"{source}: malformed override key {dotted!r}")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        elif not isinstance(child, dict):
            raise IRSTDError(f"{source}: cannot set {dotted!r}: '{k}' is not a section")
        node = child
    node[keys[-1]] = value


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key.sub=value`` strings to a nested dict (values parsed as YAML). Returns a new dict."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise IRSTDError(f"override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key == "base" or key.startswith("base."):
            raise IRSTDError(f"override {item!r}: 'base' cannot be overridden")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_path(data, key, value, f"override {item!r}")
    return data


def load_config(path: str | os.PathLike | Traversable | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a config file (following ``base:``), apply overrides, validate.

    Args:
        path: YAML file or the name of a bundled config (:func:`find_config`); None starts from
            the defaults.
        overrides: ``key.sub=value`` strings.
    """
    if path is None:
        data: dict = {}
        source = "<defaults>"
    else:
        file = find_config(path)
        data = _load_chain(file, ())
        source = str(file)
    if overrides:
        data = apply_overrides(data, overrides)
        source = f"{source} (with overrides)"
    return config_from_dict(data, source)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    from irstd.data.io import atomic_write_bytes

    atomic_write_bytes(path, cfg.to_yaml().encode("utf-8"))
