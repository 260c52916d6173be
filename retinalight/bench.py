"""Benchmarks: how fast each model trains and predicts here, against the machine's limit and a plain reference.

  python -m retinalight.bench --quick                      # SA-UNet, the main variants, under 3 minutes on 2 cores
  python -m retinalight.bench --models sa_unet unet r2unet --data-root DIR

For each model: FLOPs of one forward pass (torch.utils.flop_counter), training step time (forward +
backward + Adam, batch 8 of 128x128) and inference latency (one 592x592 DRIVE-sized image; 1008x1008
CHASE_DB1-sized without --quick) for fp32, channels_last, bf16 autocast + channels_last and, with
--compile, torch.compile; achieved GFLOP/s; the process's peak resident memory. On a CPU without
native bf16 (retinalight.hardware's `cpu-fp32` class) --quick skips the bf16 variants (emulated there,
about 8x slower). Beside them, in the same run: a plain hand-written U-Net of SA-UNet's shape (the reference a package's overhead is judged against),
ONNX Runtime's latency for SA-UNet, the data pipeline alone (augmented 128x128 samples per second), and
end to end on DRIVE: one test image read, padded, predicted, cropped and written; all 20 test images
predicted and scored; `evaluate --pred-dir`'s scoring, each at the precision `auto` picks here.
Writes results/bench/bench-<speed class>-<CPU capability>.json and .md; its Goals judge the class by
its own targets. Timings are medians of repeated runs after warm-up; compare within a run.

  python -m retinalight.bench --gpu-check                  # on a CUDA machine: training, DDP, GAN, inference (retinalight.gpu_check)
  python -m retinalight.bench --estimate retinagan_drive --tflops 5   # a profile's training FLOPs and GPU hours, before a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from retinalight.cli import add_data_root, run_main
from retinalight.data.io import resolve_data_root
from retinalight.errors import RetinalightError
from retinalight.experiments import DEFAULT_PROFILE
from retinalight.provenance import provenance
from retinalight.timing import bench_variant, forward_flops, peak_rss_mb, timed

VARIANTS = {  # name -> (channels_last, bf16 autocast)
    "fp32": (False, False),
    "fp32_channels_last": (True, False),
    "bf16_channels_last": (True, True),
}


def bench_model(model: nn.Module, sizes: list[int], repeats: int, compile_: bool, variants: dict = VARIANTS) -> dict:
    """Training step (batch 8, 128x128) and inference latency per size, for each variant."""
    out = {"parameters": sum(p.numel() for p in model.parameters())}
    out["train_gflops_per_step"] = round(3 * forward_flops(model, (8, 3, 128, 128)) / 1e9, 2)  # forward + ~2x backward
    for size in sizes:
        out[f"infer_gflops_{size}"] = round(forward_flops(model, (1, 3, size, size)) / 1e9, 2)
    runs = {name: (*flags, False) for name, flags in variants.items()}
    if compile_:
        fast = "bf16_channels_last" if "bf16_channels_last" in variants else "fp32_channels_last"
        runs[f"{fast}_compiled"] = (*VARIANTS[fast], True)
    for name, (channels_last, bf16, compiled) in runs.items():
        out[name] = bench_variant(model, channels_last, bf16, compiled, sizes, repeats, out)
        model = model.to(memory_format=torch.contiguous_format)
    return out


def bench_onnx(model: nn.Module, size: int, repeats: int) -> dict:
    from retinalight.export import export_onnx

    try:
        import onnxruntime as ort
    except ImportError:
        return {"skipped": "onnxruntime is not installed (pip install retinalight[export])"}
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, Path(folder) / "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {"image": np.random.randn(1, 3, size, size).astype(np.float32), "fov": np.ones((1, 1, size, size), np.float32)}
        return {f"infer_{size}_ms": round(timed(lambda: session.run(None, feed), repeats) * 1000, 1)}


def bench_data(data_root: Path, seconds: float = 5.0) -> dict:
    """Augmented 128x128 training samples per second from the data module alone (DRIVE, `fast` recipe)."""
    from retinalight.data.datamodules import AugmentedSamples
    from retinalight.data.datasets import Drive

    samples = Drive(data_root).load_split("training")
    augment = {"rotate": {"p": 0.5, "limit": 180}, "gauss_noise": {"p": 0.3}, "color_jitter": {"p": 0.5}, "hflip": {"p": 0.5}}
    dataset = AugmentedSamples(samples, augment, (592, 592), 128, seed=0, crop_sampling="vessel")
    dataset[0]
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        dataset[count]
        count += 1
    return {"samples_per_s": round(count / (time.perf_counter() - start), 1)}


def bench_end_to_end(model: nn.Module, data_root: Path, repeats: int, auto_bf16: bool) -> dict:
    """One DRIVE test image from file to written map (fp32, and bf16 where native), the whole test set at the
    precision `auto` picks, and folder scoring."""
    from retinalight.data.datasets import Drive
    from retinalight.data.fov import compute_fov
    from retinalight.data.io import read_binary, write_grey
    from retinalight.inference import predict_probability, predict_samples, torch_probability
    from retinalight.metrics.folder import evaluate_folder
    from retinalight.metrics.segmentation import evaluate_predictions

    drive = Drive(data_root)
    files = drive.files("01")
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, bf16 in (("fp32", False), ("bf16", True))[: 2 if auto_bf16 else 1]:
            probability = torch_probability(model, bf16)  # once per model, as `predict` does

            def one_image(probability=probability):
                from PIL import Image

                with Image.open(files.image) as img:  # decode afresh: no cache
                    image = np.asarray(img.convert("RGB"))
                fov = read_binary(files.fov) if files.fov else compute_fov(image)
                prob = predict_probability(probability, image, fov)
                write_grey(Path(folder) / "01.png", (prob * 255).round())

            out[f"one_image_{name}_ms"] = round(timed(one_image, repeats) * 1000, 1)
        samples = drive.load_split("test")
        start = time.perf_counter()
        predictions = predict_samples(model, samples, bf16=auto_bf16)
        evaluate_predictions(predictions, "fov")
        out["test_set_predict_and_score_s"] = round(time.perf_counter() - start, 2)
        for p in predictions:
            write_grey(Path(folder) / f"{p.id}.png", (p.prob * 255).round())
        start = time.perf_counter()
        evaluate_folder(folder, drive, "test", "fov")
        out["score_pred_dir_s"] = round(time.perf_counter() - start, 2)
        # the same through the command line, in a fresh interpreter: what a user waits for, imports included
        cli = [sys.executable, "-m", "retinalight.evaluate", "--dataset", "drive", "--data-root", str(data_root)]
        with tempfile.TemporaryDirectory() as ckpt_folder:
            ckpt = Path(ckpt_folder) / "sa_unet.ckpt"  # the fields of a Lightning checkpoint that `load_checkpoint` reads
            torch.save(
                {
                    "hyper_parameters": {"model": {"name": "sa_unet"}},
                    "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                },
                ckpt,
            )
            out["cli_evaluate_ckpt_s"] = wall_seconds([*cli, "--ckpt", str(ckpt), "--precision", "auto", "--device", "cpu"])
        out["cli_evaluate_pred_dir_s"] = wall_seconds([*cli, "--pred-dir", folder])
        out["cli_import_torch_torchmetrics_s"] = wall_seconds([sys.executable, "-c", "import torch, torchmetrics"])
    return out


def training_estimate(experiment: str, profile: str, overrides: list[str] | None = None, arms: list[str] | None = None) -> list[dict]:
    """Each run arm's training FLOPs from its resolved config, with no data and no training: a network's update
    counts 3x its forward FLOPs (the backward about twice the forward), the discriminator's once per d_step
    and once in the generator's step; validation and testing count forward passes. For GPU time before a GPU."""
    from retinalight.config import DISCRIMINATOR_INPUTS
    from retinalight.data.datasets import get_dataset
    from retinalight.data.geometry import padded_size
    from retinalight.data.patches import patch_grid
    from retinalight.experiments import load_experiment
    from retinalight.models import create_model

    exp = load_experiment(experiment, profile, overrides or [])
    cache: dict = {}

    def forward(spec: tuple, side: int, count: float, channels: int = 3) -> float:
        """Forward FLOPs of `count` inputs of `channels` x side x side (FLOPs grow linearly with the batch)."""
        if (spec, side) not in cache:
            cache[spec, side] = forward_flops(create_model(spec[0], **dict(spec[1])), (1, channels, side, side))
        return count * cache[spec, side]

    rows = []
    for arm in arms or exp.run_arms:
        config = exp.run_config(arm, 0)
        data, gan, trainer, evaluation = config.data, config.gan, config.trainer, config.evaluation
        generator = (config.model.name, tuple(sorted(config.model.kwargs.items())))
        reader = get_dataset(data.dataset, ".", **data.dataset_kwargs)  # its declared size and split: no files read
        height, width = reader.size
        side = padded_size(data.resize or height, data.resize or width, data.pad_multiple)[0]
        patch = evaluation.patch_size
        grid = len(patch_grid(side, side, patch, evaluation.patch_overlap)) if patch else 1  # inference's own tiling
        steps = trainer.max_epochs * -(-data.samples_per_epoch // data.batch_size)
        batch = data.batch_size
        if config.module == "gan" and gan.discriminator_scope == "image":
            step = 3 * forward(generator, patch, batch * grid)
        else:
            step = 3 * forward(generator, data.crop_size or side, batch)
        if config.module == "gan" and gan.adversarial_weight > 0:
            spec, condition = dict(gan.discriminator), DISCRIMINATOR_INPUTS[gan.discriminator_input]
            discriminator = (spec.pop("name"), tuple(sorted({**spec, "in_channels": condition + 1}.items())))
            judged = side if gan.discriminator_scope == "image" else data.crop_size or side
            step += (gan.d_steps + 1) * 3 * forward(discriminator, judged, 2 * batch, condition)  # real and fake pairs
        image = forward(generator, patch, grid) if patch else forward(generator, side, 1)
        tests = len(reader.ids("test"))
        validated = tests if data.val_mode == "test" else data.val_count  # holdout and augmented: val_count images
        total = steps * step + (trainer.max_epochs // trainer.check_val_every_n_epoch * validated + tests) * image
        rows.append({"arm": arm, "steps": steps, "gflop_per_step": round(step / 1e9, 1), "pflop": round(total / 1e15, 3)})
    return rows


def estimate_table(experiment: str, profile: str, tflops: float, arms: list[str] | None = None) -> str:
    rows = training_estimate(experiment, profile, arms=arms)
    lines = [f"# {experiment}, profile {profile}: training FLOPs (retinalight.bench.training_estimate)", ""]
    lines += [f"| arm | training steps | GFLOP per step | PFLOP in all | minutes at {tflops:g} TFLOP/s |"]
    lines += ["|---|---|---|---|---|"]
    lines += [f"| {r['arm']} | {r['steps']} | {r['gflop_per_step']} | {r['pflop']} | {r['pflop'] * 1000 / tflops / 60:.1f} |" for r in rows]
    total = sum(r["pflop"] for r in rows)
    return "\n".join([*lines, f"| all | | | {total:.3f} | {total * 1000 / tflops / 60:.1f} |"])


def wall_seconds(command: list[str], repeats: int = 3) -> float:
    """Median wall-clock seconds of a command in a fresh process (it must succeed: else one line naming it)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RetinalightError(f"timed command failed ({' '.join(command[2:4])} ...): {last}")
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 2)


def markdown(report: dict) -> str:
    lines = [f"# Benchmark: {report['provenance']['device']}", "", f"`{report['provenance']['command']}` at commit "
             f"{report['provenance']['commit']}, torch {report['provenance']['torch']}, {report['threads']} threads.", ""]  # fmt: skip
    for model, result in report["models"].items():
        lines += [f"## {model} ({result['parameters']:,} parameters, {result['train_gflops_per_step']} GFLOP per training step)", ""]
        keys = [k for k in next(r for r in result.values() if isinstance(r, dict))]
        lines += ["| variant | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for variant, row in result.items():
            if isinstance(row, dict):
                lines.append(f"| {variant} | " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
        lines.append("")
    for section in ("skipped", "sa_unet_over_reference", "onnxruntime", "data", "end_to_end", "peak_rss_mb"):
        if section in report:
            lines += [f"## {section}", "", "```", json.dumps(report[section], indent=1), "```", ""]
    rows = goals(report)
    if rows:
        lines += ["## Goals", "", f"Targets of the `{report.get('hardware_class', 'cpu-bf16')}` class.", ""]
        lines += ["| goal | measured | target | |", "|---|---|---|---|"]
        lines += [f"| {name} | {value} | {'<=' if le else '<'} {target} | {verdict} |" for name, value, le, target, verdict in rows]
        floor = report.get("end_to_end", {}).get("cli_import_torch_torchmetrics_s")
        if floor:
            lines += ["", f"A command's wall time includes {floor} s of importing torch and torchmetrics in a fresh interpreter."]
    return "\n".join(lines)


# Per speed class: (name, where in the report, at most (True) or under (False), target). Each class is judged
# at the precision `auto` picks there (bf16 where native, else fp32 channels_last).
GOALS = {
    "cpu-bf16": [
        ("SA-UNet / plain reference, bf16 inference at 592", ("sa_unet_over_reference", "bf16_channels_last", "infer_592_ms"), True, 1.15),
        ("one DRIVE image end to end, bf16 (ms)", ("end_to_end", "one_image_bf16_ms"), False, 100),
        ("evaluate --ckpt (auto: bf16), DRIVE test set, wall (s)", ("end_to_end", "cli_evaluate_ckpt_s"), False, 4),
        ("evaluate --pred-dir, DRIVE test set, wall (s)", ("end_to_end", "cli_evaluate_pred_dir_s"), False, 3),
        ("the benchmark itself with --quick, after imports (s)", ("bench_seconds",), False, 180),
    ],
    "cpu-fp32": [
        (
            "SA-UNet / plain reference, fp32 channels_last inference at 592",
            ("sa_unet_over_reference", "fp32_channels_last", "infer_592_ms"),
            True,
            1.15,
        ),
        ("one DRIVE image end to end, fp32 (ms)", ("end_to_end", "one_image_fp32_ms"), False, 300),
        ("evaluate --ckpt (auto: fp32), DRIVE test set, wall (s)", ("end_to_end", "cli_evaluate_ckpt_s"), False, 10),
        ("evaluate --pred-dir, DRIVE test set, wall (s)", ("end_to_end", "cli_evaluate_pred_dir_s"), False, 3),
        ("the benchmark itself with --quick, after imports (s)", ("bench_seconds",), False, 180),
    ],
}


def goals(report: dict) -> list[tuple[str, float, bool, float, str]]:
    """Each goal of the report's speed class it can judge: (name, measured, at most?, target, "met" or "missed by X")."""
    rows = []
    speed = report.get("hardware_class") or report.get("provenance", {}).get("hardware", {}).get("class", "cpu-bf16")
    for name, path, at_most, target in GOALS.get(speed, []):
        value = report
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or (path == ("bench_seconds",) and not report.get("quick")):
            continue
        met = value <= target if at_most else value < target
        rows.append((name, value, at_most, target, "met" if met else f"missed by {round(value - target, 2)}"))
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["sa_unet"], help="registered models (default: sa_unet)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, DRIVE size only: under 3 minutes here")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on a CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("results/bench"), help="output folder (default: results/bench)")
    parser.add_argument(
        "--gpu-check",
        action="store_true",
        help="check the GPU path instead (training, DDP, GAN, inference, export; pass or fail each); without CUDA it says so and exits 0",
    )
    parser.add_argument(
        "--device", default="cuda", choices=["cuda", "cpu"], help="with --gpu-check: cpu runs the same code path on the CPU"
    )
    parser.add_argument(
        "--parts", nargs="+", default=None, metavar="PART", help="with --gpu-check: only these parts (training ddp gan inference speed)"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="with --gpu-check: write every part's verdict and figures")
    parser.add_argument(
        "--estimate",
        metavar="EXP",
        help="instead: each arm's training FLOPs and minutes at --tflops, from the experiment's resolved config (no data, no training)",
    )
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"with --estimate: the profile (default: {DEFAULT_PROFILE})")
    parser.add_argument(
        "--tflops",
        type=float,
        default=5.0,
        help="with --estimate: sustained TFLOP/s of your device (default 5; --gpu-check prints SA-UNet's on a GPU)",
    )
    add_data_root(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.estimate:
        print(estimate_table(args.estimate, args.profile, args.tflops))
        return 0
    if args.gpu_check:
        from retinalight.gpu_check import PARTS, gpu_check

        unknown = [p for p in args.parts or [] if p not in PARTS]
        if unknown:
            raise RetinalightError(f"--parts {' '.join(unknown)}: choose from {', '.join(PARTS)}")
        return gpu_check(args.device, resolve_data_root(args.data_root), parts=tuple(args.parts or PARTS), json_path=args.json)
    report = cpu_bench(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{report['hardware_class']}-{report['provenance']['hardware']['cpu_capability'].lower()}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {args.out / stem}.json and .md")
    return 0


def cpu_bench(args: argparse.Namespace) -> dict:
    """Every CPU figure of `bench`: the models' steps and inference per variant, ONNX Runtime, the data
    pipeline and end-to-end inference on DRIVE where present."""
    from retinalight.hardware import speed_class
    from retinalight.models import create_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    repeats = 5 if args.quick else 15
    sizes = [592] if args.quick else [592, 1008]
    started = time.perf_counter()
    report = {
        "provenance": provenance(),
        "hardware_class": speed_class("cpu"),
        "threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    native = report["hardware_class"] == "cpu-bf16"  # the class judged below decides what is timed, too
    variants = VARIANTS if native or not args.quick else {k: v for k, v in VARIANTS.items() if not v[1]}
    if variants is not VARIANTS:
        report["skipped"] = "bf16 variants: this CPU has no native bf16 (emulated, about 8x slower); run without --quick to time them"
    report["models"] = {}
    for name in args.models:
        print(f"{name} ...", flush=True)
        report["models"][name] = bench_model(create_model(name), sizes, repeats, args.compile, variants)
    print("reference plain U-Net ...", flush=True)
    report["models"]["plain_unet_reference"] = bench_model(create_model("plain_unet"), sizes, repeats, False, variants)
    if "sa_unet" in report["models"]:
        ours, ref = report["models"]["sa_unet"], report["models"]["plain_unet_reference"]
        report["sa_unet_over_reference"] = {
            variant: {key: round(ours[variant][key] / ref[variant][key], 2) for key in ours[variant] if key.endswith("_ms")}
            for variant in variants
        }
    sa_unet = create_model("sa_unet").eval()
    print("onnxruntime, data pipeline, end to end ...", flush=True)
    report["onnxruntime"] = bench_onnx(sa_unet, 592, repeats)
    data_root = resolve_data_root(args.data_root)
    if (data_root / "DRIVE").is_dir():
        report["data"] = bench_data(data_root, 3.0 if args.quick else 10.0)
        report["end_to_end"] = bench_end_to_end(sa_unet, data_root, repeats, native)
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    report["bench_seconds"] = round(time.perf_counter() - started, 1)  # imports excluded
    return report


if __name__ == "__main__":
    run_main(main)
