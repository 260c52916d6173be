"""Score vessel predictions on a dataset split: saved prediction images of any method, or a checkpoint.

  python -m retinalight.evaluate --pred-dir runs/ablation_drive/sa_unet/quick-<hash>/seed0/predictions --dataset drive
  python -m retinalight.evaluate --ckpt runs/ablation_drive/sa_unet/quick-<hash>/seed0/checkpoints/last.ckpt --format json
  python -m retinalight.evaluate --model sa_unet-chase_db1 --dataset chase_db1      # weights shipped with the package
  python -m retinalight.evaluate --model sa_unet-drive --tta flips                   # mean over the 8 flips and transposes
  python -m retinalight.evaluate --ensemble runs/ablation_drive/sa_unet/fast-<hash>/seed0 .../seed1 .../seed2   # mean map

--pred-dir holds one image per test image, any mode Pillow reads, read as 8-bit grey: value / 255 is the
vessel probability (binary maps are fine). Files may be named as peers ship them: the id (DRIVE 01..20 or 1..20,
CHASE_DB1 Image_11L..Image_14R), the dataset's own stem or anything after a separator (01_test.png,
01_test_prediction.png, Image_11L_pred.png), or what --pattern's group `id` captures. Every score also has
the topology numbers (clDice, Betti errors on 100 64x64 FOV patches per image with seed 0, components).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retinalight.cli import (
    add_data_root,
    add_inference_options,
    add_scale_option,
    add_tta_option,
    inference_options,
    run_main,
)
from retinalight.data.datasets import SPLITS, dataset_names, get_dataset
from retinalight.data.io import resolve_data_root
from retinalight.errors import DataFileError
from retinalight.metrics.segmentation import METRICS, PROTOCOLS, evaluate_predictions
from retinalight.metrics.topology import TOPOLOGY


def evaluate_checkpoint(
    ckpt: str,
    reader,
    split: str,
    protocol: str,
    bf16: bool = False,
    device: str = "cpu",
    tta: str = "none",
    scale: str = "auto",
    reference=None,
) -> dict:
    """Run a checkpoint on a split and score it (`bf16`: bf16 autocast inference on `device`; `tta`: test-time
    augmentation, `retinalight.inference.with_tta`; `scale`: `with_scale`, where auto normalises the scale on a
    dataset other than the one the network trained on, as cross-dataset tests in experiments do)."""
    from retinalight.inference import image_preparation, load_checkpoint, predict_samples, prediction_inputs, reference_fov, with_scale

    model, hparams = load_checkpoint(ckpt, device)
    reference = reference or reference_fov(hparams)
    if scale == "auto":
        scale = "fov" if reference and reference["dataset"] != reader.name else "none"
    preparation = with_scale(image_preparation(hparams), reference, scale, ckpt)
    predictions = predict_samples(model, reader.load_split(split), **prediction_inputs(preparation), bf16=bf16, tta=tta)
    facts = {"scale": scale, "fov_diameter": preparation["fov_diameter"]} if preparation["fov_diameter"] else {}
    return {"dataset": reader.name, "split": split, "tta": tta, **facts, **evaluate_predictions(predictions, protocol)}


def format_table(result: dict) -> str:
    head = f"{'image':<12}" + "".join(f"{k.upper():>8}" for k in METRICS)
    rows = [f"{r['id']:<12}" + "".join(f"{r[k]:>8.4f}" for k in METRICS) for r in result["per_image"]]
    stats = [
        f"{name:<12}" + "".join(f"{result[key][k]:>8.4f}" for k in METRICS)
        for name, key in (("mean", "mean"), ("std", "std"), ("pooled", "pooled"))
    ]
    title = f"{result['dataset']} {result['split']}, protocol {result['protocol']} ({PROTOCOLS[result['protocol']]})"
    topology = result["topology"]
    topo_head = f"{'image':<12}" + "".join(f"{k.upper():>15}" for k in TOPOLOGY)
    topo_rows = [f"{r['id']:<12}" + "".join(f"{r[k]:>15.4f}" for k in TOPOLOGY) for r in result["per_image"]]
    topo_stats = [f"{name:<12}" + "".join(f"{topology[name][k]:>15.4f}" for k in TOPOLOGY) for name in ("mean", "std")]
    note = (
        f"topology at threshold {result['threshold']}: clDice; b0/b1 errors = mean |Betti difference| over {topology['patches']}; "
        "whole-map b0 error and connected components (8-connected)"
    )
    return "\n".join([title, head, *rows, "-" * len(head), *stats, "", note, topo_head, *topo_rows, "-" * len(topo_head), *topo_stats])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred-dir", metavar="DIR", help="folder of predictions, one <id>.png (or .gif/.tif) per image")
    source.add_argument("--ckpt", metavar="PATH", help="a retinalight checkpoint to run on the split")
    source.add_argument("--model", metavar="NAME", help="weights shipped with retinalight (python -m retinalight.weights list)")
    source.add_argument(
        "--ensemble",
        nargs="+",
        metavar="DIR",
        help="run folders (their predictions/) or prediction folders: score the per-image mean of their maps",
    )
    parser.add_argument("--dataset", default="drive", choices=dataset_names(files_only=True), help="default: drive")
    parser.add_argument("--split", default="test", choices=SPLITS, help="default: test")
    parser.add_argument(
        "--protocol", default="fov", choices=list(PROTOCOLS), help="fov: pixels inside the FOV (default); image: every pixel"
    )
    parser.add_argument(
        "--pattern",
        default=None,
        metavar="REGEX",
        help="with --pred-dir or --ensemble: a regex on file stems with a group named id, e.g. '(?P<id>\\d+)_test_prob'",
    )
    add_inference_options(parser)  # with --ckpt
    add_tta_option(parser)
    add_scale_option(parser, "fov on a dataset other than the network's training one, where it knows that one")
    parser.add_argument("--format", default="table", choices=["table", "json"], help="default: table")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write DIR/metrics.json and DIR/per_image.csv, as a run folder holds them",
    )
    add_data_root(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    reader = get_dataset(args.dataset, resolve_data_root(args.data_root))
    reader.require()
    if args.ensemble:
        from retinalight.metrics.folder import evaluate_ensemble

        result = evaluate_ensemble(args.ensemble, reader, args.split, args.protocol, args.pattern)
    elif args.pred_dir:
        from retinalight.metrics.folder import evaluate_folder

        result = evaluate_folder(args.pred_dir, reader, args.split, args.protocol, args.pattern)
        renamed = {i: f for i, f in result["files"].items() if f.rsplit(".", 1)[0] != i}
        if renamed and args.format == "table":
            print("matched files: " + ", ".join(f"{f} -> {i}" for i, f in renamed.items()))
    else:
        device, bf16 = inference_options(args)
        if args.model:
            from retinalight.weights import manifest, weights_path

            args.ckpt, reference = str(weights_path(args.model)), manifest()[args.model].get("fov_reference")
        else:
            reference = None
        result = evaluate_checkpoint(args.ckpt, reader, args.split, args.protocol, bf16, device, args.tta, args.scale, reference)
    print(json.dumps(result, indent=2) if args.format == "json" else format_table(result))
    if args.out:
        write_out(args, result)
    return 0


def write_out(args: argparse.Namespace, result: dict) -> None:
    """--out: metrics.json and per_image.csv as a run folder holds them, with where the maps came from."""
    from retinalight.rundirs import write_json, write_per_image

    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataFileError(f"--out {args.out}: cannot create the folder ({err.strerror or err})") from None
    if args.ensemble:
        source = {"ensemble": result["ensemble"]}
    else:
        source = {"pred_dir": str(args.pred_dir)} if args.pred_dir else {"checkpoint": str(args.ckpt), "tta": args.tta}
    source |= {"model": args.model} if args.model else {}
    source |= {k: result[k] for k in ("scale", "fov_diameter") if k in result}  # a scale-normalised score says so
    protocol = {k: result[k] for k in ("protocol", "threshold", "pooled", "per_image", "mean", "std", "topology")}
    write_json(
        args.out / "metrics.json",
        {"dataset": result["dataset"], "split": result["split"], **source, "protocols": {args.protocol: protocol}},
    )
    write_per_image(args.out / "per_image.csv", {args.protocol: protocol})


if __name__ == "__main__":
    run_main(main)
