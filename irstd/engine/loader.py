"""Deterministic training data: epoch-seeded order, per-sample augmentation streams, DDP sharding.

* The order of epoch ``e`` is :func:`irstd.engine.seed.epoch_permutation` ``(n, seed, e)``; the
  epoch has ``steps = max(1, n // batch_size)`` global batches (the remainder is dropped, so every
  step has the same size; a dataset smaller than one batch is repeated to fill it).
* With ``world_size`` processes, global batch ``s`` (``batch_size`` samples) is cut into
  ``world_size`` equal slices and process ``r`` takes slice ``r``: the processes together see
  exactly the batches a single process would, the DistributedSampler contract without its
  padding/shuffle differences.
* Sample ``i`` of epoch ``e`` is augmented with :func:`irstd.engine.seed.sample_rng` ``(seed, e, i)``
  inside whichever worker loads it.
* :meth:`EpochBatchSampler.set_epoch` takes a starting step, so a resume in the middle of an epoch
  continues with the very batches that were next.
* With ``with_raw=True`` (the trainer sets it for strategies whose class has ``needs_raw = True``,
  e.g. corruption-based training) each item also carries ``"raw"``: the same crop before per-image
  normalisation, as intensities divided by the *dataset's* full scale
  (:attr:`irstd.data.IRSTDDataset.full_scale`, the one scale ``irstd robustness`` and ``irstd
  corrupt`` use too), float32 in [0, 1]; and ``"raw_mean"``, ``"raw_std"`` (float32 scalars): the
  whole image's mean and standard deviation in the same units, the statistics its normalised
  ``"image"`` was standardised with. Corruptions must act on the raw values, not on the normalised
  image, whose standardisation would undo brightness and contrast changes; the whole-image
  statistics let a strategy standardise a crop with added noise as its whole noisy image would be
  (:func:`irstd.strategies.policy.standardize_corrupted`), and ``"key"`` (int64 ``[epoch, index]``)
  lets it rebuild the crop from a changed whole image (:meth:`AugmentedDataset.recrop`).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from irstd.engine.seed import epoch_permutation, mix_rng, sample_rng

__all__ = ["AugmentedDataset", "EpochBatchSampler", "steps_per_epoch"]

def steps_per_epoch(n: int, batch_size: int) -> int:
    """Global optimisation steps per epoch for ``n`` samples (remainder dropped, at least 1)."""
    return max(1, int(n) // int(batch_size))


class AugmentedDataset(Dataset):
    """Training view of an :class:`irstd.data.IRSTDDataset`: items are keyed by ``(epoch, index)``.

    Reads the raw sample, normalises it with :func:`irstd.data.normalize_image` and applies
    ``transform(image, mask, rng)`` with the per-sample generator. Returns the dataset's item format
    ``{"image": 1xhxw float32, "mask": 1xhxw float32 {0,1}, "id": str}``, plus ``"raw"`` (1xhxw
    float32 in [0, 1]), ``"raw_mean"`` and ``"raw_std"`` when ``with_raw`` is true.

    With ``with_raw`` the dataset's full scale is resolved here, once (reading the dataset's
    images unless it was given), so that DataLoader workers inherit it instead of each computing it.

    The raw crop is recovered from the augmented normalised one through the inverse of the
    standardisation, ``raw = (image * std + mean) / full_scale`` with the statistics
    :func:`irstd.data.normalize_image` used: it is exactly the same crop, flips and padding
    (padding, 0 in the normalised image, is the image mean here) without running the transform
    twice, and stays right for any geometric transform.
    """

    def __init__(self, base, transform, seed: int, with_raw: bool = False):
        self.base = base
        self.transform = transform
        self.seed = int(seed)
        self.with_raw = bool(with_raw)
        self.full_scale = float(base.full_scale) if self.with_raw else None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        from irstd.data import normalize_image

        epoch, index = key
        raw, mask = self.base.load_arrays(index)
        image = normalize_image(raw)
        if self.transform is not None:
            image, mask = self.transform(image, mask, sample_rng(self.seed, epoch, index))
        image = np.ascontiguousarray(image, dtype=np.float32)
        mask = np.ascontiguousarray(mask, dtype=np.float32)
        item = {
            "image": torch.from_numpy(image[None]),
            "mask": torch.from_numpy(mask[None]),
            "id": self.base.ids[index],
        }
        if self.with_raw:
            self.base.check_in_scale(index, raw)
            crop, mean, std = _unnormalized(image, raw, self.full_scale)
            item["raw"] = torch.from_numpy(crop[None])
            item["raw_mean"] = torch.tensor(mean, dtype=torch.float32)
            item["raw_std"] = torch.tensor(std, dtype=torch.float32)
            item["key"] = torch.tensor([epoch, index], dtype=torch.int64)
        return item

    def recrop(self, key, image_fn) -> np.ndarray:
        """Sample ``key = (epoch, index)``'s training crop, cut from ``image_fn(raw)`` instead of its image.

        ``raw`` is the whole image as read (native dtype and range); ``image_fn`` returns an array
        of the same shape (e.g. :func:`irstd.corruptions.apply` with the dataset's full scale). The
        result is standardised as a whole image, then cropped, flipped and transposed exactly as
        the sample was (same mask, same random stream): float32 ``h x w``, what the detector sees of
        that whole image. Corruption training goes through here so that a corrupted input is the
        one ``irstd robustness`` tests on (whole image corrupted, then standardised); a crop
        corrupted alone can not be standardised that way (contrast uses the whole image's mean,
        clipping and blur change its variance by an amount a crop does not tell).
        """
        from irstd.data import normalize_image

        epoch, index = (int(v) for v in key)
        raw, mask = self.base.load_arrays(index)
        changed = np.asarray(image_fn(raw))
        if changed.shape != raw.shape:
            raise ValueError(f"recrop: image_fn changed the shape {raw.shape} -> {changed.shape}")
        image = normalize_image(changed)
        if self.transform is not None:
            # the transform draws from the mask and the stream only, never from pixel values
            image, _ = self.transform(image, mask, sample_rng(self.seed, epoch, index))
        return np.ascontiguousarray(image, dtype=np.float32)


def _unnormalized(image: np.ndarray, raw: np.ndarray, full_scale: float) -> tuple[np.ndarray, float, float]:
    """Map a (cropped, flipped) normalised ``image`` of the full image ``raw`` back to intensities
    divided by ``full_scale``: ``(float32 crop in [0, 1] (clipped against float rounding), whole-image
    mean, whole-image std)``, the statistics in the same units."""
    from irstd.data.dataset import NORMALIZE_EPS

    x = np.asarray(raw, dtype=np.float64)
    mean, std = x.mean(), max(float(x.std()), NORMALIZE_EPS)  # as normalize_image
    out = (image.astype(np.float64) * std + mean) / full_scale
    crop = np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)
    return crop, float(mean / full_scale), float(std / full_scale)


class EpochBatchSampler(Sampler):
    """Yields this process's batches of ``(epoch, index)`` keys for the current epoch.

    Args:
        n: number of training samples (of the main dataset).
        batch_size: global batch size, divisible by ``world_size``.
        seed: run seed.
        rank, world_size: DDP position.
        extra: ``(size, per_batch)`` of each extra source (:class:`irstd.data.mixed.MixedDataset`,
            indices after the main dataset's, sources in order). Every global batch then holds
            ``per_batch`` samples of each source, drawn uniformly with replacement from
            ``(seed, epoch, step)``, and ``batch_size - sum(per_batch)`` main samples in the
            epoch's permutation; the batch is shuffled by the same stream, so that every DDP slice
            gets a mix. An epoch is still one pass over the main dataset.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, extra=()):
        if n < 1:
            raise ValueError("no training samples")
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.extra = [(int(size), int(k)) for size, k in extra]
        self.main_per_batch = int(batch_size) - sum(k for _, k in self.extra)
        if self.main_per_batch < 1 or any(size < 1 or k < 1 for size, k in self.extra):
            raise ValueError(f"extra sources {self.extra} leave no room in a batch of {batch_size}")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.local_batch = self.batch_size // int(world_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.steps = steps_per_epoch(self.n, self.main_per_batch)
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch, skipping its first ``start_step`` batches (resume)."""
        self.epoch = int(epoch)
        self.start_step = int(start_step)

    def order(self, epoch: int) -> np.ndarray:
        """Global sample order of ``epoch``, ``steps * batch_size`` long."""
        perm = epoch_permutation(self.n, self.seed, epoch)
        need = self.steps * self.main_per_batch
        if need > perm.size:  # fewer samples than one batch: repeat the order
            perm = np.resize(perm, need)
        perm = perm[:need]
        if not self.extra:
            return perm
        batches = []
        offset0 = self.n
        for step in range(self.steps):
            rng = mix_rng(self.seed, epoch, step)
            parts = [perm[step * self.main_per_batch : (step + 1) * self.main_per_batch]]
            offset = offset0
            for size, k in self.extra:
                parts.append(offset + rng.integers(0, size, k))
                offset += size
            batches.append(rng.permutation(np.concatenate(parts)))
        return np.concatenate(batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order(self.epoch)
        for step in range(self.start_step, self.steps):
            lo = step * self.batch_size + self.rank * self.local_batch
            yield [(self.epoch, int(i)) for i in order[lo : lo + self.local_batch]]

    def __len__(self) -> int:
        return self.steps - self.start_step
