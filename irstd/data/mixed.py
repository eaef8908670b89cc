"""Training on several sources at once: a main dataset plus extra sources that fill a fixed share of
every batch (``data.extra`` in a config).

Extra sources are other labelled datasets (e.g. ``irstd synth`` frames, so that the detector also
learns the look of synthetic clutter) or target-free frame folders (hard negatives: real frames of
other cameras whose every pixel is background). :class:`MixedDataset` puts them behind one index
space, main dataset first, so that the loader, the augmentation streams, resume and the strategies
(which read ``base.load_arrays(index)``) see one dataset; :class:`irstd.engine.loader.EpochBatchSampler`
decides how many samples of each source a batch holds.

A target-free folder given as an extra source contributes only its unlabelled 70 % split
(:func:`irstd.domain.frames.split_frames`, resolved by the trainer): the held-out 30 % stays the
false-alarm test, never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from irstd.errors import IRSTDError

__all__ = ["ExtraSource", "MixedDataset", "parse_extra"]


@dataclass(frozen=True)
class ExtraSource:
    """One entry of ``data.extra``.

    Attributes:
        root: dataset folder, or a folder of frames without masks (target-free).
        share: fraction of every training batch drawn from this source, in (0, 1); rounded to a
            whole number of samples (at least one) per batch.
        split: split of a labelled source (default ``train``); ignored for target-free folders.
    """

    root: str
    share: float
    split: str = "train"


def parse_extra(entries) -> list[ExtraSource]:
    """``data.extra`` (a list of mappings ``{root, share[, split]}``) as :class:`ExtraSource` objects.

    Raises:
        IRSTDError: not a list of mappings, unknown or missing keys, a share outside (0, 1), or
            shares summing to 1 or more (no room left for the main dataset).
    """
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        raise IRSTDError(f"data.extra must be a list of {{root, share[, split]}} mappings, got {entries!r}")
    out = []
    for k, entry in enumerate(entries):
        where = f"data.extra[{k}]"
        if not isinstance(entry, dict):
            raise IRSTDError(f"{where} must be a mapping with root and share, got {entry!r}")
        unknown = sorted(set(entry) - {"root", "share", "split"})
        if unknown:
            raise IRSTDError(f"{where}: unknown key(s) {', '.join(unknown)} (known: root, share, split)")
        if "root" not in entry or "share" not in entry:
            raise IRSTDError(f"{where} needs root and share")
        try:
            share = float(entry["share"])
        except (TypeError, ValueError):
            raise IRSTDError(f"{where}.share must be a number in (0, 1), got {entry['share']!r}") from None
        if not 0.0 < share < 1.0:
            raise IRSTDError(f"{where}.share must be in (0, 1), got {share:g}")
        out.append(ExtraSource(str(entry["root"]), share, str(entry.get("split", "train"))))
    if sum(e.share for e in out) >= 1.0:
        raise IRSTDError(f"data.extra: the shares sum to {sum(e.share for e in out):g}; they must leave room "
                         "for the main dataset (sum < 1)")
    return out


def batch_counts(shares: Sequence[float], batch_size: int) -> list[int]:
    """Samples per batch of each extra source: ``round(share * batch_size)``, at least 1, and at
    least one sample of the main dataset left.

    Raises:
        IRSTDError: the batch is too small for the sources.
    """
    counts = [max(1, int(round(s * batch_size))) for s in shares]
    if sum(counts) >= batch_size:
        raise IRSTDError(
            f"train.batch_size {batch_size} is too small for data.extra: the extra sources take "
            f"{sum(counts)} samples per batch, leaving none of the main dataset"
        )
    return counts


class MixedDataset:
    """The main dataset followed by the extra sources, as one index space.

    Index ``i < len(main)`` is the main dataset's item ``i``; the sources follow in order. It has
    the interface the loader and the strategies use of an :class:`~irstd.data.IRSTDDataset`:
    ``ids`` (extra ids prefixed ``"<source k>:"`` so that they stay unique), ``load_arrays``,
    ``image_path``, ``mask_path``, ``full_scale`` and ``check_in_scale``.

    Args:
        main: the main training dataset.
        sources: the extra datasets (target-free ones give empty masks).

    Raises:
        IRSTDError: an extra source without samples.
    """

    def __init__(self, main, sources: Sequence):
        self.main = main
        self.sources = list(sources)
        for k, s in enumerate(self.sources):
            if len(s) == 0:
                raise IRSTDError(f"data.extra[{k}] ({s.root}): no samples")
        self.offsets = np.cumsum([len(main)] + [len(s) for s in self.sources]).tolist()
        self.ids = list(main.ids)
        self._main_ids = set(main.ids)
        self.root = main.root
        for k, s in enumerate(self.sources):
            self.ids += [f"{k}:{item}" for item in s.ids]
        self.skipped = list(getattr(main, "skipped", []))

    @property
    def sizes(self) -> list[int]:
        """Number of samples of the main dataset, then of each extra source."""
        return [len(self.main)] + [len(s) for s in self.sources]

    def __len__(self) -> int:
        return self.offsets[-1]

    def _locate(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if index < self.offsets[0]:
            return self.main, index
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.sources[k], index - self.offsets[k]

    def _split_id(self, item: str):
        if item in self._main_ids:
            return self.main, item
        head, sep, rest = item.partition(":")
        if sep and head.isdigit() and int(head) < len(self.sources):
            return self.sources[int(head)], rest
        raise KeyError(f"id {item!r} is in none of the training sources")

    def load_arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(image native dtype HxW, mask bool HxW)`` of item ``index`` of whichever source."""
        ds, i = self._locate(index)
        return ds.load_arrays(i)

    def image_path(self, item: str) -> Path:
        ds, own = self._split_id(item)
        return ds.image_path(own)

    def mask_path(self, item: str) -> Path | None:
        ds, own = self._split_id(item)
        return ds.mask_path(own)

    @property
    def full_scale(self) -> float:
        """The one intensity full scale of every source; corruption-based strategies need it.

        Raises:
            IRSTDError: sources of different full scale (e.g. 8-bit and 16-bit data).
        """
        scales = {float(self.main.full_scale)} | {float(s.full_scale) for s in self.sources}
        if len(scales) > 1:
            raise IRSTDError(
                "data.extra: the sources have different intensity full scales "
                f"({', '.join(f'{v:g}' for v in sorted(scales))}); corruption-based strategies need one "
                "scale (set data.full_scale)"
            )
        return scales.pop()

    def check_in_scale(self, index: int, image: np.ndarray) -> None:
        ds, i = self._locate(index)
        peak = float(np.max(image))
        if peak > self.full_scale:
            raise IRSTDError(
                f"{ds.image_path(ds.ids[i])}: values up to {peak:g} exceed the intensity full scale "
                f"{self.full_scale:g}"
            )

    def skipped_summary(self) -> str:
        return self.main.skipped_summary() if hasattr(self.main, "skipped_summary") else ""
