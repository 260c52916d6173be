"""What this machine computes fast, decided in one place when a command starts and recorded with every result.

Three speed classes, because they need different settings to be fast:
- `cuda`: a CUDA GPU; bf16-mixed where the GPU has it, else 16-mixed.
- `cpu-bf16`: a CPU with native bf16 (AVX-512 BF16 or AMX): bf16 autocast is about 1.7x faster than fp32.
- `cpu-fp32`: any other CPU (AVX2 laptops and VMs, most ARM): bf16 is emulated there, about 8x slower than
  fp32, so runs train in fp32, with denormal floats flushed to zero (they cost up to 4x in fp32 kernels).
channels_last was measured faster on both CPU classes (results/bench/) and is PyTorch's advice for
mixed-precision convolutions on GPUs (not measured here: no GPU), so `auto` turns it on everywhere.

`$RETINALIGHT_HARDWARE` forces a class (`cpu-fp32` on a bf16 CPU resolves configs as an AVX2 laptop would;
tests and the check that committed runs are found under their hashes use it). It changes what `auto`
resolves to, never what the machine can do.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from pathlib import Path

import torch

from retinalight.errors import ConfigError

HARDWARE_ENV = "RETINALIGHT_HARDWARE"
SPEED_CLASSES = ("cuda", "cpu-bf16", "cpu-fp32")
INFERENCE_PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def isa_limit() -> str | None:
    """oneDNN's instruction-set cap ($ONEDNN_MAX_CPU_ISA), if set: `AVX2` makes a bf16 CPU compute as an AVX2 one."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return limit if limit and limit not in ("ALL", "DEFAULT") else None


def cpu_native_bf16() -> bool:
    """True where bf16 matrix kernels run natively (AVX-512 BF16 or AMX), not emulated; False under an
    $ONEDNN_MAX_CPU_ISA cap below bf16, since oneDNN then emulates it."""
    limit = isa_limit()
    if limit and not any(tag in limit for tag in ("BF16", "AMX", "FP16", "AVX10")):
        return False
    cpu = torch.cpu
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo), else what the platform module says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return " ".join(line.split(":", 1)[1].split())
    return platform.processor() or platform.machine() or "unknown CPU"


def detected_class(accelerator: str = "auto") -> str:
    """`cuda`, `cpu-bf16` or `cpu-fp32`: what a run on `accelerator` (trainer.accelerator) has here."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu-bf16" if cpu_native_bf16() else "cpu-fp32"


def speed_class(accelerator: str = "auto") -> str:
    """The class `auto` settings resolve for: $RETINALIGHT_HARDWARE when set, else `detected_class`."""
    forced = os.environ.get(HARDWARE_ENV)
    if forced:
        if forced not in SPEED_CLASSES:
            raise ConfigError(f"${HARDWARE_ENV}={forced!r}: choose from {', '.join(SPEED_CLASSES)}")
        return forced
    return detected_class(accelerator)


def resolve_precision(value: str, speed: str) -> str:
    """trainer.precision `auto` -> what is fast on `speed`; any other value is kept (an explicit value wins)."""
    if value != "auto":
        return value
    if speed == "cuda":
        return "bf16-mixed" if not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if speed == "cpu-bf16" else "32-true"


def resolve_channels_last(value: bool | str, speed: str) -> bool:
    """trainer.channels_last `auto` -> True: measured faster for the conv nets on both CPU classes (SA-UNet
    training step, batch 8 of 128x128, fp32: 495 -> 367 ms on an AVX2 EPYC, 389 -> 316 ms on an AVX-512 Xeon)."""
    return True if value == "auto" else bool(value)


def resolve_flush_denormal(value: bool | str, precision: str, speed: str) -> bool:
    """trainer.flush_denormal `auto` -> True for fp32 training on a CPU: denormal floats (tiny gradients and
    optimizer moments) take a slow path in x86 float kernels; flushing them to zero made a U-Net's fp32 step
    4.3x faster here (1.84 -> 7.95 steps/s, same losses to 4 decimals) and changed nothing under bf16."""
    if value != "auto":
        return bool(value)
    return speed != "cuda" and precision in ("32-true", "32")


def resolve_cudnn_benchmark(speed: str, deterministic: bool) -> bool:
    """cuDNN's autotuner on CUDA (every training batch of a run has one shape: whole padded images or fixed
    crops, so the fastest convolution algorithm is found once), off where results must be deterministic. Not
    part of a run's identity: it picks among algorithms that compute the same convolution."""
    return speed == "cuda" and not deterministic


@contextlib.contextmanager
def denormals_flushed(enabled: bool):
    """Inside the block, float denormals are flushed to zero (x86 FTZ/DAZ, `torch.set_flush_denormal`)."""
    if not enabled:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def resolve_num_workers(value: int | str, speed: str, devices: int = 1) -> int:
    """data.num_workers `auto` -> 0 on a CPU (the trainer uses every core; the data pipeline makes ~900
    samples/s in-process, far above what a CPU trains on) and the cores shared among GPUs (at most 8 each) on CUDA."""
    if value != "auto":
        return int(value)
    if speed != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores // max(1, devices) - 1))


def inference_device(device: str = "auto") -> torch.device:
    """--device auto|cpu|cuda: CUDA where present for auto; asking for CUDA without one is a one-line error."""
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: choose from {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to PyTorch here (use --device cpu or auto)")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def inference_bf16(precision: str, device: torch.device) -> bool:
    """--precision auto|fp32|bf16 -> whether inference runs under bf16 autocast (auto: where it is native)."""
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: choose from {', '.join(INFERENCE_PRECISIONS)}")
    if precision != "auto":
        return precision == "bf16"
    speed = "cuda" if device.type == "cuda" else speed_class("cpu")
    return resolve_precision("auto", speed) != "32-true"


def hardware_info() -> dict:
    """What produced a number: the class, and the CPU (model, PyTorch's kernel capability, native bf16,
    threads) or the GPU name. Written into provenance next to every result."""
    info = {
        "class": detected_class(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_native_bf16(),
        "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
        "threads": torch.get_num_threads(),
    }
    if isa_limit():
        info["isa_limit"] = isa_limit()  # e.g. an AVX-512 CPU capped to AVX2 to measure the AVX2 class
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    if speed_class() != info["class"]:
        info["resolved_as"] = speed_class()  # $RETINALIGHT_HARDWARE: `auto` settings chose another class's values
    return info


def hardware_label(info: dict) -> str:
    """One line a reader can place: 'Intel Xeon ... (AVX512, native bf16 + AMX), 2 threads' or the GPU."""
    if info.get("gpu"):
        return f"GPU {info['gpu']}"
    extras = ", native bf16" + (" + AMX" if info.get("amx") else "") if info.get("native_bf16") else ", no native bf16"
    capped = f", capped to {info['isa_limit']}" if info.get("isa_limit") else ""
    return f"{info['cpu']} ({info['cpu_capability']}{extras}{capped}), {info['threads']} threads"
