"""Seeding and random-number streams that make training reproducible and resumable.

The data order and augmentations never come from a global generator: the order of epoch ``e`` is
:func:`epoch_permutation` ``(n, seed, e)`` and the augmentation of sample ``i`` in epoch ``e`` uses
:func:`sample_rng` ``(seed, e, i)``. So neither the number of workers, nor the process count, nor a
resume in the middle of an epoch changes what the model sees. The global Python/NumPy/torch
generators (dropout, initialisation) are seeded by :func:`seed_everything` and saved in checkpoints
with :func:`capture_rng_state` / :func:`restore_rng_state` (plain tensors and numbers, loadable with
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = [
    "seed_everything",
    "epoch_permutation",
    "sample_rng",
    "mix_rng",
    "step_generator",
    "capture_rng_state",
    "restore_rng_state",
]

# Distinct first words keep the derived streams independent even for equal (seed, epoch, ...).
_ORDER, _SAMPLE, _STEP, _MIX = 0x5EED0001, 0x5EED0002, 0x5EED0003, 0x5EED0004


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices); with ``deterministic`` also ask torch for
    deterministic kernels (warn-only, so ops without a deterministic version still run)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        # cuBLAS needs this for deterministic matmuls on CUDA; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """Order of the ``n`` training samples in ``epoch`` (int64 array), a function of (seed, epoch) only."""
    return np.random.default_rng([_ORDER, int(seed), int(epoch)]).permutation(int(n))


def mix_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """Generator for the extra-source samples of global batch ``step`` in ``epoch`` (``data.extra``)."""
    return np.random.default_rng([_MIX, int(seed), int(epoch), int(step)])


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Generator for the augmentation of sample ``index`` in ``epoch``."""
    return np.random.default_rng([_SAMPLE, int(seed), int(epoch), int(index)])


def step_generator(seed: int, step: int, rank: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """torch generator for extra randomness of training iteration ``step`` on process ``rank``
    (strategies draw corruptions from it, so their choices survive a resume)."""
    words = np.random.default_rng([_STEP, int(seed), int(step), int(rank)]).integers(0, 2**63 - 1)
    g = torch.Generator(device=device)
    g.manual_seed(int(words))
    return g


def capture_rng_state() -> dict:
    """States of the global Python, NumPy and torch (CPU and CUDA) generators as tensors/numbers."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": int(version), "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states restored when the device count matches)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(w) for w in py["words"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
