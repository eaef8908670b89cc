"""Evaluation at the original image size: pad to the model's stride, predict, crop back, score.

Images of a split may differ in size, so evaluation runs one image at a time (batch size 1) and
never resizes. Scores are :class:`irstd.metrics.SegmentationMetrics` at the given probability
threshold. Under DDP each process scores every ``world_size``-th image and the metric states are
summed with ``SegmentationMetrics.sync()``, so every process gets the global figures.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from irstd.engine.checkpoint import unwrap

__all__ = ["model_input", "forward_logits", "evaluate", "probability_to_png"]


def model_input(image: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Repeat a grey ``B x 1 x H x W`` batch to the model's ``in_chans`` channels (1: unchanged)."""
    if in_chans == 1 or image.shape[1] == in_chans:
        return image
    return image.expand(-1, in_chans, -1, -1)


def forward_logits(model: nn.Module, image: torch.Tensor, in_chans: int = 1) -> torch.Tensor:
    """Logits ``B x 1 x H x W`` of an eval-mode model for a batch of any size (padded to
    ``model.stride`` with 0, the normalised mean, and cropped back)."""
    from irstd.data import crop_to, pad_to_stride

    stride = int(getattr(unwrap(model), "stride", 1) or 1)
    x, size = pad_to_stride(model_input(image, in_chans), stride)
    out = model(x)
    if isinstance(out, (list, tuple)):
        out = out[0]
    return crop_to(out, size)


def probability_to_png(prob: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as a 16-bit image (``round(p * 65535)``), readable by
    :func:`irstd.data.io.read_probability`."""
    return np.round(np.clip(prob, 0.0, 1.0) * 65535.0).astype(np.uint16)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset,
    device: torch.device | str,
    threshold: float = 0.5,
    *,
    in_chans: int = 1,
    save_dir: str | os.PathLike | None = None,
    save_probs: bool = False,
    curves: bool = False,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
    desc: str = "eval",
    on_image=None,
    probability=None,
) -> dict:
    """Score ``model`` on every sample of ``dataset`` (an :class:`irstd.data.IRSTDDataset`).

    Args:
        model: network (DDP wrapper allowed); put in eval mode for the call, mode restored after.
        dataset: items ``{"image": 1xHxW, "mask": 1xHxW, "id": str}`` at original size.
        device: where to run.
        threshold: probability threshold in [0, 1].
        in_chans: model input channels (grey is repeated).
        save_dir: if given, write ``<id>.png`` binary masks (0/255) there, and with ``save_probs``
            ``<id>_prob.png`` 16-bit probability maps.
        curves: also accumulate ROC / Pd-Fa curves (adds ``AUC``; curves under the ``curves`` key).
        rank, world_size: DDP sharding; states are reduced across processes.
        progress: show a tqdm bar (rank 0, when stderr is a terminal).
        on_image: called as ``on_image(index, prob, mask)`` (float32 and bool H x W arrays at the
            original size) after each image is scored, e.g. to report or draw it.
        probability: instead of a network (``model`` then ``None``), a function from a raw frame
            (native dtype H x W, read by ``dataset.load_arrays``) to probabilities in [0, 1],
            e.g. ``ClassicDetector.probability`` of a classic method (``irstd test --method``).

    Returns:
        ``SegmentationMetrics.compute()`` (``IoU``, ``nIoU``, ``Pd``, ``Fa``, ``F1``, ...) plus
        ``num_images`` and ``nIoU_empty_gt`` (the nIoU rule); with ``curves`` also ``curves``.
    """
    from irstd.data.io import write_image
    from irstd.metrics import SegmentationMetrics

    net = unwrap(model) if probability is None else None
    was_training = net is not None and net.training
    if net is not None:
        net.eval()
        from irstd.models import fuse_for_inference

        fused = fuse_for_inference(net)  # a fresh copy per call: it folds the weights as they are now
    device = torch.device(device)
    metrics = SegmentationMetrics(threshold=threshold, input="probs", curves=curves)
    if save_dir is not None:
        save_dir = Path(save_dir)
        if rank == 0:
            save_dir.mkdir(parents=True, exist_ok=True)
    indices = range(rank, len(dataset), world_size)
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        # disable=None: only on a terminal, so logs and error output carry no bar fragments
        bar = tqdm(total=len(indices), desc=desc, leave=False, dynamic_ncols=True, disable=None)
    try:
        for i in indices:
            if probability is not None:
                raw, mask = dataset.load_arrays(i)
                item = {"id": dataset.ids[i]}
                prob = np.asarray(probability(raw), dtype=np.float32)
            else:
                item = dataset[i]
                image = item["image"][None].to(device)
                logits = forward_logits(fused, image, in_chans)
                prob = torch.sigmoid(logits.float())[0, 0].cpu().numpy()
                mask = item["mask"][0].numpy() > 0.5
            metrics.update(prob, mask)
            if save_dir is not None:
                save_dir.mkdir(parents=True, exist_ok=True)
                write_image(save_dir / f"{item['id']}.png", ((prob > threshold) * 255).astype(np.uint8))
                if save_probs:
                    write_image(save_dir / f"{item['id']}_prob.png", probability_to_png(prob))
            if on_image is not None:
                on_image(i, prob, mask)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if net is not None:
            net.train(was_training)
    if world_size > 1:
        metrics.sync()
    out = dict(metrics.compute())
    out["num_images"] = len(dataset)
    out["nIoU_empty_gt"] = metrics.empty_gt
    if curves:
        out["curves"] = _jsonable(metrics.compute_curves())
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
