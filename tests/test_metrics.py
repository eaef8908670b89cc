"""irstd.metrics: hand-computed cases, input forms, accumulation, curves, distributed reduction.

The independent reference (a plain skimage regionprops loop) lives in benchmarks/bench_metrics.py.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import measure

from irstd.metrics import (
    ROC,
    IoU,
    NIoU,
    PdFa,
    PdFaCurve,
    PixAcc,
    PixelPrecisionRecallF1,
    SegmentationMetrics,
    TargetPrecisionRecallF1,
    auc,
    iou,
    label_components,
    match_components,
    match_targets,
    niou,
    pd_fa,
    pd_fa_curve,
    pix_acc,
    pixel_precision_recall_f1,
    rce,
    roc_curve,
    scores,
    target_precision_recall_f1,
)

REPO = Path(__file__).resolve().parents[1]


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_metrics", REPO / "benchmarks" / "bench_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def blank(h=32, w=32):
    return np.zeros((h, w), dtype=bool)


def one_image(pred, gt, **kw):
    m = SegmentationMetrics(**kw)
    m.update(pred, gt)
    return m.compute(), m.counts()


# --------------------------------------------------------------------------------------------
# Matching distance: 2.9 px matches, 3.0 px does not


def test_centroid_offset_2_9_matches():
    gt = blank()
    gt[20, 10:12] = True  # centroid (20, 10.5)
    pred = blank()
    pred[20, 10:18] = True
    pred[19, 13] = pred[21, 13] = True  # 10 px, column sum 134 -> centroid (20, 13.4)
    # independent check of the construction with skimage
    c_gt = measure.regionprops(measure.label(gt, connectivity=2))[0].centroid
    c_pr = measure.regionprops(measure.label(pred, connectivity=2))[0].centroid
    assert math.isclose(float(np.linalg.norm(np.subtract(c_pr, c_gt))), 2.9, abs_tol=1e-9)
    s, c = one_image(pred, gt)
    assert c["matched_targets"] == 1 and s["Pd"] == 1.0
    assert c["false_alarm_pixels"] == 0 and s["Fa"] == 0.0


def test_centroid_offset_3_0_does_not_match():
    gt = blank()
    gt[20, 10:12] = True  # centroid (20, 10.5)
    pred = blank()
    pred[20, 13:15] = True  # centroid (20, 13.5): exactly 3.0 px away
    s, c = one_image(pred, gt)
    assert c["gt_targets"] == 1 and c["pred_targets"] == 1 and c["matched_targets"] == 0
    assert s["Pd"] == 0.0
    assert c["false_alarm_pixels"] == 2
    assert s["Fa"] == 2 / (32 * 32)


def test_diagonal_offset_below_3_matches():
    gt = blank()
    gt[10, 10] = True
    pred = blank()
    pred[12, 12] = True  # sqrt(8) = 2.83 px
    assert one_image(pred, gt)[0]["Pd"] == 1.0
    pred = blank()
    pred[13, 10] = True  # 3 px straight down
    assert one_image(pred, gt)[0]["Pd"] == 0.0


# --------------------------------------------------------------------------------------------
# Connectivity


def test_diagonally_touching_blobs_are_one_target():
    mask = blank()
    mask[4:6, 4:6] = True
    mask[6:8, 6:8] = True  # touches the first block only at a corner
    assert measure.label(mask, connectivity=1).max() == 2  # 4-connectivity would see two
    comps = label_components(mask)
    assert len(comps.areas) == 1 and comps.areas[0] == 8
    np.testing.assert_array_equal(comps.centroids[0], [5.5, 5.5])
    # as ground truth: one target, found by a prediction of the same shape
    s, c = one_image(mask, mask)
    assert c["gt_targets"] == 1 and c["pred_targets"] == 1 and s["Pd"] == 1.0


def test_touching_prediction_blobs_merge_into_one_component():
    gt = blank()
    gt[10, 10] = True
    gt[10, 20] = True
    pred = blank()
    pred[10, 10] = True
    pred[11, 11] = pred[12, 12] = pred[13, 13] = True  # diagonal tail joins the blob
    s, c = one_image(pred, gt)
    assert c["pred_targets"] == 1
    # centroid (11.5, 11.5) is 2.12 px from (10, 10): matched, second GT target missed
    assert c["matched_targets"] == 1 and s["Pd"] == 0.5 and s["Fa"] == 0.0


def test_label_order_and_centroids_equal_skimage():
    rng = np.random.default_rng(0)
    for _ in range(200):
        shape = tuple(rng.integers(1, 60, size=2))
        mask = rng.random(shape) < rng.choice([0.002, 0.02, 0.1, 0.4])
        comps = label_components(mask)
        regions = measure.regionprops(measure.label(mask, connectivity=2))
        assert [r.area for r in regions] == list(comps.areas)
        assert [tuple(r.centroid) for r in regions] == [tuple(c) for c in comps.centroids]
    # large and dense (more than 65535 foreground pixels): the 32-bit label path
    mask = rng.random((480, 480)) < 0.3
    comps = label_components(mask)
    regions = measure.regionprops(measure.label(mask, connectivity=2))
    assert [r.area for r in regions] == list(comps.areas)
    assert [tuple(r.centroid) for r in regions] == [tuple(c) for c in comps.centroids]


def test_scattered_false_alarms_far_apart():
    gt = blank(200, 300)
    gt[100:103, 150:153] = True
    pred = gt.copy()
    for y, x in [(0, 0), (0, 299), (199, 0), (199, 299), (5, 6), (6, 7)]:
        pred[y, x] = True  # (5, 6) and (6, 7) touch diagonally: one component
    s, c = one_image(pred, gt)
    assert c["pred_targets"] == 6 and c["matched_targets"] == 1
    assert c["false_alarm_pixels"] == 6


# --------------------------------------------------------------------------------------------
# Empty cases and the zero-denominator rule


def test_empty_ground_truth_and_empty_prediction():
    s, c = one_image(blank(), blank())
    assert c["gt_targets"] == 0 and c["pred_targets"] == 0
    for key in ("IoU", "PixAcc", "Pd", "F1", "precision", "recall", "pixel_F1"):
        assert s[key] == 1.0, key
    assert s["Fa"] == 0.0
    # nIoU: ACM's SamplewiseSigmoidMetric divides TP by (union + eps), so empty/empty scores 0
    assert s["nIoU"] == 0.0 and niou(blank(), blank()) == 0.0
    assert one_image(blank(), blank(), empty_gt="one")[0]["nIoU"] == 1.0
    assert niou(blank(), blank(), empty_gt="one") == 1.0
    assert scores(blank(), blank(), empty_gt="one")["nIoU"] == 1.0
    with pytest.raises(ValueError, match="empty_gt"):
        NIoU(empty_gt="zero")
    with pytest.raises(ValueError, match="empty_gt"):
        niou(blank(), blank(), empty_gt="zero")


def test_empty_ground_truth_with_false_alarm():
    pred = blank()
    pred[3:5, 3:5] = True
    s, c = one_image(pred, blank())
    assert s["IoU"] == 0.0 and s["nIoU"] == 0.0
    assert one_image(pred, blank(), empty_gt="one")[0]["nIoU"] == 0.0  # a false alarm: 0 under both rules
    assert s["Pd"] == 0.0 and s["precision"] == 0.0 and s["F1"] == 0.0
    assert c["false_alarm_pixels"] == 4 and s["Fa"] == 4 / 1024


def test_all_background_prediction():
    gt = blank()
    gt[5:7, 5:7] = True
    gt[20, 20] = True
    s, c = one_image(np.zeros((32, 32), np.float32), gt)
    assert c["gt_targets"] == 2 and c["pred_targets"] == 0
    assert s["IoU"] == 0.0 and s["nIoU"] == 0.0 and s["PixAcc"] == 0.0
    assert s["Pd"] == 0.0 and s["Fa"] == 0.0
    assert s["precision"] == 0.0 and s["F1"] == 0.0  # nothing predicted but targets missed
    assert s["pixel_precision"] == 0.0


def test_niou_averages_images_with_the_empty_rule():
    gt1 = blank()
    gt1[0:2, 0:2] = True
    pred1 = blank()
    pred1[0:2, 0:1] = True  # IoU 2/4
    p3 = blank()
    p3[9, 9] = True
    community, one = NIoU(), NIoU(empty_gt="one")
    for m in (community, one):
        m.update(pred1, gt1)
        m.update(blank(), blank())  # empty / empty: 0 (community) or 1
        m.update(p3, blank())  # empty GT, a prediction: 0 under both
    assert community.compute() == pytest.approx((0.5 + 0.0 + 0.0) / 3)
    assert one.compute() == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    m2 = IoU()
    for p, g in [(pred1, gt1), (blank(), blank()), (p3, blank())]:
        m2.update(p, g)
    assert m2.compute() == 2 / 5  # pooled: TP 2, FP 1, FN 2


def test_no_images_gives_nan():
    out = SegmentationMetrics().compute()
    assert all(math.isnan(v) for v in out.values())


# --------------------------------------------------------------------------------------------
# Greedy matching as the community code does it, and the equal-area bug


def test_greedy_takes_first_remaining_component_not_the_best_assignment():
    gt = blank()
    gt[10, 10] = True  # A, label 1
    gt[10, 14] = True  # B, label 2
    pred = blank()
    pred[10, 12] = True  # P1, label 1: 2 px from A and from B
    pred[12, 10] = True  # P2, label 2: 2 px from A, 4.5 px from B
    s, c = one_image(pred, gt)
    # A takes P1 (lowest label), B finds nothing: an optimal assignment would match both
    assert c["matched_targets"] == 1 and s["Pd"] == 0.5
    assert c["false_alarm_pixels"] == 1


def test_greedy_takes_lowest_label_not_nearest():
    gt_c = np.array([[10.0, 10.0]])
    pred_c = np.array([[8.0, 10.0], [10.0, 11.0]])  # first at 2 px, second at 1 px
    np.testing.assert_array_equal(match_components(gt_c, pred_c), [0])
    gt_c = np.array([[10.0, 10.0], [10.0, 12.0]])
    np.testing.assert_array_equal(match_components(gt_c, pred_c), [0, 1])
    np.testing.assert_array_equal(match_components(gt_c, np.zeros((0, 2))), [-1, -1])


def test_equal_area_unmatched_component_is_counted():
    # Hand-computed. The DNANet code summed the unmatched components' areas "not in" the list of
    # matched areas, so every false alarm with the area of some hit vanished from Fa.
    gt = blank()
    gt[5:7, 5:7] = True  # target A, area 4
    gt[5, 20] = True  # target B, area 1
    pred = blank()
    pred[5:7, 5:7] = True  # hits A, area 4
    pred[5, 20] = True  # hits B, area 1
    pred[20:22, 20:22] = True  # false alarm, area 4 (= A's): dropped by the DNANet rule
    pred[28, 3] = True  # false alarm, area 1 (= B's): dropped by the DNANet rule
    pred[25:28, 25] = True  # false alarm, area 3: counted by both rules
    s, c = one_image(pred, gt)
    assert c["matched_targets"] == 2 and c["pred_targets"] == 5
    # correct rule: 4 + 1 + 3 = 8 false-alarm pixels; the DNANet rule would give 3
    assert c["false_alarm_pixels"] == 8 and s["Fa"] == 8 / 1024
    assert pd_fa(pred, gt) == {"Pd": 1.0, "Fa": 8 / 1024}


def test_match_targets_reports_hits_misses_and_false_alarms_as_pd_fa_counts_them():
    gt = blank()
    gt[4:6, 4:6] = True  # hit (prediction 1 px off)
    gt[15, 15] = True  # missed: the nearest prediction is 3 px away
    gt[28, 28] = True  # missed: nothing near
    pred = blank()
    pred[4:6, 5:7] = True
    pred[15, 18] = True  # false alarm
    m = match_targets(pred, gt)
    assert m.counts == {"targets": 3, "hits": 1, "misses": 2, "false_alarms": 1}
    np.testing.assert_array_equal(m.hit, [True, False, False])
    np.testing.assert_array_equal(m.false_alarm, [False, True])
    s, c = one_image(pred, gt)
    assert (c["gt_targets"], c["matched_targets"], c["pred_targets"]) == (3, 1, 2)
    assert c["false_alarm_pixels"] == int(m.pred.areas[m.false_alarm].sum())


# --------------------------------------------------------------------------------------------
# Input forms


def _random_case(rng, n=4, h=40, w=48):
    gts, probs = [], []
    for _ in range(n):
        gt = np.zeros((h, w), bool)
        for _ in range(rng.integers(0, 4)):
            y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
            gt[y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = True
        prob = np.where(gt, 0.8, 0.1) + rng.normal(0, 0.15, (h, w))
        prob = np.clip(prob, 0.0, 1.0).astype(np.float32)
        prob[np.abs(prob - 0.5) < 1e-3] = 0.6  # keep away from the threshold (logit rounding)
        gts.append(gt)
        probs.append(prob)
    return np.stack(probs), np.stack(gts)


def test_numpy_torch_logits_and_auto_agree():
    rng = np.random.default_rng(1)
    probs, gts = _random_case(rng)
    ref = scores(probs, gts)
    p64 = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    logits = np.log(p64 / (1 - p64)).astype(np.float32)
    assert scores(torch.from_numpy(probs), torch.from_numpy(gts)) == ref
    assert scores(torch.from_numpy(probs)[:, None], torch.from_numpy(gts)[:, None].float()) == ref
    assert scores(logits, gts, input="logits") == ref
    assert scores(torch.from_numpy(logits), gts, input="auto") == ref
    assert scores(probs, gts, input="auto") == ref
    assert scores(probs, gts.astype(np.uint8) * 255) == ref  # 0/255 targets
    assert scores(probs > 0.5, gts) == ref  # binary masks
    assert scores((probs > 0.5).astype(np.uint8) * 255, gts) == ref  # 0/255 masks
    assert scores(torch.from_numpy(probs).to(torch.bfloat16).float(), gts) == scores(
        torch.from_numpy(probs).to(torch.bfloat16), gts
    )


def test_quantised_maps_threshold_like_read_probability():
    rng = np.random.default_rng(2)
    probs, gts = _random_case(rng, n=2)
    u8 = np.round(probs * 255).astype(np.uint8)
    u16 = np.round(probs * 65535).astype(np.uint16)
    assert scores(u8, gts) == scores((u8.astype(np.float64) / 255).astype(np.float32), gts)
    assert scores(u16, gts) == scores((u16.astype(np.float64) / 65535).astype(np.float32), gts)
    # an 8-bit level equal to the threshold is not above it
    level = np.full((4, 4), 51, np.uint8)  # 51 / 255 = 0.2
    assert iou(level, np.ones((4, 4), bool), threshold=0.2) == 0.0


def test_batch_equals_per_image_and_lists_of_sizes():
    rng = np.random.default_rng(3)
    probs, gts = _random_case(rng, n=5)
    batch = SegmentationMetrics(curves=True)
    batch.update(torch.from_numpy(probs)[:, None], torch.from_numpy(gts)[:, None])
    single = SegmentationMetrics(curves=True)
    for p, g in zip(probs, gts):
        single.update(p, g)
    assert batch.compute() == single.compute()
    assert batch.counts() == single.counts()
    # images of different sizes as a list
    small_p, small_g = _random_case(rng, n=1, h=17, w=23)
    listed = SegmentationMetrics()
    listed.update([probs[0], small_p[0]], [gts[0], small_g[0]])
    parts = SegmentationMetrics()
    parts.update(probs[0], gts[0])
    parts.update(small_p[0], small_g[0])
    assert listed.compute() == parts.compute()


def test_reset_forgets_everything():
    rng = np.random.default_rng(4)
    probs, gts = _random_case(rng)
    m = SegmentationMetrics(curves=True)
    m.update(probs, gts)
    first = m.compute()
    m.update(1 - probs, gts)
    assert m.compute() != first
    m.reset()
    assert math.isnan(m.compute()["IoU"])
    m.update(probs, gts)
    assert m.compute() == first


def test_individual_classes_and_functions_match_the_collection():
    rng = np.random.default_rng(5)
    probs, gts = _random_case(rng, n=6)
    s = scores(probs, gts)
    for cls, expected in [
        (IoU, s["IoU"]),
        (NIoU, s["nIoU"]),
        (PixAcc, s["PixAcc"]),
        (PdFa, {"Pd": s["Pd"], "Fa": s["Fa"]}),
        (PixelPrecisionRecallF1, {"precision": s["pixel_precision"], "recall": s["pixel_recall"], "F1": s["pixel_F1"]}),
        (TargetPrecisionRecallF1, {"precision": s["target_precision"], "recall": s["target_recall"], "F1": s["target_F1"]}),
    ]:
        m = cls()
        for p, g in zip(probs, gts):
            m.update(p, g)
        assert m.compute() == expected, cls.__name__
    assert iou(probs, gts) == s["IoU"] and niou(probs, gts) == s["nIoU"] and pix_acc(probs, gts) == s["PixAcc"]
    assert pd_fa(probs, gts) == {"Pd": s["Pd"], "Fa": s["Fa"]}
    assert pixel_precision_recall_f1(probs, gts)["F1"] == s["pixel_F1"]
    assert target_precision_recall_f1(probs, gts)["F1"] == s["F1"] == s["target_F1"]
    assert s["recall"] == s["Pd"] and s["PixAcc"] == s["pixel_recall"]
    assert s["pixel_F1"] == pytest.approx(2 * s["IoU"] / (1 + s["IoU"]))


def test_hand_computed_pixel_and_target_scores():
    gt = blank(10, 10)
    gt[1:3, 1:3] = True  # target 1: 4 px
    gt[7, 7] = True  # target 2: 1 px, missed
    pred = blank(10, 10)
    pred[1:3, 1:4] = True  # 6 px: 4 TP + 2 FP, centroid (1.5, 2) vs (1.5, 1.5): matched
    pred[8, 1] = True  # false target, 1 px
    s, c = one_image(pred, gt)
    assert (c["tp"], c["fp"], c["fn"]) == (4, 3, 1)
    assert s["IoU"] == 4 / 8 and s["PixAcc"] == 4 / 5 and s["pixel_precision"] == 4 / 7
    assert s["pixel_F1"] == 8 / 12
    assert s["Pd"] == 0.5 and s["Fa"] == 1 / 100
    assert s["target_precision"] == 0.5 and s["F1"] == 2 / 4


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="logits"):
        SegmentationMetrics().update(np.full((4, 4), 3.0, np.float32), blank(4, 4))
    with pytest.raises(ValueError, match="shape"):
        SegmentationMetrics().update(np.zeros((4, 5), np.float32), blank(4, 4))
    with pytest.raises(ValueError, match="NaN"):
        SegmentationMetrics(input="auto").update(np.full((4, 4), np.nan, np.float32), blank(4, 4))
    with pytest.raises(ValueError):
        SegmentationMetrics().update(np.zeros((2, 3, 4, 4), np.float32), np.zeros((2, 3, 4, 4), bool))
    with pytest.raises(ValueError):
        SegmentationMetrics(threshold=1.5)
    with pytest.raises(ValueError):
        SegmentationMetrics(input="sigmoid")


def test_agrees_with_regionprops_reference_on_random_images():
    rng = np.random.default_rng(6)
    probs, gts = [], []
    for i in range(30):
        h, w = rng.integers(20, 70, size=2)
        gt = rng.random((h, w)) < rng.choice([0.0, 0.01, 0.05])
        gt |= np.roll(gt, 1, axis=1)
        probs.append(bench.perturbed_prediction(gt, i, seed=7))
        gts.append(gt)
    for t in (0.3, 0.5, 0.7):
        ours = SegmentationMetrics(threshold=t)
        ours.update(probs, gts)
        assert ours.compute() == bench.reference_scores(probs, gts, threshold=t)


# --------------------------------------------------------------------------------------------
# Curves and RCE


def test_perfect_predictor_auc_is_one_and_inverse_is_zero():
    rng = np.random.default_rng(7)
    _, gts = _random_case(rng)
    gts[0, 0, 0] = True  # at least one target pixel
    assert roc_curve(gts, gts)["AUC"] == 1.0
    soft = np.where(gts, 0.9, 0.3).astype(np.float32)
    assert roc_curve(soft, gts)["AUC"] == 1.0
    assert roc_curve(1 - soft, gts)["AUC"] == 0.0
    assert roc_curve(np.full(gts.shape, 0.5, np.float32), gts)["AUC"] == 0.5


def test_roc_points_equal_a_per_threshold_loop():
    rng = np.random.default_rng(8)
    probs, gts = _random_case(rng, n=3)
    probs[0, :3, :3] = 0.25  # values exactly on thresholds
    probs[1, :3, :3] = 1.0
    probs[2, :3, :3] = 0.0
    m = ROC(bins=20)
    m.update(probs, gts)
    out = m.compute()
    pos, neg = gts.sum(), (~gts).sum()
    for k, t in enumerate(out["thresholds"]):
        pred = probs > np.float32(t)
        assert out["tpr"][k] == (pred & gts).sum() / pos
        assert out["fpr"][k] == (pred & ~gts).sum() / neg
    ref = bench.reference_roc(list(probs), list(gts), bins=20)
    assert out["AUC"] == pytest.approx(ref["AUC"], abs=1e-12)


def test_auc_function():
    assert auc([0.0], [1.0]) == 1.0  # (0,0) (0,1) (1,1)
    assert auc([0.5], [0.5]) == 0.5
    assert math.isnan(auc([np.nan], [0.5]))


def test_pd_fa_curve_matches_single_threshold_metrics():
    rng = np.random.default_rng(9)
    probs, gts = _random_case(rng, n=4)
    thresholds = [0.2, 0.5, 0.8]
    curve = PdFaCurve(thresholds)
    curve.update(probs, gts)
    out = curve.compute()
    for k, t in enumerate(thresholds):
        single = pd_fa(probs, gts, threshold=t)
        assert out["Pd"][k] == single["Pd"] and out["Fa"][k] == single["Fa"]
    np.testing.assert_array_equal(pd_fa_curve(probs, gts, thresholds)["Pd"], out["Pd"])
    m = SegmentationMetrics(curves=True, pd_fa_thresholds=thresholds)
    m.update(probs, gts)
    curves = m.compute_curves()
    np.testing.assert_array_equal(curves["pd_fa"]["Fa"], out["Fa"])
    assert m.compute()["AUC"] == curves["roc"]["AUC"]
    with pytest.raises(RuntimeError):
        SegmentationMetrics().compute_curves()


def test_rce():
    assert rce(0.8, 0.6) == pytest.approx(0.25)
    assert rce(0.5, 0.5) == 0.0
    assert rce(0.5, 0.6) == pytest.approx(-0.2)
    with pytest.raises(ValueError):
        rce(0.0, 0.1)


# --------------------------------------------------------------------------------------------
# Distributed reduction


def test_sync_without_process_group_and_update_after_sync():
    m = SegmentationMetrics()
    m.update(np.ones((4, 4), np.float32), np.ones((4, 4), bool))
    before = m.compute()
    m.sync()
    m.sync()  # idempotent
    assert m.compute() == before
    with pytest.raises(RuntimeError, match="reset"):
        m.update(np.ones((4, 4), np.float32), np.ones((4, 4), bool))
    m.reset()
    m.update(np.ones((4, 4), np.float32), np.ones((4, 4), bool))


def _sync_worker(rank: int, world: int, out_dir: str) -> None:
    import torch.distributed as dist

    # A file store, not a TCP port: a port picked free beforehand can be taken by another process
    # before the group binds it.
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world)
    try:
        probs, gts = _random_case(np.random.default_rng(10), n=6)
        m = SegmentationMetrics(curves=True)
        m.update(probs[rank::world], gts[rank::world])  # each rank sees its share
        m.sync()
        np.save(os.path.join(out_dir, f"rank{rank}.npy"), np.array([m.compute()], dtype=object))
        dist.barrier()  # leave together: no rank closes its connections while the other still reads
    finally:
        dist.destroy_process_group()


def test_sync_reduces_across_two_processes(tmp_path):
    import torch.multiprocessing as mp

    # fork: the children need not import torch again (no CUDA is initialised in this process)
    mp.start_processes(
        _sync_worker, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    probs, gts = _random_case(np.random.default_rng(10), n=6)
    whole = SegmentationMetrics(curves=True)
    whole.update(probs, gts)
    expected = whole.compute()
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npy", allow_pickle=True)[0]
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key], abs=1e-12), key
