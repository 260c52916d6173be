"""Segment vessels in fundus images of any size with a trained checkpoint or the weights shipped with the package.

  python -m retinalight.predict --model sa_unet-drive --input photo.jpg --out predicted/      # no training needed
  python -m retinalight.predict --ckpt runs/ablation_drive/sa_unet/quick-<hash>/seed0/checkpoints/last.ckpt --input photos/ --out predicted/
  python -m retinalight.predict --onnx sa_unet.onnx --input photos/ --out predicted/      # an exported model

For each image writes <name>_prob.png (probability x 255), <name>_vessels.png (binary at --threshold),
<name>_overlay.png (vessels in green over the photo) and <name>_fov.png (the FOV mask used: computed from the
image unless --fov-dir has <name>.png). With --scale fov (the default where the model knows it) the network
sees the image resized so its FOV is as wide as its training images' (a 3504x2336 photo and a 565x584 one
alike), large inputs in tiles; the maps always have the input's size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from retinalight.cli import add_inference_options, add_scale_option, add_tta_option, inference_options, run_main
from retinalight.data.fov import compute_fov
from retinalight.data.io import list_images, read_binary, read_rgb, write_grey
from retinalight.errors import DataFileError
from retinalight.inference import (
    image_preparation,
    load_checkpoint,
    predict_probability,
    prediction_inputs,
    reference_fov,
    torch_probability,
    with_scale,
    with_tta,
)


def overlay(image: np.ndarray, vessels: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[vessels] = (0.4 * out[vessels] + 0.6 * np.array([0, 255, 0])).astype(np.uint8)
    return out


def predict_files(
    model_file: str,
    images: list[Path],
    out: Path,
    threshold: float = 0.5,
    fov_dir: Path | None = None,
    onnx: bool = False,
    bf16: bool = False,
    device: str = "cpu",
    echo=print,
    tta: str = "none",
    scale: str = "auto",
    reference: dict | None = None,
) -> tuple[list[Path], list[str]]:
    """Write probability, binary and overlay maps of `images` with a checkpoint (or, `onnx`, an exported model),
    and the FOV mask used (<name>_fov.png). `scale` (`with_scale`): fov resizes each image for the network
    so its FOV is as wide as the training images' (the model's reference, or `reference`).

    An image that cannot be read is reported (`echo`, one line: file and reason) and the others go on.
    Returns (probability maps written, the failure lines)."""
    from PIL import Image

    if onnx:
        from retinalight.export import onnx_probability

        probability, preparation = onnx_probability(model_file)
        reference = reference or preparation.get("fov_reference")
    else:
        model, hparams = load_checkpoint(model_file, device)
        probability, preparation = torch_probability(model, bf16), image_preparation(hparams)
        reference = reference or reference_fov(hparams)
    probability = with_tta(probability, tta)
    sizes = prediction_inputs(with_scale(preparation, reference, scale, model_file))
    preprocess = sizes.pop("preprocess")
    out.mkdir(parents=True, exist_ok=True)
    written, failed = [], []
    for path in tqdm(images, desc="predict", unit="image", disable=None):
        try:
            image = read_rgb(path)
            fov_file = fov_dir / f"{path.stem}.png" if fov_dir else None
            fov = read_binary(fov_file) if fov_file and fov_file.is_file() else compute_fov(image)
        except DataFileError as err:
            failed.append(f"skipped {err}")
            echo(failed[-1])
            continue
        prob = predict_probability(probability, preprocess(image) if preprocess else image, fov, **sizes)
        vessels = prob > threshold
        write_grey(out / f"{path.stem}_prob.png", (prob * 255).round())
        write_grey(out / f"{path.stem}_vessels.png", vessels * 255)
        write_grey(out / f"{path.stem}_fov.png", fov * 255)
        Image.fromarray(overlay(image, vessels)).save(out / f"{path.stem}_overlay.png")
        written.append(out / f"{path.stem}_prob.png")
    return written, failed


def shipped_weights() -> list[str]:
    from retinalight.weights import manifest

    return list(manifest())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", metavar="PATH", help="checkpoint written by retinalight.fit")
    source.add_argument("--onnx", metavar="PATH", help="model written by retinalight.export (no Lightning, no checkpoint)")
    source.add_argument("--model", metavar="NAME", help=f"weights shipped with retinalight ({', '.join(shipped_weights())})")
    parser.add_argument("--input", required=True, metavar="FILE_OR_DIR", help="a fundus image or a folder of them")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_inference_options(parser)  # with --ckpt
    add_tta_option(parser)
    add_scale_option(parser, "fov when the model knows its training FOV diameter (shipped weights, checkpoints since it is stored)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability threshold of the binary map (default 0.5)")
    parser.add_argument("--fov-dir", type=Path, default=None, metavar="DIR", help="optional FOV masks named <image name>.png")
    args = parser.parse_args(argv)
    from retinalight.weights import manifest, weights_path

    device, bf16 = inference_options(args)
    reference = manifest()[args.model].get("fov_reference") if args.model in manifest() else None
    images = list_images(Path(args.input))
    written, failed = predict_files(
        args.ckpt or args.onnx or str(weights_path(args.model)),
        images,
        Path(args.out),
        args.threshold,
        args.fov_dir,
        bool(args.onnx),
        bf16,
        device,
        echo=lambda line: print(line, file=sys.stderr),
        tta=args.tta,
        scale=args.scale,
        reference=reference,
    )
    print(f"wrote {len(written)} x 4 images to {args.out}")
    if failed:
        print(f"error: {len(failed)} of {len(images)} images could not be read (listed above)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    run_main(main)
