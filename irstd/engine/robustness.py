"""Robustness benchmark: one detector scored on a clean test split and on corrupted copies of it,
laid out as paper 002 (BALISTD), Table 2.

Protocol
--------
* Every image of the split is read once (:func:`irstd.data.io.read_image`, native dtype). The raw
  image is corrupted in its native dtype by :func:`irstd.corruptions.apply` for every
  (corruption, severity) pair, and only then normalised by :func:`irstd.data.normalize_image`,
  exactly as a corrupted file on disk would be: normalising first would undo brightness and
  contrast by construction.
* Nothing is written to disk: the corrupted test sets exist only on the fly. Each corrupted image
  has its own seed, ``derive_seed(corruption_seed(seed, name, severity), image id)`` with
  :func:`corruption_seed` = ``derive_seed(seed, "<name>/<severity>")``, so the numbers do not
  depend on processing order or on which other corruptions are run. The per-pair seed is the
  ``--seed`` of ``irstd corrupt``: ``irstd corrupt --corruption NAME --severity S --seed
  <corruption_seed>`` writes the very images scored here, and ``irstd test`` on that copy gives
  the same metrics.
* Images are corrupted relative to the dataset's one intensity full scale
  (:attr:`irstd.data.IRSTDDataset.full_scale`, :func:`irstd.data.dataset.dataset_full_scale`: 255
  for 8-bit data; for 16-bit data the smallest ``2**b - 1``, b in 8, 10, 12, 14, 16, holding the
  largest value of all images in ``images/``, found by reading them once more; 1.0 for float data),
  unless ``full_scale`` is given. It is the scale the training strategies corrupt crops with and
  ``irstd corrupt`` writes copies with, and it is recorded as ``meta.full_scale``.
* The network runs at the original size, padded to its stride and cropped back
  (:func:`irstd.engine.evaluator.forward_logits`, the evaluator's code); the corrupted versions of
  one image share its size, so they are batched ``batch_size`` at a time.
* Scores: :class:`irstd.metrics.SegmentationMetrics` at the detector's threshold, per (corruption,
  severity) and on the clean split, and RCE = (IoU_clean - IoU_cor) / IoU_clean
  (:func:`irstd.metrics.rce`, a fraction; NaN when the clean IoU is 0). Per corruption, every value
  is the mean over the severities (the mean of the RCEs equals the RCE of the mean IoU); the
  ``average`` row is the mean over corruptions, as the "Average" column of paper 002's Table 2.

Severities are on paper 002's 3-step scale by default (1, 2, 3 = ImageNet-C levels 1, 3, 5; see
:mod:`irstd.corruptions.severity`); ``levels=5`` selects the ImageNet-C scale.

Usage::

    from irstd.engine import load_detector
    from irstd.engine.robustness import robustness_benchmark, write_robustness, robustness_markdown
    res = robustness_benchmark(load_detector(run="runs/x"), "datasets/NUAA-SIRST", "test")
    print(robustness_markdown(res)); write_robustness(res, "runs/x/robustness")
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from irstd.errors import IRSTDError

__all__ = [
    "DISPLAY_NAMES",
    "ROW_METRICS",
    "check_corruption_list",
    "check_severity_list",
    "corruption_seed",
    "image_seed",
    "display_name",
    "robustness_benchmark",
    "robustness_rows",
    "robustness_csv",
    "robustness_markdown",
    "results_json",
    "write_robustness",
]

DISPLAY_NAMES: dict[str, str] = {
    "gaussian_noise": "Gaussian noise",
    "shot_noise": "Shot noise",
    "impulse_noise": "Impulse noise",
    "defocus_blur": "Defocus blur",
    "motion_blur": "Motion blur",
    "gaussian_blur": "Gaussian blur",
    "brightness": "Brightness",
    "contrast": "Contrast",
    "pixelate": "Pixelate",
    "jpeg_compression": "JPEG",
}
"""Column titles of paper 002's tables; other corruptions get their name with spaces."""

ROW_METRICS: tuple[str, ...] = ("IoU", "nIoU", "Pd", "Fa", "RCE")
"""The metrics of the long table and CSV (all fractions; Fa a plain ratio)."""

_CSV_EXTRA = ("PixAcc", "F1")


def display_name(name: str) -> str:
    """Human title of a corruption (paper 002's column names where it has them)."""
    return DISPLAY_NAMES.get(name, name.replace("_", " ").capitalize())


def check_corruption_list(corruptions: Sequence[str] | None) -> list[str]:
    """Validated corruption names (default: paper 002's nine Table-2 columns, in their order).

    Raises:
        IRSTDError: empty list, unknown name (the message lists the valid ones), duplicates.
    """
    from irstd.corruptions import PAPER_002_TABLE2, check_corruption

    if corruptions is None:
        return list(PAPER_002_TABLE2)
    if isinstance(corruptions, str):
        corruptions = [corruptions]
    names = list(corruptions)
    if not names:
        raise IRSTDError("robustness: no corruption given")
    for name in names:
        check_corruption(name)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise IRSTDError(f"robustness: corruption given twice: {', '.join(dupes)}")
    return names


def check_severity_list(severities: Sequence[int] | None, levels: int = 3) -> list[int]:
    """Validated severities (default ``1..levels``), integers in ``1..levels``, no duplicates.

    Raises:
        IRSTDError: empty list, out-of-range or non-integer severity, duplicates, bad ``levels``.
    """
    from irstd.corruptions import check_severity

    if severities is None:
        check_severity(1, levels)
        return list(range(1, levels + 1))
    if isinstance(severities, (int, np.integer)) and not isinstance(severities, bool):
        severities = [int(severities)]
    values = list(severities)
    if not values:
        raise IRSTDError("robustness: no severity given")
    out = [check_severity(s, levels) for s in values]
    dupes = sorted({s for s in out if out.count(s) > 1})
    if dupes:
        raise IRSTDError(f"robustness: severity given twice: {', '.join(map(str, dupes))}")
    return out


def corruption_seed(seed: int, name: str, severity: int) -> int:
    """Base seed of one corrupted test set: ``derive_seed(seed, "<name>/<severity>")`` (63-bit).

    It is the ``--seed`` for ``irstd corrupt`` that writes the same images to disk."""
    from irstd.corruptions import derive_seed

    return derive_seed(int(seed), f"{name}/{int(severity)}")


def image_seed(seed: int, name: str, severity: int, item: str) -> int:
    """Seed of one corrupted image: ``derive_seed(corruption_seed(seed, name, severity), item)``."""
    from irstd.corruptions import derive_seed

    return derive_seed(corruption_seed(seed, name, severity), str(item))


# ------------------------------------------------------------------------------ the benchmark


def _as_detector(detector_or_model, threshold, in_chans, device):
    """``(Detector, restore)``: wraps a bare module; ``restore()`` puts its train mode back."""
    from irstd.engine.checkpoint import unwrap
    from irstd.engine.predictor import Detector

    if isinstance(detector_or_model, Detector):
        det = detector_or_model
        if threshold is not None:
            if not 0.0 <= float(threshold) <= 1.0:
                raise IRSTDError(f"threshold must be in [0, 1], got {threshold}")
        if in_chans is not None and int(in_chans) != det.in_chans:
            raise IRSTDError(f"in_chans={in_chans} contradicts the detector's {det.in_chans}")
        return det, float(det.threshold if threshold is None else threshold), lambda: None
    if isinstance(detector_or_model, nn.Module):
        net = unwrap(detector_or_model)
        was_training = net.training
        det = Detector(
            net,
            threshold=0.5 if threshold is None else threshold,
            device=device,
            in_chans=1 if in_chans is None else in_chans,
            name=type(net).__name__,
        )
        return det, det.threshold, lambda: net.train(was_training)
    raise TypeError(
        f"robustness_benchmark needs a Detector or an nn.Module, got {type(detector_or_model).__name__}"
    )


def _nan_to_none(obj):
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _rce(iou_clean: float, iou_cor: float) -> float:
    from irstd.metrics import rce

    try:
        return rce(iou_clean, iou_cor)
    except ValueError:  # clean IoU 0: the ratio is undefined
        return float("nan")


def _mean_dict(dicts: list[dict]) -> dict:
    """Key-wise mean of the numeric entries every dict has (NaN propagates)."""
    keys = [k for k, v in dicts[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    keys = [k for k in keys if all(k in d for d in dicts)]
    return {k: float(np.mean([float(d[k]) for d in dicts])) for k in keys}


@torch.no_grad()
def robustness_benchmark(
    detector_or_model,
    dataset_root: str | os.PathLike,
    split: str = "test",
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    seed: int = 0,
    *,
    levels: int = 3,
    threshold: float | None = None,
    in_chans: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    full_scale: float | None = None,
    skip_bad: bool = False,
    progress: bool = False,
    metadata: dict | None = None,
) -> dict:
    """Score a detector on the clean split and on every (corruption, severity) copy of it.

    Args:
        detector_or_model: an :class:`irstd.engine.Detector` (its model, device, channels and
            threshold are used) or a bare ``nn.Module`` following the zoo interface (logits,
            ``stride``); a bare module is moved to ``device`` and evaluated in eval mode, its
            train/eval mode is restored afterwards.
        dataset_root: dataset folder (``images/``, ``masks/``, index files).
        split: split name (:func:`irstd.data.read_split`).
        corruptions: names (default :data:`irstd.corruptions.PAPER_002_TABLE2`, the nine columns
            of paper 002's Table 2).
        severities: severities in ``1..levels`` (default all: 1, 2, 3).
        seed: base seed; see the module docstring for the per-image rule.
        levels: severity scale, 3 (paper 002, default) or 5 (ImageNet-C).
        threshold: probability threshold in [0, 1] (default: the detector's, 0.5 for a module).
        in_chans: network input channels for a bare module (default 1; grey is repeated).
        device: for a bare module (default: CUDA, else MPS, else CPU).
        batch_size: corrupted versions of one image per forward pass (>= 1; memory vs speed).
        full_scale: intensity full scale of the dataset's images (default: the dataset's rule,
            :func:`irstd.data.dataset.dataset_full_scale`).
        skip_bad: drop unreadable samples (listed under ``meta.skipped``) instead of stopping.
        progress: show a tqdm bar (one step per forward image) on stderr.
        metadata: extra entries for ``meta`` (e.g. ``{"model": ..., "weights": ...}``).

    Returns:
        A JSON-ready dict (NaN where undefined)::

            {"meta": {detector, model, weights, dataset, split, num_images, threshold, seed,
                      seed_rule, corruptions, severities, levels, imagenet_levels,
                      full_scale, device, seconds, skipped, ...},
             "clean": {IoU, nIoU, PixAcc, Pd, Fa, F1, ...},
             "corruptions": {name: {"display", "group",
                                    "severities": {"1": {IoU, ..., RCE, seed, params}, ...},
                                    "mean": {IoU, nIoU, Pd, Fa, RCE, ...}}},
             "average": {IoU, nIoU, Pd, Fa, RCE, ...}}

        All metric values are fractions (IoU 0.71, not 71); ``Fa`` is a plain ratio.

    Raises:
        IRSTDError: unknown corruption, bad severity, bad threshold or batch size, missing or
            empty split, unreadable image (without ``skip_bad``).
    """
    from irstd.corruptions import SEVERITY_TABLE, apply, derive_seed, imagenet_level, severity_params
    from irstd.data import IRSTDDataset, normalize_image
    from irstd.engine.evaluator import forward_logits
    from irstd.metrics import SegmentationMetrics

    names = check_corruption_list(corruptions)
    sevs = check_severity_list(severities, levels)
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise IRSTDError(f"batch size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    seed = int(seed)

    detector, thr, restore = _as_detector(detector_or_model, threshold, in_chans, device)
    dataset = IRSTDDataset(dataset_root, split=split, skip_bad=skip_bad, full_scale=full_scale)
    if len(dataset) == 0:
        raise IRSTDError(f"{dataset.source}: split {split!r} has no images")
    scale = dataset.full_scale  # before the timer: it may read the whole dataset once

    variants: list[tuple[str | None, int]] = [(None, 0)] + [(n, s) for n in names for s in sevs]
    scores = {v: SegmentationMetrics(threshold=thr, input="probs") for v in variants}
    base_seeds = {(n, s): corruption_seed(seed, n, s) for n in names for s in sevs}
    net = detector.model

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset) * len(variants), desc="robustness", leave=False, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        net.eval()
        for index, item in enumerate(dataset.ids):
            raw, mask = dataset.load_arrays(index)
            dataset.check_in_scale(index, raw)
            for lo in range(0, len(variants), batch_size):
                chunk = variants[lo : lo + batch_size]
                batch = []
                for name, sev in chunk:
                    image = raw
                    if name is not None:
                        try:
                            image = apply(raw, name, sev, derive_seed(base_seeds[name, sev], item),
                                          levels=levels, full_scale=scale)
                        except (ValueError, TypeError) as exc:
                            raise IRSTDError(f"{dataset.image_path(item)}: cannot apply {name} ({exc})") from None
                    batch.append(normalize_image(image))
                x = torch.from_numpy(np.stack(batch)[:, None]).to(detector.device)
                logits = forward_logits(net, x, detector.in_chans)
                probs = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
                for variant, prob in zip(chunk, probs):
                    scores[variant].update(prob, mask)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
        restore()
    seconds = time.perf_counter() - start

    clean = dict(scores[(None, 0)].compute())
    per_corruption = {}
    for name in names:
        rows = {}
        for sev in sevs:
            row = dict(scores[(name, sev)].compute())
            row["RCE"] = _rce(clean["IoU"], row["IoU"])
            row["seed"] = base_seeds[name, sev]
            row["imagenet_level"] = imagenet_level(sev, levels)
            row["params"] = severity_params(name, sev, levels)
            rows[str(sev)] = row
        mean = _mean_dict(list(rows.values()))
        mean.pop("seed", None)
        mean.pop("imagenet_level", None)
        per_corruption[name] = {
            "display": display_name(name),
            "group": SEVERITY_TABLE[name].group,
            "severities": rows,
            "mean": mean,
        }
    average = _mean_dict([c["mean"] for c in per_corruption.values()])

    meta = {
        "detector": detector.name,
        "model": None,
        "weights": None,
        "dataset": str(Path(dataset.root).resolve()),
        "split": split,
        "index": dataset.source,
        "num_images": len(dataset),
        "threshold": thr,
        "seed": seed,
        "seed_rule": (
            "image seed = derive_seed(corruption seed, image id); corruption seed = "
            "derive_seed(seed, '<name>/<severity>') (irstd.corruptions.derive_seed)"
        ),
        "corruption_seeds": {f"{n}/{s}": base_seeds[n, s] for n in names for s in sevs},
        "corruptions": names,
        "severities": sevs,
        "levels": int(levels),
        "imagenet_levels": [imagenet_level(s, levels) for s in sevs],
        "full_scale": scale,
        "normalization": "per image after corruption (irstd.data.normalize_image)",
        "device": str(detector.device),
        "batch_size": batch_size,
        "seconds": round(seconds, 3),
        "skipped": [list(s) for s in dataset.skipped],
    }
    from irstd import __version__

    meta["irstd_version"] = __version__
    meta.update(metadata or {})
    return {"meta": meta, "clean": clean, "corruptions": per_corruption, "average": average}


# ------------------------------------------------------------------------------------ outputs


def _num(value) -> float:
    """A metric value as float, NaN for missing/undefined (JSON null)."""
    return float("nan") if value is None else float(value)


def _pct(value) -> str:
    v = _num(value)
    return "n/a" if math.isnan(v) else f"{100.0 * v:.2f}"


def _fa(value) -> str:
    v = _num(value)
    return "n/a" if math.isnan(v) else f"{1e6 * v:.2f}"


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={v:g}" for k, v in params.items())


def robustness_rows(results: dict) -> list[dict]:
    """The long table: one row per (corruption, severity), a ``mean`` row after each corruption,
    a ``clean`` row first and an ``average`` row last.

    Row keys: ``corruption`` (name, ``clean`` or ``average``), ``severity`` (``"1"``.. or
    ``"mean"``; empty for clean), ``imagenet_level``, :data:`ROW_METRICS`, ``PixAcc``, ``F1``
    (fractions, NaN where undefined; RCE of the clean row is None), ``seed`` (the corruption
    seed), ``params`` (text)."""
    keys = (*ROW_METRICS, *_CSV_EXTRA)

    def row(corruption, severity, values, level=None, seed=None, params=""):
        out = {"corruption": corruption, "severity": severity, "imagenet_level": level}
        out.update({k: _num(values.get(k)) for k in keys})
        out.update({"seed": seed, "params": params})
        return out

    clean = row("clean", "", results["clean"])
    clean["RCE"] = None
    rows = [clean]
    for name, entry in results["corruptions"].items():
        for sev, values in entry["severities"].items():
            rows.append(row(name, str(sev), values, values.get("imagenet_level"), values.get("seed"),
                            _params_text(values.get("params", {}))))
        rows.append(row(name, "mean", entry["mean"]))
    rows.append(row("average", "mean", results["average"]))
    return rows


def robustness_csv(results: dict) -> str:
    """:func:`robustness_rows` as CSV text (header line; metrics as fractions with full precision,
    empty cells where undefined)."""
    rows = robustness_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        cells = {}
        for k, v in r.items():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells[k] = ""
            elif isinstance(v, float):
                cells[k] = repr(v)
            else:
                cells[k] = v
        writer.writerow(cells)
    return buf.getvalue()


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def robustness_markdown(results: dict, label: str | None = None) -> str:
    """Markdown report: a header, paper 002's Table-2 row (IoU and RCE per corruption, mean over
    severities, with the average over corruptions) and the long table (corruption x severity with
    IoU, nIoU, Pd, Fa, RCE). IoU, nIoU, Pd, RCE in %, Fa in units of 1e-6.

    Args:
        results: :func:`robustness_benchmark` output (or its JSON reloaded).
        label: row label of the Table-2 row (default: the model name, else the detector name).
    """
    meta = results["meta"]
    label = label or meta.get("model") or meta.get("detector") or "model"
    sevs = ", ".join(str(s) for s in meta["severities"])
    lv = ", ".join(str(s) for s in meta["imagenet_levels"])
    scale = "paper 002's 3-step scale" if meta["levels"] == 3 else "the ImageNet-C 5-step scale"
    dataset = Path(meta["dataset"]).name
    lines = [
        f"# Robustness: {label} on {dataset}/{meta['split']}",
        "",
        f"{meta['num_images']} images; severities {sevs} on {scale} (ImageNet-C levels {lv}); "
        f"seed {meta['seed']}; threshold {meta['threshold']:g}. "
        "IoU, nIoU, Pd and RCE in %, Fa in 1e-6; RCE = (IoU_clean - IoU_cor) / IoU_clean; "
        "per corruption the mean over severities, Average = mean over corruptions.",
        "",
        "## Table 2 layout (paper 002)",
        "",
    ]
    corr = results["corruptions"]
    header, cells = ["Method", "Clean IoU↑"], [label, _pct(results["clean"]["IoU"])]
    for entry in corr.values():
        header += [f"{entry['display']} IoU↑", f"{entry['display']} RCE↓"]
        cells += [_pct(entry["mean"]["IoU"]), _pct(entry["mean"]["RCE"])]
    header += ["Average IoU↑", "Average RCE↓"]
    cells += [_pct(results["average"]["IoU"]), _pct(results["average"]["RCE"])]
    lines += _table(header, ["l"] + ["r"] * (len(header) - 1), [cells])
    lines += ["", "## Per corruption and severity", ""]
    body = []
    for r in robustness_rows(results):
        if r["corruption"] == "clean":
            name, sev = "Clean", "–"
        elif r["corruption"] == "average":
            name, sev = "**Average**", "mean"
        else:
            name, sev = corr[r["corruption"]]["display"], r["severity"]
        if sev == "mean":
            name, sev = (name if name.startswith("**") else f"**{name}**"), "**mean**"
        rce = "–" if r["RCE"] is None else _pct(r["RCE"])
        body.append([name, sev, _pct(r["IoU"]), _pct(r["nIoU"]), _pct(r["Pd"]), _fa(r["Fa"]), rce])
    lines += _table(["Corruption", "Severity", "IoU↑", "nIoU↑", "Pd↑", "Fa (1e-6)↓", "RCE↓"],
                    ["l", "l", "r", "r", "r", "r", "r"], body)
    return "\n".join(lines) + "\n"


def results_json(results: dict) -> str:
    """Strict JSON text of the results (NaN and infinities become null)."""
    return json.dumps(_nan_to_none(results), indent=2, allow_nan=False) + "\n"


def write_robustness(results: dict, out_dir: str | os.PathLike, label: str | None = None) -> dict[str, Path]:
    """Write ``robustness.md``, ``robustness.csv`` and ``robustness.json`` to ``out_dir``
    (created), each atomically. Returns their paths keyed ``md``, ``csv``, ``json``."""
    from irstd.data.io import atomic_write_bytes

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise IRSTDError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "robustness.md", "csv": out / "robustness.csv", "json": out / "robustness.json"}
    atomic_write_bytes(paths["md"], robustness_markdown(results, label).encode("utf-8"))
    atomic_write_bytes(paths["csv"], robustness_csv(results).encode("utf-8"))
    atomic_write_bytes(paths["json"], results_json(results).encode("utf-8"))
    return paths
