"""Low-rank patch-tensor methods: PSTNN, RIPT and MSLSTIPT (single frame).

The patches of a frame are stacked into a third-order tensor (``n3`` patches of ``p x p``; here
stored as an ``n3 x p x p`` array, patch index first). Two tensor ranks are in use:

* the tubal rank of the t-SVD (PSTNN, MSLSTIPT): an FFT along the patch axis turns the tensor
  into ``n3`` independent ``p x p`` matrices (``rfft`` keeps the ``n3 // 2 + 1`` that are not
  complex conjugates of others), decomposed by one batched ``numpy.linalg.svd`` call;
* the sum of the nuclear norms of the three unfoldings (RIPT).

Construction and reconstruction share the vectorised patch grid of the patch-image methods.
"""

from __future__ import annotations

import numpy as np

from irstd.classic._lowrank import (
    SVT,
    PatchGrid,
    corner_prior,
    minmax01,
    soft,
    structure_tensor_eigenvalues,
)
from irstd.classic.base import finish, method, prepare

__all__ = ["pstnn", "ript", "mslstipt"]


def _tensor(grid: PatchGrid, image: np.ndarray) -> np.ndarray:
    return grid.extract(image).reshape(grid.n_patches, grid.patch, grid.patch)


def _ratio_rank(matrix: np.ndarray, ratio: float) -> int:
    """PSTNN's rank estimate: the number of leading singular values ``>= ratio * s_max``."""
    s = np.linalg.svd(matrix, compute_uv=False)
    if s.size == 0 or s[0] <= 0:
        return 1
    return max(int(np.count_nonzero(s / s[0] >= ratio)), 1)


def _prox_partial_tnn(x: np.ndarray, keep: int, tau: float) -> np.ndarray:
    """Proximal step of the partial sum of the tensor nuclear norm: in every Fourier slice the
    ``keep`` largest singular values are left alone and the others are shrunk by ``tau``."""
    n3 = x.shape[0]
    xf = np.fft.rfft(x, axis=0)
    u, s, vt = np.linalg.svd(xf, full_matrices=False)
    s = s.copy()
    s[:, keep:] = np.maximum(s[:, keep:] - tau, 0.0)
    return np.fft.irfft((u * s[:, None, :]) @ vt, n=n3, axis=0)


@method(
    "pstnn",
    reference="L. Zhang, Z. Peng, 'Infrared Small Target Detection Based on Partial Sum of the Tensor "
    "Nuclear Norm', Remote Sensing 11(4):382, 2019",
    family="low-rank patch tensor",
    params={
        "patch": 40,
        "step": 40,
        "lambda": "0.7/sqrt(max(n1, n2) n3)",
        "mu0": 2e-3,
        "rho": 1.05,
        "tol": 1e-3,
        "rank_ratio": 0.1,
        "weight_eps": 0.01,
        "prior": "structure-tensor corner strength",
        "reconstruction": "mean",
    },
    published_runtime_s=0.73,
)
def pstnn(
    image,
    patch: int = 40,
    step: int = 40,
    lambda_scale: float = 0.7,
    mu: float = 2e-3,
    rho: float = 1.05,
    tol: float = 1e-3,
    max_iter: int = 500,
) -> np.ndarray:
    """PSTNN saliency: tensor RPCA with the partial sum of the tensor nuclear norm and a
    reweighted, prior-weighted l1 target term.

    Zhang & Peng 2019 (and their release): frame on the 0..255 scale, ``40 x 40`` patches with
    step 40, ``lambda = 0.7 / sqrt(max(n1, n2) n3)``; the partial sum leaves the ``N`` largest
    singular values of every Fourier slice unpenalised, ``N`` = the number of singular values
    of the mode-1 unfolding above 0.1 times the largest; target weights
    ``N / (|T| + 0.01) / W_p`` with the local prior ``W_p = mat2gray(l1 l2 / (l1 + l2) max(l1, l2))``
    (structure-tensor eigenvalues, 3 x 3 Gaussians of sigma 2 and 9); ADMM from ``mu = 2e-3``
    growing by 1.05, stopping at relative residual ``1e-3`` or when the number of target
    entries stops changing; overlapping patches are averaged.

    Args:
        image: ``H x W`` array of any real dtype, or an image path.
        patch, step: patch side and stride, pixels.
        lambda_scale, mu, rho, tol, max_iter: model and solver settings (above).

    Returns:
        ``float32 H x W`` saliency ``>= 0`` (grey levels).
    """
    x = prepare(image)
    grid = PatchGrid.build(x.shape, patch, step)
    d = _tensor(grid, x)
    prior = _tensor(grid, corner_prior(x))
    n3, n1, n2 = d.shape
    norm_d = float(np.linalg.norm(d))
    if norm_d == 0:
        return finish(np.zeros(x.shape))
    keep = _ratio_rank(d.transpose(1, 2, 0).reshape(n1, -1), 0.1)
    lam = lambda_scale / np.sqrt(max(n1, n2) * n3)
    # a zero prior (flat area) means "no target here": a huge but finite weight keeps T at 0
    inv_prior = 1.0 / np.maximum(prior, 1e-12)
    t = np.zeros_like(d)
    y = np.zeros_like(d)
    weight = np.ones_like(d)
    support = -1
    for _ in range(max_iter):
        b = _prox_partial_tnn(d - t - y / mu, keep, 1.0 / mu)
        t = soft(d - b - y / mu, weight * (lam / mu))
        weight = keep / (np.abs(t) + 0.01) * inv_prior
        dy = b + t - d
        nnz = int(np.count_nonzero(t > 0))
        if np.linalg.norm(dy) / norm_d < tol or (nnz > 0 and nnz == support):
            break
        support = nnz
        y += mu * dy
        mu *= rho
    return finish(grid.mean(np.maximum(t, 0.0).reshape(grid.n_patches, -1)))


def _unfold(x: np.ndarray, mode: int) -> np.ndarray:
    return np.moveaxis(x, mode, 0).reshape(x.shape[mode], -1)


def _fold(m: np.ndarray, mode: int, shape: tuple[int, ...]) -> np.ndarray:
    moved = (shape[mode],) + tuple(s for i, s in enumerate(shape) if i != mode)
    return np.moveaxis(m.reshape(moved), 0, mode)


@method(
    "ript",
    reference="Y. Dai, Y. Wu, 'Reweighted Infrared Patch-Tensor Model With Both Nonlocal and Local "
    "Priors for Single-Frame Small Target Detection', IEEE JSTARS 10(8):3752-3767, 2017",
    family="low-rank patch tensor",
    params={
        "patch": 30,
        "step": 10,
        "lambda": "L/sqrt(min(n1, n2, n3)), L = 1",
        "h": 1.0,
        "weight_eps": 0.01,
        "mu0": "5 std(D)",
        "rho": 1.5,
        "reconstruction": "median",
    },
    published_runtime_s=1.09,
)
def ript(
    image,
    patch: int = 30,
    step: int = 10,
    lambda_scale: float = 1.0,
    h: float = 1.0,
    rho: float = 1.5,
    tol: float = 1e-7,
    max_iter: int = 100,
) -> np.ndarray:
    """RIPT saliency: reweighted higher-order RPCA (sum of the nuclear norms of the three
    unfoldings) with a local structure weight.

    Dai & Wu 2017: ``30 x 30`` patches, step 10, ``lambda = L / sqrt(min(n1, n2, n3))`` with
    ``L = 1``; the local structure prior ``W_ls = exp(h mat2gray(l1 - l2))`` (``h = 1``;
    structure-tensor eigenvalues with 3 x 3 Gaussians of sigma 1.2 and 2) is large on edges,
    and the entry weights ``W_ls / (|T| + 0.01)`` re-weight the target term each iteration.
    ADMM as in the release: the penalty ``mu`` starts at ``5 std(D)`` and is divided by
    ``rho = 1.5`` each iteration; non-negative target update; stop at relative residual ``1e-7``
    or when the number of target entries stops changing. Overlapping patches: median.

    Args:
        image: ``H x W`` array of any real dtype, or an image path.
        patch, step: patch side and stride, pixels.
        lambda_scale, h, rho, tol, max_iter: model and solver settings (above).

    Returns:
        ``float32 H x W`` saliency ``>= 0`` (grey levels).
    """
    x = prepare(image)
    grid = PatchGrid.build(x.shape, patch, step)
    d = _tensor(grid, x).astype(np.float32)
    shape = d.shape
    norm_d = float(np.linalg.norm(d))
    if norm_d == 0:
        return finish(np.zeros(x.shape))
    l1, l2 = structure_tensor_eigenvalues(x, 3, 1.2, 2.0)
    w_ls = _tensor(grid, np.exp(h * minmax01(l1 - l2))).astype(np.float32)
    lam = lambda_scale / np.sqrt(min(shape))
    mu = 5.0 * float(d.std())
    svts = [SVT(seed=i) for i in range(3)]
    bs = [d.copy() for _ in range(3)]
    ys = [np.zeros_like(d) for _ in range(3)]
    t = np.zeros_like(d)
    weight = w_ls.copy()
    support = -1
    for _ in range(max_iter):
        for i in range(3):
            m, _ = svts[i](_unfold(d + mu * ys[i] - t, i), mu)
            bs[i] = _fold(m, i, shape)
        avg = sum(d + mu * ys[i] - bs[i] for i in range(3)) / 3.0
        t = soft(np.maximum(avg, 0.0), weight * np.float32(mu * lam / 3.0))
        for i in range(3):
            ys[i] += (d - bs[i] - t) / np.float32(mu)
        weight = w_ls / (np.abs(t) + np.float32(0.01))
        mu /= rho
        b = sum(bs) / 3.0
        nnz = int(np.count_nonzero(t))
        if np.linalg.norm(d - b - t) / norm_d < tol or nnz == support:
            break
        support = nnz
    return finish(grid.median(np.maximum(t, 0.0).reshape(grid.n_patches, -1)))


@method(
    "mslstipt",
    reference="Y. Sun, J. Yang, W. An, 'Infrared Dim and Small Target Detection via Multiple Subspace "
    "Learning and Spatial-Temporal Patch-Tensor Model', IEEE TGRS 59(5):3737-3752, 2021 (single-frame use)",
    family="low-rank patch tensor",
    params={
        "patch": 40,
        "step": 20,
        "frames": 1,
        "dictionary": "leading left singular vectors of the mode-1 unfolding, ratio 0.1",
        "lambda": "1/sqrt(max(n1, n2) n3)",
        "mu0": 2e-3,
        "rho": 1.05,
        "tol": 1e-3,
        "weight_eps": 0.01,
        "prior": "structure-tensor corner strength",
        "reconstruction": "mean",
    },
    published_runtime_s=0.083,
)
def mslstipt(
    image,
    patch: int = 40,
    step: int = 20,
    rank_ratio: float = 0.1,
    lambda_scale: float = 1.0,
    mu: float = 2e-3,
    rho: float = 1.05,
    tol: float = 1e-3,
    max_iter: int = 300,
) -> np.ndarray:
    """MSLSTIPT saliency, single-frame: the background patch tensor is represented over a
    learned subspace dictionary with a low-tubal-rank coefficient tensor; the target is sparse.

    Sun, Yang & An 2021 stack the patches of ``L`` consecutive frames and model the background as
    data from multiple subspaces, represented over a dictionary, with a tensor-nuclear-norm
    coefficient tensor and a prior-weighted l1 target. On single frames (as in paper 001's
    tables) ``L = 1``. The authors' code is not public, so the concrete choices here are ours:
    dictionary ``A`` = the left singular vectors of the mode-1 unfolding of the patch tensor
    whose singular values exceed ``rank_ratio`` times the largest (the background's dominant
    row subspaces, learnt from the frame); model
    ``min ||Z||_TNN + lambda ||W (.) T||_1  s.t.  D = A x_1 Z + T`` with
    ``lambda = 1 / sqrt(max(n1, n2) n3)``, the PSTNN re-weighting ``1 / (|T| + 0.01) / W_p``
    with the corner prior ``W_p``, and PSTNN's ADMM settings (``mu = 2e-3``, ``rho = 1.05``,
    tolerance ``1e-3`` or a stable target support). Patches 40 x 40, step 20, averaged.

    Args:
        image: ``H x W`` array of any real dtype, or an image path.
        patch, step: patch side and stride, pixels.
        rank_ratio: dictionary size rule (above).
        lambda_scale, mu, rho, tol, max_iter: model and solver settings.

    Returns:
        ``float32 H x W`` saliency ``>= 0`` (grey levels).
    """
    x = prepare(image)
    grid = PatchGrid.build(x.shape, patch, step)
    d = _tensor(grid, x)
    prior = _tensor(grid, corner_prior(x))
    n3, n1, n2 = d.shape
    norm_d = float(np.linalg.norm(d))
    if norm_d == 0:
        return finish(np.zeros(x.shape))
    u, s, _ = np.linalg.svd(d.transpose(1, 2, 0).reshape(n1, -1), full_matrices=False)
    a = u[:, : max(int(np.count_nonzero(s / s[0] >= rank_ratio)), 1)]  # n1 x r, orthonormal
    lam = lambda_scale / np.sqrt(max(n1, n2) * n3)
    inv_prior = 1.0 / np.maximum(prior, 1e-12)
    t = np.zeros_like(d)
    y = np.zeros_like(d)
    weight = np.ones_like(d)
    support = -1
    for _ in range(max_iter):
        # Z-step: A has orthonormal columns, so the least-squares fit is a projection onto A and
        # the TNN proximal step acts on the coefficients A^T (D - T - Y / mu)
        coef = np.einsum("ir,kij->krj", a, d - t - y / mu)
        coef_f = np.fft.rfft(coef, axis=0)
        uu, ss, vv = np.linalg.svd(coef_f, full_matrices=False)
        ss = np.maximum(ss - 1.0 / mu, 0.0)
        z = np.fft.irfft((uu * ss[:, None, :]) @ vv, n=n3, axis=0)
        b = np.einsum("ir,krj->kij", a, z)
        t = soft(d - b - y / mu, weight * (lam / mu))
        weight = 1.0 / (np.abs(t) + 0.01) * inv_prior
        dy = b + t - d
        nnz = int(np.count_nonzero(t > 0))
        if np.linalg.norm(dy) / norm_d < tol or (nnz > 0 and nnz == support):
            break
        support = nnz
        y += mu * dy
        mu *= rho
    return finish(grid.mean(np.maximum(t, 0.0).reshape(grid.n_patches, -1)))
