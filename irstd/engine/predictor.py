"""Detection on arbitrary infrared frames: any size, mode and bit depth; tiling for large frames.

Pipeline for one frame (:meth:`Detector.predict`):

1. the frame is read by :func:`irstd.data.io.read_image` (native bit depth) and normalised as a
   whole by :func:`irstd.data.normalize_image`, exactly as in training;
2. frames whose sides fit in ``tile`` pixels run in one pass (padded to the model's stride, cropped
   back); larger frames are cut into ``tile x tile`` windows overlapping by ``overlap`` pixels, each
   window's probabilities are weighted by a linear ramp that falls towards the window edges (where
   the network sees less context) and the weighted sum is divided by the summed weights, so seams
   vanish and the memory use is bounded by one window whatever the frame size;
3. probabilities above ``threshold`` form the mask; its 8-connected components are the detections
   (centroid, bounding box, area, peak and mean probability), the same connectivity the Pd/Fa
   metrics use.

The default detector is the pair ``irstd/weights/default.safetensors`` + ``default.yaml`` (model
name, kwargs, threshold, notes) shipped in the package; :func:`load_default_detector` loads it.
Zoo models with weights of their own in the package (:data:`SHIPPED_MODELS`: ``irstd_diff``, as
``irstd_diff.safetensors`` + ``irstd_diff.yaml``) load them when named without weights.

Diffusion models (``irstd_diff``) sample their mask; ``sampling`` (sampler, steps, ensemble, seed)
overrides the stored settings and is an error for any other model.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from irstd.engine.checkpoint import load_weights, read_weights_metadata, unwrap
from irstd.engine.evaluator import forward_logits
from irstd.errors import IRSTDError

__all__ = [
    "Detector",
    "Prediction",
    "find_targets",
    "frame_line",
    "make_overlay",
    "tile_starts",
    "ramp_weights",
    "load_detector",
    "load_default_detector",
    "load_shipped_detector",
    "apply_sampling",
    "predict_files",
    "DEFAULT_WEIGHTS",
    "DEFAULT_CARD",
    "SHIPPED_MODELS",
]

_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = _WEIGHTS_DIR / "default.safetensors"
DEFAULT_CARD = _WEIGHTS_DIR / "default.yaml"
# Zoo models that ship weights and a model card of their own:
# name -> (weights, card, label, the bundled config that trains them).
SHIPPED_MODELS = {
    "irstd_diff": (
        _WEIGHTS_DIR / "irstd_diff.safetensors", _WEIGHTS_DIR / "irstd_diff.yaml", "IRSTD-Diff", "nuaa_irstd_diff_cpu"
    ),
}


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window starts covering ``[0, length)`` with windows of ``tile`` overlapping by >= ``overlap``.

    The last window ends exactly at ``length``; ``length <= tile`` gives ``[0]``.
    """
    if length <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def ramp_weights(size: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D blending weights of one window side: 1 in the middle, a linear ramp over ``overlap``
    pixels towards a side shared with another window, flat (1) at a side on the frame border.
    Values lie in (0, 1]."""
    w = np.ones(size, dtype=np.float32)
    if overlap <= 0:
        return w
    ramp = (np.arange(size, dtype=np.float32) + 0.5) / overlap
    if not at_start:
        w = np.minimum(w, ramp)
    if not at_end:
        w = np.minimum(w, ramp[::-1])
    return w


@dataclass
class Prediction:
    """Result of :meth:`Detector.predict` for one frame.

    Attributes:
        prob: ``float32 H x W`` probabilities in [0, 1] at the frame's size.
        mask: ``bool H x W``, ``prob > threshold``.
        detections: one dict per 8-connected target (see :func:`find_targets`).
    """

    prob: np.ndarray
    mask: np.ndarray
    detections: list[dict] = field(default_factory=list)


def find_targets(prob: np.ndarray, threshold: float = 0.5) -> list[dict]:
    """Targets of a probability map: the 8-connected components of ``prob > threshold``.

    Returns:
        One dict per component, in raster order of their first pixel::

            {"centroid": [x, y],            # mean pixel position (x = column), float
             "bbox": [x_min, y_min, x_max, y_max],   # inclusive pixel coordinates
             "area": pixels, "score": peak probability, "mean_score": mean probability}
    """
    from scipy import ndimage

    mask = prob > threshold
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    objects = ndimage.find_objects(labels)
    areas = ndimage.sum_labels(np.ones_like(prob, dtype=np.float64), labels, index)
    peaks = ndimage.maximum(prob, labels, index)
    means = ndimage.mean(prob, labels, index)
    centres = ndimage.center_of_mass(np.ones_like(prob, dtype=np.float64), labels, index)
    out = []
    for i in range(n):
        rows, cols = objects[i]
        cy, cx = centres[i]
        out.append(
            {
                "centroid": [round(float(cx), 3), round(float(cy), 3)],
                "bbox": [int(cols.start), int(rows.start), int(cols.stop - 1), int(rows.stop - 1)],
                "area": int(areas[i]),
                "score": round(float(peaks[i]), 6),
                "mean_score": round(float(means[i]), 6),
            }
        )
    return out


def _display(image: np.ndarray) -> np.ndarray:
    """8-bit display version of a frame of any depth: 0.5..99.5 percentile stretch."""
    x = image.astype(np.float64)
    lo, hi = np.percentile(x, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    return np.clip((x - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


# Overlay colours (RGB). Detections without ground truth keep the yellow of the boxes; against
# ground truth, hits, misses and false alarms get colours far apart in hue (green, magenta, orange)
# and two shapes (circles around ground-truth targets, squares around false predictions).
DETECTION_COLOUR = (255, 220, 0)
HIT_COLOUR = (0, 230, 0)
MISS_COLOUR = (255, 0, 255)
FALSE_ALARM_COLOUR = (255, 140, 0)


def _line_width(shape: tuple[int, int]) -> int:
    return max(1, int(round(max(shape) / 800)))


def _mark(rgb: np.ndarray, centre_rc, area: int, colour, shape: str, thick: int) -> None:
    import cv2

    half = int(math.ceil(math.sqrt(max(int(area), 1)) / 2)) + 3 + 2 * thick
    x, y = int(round(float(centre_rc[1]))), int(round(float(centre_rc[0])))
    if shape == "circle":
        cv2.circle(rgb, (x, y), int(round(half * 1.3)), colour, thick)
    else:
        cv2.rectangle(rgb, (x - half, y - half), (x + half, y + half), colour, thick)


def _legend(rgb: np.ndarray, entries: list[tuple[str, tuple[int, int, int], str]], thick: int) -> None:
    """Draw ``(label, colour, shape)`` entries in the top-left corner on a darkened panel."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.35, min(rgb.shape[:2]) / 700)
    text_thick = max(1, int(round(scale * 1.5)))
    sizes = [cv2.getTextSize(label, font, scale, text_thick)[0] for label, _, _ in entries]
    line_h = max(hgt for _, hgt in sizes) + int(8 * scale) + 2
    swatch = line_h - 4
    pad = 3
    width = min(rgb.shape[1], pad * 3 + swatch + max(wd for wd, _ in sizes))
    height = min(rgb.shape[0], pad * 2 + line_h * len(entries))
    panel = rgb[:height, :width]
    panel[...] = (panel * 0.35).astype(np.uint8)
    for k, ((label, colour, shape), (_, hgt)) in enumerate(zip(entries, sizes)):
        top = pad + k * line_h
        cx, cy = pad + swatch // 2, top + line_h // 2
        if shape == "circle":
            cv2.circle(rgb, (cx, cy), swatch // 2 - 1, colour, thick)
        else:
            cv2.rectangle(rgb, (pad + 1, top + 3), (pad + swatch - 1, top + line_h - 3), colour, thick)
        cv2.putText(rgb, label, (pad * 2 + swatch, cy + hgt // 2), font, scale, colour, text_thick, cv2.LINE_AA)


def make_overlay(image: np.ndarray, mask: np.ndarray, detections: list[dict], match=None) -> np.ndarray:
    """RGB ``uint8`` picture of a frame with a legend in the top-left corner.

    Without ground truth (``match`` None): the mask tinted red and a box around each detection.
    With ``match`` (:func:`irstd.metrics.match_targets` of the mask against the ground truth, the
    Pd/Fa rule): a green circle around each ground-truth target hit, a magenta circle around each
    one missed and an orange square around each false alarm.
    """
    import cv2

    grey = _display(image)
    rgb = np.stack([grey, grey, grey], axis=-1)
    h, w = mask.shape
    thick = _line_width(mask.shape)
    if match is None:
        if mask.any():
            rgb[mask] = (0.4 * rgb[mask] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
        margin = 3 + 2 * thick
        for det in detections:
            x0, y0, x1, y1 = det["bbox"]
            cv2.rectangle(
                rgb,
                (max(x0 - margin, 0), max(y0 - margin, 0)),
                (min(x1 + margin, w - 1), min(y1 + margin, h - 1)),
                DETECTION_COLOUR,
                thick,
            )
        _legend(rgb, [(f"detection ({len(detections)})", DETECTION_COLOUR, "square")], thick)
        return rgb
    for centre, area, hit in zip(match.gt.centroids, match.gt.areas, match.hit):
        _mark(rgb, centre, area, HIT_COLOUR if hit else MISS_COLOUR, "circle", thick)
    false = match.false_alarm
    for centre, area in zip(match.pred.centroids[false], match.pred.areas[false]):
        _mark(rgb, centre, area, FALSE_ALARM_COLOUR, "square", thick)
    c = match.counts
    _legend(
        rgb,
        [
            (f"hit ({c['hits']})", HIT_COLOUR, "circle"),
            (f"miss ({c['misses']})", MISS_COLOUR, "circle"),
            (f"false alarm ({c['false_alarms']})", FALSE_ALARM_COLOUR, "square"),
        ],
        thick,
    )
    return rgb


def frame_line(name, shape: tuple[int, int], detections: list[dict], match=None, dtype=None) -> str:
    """The per-frame report line: ``N detection(s)`` without ground truth; with ``match``
    (:func:`irstd.metrics.match_targets`), the ground-truth targets, hits, misses and false alarms."""
    h, w = shape
    head = f"{name}: {w}x{h}" + (f" {dtype}" if dtype is not None else "")
    if match is None:
        return f"{head}, {len(detections)} detection(s)"
    c = match.counts
    return (
        f"{head}, {c['targets']} target(s): {c['hits']} hit(s), {c['misses']} miss(es), "
        f"{c['false_alarms']} false alarm(s)"
    )


class Detector:
    """A trained network ready to detect targets in frames of any size.

    Args:
        model: network following the zoo interface (logits; ``stride`` attribute).
        threshold: probability threshold in [0, 1].
        device: ``None``/``"auto"`` picks CUDA, MPS or CPU.
        in_chans: network input channels (grey is repeated).
        tile: window side for large frames (rounded up to the stride); frames with both sides
            <= tile run in one pass.
        overlap: overlap of neighbouring windows, pixels (< tile).
        tile_batch: windows per forward pass (more is faster on GPUs, costs memory).
        name: label for messages.
    """

    def __init__(
        self,
        model: nn.Module,
        threshold: float = 0.5,
        device: str | torch.device | None = None,
        in_chans: int = 1,
        tile: int = 512,
        overlap: int = 64,
        tile_batch: int = 1,
        name: str = "model",
    ):
        from irstd.engine.device import resolve_device

        if not 0.0 <= float(threshold) <= 1.0:
            raise IRSTDError(f"threshold must be in [0, 1], got {threshold}")
        self.device = resolve_device("auto" if device is None else str(device))
        from irstd.models import fuse_for_inference

        # An inference copy (BatchNorm folded): later edits of ``model`` need a new Detector.
        self.model = fuse_for_inference(unwrap(model).to(self.device))
        self.threshold = float(threshold)
        self.in_chans = int(in_chans)
        self.stride = int(getattr(self.model, "stride", 1) or 1)
        self.tile = int(math.ceil(int(tile) / self.stride) * self.stride)
        self.overlap = int(overlap)
        if not 0 <= self.overlap < self.tile:
            raise IRSTDError(f"tile overlap must be in [0, tile={self.tile}), got {overlap}")
        self.tile_batch = max(int(tile_batch), 1)
        self.name = name

    def __repr__(self) -> str:
        return (
            f"Detector({self.name}, threshold={self.threshold}, device={self.device}, "
            f"tile={self.tile}, overlap={self.overlap})"
        )

    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(forward_logits(self.model, x.to(self.device), self.in_chans).float()).cpu()

    @torch.no_grad()
    def probability(self, image: np.ndarray) -> np.ndarray:
        """Probabilities (``float32 H x W`` in [0, 1]) for a raw frame of any dtype (H x W)."""
        from irstd.data import normalize_image

        image = np.asarray(image)
        if image.ndim != 2:
            raise IRSTDError(f"expected a 2-D grey frame, got shape {image.shape}")
        x = torch.from_numpy(normalize_image(image))
        h, w = x.shape
        if h <= self.tile and w <= self.tile:
            return self._run(x[None, None])[0, 0].numpy()
        th, tw = min(self.tile, h), min(self.tile, w)
        rows, cols = tile_starts(h, th, self.overlap), tile_starts(w, tw, self.overlap)
        acc = np.zeros((h, w), dtype=np.float32)
        norm = np.zeros((h, w), dtype=np.float32)
        windows = [(r, c) for r in rows for c in cols]
        for k in range(0, len(windows), self.tile_batch):
            chunk = windows[k : k + self.tile_batch]
            batch = torch.stack([x[r : r + th, c : c + tw] for r, c in chunk])[:, None]
            probs = self._run(batch)[:, 0].numpy()
            for (r, c), p in zip(chunk, probs):
                wy = ramp_weights(th, self.overlap, r == 0, r + th == h)
                wx = ramp_weights(tw, self.overlap, c == 0, c + tw == w)
                weight = wy[:, None] * wx[None, :]
                acc[r : r + th, c : c + tw] += p * weight
                norm[r : r + th, c : c + tw] += weight
        return acc / norm

    def predict(self, image: np.ndarray) -> Prediction:
        """Probabilities, mask and detections of one raw frame."""
        prob = self.probability(image)
        return Prediction(prob=prob, mask=prob > self.threshold, detections=find_targets(prob, self.threshold))


def _unique_stems(paths: list[Path]) -> list[str]:
    counts: dict[str, int] = {}
    stems = []
    for p in paths:
        n = counts.get(p.stem, 0)
        counts[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}__{n + 1}")
    return stems


def predict_files(
    detector: Detector,
    paths: list[Path],
    out: str | os.PathLike,
    *,
    save_prob: bool = False,
    overlay: bool = False,
    log=print,
    masks: dict | None = None,
    progress: bool = False,
) -> dict:
    """Run ``detector`` on image files and write the outputs of ``irstd predict`` into ``out``.

    Per image ``<stem>.png`` (0/255 mask at the original size), with ``save_prob`` the 16-bit
    probability map ``<stem>_prob.png``, with ``overlay`` an RGB ``<stem>_overlay.png``; for all
    images one ``detections.jsonl`` (one object per target). Same stems from different folders get
    ``__2``, ``__3`` suffixes. An unreadable file is reported through ``log`` and skipped; the others
    are still processed. Every file is written atomically.

    ``masks`` (``{str(image path): mask path}``) gives ground truth: each frame's line and overlay
    then show its targets hit, missed and the false alarms, matched as Pd and Fa match them.
    ``progress`` shows a bar on stderr when it is a terminal.

    Returns:
        ``{"processed": n, "detections": n, "failures": [(path, message), ...], "outputs": {path: stem}}``

    Raises:
        IRSTDError: no image could be processed (the message lists why); ``detections.jsonl`` is
            not written then.
    """
    import json

    from tqdm import tqdm

    from irstd.data.io import atomic_write_bytes, read_image, read_mask, write_image
    from irstd.engine.evaluator import probability_to_png
    from irstd.metrics import match_targets

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IRSTDError(f"{out}: cannot create output folder ({exc.strerror or exc})") from None
    lines, failures, outputs, total = [], [], {}, 0
    # disable=None: a bar only on a terminal; log lines are written around it, not through it
    bar = tqdm(
        list(zip(paths, _unique_stems(paths))),
        desc="predict",
        unit="img",
        leave=False,
        dynamic_ncols=True,
        disable=None if progress else True,
    )
    try:
        for path, stem in bar:
            try:
                image = read_image(path)
                truth = None if masks is None else read_mask(masks[str(path)])
                if truth is not None and truth.shape != image.shape:
                    raise IRSTDError(
                        f"{masks[str(path)]}: mask size {truth.shape[1]}x{truth.shape[0]} differs from "
                        f"image {path} size {image.shape[1]}x{image.shape[0]}"
                    )
                pred = detector.predict(image)
            except IRSTDError as exc:
                failures.append((str(path), str(exc)))
                continue
            match = None if truth is None else match_targets(pred.mask, truth)
            write_image(out / f"{stem}.png", pred.mask.astype(np.uint8) * 255)
            if save_prob:
                write_image(out / f"{stem}_prob.png", probability_to_png(pred.prob))
            if overlay:
                write_image(out / f"{stem}_overlay.png", make_overlay(image, pred.mask, pred.detections, match))
            for k, det in enumerate(pred.detections):
                lines.append(json.dumps({"image": str(path), "output": f"{stem}.png", "target": k, **det}))
            total += len(pred.detections)
            outputs[str(path)] = stem
            if log is not None:
                with tqdm.external_write_mode():
                    log(frame_line(path, image.shape, pred.detections, match, image.dtype))
    finally:
        bar.close()
    if not outputs:
        shown = "; ".join(msg for _, msg in failures[:5]) + (f"; ... and {len(failures) - 5} more" if len(failures) > 5 else "")
        raise IRSTDError(f"none of the {len(paths)} input(s) could be processed: {shown}")
    atomic_write_bytes(out / "detections.jsonl", "".join(line + "\n" for line in lines).encode())
    return {"processed": len(outputs), "detections": total, "failures": failures, "outputs": outputs}


# ----------------------------------------------------------------------------------- loading


def _build_model(name: str, kwargs: dict, in_chans: int, where: str) -> nn.Module:
    from irstd.models import create

    if not isinstance(kwargs, dict):
        raise IRSTDError(f"{where}: model kwargs must be a mapping")
    try:
        net = create(name, in_chans=in_chans, **kwargs)
    except TypeError as exc:
        raise IRSTDError(f"{where}: bad kwargs for model {name!r} ({exc})") from None
    # What built it, for irstd export's metadata; deep copies (the Detector's fused model) keep it.
    net.irstd_spec = {"model": name, "kwargs": dict(kwargs), "in_chans": int(in_chans)}
    return net


def apply_sampling(net: nn.Module, sampling: dict | None, name: str) -> str:
    """Set a diffusion model's sampling (``sampler``, ``steps``, ``ensemble``, ``seed``; ``None``
    entries keep the stored value) and return a label of the settings in use (``""`` for a model
    that does not sample).

    Raises:
        IRSTDError: settings given for a model that does not sample, or out of range.
    """
    given = {k: v for k, v in (sampling or {}).items() if v is not None}
    if not getattr(net, "can_sample", False):
        if given:
            what = "the conditional encoder alone (ne: false)" if getattr(net, "generative", False) else "not a diffusion model"
            raise IRSTDError(
                f"--{', --'.join(sorted(given))}: sampling settings apply to diffusion models (irstd_diff); {name} is {what}"
            )
        return ""
    s = net.configure_sampling(**given)
    extra = f", ensemble {s['ensemble']}" if s["ensemble"] > 1 else ""
    return f" [{s['sampler']} {s['steps']} steps{extra}, seed {s['seed']}]"


def _load_card_detector(
    weights: Path, card_path: Path, label: str, missing: str, device, sampling: dict | None, overrides: dict
) -> Detector:
    """A detector from a shipped weights file and its model card; ``missing`` words the error when
    either file is absent."""
    import yaml

    for path in (card_path, weights):
        if not path.is_file():
            raise IRSTDError(missing)
    try:
        card = yaml.safe_load(card_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise IRSTDError(f"{card_path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(card, dict) or not isinstance(card.get("model"), str):
        raise IRSTDError(f"{card_path}: needs a 'model' entry naming a zoo model")
    in_chans = int(card.get("in_chans", 1))
    model = _build_model(card["model"], card.get("kwargs") or {}, in_chans, str(card_path))
    load_weights(model, weights)
    settings = {
        "threshold": float(card.get("threshold", 0.5)),
        "tile": int(card.get("tile", 512)),
        "overlap": int(card.get("overlap", 64)),
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    tag = apply_sampling(model, sampling, f"{label} ({card['model']})")
    return Detector(model, device=device, in_chans=in_chans, name=f"{label} ({card['model']}){tag}", **settings)


def load_default_detector(
    device: str | torch.device | None = None, sampling: dict | None = None, **overrides
) -> Detector:
    """The detector shipped with irstd (``irstd/weights/default.safetensors`` + ``default.yaml``).

    ``default.yaml`` keys: ``model`` (required), ``kwargs``, ``in_chans`` (1), ``threshold`` (0.5),
    ``tile`` (512), ``overlap`` (64); other keys (``normalization``, ``notes``, ``data``, ...) are
    documentation and ignored. ``overrides`` replace ``threshold``, ``tile``, ``overlap``;
    ``sampling`` see :func:`apply_sampling`.

    Raises:
        IRSTDError: either file missing or malformed, weights not fitting the model.
    """
    missing = (
        f"the default detector is not installed (expected {DEFAULT_WEIGHTS.name} and "
        f"{DEFAULT_CARD.name} in {_WEIGHTS_DIR}); pass --model NAME --weights FILE or --run RUN_DIR"
    )
    for path in (DEFAULT_CARD, DEFAULT_WEIGHTS):
        if not path.is_file():
            raise IRSTDError(f"{path}: {missing}")
    return _load_card_detector(DEFAULT_WEIGHTS, DEFAULT_CARD, "default", missing, device, sampling, overrides)


def load_shipped_detector(
    model: str, device: str | torch.device | None = None, sampling: dict | None = None, **overrides
) -> Detector:
    """The weights shipped for zoo model ``model`` (:data:`SHIPPED_MODELS`), with its card's settings
    (the card's keys as in :func:`load_default_detector`).

    Raises:
        IRSTDError: ``model`` ships no weights, or they are not installed.
    """
    key = model.lower()
    if key not in SHIPPED_MODELS:
        raise IRSTDError(f"--model {model} needs --weights FILE (an untrained network detects nothing)")
    weights, card, label, config = SHIPPED_MODELS[key]
    missing = (
        f"no shipped {label} weights are installed yet (expected {weights.name} and {card.name} in {_WEIGHTS_DIR}); "
        f"train them with irstd train --config {config} and pass --run RUN_DIR, or give --weights FILE"
    )
    return _load_card_detector(weights, card, f"shipped {key}", missing, device, sampling, overrides)


def _run_weights(run_dir: Path, checkpoint: str) -> Path:
    from irstd.engine.checkpoint import checkpoint_dir

    order = (checkpoint,) if checkpoint != "auto" else ("best", "last")
    for name in order:
        folder = checkpoint_dir(run_dir, name)
        if folder is not None and (folder / "model.safetensors").is_file():
            return folder / "model.safetensors"
    raise IRSTDError(f"{run_dir}: no {' or '.join(order)} checkpoint with model.safetensors")


def load_detector(
    model: str | None = None,
    weights: str | os.PathLike | None = None,
    run: str | os.PathLike | None = None,
    *,
    model_kwargs: dict | None = None,
    in_chans: int | None = None,
    threshold: float | None = None,
    checkpoint: str = "auto",
    device: str | torch.device | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    sampling: dict | None = None,
) -> Detector:
    """A :class:`Detector` from a run directory, a weights file, or the shipped weights.

    * ``run``: the run's ``config.yaml`` gives model, kwargs, channels and threshold; weights from
      ``best/`` (else ``last/``; ``checkpoint`` forces one).
    * ``weights``: ``.safetensors`` written by irstd carry the model name and kwargs, so ``model``
      is optional; foreign ``.pth`` files need ``model`` (and ``model_kwargs`` if not default).
    * ``model`` alone: the weights shipped for it (:func:`load_shipped_detector`; ``irstd_diff``).
    * nothing: :func:`load_default_detector`.

    ``threshold``, ``tile``, ``overlap`` override the stored values when given; ``sampling``
    (``{"sampler", "steps", "ensemble", "seed"}``, ``None`` entries ignored) sets a diffusion
    model's sampling (:func:`apply_sampling`).
    """
    extra = {"tile": tile, "overlap": overlap}
    extra = {k: v for k, v in extra.items() if v is not None}
    if run is not None:
        if model is not None or weights is not None:
            raise IRSTDError("give either --run or --model/--weights, not both")
        from irstd.config import load_config

        run = Path(run)
        if not (run / "config.yaml").is_file():
            raise IRSTDError(f"{run}: not a run directory (no config.yaml)")
        cfg = load_config(run / "config.yaml")
        path = _run_weights(run, checkpoint)
        net = _build_model(cfg.model.name, cfg.model.kwargs, cfg.model.in_chans, str(run / "config.yaml"))
        load_weights(net, path)
        thr = cfg.eval.threshold if threshold is None else threshold
        tag = apply_sampling(net, sampling, f"the run's model {cfg.model.name}")
        return Detector(net, thr, device, cfg.model.in_chans, name=f"{cfg.model.name} ({path}){tag}", **extra)
    if weights is None:
        if model is not None:
            return load_shipped_detector(model, device=device, sampling=sampling, threshold=threshold, **extra)
        return load_default_detector(device=device, sampling=sampling, threshold=threshold, **extra)
    weights = Path(weights)
    from irstd.engine.onnx_backend import is_onnx_file

    if is_onnx_file(weights):
        apply_sampling(nn.Identity(), sampling, f"{weights} (ONNX)")
        return _onnx_detector(weights, model, threshold, extra)
    meta = read_weights_metadata(weights) if weights.is_file() else {}
    name = model or meta.get("model")
    if name is None:
        if not weights.exists():
            raise IRSTDError(f"{weights}: weights file not found")
        raise IRSTDError(f"{weights}: the file does not say which model it holds; give --model NAME")
    kwargs = model_kwargs if model_kwargs is not None else (meta.get("kwargs", {}) if meta.get("model") == name else {})
    chans = in_chans or (int(meta.get("in_chans", 1)) if meta.get("model") == name else 1)
    net = _build_model(name, kwargs, chans, str(weights))
    load_weights(net, weights)
    thr = threshold if threshold is not None else float(meta.get("threshold", 0.5))
    tag = apply_sampling(net, sampling, f"{name} ({weights})")
    return Detector(net, thr, device, chans, name=f"{name} ({weights}){tag}", **extra)


def _onnx_detector(path: Path, model: str | None, threshold: float | None, extra: dict) -> Detector:
    """The Detector of an ``.onnx`` file from ``irstd export``: the ONNX Runtime backend (CPU) with
    the threshold, channels, tile and overlap recorded in the file (arguments override them)."""
    from irstd.engine.onnx_backend import OnnxNetwork

    net = OnnxNetwork(path)
    meta = net.metadata
    if model is not None and model.lower() != str(meta["model"]).lower():
        raise IRSTDError(f"{path}: holds model {meta['model']!r}, not --model {model}")
    settings = {k: int(meta[k]) for k in ("tile", "overlap") if k in meta}
    settings.update(extra)
    thr = threshold if threshold is not None else float(meta.get("threshold", 0.5))
    return Detector(net, thr, "cpu", net.in_chans, name=f"{meta['model']} ({path}, onnxruntime)", **settings)
