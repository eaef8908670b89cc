"""irstd.metrics against a plain per-component regionprops loop, on the 86 NUAA-SIRST test images.

The predictions are made deterministically from the ground-truth masks (shifted, dilated or
eroded targets, dropped targets, false blobs, some of them copies of a target's shape and so of
equal area, smooth probability ramps and background noise), so that Pd < 1, Fa > 0 and the ROC is
not trivial. The reference below is written independently of irstd.metrics, the way the public
IRSTD code computes the metrics (skimage label + regionprops, a Python loop over components,
``np.linalg.norm`` of centroid differences, deletion from the candidate list), with the
equal-area bug fixed. Both must give identical numbers; irstd must be >= 5x faster in total.

    python benchmarks/bench_metrics.py [--dataset ../shared/datasets/NUAA-SIRST] [--repeats 5]

Timings are process CPU time (all threads), the best of ``--repeats`` runs: on a shared machine
wall-clock time mostly measures the other processes. Image decoding is not timed: both sides get
the same arrays in memory. The reference's total is the sum of its three parts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import measure

ROC_BINS = 100
PD_FA_THRESHOLDS = np.arange(1, 20) / 20
REQUIRED_SPEEDUP = 5.0
DEFAULT_DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "NUAA-SIRST"


# --------------------------------------------------------------------------------------------
# Deterministic predictions


def perturbed_prediction(mask: np.ndarray, index: int, seed: int = 0) -> np.ndarray:
    """A float32 probability map in [0, 1] made from a boolean ground-truth mask.

    Per image (seeded by ``(seed, index)``): each target is kept as is, shifted by up to 2 px,
    dilated, eroded or dropped; 0-3 false blobs are added (discs, or copies of a target's shape,
    which have a matched target's area); targets get a smooth border; the background gets
    smooth clutter below 0.5 and rare spikes above it.
    """
    rng = np.random.default_rng([seed, index])
    h, w = mask.shape
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    pred = np.zeros((h, w), np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    for k in range(1, n):
        comp = (labels == k).astype(np.uint8)
        action = rng.choice(["keep", "shift", "dilate", "erode", "drop"], p=[0.4, 0.25, 0.15, 0.1, 0.1])
        if action == "shift":
            dy, dx = rng.integers(-2, 3, size=2)
            comp = np.roll(comp, (int(dy), int(dx)), axis=(0, 1))
        elif action == "dilate":
            comp = cv2.dilate(comp, kernel)
        elif action == "erode":
            eroded = cv2.erode(comp, kernel)
            comp = eroded if eroded.any() else comp
        elif action == "drop":
            continue
        pred |= comp
    for _ in range(int(rng.choice(4, p=[0.5, 0.3, 0.15, 0.05]))):
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        if n > 1 and rng.random() < 0.3:
            # a copy of a target's shape elsewhere: same area as a (possibly matched) target
            ys, xs = np.nonzero(labels == int(rng.integers(1, n)))
            ys, xs = ys - ys.min() + cy, xs - xs.min() + cx
            keep = (ys < h) & (xs < w)
            pred[ys[keep], xs[keep]] = 1
        else:
            cv2.circle(pred, (cx, cy), int(rng.integers(0, 3)), 1, thickness=-1)
    prob = cv2.GaussianBlur(pred.astype(np.float32), (3, 3), 0.5)
    prob = np.clip(prob * rng.uniform(1.3, 2.0), 0.0, 1.0)
    # background clutter: smooth blobs up to ~0.45 (below 0.5, seen by the curves' low
    # thresholds), and rare isolated spikes above 0.5
    clutter = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 3.0)
    clutter = (clutter - clutter.min()) / max(float(clutter.max() - clutter.min()), 1e-6)
    prob = np.maximum(prob, 0.45 * clutter**6)
    spikes = rng.random((h, w)) < 1e-5
    prob[spikes] = rng.uniform(0.55, 1.0, size=int(spikes.sum())).astype(np.float32)
    return prob.astype(np.float32)


def load_test_set(root: Path) -> tuple[list[str], list[np.ndarray]]:
    """``(ids, boolean masks)`` of the test split, read with irstd's reader."""
    from irstd.data import IRSTDDataset, read_mask

    ds = IRSTDDataset(root, split="test")
    return ds.ids, [read_mask(ds.mask_path(i)) for i in ds.ids]


# --------------------------------------------------------------------------------------------
# Reference implementation: a plain per-component regionprops loop (independent of irstd.metrics)


def reference_scores(probs, masks, threshold: float = 0.5, distance: float = 3.0) -> dict[str, float]:
    """IoU, nIoU, PixAcc, pixel and target precision/recall/F1, Pd, Fa, as the public code does.

    Ratios with an empty denominator: 1 when there is no error to see, else 0 (irstd's rule); the
    per-image IoU of nIoU is 0 for an image with empty ground truth (the community value).
    """
    inter_total = union_total = gt_pixels = pred_pixels = 0
    iou_sum, images = 0.0, 0
    gt_total = pred_total = matched_total = false_pixels = all_pixels = 0
    for prob, gt in zip(probs, masks):
        pred = prob > prob.dtype.type(threshold)
        inter = int(np.sum(pred & gt))
        union = int(np.sum(pred | gt))
        inter_total += inter
        union_total += union
        gt_pixels += int(np.sum(gt))
        pred_pixels += int(np.sum(pred))
        iou_sum += inter / union if union else 0.0  # TP / (union + eps), as ACM computes it
        images += 1

        pred_regions = measure.regionprops(measure.label(pred, connectivity=2))
        gt_regions = measure.regionprops(measure.label(gt, connectivity=2))
        gt_total += len(gt_regions)
        pred_total += len(pred_regions)
        pool = list(pred_regions)
        for region in gt_regions:
            c_gt = np.array(region.centroid)
            for k in range(len(pool)):
                if np.linalg.norm(np.array(pool[k].centroid) - c_gt) < distance:
                    matched_total += 1
                    del pool[k]
                    break
        false_pixels += sum(int(r.area) for r in pool)  # every unmatched region, by identity
        all_pixels += pred.size

    def ratio(num, den, errors):
        return num / den if den else (1.0 if errors == 0 else 0.0)

    fp, fn = pred_pixels - inter_total, gt_pixels - inter_total
    t_fp, t_fn = pred_total - matched_total, gt_total - matched_total
    return {
        "IoU": ratio(inter_total, union_total, 0),
        "nIoU": iou_sum / images,
        "PixAcc": ratio(inter_total, gt_pixels, fp),
        "Pd": ratio(matched_total, gt_total, t_fp),
        "Fa": false_pixels / all_pixels,
        "F1": ratio(2 * matched_total, 2 * matched_total + t_fp + t_fn, 0),
        "precision": ratio(matched_total, pred_total, t_fn),
        "recall": ratio(matched_total, gt_total, t_fp),
        "pixel_precision": ratio(inter_total, pred_pixels, fn),
        "pixel_recall": ratio(inter_total, gt_pixels, fp),
        "pixel_F1": ratio(2 * inter_total, 2 * inter_total + fp + fn, 0),
        "target_precision": ratio(matched_total, pred_total, t_fn),
        "target_recall": ratio(matched_total, gt_total, t_fp),
        "target_F1": ratio(2 * matched_total, 2 * matched_total + t_fp + t_fn, 0),
    }


def reference_roc(probs, masks, bins: int = ROC_BINS) -> dict:
    """Pixel TPR/FPR at thresholds k / bins by one pass per threshold, AUC by trapezoids."""
    thresholds = np.arange(bins + 1) / bins
    tp = np.zeros(bins + 1, np.int64)
    fp = np.zeros(bins + 1, np.int64)
    pos = neg = 0
    for prob, gt in zip(probs, masks):
        pos += int(gt.sum())
        neg += int((~gt).sum())
        for k, t in enumerate(thresholds):
            pred = prob > prob.dtype.type(t)  # in the map's precision, as torch's `prob > t`
            tp[k] += int(np.sum(pred & gt))
            fp[k] += int(np.sum(pred & ~gt))
    tpr, fpr = tp / pos, fp / neg
    x = np.concatenate([[0.0], fpr[::-1], [1.0]])
    y = np.concatenate([[0.0], tpr[::-1], [1.0]])
    return {"tpr": tpr, "fpr": fpr, "AUC": float(np.trapezoid(y, x))}


def reference_pd_fa_curve(probs, masks, thresholds=PD_FA_THRESHOLDS) -> dict:
    """Pd and Fa at each threshold, each by the regionprops loop."""
    pd, fa = [], []
    for t in thresholds:
        s = reference_scores(probs, masks, threshold=float(t))
        pd.append(s["Pd"])
        fa.append(s["Fa"])
    return {"Pd": np.array(pd), "Fa": np.array(fa)}


# --------------------------------------------------------------------------------------------
# Ours


def ours_scores(probs, masks) -> dict[str, float]:
    from irstd.metrics import SegmentationMetrics

    m = SegmentationMetrics(threshold=0.5)
    for prob, gt in zip(probs, masks):
        m.update(prob, gt)
    return m.compute()


def ours_roc(probs, masks) -> dict:
    from irstd.metrics import ROC

    m = ROC(bins=ROC_BINS)
    for prob, gt in zip(probs, masks):
        m.update(prob, gt)
    return m.compute()


def ours_pd_fa_curve(probs, masks) -> dict:
    from irstd.metrics import PdFaCurve

    m = PdFaCurve(thresholds=PD_FA_THRESHOLDS)
    for prob, gt in zip(probs, masks):
        m.update(prob, gt)
    return m.compute()


def ours_all(probs, masks) -> tuple[dict, dict]:
    from irstd.metrics import SegmentationMetrics

    m = SegmentationMetrics(threshold=0.5, curves=True, roc_bins=ROC_BINS, pd_fa_thresholds=PD_FA_THRESHOLDS)
    for prob, gt in zip(probs, masks):
        m.update(prob, gt)
    return m.compute(), m.compute_curves()


# --------------------------------------------------------------------------------------------


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t0)
    return best * 1e3, result


def check_identical(ours_s, ref_s, ours_roc_, ref_roc_, ours_curve, ref_curve) -> None:
    for key, value in ref_s.items():
        if ours_s[key] != value:
            raise AssertionError(f"{key}: irstd {ours_s[key]!r} != reference {value!r}")
    if not (np.array_equal(ours_roc_["tpr"], ref_roc_["tpr"]) and np.array_equal(ours_roc_["fpr"], ref_roc_["fpr"])):
        raise AssertionError("ROC points differ from the reference")
    if abs(ours_roc_["AUC"] - ref_roc_["AUC"]) > 1e-12:
        raise AssertionError(f"AUC: irstd {ours_roc_['AUC']!r} != reference {ref_roc_['AUC']!r}")
    for key in ("Pd", "Fa"):
        if not np.array_equal(ours_curve[key], ref_curve[key]):
            raise AssertionError(f"Pd-Fa curve {key} differs from the reference")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    ids, masks = load_test_set(args.dataset)
    probs = [perturbed_prediction(m, i) for i, m in enumerate(masks)]

    for fn in (ours_all, reference_scores):  # warm-up: imports and first-call costs are not timed
        fn(probs[:2], masks[:2])

    rows = []
    t_ours, s_ours = best_time(lambda: ours_scores(probs, masks), args.repeats)
    t_ref, s_ref = best_time(lambda: reference_scores(probs, masks), args.repeats)
    rows.append(("IoU, nIoU, PixAcc, pixel + target P/R/F1, Pd, Fa (t = 0.5)", t_ours, t_ref))
    t_ours, roc_ours = best_time(lambda: ours_roc(probs, masks), args.repeats)
    t_ref, roc_ref = best_time(lambda: reference_roc(probs, masks), args.repeats)
    rows.append((f"pixel ROC + AUC ({ROC_BINS + 1} thresholds)", t_ours, t_ref))
    t_ours, curve_ours = best_time(lambda: ours_pd_fa_curve(probs, masks), args.repeats)
    t_ref, curve_ref = best_time(lambda: reference_pd_fa_curve(probs, masks), args.repeats)
    rows.append((f"Pd-Fa curve ({len(PD_FA_THRESHOLDS)} thresholds)", t_ours, t_ref))
    check_identical(s_ours, s_ref, roc_ours, roc_ref, curve_ours, curve_ref)

    t_all, (all_s, all_c) = best_time(lambda: ours_all(probs, masks), args.repeats)
    t_all_ref = sum(ref for _, _, ref in rows)
    check_identical(
        {k: v for k, v in all_s.items() if k != "AUC"}, s_ref, all_c["roc"], roc_ref, all_c["pd_fa"], curve_ref
    )
    rows.append(("all of the above (SegmentationMetrics(curves=True))", t_all, t_all_ref))

    n_gt = sum(int(measure.label(m, connectivity=2).max()) for m in masks)
    print(f"NUAA-SIRST test: {len(ids)} images, {n_gt} targets; best of {args.repeats} runs; numbers identical")
    print(
        f"(IoU {s_ref['IoU']:.4f}, nIoU {s_ref['nIoU']:.4f}, Pd {s_ref['Pd']:.4f}, "
        f"Fa {s_ref['Fa'] * 1e6:.2f}e-6, F1 {s_ref['F1']:.4f}, AUC {roc_ref['AUC']:.4f})"
    )
    print()
    print("| metrics | irstd ms | regionprops loop ms | speed-up |")
    print("|---|---:|---:|---:|")
    for name, ours, ref in rows:
        print(f"| {name} | {ours:.1f} | {ref:.1f} | {ref / ours:.1f}x |")
    speedup = t_all_ref / t_all
    if speedup < REQUIRED_SPEEDUP:
        print(f"FAIL: total speed-up {speedup:.1f}x < {REQUIRED_SPEEDUP}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
