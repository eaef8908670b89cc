"""The engine: training, evaluation, prediction and checkpoints.

* :class:`Trainer` (:mod:`irstd.engine.trainer`): ``Trainer(cfg, run_dir).fit()`` runs ``irstd train``.
* :func:`evaluate` (:mod:`irstd.engine.evaluator`): metrics at original resolution.
* :class:`Detector`, :func:`load_detector`, :func:`load_default_detector`
  (:mod:`irstd.engine.predictor`): detection on arbitrary frames (tiling for large ones).
* :mod:`irstd.engine.checkpoint`: safetensors weights, training state, crash-safe checkpoint dirs.
* :mod:`irstd.engine.losses`, :mod:`irstd.engine.optim`, :mod:`irstd.engine.seed`,
  :mod:`irstd.engine.loader`, :mod:`irstd.engine.distributed`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from irstd._lazy import lazy_exports

_EXPORTS = {
    "irstd.engine.trainer": ("Trainer", "new_run_dir", "model_metadata"),
    "irstd.engine.device": ("resolve_device",),
    "irstd.engine.evaluator": ("evaluate", "forward_logits", "probability_to_png"),
    "irstd.engine.predictor": (
        "Detector",
        "find_targets",
        "load_detector",
        "load_default_detector",
        "make_overlay",
        "DEFAULT_WEIGHTS",
        "DEFAULT_CARD",
    ),
    "irstd.engine.checkpoint": ("save_weights", "load_weights", "read_state_dict", "read_weights_metadata"),
    "irstd.engine.losses": ("SegLoss", "build_loss", "soft_iou_loss", "dice_loss", "bce_loss", "focal_loss"),
    "irstd.engine.optim": ("LRScheduler", "build_optimizer", "build_scheduler", "lr_at"),
    "irstd.engine.seed": ("seed_everything",),
}
_WHERE, __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


if TYPE_CHECKING:
    from irstd.engine.checkpoint import load_weights, read_state_dict, read_weights_metadata, save_weights
    from irstd.engine.evaluator import evaluate, forward_logits, probability_to_png
    from irstd.engine.losses import SegLoss, bce_loss, build_loss, dice_loss, focal_loss, soft_iou_loss
    from irstd.engine.optim import LRScheduler, build_optimizer, build_scheduler, lr_at
    from irstd.engine.predictor import (
        DEFAULT_CARD,
        DEFAULT_WEIGHTS,
        Detector,
        find_targets,
        load_default_detector,
        load_detector,
        make_overlay,
    )
    from irstd.engine.seed import seed_everything
    from irstd.engine.device import resolve_device
    from irstd.engine.trainer import Trainer, model_metadata, new_run_dir

__all__ = sorted(_WHERE)
