"""HTML reports of runs and prediction folders (``irstd report``).

One ``index.html`` with everything embedded (``data:`` URIs; no network access, no external CSS or
JS), built from *sources* scored on one dataset split:

* a run directory: its detector (``best/``, else ``last/``; :func:`~irstd.engine.predictor.load_detector`)
  is scored image by image by :func:`irstd.engine.evaluator.evaluate`, the code of ``irstd test``;
  the numbers of the run's ``test_metrics.json`` are shown beside when it exists;
* a folder written by ``irstd predict``: ``<id>_prob.png`` (16-bit probabilities, ``--save-prob``)
  when present, else the ``<id>.png`` mask, scored by :class:`irstd.metrics.SegmentationMetrics`.

Sections: the metrics table of every source; ROC and Pd-Fa curves of all sources (matplotlib); per
run the training curves of ``log.csv``, the robustness table and bar chart of ``robustness.json``
(in the run folder or its ``robustness/``) and the HRL policy plot ``policy.png``, each when
present; a gallery of every image of the split. Gallery pictures are
:func:`~irstd.engine.predictor.make_overlay` (targets hit: green circles, missed: magenta circles,
false alarms: orange squares, matched as Pd and Fa match them, :func:`irstd.metrics.match_targets`)
and a pixel map (pixels of ground truth and prediction: green; ground truth only: magenta;
prediction only: orange). A small inline script sorts and filters the gallery by per-image IoU.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from irstd.errors import IRSTDError

__all__ = ["Source", "unique_label", "pixel_map", "score_run", "score_predictions", "build_report", "write_report", "check_robustness"]

_FORMATS = {
    "IoU": "{:.4f}",
    "nIoU": "{:.4f}",
    "Pd": "{:.4f}",
    "Fa": "{:.2f}",
    "F1": "{:.4f}",
    "PixAcc": "{:.4f}",
    "pixel_F1": "{:.4f}",
    "AUC": "{:.4f}",
}


@dataclass
class Source:
    """One scored run or prediction folder."""

    label: str
    kind: str  # "run" or "predictions"
    path: Path
    detail: str
    threshold: float
    metrics: dict
    curves: dict
    images: list[dict] = field(default_factory=list)  # id, iou, counts, overlay, pixels (bytes)
    recorded: dict | None = None  # test_metrics.json
    log_rows: list[dict] | None = None
    robustness: dict | None = None
    robustness_path: Path | None = None
    policy_png: bytes | None = None


# ------------------------------------------------------------------------------------ pictures


def _jpeg(rgb: np.ndarray) -> bytes:
    import cv2

    # 4:4:4 keeps the one-pixel coloured marks from bleeding into the grey image
    params = [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise IRSTDError("cannot encode a gallery picture as JPEG")
    return buf.tobytes()


def _png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise IRSTDError("cannot encode a gallery picture as PNG")
    return buf.tobytes()


def pixel_map(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RGB ``uint8`` map of one binary prediction against its ground truth on black: both green,
    ground truth only magenta, prediction only orange (the colours of :func:`make_overlay`)."""
    from irstd.engine.predictor import FALSE_ALARM_COLOUR, HIT_COLOUR, MISS_COLOUR

    rgb = np.zeros((*pred.shape, 3), dtype=np.uint8)
    rgb[pred & truth] = HIT_COLOUR
    rgb[truth & ~pred] = MISS_COLOUR
    rgb[pred & ~truth] = FALSE_ALARM_COLOUR
    return rgb


def _gallery_entry(item: str, raw: np.ndarray, prob: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    from irstd.engine.predictor import make_overlay
    from irstd.metrics import match_targets
    from irstd.metrics.functional import binarize_prediction, image_iou, image_stats

    # the metrics' own binarisation and matching, so that the pictures add up to Pd and Fa
    pred = binarize_prediction(prob, threshold)
    truth = np.asarray(truth, dtype=bool)
    match = match_targets(pred, truth)
    iou = image_iou(image_stats(pred, truth))
    return {
        "id": item,
        "iou": float(iou),
        "empty": not truth.any() and not pred.any(),
        "size": [int(raw.shape[1]), int(raw.shape[0])],
        **match.counts,
        "overlay": _jpeg(make_overlay(raw, pred, [], match)),
        "pixels": _png(pixel_map(pred, truth)),
    }


# ------------------------------------------------------------------------------------ sources


def unique_label(path: Path, taken: set[str]) -> str:
    label = path.resolve().name or str(path)
    base, k = label, 2
    while label in taken:
        label, k = f"{base} ({k})", k + 1
    taken.add(label)
    return label


def _read_log(path: Path) -> list[dict] | None:
    if not path.is_file():
        return None
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise IRSTDError(f"{path}: cannot read the training log ({exc})") from None
    if rows and "epoch" not in rows[0]:
        raise IRSTDError(f"{path}: training log without an 'epoch' column")
    out = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value) if value not in (None, "") else math.nan
            except ValueError:
                parsed[key] = math.nan
        out.append(parsed)
    return out


def check_robustness(results, path: Path) -> dict:
    """``results`` (a loaded ``robustness.json``) if it has every field the report reads, else an
    IRSTDError naming the first missing one."""

    def need(obj, keys: list[str], where: str):
        for key in keys:
            if not isinstance(obj, dict) or key not in obj:
                raise IRSTDError(f"{path}: missing field '{where}{key}' (written by irstd robustness)")
        return obj

    need(results, ["meta", "clean", "corruptions", "average"], "")
    need(results["clean"], ["IoU"], "clean.")
    need(results["average"], ["IoU", "RCE"], "average.")
    if not isinstance(results["corruptions"], dict) or not results["corruptions"]:
        raise IRSTDError(f"{path}: field 'corruptions' holds no corruption")
    for name, entry in results["corruptions"].items():
        need(entry, ["mean", "severities"], f"corruptions.{name}.")
        need(entry["mean"], ["IoU", "RCE"], f"corruptions.{name}.mean.")
        if not isinstance(entry["severities"], dict):
            raise IRSTDError(f"{path}: field 'corruptions.{name}.severities' is not a mapping")
        for sev, values in entry["severities"].items():
            need(values, ["IoU", "nIoU", "Pd", "Fa", "RCE"], f"corruptions.{name}.severities.{sev}.")
    need(results["clean"], ["nIoU", "Pd", "Fa"], "clean.")
    return results


def _run_extras(source: Source, run: Path) -> None:
    recorded = run / "test_metrics.json"
    if recorded.is_file():
        try:
            source.recorded = json.loads(recorded.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise IRSTDError(f"{recorded}: not readable JSON ({exc})") from None
    source.log_rows = _read_log(run / "log.csv")
    for candidate in (run / "robustness.json", run / "robustness" / "robustness.json"):
        if candidate.is_file():
            try:
                loaded = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise IRSTDError(f"{candidate}: not readable JSON ({exc})") from None
            source.robustness, source.robustness_path = check_robustness(loaded, candidate), candidate
            break
    policy = run / "policy.png"
    if policy.is_file():
        source.policy_png = policy.read_bytes()


def score_run(
    run: str | os.PathLike,
    dataset,
    *,
    label: str,
    checkpoint: str = "auto",
    device: str = "auto",
    threshold: float | None = None,
    progress: bool = False,
) -> Source:
    """Score the detector of run directory ``run`` on ``dataset`` (an :class:`irstd.data.IRSTDDataset`)
    with :func:`irstd.engine.evaluator.evaluate` and collect the run's other outputs.

    Raises:
        IRSTDError: not a run directory, no checkpoint, unreadable log / metrics / robustness files.
    """
    from irstd.engine.evaluator import evaluate
    from irstd.engine.predictor import load_detector

    run = Path(run)
    if not run.is_dir():
        raise IRSTDError(f"{run}: run directory not found")
    detector = load_detector(run=run, checkpoint=checkpoint, device=device, threshold=threshold)
    images: list[dict] = []

    def on_image(index, prob, mask):
        raw, _ = dataset.load_arrays(index)
        images.append(_gallery_entry(dataset.ids[index], raw, prob, mask, detector.threshold))

    metrics = evaluate(
        detector.model,
        dataset,
        detector.device,
        detector.threshold,
        in_chans=detector.in_chans,
        curves=True,
        progress=progress,
        desc=f"report {run.name}",
        on_image=on_image,
    )
    curves = metrics.pop("curves")
    source = Source(label, "run", run, detector.name, detector.threshold, metrics, curves, images)
    _run_extras(source, run)
    return source


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def score_predictions(pred_dir: str | os.PathLike, dataset, *, label: str, threshold: float = 0.5) -> Source:
    """Score a folder written by ``irstd predict`` against ``dataset``: per id ``<id>_prob.png``
    when present (curves then span every threshold), else the ``<id>.<ext>`` mask.

    Raises:
        IRSTDError: no such folder; ids of the split without a prediction (listed, with the ids the
            folder does hold when none match); unreadable or mis-sized predictions.
    """
    from irstd.data.dataset import scan_image_folder
    from irstd.data.io import read_probability
    from irstd.metrics import SegmentationMetrics

    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise IRSTDError(f"{pred_dir}: prediction folder not found")
    by_stem, _ = scan_image_folder(pred_dir)
    chosen, missing = {}, []
    for item in dataset.ids:
        for stem in (f"{item}_prob", item):
            found = by_stem.get(stem, [])
            if len(found) > 1:
                raise IRSTDError(f"{pred_dir}: several predictions for id '{item}' ({', '.join(p.name for p in found)})")
            if found:
                chosen[item] = found[0]
                break
        else:
            missing.append(item)
    if missing:
        held = sorted(s for s in by_stem if not s.endswith(("_prob", "_overlay")))
        what = f"{dataset.root.name}/{dataset.split or 'ids'}"
        if len(missing) == len(dataset.ids):
            raise IRSTDError(
                f"{pred_dir}: holds predictions for other ids than {what} (it has {_listing(held) or 'no images'}; "
                f"the split has {_listing(list(dataset.ids))})"
            )
        raise IRSTDError(f"{pred_dir}: {len(missing)} of {len(dataset.ids)} ids of {what} have no prediction: {_listing(missing)}")
    metrics = SegmentationMetrics(threshold=threshold, input="probs", curves=True)
    images = []
    for index, item in enumerate(dataset.ids):
        raw, truth = dataset.load_arrays(index)
        prob = read_probability(chosen[item])
        if prob.ndim != 2 or prob.shape != truth.shape:
            raise IRSTDError(
                f"{chosen[item]}: prediction size {prob.shape[-1]}x{prob.shape[0]} (WxH) differs from the "
                f"mask of id '{item}' ({truth.shape[1]}x{truth.shape[0]})"
            )
        metrics.update(prob, truth)
        images.append(_gallery_entry(item, raw, prob, truth, threshold))
    scores = dict(metrics.compute())
    scores["num_images"] = len(dataset.ids)
    kinds = sorted({"probability maps" if p.stem.endswith("_prob") else "masks" for p in chosen.values()})
    return Source(
        label, "predictions", pred_dir, f"{' and '.join(kinds)} in {pred_dir}", float(threshold), scores,
        metrics.compute_curves(), images,
    )


# ------------------------------------------------------------------------------------ plots


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _curve_plots(sources: list[Source]) -> bytes:
    plt = _pyplot()
    fig, (roc_ax, pdfa_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in sources:
        roc = s.curves["roc"]
        fpr, tpr = np.asarray(roc["fpr"], dtype=float), np.asarray(roc["tpr"], dtype=float)
        roc_ax.plot(fpr, tpr, marker=".", markersize=3, label=f"{s.label} (AUC {float(roc['AUC']):.3f})")
        pdfa = s.curves["pd_fa"]
        fa, pd = np.asarray(pdfa["Fa"], dtype=float) * 1e6, np.asarray(pdfa["Pd"], dtype=float)
        pdfa_ax.plot(fa, pd, marker=".", markersize=3, label=s.label)
    roc_ax.set(xlabel="false positive rate (pixels)", ylabel="true positive rate (pixels)", title="ROC", xscale="symlog",
               xlim=(0, 1))
    roc_ax.set_xscale("symlog", linthresh=1e-4)
    pdfa_ax.set(xlabel="Fa (x1e-6)", ylabel="Pd", title="Pd-Fa over thresholds")
    pdfa_ax.set_xscale("symlog", linthresh=1.0)
    for ax in (roc_ax, pdfa_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _figure_png(fig)


def _training_plot(rows: list[dict], label: str) -> bytes | None:
    plt = _pyplot()
    epochs = np.array([r.get("epoch", math.nan) for r in rows])
    losses = [k for k in rows[0] if k == "loss" or k.startswith("loss_")]
    vals = [k for k in rows[0] if k.startswith("val_") and k != "val_Fa"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in losses:
        axes[0].plot(epochs, [r[key] for r in rows], label=key)
    for key in vals:
        y = np.array([r[key] for r in rows])
        ok = ~np.isnan(y)
        if ok.any():
            axes[1].plot(epochs[ok], y[ok], marker="o", markersize=3, label=key)
    if "lr" in rows[0]:
        axes[2].plot(epochs, [r["lr"] for r in rows], color="tab:gray")
    axes[0].set(title=f"{label}: training loss", xlabel="epoch")
    axes[1].set(title="validation", xlabel="epoch")
    axes[2].set(title="learning rate", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        if ax.lines:
            ax.legend(fontsize=8)
    return _figure_png(fig)


def _robustness_plot(results: dict, label: str) -> bytes:
    from irstd.engine.robustness import display_name

    plt = _pyplot()
    names = list(results["corruptions"])
    shown = [results["corruptions"][n].get("display") or display_name(n) for n in names]
    iou = [100 * _num(results["corruptions"][n]["mean"]["IoU"]) for n in names]
    rce = [100 * _num(results["corruptions"][n]["mean"]["RCE"]) for n in names]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 3.8))
    x = np.arange(len(names))
    a.bar(x, iou, color="tab:blue")
    a.axhline(100 * _num(results["clean"]["IoU"]), color="black", linestyle="--", label="clean IoU")
    a.set(title=f"{label}: IoU under corruption (%)", xticks=x)
    a.set_xticklabels(shown, rotation=40, ha="right", fontsize=8)
    a.legend(fontsize=8)
    b.bar(x, rce, color="tab:red")
    b.set(title="RCE (%), lower is better", xticks=x)
    b.set_xticklabels(shown, rotation=40, ha="right", fontsize=8)
    for ax in (a, b):
        ax.grid(alpha=0.3, axis="y")
    return _figure_png(fig)


def _num(value) -> float:
    return math.nan if value is None else float(value)


# ------------------------------------------------------------------------------------ HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em;background:#fff}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}th{background:#eee}
td.l,th.l{text-align:left}img.plot{max-width:100%;border:1px solid #ddd;background:#fff}
.note{color:#555;font-size:.88em;max-width:70em}
.legend span{display:inline-block;padding:.1em .5em;margin-right:.6em;border-radius:3px;color:#000;font-size:.85em}
#controls{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}
#controls label{margin-right:1.2em}
.card{display:inline-block;vertical-align:top;margin:.35em;padding:.35em;background:#fff;border:1px solid #ccc;border-radius:4px}
.card .head{font-size:.85em;margin-bottom:.25em}
.card .src{display:inline-block;vertical-align:top;margin-right:.4em;font-size:.8em}
.card img{display:block;height:180px;width:auto;image-rendering:pixelated;border:1px solid #eee}
.bad{color:#b00}
"""

_JS = """
(function () {
  var gallery = document.getElementById('gallery');
  var cards = Array.prototype.slice.call(gallery.querySelectorAll('.card'));
  var sortSel = document.getElementById('sort'), srcSel = document.getElementById('by');
  var maxIoU = document.getElementById('maxiou'), errOnly = document.getElementById('erronly');
  var count = document.getElementById('shown');
  function num(card, key) { return parseFloat(card.getAttribute('data-' + key + '-' + srcSel.value)); }
  function update() {
    var how = sortSel.value;
    cards.sort(function (a, b) {
      if (how === 'id') { return a.getAttribute('data-id') < b.getAttribute('data-id') ? -1 : 1; }
      if (how === 'iou-asc') { return num(a, 'iou') - num(b, 'iou'); }
      if (how === 'iou-desc') { return num(b, 'iou') - num(a, 'iou'); }
      return num(b, 'err') - num(a, 'err');
    });
    var limit = parseFloat(maxIoU.value), n = 0;
    cards.forEach(function (card) {
      var show = !(num(card, 'iou') > limit) && (!errOnly.checked || num(card, 'err') > 0);
      card.style.display = show ? '' : 'none';
      if (show) { n += 1; }
      gallery.appendChild(card);
    });
    count.textContent = n + ' of ' + cards.length + ' images shown';
  }
  [sortSel, srcSel, maxIoU, errOnly].forEach(function (el) {
    el.addEventListener('input', update); el.addEventListener('change', update);
  });
  update();
})();
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _img(data: bytes, mime: str, alt: str, cls: str = "") -> str:
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return f'<img{f" class={chr(34)}{cls}{chr(34)}" if cls else ""} alt="{_e(alt)}" src="{uri}">'


def _fmt(key: str, value) -> str:
    v = _num(value) if not isinstance(value, str) else math.nan
    if math.isnan(v):
        return "–"
    if key == "Fa":
        v *= 1e6
    return _FORMATS.get(key, "{:.4f}").format(v)


def _metrics_table(sources: list[Source]) -> str:
    from irstd.metrics import niou_label

    keys = ["IoU", "nIoU", "Pd", "Fa", "F1", "PixAcc", "pixel_F1", "AUC"]
    empty_gt = sources[0].metrics.get("nIoU_empty_gt", "community")
    heads = {"nIoU": niou_label(empty_gt), "Fa": "Fa (x1e-6)", "F1": "F1 (target)", "pixel_F1": "pixel F1"}
    rows = ['<table id="metrics"><tr><th class="l">source</th><th class="l">detector / predictions</th>'
            '<th>images</th><th>threshold</th>' + "".join(f"<th>{_e(heads.get(k, k))}</th>" for k in keys) + "</tr>"]
    notes = []
    for s in sources:
        cells = "".join(f"<td>{_fmt(k, s.metrics.get(k))}</td>" for k in keys)
        rows.append(
            f'<tr><td class="l">{_e(s.label)}</td><td class="l">{_e(s.detail)}</td>'
            f"<td>{int(s.metrics.get('num_images', len(s.images)))}</td><td>{s.threshold:g}</td>{cells}</tr>"
        )
        if s.recorded:
            rec = s.recorded
            cells = "".join(f"<td>{_fmt(k, rec.get(k))}</td>" for k in keys)
            where = f"{Path(str(rec.get('dataset', '?'))).name}/{rec.get('split', '?')}"
            rows.append(
                f'<tr class="recorded"><td class="l">{_e(s.label)} (test_metrics.json)</td>'
                f'<td class="l">{_e(rec.get("checkpoint", "?"))} checkpoint, epoch {_e(rec.get("epoch", "?"))}, on {_e(where)}</td>'
                f"<td>{_e(rec.get('num_images', '–'))}</td><td>{_num(rec.get('threshold')):g}</td>{cells}</tr>"
            )
            notes.append(s.label)
    rows.append("</table>")
    text = "\n".join(rows)
    if notes:
        text += ('<p class="note">Rows marked test_metrics.json are the figures the training run recorded when it '
                 "ended (no AUC: training does not accumulate curves); the rows above them are computed now on "
                 "the report's split.</p>")
    return text


def _robustness_table(results: dict) -> str:
    from irstd.engine.robustness import display_name, robustness_rows

    corr = results["corruptions"]
    out = ['<table class="robustness"><tr><th class="l">corruption</th><th class="l">severity</th>'
           "<th>IoU (%)</th><th>nIoU (%)</th><th>Pd (%)</th><th>Fa (x1e-6)</th><th>RCE (%)</th></tr>"]
    for r in robustness_rows(results):
        name = r["corruption"]
        shown = {"clean": "clean", "average": "average"}.get(name) or corr[name].get("display") or display_name(name)
        pct = ["–" if math.isnan(_num(r[k])) else f"{100 * _num(r[k]):.2f}" for k in ("IoU", "nIoU", "Pd")]
        fa = "–" if math.isnan(_num(r["Fa"])) else f"{1e6 * _num(r['Fa']):.2f}"
        rce = "–" if r["RCE"] is None or math.isnan(_num(r["RCE"])) else f"{100 * _num(r['RCE']):.2f}"
        bold = r["severity"] == "mean"
        cells = [f'<td class="l">{_e(shown)}</td>', f'<td class="l">{_e(r["severity"])}</td>'] + [
            f"<td>{v}</td>" for v in (*pct, fa, rce)
        ]
        out.append(f'<tr{" style=font-weight:bold" if bold else ""}>' + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def build_report(sources: list[Source], dataset_label: str, title: str | None = None) -> str:
    """The report's HTML text for scored ``sources`` (all on the same images, in the same order)."""
    if not sources:
        raise IRSTDError("nothing to report: give RUN_DIR... or --pred DIR")
    ids = [e["id"] for e in sources[0].images]
    for s in sources[1:]:
        if [e["id"] for e in s.images] != ids:
            raise IRSTDError(f"{s.path}: scored other images than {sources[0].path}")
    from irstd import __version__

    title = title or f"irstd report: {', '.join(s.label for s in sources)} on {dataset_label}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _contents(sources),
        f'<p class="note">{len(ids)} images of {_e(dataset_label)}, scored at their original size (irstd {_e(__version__)}). '
        "IoU is pooled over the split; Pd and Fa match 8-connected targets by centroids closer than 3 px; "
        "Fa is the fraction of false-alarm pixels, shown x1e-6.</p>",
        '<h2 id="sec-metrics">Metrics</h2>',
        _metrics_table(sources),
        '<h2 id="sec-curves">ROC and Pd-Fa curves</h2>',
        '<p class="note">ROC: pixel-level true and false positive rates over 100 probability thresholds. '
        "Pd-Fa: target-level detection rate against false-alarm rate over the thresholds; predictions given "
        "as binary masks have a single operating point.</p>",
        _img(_curve_plots(sources), "image/png", "ROC and Pd-Fa curves", "plot"),
    ]
    # the gallery before the run sections, so that the first pictures are on the first screen
    parts += _gallery(sources)
    for k, s in enumerate(sources):
        if s.kind != "run":
            continue
        parts.append(f'<h2 id="run-{k}">Run {_e(s.label)}</h2><p class="note">{_e(s.path)}</p>')
        if s.log_rows:
            parts.append("<h3>Training curves (log.csv)</h3>")
            parts.append(_img(_training_plot(s.log_rows, s.label), "image/png", f"training curves of {s.label}", "plot"))
        else:
            parts.append('<p class="note">No log.csv in the run directory.</p>')
        if s.robustness is not None:
            parts.append(f"<h3>Robustness ({_e(s.robustness_path.name)})</h3>")
            meta = s.robustness.get("meta", {})
            parts.append(
                f'<p class="note">{_e(meta.get("num_images", "?"))} images of '
                f'{_e(Path(str(meta.get("dataset", "?"))).name)}/{_e(meta.get("split", "?"))}, severities '
                f'{_e(meta.get("severities", "?"))}, seed {_e(meta.get("seed", "?"))}; RCE = (IoU_clean - IoU_cor) / IoU_clean; '
                "mean rows are over severities, average over corruptions.</p>"
            )
            parts.append(_img(_robustness_plot(s.robustness, s.label), "image/png", f"robustness of {s.label}", "plot"))
            parts.append(_robustness_table(s.robustness))
        if s.policy_png is not None:
            parts.append("<h3>HRL corruption policy (policy.png)</h3>")
            parts.append(_img(s.policy_png, "image/png", f"HRL policy of {s.label}", "plot"))
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"


def _contents(sources: list[Source]) -> str:
    links = [("sec-metrics", "metrics"), ("sec-curves", "ROC and Pd-Fa curves"), ("sec-gallery", "gallery")]
    links += [(f"run-{k}", f"run {s.label}") for k, s in enumerate(sources) if s.kind == "run"]
    return '<p class="note">Contents: ' + " · ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in links) + "</p>"


def _gallery(sources: list[Source]) -> list[str]:
    from irstd.engine.predictor import FALSE_ALARM_COLOUR, HIT_COLOUR, MISS_COLOUR

    def swatch(colour, text):
        return f'<span style="background:rgb{tuple(colour)}">{_e(text)}</span>'

    options = "".join(f'<option value="{k}">{_e(s.label)}</option>' for k, s in enumerate(sources))
    out = [
        '<h2 id="sec-gallery">Gallery</h2>',
        '<p class="legend">Left of each pair: the frame with ' + swatch(HIT_COLOUR, "hit (circle)")
        + swatch(MISS_COLOUR, "miss (circle)") + swatch(FALSE_ALARM_COLOUR, "false alarm (square)")
        + "; right: pixels " + swatch(HIT_COLOUR, "ground truth and prediction")
        + swatch(MISS_COLOUR, "ground truth only") + swatch(FALSE_ALARM_COLOUR, "prediction only") + "</p>",
        '<p class="note">Per-image IoU: the image\'s pixels only; an image with empty ground truth and an empty '
        "prediction scores 0, as nIoU counts it (marked \"empty\").</p>",
        '<div id="controls"><label>sort <select id="sort"><option value="id">by id</option>'
        '<option value="iou-asc" selected>IoU, worst first</option><option value="iou-desc">IoU, best first</option>'
        '<option value="err">misses + false alarms, most first</option></select></label>'
        f'<label>of <select id="by">{options}</select></label>'
        '<label>IoU at most <input id="maxiou" type="number" min="0" max="1" step="0.05" value="1"></label>'
        '<label><input id="erronly" type="checkbox"> only images with misses or false alarms</label>'
        '<span id="shown"></span></div>',
        '<div id="gallery">',
    ]
    for i, item in enumerate(sources[0].images):
        attrs = " ".join(
            f'data-iou-{k}="{s.images[i]["iou"]:.6f}" data-err-{k}="{s.images[i]["misses"] + s.images[i]["false_alarms"]}"'
            for k, s in enumerate(sources)
        )
        w, h = item["size"]
        cell = [f'<div class="card" data-id="{_e(item["id"])}" {attrs}>',
                f'<div class="head"><b>{_e(item["id"])}</b> {w}x{h}</div>']
        for s in sources:
            e = s.images[i]
            tag = " empty" if e["empty"] else ""
            cls = ' class="bad"' if e["misses"] or e["false_alarms"] else ""
            alt = f"{item['id']} ({s.label})"
            cell.append(
                f'<div class="src"><div{cls}>{_e(s.label)}: IoU {e["iou"]:.3f}{tag}, {e["targets"]} target(s), '
                f'{e["hits"]} hit, {e["misses"]} miss, {e["false_alarms"]} false alarm</div>'
                f'<div style="display:flex;gap:3px">{_img(e["overlay"], "image/jpeg", "overlay " + alt)}'
                f'{_img(e["pixels"], "image/png", "pixels " + alt)}</div></div>'
            )
        cell.append("</div>")
        out.append("".join(cell))
    out.append("</div>")
    return out


def write_report(text: str, out: str | os.PathLike) -> Path:
    """Write the report's ``index.html`` into the folder ``out``, all or nothing
    (:func:`irstd.data.io.staged_dir`). Returns the file's path."""
    from irstd.data.io import atomic_write_bytes, staged_dir

    out = Path(out)
    with staged_dir(out) as stage:
        atomic_write_bytes(stage / "index.html", text.encode("utf-8"))
    return out / "index.html"
