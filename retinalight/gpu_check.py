"""The GPU path, checked in one command for the day a CUDA machine is at hand: `python -m retinalight.bench --gpu-check`.

Five parts, each printed as PASS or FAIL with its figures, in a few minutes on one GPU:
1. training: ablation_drive's `quick` profile of sa_unet at auto precision, channels_last and torch.compile;
2. DDP on one GPU (strategy ddp, one process), a few steps;
3. a GAN arm (retinagan_drive's retina_gan), a few steps;
4. evaluate, predict and export (TorchScript, run back) on the GPU with part 1's checkpoint;
5. speed: SA-UNet's training step as the paper trains it (batch 8 of whole 592x592 images, auto precision,
   channels_last) fed from memory and from the paper profile's own loader (workers, pinned memory): ms,
   samples/s, TFLOP/s against the device's measured bf16 matrix rate, the share of the step the GPU is
   busy, peak GPU memory; and 592x592 inference.
`--parts` runs some of them (cluster/gpu_run.py times `speed` alone, then the others beside its training
runs); `--json FILE` writes every part's verdict and figures. Without CUDA it says so in one line and exits 0.
`--device cpu` runs the same code on the CPU with a few steps per run, batch 2 and without torch.compile
(about a minute on 2 cores; the test suite runs it).
"""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

PARTS = ("training", "ddp", "gan", "inference", "speed")
SMALL = ["trainer.max_epochs=1", "data.samples_per_epoch=32"]  # a few steps: the code path, not the result
GAN_ARM = "retina_gan"
# the GAN arm's own sampling (whole images, its quick profile's 50) wins over data.*: 2 images, adversarial from step 1
GAN_SMALL = [f"arms.{GAN_ARM}.data.samples_per_epoch=2", "gan.adversarial_warmup=1"]


def gpu_check(
    device: str, data_root: Path, echo: Callable[[str], None] = print, parts: tuple[str, ...] = PARTS, json_path: Path | None = None
) -> int:
    """Run `parts` on `device` ("cuda" or "cpu"); 0 when every part passes, 1 otherwise. `json_path`: every
    part's verdict, seconds, line and figures, with the device and the software versions."""
    if device == "cuda" and not torch.cuda.is_available():
        echo("gpu-check: no CUDA GPU is visible to PyTorch here, nothing to check (--device cpu runs the same code path on the CPU)")
        return 0
    on_gpu = device == "cuda"
    accelerator = ["trainer.accelerator=gpu" if on_gpu else "trainer.accelerator=cpu"]
    quick = [*accelerator, "trainer.compile=true"] if on_gpu else [*accelerator, *SMALL]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "runs"
        state: dict = {}
        checks = {
            "training": lambda: _train(state, runs, "ablation_drive", "sa_unet", quick, data_root),
            "ddp": lambda: _train({}, runs, "ablation_drive", "unet", [*accelerator, *SMALL, "trainer.strategy=ddp"], data_root),
            "gan": lambda: _train({}, runs, "retinagan_drive", GAN_ARM, [*accelerator, *SMALL, *GAN_SMALL], data_root),
            "inference": lambda: _inference(state, Path(folder), device, data_root),
            "speed": lambda: _speed(torch.device(device), data_root),
        }
        for name in parts:
            started = time.perf_counter()
            try:
                line, figures = checks[name]()
                results[name] = {"pass": True, "line": line, "figures": figures}
            except Exception as err:  # a check reports every part, whatever breaks
                first = str(err).splitlines()[0] if str(err) else ""
                results[name] = {"pass": False, "line": f"{type(err).__name__}: {first}", "traceback": traceback.format_exc()}
            results[name]["seconds"] = round(time.perf_counter() - started, 1)
            echo(f"{'PASS' if results[name]['pass'] else 'FAIL'} {name} ({results[name]['seconds']} s): {results[name]['line']}")
    failed = [name for name, result in results.items() if not result["pass"]]
    echo(
        f"gpu-check on {device}: {len(results) - len(failed)} passed, {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else "")
    )
    if json_path is not None:
        from retinalight.provenance import provenance

        Path(json_path).write_text(json.dumps({"device": device, "parts": results, **provenance()}, indent=2))
    return 1 if failed else 0


def _train(state: dict, runs: Path, experiment: str, arm: str, overrides: list[str], data_root: Path) -> tuple[str, dict]:
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
    seconds = max(result["train_seconds"], 1e-9)
    t = config.trainer
    figures = {"steps": steps, "train_seconds": result["train_seconds"], "steps_per_s": round(steps / seconds, 1)}
    figures |= {"samples_per_s": round(steps * config.data.batch_size / seconds), "precision": t.precision}
    figures |= {"channels_last": t.channels_last, "compile": t.compile, "fov_auc": round(result["protocols"]["fov"]["pooled"]["auc"], 4)}
    line = (
        f"{steps} steps in {figures['train_seconds']} s ({figures['steps_per_s']} steps/s, {figures['samples_per_s']} samples/s), "
        f"precision {t.precision}, channels_last {t.channels_last}, compile {t.compile}, FOV AUC {figures['fov_auc']:.4f}"
    )
    return line, figures


def _inference(state: dict, folder: Path, device: str, data_root: Path) -> tuple[str, dict]:
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
    figures = {"evaluate_images": len(result["per_image"]), "evaluate_seconds": round(evaluate_seconds, 1)}
    figures |= {"fov_auc": round(result["pooled"]["auc"], 4), "bf16": bf16, "predicted_maps": len(written)}
    line = (
        f"evaluate --ckpt {len(result['per_image'])} images in {evaluate_seconds:.1f} s (FOV AUC {result['pooled']['auc']:.4f}, "
        f"{'bf16' if bf16 else 'fp32'}), predict wrote {len(written)} maps, TorchScript export runs back"
    )
    return line, figures


def _speed(device: torch.device, data_root: Path) -> tuple[str, dict]:
    """SA-UNet's training step as the paper profile runs it, from memory and from its loader, and 592x592
    inference, at the precision `auto` picks on `device`; TFLOP/s against the measured bf16 matrix rate."""
    from retinalight.hardware import inference_bf16, resolve_cudnn_benchmark
    from retinalight.models import create_model
    from retinalight.timing import bench_variant, forward_flops, matmul_tflops

    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = resolve_cudnn_benchmark("cuda", deterministic=False)  # as training on CUDA runs
        torch.cuda.reset_peak_memory_stats()
    figures = _paper_step(data_root, device, batch=8 if on_gpu else 2, steps=30 if on_gpu else 2)
    figures["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20) if on_gpu else None
    ceiling = matmul_tflops(device, 8192 if on_gpu else 1024)
    figures |= {"bf16_matmul_tflops": round(ceiling, 1), "share_of_matmul_rate": round(figures["tflops"] / ceiling, 4)}
    model = create_model("sa_unet")
    bf16 = inference_bf16("auto", device)
    flops = {
        "train_gflops_per_step": 3 * forward_flops(model, (8, 3, 128, 128)) / 1e9,
        "infer_gflops_592": forward_flops(model, (1, 3, 592, 592)) / 1e9,
    }
    row = bench_variant(model, True, bf16, False, [592], repeats=5, flops=flops, device=device)
    figures |= {
        "crop_step_ms": row["train_step_ms"],
        "infer_592_ms": row["infer_592_ms"],
        "infer_592_tflops": round(row["infer_592_gflop_per_s"] / 1000, 2),
    }
    memory = f", peak GPU memory {figures['peak_gpu_memory_mib']} MiB" if on_gpu else ""
    line = (
        f"{figures['precision']} channels_last, paper step (batch {figures['batch']}, {figures['side']}x{figures['side']}): "
        f"{figures['step_ms']} ms from memory, {figures['loader_step_ms']} ms from the loader ({figures['loader_workers']} workers, "
        f"device busy {figures['busy_share']:.0%}), {figures['samples_per_s']} samples/s, {figures['tflops']:.2f} TFLOP/s = "
        f"{figures['share_of_matmul_rate']:.1%} of the measured bf16 matrix rate ({ceiling:.1f} TFLOP/s){memory}; 128x128 crop step "
        f"{row['train_step_ms']} ms; inference 592x592 {row['infer_592_ms']} ms"
    )
    return line, figures


def _paper_step(data_root: Path, device: torch.device, batch: int, steps: int) -> dict:
    """ablation_drive's `paper` step for sa_unet (whole padded images, its augmentation, auto precision,
    channels_last, Adam): seconds per step on one batch held on the device, and on fresh batches from the
    profile's own training loader (workers and pinned memory as `auto` resolves them). Their ratio is the
    share of a step the device computes rather than waits for data."""
    from retinalight.experiments import load_experiment
    from retinalight.timing import forward_flops, timed
    from retinalight.training.runner import make_datamodule

    accelerator = "gpu" if device.type == "cuda" else "cpu"
    config = load_experiment("ablation_drive", "paper", [f"trainer.accelerator={accelerator}", f"data.batch_size={batch}"]).run_config(
        "sa_unet", 0
    )
    datamodule = make_datamodule(config, str(data_root))
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    model = config.model.build().to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optimizer.lr)
    precision = config.trainer.precision
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16

    def step(items: dict) -> None:
        x = items["image"].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y, fov = (items[k].to(device, non_blocking=True) for k in ("vessel", "fov"))
        with torch.autocast(device.type, dtype, enabled=precision != "32-true"):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, fov).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def batches():
        while True:  # epochs one after the other, as training draws them
            yield from loader

    fresh = batches()
    held = next(fresh)
    from_memory = timed(lambda: step(held), steps, warmup=3, device=device)
    from_loader = timed(lambda: step(next(fresh)), steps, warmup=2, device=device)
    side = held["image"].shape[-1]
    flops = 3 * batch * forward_flops(config.model.build(), (1, 3, side, side))
    return {
        "batch": batch,
        "side": side,
        "precision": precision,
        "step_ms": round(from_memory * 1000, 1),
        "loader_step_ms": round(from_loader * 1000, 1),
        "loader_workers": loader.num_workers,
        "pin_memory": loader.pin_memory,
        "busy_share": round(min(1.0, from_memory / from_loader), 3),
        "samples_per_s": round(batch / from_loader, 1),
        "tflops": round(flops / from_memory / 1e12, 3),
    }
