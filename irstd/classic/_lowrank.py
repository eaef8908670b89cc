"""Building blocks of the low-rank methods: patch geometry, patch-image / patch-tensor
construction and reconstruction without loops over patches, singular value thresholding by a
partial (randomised) SVD, shrinkage operators and the structure-tensor priors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage


def patch_starts(length: int, patch: int, step: int) -> np.ndarray:
    """Window starts ``0, step, 2 step, ...`` plus a last window flush with the border
    (the positions of the MATLAB releases of IPI, PSTNN and NRAM)."""
    if length <= patch:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - patch, step, dtype=np.int64)
    return np.append(starts, length - patch)


@dataclass
class PatchGrid:
    """Square ``patch`` windows at ``rows x cols`` starts over an ``shape`` frame.

    ``index`` (``n_patches x patch**2``) holds the flat frame index of every patch entry, in
    the row-major order of :meth:`extract`, so reconstruction is one ``bincount``.
    """

    shape: tuple[int, int]
    patch: int
    rows: np.ndarray
    cols: np.ndarray
    index: np.ndarray
    cover: np.ndarray

    @classmethod
    def build(cls, shape: tuple[int, int], patch: int, step: int) -> "PatchGrid":
        h, w = shape
        patch = int(min(patch, h, w))
        step = max(int(step), 1)
        rows, cols = patch_starts(h, patch, step), patch_starts(w, patch, step)
        offsets = (np.arange(patch)[:, None] * w + np.arange(patch)[None, :]).ravel()
        base = (rows[:, None] * w + cols[None, :]).ravel()
        index = base[:, None] + offsets[None, :]
        cover = np.bincount(index.ravel(), minlength=h * w).reshape(h, w)
        return cls((h, w), patch, rows, cols, index, cover)

    @property
    def n_patches(self) -> int:
        return len(self.rows) * len(self.cols)

    def extract(self, image: np.ndarray) -> np.ndarray:
        """``n_patches x patch**2`` matrix, one vectorised patch per row (a copy)."""
        windows = sliding_window_view(image, (self.patch, self.patch))
        return windows[self.rows[:, None], self.cols[None, :]].reshape(self.n_patches, -1)

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Frame of the mean over overlapping patch entries (``values`` shaped like ``index``)."""
        h, w = self.shape
        acc = np.bincount(self.index.ravel(), weights=np.ravel(values), minlength=h * w).reshape(h, w)
        return acc / np.maximum(self.cover, 1)

    def median(self, values: np.ndarray) -> np.ndarray:
        """Frame of the median over overlapping patch entries.

        Only pixels with a non-zero entry are sorted (the target part is sparse): one sort of
        ``pixel + rank-preserving fraction of the value`` groups entries by pixel and orders
        them by value in a single pass.
        """
        h, w = self.shape
        idx = self.index.ravel()
        vals = np.ravel(values).astype(np.float64)
        active = np.bincount(idx, weights=(vals != 0), minlength=h * w) > 0
        out = np.zeros(h * w)
        if not active.any():
            return out.reshape(h, w)
        keep = active[idx]
        idx, vals = idx[keep], vals[keep]
        lo, hi = vals.min(), vals.max()
        span = hi - lo if hi > lo else 1.0
        order = np.argsort(idx + 0.999 * (vals - lo) / span, kind="stable")
        idx, vals = idx[order], vals[order]
        pixels, first, counts = np.unique(idx, return_index=True, return_counts=True)
        out[pixels] = 0.5 * (vals[first + (counts - 1) // 2] + vals[first + counts // 2])
        return out.reshape(h, w)

    def reconstruct(self, values: np.ndarray, reduce: str) -> np.ndarray:
        return self.median(values) if reduce == "median" else self.mean(values)


# ------------------------------------------------------------------------------ shrinkage


def soft(x: np.ndarray, tau) -> np.ndarray:
    """Entry-wise soft thresholding ``sign(x) max(|x| - tau, 0)`` (``tau`` scalar or array)."""
    # max(x - tau, 0) + min(x + tau, 0): four passes, no sign array (these loops are memory-bound)
    out = np.subtract(x, tau)
    np.maximum(out, 0, out=out)
    low = np.add(x, tau)
    np.minimum(low, 0, out=low)
    out += low
    return out


def _thin_svd(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD of a short, wide matrix through the eigen-decomposition of ``b b^T`` in float64.

    Several times faster than LAPACK's SVD of the wide matrix; float64 keeps the squared
    spectrum accurate to ~1e-8 of the largest singular value, far below any threshold used here.
    """
    b64 = b.astype(np.float64, copy=False)
    evals, evecs = np.linalg.eigh(b64 @ b64.T)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    s = np.sqrt(np.maximum(evals, 0.0))
    keep = s > (s[0] * 1e-7 if s.size and s[0] > 0 else np.inf)
    u, s = evecs[:, keep], s[keep]
    vt = (u.T @ b64) / s[:, None]
    return u.astype(b.dtype, copy=False), s.astype(b.dtype, copy=False), vt.astype(b.dtype, copy=False)


class SVT:
    """Singular value thresholding ``U f(S) V^T`` of a matrix by a partial SVD.

    Only the singular values above the threshold matter, and in these problems they are few
    (the background is low-rank). A randomised range finder (Halko, Martinsson & Tropp 2011)
    computes the top ``k`` triplets, warm-started with the previous call's right singular
    vectors (consecutive iterates differ little, so the warm start needs no power step; a cold
    start gets ``power`` steps); ``k`` starts at 1.5 times the last rank and doubles until a
    singular value below the threshold is seen. Beyond a third of the small side a full
    decomposition through the Gram matrix (``eigh``) is cheaper and used instead.
    """

    def __init__(self, seed: int = 0, oversample: int = 8, power: int = 1):
        self.rng = np.random.default_rng(seed)
        self.oversample = oversample
        self.power = power
        self.rank = 1
        self._basis: np.ndarray | None = None

    def top(self, m: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top ``k`` singular triplets ``(U, s, Vt)`` of ``m``."""
        rows, cols = m.shape
        small = min(rows, cols)
        if k + self.oversample >= small // 3:
            return self._full(m)
        width = k + self.oversample
        warm = self._basis is not None and self._basis.shape[0] == cols
        if not warm:
            self._basis = None
        if warm:
            start = self._basis[:, :width]
            if start.shape[1] < width:
                start = np.hstack([start, self.rng.standard_normal((cols, width - start.shape[1]))])
        else:
            start = self.rng.standard_normal((cols, width))
        q, _ = np.linalg.qr(m @ start.astype(m.dtype, copy=False))
        # a warm start already spans the dominant subspace; a cold one needs a power step
        for _ in range(self.power if self._basis is None else self.power - 1):
            z, _ = np.linalg.qr(m.T @ q)
            q, _ = np.linalg.qr(m @ z)
        ub, s, vt = _thin_svd(q.T @ m)
        self._basis = vt.T
        return (q @ ub)[:, :k], s[:k], vt[:k]

    def _full(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols = m.shape
        if rows > cols:
            u, s, vt = self._full(m.T)
            return vt.T, s, u.T
        # rows <= cols: eigen-decompose the small Gram matrix m m^T
        evals, evecs = np.linalg.eigh(m @ m.T)
        evals, evecs = evals[::-1], evecs[:, ::-1]
        s = np.sqrt(np.maximum(evals, 0.0))
        keep = s > s[0] * 1e-10 if s[0] > 0 else np.zeros_like(s, dtype=bool)
        u, s = evecs[:, keep], s[keep]
        vt = (u.T @ m) / s[:, None]
        self._basis = vt.T
        return u, s, vt

    def leading(self, m: np.ndarray, tau: float, min_rank: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All singular triplets with ``s > tau``, and at least the ``min_rank`` largest."""
        small = min(m.shape)
        min_rank = int(min(max(min_rank, 1), small))
        # ranks grow from one iteration to the next (by ~1.5x in IALM): ask for that much at once
        # rather than paying a second, larger decomposition when the first one falls short
        k = min(max(int(1.5 * self.rank) + 4, min_rank + 2, 4), small)
        while True:
            u, s, vt = self.top(m, k)
            if len(s) < k or s[-1] <= tau or k >= small:
                break
            k = min(2 * k, small)
        r = min(max(int(np.count_nonzero(s > tau)), min_rank), len(s))
        self.rank = r
        return u[:, :r], s[:r], vt[:r]

    def __call__(self, m: np.ndarray, tau: float) -> tuple[np.ndarray, int]:
        """``U max(S - tau, 0) V^T`` and its rank."""
        u, s, vt = self.leading(m, tau)
        s = np.maximum(s - tau, 0.0)
        r = int(np.count_nonzero(s))
        return (u[:, :r] * s[:r]) @ vt[:r], r


def spectral_norm(m: np.ndarray, seed: int = 0) -> float:
    """Largest singular value (a few power iterations on the Gram side; within ~1e-3)."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(m.shape[1])
    s = 0.0
    for _ in range(30):
        u = m @ v
        nu = np.linalg.norm(u)
        if nu == 0:
            return 0.0
        v = m.T @ (u / nu)
        s_new = np.linalg.norm(v)
        v /= s_new
        if abs(s_new - s) <= 1e-4 * s_new:
            return float(s_new)
        s = s_new
    return float(s)


# ------------------------------------------------------------------------------ priors


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``: sampled, normalised to sum 1."""
    r = (size - 1) / 2.0
    x = np.arange(size) - r
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma**2))
    return g / g.sum()


def structure_tensor_eigenvalues(
    image: np.ndarray, size: int = 3, pre_sigma: float = 2.0, post_sigma: float = 9.0
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``(l1 >= l2)`` of the smoothed structure tensor ``K * (grad u grad u^T)``.

    ``u`` is the frame smoothed by a ``size x size`` Gaussian of ``pre_sigma``, gradients are
    central differences, ``K`` a ``size x size`` Gaussian of ``post_sigma`` (border: replicate).
    """
    u = ndimage.correlate(image, _gaussian_kernel(size, pre_sigma), mode="nearest")
    gy, gx = np.gradient(u)
    k = _gaussian_kernel(size, post_sigma)
    j11 = ndimage.correlate(gx * gx, k, mode="nearest")
    j12 = ndimage.correlate(gx * gy, k, mode="nearest")
    j22 = ndimage.correlate(gy * gy, k, mode="nearest")
    root = np.sqrt((j11 - j22) ** 2 + 4.0 * j12**2)
    return 0.5 * (j11 + j22 + root), 0.5 * (j11 + j22 - root)


def minmax01(x: np.ndarray) -> np.ndarray:
    """MATLAB's ``mat2gray``: min-max to ``[0, 1]``; a constant array maps to 0."""
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x, dtype=np.float64)


def corner_prior(image: np.ndarray) -> np.ndarray:
    """PSTNN's local prior ``mat2gray(l1 l2 / (l1 + l2) * max(l1, l2))`` in ``[0, 1]``: large at
    corner-like (target) points, small on edges and flat areas."""
    l1, l2 = structure_tensor_eigenvalues(image)
    l2 = np.maximum(l2, 0.0)
    denom = l1 + l2
    corner = np.divide(l1 * l2, denom, out=np.zeros_like(denom), where=denom > 0)
    return minmax01(corner * np.maximum(l1, l2))
