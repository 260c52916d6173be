"""Running a trained network on whole fundus images: pad, predict, crop back; safe checkpoint loading."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from retinalight.config import SCALE_MODES, TTA_MODES, EvaluationConfig, ModelConfig, section
from retinalight.data.fov import fov_scale
from retinalight.data.geometry import pad, padded_size, resize_back, resize_sample_arrays
from retinalight.data.patches import extract_patches, merge_patches
from retinalight.data.tensors import image_to_tensor
from retinalight.errors import ConfigError, DataFileError
from retinalight.metrics.segmentation import Prediction
from retinalight.models.blocks import DropBlock

PATCH_BATCH = 16  # patches per forward pass in sliding-window inference
TILE_ABOVE = 1536 * 1536  # inputs larger than this (HRF, FIVES at their own scale) are predicted in tiles ...
TILE = (512, 64)  # ... of this side and overlap, so the network's memory does not grow with the photo (a 3504x2336
# photo at its own scale: 2.3 GB peak for the whole predict process, results/bench/any-scale-cpu-bf16.txt)
INFERENCE_IDENTITIES = (DropBlock, nn.Dropout, nn.Dropout2d, nn.Identity)  # layers that pass inputs through at inference


Probability = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (N,3,H,W) image, (N,1,H,W) FOV -> (N,1,H,W) in [0, 1]


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """An inference copy of `model` (eval mode) with each BatchNorm folded into the conv before it in the
    same nn.Sequential (layers that are identities at inference, such as DropBlock, may sit between): one
    pass over the activations less per block, same outputs (tested for every registered model)."""
    model = copy.deepcopy(model).eval()
    for block in model.modules():
        if not isinstance(block, nn.Sequential):
            continue
        conv = None
        for name, layer in block.named_children():
            if isinstance(layer, nn.Conv2d):
                conv = name
            elif isinstance(layer, nn.BatchNorm2d) and conv is not None and layer.track_running_stats:
                setattr(block, conv, fuse_conv_bn_eval(getattr(block, conv), layer))
                setattr(block, name, nn.Identity())
                conv = None
            elif not isinstance(layer, INFERENCE_IDENTITIES):
                conv = None
    return model


def torch_probability(model: nn.Module, bf16: bool = False) -> Probability:
    """A PyTorch network (logits out) as a probability function, on the network's device, with BatchNorm
    folded into its convs (`fold_batch_norm`; the network itself is left untouched), in channels_last (faster
    on both CPU classes measured, results/bench/). `bf16`: bf16 autocast (about 2x faster where bf16 is
    native, `retinalight.hardware`; AUC within 0.001, tested)."""
    model = fold_batch_norm(model).to(memory_format=torch.channels_last)
    device = next(model.parameters()).device

    def probability(x: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            return torch.sigmoid(model(x, fov.to(device)).float()).cpu()

    return probability


def dihedral_mean(probability: Probability) -> Probability:
    """`probability` averaged over the 8 flips and transposes of its input (the symmetries of a square), each
    output mapped back onto the input's grid: test-time augmentation `flips`. All 8 rather than the 4 flips:
    vessels have no preferred orientation, and the papers' augmentation (rotations, flips, transposes) trained
    networks on every one of them. Costs 8 forward passes; a transposed input is W x H, which every network
    here takes (both sides are padded to a multiple of 16)."""

    def averaged(x: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
        total = 0
        for transpose in (False, True):
            for dims in ((), (-1,), (-2,), (-2, -1)):
                x_t, fov_t = (t.transpose(-2, -1) if transpose else t for t in (x, fov))
                out = probability(x_t.flip(dims) if dims else x_t, fov_t.flip(dims) if dims else fov_t)
                out = out.flip(dims) if dims else out
                total = total + (out.transpose(-2, -1) if transpose else out)
        return total / 8

    return averaged


def with_tta(probability: Probability, tta: str = "none") -> Probability:
    """`probability` under test-time augmentation `tta` (TTA): unchanged for none."""
    if tta not in TTA_MODES:
        raise ConfigError(f"--tta {tta!r}: choose from {', '.join(TTA_MODES)}")
    return dihedral_mean(probability) if tta == "flips" else probability


@torch.no_grad()
def predict_probability(
    model: nn.Module | Probability,
    image: np.ndarray,
    fov: np.ndarray,
    multiple: int = 16,
    resize: int | None = None,
    patch_size: int | None = None,
    patch_overlap: int = 0,
    bf16: bool = False,
    fov_diameter: float | None = None,
) -> np.ndarray:
    """Vessel probability (HxW float32) of one HxWx3 uint8 image at its original size.

    `model` is a network or a probability function (an exported ONNX model: `retinalight.export.onnx_probability`);
    `bf16` runs a network under bf16 autocast (see `torch_probability`).
    With `resize`, the network sees the image resized to resize x resize; with `fov_diameter`, resized so its
    FOV is that many pixels across (scale normalisation); either way its output is resized back.
    With `patch_size`, it sees patch_size x patch_size patches (sliding window, `patch_overlap` pixels
    shared, averaged) of the standardised image, regrouped into the map (`retinalight.data.patches`); an
    input over TILE_ABOVE pixels is cut into overlapping tiles the same way, so memory stays bounded."""
    probability = torch_probability(model, bf16) if isinstance(model, nn.Module) else model
    original = image.shape[:2]
    if resize or fov_diameter:
        scale = fov_scale(fov, fov_diameter) if fov_diameter else None
        image, (fov,) = resize_sample_arrays(image, [fov], resize, scale)
    size = padded_size(*image.shape[:2], multiple)
    padded, region = pad(image, size)
    x = image_to_tensor(padded)[None]
    mask = torch.from_numpy(pad(fov, size)[0]).float()[None, None]
    if not patch_size and size[0] * size[1] > TILE_ABOVE:
        patch_size, patch_overlap = TILE
    if patch_size:
        patches, positions = extract_patches(torch.cat([x, mask], dim=1), patch_size, patch_overlap)
        batch = torch.cat(patches)
        probs = torch.cat([probability(chunk[:, :3], chunk[:, 3:]) for chunk in batch.split(PATCH_BATCH)])
        prob = merge_patches(list(probs), positions, (1, *size))[0]
    else:
        prob = probability(x, mask)[0, 0]
    prob = region.crop(prob).numpy()
    return resize_back(prob, original) if prob.shape != original else prob


def predict_samples(
    model: nn.Module | Probability, samples, multiple: int = 16, preprocess=None, bf16: bool = False, tta: str = "none", **inputs
) -> list[Prediction]:
    """Predictions for dataset samples, quantised to 8 bits (round(probability x 255) / 255): the form a run
    saves in predictions/, so a run's metrics, `evaluate --ckpt` and `evaluate --pred-dir` agree exactly.
    `preprocess` and `inputs` (resize, patch_size, patch_overlap: a checkpoint's `checkpoint_inputs`) say
    how images are prepared; `tta` the test-time augmentation (`with_tta`)."""
    probability = torch_probability(model, bf16) if isinstance(model, nn.Module) else model  # once, not per image
    probability = with_tta(probability, tta)
    out = []
    for s in samples:
        image = preprocess(s.image) if preprocess else s.image
        prob = predict_probability(probability, image, s.fov, multiple, **inputs)
        out.append(Prediction(s.id, (prob * 255).round() / 255, s.vessel, s.fov))
    return out


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the network of a retinalight checkpoint. Uses `weights_only=True`: no pickled code runs.
    Returns (model, hyper-parameters); `checkpoint_inputs(hparams)` says how its run prepared images."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        hparams = ckpt["hyper_parameters"]
        model = section(ModelConfig, hparams["model"]).build()
        state = {k.removeprefix("model.").replace("_orig_mod.", ""): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataFileError(f"{path}: not a readable retinalight checkpoint ({message})") from None
    return model.to(device).eval(), hparams


def image_preparation(hparams: dict) -> dict:
    """How a checkpoint's run prepared its images, as plain values (what an exported model stores):
    preprocess (a `retinalight.preprocess` spec), resize, fov_diameter (scale normalisation, when the run
    trained with it), patch_size, patch_overlap."""
    evaluation = section(EvaluationConfig, hparams.get("evaluation"))
    return {
        "preprocess": hparams.get("preprocess"),
        "resize": hparams.get("resize"),
        "fov_diameter": hparams.get("fov_diameter"),
        "patch_size": evaluation.patch_size,
        "patch_overlap": evaluation.patch_overlap,
    }


def reference_fov(hparams: dict) -> dict | None:
    """{"dataset", "diameter"}: the dataset a checkpoint's network trained on and the FOV diameter (pixels) it
    saw there (`RetinaDataModule.fov_reference`); None for a checkpoint from before it was stored."""
    return hparams.get("fov_reference")


def with_scale(preparation: dict, reference: dict | None, scale: str, what: str) -> dict:
    """`preparation` with scale normalisation to `reference` when `scale` is fov (auto: when the reference is
    known); a run trained with data.fov_diameter keeps its own."""
    if scale not in SCALE_MODES:
        raise ConfigError(f"--scale {scale!r}: choose from {', '.join(SCALE_MODES)}")
    if preparation.get("fov_diameter") or preparation.get("resize") or scale == "none" or (scale == "auto" and not reference):
        return preparation
    if not reference:
        raise ConfigError(f"{what}: stores no reference FOV diameter (trained before retinalight kept one); use --scale none")
    return {**preparation, "fov_diameter": reference["diameter"]}


def prediction_inputs(preparation: dict) -> dict:
    """`image_preparation`'s values as `predict_samples` takes them: the preprocess spec built into a callable."""
    from retinalight.preprocess import build_preprocess

    defaults = image_preparation({})  # keys an older export lacks take the config defaults
    values = {key: preparation.get(key, default) for key, default in defaults.items()}
    return {**values, "preprocess": build_preprocess(values["preprocess"])}


def checkpoint_inputs(hparams: dict) -> dict:
    """How a checkpoint's run prepared its images: preprocess (callable or None), resize, patch_size, patch_overlap."""
    return prediction_inputs(image_preparation(hparams))
