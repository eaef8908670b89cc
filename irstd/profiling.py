"""Model efficiency: parameters, FLOPs, CPU/GPU latency and peak memory of zoo networks.

Numbers are measured, never looked up:

* **FLOPs** come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` over one eval
  forward pass (it counts a multiply-add as 2 FLOPs and covers convolutions, matmuls and attention;
  element-wise ops are not counted).
* **Latency** is wall-clock time of forward passes of the inference copy
  (:func:`irstd.models.fuse_for_inference`: eval mode, BatchNorm folded) under
  ``torch.inference_mode`` after warm-up runs; the median and the 90th percentile over ``repeats``
  runs are reported. On CUDA the device is synchronised around every run.
* **Peak memory** is the growth of the process's peak resident set size (:func:`peak_rss_mb`) from just
  after the model and input are built to the end of the runs on CPU (activations and workspace), or ``torch.cuda.max_memory_allocated`` on CUDA. ``ru_maxrss`` only grows, so
  each model is profiled in a fresh subprocess when several are profiled in one call.

Diffusion models (``irstd_diff``) cost one conditional-encoder pass per image plus one denoiser
pass per sampling step and ensemble member: :func:`profile_diffusion` counts both parts and times
whole images at each step count.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from irstd.models import count_parameters, create, fuse_for_inference


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` survives ``execve`` and so
    reports the parent's size in a freshly started subprocess of a large process (a test runner).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def count_flops(model, x: torch.Tensor | None = None) -> int:
    """FLOPs of one forward pass of ``model`` on ``x`` (or of the call ``model()`` without ``x``) as
    counted by PyTorch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model() if x is None else model(x)
    return int(counter.get_total_flops())


def profile_model(
    name: str,
    size: tuple[int, int] = (256, 256),
    batch: int = 1,
    threads: int | None = None,
    repeats: int = 20,
    warmup: int = 3,
    device: str | torch.device | None = None,
    channels_last: bool = False,
    model_kwargs: dict | None = None,
) -> dict:
    """Profile the zoo model ``name`` on a random ``batch x 1 x H x W`` input.

    Args:
        name: registered model name.
        size: input height and width in pixels; rounded up to the model's stride.
        batch: batch size.
        threads: intra-op CPU threads (``torch.set_num_threads``); ``None`` keeps the current value.
        repeats: timed runs (median and p90 are over these).
        warmup: untimed runs before timing.
        device: ``None`` picks CUDA when available, else CPU.
        channels_last: run in the channels-last memory format.
        model_kwargs: constructor keywords (default: the registered defaults).

    Returns:
        dict with ``model``, ``params`` (count), ``gflops``, ``median_ms``, ``p90_ms``,
        ``peak_mem_mb``, ``input`` (shape), ``threads``, ``device``.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    model = create(name, **(model_kwargs or {})).to(device)
    params = count_parameters(model)  # of the trainable network: the fused copy has fewer, frozen
    model = fuse_for_inference(model)
    stride = int(getattr(model, "stride", 1))
    h = -(-size[0] // stride) * stride
    w = -(-size[1] // stride) * stride
    x = torch.randn(batch, 1, h, w, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    rss_before = peak_rss_mb()
    flops = count_flops(model, x)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append((time.perf_counter() - t0) * 1000)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = max(peak_rss_mb() - rss_before, 0.0)
    times.sort()
    return {
        "model": name,
        "params": params,
        "gflops": flops / 1e9,
        "median_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))],
        "peak_mem_mb": peak,
        "input": [batch, 1, h, w],
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def samples_masks(name: str, model_kwargs: dict | None = None) -> bool:
    """Whether zoo model ``name`` (with ``model_kwargs``) is a diffusion model that samples its masks."""
    return bool(getattr(create(name, **(model_kwargs or {})), "can_sample", False))


def _timed(fn, repeats: int, warmup: int, sync) -> list[float]:
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)


def profile_diffusion(
    name: str = "irstd_diff",
    size: tuple[int, int] = (256, 256),
    steps: tuple[int, ...] = (10,),
    sampler: str | None = None,
    ensemble: int = 1,
    batch: int = 1,
    threads: int | None = None,
    repeats: int = 3,
    warmup: int = 1,
    device: str | torch.device | None = None,
    model_kwargs: dict | None = None,
) -> dict:
    """Profile a diffusion model: FLOPs of the conditional encoder (once per image) and of one
    denoiser step, and per image at each step count; latency of whole images (sampling included).

    Args:
        name: registered diffusion model (``irstd_diff``).
        size: input height and width in pixels; rounded up to the model's stride.
        steps: sampling step counts to report.
        sampler: ``ddpm``, ``ddim`` or ``dpm_solver`` (default: the model's).
        ensemble: samples per image (each costs ``steps`` denoiser passes).
        batch, threads, repeats, warmup, device, model_kwargs: as :func:`profile_model`.

    Returns:
        dict with ``model``, ``params``, ``sampler``, ``ensemble``, ``condition_gflops`` (per image
        batch), ``step_gflops`` (one denoiser pass), ``rows`` (one per step count: ``steps``,
        ``gflops`` = condition + steps * ensemble * step, ``median_ms``, ``p90_ms``), ``input``,
        ``threads``, ``device``.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    model = create(name, **(model_kwargs or {})).to(device)
    if not getattr(model, "can_sample", False):
        raise ValueError(f"{name} does not sample masks: use profile_model")
    params = count_parameters(model)
    model = fuse_for_inference(model)
    stride = int(getattr(model, "stride", 1))
    h = -(-size[0] // stride) * stride
    w = -(-size[1] // stride) * stride
    x = torch.randn(batch, 1, h, w, device=device)
    cond_flops = count_flops(lambda: model.condition(x))
    _, latent = model.condition(x)
    x_t = torch.randn(batch, 1, h, w, device=device)
    t = torch.full((batch,), model.train_timesteps - 1, dtype=torch.long, device=device)
    step_flops = count_flops(lambda: model.denoise(x_t, t, x, latent))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = []
    for n in steps:
        s = model.configure_sampling(sampler=sampler, steps=int(n), ensemble=int(ensemble))
        times = _timed(lambda: model(x), repeats, warmup, sync)
        rows.append(
            {
                "steps": int(n),
                "gflops": (cond_flops + int(n) * int(ensemble) * step_flops) / 1e9,
                "median_ms": statistics.median(times),
                "p90_ms": times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))],
            }
        )
    return {
        "model": name,
        "params": params,
        "sampler": s["sampler"] if rows else sampler,
        "ensemble": int(ensemble),
        "condition_gflops": cond_flops / 1e9,
        "step_gflops": step_flops / 1e9,
        "rows": rows,
        "input": [batch, 1, h, w],
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def format_diffusion_table(result: dict) -> str:
    """Markdown table of :func:`profile_diffusion`: one row per step count."""
    shape = "x".join(str(v) for v in result["input"])
    lines = [
        f"{result['model']}: {result['params'] / 1e6:.3f} M params, input {shape}; conditional encoder "
        f"{result['condition_gflops']:.2f} GFLOPs per image, denoiser {result['step_gflops']:.2f} GFLOPs per step",
        "",
        "| sampler | steps | ensemble | GFLOPs per image | median ms per image | p90 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {result['sampler']} | {r['steps']} | {result['ensemble']} | {r['gflops']:.2f} | {r['median_ms']:.1f} "
            f"| {r['p90_ms']:.1f} |"
        )
    return "\n".join(lines)


def profile_in_subprocess(name: str, **kwargs) -> dict:
    """:func:`profile_model` in a fresh Python process, so peak-memory readings don't leak between
    models and one model's allocator state doesn't slow the next."""
    code = (
        "import json, sys; from irstd.profiling import profile_model; "
        "print(json.dumps(profile_model(sys.argv[1], **json.loads(sys.argv[2]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, name, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"profiling {name} failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`profile_model` results."""
    lines = [
        "| model | params (M) | GFLOPs | median ms | p90 ms | peak mem MB | input |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        shape = "x".join(str(v) for v in r["input"])
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.3f} | {r['gflops']:.2f} | {r['median_ms']:.1f} "
            f"| {r['p90_ms']:.1f} | {r['peak_mem_mb']:.0f} | {shape} |"
        )
    return "\n".join(lines)
