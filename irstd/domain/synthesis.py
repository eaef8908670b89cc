"""Wavelet-guided cross-domain synthesis (WCS, paper 000 Section 3.1) as a whole: hard source
targets (DIS) pasted into background regions (BRD) of unlabelled target-domain frames
(re-generation).

:class:`TargetDomain` holds the unlabelled-domain frames of a folder (the 70 % of
:func:`irstd.domain.frames.split_frames`; held-out frames are never read) with their BRD maps,
:func:`hard_targets` turns one source image, its mask and (optionally) the current model's
probabilities into paste candidates, and :func:`synthesize` makes one synthetic frame. The
``wcs`` training strategy draws its samples with these, and :func:`write_synthetic_dataset` (``irstd
domain-synth``) writes them as a dataset in the common layout with a provenance record.

Without a model there is nothing to call hard: every target of the source is a candidate (the
strategy's state before its first selection, and ``irstd domain-synth`` without ``--run``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from irstd.domain import brd, dis, regen
from irstd.domain.dis import HardTarget
from irstd.domain.regen import Paste
from irstd.errors import IRSTDError

__all__ = ["WCSParams", "TargetDomain", "hard_targets", "synthesize", "write_synthetic_dataset", "RECORD_NAME"]

RECORD_NAME = "synthesis.json"
ATTEMPTS = 8  # frames tried before a target is given up (its patch fits no candidate region)


@dataclass(frozen=True)
class WCSParams:
    """Every setting of WCS, with the documented defaults of its modules."""

    block_size: int = brd.BLOCK_SIZE
    tau_b: float = brd.TAU_B
    wavelet: str = brd.WAVELET
    level: int = brd.LEVEL
    tau_p: float = dis.TAU_P
    tau_i: float = dis.TAU_I
    margin: int = dis.MARGIN
    threshold: float = 0.5
    max_windows: int = regen.MAX_WINDOWS
    window_stride: float = regen.WINDOW_STRIDE

    def __post_init__(self):
        import pywt

        if self.wavelet not in pywt.wavelist(kind="discrete"):
            raise IRSTDError(f"WCS wavelet {self.wavelet!r} is not a discrete PyWavelets wavelet (e.g. db4, haar)")
        if int(self.level) < 1 or int(self.block_size) < 8 or int(self.margin) < 3 or int(self.max_windows) < 1:
            raise IRSTDError("WCS needs level >= 1, block_size >= 8, margin >= 3 and max_windows >= 1")
        for key in ("tau_p", "tau_i", "threshold"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise IRSTDError(f"WCS {key} must lie in [0, 1], got {getattr(self, key)!r}")


class TargetDomain:
    """The unlabelled-domain frames of a folder, checked once, with BRD maps computed on first use.

    Every frame is read here: one intensity full scale for all
    (:func:`irstd.domain.frames.frames_full_scale`), 8- or 16-bit, at least one BRD block in size;
    any problem is one :class:`~irstd.errors.IRSTDError` naming the file.
    """

    def __init__(self, folder: str | os.PathLike, params: WCSParams = WCSParams()):
        from irstd.domain.frames import domain_frames, frames_full_scale

        self.folder = Path(folder)
        self.params = params
        self.paths = domain_frames(folder)
        s = int(params.block_size)
        self._shapes: list[tuple[int, int]] = []

        def check(path, image):
            h, w = image.shape
            if h < s or w < s:
                raise IRSTDError(f"{path}: frame of {w}x{h} pixels (WxH) is smaller than one {s}x{s} BRD block")
            if not (image.dtype in (np.uint8, np.uint16) or (image.dtype == np.int32 and image.min() >= 0
                                                            and image.max() <= 65535)):
                raise IRSTDError(f"{path}: {image.dtype} frame; WCS pastes into 8- and 16-bit frames")
            self._shapes.append((h, w))

        self.full_scale = frames_full_scale(self.paths, check)
        self._candidates: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def frame(self, index: int) -> np.ndarray:
        from irstd.data.io import read_image

        image = read_image(self.paths[index])
        return image.astype(np.uint16) if image.dtype == np.int32 else image

    def candidates(self, index: int, frame: np.ndarray | None = None) -> np.ndarray:
        """BRD candidate pixels (bool H x W) of frame ``index``, cached as its block grid."""
        p = self.params
        if index not in self._candidates:
            image = self.frame(index) if frame is None else frame
            bg = brd.detect_background(image, p.block_size, p.tau_b, p.wavelet, p.level, name=str(self.paths[index]))
            self._candidates[index] = bg.candidates
        grid = self._candidates[index]
        return brd.BackgroundMap(np.zeros(grid.shape), grid, int(p.block_size), self._shapes[index]).pixel_mask()


def hard_targets(
    image: np.ndarray,
    mask: np.ndarray,
    source: str,
    full_scale: float,
    params: WCSParams = WCSParams(),
    prob: np.ndarray | None = None,
) -> list[HardTarget]:
    """Paste candidates of one source image: its DIS-hard targets under ``prob`` (every target
    when ``prob`` is None), each cut with its window."""
    if prob is None:
        boxes = [box for _, box in dis.target_boxes(mask, params.margin)]
    else:
        scores = dis.score_targets(prob, mask, params.threshold, params.margin, params.tau_p, params.tau_i)
        boxes = [s.box for s in dis.select_hard(scores)]
    return [dis.cut_patch(image, mask, box, source, full_scale) for box in boxes]


def synthesize(
    domain: TargetDomain, target: HardTarget, rng: np.random.Generator
) -> tuple[Paste, int] | None:
    """Paste ``target`` into a frame drawn from ``domain`` (up to :data:`ATTEMPTS` frames are
    tried, in random order, until one has a candidate window for the patch). Returns the paste
    and the frame's index, or ``None``."""
    p = domain.params
    order = rng.permutation(len(domain))[:ATTEMPTS]
    for index in order.tolist():
        frame = domain.frame(index)
        cand = domain.candidates(index, frame)
        out = regen.regenerate(frame, domain.full_scale, cand, target, rng, p.max_windows, p.window_stride)
        if out is not None:
            return out, index
    return None


def write_synthetic_dataset(
    source: str | os.PathLike,
    target: str | os.PathLike,
    out: str | os.PathLike,
    num: int,
    *,
    split: str = "train",
    probability: Callable[[np.ndarray], np.ndarray] | None = None,
    model: str | None = None,
    seed: int = 0,
    name: str = "wcs",
    params: WCSParams = WCSParams(),
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write ``num`` WCS frames as a dataset (``irstd domain-synth``).

    Args:
        source: labelled source dataset; the targets of its ``split`` are the paste candidates.
        target: target-domain frame folder (only its unlabelled 70 % is read).
        probability: the current model as a function from a raw frame to probabilities; with it
            only DIS-hard targets are pasted; without it every target.
        model: description of the model for the record.

    Output: ``images/<name>_<k>.png`` (the target frames' bit depth), ``masks/<name>_<k>.png``
    (0/255), ``img_idx/train_<name>.txt`` listing every frame, and ``synthesis.json``: the
    settings and, per frame, the source id and window, the target frame, the window it went into
    and its SSIM. Staged: a failure leaves nothing.
    """
    from irstd.data import IRSTDDataset
    from irstd.data.io import staged_dir, write_image, atomic_write_bytes

    if int(num) < 1:
        raise IRSTDError(f"--num must be at least 1, got {num}")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise IRSTDError(f"invalid dataset name {name!r}")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise IRSTDError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise IRSTDError(f"{out}: folder is not empty (use --overwrite)")
    data = IRSTDDataset(source, split=split)
    domain = TargetDomain(target, params)
    candidates: list[HardTarget] = []
    n_targets = 0
    for i, item in enumerate(data.ids):
        image, mask = data.load_arrays(i)
        n_targets += len(dis.target_boxes(mask, params.margin))
        prob = None if probability is None else probability(image)
        candidates += hard_targets(image, mask, item, data.full_scale, params, prob)
    if not candidates:
        raise IRSTDError(f"{data.source}: no hard target among {n_targets} targets (PixAcc < {params.tau_p} and "
                         f"IoU < {params.tau_i}); nothing to paste")
    samples = []
    with staged_dir(out) as stage:
        ids = []
        for k in range(int(num)):
            rng = np.random.default_rng([0x574353, int(seed), k])
            made = None
            for _ in range(ATTEMPTS):
                t = candidates[int(rng.integers(len(candidates)))]
                made = synthesize(domain, t, rng)
                if made is not None:
                    break
            if made is None:
                raise IRSTDError(f"{target}: no candidate background window fits the hard targets' patches "
                                 f"(BRD blocks of {params.block_size} px, tau_b {params.tau_b}); try a larger tau_b")
            paste, index = made
            item = f"{name}_{k:05d}"
            write_image(stage / "images" / f"{item}.png", paste.image)
            write_image(stage / "masks" / f"{item}.png", paste.mask.astype(np.uint8) * 255)
            ids.append(item)
            samples.append({"id": item, "source_id": t.source, "source_box": list(t.box),
                            "target_frame": domain.paths[index].name, "window": list(paste.window),
                            "ssim": round(paste.ssim, 6)})
            if progress is not None:
                progress(k + 1, int(num))
        atomic_write_bytes(stage / "img_idx" / f"train_{name}.txt", ("\n".join(ids) + "\n").encode())
        record = {
            "method": "WCS (paper 000 Section 3.1): BRD + DIS + SSIM-ranked Poisson re-generation",
            "source": str(Path(source).resolve()), "source_split": split, "source_targets": n_targets,
            "paste_candidates": len(candidates),
            "selection": "DIS with the model" if probability is not None else "every target (no model given)",
            "model": model,
            "target": str(Path(target).resolve()), "target_frames": len(domain),
            "target_split": "unlabelled 70 % of irstd.domain.frames.split_frames (held-out 30 % not read)",
            "target_full_scale": domain.full_scale, "seed": int(seed), "params": asdict(params), "samples": samples,
        }
        atomic_write_bytes(stage / RECORD_NAME, (json.dumps(record, indent=2) + "\n").encode())
    return {"out": str(out), "frames": int(num), "candidates": len(candidates), "targets": n_targets,
            "target_frames": len(domain)}
