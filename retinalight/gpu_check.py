"""The GPU path, checked in one command for the day a CUDA machine is at hand: `python -m retinalight.bench --gpu-check`.

Five parts, each printed as PASS or FAIL with its figures, in at most 5 minutes on one GPU:
1. training: ablation_drive's `quick` profile of sa_unet at auto precision, channels_last and torch.compile;
2. DDP on one GPU (strategy ddp, one process), a few steps;
3. a GAN arm (retinagan_drive's retina_gan), a few steps;
4. evaluate, predict and export (TorchScript, run back) on the GPU with part 1's checkpoint;
5. speed: SA-UNet's training step and 592x592 inference (ms, samples/s, TFLOP/s, peak GPU memory).
Without CUDA it says so in one line and exits 0. `--device cpu` runs the same code on the CPU with a few
steps per run and without torch.compile (under 2 minutes; the test suite runs it).
"""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

SMALL = ["trainer.max_epochs=1", "data.samples_per_epoch=32"]  # a few steps: the code path, not the result
GAN_ARM = "retina_gan"
# the GAN arm's own sampling (whole images, its quick profile's 50) wins over data.*: 2 images, adversarial from step 1
GAN_SMALL = [f"arms.{GAN_ARM}.data.samples_per_epoch=2", "gan.adversarial_warmup=1"]


def gpu_check(device: str, data_root: Path, echo: Callable[[str], None] = print) -> int:
    """Run the five parts on `device` ("cuda" or "cpu"); 0 when every part passes, 1 otherwise."""
    if device == "cuda" and not torch.cuda.is_available():
        echo("gpu-check: no CUDA GPU is visible to PyTorch here, nothing to check (--device cpu runs the same code path on the CPU)")
        return 0
    on_gpu = device == "cuda"
    accelerator = ["trainer.accelerator=gpu" if on_gpu else "trainer.accelerator=cpu"]
    quick = [*accelerator, "trainer.compile=true"] if on_gpu else [*accelerator, *SMALL]
    results: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "runs"
        state: dict = {}

        def part(name: str, fn: Callable[[], str]) -> None:
            started = time.perf_counter()
            try:
                figures = fn()
                results[name] = True
                echo(f"PASS {name} ({time.perf_counter() - started:.1f} s): {figures}")
            except Exception as err:  # a check reports every part, whatever breaks
                results[name] = False
                line = str(err).splitlines()[0] if str(err) else ""
                echo(f"FAIL {name} ({time.perf_counter() - started:.1f} s): {type(err).__name__}: {line}")
                (Path(folder) / f"{name}.log").write_text(traceback.format_exc())

        part("training", lambda: _train(state, runs, "ablation_drive", "sa_unet", quick, data_root))
        part("ddp", lambda: _train({}, runs, "ablation_drive", "unet", [*accelerator, *SMALL, "trainer.strategy=ddp"], data_root))
        part("gan", lambda: _train({}, runs, "retinagan_drive", GAN_ARM, [*accelerator, *SMALL, *GAN_SMALL], data_root))
        part("inference", lambda: _inference(state, Path(folder), device, data_root))
        part("speed", lambda: _speed(torch.device(device)))
    failed = [name for name, ok in results.items() if not ok]
    echo(
        f"gpu-check on {device}: {len(results) - len(failed)} passed, {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else "")
    )
    return 1 if failed else 0


def _train(state: dict, runs: Path, experiment: str, arm: str, overrides: list[str], data_root: Path) -> str:
    """One run of `experiment`'s quick profile with `overrides`; keeps its checkpoint in `state`."""
    from retinalight.experiments import load_experiment
    from retinalight.rundirs import run_dir
    from retinalight.training.runner import fit_experiment

    loaded = load_experiment(experiment, "quick", overrides)
    config = loaded.run_config(arm, 0)
    summary = fit_experiment(loaded, runs, [arm], [0], logger="csv", data_root=str(data_root), echo=lambda _: None)
    if summary["failures"]:
        raise RuntimeError(summary["failures"][0])
    folder = run_dir(runs, config)
    result = json.loads((folder / "metrics.json").read_text())
    state["ckpt"] = folder / "checkpoints" / "last.ckpt"
    steps = config.trainer.max_epochs * -(-config.data.samples_per_epoch // config.data.batch_size)
    seconds = result["train_seconds"]
    return (
        f"{steps} steps in {seconds} s ({steps / max(seconds, 1e-9):.1f} steps/s, {steps * config.data.batch_size / max(seconds, 1e-9):.0f} "
        f"samples/s), precision {config.trainer.precision}, channels_last {config.trainer.channels_last}, "
        f"compile {config.trainer.compile}, FOV AUC {result['protocols']['fov']['pooled']['auc']:.4f}"
    )


def _inference(state: dict, folder: Path, device: str, data_root: Path) -> str:
    """evaluate --ckpt, predict and a TorchScript export on `device`, with the training part's checkpoint."""
    from retinalight.data.datasets import get_dataset
    from retinalight.evaluate import evaluate_checkpoint
    from retinalight.export import export
    from retinalight.hardware import inference_bf16
    from retinalight.predict import predict_files

    if "ckpt" not in state:
        raise RuntimeError("no checkpoint: the training part failed")
    bf16 = inference_bf16("auto", torch.device(device))
    reader = get_dataset("drive", data_root)
    started = time.perf_counter()
    result = evaluate_checkpoint(str(state["ckpt"]), reader, "test", "fov", bf16, device)
    evaluate_seconds = time.perf_counter() - started
    images = sorted((data_root / "DRIVE" / "test" / "images").glob("*.tif"))[:2]
    written, _ = predict_files(str(state["ckpt"]), images, folder / "predicted", bf16=bf16, device=device)
    scripted = export(state["ckpt"], folder / "model.pt", "torchscript", "bf16" if bf16 else "fp32", device)
    model = torch.jit.load(str(scripted), map_location=device)
    probability = model(torch.zeros(1, 3, 64, 64, device=device), torch.ones(1, 1, 64, 64, device=device))
    if probability.shape != (1, 1, 64, 64) or not torch.isfinite(probability).all():
        raise RuntimeError(f"the exported model returned {tuple(probability.shape)} or non-finite values")
    return (
        f"evaluate --ckpt {len(result['per_image'])} images in {evaluate_seconds:.1f} s (FOV AUC {result['pooled']['auc']:.4f}, "
        f"{'bf16' if bf16 else 'fp32'}), predict wrote {len(written)} maps, TorchScript export runs back"
    )


def _speed(device: torch.device) -> str:
    """SA-UNet's training step and inference at the precision `auto` picks on `device`, with peak GPU memory."""
    from retinalight.hardware import inference_bf16
    from retinalight.models import create_model
    from retinalight.timing import bench_variant, forward_flops

    model = create_model("sa_unet")
    flops = {
        "train_gflops_per_step": 3 * forward_flops(model, (8, 3, 128, 128)) / 1e9,
        "infer_gflops_592": forward_flops(model, (1, 3, 592, 592)) / 1e9,
    }
    bf16 = inference_bf16("auto", device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    row = bench_variant(model, True, bf16, False, [592], repeats=5, flops=flops, device=device)
    memory = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if device.type == "cuda" else ""
    return (
        f"{'bf16' if bf16 else 'fp32'} channels_last: training step (batch 8, 128x128) {row['train_step_ms']} ms, "
        f"{row['train_samples_per_s']} samples/s, {row['train_gflop_per_s'] / 1000:.2f} TFLOP/s; inference 592x592 "
        f"{row['infer_592_ms']} ms, {row['infer_592_gflop_per_s'] / 1000:.2f} TFLOP/s{memory}"
    )
