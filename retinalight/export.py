"""Export a checkpoint's network for inference without retinalight's training stack.

  python -m retinalight.export --ckpt runs/ablation_drive/sa_unet/fast-<hash>/seed0/checkpoints/last.ckpt --format onnx --out sa_unet.onnx
  python -m retinalight.predict --onnx sa_unet.onnx --input photo.jpg --out predicted/

The exported model maps a standardised image (N x 3 x H x W, H and W multiples of 16, any size) and its FOV
mask (N x 1 x H x W) to vessel probabilities (sigmoid included). A GAN checkpoint exports its generator.
How images are prepared (preprocessing, resize, patches, padding multiple) is stored with the model (ONNX
metadata `retinalight`, TorchScript extra file `retinalight.json`), so `predict --onnx` prepares them as
the run did.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from retinalight.cli import add_inference_options, run_main
from retinalight.errors import DataFileError
from retinalight.hardware import inference_device
from retinalight.inference import Probability, image_preparation, load_checkpoint, reference_fov

FORMATS = ("onnx", "torchscript")


class VesselProbability(nn.Module):
    """Inference-only wrapper: (image, FOV) -> sigmoid(network(image, FOV)), fp32 in and out; `dtype` is the
    network's own (bf16 weights and activations for a TorchScript file meant for a bf16 device)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model, self.dtype = model.eval().to(dtype), dtype

    def forward(self, image: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
        # the FOV enters the graph for every model (models without Retina-Attention ignore it): a fixed signature
        logits = self.model(image.to(self.dtype), fov.to(self.dtype)).float()
        return torch.sigmoid(logits) + 0 * fov


def export(ckpt: str | Path, out: str | Path, fmt: str = "onnx", precision: str = "auto", device: str = "cpu") -> Path:
    """Write the checkpoint's network as ONNX (fp32, CPU: portable) or TorchScript (traced on `device`, in fp32
    or, `precision` bf16, bf16 weights). `auto` exports fp32: a file outlives the machine it was made on."""
    if fmt not in FORMATS:
        raise DataFileError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    if fmt == "onnx" and (precision == "bf16" or str(device) not in ("cpu", "auto")):
        raise DataFileError("ONNX export is fp32 on the CPU (ONNX Runtime picks its device); use --format torchscript for bf16 or CUDA")
    device = inference_device("cpu" if fmt == "onnx" else str(device))
    model, hparams = load_checkpoint(ckpt, device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(image_preparation(hparams) | {"model": hparams["model"]["name"], "fov_reference": reference_fov(hparams)})
    if fmt == "torchscript":
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        example = (torch.zeros(1, 3, 64, 64, device=device), torch.ones(1, 1, 64, 64, device=device))
        traced = torch.jit.trace(VesselProbability(model, dtype).eval(), example, check_trace=False)
        torch.jit.save(traced, str(out), _extra_files={"retinalight.json": meta})
        return out
    return export_onnx(model, out, meta)


def export_onnx(model: nn.Module, out: Path, meta: str | None = None) -> Path:
    """`VesselProbability(model)` as ONNX (opset 17) with dynamic batch, height and width; `meta` (JSON) as
    the model's `retinalight` metadata."""
    import onnx

    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        VesselProbability(model).eval(),
        (torch.zeros(1, 3, 64, 64), torch.ones(1, 1, 64, 64)),
        str(out),
        input_names=["image", "fov"],
        output_names=["probability"],
        dynamic_axes={"image": axes, "fov": axes, "probability": axes},
        opset_version=17,
        dynamo=False,  # the TorchScript-based exporter: dynamic sizes without onnxscript's shape constraints
    )
    if meta:
        graph = onnx.load(str(out))
        graph.metadata_props.add(key="retinalight", value=meta)
        onnx.save(graph, str(out))
    return out


def onnx_probability(path: str | Path, threads: int | None = None) -> tuple[Probability, dict]:
    """An exported ONNX model as a probability function (ONNX Runtime, CPU), and its stored image preparation."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: ONNX model not found")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own types for unreadable or invalid files
        raise DataFileError(f"{path}: not a readable ONNX model ({str(err).splitlines()[0]})") from None
    meta = json.loads(session.get_modelmeta().custom_metadata_map.get("retinalight", "{}"))

    def probability(x: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"image": x.numpy(), "fov": fov.numpy()})[0])

    return probability, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, metavar="PATH", help="checkpoint written by retinalight.fit")
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="default: onnx")
    parser.add_argument("--out", required=True, metavar="FILE", help="output file (.onnx or .pt)")
    add_inference_options(parser)
    args = parser.parse_args(argv)
    print(f"wrote {export(args.ckpt, args.out, args.format, args.precision, args.device)}")
    return 0


if __name__ == "__main__":
    run_main(main)
