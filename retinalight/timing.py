"""Measuring a network's speed: median timings, FLOPs, peak memory, one training step and inference per
variant. Shared by `retinalight.bench` (the benchmark files) and `retinalight.gpu_check` (the GPU check)."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from retinalight.inference import fold_batch_norm


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2, device: torch.device | None = None) -> float:
    """Median seconds of `repeats` calls after `warmup` calls (CUDA work is waited for)."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else lambda: None
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_tflops(device: torch.device, side: int = 8192, repeats: int = 10) -> float:
    """The device's bf16 matrix rate, measured: TFLOP/s of a side x side x side product on random data, the
    ceiling a network's achieved rate is read against."""
    a, b = (torch.randn(side, side, device=device, dtype=torch.bfloat16) for _ in range(2))
    return 2 * side**3 / timed(lambda: a @ b, repeats, warmup=3, device=device) / 1e12


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forward_flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape), torch.ones(shape[0], 1, *shape[2:]))
    return counter.get_total_flops()


def bench_variant(
    model: nn.Module,
    channels_last: bool,
    bf16: bool,
    compiled: bool,
    sizes: list[int],
    repeats: int,
    flops: dict,
    device: torch.device | None = None,
) -> dict:
    """One training step, then inference with BatchNorm folded into the convs (`fold_batch_norm`, as
    `predict` and `evaluate` run a network; not under torch.compile). On `device` (default: the CPU)."""
    device = device or torch.device("cpu")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = model.to(device, memory_format=fmt)
    if compiled:
        net = torch.compile(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(8, 3, 128, 128, device=device).contiguous(memory_format=fmt)
    y = (torch.rand(8, 1, 128, 128, device=device) > 0.9).float()
    fov = torch.ones(8, 1, 128, 128, device=device)

    def step():
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            loss = nn.functional.binary_cross_entropy_with_logits(net(x, fov).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    net.train()
    seconds = timed(step, repeats, device=device)
    row = {"train_step_ms": round(seconds * 1000, 1), "train_samples_per_s": round(8 / seconds, 1)}
    row["train_gflop_per_s"] = round(flops["train_gflops_per_step"] / seconds, 1)
    net = net.eval() if compiled else fold_batch_norm(net)  # inference as the package runs it: BatchNorm folded
    for size in sizes:
        image = torch.randn(1, 3, size, size, device=device).contiguous(memory_format=fmt)
        mask = torch.ones(1, 1, size, size, device=device)

        def infer(image=image, mask=mask):
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                net(image, mask)

        seconds = timed(infer, repeats, device=device)
        row[f"infer_{size}_ms"] = round(seconds * 1000, 1)
        row[f"infer_{size}_gflop_per_s"] = round(flops[f"infer_gflops_{size}"] / seconds, 1)
    return row
