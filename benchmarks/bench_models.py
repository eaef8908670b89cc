"""irstd's networks against the public implementations, timed in one process, alternating runs.

    python benchmarks/bench_models.py [--anchors PATH] [--repeats 15] [--train-repeats 5]
                                      [--train-budget 120] [--threads 2] [--models acm ...] [--no-train]

The public code is BasicIRSTD's network definitions at ``--anchors`` (default
``../shared/anchors/basicirstd`` beside the repository; its README gives the class names and the
``sys.path`` set-up, done here). It is imported by this script only, never by the package.

For ACM, RDIAN, ISTDU-Net, DNANet and UIU-Net it measures, alternating ours and public run by run
so that the load of a shared machine falls on both alike:

* **forward**: one 1x1x256x256 input in ``torch.inference_mode``; ours is the inference copy that
  ``irstd predict`` and evaluation run (:func:`irstd.models.fuse_for_inference`: eval mode, BatchNorm
  folded), the public model is in eval mode (``mode="test"`` where it has one);
* **train step**: a batch of 8 x 1 x 256 x 256 in train mode (ours laid out as ``irstd train`` lays it
  out, :func:`irstd.models.training_layout`: channels-last kernels on CPU; the public model as it
  ships), forward, soft-IoU loss averaged over all
  outputs (deep-supervision heads included; ours returns logits, so the loss applies the sigmoid the
  public forward applies itself), backward and an Adam step.

Each cell is the median over the runs; the ratio is ours / public. Forward runs follow two untimed
warm-up runs each. Train steps are not warmed up separately (a step of DNANet or UIU-Net takes
tens of seconds to minutes on a loaded 2-core machine): rounds of one step each continue up to
``--train-repeats`` while the model's ``--train-budget`` seconds last, at least one round, and the
median over the rounds damps the first, slower one when there are three or more. Before timing, parameter counts
and output shapes are compared (eval: one map of the input's size; train: the same number of maps
of the batch's size) and any difference is listed in the table's notes. Exit status 1 when a ratio
exceeds 1.0 or the outputs do not match, 2 when the public code is missing.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from irstd.models import count_parameters, create, fuse_for_inference, training_layout

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ANCHORS = REPO / ".." / "shared" / "anchors" / "basicirstd"
MODELS = ["acm", "rdian", "istdunet", "dnanet", "uiunet"]

# Known differences of the public definitions, beside the measured counts and outputs.
NOTES = {
    "acm": "",
    "rdian": "",
    "istdunet": "public builds an unused second head (headDet, 9.3 k params; no gradient)",
    "dnanet": "public convs before BN keep a bias (4.4 k params); public eval computes all 4 heads",
    "uiunet": "public convs before BN keep a bias (19 k params)",
}


def public_factories(anchors: Path) -> dict:
    """Constructors of the public networks: ``name -> (train_model_fn, eval_model_fn)``."""
    sys.path[:0] = [str(anchors / "shim"), str(anchors)]
    from model.ACM.model_ACM import ASKCResUNet
    from model.DNANet.model_DNANet import DNANet
    from model.ISTDUNet.model_ISTDUNet import ISTDU_Net
    from model.RDIAN.model_RDIAN import RDIAN
    from model.UIUNet.model_UIUNet import UIUNET

    return {
        "acm": (ASKCResUNet, ASKCResUNet),
        "rdian": (RDIAN, RDIAN),
        "istdunet": (ISTDU_Net, ISTDU_Net),
        "dnanet": (lambda: DNANet(mode="train"), lambda: DNANet(mode="test")),
        "uiunet": (lambda: UIUNET(mode="train"), lambda: UIUNET(mode="test")),
    }


def _outputs(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def soft_iou_loss(probs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    total = 0.0
    for p in probs:
        inter = (p * target).sum((1, 2, 3))
        union = (p + target - p * target).sum((1, 2, 3))
        total = total + (1.0 - (inter + 1.0) / (union + 1.0)).mean()
    return total / len(probs)


def alternate(fns: dict, repeats: int, warmup: int, budget: float | None = None) -> tuple[dict[str, float], int]:
    """Median seconds of each callable, called in turn (ours, public, ours, public, ...), and the
    number of rounds: ``repeats``, or fewer (at least one) once ``budget`` seconds have passed."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    start = time.perf_counter()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
        if budget is not None and time.perf_counter() - start > budget:
            break
    return {k: statistics.median(v) for k, v in times.items()}, len(times[next(iter(fns))])


def bench_forward(name: str, public_eval, repeats: int) -> tuple[dict, list[str]]:
    torch.manual_seed(0)
    ours = fuse_for_inference(create(name))
    public = public_eval().eval()
    x = torch.randn(1, 1, 256, 256)
    issues = []
    with torch.inference_mode():
        shapes = {k: [tuple(o.shape) for o in _outputs(m(x))] for k, m in (("ours", ours), ("public", public))}
        if shapes["ours"] != shapes["public"] or shapes["ours"] != [(1, 1, 256, 256)]:
            issues.append(f"eval outputs differ: ours {shapes['ours']}, public {shapes['public']}")
        med, _ = alternate({"ours": lambda: ours(x), "public": lambda: public(x)}, repeats, warmup=2)
    return med, issues


def bench_train(name: str, public_train, repeats: int, budget: float, batch: int = 8) -> tuple[dict, list[str], str, int]:
    torch.manual_seed(0)
    ours = training_layout(create(name).train())  # as irstd train lays it out (channels-last on CPU)
    public = public_train().train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, 256, 256, generator=g)
    y = (torch.rand(batch, 1, 256, 256, generator=g) > 0.998).float()
    y = torch.nn.functional.max_pool2d(y, 5, 1, 2)  # a few 5x5 targets per image
    steps = {}
    counts = {}
    for key, model, to_prob in (("ours", ours, torch.sigmoid), ("public", public, lambda t: t)):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(model=model, opt=opt, to_prob=to_prob):
            opt.zero_grad(set_to_none=True)
            outs = _outputs(model(x))
            loss = soft_iou_loss([to_prob(o) for o in outs], y)
            loss.backward()
            opt.step()
            return outs

        steps[key] = step
    with torch.no_grad():
        counts = {k: [tuple(o.shape) for o in _outputs(m(x[:2]))] for k, m in (("ours", ours), ("public", public))}
    issues = []
    if len(counts["ours"]) != len(counts["public"]) or set(counts["ours"] + counts["public"]) != {(2, 1, 256, 256)}:
        issues.append(f"train outputs differ: ours {counts['ours']}, public {counts['public']}")
    med, rounds = alternate(steps, repeats, warmup=0, budget=budget)
    return med, issues, f"{len(counts['ours'])} / {len(counts['public'])}", rounds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--anchors", type=Path, default=DEFAULT_ANCHORS, help="BasicIRSTD's network definitions")
    ap.add_argument("--repeats", type=int, default=15, help="alternating forward runs per model")
    ap.add_argument("--train-repeats", type=int, default=5, help="most alternating train steps per model")
    ap.add_argument("--train-budget", type=float, default=120.0, metavar="S",
                    help="no new train round after S seconds of a model's train rounds (at least one round)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="*", default=MODELS, choices=MODELS)
    ap.add_argument("--no-train", action="store_true", help="forward only")
    args = ap.parse_args(argv)

    anchors = args.anchors.resolve()
    if not (anchors / "model" / "DNANet").is_dir() or not (anchors / "shim").is_dir():
        print(
            f"error: the public reference networks are not at {anchors} (expected model/ and shim/ "
            "there); give --anchors PATH to BasicIRSTD's network definitions",
            file=sys.stderr,
        )
        return 2
    # The public code uses deprecated calls (F.upsample, F.sigmoid) on every forward.
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    factories = public_factories(anchors)
    torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward: 1x1x256x256, median of "
        f"{args.repeats} alternating runs after 2 warm-ups; train step: 8x1x256x256, median of up to "
        f"{args.train_repeats} alternating rounds within {args.train_budget:g} s per model\n"
    )
    head = "| model | params (M) ours / public | forward ms ours / public | forward ratio |"
    rule = "|---|---|---|---:|"
    if not args.no_train:
        head += " outputs in train ours / public | train step s ours / public | rounds | train ratio |"
        rule += "---|---|---:|---:|"
    print(head + " notes |")
    print(rule + "---|", flush=True)
    failed = []
    t_start = time.perf_counter()
    for name in args.models:
        train_fn, eval_fn = factories[name]
        n_ours = count_parameters(create(name))
        n_public = sum(p.numel() for p in eval_fn().parameters() if p.requires_grad)
        fwd, issues = bench_forward(name, eval_fn, args.repeats)
        ratios = [fwd["ours"] / fwd["public"]]
        row = (
            f"| {name} | {n_ours / 1e6:.3f} / {n_public / 1e6:.3f} | {fwd['ours'] * 1e3:.1f} / "
            f"{fwd['public'] * 1e3:.1f} | {ratios[0]:.2f} |"
        )
        gc.collect()
        if not args.no_train:
            step, train_issues, outs, rounds = bench_train(name, train_fn, args.train_repeats, args.train_budget)
            issues += train_issues
            ratios.append(step["ours"] / step["public"])
            row += f" {outs} | {step['ours']:.2f} / {step['public']:.2f} | {rounds} | {ratios[1]:.2f} |"
            gc.collect()
        notes = "; ".join([NOTES[name]] * bool(NOTES[name]) + issues)
        print(row + f" {notes} |", flush=True)
        if issues or max(ratios) > 1.0:
            failed.append(name)
    print(f"\n{(time.perf_counter() - t_start) / 60:.1f} min")
    if failed:
        print(f"slower than the public code (ratio > 1.0) or not like for like: {', '.join(failed)}")
        return 1
    print("every ratio <= 1.0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
